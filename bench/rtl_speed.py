"""Emulator vs Verilator on the same program: cycles/s and MAC/s, and their ratio.

One bitmod3 GEMM (G = 128, INT8 scales) as ``bitmod-tile`` would schedule it, on a one-tile
and on the default sixteen-tile machine (8x8 PEs a tile, 512 KiB buffers, 25.6 B/cycle):
``Machine.run`` (best of three, wall and CPU time of this process) against the Verilator
standalone binary of the emitted design (``verilator --binary``: no Python in the loop; wall
time of the process, which includes reading the DRAM image, the image check at boot and
writing the outputs). Both must give bit-identical outputs and the same cycles (checked).

    python bench/rtl_speed.py [--runs 1 16] [--work DIR] [--out bench/results/rtl_speed.md]

``--work`` keeps the designs and their builds (the sixteen-tile build took 168 s with two
jobs on a loaded 2-core box, docs/rtl.md "Build size"); a rerun reuses a build whose sources
did not change.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from bitmod.backends.rtl.cases import BENCH_CAPACITY
from bitmod.backends.rtl.cosim import build, cosimulate
from bitmod.backends.rtl.emit import emit_design
from bitmod.runtime.arch.hwconfig import HardwareConfig
from bitmod.runtime.arch.nest import quantized_matmul_program
from bitmod.runtime.emulator.machine import Machine
from bitmod.runtime.formats import quantize

FMT, G = "bitmod3", 128
#: (label, machine, M, N, K): N is 8 channel blocks of the machine's columns
RUNS = (
    ("1 tile", HardwareConfig(tiles=1), 64, 64, 1024),
    ("16 tiles", HardwareConfig(), 64, 1024, 1024),
)


def _design(work: Path, label: str, config: HardwareConfig, m: int, n: int, k: int):
    generator = torch.Generator().manual_seed(m + n + k)
    q = quantize(torch.randn(n, k, generator=generator), FMT, group_size=G, scale_bits=8)
    x = torch.randn(m, k, generator=generator).to(torch.float16).numpy()
    program = quantized_matmul_program(q, m, config)
    memory = {"x": x, "w": q}
    design = work / label.replace(" ", "_")
    shutil.rmtree(design, ignore_errors=True)
    emit_design(program, memory, design, config, capacity=BENCH_CAPACITY)
    return program, memory, design


def _build(design: Path, builds: Path) -> tuple[Path, float]:
    """The design's Verilator binary (reused from ``builds`` when its sources are the same)."""
    started = time.perf_counter()
    binary = build(design, "verilator", cache=builds)
    return binary, time.perf_counter() - started


def measure(work: Path, tiles: list[int]) -> list[dict]:
    rows = []
    for label, config, m, n, k in RUNS:
        if config.tiles not in tiles:
            continue
        program, memory, design = _design(work, label, config, m, n, k)
        binary, build_s = _build(design, work / "builds")
        result = cosimulate(design, "verilator", binary=binary)
        if not (result.identical and result.cycles_equal):
            raise SystemExit(f"{label}: RTL and emulator disagree\n{result.format()}")
        image = program.encode()
        walls, cpus = [], []
        for _ in range(3):
            wall, cpu = time.perf_counter(), time.process_time()
            emulated = Machine(config).run(image, memory)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        assert np.array_equal(
            emulated.outputs["y"].view(np.uint16), result.rtl.outputs["y"].view(np.uint16)
        )
        rows.append(
            {
                "label": label,
                "shape": f"{m}x{n}x{k}",
                "macs": m * n * k,
                "cycles": result.rtl.counters["cycles"],
                "boot": result.rtl.counters["boot_cycles"],
                "build_s": build_s,
                "rtl_s": result.rtl.seconds,
                "emu_wall": min(walls),
                "emu_cpu": min(cpus),
            }
        )
        print(f"{label}: {rows[-1]}", file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        f"## {FMT} G{G}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} at the end",
        "",
        "| machine | M×N×K | cycles | emulator s (wall / CPU) | Verilator s (wall) "
        "| emulator cycles/s | Verilator cycles/s | emulator MAC/s | Verilator MAC/s "
        "| emulator / Verilator |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        emu, rtl = r["emu_wall"], r["rtl_s"]
        lines.append(
            f"| {r['label']} | {r['shape']} | {r['cycles']:,d} | {emu:.3f} / {r['emu_cpu']:.3f} "
            f"| {rtl:.2f} | {r['cycles'] / emu:.3g} | {r['cycles'] / rtl:.3g} "
            f"| {r['macs'] / emu:.3g} | {r['macs'] / rtl:.3g} | **{rtl / emu:,.0f}×** |"
        )
    lines += [
        "",
        "Outputs bit-identical and cycles equal in both runs (checked). Verilator's time is the "
        "whole process (reading the DRAM image, the image check at boot: "
        + ", ".join(f"{r['boot']:,d}" for r in rows)
        + " cycles, writing the outputs); build times (verilator + C++ on 2 jobs): "
        + ", ".join(f"{r['build_s']:.0f} s" if r["build_s"] > 1 else "cached" for r in rows)
        + ".",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("build/rtl_speed"))
    parser.add_argument("--out", type=Path, help="also write the table (markdown) here")
    parser.add_argument(
        "--runs", type=int, nargs="+", default=[1, 16], help="the machines, by tile count"
    )
    args = parser.parse_args(argv)
    text = table(measure(args.work, args.runs))
    print(text)
    if args.out:
        args.out.write_text(
            "# Emulator vs Verilator (bench/rtl_speed.py)\n\n"
            + __doc__.split("\n\n")[1]
            + "\n\n"
            + text
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
