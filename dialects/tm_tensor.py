"""The ``tm_tensor`` ops torch-mlir's ``linalg-on-tensors`` output uses: ``tm_tensor.scan``.

torch-mlir lowers ``torch.cumsum`` (which Hugging Face's Llama uses for position ids) to its
TMTensor dialect, which xDSL does not have::

    %y:2 = tm_tensor.scan dimension(1) inclusive(true) ins(%x : tensor<1x12xi64>)
        outs(%out, %acc : tensor<1x12xi64>, tensor<1xi64>) {
    ^bb0(%a: i64, %b: i64):
      %s = arith.addi %a, %b : i64
      tm_tensor.yield %s : i64
    } -> tensor<1x12xi64>, tensor<1xi64>

Semantics (TMTensor's ``ScanOp``): along ``dimension``, position 0 of the output is the
input's (``inclusive``) or the accumulator's (exclusive); position ``i > 0`` is the region
applied to (the input at ``i``, inclusive, or at ``i − 1``, exclusive) and the output at
``i − 1``. The second result is the accumulator: the output's last position along
``dimension``. The host runner evaluates it (``compiler/module_runner.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

from bitmod.dialects.linalg_extras import parse_operand_group
from xdsl.dialects.builtin import BoolAttr, IntegerAttr, TensorType, i64
from xdsl.ir import Attribute, Dialect, Region, SSAValue
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    irdl_op_definition,
    prop_def,
    region_def,
    traits_def,
    var_operand_def,
    var_result_def,
)
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.traits import HasParent, IsTerminator
from xdsl.utils.exceptions import VerifyException


@irdl_op_definition
class ScanOp(IRDLOperation):
    """``tm_tensor.scan``: a scan (cumulative combination) along one dimension."""

    name = "tm_tensor.scan"

    inputs = var_operand_def()
    outputs = var_operand_def()
    results_ = var_result_def()
    dimension = prop_def(IntegerAttr)
    inclusive = prop_def(IntegerAttr)
    body = region_def("single_block")

    irdl_options = (AttrSizedOperandSegments(as_property=True),)

    def __init__(
        self,
        inputs: Sequence[SSAValue],
        outputs: Sequence[SSAValue],
        body: Region,
        dimension: int,
        inclusive: bool,
        result_types: Sequence[Attribute],
    ) -> None:
        super().__init__(
            operands=[inputs, outputs],
            result_types=[result_types],
            properties={
                "dimension": IntegerAttr(dimension, i64),
                "inclusive": BoolAttr.from_bool(inclusive),
            },
            regions=[body],
        )

    @property
    def scan_dimension(self) -> int:
        return int(self.dimension.value.data)

    @property
    def is_inclusive(self) -> bool:
        return bool(self.inclusive.value.data)

    def verify_(self) -> None:
        if len(self.inputs) != 1 or len(self.outputs) != 2:
            raise VerifyException(
                f"tm_tensor.scan takes one input and two outputs (the output and the "
                f"accumulator), not {len(self.inputs)} and {len(self.outputs)}"
            )
        source, output, accumulator = (v.type for v in (*self.inputs, *self.outputs))
        if not all(isinstance(t, TensorType) for t in (source, output, accumulator)):
            raise VerifyException("tm_tensor.scan's operands must be tensors")
        assert isinstance(source, TensorType) and isinstance(accumulator, TensorType)
        if output != source:
            raise VerifyException(f"the output {output} must be of the input's type {source}")
        shape = list(source.get_shape())
        if not 0 <= self.scan_dimension < len(shape):
            raise VerifyException(
                f"dimension {self.scan_dimension} is not one of the input's {len(shape)}"
            )
        reduced = shape[: self.scan_dimension] + shape[self.scan_dimension + 1 :]
        if list(accumulator.get_shape()) != reduced:
            raise VerifyException(
                f"the accumulator must have the input's shape without dimension "
                f"{self.scan_dimension}, {reduced}, not {list(accumulator.get_shape())}"
            )
        if [r.type for r in self.results] != [output, accumulator]:
            raise VerifyException("tm_tensor.scan's results must be of its outputs' types")
        block = self.body.block
        element = source.get_element_type()
        if [a.type for a in block.args] != [element, element]:
            raise VerifyException(f"the region takes two {element} arguments")

    @classmethod
    def parse(cls, parser: Parser) -> ScanOp:
        parser.parse_keyword("dimension")
        parser.parse_punctuation("(")
        dimension = parser.parse_integer(allow_boolean=False, allow_negative=False)
        parser.parse_punctuation(")")
        parser.parse_keyword("inclusive")
        parser.parse_punctuation("(")
        inclusive = parser.parse_boolean()
        parser.parse_punctuation(")")
        inputs = parse_operand_group(parser, "ins")
        outputs = parse_operand_group(parser, "outs")
        body = parser.parse_region()
        result_types: list[Attribute] = []
        if parser.parse_optional_punctuation("->"):
            result_types = parser.parse_comma_separated_list(
                Parser.Delimiter.NONE, parser.parse_type
            )
        return cls(inputs, outputs, body, dimension, inclusive, result_types)

    def print(self, printer: Printer) -> None:
        printer.print_string(f" dimension({self.scan_dimension})")
        printer.print_string(f" inclusive({'true' if self.is_inclusive else 'false'})")
        for keyword, values in (("ins", self.inputs), ("outs", self.outputs)):
            printer.print_string(f" {keyword}(")
            printer.print_list(values, printer.print_operand)
            printer.print_string(" : ")
            printer.print_list((v.type for v in values), printer.print_attribute)
            printer.print_string(")")
        printer.print_string(" ")
        printer.print_region(self.body)
        printer.print_string(" -> ")
        printer.print_list((r.type for r in self.results), printer.print_attribute)


@irdl_op_definition
class YieldOp(IRDLOperation):
    """``tm_tensor.yield``: the value the region of a ``tm_tensor.scan`` combines to."""

    name = "tm_tensor.yield"

    values = var_operand_def()

    traits = traits_def(IsTerminator(), HasParent(ScanOp))

    assembly_format = "attr-dict ($values^ `:` type($values))?"

    def __init__(self, *values: SSAValue) -> None:
        super().__init__(operands=[values])


TMTensor = Dialect("tm_tensor", [ScanOp, YieldOp], [])
__all__ = ["ScanOp", "TMTensor", "YieldOp"]
