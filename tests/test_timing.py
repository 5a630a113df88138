"""The machine's cycle model (runtime/arch/timing.py) against a plain cycle-by-cycle simulation
of the same rules (docs/rtl.md, "Timing"), on hand-worked and random traces."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from bitmod.runtime.arch.timing import (
    CAUSES,
    CONTROL,
    HALT,
    Command,
    Counter,
    Engine,
    TimingError,
    dram_fraction,
    need_early,
    simulate,
    transfer_cycles,
)

LOAD, PE, DRAIN, STORE = Engine


@dataclass
class _Unit:
    register: int | None = None
    current: int | None = None
    start: int | None = None
    end: int = 0


def cycle_by_cycle(trace: list) -> tuple[int, dict[str, int], list[int], list[int]]:
    """The rules, one cycle at a time: every register is read at the start of a cycle and
    written at its end."""
    commands = [c for c in trace if isinstance(c, Command)]
    start_of, end_of = [None] * len(commands), [None] * len(commands)
    units = [_Unit() for _ in Engine]
    pc, issued, halted, t = 0, 0, False, 0
    causes = dict.fromkeys(CAUSES, 0)

    def count(counter: Counter, at: int) -> int:
        if counter == Counter.DRAINS_STARTED:
            times = [
                s + 1
                for i, s in enumerate(start_of)
                if s is not None and commands[i].engine == DRAIN
            ]
        else:
            engine = {
                Counter.LOADS_DONE: LOAD,
                Counter.MACS_DONE: PE,
                Counter.DRAINS_DONE: DRAIN,
                Counter.STORES_DONE: STORE,
            }[counter]
            times = [
                e for i, e in enumerate(end_of) if e is not None and commands[i].engine == engine
            ]
        return sum(1 for when in times if when <= at)

    def met(index: int, at: int) -> bool:
        """Every need met in cycle ``at``: an early one counts the work done ``early`` cycles
        later (known once the work has started)."""
        return all(
            count(need[0], at + need_early(need)) >= need[1] for need in commands[index].needs
        )

    while not (halted and all(u.current is None and u.register is None for u in units)):
        assert t < 100_000
        busy = [
            u.current is not None and u.start is not None and u.start <= t < u.end for u in units
        ]
        accept = [
            u.register is not None
            and (u.current is None or (u.start is not None and u.end - 1 == t))
            for u in units
        ]
        start = [False] * 4
        requests = []
        for e, u in enumerate(units):
            if u.current is not None and u.start is None and met(u.current, t):
                if e in (LOAD, STORE):
                    requests.append(e)
                else:
                    start[e] = True
        channel_busy = any(
            units[e].start is not None and units[e].start <= t < units[e].end for e in (LOAD, STORE)
        )
        if requests and not channel_busy:
            start[LOAD if LOAD in requests else STORE] = True
        # the PE array's cycle
        pe = units[PE]
        if pe.current is not None and (start[PE] or busy[PE]):
            pass
        elif pe.current is not None:
            loads = max(
                (n for c, n, *_ in commands[pe.current].needs if c == Counter.LOADS_DONE),
                default=0,
            )
            causes["dram_stall" if count(Counter.LOADS_DONE, t) < loads else "drain"] += 1
        elif units[DRAIN].current is not None or units[DRAIN].register is not None:
            causes["drain"] += 1
        elif any(
            units[e].current is not None or units[e].register is not None for e in (LOAD, STORE)
        ):
            causes["dram_stall"] += 1
        else:
            causes["other"] += 1
        issue = None
        if not halted:
            entry = trace[pc] if pc < len(trace) else HALT
            if entry == HALT:
                halted = True
            elif isinstance(entry, Command):
                if units[entry.engine].register is None:
                    issue = entry.engine
            else:
                pc += 1
        for e, u in enumerate(units):
            if start[e]:
                c = commands[u.current]
                u.start, u.end = t, t + c.duration
                start_of[u.current], end_of[u.current] = t, t + c.duration
                if e == PE:
                    causes["compute"] += c.compute
                    causes["dequant_tail"] += c.duration - c.compute
        for e, u in enumerate(units):
            if accept[e]:
                u.current, u.register, u.start = u.register, None, None
            elif u.start is not None and u.end == t + 1:
                u.current, u.start = None, None
        if issue is not None:
            units[issue].register = issued
            issued += 1
            pc += 1
        t += 1
    return t, causes, start_of, end_of


def random_trace(rng: random.Random, length: int) -> list:
    """Commands whose thresholds refer to work issued before them (as the machine's are)."""
    trace: list = []
    issued = dict.fromkeys(Engine, 0)
    for _ in range(length):
        kind = rng.random()
        if kind < 0.25:
            trace.append(CONTROL)
            continue
        engine = rng.choice(list(Engine))
        needs = []
        for counter, source in (
            (Counter.LOADS_DONE, LOAD),
            (Counter.MACS_DONE, PE),
            (Counter.DRAINS_STARTED, DRAIN),
            (Counter.DRAINS_DONE, DRAIN),
            (Counter.STORES_DONE, STORE),
        ):
            if issued[source] and rng.random() < 0.4:
                threshold = rng.randint(1, issued[source])
                if rng.random() < 0.3:  # met early, possibly before the work has started
                    needs.append((counter, threshold, rng.randint(0, 14)))
                else:
                    needs.append((counter, threshold))
        duration = rng.randint(1, 12)
        compute = rng.randint(0, duration) if engine == PE else 0
        trace.append(Command(engine, duration, tuple(needs), compute))
        issued[engine] += 1
    if rng.random() < 0.7:
        trace.append(HALT)
    return trace


def test_hand_worked_load_mac_drain_store() -> None:
    trace = [
        Command(LOAD, 10),
        Command(PE, 20, ((Counter.LOADS_DONE, 1),), compute=15),
        Command(DRAIN, 8, ((Counter.MACS_DONE, 1),)),
        Command(STORE, 5, ((Counter.DRAINS_DONE, 1),)),
        HALT,
    ]
    result = simulate(trace)
    # issued in cycles 0-3, taken one cycle later, the load starts in cycle 2; the mac sees it
    # done in cycle 12, the drain sees the mac in 32, the store the drain in 40
    assert result.starts == [2, 12, 32, 40]
    assert result.ends == [12, 32, 40, 45]
    assert result.cycles == 45
    assert result.causes == {
        "compute": 15,
        "dequant_tail": 5,
        "drain": 8,
        "dram_stall": 16,  # cycles 1-11 (the load), 40-44 (the store)
        "other": 1,  # cycle 0
    }


def test_a_drain_and_a_store_overlap_the_work_they_read() -> None:
    # the machine's dependencies (runtime/arch/trace.py) with ROWS = 4: the drain may start 4
    # cycles before its mac ends, the store (5 cycles) once the drain has started and 4 cycles
    # before it ends
    trace = [
        Command(LOAD, 10),
        Command(PE, 20, ((Counter.LOADS_DONE, 1),), compute=15),
        Command(DRAIN, 8, ((Counter.MACS_DONE, 1, 4),)),
        Command(STORE, 5, ((Counter.DRAINS_STARTED, 1), (Counter.DRAINS_DONE, 1, 4))),
        HALT,
    ]
    result = simulate(trace)
    # the mac runs 12-31 (its end: 32), the drain 28-35, the store 32-36 (its last cycle, 36,
    # comes after the drain's last, 35)
    assert result.starts == [2, 12, 28, 32]
    assert result.ends == [12, 32, 36, 37]
    assert result.cycles == 37
    assert cycle_by_cycle(trace)[0] == 37
    # a store longer than the drain starts in the cycle after the drain started
    started_and_ending = ((Counter.DRAINS_STARTED, 1), (Counter.DRAINS_DONE, 1, 11))
    long_store = [*trace[:3], Command(STORE, 12, started_and_ending), HALT]
    assert simulate(long_store).starts[3] == 29


def test_control_instructions_take_a_cycle_each() -> None:
    assert simulate([HALT]).cycles == 1
    assert simulate([CONTROL, CONTROL, HALT]).cycles == 3
    assert simulate([CONTROL]).cycles == 2  # the end of the code is a halt


def test_a_full_register_stalls_the_controller() -> None:
    # three macs of 10 cycles: the second waits in the register, the third in the controller
    trace = [Command(PE, 10, compute=10)] * 3 + [CONTROL, HALT]
    result = simulate(trace)
    assert result.starts == [2, 12, 22]
    # the third is issued when the register empties (the second is taken in cycle 11)
    assert result.cycles == 32


def test_the_channel_serves_a_waiting_load_before_a_waiting_store() -> None:
    # the store asks in cycle 3, the second load (behind the first in its engine) in 12, when
    # the channel is free again: the load goes first, though it asked later
    first = simulate([Command(LOAD, 10), Command(STORE, 3), Command(LOAD, 4), HALT])
    assert first.starts == [2, 16, 12]
    # both ask in cycle 23, when the mac they wait for is seen done: the load goes first
    mac = ((Counter.MACS_DONE, 1),)
    tie = simulate(
        [Command(LOAD, 10), Command(PE, 20), Command(STORE, 3, mac), Command(LOAD, 4, mac), HALT]
    )
    assert tie.starts == [2, 3, 27, 23]
    assert tie.cycles == 30


def test_unmet_dependency_is_an_error() -> None:
    with pytest.raises(TimingError, match="never met"):
        simulate([Command(PE, 3, ((Counter.LOADS_DONE, 1),)), HALT])


@pytest.mark.parametrize("seed", range(200))
def test_event_model_equals_the_cycle_by_cycle_rules(seed: int) -> None:
    rng = random.Random(seed)
    trace = random_trace(rng, rng.randint(1, 60))
    fast = simulate(trace)
    cycles, causes, starts, ends = cycle_by_cycle(trace)
    assert (fast.cycles, fast.causes, fast.starts, fast.ends) == (cycles, causes, starts, ends)
    assert sum(fast.causes.values()) == fast.cycles


def test_dram_bandwidth_as_an_exact_fraction() -> None:
    assert dram_fraction(25.6) == (128, 5)
    assert dram_fraction(51.2) == (256, 5)
    assert dram_fraction(8.0) == (8, 1)
    assert transfer_cycles(128, 128, 5) == 5
    assert transfer_cycles(129, 128, 5) == 6
    assert transfer_cycles(1, 128, 5) == 1
    with pytest.raises(ValueError):
        dram_fraction(0.0)
