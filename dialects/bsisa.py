"""The ``bsisa`` dialect: the BitMoD bit-serial ISA of ``docs/ISA.md`` as xDSL ops.

One op per instruction, so that a ``bsisa.program`` maps 1:1 onto
:class:`bitmod.runtime.isa.Program` (``bitmod.backends.emit``):

* ``bsisa.program @name { ... }`` holds the descriptor table (``bsisa.desc``, in table
  order) followed by the code, which ends with ``bsisa.halt``;
* ``bsisa.loop L<lvl> count <n> { ... }`` is the ``loop`` / ``endloop`` pair with its body
  as a region, so loops stay loops in the IR exactly as in the binary;
* the configuration instructions ``bsisa.cfg.array``, ``bsisa.cfg.sv``, ``bsisa.cfg.fmt``,
  ``bsisa.cfg.kchunk``, ``bsisa.cfg.mblock``; the data movers ``bsisa.ld.act``, ``bsisa.ld.wgt``,
  ``bsisa.st.out``; the compute instructions ``bsisa.acc.clr``, ``bsisa.mac``,
  ``bsisa.drain``; ``bsisa.nop`` and ``bsisa.halt``.

Field layouts, ranges and the encoding are not repeated here: every instruction op converts
to and from its :mod:`bitmod.runtime.isa` dataclass (``to_isa`` / :func:`ops_from_isa`) and
its verifier runs that dataclass's range check, so the IR accepts exactly what the binary
can hold.

Two ops sit between the tensor world and the program:

* ``bsisa.tiled_matmul`` is what ``bitmod-tile`` makes of a quantized ``bitmod.matmul``:
  the same operands and result, a ``#bsisa.tiling`` attribute (array geometry, K chunk,
  block counts, buffer footprint) and the output-stationary schedule as a region of
  ``bsisa.loop`` / ``ld`` / ``mac`` / ``drain`` / ``st.out`` ops whose tensor operands are
  the role names ``@act``, ``@weight``, ``@bias`` and ``@out``;
* ``bsisa.launch`` is what ``bitmod-lower-to-isa`` leaves in the host function in place of
  a lowered matmul: it binds the host tensors to the descriptors of one *segment* of the
  program (segment ``i`` starts at the ``i``-th ``bsisa.cfg.array``).

Loop levels are printed ``L0`` .. ``L7``; a missing level (the ISA's ``0xF``, "no loop:
index 0"; for the K of a load: all of K) is printed ``-``. Beyond field ranges, the verifier
of a whole program or tiled matmul checks that the loops cover the tensors exactly: a loop
indexing the rows of an ``[M, K]`` activation runs ``ceil(M / MR)`` times (``MR`` rows a block:
``cfg.mblock``, else ROWS), one indexing output channels ``ceil(N / (COLS·TILES))`` times, one
indexing K ``ceil(K / KC)`` times, with ``KC`` a multiple of the group size ``G``; a row or
column level left out (``-``) needs the whole dimension in one block. Loads before the
``cfg`` instruction they depend on are errors too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar, Self

from bitmod.dialects.bitmod import QWeightType
from bitmod.runtime import isa
from bitmod.runtime.arch.rules import block_rows_error, kchunk_error
from bitmod.runtime.arch.schedule import ACT_BYTES, Schedule, WeightLayout
from xdsl.dialects.builtin import (
    I64,
    ArrayAttr,
    DenseArrayBase,
    IntAttr,
    IntegerAttr,
    StringAttr,
    SymbolRefAttr,
    TensorType,
    i64,
)
from xdsl.ir import (
    Attribute,
    Block,
    Dialect,
    Operation,
    ParametrizedAttribute,
    Region,
    SSAValue,
)
from xdsl.irdl import (
    IRDLOperation,
    irdl_attr_definition,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    opt_prop_def,
    prop_def,
    region_def,
    result_def,
    traits_def,
)
from xdsl.parser import AttrParser, Parser, UnresolvedOperand
from xdsl.printer import Printer
from xdsl.traits import IsolatedFromAbove, NoTerminator, SymbolOpInterface, SymbolTable
from xdsl.utils.exceptions import VerifyException

#: Loop levels L0..L7; a loop nest is at most this deep.
MAX_LOOP_DEPTH = isa.NUM_LOOP_LEVELS

#: Descriptor kinds by name, in the order of their binary kind codes.
DESC_KINDS: dict[str, isa.DescKind] = {kind.name.lower(): kind for kind in isa.DescKind}

#: Symbol name of the program ``bitmod-lower-to-isa`` makes.
DEFAULT_PROGRAM_NAME = "program"


def _int(value: int) -> IntegerAttr:
    return IntegerAttr(value, i64)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _isa_check(check: Callable[[], object]) -> None:
    """Run a :mod:`bitmod.runtime.isa` range check, reporting its error as the op's."""
    try:
        check()
    except isa.IsaError as error:
        raise VerifyException(str(error)) from None


# --------------------------------------------------------------------------------------------
# Printing / parsing helpers
# --------------------------------------------------------------------------------------------


def _print_level(printer: Printer, level: int | None) -> None:
    printer.print_string("-" if level is None else f"L{level}")


_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


def _parse_int(parser: Parser, context: str) -> int:
    """An integer that fits the i64 properties (a parse error at its position otherwise;
    the field's own range is the verifier's business)."""
    pos = parser.pos
    value = parser.parse_integer(allow_boolean=False, context_msg=context)
    if not _I64_MIN <= value <= _I64_MAX:
        parser.raise_error(f"integer {value} does not fit 64 bits{context}", pos, parser.pos)
    return value


def _parse_level(parser: Parser) -> int | None:
    if parser.parse_optional_punctuation("-") is not None:
        return None
    pos = parser.pos
    ident = parser.parse_identifier(" (a loop level L0..L7 or -)")
    if len(ident) < 2 or ident[0] != "L" or not ident[1:].isdigit() or len(ident) > 4:
        parser.raise_error(f"expected a loop level L0..L7 or -, got {ident!r}", pos, parser.pos)
    return int(ident[1:])


def _parse_keyword_int(parser: Parser, keyword: str) -> int:
    parser.parse_keyword(keyword)
    return _parse_int(parser, f" after '{keyword}'")


def _print_extra_attrs(printer: Printer, op: Operation) -> None:
    if op.attributes:
        printer.print_op_attributes(op.attributes)


def _parse_extra_attrs(parser: Parser, op: Operation) -> None:
    op.attributes |= parser.parse_optional_attr_dict()


def _print_extra_attrs_before_region(printer: Printer, op: Operation) -> None:
    # `attributes {...}`: a bare `{` before a region would read as the region.
    if op.attributes:
        printer.print_op_attributes(op.attributes, print_keyword=True)


def _parse_extra_attrs_before_region(parser: Parser) -> dict[str, Attribute]:
    attrs = parser.parse_optional_attr_dict_with_keyword()
    return {} if attrs is None else dict(attrs.data)


def _parse_signature(
    parser: Parser, op_name: str, operands: Sequence[UnresolvedOperand | None]
) -> tuple[list[SSAValue | None], Attribute]:
    """``: (operand types) -> result type`` for the present ``operands`` (None: an optional
    operand left out); the resolved operands in the same places, and the result type."""
    parser.parse_punctuation(":")
    pos = parser.pos
    func_type = parser.parse_function_type()
    inputs = func_type.inputs.data
    expected = sum(operand is not None for operand in operands)
    if len(inputs) != expected or len(func_type.outputs.data) != 1:
        parser.raise_error(
            f"{op_name}: expected {expected} operand types and 1 result type", pos, parser.pos
        )
    types = iter(inputs)
    values = [
        None if operand is None else parser.resolve_operand(operand, next(types))
        for operand in operands
    ]
    return values, func_type.outputs.data[0]


def _move_region(source: Region, target: Region) -> None:
    """Replace the (single, empty) block of ``target`` by the blocks of a parsed region."""
    target.detach_block(target.block).erase()
    source.move_blocks(target)
    if not target.blocks:
        target.add_block(Block())


# --------------------------------------------------------------------------------------------
# The tiling attribute
# --------------------------------------------------------------------------------------------


