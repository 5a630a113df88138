"""Programs the controller must refuse at run time, as the emulator refuses them.

Each program is a compiled one with one thing broken: no ``halt`` at the end, an output never
stored (no ``st.out``; a row block's loop one short), an output block stored twice (the whole
body run again), or an SV register / group size beyond the group accumulator's bound
(``G · max Σ|t| ≤ 2^20``, runtime/arch/rules.py). The emulator (the reference) refuses each
with a MachineError; the RTL must raise its error flag with the code of the refusal
(bitmod_controller.sv, ``cosim.ERROR_CODES``), and ``cosimulate`` reports the two refusals as
agreement. The programs just inside the bound run bit-identically in equal cycles.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from bitmod.backends.rtl.cases import CAPACITY, CONFIGS, random_case
from bitmod.backends.rtl.cosim import ERROR_CODES, build, cosimulate
from bitmod.backends.rtl.emit import emit_design
from bitmod.backends.rtl.packages import term_sum
from bitmod.backends.rtl.sim import simulator_available
from bitmod.runtime.arch.nest import matmul_program
from bitmod.runtime.arch.rules import (
    GROUP_TERM_LIMIT,
    group_accumulator_error,
    uses_sv_register,
)
from bitmod.runtime.emulator.machine import Machine, MachineError
from bitmod.runtime.formats import get_format, quantize
from bitmod.runtime.formats.bitserial import max_term_sum
from bitmod.runtime.formats.registry import FORMAT_NAMES
from bitmod.runtime.isa import CfgSv, Halt, Instruction, Loop, Program, StOut

SIMULATORS = [s for s in ("icarus", "verilator") if simulator_available(s)]
CONFIG = CONFIGS["1tile"]


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], Path]:
    """The one build of the one-tile machine at ``CAPACITY``, made by the first test."""
    built: list[Path] = []

    def get(design: Path) -> Path:
        if not built:
            built.append(build(design, SIMULATORS[0]).resolve())
        return built[0]

    return get


def _with_code(program: Program, code: list[Instruction]) -> Program:
    return Program(program.strings, program.descriptors, tuple(code))


def _no_halt(code: list[Instruction]) -> list[Instruction]:
    assert isinstance(code[-1], Halt)
    return code[:-1]


def _no_store(code: list[Instruction]) -> list[Instruction]:
    return [i for i in code if not isinstance(i, StOut)]


def _row_loop_one_short(code: list[Instruction]) -> list[Instruction]:
    """The innermost loop (case 0's row blocks: two of them, a ``loop.down``) runs once."""
    index = max(i for i, instr in enumerate(code) if isinstance(instr, Loop))
    loop = code[index]
    assert isinstance(loop, Loop) and loop.count == 2
    return [*code[:index], dataclasses.replace(loop, count=1), *code[index + 1 :]]


def _body_twice(code: list[Instruction]) -> list[Instruction]:
    assert isinstance(code[-1], Halt)
    return code[:-1] + code


#: (what is broken, the program edit, the emulator's message, the controller's error code)
BROKEN = [
    ("no halt", _no_halt, "without halt", 21),
    ("no st.out", _no_store, "is never stored", 23),
    ("a row block never stored", _row_loop_one_short, "elements never stored", 23),
    ("a block stored twice", _body_twice, "is stored a second time", 22),
]


def _cosimulate(program: Program, memory: dict, tmp_path: Path, binary) -> object:
    design = tmp_path / "design"
    emit_design(program, memory, design, CONFIG, capacity=CAPACITY)
    return cosimulate(design, SIMULATORS[0], binary=binary(design))


@pytest.mark.skipif(not SIMULATORS, reason="no Verilog simulator installed")
@pytest.mark.parametrize(("what", "edit", "message", "code"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_programs_are_refused_by_both(
    what: str, edit, message: str, code: int, tmp_path: Path, binary
) -> None:
    case = random_case(0)  # int3, 5x5x64: two row blocks by two column blocks, both descending
    program = _with_code(case.program, edit(list(case.program.instructions)))
    with pytest.raises(MachineError, match=message):
        Machine(CONFIG).run(program, case.memory)
    result = _cosimulate(program, case.memory, tmp_path, binary)
    assert result.emulator_error is not None and message in result.emulator_error
    assert result.rtl.counters["error"] == 1, f"{what}: the RTL ran it\n{result.format()}"
    assert result.rtl.counters["error_code"] == code, result.rtl.refused
    assert result.rtl.refused.startswith(ERROR_CODES[code])
    assert result.identical  # both refused: rtl-sim reports agreement


def _bound_case(fmt: str, group: int, k: int) -> tuple[Program, dict]:
    """A 5x7xk matmul in ``fmt`` with groups of ``group`` on the one-tile machine."""
    generator = torch.Generator().manual_seed(group)
    q = quantize(torch.randn(7, k, generator=generator), fmt, group_size=group, scale_bits=8)
    x = torch.randn(5, k, generator=generator).to(torch.float16).numpy()
    program = matmul_program(
        act="x",
        weight="w",
        out="y",
        m=5,
        n=7,
        k=k,
        fmt=fmt,
        group_size=group,
        special_values=get_format(fmt).special_values,
        config=CONFIG,
    )
    return program, {"x": x, "w": q}


def _with_sv(program: Program, values: Callable[[int, int], int]) -> Program:
    """Every ``cfg.sv slot=s value=v`` of ``program`` made ``values(s, v)``."""
    code = [
        CfgSv(i.slot, values(i.slot, i.value)) if isinstance(i, CfgSv) else i
        for i in program.instructions
    ]
    assert any(isinstance(i, CfgSv) for i in code)
    return _with_code(program, code)


# G = 64 (bitmod3, whose SV register is programmable): |SV| <= 2^20 / 64 = 16384
_SV_LIMIT = GROUP_TERM_LIMIT // 64
# int8_asym (Booth, no SV register): G <= 2^20 / 426 = 2461, G a multiple of 4
_INT8_ASYM_G = 4 * (GROUP_TERM_LIMIT // max_term_sum("int8_asym") // 4)
BOUND = [
    ("bitmod3 SV 16385 at G=64", "bitmod3", 64, 128, lambda s, v: _SV_LIMIT + 1 if s == 0 else v),
    ("bitmod3 SV -16385 at G=64", "bitmod3", 64, 128, lambda s, v: -_SV_LIMIT - 1),
    ("int8_asym G=2464", "int8_asym", _INT8_ASYM_G + 4, 16, None),
]
INSIDE = [
    ("bitmod3 SV -16384 at G=64", "bitmod3", 64, 128, lambda s, v: -_SV_LIMIT),
    ("bitmod3 SV 16384 at G=64", "bitmod3", 64, 128, lambda s, v: _SV_LIMIT),
    ("int8_asym G=2460", "int8_asym", _INT8_ASYM_G, 16, None),
]


@pytest.mark.skipif(not SIMULATORS, reason="no Verilog simulator installed")
@pytest.mark.parametrize(("what", "fmt", "group", "k", "sv"), BOUND, ids=[b[0] for b in BOUND])
def test_group_accumulator_bound_is_refused_by_both(
    what: str, fmt: str, group: int, k: int, sv, tmp_path: Path, binary
) -> None:
    program, memory = _bound_case(fmt, group, k)
    if sv is not None:
        program = _with_sv(program, sv)
    with pytest.raises(MachineError, match="group accumulator can overflow"):
        Machine(CONFIG).run(program, memory)
    result = _cosimulate(program, memory, tmp_path, binary)
    assert result.rtl.counters["error"] == 1, f"{what}: the RTL ran it\n{result.format()}"
    assert result.rtl.counters["error_code"] == 24, result.rtl.refused
    assert result.identical


@pytest.mark.skipif(not SIMULATORS, reason="no Verilog simulator installed")
@pytest.mark.parametrize(("what", "fmt", "group", "k", "sv"), INSIDE, ids=[b[0] for b in INSIDE])
def test_group_accumulator_at_its_bound_runs_on_both(
    what: str, fmt: str, group: int, k: int, sv, tmp_path: Path, binary
) -> None:
    program, memory = _bound_case(fmt, group, k)
    if sv is not None:
        program = _with_sv(program, sv)
    emulated = Machine(CONFIG).run(program, memory)
    if sv is not None:  # the big special value is in the result: some group selects slot 0
        q = memory["w"]
        assert bool((q.codes == 1 << (get_format(fmt).bits - 1)).any())
    result = _cosimulate(program, memory, tmp_path, binary)
    assert result.rtl.refused is None, result.format()
    rtl_bits, emulated_bits = (
        out["y"].view(np.uint16) for out in (result.rtl.outputs, emulated.outputs)
    )
    assert np.array_equal(rtl_bits, emulated_bits)
    assert result.identical and result.cycles_equal, result.format()


def test_term_sums_in_the_format_package_give_the_rule_of_the_emulator() -> None:
    """The controller's bound, ``G · max(TERM_SUM[fmt], max |SV| if fmt reads the register)
    ≤ 2^20``, refuses exactly what the emulator's ``group_accumulator_error`` refuses, for
    every format and random registers, at group sizes on both sides of the bound."""
    rng = np.random.default_rng(7)
    checked = 0
    for name in FORMAT_NAMES:
        if not get_format(name).accelerated:
            assert term_sum(name) == 0
            continue
        assert term_sum(name) == max_term_sum(name)
        for _ in range(20):
            register = tuple(int(v) for v in rng.integers(-(1 << 15), 1 << 15, rng.integers(1, 5)))
            bound = term_sum(name)
            if uses_sv_register(name):
                bound = max(bound, *(abs(v) for v in register))
            edge = 4 * (GROUP_TERM_LIMIT // bound // 4)
            for group in (max(4, edge - 4), edge, edge + 4):
                refused = group * bound > GROUP_TERM_LIMIT
                assert (group_accumulator_error(name, group, register) is not None) == refused
                checked += 1
    assert checked > 1000
