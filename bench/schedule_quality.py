"""Schedule quality: the planner's choice, measured on the machine, against a lower bound.

For every shape the program of the planner's schedule (``matmul_program``) runs on the machine
in its timing-only mode (``Machine.run(..., compute=False)``: the cycles of a computing run),
and so does the planner's schedule for the same machine without row groups (``row_groups=1``:
every tile takes the same rows, so a narrow weight block leaves tiles idle), in the same run.
The bound is ``max(compute, DRAM)``: the array's MAC steps (``Σ_column blocks ⌈⌈M/R⌉/S⌉ ·
⌈K/4⌉·t`` cycles, ``t`` terms a weight, ``S`` the row groups of the block's channels, 1 for a
full block: ``HardwareConfig.mac_sweeps``) and every byte read or written
once over the DRAM channel (``2MK + W + 2MN`` bytes, ``W`` the weight's storage), whichever is
longer. ``pred`` is the planner's own cycle count, ``= machine`` when it times the schedule
exactly. ``space best``: the fewest cycles of any schedule in the planner's space (every order,
``MR`` and K chunk of whole groups that fits, each block loop up or down; timed by
``schedule_cycles``, which equals the machine, tests/test_schedule.py), for the GEMMs that are
not LLM layers: how far the loop orders of the ISA can get at all.

``OS bound``: a tighter floor for the output-stationary array, derived here. The accumulators
hold one output block (at most ``MR_max`` rows by one column block of ``C`` channels) at a
time, and every schedule of the ISA's loop orders finishes its first output block before any
other: row block 0 of column block 0, or the last row and/or column block where a block loop is
a ``loop.down``. That block has ``r`` rows (``min(MR, M)``, or the short last block's
``M − MR·(⌈M/MR⌉−1)`` when the row loop counts down) and ``c`` channels (likewise), and the
block that runs last has the other size of each loop (the same block when there is one). Then:

1. The first block's last mac starts only after every byte of that block has moved: each of
   its macs waits for the loads issued before it, and they are all of K of its weights
   (``W_c``) and of its rows (``2rK``), over one channel of ``B`` bytes a cycle.
2. That mac takes at least the MAC steps of its chunk's last group (``g_K = K − G·(⌈K/G⌉−1)``
   elements: the K-chunk loop counts up): ``⌈⌈r/R⌉/S_c⌉·⌈g_K/4⌉·t`` cycles.
3. Every other block's macs wait for the first block's drain to have started, which is no
   sooner than ``R`` cycles before that mac ends, and its tail (``4 + SB + R``) is longer than
   ``R``: so they start after its MAC steps, and their own MAC steps, one mac at a time, are
   ``compute − compute(r, c)``.
4. The last block's store (``2·r_last·c_last`` bytes) starts no sooner than its drain, so
   after the last mac's MAC steps.

::

    T ≥ min over MR ≤ MR_max and the loop directions of
        (W_c + 2·r·K) / B + steps(last group of r, c) + compute − compute(r, c)
        + 2·r_last·c_last / B

with ``compute(r, c) = ⌈⌈r/R⌉/S_c⌉·⌈K/4⌉·t``. The larger of it and ``max(compute, DRAM)`` is
``OS bound``: when the weights of a column block are about as many bytes as the MAC steps of a
64-row block take cycles, no schedule overlaps the first block's traffic with compute, and
the first block's last group and the last block's store add to it. (128×128×1024 INT8 on a
machine of 64-row accumulators, ``--max-block-rows 64``: 19,922 cycles, 1.19× ``max(compute,
DRAM)``, with 56-row blocks, the short block of 16 rows last: no schedule of that machine is
within 1.15× of that bound. The default's 128 rows bring the floor to 17,794, 1.07×.)

``--max-block-rows N`` measures a machine whose column accumulators hold ``N`` rows (the
default 128; ``cfg.mblock``'s largest ``MR``), ``--act-buffer-kb N`` one with an activation
buffer of ``N`` KiB (default 512): the comparison columns are then the default machine's
schedule and cycles, so the table says what the variant buys.

    python bench/schedule_quality.py [--markdown] [--max-block-rows N] [--act-buffer-kb N]
"""

from __future__ import annotations

import argparse
import dataclasses
import math

import numpy as np
import torch
from bitmod.runtime.arch.hwconfig import LANES, HardwareConfig
from bitmod.runtime.arch.nest import quantized_matmul_program
from bitmod.runtime.arch.schedule import (
    ACT_BYTES,
    LOOP_DIRECTIONS,
    ORDERS,
    ArraySpec,
    MacTiming,
    Schedule,
    WeightLayout,
    directions_matter,
    plan_bitmod_matmul,
    schedule_cycles,
)
from bitmod.runtime.emulator.machine import Machine
from bitmod.runtime.formats import QuantizedTensor, get_format, quantize
from bitmod.runtime.formats.bitserial import num_terms

