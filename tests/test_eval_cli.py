"""``bitmod eval`` refuses bad options and output paths before it loads or evaluates anything
(found by fuzzing: ``--json X --csv X`` kept only the CSV, a negative ``--max-tokens`` sliced
from the end, ``--batch-size 0`` divided by zero, an output that was a directory failed after
the whole run and left the files written before it), and its table shows no delta, rather
than ``nan``, where FP32 was not evaluated."""

from __future__ import annotations

from pathlib import Path

import pytest
from bitmod.compiler.llm.evaluate import PerplexityResult, results_markdown
from bitmod.compiler.tools.bitmod_cli import main

EVAL = ["eval", "smollm2-135m", "--device", "cpu", "--dtype", "bitmod3", "--context", "16"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--json", "{same}", "--csv", "{same}"], "--json and --csv name the same file"),
        (["--max-tokens", "-1"], "--max-tokens must be >= 1, got -1"),
        (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        (["--stride", "0"], "--stride must be >= 1, got 0"),
        (["--context", "1"], "--context must be >= 2, got 1"),
        (["--json", ""], "--json '': the path is empty"),
        (["--markdown", "{dir}"], "Is a directory"),
        (["--csv", "{file}/sub.csv"], "Not a directory"),
        (["--context", "9000"], "--context 9000 is longer than smollm2-135m's 8192 positions"),
    ],
)
def test_bad_options_fail_before_the_evaluation(tmp_path: Path, capsys, options, message) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("")
    filled = [
        o.format(same=tmp_path / "out.txt", dir=tmp_path / "dir", file=tmp_path / "file")
        for o in options
    ]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main([*EVAL, *filled]) == 1
    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert line.startswith("bitmod: error: ") and message in line, line
    assert captured.out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def _result(dtype: str, perplexity: float) -> PerplexityResult:
    return PerplexityResult(
        model="m",
        corpus="wiki",
        config=dtype,
        dtype=dtype,
        group_size=128,
        scale_bits=8,
        fp16_activations=dtype != "fp32",
        perplexity=perplexity,
        nll=1.0,
        scored_tokens=10,
        tokens=10,
        windows=1,
        context=16,
        stride=16,
        bos_id=None,
        bits_per_weight=3.25,
        quantize_seconds=0.0,
        eval_seconds=0.0,
        device="cpu",
    )


def test_the_delta_column_without_an_fp32_run() -> None:
    alone = results_markdown([_result("bitmod3", 12.5)]).splitlines()[-1]
    assert alone.endswith("| 12.500 | - |") and "nan" not in alone
    both = results_markdown([_result("fp32", 10.0), _result("bitmod3", 12.5)]).splitlines()
    assert both[-1].endswith("| 12.500 | +2.500 |") and both[-2].endswith("| 10.000 |  |")


@pytest.mark.parametrize(("group", "warned"), [(6, True), (8, False)])
def test_a_group_the_accelerator_cannot_run_is_a_warning(capsys, group: int, warned: bool) -> None:
    # the warning comes before the option checks; --batch-size 0 then stops the run early
    assert main([*EVAL, "--group-size", str(group), "--batch-size", "0"]) == 1
    lines = capsys.readouterr().err.splitlines()
    expected = [
        f"warning: bitmod3 g{group} s8: group size {group} is not a multiple of 4 (the PE takes "
        "4 weights a cycle): fake quantization only, the accelerator cannot run it"
    ]
    assert lines[:-1] == (expected if warned else [])
    assert lines[-1] == "bitmod: error: --batch-size must be >= 1, got 0"


def test_only_bit_serial_formats_need_groups_of_whole_lanes() -> None:
    from bitmod.compiler.llm.fakequant import QuantConfig, accelerator_refusal

    assert accelerator_refusal(QuantConfig("int4", 10, None)) is not None
    assert accelerator_refusal(QuantConfig("int4", 12, None)) is None
    # formats the accelerator does not run at all, MX (its block is fixed) and FP32
    assert accelerator_refusal(QuantConfig("ant4", 10)) is None
    assert accelerator_refusal(QuantConfig("mxfp4", 10)) is None
    assert accelerator_refusal(QuantConfig("fp32", 10)) is None