@irdl_attr_definition
class TilingAttr(ParametrizedAttribute):
    """How ``bitmod-tile`` mapped one matmul onto the array (output-stationary).

    An output block is ``block_rows × (cols·tiles)`` (``block_rows``, the ISA's ``MR``, a
    multiple of ``rows``: the array takes it ``rows`` at a time); a weight block holds ``kc``
    elements of K (a multiple of the group size), an activation block ``act_kc`` (``kc``, or
    all of K when it stays in its buffer while the weight chunks stream past).
    ``m_blocks = ceil(M/block_rows)``, ``n_blocks = ceil(N/(cols·tiles))``,
    ``k_chunks = ceil(K/kc)``. ``act_block_bytes`` and ``weight_block_bytes`` are the buffer
    space of one activation / weight block (:mod:`bitmod.runtime.arch.schedule`).
    """

    name = "bsisa.tiling"

    FIELDS: ClassVar[tuple[str, ...]] = (
        "rows",
        "cols",
        "tiles",
        "block_rows",
        "kc",
        "act_kc",
        "m_blocks",
        "n_blocks",
        "k_chunks",
        "act_block_bytes",
        "weight_block_bytes",
    )

    rows: IntAttr
    cols: IntAttr
    tiles: IntAttr
    block_rows: IntAttr
    kc: IntAttr
    act_kc: IntAttr
    m_blocks: IntAttr
    n_blocks: IntAttr
    k_chunks: IntAttr
    act_block_bytes: IntAttr
    weight_block_bytes: IntAttr

    @classmethod
    def from_schedule(cls, schedule: Schedule, *, rows: int, cols: int, tiles: int) -> TilingAttr:
        """The tiling of ``schedule`` (:mod:`bitmod.runtime.arch.schedule`) on this array."""
        fields = {name: getattr(schedule, name) for name in cls.FIELDS if hasattr(schedule, name)}
        return cls.make(rows=rows, cols=cols, tiles=tiles, **fields)

    @classmethod
    def make(cls, **values: int) -> TilingAttr:
        missing = set(cls.FIELDS) - values.keys()
        extra = values.keys() - set(cls.FIELDS)
        if missing or extra:
            raise ValueError(f"TilingAttr.make: missing {sorted(missing)}, unknown {sorted(extra)}")
        return cls(*(IntAttr(values[name]) for name in cls.FIELDS))

    def get(self, field: str) -> int:
        value = getattr(self, field)
        assert isinstance(value, IntAttr)
        return value.data

    @property
    def block_cols(self) -> int:
        """Output channels of one block: ``cols · tiles``."""
        return self.get("cols") * self.get("tiles")

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> list[Attribute]:
        values: dict[str, int] = {}

        def parse_entry() -> None:
            pos = parser.pos
            key = parser.parse_identifier()
            if key not in cls.FIELDS or key in values:
                parser.raise_error(
                    f"bsisa.tiling: unexpected or repeated field {key!r}; "
                    f"fields are {', '.join(cls.FIELDS)}",
                    pos,
                    parser.pos,
                )
            parser.parse_punctuation("=")
            values[key] = parser.parse_integer(allow_boolean=False)

        pos = parser.pos
        parser.parse_comma_separated_list(parser.Delimiter.ANGLE, parse_entry)
        if missing := [name for name in cls.FIELDS if name not in values]:
            parser.raise_error(f"bsisa.tiling: missing {', '.join(missing)}", pos, parser.pos)
        try:
            cls.check_values(values)
        except VerifyException as error:
            # Reported where the attribute is, as a parse error, not as a bare exception.
            parser.raise_error(str(error), pos, parser.pos)
        return [IntAttr(values[name]) for name in cls.FIELDS]

    def print_parameters(self, printer: Printer) -> None:
        with printer.in_angle_brackets():
            printer.print_string(", ".join(f"{name} = {self.get(name)}" for name in self.FIELDS))

    @classmethod
    def check_values(cls, values: dict[str, int]) -> None:
        for name in cls.FIELDS:
            if values[name] < 1:
                raise VerifyException(f"bsisa.tiling: {name} must be positive, got {values[name]}")
        try:
            isa.CfgArray(values["rows"], values["cols"], values["tiles"]).check()
            isa.CfgKchunk(values["kc"]).check()
            isa.CfgMblock(values["block_rows"]).check()
        except isa.IsaError as error:
            raise VerifyException(f"bsisa.tiling: {error}") from None
        problem = block_rows_error(values["block_rows"], values["rows"])
        if problem:
            raise VerifyException(f"bsisa.tiling: {problem}")

    def verify(self) -> None:
        self.check_values({name: self.get(name) for name in self.FIELDS})


# --------------------------------------------------------------------------------------------
# Containers: program and descriptors
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorInfo:
    """What an instruction needs to know about a tensor operand (descriptor or role)."""

    kind: str
    shape: tuple[int, ...]
    fmt: str | None = None
    scale_bits: int | None = None
    group_size: int | None = None


@irdl_op_definition
class ProgramOp(IRDLOperation):
    """A whole bsisa program: descriptors first, then code ending in ``bsisa.halt``.

    ``strings`` is set only when the binary's string table is not simply the descriptors'
    tensor names in first-use order (``.str`` directives of the assembly); it keeps the
    mapping onto :class:`bitmod.runtime.isa.Program` one to one.
    """

    name = "bsisa.program"

    sym_name = prop_def(StringAttr)
    strings = opt_prop_def(ArrayAttr[StringAttr])
    body = region_def("single_block")

    traits = traits_def(NoTerminator(), SymbolTable(), SymbolOpInterface(), IsolatedFromAbove())

    def __init__(
        self, sym_name: str, ops: Sequence[Operation], strings: Sequence[str] | None = None
    ) -> None:
        properties: dict[str, Attribute] = {"sym_name": StringAttr(sym_name)}
        if strings is not None:
            properties["strings"] = ArrayAttr(StringAttr(s) for s in strings)
        super().__init__(properties=properties, regions=[Region(Block(ops))])

    @property
    def descriptors(self) -> list[DescOp]:
        return [op for op in self.body.block.ops if isinstance(op, DescOp)]

    @property
    def code(self) -> list[InstructionOp]:
        return [op for op in self.body.block.ops if isinstance(op, InstructionOp)]

    def descriptor(self, name: str) -> DescOp | None:
        for desc in self.descriptors:
            if desc.sym_name.data == name:
                return desc
        return None

    def segments(self) -> list[int]:
        """Index in :attr:`code` of every ``bsisa.cfg.array``: a segment starts at each."""
        return [i for i, op in enumerate(self.code) if isinstance(op, CfgArrayOp)]

    def string_table(self) -> tuple[str, ...]:
        """The binary's string table: explicit ``strings`` or the names in first-use order."""
        if self.strings is not None:
            return tuple(s.data for s in self.strings.data)
        return tuple(dict.fromkeys(desc.tensor.data for desc in self.descriptors))

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_symbol_name(self.sym_name.data)
        if self.strings is not None:
            printer.print_string(" strings ")
            printer.print_attribute(self.strings)
        _print_extra_attrs_before_region(printer, self)
        printer.print_string(" ")
        printer.print_region(self.body, print_entry_block_args=False)

    @classmethod
    def parse(cls, parser: Parser) -> Self:
        sym_name = parser.parse_symbol_name()
        strings = None
        if parser.parse_optional_keyword("strings"):
            pos = parser.pos
            table = parser.parse_attribute()
            if not isinstance(table, ArrayAttr) or not all(
                isinstance(s, StringAttr) for s in table.data
            ):
                parser.raise_error("expected an array of strings", pos, parser.pos)
            strings = [s.data for s in table.data if isinstance(s, StringAttr)]
        attrs = _parse_extra_attrs_before_region(parser)
        region = parser.parse_region()
        op = cls(sym_name.data, [], strings)
        _move_region(region, op.body)
        op.attributes |= attrs
        return op

    def verify_(self) -> None:
        ops = list(self.body.block.ops)
        seen_code = False
        for op in ops:
            if isinstance(op, DescOp):
                if seen_code:
                    raise VerifyException(
                        f"descriptor @{op.sym_name.data} after the first "
                        "instruction; descriptors come first"
                    )
            elif isinstance(op, InstructionOp):
                seen_code = True
            else:
                raise VerifyException(f"{op.name} is not a bsisa instruction")
        if len(self.descriptors) >= isa.NO_BIAS_FIELD:
            raise VerifyException(
                f"{len(self.descriptors)} descriptors, at most {isa.NO_BIAS_FIELD - 1}"
            )
        table = self.string_table()
        if len(set(table)) != len(table):
            raise VerifyException("duplicate name in the string table")
        missing = {d.tensor.data for d in self.descriptors} - set(table)
        if missing:
            raise VerifyException(f"tensor names {sorted(missing)} not in the strings")
        if not ops or not isinstance(ops[-1], HaltOp):
            raise VerifyException("must end with bsisa.halt")
        _ScheduleChecker(self._resolve, _Config()).run(self.code)

    def _resolve(self, user: Operation, ref: str) -> TensorInfo:
        desc = self.descriptor(ref)
        if desc is None:
            raise VerifyException(f"{user.name}: unknown descriptor @{ref}")
        return desc.info


