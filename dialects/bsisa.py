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

Nothing about an instruction is repeated here: each instruction op names its
:mod:`bitmod.runtime.isa` dataclass (``ISA_TYPE``), and :class:`InstructionOp` derives the
op's properties (one per ISA field, named as the field), its declarative
``assembly_format`` (the field keywords of the ISA table, in field order, a field that is
``bare_in_ir`` without its keyword), its constructor and its conversion to and from the
runtime instruction (``to_isa`` / :func:`ops_from_isa`) from that class's field table. The
verifier runs the dataclass's range check, so the IR accepts exactly what the binary can hold.
How a value is written follows its field kind: integers bare, levels ``L0`` .. ``L7`` (a
missing level, the ISA's ``0xF``, "no loop: index 0"; for the K of a load: all of K, is
``-``), descriptors ``@name``, formats as a string; an optional descriptor (``drain``'s bias)
is left out when absent.

Two ops sit between the tensor world and the program:

* ``bsisa.tiled_matmul`` is what ``bitmod-tile`` makes of a quantized ``bitmod.matmul``:
  the same operands and result, a ``#bsisa.tiling`` attribute (array geometry, K chunk,
  block counts, buffer footprint) and the output-stationary schedule as a region of
  ``bsisa.loop`` / ``ld`` / ``mac`` / ``drain`` / ``st.out`` ops whose tensor operands are
  the role names ``@act``, ``@weight``, ``@bias`` and ``@out``;
* ``bsisa.launch`` is what ``bitmod-lower-to-isa`` leaves in the host function in place of
  a lowered matmul: it binds the host tensors to the descriptors of one *segment* of the
  program (segment ``i`` starts at the ``i``-th ``bsisa.cfg.array``); a weight quantized at
  run time (``bitmod.quantize ... runtime``) is bound too, as the float tensor the host
  quantizes into the ``qweight`` descriptor before each run.

Beyond field ranges, the verifier of a whole program or tiled matmul checks that the loops
cover the tensors exactly: a loop indexing the rows of an ``[M, K]`` activation runs
``ceil(M / MR)`` times (``MR`` rows a block: ``cfg.mblock``, else ROWS), one indexing output
channels ``ceil(N / (COLS·TILES))`` times, one indexing K ``ceil(K / KC)`` times, with ``KC`` a
multiple of the group size ``G``; a row or column level left out (``-``) needs the whole
dimension in one block. Loads before the ``cfg`` instruction they depend on are errors too.

The syntax is xDSL's declarative assembly format throughout; the custom directives
(:class:`Int`, :class:`Level`, :class:`Ref`, :class:`Checked`, :class:`Shape`,
:class:`Body`) parse a value where it stands and report a bad one there, as one located
parse error, which xDSL's generic attribute directives do not (they check a property's
constraint only after the whole op was read, and accept integers beyond 64 bits).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

from bitmod.dialects.bitmod import QWeightType
from bitmod.runtime import isa
from bitmod.runtime.arch.rules import block_rows_error, group_accumulator_error, kchunk_error
from bitmod.runtime.arch.schedule import ACT_BYTES, Schedule, WeightLayout
from bitmod.runtime.formats.registry import FORMAT_NAMES
from bitmod.runtime.isa.assembly import QWEIGHT_OPTIONS
from xdsl.dialects.builtin import (
    I64,
    ArrayAttr,
    DenseArrayBase,
    FlatSymbolRefAttrConstr,
    IntAttr,
    IntegerAttr,
    StringAttr,
    SymbolNameConstraint,
    SymbolRefAttr,
    TensorType,
    i64,
)
from xdsl.dialects.utils.enum_attribute import EnumAttribute
from xdsl.ir import (
    Attribute,
    Block,
    Dialect,
    Operation,
    ParametrizedAttribute,
    Region,
    SpacedOpaqueSyntaxAttribute,
    SSAValue,
)
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    OpDef,
    PropertyDef,
    VerificationContext,
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
from xdsl.irdl.declarative_assembly_format import (
    AttributeVariable,
    CustomDirective,
    ParsingState,
    PrintingState,
    RegionVariable,
    irdl_custom_directive,
)
from xdsl.parser import AttrParser, Parser
from xdsl.printer import Printer
from xdsl.traits import (
    HasParent,
    IsolatedFromAbove,
    NoTerminator,
    SymbolOpInterface,
    SymbolTable,
)
from xdsl.utils.exceptions import VerifyException
from xdsl.utils.str_enum import StrEnum

#: Loop levels L0..L7; a loop nest is at most this deep.
MAX_LOOP_DEPTH = isa.NUM_LOOP_LEVELS

#: Symbol name of the program ``bitmod-lower-to-isa`` makes.
DEFAULT_PROGRAM_NAME = "program"

#: Descriptor kinds by their spelling, as in :class:`bitmod.runtime.isa.DescKind`.
DescKindName = StrEnum(  # type: ignore[misc]
    "DescKindName", [(kind.name, kind.spelling) for kind in isa.DescKind]
)

#: The runtime kind of each spelling.
DESC_KINDS: dict[str, isa.DescKind] = {kind.spelling: kind for kind in isa.DescKind}


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _isa_check(check: Callable[[], object]) -> None:
    """Run a :mod:`bitmod.runtime.isa` range check, reporting its error as the op's."""
    try:
        check()
    except isa.IsaError as error:
        raise VerifyException(str(error)) from None


