"""The `bitmod` dialect: quantized weights and the per-group mixed-datatype matmul.

Attributes and types
--------------------
``#bitmod.dtype<NAME>``
    A weight number format, ``NAME`` one of ``bitmod.runtime.formats.FORMAT_NAMES``
    (``bitmod3``, ``int8``, ``mxfp4``, ...). Unknown names are rejected on parse with the
    list of valid ones.

``!bitmod.qweight<NxK, NAME, G>`` / ``!bitmod.qweight<NxK, NAME, G, sb=S>``
    A quantized weight matrix of N output channels by K inputs in format ``NAME``, split
    into groups of ``G`` consecutive elements along K. Each group stores a scale, and for
    BitMoD mixtures a 2-bit special-value index. ``S`` is the bit width of the
    second-level (per output channel) quantized group scales; it is 8 when omitted, and
    0 means the group scales stay FP16. MX formats use their shared E8M0 block scale, so
    their group size is the MX block size.

``!bitmod.qweight<BxNxK, NAME, G>``
    A batch of ``B`` such matrices, one per batch slice of a ``bitmod.matmul``: the right
    operand of an activation × activation product (attention's ``Kᵀ`` or ``V``), quantized
    at run time (``bitmod.quantize ... runtime``), never stored in the archive.

Operations
----------
``%w = bitmod.param "fc1.weight" : tensor<128x64xf32>``
    A float tensor taken by name from the external parameter archive (a safetensors file
    named by the module attribute ``bitmod.params``, resolved relative to the IR file).

``%q = bitmod.quantize %w : tensor<128x64xf32> -> !bitmod.qweight<128x64, bitmod3, 128>``
    Quantization of a weight into the format of the result type. Without ``into`` it is a
    request; ``bitmod-quantize`` performs it, stores codes, group scales and special-value
    indices in the archive and records the entry name:
    ``bitmod.quantize %w into "fc1.weight" : ...``.

``%q = bitmod.quantize %bt runtime into "matmul1.rhs" : tensor<5x7x8xf32> ->
!bitmod.qweight<5x7x8, int8, 8>``
    Quantization when the program runs: ``%bt`` is an activation (``Bᵀ`` of ``A·B``, rows
    along the reduction), rounded to FP16 and quantized by the host into the memory-image
    tensor named by ``into`` before each accelerator run (BitMoD Sec. IV-B: K and V in
    INT8/INT4). ``bitmod-quantize`` leaves it alone; it needs ``into``.

``%y = bitmod.matmul %x, %q bias %b : (tensor<4x64xf32>, !bitmod.qweight<128x64, ...>,
tensor<128xf32>) -> tensor<4x128xf32>``
    ``y[m, n] = sum_k x[m, k] * w[n, k] + b[n]``, i.e. ``Y = X W^T (+ b)``: the activation
    ``X`` is ``[M, K]`` (or batched ``[B, M, K]``), the weight ``W`` is ``[N, K]`` as
    PyTorch's ``nn.Linear`` stores it, either quantized (``!bitmod.qweight``) or still a
    float tensor (between ``convert-linalg-to-bitmod`` and ``bitmod-quantize``). With a
    batched ``!bitmod.qweight<BxNxK, ...>`` each slice has its own weight:
    ``y[b, m, n] = sum_k x[b, m, k] * w[b, n, k]`` (no bias).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bitmod.runtime.formats import FORMAT_NAMES, get_format
from xdsl.dialects.builtin import (
    AnyFloat,
    ArrayAttr,
    IntAttr,
    StringAttr,
    TensorType,
    UnitAttr,
)
from xdsl.ir import Attribute, Dialect, ParametrizedAttribute, SSAValue, TypeAttribute
from xdsl.irdl import (
    IRDLOperation,
    irdl_attr_definition,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    opt_prop_def,
    prop_def,
    result_def,
    traits_def,
)
from xdsl.parser import AttrParser
from xdsl.printer import Printer
from xdsl.traits import NoMemoryEffect
from xdsl.utils.exceptions import VerifyException

DEFAULT_SCALE_BITS = 8
"""Second-level scale width when a `!bitmod.qweight` type does not spell it out."""

MAX_SCALE_BITS = 8
"""Widest second-level group scale the dialect accepts (INT8, the paper's choice)."""

# MLIR's bare-identifier syntax; dtype names outside it are printed as string literals.
_BARE_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_$.\-]*")


def known_format_names() -> tuple[str, ...]:
    """The format names the runtime implements, in their registry order."""
    return tuple(FORMAT_NAMES)


