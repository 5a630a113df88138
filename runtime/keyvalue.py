"""``KEY=VALUE`` lists: the one parser of the assembler's operands and the tools' options."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["KeyValueError", "parse_key_values"]


class KeyValueError(ValueError):
    """A malformed ``KEY=VALUE`` item or a key given twice; the message names the item."""


def parse_key_values(
    items: Iterable[str], *, what: str = "KEY=VALUE", allow_empty_value: bool = False
) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``, in order.

    ``what`` is how the error messages spell the expected form (``ACC=FMT``, ``NAME=DTYPE``).
    Raises :class:`KeyValueError` for an item without ``=``, with an empty key (or, unless
    ``allow_empty_value``, an empty value) and for a key given twice.
    """
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or (not value and not allow_empty_value):
            raise KeyValueError(f"expected {what}, got {item!r}")
        if key in pairs:
            raise KeyValueError(f"{key!r} given twice")
        pairs[key] = value
    return pairs
