"""The bsisa instruction set as data: opcodes, mnemonics, bit fields and container layouts.

This module is the one description of the ISA of ``docs/ISA.md``. Each instruction is a
frozen dataclass whose class variables say what the hardware sees: ``OPCODE``, ``MNEMONIC``
and ``FIELDS``, a tuple of :class:`Field` (name, bit range, :class:`FieldKind`, the keyword
the text syntaxes spell it with). Everything else is derived from these tables:

* the word encoder/decoder (:meth:`Instruction.encode`, :func:`decode_word`) and every field
  range check (:meth:`Instruction.check`), here;
* the binary container (:mod:`bitmod.runtime.isa.program`), from :data:`HEADER_LAYOUT` and
  :data:`DESCRIPTOR_LAYOUT`;
* the ``.s`` assembler and printer (:mod:`bitmod.runtime.isa.assembly`);
* the ``bsisa`` dialect's instruction ops, their properties and their declarative assembly
  format (:mod:`bitmod.dialects.bsisa`);
* the SystemVerilog package ``bsisa_pkg`` (:mod:`bitmod.backends.rtl.isa_package`).

The only range rules written by hand are the ones a bit width cannot express (``rows >= 1``,
group sizes a multiple of 4, ...): the ``check`` overrides of the instructions that have them.
Imports nothing of ours but the format registry (for the format ids).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, fields
from functools import cached_property
from typing import ClassVar

from bitmod.runtime.formats.registry import FORMAT_IDS

#: Bits of one instruction word (little-endian in the binary).
WORD_BITS = 64
#: The opcode is the top byte of the word: bits [63:56].
OPCODE_LSB = 56
OPCODE_WIDTH = 8
#: Loop levels L0..L7: a loop nest is at most this deep.
NUM_LOOP_LEVELS = 8
#: Special-value registers SV[0..3].
NUM_SV_SLOTS = 4
#: A level field holding this value names no loop ("index 0"; for a load's K: all of K).
NO_LEVEL_FIELD = 0xF
#: An optional descriptor field (the bias of ``drain``) holding this value names none.
NO_BIAS_FIELD = 0xFFFF


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
    """Kind of a tensor descriptor (u8 in the binary); its lower-case name is its spelling."""

    ACT = 0  # FP16 [M, K] activations
    OUT = 1  # FP16 [M, N] outputs
    QWEIGHT = 2  # quantized [N, K] weight in the parameter archive
    BIAS = 3  # FP16 [N]

    @property
    def spelling(self) -> str:
        """How the assembly and the IR write the kind: ``act``, ``out``, ``qweight``, ``bias``."""
        return self.name.lower()


# --- weight formats ----------------------------------------------------------------------------


def check_format_id(fmt: int) -> None:
    """IsaError unless ``fmt`` is a registered format id."""
    if fmt not in FORMAT_IDS.values():
        raise IsaError(f"unknown weight format id {fmt}")


def format_name(fmt_id: int) -> str:
    """Format name of a format id (IsaError if unknown)."""
    for name, value in FORMAT_IDS.items():
        if value == fmt_id:
            return name
    raise IsaError(f"unknown weight format id {fmt_id}")


def format_id(name: str) -> int:
    """Format id of a format name (IsaError listing the valid names if unknown)."""
    if name not in FORMAT_IDS:
        raise IsaError(f"unknown weight format {name!r}; valid: {', '.join(sorted(FORMAT_IDS))}")
    return FORMAT_IDS[name]


# --- fields ------------------------------------------------------------------------------------


class FieldKind(enum.Enum):
    """What the bits of a field mean (and so how every syntax spells its value)."""

    UNSIGNED = "unsigned"
    """A plain integer in ``[0, 2^width)``."""
    SIGNED = "signed"
    """A two's complement integer in ``[-2^(width-1), 2^(width-1))``."""
    LOOP_LEVEL = "loop level"
    """The level ``0..7`` a ``loop`` opens or an ``endloop`` closes (spelt ``L<n>``)."""
    LEVEL = "level"
    """A loop level ``0..7`` that must be open at the instruction, or :data:`NO_LEVEL_FIELD`
    for none (``None`` in Python, ``-`` in the text)."""
    DESCRIPTOR = "descriptor"
    """An index into the descriptor table, of kind :attr:`Field.desc_kind`."""
    OPTIONAL_DESCRIPTOR = "optional descriptor"
    """A descriptor index of kind :attr:`Field.desc_kind`, or :data:`NO_BIAS_FIELD` for none
    (``None`` in Python)."""
    FORMAT = "format"
    """A weight format id of the registry (spelt by its format name)."""