@irdl_attr_definition
class DescKindAttr(EnumAttribute[DescKindName], SpacedOpaqueSyntaxAttribute):
    """The kind of a ``bsisa.desc``: ``act``, ``out``, ``qweight`` or ``bias``."""

    name = "bsisa.desc_kind"

    @classmethod
    def parse_parameter(cls, parser: AttrParser) -> DescKindName:
        pos = parser.pos
        kind = parser.parse_optional_identifier()
        if kind not in DESC_KINDS:
            parser.raise_error(
                f"unknown kind {kind!r}; kinds: {', '.join(DESC_KINDS)}", pos, parser.pos
            )
        return DescKindName(kind)


# --------------------------------------------------------------------------------------------
# Custom directives of the assembly formats
# --------------------------------------------------------------------------------------------

_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


def _parse_int(parser: Parser, context: str) -> int:
    """An integer that fits the i64 properties (a parse error at its position otherwise;
    the field's own range is the verifier's business)."""
    pos = parser.pos
    value = parser.parse_integer(allow_boolean=False, context_msg=context)
    if not _I64_MIN <= value <= _I64_MAX:
        parser.raise_error(f"integer {value} does not fit 64 bits{context}", pos, parser.pos)
    return value


class _PropertyDirective(CustomDirective):
    """A directive that reads and writes one property, ``value``; it may anchor an optional
    group (present when the property is)."""

    value: AttributeVariable

    def attr_of(self, op: IRDLOperation) -> Attribute | None:
        return self.value.get(op)

    def is_present(self, op: IRDLOperation) -> bool:
        return self.value.is_present(op)

    def is_anchorable(self) -> bool:
        return self.value.is_anchorable()


@irdl_custom_directive
class Int(_PropertyDirective):
    """An ``i64`` property as a bare integer: ``8``, ``-3``."""

    value: AttributeVariable

    def parse(self, parser: Parser, state: ParsingState) -> None:
        self.value.set(state, IntegerAttr(_parse_int(parser, f" ({self.value.name})"), i64))

    def print(self, printer: Printer, state: PrintingState, op: IRDLOperation) -> None:
        attr = self.attr_of(op)
        assert isinstance(attr, IntegerAttr)
        state.print_whitespace(printer)
        printer.print_string(str(attr.value.data))


@irdl_custom_directive
class Level(_PropertyDirective):
    """A loop level property: ``L0`` .. ``L7``, or ``-`` for none (the property left out)."""

    value: AttributeVariable

    def parse(self, parser: Parser, state: ParsingState) -> None:
        pos = parser.pos
        if parser.parse_optional_punctuation("-") is not None:
            if not self.value.is_optional:
                parser.raise_error(
                    f"{state.op_type.name} needs a level L0..L7, not -", pos, parser.pos
                )
            return
        ident = parser.parse_identifier(" (a loop level L0..L7 or -)")
        if len(ident) < 2 or ident[0] != "L" or not ident[1:].isdigit() or len(ident) > 4:
            parser.raise_error(f"expected a loop level L0..L7 or -, got {ident!r}", pos, parser.pos)
        self.value.set(state, IntegerAttr(int(ident[1:]), i64))

    def print(self, printer: Printer, state: PrintingState, op: IRDLOperation) -> None:
        attr = self.attr_of(op)
        state.print_whitespace(printer)
        printer.print_string("-" if not isinstance(attr, IntegerAttr) else f"L{attr.value.data}")


@irdl_custom_directive
class Ref(_PropertyDirective):
    """A flat symbol reference property: ``@name``."""

    value: AttributeVariable

    def parse(self, parser: Parser, state: ParsingState) -> None:
        self.value.set(state, SymbolRefAttr(parser.parse_symbol_name()))

    def print(self, printer: Printer, state: PrintingState, op: IRDLOperation) -> None:
        attr = self.attr_of(op)
        assert isinstance(attr, SymbolRefAttr)
        state.print_whitespace(printer)
        printer.print_symbol_name(attr.root_reference.data)


@irdl_custom_directive
class Checked(_PropertyDirective):
    """A property in the generic attribute syntax (``"bitmod3"``, ``["a", "b"]``,
    ``#bsisa.tiling<...>``), checked against the property's constraint where it stands."""

    value: AttributeVariable

    def parse(self, parser: Parser, state: ParsingState) -> None:
        pos = parser.pos
        attr = parser.parse_attribute()
        definition: OpDef = state.op_type.get_irdl_definition()
        try:
            definition.properties[self.value.name].constr.verify(attr, VerificationContext())
        except VerifyException as error:
            parser.raise_error(f"{self.value.name}: {error}", pos, parser.pos)
        self.value.set(state, attr)

    def print(self, printer: Printer, state: PrintingState, op: IRDLOperation) -> None:
        attr = self.attr_of(op)
        assert attr is not None
        state.print_whitespace(printer)
        printer.print_attribute(attr)


@irdl_custom_directive
class Shape(_PropertyDirective):
    """An ``array<i64>`` property as a list of dimensions: ``[16, 256]``."""

    value: AttributeVariable

    def parse(self, parser: Parser, state: ParsingState) -> None:
        dims = parser.parse_comma_separated_list(
            parser.Delimiter.SQUARE, lambda: _parse_int(parser, " (a dimension)")
        )
        self.value.set(state, DenseArrayBase.from_list(i64, dims))

    def print(self, printer: Printer, state: PrintingState, op: IRDLOperation) -> None:
        attr = self.attr_of(op)
        assert isinstance(attr, DenseArrayBase)
        state.print_whitespace(printer)
        printer.print_string("[" + ", ".join(str(int(d)) for d in attr.get_values()) + "]")


