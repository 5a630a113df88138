"""Named pass pipelines and the parsing of pipeline strings into xDSL `PassPipeline`s.

Accepted spellings (all go through xDSL's own pipeline parser, ``xdsl.utils.arg_spec``):

* xdsl-opt style: ``a,b{opt=v other=w}``;
* mlir-opt style: ``builtin.module(a,b{opt=v})`` (the anchor is stripped; nested
  ``func.func(...)`` pipelines are not supported, every pass here works on the module);
* a preset name of :data:`PIPELINES` via ``bitmod-opt --pipeline=NAME``.

xDSL's pipeline lexer has no token for ``:`` or ``.``, so the per-layer map of
``bitmod-quantize`` (``layers=fc1:int8,fc3:bitmod4``) is quoted before parsing
(``layers="fc1:int8,fc3:bitmod4"``); an already quoted value is left as is.

Errors come back as :class:`~bitmod.dialects.diagnostics.DiagnosticError` located at
``<pass-pipeline>:1:COL``, the column pointing into the string the user wrote.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import get_type_hints

from bitmod.dialects.diagnostics import (
    PIPELINE_SOURCE,
    DiagnosticError,
    SourceLocation,
    from_pipeline_error,
)
from bitmod.passes import ALL_PASSES
from xdsl.passes import ModulePass, PassPipeline
from xdsl.utils.arg_spec import ArgSpec, parse_pipeline
from xdsl.utils.exceptions import ArgSpecParseError
from xdsl.utils.hints import type_repr

PIPELINES: dict[str, str] = {
    "bitmod-default": (
        "convert-linalg-to-bitmod,"
        "bitmod-quantize{dtype=bitmod3 group-size=128 scale-bits=8},"
        "bitmod-tile,"
        "bitmod-lower-to-isa"
    ),
    "bitmod-frontend": (
        "convert-linalg-to-bitmod,bitmod-quantize{dtype=bitmod3 group-size=128 scale-bits=8}"
    ),
}
"""Preset name -> pipeline. ``bitmod-frontend`` stops before tiling (quantized bitmod IR)."""

_ANCHOR = re.compile(r"\s*builtin\.module\s*\((?P<body>.*)\)\s*", re.DOTALL)
_NESTED_ANCHOR = re.compile(r"[A-Za-z_][\w]*\.[\w.]+\s*\(")
_UNQUOTED_LAYERS = re.compile(r"(?<![\w-])layers=(?P<value>[^\s\"}][^\s}]*)")


@dataclass(frozen=True)
class _Normalized:
    """Pipeline text as xDSL will parse it, and how to map its columns back."""

    text: str
    offset: int  # characters of the user's text dropped before `text` starts
    inserted: tuple[int, ...]  # positions in `text` where a quote was inserted

    def original_column(self, column: int) -> int:
        """1-based column in the user's string for a 1-based column of `text`."""
        shift = sum(1 for position in self.inserted if position < column - 1)
        return column - shift + self.offset


