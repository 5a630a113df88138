"""One error type for the whole compiler: a message at a source position, naming the op.

Every pass and the driver raise :class:`DiagnosticError`; ``bitmod-opt`` prints it as one
line in the form compilers and editors understand::

    FILE:LINE:COL: error: 'bitmod.matmul' op operand 'weight' has K=64 but ...

The position of an op is its ``loc(...)`` when the IR spelled one out, else where the op
started in the text the driver parsed (:mod:`bitmod.compiler.ir_io` records it as a
``FileLineColLoc``); ops that passes create inherit the location of the op they replace.
Errors in a pass pipeline string are reported at ``<pass-pipeline>:1:COL``.

A pass that finds nothing it can act on, where that may be fine, says so with
:func:`warn_at`: a :class:`DiagnosticWarning` through Python's :mod:`warnings`, which
``bitmod-opt`` prints as ``FILE:LINE:COL: warning: MESSAGE`` (and Python callers see as a
warning); where going on would silently do nothing useful it raises the error instead.

This module depends on xDSL only and sits in the dialect layer, so dialects and passes can
raise its error without importing the driver (``bitmod.compiler`` sits above them).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from xdsl.dialects.builtin import FileLineColLoc
from xdsl.ir import Operation
from xdsl.utils.exceptions import ParseError

PIPELINE_SOURCE = "<pass-pipeline>"
"""The file name under which errors in a pass-pipeline string are reported."""


@dataclass(frozen=True)
class SourceLocation:
    """A 1-based line and column in a named source."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class DiagnosticError(Exception):
    """A compile error: a message, where it happened, and the op it concerns.

    ``location`` may be left out when the op carries one (see :func:`location_of`); the
    driver then falls back to the input file name with line and column 0.
    """

    def __init__(
        self,
        message: str,
        op: Operation | None = None,
        location: SourceLocation | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.op = op
        self.location = location if location is not None else location_of(op)

    def render(self, default_file: str = "<unknown>") -> str:
        """The one-line ``FILE:LINE:COL: error: MESSAGE`` form."""
        return _render("error", self.message, self.op, self.location, default_file)

    def __str__(self) -> str:
        return self.render()


class DiagnosticWarning(UserWarning):
    """A located warning: a pass found nothing it could act on (see the module docstring)."""

    def __init__(self, message: str, op: Operation | None = None):
        super().__init__(message)
        self.message = message
        self.op = op
        self.location = location_of(op)

    def render(self, default_file: str = "<unknown>") -> str:
        """The one-line ``FILE:LINE:COL: warning: MESSAGE`` form."""
        return _render("warning", self.message, self.op, self.location, default_file)

    def __str__(self) -> str:
        return self.render()


def _render(
    severity: str,
    message: str,
    op: Operation | None,
    location: SourceLocation | None,
    default_file: str,
) -> str:
    location = location or SourceLocation(default_file, 0, 0)
    subject = f"'{op.name}' op " if op is not None else ""
    return f"{location}: {severity}: {subject}{_one_line(message)}"


def _one_line(text: str) -> str:
    """Collapse a possibly multi-line message to one line."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def location_of(op: Operation | None) -> SourceLocation | None:
    """The source location of `op`, or of its closest enclosing op that has one."""
    while op is not None:
        loc = op.location
        if isinstance(loc, FileLineColLoc):
            return SourceLocation(loc.filename.data, loc.line.data, loc.column.data)
        op = op.parent_op()
    return None


def error_at(op: Operation, message: str) -> DiagnosticError:
    """A diagnostic about `op`, located where `op` came from."""
    return DiagnosticError(message, op=op)


def warn_at(op: Operation, message: str) -> None:
    """Warn about `op` (a :class:`DiagnosticWarning`, located where `op` came from)."""
    warnings.warn(DiagnosticWarning(message, op=op), stacklevel=2)


def from_parse_error(error: ParseError) -> DiagnosticError:
    """Turn xDSL's multi-line parse error (source line + carets) into one diagnostic."""
    position = error.span.get_location()
    return DiagnosticError(
        error.msg, location=SourceLocation(position.file, position.line, position.col)
    )
