"""The bitmod dialect: parse/print round trips, attribute and type checks, op verifiers."""

from __future__ import annotations

from pathlib import Path

import pytest
from bitmod.compiler.ir_io import parse_module, print_module
from bitmod.dialects.bitmod import DtypeAttr, MatmulOp, ParamOp, QuantizeOp, QWeightType
from bitmod.dialects.diagnostics import DiagnosticError
from bitmod.passes.context import make_context
from bitmod.runtime.formats import FORMAT_NAMES
from xdsl.dialects.builtin import Float16Type, Float32Type, TensorType
from xdsl.dialects.func import FuncOp, ReturnOp
from xdsl.ir import Block, Region
from xdsl.parser import Parser
from xdsl.utils.exceptions import ParseError, VerifyException

ROOT = Path(__file__).resolve().parent.parent
ROUNDTRIP_SKIP = "ROUNDTRIP: skip"


def _mlir_inputs() -> list[Path]:
    files = sorted((ROOT / "tests" / "filecheck").rglob("*.mlir"))
    files = [f for f in files if "Output" not in f.parts]
    return [*files, ROOT / "examples" / "mlp" / "mlp.mlir"]


def _has_ir(path: Path) -> bool:
    """Whether the file holds IR (some only hold RUN/CHECK lines about other inputs)."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return any(line and not line.startswith("//") for line in lines)


def _roundtrip_inputs() -> list[Path]:
    return [f for f in _mlir_inputs() if _has_ir(f) and ROUNDTRIP_SKIP not in f.read_text()]


def test_every_test_input_is_covered_or_marked() -> None:
    inputs = _mlir_inputs()
    assert len(inputs) >= 20
    skipped = [f for f in inputs if ROUNDTRIP_SKIP in f.read_text()]
    # Only inputs that are malformed on purpose may opt out of the round trip.
    for path in skipped:
        with pytest.raises(DiagnosticError):
            parse_module(make_context(), path.read_text(), str(path), verify=False)


@pytest.mark.parametrize("path", _roundtrip_inputs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_parse_print_parse_round_trip(path: Path) -> None:
    ctx = make_context()
    module = parse_module(ctx, path.read_text(), str(path), verify=False)
    printed = print_module(ctx, module)
    ctx2 = make_context()
    reparsed = parse_module(ctx2, printed, "printed", verify=False)
    assert reparsed.is_structurally_equivalent(module)
    assert print_module(ctx2, reparsed) == printed


def test_round_trip_keeps_dense_resource_blobs() -> None:
    source = (ROOT / "examples" / "mlp" / "mlp.mlir").read_text()
    ctx = make_context()
    printed = print_module(ctx, parse_module(ctx, source, "mlp.mlir"))
    trailer = printed[printed.index("{-#") :]
    for line in source[source.index("{-#") :].splitlines():
        line = line.strip().rstrip(",")
        if line.startswith("torch_tensor"):
            assert line in trailer


def test_two_parses_in_one_process_keep_their_own_blobs() -> None:
    # xDSL's module-level builtin dialect would rename the second file's resource handles.
    text = """
    func.func @f() -> tensor<2xf32> {
      %c = arith.constant dense_resource<blob> : tensor<2xf32>
      func.return %c : tensor<2xf32>
    }
    {-#
      dialect_resources: { builtin: { blob: "0x040000000000803F00000040" } }
    #-}
    """
    for _ in range(2):
        ctx = make_context()
        printed = print_module(ctx, parse_module(ctx, text, "t.mlir"))
        assert "dense_resource<blob>" in printed
        assert 'blob: "0x040000000000803F00000040"' in printed


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_every_format_name_is_a_dtype(name: str) -> None:
    ctx = make_context()
    attr = Parser(ctx, f"#bitmod.dtype<{name}>").parse_attribute()
    assert isinstance(attr, DtypeAttr) and attr.data == name
    assert str(attr) == f"#bitmod.dtype<{name}>"


def test_unknown_dtype_is_rejected_with_the_valid_names() -> None:
    ctx = make_context()
    with pytest.raises(ParseError) as info:
        Parser(ctx, "#bitmod.dtype<bitmod5>").parse_attribute()
    assert "unknown bitmod dtype 'bitmod5'" in info.value.msg
    assert "bitmod3" in info.value.msg and "mxfp4" in info.value.msg
    with pytest.raises(VerifyException, match="unknown bitmod dtype 'int99'"):
        DtypeAttr("int99")


@pytest.mark.parametrize(
    ("text", "shape", "dtype", "group", "scale_bits"),
    [
        ("!bitmod.qweight<128x64, bitmod3, 64>", (128, 64), "bitmod3", 64, 8),
        ("!bitmod.qweight<4x256, int4_asym, 128, sb=4>", (4, 256), "int4_asym", 128, 4),
        ("!bitmod.qweight<32x128, mxfp4, 32>", (32, 128), "mxfp4", 32, 8),
        ("!bitmod.qweight<8x8, fp4_er_pos, 8, sb=0>", (8, 8), "fp4_er_pos", 8, 0),
    ],
)
def test_qweight_type_parses_and_prints(
    text: str, shape: tuple[int, int], dtype: str, group: int, scale_bits: int
) -> None:
    parsed = Parser(make_context(), text).parse_type()
    assert parsed == QWeightType(shape, dtype, group, scale_bits)
    assert isinstance(parsed, QWeightType)
    assert parsed.get_shape() == shape and parsed.format_name == dtype
    assert str(parsed) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("!bitmod.qweight<128x64, bitmod3, 0>", "group size must be positive, got 0"),
        ("!bitmod.qweight<128x64, mxfp4, 64>", "needs group size 32 (its block), got 64"),
        ("!bitmod.qweight<128x64, int8, 64, sb=9>", "scale bits must be 0 (FP16 scales) or 2..8"),
        ("!bitmod.qweight<128x?, int8, 64>", "static positive NxK shape"),
        ("!bitmod.qweight<2x3x4x5, int8, 4>", "static positive NxK shape"),
        ("!bitmod.qweight<4x8, int9, 8>", "unknown bitmod dtype 'int9'"),
    ],
)
def test_bad_qweight_types_fail_at_their_position(text: str, message: str) -> None:
    with pytest.raises(ParseError) as info:
        Parser(make_context(), text, "t.mlir").parse_type()
    assert message in info.value.msg
    assert info.value.span.get_location().col > 1  # points into the type, not its start


def _block(*types) -> Block:
    return Block(arg_types=types)


F32 = Float32Type()


def _tensor(*shape: int, element=F32) -> TensorType:
    return TensorType(element, shape)


def test_matmul_verifier_accepts_quantized_float_and_batched_weights() -> None:
    block = _block(_tensor(4, 64), _tensor(2, 4, 64), _tensor(128))
    x, xb, b = block.args
    param = ParamOp("fc1.weight", _tensor(128, 64))
    quant = QuantizeOp(param.result, QWeightType((128, 64), "bitmod3", 64), entry="fc1.weight")
    ops = [
        param,
        quant,
        MatmulOp(x, quant.result, _tensor(4, 128), b),
        MatmulOp(x, param.result, _tensor(4, 128)),
        MatmulOp(xb, quant.result, _tensor(2, 4, 128), b),
    ]
    block.add_ops(ops)
    for op in ops:
        op.verify()


@pytest.mark.parametrize(
    ("input_type", "weight_type", "bias_type", "result_type", "message"),
    [
        (
            _tensor(4, 32),
            QWeightType((128, 64), "bitmod3", 64),
            None,
            _tensor(4, 128),
            "operand 'weight' !bitmod.qweight<128x64, bitmod3, 64> has K=64 but operand "
            "'input' tensor<4x32xf32> has K=32",
        ),
        (
            _tensor(4, 64),
            QWeightType((128, 64), "int4", 64),
            _tensor(64),
            _tensor(4, 128),
            "operand 'bias' tensor<64xf32> must have shape [128]",
        ),
        (
            _tensor(4, 64),
            QWeightType((128, 64), "int4", 64),
            _tensor(128, element=Float16Type()),
            _tensor(4, 128),
            "operand 'bias' tensor<128xf16> must have element type f32",
        ),
        (
            _tensor(4, 64),
            QWeightType((128, 64), "int4", 64),
            None,
            _tensor(4, 64),
            "result tensor<4x64xf32> must have shape [4, 128]",
        ),
        (
            _tensor(4, 64),
            QWeightType((128, 64), "int4", 64),
            None,
            _tensor(4, 128, element=Float16Type()),
            "result tensor<4x128xf16> must have element type f32",
        ),
        (
            _tensor(64),
            QWeightType((128, 64), "int4", 64),
            None,
            _tensor(128),
            "operand 'input' must be 2-D or 3-D",
        ),
        (
            _tensor(4, 64),
            _tensor(2, 128, 64),
            None,
            _tensor(4, 128),
            "operand 'weight' must be 2-D",
        ),
    ],
)
def test_matmul_verifier_names_the_bad_operand(
    input_type, weight_type, bias_type, result_type, message: str
) -> None:
    types = [input_type, weight_type] + ([bias_type] if bias_type is not None else [])
    block = _block(*types)
    bias = block.args[2] if bias_type is not None else None
    op = MatmulOp(block.args[0], block.args[1], result_type, bias)
    block.add_op(op)
    with pytest.raises(VerifyException, match=message.replace("[", r"\[").replace("]", r"\]")):
        op.verify()


def test_quantize_verifier_checks_the_weight_shape() -> None:
    block = _block(_tensor(64, 128))
    op = QuantizeOp(block.args[0], QWeightType((128, 64), "bitmod4", 64))
    block.add_op(op)
    with pytest.raises(VerifyException, match="operand 'weight' has shape \\[64, 128\\]"):
        op.verify()


def test_param_verifier_rejects_empty_names_and_dynamic_shapes() -> None:
    with pytest.raises(VerifyException, match="non-empty parameter name"):
        ParamOp("", _tensor(4, 4)).verify()
    with pytest.raises(VerifyException, match="static shape"):
        ParamOp("w", TensorType(F32, (-1, 4))).verify()


def test_ops_build_inside_a_function_and_print_their_syntax() -> None:
    block = _block(_tensor(2, 8))
    param = ParamOp("fc1.weight", _tensor(4, 8))
    quant = QuantizeOp(param.result, QWeightType((4, 8), "int4", 8))
    matmul = MatmulOp(block.args[0], quant.result, _tensor(2, 4))
    block.add_ops([param, quant, matmul, ReturnOp(matmul.result)])
    func = FuncOp("f", ((_tensor(2, 8),), (_tensor(2, 4),)), Region(block))
    text = str(func)
    assert '%1 = bitmod.param "fc1.weight" : tensor<4x8xf32>' in text
    assert "%2 = bitmod.quantize %1 : tensor<4x8xf32> -> !bitmod.qweight<4x8, int4, 8>" in text
    assert (
        "%3 = bitmod.matmul %0, %2 : (tensor<2x8xf32>, !bitmod.qweight<4x8, int4, 8>) "
        "-> tensor<2x4xf32>" in text
    )