def _normalize(text: str) -> _Normalized:
    offset = 0
    anchored = _ANCHOR.fullmatch(text)
    if anchored is not None:
        offset = anchored.start("body")
        text = anchored["body"]
    nested = _NESTED_ANCHOR.search(text)
    if nested is not None:
        raise DiagnosticError(
            "nested pass pipelines are not supported (every bitmod pass runs on the module); "
            "write builtin.module(a,b{opt=v}) or a,b{opt=v}",
            location=SourceLocation(PIPELINE_SOURCE, 1, nested.start() + offset + 1),
        )
    inserted: list[int] = []
    pieces: list[str] = []
    last = 0
    for match in _UNQUOTED_LAYERS.finditer(text):
        start, end = match.span("value")
        pieces += [text[last:start], '"', match["value"], '"']
        # positions in the new text of the two quotes
        shift = 2 * (len(inserted) // 2)
        inserted += [start + shift, end + shift + 1]
        last = end
    pieces.append(text[last:])
    return _Normalized("".join(pieces), offset, tuple(inserted))


def _pass_column(normalized: _Normalized, name: str, occurrence: int) -> int:
    """Column (in the user's string) of the `occurrence`-th pass called `name`."""
    pattern = re.compile(rf"(?:^|(?<=[,\s]))({re.escape(name)})(?=[{{,\s]|$)")
    matches = list(pattern.finditer(normalized.text))
    if occurrence < len(matches):
        return normalized.original_column(matches[occurrence].start(1) + 1)
    return normalized.original_column(1)


def parse_pass_specs(text: str) -> tuple[list[ArgSpec], list[int]]:
    """The pass specs of a pipeline string and the column of each pass name."""
    normalized = _normalize(text)
    try:
        specs = list(parse_pipeline(normalized.text))
    except ArgSpecParseError as error:
        diagnostic = from_pipeline_error(error)
        assert diagnostic.location is not None
        column = normalized.original_column(diagnostic.location.column)
        raise DiagnosticError(
            diagnostic.message, location=SourceLocation(PIPELINE_SOURCE, 1, column)
        ) from None
    seen: dict[str, int] = {}
    columns = []
    for spec in specs:
        columns.append(_pass_column(normalized, spec.name, seen.get(spec.name, 0)))
        seen[spec.name] = seen.get(spec.name, 0) + 1
    return specs, columns


def build_pipeline(
    text: str,
    available: dict[str, Callable[[], type[ModulePass]]] | None = None,
) -> PassPipeline:
    """A `PassPipeline` from a pipeline string; one diagnostic for the first problem."""
    available = ALL_PASSES if available is None else available
    specs, columns = parse_pass_specs(text)
    passes: list[ModulePass] = []
    for spec, column in zip(specs, columns, strict=True):
        location = SourceLocation(PIPELINE_SOURCE, 1, column)
        if spec.name not in available:
            raise DiagnosticError(
                f"unknown pass '{spec.name}' (known passes: {', '.join(available)})",
                location=location,
            )
        try:
            pass_class = available[spec.name]()
        except ImportError as error:
            raise DiagnosticError(
                f"pass '{spec.name}' is not available: {error}", location=location
            ) from None
        try:
            passes.append(pass_class.from_spec(spec))
        except (DiagnosticError, ValueError, TypeError) as error:
            raise DiagnosticError(
                f"pass '{spec.name}': {_option_problem(pass_class, spec, error)}",
                location=location,
            ) from None
    return PassPipeline(tuple(passes))


def _option_problem(pass_class: type[ModulePass], spec: ArgSpec, error: Exception) -> str:
    """Say which option is wrong: xDSL's message names neither the option nor the type."""
    if isinstance(error, DiagnosticError):
        return error.message
    options = {f.name for f in dataclasses.fields(pass_class) if f.init}
    hints = get_type_hints(pass_class)
    for key, values in spec.normalize_parameter_names().parameters.items():
        spelled = key.replace("_", "-")
        if key not in options:
            known = ", ".join(sorted(o.replace("_", "-") for o in options))
            return f"unknown option '{spelled}' (options: {known or 'none'})"
        try:
            pass_class.from_spec(ArgSpec(spec.name, {key: values}))
        except DiagnosticError as single_error:
            return single_error.message
        except (ValueError, TypeError):
            given = ",".join(str(v) for v in values) if values else "(nothing)"
            expected = type_repr(hints[key])
            return f"option '{spelled}' expects {expected}, got '{given}'"
    return str(error)


def preset(name: str) -> str:
    """The pipeline string of a preset; a diagnostic listing the presets otherwise."""
    if name not in PIPELINES:
        raise DiagnosticError(
            f"unknown pipeline preset '{name}' (presets: {', '.join(PIPELINES)})",
            location=SourceLocation(PIPELINE_SOURCE, 1, 1),
        )
    return PIPELINES[name]
