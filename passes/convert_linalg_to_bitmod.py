"""`convert-linalg-to-bitmod{kv-dtype=int8 kv-group-size=128}`: torch-mlir's linear layers
and activation products become `bitmod.matmul`.

torch-mlir (``output_type="linalg-on-tensors"``) writes ``nn.Linear`` as

.. code-block:: mlir

    %w  = arith.constant dense_resource<...> : tensor<NxKxf32>        // weight W [N, K]
    %wt = linalg.transpose ins(%w) outs(%e) permutation = [1, 0]        // W^T   [K, N]
    %z  = linalg.fill ins(%zero) outs(%e2)                             // 0     [M, N]
    %y  = linalg.matmul ins(%x, %wt) outs(%z)                           // X W^T
    %yb = linalg.generic {maps (d0,d1)->(d0,d1), (d0,d1)->(d1), ...}   // + b[n] per row
            ins(%y, %b) { addf }

(newer MLIR writes the same product without the transpose, as ``linalg.matmul indexing_maps =
[(i,k), (j,k), (i,j)] ins(%x, %w)``: the maps, in either syntax, say which operand is which;
:mod:`bitmod.dialects.linalg_extras` reads them) and batched products as
``linalg.batch_matmul`` whose weight is a constant broadcast along
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

Activation × activation products
--------------------------------
A product ``Y = A·B`` whose right operand is computed at run time (attention's ``Q·Kᵀ`` and
``P·V``: a ``linalg.batch_matmul`` ``[B, M, K] × [B, K, N]``, or a ``linalg.matmul`` with a
non-constant right operand) and whose accumulator starts at zero becomes, as in
``bitmod.compile`` (BitMoD Sec. IV-B),

.. code-block:: mlir

    %bt = <Bᵀ: [B, N, K]>
    %q = bitmod.quantize %bt runtime into "matmul1.rhs"
           : tensor<BxNxKxf32> -> !bitmod.qweight<BxNxK, int8, G>
    %y = bitmod.matmul %a, %q : (tensor<BxMxKxf32>, !bitmod.qweight<...>) -> tensor<BxMxNxf32>

``B`` is quantized by the host before each accelerator run, per batch slice, in rows of
``Bᵀ`` (per key token over the head dimension for ``Q·Kᵀ``, per value channel over the
tokens for ``P·V``) in groups of ``G`` along the reduction: ``kv-dtype`` (``int8``, the
default, or ``int4``; any format with a bit-serial lowering), ``kv-group-size`` (128; a
reduction shorter than a group is one group of ``ceil4(K)``, as for weights), second-level
scales of 8 bits. ``Bᵀ`` reuses torch-mlir's transpose of ``K`` with the last two axes
swapped (through a ``tensor.collapse_shape`` of batch and heads), so ``Q·Kᵀ`` needs no data
movement of its own; ``V`` gets one ``linalg.transpose``. The i-th such product is
``matmul<i>``. ``kv-dtype=host`` keeps these products on the host.

Everything else stays as it was, including products whose accumulator is not zero or whose
batched constant weight differs per batch (not one quantized matrix); the transposes, fills
and constants only the converted ops used are erased. The module gets ``bitmod.params =
"<ctx.params_name>"``. A module whose products are all left alone gets a warning (nothing
converted) at the first of them. An unknown ``kv-dtype``, one without a bit-serial lowering,
or a ``kv-group-size`` that is not a positive multiple of 4 is an error at the option.

The rewrite is the pattern :class:`ConvertLinearLayer` under a ``PatternRewriteWalker``
(one walk in program order, which is what the layer names count); recognizing a layer and
evaluating its weight (torch) is :mod:`bitmod.passes.linear_layers`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bitmod.dialects.bitmod import (
    DEFAULT_SCALE_BITS,
    MatmulOp,
    ParamOp,
    QuantizeOp,
    QWeightType,
    known_format_names,
    unknown_dtype_message,
)
from bitmod.dialects.diagnostics import DiagnosticError, warn_at
from bitmod.passes.context import PARAMS_ATTR, BitmodContext, archive_of
from bitmod.passes.stages import LINALG_PRODUCTS
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, StringAttr, TensorType
from xdsl.ir import Operation
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriter, PatternRewriteWalker, RewritePattern
from xdsl.rewriter import InsertPoint

if TYPE_CHECKING:
    from bitmod.passes.linear_layers import Folded
    from bitmod.runtime.storage.archive import ParamArchive

LAYER_PREFIX = "fc"
PRODUCT_PREFIX = "matmul"
"""Activation products are ``matmul<i>``; their run-time operand is ``matmul<i>.rhs``."""
RUNTIME_OPERAND_SUFFIX = ".rhs"
ON_HOST = "host"
"""The ``kv-dtype`` that leaves activation products on the host."""


@dataclass
class ConvertLinearLayer(RewritePattern):
    """A linalg product with a constant weight -> ``bitmod.param`` + ``bitmod.matmul``.

    The weight (and a folded bias) move into ``archive``; layers are named in the order the
    pattern converts them (module docstring).
    """

    ctx: Context
    archive: ParamArchive
    kv_dtype: str = "int8"
    kv_group_size: int = 128
    next_layer: int = 1
    next_product: int = 1
    converted: int = 0
    left_alone: list[Operation] = field(default_factory=list)
    """Products that are not linear layers (they stay as they are)."""
    params_by_source: dict[tuple[int, str], tuple[Operation, str]] = field(default_factory=dict)
    """(id of a weight's source constant, layout) -> (that constant, parameter name); the op
    is kept referenced so that its id cannot be reused by another op."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if op.name not in LINALG_PRODUCTS:
            return
        # torch and the linalg ops: imported once a module has a product to look at.
        from bitmod.passes.linear_layers import element_type_of, is_erasable, match_linear

        layer = match_linear(self.ctx, op)
        if layer is None:
            if not self.convert_activation_product(op, rewriter):
                self.left_alone.append(op)
            return
        weight_param, name = self.weight_param(layer.weight, op)
        new_ops: list[Operation] = [weight_param]
        bias_param = None
        if layer.bias_add is not None:
            bias_name = f"{name}.bias"
            if bias_name in self.archive:  # a tied weight whose layers have their own biases
                bias_name = f"{self.layer_name()}.bias"
            self.archive.put(bias_name, layer.bias_add.bias.contiguous())
            bias_type = element_type_of(layer.bias_add.ops)
            bias_param = ParamOp(bias_name, TensorType(bias_type, tuple(layer.bias_add.bias.shape)))
            bias_param.location = layer.bias_add.op.location
            new_ops.append(bias_param)
        result_type = layer.replaced.results[0].type
        assert isinstance(result_type, TensorType)
        matmul = MatmulOp(
            op.operands[0],
            weight_param.result,
            result_type,
            None if bias_param is None else bias_param.result,
        )
        matmul.location = op.location
        new_ops.append(matmul)
        rewriter.insert(new_ops, InsertPoint.before(op))
        rewriter.replace_all_uses_with(layer.replaced.results[0], matmul.result)
        _erase_if_dead(layer.dead_candidates(), rewriter, is_erasable)
        self.converted += 1

    def convert_activation_product(self, op: Operation, rewriter: PatternRewriter) -> bool:
        """``A·B`` of two run-time values -> a run-time quantized ``bitmod.matmul``."""
        from bitmod.passes.bitmod_quantize import QuantSpec
        from bitmod.passes.linear_layers import (
            is_erasable,
            match_activation_product,
            transposed_operand,
        )

        if self.kv_dtype == ON_HOST:
            return False
        product = match_activation_product(self.ctx, op)
        if product is None:
            return False
        rhs = op.operands[1]
        if product.rhs_is_transposed:
            new_ops: list[Operation] = []
            rhs_t = rhs
        else:
            new_ops, rhs_t = transposed_operand(rhs)
        rhs_type = rhs_t.type
        assert isinstance(rhs_type, TensorType)
        shape = tuple(rhs_type.get_shape())
        name = f"{PRODUCT_PREFIX}{self.next_product}"
        self.next_product += 1
        dtype, group, scale_bits = QuantSpec(
            self.kv_dtype, self.kv_group_size, DEFAULT_SCALE_BITS
        ).resolve(shape[-1], name)
        quantize = QuantizeOp(
            rhs_t,
            QWeightType(shape, dtype, group, scale_bits),
            entry=f"{name}{RUNTIME_OPERAND_SUFFIX}",
            runtime=True,
        )
        result_type = op.results[0].type
        assert isinstance(result_type, TensorType)
        matmul = MatmulOp(op.operands[0], quantize.result, result_type)
        for new_op in (*new_ops, quantize, matmul):
            new_op.location = op.location
        rewriter.insert([*new_ops, quantize, matmul], InsertPoint.before(op))
        replaced = op.results[0]
        rewriter.replace_all_uses_with(replaced, matmul.result)
        old_rhs = rhs.owner
        candidates = product.dead_candidates()
        if isinstance(old_rhs, Operation):
            candidates.append(old_rhs)
        _erase_if_dead(candidates, rewriter, is_erasable)
        self.converted += 1
        return True

    def layer_name(self) -> str:
        while True:
            name = f"{LAYER_PREFIX}{self.next_layer}"
            self.next_layer += 1
            if f"{name}.weight" not in self.archive and f"{name}.bias" not in self.archive:
                return name

    def weight_param(self, weight: Folded, user: Operation) -> tuple[ParamOp, str]:
        """The `bitmod.param` of a weight and its layer name; a weight constant that an
        earlier product used (tied weights) keeps that product's parameter and layer."""
        from bitmod.passes.linear_layers import element_type_of, weight_key

        key = weight_key(weight)
        source = weight.ops[-1]
        existing = self.params_by_source.get(key)
        if existing is not None and existing[0] is source:
            name = existing[1]
        else:
            name = f"{self.layer_name()}.weight"
            self.archive.put(name, weight.value.contiguous())
            self.params_by_source[key] = (source, name)
        param = ParamOp(name, TensorType(element_type_of(weight.ops), tuple(weight.value.shape)))
        param.location = user.location
        return param, name.removesuffix(".weight")


def _erase_if_dead(
    candidates: list[Operation], rewriter: PatternRewriter, erasable: Callable[[Operation], bool]
) -> None:
    """Erase the given side-effect-free ops once unused, then their now-unused producers."""
    worklist = list(candidates)
    while worklist:
        op = worklist.pop(0)
        if op.parent is None or not erasable(op):
            continue
        if any(result.uses for result in op.results):
            continue
        producers = [operand.owner for operand in op.operands]
        rewriter.erase(op)
        worklist += [p for p in producers if isinstance(p, Operation)]


def kv_dtype_error(name: str) -> str | None:
    """Why ``name`` cannot be the run-time format of K/V, or None."""
    if name == ON_HOST:
        return None
    if name not in known_format_names():
        return f"kv-dtype: {unknown_dtype_message(name)} (or '{ON_HOST}')"
    from bitmod.passes.bitmod_tile import unaccelerated_format_message

    problem = unaccelerated_format_message(name)
    return None if problem is None else f"kv-dtype: {problem}"


@dataclass(frozen=True)
class ConvertLinalgToBitmodPass(ModulePass):
    """Linear layers with constant weights -> bitmod.param + bitmod.matmul (weights archived);
    activation products -> bitmod.matmul with a run-time quantized right operand."""

    name = "convert-linalg-to-bitmod"

    kv_dtype: str = "int8"
    kv_group_size: int = 128

    def __post_init__(self) -> None:
        # Checked on construction: bitmod-opt reports a bad option at its place in the
        # pipeline string before any pass runs.
        problem = kv_dtype_error(self.kv_dtype)
        if problem:
            raise DiagnosticError(problem)
        if self.kv_group_size <= 0 or self.kv_group_size % 4:
            raise DiagnosticError(
                f"kv-group-size must be a positive multiple of 4 (the PE takes 4 values a "
                f"cycle), got {self.kv_group_size}"
            )

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        pattern = ConvertLinearLayer(
            ctx, archive_of(ctx, self.name), self.kv_dtype, self.kv_group_size
        )
        PatternRewriteWalker(pattern, apply_recursively=False).rewrite_module(op)
        if pattern.converted:
            assert isinstance(ctx, BitmodContext)
            op.attributes[PARAMS_ATTR] = StringAttr(ctx.params_name)
        elif pattern.left_alone:
            warn_at(
                pattern.left_alone[0],
                f"{self.name}: none of the {len(pattern.left_alone)} linalg products is a "
                "linear layer (a constant weight and a zero accumulator) or an activation "
                "product (a zero accumulator); nothing converted",
            )