@irdl_op_definition
class DescOp(IRDLOperation):
    """A DRAM tensor: ``bsisa.desc @d1 qweight "fc1.weight" [N, K] fmt "bitmod3" sb 8 g 128``.

    ``act``: FP16 ``[M, K]``; ``out``: FP16 ``[M, N]``; ``qweight``: a quantized ``[N, K]``
    weight stored in the parameter archive under ``tensor``; ``bias``: FP16 ``[N]``.
    """

    name = "bsisa.desc"

    sym_name = prop_def(StringAttr)
    kind = prop_def(StringAttr)
    tensor = prop_def(StringAttr)
    shape = prop_def(DenseArrayBase.constr(I64))
    fmt = opt_prop_def(StringAttr)
    scale_bits = opt_prop_def(IntegerAttr[I64])
    group_size = opt_prop_def(IntegerAttr[I64])

    traits = traits_def(SymbolOpInterface())

    def __init__(
        self,
        sym_name: str,
        kind: str,
        tensor: str,
        shape: Sequence[int],
        fmt: str | None = None,
        scale_bits: int | None = None,
        group_size: int | None = None,
    ) -> None:
        properties: dict[str, Attribute] = {
            "sym_name": StringAttr(sym_name),
            "kind": StringAttr(kind),
            "tensor": StringAttr(tensor),
            "shape": DenseArrayBase.from_list(i64, list(shape)),
        }
        if fmt is not None:
            properties["fmt"] = StringAttr(fmt)
        if scale_bits is not None:
            properties["scale_bits"] = _int(scale_bits)
        if group_size is not None:
            properties["group_size"] = _int(group_size)
        super().__init__(properties=properties)

    @property
    def shape_tuple(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.shape.get_values())

    @property
    def info(self) -> TensorInfo:
        return TensorInfo(
            kind=self.kind.data,
            shape=self.shape_tuple,
            fmt=None if self.fmt is None else self.fmt.data,
            scale_bits=None if self.scale_bits is None else self.scale_bits.value.data,
            group_size=None if self.group_size is None else self.group_size.value.data,
        )

    def to_isa(self, name_index: int) -> isa.Descriptor:
        """The descriptor table entry, its name at ``name_index`` of the string table."""
        kind = DESC_KINDS[self.kind.data]
        shape = self.shape_tuple
        dim1 = 1 if kind is isa.DescKind.BIAS else shape[1]
        if kind is not isa.DescKind.QWEIGHT:
            return isa.Descriptor(name_index, kind, shape[0], dim1)
        info = self.info
        assert info.fmt is not None and info.scale_bits is not None
        assert info.group_size is not None
        return isa.Descriptor(
            name_index,
            kind,
            shape[0],
            dim1,
            isa.format_id(info.fmt),
            info.scale_bits,
            info.group_size,
        )

    @classmethod
    def from_isa(cls, sym_name: str, desc: isa.Descriptor, tensor: str) -> DescOp:
        kind = desc.kind.name.lower()
        if desc.kind is isa.DescKind.QWEIGHT:
            return cls(
                sym_name,
                kind,
                tensor,
                desc.shape,
                isa.format_name(desc.fmt),
                desc.scale_bits,
                desc.group_size,
            )
        return cls(sym_name, kind, tensor, desc.shape)

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_symbol_name(self.sym_name.data)
        printer.print_string(f" {self.kind.data} ")
        printer.print_string_literal(self.tensor.data)
        printer.print_string(" [" + ", ".join(str(d) for d in self.shape_tuple) + "]")
        if self.fmt is not None:
            printer.print_string(" fmt ")
            printer.print_string_literal(self.fmt.data)
        if self.scale_bits is not None:
            printer.print_string(f" sb {self.scale_bits.value.data}")
        if self.group_size is not None:
            printer.print_string(f" g {self.group_size.value.data}")
        _print_extra_attrs(printer, self)

    @classmethod
    def parse(cls, parser: Parser) -> Self:
        sym_name = parser.parse_symbol_name().data
        kind = parser.parse_identifier(" (descriptor kind)")
        tensor = parser.parse_str_literal(" (tensor name)")
        shape = parser.parse_comma_separated_list(
            parser.Delimiter.SQUARE, lambda: _parse_int(parser, " (a dimension)")
        )
        fmt = parser.parse_str_literal() if parser.parse_optional_keyword("fmt") else None
        sb = g = None
        if parser.parse_optional_keyword("sb"):
            sb = _parse_int(parser, " after 'sb'")
        if parser.parse_optional_keyword("g"):
            g = _parse_int(parser, " after 'g'")
        op = cls(sym_name, kind, tensor, shape, fmt, sb, g)
        _parse_extra_attrs(parser, op)
        return op

    def verify_(self) -> None:
        kind = self.kind.data
        if kind not in DESC_KINDS:
            raise VerifyException(f"unknown kind {kind!r}; kinds: {', '.join(DESC_KINDS)}")
        if not isinstance(self.parent_op(), ProgramOp):
            raise VerifyException("descriptors live directly in a bsisa.program")
        shape = self.shape_tuple
        rank = 1 if kind == "bias" else 2
        if len(shape) != rank:
            raise VerifyException(f"a {kind} descriptor is {rank}-D, got shape {list(shape)}")
        quant_fields = (self.fmt, self.scale_bits, self.group_size)
        if kind == "qweight" and any(field is None for field in quant_fields):
            raise VerifyException("a qweight descriptor needs fmt, sb and g")
        if kind != "qweight" and any(field is not None for field in quant_fields):
            raise VerifyException("fmt, sb and g belong to qweight descriptors only")
        try:
            self.to_isa(0).check(n_strings=1)
        except isa.IsaError as error:
            raise VerifyException(f"{error}") from None


# --------------------------------------------------------------------------------------------
# Instructions
# --------------------------------------------------------------------------------------------

#: Maps a descriptor (or role) name to its index in the descriptor table.
DescIndex = Callable[[str], int]
#: Maps a descriptor index back to its symbol name.
DescName = Callable[[int], str]


class InstructionOp(IRDLOperation):
    """Base of every op that is one ISA instruction (``bsisa.loop``: a loop/endloop pair)."""

    ISA_TYPE: ClassVar[type[isa.Instruction]]

    def enclosing_loops(self) -> Iterator[LoopOp]:
        parent = self.parent_op()
        while isinstance(parent, LoopOp):
            yield parent
            parent = parent.parent_op()

    def container(self) -> Operation | None:
        """The ``bsisa.program`` or ``bsisa.tiled_matmul`` this instruction belongs to."""
        parent = self.parent_op()
        while isinstance(parent, LoopOp):
            parent = parent.parent_op()
        return parent

    def to_isa(self, desc_index: DescIndex) -> isa.Instruction:
        """The runtime instruction (for a loop: its opening ``loop``)."""
        raise NotImplementedError(self.name)

    @classmethod
    def from_isa(cls, instr: isa.Instruction, desc_name: DescName) -> InstructionOp:
        raise NotImplementedError(cls.name)

    def verify_(self) -> None:
        if not isinstance(self.container(), ProgramOp | TiledMatmulOp):
            raise VerifyException("must be inside a bsisa.program or bsisa.tiled_matmul")
        # Descriptor 0 stands in for names: references are checked by the container.
        _isa_check(lambda: self.to_isa(lambda _: 0).check())
        open_levels = {loop.level for loop in self.enclosing_loops()}
        for level in self.to_isa(lambda _: 0).levels():
            if level not in open_levels:
                raise VerifyException(f"level L{level} is not an enclosing loop")