#: (label, M, N, K, format): small, balanced, LLM-like and odd GEMMs.
SHAPES: tuple[tuple[str, int, int, int, str], ...] = (
    ("small", 64, 96, 1024, "int8"),
    ("small", 64, 96, 1024, "bitmod3"),
    ("small", 16, 64, 256, "int8"),
    ("small", 32, 128, 512, "bitmod4"),
    ("balanced", 128, 128, 1024, "int8"),
    ("balanced", 256, 256, 1024, "bitmod3"),
    ("balanced", 128, 256, 2048, "int6"),
    ("LLM decode", 1, 4096, 4096, "bitmod3"),
    ("LLM decode", 1, 4096, 4096, "int8"),
    ("LLM prefill", 256, 4096, 4096, "bitmod3"),
    ("LLM prefill", 256, 11008, 4096, "bitmod4"),
    ("LLM prefill", 256, 4096, 11008, "bitmod4"),
    ("odd", 37, 129, 1000, "int8"),
    ("odd", 9, 300, 200, "bitmod3"),
    ("odd", 200, 17, 2048, "int4_asym"),
)


def array_sweeps(rows: int, n: int, cfg: HardwareConfig) -> int:
    """Sweeps of all ``rows`` rows over every column block of ``n`` channels: ``⌈rows/R⌉``
    passes a block, run ``S`` at a time on the row groups its channels leave."""
    columns = cfg.cols * cfg.tiles
    return sum(cfg.mac_sweeps(rows, min(columns, n - first)) for first in range(0, n, columns))


def bound(m: int, n: int, k: int, fmt: str, q: QuantizedTensor, cfg: HardwareConfig) -> int:
    """``max(compute, DRAM)`` cycles of an ``m×n×k`` GEMM on ``cfg``."""
    compute = array_sweeps(m, n, cfg) * math.ceil(k / LANES) * num_terms(fmt)
    layout = WeightLayout.of_format(fmt, q.group_size, q.scale_bits)
    dram_bytes = ACT_BYTES * m * k + int(layout.block_bytes(n, k)) + ACT_BYTES * m * n
    return max(compute, math.ceil(dram_bytes / cfg.dram_bytes_per_cycle))


