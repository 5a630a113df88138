"""The operand buffers' tags: a load of a block the buffer still holds moves nothing.

Hand-worked placements of runtime/arch/trace.py's BufferRegions (docs/rtl.md, "Buffers"), the
tags dropped by ``cfg.*`` and ``st.out``, and whole programs on the machine: the same outputs
bit for bit as a machine without hits (every load forced to miss), fewer DRAM bytes, and the
DRAM bytes the planner's closed form predicts.
"""

from __future__ import annotations

import bitmod.runtime.arch.trace as trace_module
import numpy as np
import pytest
import torch
from bitmod.runtime.arch import timing
from bitmod.runtime.arch.hwconfig import HardwareConfig
from bitmod.runtime.arch.nest import quantized_matmul_program
from bitmod.runtime.arch.schedule import ArraySpec, plan_bitmod_matmul
from bitmod.runtime.arch.trace import (
    ACT_BUFFER,
    REGIONS,
    BufferRegions,
    EngineTrace,
    block_regions,
    block_slots,
)
from bitmod.runtime.emulator.machine import Machine
from bitmod.runtime.formats import quantize


def test_regions_and_slots_by_hand() -> None:
    # 1,600 B: regions of 100 B. 250 B takes 3 regions -> 5 slots at regions 0, 3, 6, 9, 12.
    assert REGIONS == 16
    assert block_regions(250, 1600) == 3 and block_slots(250, 1600) == 5
    assert block_regions(800, 1600) == 8 and block_slots(800, 1600) == 2  # halves
    assert block_regions(801, 1600) == 9 and block_slots(801, 1600) == 1
    assert block_regions(1600, 1600) == 16
    assert block_regions(5, 10) == 16  # fewer than 16 bytes: one slot
    assert list(block_slots(np.array([100, 200, 1600]), 1600)) == [16, 8, 1]


def test_round_robin_placement_hits_and_evictions() -> None:
    buffer = BufferRegions(1600)
    tags = [(0, block, None) for block in range(6)]
    assert [buffer.place(250, tag, "x") for tag in tags[:5]] == [False] * 5
    assert buffer.newest == range(12, 15)
    # Every one of the five is still held: hits, the newest moves to the hit slot.
    assert buffer.place(250, tags[1], "x") and buffer.newest == range(3, 6)
    assert buffer.hits == 1 and buffer.misses == 5
    # The sixth block: miss 5 -> slot 5 mod 5 = 0, evicting block 0 only.
    assert not buffer.place(250, tags[5], "x") and buffer.newest == range(0, 3)
    assert not buffer.place(250, tags[0], "x")  # slot 1: evicts block 1
    assert not buffer.place(250, tags[1], "x")
    assert buffer.place(250, tags[5], "x")
    # The same tag with another block size is another block (it takes other regions).
    assert not buffer.place(500, tags[5], "x")
    # A 500 B block (5 regions, slots at 0, 5, 10): miss 9 -> slot 0 drops the 250 B blocks
    # starting at regions 0 and 3 (both overlap regions 0-4), and the 250 B block 5 at 0.
    assert buffer.newest == range(10, 15)
    held = {tag for tag, _, _ in buffer.heads.values()}
    assert (0, 5, None) in held


def test_a_store_drops_the_act_blocks_of_its_tensor_and_cfg_drops_all() -> None:
    trace = EngineTrace(1 << 16, 1 << 16, 25.6)
    assert not trace.load(ACT_BUFFER, 512, 512, "y", (1, 0, None))
    assert not trace.load(ACT_BUFFER, 512, 512, "x", (0, 0, None))
    assert trace.load(ACT_BUFFER, 512, 512, "y", (1, 0, None))
    trace.mac(10, 2)
    trace.drain(1, 8)
    trace.store("y", 128)
    commands = sum(isinstance(entry, timing.Command) for entry in trace.entries)
    assert not trace.load(ACT_BUFFER, 512, 512, "y", (1, 0, None))  # y was overwritten
    assert trace.load(ACT_BUFFER, 512, 512, "x", (0, 0, None))  # x was not
    assert sum(isinstance(e, timing.Command) for e in trace.entries) == commands + 1
    trace.reconfigure()
    assert not trace.load(ACT_BUFFER, 512, 512, "x", (0, 0, None))


class _NoHits(BufferRegions):
    """A buffer that forgets every block: the machine as it was before the tags."""

    def place(self, block_bytes: int, tag: tuple, tensor: str) -> bool:
        self.heads.clear()
        return super().place(block_bytes, tag, tensor)


def _run(order: str, m: int, n: int, k: int, block_rows: int, kchunk: int):
    config = HardwareConfig(rows=4, cols=4, tiles=2, act_buffer_bytes=16384)
    q = quantize(torch.randn(n, k, generator=torch.Generator().manual_seed(n + k)), "bitmod4")
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(m)).half().numpy()
    program = quantized_matmul_program(
        q, m, config, order=order, block_rows=block_rows, kchunk=kchunk
    )
    return Machine(config).run(program, {"x": x, "w": q}), q, config


@pytest.mark.parametrize(
    ("order", "m", "n", "k", "block_rows", "kchunk"),
    [
        ("weights-resident", 20, 24, 256, 8, 0),  # 3 row blocks, kept for 3 column blocks
        ("acts-resident", 17, 20, 384, 4, 128),  # 2 col blocks x 3 chunks kept for 5 row blocks
        ("k-streamed", 12, 40, 512, 4, 128),  # acts and weights both kept
    ],
)
def test_hits_change_traffic_and_cycles_not_results(
    order: str,
    m: int,
    n: int,
    k: int,
    block_rows: int,
    kchunk: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kept, q, config = _run(order, m, n, k, block_rows, kchunk)
    monkeypatch.setattr(trace_module, "BufferRegions", _NoHits)
    every, _, _ = _run(order, m, n, k, block_rows, kchunk)
    assert every.report.buffer_hits == {"activation": 0, "weight": 0}
    assert sum(kept.report.buffer_hits.values()) > 0
    np.testing.assert_array_equal(kept.outputs["y"], every.outputs["y"])
    assert kept.report.dram_bytes_read < every.report.dram_bytes_read
    assert kept.report.cycles <= every.report.cycles
    # Every operand byte once: what the closed form counts for a kept operand.
    schedule = plan_bitmod_matmul(
        m,
        n,
        k,
        fmt=q.fmt,
        group_size=q.group_size,
        scale_bits=q.scale_bits,
        array=ArraySpec.of(config),
        order=order,
        block_rows=block_rows,
        kchunk=kchunk,
    )
    assert kept.report.dram_bytes_read == schedule.dram_read
