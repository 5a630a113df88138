"""How a pass says that the IR holds nothing it can act on, as mlir-opt would.

The passes run in one order: ``convert-linalg-to-bitmod`` (linalg products -> float
``bitmod.matmul``), ``bitmod-quantize`` (-> quantized ``bitmod.matmul``), ``bitmod-tile``
(-> ``bsisa.tiled_matmul``), ``bitmod-lower-to-isa`` (-> ``bsisa.launch``). A pass that
finds none of its input calls :func:`nothing_to_do`:

* the module still holds linalg products and no ``bitmod.matmul`` at all: the pipeline runs
  the pass before ``convert-linalg-to-bitmod``, and going on would silently leave every
  product on the host: an error at the first product;
* the module holds ops an earlier pass has not handled yet (float ``bitmod.matmul`` ops
  before ``bitmod-tile``): a warning at the first of them (they may be meant for the host);
* otherwise (an empty module, or one the pass has handled already) nothing: the passes are
  idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence

from bitmod.dialects.bitmod import MatmulOp
from bitmod.dialects.diagnostics import error_at, warn_at
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation

LINALG_PRODUCTS = ("linalg.matmul", "linalg.batch_matmul")
"""The ops ``convert-linalg-to-bitmod`` converts (by name: listing passes imports no linalg)."""


def nothing_to_do(
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
        if products:
            raise error_at(
                products[0],
                f"{pass_name}: the module has no {wanted}, only linalg products such as this "
                "one: run convert-linalg-to-bitmod first (a product whose weight is not a "
                "constant stays on the host)",
            )
    if waiting:
        warn_at(
            waiting[0],
            f"{pass_name}: the module has no {wanted}, nothing to do; this op needs "
            f"{earlier_pass} first (or stays on the host)",
        )
