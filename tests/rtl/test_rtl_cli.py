"""The command lines: ``bitmod-opt --emit=verilog``, ``bitmod compile --emit-verilog`` and
``bitmod rtl-sim`` on the example MLP (one tile, Icarus), and their errors (one located line,
exit 1, no partial directory)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from bitmod.backends.rtl.sim import simulator_available
from bitmod.compiler.tools import bitmod_cli, bitmod_opt

MLP = Path(__file__).resolve().parents[2] / "examples" / "mlp"
PIPELINE = (
    "builtin.module(convert-linalg-to-bitmod,bitmod-quantize{dtype=bitmod3 group-size=64},"
    "bitmod-tile{tiles=1},bitmod-lower-to-isa)"
)

pytestmark = pytest.mark.skipif(
    not simulator_available("icarus"), reason="Icarus Verilog (iverilog) is not installed"
)


def test_bitmod_opt_emit_verilog_and_rtl_sim(tmp_path: Path, capsys) -> None:
    design = tmp_path / "mlp_rtl"
    argv = [str(MLP / "mlp.mlir"), f"--pass-pipeline={PIPELINE}", "--emit=verilog"]
    assert bitmod_opt.main([*argv, "-o", str(design)]) == 0, capsys.readouterr().err
    meta = json.loads((design / "design.json").read_text())
    assert meta["config"]["tiles"] == 1  # the machine of the pipeline's bitmod-tile
    for name in ("files.f", "program.hex", "dram.hex", "bitmod_tb.sv", "rtl/bsisa_pkg.sv"):
        assert (design / name).is_file(), name
    capsys.readouterr()
    assert bitmod_cli.main(["rtl-sim", str(design), "--simulator", "icarus"]) == 0
    out = capsys.readouterr().out
    assert "bit-identical outputs: yes" in out and "cycles equal: yes" in out

    # errors: one located line, exit 1, nothing written
    assert bitmod_opt.main(argv) == 1
    assert "--emit=verilog writes a directory: give -o DIR" in capsys.readouterr().err
    assert bitmod_opt.main([*argv, "-o", str(design)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{MLP / 'mlp.mlir'}:") and "already exists" in err
    assert len(err.splitlines()) == 1
    frontend = tmp_path / "frontend"
    assert bitmod_opt.main([str(MLP / "mlp.mlir"), "--pipeline=bitmod-frontend",
                            "--emit=verilog", "-o", str(frontend)]) == 1  # fmt: skip
    assert "holds no bsisa.program" in capsys.readouterr().err
    assert not frontend.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlp_rtl"]


def test_a_module_tiled_earlier_emits_the_machine_it_was_tiled_for(tmp_path: Path) -> None:
    """bitmod-tile records its machine in the module (bitmod.machine): lowering and emitting
    in a later run builds that machine, accumulator depth and DRAM bandwidth included (which
    the programs' cfg.array does not name)."""
    tiled = tmp_path / "tiled.mlir"
    front = PIPELINE.replace("bitmod-tile{tiles=1}", "bitmod-tile{tiles=1 max-block-rows=16}")
    front = front.replace(",bitmod-lower-to-isa", "")
    assert (
        bitmod_opt.main([str(MLP / "mlp.mlir"), f"--pass-pipeline={front}", "-o", str(tiled)]) == 0
    )
    design = tmp_path / "design"
    argv = [str(tiled), "-p", "bitmod-lower-to-isa", "--emit=verilog", "-o", str(design)]
    assert bitmod_opt.main(argv) == 0
    config = json.loads((design / "design.json").read_text())["config"]
    assert (config["tiles"], config["max_block_rows"]) == (1, 16)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (  # a record the program's cfg.array is not for
            ("tiles = 1 : i64", "tiles = 2 : i64"),
            "the machine cannot run this program: instruction 0 (cfg.array): program compiled "
            "for rows=8 cols=8 tiles=1, the machine has rows=8 cols=8 tiles=2",
        ),
        (
            ("act_buffer_bytes = 524288 : i64", "act_buffer_bytes = 8 : i64"),
            "overflows the activation buffer (8 bytes)",
        ),
        (
            ("act_buffer_bytes = 524288 : i64", "act_buffer_bytes = 1099511627776 : i64"),
            "the RTL holds ACT_BUFFER_BYTES in a 32-bit int: 1099511627776 does not fit",
        ),
    ],
)
def test_emitting_for_a_machine_that_cannot_run_the_program(tmp_path: Path, capsys, edit, message):
    """--emit=verilog builds the recorded machine only if it runs the program (the emulator's
    timing-only run checks) and the RTL can hold its parameters; else one located error."""
    tiled = tmp_path / "tiled.mlir"
    front = PIPELINE.replace(",bitmod-lower-to-isa", "")
    assert (
        bitmod_opt.main([str(MLP / "mlp.mlir"), f"--pass-pipeline={front}", "-o", str(tiled)]) == 0
    )
    text = tiled.read_text()
    assert edit[0] in text
    tiled.write_text(text.replace(*edit, 1))
    capsys.readouterr()
    design = tmp_path / "design"
    argv = [str(tiled), "-p", "bitmod-lower-to-isa", "--emit=verilog", "-o", str(design)]
    assert bitmod_opt.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{tiled}:1:1: error: ") and message in err, err
    assert not design.exists()