@dataclass(frozen=True)
class Field:
    """Bits ``[hi:lo]`` of an instruction word.

    ``name`` is the attribute of the instruction dataclass (and the property of its bsisa op);
    ``keyword`` is how the ``.s`` assembly (``keyword=value``) and the IR (``keyword value``)
    spell it. A field that is ``bare_in_asm`` / ``bare_in_ir`` is written as its value alone,
    without the keyword, in that syntax.
    """

    name: str
    hi: int
    lo: int
    kind: FieldKind
    keyword: str
    desc_kind: DescKind | None = None
    bare_in_asm: bool = False
    bare_in_ir: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.lo <= self.hi < OPCODE_LSB:
            raise ValueError(f"field {self.name}: bits [{self.hi}:{self.lo}] overlap the opcode")
        is_reference = self.kind in (FieldKind.DESCRIPTOR, FieldKind.OPTIONAL_DESCRIPTOR)
        if is_reference != (self.desc_kind is not None):
            raise ValueError(f"field {self.name}: a desc_kind goes with descriptor fields only")
        if self.none_value is not None and self.none_value != self.mask:
            raise ValueError(f"field {self.name}: its 'none' value must be all ones")

    @property
    def width(self) -> int:
        return self.hi - self.lo + 1

    @property
    def mask(self) -> int:
        """The field's bits, unshifted."""
        return (1 << self.width) - 1

    @property
    def optional(self) -> bool:
        """Whether the field may be None (stored as :attr:`none_value`)."""
        return self.kind in (FieldKind.LEVEL, FieldKind.OPTIONAL_DESCRIPTOR)

    @property
    def none_value(self) -> int | None:
        """The raw value that stands for None, for optional fields."""
        if self.kind is FieldKind.LEVEL:
            return NO_LEVEL_FIELD
        if self.kind is FieldKind.OPTIONAL_DESCRIPTOR:
            return NO_BIAS_FIELD
        return None

    @property
    def is_level(self) -> bool:
        return self.kind in (FieldKind.LOOP_LEVEL, FieldKind.LEVEL)

    def limits(self) -> tuple[int, int]:
        """The values the bits can hold (before any rule on top of the width)."""
        if self.kind is FieldKind.SIGNED:
            return -(1 << (self.width - 1)), (1 << (self.width - 1)) - 1
        return 0, self.mask

    def check(self, mnemonic: str, value: int | None) -> None:
        """IsaError (without a location) unless ``value`` is a legal value of this field."""
        if value is None:
            if self.optional:
                return
            raise IsaError(f"{mnemonic}: field {self.name} must be an int, got None")
        if not isinstance(value, int) or isinstance(value, bool):
            raise IsaError(f"{mnemonic}: field {self.name} must be an int, got {value!r}")
        if self.is_level and not 0 <= value < NUM_LOOP_LEVELS:
            raise IsaError(f"{mnemonic}: loop level {value} not in [0, 7] or None")
        if self.none_value is not None and value == self.none_value:
            raise IsaError(f"{mnemonic}: {self.name} descriptor {value} is reserved for none")
        low, high = self.limits()
        if not low <= value <= high:
            raise IsaError(f"{mnemonic}: field {self.name}={value} out of range [{low}, {high}]")
        if self.kind is FieldKind.FORMAT:
            check_format_id(value)

    def pack(self, value: int | None) -> int:
        """The field's bits in place (None -> :attr:`none_value`); call :meth:`check` first."""
        raw = self.none_value if value is None else value
        assert raw is not None, f"field {self.name} is not optional"
        return (raw & self.mask) << self.lo

    def unpack(self, word: int) -> int | None:
        """The field's value in ``word`` (None for :attr:`none_value`), unchecked."""
        raw = (word >> self.lo) & self.mask
        if raw == self.none_value:
            return None
        if self.kind is FieldKind.SIGNED and raw >> (self.width - 1):
            raw -= 1 << self.width
        return raw


