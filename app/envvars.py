"""Settings declared once: a dataclass field whose metadata names its environment variable.

A declaration such as `part_size: int = size("UPLOAD_PART_SIZE", 10 * MiB, between(...), doc=...)`
is an ordinary typed field with a default, so mypy checks the field, its default and its parser
together; the metadata carries what the environment, the checks and the docs need. The helpers
here are the kinds of value a setting can have; `read_environ`, `check_rules` and
`markdown_table` do the rest for any dataclass declared this way (app/settings.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar, get_args

from app.units import format_size, parse_size

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T")
Number = TypeVar("Number", int, float)
Choice = TypeVar("Choice", bound=str)


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


@dataclasses.dataclass(frozen=True)
class Rule(Generic[T]):
    """What every valid value satisfies; `text` completes the error: `NAME must be 1 to 64`."""

    holds: Callable[[T], bool]
    text: str


def between(low: Number, high: Number, text: str = "") -> Rule[Number]:
    return Rule(lambda value: low <= value <= high, text or f"must be {low} to {high}")


def at_least(low: Number, text: str = "") -> Rule[Number]:
    return Rule(lambda value: value >= low, text or f"must be {low} or more")


@dataclasses.dataclass(frozen=True)
class Variable(Generic[T]):
    """The environment variable behind one dataclass field, kept in the field's metadata."""

    name: str
    #: Turns the variable's text (trimmed, not blank) into the value; a ValueError says why not.
    parse: Callable[[str], T]
    rule: Rule[T] | None
    #: One line for the docs table, and the default as that table shows it.
    doc: str
    default_doc: str
    #: Taken as given: not trimmed, and set but empty is a value rather than the default.
    verbatim: bool = False
    #: A default that depends on settings declared before this one (given by field name).
    default_from: Callable[[Mapping[str, Any]], T] | None = None


_VARIABLE = "variable"


def variable_of(field: dataclasses.Field[Any]) -> Variable[Any]:
    declared: Variable[Any] = field.metadata[_VARIABLE]
    return declared


def _declare(default: T, variable: Variable[T]) -> T:
    return dataclasses.field(default=default, metadata={_VARIABLE: variable})


def _as_given(raw: str) -> str:
    return raw


def _code(value: object) -> str:
    return f"`{value}`"


def required(name: str, *, doc: str) -> str:
    """Text that must be set: the field has no default, and blank is refused on reading too."""
    variable = Variable(name, _as_given, Rule(bool, "is required"), doc, "(required)")
    declared: str = dataclasses.field(metadata={_VARIABLE: variable})
    return declared


def optional(name: str, *, doc: str, default_doc: str = "unset") -> str | None:
    """Text that may be left unset (None)."""
    return _declare(None, Variable[str | None](name, _as_given, None, doc, default_doc))


def text(
    name: str,
    default: str,
    rule: Rule[str] | None = None,
    *,
    doc: str,
    default_doc: str = "",
    lower: bool = False,
    verbatim: bool = False,
) -> str:
    parse = str.lower if lower else _as_given
    shown = default_doc or _code(default)
    return _declare(default, Variable(name, parse, rule, doc, shown, verbatim=verbatim))


def number(name: str, default: int, rule: Rule[int], *, doc: str, default_doc: str = "") -> int:
    """A whole number, such as a count."""

    def parse(raw: str) -> int:
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"not a whole number: {raw!r}") from None

    shown = default_doc or _code(default)
    return _declare(default, Variable(name, parse, rule, doc, shown))


def size(name: str, default: int, rule: Rule[int], *, doc: str, default_doc: str = "") -> int:
    """Bytes, with or without a unit (app/units.py)."""
    shown = default_doc or _code(format_size(default))
    return _declare(default, Variable(name, parse_size, rule, doc, shown))


def seconds(name: str, default: float, rule: Rule[float], *, doc: str) -> float:
    """Seconds, possibly fractional, written `30` or `30s`."""

    def parse(raw: str) -> float:
        try:
            return float(raw.lower().removesuffix("s"))
        except ValueError:
            raise ValueError(f"not a number of seconds: {raw!r}") from None

    return _declare(default, Variable(name, parse, rule, doc, _code(f"{default:g}")))


_ON = ("1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off")


def flag(name: str, *, doc: str) -> bool:
    """On or off; off unless set."""

    def parse(raw: str) -> bool:
        if raw.lower() in _ON:
            return True
        if raw.lower() in _OFF:
            return False
        raise ValueError(f"not on/off: {raw!r}")

    return _declare(False, Variable(name, parse, None, doc, _code("off")))


def alternatives(options: Sequence[str]) -> str:
    return ", ".join(options[:-1]) + " or " + options[-1]


def choice(
    name: str,
    default: Choice,
    options_of: object,
    *,
    doc: str,
    default_doc: str = "",
    lower: bool = False,
    default_from: Callable[[Mapping[str, Any]], Choice] | None = None,
) -> Choice:
    """One of the strings of the Literal type `options_of`, which is also the field's type."""
    options: tuple[Choice, ...] = get_args(options_of)
    listed = alternatives(options)

    def parse(raw: str) -> Choice:
        wanted = raw.lower() if lower else raw
        for option in options:
            if option == wanted:
                return option
        raise ValueError(f"not {listed}: {raw!r}")

    rule = Rule[Choice](lambda value: value in options, f"must be {listed}")
    shown = default_doc or _code(default)
    return _declare(default, Variable(name, parse, rule, doc, shown, default_from=default_from))


def names(
    name: str, rule: Rule[tuple[str, ...]], *, doc: str, default_doc: str, lower: bool = False
) -> tuple[str, ...]:
    """A comma-separated list, items trimmed, empty items dropped; empty unless set."""

    def parse(raw: str) -> tuple[str, ...]:
        items = (item.strip() for item in raw.split(","))
        return tuple(item.lower() if lower else item for item in items if item)

    return _declare((), Variable(name, parse, rule, doc, default_doc))


def check_rules(settings: DataclassInstance) -> None:
    """Raise `SettingsError` for the first field, in declaration order, that breaks its rule."""
    for field in dataclasses.fields(settings):
        variable = variable_of(field)
        if variable.rule is not None and not variable.rule.holds(getattr(settings, field.name)):
            raise SettingsError(f"{variable.name} {variable.rule.text}")


def read_environ(declared: type[DataclassInstance], environ: Mapping[str, str]) -> dict[str, Any]:
    """The field values `environ` sets, by field name; a blank variable is unset."""
    read: dict[str, Any] = {}
    missing: list[str] = []
    for field in dataclasses.fields(declared):
        variable = variable_of(field)
        raw = environ.get(variable.name)
        if raw is not None and not variable.verbatim:
            raw = raw.strip() or None
        if raw is not None:
            try:
                read[field.name] = variable.parse(raw)
            except ValueError as exc:
                raise SettingsError(f"{variable.name}: {exc}") from None
        elif variable.default_from is not None:
            read[field.name] = variable.default_from(read)
        elif field.default is dataclasses.MISSING:
            missing.append(variable.name)
    if missing:
        raise SettingsError(f"{missing[0]} is required")
    return read


def markdown_table(declared: type[DataclassInstance]) -> str:
    """A markdown table of every variable, its default and its doc, in declaration order."""
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for field in dataclasses.fields(declared):
        variable = variable_of(field)
        cells = (_code(variable.name), variable.default_doc, variable.doc)
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows) + "\n"
