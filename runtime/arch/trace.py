"""The engine commands of block operations: one definition for the machine and the planner.

The machine (:mod:`bitmod.runtime.emulator.machine`) hands every instruction it executes to an
:class:`EngineTrace`, and so does the planner (:mod:`bitmod.runtime.arch.schedule`) when it
times a schedule's code without data; :func:`bitmod.runtime.arch.timing.simulate` then counts
the cycles of the trace. A ``ld.*``, ``mac``, ``drain`` or ``st.out`` becomes the command the
RTL controller snapshots (docs/rtl.md, "The controller"):

* a load whose block the buffer still holds (:class:`BufferRegions`, a *hit*) moves nothing:
  it is one controller cycle and makes that block the newest;
* any other load waits for the last ``mac`` that read the buffer regions it overwrites and for
  the last ``st.out`` to the tensor it reads (read after write);
* a ``mac`` waits for every load issued before it (its blocks are the newest two) and for every
  ``drain`` issued before it to have started (it owns the accumulators then);
* a ``drain`` waits for every ``mac`` issued before it and for the store that read its
  output-buffer slot two drains ago; it may start ``ROWS`` cycles before the last mac ends,
  because the mac's column accumulators write the C rows of its last K group one a cycle,
  row ``r`` in cycle ``E − ROWS − 1 + r`` (``E`` the mac's end), and the drain reads row ``d``
  in cycle ``D + d``: ``D = E − ROWS`` reads each row in the cycle after its last write;
* a ``st.out`` waits for the drain issued before it to have started and for the last load
  from the tensor it overwrites (write after read); it reads the output block in its last
  busy cycle, so it may start ``duration − 1`` cycles before that drain ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from bitmod.runtime.arch import timing

__all__ = [
    "ACT_BUFFER",
    "REGIONS",
    "WEIGHT_BUFFER",
    "BlockTag",
    "BufferRegions",
    "EngineTrace",
    "block_regions",
    "block_slots",
]

#: Indices of the two operand buffers in :attr:`EngineTrace.buffers`.
ACT_BUFFER, WEIGHT_BUFFER = 0, 1
#: Regions of an operand buffer: a block takes whole regions, and the buffer keeps a tag per
#: block it holds (docs/rtl.md, "Buffers").
REGIONS = 16

#: What a block holds: its descriptor, its block index along rows / channels and its K chunk
#: (None: all of K). Within one configuration (``cfg.*`` clears the tags) it names the bytes.
BlockTag = tuple[int, int, int | None]


def block_regions(block_bytes: Any, capacity: int) -> Any:
    """``r = min(REGIONS, ceil(B / (capacity // REGIONS)))``: the regions a block of ``B``
    bytes takes (all of them in a buffer of fewer than ``REGIONS`` bytes); numpy-friendly."""
    region = capacity // REGIONS
    if region == 0:
        return np.minimum(REGIONS, np.maximum(block_bytes, REGIONS))
    return np.minimum(REGIONS, -(-block_bytes // region))


def block_slots(block_bytes: Any, capacity: int) -> Any:
    """``S = REGIONS // r``: the blocks of ``block_bytes`` the buffer holds at once."""
    return REGIONS // block_regions(block_bytes, capacity)


@dataclass
class BufferRegions:
    """A buffer of :data:`REGIONS` regions of ``capacity // REGIONS`` bytes.

    A block of ``B`` bytes takes ``r = min(REGIONS, ceil(B / region))`` regions, so the buffer
    has ``S = REGIONS // r`` slots of ``r`` regions; slot ``s`` starts at region ``s·r``. A
    load whose tag a slot of the same ``r`` holds is a hit: no transfer, that slot is the
    newest. Otherwise the block goes to slot ``misses mod S`` (misses since the start; the
    tags of every block it overlaps are dropped). ``last_reader[q]`` is the last mac (1-based
    issue number) that read region ``q``. Two slots when two blocks fit, one when one does:
    the double buffering of a buffer in halves, with more slots for smaller blocks.
    """

    capacity: int
    misses: int = 0
    hits: int = 0
    last_reader: list[int] = field(default_factory=lambda: [0] * REGIONS)
    heads: dict[int, tuple[BlockTag, int, str]] = field(default_factory=dict)
    newest: range = range(0)

    def place(self, block_bytes: int, tag: BlockTag, tensor: str) -> bool:
        """Make the block the newest; True when the buffer holds it already (a hit), else it
        takes slot ``misses mod S`` (the caller has checked that it fits the buffer)."""
        r = int(block_regions(block_bytes, self.capacity))
        for first, (held, held_regions, _) in self.heads.items():
            if held == tag and held_regions == r:
                self.hits += 1
                self.newest = range(first, first + r)
                return True
        first = (self.misses % (REGIONS // r)) * r
        self.misses += 1
        self.newest = range(first, first + r)
        self.heads = {
            head: held
            for head, held in self.heads.items()
            if head + held[1] <= first or head >= first + r
        }
        self.heads[first] = (tag, r, tensor)
        return False

    def forget(self, tensor: str | None = None) -> None:
        """Drop the tags of every block (of ``tensor``'s blocks only, when given)."""
        self.heads = {
            head: held
            for head, held in self.heads.items()
            if tensor is not None and held[2] != tensor
        }


class EngineTrace:
    """Every executed instruction of a run as a :func:`timing.simulate` trace entry."""

    def __init__(self, act_buffer: int, weight_buffer: int, dram_bytes_per_cycle: float) -> None:
        self.entries: list[timing.Command | None | str] = []
        self.buffers = (BufferRegions(act_buffer), BufferRegions(weight_buffer))
        self.dram_rate = timing.dram_fraction(dram_bytes_per_cycle)
        self.issued = dict.fromkeys(timing.Engine, 0)
        self.last_store: dict[str, int] = {}  # per tensor: the last st.out to it (1-based)
        self.last_load: dict[str, int] = {}  # per tensor: the last load from it
        self.out_store = [0, 0]  # per output-buffer slot: the st.out that read it
        self.out_slot = 0  # the slot of the newest drain

    def __len__(self) -> int:
        return len(self.entries)

    def control(self) -> None:
        """One cycle of the controller's own (``cfg.*``, ``loop``, ``acc.clr``, ...)."""
        self.entries.append(timing.CONTROL)

    def halt(self) -> None:
        self.entries.append(timing.HALT)

    def _command(self, engine: timing.Engine, command: timing.Command) -> None:
        self.entries.append(command)
        self.issued[engine] += 1

    def reconfigure(self) -> None:
        """A ``cfg.array``, ``cfg.fmt``, ``cfg.kchunk`` or ``cfg.mblock``: the block tags no
        longer name the same bytes. One controller cycle."""
        for buffer in self.buffers:
            buffer.forget()
        self.control()

    def load(self, buffer: int, block_bytes: int, nbytes: int, tensor: str, tag: BlockTag) -> bool:
        """A block of ``block_bytes`` of buffer space (``nbytes`` of it inside ``tensor``);
        True when the buffer holds it already (one controller cycle, nothing moved)."""
        regions = self.buffers[buffer]
        if regions.place(block_bytes, tag, tensor):
            self.control()
            return True
        needs = (
            (timing.Counter.MACS_DONE, max(regions.last_reader[q] for q in regions.newest)),
            (timing.Counter.STORES_DONE, self.last_store.get(tensor, 0)),
        )
        duration = timing.transfer_cycles(nbytes, *self.dram_rate)
        self._command(timing.Engine.LOAD, timing.Command(timing.Engine.LOAD, duration, needs))
        self.last_load[tensor] = self.issued[timing.Engine.LOAD]
        return False

    def mac(self, compute: int, tail: int) -> None:
        """A mac of ``compute`` MAC-step cycles and a ``tail`` of dequantization."""
        needs = (
            (timing.Counter.LOADS_DONE, self.issued[timing.Engine.LOAD]),
            (timing.Counter.DRAINS_STARTED, self.issued[timing.Engine.DRAIN]),
        )
        command = timing.Command(timing.Engine.PE, compute + tail, needs, compute)
        self._command(timing.Engine.PE, command)
        for buffer in self.buffers:
            for region in buffer.newest:
                buffer.last_reader[region] = self.issued[timing.Engine.PE]

    def drain(self, sweeps: int, array_rows: int) -> None:
        """A drain of a block the macs swept ``sweeps`` times: ``array_rows`` cycles a sweep,
        one C row of every tile group a cycle (``rules.row_groups``)."""
        slot = self.issued[timing.Engine.DRAIN] % 2
        needs = (
            (timing.Counter.MACS_DONE, self.issued[timing.Engine.PE], array_rows),
            (timing.Counter.STORES_DONE, self.out_store[slot]),
        )
        duration = sweeps * array_rows
        self._command(timing.Engine.DRAIN, timing.Command(timing.Engine.DRAIN, duration, needs))
        self.out_slot = slot

    def store(self, tensor: str, nbytes: int) -> None:
        """The newest drained block, ``nbytes`` of it, into ``tensor``."""
        duration = timing.transfer_cycles(nbytes, *self.dram_rate)
        drains = self.issued[timing.Engine.DRAIN]
        needs = (
            (timing.Counter.DRAINS_STARTED, drains),
            (timing.Counter.DRAINS_DONE, drains, duration - 1),
            (timing.Counter.LOADS_DONE, self.last_load.get(tensor, 0)),
        )
        self._command(timing.Engine.STORE, timing.Command(timing.Engine.STORE, duration, needs))
        self.out_store[self.out_slot] = self.issued[timing.Engine.STORE]
        self.last_store[tensor] = self.issued[timing.Engine.STORE]
        self.buffers[ACT_BUFFER].forget(tensor)  # its blocks in the act buffer are stale

    def simulate(self) -> timing.TimingResult:
        return timing.simulate(self.entries)
