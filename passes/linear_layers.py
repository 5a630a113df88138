"""The torch side of ``convert-linalg-to-bitmod``: linear layers in torch-mlir's IR.

:func:`match_linear` recognizes a product ``Y = X W^T (+ b)`` whose weight is a compile-time
constant (through transposes and batch broadcasts) and whose accumulator starts at zero, and
evaluates the weight ``[N, K]`` and the bias as torch tensors (``dense<...>`` literals and
``dense_resource`` blobs). :func:`match_activation_product` recognizes a product of two
run-time values ``A·B`` (attention's ``Q·Kᵀ`` and ``P·V``) and :func:`transposed_operand`
builds its ``Bᵀ``, seeing through the transposes torch-mlir puts around it. The pass
(:mod:`bitmod.passes.convert_linalg_to_bitmod`) imports this module only when a module has a
product: it needs torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from bitmod.dialects.diagnostics import error_at
from bitmod.dialects.linalg_extras import BatchMatmulOp
from bitmod.passes.context import resource_blob
from xdsl.context import Context
from xdsl.dialects import arith, tensor
from xdsl.dialects.builtin import (
    AffineMapAttr,
    AnyFloat,
    ArrayAttr,
    BFloat16Type,
    DenseArrayBase,
    DenseIntOrFPElementsAttr,
    DenseResourceAttr,
    Float16Type,
    Float32Type,
    Float64Type,
    FloatAttr,
    TensorType,
    i64,
)
from xdsl.dialects.linalg import ops as linalg
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.ir.affine import AffineDimExpr, AffineExpr, AffineMap

FLOAT_DTYPES: dict[type[Attribute], torch.dtype] = {
    Float16Type: torch.float16,
    BFloat16Type: torch.bfloat16,
    Float32Type: torch.float32,
    Float64Type: torch.float64,
}
"""MLIR float element types -> torch dtypes (the weights' and the host runner's)."""


def _maps(*maps: AffineMap) -> ArrayAttr[AffineMapAttr]:
    return ArrayAttr(AffineMapAttr(m) for m in maps)


def _identity(rank: int) -> AffineMap:
    return AffineMap.identity(rank)


def _last_dim(rank: int) -> AffineMap:
    """(d0, ..., d{r-1}) -> (d{r-1}): a row vector broadcast over the leading dims."""
    return AffineMap(rank, 0, (AffineExpr.dimension(rank - 1),))


_MATMUL_MAPS = _maps(
    AffineMap.from_callable(lambda i, _, k: (i, k)),
    AffineMap.from_callable(lambda _, j, k: (k, j)),
    AffineMap.from_callable(lambda i, j, _: (i, j)),
)
_MATMUL_TRANSPOSED_B_MAPS = _maps(
    AffineMap.from_callable(lambda i, _, k: (i, k)),
    AffineMap.from_callable(lambda _, j, k: (j, k)),
    AffineMap.from_callable(lambda i, j, _: (i, j)),
)
_BATCH_MATMUL_MAPS = _maps(
    AffineMap.from_callable(lambda b, i, _, k: (b, i, k)),
    AffineMap.from_callable(lambda b, _, j, k: (b, k, j)),
    AffineMap.from_callable(lambda b, i, j, _: (b, i, j)),
)


# ---------------------------------------------------------------------------------------
# Constant folding of the weight chain
# ---------------------------------------------------------------------------------------


def constant_tensor(
    ctx: Context, op: arith.ConstantOp, dtype: torch.dtype | None = None
) -> torch.Tensor | None:
    """The value of a float tensor constant (``dense<...>`` or ``dense_resource<...>``), or of
    one of ``dtype`` (the elements' torch type, given for integer constants).

    ``dense_resource`` blobs are MLIR's ``"0x"`` + hex of a 4-byte little-endian alignment
    followed by the raw little-endian elements (one byte each for ``i1``).
    """
    attr = op.value
    value_type = attr.get_type() if hasattr(attr, "get_type") else None
    if not isinstance(value_type, TensorType):
        return None
    element_type = value_type.get_element_type()
    dtype = dtype or FLOAT_DTYPES.get(type(element_type))
    if dtype is None:
        return None
    shape = tuple(value_type.get_shape())
    if isinstance(attr, DenseIntOrFPElementsAttr):
        raw = attr.data.data
    elif isinstance(attr, DenseResourceAttr):
        handle = attr.resource_handle.data
        blob = resource_blob(ctx, handle)
        if blob is None:
            raise error_at(
                op,
                f"dense_resource blob '{handle}' has no data (the file's "
                "{-# dialect_resources #-} trailer does not define it)",
            )
        try:
            raw = bytes.fromhex(blob[2:])[4:]
        except ValueError:
            raise error_at(op, f"dense_resource blob '{handle}' is not valid hex") from None
    else:
        return None
    itemsize = torch.empty((), dtype=dtype).element_size()
    count = 1
    for dim in shape:
        count *= dim
    if len(raw) != count * itemsize:
        raise error_at(
            op,
            f"constant data has {len(raw)} bytes but {value_type} needs {count * itemsize}",
        )
    return torch.frombuffer(bytearray(raw), dtype=dtype).reshape(shape)


def _is_yield_of_input(generic: linalg.GenericOp) -> bool:
    """The body just yields its first block argument (a copy, transpose or broadcast)."""
    ops = list(generic.body.block.ops)
    return (
        len(ops) == 1
        and isinstance(ops[0], linalg.YieldOp)
        and len(ops[0].operands) == 1
        and ops[0].operands[0] is generic.body.block.args[0]
    )


@dataclass
class Folded:
    """A constant weight value and the ops that produced it."""

    value: torch.Tensor
    ops: list[Operation]


def fold_constant(ctx: Context, value: SSAValue) -> Folded | None:
    """Evaluate `value` if it is a float constant seen through transposes and broadcasts."""
    owner = value.owner
    if isinstance(owner, arith.ConstantOp):
        data = constant_tensor(ctx, owner)
        return None if data is None else Folded(data, [owner])
    if isinstance(owner, linalg.TransposeOp) and len(owner.inputs) == 1:
        source = fold_constant(ctx, owner.inputs[0])
        if source is None:
            return None
        permutation = tuple(owner.permutation.get_values())
        return Folded(source.value.permute(permutation), [owner, *source.ops])
    if isinstance(owner, linalg.BroadcastOp):
        source = fold_constant(ctx, owner.input)
        result_type = owner.init.type
        if source is None or not isinstance(result_type, TensorType):
            return None
        added = sorted(owner.dimensions.get_values())
        shape = tuple(result_type.get_shape())
        view = source.value
        for dim in added:
            view = view.unsqueeze(dim)
        return Folded(view.expand(shape), [owner, *source.ops])
    if isinstance(owner, linalg.GenericOp) and len(owner.inputs) == 1:
        return _fold_generic_copy(ctx, owner)
    return None


def _fold_generic_copy(ctx: Context, generic: linalg.GenericOp) -> Folded | None:
    """A `linalg.generic` that transposes or broadcasts its only input."""
    if not _is_yield_of_input(generic) or len(generic.outputs) != 1:
        return None
    result_type = generic.outputs[0].type
    if not isinstance(result_type, TensorType):
        return None
    in_map, out_map = (m.data for m in generic.indexing_maps.data)
    rank = len(result_type.get_shape())
    if out_map != _identity(rank) or any(
        it.data.value != "parallel" for it in generic.iterator_types.data
    ):
        return None
    if not all(isinstance(expr, AffineDimExpr) for expr in in_map.results):
        return None
    dims = [expr.position for expr in in_map.results if isinstance(expr, AffineDimExpr)]
    if len(set(dims)) != len(dims):
        return None
    source = fold_constant(ctx, generic.inputs[0])
    if source is None:
        return None
    view = spread_over_dims(source.value, dims, rank)
    return Folded(view.expand(tuple(result_type.get_shape())), [generic, *source.ops])


def spread_over_dims(value: torch.Tensor, dims: Sequence[int], rank: int) -> torch.Tensor:
    """``value``, whose axis ``i`` follows loop dim ``dims[i]`` (distinct dims), as a
    rank-``rank`` tensor over the loop dims: element (d0..d{r-1}) is value[d_{dims[0]}, ...].
    Its axes move to their dims' positions and the missing dims become size-1 axes."""
    order = sorted(range(len(dims)), key=lambda axis: dims[axis])
    value = value.permute(order)
    present = set(dims)
    for dim in range(rank):
        if dim not in present:
            value = value.unsqueeze(dim)
    return value


def zero_fill(value: SSAValue) -> Operation | None:
    """The `linalg.fill` with 0.0 (or all-zero constant) producing `value`, if it is one."""
    owner = value.owner
    if isinstance(owner, linalg.FillOp):
        scalar = owner.inputs[0].owner
        if (
            isinstance(scalar, arith.ConstantOp)
            and isinstance(scalar.value, FloatAttr)
            and scalar.value.value.data == 0.0
        ):
            return owner
    if isinstance(owner, arith.ConstantOp) and isinstance(owner.value, DenseIntOrFPElementsAttr):
        if not any(owner.value.data.data):
            return owner
    return None


# ---------------------------------------------------------------------------------------
# Bias add
# ---------------------------------------------------------------------------------------


@dataclass
class BiasAdd:
    """The add of a constant row vector to a product: the op, the vector, its producers."""

    op: Operation
    bias: torch.Tensor
    ops: list[Operation]


def _add_body_operands(generic: linalg.GenericOp) -> set[SSAValue] | None:
    """The two values a single-`arith.addf` body adds, if that is all the body does."""
    ops = list(generic.body.block.ops)
    if len(ops) != 2 or not isinstance(ops[0], arith.AddfOp):
        return None
    if not isinstance(ops[1], linalg.YieldOp) or tuple(ops[1].operands) != (ops[0].result,):
        return None
    return {ops[0].lhs, ops[0].rhs}


def _row_vector(ctx: Context, value: SSAValue, rank: int) -> Folded | None:
    """A constant 1-D vector broadcast along the leading dims to `rank` dims, as [N]."""
    folded = fold_constant(ctx, value)
    if folded is None:
        return None
    data = folded.value
    if data.dim() == 1:
        return folded
    if data.dim() != rank:
        return None
    row = data.reshape(-1, data.shape[-1])[0]
    if not torch.equal(data, row.expand(data.shape)):
        return None
    return Folded(row, folded.ops)


def match_bias_add(ctx: Context, product: SSAValue) -> BiasAdd | None:
    """The add of a constant row vector that is the only use of `product`."""
    user = product.get_user_of_unique_use()
    if user is None:
        return None
    product_type = product.type
    assert isinstance(product_type, TensorType)
    rank = len(product_type.get_shape())
    if isinstance(user, linalg.AddOp):
        if len(user.inputs) != 2 or len(user.res) != 1 or user.res[0].type != product_type:
            return None
        other = user.inputs[1] if user.inputs[0] is product else user.inputs[0]
        bias = _row_vector(ctx, other, rank)
        if bias is None or bias.value.dim() != 1:
            return None
        return BiasAdd(user, bias.value, bias.ops)
    if not isinstance(user, linalg.GenericOp):
        return None
    if len(user.inputs) != 2 or len(user.outputs) != 1 or len(user.res) != 1:
        return None
    if user.res[0].type != product_type:
        return None
    if any(it.data.value != "parallel" for it in user.iterator_types.data):
        return None
    added = _add_body_operands(user)
    args = user.body.block.args
    if added is None or added != {args[0], args[1]}:
        return None
    product_index = 0 if user.inputs[0] is product else 1
    other_index = 1 - product_index
    maps = [m.data for m in user.indexing_maps.data]
    if maps[product_index] != _identity(rank) or maps[2] != _identity(rank):
        return None
    if maps[other_index] == _last_dim(rank):
        bias = fold_constant(ctx, user.inputs[other_index])
    elif maps[other_index] == _identity(rank):
        bias = _row_vector(ctx, user.inputs[other_index], rank)
    else:
        return None
    if bias is None or bias.value.dim() != 1:
        return None
    return BiasAdd(user, bias.value, bias.ops)


# ---------------------------------------------------------------------------------------
# Products
# ---------------------------------------------------------------------------------------


def product_weight(ctx: Context, op: Operation) -> Folded | None:
    """The constant weight of a product as W [N, K], if it has one."""
    if isinstance(op, linalg.MatmulOp):
        maps = op.indexing_maps
        folded = fold_constant(ctx, op.inputs[1])
        if folded is None or folded.value.dim() != 2:
            return None
        if maps == _MATMUL_MAPS:
            return Folded(folded.value.t(), folded.ops)
        if maps == _MATMUL_TRANSPOSED_B_MAPS:
            return folded
        return None
    if isinstance(op, BatchMatmulOp):
        if op.indexing_maps != _BATCH_MATMUL_MAPS:
            return None
        folded = fold_constant(ctx, op.inputs[1])
        if folded is None or folded.value.dim() != 3:
            return None
        batched = folded.value  # [B, K, N]
        first = batched[0]
        if not torch.equal(batched, first.expand(batched.shape)):
            return None  # a different weight per batch is not one quantized matrix
        return Folded(first.t(), folded.ops)
    return None


@dataclass
class LinearLayer:
    """A product ``Y = X W^T (+ b)`` with a constant weight and a zero accumulator."""

    product: Operation
    fill: Operation
    """What makes the accumulator zero (a ``linalg.fill`` or a zero constant)."""
    weight: Folded
    """W [N, K] and the ops that produced it."""
    bias_add: BiasAdd | None
    """The add of a bias of the activation's type folded into the layer, if any."""

    @property
    def replaced(self) -> Operation:
        """The op whose result the layer's ``bitmod.matmul`` replaces."""
        return self.product if self.bias_add is None else self.bias_add.op

    def dead_candidates(self) -> list[Operation]:
        """The ops the layer used, which may be unused once it is converted."""
        ops = [self.replaced, self.product, self.fill, *self.weight.ops]
        return ops + (self.bias_add.ops if self.bias_add is not None else [])


def match_linear(ctx: Context, op: Operation) -> LinearLayer | None:
    """The linear layer of a ``linalg.matmul`` / ``linalg.batch_matmul``, if it is one."""
    if not isinstance(op, linalg.MatmulOp | BatchMatmulOp):
        return None
    if len(op.inputs) != 2 or len(op.outputs) != 1 or len(op.res) != 1:
        return None
    input_type = op.inputs[0].type
    if not isinstance(input_type, TensorType) or not isinstance(
        input_type.get_element_type(), AnyFloat
    ):
        return None
    fill = zero_fill(op.outputs[0])
    if fill is None:
        return None
    weight = product_weight(ctx, op)
    if weight is None:
        return None
    bias_add = match_bias_add(ctx, op.res[0])
    if bias_add is not None and (
        bias_add.bias.shape[0] != weight.value.shape[0]
        or bias_add.bias.dtype != FLOAT_DTYPES.get(type(input_type.get_element_type()))
    ):
        bias_add = None  # bitmod.matmul adds a bias of the activation's type only
    return LinearLayer(op, fill, weight, bias_add)


@dataclass
class ActivationProduct:
    """A product ``Y = A·B`` of two run-time values with a zero accumulator."""

    product: Operation
    fill: Operation
    rhs_is_transposed: bool
    """The right operand is already ``Bᵀ`` (``linalg.matmul`` with maps ``(i,k),(j,k)``)."""

    def dead_candidates(self) -> list[Operation]:
        return [self.product, self.fill]


def _static_float_tensor(value: SSAValue) -> TensorType | None:
    value_type = value.type
    if not isinstance(value_type, TensorType) or not isinstance(
        value_type.get_element_type(), AnyFloat
    ):
        return None
    if any(d < 0 for d in value_type.get_shape()):
        return None
    return value_type


def match_activation_product(ctx: Context, op: Operation) -> ActivationProduct | None:
    """The ``linalg.matmul`` / ``linalg.batch_matmul`` of two run-time float operands
    (the right one not a constant) starting from zero, if ``op`` is one."""
    if not isinstance(op, linalg.MatmulOp | BatchMatmulOp):
        return None
    if len(op.inputs) != 2 or len(op.outputs) != 1 or len(op.res) != 1:
        return None
    lhs, rhs = (_static_float_tensor(v) for v in op.inputs)
    if lhs is None or rhs is None or lhs.get_element_type() != rhs.get_element_type():
        return None
    fill = zero_fill(op.outputs[0])
    if fill is None or fold_constant(ctx, op.inputs[1]) is not None:
        return None
    if isinstance(op, BatchMatmulOp):
        if op.indexing_maps != _BATCH_MATMUL_MAPS:
            return None
        return ActivationProduct(op, fill, rhs_is_transposed=False)
    if op.indexing_maps == _MATMUL_MAPS:
        return ActivationProduct(op, fill, rhs_is_transposed=False)
    if op.indexing_maps == _MATMUL_TRANSPOSED_B_MAPS:
        return ActivationProduct(op, fill, rhs_is_transposed=True)
    return None


def _swap_last_two(permutation: tuple[int, ...]) -> tuple[int, ...]:
    return (*permutation[:-2], permutation[-1], permutation[-2])


def _last_two_kept(collapse: tensor.CollapseShapeOp) -> bool:
    """The collapse merges leading dims only: its last two groups are single dims."""
    groups = [[d.value.data for d in group.data] for group in collapse.reassociation.data]
    rank = sum(len(group) for group in groups)
    return len(groups) >= 2 and groups[-2:] == [[rank - 2], [rank - 1]]


def transposed_operand(value: SSAValue) -> tuple[list[Operation], SSAValue]:
    """``Bᵀ`` (the last two dims swapped) of ``value``: new ops and their result.

    torch-mlir writes ``Kᵀ`` as a ``linalg.transpose`` (possibly under a
    ``tensor.collapse_shape`` that merges batch and heads); its ``Bᵀ`` is the same transpose
    with the last two entries of the permutation swapped, so no second data movement is
    added (the old transpose is erased when nothing else uses it). Anything else gets a new
    ``linalg.transpose``.
    """
    value_type = value.type
    assert isinstance(value_type, TensorType)
    shape = tuple(value_type.get_shape())
    transposed_shape = (*shape[:-2], shape[-1], shape[-2])
    owner = value.owner
    collapse = None
    if isinstance(owner, tensor.CollapseShapeOp) and _last_two_kept(owner):
        collapse, owner = owner, owner.src.owner
    if isinstance(owner, linalg.TransposeOp) and len(owner.inputs) == 1:
        source = owner.inputs[0]
        source_type = source.type
        assert isinstance(source_type, TensorType)
        permutation = _swap_last_two(tuple(owner.permutation.get_values()))
        ops: list[Operation] = []
        if permutation == tuple(range(len(permutation))):
            result = source
        else:
            source_shape = source_type.get_shape()
            out_type = TensorType(
                source_type.get_element_type(), [source_shape[p] for p in permutation]
            )
            ops += _transpose(source, permutation, out_type)
            result = ops[-1].results[0]
        if collapse is not None:
            collapsed_type = TensorType(value_type.get_element_type(), transposed_shape)
            new_collapse = tensor.CollapseShapeOp(
                operands=[result],
                result_types=[collapsed_type],
                properties={"reassociation": collapse.reassociation},
            )
            ops.append(new_collapse)
            result = new_collapse.result
        return ops, result
    rank = len(shape)
    permutation = (*range(rank - 2), rank - 1, rank - 2)
    out_type = TensorType(value_type.get_element_type(), transposed_shape)
    ops = _transpose(value, permutation, out_type)
    return ops, ops[-1].results[0]


def _transpose(
    value: SSAValue, permutation: tuple[int, ...], out_type: TensorType
) -> list[Operation]:
    empty = tensor.EmptyOp((), out_type)
    permutation_attr = DenseArrayBase.from_list(i64, permutation)
    return [empty, linalg.TransposeOp(value, empty.tensor, permutation_attr, out_type)]


def weight_key(weight: Folded) -> tuple[int, str]:
    """Identifies a weight value: its source constant and its layout (tied weights)."""
    return id(weight.ops[-1]), f"{tuple(weight.value.shape)}{weight.value.stride()}"


def element_type_of(producers: list[Operation]) -> Attribute:
    """The element type of the constant at the end of a value's ``producers`` chain."""
    source_type = producers[-1].results[0].type
    assert isinstance(source_type, TensorType)
    return source_type.get_element_type()


_ERASABLE = (
    arith.ConstantOp,
    tensor.EmptyOp,
    tensor.CollapseShapeOp,
    linalg.FillOp,
    linalg.TransposeOp,
    linalg.BroadcastOp,
    linalg.GenericOp,
    linalg.AddOp,
    linalg.MatmulOp,
    BatchMatmulOp,
)


def is_erasable(op: Operation) -> bool:
    """A side-effect-free op of a weight chain, erased once nothing uses it."""
    return isinstance(op, _ERASABLE)
