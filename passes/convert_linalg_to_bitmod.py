"""`convert-linalg-to-bitmod`: torch-mlir's linear layers become `bitmod.matmul`.

torch-mlir (``output_type="linalg-on-tensors"``) writes ``nn.Linear`` as

.. code-block:: mlir

    %w  = arith.constant dense_resource<...> : tensor<NxKxf32>        // weight W [N, K]
    %wt = linalg.transpose ins(%w) outs(%e) permutation = [1, 0]        // W^T   [K, N]
    %z  = linalg.fill ins(%zero) outs(%e2)                             // 0     [M, N]
    %y  = linalg.matmul ins(%x, %wt) outs(%z)                           // X W^T
    %yb = linalg.generic {maps (d0,d1)->(d0,d1), (d0,d1)->(d1), ...}   // + b[n] per row
            ins(%y, %b) { addf }

and batched products as ``linalg.batch_matmul`` whose weight is a constant broadcast along
the batch. The pass rewrites every such product ``Y = X W^T (+ b)`` whose weight is a
compile-time constant (through transposes and batch broadcasts) and whose accumulator starts
at zero into

.. code-block:: mlir

    %w = bitmod.param "fc1.weight" : tensor<NxKxf32>
    %b = bitmod.param "fc1.bias" : tensor<Nxf32>
    %y = bitmod.matmul %x, %w bias %b : (...) -> tensor<MxNxf32>

moving the weight ``[N, K]`` (and the bias) into the parameter archive of the context. A
bias add is folded when the product's only user adds a constant row vector to it (directly
indexed by the last dimension, or through a ``linalg.broadcast`` / broadcasting
``linalg.generic``), as ``linalg.generic`` or ``linalg.add``.

Naming: the i-th converted product (1-based, program order) is layer ``fc<i>`` with
parameters ``fc<i>.weight`` and ``fc<i>.bias``, skipping names the archive already has;
torch-mlir's export keeps no module names. A weight constant used by several products
becomes one parameter.

Everything else stays as it was, including products whose weight is not constant, whose
accumulator is not zero, or whose batched weight differs per batch (not one quantized
matrix); the transposes, fills and constants only the converted ops used are erased. The
module gets ``bitmod.params = "<ctx.params_name>"``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from bitmod.dialects.bitmod import MatmulOp, ParamOp
from bitmod.dialects.diagnostics import error_at
from bitmod.dialects.linalg_extras import BatchMatmulOp
from bitmod.passes.context import PARAMS_ATTR, BitmodContext, archive_of, resource_blob
from bitmod.runtime.storage.archive import ParamArchive
from xdsl.context import Context
from xdsl.dialects import arith, tensor
from xdsl.dialects.builtin import (
    AffineMapAttr,
    AnyFloat,
    ArrayAttr,
    BFloat16Type,
    DenseIntOrFPElementsAttr,
    DenseResourceAttr,
    Float16Type,
    Float32Type,
    Float64Type,
    FloatAttr,
    ModuleOp,
    StringAttr,
    TensorType,
)
from xdsl.dialects.linalg import ops as linalg
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.ir.affine import AffineDimExpr, AffineExpr, AffineMap
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

LAYER_PREFIX = "fc"

_TORCH_DTYPES: dict[type[Attribute], torch.dtype] = {
    Float16Type: torch.float16,
    BFloat16Type: torch.bfloat16,
    Float32Type: torch.float32,
    Float64Type: torch.float64,
}


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


def constant_tensor(ctx: Context, op: arith.ConstantOp) -> torch.Tensor | None:
    """The value of a float tensor constant (``dense<...>`` or ``dense_resource<...>``).

    ``dense_resource`` blobs are MLIR's ``"0x"`` + hex of a 4-byte little-endian alignment
    followed by the raw little-endian elements.
    """
    attr = op.value
    value_type = attr.get_type() if hasattr(attr, "get_type") else None
    if not isinstance(value_type, TensorType):
        return None
    element_type = value_type.get_element_type()
    dtype = _TORCH_DTYPES.get(type(element_type))
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
class _Folded:
    """A constant weight value and the ops that produced it."""

    value: torch.Tensor
    ops: list[Operation]


def fold_constant(ctx: Context, value: SSAValue) -> _Folded | None:
    """Evaluate `value` if it is a float constant seen through transposes and broadcasts."""
    owner = value.owner
    if isinstance(owner, arith.ConstantOp):
        data = constant_tensor(ctx, owner)
        return None if data is None else _Folded(data, [owner])
    if isinstance(owner, linalg.TransposeOp) and len(owner.inputs) == 1:
        source = fold_constant(ctx, owner.inputs[0])
        if source is None:
            return None
        permutation = tuple(owner.permutation.get_values())
        return _Folded(source.value.permute(permutation), [owner, *source.ops])
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
        return _Folded(view.expand(shape), [owner, *source.ops])
    if isinstance(owner, linalg.GenericOp) and len(owner.inputs) == 1:
        return _fold_generic_copy(ctx, owner)
    return None


def _fold_generic_copy(ctx: Context, generic: linalg.GenericOp) -> _Folded | None:
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
    # Output element at index (d0..d{r-1}) is source[d_{dims[0]}, d_{dims[1]}, ...]: move the
    # source axes to their output positions, then insert and expand the missing ones.
    view = source.value
    order = sorted(range(len(dims)), key=lambda axis: dims[axis])
    view = view.permute(order)
    present = sorted(dims)
    for dim in range(rank):
        if dim not in present:
            view = view.unsqueeze(dim)
    return _Folded(view.expand(tuple(result_type.get_shape())), [generic, *source.ops])


def _is_zero_fill(value: SSAValue) -> Operation | None:
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
class _BiasAdd:
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


def _row_vector(ctx: Context, value: SSAValue, rank: int) -> _Folded | None:
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
    return _Folded(row, folded.ops)


def match_bias_add(ctx: Context, product: SSAValue) -> _BiasAdd | None:
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
        return _BiasAdd(user, bias.value, bias.ops)
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
    return _BiasAdd(user, bias.value, bias.ops)


# ---------------------------------------------------------------------------------------
# The pass
# ---------------------------------------------------------------------------------------


@dataclass
class _Conversion:
    ctx: Context
    archive: ParamArchive
    next_layer: int = 1
    converted: int = 0

    def __post_init__(self) -> None:
        # (id of the source constant, layout) -> (that constant, parameter name); the op is
        # kept referenced so that its id cannot be reused by another op.
        self.params_by_source: dict[tuple[int, str], tuple[Operation, str]] = {}

    def layer_name(self) -> str:
        while True:
            name = f"{LAYER_PREFIX}{self.next_layer}"
            self.next_layer += 1
            if f"{name}.weight" not in self.archive and f"{name}.bias" not in self.archive:
                return name

    def weight_of(self, op: Operation) -> _Folded | None:
        """The constant weight of a product as W [N, K]."""
        if isinstance(op, linalg.MatmulOp):
            maps = op.indexing_maps
            folded = fold_constant(self.ctx, op.inputs[1])
            if folded is None or folded.value.dim() != 2:
                return None
            if maps == _MATMUL_MAPS:
                return _Folded(folded.value.t(), folded.ops)
            if maps == _MATMUL_TRANSPOSED_B_MAPS:
                return folded
            return None
        if isinstance(op, BatchMatmulOp):
            if op.indexing_maps != _BATCH_MATMUL_MAPS:
                return None
            folded = fold_constant(self.ctx, op.inputs[1])
            if folded is None or folded.value.dim() != 3:
                return None
            batched = folded.value  # [B, K, N]
            first = batched[0]
            if not torch.equal(batched, first.expand(batched.shape)):
                return None  # a different weight per batch is not one quantized matrix
            return _Folded(first.t(), folded.ops)
        return None

    def convert(self, op: Operation) -> None:
        if len(op.inputs) != 2 or len(op.outputs) != 1 or len(op.res) != 1:
            return
        input_type = op.inputs[0].type
        if not isinstance(input_type, TensorType) or not isinstance(
            input_type.get_element_type(), AnyFloat
        ):
            return
        fill = _is_zero_fill(op.outputs[0])
        if fill is None:
            return
        weight = self.weight_of(op)
        if weight is None:
            return
        bias_add = match_bias_add(self.ctx, op.res[0])
        if bias_add is not None and (
            bias_add.bias.shape[0] != weight.value.shape[0]
            or bias_add.bias.dtype != _TORCH_DTYPES.get(type(input_type.get_element_type()))
        ):
            bias_add = None  # bitmod.matmul adds a bias of the activation's type only

        weight_param, layer = self.weight_param(weight, op)
        new_ops: list[Operation] = [weight_param]
        bias_param = None
        if bias_add is not None:
            bias_name = f"{layer}.bias"
            if bias_name in self.archive:  # a tied weight whose layers have their own biases
                bias_name = f"{self.layer_name()}.bias"
            bias_param = self.param_for(_Folded(bias_add.bias, bias_add.ops), bias_name)
            bias_param.location = bias_add.op.location
            new_ops.append(bias_param)
        replaced = bias_add.op if bias_add is not None else op
        result_type = replaced.results[0].type
        assert isinstance(result_type, TensorType)
        matmul = MatmulOp(
            op.inputs[0],
            weight_param.result,
            result_type,
            None if bias_param is None else bias_param.result,
        )
        matmul.location = op.location
        new_ops.append(matmul)
        Rewriter.insert_op(new_ops, InsertPoint.before(op))
        replaced.results[0].replace_all_uses_with(matmul.result)
        dead_candidates: list[Operation] = [replaced, op, fill, *weight.ops]
        if bias_add is not None:
            dead_candidates += bias_add.ops
        erase_if_dead(dead_candidates)
        self.converted += 1

    def weight_param(self, weight: _Folded, user: Operation) -> tuple[ParamOp, str]:
        """The `bitmod.param` of a weight and its layer name; a weight constant that an
        earlier product used (tied weights) keeps that product's parameter and layer."""
        source = weight.ops[-1]
        key = (id(source), f"{tuple(weight.value.shape)}{weight.value.stride()}")
        existing = self.params_by_source.get(key)
        if existing is not None and existing[0] is source:
            name = existing[1]
        else:
            name = f"{self.layer_name()}.weight"
            self.archive.put(name, weight.value.contiguous())
            self.params_by_source[key] = (source, name)
        param = self.param_for(weight, name, store=False)
        param.location = user.location
        return param, name.removesuffix(".weight")

    def param_for(self, folded: _Folded, name: str, store: bool = True) -> ParamOp:
        """A `bitmod.param` reading `name`, after storing the folded value under it."""
        if store:
            self.archive.put(name, folded.value.contiguous())
        source_type = folded.ops[-1].results[0].type
        assert isinstance(source_type, TensorType)
        return ParamOp(name, TensorType(source_type.get_element_type(), tuple(folded.value.shape)))