# --- instructions ------------------------------------------------------------------------------


class Instruction:
    """Base of the instruction dataclasses: encode, decode and check, driven by ``FIELDS``.

    A subclass's dataclass fields are exactly the names of its ``FIELDS``, in order.
    """

    OPCODE: ClassVar[int]
    MNEMONIC: ClassVar[str]
    FIELDS: ClassVar[tuple[Field, ...]] = ()

    def values(self) -> dict[str, int | None]:
        """Field values by field name (None: an optional field left out)."""
        return {field.name: getattr(self, field.name) for field in self.FIELDS}

    def raw_fields(self) -> dict[str, int]:
        """Field values as stored in the word (levels None -> 0xF, bias None -> 0xFFFF)."""
        raw = {}
        for field in self.FIELDS:
            value = getattr(self, field.name)
            raw[field.name] = field.none_value if value is None else value
        return raw

    def encode(self) -> int:
        self.check()
        word = self.OPCODE << OPCODE_LSB
        for field in self.FIELDS:
            word |= field.pack(getattr(self, field.name))
        return word

    def check(self) -> None:
        """Range checks of every field, then the rules beyond the field widths (IsaError
        without a location). Subclasses with such rules extend this."""
        for field in self.FIELDS:
            field.check(self.MNEMONIC, getattr(self, field.name))

    @classmethod
    def reserved_mask(cls) -> int:
        """The bits of the word that belong to no field (they must be zero)."""
        used = ((1 << OPCODE_WIDTH) - 1) << OPCODE_LSB
        for field in cls.FIELDS:
            used |= field.mask << field.lo
        return ((1 << WORD_BITS) - 1) & ~used

    @classmethod
    def from_word(cls, word: int) -> Instruction:
        reserved = word & cls.reserved_mask()
        if reserved:
            raise IsaError(f"{cls.MNEMONIC}: reserved bits set (0x{reserved:016x})")
        instr = cls(**{field.name: field.unpack(word) for field in cls.FIELDS})
        instr.check()
        return instr

    def levels(self) -> tuple[int, ...]:
        """Loop levels this instruction reads (must be open loops)."""
        return tuple(
            getattr(self, f.name)
            for f in self.FIELDS
            if f.kind is FieldKind.LEVEL and getattr(self, f.name) is not None
        )

    def descriptor_refs(self) -> tuple[tuple[int, DescKind], ...]:
        """(descriptor index, required kind) pairs this instruction references."""
        refs = []
        for field in self.FIELDS:
            value = getattr(self, field.name)
            if field.desc_kind is not None and value is not None:
                refs.append((value, field.desc_kind))
        return tuple(refs)


def _level(name: str, hi: int, lo: int, keyword: str) -> Field:
    return Field(name, hi, lo, FieldKind.LEVEL, keyword)


def _desc(kind: DescKind) -> Field:
    return Field(
        "desc", 55, 40, FieldKind.DESCRIPTOR, "desc", kind, bare_in_asm=True, bare_in_ir=True
    )


def _loop_level() -> Field:
    return Field("lvl", 55, 53, FieldKind.LOOP_LEVEL, "lvl", bare_in_asm=True, bare_in_ir=True)


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
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("rows", 55, 48, FieldKind.UNSIGNED, "rows"),
        Field("cols", 47, 40, FieldKind.UNSIGNED, "cols"),
        Field("tiles", 39, 24, FieldKind.UNSIGNED, "tiles"),
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
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("slot", 55, 54, FieldKind.UNSIGNED, "slot"),
        Field("value", 47, 32, FieldKind.SIGNED, "value"),
    )


