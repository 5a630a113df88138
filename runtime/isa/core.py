"""bsisa: the BitMoD bit-serial ISA (docs/ISA.md), the single Python definition.

Opcodes, field layouts, the binary container (``Program.encode`` / ``Program.decode``), the
text assembly (``Program.to_asm`` / ``assemble``) and the matmul loop nests (``matmul_nest``,
``matmul_config``, ``matmul_program``) live here; the compiler (dialects/bsisa.py,
bitmod-tile, bitmod-lower-to-isa), the emulator (runtime/emulator/machine.py) and the RTL backend
import them.

Every instruction is one 64-bit little-endian word, opcode in bits [63:56]. Every bit that is
not part of a field is reserved and must be zero, so a decoded program re-encodes to the same
bytes. Decoding validates everything that can be checked without a memory image: the container
(magic, version, sizes, CRC-32), opcodes, reserved bits, field ranges, descriptor references and
their kinds, loop balance and that every loop level an instruction names is an open loop.
"""

from __future__ import annotations

import enum
import re
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

MAGIC = b"BSIS"
VERSION = 1
HEADER = struct.Struct("<4sHHIIII")
DESCRIPTOR = struct.Struct("<IBBBBIII12x")
INSTRUCTION = struct.Struct("<Q")
NO_LEVEL_FIELD = 0xF
NO_BIAS_FIELD = 0xFFFF
NUM_LOOP_LEVELS = 8
NUM_SV_SLOTS = 4

assert HEADER.size == 24 and DESCRIPTOR.size == 32


