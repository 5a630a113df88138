"""bitmod-sim: outputs, option handling, one clear error and no partial files on bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bitmod.compiler.tools import bitmod_sim as sim_cli
from bitmod.runtime.arch.hwconfig import HardwareConfig
from bitmod.runtime.perf import report as perf_report
from bitmod.runtime.perf.model import accelerator, build_workload, load_llm_shapes, simulate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_cli(argv: list[str]) -> int:
    return sim_cli.run(["--no-progress", *argv])


def test_writes_tables_plots_and_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert run_cli(["--models", "phi-2,opt-1.3b", "--task", "both", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "discriminative: speedup over FP16" in text
    assert "generative: energy / FP16 energy" in text
    assert "geomean" in text and "lossy/ant" in text and "1.69x" in text
    names = {p.name for p in out.iterdir()}
    assert names == {
        "fig7_speedup.png",
        "fig8_energy.png",
        "fig9_pareto.png",
        "pareto.csv",
        "results.json",
        "speedup_table.md",
    }
    for png in ("fig7_speedup.png", "fig8_energy.png", "fig9_pareto.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC
    data = json.loads((out / "results.json").read_text())
    # The JSON holds the model's numbers: recompute one independently of the CLI.
    shape = load_llm_shapes()["phi-2"]
    direct = simulate(
        accelerator("bitmod-lossy", "phi-2", "generative"), build_workload(shape, "generative")
    )
    entry = data["results"]["generative"]["phi-2"]["bitmod-lossy"]
    assert entry["cycles"] == pytest.approx(direct.cycles)
    assert entry["weight"] == "bitmod3"
    assert data["results"]["discriminative"]["opt-1.3b"]["fp16"]["speedup_vs_fp16"] == 1.0
    assert data["config"]["pe_counts"]["fp16"] == 800
    # Pareto rows only for the paper's Fig. 9 models that were selected.
    assert {row["model"] for row in data["pareto"]} == {"phi-2"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging directory left


def test_overrides_change_the_model(capsys: pytest.CaptureFixture) -> None:
    argv = ["--models", "llama-2-7b", "--task", "generative"]
    assert run_cli([*argv, "--dram-gbps", "51.2", "--pe-count", "ant=1024"]) == 0
    fast = capsys.readouterr().out
    assert "ant 1024" in fast
    assert run_cli(argv) == 0
    slow = capsys.readouterr().out
    assert "ant 1200" in slow
    assert fast != slow


def test_output_tokens_shorten_generation(capsys: pytest.CaptureFixture) -> None:
    argv = ["--models", "opt-1.3b", "--task", "generative"]
    short = perf_report.run_sweep(["opt-1.3b"], ["generative"], output_tokens=21)
    full = perf_report.run_sweep(["opt-1.3b"], ["generative"])
    for acc, result in short["generative"]["opt-1.3b"].items():
        assert result.cycles < full["generative"]["opt-1.3b"][acc].cycles
    # Prefill is identical; decoding covers 20 instead of 255 steps.
    fp16_short = short["generative"]["opt-1.3b"]["fp16"]
    fp16_full = full["generative"]["opt-1.3b"]["fp16"]
    assert fp16_short.phase_cycles["prefill"] == fp16_full.phase_cycles["prefill"]
    assert run_cli([*argv, "--output-tokens", "1"]) == 0
    assert "generative: speedup over FP16" in capsys.readouterr().out


def test_config_overrides_reach_the_hardware_config() -> None:
    args = sim_cli.build_parser().parse_args(
        [
            "--tiles",
            "8",
            "--dram-gbps",
            "32",
            "--act-buffer-kb",
            "256",
            "--energy",
            "dram_pj_per_bit=10",
            "--energy",
            "pe.ant=0.5",
            "--pe-area",
            "olive=2000",
            "--row-groups",
            "2",
            "--max-block-rows",
            "128",
        ]
    )
    cfg, counts = sim_cli.build_config(args)
    assert cfg.tiles == 8 and cfg.act_buffer_bytes == 256 * 1024 and cfg.row_groups == 2
    assert cfg.max_block_rows == 128
    assert cfg.dram_bytes_per_cycle == pytest.approx(32.0)
    assert cfg.energy.dram_pj_per_bit == 10.0 and cfg.energy.pe("ant") == 0.5
    assert cfg.area.pe("olive") == 2000.0
    assert counts == {}
    assert cfg != HardwareConfig()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--models", "gpt-5"], "unknown model 'gpt-5'"),
        (["--models", ","], "no model given"),
        (["--task", "translation"], "invalid choice"),
        (["--dram-gbps", "-3"], "positive number of GB/s"),
        (["--dram-gbps", "fast"], "invalid float value"),
        (["--tiles", "0"], "HardwareConfig.tiles"),
        (["--row-groups", "3"], "HardwareConfig.row_groups: row groups must be a power of two"),
        (["--max-block-rows", "4"], "HardwareConfig.max_block_rows: 4 rows hold less than one"),
        (["--max-block-rows", "0"], "HardwareConfig.max_block_rows must be a positive int"),
        (["--pe-count", "ant=7"], "multiple of rows"),
        (["--pe-count", "tpu=64"], "unknown PE kind 'tpu'"),
        (["--pe-count", "ant"], "expects KEY=VALUE"),
        (["--pe-count", "ant=1024", "--pe-count", "ant=1032"], "--pe-count: 'ant' given twice"),
        (["--energy", "=3"], "--energy expects KEY=VALUE, got '=3'"),
        (["--weight", "ant"], "--weight expects ACC=FMT, got 'ant'"),
        (["--weight", "ant=4", "--weight", "ant=5"], "--weight: 'ant' given twice"),
        (["--energy", "flux=1"], "unknown constant 'flux'"),
        (["--energy", "dram_pj_per_bit=-1"], "dram_pj_per_bit"),
        (["--pe-area", "fp16=abc"], "not a valid float"),
        (["--act-buffer-kb", "0"], "HardwareConfig.act_buffer_bytes"),
        (["--output-tokens", "0"], "--output-tokens must be >= 1"),
        (["--input-tokens", "-5"], "--input-tokens must be >= 1"),
        (["--weight", "ant=12"], "2..8 bits"),
        (["--weight", "tpu=4"], "unknown accelerator 'tpu'"),
        (["--weight", "bitmod-lossy=mxfp4"], "no BitMoD bit-serial lowering"),
    ],
)
def test_bad_options_fail_with_one_error_and_no_files(
    tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str], message: str
) -> None:
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        run_cli([*argv, "--out", str(out)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("error:") == 1
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_out_that_is_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    target = tmp_path / "report"
    target.write_text("keep me")
    with pytest.raises(SystemExit) as info:
        run_cli(["--models", "phi-2", "--out", str(target)])
    assert info.value.code == 2
    assert "exists and is not a directory" in capsys.readouterr().err
    assert target.read_text() == "keep me"


def test_out_below_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "report"
    blocker.write_text("keep me")
    with pytest.raises(SystemExit) as info:
        run_cli(["--models", "phi-2", "--out", str(blocker / "sub")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"error: --out: {blocker} is not a directory" in err and "Traceback" not in err
    assert blocker.read_text() == "keep me" and [p.name for p in tmp_path.iterdir()] == ["report"]


def test_stdout_closed_or_gone(tmp_path: Path) -> None:
    import os

    argv = [sys.executable, "-m", "bitmod.compiler.tools.bitmod_sim", "--list-models"]
    closed = subprocess.run(
        ["sh", "-c", 'exec "$0" "$@" >&-', *argv], capture_output=True, text=True, check=False
    )
    assert (closed.returncode, closed.stderr) == (
        1,
        "bitmod-sim: error: standard output is closed\n",
    )
    read_end, write_end = os.pipe()
    os.close(read_end)
    gone = subprocess.run(argv, stdout=write_end, stderr=subprocess.PIPE, text=True, check=False)
    os.close(write_end)
    assert (gone.returncode, gone.stderr) == (1, "")


def test_corrupt_shapes_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    shapes = tmp_path / "shapes.json"
    shapes.write_text('{"models": {"tiny": {"hf_id": "x"}}}')
    with pytest.raises(SystemExit) as info:
        run_cli(["--shapes", str(shapes), "--out", str(tmp_path / "out")])
    assert info.value.code == 2
    assert "model 'tiny' lacks field" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_failure_while_rendering_leaves_no_partial_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(sim_cli, "plot_energy", broken)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="disk full"):
        run_cli(["--models", "phi-2", "--task", "discriminative", "--out", str(out)])
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_custom_shapes_file_and_list_models(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    shapes = tmp_path / "shapes.json"
    shapes.write_text(
        json.dumps(
            {
                "models": {
                    "tiny": {
                        "hf_id": "example/tiny",
                        "mlp": "gated",
                        "hidden_size": 256,
                        "intermediate_size": 512,
                        "num_attention_heads": 4,
                        "num_key_value_heads": 2,
                        "num_hidden_layers": 2,
                        "vocab_size": 1000,
                    }
                }
            }
        )
    )
    assert run_cli(["--shapes", str(shapes), "--list-models"]) == 0
    assert "example/tiny" in capsys.readouterr().out
    argv = ["--shapes", str(shapes), "--task", "discriminative"]
    with pytest.raises(SystemExit):  # no cited ANT / OliVe precision for a new model
        run_cli(argv)
    assert "no cited ant precision for model 'tiny'" in capsys.readouterr().err
    assert run_cli([*argv, "--weight", "ant=5", "--weight", "olive=4"]) == 0
    text = capsys.readouterr().out
    assert "tiny" in text


def test_summary_means_are_plain_means() -> None:
    sweep = perf_report.run_sweep(["opt-1.3b", "phi-2"], ["discriminative"])
    summary = perf_report.summarize(sweep)
    values = [
        sweep["discriminative"][m]["fp16"].cycles / sweep["discriminative"][m]["ant"].cycles
        for m in ("opt-1.3b", "phi-2")
    ]
    row = summary.comparisons()["lossy/ant"]
    ours = [
        sweep["discriminative"][m]["fp16"].cycles
        / sweep["discriminative"][m]["bitmod-lossy"].cycles
        for m in ("opt-1.3b", "phi-2")
    ]
    expected = [o / v for o, v in zip(ours, values, strict=True)]
    assert row["discriminative mean"] == pytest.approx(sum(expected) / 2)
    assert row["all geomean"] == pytest.approx((expected[0] * expected[1]) ** 0.5)


@pytest.mark.skipif(shutil.which("bitmod-sim") is None, reason="console script not installed")
def test_console_script_exit_status() -> None:
    result = subprocess.run(
        ["bitmod-sim", "--models", "nope"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "unknown model 'nope'" in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "bitmod.compiler.tools.bitmod_sim", "--list-models"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and "llama-2-7b" in result.stdout
