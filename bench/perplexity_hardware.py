"""The real SmolLM2 on the bit-exact emulator against its fake-quantized evaluation.

    nice python bench/perplexity_hardware.py                  # bitmod3, 64-token window
    nice python bench/perplexity_hardware.py --dtype int3_asym --window 32

``bitmod.compile`` of the whole model (every decoder-block linear on the emulated accelerator
with the chosen format, attention's Q·Kᵀ / P·V with run-time INT8 K/V, the rest on the host)
for one window of the bundled Wikipedia text; the window runs on the emulator, and its logits
are compared with the fake-quantized model made from the compiled model's own archive
(:func:`bitmod.compiler.llm.agreement.hardware_agreement`). Results (max/mean logit difference,
top-1 agreement, perplexity of both on the window, cycles, energy, compile and emulation
wall time) go to ``bench/results/perplexity_hardware_<model>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import torch
from bitmod.compiler.llm.agreement import hardware_agreement
from bitmod.compiler.llm.evaluate import tokens_of
from bitmod.compiler.llm.models import load_model
from bitmod.runtime.storage.fileio import write_atomically

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dtypes", default="bitmod3,int3_asym")
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    lm = load_model(args.model)
    window = tokens_of(lm, "wiki")[: args.window]
    rows = []
    for dtype in args.dtypes.split(","):
        agreement, compiled = hardware_agreement(lm, window, dtype, progress=sys.stderr.isatty())
        report = compiled.report()
        rows.append(agreement.to_json() | {"bits_per_weight": report.bits_per_weight})
        print(agreement.format(), flush=True)
    stem = args.out / f"perplexity_hardware_{args.model}"
    text = json.dumps(rows, indent=1) + "\n"
    write_atomically(stem.with_suffix(".json"), lambda temporary: temporary.write_text(text))
    lines = [
        f"# {args.model} on the bit-exact emulator vs fake quantization",
        "",
        f"`python bench/perplexity_hardware.py --model {args.model} --window {args.window}` on "
        f"{platform.machine()} ({os.cpu_count()} cores, torch {torch.__version__}). One window "
        f"of the bundled Wikipedia text ({rows[0]['tokens']} model inputs"
        f"{', BOS included' if lm.bos_id is not None else ''}); every decoder-block linear on "
        "the emulated accelerator, attention Q·Kᵀ / P·V with run-time INT8 K/V, the LM head "
        "and the rest on the host in FP32. The fake-quantized model uses the compiled model's "
        "own stored weights (same codes, SV indices, INT8 scales), FP16-rounded linear inputs "
        "and outputs, FP32 attention.",
        "",
        "| weights | max abs diff | mean abs diff | max abs logit | top-1 agreement | PPL "
        "emulator | PPL fake-quant | PPL FP32 | cycles | energy µJ | bits/w | ops | compile s "
        "| emulate s |",
        "|---" * 14 + "|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dtype']} | {r['max_abs_diff']:.4f} | {r['mean_abs_diff']:.5f} | "
            f"{r['max_abs_logit']:.2f} | {r['top1_agreement']:.1%} | "
            f"{r['perplexity_emulator']:.3f} | {r['perplexity_fake_quant']:.3f} | "
            f"{r['perplexity_fp32']:.3f} | {r['cycles']:,} | {r['energy_uj']:,.1f} | "
            f"{r['bits_per_weight']:.3f} | {r['accelerated_ops']} | "
            f"{r['compile_seconds']:.0f} | {r['emulate_seconds']:.0f} |"
        )
    markdown = "\n".join(lines) + "\n"
    write_atomically(stem.with_suffix(".md"), lambda temporary: temporary.write_text(markdown))
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