class IsaError(ValueError):
    """A malformed bsisa binary, program or assembly text.

    ``offset`` is the byte offset into the binary, ``index`` the instruction index and ``line``
    the 1-based assembly line, whichever apply (None otherwise); all appear in the message.
    """

    def __init__(
        self,
        message: str,
        *,
        offset: int | None = None,
        index: int | None = None,
        line: int | None = None,
    ) -> None:
        where = []
        if line is not None:
            where.append(f"line {line}")
        if index is not None:
            where.append(f"instruction {index}")
        if offset is not None:
            where.append(f"byte offset {offset}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.offset = offset
        self.index = index
        self.line = line


class DescKind(enum.IntEnum):
    """Kind of a tensor descriptor (u8 in the binary)."""

    ACT = 0  # FP16 [M, K] activations
    OUT = 1  # FP16 [M, N] outputs
    QWEIGHT = 2  # quantized [N, K] weight in the parameter archive
    BIAS = 3  # FP16 [N]


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
            _check_format_id(self.fmt)
            if not 1 <= self.scale_bits <= 15:
                raise IsaError(f"qweight scale bits {self.scale_bits} not in [1, 15]")
            if not 4 <= self.group_size < 1 << 16 or self.group_size % 4:
                raise IsaError(
                    f"qweight group size {self.group_size} must be a multiple of 4 in [4, 65532]"
                )
        elif self.fmt or self.scale_bits or self.group_size:
            raise IsaError(f"{self.kind.name.lower()} descriptor must have fmt/sb/group = 0")


def _format_ids() -> dict[str, int]:
    from bitmod.runtime.formats import FORMAT_IDS

    return dict(FORMAT_IDS)


def _check_format_id(fmt: int) -> None:
    if fmt not in _format_ids().values():
        raise IsaError(f"unknown weight format id {fmt}")


def format_name(fmt_id: int) -> str:
    """Format name of a format id (IsaError if unknown)."""
    for name, value in _format_ids().items():
        if value == fmt_id:
            return name
    raise IsaError(f"unknown weight format id {fmt_id}")


def format_id(name: str) -> int:
    """Format id of a format name (IsaError listing the valid names if unknown)."""
    ids = _format_ids()
    if name not in ids:
        raise IsaError(f"unknown weight format {name!r}; valid: {', '.join(sorted(ids))}")
    return ids[name]


# --- instructions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    """A bit field [hi:lo] of an instruction word; ``signed`` fields are two's complement."""

    name: str
    hi: int
    lo: int
    signed: bool = False

    @property
    def width(self) -> int:
        return self.hi - self.lo + 1

    def pack(self, value: int) -> int:
        lo_limit, hi_limit = self.limits()
        if not lo_limit <= value <= hi_limit:
            raise IsaError(f"field {self.name}={value} out of range [{lo_limit}, {hi_limit}]")
        return (value & ((1 << self.width) - 1)) << self.lo

    def unpack(self, word: int) -> int:
        raw = (word >> self.lo) & ((1 << self.width) - 1)
        if self.signed and raw >> (self.width - 1):
            raw -= 1 << self.width
        return raw

    def limits(self) -> tuple[int, int]:
        if self.signed:
            return -(1 << (self.width - 1)), (1 << (self.width - 1)) - 1
        return 0, (1 << self.width) - 1


class Instruction:
    """Base of the instruction dataclasses: field table driven encode/decode."""

    OPCODE: ClassVar[int]
    MNEMONIC: ClassVar[str]
    FIELDS: ClassVar[tuple[_Field, ...]] = ()

    def raw_fields(self) -> dict[str, int]:
        """Field values as stored in the word (levels None -> 0xF, bias None -> 0xFFFF)."""
        raw = {}
        for field in self.FIELDS:
            value = getattr(self, field.name)
            if value is None:
                value = NO_BIAS_FIELD if field.name == "bias" else NO_LEVEL_FIELD
            raw[field.name] = value
        return raw

    def encode(self) -> int:
        self.check()
        word = self.OPCODE << 56
        for field in self.FIELDS:
            word |= field.pack(self.raw_fields()[field.name])
        return word

    def check(self) -> None:
        """Range checks beyond the field widths (IsaError without a location)."""
        for field in self.FIELDS:
            value = getattr(self, field.name)
            if value is None:
                continue
            if not isinstance(value, int):
                raise IsaError(f"{self.MNEMONIC}: field {field.name} must be an int, got {value!r}")
            lo_limit, hi_limit = field.limits()
            if field.name.endswith("lvl") and not 0 <= value < NUM_LOOP_LEVELS:
                raise IsaError(f"{self.MNEMONIC}: loop level {value} not in [0, 7] or None")
            if field.name == "bias" and value == NO_BIAS_FIELD:
                raise IsaError(f"{self.MNEMONIC}: bias descriptor {value} is reserved for none")
            if not lo_limit <= value <= hi_limit:
                raise IsaError(
                    f"{self.MNEMONIC}: field {field.name}={value} out of range "
                    f"[{lo_limit}, {hi_limit}]"
                )

    @classmethod
    def from_word(cls, word: int) -> Instruction:
        used = 0xFF << 56
        values: dict[str, int | None] = {}
        for field in cls.FIELDS:
            used |= ((1 << field.width) - 1) << field.lo
            value: int | None = field.unpack(word)
            if field.name.endswith("lvl") and value == NO_LEVEL_FIELD:
                value = None
            if field.name == "bias" and value == NO_BIAS_FIELD:
                value = None
            values[field.name] = value
        if word & ~used:
            raise IsaError(f"{cls.MNEMONIC}: reserved bits set (0x{word & ~used:016x})")
        instr = cls(**values)
        instr.check()
        return instr

    def levels(self) -> tuple[int, ...]:
        """Loop levels this instruction reads (must be open loops)."""
        return tuple(
            getattr(self, f.name)
            for f in self.FIELDS
            if f.name.endswith("_lvl") and getattr(self, f.name) is not None
        )

    def descriptor_refs(self) -> tuple[tuple[int, DescKind], ...]:
        """(descriptor index, required kind) pairs this instruction references."""
        return ()


@dataclass(frozen=True)
class Nop(Instruction):
    OPCODE: ClassVar[int] = 0x00
    MNEMONIC: ClassVar[str] = "nop"


@dataclass(frozen=True)
class Halt(Instruction):
    OPCODE: ClassVar[int] = 0x01
    MNEMONIC: ClassVar[str] = "halt"


@dataclass(frozen=True)
class CfgArray(Instruction):
    """Declares the array geometry the program was compiled for."""

    rows: int
    cols: int
    tiles: int
    OPCODE: ClassVar[int] = 0x10
    MNEMONIC: ClassVar[str] = "cfg.array"
    FIELDS: ClassVar[tuple[_Field, ...]] = (
        _Field("rows", 55, 48),
        _Field("cols", 47, 40),
        _Field("tiles", 39, 24),
    )

    def check(self) -> None:
        super().check()
        if min(self.rows, self.cols, self.tiles) < 1:
            raise IsaError(f"cfg.array: rows/cols/tiles must be >= 1, got {self}")


@dataclass(frozen=True)
class CfgSv(Instruction):
    """``SV[slot] = value`` (signed, grid units)."""

    slot: int
    value: int
    OPCODE: ClassVar[int] = 0x11
    MNEMONIC: ClassVar[str] = "cfg.sv"
    FIELDS: ClassVar[tuple[_Field, ...]] = (
        _Field("slot", 55, 54),
        _Field("value", 47, 32, signed=True),
    )


@dataclass(frozen=True)
class CfgFmt(Instruction):
    """Weight format id, scale bits and group size along K."""

    fmt: int
    sb: int
    group_size: int
    OPCODE: ClassVar[int] = 0x12
    MNEMONIC: ClassVar[str] = "cfg.fmt"
    FIELDS: ClassVar[tuple[_Field, ...]] = (
        _Field("fmt", 55, 48),
        _Field("sb", 47, 44),
        _Field("group_size", 39, 24),
    )

    def check(self) -> None:
        super().check()
        _check_format_id(self.fmt)
        if self.sb < 1:
            raise IsaError("cfg.fmt: scale bits must be >= 1")
        if self.group_size < 4 or self.group_size % 4:
            raise IsaError(f"cfg.fmt: group size {self.group_size} must be a multiple of 4")


@dataclass(frozen=True)
class CfgKchunk(Instruction):
    """K elements per chunk (a multiple of G, checked by the machine)."""

    kc: int
    OPCODE: ClassVar[int] = 0x13
    MNEMONIC: ClassVar[str] = "cfg.kchunk"
    FIELDS: ClassVar[tuple[_Field, ...]] = (_Field("kc", 31, 0),)

    def check(self) -> None:
        super().check()
        if self.kc < 1:
            raise IsaError("cfg.kchunk: kc must be >= 1")


@dataclass(frozen=True)
class CfgMblock(Instruction):
    """Rows of an activation / output block (``MR``: a multiple of ROWS, checked by the
    machine); ``cfg.array`` resets it to ROWS."""

    rows: int
    OPCODE: ClassVar[int] = 0x14
    MNEMONIC: ClassVar[str] = "cfg.mblock"
    FIELDS: ClassVar[tuple[_Field, ...]] = (_Field("rows", 15, 0),)

    def check(self) -> None:
        super().check()
        if self.rows < 1:
            raise IsaError("cfg.mblock: rows must be >= 1")


@dataclass(frozen=True)
class Loop(Instruction):
    """Open loop level ``lvl`` with ``count`` iterations; ``L[lvl]`` counts 0..count-1."""

    lvl: int
    count: int
    OPCODE: ClassVar[int] = 0x20
    MNEMONIC: ClassVar[str] = "loop"
    FIELDS: ClassVar[tuple[_Field, ...]] = (_Field("lvl", 55, 53), _Field("count", 31, 0))

    def check(self) -> None:
        super().check()
        if self.count < 1:
            raise IsaError("loop: count must be >= 1")


@dataclass(frozen=True)
class EndLoop(Instruction):
    lvl: int
    OPCODE: ClassVar[int] = 0x21
    MNEMONIC: ClassVar[str] = "endloop"
    FIELDS: ClassVar[tuple[_Field, ...]] = (_Field("lvl", 55, 53),)


@dataclass(frozen=True)
class LdAct(Instruction):
    """Load act rows [L_row*ROWS, +ROWS), K [L_k*KC, +KC) of an act descriptor."""

    desc: int
    row_lvl: int | None
    k_lvl: int | None
    OPCODE: ClassVar[int] = 0x30
    MNEMONIC: ClassVar[str] = "ld.act"
    FIELDS: ClassVar[tuple[_Field, ...]] = (
        _Field("desc", 55, 40),
        _Field("row_lvl", 39, 36),
        _Field("k_lvl", 35, 32),
    )

    def descriptor_refs(self) -> tuple[tuple[int, DescKind], ...]:
        return ((self.desc, DescKind.ACT),)


@dataclass(frozen=True)
class LdWgt(Instruction):
    """Load channels [L_col*COLS*TILES, +COLS*TILES), K chunk L_k, of a qweight descriptor."""

    desc: int
    col_lvl: int | None
    k_lvl: int | None
    OPCODE: ClassVar[int] = 0x31
    MNEMONIC: ClassVar[str] = "ld.wgt"
    FIELDS: ClassVar[tuple[_Field, ...]] = (
        _Field("desc", 55, 40),
        _Field("col_lvl", 39, 36),
        _Field("k_lvl", 35, 32),
    )

    def descriptor_refs(self) -> tuple[tuple[int, DescKind], ...]:
        return ((self.desc, DescKind.QWEIGHT),)


@dataclass(frozen=True)
class AccClr(Instruction):
    OPCODE: ClassVar[int] = 0x40
    MNEMONIC: ClassVar[str] = "acc.clr"


@dataclass(frozen=True)
class Mac(Instruction):
    OPCODE: ClassVar[int] = 0x41
    MNEMONIC: ClassVar[str] = "mac"


@dataclass(frozen=True)
class Drain(Instruction):
    """Scale the column accumulators by the channel scales, add the bias (None: no bias)."""

    bias: int | None = None
    OPCODE: ClassVar[int] = 0x42
    MNEMONIC: ClassVar[str] = "drain"
    FIELDS: ClassVar[tuple[_Field, ...]] = (_Field("bias", 55, 40),)

    def descriptor_refs(self) -> tuple[tuple[int, DescKind], ...]:
        return () if self.bias is None else ((self.bias, DescKind.BIAS),)


@dataclass(frozen=True)
class StOut(Instruction):
    """Store the output block to an out descriptor at row block L_row, column block L_col."""

    desc: int
    row_lvl: int | None
    col_lvl: int | None
    OPCODE: ClassVar[int] = 0x50
    MNEMONIC: ClassVar[str] = "st.out"
    FIELDS: ClassVar[tuple[_Field, ...]] = (
        _Field("desc", 55, 40),
        _Field("row_lvl", 39, 36),
        _Field("col_lvl", 35, 32),
    )

    def descriptor_refs(self) -> tuple[tuple[int, DescKind], ...]:
        return ((self.desc, DescKind.OUT),)


INSTRUCTION_TYPES: tuple[type[Instruction], ...] = (
    Nop,
    Halt,
    CfgArray,
    CfgSv,
    CfgFmt,
    CfgKchunk,
    CfgMblock,
    Loop,
    EndLoop,
    LdAct,
    LdWgt,
    AccClr,
    Mac,
    Drain,
    StOut,
)
BY_OPCODE: dict[int, type[Instruction]] = {t.OPCODE: t for t in INSTRUCTION_TYPES}
BY_MNEMONIC: dict[str, type[Instruction]] = {t.MNEMONIC: t for t in INSTRUCTION_TYPES}


def decode_word(word: int) -> Instruction:
    """Decode one instruction word (IsaError without a location; callers add it)."""
    opcode = word >> 56
    if opcode not in BY_OPCODE:
        raise IsaError(f"unknown opcode 0x{opcode:02x}")
    return BY_OPCODE[opcode].from_word(word)


# --- program ---------------------------------------------------------------------------------


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
        offset = self._code_offset() + 8 * index

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
                raise fail(
                    f"descriptor d{desc_index} is {actual.name.lower()}, needs {kind.name.lower()}"
                )

    def _code_offset(self) -> int:
        strings = sum(2 + len(s.encode("utf-8")) for s in self.strings)
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
            body += struct.pack("<H", len(raw)) + raw
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
            raise IsaError(f"bad magic {magic!r}, expected {MAGIC!r}", offset=0)
        if version != VERSION:
            raise IsaError(f"unsupported version {version}, expected {VERSION}", offset=4)
        if reserved:
            raise IsaError(f"reserved header field is {reserved}, must be 0", offset=6)
        # Walk the layout first so truncation and trailing bytes get their own message.
        pos = HEADER.size
        raw_strings: list[tuple[int, bytes]] = []
        for i in range(n_strings):
            if pos + 2 > len(data):
                raise IsaError(f"truncated in the length of string {i}", offset=len(data))
            (length,) = struct.unpack_from("<H", data, pos)
            if pos + 2 + length > len(data):
                raise IsaError(f"truncated in string {i} ({length} bytes)", offset=len(data))
            raw_strings.append((pos, data[pos + 2 : pos + 2 + length]))
            pos += 2 + length
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
                f"CRC mismatch: header says 0x{crc:08x}, body has 0x{actual_crc:08x}", offset=20
            )
        strings = []
        for i, (offset, raw) in enumerate(raw_strings):
            try:
                strings.append(raw.decode("utf-8"))
            except UnicodeDecodeError as err:
                raise IsaError(f"string {i} is not UTF-8: {err.reason}", offset=offset) from None
        descriptors = []
        for i in range(n_desc):
            offset = desc_offset + DESCRIPTOR.size * i
            fields = DESCRIPTOR.unpack_from(data, offset)
            name, kind, fmt, sb, reserved_byte, dim0, dim1, group = fields
            tail = data[offset + 20 : offset + 32]
            if reserved_byte or any(tail):
                raise IsaError(f"descriptor {i}: reserved bytes are not zero", offset=offset)
            if kind not in DescKind._value2member_map_:
                raise IsaError(f"descriptor {i}: unknown kind {kind}", offset=offset + 4)
            desc = Descriptor(name, DescKind(kind), dim0, dim1, fmt, sb, group)
            try:
                desc.check(n_strings)
            except IsaError as err:
                raise IsaError(f"descriptor {i}: {err}", offset=offset) from None
            descriptors.append(desc)
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

    def _canonical_strings(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for d in self.descriptors:
            seen.setdefault(self.strings[d.name], None)
        return tuple(seen)

    def to_asm(self) -> str:
        """Text assembly; ``assemble(p.to_asm()) == p``."""
        self.validate()
        lines: list[str] = []
        if self.strings != self._canonical_strings():
            # Only a string table that is not the descriptors' names in first-use order needs
            # spelling out to round-trip.
            lines += [f".str {_quote(s)}" for s in self.strings]
        for i, d in enumerate(self.descriptors):
            name = _quote(self.strings[d.name])
            if d.kind is DescKind.BIAS:
                lines.append(f".desc d{i} bias {name} {d.dim0}")
            elif d.kind is DescKind.QWEIGHT:
                lines.append(
                    f".desc d{i} qweight {name} {d.dim0}x{d.dim1} fmt={format_name(d.fmt)} "
                    f"sb={d.scale_bits} g={d.group_size}"
                )
            else:
                lines.append(f".desc d{i} {d.kind.name.lower()} {name} {d.dim0}x{d.dim1}")
        depth = 0
        for instr in self.instructions:
            if isinstance(instr, EndLoop):
                depth -= 1
            lines.append("  " * depth + _instr_to_asm(instr))
            if isinstance(instr, Loop):
                depth += 1
        return "\n".join(lines) + "\n"

    disassemble = to_asm


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _level(lvl: int | None) -> str:
    return "-" if lvl is None else f"L{lvl}"


def _instr_to_asm(instr: Instruction) -> str:
    match instr:
        case CfgArray(rows, cols, tiles):
            return f"cfg.array rows={rows} cols={cols} tiles={tiles}"
        case CfgSv(slot, value):
            return f"cfg.sv slot={slot} value={value}"
        case CfgFmt(fmt, sb, group_size):
            return f"cfg.fmt fmt={format_name(fmt)} sb={sb} g={group_size}"
        case CfgKchunk(kc):
            return f"cfg.kchunk {kc}"
        case CfgMblock(rows):
            return f"cfg.mblock rows={rows}"
        case Loop(lvl, count):
            return f"loop L{lvl} count={count}"
        case EndLoop(lvl):
            return f"endloop L{lvl}"
        case LdAct(desc, row_lvl, k_lvl):
            return f"ld.act d{desc} row={_level(row_lvl)} k={_level(k_lvl)}"
        case LdWgt(desc, col_lvl, k_lvl):
            return f"ld.wgt d{desc} col={_level(col_lvl)} k={_level(k_lvl)}"
        case Drain(bias):
            return f"drain bias={'-' if bias is None else f'd{bias}'}"
        case StOut(desc, row_lvl, col_lvl):
            return f"st.out d{desc} row={_level(row_lvl)} col={_level(col_lvl)}"
        case _:
            return instr.MNEMONIC


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


class _Assembler:
    def __init__(self) -> None:
        self.explicit_strings: list[str] | None = None
        self.desc_labels: dict[str, int] = {}
        self.desc_specs: list[tuple[int, str, DescKind, int, int, int, int, int]] = []
        self.instructions: list[Instruction] = []
        self.instr_lines: list[int] = []

    def run(self, text: str) -> Program:
        for number, raw_line in enumerate(text.splitlines(), start=1):
            tokens = _tokens(_strip_comment(raw_line), number)
            if not tokens:
                continue
            head = tokens[0]
            if head == ".str":
                self._string(tokens, number)
            elif head == ".desc":
                self._descriptor(tokens, number)
            elif head.startswith("."):
                raise IsaError(f"unknown directive {head!r}", line=number)
            else:
                if head not in BY_MNEMONIC:
                    raise IsaError(f"unknown mnemonic {head!r}", line=number)
                try:
                    instr = self._instruction(BY_MNEMONIC[head], tokens[1:], number)
                    instr.check()
                except IsaError as err:
                    if err.line is not None:
                        raise
                    raise IsaError(str(err), line=number) from None
                self.instructions.append(instr)
                self.instr_lines.append(number)
        return self._program()

    def _string(self, tokens: list[str], line: int) -> None:
        if len(tokens) != 2:
            raise IsaError('.str takes one quoted name: .str "name"', line=line)
        if self.explicit_strings is None:
            self.explicit_strings = []
        self.explicit_strings.append(_unquote(tokens[1], line))

    def _descriptor(self, tokens: list[str], line: int) -> None:
        usage = '.desc LABEL KIND "name" DIM0xDIM1 [fmt=NAME sb=N g=N]'
        if len(tokens) < 5:
            raise IsaError(f"too few operands; usage: {usage}", line=line)
        label, kind_text, name_token, dims = tokens[1:5]
        if label in self.desc_labels:
            raise IsaError(f"descriptor label {label!r} defined twice", line=line)
        kinds = {k.name.lower(): k for k in DescKind}
        if kind_text not in kinds:
            raise IsaError(
                f"unknown descriptor kind {kind_text!r}; valid: {sorted(kinds)}", line=line
            )
        kind = kinds[kind_text]
        name = _unquote(name_token, line)
        if kind is DescKind.BIAS:
            dim0, dim1 = _int(dims, "bias length", line), 1
        else:
            parts = dims.split("x")
            if len(parts) != 2:
                raise IsaError(f"expected DIM0xDIM1, got {dims!r}", line=line)
            dim0, dim1 = (_int(p, "dimension", line) for p in parts)
        options = _options(tokens[5:], line)
        fmt = sb = group = 0
        if kind is DescKind.QWEIGHT:
            missing = {"fmt", "sb", "g"} - options.keys()
            if missing:
                raise IsaError(f"qweight descriptor needs {sorted(missing)}", line=line)
            try:
                fmt = format_id(options.pop("fmt"))
            except IsaError as err:
                raise IsaError(str(err), line=line) from None
            sb = _int(options.pop("sb"), "sb", line)
            group = _int(options.pop("g"), "g", line)
        if options:
            raise IsaError(f"unexpected options {sorted(options)}", line=line)
        self.desc_labels[label] = len(self.desc_specs)
        self.desc_specs.append((line, name, kind, dim0, dim1, fmt, sb, group))

    def _instruction(self, cls: type[Instruction], args: list[str], line: int) -> Instruction:
        if cls is CfgKchunk:
            if len(args) != 1:
                raise IsaError("cfg.kchunk takes one operand: cfg.kchunk KC", line=line)
            value = args[0].removeprefix("kc=")
            return CfgKchunk(_int(value, "kc", line))
        if cls in (Loop, EndLoop):
            if not args:
                raise IsaError(f"{cls.MNEMONIC} needs a level operand Ln", line=line)
            lvl = self._level(args[0], line)
            if lvl is None:
                raise IsaError(f"{cls.MNEMONIC} needs a level, not '-'", line=line)
            options = _options(args[1:], line)
            if cls is EndLoop:
                _no_extra(options, line)
                return EndLoop(lvl)
            count = _int(_take(options, "count", line), "count", line)
            _no_extra(options, line)
            return Loop(lvl, count)
        if cls in (LdAct, LdWgt, StOut):
            if not args:
                raise IsaError(f"{cls.MNEMONIC} needs a descriptor operand", line=line)
            desc = self._desc_ref(args[0], line)
            options = _options(args[1:], line)
            first, second = {LdAct: ("row", "k"), LdWgt: ("col", "k"), StOut: ("row", "col")}[cls]
            lvl_a = self._level(_take(options, first, line), line)
            lvl_b = self._level(_take(options, second, line), line)
            _no_extra(options, line)
            return cls(desc, lvl_a, lvl_b)
        options = _options(args, line)
        if cls is Drain:
            bias_text = _take(options, "bias", line)
            _no_extra(options, line)
            return Drain(None if bias_text == "-" else self._desc_ref(bias_text, line))
        if cls is CfgArray:
            instr: Instruction = CfgArray(
                *(_int(_take(options, k, line), k, line) for k in ("rows", "cols", "tiles"))
            )
        elif cls is CfgSv:
            instr = CfgSv(*(_int(_take(options, k, line), k, line) for k in ("slot", "value")))
        elif cls is CfgMblock:
            instr = CfgMblock(_int(_take(options, "rows", line), "rows", line))
        elif cls is CfgFmt:
            try:
                fmt = format_id(_take(options, "fmt", line))
            except IsaError as err:
                raise IsaError(str(err).split(": ", 1)[-1], line=line) from None
            instr = CfgFmt(
                fmt,
                _int(_take(options, "sb", line), "sb", line),
                _int(_take(options, "g", line), "g", line),
            )
        else:
            instr = cls()
        _no_extra(options, line)
        return instr

    def _level(self, token: str, line: int) -> int | None:
        if token == "-":
            return None
        if not re.fullmatch(r"L[0-9]+", token):
            raise IsaError(f"expected a loop level L0..L7 or '-', got {token!r}", line=line)
        lvl = int(token[1:])
        if lvl >= NUM_LOOP_LEVELS:
            raise IsaError(f"loop level {token} out of range L0..L7", line=line)
        return lvl

    def _desc_ref(self, token: str, line: int) -> int:
        if token not in self.desc_labels:
            raise IsaError(f"unknown descriptor {token!r} (define it with .desc first)", line=line)
        return self.desc_labels[token]

    def _program(self) -> Program:
        if self.explicit_strings is not None:
            strings = list(self.explicit_strings)
        else:
            strings = list(dict.fromkeys(spec[1] for spec in self.desc_specs))
        descriptors = []
        for line, name, kind, dim0, dim1, fmt, sb, group in self.desc_specs:
            if name not in strings:
                raise IsaError(f"tensor name {name!r} is not in the .str table", line=line)
            desc = Descriptor(strings.index(name), kind, dim0, dim1, fmt, sb, group)
            try:
                desc.check(len(strings))
            except IsaError as err:
                raise IsaError(str(err), line=line) from None
            descriptors.append(desc)
        program = Program(tuple(strings), tuple(descriptors), tuple(self.instructions))
        try:
            program.validate()
        except IsaError as err:
            if err.index is not None and err.index < len(self.instr_lines):
                message = str(err).split(": ", 1)[-1]
                raise IsaError(message, line=self.instr_lines[err.index]) from None
            last = self.instr_lines[-1] if self.instr_lines else 1
            raise IsaError(str(err).split(": ", 1)[-1], line=last) from None
        return program


def _options(tokens: Iterable[str], line: int) -> dict[str, str]:
    options: dict[str, str] = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep or not key or not value:
            raise IsaError(f"expected key=value, got {token!r}", line=line)
        if key in options:
            raise IsaError(f"option {key!r} given twice", line=line)
        options[key] = value
    return options


def _take(options: dict[str, str], key: str, line: int) -> str:
    if key not in options:
        raise IsaError(f"missing operand {key}=", line=line)
    return options.pop(key)


def _no_extra(options: dict[str, str], line: int) -> None:
    if options:
        raise IsaError(f"unexpected operands {sorted(options)}", line=line)


def assemble(text: str) -> Program:
    """Parse text assembly into a validated Program; IsaError names the line."""
    return _Assembler().run(text)


__all__ = [
    "MAGIC",
    "VERSION",
    "NUM_LOOP_LEVELS",
    "NUM_SV_SLOTS",
    "NO_LEVEL_FIELD",
    "NO_BIAS_FIELD",
    "IsaError",
    "DescKind",
    "Descriptor",
    "Instruction",
    "Nop",
    "Halt",
    "CfgArray",
    "CfgSv",
    "CfgFmt",
    "CfgKchunk",
    "CfgMblock",
    "Loop",
    "EndLoop",
    "LdAct",
    "LdWgt",
    "AccClr",
    "Mac",
    "Drain",
    "StOut",
    "INSTRUCTION_TYPES",
    "BY_OPCODE",
    "BY_MNEMONIC",
    "decode_word",
    "Program",
    "assemble",
    "format_id",
    "format_name",
]
