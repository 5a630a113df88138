"""The engine commands of block operations: one definition for the machine and the planner.

The machine (:mod:`bitmod.runtime.emulator.machine`) hands every instruction it executes to an
:class:`EngineTrace`, and so does the planner (:mod:`bitmod.runtime.arch.schedule`) when it
times a schedule's code without data; :func:`bitmod.runtime.arch.timing.simulate` then counts
the cycles of the trace. A ``ld.*``, ``mac``, ``drain`` or ``st.out`` becomes the command the
RTL controller snapshots (docs/rtl.md, "The controller"):

* a load waits for the last ``mac`` that read the buffer halves it overwrites and for the last
  ``st.out`` to the tensor it reads (read after write);
* a ``mac`` waits for every load issued before it (its blocks are the newest two) and for every
  ``drain`` issued before it to have started (it owns the accumulators then);
* a ``drain`` waits for every ``mac`` issued before it and for the store that read its
  output-buffer slot two drains ago;
* a ``st.out`` waits for the drains issued before it and for the last load from the tensor it
  overwrites (write after read).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bitmod.runtime.arch import timing

__all__ = ["ACT_BUFFER", "WEIGHT_BUFFER", "BufferHalves", "EngineTrace"]

#: Indices of the two operand buffers in :attr:`EngineTrace.buffers`.
ACT_BUFFER, WEIGHT_BUFFER = 0, 1


@dataclass
class BufferHalves:
    """A buffer of two halves: a block takes one half (two slots) when two blocks fit, else
    both. ``last_reader[h]`` is the last mac (1-based issue number) that read half ``h``."""

    capacity: int
    loads: int = 0
    last_reader: list[int] = field(default_factory=lambda: [0, 0])
    newest: tuple[int, ...] = ()  # the halves of the newest block

    def place(self, block_bytes: int) -> tuple[int, ...]:
        """The halves the next block of ``block_bytes`` takes (slot ``loads mod slots``);
        the caller has checked that it fits the buffer."""
        slots = 2 if 2 * block_bytes <= self.capacity else 1
        halves = (self.loads % 2,) if slots == 2 else (0, 1)
        self.loads += 1
        self.newest = halves
        return halves


class EngineTrace:
    """Every executed instruction of a run as a :func:`timing.simulate` trace entry."""

    def __init__(self, act_buffer: int, weight_buffer: int, dram_bytes_per_cycle: float) -> None:
        self.entries: list[timing.Command | None | str] = []
        self.buffers = (BufferHalves(act_buffer), BufferHalves(weight_buffer))
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

    def load(self, buffer: int, block_bytes: int, nbytes: int, tensor: str) -> None:
        """A block of ``block_bytes`` of buffer space (``nbytes`` of it inside ``tensor``)."""
        halves_of = self.buffers[buffer]
        halves = halves_of.place(block_bytes)
        needs = (
            (timing.Counter.MACS_DONE, max(halves_of.last_reader[h] for h in halves)),
            (timing.Counter.STORES_DONE, self.last_store.get(tensor, 0)),
        )
        duration = timing.transfer_cycles(nbytes, *self.dram_rate)
        self._command(timing.Engine.LOAD, timing.Command(timing.Engine.LOAD, duration, needs))
        self.last_load[tensor] = self.issued[timing.Engine.LOAD]

    def mac(self, compute: int, tail: int) -> None:
        """A mac of ``compute`` MAC-step cycles and a ``tail`` of dequantization."""
        needs = (
            (timing.Counter.LOADS_DONE, self.issued[timing.Engine.LOAD]),
            (timing.Counter.DRAINS_STARTED, self.issued[timing.Engine.DRAIN]),
        )
        command = timing.Command(timing.Engine.PE, compute + tail, needs, compute)
        self._command(timing.Engine.PE, command)
        for buffer in self.buffers:
            for half in buffer.newest:
                buffer.last_reader[half] = self.issued[timing.Engine.PE]

    def drain(self, rows: int, array_rows: int) -> None:
        """A drain of ``rows`` output rows: a row a cycle per pass of ``array_rows``."""
        slot = self.issued[timing.Engine.DRAIN] % 2
        needs = (
            (timing.Counter.MACS_DONE, self.issued[timing.Engine.PE]),
            (timing.Counter.STORES_DONE, self.out_store[slot]),
        )
        duration = -(-rows // array_rows) * array_rows
        self._command(timing.Engine.DRAIN, timing.Command(timing.Engine.DRAIN, duration, needs))
        self.out_slot = slot

    def store(self, tensor: str, nbytes: int) -> None:
        """The newest drained block, ``nbytes`` of it, into ``tensor``."""
        needs = (
            (timing.Counter.DRAINS_DONE, self.issued[timing.Engine.DRAIN]),
            (timing.Counter.LOADS_DONE, self.last_load.get(tensor, 0)),
        )
        duration = timing.transfer_cycles(nbytes, *self.dram_rate)
        self._command(timing.Engine.STORE, timing.Command(timing.Engine.STORE, duration, needs))
        self.out_store[self.out_slot] = self.issued[timing.Engine.STORE]
        self.last_store[tensor] = self.issued[timing.Engine.STORE]

    def simulate(self) -> timing.TimingResult:
        return timing.simulate(self.entries)
