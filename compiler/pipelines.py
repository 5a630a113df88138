"""Named pass pipelines, pipeline strings, and the options passes declare.

Accepted spellings:

* xdsl-opt style: ``a,b{opt=v other=w}``;
* mlir-opt style: ``builtin.module(a,b{opt=v})`` (the anchor is stripped; nested
  ``func.func(...)`` pipelines are not supported, every pass here works on the module);
* a preset name of :data:`PIPELINES` via ``bitmod-opt --pipeline=NAME``.

A pass's options are the fields of its `ModulePass` dataclass (``group_size`` is spelled
``group-size``); :func:`pass_options` reads them, with their types and defaults, for both
the parser and ``bitmod-opt --list-passes``. The items between the braces are
whitespace-separated ``OPTION=VALUE`` pairs, read by
:func:`bitmod.runtime.keyvalue.parse_key_values` (so an option given twice is an error).
A value is converted to the type the field declares: ``true``/``false`` for ``bool``, a
decimal integer for ``int``, a decimal number (exponent allowed) for ``float``, and the
text as written for ``str`` (``:``, ``.`` and ``,`` need no quoting:
``layers=fc1:int8,fc3:bitmod4``; ``"..."`` quotes a value with spaces or braces).

Errors come back as :class:`~bitmod.dialects.diagnostics.DiagnosticError` located at
``<pass-pipeline>:1:COL``, the column pointing into the string the user wrote: syntax errors
where they are, everything about a pass (unknown name, bad option) at its name.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from types import NoneType, UnionType
from typing import Any, get_args, get_origin, get_type_hints

from bitmod.dialects.diagnostics import PIPELINE_SOURCE, DiagnosticError, SourceLocation
from bitmod.passes import ALL_PASSES
from bitmod.runtime.keyvalue import parse_key_values
from xdsl.passes import ModulePass, PassPipeline
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

_ANCHOR = "builtin.module"
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_INT = re.compile(r"[-+]?[0-9]+")
_FLOAT = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_INT64 = 2**63 - 1


# --- the options a pass declares -------------------------------------------------------------


@dataclass(frozen=True)
class PassOption:
    """One option of a pass: a field of its `ModulePass` dataclass."""

    name: str
    """As spelled in a pipeline: the field name with ``-`` for ``_``."""
    field: str
    type: Any
    """The field's annotation, evaluated (``int``, ``int | float``, ``str | None``, ...)."""
    default: Any = dataclasses.MISSING

    @property
    def type_text(self) -> str:
        """``int``, ``int | float``, ``str`` (None, for an optional option, left out)."""
        return " | ".join(type_repr(alternative) for alternative in _alternatives(self.type))

    @property
    def spelled_default(self) -> str | None:
        """The default as a pipeline would spell it (``true``, ``8``); None if unset."""
        if self.default is None or self.default is dataclasses.MISSING:
            return None
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        return str(self.default)

    def convert(self, text: str) -> Any:
        """The value of ``text`` as this option's type; ValueError naming the option."""
        quoted = len(text) >= 2 and text[0] == text[-1] == '"'
        raw = _unquote(text[1:-1]) if quoted else text
        for alternative in _alternatives(self.type):
            if alternative is str:
                return raw
            if quoted:
                continue
            if alternative is bool and text in ("true", "false"):
                return text == "true"
            if alternative is int and _INT.fullmatch(text):
                value = int(text)
                if abs(value) > _INT64:
                    raise ValueError(f"option '{self.name}' = {text} does not fit 64 bits")
                return value
            if alternative is float and _FLOAT.fullmatch(text):
                value = float(text)
                if not math.isfinite(value):
                    raise ValueError(f"option '{self.name}' = {text} is not a finite number")
                return value
        raise ValueError(f"option '{self.name}' expects {self.type_text}, got '{text}'")


def _alternatives(annotation: Any) -> tuple[Any, ...]:
    if isinstance(annotation, UnionType) or get_origin(annotation) is not None:
        return tuple(arg for arg in get_args(annotation) if arg is not NoneType)
    return (annotation,)


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def pass_options(pass_class: type[ModulePass]) -> tuple[PassOption, ...]:
    """The options of a pass class, in declaration order, from its dataclass fields."""
    hints = get_type_hints(pass_class)
    options = []
    for field in dataclasses.fields(pass_class):
        if not field.init:
            continue
        default = field.default
        if default is dataclasses.MISSING and field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        options.append(
            PassOption(field.name.replace("_", "-"), field.name, hints[field.name], default)
        )
    return tuple(options)


def pass_summary(pass_class: type[ModulePass]) -> str:
    """The first line of the pass class's docstring."""
    doc = inspect.getdoc(pass_class) if pass_class.__doc__ else None
    return doc.strip().splitlines()[0] if doc else ""


# --- pipeline strings -------------------------------------------------------------------------


@dataclass(frozen=True)
class PassText:
    """One pass of a pipeline string as written: its name, options and where they are."""

    name: str
    column: int
    """1-based column of the name in the string the user wrote."""
    options: tuple[str, ...] = ()
    """The ``OPTION=VALUE`` items between the braces, as written."""


def _syntax_error(message: str, column: int) -> DiagnosticError:
    return DiagnosticError(
        f"malformed pass pipeline: {message}",
        location=SourceLocation(PIPELINE_SOURCE, 1, column),
    )