def unknown_dtype_message(name: str) -> str:
    """The one-line complaint about a format name that does not exist."""
    return f"unknown bitmod dtype '{name}'; valid dtypes: {', '.join(known_format_names())}"


def check_dtype_name(name: str) -> None:
    """Raise VerifyException unless `name` is a known format name."""
    if name not in known_format_names():
        raise VerifyException(unknown_dtype_message(name))


def _print_dtype_name(printer: Printer, name: str) -> None:
    if _BARE_IDENT.fullmatch(name):
        printer.print_string(name)
    else:
        printer.print_string_literal(name)


def _parse_dtype_name(parser: AttrParser) -> str:
    """Parse a format name (bare identifier or string literal), checked at its position."""
    start = parser.pos
    name = parser.parse_optional_identifier()
    if name is None:
        name = parser.parse_optional_str_literal()
    if name is None:
        parser.raise_error("expected a bitmod dtype name")
    if name not in known_format_names():
        parser.raise_error(unknown_dtype_message(name), start, parser.pos)
    return name


@irdl_attr_definition
class DtypeAttr(ParametrizedAttribute):
    """`#bitmod.dtype<NAME>`: a weight number format of `bitmod.runtime.formats`."""

    name = "bitmod.dtype"

    format_name: StringAttr

    def __init__(self, format_name: str | StringAttr):
        if isinstance(format_name, str):
            format_name = StringAttr(format_name)
        super().__init__(format_name)

    @property
    def data(self) -> str:
        return self.format_name.data

    def verify(self) -> None:
        check_dtype_name(self.format_name.data)

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        with parser.in_angle_brackets():
            return (StringAttr(_parse_dtype_name(parser)),)

    def print_parameters(self, printer: Printer) -> None:
        with printer.in_angle_brackets():
            _print_dtype_name(printer, self.format_name.data)


def check_qweight_parameters(
    shape: Sequence[int], format_name: str, group_size: int, scale_bits: int
) -> None:
    """Raise VerifyException unless the parameters describe a valid quantized weight."""
    if len(shape) not in (2, 3):
        raise VerifyException(
            f"qweight must be 2-D [N, K] (or 3-D [B, N, K], one per batch slice), got shape "
            f"{list(shape)}"
        )
    if any(d <= 0 for d in shape):
        raise VerifyException(f"qweight dimensions must be positive, got {list(shape)}")
    if group_size <= 0:
        raise VerifyException(f"qweight group size must be positive, got {group_size}")
    if scale_bits != 0 and not 2 <= scale_bits <= MAX_SCALE_BITS:
        raise VerifyException(
            f"qweight scale bits must be 0 (FP16 scales) or 2..{MAX_SCALE_BITS}, got {scale_bits}"
        )
    check_dtype_name(format_name)
    fmt = get_format(format_name)
    if fmt.family == "mx" and group_size != fmt.block_size:
        raise VerifyException(
            f"qweight of MX format '{fmt.name}' needs group size {fmt.block_size} "
            f"(its block), got {group_size}"
        )


