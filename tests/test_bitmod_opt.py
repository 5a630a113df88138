"""bitmod-opt end to end: weights in the archive, quantized values, errors, output files.

Values are checked against independent computations: the torch model the example was
exported from, hand-written constants, and direct calls of the quantizer.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bitmod.compiler.ir_io import parse_module, print_module
from bitmod.compiler.tools.bitmod_opt import main
from bitmod.dialects.bitmod import QuantizeOp
from bitmod.dialects.diagnostics import DiagnosticError
from bitmod.passes.bitmod_quantize import BitmodQuantizePass, parse_layer_overrides
from bitmod.passes.context import make_context
from bitmod.passes.convert_linalg_to_bitmod import ConvertLinalgToBitmodPass
from bitmod.runtime import isa
from bitmod.runtime.formats import dequantize, quantize
from bitmod.runtime.storage.archive import ParamArchive
from xdsl.context import Context

ROOT = Path(__file__).resolve().parent.parent
MLP_DIR = ROOT / "examples" / "mlp"
FILECHECK = ROOT / "tests" / "filecheck"


def _mlp_model() -> torch.nn.Module:
    spec = importlib.util.spec_from_file_location("make_mlp", MLP_DIR / "make_mlp.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model, _ = module.build()
    return model


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# --- convert-linalg-to-bitmod -------------------------------------------------------------


def test_mlp_weights_move_to_the_archive_unchanged(tmp_path: Path, capsys) -> None:
    out = tmp_path / "mlp.mlir"
    status, _, err = _run(
        capsys, str(MLP_DIR / "mlp.mlir"), "-p", "convert-linalg-to-bitmod", "-o", str(out)
    )
    assert status == 0, err
    archive = ParamArchive.load(tmp_path / "mlp.params.safetensors")
    model = _mlp_model()
    for layer in ("fc1", "fc2", "fc3"):
        linear = getattr(model, layer)
        assert torch.equal(archive.get(f"{layer}.weight"), linear.weight.detach())
        assert torch.equal(archive.get(f"{layer}.bias"), linear.bias.detach())
    text = out.read_text()
    assert 'bitmod.params = "mlp.params.safetensors"' in text
    assert "dense_resource" not in text and "linalg.matmul" not in text


def test_converted_mlp_computes_the_model(tmp_path: Path, capsys) -> None:
    # y = fc3(relu(fc2(relu(fc1(x))))) from the archive, in the order the IR uses the params.
    out = tmp_path / "mlp.mlir"
    assert (
        _run(capsys, str(MLP_DIR / "mlp.mlir"), "-p", "convert-linalg-to-bitmod", "-o", str(out))[0]
        == 0
    )
    archive = ParamArchive.load(tmp_path / "mlp.params.safetensors")
    text = out.read_text()
    order = [line.split('"')[1] for line in text.splitlines() if "= bitmod.param " in line]
    assert order == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"]
    model = _mlp_model()
    x = torch.randn(4, 64)
    y = x
    for index, layer in enumerate(("fc1", "fc2", "fc3")):
        y = y @ archive.get(f"{layer}.weight").T + archive.get(f"{layer}.bias")
        if index < 2:
            y = torch.relu(y)
    torch.testing.assert_close(y, model(x).detach())


def test_weight_forms_are_stored_as_n_by_k(tmp_path: Path, capsys) -> None:
    source = FILECHECK / "convert-linalg-to-bitmod" / "weight-forms.mlir"
    assert (
        _run(capsys, str(source), "-p", "convert-linalg-to-bitmod", "-o", str(tmp_path / "w.mlir"))[
            0
        ]
        == 0
    )
    archive = ParamArchive.load(tmp_path / "w.params.safetensors")
    assert archive.get("fc1.weight").tolist() == [
        [1.0, 2.0, 3.0, 4.0],
        [5.0, 6.0, 7.0, 8.0],
        [9.0, 10.0, 11.0, 12.0],
    ]
    assert archive.get("fc1.bias").tolist() == [0.5, -0.5, 1.5]
    # the [K, N] constant [[1,0],[0,1],[2,0],[0,2]] used directly, stored transposed
    assert archive.get("fc2.weight").tolist() == [[1.0, 0.0, 2.0, 0.0], [0.0, 1.0, 0.0, 2.0]]
    assert sorted(archive.names()) == ["fc1.bias", "fc1.weight", "fc2.weight"]


def test_batched_weight_and_broadcast_bias(tmp_path: Path, capsys) -> None:
    source = FILECHECK / "convert-linalg-to-bitmod" / "batch-matmul.mlir"
    assert (
        _run(capsys, str(source), "-p", "convert-linalg-to-bitmod", "-o", str(tmp_path / "b.mlir"))[
            0
        ]
        == 0
    )
    archive = ParamArchive.load(tmp_path / "b.params.safetensors")
    assert archive.get("fc1.weight").tolist() == [[1.0, 3.0, 5.0, 7.0], [2.0, 4.0, 6.0, 8.0]]
    assert archive.get("fc1.bias").tolist() == [0.25, 0.75]


def test_hexadecimal_float_elements_are_bit_patterns(tmp_path: Path) -> None:
    """MLIR reads ``dense<0xFF800000> : tensor<f32>`` as the bits of -inf (torch-mlir's
    masked_fill value); xDSL 0.74 took the integer 4286578688, which turned every causal
    mask of a torch-mlir attention into a mask of +4.3e9 on the host."""
    from bitmod.compiler.module_runner import run_function

    text = (
        "func.func @main() -> (tensor<2xf32>, tensor<f16>, tensor<2xi32>) {\n"
        "  %a = arith.constant dense<[0xFF800000, 0x3FC00000]> : tensor<2xf32>\n"
        "  %b = arith.constant dense<0x7E00> : tensor<f16>\n"
        "  %c = arith.constant dense<[0x10, 3]> : tensor<2xi32>\n"
        "  func.return %a, %b, %c : tensor<2xf32>, tensor<f16>, tensor<2xi32>\n}\n"
    )
    ctx = make_context()
    module = parse_module(ctx, text, "t.mlir")
    a, b, c = run_function(ctx, module, []).outputs
    assert a.tolist() == [float("-inf"), 1.5] and torch.isnan(b) and c.tolist() == [16, 3]
    printed = print_module(ctx, module)
    assert print_module(ctx, parse_module(ctx, printed, "again.mlir")) == printed
    with pytest.raises(DiagnosticError) as caught:
        parse_module(ctx, text.replace("0x3FC00000", "0x1FF800000"), "t.mlir")
    assert caught.value.render() == (
        "t.mlir:2:42: error: hexadecimal literal does not fit the 32 bits of f32"
    )


def test_dense_resource_blob_of_f16_is_decoded() -> None:
    # 0x04000000 is the blob's alignment; then f16 1.0, -2.0, 0.5, 4.0, 0.25, -1.0.
    text = """
    func.func @f(%x: tensor<1x2xf16>) -> tensor<1x3xf16> {
      %zero = arith.constant 0.000000e+00 : f16
      %w = arith.constant dense_resource<w16> : tensor<2x3xf16>
      %e = tensor.empty() : tensor<1x3xf16>
      %acc = linalg.fill ins(%zero : f16) outs(%e : tensor<1x3xf16>) -> tensor<1x3xf16>
      %y = linalg.matmul ins(%x, %w : tensor<1x2xf16>, tensor<2x3xf16>)
             outs(%acc : tensor<1x3xf16>) -> tensor<1x3xf16>
      func.return %y : tensor<1x3xf16>
    }
    {-#
      dialect_resources: { builtin: { w16: "0x04000000003C00C000380044003400BC" } }
    #-}
    """
    ctx = make_context()
    module = parse_module(ctx, text, "f16.mlir")
    ConvertLinalgToBitmodPass().apply(ctx, module)
    weight = ctx.archive.get("fc1.weight")
    assert weight.dtype == torch.float16
    # W [K=2, N=3] = [[1, -2, 0.5], [4, 0.25, -1]] is stored as W^T [N, K]
    assert weight.tolist() == [[1.0, 4.0], [-2.0, 0.25], [0.5, -1.0]]
    assert 'bitmod.param "fc1.weight" : tensor<3x2xf16>' in print_module(ctx, module)


def test_new_layers_do_not_reuse_names_the_archive_has() -> None:
    ctx = make_context()
    ctx.archive.put("fc1.weight", torch.zeros(3, 4))
    source = (FILECHECK / "bitmod-opt" / "stdin-and-output.mlir").read_text()
    module = parse_module(ctx, source, "s.mlir")
    ConvertLinalgToBitmodPass().apply(ctx, module)
    assert 'bitmod.param "fc2.weight" : tensor<3x4xf32>' in print_module(ctx, module)
    assert torch.equal(ctx.archive.get("fc1.weight"), torch.zeros(3, 4))


def test_passes_need_the_bitmod_context() -> None:
    ctx = make_context()
    module = parse_module(ctx, "func.func @f() {\n  func.return\n}\n", "f.mlir")
    with pytest.raises(DiagnosticError, match="needs the parameter archive"):
        ConvertLinalgToBitmodPass().apply(Context(), module)


# --- bitmod-quantize ----------------------------------------------------------------------


def _quantized_mlp(tmp_path: Path, capsys, pipeline: str) -> ParamArchive:
    status, _, err = _run(
        capsys, str(MLP_DIR / "mlp.mlir"), "-p", pipeline, "-o", str(tmp_path / "q.mlir")
    )
    assert status == 0, err
    return ParamArchive.load(tmp_path / "q.params.safetensors")


def _assert_same_quantization(actual, expected) -> None:
    assert (actual.fmt, actual.shape, actual.group_size, actual.scale_bits) == (
        expected.fmt,
        expected.shape,
        expected.group_size,
        expected.scale_bits,
    )
    assert torch.equal(actual.codes, expected.codes)
    assert torch.equal(actual.sv_index, expected.sv_index)
    assert torch.equal(actual.scales, expected.scales)
    torch.testing.assert_close(dequantize(actual), dequantize(expected), rtol=0, atol=0)


def test_default_quantization_matches_the_quantizer(tmp_path: Path, capsys) -> None:
    archive = _quantized_mlp(tmp_path, capsys, "convert-linalg-to-bitmod,bitmod-quantize")
    model = _mlp_model()
    # fc1 has K=64 < 128: one group per row; fc2, fc3 have K=128: one group of 128.
    for layer, group in (("fc1", 64), ("fc2", 128), ("fc3", 128)):
        weight = getattr(model, layer).weight.detach()
        expected = quantize(weight, "bitmod3", group, 8)
        actual = archive.get_quantized(f"{layer}.weight")
        _assert_same_quantization(actual, expected)
        # and it is a faithful 3-bit approximation: the FP3 grids (0, 1, 2, 4 and the special
        # 3 or 6) are at most 2 units apart, and an EA candidate's short side (-4 when +6 is
        # the special value) clips by at most 2 units; INT8 scales add well under 0.1 unit.
        scale = actual.group_scale().repeat_interleave(group, dim=1)
        error = (dequantize(actual) - weight).abs()
        assert bool((error <= scale * 2.1).all())
        assert float((error / scale).mean()) < 0.5
        # the float weight is still there for the IR's bitmod.param
        assert torch.equal(archive.get(f"{layer}.weight"), weight)


def test_layer_overrides_and_scale_bits(tmp_path: Path, capsys) -> None:
    archive = _quantized_mlp(
        tmp_path,
        capsys,
        "convert-linalg-to-bitmod,bitmod-quantize{dtype=int4 scale-bits=0 "
        "layers=fc1:int8:32,fc3.weight:mxfp4}",
    )
    model = _mlp_model()
    cases = {"fc1": ("int8", 32, None), "fc2": ("int4", 128, None), "fc3": ("mxfp4", 32, None)}
    for layer, (fmt, group, scale_bits) in cases.items():
        expected = quantize(getattr(model, layer).weight.detach(), fmt, group, scale_bits)
        _assert_same_quantization(archive.get_quantized(f"{layer}.weight"), expected)


def test_layer_override_syntax() -> None:
    assert parse_layer_overrides("") == parse_layer_overrides("  ") == {}
    assert parse_layer_overrides("fc1:int8, fc3:bitmod4:64,blocks.0.attn:mxfp4") == {
        "fc1": ("int8", None),
        "fc3": ("bitmod4", 64),
        "blocks.0.attn": ("mxfp4", None),
    }
    for bad, message in (
        ("fc1", "malformed"),
        ("fc1:int8:0", "positive integer"),
        ("fc1:int8,fc1:int4", "twice"),
        ("fc1:int99", "unknown bitmod"),
        (",", "empty entry"),  # (found by fuzzing: stray commas were skipped)
        ("fc1:int8:64,", "empty entry"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_layer_overrides(bad)


REQUEST_IR = """
module attributes {bitmod.params = "unused"} {
  func.func @f(%x: tensor<2x16xf32>) -> (tensor<2x8xf32>, tensor<2x8xf32>) {
    %w = bitmod.param "proj.weight" : tensor<8x16xf32>
    %q = bitmod.quantize %w : tensor<8x16xf32> -> !bitmod.qweight<8x16, int4, 8, sb=4>
    %y = bitmod.matmul %x, %q
         : (tensor<2x16xf32>, !bitmod.qweight<8x16, int4, 8, sb=4>) -> tensor<2x8xf32>
    %v = bitmod.param "other" : tensor<8x16xf32>
    %z = bitmod.matmul %x, %v : (tensor<2x16xf32>, tensor<8x16xf32>) -> tensor<2x8xf32>
    func.return %y, %z : tensor<2x8xf32>, tensor<2x8xf32>
  }
}
"""


def test_quantize_request_in_the_ir_keeps_its_format() -> None:
    ctx = make_context()
    weight = torch.randn(8, 16, generator=torch.Generator().manual_seed(1))
    ctx.archive.put("proj.weight", weight)
    ctx.archive.put("other", weight * 2)
    module = parse_module(ctx, REQUEST_IR, "r.mlir")
    BitmodQuantizePass(dtype="fp4").apply(ctx, module)
    _assert_same_quantization(
        ctx.archive.get_quantized("proj.weight"), quantize(weight, "int4", 8, 4)
    )
    _assert_same_quantization(
        ctx.archive.get_quantized("other"), quantize(weight * 2, "fp4", 16, 8)
    )
    entries = {op.entry.data for op in module.walk() if isinstance(op, QuantizeOp) and op.entry}
    assert entries == {"proj.weight", "other"}


def test_quantize_reports_a_missing_parameter() -> None:
    ctx = make_context()
    module = parse_module(ctx, REQUEST_IR, "r.mlir")
    with pytest.raises(DiagnosticError) as info:
        BitmodQuantizePass().apply(ctx, module)
    assert info.value.render().startswith("r.mlir:4:5: error: 'bitmod.param' op parameter")
    assert "'proj.weight' not found" in info.value.render()


def test_progress_bar_on_request(tmp_path: Path, capsys) -> None:
    status, _, err = _run(
        capsys,
        str(MLP_DIR / "mlp.mlir"),
        "-p",
        "convert-linalg-to-bitmod,bitmod-quantize{progress=true}",
        "-o",
        str(tmp_path / "q.mlir"),
    )
    assert status == 0
    assert "bitmod-quantize" in err and "3/3" in err
    status, _, err = _run(
        capsys,
        str(MLP_DIR / "mlp.mlir"),
        "-p",
        "convert-linalg-to-bitmod,bitmod-quantize",
        "-o",
        str(tmp_path / "q2.mlir"),
    )
    assert status == 0 and err == ""  # stderr is not a terminal here


# --- driver -------------------------------------------------------------------------------


def test_failed_run_leaves_no_partial_output(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.mlir"
    out.write_text("previous result\n")
    bad = FILECHECK / "bitmod-opt" / "shape-mismatch.mlir"
    status, stdout, err = _run(capsys, str(bad), "-o", str(out))
    assert status == 1 and stdout == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert out.read_text() == "previous result\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mlir"]


def test_debug_shows_the_traceback(capsys) -> None:
    bad = FILECHECK / "bitmod-opt" / "shape-mismatch.mlir"
    status, _, err = _run(capsys, str(bad), "--debug")
    assert status == 1
    assert "Traceback" in err
    assert err.strip().splitlines()[-1].startswith(f"{bad}:6:3: error: 'bitmod.matmul' op")


def test_stdout_run_writes_no_archive(tmp_path: Path) -> None:
    source = FILECHECK / "bitmod-opt" / "stdin-and-output.mlir"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bitmod.compiler.tools.bitmod_opt",
            "-",
            "-p",
            "convert-linalg-to-bitmod",
        ],
        input=source.read_text(),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert 'bitmod.params = "stdin.params.safetensors"' in result.stdout
    assert "parameter archive not written" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_params_option_places_the_archive(tmp_path: Path, capsys) -> None:
    params = tmp_path / "weights" / "all.safetensors"
    out = tmp_path / "ir" / "m.mlir"
    status, _, err = _run(
        capsys,
        str(MLP_DIR / "mlp.mlir"),
        "-p",
        "convert-linalg-to-bitmod",
        "-o",
        str(out),
        "--params",
        str(params),
    )
    assert status == 0, err
    assert 'bitmod.params = "../weights/all.safetensors"' in out.read_text()
    assert "fc2.weight" in ParamArchive.load(params)
    # and the output reads back from elsewhere with that relative name
    status, _, err = _run(capsys, str(out), "-p", "bitmod-quantize", "-o", str(tmp_path / "q.mlir"))
    assert status == 0, err
    assert ParamArchive.load(tmp_path / "q.params.safetensors").is_quantized("fc2.weight")


def test_full_pipeline_binary_and_assembly_agree(tmp_path: Path, capsys) -> None:
    binary = tmp_path / "mlp.bin"
    status, _, err = _run(
        capsys,
        str(MLP_DIR / "mlp.mlir"),
        "--pipeline=bitmod-default",
        "--emit=bin",
        "-o",
        str(binary),
    )
    assert status == 0, err
    data = binary.read_bytes()
    assert data[:4] == b"BSIS"
    program = isa.Program.decode(data)
    assert isa.assemble(program.to_asm()).encode() == data
    status, asm, err = _run(
        capsys, str(MLP_DIR / "mlp.mlir"), "--pipeline=bitmod-default", "--emit=asm"
    )
    assert status == 0, err
    assert isa.assemble(asm).encode() == data
    archive = ParamArchive.load(tmp_path / "mlp.params.safetensors")
    for layer in ("fc1", "fc2", "fc3"):
        assert archive.quantized_metadata(f"{layer}.weight")["fmt"] == "bitmod3"
        assert f'"{layer}.weight"' in asm


def test_emit_without_a_program_is_one_error(tmp_path: Path, capsys) -> None:
    out = tmp_path / "x.bin"
    status, _, err = _run(
        capsys,
        str(MLP_DIR / "mlp.mlir"),
        "--pipeline=bitmod-frontend",
        "--emit=bin",
        "-o",
        str(out),
    )
    assert status == 1
    assert "error: 'builtin.module' op --emit=bin" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_a_shared_weight_gets_one_quantization() -> None:
    text = """
    module attributes {bitmod.params = "unused"} {
      func.func @f(%x: tensor<2x16xf32>) -> (tensor<2x8xf32>, tensor<2x8xf32>) {
        %w = bitmod.param "shared" : tensor<8x16xf32>
        %q = bitmod.quantize %w : tensor<8x16xf32> -> !bitmod.qweight<8x16, int4, 8>
        %y = bitmod.matmul %x, %q
             : (tensor<2x16xf32>, !bitmod.qweight<8x16, int4, 8>) -> tensor<2x8xf32>
        %v = bitmod.param "shared" : tensor<8x16xf32>
        %r = bitmod.quantize %v : tensor<8x16xf32> -> !bitmod.qweight<8x16, int8, 8>
        %z = bitmod.matmul %x, %r
             : (tensor<2x16xf32>, !bitmod.qweight<8x16, int8, 8>) -> tensor<2x8xf32>
        func.return %y, %z : tensor<2x8xf32>, tensor<2x8xf32>
      }
    }
    """
    ctx = make_context()
    ctx.archive.put("shared", torch.ones(8, 16))
    module = parse_module(ctx, text, "s.mlir")
    with pytest.raises(DiagnosticError, match="shared by layers asking for different"):
        BitmodQuantizePass().apply(ctx, module)


def test_empty_input_is_an_empty_module(tmp_path: Path) -> None:
    source = tmp_path / "empty.mlir"
    source.write_text("// only a comment\n\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bitmod.compiler.tools.bitmod_opt",
            str(source),
            "-p",
            "convert-linalg-to-bitmod",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "builtin.module {\n}\n"


# --- --list-passes: generated from the pass classes -----------------------------------------


def test_list_passes_shows_each_option_with_its_type_and_default(capsys) -> None:
    status, out, _ = _run(capsys, "--list-passes")
    assert status == 0
    lines = out.splitlines()
    tile = lines.index(
        "  bitmod-tile               Tile quantized bitmod.matmul ops onto the "
        "output-stationary PE array."
    )
    assert lines[tile + 1 : tile + 13] == [
        "      rows: int = 8",
        "      cols: int = 8",
        "      tiles: int = 16",
        "      dataflow: str = os",
        "      act-buffer: int = 524288",
        "      weight-buffer: int = 524288",
        "      max-block-rows: int = 128",
        "      row-groups: int = 4",
        "      dram-bytes-per-cycle: int | float = 25.6",
        "      kchunk: int = 0",
        "      block-rows: int = 0",
        "      order: str = auto",
    ]
    quantize = next(i for i, line in enumerate(lines) if line.startswith("  bitmod-quantize "))
    assert lines[quantize + 1 : quantize + 6] == [
        "      dtype: str = bitmod3",
        "      group-size: int = 128",
        "      scale-bits: int = 8",
        "      layers: str (optional)",
        "      progress: bool = false",
    ]
    assert "PASS_SUMMARIES" not in vars(importlib.import_module("bitmod.passes"))


def test_list_passes_follows_a_new_option_declaration() -> None:
    from dataclasses import dataclass

    from bitmod.compiler.tools.bitmod_opt import list_passes
    from xdsl.passes import ModulePass

    @dataclass(frozen=True)
    class ExamplePass(ModulePass):
        """Do one thing.

        Longer explanation that the listing leaves out.
        """

        name = "example"

        width: int = 3
        scale: int | float = 0.5
        fast: bool = True
        label: str | None = None

    text = list_passes({"example": lambda: ExamplePass})
    assert text.splitlines()[:6] == [
        "passes:",
        "  example  Do one thing.",
        "      width: int = 3",
        "      scale: int | float = 0.5",
        "      fast: bool = true",
        "      label: str (optional)",
    ]


def test_listing_passes_and_parsing_import_no_torch(tmp_path: Path) -> None:
    source = tmp_path / "f.mlir"
    source.write_text((FILECHECK / "bitmod-tile" / "single-chunk.mlir").read_text())
    script = (
        "import sys\n"
        "from bitmod.compiler.tools.bitmod_opt import main\n"
        "assert main(['--list-passes']) == 0\n"
        f"assert main([{str(source)!r}, '-p', 'bitmod-tile,bitmod-lower-to-isa']) == 0\n"
        "print(sorted(m for m in ('torch', 'tqdm') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


# --- pass options --------------------------------------------------------------------------


def test_pass_option_values_are_typed_by_their_field() -> None:
    from bitmod.compiler.pipelines import build_pipeline

    (tile,) = build_pipeline(
        'bitmod-tile{dram-bytes-per-cycle=1e-3 act-buffer=+2048 order="k-streamed"}'
    ).passes
    assert (tile.dram_bytes_per_cycle, tile.act_buffer, tile.order) == (0.001, 2048, "k-streamed")
    (quantize,) = build_pipeline(
        'bitmod-quantize{layers="fc1:int8, fc2:int4" progress=true}'
    ).passes
    assert quantize.layers == "fc1:int8, fc2:int4" and quantize.progress is True
    (quantize,) = build_pipeline("bitmod-quantize{layers=blocks.0.attn:int8,fc3:bitmod4:64}").passes
    assert quantize.layers == "blocks.0.attn:int8,fc3:bitmod4:64"


# --- passes that cannot act on the IR they are given ---------------------------------------


def test_a_pass_before_convert_is_an_error_at_the_product(tmp_path: Path, capsys) -> None:
    out = tmp_path / "q.mlir"
    for pipeline, wanted in (
        ("bitmod-quantize", "bitmod.matmul"),
        ("bitmod-tile", "quantized bitmod.matmul"),
        ("bitmod-lower-to-isa", "bsisa.tiled_matmul"),
    ):
        status, stdout, err = _run(
            capsys, str(MLP_DIR / "mlp.mlir"), "-p", pipeline, "-o", str(out)
        )
        assert status == 1 and stdout == ""
        assert err == (
            f"{MLP_DIR / 'mlp.mlir'}:16:5: error: 'linalg.matmul' op {pipeline}: the module has "
            f"no {wanted}, only linalg products such as this one: run convert-linalg-to-bitmod "
            "first (a product whose weight is not a constant stays on the host)\n"
        )
        assert list(tmp_path.iterdir()) == []


def test_passes_that_find_nothing_to_do_warn(capsys) -> None:
    untouched = FILECHECK / "convert-linalg-to-bitmod" / "untouched.mlir"
    status, out, err = _run(capsys, str(untouched), "-p", "convert-linalg-to-bitmod{kv-dtype=host}")
    assert status == 0 and "linalg.matmul" in out
    assert err == (
        f"{untouched}:12:3: warning: 'linalg.matmul' op convert-linalg-to-bitmod: none of the 3 "
        "linalg products is a linear layer (a constant weight and a zero accumulator) or an "
        "activation product (a zero accumulator); nothing converted\n"
    )
    with_host_matmul = FILECHECK / "bitmod-tile" / "options.mlir"
    status, _, err = _run(capsys, str(with_host_matmul), "-p", "bitmod-tile,bitmod-tile")
    assert status == 0 and err == ""  # the second run finds the module already tiled
    status, _, err = _run(
        capsys,
        str(MLP_DIR / "mlp.mlir"),
        "-p",
        "convert-linalg-to-bitmod,bitmod-tile,bitmod-lower-to-isa",
    )
    assert status == 0
    assert err.splitlines() == [
        f"{MLP_DIR / 'mlp.mlir'}:16:5: warning: 'bitmod.matmul' op bitmod-tile: the module has "
        "no quantized bitmod.matmul, nothing to do; this op needs bitmod-quantize first (or "
        "stays on the host)",
        f"{MLP_DIR / 'mlp.mlir'}:16:5: warning: 'bitmod.matmul' op bitmod-lower-to-isa: the "
        "module has no bsisa.tiled_matmul, nothing to do; this op needs bitmod-quantize and "
        "bitmod-tile first (or stays on the host)",
        "bitmod-opt: note: parameter archive not written (give -o OUT or --params PATH)",
    ]


HOST_ONLY = FILECHECK / "bitmod-quantize" / "host-products.mlir"
"""A module whose only product is not a linear layer (its batched weight differs per batch)."""


def test_products_that_are_not_linear_layers_leave_nothing_to_do(tmp_path: Path, capsys) -> None:
    """convert-linalg-to-bitmod leaves such a product on the host; the later passes then have
    nothing to do and say so, instead of asking for convert-linalg-to-bitmod again."""
    source = HOST_ONLY
    out = tmp_path / "host.lowered.mlir"
    status, stdout, err = _run(capsys, str(source), "--pipeline=bitmod-default", "-o", str(out))
    assert status == 0 and stdout == ""
    lines = err.splitlines()
    assert len(lines) == 4 and lines[0].startswith(
        f"{source}:11:3: warning: 'linalg.batch_matmul' op convert-linalg-to-bitmod: none of the 1"
    )
    for line, (name, wanted) in zip(
        lines[1:],
        (
            ("bitmod-quantize", "bitmod.matmul"),
            ("bitmod-tile", "quantized bitmod.matmul"),
            ("bitmod-lower-to-isa", "bsisa.tiled_matmul"),
        ),
        strict=True,
    ):
        assert line == (
            f"{source}:11:3: warning: 'linalg.batch_matmul' op {name}: the module has no "
            f"{wanted}, nothing to do: its linalg products, such as this one, are not linear "
            "layers and stay on the host (products of two run-time values are converted by "
            "convert-linalg-to-bitmod unless kv-dtype=host)"
        )
    assert "linalg.batch_matmul" in out.read_text()
    # the same module with a linear layer beside it: that one is still an error
    mixed = tmp_path / "mixed.mlir"
    mixed.write_text(
        HOST_ONLY.read_text().replace("func.func @main", "func.func @other")
        + (MLP_DIR / "mlp.mlir").read_text()
    )
    status, _, err = _run(capsys, str(mixed), "-p", "bitmod-quantize", "-o", str(tmp_path / "m"))
    assert status == 1 and "linalg.matmul' op bitmod-quantize" in err
    assert "run convert-linalg-to-bitmod first" in err


@pytest.mark.parametrize(
    ("fmt", "family"), [("mxfp4", "mx"), ("olive4", "olive"), ("ant4", "mixture")]
)
def test_tiling_refuses_a_format_without_a_bit_serial_datapath(fmt: str, family: str) -> None:
    from bitmod.passes.bitmod_tile import BitmodTilePass

    weight = f"!bitmod.qweight<32x64, {fmt}, 32>"
    text = (
        "func.func @f(%x: tensor<4x64xf32>) -> tensor<4x32xf32> {\n"
        '  %w = bitmod.param "a.weight" : tensor<32x64xf32>\n'
        f'  %q = bitmod.quantize %w into "a.weight" : tensor<32x64xf32> -> {weight}\n'
        f"  %y = bitmod.matmul %x, %q : (tensor<4x64xf32>, {weight}) -> tensor<4x32xf32>\n"
        "  func.return %y : tensor<4x32xf32>\n}\n"
    )
    ctx = make_context()
    module = parse_module(ctx, text, "t.mlir")
    before = print_module(ctx, module)
    with pytest.raises(DiagnosticError) as error:
        BitmodTilePass().apply(ctx, module)
    assert error.value.render() == (
        f"t.mlir:4:3: error: 'bitmod.matmul' op bitmod-tile: format {fmt} has no bit-serial "
        f"lowering (family '{family}'); quantize this layer to an accelerated format or keep it "
        "on the host"
    )
    assert print_module(ctx, module) == before


# --- -o and --params: what the paths are decides how they are written -----------------------

CONVERT = ("-p", "convert-linalg-to-bitmod")


def _expected_ir(tmp_path: Path, capsys) -> str:
    """The IR bitmod-opt prints for the MLP (stdout run: no archive written, no pin)."""
    status, out, _ = _run(capsys, str(MLP_DIR / "mlp.mlir"), *CONVERT)
    assert status == 0
    return out


def test_output_onto_a_fifo_is_written_through(tmp_path: Path, capsys) -> None:
    import os
    import stat
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    status, _, err = _run(capsys, str(MLP_DIR / "mlp.mlir"), *CONVERT, "-o", str(fifo))
    if not received:  # (a writer that never opened the FIFO leaves the reader waiting)
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    reader.join(timeout=30)
    assert status == 0, err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still a FIFO, not a regular file
    assert received and received[0].decode() == _expected_ir(tmp_path, capsys)
    # no archive next to a pipe (and none in the directory): the note says how to get one
    assert "parameter archive not written (give --params PATH)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_output_onto_a_character_device_is_written_through(tmp_path: Path, capsys) -> None:
    import os
    import stat

    device = tmp_path / "null"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a /dev/null of our own
    except (PermissionError, OSError) as error:
        pytest.skip(f"cannot make a device node here: {error}")
    status, _, err = _run(capsys, str(MLP_DIR / "mlp.mlir"), *CONVERT, "-o", str(device))
    assert status == 0, err
    assert stat.S_ISCHR(os.lstat(device).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]


def test_output_through_a_symlink_replaces_its_target(tmp_path: Path, capsys) -> None:
    target = tmp_path / "real.mlir"
    target.write_text("old\n")
    link = tmp_path / "link.mlir"
    link.symlink_to(target.name)
    status, _, err = _run(capsys, str(MLP_DIR / "mlp.mlir"), *CONVERT, "-o", str(link))
    assert status == 0, err
    assert link.is_symlink() and link.readlink() == Path("real.mlir")
    text = target.read_text()
    assert 'bitmod.params = "link.params.safetensors"' in text
    assert "fc1.weight" in ParamArchive.load(tmp_path / "link.params.safetensors")


def test_output_that_is_the_params_file_is_an_error(tmp_path: Path, capsys) -> None:
    same = tmp_path / "both"
    with pytest.raises(SystemExit) as exit_info:  # a usage error, as argparse's are
        main([str(MLP_DIR / "mlp.mlir"), *CONVERT, "-o", str(same), "--params", str(same)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err == f"bitmod-opt: error: -o and --params name the same file ({same}) (see --help)\n"
    assert list(tmp_path.iterdir()) == []


def test_output_onto_a_directory_leaves_nothing_behind(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(SystemExit) as exit_info:  # refused before the input is read
        _run(capsys, str(MLP_DIR / "mlp.mlir"), *CONVERT, "-o", str(out))
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.endswith(f"error: -o '{out}': Is a directory (see --help)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no out.params.safetensors
    assert list(out.iterdir()) == []


def test_output_below_a_regular_file_names_it(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    out = blocker / "sub" / "m.mlir"
    with pytest.raises(SystemExit) as exit_info:  # refused before the input is read
        _run(capsys, str(MLP_DIR / "mlp.mlir"), *CONVERT, "-o", str(out))
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and err.count("error:") == 1
    assert err.endswith(f"error: -o '{out}': {blocker}: Not a directory (see --help)\n")
    assert "File exists" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


class Killed(BaseException):
    """Stands for a kill signal: nothing in the tool catches it (it is no Exception)."""


# --- IR and archive as one unit ----------------------------------------------------------------


def test_an_ir_is_never_paired_with_another_runs_archive(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib
    import os

    out = tmp_path / "out.mlir"
    archive = tmp_path / "out.params.safetensors"
    assert _run(capsys, str(MLP_DIR / "mlp.mlir"), *CONVERT, "-o", str(out))[0] == 0
    first_ir = out.read_text()
    assert f'bitmod.params_sha256 = "{hashlib.sha256(archive.read_bytes()).hexdigest()}"' in (
        first_ir
    )
    # A second run is killed between putting its archive in place and putting its IR there.
    real_replace = os.replace

    def killed_before_the_ir(source: object, destination: object) -> None:
        if Path(destination) == out:
            raise Killed
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", killed_before_the_ir)
    with pytest.raises(Killed):
        _run(
            capsys,
            str(MLP_DIR / "mlp.mlir"),
            "-p",
            "convert-linalg-to-bitmod,bitmod-quantize",
            "-o",
            str(out),
        )
    monkeypatch.undo()
    capsys.readouterr()
    assert out.read_text() == first_ir  # the old IR, next to the new run's archive
    assert ParamArchive.load(archive).is_quantized("fc1.weight")
    status, _, err = _run(capsys, str(out), "-p", "bitmod-quantize")
    assert status == 1
    assert f"error: 'builtin.module' op parameter archive {archive} is not the one this IR" in err
    assert len(err.splitlines()) == 1


def test_temporaries_of_killed_runs_are_removed(tmp_path: Path, capsys) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".out.mlir.bitmod-tmp.{dead.pid}.abcdefgh"
    stale.write_text("half an IR")
    stale_archive = tmp_path / f".out.params.safetensors.bitmod-tmp.{dead.pid}.abcdefgh"
    stale_archive.write_bytes(b"half an archive")
    running = tmp_path / ".out.mlir.bitmod-tmp.1.abcdefgh"  # PID 1 runs: another writer's
    running.write_text("in progress")
    out = tmp_path / "out.mlir"
    assert _run(capsys, str(MLP_DIR / "mlp.mlir"), *CONVERT, "-o", str(out))[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [running.name, "out.mlir", "out.params.safetensors"]
    )


# --- malformed input fails fast and located -------------------------------------------------


def test_a_truncated_string_literal_fails_instead_of_hanging(tmp_path: Path) -> None:
    # Cut torch-mlir's MLP export inside a dense_resource blob: the hex string never closes.
    # xDSL's string regex used to try 2^n ways to match it (a 100-character string: forever).
    text = (MLP_DIR / "mlp.mlir").read_text()
    blob = text.index('"0x')
    truncated = tmp_path / "truncated.mlir"
    truncated.write_text(text[: blob + 100])
    line = text[:blob].count("\n") + 1
    column = blob - text.rfind("\n", 0, blob)
    result = subprocess.run(
        [sys.executable, "-m", "bitmod.compiler.tools.bitmod_opt", str(truncated)],
        capture_output=True,
        text=True,
        timeout=300,  # a hang detector, not a speed requirement
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"{truncated}:{line}:{column}: error: End of file reached before closing string literal.\n"
    )


def test_nesting_deeper_than_the_parser_is_a_located_error(tmp_path: Path, capsys) -> None:
    deep = tmp_path / "deep.mlir"
    deep.write_text('"test.op"() {a = ' + "[" * 3000 + "]" * 3000 + "} : () -> ()\n")
    status, _, err = _run(capsys, str(deep), "--allow-unregistered-dialect")
    assert status == 1 and len(err.splitlines()) == 1
    assert err.startswith(f"{deep}:1:")
    assert "nesting is deeper than the parser can follow" in err and "internal" not in err
    regions = tmp_path / "regions.mlir"
    regions.write_text('"test.op"() ({\n' * 3000 + "}) : () -> ()\n" * 3000)
    status, _, err = _run(capsys, str(regions), "--allow-unregistered-dialect")
    assert status == 1 and "nesting is deeper" in err and "internal" not in err


def test_a_literal_its_type_cannot_hold_is_located_at_its_op(tmp_path: Path, capsys) -> None:
    source = tmp_path / "huge.mlir"
    source.write_text(
        "func.func @f() -> i32 {\n"
        f"  %c = arith.constant {'9' * 400} : i32\n"
        "  func.return %c : i32\n}\n"
    )
    status, _, err = _run(capsys, str(source))
    assert status == 1 and len(err.splitlines()) == 1
    assert err.startswith(f"{source}:2:3: error: Integer value 999") and "internal" not in err


# --- standard output ---------------------------------------------------------------------------


def test_closed_stdout_is_one_error(tmp_path: Path) -> None:
    source = FILECHECK / "bitmod-tile" / "single-chunk.mlir"
    for argv, message in (
        ([str(source)], "<stdout>:1:1: error: cannot write output: standard output is closed\n"),
        (["--list-passes"], "bitmod-opt: error: cannot list passes: standard output is closed\n"),
    ):
        result = subprocess.run(
            ["sh", "-c", 'exec "$0" "$@" >&-', sys.executable, "-m", _OPT, *argv],
            capture_output=True,
            text=True,
            check=False,
        )
        assert (result.returncode, result.stderr) == (1, message)


def test_a_reader_that_goes_away_ends_the_run_quietly(tmp_path: Path) -> None:
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)  # `bitmod-opt ... | head` after head exited
    result = subprocess.run(
        [sys.executable, "-m", _OPT, str(MLP_DIR / "mlp.mlir")],
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    os.close(write_end)
    assert (result.returncode, result.stderr) == (1, "")


_OPT = "bitmod.compiler.tools.bitmod_opt"


def test_unreadable_archive_is_not_reported_missing(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    from bitmod.runtime.storage import archive as archive_module

    out = tmp_path / "m.mlir"
    assert _run(capsys, str(MLP_DIR / "mlp.mlir"), *CONVERT, "-o", str(out))[0] == 0
    params = tmp_path / "m.params.safetensors"

    def unreadable(path: object, *args: object, **kwargs: object) -> object:
        if Path(str(path)) == params:
            raise PermissionError(13, "Permission denied", str(path))
        return builtins.open(path, *args, **kwargs)  # type: ignore[call-overload]

    # (tests run as root, for whom chmod 000 does not make a file unreadable)
    monkeypatch.setattr(archive_module, "open", unreadable, raising=False)
    status, _, err = _run(capsys, str(out), "-p", "bitmod-quantize")
    assert status == 1
    assert err == (
        f"{out}:1:1: error: 'builtin.module' op cannot read parameter archive {params}: "
        "Permission denied\n"
    )


def test_a_custom_form_xdsl_cannot_read_is_a_located_error(tmp_path: Path, capsys) -> None:
    """xDSL's hand-written parser of ``linalg.add`` indexes its inputs without checking that
    there are any (IndexError): it must be an error at the op, not an internal one."""
    source = tmp_path / "no-inputs.mlir"
    source.write_text(
        "func.func @f(%y: tensor<4x16xf32>) -> tensor<4x16xf32> {\n"
        "  %0 = linalg.add outs(%y : tensor<4x16xf32>) -> tensor<4x16xf32>\n"
        "  return %0 : tensor<4x16xf32>\n"
        "}\n"
    )
    out = tmp_path / "out.mlir"
    status, _, err = _run(capsys, str(source), "-o", str(out))
    assert status == 1 and len(err.splitlines()) == 1
    expected = f"{source}:2:3: error: xDSL cannot parse this custom form of 'linalg.add'"
    assert err.startswith(expected)
    assert "internal" not in err and not out.exists()
