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
module gets ``bitmod.params = "<ctx.params_name>"``. A module whose products are all left
alone gets a warning (nothing converted) at the first of them.

The rewrite is the pattern :class:`ConvertLinearLayer` under a ``PatternRewriteWalker``
(one walk in program order, which is what the layer names count); recognizing a layer and
evaluating its weight (torch) is :mod:`bitmod.passes.linear_layers`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bitmod.dialects.bitmod import MatmulOp, ParamOp
from bitmod.dialects.diagnostics import warn_at
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


@dataclass
class ConvertLinearLayer(RewritePattern):
    """A linalg product with a constant weight -> ``bitmod.param`` + ``bitmod.matmul``.

    The weight (and a folded bias) move into ``archive``; layers are named in the order the
    pattern converts them (module docstring).
    """

    ctx: Context
    archive: ParamArchive
    next_layer: int = 1
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


@dataclass(frozen=True)
class ConvertLinalgToBitmodPass(ModulePass):
    """Linear layers with constant weights -> bitmod.param + bitmod.matmul (weights archived)."""

    name = "convert-linalg-to-bitmod"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        pattern = ConvertLinearLayer(ctx, archive_of(ctx, self.name))
        PatternRewriteWalker(pattern, apply_recursively=False).rewrite_module(op)
        if pattern.converted:
            assert isinstance(ctx, BitmodContext)
            op.attributes[PARAMS_ATTR] = StringAttr(ctx.params_name)
        elif pattern.left_alone:
            warn_at(
                pattern.left_alone[0],
                f"{self.name}: none of the {len(pattern.left_alone)} linalg products is a "
                "linear layer (a constant weight and a zero accumulator); nothing converted",
            )
