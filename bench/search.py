"""AWQ and per-layer mixed precision on a real LLM: perplexity vs bits/weight and vs EDP.

    nice python bench/search.py --model smollm2-135m           # ~1 h on 2 busy CPU cores
    python bench/search.py --model smollm2-135m --report        # tables/plots from the JSON

Steps (each result is appended to ``bench/results/search_<model>.json`` as it finishes; a
rerun skips what is there):

1. calibration statistics on ``--calib-samples`` x ``--calib-context`` tokens of the ``wiki``
   ``calib`` split (disjoint from the ``eval`` split);
2. perplexity on the first ``--eval-tokens`` tokens of the ``wiki`` ``eval`` split (disjoint
   ``--context``-token windows; the same tokens for every row) of FP32, of each uniform format
   (G = 128, INT8 scales) plain and after AWQ (:mod:`bitmod.compiler.search.awq`);
3. the greedy mixed-precision mix (:mod:`bitmod.compiler.search.mixed`) of ``--candidates``
   at the mean bits/weight of uniform bitmod3 and of bitmod4, and a TPE search on the proxy
   (``--tpe-trials``, greedy enqueued), evaluated on the same tokens;
4. the proxy validated against measured perplexity on ``--validate`` random mixes (held-out
   calibration tokens that the statistics did not see).

Cycles and energy (hence EDP) are the perf model's for the block linears (generative
workload: 256-token prefill, 255 decoding steps; per-layer formats) plus attention with INT8
K/V (:mod:`bitmod.compiler.search.costs`); formats without a BitMoD datapath (``*_asym``)
have no EDP. Writes ``search_<model>.md`` and ``search_<model>_pareto.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bitmod.compiler.llm.evaluate import evaluate, tokens_of
from bitmod.compiler.llm.fakequant import QuantConfig
from bitmod.compiler.llm.models import load_model
from bitmod.compiler.search.awq import AwqSettings, awq_optimize
from bitmod.compiler.search.calibration import calibration_windows, collect_statistics
from bitmod.compiler.search.costs import (
    LayerShape,
    attention_cost,
    layer_costs,
    parse_candidates,
)
from bitmod.compiler.search.mixed import (
    MeasuredPerplexity,
    build_problem,
    evaluate_mixes,
    greedy,
    parse_budget,
    spearman,
    tpe_search,
    validate_proxy,
)
from bitmod.runtime.perf.model import LLMShape

RESULTS = Path(__file__).parent / "results"
UNIFORM = ("int3_asym", "bitmod3", "int4_asym", "bitmod4")


def _shape(lm: Any) -> LLMShape:
    c = lm.model.config
    return LLMShape(
        lm.name,
        lm.name,
        lm.name,
        "gated",
        c.hidden_size,
        c.intermediate_size,
        c.num_attention_heads,
        c.num_key_value_heads,
        c.num_hidden_layers,
        c.vocab_size,
    )


def _hardware(layers: list[LayerShape], spelled: list[str], shape: LLMShape) -> dict[str, float]:
    """Cycles, energy, EDP of a per-layer choice (None when a format has no datapath)."""
    candidates = list(dict.fromkeys(spelled))
    parsed = parse_candidates(candidates)
    if not all(c.accelerated for c in parsed):
        return {}
    index = [candidates.index(s) for s in spelled]
    rows = np.arange(len(layers))
    cycles = layer_costs(layers, parsed, "cycles")[rows, index].sum()
    energy = layer_costs(layers, parsed, "energy")[rows, index].sum()
    attn_cycles, attn_energy = attention_cost(shape)
    cycles, energy = float(cycles + attn_cycles), float(energy + attn_energy)
    return {"cycles": cycles, "energy_pj": energy, "edp_js": energy * 1e-12 * cycles / 1e9}


def _bits(layers: list[LayerShape], spelled: list[str]) -> float:
    candidates = list(dict.fromkeys(spelled))
    table = layer_costs(layers, parse_candidates(candidates), "bits")
    index = [candidates.index(s) for s in spelled]
    return float(table[np.arange(len(layers)), index].sum() / sum(x.weights for x in layers))


def run(args: argparse.Namespace) -> None:
    path = args.out / f"search_{args.model}.json"
    data: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}

    def save() -> None:
        path.write_text(json.dumps(data, indent=1) + "\n")

    torch.set_num_threads(args.threads)
    lm = load_model(args.model)
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    device = "cpu" if device == "auto" else device
    lm.model.to(device)
    eval_ids = tokens_of(lm, "wiki")[: args.eval_tokens]
    calib = tokens_of(lm, "wiki", "calib")
    settings = {
        "eval_tokens": len(eval_ids),
        "context": args.context,
        "calib_tokens": args.calib_samples * args.calib_context,
        "awq": {"scale_grid": args.scale_grid, "clip_grid": args.clip_grid, "max_shrink": 0.5},
        "candidates": args.candidates,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads"
        + (f", {torch.cuda.get_device_name()}" if device == "cuda" else ""),
    }
    # A rerun adds rows to the same table: what makes rows comparable must not change (the
    # AWQ grids may: each AWQ row records its own).
    for key in ("eval_tokens", "context", "calib_tokens", "candidates"):
        if key in data.get("settings", {}) and data["settings"][key] != settings[key]:
            raise SystemExit(f"{path}: {key} was {data['settings'][key]}, now {settings[key]}")
    data["settings"] = {**settings, **data.get("settings", {})}
    started = time.perf_counter()
    windows = calibration_windows(lm, calib, args.calib_samples, args.calib_context)
    statistics = collect_statistics(lm, windows)
    data["settings"]["statistics_seconds"] = time.perf_counter() - started
    layers = [LayerShape(n, m.out_features, m.in_features) for n, m in lm.block_linears().items()]
    shape = _shape(lm)
    rows = data.setdefault("rows", {})

    def measure(key: str, config: QuantConfig, extra: dict[str, Any]) -> None:
        if key in rows:
            return
        t = time.perf_counter()
        (result,) = evaluate(lm, "wiki", [config], context=args.context, tokens=eval_ids)
        rows[key] = {**extra, "ppl": result.perplexity, "eval_seconds": time.perf_counter() - t}
        print(key, rows[key], flush=True)
        save()

    measure("fp32", QuantConfig(), {"kind": "fp32", "bits": 32.0})

    def uniform_extra(dtype: str) -> dict[str, Any]:
        spelled = [dtype] * len(layers)
        return {"kind": "uniform", "dtype": dtype, "bits": _bits(layers, spelled)} | _hardware(
            layers, spelled, shape
        )

    for dtype in UNIFORM:
        measure(dtype, QuantConfig(dtype), uniform_extra(dtype))
    candidates = parse_candidates(args.candidates)
    held_out = calib[args.calib_samples * args.calib_context :][: args.validate_tokens]
    held_out_context = min(args.context, len(held_out))

    def held_out_objective() -> MeasuredPerplexity:
        return MeasuredPerplexity(lm, held_out, held_out_context, args.threads, device)

    def mix_rows(
        suffix: str, sensitivity: MeasuredPerplexity | None, reference: str, problem: Any
    ) -> Any:
        """The searched mixes at the budget of uniform ``reference`` with one proxy; returns
        the problem (its proxy table serves the next budget), None when nothing was to do."""
        methods = ("greedy", "tpe") + (("tpe-ppl",) if args.ppl_trials and not suffix else ())
        if all(f"mix-{m}{suffix}@{reference}" in rows for m in methods) and (
            not args.validate or f"validation{suffix}@{reference}" in data
        ):
            return None  # measured in an earlier run
        budget = parse_budget(f"bits={reference}")
        t = time.perf_counter()
        if problem is None:
            problem = build_problem(lm, candidates, budget, statistics, sensitivity=sensitivity)
        else:  # the proxy table does not depend on the budget: only the limit moves
            (ref,) = parse_candidates(reference)
            limit = float(layer_costs(layers, [ref], "bits").sum())
            problem = dataclasses.replace(problem, budget=budget, limit=limit)
        setup = time.perf_counter() - t
        uniform_reference = [[c.spelled for c in candidates].index(reference)] * len(layers)
        mixes = {"greedy": greedy(problem)}
        searches = {}
        t = time.perf_counter()
        found = tpe_search(problem, trials=args.tpe_trials, seed=0, start=[mixes["greedy"]])
        mixes["tpe"] = found.choice
        searches["tpe"] = (time.perf_counter() - t, args.tpe_trials, "proxy" + suffix)
        if "tpe-ppl" in methods:
            # The measured objective on held-out calib tokens, never the evaluation tokens:
            # the uniform reference and the greedy mix are its first trials.
            t = time.perf_counter()
            found = tpe_search(
                problem,
                trials=args.ppl_trials,
                seed=0,
                objective=held_out_objective(),
                start=[uniform_reference, mixes["greedy"]],
            )
            mixes["tpe-ppl"] = found.choice
            searches["tpe-ppl"] = (time.perf_counter() - t, args.ppl_trials, "held-out ppl")
        for method, choice in mixes.items():
            key = f"mix-{method}{suffix}@{reference}"
            if key in rows:
                continue
            spelled = problem.spelled(choice)
            same = method != "greedy" and choice == mixes["greedy"]
            if same:  # the search kept the greedy mix it started from: same perplexity
                ppl, seconds = rows[f"mix-greedy{suffix}@{reference}"]["ppl"], 0.0
            else:
                objective = MeasuredPerplexity(lm, eval_ids, args.context, args.threads, device)
                t = time.perf_counter()
                (ppl,) = evaluate_mixes(problem, [choice], objective, _serial())
                seconds = time.perf_counter() - t
            counts = {c.spelled: spelled.count(c.spelled) for c in candidates}
            search_seconds, trials, objective_kind = searches.get(
                method, (0.0, 0, "proxy" + suffix)
            )
            rows[key] = {
                "kind": method + suffix,
                "budget": budget.spelled,
                "bits": _bits(layers, spelled),
                "proxy": problem.proxy(choice),
                "counts": counts,
                "layers": problem.layers_spec(choice),
                "setup_seconds": setup,
                "search_seconds": search_seconds,
                "tpe_trials": trials,
                "objective": objective_kind,
                "same_as_greedy": same,
                "same_as_uniform": choice == uniform_reference,
                "ppl": ppl,
                "eval_seconds": seconds,
                **_hardware(layers, spelled, shape),
            }
            print(key, {k: v for k, v in rows[key].items() if k != "layers"}, flush=True)
            save()
        if args.validate and f"validation{suffix}@{reference}" not in data:
            t = time.perf_counter()
            extra = [uniform_reference, *(mixes[m] for m in mixes)]
            validation = validate_proxy(
                problem, held_out_objective(), mixes=args.validate, seed=0, extra=extra
            )
            validation["seconds"] = time.perf_counter() - t
            validation["tokens"] = len(held_out)
            validation["labels"] = ["uniform", *mixes] + ["random"] * args.validate
            data[f"validation{suffix}@{reference}"] = validation
            print(f"validation{suffix}@{reference}", validation["spearman"], flush=True)
            save()
        return problem

    calibration = calib[: args.calib_samples * args.calib_context]
    proxies = {"": None}  # row-key suffix -> the sensitivity objective (None: output error)
    if args.sensitivity:  # measured on the calibration tokens, judged on the held-out ones
        proxies["-sens"] = MeasuredPerplexity(
            lm, calibration, min(args.context, len(calibration)), args.threads, device
        )
    for suffix, sensitivity in proxies.items():
        problem = None
        for reference in ("bitmod3", "bitmod4"):
            problem = mix_rows(suffix, sensitivity, reference, problem)

    settings = AwqSettings(args.scale_grid, args.clip_grid)
    for dtype in UNIFORM:
        if f"{dtype}+awq" in rows:
            continue
        config = QuantConfig(dtype)
        result = awq_optimize(lm, config, statistics, settings)
        extra = {**uniform_extra(dtype), "kind": "awq", "awq_seconds": result.seconds}
        extra["awq_grids"] = [args.scale_grid, args.clip_grid]
        with result.applied(lm):
            measure(f"{dtype}+awq", config, extra)


def _serial():  # noqa: ANN202
    from bitmod.compiler.search.engine import SerialEngine

    return SerialEngine()


LEVELS = {
    "3 bits": ("int3_asym", "int3_asym+awq", "bitmod3", "bitmod3+awq", "mix-greedy@bitmod3",
               "mix-tpe@bitmod3", "mix-tpe-ppl@bitmod3", "mix-greedy-sens@bitmod3",
               "mix-tpe-sens@bitmod3"),
    "4 bits": ("int4_asym", "int4_asym+awq", "bitmod4", "bitmod4+awq", "mix-greedy@bitmod4",
               "mix-tpe@bitmod4", "mix-tpe-ppl@bitmod4", "mix-greedy-sens@bitmod4",
               "mix-tpe-sens@bitmod4"),
}  # fmt: skip


def _pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both coordinates (lower is better), by x."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points):
        if not front or y < front[-1][1]:
            front.append((x, y))
    return front


def report(model: str, out: Path = RESULTS) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads((out / f"search_{model}.json").read_text())
    rows, s = data["rows"], data["settings"]
    fp32 = rows["fp32"]["ppl"]
    lines = [
        f"{model}: perplexity on the first {s['eval_tokens']} tokens of the bundled wiki eval "
        f"split ({s['context']}-token disjoint windows, the same tokens for every row); AWQ and "
        f"the proxy calibrated on {s['calib_tokens']} tokens of the disjoint calib split "
        f"(AWQ grids: {s['awq']['scale_grid']} scale exponents, {s['awq']['clip_grid']} clip "
        f"steps down to {1 - s['awq']['max_shrink']:.1f}); G = 128, INT8 group scales; mixes "
        f"from {s['candidates']}; FP32 {fp32:.3f} ({rows['fp32']['eval_seconds']:.0f} s). "
        f"Wall time on {s['machine']} shared with other jobs.",
        "",
        "| bits | configuration | bits/weight | PPL | Δ vs FP32 | EDP (J·s) | wall time | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    orderings = []
    for level, keys in LEVELS.items():
        present = [k for k in keys if k in rows]
        for key in present:
            row = rows[key]
            edp = f"{row['edp_js']:.4g}" if "edp_js" in row else "– (no datapath)"
            seconds = row.get("awq_seconds", 0) + row.get("search_seconds", 0)
            seconds += row.get("setup_seconds", 0) + row["eval_seconds"]
            if "counts" in row:
                notes = ", ".join(f"{k}×{v}" for k, v in row["counts"].items() if v)
                objective = row.get("objective", "proxy").replace("proxy-sens", "sensitivity-proxy")
                trials = f"TPE, {row['tpe_trials']} {objective} trials"
                if row.get("same_as_uniform"):
                    notes = f"uniform ({trials}, kept the uniform start)"
                elif row.get("same_as_greedy"):
                    notes += f" ({trials}, kept the greedy mix)"
                elif row.get("tpe_trials"):
                    notes += f" ({trials})"
            elif "awq_seconds" in row:
                scale, clip = row.get("awq_grids", (s["awq"]["scale_grid"], s["awq"]["clip_grid"]))
                notes = (
                    f"AWQ search {row['awq_seconds']:.0f} s ({scale} α × {clip // 2} clip points)"
                )
            else:
                notes = ""
            lines.append(
                f"| {level} | {key} | {row['bits']:.4f} | {row['ppl']:.3f} | "
                f"{row['ppl'] - fp32:+.3f} | {edp} | {seconds:.0f} s | {notes} |"
            )
        ranked = sorted(present, key=lambda k: rows[k]["ppl"])
        orderings.append(
            f"- {level}, measured: " + " < ".join(f"{k} ({rows[k]['ppl']:.2f})" for k in ranked)
        )
    lines += ["", "Orderings by perplexity (lower is better):", "", *orderings]
    validations = {k: v for k, v in data.items() if k.startswith("validation")}
    for key, v in validations.items():
        reference = key.split("@")[1]
        proxy = "sensitivity proxy" if key.startswith("validation-sens") else "output-error proxy"
        random_points = [
            p for p, label in zip(v["points"], v["labels"], strict=True) if label == "random"
        ]
        alone = spearman(
            [p["proxy"] for p in random_points], [p["perplexity"] for p in random_points]
        )
        lines += [
            "",
            f"Validation of the {proxy} at the {reference} budget: Spearman rank correlation "
            f"{v['spearman']:.3f} between the proxy and measured perplexity on {v['tokens']} "
            f"held-out calib tokens over {len(v['points'])} mixes (the uniform {reference}, the "
            f"searched mixes and {len(random_points)} random mixes repaired to the budget; "
            f"{alone:.3f} over the random ones alone; {v['seconds']:.0f} s).",
        ]
    text = "\n".join(lines) + "\n"
    (out / f"search_{model}.md").write_text(text)
    print(text)
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    styles = {
        "uniform": ("o", "tab:blue", "uniform"),
        "awq": ("s", "tab:orange", "uniform + AWQ"),
        "greedy": ("^", "tab:green", "searched mix (greedy)"),
        "tpe": ("v", "tab:red", "searched mix (TPE, proxy)"),
        "tpe-ppl": ("D", "tab:purple", "searched mix (TPE, held-out perplexity)"),
        "greedy-sens": ("<", "tab:olive", "searched mix (greedy, sensitivity proxy)"),
        "tpe-sens": (">", "tab:cyan", "searched mix (TPE, sensitivity proxy)"),
    }
    for ax, axis in ((axes[0], "bits"), (axes[1], "edp_js")):
        points = []
        for key, row in rows.items():
            if key == "fp32" or axis not in row:
                continue
            marker, colour, _ = styles[row["kind"]]
            points.append((row[axis], row["ppl"]))
            ax.scatter(row[axis], row["ppl"], marker=marker, color=colour, zorder=3)
            ax.annotate(key, (row[axis], row["ppl"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")  # fmt: skip
        front = _pareto(points)
        ax.step(*zip(*front, strict=True), where="post", color="grey", linewidth=0.8,
                label="Pareto front")  # fmt: skip
        ax.axhline(fp32, color="grey", linestyle=":", label=f"FP32 {fp32:.2f}")
        ax.set_ylabel(f"perplexity ({s['eval_tokens']} wiki eval tokens)")
        ax.set_yscale("log")
    axes[0].set_xlabel("mean bits/weight (block linears, scales and metadata included)")
    axes[1].set_xlabel("EDP, J·s (perf model, 256+256-token generation; int*_asym: no datapath)")
    for marker, colour, label in styles.values():
        axes[0].scatter([], [], marker=marker, color=colour, label=label)
    axes[0].legend(fontsize=8)
    figure.suptitle(f"{model}: uniform formats, AWQ variants, searched mixes")
    figure.tight_layout()
    figure.savefig(out / f"search_{model}_pareto.png", dpi=120)
    if validations:
        _plot_validation(model, validations, out)


def _plot_validation(model: str, validations: dict[str, dict[str, Any]], out: Path) -> None:
    """Measured held-out perplexity against the proxy, one panel per budget."""
    import matplotlib.pyplot as plt

    columns = min(2, len(validations))
    rows_count = -(-len(validations) // columns)
    figure, axes = plt.subplots(rows_count, columns, figsize=(6 * columns, 4.4 * rows_count))
    for ax, (key, v) in zip(np.atleast_1d(axes).ravel(), validations.items(), strict=True):
        reference = key.split("@")[1]
        proxy = "sensitivity" if key.startswith("validation-sens") else "output-error"
        for label, colour in (("random", "tab:grey"), ("uniform", "tab:blue")):
            chosen = [p for p, kind in zip(v["points"], v["labels"], strict=True) if kind == label]
            ax.scatter([p["proxy"] for p in chosen], [p["perplexity"] for p in chosen],
                       color=colour, label=label, zorder=3)  # fmt: skip
        for p, kind in zip(v["points"], v["labels"], strict=True):
            if kind not in ("random", "uniform"):
                ax.scatter(p["proxy"], p["perplexity"], marker="^", color="tab:red", zorder=4)
                ax.annotate(kind, (p["proxy"], p["perplexity"]), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")  # fmt: skip
        ax.set_title(
            f"{proxy} proxy, bits of uniform {reference} (Spearman {v['spearman']:.2f})",
            fontsize=9,
        )
        ax.set_xlabel(
            "proxy (sum of linear-output errors on calibration tokens)"
            if proxy == "output-error"
            else "proxy (sum of measured per-layer NLL increases, calibration tokens)"
        )
        ax.set_ylabel(f"perplexity ({v['tokens']} held-out calib tokens)")
        ax.legend(fontsize=8)
    figure.suptitle(f"{model}: does the proxy rank mixes as perplexity does?")
    figure.tight_layout()
    figure.savefig(out / f"search_{model}_proxy.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--eval-tokens", type=int, default=2048)
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--calib-samples", type=int, default=4)
    parser.add_argument("--calib-context", type=int, default=512)
    parser.add_argument("--scale-grid", type=int, default=10)
    parser.add_argument("--clip-grid", type=int, default=20)
    parser.add_argument("--candidates", default="bitmod3:256,bitmod3,bitmod3:64,bitmod4,int6,int8")
    parser.add_argument("--tpe-trials", type=int, default=200)
    parser.add_argument(
        "--ppl-trials",
        type=int,
        default=0,
        help="TPE trials on measured held-out perplexity per budget (0: none; a GPU job)",
    )
    parser.add_argument("--validate", type=int, default=6, help="random mixes per budget")
    parser.add_argument(
        "--sensitivity",
        action="store_true",
        help="also search and validate with the measured-sensitivity proxy (a GPU job)",
    )
    parser.add_argument("--validate-tokens", type=int, default=1024)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args()
    if not args.report:
        run(args)
    report(args.model, args.out)


if __name__ == "__main__":
    main()
