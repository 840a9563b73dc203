"""The client tools: `python -m app upload` and `python -m app loadtest`.

They import neither Starlette nor aioboto3, so a machine that only sends files needs httpx.
"""
