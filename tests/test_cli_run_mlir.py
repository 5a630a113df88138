"""``bitmod run-mlir``: a module lowered by ``bitmod-opt`` run from the shell.

A tiny two-input, two-result model (two linears, a residual add, a ReLU) goes through
torch-mlir (``linalg-on-tensors``) and ``bitmod-opt --pipeline=bitmod-default``; the command
runs the lowered module on a safetensors file of inputs and must give the very bits
:func:`bitmod.compiler.module_runner.run_function` gives in Python, print the numbers of its
:class:`~bitmod.compiler.module_runner.ModuleRun`, and refuse every kind of bad input (a
missing file, IR that is malformed or not lowered, a corrupt, missing or mismatched
archive, inputs that do not match the function, ``-o`` naming a file it reads) with one
line, exit status 1, no traceback and no output file.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from bitmod.compiler.module_runner import load_lowered, run_function
from bitmod.compiler.tools.bitmod_cli import main
from bitmod.compiler.tools.bitmod_opt import main as bitmod_opt
from safetensors.torch import load_file, save_file
from torch import nn


class Tiny(nn.Module):
    """Two linears with a residual input between them; returns the output and the residual."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.fc1(x) + y
        return self.fc2(torch.relu(h)), h


@dataclass
class Lowered:
    raw: Path  # torch-mlir's output
    ir: Path  # bitmod-opt --pipeline=bitmod-default -o ir
    archive: Path  # its parameter archive, named as bitmod-opt names it
    inputs: Path  # arg0, arg1
    x: torch.Tensor
    y: torch.Tensor


@pytest.fixture(scope="module")
def lowered(tmp_path_factory: pytest.TempPathFactory) -> Lowered:
    from torch_mlir import fx

    tmp = tmp_path_factory.mktemp("run_mlir")
    torch.manual_seed(0)
    model = Tiny().eval()
    x, y = torch.randn(2, 8), torch.randn(2, 16)
    raw = tmp / "tiny.mlir"
    raw.write_text(str(fx.export_and_import(model, x, y, output_type="linalg-on-tensors")))
    ir = tmp / "tiny.lowered.mlir"
    assert bitmod_opt([str(raw), "--pipeline=bitmod-default", "-o", str(ir)]) == 0
    archive = tmp / "tiny.lowered.params.safetensors"
    assert archive.is_file()
    inputs = tmp / "inputs.safetensors"
    save_file({"arg0": x, "arg1": y}, str(inputs))
    return Lowered(raw, ir, archive, inputs, x, y)


def _copy(lowered: Lowered, tmp_path: Path) -> tuple[Path, Path]:
    """The IR and its archive copied into ``tmp_path`` (same names: the IR still finds it)."""
    ir = Path(shutil.copy(lowered.ir, tmp_path))
    archive = Path(shutil.copy(lowered.archive, tmp_path))
    return ir, archive


