"""The machine's cycle model: the microarchitecture the RTL implements, computed exactly.

docs/rtl.md ("Timing") is the specification; :func:`simulate` computes it without a loop per
cycle of the engines, so the emulator counts the cycles the RTL counts, for any program.

* The **controller** executes one instruction a cycle in program order. ``cfg.*``, ``loop`` /
  ``endloop``, ``acc.clr``, ``nop`` and ``halt`` are its own (one cycle each; the end of the
  code is a ``halt``). ``ld.act`` / ``ld.wgt``, ``mac``, ``drain`` and ``st.out`` are written
  into the 1-entry command register of the load, PE, drain or store engine, with a snapshot of
  the registers they need; a full register stalls the controller until the engine takes it.
* Each **engine** takes its next command in a cycle in which it is idle or finishing, and
  starts it in the first later cycle in which the command's dependencies (:class:`Command`
  thresholds on the counters of completed work, all on work issued before it, some met a
  fixed number of cycles before the work is done) are met; it is then busy ``duration``
  consecutive cycles.
* Loads and stores start only with a grant of the one **DRAM channel** (one transfer at a time;
  a transfer of ``n`` bytes holds it ``ceil(n * den / num)`` cycles for a bandwidth of
  ``num / den`` bytes a cycle). When the channel is free, a waiting load starts, else a
  waiting store: the PE array waits for loads, a store holds up only the drain two blocks
  later (of the orders tried, serving the first request made small GEMMs up to 3 % slower).

Cycle ``0`` is the controller's first instruction; the run's cycle count is the first cycle in
which the controller has halted and every engine is idle with an empty register.

:func:`simulate` advances from one event to the next (an instruction, an engine taking,
starting or finishing a command, a counter becoming visible), evaluating each event cycle
exactly as the RTL's registers do, so its cost is proportional to the number of instructions
executed, not to the cycles.
"""

from __future__ import annotations

import bisect
import enum
from dataclasses import dataclass
from fractions import Fraction

__all__ = [
    "CAUSES",
    "CONTROL",
    "HALT",
    "MAC_PIPELINE_CYCLES",
    "MAX_DRAM_DENOMINATOR",
    "Command",
    "Need",
    "Counter",
    "Engine",
    "TimingError",
    "TimingResult",
    "dram_fraction",
    "need_early",
    "simulate",
    "transfer_cycles",
]

#: The DRAM bandwidth in bytes per cycle is the nearest fraction with at most this denominator.
MAX_DRAM_DENOMINATOR = 1 << 16

#: Cycles of a mac beyond its issue and post-processing cycles: the PE engine's fetch register,
#: the term encoders' register, the PEs' step register and the accumulation (docs/rtl.md).
MAC_PIPELINE_CYCLES = 4

#: Where the cycles of a run go, seen from the PE array.
CAUSES = ("compute", "dequant_tail", "drain", "dram_stall", "other")


class TimingError(RuntimeError):
    """A trace that can never finish (a dependency on work that is never issued)."""


#: The most a bandwidth may differ, relatively, from the fraction the timing model uses.
DRAM_FRACTION_TOLERANCE = 1e-6
#: The largest numerator: the RTL holds it in a 32-bit ``int`` (``bitmod_cfg_pkg::DRAM_NUM``).
MAX_DRAM_NUMERATOR = (1 << 31) - 1


def dram_fraction(bytes_per_cycle: float) -> tuple[int, int]:
    """``(num, den)`` with ``num / den`` bytes per cycle (25.6 -> 128/5): the nearest fraction
    with ``den <= MAX_DRAM_DENOMINATOR``, refused (ValueError) when it is not within
    ``DRAM_FRACTION_TOLERANCE`` of the bandwidth (a value near or below ``1/den``, which would
    silently run at another bandwidth) or its numerator does not fit 31 bits."""
    exact = Fraction(repr(float(bytes_per_cycle)))
    value = exact.limit_denominator(MAX_DRAM_DENOMINATOR)
    smallest = f"at least 1/{MAX_DRAM_DENOMINATOR} bytes per cycle"
    if value <= 0:
        # A positive value below 1/MAX_DRAM_DENOMINATOR rounds to zero in the timing model.
        raise ValueError(f"DRAM bandwidth must be {smallest}, got {bytes_per_cycle!r}")
    if abs(value - exact) > exact * Fraction(DRAM_FRACTION_TOLERANCE):
        raise ValueError(
            f"DRAM bandwidth {bytes_per_cycle!r} bytes per cycle cannot be timed: the timing "
            f"model's bandwidth is a fraction of denominator at most {MAX_DRAM_DENOMINATOR}, "
            f"and the nearest, {float(value)!r}, is more than {DRAM_FRACTION_TOLERANCE:g} off"
        )
    if value.numerator > MAX_DRAM_NUMERATOR:
        raise ValueError(
            f"DRAM bandwidth {bytes_per_cycle!r} bytes per cycle is too large (at most "
            f"{MAX_DRAM_NUMERATOR} bytes per cycle)"
        )
    return value.numerator, value.denominator


