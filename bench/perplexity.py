"""Perplexity per weight data type on real LLMs: the BitMoD paper's Tables VI, VIII and V.

    nice python bench/perplexity.py --model smollm2-135m      # hours on 2 CPU cores
    nice python bench/perplexity.py --model gemma3-270m
    python bench/perplexity.py --model smollm2-135m --report  # tables/plot from the JSON only

Every configuration of :data:`~bitmod.compiler.llm.evaluate.PAPER_TABLE` (FP32; ANT, OliVe,
MX-FP, INT-sym, INT-asym, BitMoD at 4 and 3 bits; G = 128, MX block 32; INT8 and FP16 group
scales), :data:`~bitmod.compiler.llm.evaluate.ABLATION` (Table VIII),
:data:`~bitmod.compiler.llm.evaluate.SCALE_SWEEP` (Table V), FP32 weights with FP16
activations and INT5/6/8 (for the Fig. 9 plot of ``bench/perplexity_pareto.py``), on the
bundled Wikipedia and news evaluation text: ``--max-tokens`` tokens of each (default 8192),
disjoint 2048-token windows (``--context``), BOS as the model's GGUF asks.
Weights are fake-quantized from the compiler's stored codes (``bitmod.compiler.llm.fakequant``).

Results are appended to ``bench/results/perplexity_<model>.json`` as each run finishes (a
rerun skips what is there, so an interrupted run resumes); at the end ``.md`` (tables with the
paper's Llama-2-7B rows for direction), ``.csv`` and ``.png`` (bar plot) are written next to it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from bitmod.compiler.llm.evaluate import (
    ABLATION,
    PAPER_TABLE,
    SCALE_SWEEP,
    PerplexityResult,
    evaluate,
    results_csv,
    results_markdown,
    tokens_of,
)
from bitmod.compiler.llm.fakequant import QuantConfig
from bitmod.compiler.llm.models import load_model
from bitmod.runtime.storage.fileio import write_atomically

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

#: The BitMoD paper's Llama-2-7B perplexities (Wikitext-2, C4), for direction only.
PAPER_LLAMA2_7B_TABLE_VI = {
    "fp32": (5.47, 6.97),  # the paper's FP16 baseline
    "ant4": (6.09, 7.71),
    "olive4": (5.91, 7.34),
    "mxfp4": (5.82, 7.39),
    "int4_asym": (5.77, 7.31),
    "bitmod4": (5.72, 7.26),
    "ant3": (8.51, 10.28),
    "olive3": (9.13, 12.04),
    "mxfp3": (8.86, 11.99),
    "int3_asym": (7.08, 9.29),
    "bitmod3": (6.55, 8.36),
}
PAPER_LLAMA2_7B_TABLE_VIII = {
    "fp4": (5.77, 7.32),
    "fp4_er": (5.74, 7.28),
    "fp4_ea": (5.81, 7.30),
    "bitmod4": (5.72, 7.26),
    "fp3": (7.51, 10.28),
    "fp3_er": (7.18, 9.71),
    "fp3_ea": (6.61, 8.45),
    "bitmod3": (6.55, 8.36),
}
#: Table V (INT4-asym, by group-scale precision).
PAPER_LLAMA2_7B_TABLE_V = {
    "FP16": (5.77, 7.31),
    "INT8": (5.77, 7.31),
    "INT6": (5.77, 7.31),
    "INT4": (5.77, 7.36),
    "INT2": (8.41, 10.63),
}

CAVEAT = (
    "**Caveat.** These weights were already quantized by their publishers (GGUF Q4_1 for "
    "SmolLM2; Q4_K/Q5_0/Q6_K/Q8_0 for Gemma 3): the reference is the GGUF dequantized to "
    "FP32, so re-quantizing at 4 bits understates the loss a true FP16 model would show. The "
    "3-bit results are the meaningful ones."
)


#: The INT5/6/8 points of the perplexity-EDP plot (bench/perplexity_pareto.py, Fig. 9).
PARETO_EXTRA = (QuantConfig("int5"), QuantConfig("int6"), QuantConfig("int8"))


def all_configs() -> list[QuantConfig]:
    configs: list[QuantConfig] = []
    extra = (QuantConfig(fp16_activations=True), *ABLATION, *SCALE_SWEEP, *PARETO_EXTRA)
    for config in (*PAPER_TABLE, *extra):
        if config not in configs:
            configs.append(config)
    return configs


def _load(path: Path) -> list[PerplexityResult]:
    if not path.is_file():
        return []
    return [PerplexityResult(**entry) for entry in json.loads(path.read_text())]


def _save_json(path: Path, results: Sequence[PerplexityResult]) -> None:
    text = json.dumps([r.to_json() for r in results], indent=1) + "\n"
    write_atomically(path, lambda temporary: temporary.write_text(text))


def _by(results: Sequence[PerplexityResult]) -> dict[tuple[str, str], PerplexityResult]:
    return {(r.corpus, r.config): r for r in results}


def _ordering(results: Sequence[PerplexityResult], corpus: str, dtypes: Sequence[str]) -> str:
    chosen = [
        r for r in results if r.corpus == corpus and r.dtype in dtypes and _int8_scales_or_mx(r)
    ]
    chosen.sort(key=lambda r: r.perplexity)
    return " < ".join(f"{r.dtype} {r.perplexity:.2f}" for r in chosen)


def _int8_scales_or_mx(result: PerplexityResult) -> bool:
    return result.scale_bits == 8 or result.dtype.startswith("mx")


def _plot(results: Sequence[PerplexityResult], model: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = [
        "fp32",
        "ant4",
        "olive4",
        "mxfp4",
        "int4",
        "int4_asym",
        "bitmod4",
        "ant3",
        "mxfp3",
        "int3",
        "int3_asym",
        "bitmod3",
    ]
    reference = [r for r in results if r.dtype == "fp32" and not r.fp16_activations]
    by = {(r.corpus, r.dtype): r for r in [*reference, *filter(_int8_scales_or_mx, results)]}
    corpora = list(dict.fromkeys(r.corpus for r in results))
    figure, axis = plt.subplots(figsize=(11, 4.2))
    width = 0.8 / len(corpora)
    for index, corpus in enumerate(corpora):
        values = [by[(corpus, d)].perplexity if (corpus, d) in by else math.nan for d in order]
        positions = [i + (index - (len(corpora) - 1) / 2) * width for i in range(len(order))]
        bars = axis.bar(positions, values, width, label=corpus)
        for bar, value in zip(bars, values, strict=True):
            if math.isfinite(value):
                axis.annotate(
                    f"{value:.1f}",
                    (bar.get_x() + bar.get_width() / 2, value),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
    axis.set_yscale("log")
    axis.set_xticks(range(len(order)), order, rotation=30)
    axis.set_ylabel("perplexity (log scale)")
    axis.set_title(
        f"{model}: perplexity per weight data type (G=128, MX block 32, INT8 group scales; "
        f"weights re-quantized from a GGUF)",
        fontsize=9,
    )
    axis.legend()
    figure.tight_layout()
    write_atomically(path, lambda temporary: figure.savefig(temporary, format="png", dpi=110))
    plt.close(figure)


def _paper_table(rows: dict[str, tuple[float, float]], title: str) -> list[str]:
    lines = [f"*{title}* (Wikitext-2 / C4):", "", "| | " + " | ".join(rows) + " |"]
    lines.append("|---" * (len(rows) + 1) + "|")
    lines.append("| Wiki | " + " | ".join(f"{w:g}" for w, _ in rows.values()) + " |")
    lines.append("| C4 | " + " | ".join(f"{c:g}" for _, c in rows.values()) + " |")
    return lines


def report(results: Sequence[PerplexityResult], model: str, stem: Path, wall: float | None) -> str:
    paper_rows = {(c.label) for c in PAPER_TABLE} | {QuantConfig(fp16_activations=True).label}
    # Every section starts with the FP32 reference, which its "Δ vs FP32" column needs.
    reference = [r for r in results if r.config == QuantConfig().label]
    sections = {
        "Table VI: data types at 4 and 3 bits": [r for r in results if r.config in paper_rows],
        "Table VIII: FP extensions one at a time": [
            *reference,
            *(r for r in results if r.config in {c.label for c in ABLATION}),
        ],
        "Table V: INT4-asym group-scale precision": [
            *reference,
            *(r for r in results if r.config in {c.label for c in SCALE_SWEEP}),
        ],
    }
    first = results[0]
    windows = {r.corpus: (r.tokens, r.windows, r.scored_tokens) for r in results}
    seconds = sum(r.quantize_seconds + r.eval_seconds for r in results)
    lines = [
        f"# Perplexity per data type: {model}",
        "",
        f"`python bench/perplexity.py --model {model}` on {platform.machine()} "
        f"({os.cpu_count()} cores, torch {torch.__version__}, device {first.device}).",
        f"Windows: {first.context} tokens, stride {first.stride} (disjoint), "
        f"BOS {'id ' + str(first.bos_id) if first.bos_id is not None else 'none'}; "
        + "; ".join(
            f"{corpus}: {tokens:,} tokens in {count} windows, {scored:,} scored"
            for corpus, (tokens, count, scored) in windows.items()
        )
        + f". {len(results)} runs, {seconds / 60:.0f} min of quantization + evaluation"
        + (f" ({wall / 60:.0f} min wall)" if wall else "")
        + ".",
        "",
        CAVEAT,
        "",
    ]
    for title, chosen in sections.items():
        if not chosen or all(r in reference for r in chosen):
            continue
        lines += [f"## {title}", "", results_markdown(chosen), ""]
    lines += ["## Orderings as measured (INT8 group scales)", ""]
    for corpus in windows:
        lines.append(
            f"* {corpus}, 3-bit: "
            + _ordering(results, corpus, ("ant3", "mxfp3", "int3", "int3_asym", "bitmod3"))
        )
        lines.append(
            f"* {corpus}, 4-bit: "
            + _ordering(
                results, corpus, ("ant4", "olive4", "mxfp4", "int4", "int4_asym", "bitmod4")
            )
        )
    lines += [
        "",
        "## The paper's Llama-2-7B rows (direction, not values)",
        "",
        *_paper_table(PAPER_LLAMA2_7B_TABLE_VI, "Table VI, Llama-2-7B (FP16 baseline under fp32)"),
        "",
        *_paper_table(PAPER_LLAMA2_7B_TABLE_VIII, "Table VIII, Llama-2-7B"),
        "",
        *_paper_table(PAPER_LLAMA2_7B_TABLE_V, "Table V, Llama-2-7B, INT4-asym by scale bits"),
        "",
        f"Plot: `{stem.name}.png`; every run with timings: `{stem.name}.json` / `.csv`.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--corpora", default="wiki,news")
    parser.add_argument("--max-tokens", type=int, default=8192)
    parser.add_argument("--context", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--dtypes", help="only these data types (comma-separated; smoke tests)")
    parser.add_argument(
        "--no-fp16-scales",
        action="store_true",
        help="skip the FP16-group-scale variants (INT8 scales, Table V's sweep and MX only)",
    )
    parser.add_argument("--report", action="store_true", help="only rewrite md/csv/png")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    stem = args.out / f"perplexity_{args.model}"
    json_path = stem.with_suffix(".json")
    results = _load(json_path)
    started = time.perf_counter()
    if not args.report:
        lm = load_model(args.model)
        if torch.cuda.is_available():
            lm.model.to("cuda")
        done = {(r.corpus, r.config) for r in results}
        corpora = args.corpora.split(",")
        tokens = {corpus: tokens_of(lm, corpus) for corpus in corpora}
        wanted = None if args.dtypes is None else set(args.dtypes.split(","))
        # Each configuration is quantized once for all the corpora it still lacks.
        todo: dict[tuple[str, ...], list[QuantConfig]] = {}
        for config in all_configs():
            if wanted is not None and config.dtype not in wanted:
                continue
            if args.no_fp16_scales and config.quantized and not config.is_mx:
                if config.scale_bits is None:
                    continue
            missing = tuple(c for c in corpora if (c, config.label) not in done)
            if missing:
                todo.setdefault(missing, []).append(config)

        def keep(result: PerplexityResult) -> None:
            results.append(result)
            _save_json(json_path, results)
            print(
                f"{result.corpus} {result.config}: {result.perplexity:.3f} "
                f"({result.quantize_seconds:.0f} + {result.eval_seconds:.0f} s)",
                flush=True,
            )

        for missing, configs in todo.items():
            evaluate(
                lm,
                list(missing),
                configs,
                tokens={corpus: tokens[corpus] for corpus in missing},
                max_tokens=args.max_tokens,
                context=args.context,
                batch_size=args.batch_size,
                progress=sys.stderr.isatty(),
                on_result=keep,
            )
    if not results:
        print(f"no results in {json_path}", file=sys.stderr)
        return 1
    wall = None if args.report else time.perf_counter() - started
    text = report(results, args.model, stem, wall)
    write_atomically(stem.with_suffix(".md"), lambda temporary: temporary.write_text(text))
    csv_text = results_csv(results)
    write_atomically(stem.with_suffix(".csv"), lambda temporary: temporary.write_text(csv_text))
    _plot(results, args.model, stem.with_suffix(".png"))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