@dataclass(frozen=True)
class CfgFmt(Instruction):
    """Weight format id, scale bits and group size along K."""

    fmt: int
    sb: int
    group_size: int
    OPCODE: ClassVar[int] = 0x12
    MNEMONIC: ClassVar[str] = "cfg.fmt"
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("fmt", 55, 48, FieldKind.FORMAT, "fmt", bare_in_ir=True),
        Field("sb", 47, 44, FieldKind.UNSIGNED, "sb"),
        Field("group_size", 39, 24, FieldKind.UNSIGNED, "g"),
    )

    def check(self) -> None:
        super().check()
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
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("kc", 31, 0, FieldKind.UNSIGNED, "kc", bare_in_asm=True, bare_in_ir=True),
    )

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
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("rows", 15, 0, FieldKind.UNSIGNED, "rows", bare_in_ir=True),
    )

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
    FIELDS: ClassVar[tuple[Field, ...]] = (
        _loop_level(),
        Field("count", 31, 0, FieldKind.UNSIGNED, "count"),
    )
    #: Whether ``L[lvl]`` counts down (:class:`LoopDown`).
    DESCENDING: ClassVar[bool] = False

    def check(self) -> None:
        super().check()
        if self.count < 1:
            raise IsaError(f"{self.MNEMONIC}: count must be >= 1")

    def first_index(self) -> int:
        """``L[lvl]`` in the first iteration."""
        return self.count - 1 if self.DESCENDING else 0

    def next_index(self, index: int) -> int | None:
        """``L[lvl]`` after an iteration at ``index``; None when the loop is done."""
        if self.DESCENDING:
            return index - 1 if index > 0 else None
        return index + 1 if index + 1 < self.count else None


@dataclass(frozen=True)
class LoopDown(Loop):
    """Open loop level ``lvl`` with ``count`` iterations; ``L[lvl]`` counts count-1..0.

    The same blocks as ``loop`` in the opposite order: a schedule whose last block is narrow
    (a remainder of rows or channels) can run it first, while the full blocks' loads stream.
    """

    OPCODE: ClassVar[int] = 0x22
    MNEMONIC: ClassVar[str] = "loop.down"
    DESCENDING: ClassVar[bool] = True


@dataclass(frozen=True)
class EndLoop(Instruction):
    """Close loop level ``lvl`` (the innermost open one)."""

    lvl: int
    OPCODE: ClassVar[int] = 0x21
    MNEMONIC: ClassVar[str] = "endloop"
    FIELDS: ClassVar[tuple[Field, ...]] = (_loop_level(),)


@dataclass(frozen=True)
class LdAct(Instruction):
    """Load act rows [L_row*MR, +MR), K [L_k*KC, +KC) of an act descriptor."""

    desc: int
    row_lvl: int | None
    k_lvl: int | None
    OPCODE: ClassVar[int] = 0x30
    MNEMONIC: ClassVar[str] = "ld.act"
    FIELDS: ClassVar[tuple[Field, ...]] = (
        _desc(DescKind.ACT),
        _level("row_lvl", 39, 36, "row"),
        _level("k_lvl", 35, 32, "k"),
    )


@dataclass(frozen=True)
class LdWgt(Instruction):
    """Load channels [L_col*COLS*TILES, +COLS*TILES), K chunk L_k, of a qweight descriptor."""

    desc: int
    col_lvl: int | None
    k_lvl: int | None
    OPCODE: ClassVar[int] = 0x31
    MNEMONIC: ClassVar[str] = "ld.wgt"
    FIELDS: ClassVar[tuple[Field, ...]] = (
        _desc(DescKind.QWEIGHT),
        _level("col_lvl", 39, 36, "col"),
        _level("k_lvl", 35, 32, "k"),
    )


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
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("bias", 55, 40, FieldKind.OPTIONAL_DESCRIPTOR, "bias", DescKind.BIAS),
    )


@dataclass(frozen=True)
class StOut(Instruction):
    """Store the output block to an out descriptor at row block L_row, column block L_col."""

    desc: int
    row_lvl: int | None
    col_lvl: int | None
    OPCODE: ClassVar[int] = 0x50
    MNEMONIC: ClassVar[str] = "st.out"
    FIELDS: ClassVar[tuple[Field, ...]] = (
        _desc(DescKind.OUT),
        _level("row_lvl", 39, 36, "row"),
        _level("col_lvl", 35, 32, "col"),
    )