def test_bad_tile_options_are_an_error_at_the_option(tmp_path: Path, capsys) -> None:
    """An act-buffer that does not split into the buffer's banks, or a bandwidth the timing
    model cannot hold: an error at the pipeline option, before any pass runs (it was an
    internal compiler error in --emit=verilog, or accepted and run at another bandwidth)."""
    for option, message in (
        ("act-buffer=100", "act_buffer_bytes (100) must split evenly into act_buffer_banks"),
        ("dram-bytes-per-cycle=1e-5", "DRAM bandwidth 1e-05 bytes per cycle cannot be timed"),
    ):
        pipeline = PIPELINE.replace("bitmod-tile{tiles=1}", f"bitmod-tile{{tiles=1 {option}}}")
        argv = [str(MLP / "mlp.mlir"), f"--pass-pipeline={pipeline}", "--emit=verilog"]
        assert bitmod_opt.main([*argv, "-o", str(tmp_path / "d")]) == 1
        err = capsys.readouterr().err
        assert (
            "internal" not in err and message in err and "the machine these options describe" in err
        )
        assert not (tmp_path / "d").exists()


def test_bitmod_compile_emit_verilog(tmp_path: Path, capsys) -> None:
    bundle, designs = tmp_path / "mlp", tmp_path / "mlp_ops"
    argv = [
        "compile",
        f"{MLP / 'make_mlp.py'}:MLP",
        "--example-shape",
        "4x64",
        "--tiles",
        "1",
        "--quiet",
        "-o",
        str(bundle),
        "--emit-verilog",
        str(designs),
    ]
    assert bitmod_cli.main(argv) == 0, capsys.readouterr().err
    assert sorted(p.name for p in designs.iterdir()) == ["op0", "op1", "op2"]
    capsys.readouterr()
    assert bitmod_cli.main(["rtl-sim", str(designs), "--simulator", "icarus"]) == 0
    out = capsys.readouterr().out
    assert out.count("bit-identical outputs: yes") == 3 and out.count("cycles equal: yes") == 3

    # an existing design directory: refused before anything is compiled or written
    other = tmp_path / "other"
    argv[argv.index(str(bundle))] = str(other)
    assert bitmod_cli.main(argv) == 1
    assert "already exists" in capsys.readouterr().err
    assert not other.exists()
    assert bitmod_cli.main(["rtl-sim", str(tmp_path / "nothing")]) == 1
    assert "no emitted design" in capsys.readouterr().err


def _edited(design: Path, tmp_path: Path, edit) -> Path:  # noqa: ANN001
    copy = tmp_path / "edited"
    shutil.copytree(design, copy)
    edit(copy)
    return copy


def _json_edit(change):  # noqa: ANN001, ANN202
    def edit(copy: Path) -> None:
        meta = json.loads((copy / "design.json").read_text())
        change(meta)
        (copy / "design.json").write_text(json.dumps(meta))

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: (d / "design.json").write_text("[]"), "expected a JSON object"),
        (lambda d: (d / "design.json").write_text("{"), "design.json: not valid JSON"),
        (_json_edit(lambda m: m.pop("outputs")), "no 'outputs' object"),
        (_json_edit(lambda m: m.update(outputs={})), "no outputs"),
        (_json_edit(lambda m: m["config"].update(bogus=1)), "'config' is not a machine"),
        (
            _json_edit(lambda m: next(iter(m["outputs"].values())).__setitem__(2, [3, 3])),
            "is not [address, bytes, shape] of FP16 data",
        ),
        (lambda d: (d / "files.f").write_text("nonexist.sv\n"), "icarus build failed: "),
    ],
)
def test_rtl_sim_on_a_damaged_design(tmp_path: Path, capsys, edit, message) -> None:
    """Found by fuzzing: each was an internal error (KeyError, TypeError, a bare
    AssertionError, an uncaught CosimError)."""
    design = tmp_path / "design"
    argv = [str(MLP / "mlp.mlir"), f"--pass-pipeline={PIPELINE}", "--emit=verilog"]
    assert bitmod_opt.main([*argv, "-o", str(design)]) == 0
    broken = _edited(design, tmp_path, edit)
    capsys.readouterr()
    assert bitmod_cli.main(["rtl-sim", str(broken), "--simulator", "icarus"]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("bitmod: error: ") and message in last, last
    assert "internal error" not in last
