"""The bsisa text assembly (docs/ISA.md, "Text assembly"): printer and parser.

Both are driven by the field table of :mod:`bitmod.runtime.isa.spec`: an instruction is its
mnemonic, then its ``bare_in_asm`` fields as plain values, then every other field as
``keyword=value`` (any order; :func:`bitmod.runtime.keyvalue.parse_key_values`). A bare field
may be written ``keyword=value`` too (``cfg.kchunk kc=4096``). How a value is spelt follows
its :class:`~bitmod.runtime.isa.spec.FieldKind`: integers decimal or ``0x`` hex, levels
``L0``..``L7`` (``-``: none), descriptors by label (``-``: none), formats by name.

The parser returns the program's parts with their line numbers (:class:`AssemblyText`);
:func:`bitmod.runtime.isa.program.assemble` builds and validates the Program from them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bitmod.runtime.isa.spec import (
    BY_MNEMONIC,
    NUM_LOOP_LEVELS,
    CfgFmt,
    DescKind,
    EndLoop,
    Field,
    FieldKind,
    Instruction,
    IsaError,
    Loop,
    format_id,
    format_name,
)
from bitmod.runtime.keyvalue import KeyValueError, parse_key_values

#: The options of a qweight ``.desc``: the fields of ``cfg.fmt`` (format, scale bits, group
#: size), spelt as there; a qweight descriptor must match the ``cfg.fmt`` it is loaded under.
QWEIGHT_OPTIONS: tuple[Field, ...] = CfgFmt.FIELDS

_KINDS = {kind.spelling: kind for kind in DescKind}


class DescriptorFields(Protocol):
    """What the printer reads of a descriptor (:class:`bitmod.runtime.isa.program.Descriptor`)."""

    @property
    def name(self) -> int: ...
    @property
    def kind(self) -> DescKind: ...
    @property
    def dim0(self) -> int: ...
    @property
    def dim1(self) -> int: ...
    @property
    def fmt(self) -> int: ...
    @property
    def scale_bits(self) -> int: ...
    @property
    def group_size(self) -> int: ...


# --- printing ----------------------------------------------------------------------------------


def quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def value_text(field: Field, value: int | None) -> str:
    """How the assembly spells ``value`` of ``field``."""
    if value is None:
        return "-"
    if field.is_level:
        return f"L{value}"
    if field.desc_kind is not None:
        return f"d{value}"
    if field.kind is FieldKind.FORMAT:
        return format_name(value)
    return str(value)


def _spelt(field: Field, text: str) -> str:
    return text if field.bare_in_asm else f"{field.keyword}={text}"


def operand_texts(fields: Sequence[Field], values: Sequence[int | None]) -> list[str]:
    """The operands that spell ``values`` of ``fields``, in field order."""
    return [_spelt(f, value_text(f, v)) for f, v in zip(fields, values, strict=True)]


def instruction_text(instr: Instruction) -> str:
    """One instruction as a line of assembly (without indentation)."""
    values = [getattr(instr, field.name) for field in instr.FIELDS]
    return " ".join([instr.MNEMONIC, *operand_texts(instr.FIELDS, values)])


def usage(mnemonic: str, fields: Sequence[Field]) -> str:
    """``ld.act DESC row=Ln|- k=Ln|-``: the operands of a statement, for error messages."""
    return " ".join([mnemonic, *(_spelt(f, _placeholder_text(f)) for f in fields)])


def _placeholder_text(field: Field) -> str:
    if field.kind is FieldKind.LOOP_LEVEL:
        return "Ln"
    if field.kind is FieldKind.LEVEL:
        return "Ln|-"
    if field.kind is FieldKind.DESCRIPTOR:
        return "DESC"
    if field.kind is FieldKind.OPTIONAL_DESCRIPTOR:
        return "DESC|-"
    if field.kind is FieldKind.FORMAT:
        return "NAME"
    return field.keyword.upper()


def _canonical_strings(strings: Sequence[str], descriptors: Sequence[DescriptorFields]) -> bool:
    return tuple(strings) == tuple(dict.fromkeys(strings[d.name] for d in descriptors))


def print_assembly(
    strings: Sequence[str],
    descriptors: Sequence[DescriptorFields],
    instructions: Sequence[Instruction],
    checksum: int | None = None,
) -> str:
    """The text of a (validated) program; loop bodies indented two spaces a level, then
    ``.checksum`` when given (the CRC-32 of the binary body: an edit of the printed text is
    then caught by the assembler)."""
    lines: list[str] = []
    if not _canonical_strings(strings, descriptors):
        # Only a string table that is not the descriptors' names in first-use order needs
        # spelling out to round-trip.
        lines += [f".str {quote(s)}" for s in strings]
    for i, d in enumerate(descriptors):
        head = f".desc d{i} {d.kind.spelling} {quote(strings[d.name])}"
        if d.kind is DescKind.BIAS:
            lines.append(f"{head} {d.dim0}")
            continue
        line = f"{head} {d.dim0}x{d.dim1}"
        if d.kind is DescKind.QWEIGHT:
            options = operand_texts(QWEIGHT_OPTIONS, (d.fmt, d.scale_bits, d.group_size))
            line = " ".join([line, *options])
        lines.append(line)
    depth = 0
    for instr in instructions:
        if isinstance(instr, EndLoop):
            depth -= 1
        lines.append("  " * depth + instruction_text(instr))
        if isinstance(instr, Loop):
            depth += 1
    if checksum is not None:
        lines.append(f".checksum 0x{checksum:08x}")
    return "\n".join(lines) + "\n"


# --- parsing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AssemblyDescriptor:
    """A ``.desc`` line: the :class:`~bitmod.runtime.isa.program.Descriptor` fields in order
    (name index, kind, dim0, dim1, fmt, scale bits, group size), unchecked."""

    line: int
    fields: tuple[int, DescKind, int, int, int, int, int]


@dataclass(frozen=True)
class AssemblyText:
    """A parsed assembly text: string table, descriptors and code, each with its lines."""

    strings: tuple[str, ...]
    descriptors: tuple[AssemblyDescriptor, ...]
    instructions: tuple[Instruction, ...]
    instruction_lines: tuple[int, ...]
    #: ``.checksum`` (CRC-32 of the program's binary body) and its line, when the text has one.
    checksum: tuple[int, int] | None = None

    def line_of_instruction(self, index: int | None) -> int:
        """The line of instruction ``index``; the last instruction's for anything else (an
        error about the whole program, such as a loop never closed)."""
        if index is not None and 0 <= index < len(self.instruction_lines):
            return self.instruction_lines[index]
        return self.instruction_lines[-1] if self.instruction_lines else 1


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[^\s"]+')


def _tokens(text: str, line: int) -> list[str]:
    tokens = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        match = _TOKEN.match(text, pos)
        if match is None:
            raise IsaError(f"unterminated string: {text[pos:]}", line=line)
        tokens.append(match.group(0))
        pos = match.end()
    return tokens


def _strip_comment(text: str) -> str:
    in_string = False
    escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\" and in_string:
            escaped = True
        elif ch == '"':
            in_string = not in_string
        elif ch == ";" and not in_string:
            return text[:i]
    return text


def _unquote(token: str, line: int) -> str:
    if len(token) < 2 or token[0] != '"' or token[-1] != '"':
        raise IsaError(f"expected a quoted tensor name, got {token!r}", line=line)
    return re.sub(r"\\(.)", r"\1", token[1:-1])


def _int(token: str, what: str, line: int) -> int:
    try:
        return int(token, 0)
    except ValueError:
        raise IsaError(f"{what}: expected an integer, got {token!r}", line=line) from None


def _options(tokens: Sequence[str], line: int) -> dict[str, str]:
    try:
        return parse_key_values(tokens, what="key=value")
    except KeyValueError as err:
        raise IsaError(str(err), line=line) from None


class _Parser:
    def __init__(self) -> None:
        self.explicit_strings: list[str] | None = None
        self.desc_labels: dict[str, int] = {}
        self.desc_lines: list[tuple[int, str, tuple[DescKind, int, int, int, int, int]]] = []
        self.instructions: list[Instruction] = []
        self.instruction_lines: list[int] = []
        self.checksum: tuple[int, int] | None = None

    def run(self, text: str) -> AssemblyText:
        for number, raw_line in enumerate(text.splitlines(), start=1):
            tokens = _tokens(_strip_comment(raw_line), number)
            if not tokens:
                continue
            head = tokens[0]
            if head == ".str":
                self.string(tokens, number)
            elif head == ".desc":
                self.descriptor(tokens, number)
            elif head == ".checksum":
                if len(tokens) != 2 or self.checksum is not None:
                    raise IsaError(
                        ".checksum takes one CRC-32, once: .checksum 0x1234abcd", line=number
                    )
                self.checksum = (_int(tokens[1], ".checksum", number), number)
            elif head.startswith("."):
                raise IsaError(f"unknown directive {head!r}", line=number)
            elif head not in BY_MNEMONIC:
                raise IsaError(f"unknown mnemonic {head!r}", line=number)
            else:
                instr = self.instruction(BY_MNEMONIC[head], tokens[1:], number)
                try:
                    instr.check()
                except IsaError as err:
                    raise IsaError(str(err), line=number) from None
                self.instructions.append(instr)
                self.instruction_lines.append(number)
        return self.result()

    def string(self, tokens: list[str], line: int) -> None:
        if len(tokens) != 2:
            raise IsaError('.str takes one quoted name: .str "name"', line=line)
        if self.explicit_strings is None:
            self.explicit_strings = []
        self.explicit_strings.append(_unquote(tokens[1], line))

    def descriptor(self, tokens: list[str], line: int) -> None:
        options_text = " ".join(_spelt(f, _placeholder_text(f)) for f in QWEIGHT_OPTIONS)
        usage_text = f'.desc LABEL KIND "name" DIM0xDIM1 [{options_text}]'
        if len(tokens) < 5:
            raise IsaError(f"too few operands; usage: {usage_text}", line=line)
        label, kind_text, name_token, dims = tokens[1:5]
        if label in self.desc_labels:
            raise IsaError(f"descriptor label {label!r} defined twice", line=line)
        if kind_text not in _KINDS:
            raise IsaError(
                f"unknown descriptor kind {kind_text!r}; valid: {sorted(_KINDS)}", line=line
            )
        kind = _KINDS[kind_text]
        name = _unquote(name_token, line)
        if kind is DescKind.BIAS:
            dim0, dim1 = _int(dims, "bias length", line), 1
        else:
            parts = dims.split("x")
            if len(parts) != 2:
                raise IsaError(f"expected DIM0xDIM1, got {dims!r}", line=line)
            dim0, dim1 = (_int(p, "dimension", line) for p in parts)
        options = _options(tokens[5:], line)
        quant = [0, 0, 0]
        if kind is DescKind.QWEIGHT:
            missing = {field.keyword for field in QWEIGHT_OPTIONS} - options.keys()
            if missing:
                raise IsaError(f"qweight descriptor needs {sorted(missing)}", line=line)
            quant = [
                self.number(field, options.pop(field.keyword), line) for field in QWEIGHT_OPTIONS
            ]
        if options:
            raise IsaError(f"unexpected options {sorted(options)}", line=line)
        self.desc_labels[label] = len(self.desc_lines)
        self.desc_lines.append((line, name, (kind, dim0, dim1, *quant)))

    def instruction(self, cls: type[Instruction], args: list[str], line: int) -> Instruction:
        bare = [field for field in cls.FIELDS if field.bare_in_asm]
        positional = []
        while args and "=" not in args[0] and len(positional) < len(bare):
            positional.append(args.pop(0))
        options = _options(args, line)
        texts: dict[str, str] = {}
        for i, field in enumerate(bare):
            if i < len(positional):
                texts[field.name] = positional[i]
            elif field.keyword in options:
                texts[field.name] = options.pop(field.keyword)
            else:
                raise IsaError(
                    f"{cls.MNEMONIC} needs one operand {_placeholder_text(field)} "
                    f"(usage: {usage(cls.MNEMONIC, cls.FIELDS)})",
                    line=line,
                )
        for field in cls.FIELDS:
            if field.bare_in_asm:
                continue
            if field.keyword not in options:
                raise IsaError(f"missing operand {field.keyword}=", line=line)
            texts[field.name] = options.pop(field.keyword)
        if options:
            raise IsaError(f"unexpected operands {sorted(options)}", line=line)
        values = {
            field.name: self.value(field, texts[field.name], cls.MNEMONIC, line)
            for field in cls.FIELDS
        }
        return cls(**values)

    def value(self, field: Field, token: str, owner: str, line: int) -> int | None:
        """The value of ``field`` (of instruction ``owner``) that ``token`` spells."""
        if field.is_level:
            level = self.level(token, line)
            if level is None and not field.optional:
                raise IsaError(f"{owner} needs a level, not '-'", line=line)
            return level
        if field.desc_kind is not None:
            if token == "-" and field.optional:
                return None
            return self.desc_ref(token, line)
        return self.number(field, token, line)

    @staticmethod
    def number(field: Field, token: str, line: int) -> int:
        """A number, or a format spelt by name; range checks are the instruction's."""
        if field.kind is FieldKind.FORMAT:
            try:
                return format_id(token)
            except IsaError as err:
                raise IsaError(str(err), line=line) from None
        return _int(token, field.keyword, line)

    @staticmethod
    def level(token: str, line: int) -> int | None:
        if token == "-":
            return None
        if not re.fullmatch(r"L[0-9]+", token):
            raise IsaError(f"expected a loop level L0..L7 or '-', got {token!r}", line=line)
        lvl = int(token[1:])
        if lvl >= NUM_LOOP_LEVELS:
            raise IsaError(f"loop level {token} out of range L0..L7", line=line)
        return lvl

    def desc_ref(self, token: str, line: int) -> int:
        if token not in self.desc_labels:
            raise IsaError(f"unknown descriptor {token!r} (define it with .desc first)", line=line)
        return self.desc_labels[token]

    def result(self) -> AssemblyText:
        if self.explicit_strings is not None:
            strings = list(self.explicit_strings)
        else:
            strings = list(dict.fromkeys(name for _, name, _ in self.desc_lines))
        descriptors = []
        for line, name, (kind, dim0, dim1, fmt, sb, group) in self.desc_lines:
            if name not in strings:
                raise IsaError(f"tensor name {name!r} is not in the .str table", line=line)
            fields = (strings.index(name), kind, dim0, dim1, fmt, sb, group)
            descriptors.append(AssemblyDescriptor(line, fields))
        return AssemblyText(
            tuple(strings),
            tuple(descriptors),
            tuple(self.instructions),
            tuple(self.instruction_lines),
            self.checksum,
        )


def parse_assembly(text: str) -> AssemblyText:
    """Parse assembly text into its parts (IsaError naming the line); not yet validated as
    a whole program (:func:`bitmod.runtime.isa.program.assemble` does that)."""
    return _Parser().run(text)
