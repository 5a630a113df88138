"""A bsisa program: string table, descriptor table and code, and its binary container.

:class:`Program` validates what can be checked without a memory image (docs/ISA.md, "Binary
container"), encodes and decodes the container (layouts: :data:`~.spec.HEADER_LAYOUT`,
:data:`~.spec.DESCRIPTOR_LAYOUT`) and converts to and from the text assembly
(:mod:`bitmod.runtime.isa.assembly`; :func:`assemble` adds the validation and names the line).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from bitmod.runtime.isa.assembly import AssemblyText, parse_assembly, print_assembly
from bitmod.runtime.isa.spec import (
    DESCRIPTOR_LAYOUT,
    HEADER_LAYOUT,
    INSTRUCTION,
    MAGIC,
    STRING_LENGTH,
    VERSION,
    DescKind,
    EndLoop,
    Instruction,
    IsaError,
    Loop,
    check_format_id,
    decode_word,
)

HEADER = HEADER_LAYOUT.struct
DESCRIPTOR = DESCRIPTOR_LAYOUT.struct


@dataclass(frozen=True)
class Descriptor:
    """One entry of the descriptor table.

    ``name`` indexes ``Program.strings``. ``dim0``/``dim1`` are the tensor shape: [M, K] for
    act, [M, N] for out, [N, K] for qweight and [N, 1] for bias. ``fmt``, ``scale_bits`` and
    ``group_size`` describe a qweight and are 0 for every other kind.
    """

    name: int
    kind: DescKind
    dim0: int
    dim1: int
    fmt: int = 0
    scale_bits: int = 0
    group_size: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", DescKind(self.kind))

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.dim0,) if self.kind is DescKind.BIAS else (self.dim0, self.dim1)

    def check(self, n_strings: int) -> None:
        """Raise IsaError (without a location; callers add it) if a field is out of range."""
        if not 0 <= self.name < n_strings:
            raise IsaError(f"descriptor name index {self.name} out of range ({n_strings} strings)")
        if self.dim0 < 1 or self.dim1 < 1 or self.dim0 >= 1 << 32 or self.dim1 >= 1 << 32:
            raise IsaError(f"descriptor dims {self.dim0}x{self.dim1} must be in [1, 2^32)")
        if self.kind is DescKind.BIAS and self.dim1 != 1:
            raise IsaError(f"bias descriptor must have dim1 = 1, got {self.dim1}")
        if self.kind is DescKind.QWEIGHT:
            check_format_id(self.fmt)
            if not 1 <= self.scale_bits <= 15:
                raise IsaError(f"qweight scale bits {self.scale_bits} not in [1, 15]")
            if not 4 <= self.group_size < 1 << 16 or self.group_size % 4:
                raise IsaError(
                    f"qweight group size {self.group_size} must be a multiple of 4 in [4, 65532]"
                )
        elif self.fmt or self.scale_bits or self.group_size:
            raise IsaError(f"{self.kind.spelling} descriptor must have fmt/sb/group = 0")


@dataclass(frozen=True)
class Program:
    """A bsisa program: tensor names, descriptor table and instruction stream.

    Construct directly (sequences are stored as tuples) and call ``validate()``, or use
    ``decode``/``assemble``/``matmul_program``, which validate.
    """

    strings: tuple[str, ...]
    descriptors: tuple[Descriptor, ...]
    instructions: tuple[Instruction, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "strings", tuple(self.strings))
        object.__setattr__(self, "descriptors", tuple(self.descriptors))
        object.__setattr__(self, "instructions", tuple(self.instructions))

    def descriptor_name(self, index: int) -> str:
        return self.strings[self.descriptors[index].name]

    # validation -------------------------------------------------------------------------------

    def validate(self) -> None:
        """Check strings, descriptors and instructions; IsaError names the first bad entry."""
        if len(set(self.strings)) != len(self.strings):
            raise IsaError("duplicate tensor name in the string table")
        for i, desc in enumerate(self.descriptors):
            try:
                desc.check(len(self.strings))
            except IsaError as err:
                raise IsaError(f"descriptor {i}: {err}") from None
        open_levels: list[int] = []
        for index, instr in enumerate(self.instructions):
            self._check_instruction(index, instr, open_levels)
        if open_levels:
            raise IsaError(
                f"unbalanced loops: level(s) {open_levels} never closed",
                index=len(self.instructions),
            )

    def _check_instruction(self, index: int, instr: Instruction, open_levels: list[int]) -> None:
        offset = self._code_offset() + INSTRUCTION.size * index

        def fail(message: str) -> IsaError:
            return IsaError(f"{instr.MNEMONIC}: {message}", index=index, offset=offset)

        if not isinstance(instr, Instruction):
            raise IsaError(f"not an instruction: {instr!r}", index=index)
        try:
            instr.check()
        except IsaError as err:
            raise IsaError(str(err), index=index, offset=offset) from None
        if isinstance(instr, Loop):
            if instr.lvl in open_levels:
                raise fail(f"loop level L{instr.lvl} is already open")
            open_levels.append(instr.lvl)
        elif isinstance(instr, EndLoop):
            if not open_levels or open_levels[-1] != instr.lvl:
                innermost = f"L{open_levels[-1]}" if open_levels else "none"
                raise fail(f"unbalanced loops: closes L{instr.lvl}, innermost open is {innermost}")
            open_levels.pop()
        for lvl in instr.levels():
            if lvl not in open_levels:
                raise fail(f"loop level L{lvl} is not an open loop")
        for desc_index, kind in instr.descriptor_refs():
            if not 0 <= desc_index < len(self.descriptors):
                raise fail(f"descriptor {desc_index} out of range ({len(self.descriptors)})")
            actual = self.descriptors[desc_index].kind
            if actual is not kind:
                raise fail(f"descriptor d{desc_index} is {actual.spelling}, needs {kind.spelling}")

    def _code_offset(self) -> int:
        strings = sum(STRING_LENGTH.size + len(s.encode("utf-8")) for s in self.strings)
        return HEADER.size + strings + DESCRIPTOR.size * len(self.descriptors)

    # binary -----------------------------------------------------------------------------------

    def encode(self) -> bytes:
        """The binary container of docs/ISA.md (validates first)."""
        self.validate()
        body = bytearray()
        for s in self.strings:
            raw = s.encode("utf-8")
            if len(raw) > 0xFFFF:
                raise IsaError(f"tensor name longer than 65535 bytes: {s[:40]!r}...")
            body += STRING_LENGTH.pack(len(raw)) + raw
        for d in self.descriptors:
            body += DESCRIPTOR.pack(
                d.name, int(d.kind), d.fmt, d.scale_bits, 0, d.dim0, d.dim1, d.group_size
            )
        for instr in self.instructions:
            body += INSTRUCTION.pack(instr.encode())
        header = HEADER.pack(
            MAGIC,
            VERSION,
            0,
            len(self.strings),
            len(self.descriptors),
            len(self.instructions),
            zlib.crc32(body),
        )
        return header + bytes(body)

    @classmethod
    def decode(cls, data: bytes) -> Program:
        """Parse and validate a binary; IsaError names the byte offset / instruction index."""
        data = bytes(data)
        if len(data) < HEADER.size:
            raise IsaError(
                f"truncated: {len(data)} bytes, the header alone is {HEADER.size}", offset=len(data)
            )
        magic, version, reserved, n_strings, n_desc, n_instr, crc = HEADER.unpack_from(data)
        if magic != MAGIC:
            raise IsaError(
                f"bad magic {magic!r}, expected {MAGIC!r}", offset=HEADER_LAYOUT.offset("magic")
            )
        if version != VERSION:
            raise IsaError(
                f"unsupported version {version}, expected {VERSION}",
                offset=HEADER_LAYOUT.offset("version"),
            )
        if reserved:
            raise IsaError(
                f"reserved header field is {reserved}, must be 0",
                offset=HEADER_LAYOUT.offset("reserved"),
            )
        # Walk the layout first so truncation and trailing bytes get their own message.
        pos = HEADER.size
        raw_strings: list[tuple[int, bytes]] = []
        for i in range(n_strings):
            if pos + STRING_LENGTH.size > len(data):
                raise IsaError(f"truncated in the length of string {i}", offset=len(data))
            (length,) = STRING_LENGTH.unpack_from(data, pos)
            start = pos + STRING_LENGTH.size
            if start + length > len(data):
                raise IsaError(f"truncated in string {i} ({length} bytes)", offset=len(data))
            raw_strings.append((pos, data[start : start + length]))
            pos = start + length
        desc_offset = pos
        code_offset = desc_offset + DESCRIPTOR.size * n_desc
        end = code_offset + INSTRUCTION.size * n_instr
        if end > len(data):
            section = "descriptor table" if code_offset > len(data) else "code"
            raise IsaError(
                f"truncated in the {section}: header declares {end} bytes, got {len(data)}",
                offset=len(data),
            )
        if end < len(data):
            raise IsaError(f"{len(data) - end} trailing bytes after the code", offset=end)
        actual_crc = zlib.crc32(data[HEADER.size :])
        if actual_crc != crc:
            raise IsaError(
                f"CRC mismatch: header says 0x{crc:08x}, body has 0x{actual_crc:08x}",
                offset=HEADER_LAYOUT.offset("crc"),
            )
        strings = []
        for i, (offset, raw) in enumerate(raw_strings):
            try:
                strings.append(raw.decode("utf-8"))
            except UnicodeDecodeError as err:
                raise IsaError(f"string {i} is not UTF-8: {err.reason}", offset=offset) from None
        descriptors = [
            _decode_descriptor(data, desc_offset + DESCRIPTOR.size * i, i, n_strings)
            for i in range(n_desc)
        ]
        instructions = []
        for index in range(n_instr):
            offset = code_offset + INSTRUCTION.size * index
            (word,) = INSTRUCTION.unpack_from(data, offset)
            try:
                instructions.append(decode_word(word))
            except IsaError as err:
                raise IsaError(str(err), index=index, offset=offset) from None
        program = cls(tuple(strings), tuple(descriptors), tuple(instructions))
        program.validate()
        return program

    # text -------------------------------------------------------------------------------------

    def to_asm(self, checksum: bool = True) -> str:
        """Text assembly; ``assemble(p.to_asm()) == p``. With ``checksum`` it ends in
        ``.checksum`` (:meth:`body_crc32`), so the assembler refuses an edited text."""
        self.validate()
        crc = self.body_crc32() if checksum else None
        return print_assembly(self.strings, self.descriptors, self.instructions, crc)

    def body_crc32(self) -> int:
        """The CRC-32 of the binary body (what the header's ``crc`` field holds)."""
        return int(HEADER.unpack_from(self.encode())[-1])

    disassemble = to_asm


def _decode_descriptor(data: bytes, offset: int, index: int, n_strings: int) -> Descriptor:
    name, kind, fmt, sb, reserved_byte, dim0, dim1, group = DESCRIPTOR.unpack_from(data, offset)
    tail_offset, tail_size = DESCRIPTOR_LAYOUT.offsets["reserved_tail"]
    tail = data[offset + tail_offset : offset + tail_offset + tail_size]
    if reserved_byte or any(tail):
        raise IsaError(f"descriptor {index}: reserved bytes are not zero", offset=offset)
    if kind not in DescKind._value2member_map_:
        raise IsaError(
            f"descriptor {index}: unknown kind {kind}",
            offset=offset + DESCRIPTOR_LAYOUT.offset("kind"),
        )
    desc = Descriptor(name, DescKind(kind), dim0, dim1, fmt, sb, group)
    try:
        desc.check(n_strings)
    except IsaError as err:
        raise IsaError(f"descriptor {index}: {err}", offset=offset) from None
    return desc


def assemble(text: str) -> Program:
    """Parse text assembly into a validated Program; IsaError names the line."""
    parsed: AssemblyText = parse_assembly(text)
    descriptors = []
    for entry in parsed.descriptors:
        desc = Descriptor(*entry.fields)
        try:
            desc.check(len(parsed.strings))
        except IsaError as err:
            raise IsaError(str(err), line=entry.line) from None
        descriptors.append(desc)
    program = Program(parsed.strings, tuple(descriptors), parsed.instructions)
    try:
        program.validate()
    except IsaError as err:
        # The program's own location (instruction index, byte offset) becomes the line.
        message = str(err).split(": ", 1)[-1]
        raise IsaError(message, line=parsed.line_of_instruction(err.index)) from None
    if parsed.checksum is not None:
        expected, line = parsed.checksum
        actual = program.body_crc32()
        if actual != expected:
            raise IsaError(
                f".checksum 0x{expected:08x} does not match the program (0x{actual:08x}): the "
                f"text was changed after it was printed (delete the line to assemble an edited "
                f"program)",
                line=line,
            )
    return program
