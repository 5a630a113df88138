"""Per-layer mixed precision: budgets and candidates (one clear error each), the greedy
baseline and TPE within the budget, the layers= spec the compiler accepts, and the same
choice on Ray (a local Ray of 2 CPUs) as serially for the same seed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("transformers", reason="the llm extra is not installed")
optuna = pytest.importorskip("optuna", reason="the search extra is not installed")

from bitmod.compiler.search.calibration import (  # noqa: E402
    calibration_windows,
    collect_statistics,
)
from bitmod.compiler.search.costs import (  # noqa: E402
    Candidate,
    LayerShape,
    layer_costs,
    parse_candidates,
)
from bitmod.compiler.search.engine import SerialEngine, make_engine  # noqa: E402
from bitmod.compiler.search.mixed import (  # noqa: E402
    Budget,
    MeasuredPerplexity,
    Problem,
    build_problem,
    greedy,
    parse_budget,
    repair,
    spearman,
    tpe_search,
)
from bitmod.passes.bitmod_quantize import parse_layer_overrides  # noqa: E402

from tests.test_search_awq import tiny_llama  # noqa: E402

CANDIDATES = "bitmod3:64,bitmod3,bitmod4,int8"


@pytest.fixture(scope="module")
def tiny():  # noqa: ANN201
    lm = tiny_llama(kv_heads=2)
    tokens = torch.randint(3, 64, (384,), generator=torch.Generator().manual_seed(5)).tolist()
    statistics = collect_statistics(lm, calibration_windows(lm, tokens, 4, 64))
    return lm, statistics, tokens[256:]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bits", "expected KIND=VALUE"),
        ("bits=", "expected KIND=VALUE"),
        ("watts=3", "unknown kind 'watts'"),
        ("bits=-1", "positive finite number"),
        ("bits=nan", "positive finite number"),
        ("bits=inf", "positive finite number"),
        ("cycles=bitmod9", "neither a number nor a format"),
    ],
)
def test_bad_budgets_are_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        parse_budget(text)
    assert repr(text) in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bitmod3,int9", "unknown format 'int9'; known formats: int3"),
        ("bitmod3:x", "group size must be a positive integer"),
        ("bitmod3:0", "group size must be a positive integer"),
        ("bitmod3,bitmod3", "given twice"),
        ("bitmod3:128,bitmod3", "candidate 'bitmod3' is given twice"),  # the same group size
        ("mxfp4:64", "MX block size 32"),
        ("bitmod3:7", "candidate 'bitmod3:7': group size must be a multiple of 4 for bitmod3"),
        ("bitmod3:\u00b2", "candidate 'bitmod3:\u00b2': group size must be a positive integer"),
        ("int8,bitmod3:", "candidate 'bitmod3:': no group size after ':'"),
        ("int8,int6:130", "candidate 'int6:130': group size must be a multiple of 4"),
        (" , ", "no candidate"),
    ],
)
def test_bad_candidates_are_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_candidates(text)


def test_a_group_size_only_the_host_runs_is_a_candidate_of_a_host_format() -> None:
    """ANT's formats have no bit-serial datapath: any group size is theirs to study."""
    assert parse_candidates("ant4:7,bitmod3:64") == [Candidate("ant4", 7), Candidate("bitmod3", 64)]
    with pytest.raises(ValueError, match="'cycles=bitmod4:6'.*multiple of 4"):
        parse_budget("cycles=bitmod4:6")


def test_budgets_parse_to_numbers_or_uniform_references() -> None:
    assert parse_budget("bits=3.25") == Budget("bits", value=3.25)
    assert parse_budget("cycles=bitmod4:64") == Budget("cycles", reference=Candidate("bitmod4", 64))
    assert parse_budget("energy=2.5e11").spelled == "energy=2.5e+11"


def test_bits_are_the_quantizers_count_and_cycles_grow_with_terms() -> None:
    layers = [LayerShape("a", 64, 576)]
    bits = layer_costs(layers, parse_candidates("bitmod3,int8,bitmod3:64"), "bits")[0] / 64 / 576
    # bitmod3: 3 bits + per group (8-bit scale + 2-bit SV index) over 5 groups (one ragged,
    # 576 = 4·128 + 64) + a 16-bit channel scale per row; G = 64: 9 groups.
    assert bits == pytest.approx(
        [3 + (10 * 5 + 16) / 576, 8 + (8 * 5 + 16) / 576, 3 + (10 * 9 + 16) / 576]
    )
    cycles = layer_costs(layers, parse_candidates("int4,bitmod3,int8"), "cycles")[0]
    assert cycles[0] < cycles[2] and cycles[1] < cycles[2]


def test_a_format_without_a_datapath_has_no_cycles(tiny) -> None:  # noqa: ANN001
    lm, statistics, _ = tiny
    with pytest.raises(ValueError, match="'int3_asym' has no BitMoD datapath, so no cycles"):
        build_problem(
            lm, parse_candidates("int3_asym,int8"), parse_budget("cycles=int8"), statistics
        )