_ERASABLE = (
    arith.ConstantOp,
    tensor.EmptyOp,
    linalg.FillOp,
    linalg.TransposeOp,
    linalg.BroadcastOp,
    linalg.GenericOp,
    linalg.AddOp,
    linalg.MatmulOp,
    BatchMatmulOp,
)


def erase_if_dead(candidates: Iterable[Operation]) -> None:
    """Erase the given side-effect-free ops once unused, then their now-unused producers."""
    worklist = list(candidates)
    while worklist:
        op = worklist.pop(0)
        if op.parent is None or not isinstance(op, _ERASABLE):
            continue
        if any(result.uses for result in op.results):
            continue
        producers = [operand.owner for operand in op.operands]
        Rewriter.erase_op(op)
        worklist += [p for p in producers if isinstance(p, Operation)]


@dataclass(frozen=True)
class ConvertLinalgToBitmodPass(ModulePass):
    """Linear layers with constant weights -> `bitmod.param` + `bitmod.matmul`."""

    name = "convert-linalg-to-bitmod"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        conversion = _Conversion(ctx, archive_of(ctx, self.name))
        products = [
            candidate
            for candidate in op.walk()
            if isinstance(candidate, linalg.MatmulOp | BatchMatmulOp)
        ]
        for product in products:
            conversion.convert(product)
        if conversion.converted:
            assert isinstance(ctx, BitmodContext)
            op.attributes[PARAMS_ATTR] = StringAttr(ctx.params_name)