@irdl_attr_definition
class QWeightType(ParametrizedAttribute, TypeAttribute):
    """`!bitmod.qweight<NxK, NAME, G[, sb=S]>`: an [N, K] weight quantized per group."""

    name = "bitmod.qweight"

    shape: ArrayAttr[IntAttr]
    dtype: DtypeAttr
    group_size: IntAttr
    scale_bits: IntAttr

    def __init__(
        self,
        shape: Sequence[int],
        dtype: str | DtypeAttr,
        group_size: int,
        scale_bits: int = DEFAULT_SCALE_BITS,
    ):
        if isinstance(dtype, str):
            dtype = DtypeAttr(dtype)
        super().__init__(
            ArrayAttr(IntAttr(d) for d in shape), dtype, IntAttr(group_size), IntAttr(scale_bits)
        )

    def get_shape(self) -> tuple[int, ...]:
        return tuple(d.data for d in self.shape.data)

    @property
    def out_features(self) -> int:
        return self.get_shape()[-2]

    @property
    def in_features(self) -> int:
        return self.get_shape()[-1]

    @property
    def batch(self) -> int | None:
        """B of a batched ``BxNxK`` weight (one matrix per batch slice), None for ``NxK``."""
        shape = self.get_shape()
        return shape[0] if len(shape) == 3 else None

    @property
    def format_name(self) -> str:
        return self.dtype.data

    def verify(self) -> None:
        check_qweight_parameters(
            self.get_shape(), self.dtype.data, self.group_size.data, self.scale_bits.data
        )

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        with parser.in_angle_brackets():
            shape_start = parser.pos
            dims = parser.parse_dimension_list()
            if len(dims) not in (2, 3) or any(d <= 0 for d in dims):
                parser.raise_error(
                    "expected a static positive NxK shape in !bitmod.qweight (or BxNxK: one "
                    "matrix per batch slice)",
                    shape_start,
                    parser.pos,
                )
            parser.parse_punctuation(",")
            dtype = DtypeAttr(_parse_dtype_name(parser))
            parser.parse_punctuation(",")
            group = parser.parse_integer(allow_boolean=False, allow_negative=False)
            scale_bits = DEFAULT_SCALE_BITS
            if parser.parse_optional_punctuation(",") is not None:
                parser.parse_keyword("sb")
                parser.parse_punctuation("=")
                scale_bits = parser.parse_integer(allow_boolean=False, allow_negative=False)
            try:
                check_qweight_parameters(dims, dtype.data, group, scale_bits)
            except VerifyException as error:
                # Report at the type's position rather than as a location-less verify error.
                parser.raise_error(str(error), shape_start, parser.pos)
        return (ArrayAttr(IntAttr(d) for d in dims), dtype, IntAttr(group), IntAttr(scale_bits))

    def print_parameters(self, printer: Printer) -> None:
        with printer.in_angle_brackets():
            printer.print_string("x".join(str(d) for d in self.get_shape()) + ", ")
            _print_dtype_name(printer, self.dtype.data)
            printer.print_string(f", {self.group_size.data}")
            if self.scale_bits.data != DEFAULT_SCALE_BITS:
                printer.print_string(f", sb={self.scale_bits.data}")


def _static_float_tensor(value_type: Attribute, what: str, ranks: Sequence[int]) -> TensorType:
    """Check that `value_type` is a statically shaped float tensor of one of `ranks`."""
    if not isinstance(value_type, TensorType):
        raise VerifyException(f"{what} must be a tensor, got {value_type}")
    shape = value_type.get_shape()
    if len(shape) not in ranks:
        expected = " or ".join(f"{r}-D" for r in ranks)
        raise VerifyException(f"{what} must be {expected}, got {value_type}")
    if any(d < 0 for d in shape):
        raise VerifyException(f"{what} must have a static shape, got {value_type}")
    if not isinstance(value_type.element_type, AnyFloat):
        raise VerifyException(f"{what} must have a float element type, got {value_type}")
    return value_type


@irdl_op_definition
class ParamOp(IRDLOperation):
    """A float tensor read by name from the external parameter archive."""

    name = "bitmod.param"

    param_name = prop_def(StringAttr, prop_name="name")
    result = result_def(TensorType)

    traits = traits_def(NoMemoryEffect())

    assembly_format = "$name attr-dict `:` type($result)"

    def __init__(self, param_name: str, result_type: TensorType):
        super().__init__(properties={"name": StringAttr(param_name)}, result_types=[result_type])

    def verify_(self) -> None:
        if not self.param_name.data:
            raise VerifyException("bitmod.param needs a non-empty parameter name")
        _static_float_tensor(self.result.type, "result", ranks=(1, 2))


@irdl_op_definition
class QuantizeOp(IRDLOperation):
    """Quantization of a float [N, K] weight into the format of its `!bitmod.qweight`."""

    name = "bitmod.quantize"

    weight = operand_def(TensorType)
    runtime = opt_prop_def(UnitAttr)
    """Quantized by the host when the program runs (an activation: attention's K/V)."""
    entry = opt_prop_def(StringAttr)
    """Archive (or, at run time, memory-image) name of the quantized tensor; absent until
    `bitmod-quantize` ran."""
    result = result_def(QWeightType)

    traits = traits_def(NoMemoryEffect())

    assembly_format = (
        "$weight (`runtime` $runtime^)? (`into` $entry^)? attr-dict `:` type($weight) `->` "
        "type($result)"
    )

    def __init__(
        self,
        weight: SSAValue,
        result_type: QWeightType,
        entry: str | None = None,
        runtime: bool = False,
    ):
        properties: dict[str, Attribute] = {} if entry is None else {"entry": StringAttr(entry)}
        if runtime:
            properties["runtime"] = UnitAttr()
        super().__init__(operands=[weight], result_types=[result_type], properties=properties)

    @property
    def is_runtime(self) -> bool:
        """The operand is quantized when the program runs, not into the archive."""
        return self.runtime is not None

    def verify_(self) -> None:
        ranks = (2, 3) if self.is_runtime else (2,)
        weight_type = _static_float_tensor(self.weight.type, "operand 'weight'", ranks=ranks)
        result_type = self.result.type
        assert isinstance(result_type, QWeightType)
        if tuple(weight_type.get_shape()) != result_type.get_shape():
            raise VerifyException(
                f"operand 'weight' has shape {list(weight_type.get_shape())} but the result "
                f"{result_type} has shape {list(result_type.get_shape())}"
            )
        if self.entry is not None and not self.entry.data:
            raise VerifyException("bitmod.quantize 'into' needs a non-empty archive name")
        if self.is_runtime and self.entry is None:
            raise VerifyException(
                "a 'runtime' bitmod.quantize needs 'into' (the memory-image name the host "
                "quantizes the operand into)"
            )


