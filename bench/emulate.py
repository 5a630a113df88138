"""Emulator speed: emulated MAC/s of the bit-exact machine against the scalar reference PE.

    python bench/emulate.py                          # 256 x 4096 x 4096 bitmod3 (a 7B projection)
    python bench/emulate.py --n 1024                 # an N-reduced slice, extrapolated
    python bench/emulate.py --device cuda            # + the whole-GEMM fast path on a GPU

What is timed: ``Machine().run(program, memory)`` for ``Y[M,N] = X[M,K] · W[N,K]ᵀ`` with the
program of ``matmul_program`` (the schedule ``bitmod-tile`` picks) on the default 8×8×16
array, i.e. the whole emulator (program interpretation, loads with clipping, the SV-register
term decoder, the vectorized PE model over every block, dequantization, FP32 accumulation,
drain, the cycle/energy model). Quantizing the random weight and drawing the activations are
not timed.

The baseline is the scalar reference PE of ``runtime/emulator/reference_pe.py`` (one PE, one cycle
at a time, Python ints and exact fractions), timed in the same run on a small shape, on which the
machine is also run and checked bit for bit against it before any number is printed. The factor is
(machine MAC/s on the large shape) / (reference MAC/s on the small shape); the machine's MAC/s on
the small shape is printed too (it is dominated by per-instruction overhead).
Both are best-of-``--repeats``. With ``--n`` smaller than 4096 (or ``--k``) the large run is a
slice of the 256×4096×4096 GEMM and the time is extrapolated linearly in N (column blocks are
independent and identical in cost); the output says so. Results go to
``bench/results/emulate.md``.

``--device DEV`` also runs the large GEMM through :class:`bitmod.runtime.emulator.fastpath.FastGemm`
(the torch PE backend; on CUDA with the fused Triton kernel), checks its output bit for bit against
the machine's, and reports its MAC/s against the machine's (the numpy path) measured in the same
run; those results go to ``bench/results/emulate_<device>.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from bitmod.runtime.arch.hwconfig import HardwareConfig
from bitmod.runtime.arch.nest import quantized_matmul_program
from bitmod.runtime.arch.schedule import ArraySpec, plan_bitmod_matmul
from bitmod.runtime.emulator import reference_pe
from bitmod.runtime.emulator.fastpath import FastGemm
from bitmod.runtime.emulator.machine import Machine
from bitmod.runtime.formats import get_format, quantize
from bitmod.runtime.formats.bitserial import quantized_terms

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "emulate.md"
FULL = (256, 4096, 4096)


def make_gemm(fmt: str, m: int, n: int, k: int, seed: int):
    rng = np.random.default_rng(seed)
    w = torch.from_numpy(rng.standard_normal((n, k)).astype(np.float32))
    q = quantize(w, fmt)
    x = rng.standard_normal((m, k)).astype(np.float16)
    program = quantized_matmul_program(q, m, HardwareConfig())
    return q, x, program


def best_time(run, repeats: int) -> tuple[float, float, object]:
    """(best wall seconds, best CPU seconds of this process, result) over ``repeats`` runs."""
    best_wall, best_cpu, result = float("inf"), float("inf"), None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = run()
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
    return best_wall, best_cpu, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fmt", default="bitmod3")
    parser.add_argument("--m", type=int, default=FULL[0])
    parser.add_argument("--n", type=int, default=FULL[1])
    parser.add_argument("--k", type=int, default=FULL[2])
    parser.add_argument("--small", default="8x16x512", help="M x N x K of the reference run")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="do not update the results file")
    parser.add_argument(
        "--device", default=None, help="also time the whole-GEMM fast path on this torch device"
    )
    parser.add_argument(
        "--no-triton", action="store_true", help="fast path without the Triton kernel (pe_torch)"
    )
    args = parser.parse_args(argv)
    try:
        sm, sn, sk = (int(v) for v in args.small.split("x"))
        get_format(args.fmt)
    except ValueError as err:
        parser.error(str(err))
    machine = Machine(HardwareConfig())
    reference = reference_pe

    # Small shape: the scalar reference and the machine, bit for bit.
    q, x, program = make_gemm(args.fmt, sm, sn, sk, seed=1)
    terms = quantized_terms(q)
    ref_seconds, ref_cpu, ref_out = best_time(
        lambda: reference.reference_matmul(
            x, terms, q.scales.numpy().astype(np.int64), q.channel_scale.numpy(), q.group_size
        )[2],
        args.repeats,
    )
    small_seconds, small_cpu, small_result = best_time(
        lambda: machine.run(program, {"x": x, "w": q}), args.repeats
    )
    if not np.array_equal(small_result.outputs["y"].view(np.uint16), ref_out.view(np.uint16)):
        print("error: the machine and the scalar reference PE disagree", file=sys.stderr)
        return 1
    small_macs = sm * sn * sk

    # Large shape (or a slice of it).
    m, n, k = args.m, args.n, args.k
    q, x, program = make_gemm(args.fmt, m, n, k, seed=2)
    seconds, cpu, result = best_time(lambda: machine.run(program, {"x": x, "w": q}), args.repeats)
    macs = m * n * k
    is_slice = (m, n, k) != FULL
    full_macs = FULL[0] * FULL[1] * FULL[2]
    report = result.report
    schedule = plan_bitmod_matmul(
        m,
        n,
        k,
        fmt=args.fmt,
        group_size=q.group_size,
        scale_bits=q.scale_bits,
        array=ArraySpec.of(machine.config),
    )

    def row(label: str, shape: str, count: int, wall: float, cpu_s: float) -> str:
        return (
            f"| {label} | {shape} | {count:,} | {wall:.3f} | {cpu_s:.3f} | {count / wall:,.0f} | "
            f"{count / cpu_s:,.0f} |"
        )

    threads = torch.get_num_threads()
    lines = [
        f"## {args.fmt}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs (torch threads {threads}), numpy {np.__version__}, "
        f"load average {os.getloadavg()[0]:.1f} at the end",
        "",
        "| run | shape M×N×K | MACs | wall s | CPU s | MAC/s (wall) | MAC/s (CPU) |",
        "|---|---|---|---|---|---|---|",
        row(
            "scalar reference PE (runtime/emulator/reference_pe.py)",
            f"{sm}×{sn}×{sk}",
            small_macs,
            ref_seconds,
            ref_cpu,
        ),
        row("machine, same small shape", f"{sm}×{sn}×{sk}", small_macs, small_seconds, small_cpu),
        row(f"machine{' (slice)' if is_slice else ''}", f"{m}×{n}×{k}", macs, seconds, cpu),
    ]
    if is_slice:
        scale = full_macs / macs
        lines.append(
            row(
                "machine, 256×4096×4096 extrapolated linearly in MACs",
                "256×4096×4096",
                full_macs,
                seconds * scale,
                cpu * scale,
            )
        )
    factor_wall = (macs / seconds) / (small_macs / ref_seconds)
    factor_cpu = (macs / cpu) / (small_macs / ref_cpu)
    lines += [
        "",
        f"Factor over the scalar reference: **{factor_cpu:,.0f}×** by CPU time "
        f"({factor_wall:,.0f}× by wall time; machine MAC/s on {m}×{n}×{k} over reference MAC/s "
        f"on {sm}×{sn}×{sk}; on the same small shape: "
        f"{(small_macs / small_cpu) / (small_macs / ref_cpu):,.0f}× by CPU time). Outputs "
        f"bit-identical on the small shape. The machine is shared with other jobs, so CPU time "
        f"(this process only; the emulator is single-threaded numpy) is the steadier measure.",
        "",
        f"Emulated machine (default HardwareConfig: 8×8×16 PEs, 1 GHz, DDR4 "
        f"{machine.config.dram_bytes_per_cycle} B/cycle) for the {m}×{n}×{k} run: "
        f"{report.cycles:,} cycles ({report.seconds * 1e6:,.1f} µs simulated); "
        + ", ".join(f"{c} {v:,.0f}" for c, v in report.cycles_by_cause.items())
        + f"; PE utilization {report.pe_utilization:.1%}; DRAM read "
        f"{report.dram_bytes_read / 2**20:,.1f} MiB, written "
        f"{report.dram_bytes_written / 2**20:,.1f} MiB; energy "
        f"{report.total_energy_pj / 1e6:,.1f} µJ.",
        "",
        f"Schedule (`runtime.arch.schedule`, what `bitmod-tile` emits): {schedule.order}, "
        f"{schedule.block_rows}-row blocks, K chunk {schedule.kc} ({schedule.k_chunks} "
        f"chunk{'s' if schedule.k_chunks > 1 else ''}). The analytical model "
        f"(`runtime.perf.model`) predicts {schedule.cycles:,.0f} cycles (the machine: "
        f"{report.cycles / schedule.cycles - 1:+.1%}) and "
        f"{schedule.dram_read / 2**20:,.1f} MiB read "
        f"({'the same bytes' if schedule.dram_read == report.dram_bytes_read else 'DIFFERENT'}).",
        "",
    ]
    if args.device is not None:
        lines += fast_path_lines(args, q, x, result.outputs["y"], macs, seconds, cpu)
    text = "\n".join(lines)
    print(text)
    if args.device is not None:
        if "DIFFERS from the machine" in text:
            print("error: the fast path and the machine disagree", file=sys.stderr)
            return 1
        if not args.no_write:
            suffix = torch.device(args.device).type + ("_torch" if args.no_triton else "")
            path = RESULTS.with_name(f"emulate_{suffix}.md")
            temporary = path.with_suffix(".md.tmp")
            temporary.write_text(
                "# Emulator speed on a torch device (bench/emulate.py --device)\n\n" + text
            )
            temporary.replace(path)
        return 0
    if not args.no_write:
        header = (
            "# Emulator speed (bench/emulate.py)\n\n"
            "Wall-clock seconds of `Machine.run` (interpretation, term decoding, the vectorized "
            "bit-exact PE model, cycle/energy model) against the scalar reference PE, measured "
            "in the same process; best of the repeats. Regenerate with `python bench/emulate.py`."
            " The machine decodes each weight block's bit-serial terms once per run (a cache of "
            "up to `Machine.DECODE_CACHE_BYTES`), however often the schedule streams the block."
            "\n\n"
        )
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        temporary = RESULTS.with_suffix(".md.tmp")
        temporary.write_text(header + text)
        temporary.replace(RESULTS)
    return 0


def fast_path_lines(
    args: argparse.Namespace,
    q,  # noqa: ANN001 - QuantizedTensor
    x: np.ndarray,
    expected: np.ndarray,
    macs: int,
    machine_wall: float,
    machine_cpu: float,
) -> list[str]:
    """Time :class:`FastGemm` on the large GEMM and compare it with the machine's output."""
    device = torch.device(args.device)
    gemm = FastGemm(device, use_triton=False if args.no_triton else None)
    prepared_at = time.perf_counter()
    prepared = gemm.prepare(q)
    act = torch.from_numpy(x).to(device)

    def run() -> torch.Tensor:
        out = gemm.run(prepared, act)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return out

    prepare_seconds = time.perf_counter() - prepared_at
    run()  # warm-up: kernel compilation
    wall, _, out = best_time(run, max(args.repeats, 3))
    same = np.array_equal(out.cpu().numpy().view(np.uint16), expected.view(np.uint16))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
    kernel = "fused Triton kernel" if gemm.use_triton else "torch PE backend (pe_torch)"
    return [
        f"### Whole-GEMM fast path on {device} ({name}), {kernel}, torch {torch.__version__}",
        "",
        "| run | MAC/s (wall) | vs the machine (numpy) |",
        "|---|---:|---:|",
        f"| machine, numpy PE model | {macs / machine_wall:,.3g} | 1 |",
        f"| FastGemm on {device} | {macs / wall:,.3g} | {machine_wall / wall:,.3g}× |",
        "",
        f"Best of {max(args.repeats, 3)} after a warm-up: {wall * 1e3:,.1f} ms for "
        f"{macs:,} MACs; preparing the weight (term decoding, upload) took "
        f"{prepare_seconds:.2f} s, once per weight. Output "
        + ("BIT-IDENTICAL to the machine's." if same else "DIFFERS from the machine's."),
    ]


if __name__ == "__main__":
    sys.exit(main())