def _cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    status = main(["run-mlir", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err


def _reference(lowered: Lowered):
    ctx, module = load_lowered(lowered.ir)
    return run_function(ctx, module, [lowered.x, lowered.y])


def _bits(tensor: torch.Tensor) -> tuple[str, list[int], bytes]:
    return str(tensor.dtype), list(tensor.shape), tensor.contiguous().numpy().tobytes()


# --- what it computes and prints ---------------------------------------------------------------


def test_outputs_are_the_bits_run_function_gives(lowered, tmp_path, capsys) -> None:
    out = tmp_path / "sub" / "outputs.safetensors"
    status, stdout, stderr = _cli(capsys, lowered.ir, "--inputs", lowered.inputs, "-o", out)
    assert (status, stderr) == (0, "")
    results = load_file(str(out))
    reference = _reference(lowered)
    assert sorted(results) == ["result0", "result1"]
    for index, expected in enumerate(reference.outputs):
        assert _bits(results[f"result{index}"]) == _bits(expected)
    assert list(results["result0"].shape) == [2, 4] and list(results["result1"].shape) == [2, 16]
    assert stdout.splitlines()[-1] == f"bitmod: wrote {out} (result0, result1)"
    assert [p.name for p in out.parent.iterdir()] == ["outputs.safetensors"]  # no temporaries


def test_the_printed_numbers_are_the_module_runs(lowered, capsys) -> None:
    status, stdout, _ = _cli(capsys, lowered.ir, "--inputs", lowered.inputs)
    assert status == 0
    stats = _reference(lowered).stats
    assert list(stats) == ["fc1", "fc2"]
    lines = stdout.splitlines()
    assert lines[0] == f"bitmod run-mlir: @main of {lowered.ir} (2 launches, 2 accelerator runs)"
    cycles = sum(s.cycles for s in stats.values())
    energy = sum(s.energy_total_pj for s in stats.values())
    macs = sum(s.macs for s in stats.values())
    dram = sum(s.dram_bytes for s in stats.values())
    assert cycles > 0 and energy > 0
    assert lines[1] == (
        f"  cycles {cycles:,d}, energy {energy / 1e6:.4f} uJ, MACs {macs:,d}, DRAM {dram:,d} B"
    )
    rows = {line.split()[0]: line.split()[1:] for line in lines[4:6]}
    assert rows == {
        name: [str(s.runs), f"{s.cycles:,d}", f"{s.energy_total_pj / 1e6:.4f}", f"{s.macs:,d}"]
        for name, s in stats.items()
    }
    assert lines[7:] == ["  result0    float32 [2, 4]", "  result1    float32 [2, 16]"]


def test_run_function_reports_every_launch_in_order(lowered) -> None:
    ctx, module = load_lowered(lowered.ir)
    seen: list[str] = []
    run = run_function(ctx, module, [lowered.x, lowered.y], on_launch=seen.append)
    assert seen == ["fc1", "fc2"] == list(run.stats)


def test_progress_bar_counts_the_launches_on_stderr(lowered, capsys) -> None:
    status, plain, quiet = _cli(capsys, lowered.ir, "--inputs", lowered.inputs)
    assert status == 0 and quiet == ""  # not a terminal: no bar unless asked
    status, stdout, stderr = _cli(capsys, lowered.ir, "--inputs", lowered.inputs, "--progress")
    assert status == 0 and stdout == plain
    final = stderr.replace("\r", "\n").strip().splitlines()[-1]
    assert final.startswith("bitmod run-mlir: 100%") and "2/2" in final and "fc2" in final
    status, _, stderr = _cli(capsys, lowered.ir, "--inputs", lowered.inputs, "--no-progress")
    assert status == 0 and stderr == ""


def test_json_is_the_module_runs_stats(lowered, tmp_path, capsys) -> None:
    out = tmp_path / "o.safetensors"
    status, stdout, _ = _cli(capsys, lowered.ir, "--inputs", lowered.inputs, "-o", out, "--json")
    assert status == 0
    summary = json.loads(stdout)  # nothing but the JSON on stdout
    stats = _reference(lowered).stats
    assert summary["launches"] == {name: s.to_json() for name, s in stats.items()}
    total = summary["total"]
    assert total["launches"] == 2 and total["runs"] == sum(s.runs for s in stats.values())
    assert total["cycles"] == sum(s.cycles for s in stats.values())
    assert total["energy_total_pj"] == sum(s.energy_total_pj for s in stats.values())
    assert total["energy_pj"]["pe"] == sum(s.energy_pj["pe"] for s in stats.values())
    assert summary["outputs"] == [
        {"name": "result0", "dtype": "float32", "shape": [2, 4]},
        {"name": "result1", "dtype": "float32", "shape": [2, 16]},
    ]
    assert summary["function"] == "main" and summary["output"] == str(out)
    assert Path(summary["params"]) == lowered.archive.resolve()


def test_params_names_a_moved_archive(lowered, tmp_path, capsys) -> None:
    ir, archive = _copy(lowered, tmp_path)
    moved = archive.rename(tmp_path / "elsewhere.safetensors")
    out = tmp_path / "o.safetensors"
    status, _, err = _cli(capsys, ir, "--inputs", lowered.inputs, "-o", out)
    assert status == 1 and not out.exists()
    assert err == (
        f"bitmod: error: {ir}:1:1: 'builtin.module' op parameter archive {archive} does not exist\n"
    )
    status, _, err = _cli(capsys, ir, "--params", moved, "--inputs", lowered.inputs, "-o", out)
    assert (status, err) == (0, "")
    results = load_file(str(out))
    assert _bits(results["result0"]) == _bits(_reference(lowered).outputs[0])


def test_help_documents_the_naming(capsys) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["run-mlir", "--help"])
    assert caught.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "named by position arg0, arg1, ..." in text
    assert "result0, result1, ..." in text
    assert "OUT.params.safetensors" in text and "--params ARCHIVE" in text


# --- one line, status 1, no traceback, no output file ------------------------------------------


def _refused(capsys, out: Path, *argv: str | Path) -> str:
    """Run the command (``-o out``); assert that it failed cleanly and return its message."""
    status, stdout, stderr = _cli(capsys, *argv, "-o", out)
    assert status == 1
    assert stdout == ""
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*"))
    assert "Traceback" not in stderr and stderr.count("\n") == 1, stderr
    assert stderr.startswith("bitmod: error: ")
    return stderr.removeprefix("bitmod: error: ").rstrip("\n")


def test_missing_files(lowered, tmp_path, capsys) -> None:
    out = tmp_path / "o.safetensors"
    missing = tmp_path / "nope.mlir"
    assert _refused(capsys, out, missing, "--inputs", lowered.inputs) == (
        f"{missing}: no such file (LOWERED.mlir)"
    )
    gone = tmp_path / "nope.safetensors"
    assert _refused(capsys, out, lowered.ir, "--inputs", gone) == (
        f"{gone}: no such file (--inputs)"
    )
    assert _refused(capsys, out, tmp_path, "--inputs", lowered.inputs).startswith(
        f"{tmp_path}: is a directory, LOWERED.mlir must be a file"
    )


def test_malformed_ir_is_located(lowered, tmp_path, capsys) -> None:
    ir, _ = _copy(lowered, tmp_path)
    lines = ir.read_text().splitlines()
    number = next(i for i, line in enumerate(lines) if "bsisa.launch @program[0]" in line)
    lines[number] = lines[number].replace("@program[0]", "@program[")
    ir.write_text("\n".join(lines) + "\n")
    message = _refused(capsys, tmp_path / "o.safetensors", ir, "--inputs", lowered.inputs)
    assert message.startswith(f"{ir}:{number + 1}:") and "Expected integer literal" in message
    binary = tmp_path / "binary.mlir"
    binary.write_bytes(b"\xff\xfe\x00module")
    assert _refused(capsys, tmp_path / "o.safetensors", binary, "--inputs", lowered.inputs) == (
        f"{binary}: not MLIR text (it is not UTF-8)"
    )


def test_torch_mlir_output_names_the_pipeline(lowered, tmp_path, capsys) -> None:
    message = _refused(capsys, tmp_path / "o.safetensors", lowered.raw, "--inputs", lowered.inputs)
    lines = lowered.raw.read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if "linalg.matmul" in line)
    column = lines[first].index("%") + 1
    assert message.startswith(
        f"{lowered.raw}:{first + 1}:{column}: @main is not a lowered module: it has no "
        "bsisa.launch op and 2 linear layer(s) among its linalg products (is it torch-mlir's "
        "output"
    )
    assert message.endswith(
        f"lower it first: bitmod-opt {lowered.raw} --pipeline=bitmod-default -o "
        f"{lowered.raw.with_name('tiny.lowered.mlir')}"
    )