@irdl_op_definition
class MatmulOp(IRDLOperation):
    """`Y = X W^T (+ b)` with a per-group quantized (or still float) weight W [N, K]."""

    name = "bitmod.matmul"

    input = operand_def(TensorType)
    weight = operand_def(QWeightType | TensorType)
    bias = opt_operand_def(TensorType)
    result = result_def(TensorType)

    traits = traits_def(NoMemoryEffect())

    assembly_format = (
        "$input `,` $weight (`bias` $bias^)? attr-dict `:` functional-type(operands, results)"
    )

    def __init__(
        self,
        input: SSAValue,
        weight: SSAValue,
        result_type: TensorType,
        bias: SSAValue | None = None,
    ):
        super().__init__(
            operands=[input, weight, [] if bias is None else [bias]],
            result_types=[result_type],
        )

    def weight_shape(self) -> tuple[int, int]:
        """[N, K] of the weight operand, whether quantized or not."""
        weight_type = self.weight.type
        if isinstance(weight_type, QWeightType):
            return weight_type.out_features, weight_type.in_features
        assert isinstance(weight_type, TensorType)
        out_features, in_features = weight_type.get_shape()
        return out_features, in_features

    @property
    def weight_batch(self) -> int | None:
        """B when every batch slice has its own (run-time quantized) weight, else None."""
        weight_type = self.weight.type
        return weight_type.batch if isinstance(weight_type, QWeightType) else None

    def verify_(self) -> None:
        input_type = _static_float_tensor(self.input.type, "operand 'input'", ranks=(2, 3))
        input_shape = tuple(input_type.get_shape())
        weight_type = self.weight.type
        if not isinstance(weight_type, QWeightType):
            _static_float_tensor(weight_type, "operand 'weight'", ranks=(2,))
        out_features, in_features = self.weight_shape()
        if input_shape[-1] != in_features:
            raise VerifyException(
                f"operand 'weight' {weight_type} has K={in_features} but operand 'input' "
                f"{input_type} has K={input_shape[-1]}"
            )
        batch = self.weight_batch
        if batch is not None:
            if len(input_shape) != 3 or input_shape[0] != batch:
                raise VerifyException(
                    f"operand 'weight' {weight_type} holds one matrix per batch slice but "
                    f"operand 'input' {input_type} is not a [{batch}, M, K] batch"
                )
            if self.bias is not None:
                raise VerifyException("a matmul with a weight per batch slice takes no bias")
        element_type = input_type.element_type
        if self.bias is not None:
            bias_type = _static_float_tensor(self.bias.type, "operand 'bias'", ranks=(1,))
            if tuple(bias_type.get_shape()) != (out_features,):
                raise VerifyException(
                    f"operand 'bias' {bias_type} must have shape [{out_features}] (N of "
                    f"operand 'weight')"
                )
            if bias_type.element_type != element_type:
                raise VerifyException(
                    f"operand 'bias' {bias_type} must have element type {element_type} "
                    f"like operand 'input'"
                )
        result_type = _static_float_tensor(self.result.type, "result", ranks=(2, 3))
        expected_shape = (*input_shape[:-1], out_features)
        if tuple(result_type.get_shape()) != expected_shape:
            raise VerifyException(
                f"result {result_type} must have shape {list(expected_shape)} "
                f"(operand 'input' rows by N of operand 'weight')"
            )
        if result_type.element_type != element_type:
            raise VerifyException(
                f"result {result_type} must have element type {element_type} like operand 'input'"
            )


Bitmod = Dialect(
    "bitmod",
    [ParamOp, QuantizeOp, MatmulOp],
    [DtypeAttr, QWeightType],
)
