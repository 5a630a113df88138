"""The paper's Fig. 9 with measured perplexity: perplexity vs EDP for SmolLM2 and Gemma 3.

    python bench/perplexity_pareto.py        # after bench/perplexity.py for both models

EDP is ``bitmod-sim``'s model (:func:`bitmod.runtime.perf.report.pareto_points`, the
generative workload: 256-token prefill + 255 decoding steps, batch 1) on the two models' real
shapes, read from their GGUF headers (layers, hidden, FFN, heads, KV heads, head dim,
vocabulary). Perplexities are the measured Wikipedia ones of
``bench/results/perplexity_<model>.json`` (G = 128, INT8 group scales): BitMoD-3/4 at 3 and
4 bits, INT5/6/8 for BitMoD's higher precisions, ANT-3/4 and OliVe-4 as extended to per-group
quantization (the paper's Table VI setting; their hardware runs per-channel, so these points are
optimistic for them), FP32 (the GGUF dequantized) for FP16. Precisions without a measured
perplexity (ANT 5/6/8, OliVe 3/8) are left out. The paper's Phi-2 and Llama-2-7B panels stay,
with their cited perplexities, labelled as cited.

Writes ``bench/results/fig9_measured.png``, ``pareto_measured.csv`` and ``.md``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from bitmod.compiler.llm.models import perf_shape
from bitmod.runtime.perf.report import PARETO_MODELS, ParetoPoint, pareto_points, plot_pareto
from bitmod.runtime.storage.fileio import write_atomically

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
MODELS = ("smollm2-135m", "gemma3-270m")
MEASURED = "measured Wikipedia perplexity, bundled text"

#: (accelerator family, bits) -> the measured data type standing for it.
MEASURED_DTYPE = {
    ("fp16", 16): "fp32",
    ("bitmod", 3): "bitmod3",
    ("bitmod", 4): "bitmod4",
    ("bitmod", 5): "int5",
    ("bitmod", 6): "int6",
    ("bitmod", 8): "int8",
    ("ant", 3): "ant3",
    ("ant", 4): "ant4",
    ("olive", 4): "olive4",
}


def measured_ppl(model: str) -> dict[str, float]:
    """Wikipedia perplexity by data type (INT8 group scales; MX and FP32 as they come)."""
    path = RESULTS / f"perplexity_{model}.json"
    if not path.is_file():
        raise SystemExit(f"{path}: no results; run bench/perplexity.py --model {model} first")
    rows = json.loads(path.read_text())
    return {
        r["dtype"]: r["perplexity"]
        for r in rows
        if r["corpus"] == "wiki"
        and not (r["dtype"] == "fp32" and r["fp16_activations"])
        # scale_bits None is FP16 group scales, except where there are none (FP32, MX).
        and (r["scale_bits"] == 8 or r["dtype"] == "fp32" or r["dtype"].startswith("mx"))
    }


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    shapes = {name: perf_shape(name) for name in MODELS}
    points = []
    for point in pareto_points(models=MODELS, shapes=shapes):
        dtype = MEASURED_DTYPE.get((point.accelerator, point.bits))
        ppl = measured_ppl(point.model).get(dtype) if dtype else None
        if ppl is None:
            continue
        points.append(dataclasses.replace(point, ppl=ppl, ppl_source=MEASURED))
    points += [p for p in pareto_points(models=PARETO_MODELS) if p.ppl is not None]
    plot_pareto(points, RESULTS / "fig9_measured.png")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(points[0].__dataclass_fields__))
    writer.writeheader()
    for p in points:
        writer.writerow(dataclasses.asdict(p))
    text = buffer.getvalue()
    write_atomically(RESULTS / "pareto_measured.csv", lambda t: t.write_text(text))
    lines = [
        "# Fig. 9 with measured perplexity (`python bench/perplexity_pareto.py`)",
        "",
        "EDP: the perf model's generative workload (256-token prefill, 255 decode steps) on "
        "each model's real shapes from its GGUF header. Perplexity: measured on the bundled "
        "Wikipedia text for SmolLM2 / Gemma 3 (G = 128, INT8 group scales; ANT/OliVe per-group "
        "as in the paper's Table VI, optimistic for their per-channel hardware); cited from "
        "the paper for Phi-2 / Llama-2-7B. Weights of SmolLM2 / Gemma were already quantized "
        "by their publishers (see BENCHMARKS.md).",
        "",
        "| model | accelerator | weights | bits | EDP (J·s) | perplexity | source |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in sorted(points, key=lambda p: (p.model, p.accelerator, p.bits)):
        measured = p.ppl_source == MEASURED
        dtype = MEASURED_DTYPE[(p.accelerator, p.bits)] if measured else None
        source = f"measured ({dtype})" if measured else f"cited, {p.ppl_source}"
        lines.append(
            f"| {p.model} | {p.accelerator} | {p.weight} | {p.bits} | {p.edp_js:.3e} | "
            f"{p.ppl:.3f} | {source} |"
        )
    lines += [
        "",
        "Pareto front (lowest perplexity for its EDP or less), per model: "
        + "; ".join(f"{model}: {_front(points, model)}" for model in (*MODELS, *PARETO_MODELS)),
    ]
    markdown = "\n".join(lines) + "\n"
    write_atomically(RESULTS / "pareto_measured.md", lambda t: t.write_text(markdown))
    print(markdown)
    return 0


def _front(points: Sequence[ParetoPoint], model: str) -> str:
    chosen = sorted((p for p in points if p.model == model), key=lambda p: (p.edp_js, p.ppl))
    front, best = [], float("inf")
    for p in chosen:
        if p.ppl < best:
            front.append(f"{p.accelerator}-{p.bits}b")
            best = p.ppl
    return ", ".join(front)


if __name__ == "__main__":
    sys.exit(main())