def test_a_function_with_nothing_to_offload_runs_on_the_host(tmp_path, capsys) -> None:
    """No product at all: bitmod-opt's pipeline leaves the module as it is, and run-mlir runs
    it in torch (0 launches) instead of asking for the pipeline again."""
    from torch_mlir import fx

    class Elementwise(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(x) * 2.0 + 1.0

    x = torch.randn(3, 5, generator=torch.Generator().manual_seed(1))
    raw = tmp_path / "eltw.mlir"
    raw.write_text(str(fx.export_and_import(Elementwise(), x, output_type="linalg-on-tensors")))
    ir = tmp_path / "eltw.lowered.mlir"
    assert bitmod_opt([str(raw), "--pipeline=bitmod-default", "-o", str(ir)]) == 0
    inputs, out = tmp_path / "in.safetensors", tmp_path / "out.safetensors"
    save_file({"arg0": x}, str(inputs))
    status, stdout, _ = _cli(capsys, ir, "--inputs", inputs, "-o", out)
    assert status == 0
    assert f"@main of {ir} (0 launches, 0 accelerator runs)" in stdout
    assert "nothing to offload, every op ran on the host" in stdout
    assert torch.equal(load_file(str(out))["result0"], torch.relu(x) * 2.0 + 1.0)


def test_products_that_are_not_linear_layers_run_on_the_host(tmp_path, capsys) -> None:
    """A batched weight that differs per batch is no linear layer: the pipeline leaves it on
    the host, and run-mlir runs it there instead of asking for the pipeline again."""
    from tests.test_bitmod_opt import HOST_ONLY

    raw, ir = tmp_path / "bmm.mlir", tmp_path / "bmm.lowered.mlir"
    raw.write_text(HOST_ONLY.read_text())
    assert bitmod_opt([str(raw), "--pipeline=bitmod-default", "-o", str(ir)]) == 0
    x = torch.randn(2, 2, 4, generator=torch.Generator().manual_seed(3))
    inputs, out = tmp_path / "in.safetensors", tmp_path / "out.safetensors"
    save_file({"arg0": x}, str(inputs))
    status, stdout, _ = _cli(capsys, ir, "--inputs", inputs, "-o", out)
    assert status == 0 and "nothing to offload, every op ran on the host" in stdout
    weight = torch.arange(1.0, 9.0).reshape(2, 4, 1)
    torch.testing.assert_close(load_file(str(out))["result0"], torch.bmm(x, weight))


VARIANT = "bitmod-tile{tiles=4 act-buffer=32768 max-block-rows=16 dram-bytes-per-cycle=3.5}"


def test_the_machine_bitmod_tile_planned_for_runs_the_programs(lowered, tmp_path, capsys):
    """bitmod-tile records its machine (bitmod.machine); run-mlir runs the programs on it: the
    cycles and bits of that machine's emulator, which differ from the default machine's."""
    from bitmod.passes.context import MACHINE_ATTR
    from bitmod.runtime.arch.hwconfig import HardwareConfig
    from bitmod.runtime.emulator.machine import Machine

    ir = tmp_path / "variant.mlir"
    pipeline = f"convert-linalg-to-bitmod,bitmod-quantize,{VARIANT},bitmod-lower-to-isa"
    assert bitmod_opt([str(lowered.raw), "-p", pipeline, "-o", str(ir)]) == 0
    ctx, module = load_lowered(ir)
    cfg = HardwareConfig(
        tiles=4, act_buffer_bytes=32768, max_block_rows=16, dram_bytes_per_cycle=3.5
    )
    assert MACHINE_ATTR in module.attributes
    expected = run_function(ctx, module, [lowered.x, lowered.y], machine=Machine(cfg))
    default = _reference(lowered)
    cycles = sum(stats.cycles for stats in expected.stats.values())
    assert cycles != sum(stats.cycles for stats in default.stats.values())
    out = tmp_path / "out.safetensors"
    status, stdout, _ = _cli(capsys, ir, "--inputs", lowered.inputs, "-o", out, "--json")
    assert status == 0
    summary = json.loads(stdout)
    assert summary["launches"] == {name: s.to_json() for name, s in expected.stats.items()}
    assert summary["total"]["cycles"] == cycles
    results = load_file(str(out))
    for index, value in enumerate(expected.outputs):
        assert _bits(results[f"result{index}"]) == _bits(value)


def test_a_damaged_machine_attribute_is_located(lowered, tmp_path, capsys) -> None:
    ir, _ = _copy(lowered, tmp_path)
    text = ir.read_text()
    assert "tiles = 16 : i64" in text
    for edit, message in (
        (("tiles = 16 : i64", "tiles = 0 : i64"), "HardwareConfig.tiles must be a positive int"),
        (("tiles = 16 : i64, ", ""), "bitmod.machine lacks tiles"),
        (("tiles = 16 : i64", 'tiles = "x"'), 'bitmod.machine: tiles must be an integer, got "x"'),
        (
            ("tiles = 16 : i64", "tiles = 4.0 : f64"),
            "tiles must be an integer, got 4.000000e+00 : f64",
        ),
        (
            ("dram_bytes_per_cycle = 2.560000e+01 : f64", "dram_bytes_per_cycle = 0.0 : f64"),
            "HardwareConfig.dram_bytes_per_cycle must be a positive number",
        ),
        (  # it would have run at 1/65536, silently
            ("dram_bytes_per_cycle = 2.560000e+01 : f64", "dram_bytes_per_cycle = 1.0e-05 : f64"),
            "DRAM bandwidth 1e-05 bytes per cycle cannot be timed",
        ),
        (("tiles = 16 : i64", "tiles = true"), "tiles must be an integer, got true"),
        (
            ("max_block_rows = 128 : i64", "max_block_rows = 65536 : i64"),
            "the ISA cannot configure this machine: cfg.mblock: field rows=65536 out of range",
        ),
    ):
        ir.write_text(text.replace(*edit))
        out = tmp_path / "o.safetensors"
        message_seen = _refused(capsys, out, ir, "--inputs", lowered.inputs)
        assert message_seen.startswith(f"{ir}:1:1: ") and message in message_seen


def test_tiling_a_tiled_module_for_another_machine_warns(lowered, tmp_path, capsys) -> None:
    """Nothing is left to tile, so the pass changes nothing (idempotent), and says that the
    options it was given describe another machine than the module's."""
    status = bitmod_opt([str(lowered.ir), "-p", VARIANT, "-o", str(tmp_path / "again.mlir")])
    err = capsys.readouterr().err
    assert status == 0
    assert (
        "warning: 'builtin.module' op bitmod-tile: the module is tiled already, for another" in err
    )
    assert "tiles: 4 here, 16 recorded" in err and "these options change nothing" in err
    assert "tiles = 16 : i64" in (tmp_path / "again.mlir").read_text()


def test_the_lowering_hint_names_the_recorded_machine(lowered, tmp_path, capsys) -> None:
    """A quantized module carrying a record (its other programs' machine): run-mlir's hint
    tiles for that machine, and following it works."""
    from bitmod.passes.bitmod_tile import tile_options
    from bitmod.runtime.arch.hwconfig import HardwareConfig

    quantized = tmp_path / "q.mlir"
    frontend = "convert-linalg-to-bitmod,bitmod-quantize"
    assert bitmod_opt([str(lowered.raw), "-p", frontend, "-o", str(quantized)]) == 0
    variant = tmp_path / "variant.mlir"
    assert bitmod_opt([str(lowered.raw), "-p", f"{frontend},{VARIANT}", "-o", str(variant)]) == 0
    first = variant.read_text().splitlines()[0]
    machine = first[first.index("bitmod.machine") : first.index("}") + 1]
    text = quantized.read_text()
    quantized.write_text(text.replace("attributes {", "attributes {" + machine + ", ", 1))
    message = _refused(capsys, tmp_path / "o.safetensors", quantized, "--inputs", lowered.inputs)
    cfg = HardwareConfig(
        tiles=4, act_buffer_bytes=32768, max_block_rows=16, dram_bytes_per_cycle=3.5
    )
    pipeline = f"{tile_options(cfg)},bitmod-lower-to-isa"
    assert f"-p '{pipeline}'" in message
    assert bitmod_opt([str(quantized), "-p", pipeline, "-o", str(tmp_path / "l.mlir")]) == 0


def test_tiling_for_another_machine_than_the_modules_is_an_error(lowered, tmp_path, capsys):
    quantized = tmp_path / "q.mlir"
    frontend = "convert-linalg-to-bitmod,bitmod-quantize"
    assert bitmod_opt([str(lowered.raw), "-p", frontend, "-o", str(quantized)]) == 0
    tiled = lowered.ir.read_text().splitlines()[0]
    machine = tiled[tiled.index("bitmod.machine") : tiled.index("}") + 1]
    text = quantized.read_text()
    quantized.write_text(text.replace("attributes {", "attributes {" + machine + ", ", 1))
    status = bitmod_opt([str(quantized), "-p", VARIANT, "-o", str(tmp_path / "t.mlir")])
    err = capsys.readouterr().err
    assert status == 1 and not (tmp_path / "t.mlir").exists()
    assert "bitmod-tile: the module's other programs were tiled for another machine" in err
    assert bitmod_opt([str(quantized), "-p", "bitmod-tile", "-o", str(tmp_path / "t.mlir")]) == 0


class Embedder(nn.Module):
    """Token embedding, a 3x3 convolution over a padded image, a linear on both."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.conv = nn.Conv2d(3, 4, 3, padding=1, stride=2, dilation=1)
        self.fc = nn.Linear(16, 8)

    def forward(self, tokens: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        pooled = torch.relu(self.conv(image)).flatten(1)  # [B, 4 * 2 * 2]
        return self.fc(self.embed(tokens) + pooled[:, None, :])


def test_embedding_padding_and_convolution_run_on_the_host(tmp_path, capsys) -> None:
    """torch-mlir's embedding (a gather in a linalg.generic guarded by cf.assert), tensor.pad
    and linalg.conv_2d_nchw_fchw run on the host: the unlowered module gives torch's numbers,
    and the lowered one runs from the shell; a token out of range is the assertion's error."""
    from bitmod.compiler.ir_io import parse_module
    from bitmod.passes.context import make_context
    from torch_mlir import fx

    torch.manual_seed(0)
    model = Embedder().eval()
    tokens = torch.randint(0, 50, (2, 5))
    image = torch.randn(2, 3, 4, 4)
    raw = tmp_path / "embedder.mlir"
    raw.write_text(str(fx.export_and_import(model, tokens, image, output_type="linalg-on-tensors")))
    ctx = make_context()
    module = parse_module(ctx, raw.read_text(), str(raw))
    (host,) = run_function(ctx, module, [tokens, image]).outputs
    with torch.no_grad():
        torch.testing.assert_close(host, model(tokens, image), rtol=1e-5, atol=1e-5)

    ir = tmp_path / "embedder.lowered.mlir"
    assert bitmod_opt([str(raw), "--pipeline=bitmod-default", "-o", str(ir)]) == 0
    inputs, out = tmp_path / "in.safetensors", tmp_path / "out.safetensors"
    save_file({"arg0": tokens, "arg1": image}, str(inputs))
    status, stdout, _ = _cli(capsys, ir, "--inputs", inputs, "-o", out)
    assert status == 0 and "fc" in stdout
    reference = run_function(*load_lowered(ir), [tokens, image]).outputs[0]
    assert _bits(load_file(str(out))["result0"]) == _bits(reference)

    save_file({"arg0": tokens.index_fill(1, torch.tensor([3]), 50), "arg1": image}, str(inputs))
    message = _refused(capsys, tmp_path / "bad.safetensors", ir, "--inputs", inputs)
    line = next(n for n, text in enumerate(ir.read_text().splitlines(), 1) if "cf.assert" in text)
    assert message.startswith(f"{ir}:{line}:")
    assert message.endswith(
        "'cf.assert' op module runner: assertion failed: index must be smaller than dim size"
    )


@pytest.mark.parametrize(
    ("passes", "still"),
    [
        ("convert-linalg-to-bitmod", "-p bitmod-quantize,bitmod-tile,bitmod-lower-to-isa"),
        ("convert-linalg-to-bitmod,bitmod-quantize", "-p bitmod-tile,bitmod-lower-to-isa"),
        ("convert-linalg-to-bitmod,bitmod-quantize,bitmod-tile", "-p bitmod-lower-to-isa"),
    ],
)
def test_a_partial_pipeline_names_the_passes_left(lowered, tmp_path, capsys, passes, still):
    partial = tmp_path / "partial.mlir"
    assert bitmod_opt([str(lowered.raw), "-p", passes, "-o", str(partial)]) == 0
    capsys.readouterr()
    message = _refused(capsys, tmp_path / "o.safetensors", partial, "--inputs", lowered.inputs)
    assert message.startswith(f"{partial}:") and "@main is not a lowered module" in message
    assert message.endswith(f"bitmod-opt {partial} {still} -o {tmp_path / 'partial.lowered.mlir'}")


def test_corrupt_archive(lowered, tmp_path, capsys) -> None:
    ir, archive = _copy(lowered, tmp_path)
    archive.write_bytes(archive.read_bytes()[:100])
    message = _refused(capsys, tmp_path / "o.safetensors", ir, "--inputs", lowered.inputs)
    assert message.startswith(
        f"{ir}:1:1: 'builtin.module' op corrupt parameter archive {archive.resolve()}: "
    )


def test_an_archive_another_run_wrote_is_refused(lowered, tmp_path, capsys) -> None:
    other = tmp_path / "other.mlir"  # a valid archive, but not the one the IR pins
    assert bitmod_opt([str(lowered.raw), "-p", "convert-linalg-to-bitmod", "-o", str(other)]) == 0
    capsys.readouterr()
    archive = tmp_path / "other.params.safetensors"
    argv = (lowered.ir, "--params", archive, "--inputs", lowered.inputs)
    message = _refused(capsys, tmp_path / "o.safetensors", *argv)
    assert message.startswith(
        f"{lowered.ir}:1:1: 'builtin.module' op parameter archive {archive} is not the one this "
        "IR was written with (its SHA-256 is "
    )


def _inputs(tmp_path: Path, name: str = "bad", **tensors: torch.Tensor) -> Path:
    path = tmp_path / f"{name}-inputs.safetensors"
    save_file(tensors, str(path))
    return path


def test_inputs_that_do_not_match_the_function(lowered, tmp_path, capsys) -> None:
    out = tmp_path / "o.safetensors"
    x, y = lowered.x, lowered.y
    signature = "arg0: float32 [2, 8], arg1: float32 [2, 16]"
    cases = {
        "missing": (
            _inputs(tmp_path, "missing", arg0=x),
            "no tensor 'arg1' for argument 1 of @main (float32 [2, 16])",
        ),
        "extra": (
            _inputs(tmp_path, "extra", arg0=x, arg1=y, x=x.clone()),
            f"tensor 'x' is not an argument of @main (@main takes {signature}; inputs are named "
            "arg0, arg1, ... by position)",
        ),
        "shape": (
            _inputs(tmp_path, "shape", arg0=x, arg1=y[:, :8].contiguous()),
            "tensor 'arg1' is float32 [2, 8], argument 1 of @main takes float32 [2, 16]",
        ),
        "dtype": (
            _inputs(tmp_path, "dtype", arg0=x.half(), arg1=y),
            "tensor 'arg0' is float16 [2, 8], argument 0 of @main takes float32 [2, 8]",
        ),
    }
    for name, (path, expected) in cases.items():
        assert _refused(capsys, out, lowered.ir, "--inputs", path) == f"{path}: {expected}", name
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    assert _refused(capsys, out, lowered.ir, "--inputs", junk).startswith(
        f"{junk}: not a safetensors file ("
    )
    assert _refused(capsys, out, lowered.ir) == (
        f"{lowered.ir}: @main takes 2 arguments ({signature}): give --inputs FILE.safetensors "
        "with one tensor of each name"
    )


def test_output_naming_a_file_it_reads(lowered, tmp_path, capsys) -> None:
    ir, archive = _copy(lowered, tmp_path)
    inputs = Path(shutil.copy(lowered.inputs, tmp_path))
    before = {p: p.read_bytes() for p in (ir, archive, inputs)}
    targets = {inputs: "--inputs", ir: "LOWERED.mlir", archive: "the parameter archive"}
    for target, what in targets.items():
        status, stdout, err = _cli(capsys, ir, "--inputs", inputs, "-o", target)
        assert (status, stdout) == (1, "")
        assert err == (
            f"bitmod: error: -o {target}: is {what}, which the command reads; give another file\n"
        )
    assert {p: p.read_bytes() for p in before} == before


def test_unknown_function(lowered, tmp_path, capsys) -> None:
    message = _refused(
        capsys, tmp_path / "o.safetensors", lowered.ir, "--inputs", lowered.inputs, "--func", "fwd"
    )
    assert message == (
        f"{lowered.ir}: module runner: the module has no function @fwd (functions: @main)"
    )


def test_a_value_the_accelerator_cannot_take_is_located_at_its_launch(
    lowered, tmp_path, capsys
) -> None:
    big = _inputs(tmp_path, arg0=torch.full((2, 8), 1e6), arg1=lowered.y)
    message = _refused(capsys, tmp_path / "o.safetensors", lowered.ir, "--inputs", big)
    launch = next(
        i for i, line in enumerate(lowered.ir.read_text().splitlines(), 1) if "bsisa.launch" in line
    )
    assert message.startswith(f"{lowered.ir}:{launch}:5: 'bsisa.launch' op module runner: op ")
    assert "'fc1' input: value 1000000.0 at [0, 0] is not representable in FP16" in message


def test_debug_shows_the_traceback(lowered, tmp_path, capsys) -> None:
    status = main(["--debug", "run-mlir", str(lowered.raw), "--inputs", str(lowered.inputs)])
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" in err
    last = err.splitlines()[-1]
    assert last.startswith(f"bitmod: error: {lowered.raw}:") and "@main is not a lowered" in last


def test_the_console_command_exits_with_status_1(lowered, tmp_path) -> None:
    out = tmp_path / "o.safetensors"
    result = subprocess.run(
        [sys.executable, "-m", "bitmod.compiler.tools.bitmod_cli", "run-mlir", str(lowered.ir)]
        + ["--inputs", str(lowered.raw), "-o", str(out)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and result.stdout == "" and not out.exists()
    assert result.stderr.startswith(f"bitmod: error: {lowered.raw}: not a safetensors file (")