class _NoFieldInstruction(InstructionOp):
    """An instruction without fields: ``bsisa.<mnemonic>``."""

    def __init__(self) -> None:
        super().__init__()

    def to_isa(self, desc_index: DescIndex) -> isa.Instruction:
        return self.ISA_TYPE()

    @classmethod
    def from_isa(cls, instr: isa.Instruction, desc_name: DescName) -> InstructionOp:
        return cls()

    def print(self, printer: Printer) -> None:
        _print_extra_attrs(printer, self)

    @classmethod
    def parse(cls, parser: Parser) -> Self:
        op = cls()
        _parse_extra_attrs(parser, op)
        return op


@irdl_op_definition
class NopOp(_NoFieldInstruction):
    name = "bsisa.nop"
    ISA_TYPE: ClassVar[type[isa.Instruction]] = isa.Nop


@irdl_op_definition
class HaltOp(_NoFieldInstruction):
    name = "bsisa.halt"
    ISA_TYPE: ClassVar[type[isa.Instruction]] = isa.Halt

    def verify_(self) -> None:
        if not isinstance(self.parent_op(), ProgramOp):
            raise VerifyException("must be at the top level of a bsisa.program")


@irdl_op_definition
class AccClrOp(_NoFieldInstruction):
    name = "bsisa.acc.clr"
    ISA_TYPE: ClassVar[type[isa.Instruction]] = isa.AccClr


@irdl_op_definition
class MacOp(_NoFieldInstruction):
    name = "bsisa.mac"
    ISA_TYPE: ClassVar[type[isa.Instruction]] = isa.Mac


class _ConfigOp(InstructionOp):
    """A ``cfg.*`` instruction: only in a program (a tiled matmul takes its configuration
    from its ``#bsisa.tiling`` attribute and weight type)."""

    def verify_(self) -> None:
        if not isinstance(self.container(), ProgramOp):
            raise VerifyException("must be inside a bsisa.program")
        _isa_check(lambda: self.to_isa(lambda _: 0).check())


class _IntFieldsConfigOp(_ConfigOp):
    """A ``cfg.*`` op whose fields are its ISA instruction's integer fields, one i64 property
    each (``FIELDS``: property names in ISA field order). Printed as ``name value`` pairs, or,
    for a single field with ``BARE`` set (what the value is), as the bare value."""

    FIELDS: ClassVar[tuple[str, ...]]
    BARE: ClassVar[str | None] = None

    def __init__(self, *values: int) -> None:
        super().__init__(
            properties={name: _int(value) for name, value in zip(self.FIELDS, values, strict=True)}
        )

    def field_values(self) -> tuple[int, ...]:
        values = []
        for name in self.FIELDS:
            prop = self.properties[name]
            assert isinstance(prop, IntegerAttr)
            values.append(prop.value.data)
        return tuple(values)

    def to_isa(self, desc_index: DescIndex) -> isa.Instruction:
        return self.ISA_TYPE(*self.field_values())

    @classmethod
    def from_isa(cls, instr: isa.Instruction, desc_name: DescName) -> InstructionOp:
        assert isinstance(instr, cls.ISA_TYPE)
        return cls(*(getattr(instr, field.name) for field in instr.FIELDS))

    def print(self, printer: Printer) -> None:
        values = self.field_values()
        if self.BARE is not None:
            printer.print_string(f" {values[0]}")
        else:
            pairs = zip(self.FIELDS, values, strict=True)
            printer.print_string("".join(f" {name} {value}" for name, value in pairs))
        _print_extra_attrs(printer, self)

    @classmethod
    def parse(cls, parser: Parser) -> Self:
        if cls.BARE is not None:
            values = [_parse_int(parser, f" ({cls.BARE})")]
        else:
            values = [_parse_keyword_int(parser, name) for name in cls.FIELDS]
        op = cls(*values)
        _parse_extra_attrs(parser, op)
        return op


@irdl_op_definition
class CfgArrayOp(_IntFieldsConfigOp):
    """``cfg.array rows R cols C tiles T``: the geometry the program was compiled for."""

    name = "bsisa.cfg.array"
    ISA_TYPE: ClassVar[type[isa.Instruction]] = isa.CfgArray
    FIELDS: ClassVar[tuple[str, ...]] = ("rows", "cols", "tiles")

    rows = prop_def(IntegerAttr[I64])
    cols = prop_def(IntegerAttr[I64])
    tiles = prop_def(IntegerAttr[I64])


@irdl_op_definition
class CfgSvOp(_IntFieldsConfigOp):
    """``cfg.sv slot S value V``: ``SV[S] = V`` (signed 16-bit, grid units)."""

    name = "bsisa.cfg.sv"
    ISA_TYPE: ClassVar[type[isa.Instruction]] = isa.CfgSv
    FIELDS: ClassVar[tuple[str, ...]] = ("slot", "value")

    slot = prop_def(IntegerAttr[I64])
    value = prop_def(IntegerAttr[I64])


@irdl_op_definition
class CfgFmtOp(_ConfigOp):
    """``cfg.fmt "NAME" sb S g G``: weight format, scale bits, group size."""

    name = "bsisa.cfg.fmt"
    ISA_TYPE: ClassVar[type[isa.Instruction]] = isa.CfgFmt

    fmt = prop_def(StringAttr)
    scale_bits = prop_def(IntegerAttr[I64])
    group_size = prop_def(IntegerAttr[I64])

    def __init__(self, fmt: str, scale_bits: int, group_size: int) -> None:
        super().__init__(
            properties={
                "fmt": StringAttr(fmt),
                "scale_bits": _int(scale_bits),
                "group_size": _int(group_size),
            }
        )

    def to_isa(self, desc_index: DescIndex) -> isa.Instruction:
        return isa.CfgFmt(
            isa.format_id(self.fmt.data), self.scale_bits.value.data, self.group_size.value.data
        )

    @classmethod
    def from_isa(cls, instr: isa.Instruction, desc_name: DescName) -> InstructionOp:
        assert isinstance(instr, isa.CfgFmt)
        return cls(isa.format_name(instr.fmt), instr.sb, instr.group_size)

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_string_literal(self.fmt.data)
        printer.print_string(f" sb {self.scale_bits.value.data} g {self.group_size.value.data}")
        _print_extra_attrs(printer, self)

    @classmethod
    def parse(cls, parser: Parser) -> Self:
        fmt = parser.parse_str_literal(" (format name)")
        sb = _parse_keyword_int(parser, "sb")
        g = _parse_keyword_int(parser, "g")
        op = cls(fmt, sb, g)
        _parse_extra_attrs(parser, op)
        return op


@irdl_op_definition
class CfgKchunkOp(_IntFieldsConfigOp):
    """``cfg.kchunk KC``: K elements per chunk (a multiple of G)."""

    name = "bsisa.cfg.kchunk"
    ISA_TYPE: ClassVar[type[isa.Instruction]] = isa.CfgKchunk
    FIELDS: ClassVar[tuple[str, ...]] = ("kc",)
    BARE: ClassVar[str | None] = "K chunk"

    kc = prop_def(IntegerAttr[I64])


@irdl_op_definition
class CfgMblockOp(_IntFieldsConfigOp):
    """``cfg.mblock MR``: rows of an activation / output block (a multiple of ROWS)."""

    name = "bsisa.cfg.mblock"
    ISA_TYPE: ClassVar[type[isa.Instruction]] = isa.CfgMblock
    FIELDS: ClassVar[tuple[str, ...]] = ("rows",)
    BARE: ClassVar[str | None] = "block rows"

    block_rows = prop_def(IntegerAttr[I64], prop_name="rows")


