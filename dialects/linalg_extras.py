"""Upstream `linalg` ops that torch-mlir emits and xDSL 0.74 does not define.

xDSL 0.74's linalg dialect has ``linalg.matmul`` but no ``linalg.batch_matmul``, which
torch-mlir's ``linalg-on-tensors`` output uses for ``torch.bmm`` / batched ``matmul``.
:func:`linalg_with_extras` returns xDSL's linalg dialect plus these ops; the compilation
context registers it under the name ``linalg``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from xdsl.builder import Builder
from xdsl.dialects import arith
from xdsl.dialects.builtin import AffineMapAttr, AnyFloat, ArrayAttr, TensorType
from xdsl.dialects.linalg import Linalg
from xdsl.dialects.linalg.abstract_ops import NamedOperation
from xdsl.dialects.linalg.attrs import IteratorTypeAttr
from xdsl.dialects.linalg.ops import YieldOp
from xdsl.ir import Attribute, BlockArgument, Dialect, Region, SSAValue
from xdsl.ir.affine import AffineMap
from xdsl.irdl import irdl_op_definition, prop_def


@irdl_op_definition
class BatchMatmulOp(NamedOperation):
    """``C[b, i, j] += A[b, i, k] * B[b, k, j]``, MLIR's ``linalg.batch_matmul``."""

    name = "linalg.batch_matmul"

    PRINT_ATTRS_IN_FRONT: ClassVar[bool] = True

    indexing_maps = prop_def(
        ArrayAttr[AffineMapAttr],
        default_value=ArrayAttr(
            [
                AffineMapAttr(AffineMap.from_callable(lambda b, i, _, k: (b, i, k))),
                AffineMapAttr(AffineMap.from_callable(lambda b, _, j, k: (b, k, j))),
                AffineMapAttr(AffineMap.from_callable(lambda b, i, j, _: (b, i, j))),
            ]
        ),
    )

    def __init__(
        self,
        inputs: Sequence[SSAValue],
        outputs: Sequence[SSAValue],
        res: Sequence[Attribute] | None = None,
    ):
        if res is None:
            res = [output.type for output in outputs if isinstance(output.type, TensorType)]
        super().__init__(
            ins=inputs,
            outs=outputs,
            result_types=res,
            hidden_region=self.get_hidden_region(inputs, outputs),
        )

    @classmethod
    def get_hidden_region(cls, inputs: Sequence[SSAValue], outputs: Sequence[SSAValue]) -> Region:
        arg_types = cls.body_arg_types((*inputs, *outputs))
        add, mul = (
            (arith.AddfOp, arith.MulfOp)
            if isinstance(arg_types[-1], AnyFloat)
            else (arith.AddiOp, arith.MuliOp)
        )

        @Builder.implicit_region(arg_types)
        def hidden_region(args: tuple[BlockArgument, ...]) -> None:
            YieldOp(add(mul(args[0], args[1]), args[2]))

        return hidden_region

    def get_default_indexing_maps(self) -> Sequence[AffineMap]:
        return tuple(m.data for m in self.indexing_maps.data)

    def get_indexing_maps(self) -> ArrayAttr[AffineMapAttr]:
        return self.indexing_maps

    def get_iterator_types(self) -> ArrayAttr[IteratorTypeAttr]:
        return ArrayAttr(
            [
                IteratorTypeAttr.parallel(),
                IteratorTypeAttr.parallel(),
                IteratorTypeAttr.parallel(),
                IteratorTypeAttr.reduction(),
            ]
        )


EXTRA_LINALG_OPS = (BatchMatmulOp,)


def linalg_with_extras() -> Dialect:
    """xDSL's linalg dialect plus the ops of this module."""
    return Dialect(
        Linalg.name,
        [*Linalg.operations, *EXTRA_LINALG_OPS],
        list(Linalg.attributes),
    )