def test_a_budget_below_the_cheapest_mix_is_an_error(tiny) -> None:  # noqa: ANN001
    lm, statistics, _ = tiny
    with pytest.raises(
        ValueError, match=r"budget bits=3 \(3.0000 bits/weight\) is below the cheapest mix"
    ):
        build_problem(lm, parse_candidates(CANDIDATES), parse_budget("bits=3"), statistics)


def _hand_problem(limit: float) -> Problem:
    """3 layers x 3 candidates whose best mixes are found by hand: costs 1/2/4, errors below."""
    cost = np.array([[1.0, 2.0, 4.0]] * 3)
    error = np.array([[10.0, 4.0, 3.0], [5.0, 4.5, 4.4], [8.0, 1.5, 1.0]])
    layers = [LayerShape(f"l{i}", 1, 1) for i in range(3)]
    return Problem(
        layers, parse_candidates("int4,int6,int8"), Budget("bits", limit), cost, error, limit
    )


@pytest.mark.parametrize(
    ("limit", "expected", "optimal"),
    [
        (3, [0, 0, 0], True),
        (4, [0, 0, 1], True),
        (5, [1, 0, 1], True),
        (6, [1, 1, 1], True),
        # at 7 two steps save 0.5 per unit; the first layer's wins and happens to be best
        (7, [2, 0, 1], True),
        (12, [2, 2, 2], True),
    ],
)
def test_greedy_takes_the_steps_that_save_most_per_unit_of_cost(
    limit: float, expected: list[int], optimal: bool
) -> None:
    problem = _hand_problem(limit)
    choice = greedy(problem)
    assert choice == expected
    assert problem.fits(choice)
    grid = np.array(np.meshgrid(*[range(3)] * 3, indexing="ij")).reshape(3, -1).T
    best = min(problem.proxy(c) for c in grid if problem.fits(c))
    assert (problem.proxy(choice) == pytest.approx(best)) is optimal


def test_repair_downgrades_the_cheapest_error_first() -> None:
    problem = _hand_problem(5)
    assert repair(problem, [2, 2, 2]) == [1, 0, 1]  # drops 2->1 on l1 (0.05/2), ...
    assert repair(problem, [0, 1, 0]) == [0, 1, 0]  # fits: unchanged


def test_greedy_and_tpe_respect_real_budgets(tiny) -> None:  # noqa: ANN001
    lm, statistics, _ = tiny
    candidates = parse_candidates(CANDIDATES)
    previous = math.inf
    for budget in ("bits=bitmod3", "bits=3.6", "bits=bitmod4", "cycles=bitmod4", "energy=bitmod4"):
        problem = build_problem(
            lm,
            candidates if budget.startswith("bits") else candidates,
            parse_budget(budget),
            statistics,
        )
        choice = greedy(problem)
        assert problem.fits(choice)
        if budget.startswith("bits"):
            assert problem.proxy(choice) <= previous  # more bits never hurt the greedy
            previous = problem.proxy(choice)
        found = tpe_search(problem, trials=12, seed=1, start=[choice], grouping="kind")
        assert all(entry["cost"] <= problem.limit * (1 + 1e-12) for entry in found.history)
        assert found.objective <= problem.proxy(choice)  # greedy was trial 0
        assert problem.fits(found.choice)


def test_the_spec_is_what_bitmod_quantize_and_compile_take(tiny) -> None:  # noqa: ANN001
    lm, statistics, _ = tiny
    problem = build_problem(lm, parse_candidates(CANDIDATES), parse_budget("bits=3.5"), statistics)
    choice = greedy(problem)
    overrides = parse_layer_overrides(problem.layers_spec(choice))
    assert list(overrides) == list(lm.block_linears())
    assert [f"{d}:{g}" if g else d for d, g in overrides.values()] == problem.spelled(choice)
    plain = parse_candidates("bitmod3,bitmod4,int8")
    plain_problem = build_problem(lm, plain, parse_budget("bits=4.5"), statistics)
    mapping = plain_problem.layers_mapping(greedy(plain_problem))
    assert set(mapping.values()) <= {"bitmod3", "bitmod4", "int8"} and len(mapping) == 14


def test_spearman_is_rank_correlation() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)