@irdl_op_definition
class LoopOp(InstructionOp):
    """``loop L<lvl> count N { body }``: encodes as ``loop``, the body, ``endloop``."""

    name = "bsisa.loop"
    ISA_TYPE: ClassVar[type[isa.Instruction]] = isa.Loop

    level_attr = prop_def(IntegerAttr[I64], prop_name="level")
    count_attr = prop_def(IntegerAttr[I64], prop_name="count")
    body = region_def("single_block")

    traits = traits_def(NoTerminator())

    def __init__(self, level: int, count: int, ops: Sequence[Operation] = ()) -> None:
        super().__init__(
            properties={"level": _int(level), "count": _int(count)},
            regions=[Region(Block(ops))],
        )

    @property
    def level(self) -> int:
        return self.level_attr.value.data

    @property
    def count(self) -> int:
        return self.count_attr.value.data

    def to_isa(self, desc_index: DescIndex) -> isa.Instruction:
        return isa.Loop(self.level, self.count)

    @classmethod
    def from_isa(cls, instr: isa.Instruction, desc_name: DescName) -> InstructionOp:
        assert isinstance(instr, isa.Loop)
        return cls(instr.lvl, instr.count)

    def print(self, printer: Printer) -> None:
        printer.print_string(f" L{self.level} count {self.count}")
        _print_extra_attrs_before_region(printer, self)
        printer.print_string(" ")
        printer.print_region(self.body, print_entry_block_args=False)

    @classmethod
    def parse(cls, parser: Parser) -> Self:
        pos = parser.pos
        level = _parse_level(parser)
        if level is None:
            parser.raise_error("bsisa.loop needs a level L0..L7, not -", pos, parser.pos)
        count = _parse_keyword_int(parser, "count")
        attrs = _parse_extra_attrs_before_region(parser)
        region = parser.parse_region()
        op = cls(level, count)
        _move_region(region, op.body)
        op.attributes |= attrs
        return op

    def verify_(self) -> None:
        super().verify_()
        outer = [loop.level for loop in self.enclosing_loops()]
        if len(outer) + 1 > MAX_LOOP_DEPTH:
            raise VerifyException(f"loop nest deeper than {MAX_LOOP_DEPTH} levels")
        if self.level in outer:
            raise VerifyException(f"level L{self.level} is already used by an enclosing loop")
        for op in self.body.block.ops:
            if not isinstance(op, InstructionOp) or isinstance(op, HaltOp):
                raise VerifyException(f"{op.name} cannot appear in a loop body")


_LevelFields = tuple[tuple[str, str], tuple[str, str]]


class TensorRefInstruction(InstructionOp):
    """An instruction naming a tensor (a descriptor in a program, a role in a tiled matmul)
    and two loop levels."""

    #: descriptor kind the tensor operand must have
    TENSOR_KIND: ClassVar[str]
    #: the two level fields: (field name in runtime.isa, keyword printed in the IR)
    LEVEL_FIELDS: ClassVar[_LevelFields]

    desc = prop_def(SymbolRefAttr)
    first_level_attr = opt_prop_def(IntegerAttr[I64], prop_name="first_level")
    second_level_attr = opt_prop_def(IntegerAttr[I64], prop_name="second_level")

    def __init__(self, desc: str, first_level: int | None, second_level: int | None) -> None:
        properties: dict[str, Attribute] = {"desc": SymbolRefAttr(desc)}
        if first_level is not None:
            properties["first_level"] = _int(first_level)
        if second_level is not None:
            properties["second_level"] = _int(second_level)
        super().__init__(properties=properties)

    @property
    def desc_name(self) -> str:
        return self.desc.root_reference.data

    @property
    def levels(self) -> tuple[int | None, int | None]:
        first, second = self.first_level_attr, self.second_level_attr
        return (
            None if first is None else first.value.data,
            None if second is None else second.value.data,
        )

    def to_isa(self, desc_index: DescIndex) -> isa.Instruction:
        (first_field, _), (second_field, _) = self.LEVEL_FIELDS
        first, second = self.levels
        return self.ISA_TYPE(
            **{"desc": desc_index(self.desc_name), first_field: first, second_field: second}
        )

    @classmethod
    def from_isa(cls, instr: isa.Instruction, desc_name: DescName) -> InstructionOp:
        (first_field, _), (second_field, _) = cls.LEVEL_FIELDS
        return cls(
            desc_name(instr.desc),
            getattr(instr, first_field),
            getattr(instr, second_field),
        )

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_symbol_name(self.desc_name)
        for (_, keyword), level in zip(self.LEVEL_FIELDS, self.levels, strict=True):
            printer.print_string(f" {keyword} ")
            _print_level(printer, level)
        _print_extra_attrs(printer, self)

    @classmethod
    def parse(cls, parser: Parser) -> Self:
        desc = parser.parse_symbol_name().data
        levels = []
        for _, keyword in cls.LEVEL_FIELDS:
            parser.parse_keyword(keyword)
            levels.append(_parse_level(parser))
        op = cls(desc, levels[0], levels[1])
        _parse_extra_attrs(parser, op)
        return op

    def verify_(self) -> None:
        if self.desc.nested_references.data:
            raise VerifyException("the tensor must be a flat @name")
        super().verify_()


@irdl_op_definition
class LdActOp(TensorRefInstruction):
    """``ld.act @d row Li k Lj``: activation rows ``[Li·MR, +MR)``, K chunk ``Lj`` (``k -``:
    all of K)."""

    name = "bsisa.ld.act"
    ISA_TYPE: ClassVar[type[isa.Instruction]] = isa.LdAct
    TENSOR_KIND: ClassVar[str] = "act"
    LEVEL_FIELDS: ClassVar[_LevelFields] = (("row_lvl", "row"), ("k_lvl", "k"))


@irdl_op_definition
class LdWgtOp(TensorRefInstruction):
    """``ld.wgt @d col Li k Lj``: channels ``[Li·COLS·TILES, +COLS·TILES)``, K chunk ``Lj``
    (``k -``: all of K)."""

    name = "bsisa.ld.wgt"
    ISA_TYPE: ClassVar[type[isa.Instruction]] = isa.LdWgt
    TENSOR_KIND: ClassVar[str] = "qweight"
    LEVEL_FIELDS: ClassVar[_LevelFields] = (("col_lvl", "col"), ("k_lvl", "k"))


@irdl_op_definition
class StOutOp(TensorRefInstruction):
    """``st.out @d row Li col Lj``: store the output block."""

    name = "bsisa.st.out"
    ISA_TYPE: ClassVar[type[isa.Instruction]] = isa.StOut
    TENSOR_KIND: ClassVar[str] = "out"
    LEVEL_FIELDS: ClassVar[_LevelFields] = (("row_lvl", "row"), ("col_lvl", "col"))


@irdl_op_definition
class DrainOp(InstructionOp):
    """``drain`` or ``drain bias @d``: scale the accumulators, add the bias, round to FP16."""

    name = "bsisa.drain"
    ISA_TYPE: ClassVar[type[isa.Instruction]] = isa.Drain

    bias = opt_prop_def(SymbolRefAttr)

    def __init__(self, bias: str | None = None) -> None:
        super().__init__(properties={} if bias is None else {"bias": SymbolRefAttr(bias)})

    @property
    def bias_name(self) -> str | None:
        return None if self.bias is None else self.bias.root_reference.data

    def to_isa(self, desc_index: DescIndex) -> isa.Instruction:
        return isa.Drain(None if self.bias_name is None else desc_index(self.bias_name))

    @classmethod
    def from_isa(cls, instr: isa.Instruction, desc_name: DescName) -> InstructionOp:
        assert isinstance(instr, isa.Drain)
        return cls(None if instr.bias is None else desc_name(instr.bias))

    def print(self, printer: Printer) -> None:
        if self.bias_name is not None:
            printer.print_string(" bias ")
            printer.print_symbol_name(self.bias_name)
        _print_extra_attrs(printer, self)

    @classmethod
    def parse(cls, parser: Parser) -> Self:
        bias = parser.parse_symbol_name().data if parser.parse_optional_keyword("bias") else None
        op = cls(bias)
        _parse_extra_attrs(parser, op)
        return op

    def verify_(self) -> None:
        if self.bias is not None and self.bias.nested_references.data:
            raise VerifyException("the bias must be a flat @name")
        super().verify_()


