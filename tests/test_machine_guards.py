"""The machine refuses what would give a silently wrong answer (issue: robustness).

Each case below ran to a result before these checks: zeros for outputs no ``st.out`` wrote, a
run off the end of a truncated program, an overflowed group accumulator (``cfg.sv value=16384``
with 65504 activations gave −4.0 for 8188), out-of-range codes and fractional scales decoded as
something, and two nested 2³²-count loops that ran for ages.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from bitmod.runtime.arch.hwconfig import HardwareConfig
from bitmod.runtime.arch.nest import matmul_program
from bitmod.runtime.arch.rules import GROUP_TERM_LIMIT, accumulator_error
from bitmod.runtime.emulator import reference_pe as ref
from bitmod.runtime.emulator.machine import Machine, MachineError
from bitmod.runtime.formats import get_format, quantize
from bitmod.runtime.formats.bitserial import max_term_sum, value_terms
from bitmod.runtime.isa import CfgSv, EndLoop, Halt, Loop, Nop, Program, StOut

CONFIG = HardwareConfig(rows=4, cols=4, tiles=2)


def _case(fmt: str = "bitmod3", m: int = 8, n: int = 16, k: int = 64, group: int = 32):
    rng = np.random.default_rng(0)
    q = ref.random_quantized(rng, fmt, n, k, group)
    x = ref.random_activations(rng, m, k, "normal")
    program = matmul_program(
        act="x",
        weight="w",
        out="y",
        m=m,
        n=n,
        k=k,
        fmt=fmt,
        group_size=group,
        config=CONFIG,
    )
    return program, {"x": x, "w": q}


def _with_code(program: Program, code) -> Program:
    return Program(program.strings, program.descriptors, tuple(code))


# --- outputs written exactly once, halt ----------------------------------------------------------


def test_the_compiled_program_runs() -> None:
    program, memory = _case()
    result = Machine(CONFIG).run(program, memory)
    assert np.any(result.outputs["y"] != 0)


def test_a_deleted_store_is_an_error_naming_the_output_and_block() -> None:
    program, memory = _case(m=8, n=16)  # 2 row blocks x 2 column blocks of 4 x 8
    code = list(program.instructions)
    store = next(i for i, instr in enumerate(code) if isinstance(instr, StOut))
    del code[store]
    with pytest.raises(MachineError, match=r"output 'y' \(8x16\) is never stored"):
        Machine(CONFIG).run(_with_code(program, code), memory)


def test_a_store_outside_the_loop_leaves_blocks_unwritten() -> None:
    program, memory = _case(m=8, n=16)
    code = list(program.instructions)
    # run the outermost loop of two iterations once: half of the output blocks are never stored
    # (which loop that is depends on the planner's block rows)
    first_loop = next(
        i for i, instr in enumerate(code) if isinstance(instr, Loop) and instr.count == 2
    )
    loop = code[first_loop]
    code[first_loop] = Loop(loop.lvl, 1)
    with pytest.raises(MachineError, match=r"output 'y': 64 of 128 elements never stored"):
        Machine(CONFIG).run(_with_code(program, code), memory)


def test_a_truncated_program_without_halt_is_refused() -> None:
    program, memory = _case()
    code = list(program.instructions)
    assert isinstance(code[-1], Halt)
    with pytest.raises(MachineError, match="without halt"):
        Machine(CONFIG).run(_with_code(program, code[:-1]), memory)


def test_storing_a_block_twice_is_an_error() -> None:
    program, memory = _case()
    code = list(program.instructions)
    store = next(i for i, instr in enumerate(code) if isinstance(instr, StOut))
    code.insert(store + 1, code[store])
    with pytest.raises(MachineError, match="stored a second time|nothing drained"):
        Machine(CONFIG).run(_with_code(program, code), memory)


# --- the execution budget -----------------------------------------------------------------------


def test_nested_huge_loops_are_refused_before_running() -> None:
    program, memory = _case()
    code = (Loop(0, 2**32 - 1), Loop(1, 2**32 - 1), Nop(), EndLoop(1), EndLoop(0), Halt())
    with pytest.raises(MachineError, match=r"instruction 1 \(loop\): the program executes more"):
        Machine(CONFIG).run(_with_code(program, code), memory)


def test_the_budget_is_derived_from_the_tensors_and_overridable() -> None:
    program, memory = _case()
    machine = Machine(CONFIG)
    budget = machine.instruction_budget_of(program)
    # 8x16 output: 2 x 2 blocks of 4 x 8, K = 64 -> 16 four-lane steps
    assert budget == Machine.BUDGET_PER_BLOCK * (len(program.instructions) + 2 * 2 * 16)
    executed = machine.run(program, memory).report.instructions_executed
    assert executed < budget / 50  # the compiled program is far inside
    with pytest.raises(MachineError, match="budget of 10 instructions"):
        Machine(CONFIG, instruction_budget=10).run(program, memory)


# --- the group accumulator bound -----------------------------------------------------------------


def test_term_sums_are_the_largest_decoder_value() -> None:
    for fmt in ("int8", "int4_asym", "bitmod3", "bitmod4", "fp4"):
        grid = get_format(fmt).grid
        terms = value_terms(fmt, np.abs(grid).astype(np.int64))
        assert max_term_sum(fmt) >= np.abs(grid).max()
        assert max_term_sum(fmt) >= np.abs(terms.values()).max()
    assert max_term_sum("bitmod4") == 16  # LOD terms: the value itself
    assert max_term_sum("int8") == 170  # Booth digits of -128..127: at most 2+2*4+2*16+2*64
    assert max_term_sum("bitmod3", (16384, 3, 0, 0)) == 16384


def test_the_bound_is_tight_enough_for_every_default_format_and_refuses_the_overflow() -> None:
    assert accumulator_error(128, 16) is None  # bitmod4 at G = 128
    assert accumulator_error(6168, 170) is None and accumulator_error(6169, 170)
    assert accumulator_error(128, 16384) is not None
    # the bound is safe: the largest possible |A| in 2^-27 units stays below 2^63
    worst = (1 + 2**-12) * GROUP_TERM_LIMIT * 65504 * 2**27
    assert worst < 2**63


def test_a_programmed_special_value_that_can_overflow_is_refused() -> None:
    program, memory = _case("bitmod3", group=128, k=256)
    code = [
        CfgSv(instr.slot, 16384) if isinstance(instr, CfgSv) and instr.slot == 0 else instr
        for instr in program.instructions
    ]
    program = _with_code(program, code)
    with pytest.raises(MachineError, match=r"mac\): bitmod3 weights and SV register \[16384"):
        Machine(CONFIG).run(program, memory)
    # G = 32: 32 x 16384 = 2^19 fits, but at G = 128 it does not
    assert accumulator_error(32, 16384) is None


def test_the_bsisa_checker_refuses_the_same_program() -> None:
    pytest.importorskip("xdsl")
    from bitmod.backends.emit import program_to_module
    from bitmod.passes.context import make_context
    from xdsl.utils.exceptions import VerifyException

    program, _ = _case("bitmod3", group=128, k=256)
    code = [
        CfgSv(instr.slot, 16384) if isinstance(instr, CfgSv) and instr.slot == 0 else instr
        for instr in program.instructions
    ]
    module = program_to_module(_with_code(program, code))
    make_context()
    with pytest.raises(VerifyException, match="group accumulator can overflow"):
        module.verify()


# --- memory image checks -------------------------------------------------------------------------


def _corrupt(q, **changes):
    return dataclasses.replace(q, **changes)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda q: {"scales": q.scales[:, :1]}, r"scale codes have shape \[16, 1\]"),
        (lambda q: {"codes": torch.full_like(q.codes, 9)}, r"codes 9 at \[0, 0\] outside 0..7"),
        (
            lambda q: {"sv_index": torch.full_like(q.sv_index, 7)},
            r"SV indices 7 at \[0, 0\] outside 0..3",
        ),
        (
            lambda q: {"scales": q.scales.to(torch.float32) + 0.5},
            "scale codes must be integers",
        ),
        (
            lambda q: {"channel_scale": torch.full_like(q.channel_scale, float("nan"))},
            "channel scale of row 0 is nan",
        ),
    ],
)
def test_a_corrupt_weight_image_is_a_machine_error(change, message) -> None:
    program, memory = _case("bitmod3")
    memory["w"] = _corrupt(memory["w"], **change(memory["w"]))
    with pytest.raises(MachineError, match=message):
        Machine(CONFIG).run(program, memory)


def test_quantizer_output_passes_the_image_checks_for_every_accelerated_format() -> None:
    torch.manual_seed(0)
    for fmt in ("int8", "int4_asym", "int3_asym", "bitmod3", "bitmod4", "fp4_ea", "int6"):
        q = quantize(torch.randn(16, 64), fmt, 32, 8)
        program = matmul_program(
            act="x",
            weight="w",
            out="y",
            m=4,
            n=16,
            k=64,
            fmt=fmt,
            group_size=32,
            config=CONFIG,
        )
        x = np.ones((4, 64), np.float16)
        Machine(CONFIG).run(program, {"x": x, "w": q})
