"""runtime.schedule: block bytes, mac timing, the loop orders' traffic and the choice.

References: hand-computed bytes and cycles, the formats' own storage definition
(``QuantizedTensor.bits_per_weight``), and a block-by-block walk of each loop order in plain
Python (every load clipped to the tensor, as the machine moves it) for the closed-form sums.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from bitmod.runtime.arch.hwconfig import HardwareConfig
from bitmod.runtime.arch.loops import matmul_config, matmul_config_length
from bitmod.runtime.arch.nest import matmul_program
from bitmod.runtime.arch.schedule import (
    EXACT_MACS,
    LOOP_DIRECTIONS,
    ORDERS,
    STREAMED_ORDERS,
    ArraySpec,
    MacTiming,
    Schedule,
    WeightLayout,
    plan,
    plan_bitmod_matmul,
    plan_matmul,
    schedule_cycles,
    schedule_trace,
)
from bitmod.runtime.arch.timing import Engine
from bitmod.runtime.emulator.machine import Machine, Report
from bitmod.runtime.formats import get_format, quantize
from bitmod.runtime.formats.bitserial import num_terms
from bitmod.runtime.isa import IsaError

ARRAY = ArraySpec.of(HardwareConfig())


@pytest.mark.parametrize("fmt", ["int8", "int6", "bitmod3", "bitmod4", "int4_asym", "fp3_er_pos"])
def test_weight_bytes_are_the_formats_storage(fmt: str) -> None:
    q = quantize(torch.randn(4, 4096), fmt)
    layout = WeightLayout.of_format(fmt, q.group_size, q.scale_bits)
    assert layout.block_bytes(4, 4096) == 4 * 4096 * q.bits_per_weight / 8


def test_weight_bytes_by_hand() -> None:
    # bitmod3, G = 128, SB = 8: per channel ceil(k·3/8) + ceil(groups·10/8) + 2.
    layout = WeightLayout.of_format("bitmod3", 128, 8)
    assert layout.group_bits == 10
    assert int(layout.block_bytes(128, 3712)) == 128 * (1392 + 37 + 2)
    assert int(layout.block_bytes(1, 100)) == 38 + 2 + 2  # a partial group still has metadata
    # int4_asym, G = 64, SB = 4: zero points at 4 bits a group.
    assert WeightLayout.of_format("int4_asym", 64, 4).group_bits == 4 + 4
    # FP16 group scales (sb = 0) take 16 bits; a per-channel ANT-style operand of 5.25 bits.
    assert WeightLayout.of_format("int8", 32, 0).group_bits == 16
    assert int(WeightLayout(5.25, 128, 0, 2).block_bytes(3, 100)) == 3 * (66 + 2)


def test_mac_timing_by_hand() -> None:
    # The RTL's PE (docs/rtl.md): a group's SB = 8 dequantization cycles, then the column
    # accumulator takes its 8 PEs one a cycle, so groups end >= 16 cycles apart; a mac ends
    # 4 (pipeline) + 8 + 8 cycles after its last step.
    timing = MacTiming.bit_serial("bitmod3", 128, 8, rows=8)  # 2 terms: 64 cycles a group
    assert timing.group_stall == 0
    assert tuple(int(v) for v in timing.cycles(2, 256)) == (2 * 64 * 2, 20)
    short = MacTiming.bit_serial("bitmod3", 8, 8, rows=8)  # 2 cycles x 2 steps = 4 < 16
    assert short.group_stall == 12
    assert tuple(int(v) for v in short.cycles(1, 64)) == (32, 7 * 12 + 20)
    assert tuple(int(v) for v in short.cycles(3, 64)) == (96, 23 * 12 + 20)
    assert tuple(int(v) for v in MacTiming.bit_serial("bitmod3", 8, 8, rows=2).cycles(1, 64)) == (
        32,
        7 * 6 + 4 + 8 + 2,
    )
    assert MacTiming.bit_serial("int8", 128, 8, rows=8).step_cycles == 4
    assert MacTiming.bit_serial("int6", 128, 8, rows=8).step_cycles == 3


def tile_groups(
    channels: int,
    cols: int = HardwareConfig().cols,
    tiles: int = HardwareConfig().tiles,
    limit: int = HardwareConfig().row_groups,
) -> int:
    """Groups of ``tiles`` tiles of ``cols`` columns (default: the default machine's) a block
    of ``channels`` channels runs different row passes on: tiles per group the power of two
    that holds the channels, groups the power of two (at most ``limit``) of such groups that
    fit (a plain reference for ``rules.row_groups``)."""
    width = 1
    while width * cols < channels:
        width *= 2
    groups = 1
    while 2 * groups <= limit and 2 * groups * width <= tiles:
        groups *= 2
    return groups


def walk(schedule: Schedule, m: int, n: int, k: int, layout: WeightLayout, rows: int, cols: int):
    """(DRAM read, PE busy cycles, buffer reads) by walking the schedule's loops block by block."""
    timing = MacTiming.bit_serial("bitmod3", layout.group_size, 8, ARRAY.rows)
    mr, kc = schedule.block_rows, schedule.kc
    row_blocks = range(0, m, mr)
    col_blocks = range(0, n, cols)
    chunks = [(k0, min(k, k0 + kc)) for k0 in range(0, k, kc)]

    def act(r0: int, k0: int, k1: int) -> int:
        return 2 * (min(m, r0 + mr) - r0) * (k1 - k0)

    def weight(c0: int, k0: int, k1: int) -> int:
        return (min(n, c0 + cols) - c0) * int(layout.channel_block_bytes(k1 - k0))

    def buffer(block_bytes: int, capacity: int) -> Callable[[tuple], bool]:
        """A buffer of 16 regions holding the blocks last placed, round robin: True on a
        hit. Slots of ceil(16·B/capacity) regions each."""
        slots = 16 // min(16, math.ceil(block_bytes / (capacity // 16)))
        held: list[tuple | None] = [None] * slots
        misses = 0

        def lookup(tag: tuple) -> bool:
            nonlocal misses
            if tag in held:
                return True
            held[misses % slots] = tag
            misses += 1
            return False

        return lookup

    act_kc = kc if schedule.order in STREAMED_ORDERS else k
    acts = buffer(2 * mr * act_kc, ARRAY.act_buffer)
    weights = buffer(int(layout.block_bytes(cols, schedule.kc)), ARRAY.weight_buffer)
    read = busy = sram = 0
    if schedule.order == "weights-resident":
        for c0 in col_blocks:
            read += weight(c0, 0, k)
            read += sum(act(r0, 0, k) for r0 in row_blocks if not acts((r0, 0)))
    elif schedule.order == "acts-resident":
        for r0 in row_blocks:
            read += act(r0, 0, k)
            for c0, (k0, k1) in itertools.product(col_blocks, chunks):
                read += 0 if weights((c0, k0)) else weight(c0, k0, k1)
    elif schedule.order == "k-streamed-rows":
        for r0, c0, (k0, k1) in itertools.product(row_blocks, col_blocks, chunks):
            read += 0 if acts((r0, k0)) else act(r0, k0, k1)
            read += 0 if weights((c0, k0)) else weight(c0, k0, k1)
    else:
        for c0, r0, (k0, k1) in itertools.product(col_blocks, row_blocks, chunks):
            read += 0 if acts((r0, k0)) else act(r0, k0, k1)
            read += 0 if weights((c0, k0)) else weight(c0, k0, k1)
    for c0, r0, (k0, k1) in itertools.product(col_blocks, row_blocks, chunks):
        passes = math.ceil((min(m, r0 + mr) - r0) / rows)
        sweeps = math.ceil(passes / tile_groups(min(n, c0 + cols) - c0))
        busy += sum(int(v) for v in timing.cycles(sweeps, k1 - k0))
        sram += act(r0, k0, k1) + sweeps * weight(c0, k0, k1)
    return read, busy, sram + 2 * m * n


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize(
    ("m", "n", "k", "block_rows", "kchunk"),
    [
        (1, 300, 512, 8, 128),
        (37, 129, 1024, 16, 384),
        (256, 1000, 4096, 32, 1408),
        (9, 9, 256, 24, 0),
    ],
)
def test_closed_form_traffic_and_compute_match_a_block_walk(
    order: str, m: int, n: int, k: int, block_rows: int, kchunk: int
) -> None:
    if order == "weights-resident":
        kchunk = 0
    elif order in STREAMED_ORDERS and kchunk == 0:
        kchunk = 128
    layout = WeightLayout.of_format("bitmod3", 128, 8)
    schedule = plan_bitmod_matmul(
        m,
        n,
        k,
        fmt="bitmod3",
        group_size=128,
        scale_bits=8,
        array=ARRAY,
        order=order,
        block_rows=block_rows,
        kchunk=kchunk,
    )
    assert schedule.order == order and schedule.block_rows == block_rows
    read, busy, sram = walk(schedule, m, n, k, layout, ARRAY.rows, ARRAY.columns)
    assert schedule.dram_read == read
    assert schedule.dram_written == 2 * m * n
    assert schedule.compute_cycles == busy
    plans = plan(
        m,
        n,
        k,
        ARRAY,
        layout,
        MacTiming.bit_serial("bitmod3", 128, 8, ARRAY.rows),
        order=order,
        block_rows=block_rows,
        kchunk=kchunk,
    )
    assert plans.sram_read[0] == sram
    # Cycles: never less than the compute or the DRAM transfers.
    bytes_moved = read + 2 * m * n
    assert schedule.cycles >= max(busy, bytes_moved / ARRAY.dram_bytes_per_cycle)


def test_buffers_limit_the_blocks() -> None:
    # The down projection of Llama-2-7B: nothing of all of K fits, so the orders left
    # stream weights in chunks; the act-resident one has at most 23 rows of 11008.
    common = dict(fmt="bitmod3", group_size=128, scale_bits=8, array=ARRAY)
    with pytest.raises(ValueError, match="no weights-resident with 8-row blocks fits"):
        plan_bitmod_matmul(256, 4096, 11008, order="weights-resident", **common)
    acts = plan_bitmod_matmul(256, 4096, 11008, order="acts-resident", **common)
    assert acts.block_rows == 16 and acts.act_slots == 1
    assert acts.act_block_bytes == 16 * 11008 * 2 <= ARRAY.act_buffer < 2 * acts.act_block_bytes
    assert 2 * acts.weight_block_bytes <= ARRAY.weight_buffer
    with pytest.raises(ValueError, match="no acts-resident with 24-row blocks fits"):
        plan_bitmod_matmul(256, 4096, 11008, order="acts-resident", block_rows=24, **common)


def test_the_choice_is_the_fastest_and_then_the_leanest() -> None:
    # The rule, on the closed-form cycles (exact=False: every plan priced the same way).
    common = dict(fmt="bitmod3", group_size=128, scale_bits=8, array=ARRAY, exact=False)
    for m, n, k in [(1, 4096, 4096), (16, 192, 256), (256, 4096, 4096), (256, 4096, 11008)]:
        chosen = plan_bitmod_matmul(m, n, k, **common)
        others = []
        for order, rows in itertools.product(
            ORDERS, range(ARRAY.rows, ARRAY.max_block_rows + 1, ARRAY.rows)
        ):
            try:
                others.append(plan_bitmod_matmul(m, n, k, order=order, block_rows=rows, **common))
            except ValueError:
                continue
        fastest = min(s.cycles for s in others)
        assert chosen.cycles <= 1.01 * fastest
        near = [s for s in others if s.cycles <= 1.01 * fastest]
        assert chosen.dram_read == min(s.dram_read for s in near)
    # A GEMV reads every byte once: the activation vector stays (acts-resident) or is a hit
    # in the act buffer for every column block after the first (weights-resident).
    gemv = plan_bitmod_matmul(1, 4096, 4096, **(common | {"exact": True}))
    assert gemv.order in ("acts-resident", "weights-resident")
    assert gemv.dram_read == 4096 * (1536 + 40 + 2) + 4096 * 2


def test_vectorized_plans_equal_one_by_one() -> None:
    shapes = [(1, 4096, 4096), (256, 4096, 11008), (7, 33, 640), (256, 11008, 4096)]
    layout = WeightLayout.of_format("int6", 128, 8)
    timing = MacTiming.bit_serial("int6", 128, 8, ARRAY.rows)
    m, n, k = (np.array(v) for v in zip(*shapes, strict=True))
    plans = plan(m, n, k, ARRAY, layout, timing)
    for i, (mi, ni, ki) in enumerate(shapes):
        one = plan_matmul(mi, ni, ki, array=ARRAY, layout=layout, timing=timing)
        assert plans.schedule(i) == one


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"kchunk": 96}, "K chunk 96 is not a multiple of the group size 128"),
        ({"block_rows": 12}, "blocks of 12 rows must be a multiple of the 8 PE rows"),
        ({"block_rows": 136}, "at most the 128 rows the column accumulators hold"),
        ({"order": "diagonal"}, "unknown loop order 'diagonal'"),
        ({"kchunk": -1}, "must be >= 0"),
    ],
)
def test_bad_requests_are_errors(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_bitmod_matmul(
            64, 64, 512, fmt="int8", group_size=128, scale_bits=8, array=ARRAY, **options
        )


# --------------------------------------------------------------------------------------
# The planner's cycles are the machine's (issue 14, item 16)
# --------------------------------------------------------------------------------------


def machine_run(
    fmt: str, m: int, n: int, k: int, config: HardwareConfig | None = None, **force
) -> tuple[Schedule, Report]:
    """The planner's schedule (``force``: parts of it forced; ``rows_down`` / ``cols_down``
    force the program's block loops only) and the machine's report of its program, run in
    timing-only mode."""
    config = config or HardwareConfig()
    q = quantize(torch.randn(n, k, generator=torch.Generator().manual_seed(m + n + k)), fmt)
    options = dict(fmt=fmt, group_size=q.group_size, scale_bits=q.scale_bits)
    planning = {key: value for key, value in force.items() if key not in ("rows_down", "cols_down")}
    schedule = plan_bitmod_matmul(m, n, k, array=ArraySpec.of(config), **options, **planning)
    program = matmul_program(
        act="x", weight="w", out="y", m=m, n=n, k=k, config=config, **options, **force
    )
    memory = {"x": np.zeros((m, k), np.float16), "w": q}
    return schedule, Machine(config).run(program, memory, compute=False).report


def machine_cycles(
    fmt: str, m: int, n: int, k: int, config: HardwareConfig | None = None, **force
) -> tuple[Schedule, int]:
    """:func:`machine_run`'s schedule and the machine's cycles."""
    schedule, report = machine_run(fmt, m, n, k, config, **force)
    return schedule, report.cycles


def random_shapes(count: int, seed: int) -> list[tuple[str, int, int, int]]:
    rng = np.random.default_rng(seed)
    formats = ["int8", "bitmod3", "bitmod4", "int6", "int4_asym"]
    return [
        (
            formats[int(rng.integers(len(formats)))],
            int(rng.integers(1, 160)),
            int(rng.integers(1, 300)),
            int(rng.choice([64, 100, 256, 384, 1000, 1024])),
        )
        for _ in range(count)
    ]


@pytest.mark.parametrize(("fmt", "m", "n", "k"), random_shapes(12, seed=14))
def test_the_planned_cycles_are_the_machines(fmt: str, m: int, n: int, k: int) -> None:
    schedule, cycles = machine_cycles(fmt, m, n, k)
    assert schedule.m_blocks * schedule.n_blocks * schedule.k_chunks <= EXACT_MACS
    assert schedule.cycles == cycles


@pytest.mark.parametrize(
    ("order", "block_rows", "kchunk"),
    [
        ("weights-resident", 24, 0),
        ("acts-resident", 16, 128),
        ("k-streamed", 40, 256),
        ("k-streamed-rows", 32, 256),
    ],
)
def test_every_schedule_is_timed_as_the_machine_runs_it(
    order: str, block_rows: int, kchunk: int
) -> None:
    # A forced schedule, ragged in every dimension, at two bandwidths (one a long fraction).
    for config in (HardwareConfig(), HardwareConfig(dram_bytes_per_cycle=9.7)):
        force = dict(order=order, block_rows=block_rows, kchunk=kchunk)
        schedule, cycles = machine_cycles("bitmod3", 83, 300, 700, config, **force)
        array = ArraySpec.of(config)
        layout = WeightLayout.of_format("bitmod3", 128, 8)
        timing = MacTiming.bit_serial("bitmod3", 128, 8, array.rows)
        special = len(get_format("bitmod3").special_values)
        assert schedule_cycles(schedule, 83, 300, 700, array, layout, timing, special) == cycles
        assert schedule.cycles == cycles
        # Either block loop counting down (83 rows and 300 channels leave short last blocks).
        for rows_down, cols_down in LOOP_DIRECTIONS:
            directed = dataclasses.replace(schedule, rows_down=rows_down, cols_down=cols_down)
            _, directed_cycles = machine_cycles(
                "bitmod3", 83, 300, 700, config, rows_down=rows_down, cols_down=cols_down, **force
            )
            predicted = schedule_cycles(directed, 83, 300, 700, array, layout, timing, special)
            assert predicted == directed_cycles


def test_a_narrow_last_column_block_runs_first() -> None:
    """37 x 129 x 1000 INT8 (issue 14, item 16): the 129th channel is a column block of its
    own. Its 74 KB of activations, loaded after the full block's compute, cannot overlap
    anything; with the column loop counting down (``loop.down``) they load first, while the
    full block's weights are still to come, and the GEMM is within 1.15x of its bound."""
    # DRAM: 2 x 37 x 1000 B of activations, 129 x (1000 + 8 + 2) B of INT8 weights (codes,
    # a scale a group of 128, the channel scale), 2 x 37 x 129 B of outputs, at 25.6 B/cycle.
    bound = math.ceil((74_000 + 129 * 1010 + 9_546) / 25.6)
    assert bound == 8353
    schedule, cycles = machine_cycles("int8", 37, 129, 1000)
    assert (schedule.cols_down, schedule.rows_down) == (True, False)
    assert schedule.cycles == cycles <= 1.15 * bound
    counting_up = machine_cycles("int8", 37, 129, 1000, cols_down=False)[1]
    assert counting_up > 1.15 * bound
    # The first store is the narrow block's, 37 rows x 1 channel x 2 B = 74 B (3 cycles at
    # 25.6 B/cycle), then the full block's 37 x 128 x 2 = 9,472 B (370 cycles).
    array, layout = ArraySpec.of(HardwareConfig()), WeightLayout.of_format("int8", 128, 8)
    timing = MacTiming.bit_serial("int8", 128, 8, array.rows)
    trace = schedule_trace(schedule, 37, 129, 1000, array, layout, timing)
    stores = [entry for entry in trace.entries if getattr(entry, "engine", None) is Engine.STORE]
    assert [store.duration for store in stores] == [3, 370]


def test_blocks_of_one_size_keep_their_loops_counting_up() -> None:
    # Blocks of one size (256 channels: two full column blocks; 16 or 64 rows in whole
    # blocks) take the same cycles in either order, so no loop.down is a candidate.
    for m, n in [(64, 256), (16, 64)]:
        schedule, _ = machine_cycles("int8", m, n, 256)
        assert not schedule.rows_down and not schedule.cols_down


def test_config_length_is_the_configs() -> None:
    for special, block_rows in [(0, 8), (1, 8), (4, 32)]:
        code = matmul_config(
            rows=8,
            cols=8,
            tiles=16,
            fmt="bitmod3",
            scale_bits=8,
            group_size=128,
            special_values=[1] * special,
            kc=128,
            block_rows=block_rows,
        )
        assert matmul_config_length(special_values=special, block_rows=block_rows, rows=8) == len(
            code
        )


def test_a_small_int8_gemm_is_within_115_percent_of_its_bound() -> None:
    # 64 x 96 x 1024 INT8 (issue 14): 8 row passes x 256 steps x 4 cycles = 8,192 cycles of
    # MACs; 131,072 B of activations + 96 x (1024 + 8 + 2) B of weights + 12,288 B of outputs
    # = 242,624 B over 25.6 B a cycle = 9,478 cycles: DRAM-bound. The weights-resident plan
    # of before waits for all the weights first (12,951 cycles); k-streamed chunks of 128 do
    # not (k-streamed with 64 rows: 10,654 cycles; 56 rows reads the same bytes, within 1 %).
    schedule, cycles = machine_cycles("int8", 64, 96, 1024)
    assert math.ceil((131_072 + 96 * 1034 + 12_288) / 25.6) == 9478
    assert cycles <= 1.15 * 9478
    assert (schedule.order, schedule.kc) == ("k-streamed", 128)
    assert (
        cycles
        <= 1.01
        * machine_cycles("int8", 64, 96, 1024, order="k-streamed", block_rows=64, kchunk=128)[1]
    )


@pytest.mark.parametrize(
    ("fmt", "m", "n", "k"),
    [("int8", 64, 96, 1024), ("bitmod3", 37, 129, 1000), ("int4_asym", 200, 17, 768)],
)
def test_no_schedule_of_the_space_is_faster_on_the_machine(
    fmt: str, m: int, n: int, k: int
) -> None:
    # Every order, a spread of block rows and K chunks, each measured on the machine: the
    # choice is within NEAR_FASTEST (1 %) of the fastest.
    chosen, chosen_cycles = machine_cycles(fmt, m, n, k)
    measured = []
    for order, rows, kchunk in itertools.product(ORDERS, (8, 32, 64), (0, 128, 256)):
        if order == "weights-resident" and kchunk:
            continue
        try:
            measured.append(
                machine_cycles(fmt, m, n, k, order=order, block_rows=rows, kchunk=kchunk)[1]
            )
        except (ValueError, IsaError):
            continue  # does not fit, or more rows than M needs
    assert len(measured) >= 10
    assert chosen_cycles <= 1.01 * min(measured)


def test_rows_outside_k_streaming_keeps_each_row_blocks_chunks() -> None:
    """256x256x1024 BitMoD3 (compute-bound, two column blocks): with the row block loop
    outside and both operands in K chunks, a row block's activation chunks are buffer hits for
    its second column block, so every byte moves once, and the first mac waits for one chunk
    of the first rows instead of a block of all of K: faster on the machine than the best of
    the other orders, and within 1.15x of max(compute, DRAM) (BENCHMARKS.md section 14)."""
    m, n, k = 256, 256, 1024
    config = HardwareConfig()
    chosen, report = machine_run("bitmod3", m, n, k)
    cycles = report.cycles
    assert chosen.order == "k-streamed-rows" and chosen.k_chunks > 1 and chosen.n_blocks == 2
    layout = WeightLayout.of_format("bitmod3", 128, 8)
    weights = sum(
        int(layout.block_bytes(n, min(chosen.kc, k - k0))) for k0 in range(0, k, chosen.kc)
    )
    assert report.dram_bytes_read == 2 * m * k + weights  # each chunk block once
    others = []
    for order, rows, kchunk in itertools.product(ORDERS[:3], (8, 16, 32, 64), (0, 256, 512)):
        try:
            others.append(
                machine_cycles("bitmod3", m, n, k, order=order, block_rows=rows, kchunk=kchunk)[1]
            )
        except (ValueError, IsaError):
            continue
    assert len(others) >= 12
    assert cycles < min(others)
    compute = 2 * (m // config.rows) * (k // 4) * num_terms("bitmod3")
    assert cycles <= 1.15 * compute


@pytest.mark.parametrize(
    ("fmt", "m", "n", "k", "bound"),
    [
        # DRAM-bound: 2 x 128 x 1024 B of activations + 128 x (1024 + 8 + 2) B of INT8
        # weights (codes, a scale a group of 128, the channel scale) + 2 x 128 x 128 B of
        # outputs = 427,264 B at 25.6 B/cycle = 16,690 cycles (compute: 16 row passes x 256
        # steps x 4 terms = 16,384).
        ("int8", 128, 128, 1024, 16_690),
        # Compute-bound: 2 column blocks x 16 row passes x 512 steps x 3 terms = 49,152
        # cycles (DRAM: 524,288 + 256 x (1536 + 16 + 2) + 65,536 B = 38,580 cycles).
        ("int6", 128, 256, 2048, 49_152),
    ],
)
def test_balanced_gemms_are_within_115_percent_of_their_bound(
    fmt: str, m: int, n: int, k: int, bound: int
) -> None:
    """Issue 14, item 16, on the balanced GEMMs of BENCHMARKS.md section 14. An output-
    stationary array finishes its first output block before any other, and that block's last
    mac waits for all of its bytes; with 64-row accumulators the first block is half of these
    GEMMs' traffic while only it computes, so no schedule of that machine meets 1.15x (its
    ``OS bound``, bench/schedule_quality.py). The default 128-row accumulators do."""
    schedule, cycles = machine_cycles(fmt, m, n, k)
    assert schedule.block_rows > 64
    assert schedule.cycles == cycles <= 1.15 * bound
    _, shallow = machine_cycles(fmt, m, n, k, HardwareConfig(max_block_rows=64))
    assert shallow > 1.15 * bound


@pytest.mark.parametrize(("depth", "row_blocks"), [(64, 4), (128, 2)])
def test_a_deep_reduction_rereads_both_operands(depth: int, row_blocks: int) -> None:
    """The FFN down projection of a 7B prefill (docs/schedule.md, "When neither operand fits"):
    a row block's activations of all of K and a column block's weights both exceed their
    512 KB buffers, so the planner's k-streamed schedule reads the activations once per column
    block and the weights once per row block, which deeper accumulators make fewer."""
    m, n, k = 256, 4096, 11008
    config = HardwareConfig(max_block_rows=depth)
    layout = WeightLayout.of_format("bitmod4", 128, 8)
    assert 2 * 64 * k > config.act_buffer_bytes
    assert layout.block_bytes(config.cols * config.tiles, k) > config.weight_buffer_bytes
    schedule = plan_bitmod_matmul(
        m, n, k, array=ArraySpec.of(config), fmt="bitmod4", group_size=128, scale_bits=8
    )
    assert (schedule.order, schedule.block_rows) == ("k-streamed", depth)
    one_sweep_of_weights = sum(
        int(layout.block_bytes(n, min(schedule.kc, k - k0))) for k0 in range(0, k, schedule.kc)
    )
    column_blocks = n // (config.cols * config.tiles)
    assert schedule.dram_read == column_blocks * 2 * m * k + row_blocks * one_sweep_of_weights
    assert schedule.dram_written == 2 * m * n