INSTRUCTION_OPS: tuple[type[InstructionOp], ...] = (
    NopOp,
    HaltOp,
    CfgArrayOp,
    CfgSvOp,
    CfgFmtOp,
    CfgKchunkOp,
    CfgMblockOp,
    LoopOp,
    LdActOp,
    LdWgtOp,
    AccClrOp,
    MacOp,
    DrainOp,
    StOutOp,
)
_OP_OF_ISA: dict[type[isa.Instruction], type[InstructionOp]] = {
    op.ISA_TYPE: op for op in INSTRUCTION_OPS
}


def ops_to_isa(ops: Sequence[Operation], desc_index: DescIndex) -> list[isa.Instruction]:
    """The instruction stream of ``ops`` (loops flattened to ``loop`` … ``endloop``)."""
    out: list[isa.Instruction] = []
    for op in ops:
        if not isinstance(op, InstructionOp):
            raise ValueError(f"{op.name} is not a bsisa instruction")
        out.append(op.to_isa(desc_index))
        if isinstance(op, LoopOp):
            out.extend(ops_to_isa(list(op.body.block.ops), desc_index))
            out.append(isa.EndLoop(op.level))
    return out


def ops_from_isa(instructions: Sequence[isa.Instruction], desc_name: DescName) -> list[Operation]:
    """Ops of an instruction stream, each ``loop`` … ``endloop`` becoming a ``bsisa.loop``.

    Raises ``isa.IsaError`` naming the instruction index on unbalanced loops.
    """
    top: list[Operation] = []
    stack: list[tuple[LoopOp, list[Operation]]] = []
    for index, instr in enumerate(instructions):
        current = stack[-1][1] if stack else top
        if isinstance(instr, isa.EndLoop):
            if not stack or stack[-1][0].level != instr.lvl:
                raise isa.IsaError(f"endloop L{instr.lvl} closes no open loop", index=index)
            loop, body = stack.pop()
            loop.body.block.add_ops(body)
            continue
        op_type = _OP_OF_ISA.get(type(instr))
        if op_type is None:
            raise isa.IsaError(f"not a bsisa instruction: {instr!r}", index=index)
        op = op_type.from_isa(instr, desc_name)
        current.append(op)
        if isinstance(op, LoopOp):
            stack.append((op, []))
    if stack:
        raise isa.IsaError(f"loop L{stack[-1][0].level} never closed", index=len(instructions))
    return top


def instruction_count(ops: Sequence[Operation]) -> int:
    """Encoded instruction words of ``ops``: a loop is two (``loop``, ``endloop``) plus its body."""
    total = 0
    for op in ops:
        if isinstance(op, LoopOp):
            total += 2 + instruction_count(list(op.body.block.ops))
        elif isinstance(op, InstructionOp):
            total += 1
    return total


# --------------------------------------------------------------------------------------------
# Whole-schedule checks shared by bsisa.program and bsisa.tiled_matmul
# --------------------------------------------------------------------------------------------


@dataclass
class _Config:
    """The configuration registers a schedule runs under (None: not set yet)."""

    rows: int | None = None
    cols: int | None = None
    tiles: int | None = None
    fmt: str | None = None
    scale_bits: int | None = None
    group_size: int | None = None
    kc: int | None = None
    block_rows: int | None = None  # MR; cfg.array resets it to rows
    weight_k: int | None = None  # K of the weight the last ld.wgt loaded


class _ScheduleChecker:
    """Walks a schedule in program order and checks that every load/store covers its tensor.

    A level ``L`` indexing a dimension of ``d`` elements in blocks of ``b`` must belong to
    a loop of exactly ``ceil(d / b)`` iterations; a missing row or column level (``-``)
    needs ``d <= b``, a missing K level loads all of K. Rows come in blocks of ``MR``
    (``cfg.mblock``, a multiple of the array's rows), channels of ``cols · tiles``, K of
    ``KC``. The weight loaded by ``ld.wgt`` must be in the format, scale bits and group size
    that ``cfg.fmt`` set, and ``KC`` must be a multiple of ``G`` unless it covers all of the
    weight's K (a ragged last group).
    """

    def __init__(self, resolve: Callable[[Operation, str], TensorInfo], config: _Config) -> None:
        self.resolve = resolve
        self.config = config

    def run(self, ops: Sequence[Operation]) -> None:
        for op in ops:
            self.visit(op)

    def visit(self, op: Operation) -> None:
        cfg = self.config
        if isinstance(op, CfgArrayOp):
            cfg.rows = op.rows.value.data
            cfg.cols = op.cols.value.data
            cfg.tiles = op.tiles.value.data
            cfg.block_rows = cfg.rows
        elif isinstance(op, CfgFmtOp):
            cfg.fmt = op.fmt.data
            cfg.scale_bits = op.scale_bits.value.data
            cfg.group_size = op.group_size.value.data
        elif isinstance(op, CfgKchunkOp):
            cfg.kc = op.kc.value.data
        elif isinstance(op, CfgMblockOp):
            self.require(op, "cfg.array", cfg.rows)
            assert cfg.rows is not None
            block_rows = op.block_rows.value.data
            problem = block_rows_error(block_rows, cfg.rows)
            if problem:
                raise VerifyException(f"bsisa.cfg.mblock: {problem}")
            cfg.block_rows = block_rows
        elif isinstance(op, LoopOp):
            self.run(list(op.body.block.ops))
        elif isinstance(op, MacOp | AccClrOp):
            self.require(op, "cfg.array", cfg.rows)
            if isinstance(op, MacOp):
                self.require(op, "cfg.fmt", cfg.fmt)
                self.require(op, "cfg.kchunk", cfg.kc)
                self.check_kc_multiple(op, cfg.weight_k)
        elif isinstance(op, TensorRefInstruction):
            self.visit_tensor_ref(op)
        elif isinstance(op, DrainOp):
            self.require(op, "cfg.array", cfg.rows)
            if op.bias_name is not None:
                info = self.resolve(op, op.bias_name)
                if info.kind != "bias":
                    raise VerifyException(
                        f"bsisa.drain: @{op.bias_name} is a {info.kind}, not a bias"
                    )

    @staticmethod
    def require(op: Operation, what: str, value: object) -> None:
        if value is None:
            raise VerifyException(f"{op.name} before any {what}")

    def check_kc_multiple(self, op: Operation, k: int | None) -> None:
        cfg = self.config
        assert cfg.kc is not None and cfg.group_size is not None
        problem = kchunk_error(cfg.kc, cfg.group_size, k)
        if problem:
            raise VerifyException(f"{op.name}: {problem}")

    def visit_tensor_ref(self, op: TensorRefInstruction) -> None:
        cfg = self.config
        info = self.resolve(op, op.desc_name)
        if info.kind != op.TENSOR_KIND:
            raise VerifyException(
                f"{op.name}: @{op.desc_name} is a {info.kind}, expected a {op.TENSOR_KIND}"
            )
        self.require(op, "cfg.array", cfg.rows)
        assert cfg.block_rows is not None and cfg.cols is not None and cfg.tiles is not None
        block_cols = cfg.cols * cfg.tiles
        (_, first_kw), (_, second_kw) = op.LEVEL_FIELDS
        first, second = op.levels
        outer, inner = info.shape
        if isinstance(op, StOutOp):
            self.check_cover(op, first_kw, first, outer, cfg.block_rows)
            self.check_cover(op, second_kw, second, inner, block_cols)
            return
        self.require(op, "cfg.kchunk", cfg.kc)
        assert cfg.kc is not None
        outer_block = cfg.block_rows if isinstance(op, LdActOp) else block_cols
        self.check_cover(op, first_kw, first, outer, outer_block)
        if second is not None:  # without a K level the load holds all of K
            self.check_cover(op, second_kw, second, inner, cfg.kc)
        if isinstance(op, LdWgtOp):
            self.require(op, "cfg.fmt", cfg.fmt)
            loaded = (info.fmt, info.scale_bits, info.group_size)
            configured = (cfg.fmt, cfg.scale_bits, cfg.group_size)
            if loaded != configured:
                raise VerifyException(
                    f"bsisa.ld.wgt: @{op.desc_name} is fmt={loaded[0]} sb={loaded[1]} "
                    f"g={loaded[2]} but cfg.fmt set fmt={configured[0]} sb={configured[1]} "
                    f"g={configured[2]}"
                )
            cfg.weight_k = inner
            self.check_kc_multiple(op, inner)

    @staticmethod
    def check_cover(
        op: TensorRefInstruction, field: str, level: int | None, dim: int, block: int
    ) -> None:
        needed = ceil_div(dim, block)
        if level is None:
            if needed != 1:
                raise VerifyException(
                    f"{op.name} @{op.desc_name}: {field} has no loop but {dim} elements need "
                    f"{needed} blocks of {block}"
                )
            return
        loop = next((loop for loop in op.enclosing_loops() if loop.level == level), None)
        if loop is None:
            # The container verifies before its ops; say what the op's own verifier would.
            raise VerifyException(f"{op.name}: level L{level} is not an enclosing loop")
        if loop.count != needed:
            raise VerifyException(
                f"{op.name} @{op.desc_name}: {field} loop L{level} runs {loop.count} times "
                f"but {dim} elements in blocks of {block} need {needed}"
            )