def transfer_cycles(nbytes: int, num: int, den: int) -> int:
    """Cycles a transfer of ``nbytes`` holds the channel: ``ceil(nbytes * den / num)``."""
    return -(-nbytes * den // num)


class Engine(enum.IntEnum):
    LOAD = 0
    PE = 1
    DRAIN = 2
    STORE = 3


class Counter(enum.IntEnum):
    """Counters of completed work; a command waits for thresholds on them."""

    LOADS_DONE = 0
    MACS_DONE = 1
    DRAINS_STARTED = 2
    DRAINS_DONE = 3
    STORES_DONE = 4


#: The counter each engine's commands advance when they finish (the drain also when it starts).
_DONE = {
    Engine.LOAD: Counter.LOADS_DONE,
    Engine.PE: Counter.MACS_DONE,
    Engine.DRAIN: Counter.DRAINS_DONE,
    Engine.STORE: Counter.STORES_DONE,
}
_TRANSFER = (Engine.LOAD, Engine.STORE)


#: A dependency of a :class:`Command`: ``(counter, threshold)`` or ``(counter, threshold, early)``.
Need = tuple[Counter, int] | tuple[Counter, int, int]


def need_early(need: Need) -> int:
    """The cycles before its threshold is reached in which ``need`` is met (0 for a pair)."""
    return need[2] if len(need) == 3 else 0


@dataclass(frozen=True)
class Command:
    """One engine command: busy ``duration`` cycles once ``needs`` are met.

    ``needs`` are ``(counter, threshold)`` pairs or ``(counter, threshold, early)`` triples:
    the command starts no earlier than the cycle in which every counter has reached its
    threshold, or ``early`` cycles before it does (the counted work's end is known from its
    start: a drain reads the C rows a mac writes in its last cycles, a store reads the output
    block in its own last cycle). ``compute`` is the part of a mac's duration in which the
    array issues term cycles (the rest is its dequantization tail).
    """

    engine: Engine
    duration: int
    needs: tuple[Need, ...] = ()
    compute: int = 0


#: A trace entry that is not an engine command: one controller cycle (``HALT`` ends the code).
CONTROL = None
HALT = "halt"


@dataclass
class TimingResult:
    """Cycles of a run, by cause, and when every engine command ran."""

    cycles: int
    causes: dict[str, int]
    starts: list[int]  # first busy cycle of every command, in issue order
    ends: list[int]  # first cycle after each command


@dataclass
class _Slot:
    """An engine: its command register and its current command (indices into the commands)."""

    register: int | None = None
    register_since: int = 0  # first cycle the register is seen full
    current: int | None = None
    current_since: int = 0
    start: int | None = None  # first busy cycle of the current command
    end: int = 0  # first cycle after it


def simulate(trace: list[Command | None | str]) -> TimingResult:
    """Cycles of ``trace``: every instruction executed, in order (``CONTROL``, ``HALT`` or an
    engine :class:`Command`); TimingError if it can never finish."""
    commands = [entry for entry in trace if isinstance(entry, Command)]
    starts = [0] * len(commands)
    ends = [0] * len(commands)
    events: list[list[int]] = [[] for _ in Counter]  # the cycle each count becomes visible
    causes = dict.fromkeys(CAUSES, 0)
    slots = [_Slot() for _ in Engine]
    channel_free = 0  # first cycle the channel is free
    pc = 0
    issued_commands = 0
    halted = False
    t = 0

    def need_time(index: int) -> int | None:
        """First cycle in which the command's thresholds are all met (None: not known yet)."""
        when = 0
        for need in commands[index].needs:
            counter, threshold = need[0], need[1]
            if threshold > 0:
                times = events[counter]
                if len(times) < threshold:
                    return None
                when = max(when, times[threshold - 1] - need_early(need))
        return when

    def accept_time(slot: _Slot, now: int) -> int | None:
        """The cycle, from ``now`` on, in which the engine takes its register's command
        (None: not known yet)."""
        if slot.register is None:
            return None
        if slot.current is None:
            return max(slot.register_since, now)
        if slot.start is None:
            return None
        return max(slot.register_since, slot.end - 1, now)

    def idle() -> bool:
        return all(s.current is None and s.register is None for s in slots)

    def cause(at: int) -> str | None:
        """What the PE array waits for in cycle ``at`` (None: it is busy, counted per mac)."""
        pe = slots[Engine.PE]
        if pe.current is not None:
            if pe.start is not None and pe.start <= at:
                return None
            for counter, threshold, *_ in commands[pe.current].needs:
                if counter == Counter.LOADS_DONE:
                    if bisect.bisect_right(events[counter], at) < threshold:
                        return "dram_stall"
            return "drain"
        drain = slots[Engine.DRAIN]
        if drain.current is not None or drain.register is not None:
            return "drain"
        if any(slots[e].current is not None or slots[e].register is not None for e in _TRANSFER):
            return "dram_stall"
        return "other"

    while True:
        # ---- cycle t: every decision is taken on the state seen in cycle t
        if halted and idle():
            break
        accepts = [
            e
            for e, slot in enumerate(slots)
            if slot.register is not None
            and (slot.current is None or (slot.start is not None and slot.end - 1 == t))
        ]
        starting = []
        requests = []
        for e, slot in enumerate(slots):
            if slot.current is None or slot.start is not None:
                continue
            ready = need_time(slot.current)
            if ready is None or ready > t:
                continue
            if e in _TRANSFER:
                requests.append(e)
            else:
                starting.append(e)
        if requests and channel_free <= t:
            starting.append(min(requests))  # Engine.LOAD < Engine.STORE
        issue = None
        if not halted:
            entry = trace[pc] if pc < len(trace) else HALT
            if entry == HALT:
                halted = True
            elif isinstance(entry, Command):
                if slots[entry.engine].register is None:
                    issue = entry.engine
            else:
                pc += 1
        # ---- the end of cycle t
        for e in starting:
            slot = slots[e]
            index = slot.current
            assert index is not None
            command = commands[index]
            slot.start, slot.end = t, t + command.duration
            starts[index], ends[index] = slot.start, slot.end
            events[_DONE[Engine(e)]].append(slot.end)
            if e in _TRANSFER:
                channel_free = slot.end
            elif e == Engine.DRAIN:
                events[Counter.DRAINS_STARTED].append(t + 1)
            else:
                causes["compute"] += command.compute
                causes["dequant_tail"] += command.duration - command.compute
        this_cause = cause(t)  # with the commands that start in cycle t busy in it
        for e, slot in enumerate(slots):
            if e in accepts:
                slot.current, slot.current_since = slot.register, t + 1
                slot.register, slot.start = None, None
            elif slot.start is not None and slot.end == t + 1:
                slot.current, slot.start = None, None
        if issue is not None:
            slots[issue].register, slots[issue].register_since = issued_commands, t + 1
            issued_commands += 1
            pc += 1
        # ---- the next cycle in which anything can change
        candidates = []
        if not halted:
            entry = trace[pc] if pc < len(trace) else HALT
            if isinstance(entry, Command) and slots[entry.engine].register is not None:
                taken = accept_time(slots[entry.engine], t + 1)
                if taken is not None:
                    candidates.append(taken + 1)
            else:
                candidates.append(t + 1)
        elif idle():
            candidates.append(t + 1)
        for e, slot in enumerate(slots):
            taken = accept_time(slot, t + 1)
            if taken is not None:
                candidates.append(taken)
            if slot.current is None:
                continue
            if slot.start is None:
                ready = need_time(slot.current)
                if ready is not None:
                    # an early need can be met before it became known: no sooner than t + 1
                    ready = max(ready, slot.current_since, t + 1)
                    candidates.append(max(ready, channel_free) if e in _TRANSFER else ready)
            else:
                candidates += [slot.end - 1, slot.end]
        later = [c for c in candidates if c > t]
        if not later:
            raise TimingError(f"cycle {t}: nothing can proceed (a dependency is never met)")
        following = min(later)
        if this_cause is not None:
            causes[this_cause] += 1
        if following > t + 1:
            between = cause(t + 1)
            if between is not None:
                causes[between] += following - t - 1
        t = following
    return TimingResult(t, causes, starts, ends)
