"""Fake quantization against the accelerator's own arithmetic: perplexity per data type.

    python bench/perplexity_arithmetic.py --model smollm2-135m       # a CUDA GPU: minutes
    python bench/perplexity_arithmetic.py --model path/to/model.gguf --max-tokens 4096

For every accelerated data type (BitMoD-3/4, INT4/6/8, INT3/4-asym; G = 128, INT8 group
scales) the same stored codes are evaluated twice on the same tokens
(:func:`bitmod.compiler.llm.evaluate.evaluate` with ``arithmetic=["fake", "hardware"]``): with
dequantized weights in FP32 matmuls (what quantization papers report) and with every block
linear computed bit-exactly as the PE array computes it (Triton kernel on CUDA, the torch
backend elsewhere; see ``docs/gpu.md``). FP16 inputs and FP16 outputs in both; the host (norms,
attention, LM head) in FP32 in both. The FP32 reference is run once.

Writes ``bench/results/perplexity_arithmetic_<model>.json`` and ``.md`` (the table, with
hardware − fake per data type, tokens, windows and wall time per run).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
from bitmod.compiler.llm.evaluate import evaluate, tokens_of
from bitmod.compiler.llm.fakequant import QuantConfig
from bitmod.compiler.llm.models import load_model
from bitmod.runtime.storage.fileio import write_atomically

ROOT = Path(__file__).resolve().parent.parent
DTYPES = ("bitmod3", "bitmod4", "int3_asym", "int4_asym", "int4", "int6", "int8")


def _table(results: list, model: str, corpus: str, device: str, total_seconds: float) -> str:
    fp32 = next(r for r in results if not r.dtype.startswith(("bitmod", "int")))
    by_key = {(r.dtype, r.arithmetic): r for r in results}
    first = results[0]
    lines = [
        f"{model} on {corpus}: {first.tokens:,} tokens in {first.windows} windows of "
        f"{first.context} tokens ({first.scored_tokens:,} scored), device {device}, "
        f"{total_seconds:.0f} s in all. FP32 reference (the GGUF dequantized to FP32): "
        f"{fp32.perplexity:.3f}.",
        "",
        "| data type | bits/w | fake-quant PPL | hardware PPL | hardware − fake | "
        "fake s | hardware s |",
        "|---|---|---|---|---|---|---|",
    ]
    for dtype in DTYPES:
        fake, hardware = by_key.get((dtype, "fake")), by_key.get((dtype, "hardware"))
        if fake is None or hardware is None:
            continue
        lines.append(
            f"| {dtype} | {fake.bits_per_weight:.3f} | {fake.perplexity:.3f} | "
            f"{hardware.perplexity:.3f} | {hardware.perplexity - fake.perplexity:+.4f} | "
            f"{fake.eval_seconds:.1f} | {hardware.eval_seconds:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="name, .gguf or HF directory")
    parser.add_argument("--name", default=None, help="model name in the result files")
    parser.add_argument("--corpus", default="wiki")
    parser.add_argument("--max-tokens", type=int, default=8192)
    parser.add_argument("--context", type=int, default=2048)
    parser.add_argument("--dtypes", default=",".join(DTYPES))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    lm = load_model(args.model)
    lm.model.to(args.device)
    name = args.name or lm.name
    ids = tokens_of(lm, args.corpus)[: args.max_tokens]
    configs = [QuantConfig()] + [QuantConfig(d) for d in args.dtypes.split(",")]
    results = evaluate(
        lm,
        args.corpus,
        configs,
        tokens=ids,
        context=args.context,
        arithmetic=["fake", "hardware"],
        on_result=lambda r: print(
            f"{r.config:>16} {r.arithmetic:>8}: {r.perplexity:.4f} ({r.eval_seconds:.1f} s)",
            flush=True,
        ),
    )
    total = time.perf_counter() - started
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.machine()
    table = _table(results, name, args.corpus, device, total)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"perplexity_arithmetic_{name}"
    payload = {
        "model": name,
        "device": device,
        "torch": torch.__version__,
        "seconds": total,
        "results": [r.to_json() for r in results],
    }
    write_atomically(
        stem.with_suffix(".json"),
        lambda tmp: tmp.write_text(json.dumps(payload, indent=1) + "\n"),
    )
    write_atomically(stem.with_suffix(".md"), lambda tmp: tmp.write_text(table + "\n"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
