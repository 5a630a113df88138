"""JSON read from files a user can edit (bundle manifests, reports, shape tables).

``json.loads`` fails in three ways on such input: a syntax error, bytes that are not UTF-8,
and nesting deeper than Python's recursion limit (``[[[[...`` a hundred thousand deep raises
RecursionError from the C scanner). :func:`parse_json` turns all three into one
:class:`JsonError` whose text is the reason, for the caller to name the file.
"""

from __future__ import annotations

import json
import sys
from typing import Any

__all__ = ["JsonError", "parse_json"]


class JsonError(ValueError):
    """Text that is not JSON; the message says why (without naming the file)."""


def parse_json(data: str | bytes) -> Any:
    """``json.loads(data)``, or JsonError."""
    try:
        return json.loads(data)
    except json.JSONDecodeError as error:
        raise JsonError(str(error)) from None
    except UnicodeDecodeError:
        raise JsonError("not UTF-8 text") from None
    except RecursionError:
        raise JsonError(
            f"nested deeper than the reader follows ({sys.getrecursionlimit()} levels)"
        ) from None
