"""Byte sizes as people write them: `10MiB`, `50 MB`, `10m`, read and written.

Shared by the service's settings and the client tools, so it imports nothing of either.
"""

from __future__ import annotations

import re
from decimal import Decimal

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB

_UNITS = {
    "": 1,
    "b": 1,
    "k": KiB,
    "kib": KiB,
    "kb": 1000,
    "m": MiB,
    "mib": MiB,
    "mb": 1000**2,
    "g": GiB,
    "gib": GiB,
    "gb": 1000**3,
    "t": TiB,
    "tib": TiB,
    "tb": 1000**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str) -> int:
    """Parse `10485760`, `10MiB`, `10 MB` or `10m` (k/m/g/t alone are binary, as in nginx)."""
    match = _SIZE_RE.match(text)
    if match is None or match.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (write bytes, or e.g. 10MiB, 50MB, 1GiB)")
    number, unit = match.groups()
    value = Decimal(number) * _UNITS[unit.lower()]  # exact: 4.1MB is 4100000 bytes
    if value != value.to_integral_value():
        raise ValueError(f"not a whole number of bytes: {text!r}")
    return int(value)


def format_size(size: int) -> str:
    """`10MiB` for 10485760: the largest binary unit that divides `size` exactly, else bytes.

    `parse_size` reads the result back to the same number, so the documented defaults can be
    pasted into the environment as they are.
    """
    for unit, name in ((TiB, "TiB"), (GiB, "GiB"), (MiB, "MiB"), (KiB, "KiB")):
        if size and size % unit == 0:
            return f"{size // unit}{name}"
    return str(size)
