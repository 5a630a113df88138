"""Acceptance: whole programs on the RTL and on the emulator, bit-identical with equal cycles.

Random programs (``bitmod.backends.rtl.cases``: every accelerated format, the four loop
orders, odd M, N and K, ragged last groups, bias or none, INT8/INT4 activation matmuls,
layers chained through DRAM, narrow weight blocks whose passes run on row groups) on the
small machines of ``cases.CONFIGS`` (one, two and four tiles of 4x4; ``random_case`` cycles
through them) on Verilator (and the first ones on Icarus too), then the example MLP
(examples/mlp) compiled by ``bitmod.compile`` for ``cases.MLP_MACHINE`` (two tiles of 4x4) and
for the default machine (sixteen tiles of 8x8, 512 KiB buffers: the design of
``bench/rtl_speed.py``'s sixteen-tile GEMM, whose build it shares with ``--work`` the same),
every program of its forward pass.
Prints one row per program and a summary; exits 1 on any disagreement.

    python bench/rtl_cosim.py [--cases 100] [--icarus 20] [--mlp small default | --no-mlp]
                              [--work DIR] [--out bench/results/rtl_cosim.md]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

from bitmod.backends.rtl.cases import (
    BENCH_CAPACITY,
    CAPACITY,
    MLP_CAPACITY,
    MLP_MACHINE,
    random_case,
)
from bitmod.backends.rtl.cosim import CosimResult, build, cosimulate
from bitmod.backends.rtl.emit import emit_compiled, emit_design
from bitmod.runtime.arch.hwconfig import HardwareConfig

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
#: The example MLP's machines: (label, machine, design capacity)
MLP_MACHINES = {
    "small": ("2 tiles of 4x4", MLP_MACHINE, MLP_CAPACITY),
    "default": ("16 tiles of 8x8", HardwareConfig(), BENCH_CAPACITY),
}


def _row(name: str, simulator: str, result: CosimResult, seconds: float) -> dict:
    return {
        "name": name,
        "simulator": simulator,
        "rtl": result.rtl.counters["cycles"],
        "emulator": result.emulator_cycles,
        "hits": sum(result.emulator_hits.values()),
        "identical": result.identical,
        "equal": result.cycles_equal,
        "seconds": seconds,
        "detail": "" if result.identical and result.cycles_equal else result.format(),
    }


def random_programs(work: Path, cases: int, icarus: int) -> list[dict]:
    rows = []
    for simulator, count in (("verilator", cases), ("icarus", icarus)):
        for seed in range(count):
            case = random_case(seed)
            design = work / simulator / f"case{seed}"
            shutil.rmtree(design, ignore_errors=True)
            emit_design(case.program, case.memory, design, case.config, capacity=CAPACITY)
            binary = build(design, simulator, cache=work / "builds")
            started = time.perf_counter()
            result = cosimulate(design, simulator, binary=binary)
            rows.append(_row(case.name, simulator, result, time.perf_counter() - started))
            print(_line(rows[-1]), file=sys.stderr, flush=True)
            shutil.rmtree(design, ignore_errors=True)
    return rows


def mlp(work: Path, machine: str) -> list[dict]:
    import bitmod

    spec = importlib.util.spec_from_file_location("make_mlp", EXAMPLES / "mlp" / "make_mlp.py")
    assert spec is not None and spec.loader is not None
    make_mlp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_mlp)
    model, example = make_mlp.build()
    label, config, capacity = MLP_MACHINES[machine]
    compiled = bitmod.compile(model, example, dtype="bitmod3", group_size=64, hardware=config)
    root = work / f"mlp_{machine}"
    shutil.rmtree(root, ignore_errors=True)
    rows = []
    for design in emit_compiled(compiled, (example,), root, capacity=capacity):
        binary = build(design.directory, "verilator", cache=work / "builds")
        started = time.perf_counter()
        result = cosimulate(design.directory, "verilator", binary=binary)
        name = f"examples/mlp {design.directory.name} (bitmod3 G64, {label})"
        rows.append(_row(name, "verilator", result, time.perf_counter() - started))
        print(_line(rows[-1]), file=sys.stderr, flush=True)
    return rows


def _line(row: dict) -> str:
    ok = "OK " if row["identical"] and row["equal"] else "BAD"
    return f"{ok} {row['simulator']:<9} {row['name']}: {row['rtl']} / {row['emulator']} cycles"


def table(rows: list[dict]) -> str:
    lines = [
        "| program | simulator | RTL cycles | emulator cycles | buffer hits | bit-identical "
        "| cycles equal |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['simulator']} | {r['rtl']:,d} | {r['emulator']:,d} "
            f"| {r['hits']:,d} | {'yes' if r['identical'] else '**no**'} "
            f"| {'yes' if r['equal'] else '**no**'} |"
        )
    agree = sum(r["identical"] and r["equal"] for r in rows)
    by_sim = Counter(r["simulator"] for r in rows)
    summary = (
        f"**{agree} of {len(rows)}** programs bit-identical with equal cycles "
        f"({', '.join(f'{n} on {s}' for s, n in by_sim.items())}); "
        f"{sum(r['rtl'] for r in rows):,d} cycles in all; "
        f"{sum(r['hits'] > 0 for r in rows)} of them load blocks their buffers still hold "
        f"({sum(r['hits'] for r in rows):,d} hits). "
        f"Load average {os.getloadavg()[0]:.1f} at the end."
    )
    details = [
        f"\n```\n{r['name']} ({r['simulator']})\n{r['detail']}\n```" for r in rows if r["detail"]
    ]
    return summary + "\n\n" + "\n".join(lines) + "\n" + "".join(details)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100, help="random programs on Verilator")
    parser.add_argument("--icarus", type=int, default=20, help="of them, also on Icarus")
    parser.add_argument(
        "--mlp", nargs="*", choices=sorted(MLP_MACHINES), default=["small", "default"],
        help="the example MLP's machines (default both)",
    )  # fmt: skip
    parser.add_argument("--no-mlp", dest="mlp", action="store_const", const=[])
    parser.add_argument("--work", type=Path, default=Path("build/rtl_cosim"))
    parser.add_argument("--out", type=Path, help="also write the table (markdown) here")
    args = parser.parse_args(argv)
    rows = random_programs(args.work, args.cases, args.icarus)
    for machine in args.mlp:
        rows += mlp(args.work, machine)
    text = table(rows)
    print(text)
    if args.out:
        args.out.write_text("# RTL vs emulator (bench/rtl_cosim.py)\n\n" + text)
    return 0 if all(r["identical"] and r["equal"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
