"""Quantizer throughput: vectorized Algorithm 1 against a per-candidate, per-grid-value baseline.

    python bench/quantize.py                      # 4096 x 4096, bitmod3, CPU
    python bench/quantize.py --device cuda        # the same on a GPU (+ the 7B-parameter estimate)

The baseline is the straightforward masking formulation of Algorithm 1 (as in the BitMoD authors'
code): for every candidate data type, for every value of its grid a ``torch.where`` over the whole
tensor selecting the weights between that value's two midpoints, then the per-group MSE of the
candidate and a masked update of the best result so far. Both run in the same process on the
same weight, interleaved (load from other processes hits both alike); the best of ``--repeats``
timed runs after one warm-up is reported. The baseline runs in float32 (the authors' code runs
in FP16 on a GPU; FP16 arithmetic on a CPU is far slower, which would flatter the ratio).

The fast path is ``bitmod.runtime.formats.quantize(w, fmt)`` with its defaults (G = 128, INT8
second-level scales). The two are checked to pick the same candidate per group (the few
disagreements are groups where two candidates' errors tie within float32 rounding) before any
number is printed. Results go to ``bench/results/quantize.md`` (only this device's section is
replaced).
"""

from __future__ import annotations

import argparse
import platform
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from bitmod.runtime.formats import dequantize, get_format, quantize
from bitmod.runtime.storage.fileio import write_atomically

RESULTS = Path(__file__).resolve().parent / "results" / "quantize.md"
SEVEN_B = 7e9


def masking_quantize(
    w: torch.Tensor, fmt_name: str, group_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Algorithm 1 the straightforward way: dequantized weight and candidate index per group."""
    fmt = get_format(fmt_name)
    n, k = w.shape
    groups = w.reshape(n, k // group_size, group_size)
    absmax = groups.abs().amax(dim=-1, keepdim=True)
    best = torch.zeros_like(groups)
    best_error = torch.full(groups.shape[:2], float("inf"), device=w.device)
    best_index = torch.zeros(groups.shape[:2], dtype=torch.uint8, device=w.device)
    for position, row in enumerate(fmt.table):
        grid = sorted({float(v) for v in row if v == v})  # finite values (NaN != NaN)
        mids = [(a + b) / 2 for a, b in zip(grid, grid[1:], strict=False)]
        scale = absmax / max(abs(v) for v in grid)
        x = groups / torch.where(scale > 0, scale, torch.ones_like(scale))
        q = torch.zeros_like(x)
        for i, value in enumerate(grid):
            if i == 0:
                mask = x <= mids[0]
            elif i == len(grid) - 1:
                mask = x > mids[-1]
            else:
                mask = (x > mids[i - 1]) & (x <= mids[i])
            q += torch.where(mask, value, 0.0)
        candidate = q * scale
        error = (candidate - groups).pow(2).mean(dim=-1)
        better = error < best_error
        best_error[better] = error[better]
        best[better] = candidate[better]
        best_index[better] = position
    return best.reshape(n, k), best_index


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_times(
    runs: dict[str, Callable[[], object]], device: torch.device, repeats: int
) -> dict[str, float]:
    """Best wall time of each run; the runs interleave so that load from other processes on a
    shared machine hits them alike."""
    for run in runs.values():  # warm-up: caches, allocator, lazy init
        run()
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


def machine_line(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def write_section(path: Path, heading: str, body: str) -> None:
    """Replace (or append) the ``## heading`` section of ``path``, atomically."""
    title = "# Quantizer throughput (`bench/quantize.py`)\n"
    text = path.read_text() if path.exists() else title
    section = f"## {heading}\n\n{body.rstrip()}\n"
    pattern = re.compile(rf"^## {re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(section + "\n", text) if pattern.search(text) else f"{text}\n{section}"
    write_atomically(path, lambda temporary: temporary.write_text(text.rstrip() + "\n"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--cols", type=int, default=4096)
    parser.add_argument("--format", default="bitmod3")
    parser.add_argument("--group-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--out", type=Path, default=RESULTS, help="markdown file to update")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--label", default="", help="names the machine in the results heading")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if args.repeats < 1 or args.rows < 1 or args.cols < 1 or (args.threads or 1) < 1:
        parser.error("--rows, --cols, --repeats and --threads must be positive")
    if args.cols % args.group_size:
        parser.error(f"--cols {args.cols} is not a multiple of --group-size {args.group_size}")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        fmt = get_format(args.format)
    except ValueError as error:
        parser.error(str(error))
    if fmt.family != "mixture":
        parser.error(f"--format {args.format}: the baseline is Algorithm 1, give a mixture")
    device = torch.device(args.device)
    w = torch.randn(args.rows, args.cols, generator=torch.Generator().manual_seed(0)).to(device)
    weights = w.numel()

    def fast() -> object:
        return quantize(w, args.format, group_size=args.group_size)

    def fast_and_dequantize() -> object:
        return dequantize(quantize(w, args.format, group_size=args.group_size))

    def baseline() -> object:
        return masking_quantize(w, args.format, args.group_size)

    # Same candidate per group before anything is timed.
    reference, reference_index = baseline()
    q = quantize(w, args.format, group_size=args.group_size, scale_bits=None)
    agreement = float((q.sv_index == reference_index).float().mean())
    if agreement < 0.999:
        print(f"error: the fast path picks another candidate in {1 - agreement:.2%} of groups")
        return 1
    close = torch.allclose(dequantize(q), reference, rtol=2e-3, atol=1e-6)  # FP16 scale rounding
    if not close:
        print("error: the fast path's dequantized weight differs from the baseline's")
        return 1

    times = best_times(
        {"fast": fast, "fast+dequantize": fast_and_dequantize, "baseline": baseline},
        device,
        args.repeats,
    )
    t_fast, t_fast_deq, t_base = times["fast"], times["fast+dequantize"], times["baseline"]
    rate_fast, rate_deq, rate_base = weights / t_fast, weights / t_fast_deq, weights / t_base
    ratio = t_base / t_fast
    rows = [
        ("baseline: per-candidate, per-grid-value masking (float32)", t_base, rate_base, 1.0),
        (f'`quantize(w, "{args.format}")` (INT8 scales)', t_fast, rate_fast, ratio),
        ("`quantize` + `dequantize`", t_fast_deq, rate_deq, t_base / t_fast_deq),
    ]
    kind = "GPU" if device.type == "cuda" else "CPU"
    label = f" {args.label}," if args.label else ""
    heading = f"{kind}:{label} {machine_line(device)}; {args.rows} x {args.cols}, {args.format}"
    lines = [
        f"{args.rows} x {args.cols} float32 weight (randn, seed 0), `{args.format}`, "
        f"G = {args.group_size}; best of {args.repeats} interleaved runs after a warm-up.",
        "",
        "| implementation | seconds | weights/s | speed-up |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {t:.3f} | {r:.3g} | {x:.1f}x |" for name, t, r, x in rows),
        "",
        f"Same candidate as the baseline in {agreement:.4%} of groups.",
    ]
    if device.type == "cuda":
        lines.append(
            f"A 7B-parameter weight set at this rate: {SEVEN_B / rate_fast:.2f} s (target < 1.5 s)."
        )
    else:
        lines.append(f"Speed-up {ratio:.1f}x (target >= 5x on CPU).")
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section(args.out, heading, body)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
