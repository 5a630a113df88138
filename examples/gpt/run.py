"""Compile the example GPT decoder for the BitMoD accelerator, run it, print the report.

    python examples/gpt/run.py                      # bitmod3 weights, INT8 K/V
    python examples/gpt/run.py --dtype bitmod4 --kv-dtype int4 --save build/gpt

The linears and the attention matmuls run on the bit-exact emulator, everything else on the
host; the script prints the report (cycles, energy, bits per weight, per-layer formats and
quantization errors, where each op ran) and how far the logits are from the float32 model's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model import example_tokens, gpt  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="bitmod3", help="weight format (default bitmod3)")
    parser.add_argument("--kv-dtype", default="int8", help="K/V format (default int8)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="weight seed")
    parser.add_argument("--save", metavar="DIR", help="also save the compiled bundle here")
    args = parser.parse_args(argv)

    import bitmod

    model = gpt(seed=args.seed)
    tokens = example_tokens(batch=args.batch, tokens=args.tokens)
    start = time.perf_counter()
    compiled = bitmod.compile(model, (tokens,), dtype=args.dtype, kv_dtype=args.kv_dtype)
    compiled_at = time.perf_counter()
    logits = compiled(tokens)
    ran_at = time.perf_counter()
    with torch.no_grad():
        reference = model(tokens)
    error = float((logits - reference).norm() / reference.norm())
    agree = float((logits.argmax(-1) == reference.argmax(-1)).float().mean())

    print(compiled.report())
    print()
    print(f"compile {compiled_at - start:.1f} s, emulated run {ran_at - compiled_at:.1f} s")
    print(f"logits vs float32 model: relative error {error:.4f}, top-1 agreement {agree:.1%}")
    if args.save:
        print(f"saved {compiled.save(args.save)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
