"""Quantize a whole LLM-shaped weight set (random weights, real layer shapes) and time it.

    python bench/quantize_model.py --model llama-2-7b --device cuda
    python bench/quantize_model.py --model llama-2-7b --device cpu --layers 1   # one decoder layer

Every linear weight of the model's decoder layers and its LM head (``LLMShape.linear_layers``
from ``runtime/perf/data/llm_shapes.json``) is drawn on the device (not timed) and quantized with
``bitmod.runtime.formats.quantize`` (timed, synchronized per weight). The 7B-parameter target on
a GPU is < 1.5 s for the whole set (the paper quotes 10 s for Llama-2-7B on an A6000).
A baseline is measured in the same run: the per-candidate, per-grid-value masking formulation
of ``bench/quantize.py`` on the largest weight, so the printed ratio compares like with like.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from bitmod.runtime.formats import quantize
from bitmod.runtime.perf.model import load_llm_shapes
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quantize import masking_quantize  # noqa: E402  (the baseline lives in one place)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="llama-2-7b")
    parser.add_argument("--format", default="bitmod3")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--layers", type=int, default=None, help="decoder layers (default: all)")
    args = parser.parse_args(argv)
    shapes = load_llm_shapes()
    if args.model not in shapes:
        parser.error(f"--model {args.model!r}: choose one of {', '.join(sorted(shapes))}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    device = torch.device(args.device)
    shape = shapes[args.model]
    layers = shape.num_hidden_layers if args.layers is None else args.layers
    weights = [(n, k) for _ in range(layers) for _, n, k in shape.linear_layers()]
    if args.layers is None:
        weights.append((shape.vocab_size, shape.hidden_size))
    generator = torch.Generator(device=device).manual_seed(0)
    quantize(torch.randn(256, 1024, device=device, generator=generator), args.format)  # warm-up
    total_time, total_weights = 0.0, 0
    for n, k in tqdm(weights, desc=f"quantize {args.model} ({args.format})", unit="weight"):
        w = torch.randn(n, k, device=device, generator=generator)
        _sync(device)
        start = time.perf_counter()
        quantize(w, args.format)
        _sync(device)
        total_time += time.perf_counter() - start
        total_weights += w.numel()
        del w
    n, k = max(weights, key=lambda s: s[0] * s[1])
    w = torch.randn(n, k, device=device, generator=generator)
    masking_quantize(w, args.format, 128)  # warm-up
    _sync(device)
    start = time.perf_counter()
    masking_quantize(w, args.format, 128)
    _sync(device)
    baseline_rate = w.numel() / (time.perf_counter() - start)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    rate = total_weights / total_time
    print(
        f"{args.model} ({total_weights / 1e9:.2f} G weights, {layers} layers) {args.format} "
        f"on {name}: {total_time:.2f} s, {rate:.3g} weights/s; "
        f"masking baseline on one {n}x{k} weight: {baseline_rate:.3g} weights/s "
        f"(ratio {rate / baseline_rate:.1f}x)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
