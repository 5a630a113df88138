"""``KEY=VALUE`` lists: the one parser of the assembler's operands and the tools' options."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["KeyValueError", "parse_key_values"]


class KeyValueError(ValueError):
    """A malformed ``KEY=VALUE`` item or a key given twice; the message names the item."""


def parse_key_values(
    items: Iterable[str],
    *,
    what: str = "KEY=VALUE",
    allow_empty_value: bool = False,
    option: str | None = None,
) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``, in order.

    ``what`` is how the error messages spell the expected form (``ACC=FMT``, ``NAME=DTYPE``);
    ``option`` names where the items come from (a command-line option such as
    ``--pe-count``), so that the message says it. Raises :class:`KeyValueError` for an item
    without ``=``, with an empty key (or, unless ``allow_empty_value``, an empty value) and
    for a key given twice.
    """
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or (not value and not allow_empty_value):
            expected = f"expected {what}" if option is None else f"{option} expects {what}"
            raise KeyValueError(f"{expected}, got {item!r}")
        if key in pairs:
            prefix = "" if option is None else f"{option}: "
            raise KeyValueError(f"{prefix}{key!r} given twice")
        pairs[key] = value
    return pairs