@irdl_custom_directive
class Body(CustomDirective):
    """A single-block region: ``{ ops }``, where an empty ``{ }`` is one empty block (xDSL's
    region directive reads it as a region without blocks)."""

    region: RegionVariable

    def parse(self, parser: Parser, state: ParsingState) -> None:
        region = parser.parse_region()
        if not region.blocks:
            region.add_block(Block())
        self.region.set(state, region)

    def print(self, printer: Printer, state: PrintingState, op: IRDLOperation) -> None:
        self.region.print(printer, state, op)


_DIRECTIVES = (Int, Level, Ref, Checked, Shape, Body)


# --------------------------------------------------------------------------------------------
# ISA fields as properties and syntax
# --------------------------------------------------------------------------------------------

#: A field's value in the IR: an int, a descriptor's symbol name or a format name.
FieldValue = int | str | None


def field_property(field: isa.Field) -> PropertyDef:
    """The property holding ``field``: ``i64``, a flat ``@symbol`` (descriptor fields) or a
    string (format names); optional where the field may be none."""
    if field.desc_kind is not None:
        constraint = FlatSymbolRefAttrConstr
    elif field.kind is isa.FieldKind.FORMAT:
        constraint = StringAttr
    else:
        constraint = IntegerAttr[I64]
    return opt_prop_def(constraint) if field.optional else prop_def(constraint)


def field_syntax(field: isa.Field) -> str:
    """The assembly-format fragment of ``field``: its keyword (unless ``bare_in_ir``) and
    its value's directive; an optional descriptor is an optional group on its keyword."""
    if field.is_level:
        value = f"custom<Level>(${field.name})"
    elif field.desc_kind is not None:
        value = f"custom<Ref>(${field.name})"
    elif field.kind is isa.FieldKind.FORMAT:
        value = f"custom<Checked>(${field.name})"
    else:
        value = f"custom<Int>(${field.name})"
    if field.kind is isa.FieldKind.OPTIONAL_DESCRIPTOR:
        return f"(`{field.keyword}` {value}^)?"
    return value if field.bare_in_ir else f"`{field.keyword}` {value}"


def fields_syntax(fields: Sequence[isa.Field]) -> str:
    """The assembly format of an instruction's operands, in field order."""
    return " ".join(field_syntax(field) for field in fields)


def field_attr(field: isa.Field, value: FieldValue) -> Attribute | None:
    """The property value for a field value (None: leave the property out)."""
    if value is None:
        return None
    if field.desc_kind is not None:
        assert isinstance(value, str)
        return SymbolRefAttr(value)
    if field.kind is isa.FieldKind.FORMAT:
        assert isinstance(value, str)
        return StringAttr(value)
    assert isinstance(value, int)
    return IntegerAttr(value, i64)


def attr_value(attr: Attribute | None) -> FieldValue:
    """The field value a property holds (the inverse of :func:`field_attr`)."""
    if attr is None:
        return None
    if isinstance(attr, SymbolRefAttr):
        return attr.root_reference.data
    if isinstance(attr, StringAttr):
        return attr.data
    assert isinstance(attr, IntegerAttr)
    return attr.value.data


def _symbol(ref: SymbolRefAttr) -> str:
    return ref.root_reference.data


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

    sym_name = prop_def(SymbolNameConstraint())
    strings = opt_prop_def(ArrayAttr[StringAttr])
    body = region_def("single_block")

    traits = traits_def(NoTerminator(), SymbolTable(), SymbolOpInterface(), IsolatedFromAbove())

    custom_directives = _DIRECTIVES
    assembly_format = (
        "$sym_name (`strings` custom<Checked>($strings)^)? "
        "attr-dict-with-keyword custom<Body>($body)"
    )

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
        """The descriptor ``@name`` of this program's symbol table, if there is one."""
        desc = SymbolTable.lookup_symbol(self, name)
        return desc if isinstance(desc, DescOp) else None

    def segments(self) -> list[int]:
        """Index in :attr:`code` of every ``bsisa.cfg.array``: a segment starts at each."""
        return [i for i, op in enumerate(self.code) if isinstance(op, CfgArrayOp)]

    def string_table(self) -> tuple[str, ...]:
        """The binary's string table: explicit ``strings`` or the names in first-use order."""
        if self.strings is not None:
            return tuple(s.data for s in self.strings.data)
        return tuple(dict.fromkeys(desc.tensor.data for desc in self.descriptors))

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
        _ScheduleChecker(self._resolve, _Config()).check(self.code)

    def _resolve(self, user: Operation, ref: str) -> TensorInfo:
        desc = self.descriptor(ref)
        if desc is None:
            raise VerifyException(f"{user.name}: unknown descriptor @{ref}")
        return desc.info


#: The properties a qweight descriptor takes from ``cfg.fmt``'s fields (same keywords).
_QWEIGHT_PROPERTIES = ("fmt", "scale_bits", "group_size")


def _descriptor_format() -> str:
    quant = {"fmt": "Checked", "scale_bits": "Int", "group_size": "Int"}
    options = [
        f"(`{field.keyword}` custom<{quant[prop]}>(${prop})^)?"
        for field, prop in zip(QWEIGHT_OPTIONS, _QWEIGHT_PROPERTIES, strict=True)
    ]
    return " ".join(
        ["$sym_name $kind custom<Checked>($tensor) custom<Shape>($shape)", *options, "attr-dict"]
    )


