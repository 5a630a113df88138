"""The paper's accelerator evaluation on top of :mod:`bitmod.runtime.perf.model`.

* :func:`run_sweep` — every (task, model, accelerator) of Fig. 7 / Fig. 8.
* :func:`summarize` — speedup and energy normalized to the FP16 baseline per model, their
  arithmetic and geometric means, and the two comparisons of paper V-C: lossless BitMoD
  (INT6) vs FP16 and lossy BitMoD (4-bit discriminative / 3-bit generative) vs ANT and OliVe.
* :func:`pareto_points` — perplexity vs EDP (paper Fig. 9) for Phi-2 and Llama-2-7B.
  Perplexities are *cited data* (:data:`CITED_WIKITEXT_PPL`), never computed here.
* ``plot_*`` — bar charts like Fig. 7 (speedup) and Fig. 8 (energy breakdown), and the
  Pareto plot, with matplotlib's Agg backend.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from bitmod.runtime.arch.hwconfig import HardwareConfig
from bitmod.runtime.perf.model import (
    ACCELERATORS,
    ENERGY_COMPONENTS,
    TASKS,
    LLMShape,
    SimResult,
    accelerator,
    build_workload,
    load_llm_shapes,
    simulate,
)

__all__ = [
    "ACCELERATOR_LABELS",
    "CITED_WIKITEXT_PPL",
    "PAPER_LOSSY_SPEEDUP",
    "ParetoPoint",
    "Summary",
    "format_markdown",
    "format_text",
    "pareto_points",
    "plot_energy",
    "plot_pareto",
    "plot_speedup",
    "run_sweep",
    "summarize",
]

#: results[task][model][accelerator]
Sweep = dict[str, dict[str, dict[str, SimResult]]]

ACCELERATOR_LABELS: dict[str, str] = {
    "fp16": "FP16 baseline",
    "ant": "ANT",
    "olive": "OliVe",
    "mixpe": "MixPE-style",
    "bitmod-lossless": "BitMoD lossless (INT6)",
    "bitmod-lossy": "BitMoD lossy (4b/3b)",
}

#: The paper's headline averages of lossy BitMoD over ANT / OliVe (abstract, V-C, VII).
PAPER_LOSSY_SPEEDUP: dict[str, float] = {"ant": 1.69, "olive": 1.48}

#: Wikitext-2 perplexity, cited from the BitMoD paper: Table VI (per-group G = 128, all data
#: types, incl. ANT and OliVe extended to per-group by the authors) and Table XII (INT8
#: weights, FP16 activations). Keys: (model, accelerator, weight bits). The paper's Fig. 9
#: uses per-channel perplexities for ANT / OliVe (what their hardware runs); those numbers
#: are not in the text, so ANT / OliVe points here are optimistic for them.
CITED_WIKITEXT_PPL: dict[tuple[str, str, int], tuple[float, str]] = {
    ("phi-2", "fp16", 16): (9.71, "Table VI"),
    ("phi-2", "ant", 4): (11.23, "Table VI"),
    ("phi-2", "ant", 3): (15.57, "Table VI"),
    ("phi-2", "olive", 4): (10.49, "Table VI"),
    ("phi-2", "olive", 3): (14.93, "Table VI"),
    ("phi-2", "bitmod", 4): (10.48, "Table VI"),
    ("phi-2", "bitmod", 3): (12.91, "Table VI"),
    ("llama-2-7b", "fp16", 16): (5.47, "Table VI"),
    ("llama-2-7b", "ant", 4): (6.09, "Table VI"),
    ("llama-2-7b", "ant", 3): (8.51, "Table VI"),
    ("llama-2-7b", "olive", 4): (5.91, "Table VI"),
    ("llama-2-7b", "olive", 3): (9.13, "Table VI"),
    ("llama-2-7b", "bitmod", 4): (5.72, "Table VI"),
    ("llama-2-7b", "bitmod", 3): (6.55, "Table VI"),
    ("llama-2-7b", "bitmod", 8): (5.47, "Table XII (INT8)"),
}

#: Weight precisions swept for the Pareto plot: (accelerator, weight_fmt override, bits).
PARETO_PRECISIONS: tuple[tuple[str, str | None, int], ...] = (
    ("fp16", None, 16),
    ("bitmod-lossy", "bitmod3", 3),
    ("bitmod-lossy", "bitmod4", 4),
    ("bitmod-lossy", "int5", 5),
    ("bitmod-lossy", "int6", 6),
    ("bitmod-lossy", "int8", 8),
    ("ant", "3", 3),
    ("ant", "4", 4),
    ("ant", "5", 5),
    ("ant", "6", 6),
    ("ant", "8", 8),
    ("olive", "3", 3),
    ("olive", "4", 4),
    ("olive", "8", 8),
)
PARETO_MODELS: tuple[str, ...] = ("phi-2", "llama-2-7b")


def run_sweep(
    models: Sequence[str],
    tasks: Sequence[str] = TASKS,
    cfg: HardwareConfig | None = None,
    pe_counts: dict[str, int] | None = None,
    accelerators: Sequence[str] = ACCELERATORS,
    shapes: dict[str, LLMShape] | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
    weights: dict[str, str] | None = None,
    input_tokens: int = 256,
    output_tokens: int = 256,
) -> Sweep:
    """Simulate every (task, model, accelerator); ``progress`` wraps the iteration (tqdm).

    ``weights`` maps an accelerator name to a weight-precision override (see
    :func:`bitmod.runtime.perf.model.accelerator`), applied to every model and task.
    ``output_tokens`` applies to the generative task (discriminative tasks emit one token).
    """
    cfg = cfg or HardwareConfig()
    shapes = shapes or load_llm_shapes()
    pe_counts = pe_counts or {}
    weights = weights or {}
    jobs = [(t, m, a) for t in tasks for m in models for a in accelerators]
    sweep: Sweep = {t: {m: {} for m in models} for t in tasks}
    workloads = {}
    for task, model, name in progress(jobs) if progress else jobs:
        if (task, model) not in workloads:
            outputs = 1 if task == "discriminative" else output_tokens
            workloads[task, model] = build_workload(shapes[model], task, input_tokens, outputs)
        acc = accelerator(name, model, task, weight_fmt=weights.get(name))
        sweep[task][model][name] = simulate(
            acc, workloads[task, model], cfg, pe_counts.get(acc.pe_kind)
        )
    return sweep


@dataclass(frozen=True)
class Summary:
    """Normalized results; ``speedup[task][model][acc]`` is FP16 cycles / acc cycles."""

    models: tuple[str, ...]
    tasks: tuple[str, ...]
    accelerators: tuple[str, ...]
    speedup: dict[str, dict[str, dict[str, float]]]
    energy: dict[str, dict[str, dict[str, float]]]  # acc energy / FP16 energy
    energy_breakdown: dict[str, dict[str, dict[str, dict[str, float]]]]  # normalized parts
    weight_labels: dict[str, dict[str, dict[str, str]]]
    pe_counts: dict[str, int]

    def ratio(self, task: str, model: str, faster: str, slower: str) -> float:
        """Speedup of ``faster`` over ``slower``."""
        return self.speedup[task][model][faster] / self.speedup[task][model][slower]

    def comparisons(self) -> dict[str, dict[str, float]]:
        """Paper V-C comparisons: per task and over all (model, task) pairs, arith / geo mean.

        Keys: ``"lossless/fp16"``, ``"lossy/ant"``, ``"lossy/olive"`` (speedups) and the same
        with an ``"energy "`` prefix (energy of the other accelerator / BitMoD's).
        """
        pairs = {
            "lossless/fp16": ("bitmod-lossless", "fp16"),
            "lossy/ant": ("bitmod-lossy", "ant"),
            "lossy/olive": ("bitmod-lossy", "olive"),
            "lossy/mixpe": ("bitmod-lossy", "mixpe"),
        }
        out: dict[str, dict[str, float]] = {}
        for key, (ours, other) in pairs.items():
            if ours not in self.accelerators or other not in self.accelerators:
                continue
            for prefix, table, flip in (("", self.speedup, False), ("energy ", self.energy, True)):
                values: dict[str, list[float]] = {task: [] for task in self.tasks}
                for task in self.tasks:
                    for model in self.models:
                        a, b = table[task][model][ours], table[task][model][other]
                        values[task].append(b / a if flip else a / b)
                row: dict[str, float] = {}
                everything = [v for task in self.tasks for v in values[task]]
                for task in self.tasks:
                    row[f"{task} mean"] = float(np.mean(values[task]))
                    row[f"{task} geomean"] = _geomean(values[task])
                row["all mean"] = float(np.mean(everything))
                row["all geomean"] = _geomean(everything)
                out[prefix + key] = row
        return out


def _geomean(values: Sequence[float]) -> float:
    return float(math.exp(np.mean(np.log(values))))


def summarize(sweep: Sweep) -> Summary:
    tasks = tuple(sweep)
    models = tuple(sweep[tasks[0]])
    accs = tuple(sweep[tasks[0]][models[0]])
    if "fp16" not in accs:
        raise ValueError("summarize needs the fp16 baseline in the sweep")
    speedup, energy, breakdown, labels = {}, {}, {}, {}
    for task in tasks:
        speedup[task], energy[task], breakdown[task], labels[task] = {}, {}, {}, {}
        for model in models:
            results = sweep[task][model]
            base = results["fp16"]
            speedup[task][model] = {a: base.cycles / r.cycles for a, r in results.items()}
            energy[task][model] = {
                a: r.total_energy_pj / base.total_energy_pj for a, r in results.items()
            }
            breakdown[task][model] = {
                a: {c: r.energy_pj[c] / base.total_energy_pj for c in ENERGY_COMPONENTS}
                for a, r in results.items()
            }
            labels[task][model] = {a: r.weight_label for a, r in results.items()}
    pe_counts = {a: r.pe_count for a, r in sweep[tasks[0]][models[0]].items()}
    return Summary(models, tasks, accs, speedup, energy, breakdown, labels, pe_counts)


# ---------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------


def _table_rows(summary: Summary, task: str, values: dict) -> list[list[str]]:
    rows = []
    for model in summary.models:
        rows.append([model] + [f"{values[model][a]:.2f}" for a in summary.accelerators])
    for name, fn in (("mean", np.mean), ("geomean", _geomean)):
        rows.append(
            [name]
            + [
                f"{float(fn([values[m][a] for m in summary.models])):.2f}"
                for a in summary.accelerators
            ]
        )
    return rows


def format_text(summary: Summary, shapes: dict[str, LLMShape] | None = None) -> str:
    """Plain-text tables for the terminal."""
    lines: list[str] = []
    header = ["model", *summary.accelerators]
    for task in summary.tasks:
        for title, values in (
            ("speedup over FP16", summary.speedup[task]),
            ("energy / FP16 energy", summary.energy[task]),
        ):
            lines.append(f"{task}: {title}")
            rows = [header, *_table_rows(summary, task, values)]
            widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
            for row in rows:
                lines.append("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))
            lines.append("")
    lines.append("comparisons (paper V-C; lossy = 4-bit discriminative / 3-bit generative;")
    lines.append("speedup = other's cycles / BitMoD's, energy = other's energy / BitMoD's)")
    comparisons = summary.comparisons()
    columns = [f"{t} mean" for t in summary.tasks] + ["all mean", "all geomean"]
    rows = [["comparison", *columns, "paper"]]
    for key, row in comparisons.items():
        other = key.split("/")[-1]
        paper = "-"
        if key.startswith("lossy/") and other in PAPER_LOSSY_SPEEDUP:
            paper = f"{PAPER_LOSSY_SPEEDUP[other]:.2f}x avg"
        rows.append([key, *(f"{row[c]:.2f}x" for c in columns), paper])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        lines.append("  " + "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    lines.append(
        "  PEs at iso-area: " + ", ".join(f"{a} {n}" for a, n in summary.pe_counts.items())
    )
    return "\n".join(lines) + "\n"


def format_markdown(summary: Summary) -> str:
    """Markdown tables (speedup and energy per task) for BENCHMARKS.md."""
    out: list[str] = []
    header = "| model | " + " | ".join(ACCELERATOR_LABELS.get(a, a) for a in summary.accelerators)
    rule = "|---|" + "---:|" * len(summary.accelerators)
    for task in summary.tasks:
        for title, values in (
            ("speedup over the FP16 baseline", summary.speedup[task]),
            ("energy normalized to the FP16 baseline", summary.energy[task]),
        ):
            out += [f"**{task}: {title}**", "", header + " |", rule]
            for row in _table_rows(summary, task, values):
                out.append("| " + " | ".join(row) + " |")
            out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------
# Pareto (paper Fig. 9)
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParetoPoint:
    model: str
    accelerator: str  # "fp16", "bitmod", "ant", "olive"
    weight: str
    bits: int
    cycles: float
    energy_pj: float
    edp_js: float
    ppl: float | None
    ppl_source: str | None


def pareto_points(
    cfg: HardwareConfig | None = None,
    models: Sequence[str] = PARETO_MODELS,
    pe_counts: dict[str, int] | None = None,
    shapes: dict[str, LLMShape] | None = None,
    input_tokens: int = 256,
    output_tokens: int = 256,
) -> list[ParetoPoint]:
    """EDP of the generative workload for every accelerator × precision of Fig. 9.

    ``ppl`` is the cited Wikitext-2 perplexity where the paper gives one, else None.
    """
    cfg = cfg or HardwareConfig()
    shapes = shapes or load_llm_shapes()
    pe_counts = pe_counts or {}
    points = []
    for model in models:
        workload = build_workload(shapes[model], "generative", input_tokens, output_tokens)
        for name, fmt, bits in PARETO_PRECISIONS:
            acc = accelerator(name, model, "generative", weight_fmt=fmt)
            result = simulate(acc, workload, cfg, pe_counts.get(acc.pe_kind))
            family = "bitmod" if acc.pe_kind == "bitmod" else acc.pe_kind
            ppl, source = CITED_WIKITEXT_PPL.get((model, family, bits), (None, None))
            points.append(
                ParetoPoint(
                    model=model,
                    accelerator=family,
                    weight=acc.weight.label,
                    bits=bits,
                    cycles=result.cycles,
                    energy_pj=result.total_energy_pj,
                    edp_js=result.edp(cfg),
                    ppl=ppl,
                    ppl_source=source,
                )
            )
    return points


# ---------------------------------------------------------------------------------------
# Plots (matplotlib, Agg)
# ---------------------------------------------------------------------------------------

_COLORS = {
    "fp16": "#7f7f7f",
    "ant": "#1f77b4",
    "olive": "#ff7f0e",
    "mixpe": "#9467bd",
    "bitmod-lossless": "#2ca02c",
    "bitmod-lossy": "#d62728",
    "bitmod": "#d62728",
}


def _pyplot():  # type: ignore[no-untyped-def]
    # Imported on first plot: pyplot takes over a second to import and bitmod-sim without
    # --out draws nothing; the backend must be chosen before pyplot is imported.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_speedup(summary: Summary, path: Path) -> None:
    """Fig. 7: speedup over FP16 per model (+ geomean), one panel per task."""
    plt = _pyplot()
    fig, axes = plt.subplots(
        len(summary.tasks), 1, figsize=(11, 3.4 * len(summary.tasks)), squeeze=False
    )
    groups = [*summary.models, "geomean"]
    width = 0.8 / len(summary.accelerators)
    for ax, task in zip(axes[:, 0], summary.tasks, strict=True):
        for i, acc in enumerate(summary.accelerators):
            values = [summary.speedup[task][m][acc] for m in summary.models]
            values.append(_geomean(values))
            x = np.arange(len(groups)) + (i - (len(summary.accelerators) - 1) / 2) * width
            ax.bar(x, values, width, label=ACCELERATOR_LABELS.get(acc, acc), color=_COLORS[acc])
        ax.set_xticks(np.arange(len(groups)), groups)
        ax.set_ylabel("speedup over FP16")
        ax.set_title(f"{task} (batch 1)")
        ax.axhline(1.0, color="black", linewidth=0.6)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(ncol=3, fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_energy(summary: Summary, path: Path) -> None:
    """Fig. 8: energy normalized to FP16, stacked by component, one panel per task."""
    plt = _pyplot()
    fig, axes = plt.subplots(
        len(summary.tasks), 1, figsize=(12, 3.6 * len(summary.tasks)), squeeze=False
    )
    n_acc = len(summary.accelerators)
    hatches = {"pe": "", "encoder": "xx", "sram": "//", "dram": ".."}
    for ax, task in zip(axes[:, 0], summary.tasks, strict=True):
        ticks, names = [], []
        for g, model in enumerate(summary.models):
            for i, acc in enumerate(summary.accelerators):
                x = g * (n_acc + 1) + i
                bottom = 0.0
                for comp in ENERGY_COMPONENTS:
                    value = summary.energy_breakdown[task][model][acc][comp]
                    ax.bar(
                        x,
                        value,
                        0.85,
                        bottom=bottom,
                        color=_COLORS[acc],
                        hatch=hatches[comp],
                        edgecolor="black",
                        linewidth=0.3,
                    )
                    bottom += value
            ticks.append(g * (n_acc + 1) + (n_acc - 1) / 2)
            names.append(model)
        ax.set_xticks(ticks, names)
        ax.set_ylabel("energy / FP16")
        ax.set_title(f"{task}: energy breakdown (PE core, term encoder, SRAM, DRAM)")
        ax.grid(axis="y", alpha=0.3)
    from matplotlib.patches import Patch  # local: see _pyplot

    handles = [
        Patch(color=_COLORS[a], label=ACCELERATOR_LABELS.get(a, a)) for a in summary.accelerators
    ]
    handles += [
        Patch(facecolor="white", edgecolor="black", hatch=hatches[c], label=c)
        for c in ENERGY_COMPONENTS
    ]
    axes[0, 0].legend(handles=handles, ncol=5, fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_pareto(points: Sequence[ParetoPoint], path: Path) -> None:
    """Fig. 9: perplexity vs modelled EDP (generative), one panel per model.

    A panel's perplexities are the paper's (cited) unless every point's ``ppl_source`` says
    ``measured ...``; the y label says which."""
    plt = _pyplot()
    models = list(dict.fromkeys(p.model for p in points))
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4), squeeze=False)
    markers = {"fp16": "s", "bitmod": "o", "ant": "^", "olive": "v", "mixpe": "D"}
    for ax, model in zip(axes[0], models, strict=True):
        for family in markers:
            sel = [p for p in points if p.model == model and p.accelerator == family and p.ppl]
            if not sel:
                continue
            sel.sort(key=lambda p: p.bits)
            ax.plot(
                [p.edp_js for p in sel],
                [p.ppl for p in sel],
                marker=markers[family],
                color=_COLORS[family],
                label=family if family != "fp16" else "FP16",
            )
            for p in sel:
                ax.annotate(
                    f"{p.bits}b",
                    (p.edp_js, p.ppl),
                    fontsize=7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
        ax.set_xscale("log")
        ax.set_xlabel("EDP of the generative workload (J·s, modelled)")
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        sources = {p.ppl_source for p in points if p.model == model and p.ppl}
        measured = len(sources) == 1 and str(next(iter(sources))).startswith("measured")
        ax.set_ylabel(
            f"perplexity ({next(iter(sources))})"
            if measured
            else "Wikitext-2 perplexity (cited, paper Tables VI/XII)"
        )
        ax.set_title(model)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