#: Every instruction, in opcode order: the ISA table.
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
    LoopDown,
    LdAct,
    LdWgt,
    AccClr,
    Mac,
    Drain,
    StOut,
)
BY_OPCODE: dict[int, type[Instruction]] = {t.OPCODE: t for t in INSTRUCTION_TYPES}
BY_MNEMONIC: dict[str, type[Instruction]] = {t.MNEMONIC: t for t in INSTRUCTION_TYPES}


def _check_table() -> None:
    """The table is consistent: distinct opcodes and mnemonics, fields that do not overlap,
    dataclass fields that are the ISA fields in order, distinct keywords."""
    if len(BY_OPCODE) != len(INSTRUCTION_TYPES) or len(BY_MNEMONIC) != len(INSTRUCTION_TYPES):
        raise ValueError("bsisa: opcodes and mnemonics must be distinct")
    for cls in INSTRUCTION_TYPES:
        if not 0 <= cls.OPCODE < 1 << OPCODE_WIDTH:
            raise ValueError(f"{cls.MNEMONIC}: opcode 0x{cls.OPCODE:x} does not fit 8 bits")
        if [f.name for f in fields(cls)] != [f.name for f in cls.FIELDS]:  # type: ignore[arg-type]
            raise ValueError(f"{cls.MNEMONIC}: dataclass fields differ from FIELDS")
        if len({f.keyword for f in cls.FIELDS}) != len(cls.FIELDS):
            raise ValueError(f"{cls.MNEMONIC}: two fields share a keyword")
        used = 0
        for field in cls.FIELDS:
            if used & field.mask << field.lo:
                raise ValueError(f"{cls.MNEMONIC}: field {field.name} overlaps another")
            used |= field.mask << field.lo


_check_table()


def decode_word(word: int) -> Instruction:
    """Decode one instruction word (IsaError without a location; callers add it)."""
    opcode = word >> OPCODE_LSB
    if opcode not in BY_OPCODE:
        raise IsaError(f"unknown opcode 0x{opcode:02x}")
    return BY_OPCODE[opcode].from_word(word)


# --- the binary container ----------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """A little-endian record of the binary container: named ``struct`` items in order.

    Items whose code is a pad (``"12x"``) hold reserved zero bytes and carry no value.
    """

    name: str
    items: tuple[tuple[str, str], ...]

    @cached_property
    def struct(self) -> struct.Struct:
        return struct.Struct("<" + "".join(code for _, code in self.items))

    @property
    def size(self) -> int:
        return self.struct.size

    @cached_property
    def offsets(self) -> dict[str, tuple[int, int]]:
        """``name -> (byte offset, size in bytes)`` of every item, pads included."""
        result = {}
        offset = 0
        for name, code in self.items:
            size = struct.calcsize("<" + code)
            result[name] = (offset, size)
            offset += size
        return result

    def offset(self, name: str) -> int:
        return self.offsets[name][0]


MAGIC = b"BSIS"
VERSION = 1

#: The file header; ``crc`` is the CRC-32 of every byte after the header.
HEADER_LAYOUT = Layout(
    "header",
    (
        ("magic", "4s"),
        ("version", "H"),
        ("reserved", "H"),
        ("n_strings", "I"),
        ("n_desc", "I"),
        ("n_instr", "I"),
        ("crc", "I"),
    ),
)
#: One entry of the descriptor table (``kind``: a :class:`DescKind` code).
DESCRIPTOR_LAYOUT = Layout(
    "descriptor",
    (
        ("name", "I"),
        ("kind", "B"),
        ("fmt", "B"),
        ("scale_bits", "B"),
        ("reserved", "B"),
        ("dim0", "I"),
        ("dim1", "I"),
        ("group_size", "I"),
        ("reserved_tail", "12x"),
    ),
)
#: A string of the string table: this length, then that many UTF-8 bytes.
STRING_LENGTH = struct.Struct("<H")
#: One instruction word.
INSTRUCTION = struct.Struct("<Q")

if HEADER_LAYOUT.size != 24 or DESCRIPTOR_LAYOUT.size != 32 or INSTRUCTION.size * 8 != WORD_BITS:
    raise ValueError("bsisa: container layout sizes differ from docs/ISA.md")