# --------------------------------------------------------------------------------------------
# Between tensors and programs: tiled matmul and launch
# --------------------------------------------------------------------------------------------


def _tensor_shape(value: SSAValue, what: str, rank: int) -> tuple[int, ...]:
    value_type = value.type
    if not isinstance(value_type, TensorType):
        raise VerifyException(f"{what} must be a tensor, got {value_type}")
    shape = tuple(int(d) for d in value_type.get_shape())
    if len(shape) != rank or any(d < 1 for d in shape):
        raise VerifyException(f"{what} must be a static {rank}-D tensor, got {value_type}")
    return shape


def act_rows(shape: Sequence[int]) -> int:
    """Rows the accelerator sees for an activation ``[..., K]``: the leading dims flattened
    (a batched ``[B, M, K]`` is the ``[B·M, K]`` matrix in DRAM)."""
    return math.prod(shape[:-1])


def matrix_shape(value: SSAValue, what: str) -> tuple[int, int]:
    """``(rows, K)`` of a 2-D ``[M, K]`` or batched 3-D ``[B, M, K]`` tensor."""
    value_type = value.type
    rank = len(value_type.get_shape()) if isinstance(value_type, TensorType) else 2
    shape = _tensor_shape(value, what, 3 if rank == 3 else 2)
    return act_rows(shape), shape[-1]


@dataclass(frozen=True)
class QWeightInfo:
    """Shape, format, group size and scale bits of a ``!bitmod.qweight`` type."""

    shape: tuple[int, int]
    fmt: str
    group_size: int
    scale_bits: int


def qweight_info(value_type: Attribute) -> QWeightInfo | None:
    """``!bitmod.qweight<NxK, NAME, G, sb=S>`` as a :class:`QWeightInfo`; None otherwise."""
    if not isinstance(value_type, QWeightType):
        return None
    n, k = value_type.get_shape()
    return QWeightInfo(
        (n, k), value_type.format_name, value_type.group_size.data, value_type.scale_bits.data
    )


@irdl_op_definition
class TiledMatmulOp(IRDLOperation):
    """A quantized matmul scheduled on the array by ``bitmod-tile``.

    ``%y = bsisa.tiled_matmul %x, %w [bias %b] tiling #bsisa.tiling<...> : (types) -> type
    { schedule }``. Semantics are those of ``bitmod.matmul`` (``Y = X·Wᵀ + b``, a batched
    ``[B, M, K]`` activation being the ``[B·M, K]`` matrix); the region says how the array
    computes it, with the role names ``@act``, ``@weight``, ``@bias``, ``@out`` in place of
    descriptors.
    """

    name = "bsisa.tiled_matmul"

    act = operand_def(TensorType)
    weight = operand_def(QWeightType)
    bias = opt_operand_def(TensorType)
    result = result_def(TensorType)
    tiling = prop_def(TilingAttr)
    schedule = region_def("single_block")

    traits = traits_def(NoTerminator())

    def __init__(
        self,
        act: SSAValue,
        weight: SSAValue,
        bias: SSAValue | None,
        result_type: Attribute,
        tiling: TilingAttr,
        schedule: Sequence[Operation] = (),
    ) -> None:
        super().__init__(
            operands=[act, weight, [] if bias is None else [bias]],
            result_types=[result_type],
            properties={"tiling": tiling},
            regions=[Region(Block(schedule))],
        )

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_operand(self.act)
        printer.print_string(", ")
        printer.print_operand(self.weight)
        if self.bias is not None:
            printer.print_string(" bias ")
            printer.print_operand(self.bias)
        printer.print_string(" tiling ")
        printer.print_attribute(self.tiling)
        _print_extra_attrs(printer, self)
        printer.print_string(" : ")
        printer.print_operation_type(self)
        printer.print_string(" ")
        printer.print_region(self.schedule, print_entry_block_args=False)

    @classmethod
    def parse(cls, parser: Parser) -> Self:
        act = parser.parse_unresolved_operand()
        parser.parse_punctuation(",")
        weight = parser.parse_unresolved_operand()
        bias = parser.parse_unresolved_operand() if parser.parse_optional_keyword("bias") else None
        parser.parse_keyword("tiling")
        pos = parser.pos
        tiling = parser.parse_attribute()
        if not isinstance(tiling, TilingAttr):
            parser.raise_error("expected #bsisa.tiling<...>", pos, parser.pos)
        attrs = parser.parse_optional_attr_dict()
        (act_value, weight_value, bias_value), result_type = _parse_signature(
            parser, cls.name, [act, weight, bias]
        )
        assert act_value is not None and weight_value is not None
        region = parser.parse_region()
        op = cls(act_value, weight_value, bias_value, result_type, tiling)
        _move_region(region, op.schedule)
        op.attributes |= attrs
        return op

    @property
    def weight_info(self) -> QWeightInfo:
        info = qweight_info(self.weight.type)
        assert info is not None, "operand_def(QWeightType) guarantees a qweight"
        return info

    def matrix_shapes(self) -> tuple[int, int, int]:
        """``(M, N, K)`` as the array sees them (batched activations flattened)."""
        m, k = matrix_shape(self.act, "activation")
        n, weight_k = self.weight_info.shape
        if weight_k != k:
            raise VerifyException(f"activation K={k} does not match weight K={weight_k}")
        return m, n, k

    def verify_(self) -> None:
        m, n, k = self.matrix_shapes()
        act_type, out_type = self.act.type, self.result.type
        assert isinstance(act_type, TensorType) and isinstance(out_type, TensorType)
        expected_out = [*act_type.get_shape()[:-1], n]
        if list(out_type.get_shape()) != expected_out:
            raise VerifyException(
                f"result shape {list(out_type.get_shape())} is not {expected_out}"
            )
        if self.bias is not None:
            bias = _tensor_shape(self.bias, "bias", 1)
            if bias != (n,):
                raise VerifyException(f"bias shape {list(bias)} is not [{n}]")
        weight = self.weight_info
        tiling = self.tiling
        expected = {
            "m_blocks": ceil_div(m, tiling.get("block_rows")),
            "n_blocks": ceil_div(n, tiling.block_cols),
            "k_chunks": ceil_div(k, tiling.get("kc")),
        }
        for field, value in expected.items():
            if tiling.get(field) != value:
                raise VerifyException(
                    f"tiling {field} = {tiling.get(field)}, expected {value} for M={m} N={n} K={k}"
                )
        problem = kchunk_error(tiling.get("kc"), weight.group_size, k)
        if problem:
            raise VerifyException(problem)
        if tiling.get("act_kc") not in (tiling.get("kc"), k):
            raise VerifyException(
                f"tiling act_kc = {tiling.get('act_kc')} is neither kc = {tiling.get('kc')} "
                f"nor K = {k}"
            )
        layout = WeightLayout.of_format(weight.fmt, weight.group_size, weight.scale_bits)
        block_bytes = {
            "act_block_bytes": ACT_BYTES * tiling.get("block_rows") * tiling.get("act_kc"),
            "weight_block_bytes": int(layout.block_bytes(tiling.block_cols, tiling.get("kc"))),
        }
        for field, value in block_bytes.items():
            if tiling.get(field) != value:
                raise VerifyException(
                    f"tiling {field} = {tiling.get(field)}, but a block of this "
                    f"matmul takes {value} bytes"
                )
        for op in self.schedule.block.ops:
            if not isinstance(op, InstructionOp) or isinstance(op, _ConfigOp | HaltOp):
                raise VerifyException(f"{op.name} cannot appear in a tiled matmul schedule")
        config = _Config(**self.config_fields())
        _ScheduleChecker(self._resolve, config).run(list(self.schedule.block.ops))

    def config_fields(self) -> dict[str, int | str]:
        """The registers the schedule runs under: ``rows``, ``cols``, ``tiles``, ``fmt``,
        ``scale_bits``, ``group_size``, ``kc``, ``block_rows`` (from the tiling and the weight
        type; the keywords of :func:`bitmod.runtime.arch.nest.matmul_config`)."""
        tiling, weight = self.tiling, self.weight_info
        return {
            **{name: tiling.get(name) for name in ("rows", "cols", "tiles", "kc", "block_rows")},
            "fmt": weight.fmt,
            "scale_bits": weight.scale_bits,
            "group_size": weight.group_size,
        }

    def role_info(self, role: str) -> TensorInfo | None:
        m, n, k = self.matrix_shapes()
        weight = self.weight_info
        if role == "act":
            return TensorInfo("act", (m, k))
        if role == "weight":
            return TensorInfo(
                "qweight", weight.shape, weight.fmt, weight.scale_bits, weight.group_size
            )
        if role == "out":
            return TensorInfo("out", (m, n))
        if role == "bias" and self.bias is not None:
            return TensorInfo("bias", (n,))
        return None

    def _resolve(self, user: Operation, ref: str) -> TensorInfo:
        info = self.role_info(ref)
        if info is None:
            roles = "@act, @weight, @out" + (", @bias" if self.bias is not None else "")
            raise VerifyException(
                f"{user.name}: @{ref} is not a role of this tiled matmul (roles: {roles})"
            )
        return info


