"""Reading, verifying and writing IR text with source positions kept for diagnostics.

:func:`parse_module` records where every op starts as its ``FileLineColLoc`` (unless the
text gave one with ``loc(...)``), so errors found later, by a verifier or a pass, still name
``FILE:LINE:COL``. Locations are not printed back (xDSL prints them only in debug-info
mode), so parse -> print -> parse gives the same module.

torch-mlir's ``{-# dialect_resources: { builtin: { ... } } #-}`` trailer is parsed by xDSL
0.74 into the context's builtin resource table (see :mod:`bitmod.passes.context` for why
each context has its own); :func:`print_module` prints the blobs the module still refers
to in the same trailer form.

Malformed input fails with one located :class:`DiagnosticError`, in about the time a good
file parses: xDSL's string-literal regex backtracks exponentially on a string that is never
closed (a truncated file), so the parser lexes with :class:`BoundedLexer`; a literal that
does not fit its type (a 400-digit ``i32``) and nesting deeper than the recursive-descent
parser can follow are reported where the parser was, not as internal errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from io import StringIO
from typing import Any

from bitmod.dialects.diagnostics import (
    DiagnosticError,
    SourceLocation,
    error_at,
    from_parse_error,
)
from xdsl.context import Context
from xdsl.dialects.builtin import (
    AnyFloat,
    FileLineColLoc,
    IntAttr,
    ModuleOp,
    StringAttr,
    UnknownLoc,
)
from xdsl.ir import Block, Operation, OpResult
from xdsl.parser import Parser
from xdsl.parser.attribute_parser import AttrParser
from xdsl.parser.generic_parser import ParserState
from xdsl.printer import Printer
from xdsl.utils.exceptions import ParseError, VerifyException
from xdsl.utils.lexer import Input, Span
from xdsl.utils.mlir_lexer import MLIRLexer


class BoundedLexer(MLIRLexer):
    """xDSL's MLIR lexer with a string-literal regex that cannot backtrack.

    xDSL 0.74 matches string literals with a ``+`` repeat nested in a ``*`` repeat, which on
    a string that is never closed tries every way of cutting it into runs (2^n steps for n
    characters). The same pattern with possessive repeats matches the same strings, and
    fails on an unclosed one, in linear time.
    """

    _unescaped_characters_regex = re.compile(r'"(?:[^"\\\n\v\f]++|\\(?:["nt\\]|[0-9A-Fa-f]{2}))*+"')


_OP_NAME = re.compile(r'\s*(?:(?:%[\w.$#-]+(?::\d+)?\s*,?\s*)+=\s*)?"?([\w$.-]+)')


def _op_name(start: Span) -> str:
    """The name of the op whose text starts at ``start`` (results, ``=`` and quotes skipped)."""
    match = _OP_NAME.match(start.input.content, start.start)
    return match.group(1) if match else "?"


@dataclass
class _BitPatternElement(AttrParser._TensorLiteralElement):
    """A hexadecimal integer literal in a dense literal: for a float element type it is the
    element's bit pattern, as in MLIR (``dense<0xFF800000> : tensor<f32>`` is -inf, which
    torch-mlir writes for every ``masked_fill(..., -inf)``). xDSL 0.74 converts the integer's
    value instead (4.29e9), silently; its scalar attributes already take the bit pattern."""

    def to_type(self, parser: AttrParser, type: Any) -> Any:
        if not isinstance(type, AnyFloat):
            return super().to_type(parser, type)
        width = type.compile_time_size
        if self.is_negative or not isinstance(self.value, int) or self.value >= 1 << (8 * width):
            parser.raise_error(
                f"hexadecimal literal does not fit the {8 * width} bits of {type}",
                at_position=self.span,
            )
        return next(type.iter_unpack(self.value.to_bytes(width, "little")))


class _LocatingParser(Parser):
    """An xDSL parser that stamps each op with the position it was parsed from, lexing
    with :class:`BoundedLexer`, and reads hexadecimal dense elements of float type as bit
    patterns (:class:`_BitPatternElement`)."""

    def __init__(self, ctx: Context, text: str, name: str) -> None:
        # xDSL's Parser builds its own MLIRLexer (and lexes the first token with it): start
        # it on no text, then give it the bounded lexer on the real one.
        super().__init__(ctx, "", name)
        self._parser_state = ParserState(BoundedLexer(Input(text, name)))
        self.op_starts: list[Span] = []
        """Where each op being parsed starts, innermost last."""

    def parse_operation(self) -> Operation:
        start = self._current_token.span
        self.op_starts.append(start)
        try:
            op = super().parse_operation()
        except VerifyException as error:
            # xDSL's declarative assembly formats check operand, result and property
            # constraints while they parse; report a failed one at the op, like a parse error.
            raise ParseError(start, str(error).split("\n\n")[0]) from None
        except (IndexError, KeyError, TypeError, AttributeError, AssertionError) as error:
            # A hand-written custom parser of xDSL's that meets syntax it does not know (e.g.
            # linalg.add without inputs, which it indexes unchecked) fails with a Python
            # exception after reading part of the op: report it at the op.
            raise ParseError(
                start,
                f"xDSL cannot parse this custom form of '{_op_name(start)}' "
                f"({type(error).__name__}: {error}); write the op in the generic form "
                "or without the syntax xDSL's form lacks",
            ) from None
        # Popped only on success: a failed parse leaves the stack for the error's location.
        self.op_starts.pop()
        if isinstance(op.location, UnknownLoc):
            position = start.get_location()
            op.location = FileLineColLoc(
                StringAttr(position.file), IntAttr(position.line), IntAttr(position.col)
            )
        return op

    def _parse_tensor_literal_element(self) -> AttrParser._TensorLiteralElement:
        hexadecimal = self._current_token.text[:2] in ("0x", "0X")
        element = super()._parse_tensor_literal_element()
        if hexadecimal and isinstance(element.value, int):
            return _BitPatternElement(element.is_negative, element.value, element.span)
        return element

    def location(self, span: Span | None = None) -> SourceLocation:
        """Where `span` (default: the current token) starts."""
        position = (span or self._current_token.span).get_location()
        return SourceLocation(position.file, position.line, position.col)


def parse_module(ctx: Context, text: str, filename: str, verify: bool = True) -> ModuleOp:
    """Parse `text` (named `filename` in diagnostics) into a module, verified by default.

    A file with nothing but comments is an empty module, as for mlir-opt (xDSL rejects it).
    A leading UTF-8 byte-order mark (editors on Windows write one) is skipped.
    """
    text = text.removeprefix("\ufeff")
    if not any(line.split("//", 1)[0].strip() for line in text.splitlines()):
        empty = ModuleOp([])
        empty.location = FileLineColLoc(StringAttr(filename), IntAttr(1), IntAttr(1))
        return empty
    try:
        # The constructor lexes the first token: an error there is the file's, too.
        parser = _LocatingParser(ctx, text, filename)
        module = parser.parse_module()
    except ParseError as error:
        raise from_parse_error(error) from None
    except RecursionError:
        raise DiagnosticError(
            "nesting is deeper than the parser can follow (Python's recursion limit)",
            location=parser.location(),
        ) from None
    except (VerifyException, ValueError, OverflowError) as error:
        # A value the attribute or type it was written for cannot hold (a 400-digit i32, a
        # dimension beyond 64 bits): at the op being parsed.
        innermost = parser.op_starts[-1] if parser.op_starts else None
        raise DiagnosticError(
            str(error).split("\n\n")[0] or type(error).__name__,
            location=parser.location(innermost),
        ) from None
    if isinstance(module.location, UnknownLoc):  # the implicit module of a bare op list
        module.location = FileLineColLoc(StringAttr(filename), IntAttr(1), IntAttr(1))
    if verify:
        verify_module(module)
    return module


def verify_module(module: ModuleOp) -> None:
    """Verify every op, raising a :class:`DiagnosticError` for the first one that fails.

    Ops are checked one at a time (not through ``module.verify()``) so that the error names
    the failing op and its position instead of reprinting the whole module.
    """
    positions: dict[Block, dict[Operation, int]] = {}
    for op in module.walk():
        try:
            op.verify(verify_nested_ops=False)
        except VerifyException as error:
            raise error_at(op, str(error).split("\n\n")[0]) from None
        except (ValueError, AssertionError) as error:
            # Structural breakage (e.g. an erased value still in use) is reported the same way.
            raise error_at(op, str(error) or type(error).__name__) from None
        _check_dominance(op, positions)


def _check_dominance(op: Operation, positions: dict[Block, dict[Operation, int]]) -> None:
    """Each operand of ``op`` is defined before it: earlier in its block or in a block around
    it (xDSL does not check this, and a value used before its definition would reach the
    runner undefined). Regions here are single-block, so "earlier" is the block's order."""
    for index, operand in enumerate(op.operands):
        if not isinstance(operand, OpResult):
            continue
        definer = operand.op
        block = definer.parent_block()
        user: Operation | None = op
        while user is not None and user.parent_block() is not block:
            user = user.parent_op()
        if block is not None and user is not None:
            order = positions.get(block)
            if order is None:
                order = positions[block] = {o: i for i, o in enumerate(block.ops)}
            if order[definer] < order[user]:
                continue
        raise error_at(
            op,
            f"operand #{index} is used before it is defined (by the {definer.name} at "
            f"{_where(definer)})",
        )


def _where(op: Operation) -> str:
    location = op.location
    if isinstance(location, FileLineColLoc):
        return f"{location.line.data}:{location.column.data}"
    return "an unknown position"


def print_module(ctx: Context, module: ModuleOp, generic: bool = False) -> str:
    """The module as MLIR text (every op in the generic form if ``generic``), with the
    dense_resource blobs it still refers to."""
    stream = StringIO()
    printer = Printer(stream=stream, print_generic_format=generic)
    printer.print_op(module)
    printer.print_metadata(ctx.loaded_dialects)
    stream.write("\n")
    return stream.getvalue()


__all__ = ["DiagnosticError", "parse_module", "print_module", "verify_module"]
