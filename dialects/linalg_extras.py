"""Upstream `linalg` syntax that torch-mlir emits and xDSL 0.74 does not read.

* xDSL 0.74's linalg dialect has ``linalg.matmul`` but no ``linalg.batch_matmul``, which
  torch-mlir's ``linalg-on-tensors`` output uses for ``torch.bmm`` / batched ``matmul``.
* Its ``linalg.matmul`` and this module's ``linalg.batch_matmul`` are read and printed with
  upstream MLIR's explicit maps, ``linalg.matmul indexing_maps = [...] ins(...) outs(...)``
  (newer torch-mlir writes ``X·Wᵀ`` so, without a ``linalg.transpose``): xDSL 0.74's parser
  reads only the default maps' form (:class:`ExplicitMapsSyntax`).
* Its ``linalg.generic`` parser reads the result types after ``->`` as a bare list, but MLIR
  prints several results in parentheses (``-> (tensor<4xf32>, tensor<4xi64>)``): every
  softmax (its max-with-index reduction) produces such a generic, so no transformer block
  parsed. :class:`GenericOp` reads both forms (it prints as xDSL does: bare for one result,
  parenthesized for several, which is MLIR's form).

:func:`linalg_with_extras` returns xDSL's linalg dialect with these ops; the compilation
context registers it under the name ``linalg``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from xdsl.builder import Builder
from xdsl.dialects import arith
from xdsl.dialects.builtin import AffineMapAttr, AnyFloat, ArrayAttr, StringAttr, TensorType
from xdsl.dialects.linalg import Linalg
from xdsl.dialects.linalg.abstract_ops import NamedOperation
from xdsl.dialects.linalg.attrs import IteratorType, IteratorTypeAttr
from xdsl.dialects.linalg.ops import GenericOp as XdslGenericOp
from xdsl.dialects.linalg.ops import MatmulOp as XdslMatmulOp
from xdsl.dialects.linalg.ops import YieldOp
from xdsl.ir import Attribute, BlockArgument, Dialect, Region, SSAValue
from xdsl.ir.affine import AffineMap
from xdsl.irdl import irdl_op_definition, prop_def
from xdsl.parser import Parser
from xdsl.printer import Printer


class ExplicitMapsSyntax(NamedOperation):
    """Upstream MLIR's optional ``indexing_maps = [map, map, map]`` before ``ins(...)`` of a
    contraction (``linalg.matmul``, ``linalg.batch_matmul``): read into the op's
    ``indexing_maps`` property, printed back where the maps are not the op's default ones.

    Whether the maps are a product the converter knows (``A·B``, ``A·Bᵀ``) is decided by the
    passes, as for the generic form; the parser only reads the syntax.
    """

    @classmethod
    def default_maps(cls) -> Attribute:
        default = cls.get_irdl_definition().properties["indexing_maps"].default_value
        assert default is not None
        return default

    @classmethod
    def parse(cls, parser: Parser) -> ExplicitMapsSyntax:
        """``[attr-dict] [indexing_maps = [...]] [attr-dict] ins(a, b : ta, tb) outs(c : tc)
        [-> types]``: xDSL's form with the maps and a check of the operand counts (xDSL's
        own parser meets a missing operand as an IndexError)."""
        start = parser.pos
        attrs = dict(parser.parse_optional_attr_dict())
        maps = None
        if parser.parse_optional_keyword("indexing_maps"):
            parser.parse_punctuation("=")
            maps_start = parser.pos
            maps = parser.parse_attribute()
            if not isinstance(maps, ArrayAttr) or not all(
                isinstance(m, AffineMapAttr) for m in maps.data
            ):
                parser.raise_error("indexing_maps must be an array of affine maps", maps_start)
            if len(maps.data) != 3:
                parser.raise_error(
                    f"{cls.name} takes 3 indexing maps (A, B, C), not {len(maps.data)}",
                    maps_start,
                )
            if not attrs:
                attrs = dict(parser.parse_optional_attr_dict())
        ins = parse_operand_group(parser, "ins")
        outs = parse_operand_group(parser, "outs")
        if len(ins) != 2 or len(outs) != 1:
            parser.raise_error(
                f"{cls.name} takes 2 inputs and 1 output, not {len(ins)} and {len(outs)}",
                start,
                parser.pos,
            )
        result_types: list[Attribute] = []
        if parser.parse_optional_punctuation("->"):
            listed = parser.parse_optional_comma_separated_list(
                Parser.Delimiter.PAREN, parser.parse_type
            )
            result_types = list(listed) if listed is not None else [parser.parse_type()]
        names = cls.get_irdl_definition().properties
        properties = {k: v for k, v in attrs.items() if k in names}
        if maps is not None:
            properties["indexing_maps"] = maps
        return cls.build(
            operands=(ins, outs),
            result_types=(result_types,),
            properties=properties,
            attributes={k: v for k, v in attrs.items() if k not in names},
            regions=(cls.get_hidden_region(ins, outs),),
        )

    def print(self, printer: Printer) -> None:
        maps = self.properties.get("indexing_maps")
        if maps is not None and maps != self.default_maps():
            printer.print_string(" indexing_maps = ")
            printer.print_attribute(maps)
        super().print(printer)


class MatmulOp(ExplicitMapsSyntax, XdslMatmulOp):
    """xDSL's ``linalg.matmul`` with upstream MLIR's explicit-maps syntax."""


@irdl_op_definition
class BatchMatmulOp(ExplicitMapsSyntax):
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


def parse_operand_group(parser: Parser, keyword: str) -> list[SSAValue]:
    """``keyword(%a, %b : ta, tb)``, or nothing when the keyword is absent."""
    pos = parser.pos
    if not parser.parse_optional_characters(keyword):
        return []
    parser.parse_punctuation("(")
    unresolved = parser.parse_comma_separated_list(
        Parser.Delimiter.NONE, parser.parse_unresolved_operand
    )
    parser.parse_punctuation(":")
    types = parser.parse_comma_separated_list(Parser.Delimiter.NONE, parser.parse_type)
    parser.parse_punctuation(")")
    return list(parser.resolve_operands(unresolved, types, pos))


def _iterator_type(attr: Attribute, parser: Parser, pos: int, end: int) -> IteratorTypeAttr:
    if isinstance(attr, IteratorTypeAttr):
        return attr
    if isinstance(attr, StringAttr) and attr.data in {t.value for t in IteratorType}:
        return IteratorTypeAttr(IteratorType(attr.data))
    parser.raise_error(f"unknown iterator type {attr}", pos, end)


class GenericOp(XdslGenericOp):
    """``linalg.generic`` with MLIR's result syntax: ``-> type`` or ``-> (type, type, ...)``.

    Only the parser differs; the definition (operands, properties, verifier) is xDSL's.
    """

    @classmethod
    def parse(cls, parser: Parser) -> GenericOp:
        start = parser.pos
        attrs = dict(parser.parse_optional_attr_dict())
        end = parser.pos
        try:
            maps = attrs.pop("indexing_maps")
            iterators = attrs.pop("iterator_types")
        except KeyError as missing:
            parser.raise_error(f"linalg.generic needs {missing.args[0]}", start, end)
        if not isinstance(maps, ArrayAttr) or not isinstance(iterators, ArrayAttr):
            parser.raise_error("indexing_maps and iterator_types must be arrays", start, end)
        doc, library_call = attrs.pop("doc", None), attrs.pop("library_call", None)
        for name, value in (("doc", doc), ("library_call", library_call)):
            if value is not None and not isinstance(value, StringAttr):
                parser.raise_error(f"linalg.generic {name} must be a string", start, end)
        iterator_types = [_iterator_type(a, parser, start, end) for a in iterators.data]
        ins = parse_operand_group(parser, "ins")
        outs = parse_operand_group(parser, "outs")
        extra: dict[str, Attribute] = {}
        if parser.parse_optional_keyword("attrs"):
            parser.parse_punctuation("=")
            extra = dict(parser.expect(parser.parse_optional_attr_dict, "expected attributes"))
        body = parser.parse_region()
        result_types: list[Attribute] = []
        if parser.parse_optional_punctuation("->"):
            if parser.parse_optional_punctuation("(") is not None:
                result_types = parser.parse_comma_separated_list(
                    Parser.Delimiter.NONE, parser.parse_type
                )
                parser.parse_punctuation(")")
            else:
                result_types = parser.parse_comma_separated_list(
                    Parser.Delimiter.NONE, parser.parse_type
                )
        generic = cls(
            ins,
            outs,
            body,
            maps,  # type: ignore[arg-type]
            iterator_types,
            result_types,
            doc,  # type: ignore[arg-type]
            library_call,  # type: ignore[arg-type]
        )
        generic.attributes |= attrs | extra
        return generic


EXTRA_LINALG_OPS = (BatchMatmulOp,)
#: xDSL's ops that this module reads with more of MLIR's syntax.
REPLACED_LINALG_OPS = (GenericOp, MatmulOp)


def linalg_with_extras() -> Dialect:
    """xDSL's linalg dialect with :data:`REPLACED_LINALG_OPS` in place of its own, plus the
    ops of this module."""
    replaced = {op.name for op in REPLACED_LINALG_OPS}
    operations = [op for op in Linalg.operations if op.name not in replaced]
    return Dialect(
        Linalg.name,
        [*operations, *REPLACED_LINALG_OPS, *EXTRA_LINALG_OPS],
        list(Linalg.attributes),
    )