@irdl_op_definition
class LaunchOp(IRDLOperation):
    """The host's view of a lowered matmul: run segment ``i`` of a program.

    ``%y = bsisa.launch @program[i] act @d0(%x) [bias @d3(%b)] out @d2 : (types) -> type``
    binds the host tensor ``%x`` to descriptor ``@d0`` (and the bias to ``@d3``) and reads
    the result back from ``@d2``; a batched ``[B, M, K]`` tensor is the descriptor's
    ``[B·M, K]`` matrix. Segment ``i`` starts at the ``i``-th ``bsisa.cfg.array`` of the
    program and runs to the next one (the last segment to ``bsisa.halt``).
    """

    name = "bsisa.launch"

    act = operand_def(TensorType)
    bias = opt_operand_def(TensorType)
    result = result_def(TensorType)
    program = prop_def(SymbolRefAttr)
    segment = prop_def(IntegerAttr[I64])
    act_desc = prop_def(SymbolRefAttr)
    out_desc = prop_def(SymbolRefAttr)
    bias_desc = opt_prop_def(SymbolRefAttr)

    def __init__(
        self,
        program: str,
        segment: int,
        act: SSAValue,
        act_desc: str,
        bias: SSAValue | None,
        bias_desc: str | None,
        out_desc: str,
        result_type: Attribute,
    ) -> None:
        properties: dict[str, Attribute] = {
            "program": SymbolRefAttr(program),
            "segment": _int(segment),
            "act_desc": SymbolRefAttr(act_desc),
            "out_desc": SymbolRefAttr(out_desc),
        }
        if bias_desc is not None:
            properties["bias_desc"] = SymbolRefAttr(bias_desc)
        super().__init__(
            operands=[act, [] if bias is None else [bias]],
            result_types=[result_type],
            properties=properties,
        )

    @staticmethod
    def _name(ref: SymbolRefAttr) -> str:
        return ref.root_reference.data

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_symbol_name(self._name(self.program))
        printer.print_string(f"[{self.segment.value.data}] act ")
        printer.print_symbol_name(self._name(self.act_desc))
        printer.print_string("(")
        printer.print_operand(self.act)
        printer.print_string(")")
        if self.bias is not None and self.bias_desc is not None:
            printer.print_string(" bias ")
            printer.print_symbol_name(self._name(self.bias_desc))
            printer.print_string("(")
            printer.print_operand(self.bias)
            printer.print_string(")")
        printer.print_string(" out ")
        printer.print_symbol_name(self._name(self.out_desc))
        _print_extra_attrs(printer, self)
        printer.print_string(" : ")
        printer.print_operation_type(self)

    @classmethod
    def parse(cls, parser: Parser) -> Self:
        program = parser.parse_symbol_name().data
        parser.parse_punctuation("[")
        segment = _parse_int(parser, " (segment index)")
        parser.parse_punctuation("]")
        parser.parse_keyword("act")
        act_desc = parser.parse_symbol_name().data
        parser.parse_punctuation("(")
        act = parser.parse_unresolved_operand()
        parser.parse_punctuation(")")
        bias = bias_desc = None
        if parser.parse_optional_keyword("bias"):
            bias_desc = parser.parse_symbol_name().data
            parser.parse_punctuation("(")
            bias = parser.parse_unresolved_operand()
            parser.parse_punctuation(")")
        parser.parse_keyword("out")
        out_desc = parser.parse_symbol_name().data
        attrs = parser.parse_optional_attr_dict()
        (act_value, bias_value), result_type = _parse_signature(parser, cls.name, [act, bias])
        assert act_value is not None
        op = cls(
            program, segment, act_value, act_desc, bias_value, bias_desc, out_desc, result_type
        )
        op.attributes |= attrs
        return op

    def program_op(self) -> ProgramOp:
        program = SymbolTable.lookup_symbol(self, self.program)
        if not isinstance(program, ProgramOp):
            raise VerifyException(f"@{self._name(self.program)} is not a bsisa.program")
        return program

    def verify_(self) -> None:
        if (self.bias is None) != (self.bias_desc is None):
            raise VerifyException("a bias operand and a bias descriptor go together")
        program = self.program_op()
        segments = len(program.segments())
        if not 0 <= self.segment.value.data < segments:
            raise VerifyException(
                f"segment {self.segment.value.data} out of range; "
                f"@{program.sym_name.data} has {segments} segments"
            )
        bindings: list[tuple[str, SymbolRefAttr, SSAValue]] = [
            ("act", self.act_desc, self.act),
            ("out", self.out_desc, self.result),
        ]
        if self.bias is not None and self.bias_desc is not None:
            bindings.append(("bias", self.bias_desc, self.bias))
        for kind, ref, value in bindings:
            desc = program.descriptor(self._name(ref))
            if desc is None or desc.kind.data != kind:
                raise VerifyException(
                    f"@{self._name(ref)} is not a {kind} descriptor of @{program.sym_name.data}"
                )
            if kind == "bias":
                shape: tuple[int, ...] = _tensor_shape(value, kind, 1)
            else:
                shape = matrix_shape(value, kind)
            if shape != desc.shape_tuple:
                raise VerifyException(
                    f"{kind} tensor shape {list(shape)} does not match "
                    f"@{self._name(ref)} {list(desc.shape_tuple)}"
                )


Bsisa = Dialect(
    "bsisa",
    [ProgramOp, DescOp, *INSTRUCTION_OPS, TiledMatmulOp, LaunchOp],
    [TilingAttr],
)