def output_stationary_bound(
    m: int, n: int, k: int, fmt: str, q: QuantizedTensor, cfg: HardwareConfig
) -> int:
    """The ``OS bound`` of the module docstring (never below :func:`bound`)."""
    columns = cfg.cols * cfg.tiles
    terms = num_terms(fmt)
    steps = math.ceil(k / LANES) * terms
    last_group = k - q.group_size * (math.ceil(k / q.group_size) - 1)
    last_group_steps = math.ceil(last_group / LANES) * terms
    compute = array_sweeps(m, n, cfg) * steps
    layout = WeightLayout.of_format(fmt, q.group_size, q.scale_bits)
    rate = cfg.dram_bytes_per_cycle

    def ends(size: int, block: int, down: bool) -> tuple[int, int]:
        """(first, last) block sizes of a loop over ``size`` in blocks of ``block``."""
        full, short = min(block, size), size - block * ((size - 1) // block)
        return (short, full) if down and size > block else (full, short)

    floors = []
    for block_rows in range(cfg.rows, cfg.max_block_rows + 1, cfg.rows):
        for rows_down in (False, True):
            for cols_down in (False, True):
                rows, last_rows = ends(m, block_rows, rows_down)
                channels, last_channels = ends(n, columns, cols_down)
                first_bytes = int(layout.block_bytes(channels, k)) + ACT_BYTES * rows * k
                sweeps = cfg.mac_sweeps(rows, channels)
                last_store = ACT_BYTES * last_rows * last_channels
                floors.append(
                    math.ceil(first_bytes / rate)
                    + sweeps * last_group_steps
                    + compute
                    - sweeps * steps
                    + math.ceil(last_store / rate)
                )
    return max(bound(m, n, k, fmt, q, cfg), min(floors))


def measured(schedule: Schedule, m: int, n: int, k: int, q: QuantizedTensor, cfg: HardwareConfig):
    """The machine's cycles of ``schedule``'s program."""
    program = quantized_matmul_program(
        q,
        m,
        cfg,
        order=schedule.order,
        block_rows=schedule.block_rows,
        kchunk=schedule.kc if schedule.k_chunks > 1 else 0,
        rows_down=schedule.rows_down,
        cols_down=schedule.cols_down,
    )
    memory = {"x": np.zeros((m, k), np.float16), "w": q}
    return Machine(cfg).run(program, memory, compute=False).report.cycles


def space_best(m: int, n: int, k: int, q: QuantizedTensor, array: ArraySpec) -> int:
    """The fewest cycles of any schedule of the planner's space for this GEMM."""
    layout = WeightLayout.of_format(q.fmt, q.group_size, q.scale_bits)
    timing = MacTiming.bit_serial(q.fmt, q.group_size, q.scale_bits, array.rows)
    special = len(get_format(q.fmt).special_values)
    common = dict(fmt=q.fmt, group_size=q.group_size, scale_bits=q.scale_bits, array=array)
    chunks = [0, *range(q.group_size, k, q.group_size)]
    best = math.inf
    for order in ORDERS:
        for rows in range(array.rows, array.max_block_rows + 1, array.rows):
            for kchunk in [0] if order == "weights-resident" else chunks:
                try:
                    schedule = plan_bitmod_matmul(
                        m, n, k, order=order, block_rows=rows, kchunk=kchunk, **common
                    )
                except ValueError:
                    continue
                for rows_down, cols_down in [(False, False), *LOOP_DIRECTIONS]:
                    if not directions_matter(m, n, rows, array.columns, rows_down, cols_down):
                        continue  # blocks of one size: the same cycles in either order
                    directed = dataclasses.replace(
                        schedule, rows_down=rows_down, cols_down=cols_down
                    )
                    cycles = schedule_cycles(directed, m, n, k, array, layout, timing, special)
                    best = min(best, cycles)
    return int(best)


def describe(schedule: Schedule) -> str:
    """The schedule's order, ``MR`` and ``KC``, and which block loops count down."""
    down = [name for name, on in (("rows", schedule.rows_down), ("cols", schedule.cols_down)) if on]
    text = f"{schedule.order} MR={schedule.block_rows} KC={schedule.kc}"
    return text + (f" ({'+'.join(down)} down)" if down else "")


def rows(
    cfg: HardwareConfig, baseline: HardwareConfig, baseline_label: str
) -> list[dict[str, object]]:
    """One row per shape: the planner's schedule on ``cfg`` against the bounds, and the
    planner's schedule on ``baseline`` (measured in the same run) for comparison."""
    array = ArraySpec.of(cfg)
    table = []
    for label, m, n, k, fmt in SHAPES:
        generator = torch.Generator().manual_seed(m * 7 + n * 3 + k)
        q = quantize(torch.randn(n, k, generator=generator), fmt)
        common = dict(fmt=fmt, group_size=q.group_size, scale_bits=q.scale_bits)
        new = plan_bitmod_matmul(m, n, k, array=array, **common)
        old = plan_bitmod_matmul(m, n, k, array=ArraySpec.of(baseline), **common)
        cycles, old_cycles = measured(new, m, n, k, q, cfg), measured(old, m, n, k, q, baseline)
        floor = bound(m, n, k, get_format(fmt).name, q, cfg)
        os_floor = output_stationary_bound(m, n, k, get_format(fmt).name, q, cfg)
        best = None if label.startswith("LLM") else space_best(m, n, k, q, array)
        table.append(
            {
                "shape": f"{label} {m}x{n}x{k}",
                "format": fmt,
                "schedule": describe(new),
                "pred": int(new.cycles),
                "cycles": cycles,
                "bound": floor,
                "ratio": cycles / floor,
                "OS bound": os_floor,
                "OS ratio": cycles / os_floor,
                "space best": "-" if best is None else f"{best / floor:.2f}x",
                baseline_label: describe(old),
                "its cycles": old_cycles,
                "its ratio": old_cycles / floor,
                "speedup": old_cycles / cycles,
            }
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="a Markdown table")
    parser.add_argument(
        "--max-block-rows",
        type=int,
        default=HardwareConfig().max_block_rows,
        help="rows of partial sums a column accumulator holds (default: the default "
        "machine's); other than the default, the comparison is the default machine",
    )
    parser.add_argument(
        "--act-buffer-kb",
        type=int,
        default=HardwareConfig().act_buffer_bytes // 1024,
        help="activation buffer KiB (default: the default machine's); other than the default, "
        "the comparison is the default machine",
    )
    args = parser.parse_args()
    default = HardwareConfig()
    try:
        cfg = dataclasses.replace(
            default, max_block_rows=args.max_block_rows, act_buffer_bytes=args.act_buffer_kb * 1024
        )
    except ValueError as error:
        parser.error(str(error))
    if cfg == default:
        baseline, baseline_label = dataclasses.replace(cfg, row_groups=1), "no row groups"
    else:
        baseline, baseline_label = default, "default machine"
    table = rows(cfg, baseline, baseline_label)
    headers = list(table[0])

    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.2f}x" if value < 100 else f"{value:,.0f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    lines = [[cell(row[h]) for h in headers] for row in table]
    if args.markdown:
        print("| " + " | ".join(headers) + " |")
        print("|" + "---|" * len(headers))
        for line in lines:
            print("| " + " | ".join(line) + " |")
        return
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    for line in lines:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))


if __name__ == "__main__":
    main()
