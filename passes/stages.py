"""How a pass says that the IR holds nothing it can act on, as mlir-opt would.

The passes run in one order: ``convert-linalg-to-bitmod`` (linalg products -> float
``bitmod.matmul``), ``bitmod-quantize`` (-> quantized ``bitmod.matmul``), ``bitmod-tile``
(-> ``bsisa.tiled_matmul``), ``bitmod-lower-to-isa`` (-> ``bsisa.launch``). A pass that
finds none of its input calls :func:`nothing_to_do`:

* the module still holds linalg products and no ``bitmod.matmul`` at all, and one of them is a
  linear layer (a constant weight and a zero accumulator, which ``convert-linalg-to-bitmod``
  always converts): the pipeline runs the pass before ``convert-linalg-to-bitmod``, and going
  on would silently leave every product on the host: an error at the first linear layer;
* the module holds linalg products none of which is a linear layer (a batched weight that
  differs per batch, an accumulator that is not zero, products of two run-time values left by
  ``kv-dtype=host``): they stay on the host, ``convert-linalg-to-bitmod`` or not: a warning at
  the first product;
* the module holds ops an earlier pass has not handled yet (float ``bitmod.matmul`` ops
  before ``bitmod-tile``): a warning at the first of them (they may be meant for the host);
* otherwise (an empty module, or one the pass has handled already) nothing: the passes are
  idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence

from bitmod.dialects.bitmod import MatmulOp
from bitmod.dialects.diagnostics import error_at, warn_at
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation

LINALG_PRODUCTS = ("linalg.matmul", "linalg.batch_matmul")
"""The ops ``convert-linalg-to-bitmod`` converts (by name: listing passes imports no linalg)."""


def unconverted_layers(ctx: Context, ops: Sequence[Operation]) -> list[Operation]:
    """The linalg products among ``ops`` that are linear layers: ``convert-linalg-to-bitmod``
    converts every one of them, so one left means that pass has not run on it."""
    products = [op for op in ops if op.name in LINALG_PRODUCTS]
    if not products:
        return []
    # torch and the linalg ops: imported only for a module that has products left.
    from bitmod.passes.linear_layers import match_linear

    return [op for op in products if match_linear(ctx, op) is not None]


def nothing_to_do(
    ctx: Context,
    module: ModuleOp,
    pass_name: str,
    wanted: str,
    waiting: Sequence[Operation] = (),
    earlier_pass: str = "",
    produced: Sequence[str] = (),
) -> None:
    """Report that ``pass_name`` found no ``wanted`` op in ``module`` (module docstring).

    ``waiting`` are the ops ``earlier_pass`` would turn into ``wanted`` ones; ``produced``
    names the ops the pass makes (if the module has one, the pass has run on it already).
    """
    if any(op.name in produced for op in module.walk()):
        return
    if not any(isinstance(op, MatmulOp) for op in module.walk()):
        products = [op for op in module.walk() if op.name in LINALG_PRODUCTS]
        layers = unconverted_layers(ctx, products)
        if layers:
            raise error_at(
                layers[0],
                f"{pass_name}: the module has no {wanted}, only linalg products such as this "
                "one: run convert-linalg-to-bitmod first (a product whose weight is not a "
                "constant stays on the host)",
            )
        if products:
            warn_at(
                products[0],
                f"{pass_name}: the module has no {wanted}, nothing to do: its linalg products, "
                "such as this one, are not linear layers and stay on the host (products of "
                "two run-time values are converted by convert-linalg-to-bitmod unless "
                "kv-dtype=host)",
            )
            return
    if waiting:
        warn_at(
            waiting[0],
            f"{pass_name}: the module has no {wanted}, nothing to do; this op needs "
            f"{earlier_pass} first (or stays on the host)",
        )
