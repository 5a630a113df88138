"""runtime.schedule: block bytes, mac timing, the three loop orders' traffic and the choice.

References: hand-computed bytes and cycles, the formats' own storage definition
(``QuantizedTensor.bits_per_weight``), and a block-by-block walk of each loop order in plain
Python (every load clipped to the tensor, as the machine moves it) for the closed-form sums.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from bitmod.runtime.arch.hwconfig import HardwareConfig
from bitmod.runtime.arch.schedule import (
    ORDERS,
    ArraySpec,
    MacTiming,
    Schedule,
    WeightLayout,
    plan,
    plan_bitmod_matmul,
    plan_matmul,
)
from bitmod.runtime.formats import quantize

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

    read = busy = sram = 0
    if schedule.order == "weights-resident":
        for c0 in col_blocks:
            read += weight(c0, 0, k)
            read += sum(act(r0, 0, k) for r0 in row_blocks)
    elif schedule.order == "acts-resident":
        for r0 in row_blocks:
            read += act(r0, 0, k)
            read += sum(weight(c0, k0, k1) for c0 in col_blocks for k0, k1 in chunks)
    else:
        for c0, r0, (k0, k1) in itertools.product(col_blocks, row_blocks, chunks):
            read += act(r0, k0, k1) + weight(c0, k0, k1)
    for c0, r0, (k0, k1) in itertools.product(col_blocks, row_blocks, chunks):
        passes = math.ceil((min(m, r0 + mr) - r0) / rows)
        busy += sum(int(v) for v in timing.cycles(passes, k1 - k0))
        sram += act(r0, k0, k1) + passes * weight(c0, k0, k1)
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
    elif order == "k-streamed" and kchunk == 0:
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
    common = dict(fmt="bitmod3", group_size=128, scale_bits=8, array=ARRAY)
    for m, n, k in [(1, 4096, 4096), (16, 192, 256), (256, 4096, 4096), (256, 4096, 11008)]:
        chosen = plan_bitmod_matmul(m, n, k, **common)
        others = []
        for order, rows in itertools.product(ORDERS, range(8, 65, 8)):
            try:
                others.append(plan_bitmod_matmul(m, n, k, order=order, block_rows=rows, **common))
            except ValueError:
                continue
        fastest = min(s.cycles for s in others)
        assert chosen.cycles <= 1.01 * fastest
        near = [s for s in others if s.cycles <= 1.01 * fastest]
        assert chosen.dram_read == min(s.dram_read for s in near)
    # A GEMV reads every byte once (the activation vector stays, the weights stream).
    gemv = plan_bitmod_matmul(1, 4096, 4096, **common)
    assert gemv.order == "acts-resident"
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
        ({"block_rows": 72}, "at most the 64 rows the column accumulators hold"),
        ({"order": "diagonal"}, "unknown loop order 'diagonal'"),
        ({"kchunk": -1}, "must be >= 0"),
    ],
)
def test_bad_requests_are_errors(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_bitmod_matmul(
            64, 64, 512, fmt="int8", group_size=128, scale_bits=8, array=ARRAY, **options
        )