@irdl_op_definition
class DescOp(IRDLOperation):
    """A DRAM tensor: ``bsisa.desc @d1 qweight "fc1.weight" [N, K] fmt "bitmod3" sb 8 g 128``.

    ``act``: FP16 ``[M, K]``; ``out``: FP16 ``[M, N]``; ``qweight``: a quantized ``[N, K]``
    weight stored in the parameter archive under ``tensor``; ``bias``: FP16 ``[N]``. A
    qweight's ``fmt``/``sb``/``g`` are spelt as ``cfg.fmt``'s fields.
    """

    name = "bsisa.desc"

    sym_name = prop_def(SymbolNameConstraint())
    kind = prop_def(DescKindAttr)
    tensor = prop_def(StringAttr)
    shape = prop_def(DenseArrayBase.constr(I64))
    fmt = opt_prop_def(StringAttr)
    scale_bits = opt_prop_def(IntegerAttr[I64])
    group_size = opt_prop_def(IntegerAttr[I64])

    traits = traits_def(SymbolOpInterface(), HasParent(ProgramOp))

    custom_directives = _DIRECTIVES
    assembly_format = _descriptor_format()

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
            "kind": DescKindAttr(DescKindName(kind)),
            "tensor": StringAttr(tensor),
            "shape": DenseArrayBase.from_list(i64, list(shape)),
        }
        if fmt is not None:
            properties["fmt"] = StringAttr(fmt)
        if scale_bits is not None:
            properties["scale_bits"] = IntegerAttr(scale_bits, i64)
        if group_size is not None:
            properties["group_size"] = IntegerAttr(group_size, i64)
        super().__init__(properties=properties)

    @property
    def shape_tuple(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.shape.get_values())

    @property
    def info(self) -> TensorInfo:
        return TensorInfo(
            kind=str(self.kind.data),
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
        if desc.kind is isa.DescKind.QWEIGHT:
            return cls(
                sym_name,
                desc.kind.spelling,
                tensor,
                desc.shape,
                isa.format_name(desc.fmt),
                desc.scale_bits,
                desc.group_size,
            )
        return cls(sym_name, desc.kind.spelling, tensor, desc.shape)

    def verify_(self) -> None:
        kind = self.kind.data
        shape = self.shape_tuple
        rank = 1 if kind == "bias" else 2
        if len(shape) != rank:
            raise VerifyException(f"a {kind} descriptor is {rank}-D, got shape {list(shape)}")
        quant_fields = (self.fmt, self.scale_bits, self.group_size)
        if kind == "qweight" and any(field is None for field in quant_fields):
            raise VerifyException("a qweight descriptor needs fmt, sb and g")
        if kind != "qweight" and any(field is not None for field in quant_fields):
            raise VerifyException("fmt, sb and g belong to qweight descriptors only")
        _isa_check(lambda: self.to_isa(0).check(n_strings=1))


# --------------------------------------------------------------------------------------------
# Instructions
# --------------------------------------------------------------------------------------------

#: Maps a descriptor (or role) name to its index in the descriptor table.
DescIndex = Callable[[str], int]
#: Maps a descriptor index back to its symbol name.
DescName = Callable[[int], str]


def _any_descriptor(_: str) -> int:
    """Descriptor 0 stands in for names: references are checked by the container."""
    return 0


class InstructionOp(IRDLOperation):
    """Base of every op that is one ISA instruction (``bsisa.loop``: a loop/endloop pair).

    A subclass names its runtime instruction in ``ISA_TYPE``; defining the subclass adds one
    property per field of ``ISA_TYPE.FIELDS`` (:func:`field_property`, named as the field)
    and, unless the class spells one, the assembly format :func:`fields_syntax` followed by
    ``attr-dict``. The constructor takes the field values in field order (descriptors and
    formats by name; None for an optional field left out).
    """

    ISA_TYPE: ClassVar[type[isa.Instruction]]

    custom_directives = _DIRECTIVES

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        isa_type = cls.__dict__.get("ISA_TYPE")
        if isa_type is None:
            return
        for field in isa_type.FIELDS:
            setattr(cls, field.name, field_property(field))
        if "assembly_format" not in cls.__dict__:
            cls.assembly_format = " ".join(
                filter(None, [fields_syntax(isa_type.FIELDS), "attr-dict"])
            )

    def __init__(self, *values: FieldValue) -> None:
        super().__init__(properties=self.field_properties(values))

    @classmethod
    def field_properties(cls, values: Sequence[FieldValue]) -> dict[str, Attribute]:
        fields = cls.ISA_TYPE.FIELDS
        if len(values) > len(fields) or any(not f.optional for f in fields[len(values) :]):
            names = ", ".join(f.name for f in fields)
            raise TypeError(f"{cls.__name__} takes the values of ({names}), got {values!r}")
        padded = [*values, *[None] * (len(fields) - len(values))]
        attrs = {f.name: field_attr(f, v) for f, v in zip(fields, padded, strict=True)}
        return {name: attr for name, attr in attrs.items() if attr is not None}

    def field_value(self, field_name: str) -> FieldValue:
        """The value of an ISA field: an int, a descriptor or format name, or None."""
        return attr_value(self.properties.get(field_name))

    def field_values(self) -> dict[str, FieldValue]:
        """Every field's value, in field order."""
        return {field.name: self.field_value(field.name) for field in self.ISA_TYPE.FIELDS}

    def enclosing_loops(self) -> Iterator[LoopLikeOp]:
        parent = self.parent_op()
        while isinstance(parent, LoopLikeOp):
            yield parent
            parent = parent.parent_op()

    def container(self) -> Operation | None:
        """The ``bsisa.program`` or ``bsisa.tiled_matmul`` this instruction belongs to."""
        parent = self.parent_op()
        while isinstance(parent, LoopLikeOp):
            parent = parent.parent_op()
        return parent

    def to_isa(self, desc_index: DescIndex) -> isa.Instruction:
        """The runtime instruction (for a loop: its opening ``loop``)."""
        values: dict[str, int | None] = {}
        for field in self.ISA_TYPE.FIELDS:
            value = self.field_value(field.name)
            if isinstance(value, str):
                is_format = field.kind is isa.FieldKind.FORMAT
                value = isa.format_id(value) if is_format else desc_index(value)
            values[field.name] = value
        return self.ISA_TYPE(**values)

    @classmethod
    def from_isa(cls, instr: isa.Instruction, desc_name: DescName) -> InstructionOp:
        values: list[FieldValue] = []
        for field in cls.ISA_TYPE.FIELDS:
            value = getattr(instr, field.name)
            if value is not None and field.desc_kind is not None:
                value = desc_name(value)
            elif field.kind is isa.FieldKind.FORMAT:
                value = isa.format_name(value)
            values.append(value)
        return cls(*values)

    def verify_(self) -> None:
        if not isinstance(self.container(), ProgramOp | TiledMatmulOp):
            raise VerifyException("must be inside a bsisa.program or bsisa.tiled_matmul")
        _isa_check(lambda: self.to_isa(_any_descriptor).check())
        open_levels = {loop.level for loop in self.enclosing_loops()}
        for level in self.to_isa(_any_descriptor).levels():
            if level not in open_levels:
                raise VerifyException(f"level L{level} is not an enclosing loop")


@irdl_op_definition
class NopOp(InstructionOp):
    name = "bsisa.nop"
    ISA_TYPE: ClassVar[type[isa.Instruction]] = isa.Nop


@irdl_op_definition
class HaltOp(InstructionOp):
    name = "bsisa.halt"
    ISA_TYPE: ClassVar[type[isa.Instruction]] = isa.Halt

    traits = traits_def(HasParent(ProgramOp))

    def verify_(self) -> None:
        pass  # HasParent: at the top level of a program


@irdl_op_definition
class AccClrOp(InstructionOp):
    name = "bsisa.acc.clr"
    ISA_TYPE: ClassVar[type[isa.Instruction]] = isa.AccClr


@irdl_op_definition
class MacOp(InstructionOp):
    name = "bsisa.mac"
    ISA_TYPE: ClassVar[type[isa.Instruction]] = isa.Mac


class _ConfigOp(InstructionOp):
    """A ``cfg.*`` instruction: only in a program (a tiled matmul takes its configuration
    from its ``#bsisa.tiling`` attribute and weight type)."""

    def verify_(self) -> None:
        if not isinstance(self.container(), ProgramOp):
            raise VerifyException("must be inside a bsisa.program")
        _isa_check(lambda: self.to_isa(_any_descriptor).check())


@irdl_op_definition
class CfgArrayOp(_ConfigOp):
    """``cfg.array rows R cols C tiles T``: the geometry the program was compiled for."""

    name = "bsisa.cfg.array"
    ISA_TYPE: ClassVar[type[isa.Instruction]] = isa.CfgArray


@irdl_op_definition
class CfgSvOp(_ConfigOp):
    """``cfg.sv slot S value V``: ``SV[S] = V`` (signed 16-bit, grid units)."""

    name = "bsisa.cfg.sv"
    ISA_TYPE: ClassVar[type[isa.Instruction]] = isa.CfgSv


@irdl_op_definition
class CfgFmtOp(_ConfigOp):
    """``cfg.fmt "NAME" sb S g G``: weight format, scale bits, group size."""

    name = "bsisa.cfg.fmt"
    ISA_TYPE: ClassVar[type[isa.Instruction]] = isa.CfgFmt


@irdl_op_definition
class CfgKchunkOp(_ConfigOp):
    """``cfg.kchunk KC``: K elements per chunk (a multiple of G)."""

    name = "bsisa.cfg.kchunk"
    ISA_TYPE: ClassVar[type[isa.Instruction]] = isa.CfgKchunk


@irdl_op_definition
class CfgMblockOp(_ConfigOp):
    """``cfg.mblock MR``: rows of an activation / output block (a multiple of ROWS)."""

    name = "bsisa.cfg.mblock"
    ISA_TYPE: ClassVar[type[isa.Instruction]] = isa.CfgMblock


class LoopLikeOp(InstructionOp):
    """A loop of the ISA, ``bsisa.loop`` or ``bsisa.loop.down``: its level, trip count and
    body (it encodes as its opening instruction, the body and ``endloop``)."""

    body = region_def("single_block")

    traits = traits_def(NoTerminator())

    def __init__(self, level: int, count: int, ops: Sequence[Operation] = ()) -> None:
        IRDLOperation.__init__(
            self, properties=self.field_properties((level, count)), regions=[Region(Block(ops))]
        )

    @property
    def level(self) -> int:
        """The loop's level (its ``lvl`` field)."""
        level = self.field_value("lvl")
        assert isinstance(level, int)
        return level

    @property
    def iterations(self) -> int:
        """The loop's trip count (its ``count`` field)."""
        count = self.field_value("count")
        assert isinstance(count, int)
        return count

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


@irdl_op_definition
class LoopOp(LoopLikeOp):
    """``loop L<lvl> count N { body }``: ``L<lvl>`` counts 0..N-1."""

    name = "bsisa.loop"
    ISA_TYPE: ClassVar[type[isa.Instruction]] = isa.Loop

    assembly_format = fields_syntax(isa.Loop.FIELDS) + " attr-dict-with-keyword custom<Body>($body)"


@irdl_op_definition
class LoopDownOp(LoopLikeOp):
    """``loop.down L<lvl> count N { body }``: ``L<lvl>`` counts N-1..0 (the same blocks in the
    opposite order)."""

    name = "bsisa.loop.down"
    ISA_TYPE: ClassVar[type[isa.Instruction]] = isa.LoopDown

    assembly_format = (
        fields_syntax(isa.LoopDown.FIELDS) + " attr-dict-with-keyword custom<Body>($body)"
    )


class TensorRefInstruction(InstructionOp):
    """An instruction naming a tensor (a descriptor in a program, a role in a tiled matmul)
    and two loop levels: ``ld.act``, ``ld.wgt``, ``st.out``.

    The constructor takes the tensor's name and the two levels (None: ``-``)."""

    @classmethod
    def tensor_field(cls) -> isa.Field:
        return next(f for f in cls.ISA_TYPE.FIELDS if f.kind is isa.FieldKind.DESCRIPTOR)

    @classmethod
    def level_fields(cls) -> tuple[isa.Field, ...]:
        """The two level fields, in field order."""
        return tuple(f for f in cls.ISA_TYPE.FIELDS if f.kind is isa.FieldKind.LEVEL)

    @classmethod
    def tensor_kind(cls) -> str:
        """The descriptor kind the tensor must have."""
        kind = cls.tensor_field().desc_kind
        assert kind is not None
        return kind.spelling

    @property
    def desc_name(self) -> str:
        name = self.field_value(self.tensor_field().name)
        assert isinstance(name, str)
        return name

    @property
    def levels(self) -> tuple[int | None, int | None]:
        first, second = (self.field_value(f.name) for f in self.level_fields())
        assert not isinstance(first, str) and not isinstance(second, str)
        return first, second


@irdl_op_definition
class LdActOp(TensorRefInstruction):
    """``ld.act @d row Li k Lj``: activation rows ``[Li·MR, +MR)``, K chunk ``Lj`` (``k -``:
    all of K)."""

    name = "bsisa.ld.act"
    ISA_TYPE: ClassVar[type[isa.Instruction]] = isa.LdAct


@irdl_op_definition
class LdWgtOp(TensorRefInstruction):
    """``ld.wgt @d col Li k Lj``: channels ``[Li·COLS·TILES, +COLS·TILES)``, K chunk ``Lj``
    (``k -``: all of K)."""

    name = "bsisa.ld.wgt"
    ISA_TYPE: ClassVar[type[isa.Instruction]] = isa.LdWgt


@irdl_op_definition
class StOutOp(TensorRefInstruction):
    """``st.out @d row Li col Lj``: store the output block."""

    name = "bsisa.st.out"
    ISA_TYPE: ClassVar[type[isa.Instruction]] = isa.StOut


@irdl_op_definition
class DrainOp(InstructionOp):
    """``drain`` or ``drain bias @d``: scale the accumulators, add the bias, round to FP16."""

    name = "bsisa.drain"
    ISA_TYPE: ClassVar[type[isa.Instruction]] = isa.Drain

    @property
    def bias_name(self) -> str | None:
        bias = self.field_value("bias")
        assert not isinstance(bias, int)
        return bias


INSTRUCTION_OPS: tuple[type[InstructionOp], ...] = (
    NopOp,
    HaltOp,
    CfgArrayOp,
    CfgSvOp,
    CfgFmtOp,
    CfgKchunkOp,
    CfgMblockOp,
    LoopOp,
    LoopDownOp,
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
        if isinstance(op, LoopLikeOp):
            out.extend(ops_to_isa(list(op.body.block.ops), desc_index))
            out.append(isa.EndLoop(op.level))
    return out


def ops_from_isa(instructions: Sequence[isa.Instruction], desc_name: DescName) -> list[Operation]:
    """Ops of an instruction stream, each ``loop`` … ``endloop`` becoming a ``bsisa.loop``.

    Raises ``isa.IsaError`` naming the instruction index on unbalanced loops.
    """
    top: list[Operation] = []
    stack: list[tuple[LoopLikeOp, list[Operation]]] = []
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
        if isinstance(op, LoopLikeOp):
            stack.append((op, []))
    if stack:
        raise isa.IsaError(f"loop L{stack[-1][0].level} never closed", index=len(instructions))
    return top


def instruction_count(ops: Sequence[Operation]) -> int:
    """Encoded instruction words of ``ops``: a loop is two (``loop``, ``endloop``) plus its body."""
    total = 0
    for op in ops:
        if isinstance(op, LoopLikeOp):
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
    sv: list[int | None] = dataclasses.field(default_factory=lambda: [None] * isa.NUM_SV_SLOTS)


class _InvalidField(Exception):
    """An instruction of the schedule holds a field value the ISA rejects."""


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

    def check(self, ops: Sequence[Operation]) -> None:
        """Check the schedule ``ops``. It is checked up to the first instruction holding a
        field value the ISA rejects: that instruction's own verifier reports it, where it is."""
        try:
            self.run(ops)
        except _InvalidField:
            pass

    def run(self, ops: Sequence[Operation]) -> None:
        for op in ops:
            self.visit(op)

    def visit(self, op: Operation) -> None:
        cfg = self.config
        if isinstance(op, InstructionOp):
            try:
                op.to_isa(_any_descriptor).check()
            except isa.IsaError:
                raise _InvalidField from None
        if isinstance(op, CfgArrayOp):
            array = op.to_isa(_any_descriptor)
            assert isinstance(array, isa.CfgArray)
            cfg.rows, cfg.cols, cfg.tiles = array.rows, array.cols, array.tiles
            cfg.block_rows = cfg.rows
        elif isinstance(op, CfgFmtOp):
            # By name: an unknown format is the cfg.fmt op's own error, reported there.
            fmt, scale_bits, group_size = op.field_values().values()
            assert isinstance(fmt, str) and isinstance(scale_bits, int)
            assert isinstance(group_size, int)
            cfg.fmt, cfg.scale_bits, cfg.group_size = fmt, scale_bits, group_size
        elif isinstance(op, CfgSvOp):
            sv = op.to_isa(_any_descriptor)
            assert isinstance(sv, isa.CfgSv)
            cfg.sv[sv.slot] = sv.value
        elif isinstance(op, CfgKchunkOp):
            chunk = op.to_isa(_any_descriptor)
            assert isinstance(chunk, isa.CfgKchunk)
            cfg.kc = chunk.kc
        elif isinstance(op, CfgMblockOp):
            self.require(op, "cfg.array", cfg.rows)
            assert cfg.rows is not None
            mblock = op.to_isa(_any_descriptor)
            assert isinstance(mblock, isa.CfgMblock)
            block_rows = mblock.rows
            problem = block_rows_error(block_rows, cfg.rows)
            if problem:
                raise VerifyException(f"bsisa.cfg.mblock: {problem}")
            cfg.block_rows = block_rows
        elif isinstance(op, LoopLikeOp):
            self.run(list(op.body.block.ops))
        elif isinstance(op, MacOp | AccClrOp):
            self.require(op, "cfg.array", cfg.rows)
            if isinstance(op, MacOp):
                self.require(op, "cfg.fmt", cfg.fmt)
                self.require(op, "cfg.kchunk", cfg.kc)
                self.check_kc_multiple(op, cfg.weight_k)
                assert cfg.fmt is not None and cfg.group_size is not None
                known = cfg.fmt in FORMAT_NAMES  # else the cfg.fmt op's own error
                problem = known and group_accumulator_error(cfg.fmt, cfg.group_size, cfg.sv)
                if problem:
                    raise VerifyException(f"bsisa.mac: {problem}")
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
        if info.kind != op.tensor_kind():
            raise VerifyException(
                f"{op.name}: @{op.desc_name} is a {info.kind}, expected a {op.tensor_kind()}"
            )
        self.require(op, "cfg.array", cfg.rows)
        assert cfg.block_rows is not None and cfg.cols is not None and cfg.tiles is not None
        block_cols = cfg.cols * cfg.tiles
        first_kw, second_kw = (field.keyword for field in op.level_fields())
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
        if loop.iterations != needed:
            raise VerifyException(
                f"{op.name} @{op.desc_name}: {field} loop L{level} runs {loop.iterations} times "
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
    """Shape, format, group size and scale bits of a ``!bitmod.qweight`` type; ``batch`` is
    B of a ``BxNxK`` weight (``shape`` is then one slice's ``[N, K]``)."""

    shape: tuple[int, int]
    fmt: str
    group_size: int
    scale_bits: int
    batch: int | None = None


def qweight_info(value_type: Attribute) -> QWeightInfo | None:
    """``!bitmod.qweight<[B x]NxK, NAME, G, sb=S>`` as a :class:`QWeightInfo`; None otherwise."""
    if not isinstance(value_type, QWeightType):
        return None
    return QWeightInfo(
        (value_type.out_features, value_type.in_features),
        value_type.format_name,
        value_type.group_size.data,
        value_type.scale_bits.data,
        value_type.batch,
    )


def slice_matrix_shape(value: SSAValue, what: str, batch: int | None) -> tuple[int, int]:
    """``(rows, K)`` the array sees in one run: all rows of ``[M, K]`` / ``[B, M, K]``, or
    one slice's ``M`` when every one of ``batch`` slices has its own weight."""
    if batch is None:
        return matrix_shape(value, what)
    shape = _tensor_shape(value, what, 3)
    if shape[0] != batch:
        raise VerifyException(
            f"{what} batch {shape[0]} does not match the {batch} slices of the weight"
        )
    return shape[1], shape[2]


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

    custom_directives = _DIRECTIVES
    assembly_format = (
        "$act `,` $weight (`bias` $bias^)? `tiling` custom<Checked>($tiling) attr-dict "
        "`:` functional-type(operands, results) custom<Body>($schedule)"
    )

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

    @property
    def weight_info(self) -> QWeightInfo:
        info = qweight_info(self.weight.type)
        assert info is not None, "operand_def(QWeightType) guarantees a qweight"
        return info

    def matrix_shapes(self) -> tuple[int, int, int]:
        """``(M, N, K)`` as the array sees them in one run (batched activations flattened,
        unless each batch slice has its own weight)."""
        m, k = slice_matrix_shape(self.act, "activation", self.weight_info.batch)
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
        _ScheduleChecker(self._resolve, config).check(list(self.schedule.block.ops))

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

    ``%y = bsisa.launch @program[i] act @d0(%x) [weight @d1(%bt : type)] [bias @d3(%b)]
    out @d2 : (types) -> type`` binds the host tensor ``%x`` to descriptor ``@d0`` (and the bias to
    ``@d3``) and reads the result back from ``@d2``; a batched ``[B, M, K]`` tensor is the
    descriptor's ``[B·M, K]`` matrix. A ``weight`` binding is a float ``[N, K]`` (or
    ``[B, N, K]``) tensor that the host quantizes into the ``qweight`` descriptor before the
    run, in its format, group size and scale bits (a weight computed at run time: attention's
    ``Kᵀ`` or ``V``); with a ``[B, N, K]`` weight the segment runs once per batch slice, each
    descriptor then holding one slice (``act [M, K]``, ``qweight [N, K]``, ``out [M, N]``).
    Segment ``i`` starts at the ``i``-th ``bsisa.cfg.array`` of the program and runs to the
    next one (the last segment to ``bsisa.halt``).
    """

    name = "bsisa.launch"

    act = operand_def(TensorType)
    weight = opt_operand_def(TensorType)
    bias = opt_operand_def(TensorType)
    result = result_def(TensorType)
    program = prop_def(FlatSymbolRefAttrConstr)
    segment = prop_def(IntegerAttr[I64])
    act_desc = prop_def(FlatSymbolRefAttrConstr)
    out_desc = prop_def(FlatSymbolRefAttrConstr)
    weight_desc = opt_prop_def(FlatSymbolRefAttrConstr)
    bias_desc = opt_prop_def(FlatSymbolRefAttrConstr)

    irdl_options = (AttrSizedOperandSegments(as_property=True),)

    custom_directives = _DIRECTIVES
    assembly_format = (
        "custom<Ref>($program) `[` custom<Int>($segment) `]` "
        "`act` custom<Ref>($act_desc) `(` $act `)` "
        "(`weight` custom<Ref>($weight_desc) `(` $weight^ `:` type($weight) `)`)? "
        "(`bias` custom<Ref>($bias_desc) `(` $bias^ `)`)? "
        "`out` custom<Ref>($out_desc) attr-dict "
        "`:` `(` type($act) (`,` type($bias)^)? `)` `->` type($result)"
    )

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
        weight: SSAValue | None = None,
        weight_desc: str | None = None,
    ) -> None:
        properties: dict[str, Attribute] = {
            "program": SymbolRefAttr(program),
            "segment": IntegerAttr(segment, i64),
            "act_desc": SymbolRefAttr(act_desc),
            "out_desc": SymbolRefAttr(out_desc),
        }
        if bias_desc is not None:
            properties["bias_desc"] = SymbolRefAttr(bias_desc)
        if weight_desc is not None:
            properties["weight_desc"] = SymbolRefAttr(weight_desc)
        super().__init__(
            operands=[act, [] if weight is None else [weight], [] if bias is None else [bias]],
            result_types=[result_type],
            properties=properties,
        )

    def program_op(self) -> ProgramOp:
        program = SymbolTable.lookup_symbol(self, self.program)
        if not isinstance(program, ProgramOp):
            raise VerifyException(f"@{_symbol(self.program)} is not a bsisa.program")
        return program

    @property
    def slices(self) -> int | None:
        """Runs of the segment, one per batch slice, when the run-time weight is batched."""
        if self.weight is None:
            return None
        weight_type = self.weight.type
        assert isinstance(weight_type, TensorType)
        shape = weight_type.get_shape()
        return shape[0] if len(shape) == 3 else None

    def verify_(self) -> None:
        if (self.bias is None) != (self.bias_desc is None):
            raise VerifyException("a bias operand and a bias descriptor go together")
        if (self.weight is None) != (self.weight_desc is None):
            raise VerifyException("a weight operand and a weight descriptor go together")
        program = self.program_op()
        segments = len(program.segments())
        if not 0 <= self.segment.value.data < segments:
            raise VerifyException(
                f"segment {self.segment.value.data} out of range; "
                f"@{program.sym_name.data} has {segments} segments"
            )
        batch = self.slices
        bindings: list[tuple[str, SymbolRefAttr, SSAValue]] = [
            ("act", self.act_desc, self.act),
            ("out", self.out_desc, self.result),
        ]
        if self.bias is not None and self.bias_desc is not None:
            bindings.append(("bias", self.bias_desc, self.bias))
        if self.weight is not None and self.weight_desc is not None:
            bindings.append(("qweight", self.weight_desc, self.weight))
        for kind, ref, value in bindings:
            desc = program.descriptor(_symbol(ref))
            if desc is None or desc.kind.data != kind:
                raise VerifyException(
                    f"@{_symbol(ref)} is not a {kind} descriptor of @{program.sym_name.data}"
                )
            if kind == "bias":
                shape: tuple[int, ...] = _tensor_shape(value, kind, 1)
            else:
                shape = slice_matrix_shape(value, kind, batch)
            if shape != desc.shape_tuple:
                raise VerifyException(
                    f"{kind} tensor shape {list(shape)} does not match "
                    f"@{_symbol(ref)} {list(desc.shape_tuple)}"
                )


Bsisa = Dialect(
    "bsisa",
    [ProgramOp, DescOp, *INSTRUCTION_OPS, TiledMatmulOp, LaunchOp],
    [TilingAttr, DescKindAttr],
)