def test_ray_and_serial_make_the_same_choice_for_the_same_seed(tiny) -> None:  # noqa: ANN001
    pytest.importorskip("ray", reason="the search extra is not installed")
    lm, statistics, held_out = tiny
    candidates = parse_candidates(CANDIDATES)
    budget = parse_budget("bits=3.6")
    objective = MeasuredPerplexity(lm, held_out, context=64)
    runs = {}
    for name in ("serial", "ray"):
        engine = make_engine(name, num_cpus=2) if name == "ray" else SerialEngine()
        problem = build_problem(lm, candidates, budget, statistics, engine=engine)
        start = greedy(problem)
        found = tpe_search(
            problem,
            trials=6,
            seed=3,
            objective=objective,
            engine=engine,
            batch_size=2,
            grouping="kind",
            start=[start],
        )
        runs[name] = (problem.error, start, found)
        if name == "ray":
            engine.shutdown()
    (error_s, start_s, serial), (error_r, start_r, ray) = runs["serial"], runs["ray"]
    assert np.array_equal(error_s, error_r)
    assert start_s == start_r
    assert ray.engine == "ray" and serial.engine == "serial"
    assert ray.choice == serial.choice
    assert [h["objective"] for h in ray.history] == [h["objective"] for h in serial.history]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search", "smollm2-135m", "--budget", "watts=3"], "budget 'watts=3': unknown kind"),
        (["search", "smollm2-135m", "--budget", "bits=3", "--candidates", "bitmod3,int9"], "int9"),
        (["search", "smollm2-135m", "--budget", "bits=3", "--trials", "0"], "--trials"),
        (["optimize", "smollm2-135m", "--dtype", "bitmod9"], "--dtype"),
        (["optimize", "smollm2-135m", "--calib-samples", "0"], "--calib-samples must be >= 1"),
        # Found by fuzzing: each ran (a NaN Spearman, a thread storm, a Ray hang) or crashed.
        (["search", "smollm2-135m", "--budget", "bits=3", "--validate", "1"], "--validate must"),
        (["search", "smollm2-135m", "--budget", "bits=3", "--validate", "-1"], "--validate must"),
        (
            ["search", "smollm2-135m", "--budget", "bits=3", "--objective", "perplexity"]
            + ["--search-tokens", "1"],
            "--search-tokens must be >= 2",
        ),
        (["optimize", "smollm2-135m", "--gpus-per-trial", "nan"], "--gpus-per-trial must be"),
        (["optimize", "smollm2-135m", "--threads", "100000"], "--threads 100000: a trial cannot"),
        (
            ["optimize", "smollm2-135m", "--engine", "ray", "--num-cpus", "1", "--threads", "2"],
            "than the 1 CPUs the local Ray is given",
        ),
        (["optimize", "smollm2-135m", "--calib-context", "9000"], "longer than smollm2-135m's"),
    ],
)
def test_bad_command_lines_are_one_error_line_and_write_nothing(
    argv: list[str],
    message: str,
    tmp_path,  # noqa: ANN001
    capsys,  # noqa: ANN001
) -> None:
    from bitmod.compiler.tools.bitmod_cli import main

    out = tmp_path / "out"
    assert main([*argv, "-o", str(out)]) == 1
    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert line.startswith("bitmod: error: ") and message in line
    assert captured.out == ""
    assert not out.exists()


def test_optimize_warns_of_a_group_the_accelerator_cannot_run(tmp_path, capsys) -> None:  # noqa: ANN001
    from bitmod.compiler.tools.bitmod_cli import main

    # the warning comes before the settings are checked; --scale-grid 0 then stops the run
    argv = ["optimize", "smollm2-135m", "--group-size", "6", "--scale-grid", "0"]
    assert main([*argv, "-o", str(tmp_path / "out")]) == 1
    warning, error = capsys.readouterr().err.splitlines()
    assert warning.startswith("warning: bitmod3 g6 s8: group size 6 is not a multiple of 4")
    assert error.startswith("bitmod: error: AWQ grids need at least one point")


def test_sensitivity_proxy_is_the_measured_loss_increase_of_each_layer(tiny) -> None:  # noqa: ANN001
    """e[l, c] is recomputed independently: quantize one layer by hand (the quantizer's
    dequantized weights), measure the mean NLL with the evaluation's perplexity function."""
    from bitmod.compiler.llm.evaluate import perplexity
    from bitmod.compiler.llm.fakequant import QuantConfig, fake_quantized
    from bitmod.compiler.search.awq import quantized_weight

    lm, statistics, held_out = tiny
    candidates = parse_candidates("bitmod3:32,int8")
    objective = MeasuredPerplexity(lm, held_out, context=64)
    problem = build_problem(
        lm, candidates, parse_budget("bits=bitmod3:32"), statistics, sensitivity=objective
    )
    linears = lm.block_linears()

    def mean_nll() -> float:
        with fake_quantized(lm, None, fp16_activations=True):
            return math.log(perplexity(lm, held_out, context=64)[0])

    reference = mean_nll()
    for layer in (0, len(linears) - 1):
        name = list(linears)[layer]
        module = linears[name]
        original = module.weight.data
        for column, candidate in enumerate(candidates):
            config = QuantConfig(candidate.dtype, candidate.group or 128)
            module.weight.data = quantized_weight(original, config)
            try:
                expected = max(0.0, mean_nll() - reference)
            finally:
                module.weight.data = original
            assert problem.error[layer, column] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert (problem.error >= 0).all()
    # 3-bit weights hurt more than INT8 on the whole model
    assert problem.error[:, 0].sum() > problem.error[:, 1].sum()
    choice = greedy(problem)
    assert problem.fits(choice)


def test_an_output_directory_under_a_file_is_refused_before_the_work(tmp_path, capsys) -> None:  # noqa: ANN001
    from bitmod.compiler.tools.bitmod_cli import main

    blocker = tmp_path / "file"
    blocker.write_text("")
    argv = ["optimize", "smollm2-135m", "-o", str(blocker / "sub")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"--out '{blocker / 'sub'}': {blocker}: Not a directory" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