@dataclass
class _Scanner:
    text: str
    end: int
    position: int = 0

    def column(self, position: int | None = None) -> int:
        return (self.position if position is None else position) + 1

    def skip_space(self) -> None:
        while self.position < self.end and self.text[self.position].isspace():
            self.position += 1

    def at(self, char: str) -> bool:
        return self.position < self.end and self.text[self.position] == char

    def passes(self) -> list[PassText]:
        passes: list[PassText] = []
        self.skip_space()
        if self.position >= self.end:
            return passes
        while True:
            passes.append(self.one_pass())
            self.skip_space()
            if self.position >= self.end:
                return passes
            if not self.at(","):
                raise _syntax_error("Expected a comma after pass argument dict here", self.column())
            self.position += 1
            self.skip_space()

    def one_pass(self) -> PassText:
        match = _NAME.match(self.text, self.position, self.end)
        if match is None:
            raise _syntax_error("Expected pass name here", self.column())
        name, column = match.group(), self.column(match.start())
        self.position = match.end()
        self.skip_space()
        if self.at("("):
            raise DiagnosticError(
                "nested pass pipelines are not supported (every bitmod pass runs on the "
                "module); write builtin.module(a,b{opt=v}) or a,b{opt=v}",
                location=SourceLocation(PIPELINE_SOURCE, 1, column),
            )
        if not self.at("{"):
            if self.position < self.end and not self.at(","):
                raise _syntax_error("Expected a comma or pass arguments here", self.column())
            return PassText(name, column)
        return PassText(name, column, self.options(name))

    def options(self, pass_name: str) -> tuple[str, ...]:
        """The items of ``{...}`` (the scanner is at ``{``); quotes protect spaces and braces."""
        opening = self.position
        self.position += 1
        items: list[str] = []
        while True:
            self.skip_space()
            if self.position >= self.end:
                raise _syntax_error(
                    f"'{{' of the options of '{pass_name}' is never closed", self.column(opening)
                )
            if self.at("}"):
                self.position += 1
                return tuple(items)
            start = self.position
            while self.position < self.end and not (
                self.text[self.position].isspace() or self.at("}")
            ):
                if self.at('"'):
                    self.skip_string()
                else:
                    self.position += 1
            items.append(self.text[start : self.position])

    def skip_string(self) -> None:
        opening = self.position
        self.position += 1
        while self.position < self.end and not self.at('"'):
            self.position += 2 if self.at("\\") else 1
        if self.position >= self.end:
            raise _syntax_error("string is never closed", self.column(opening))
        self.position += 1


def parse_pass_texts(text: str) -> list[PassText]:
    """The passes of a pipeline string, as written (syntax checked, names not)."""
    stripped = text.rstrip()
    start = len(text) - len(text.lstrip())
    if text.startswith(_ANCHOR, start) and text[start + len(_ANCHOR) :].lstrip().startswith("("):
        opening = text.index("(", start)
        if not stripped.endswith(")"):
            raise _syntax_error(
                f"'{_ANCHOR}(' is never closed: the pipeline must end with ')'",
                len(stripped) + 1,
            )
        return _Scanner(text, len(stripped) - 1, opening + 1).passes()
    return _Scanner(text, len(stripped)).passes()


def build_pipeline(
    text: str,
    available: dict[str, Callable[[], type[ModulePass]]] | None = None,
) -> PassPipeline:
    """A `PassPipeline` from a pipeline string; one diagnostic for the first problem."""
    available = ALL_PASSES if available is None else available
    passes: list[ModulePass] = []
    for written in parse_pass_texts(text):
        location = SourceLocation(PIPELINE_SOURCE, 1, written.column)
        if written.name not in available:
            raise DiagnosticError(
                f"unknown pass '{written.name}' (known passes: {', '.join(available)})",
                location=location,
            )
        try:
            pass_class = available[written.name]()
        except ImportError as error:
            raise DiagnosticError(
                f"pass '{written.name}' is not available: {error}", location=location
            ) from None
        try:
            passes.append(instantiate(pass_class, written.options))
        except (DiagnosticError, ValueError) as error:
            message = error.message if isinstance(error, DiagnosticError) else str(error)
            raise DiagnosticError(f"pass '{written.name}': {message}", location=location) from None
    return PassPipeline(tuple(passes))


def instantiate(pass_class: type[ModulePass], items: tuple[str, ...]) -> ModulePass:
    """``pass_class`` with the options ``items`` (``OPTION=VALUE`` texts) set.

    ValueError (or the pass's own DiagnosticError) for a malformed or repeated item, an
    unknown option or a value of the wrong type.
    """
    options = {option.name: option for option in pass_options(pass_class)}
    given = parse_key_values(items, what="OPTION=VALUE")
    values: dict[str, Any] = {}
    for name, text in given.items():
        option = options.get(name) or options.get(name.replace("_", "-"))
        if option is None:
            known = ", ".join(sorted(options))
            raise ValueError(f"unknown option '{name}' (options: {known or 'none'})")
        if option.field in values:
            raise ValueError(f"option '{option.name}' given twice")
        values[option.field] = option.convert(text)
    return pass_class(**values)


def preset(name: str) -> str:
    """The pipeline string of a preset; a diagnostic listing the presets otherwise."""
    if name not in PIPELINES:
        raise DiagnosticError(
            f"unknown pipeline preset '{name}' (presets: {', '.join(PIPELINES)})",
            location=SourceLocation(PIPELINE_SOURCE, 1, 1),
        )
    return PIPELINES[name]
