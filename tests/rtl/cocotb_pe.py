"""cocotb benches: the PE against the scalar reference PE and the fast PE model.

* ``pe_step_tb``: ``BITMOD_RTL_VECTORS`` random 4-lane vectors per accelerated format
  (activations over the whole finite FP16 range, subnormals, ±0, ±65504, ties, alignment
  beyond the guard bits; terms of random codes, zero points, SV indices and SV registers):
  ``D · 2^shift`` equals ``ScalarPE.cycle`` and the shift is ``E − 3 + bsig + 27`` of the
  largest live lane exponent.
* ``bitmod_pe``: whole groups through the accumulator and the bit-serial dequantizer: the
  group sum equals ``pe.group_accumulators`` and the product equals ``round24(A) · σ`` for
  random SB-bit signed scale codes, ready ``SB + 1`` cycles after the last term's accumulation.
"""

from __future__ import annotations

import os
import zlib

import cocotb
import numpy as np
from bitmod.runtime.emulator import pe
from bitmod.runtime.emulator.reference_pe import ScalarPE, fp16_fields
from bitmod.runtime.formats.bitserial import Terms
from cocotb.triggers import Timer
from vectors import ACCELERATED, activations, grid_values, sv_register, terms_of

VECTORS = int(os.environ.get("BITMOD_RTL_VECTORS", "2000"))
GROUPS = int(os.environ.get("BITMOD_RTL_GROUPS", "12"))


def _lane_fields(terms, lanes: slice, t: int) -> tuple[int, int, int, int]:
    sign = sum(int(terms.sign[lanes][i, t]) << i for i in range(4))
    exp = sum(int(terms.exp[lanes][i, t]) << (4 * i) for i in range(4))
    man = sum(int(terms.man[lanes][i, t]) << i for i in range(4))
    return sign, exp, man, int(terms.bsig[lanes][0, t])


def _act_word(bits: np.ndarray) -> int:
    return sum(int(b) << (16 * i) for i, b in enumerate(bits))


@cocotb.test()
async def step_matches_the_scalar_reference(dut) -> None:
    for name in ACCELERATED:
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        checked = 0
        while checked < VECTORS:
            register = sv_register(rng, name)
            _, _, _, values = grid_values(rng, name, 4 * 64, register)
            terms = terms_of(name, values, register)
            acts = activations(rng, (64, 4)).view(np.uint16)
            for step in range(64):
                lanes = slice(4 * step, 4 * step + 4)
                act_bits = [int(b) for b in acts[step]]
                for t in range(terms.count):
                    sign, exp, man, bsig = _lane_fields(terms, lanes, t)
                    dut.act.value = _act_word(acts[step])
                    dut.w_sign.value, dut.w_exp.value = sign, exp
                    dut.w_man.value, dut.bsig.value = man, bsig
                    await Timer(1, unit="ns")
                    lane_terms = [
                        (
                            int(terms.sign[lanes][i, t]),
                            int(terms.exp[lanes][i, t]),
                            int(terms.man[lanes][i, t]),
                            bsig,
                        )
                        for i in range(4)
                    ]
                    want = ScalarPE.cycle(act_bits, lane_terms)
                    d, shift = dut.d.value.to_signed(), int(dut.shift.value)
                    assert d << shift == want, (name, act_bits, lane_terms, d, shift, want)
                    live = [
                        fp16_fields(act_bits[i])[2] + lane_terms[i][1]
                        for i in range(4)
                        if lane_terms[i][2] and fp16_fields(act_bits[i])[1]
                    ]
                    assert shift == (max(live) + 24 + bsig if live else 0), (name, live, shift)
                    checked += 1
        dut._log.info("%s: %d lane vectors", name, checked)


async def _tick(dut) -> None:
    """One clock cycle; inputs written before it are settled at the rising edge."""
    await Timer(1, unit="ns")
    dut.clk.value = 1
    await Timer(1, unit="ns")
    dut.clk.value = 0


@cocotb.test()
async def groups_accumulate_and_dequantize_exactly(dut) -> None:
    dut.clk.value = 0
    dut.rst.value = 1
    dut.valid.value = 0
    dut.last.value = 0
    await _tick(dut)
    dut.rst.value = 0
    for name in ACCELERATED:
        rng = np.random.default_rng(zlib.crc32(b"group/" + name.encode()))
        for _ in range(GROUPS):
            group = int(rng.choice([4, 8, 32, 128]))
            register = sv_register(rng, name)
            _, _, _, values = grid_values(rng, name, group, register)
            terms = terms_of(name, values, register)
            act = activations(rng, (1, group))
            sb = int(rng.integers(1, 16))
            sigma = int(rng.integers(-(1 << (sb - 1)), 1 << (sb - 1)))
            acts = act.view(np.uint16)[0]
            last_cycle = 0
            cycle = 0
            for step in range(group // 4):
                lanes = slice(4 * step, 4 * step + 4)
                for t in range(terms.count):
                    sign, exp, man, bsig = _lane_fields(terms, lanes, t)
                    dut.act.value = _act_word(acts[lanes])
                    dut.w_sign.value, dut.w_exp.value = sign, exp
                    dut.w_man.value, dut.bsig.value = man, bsig
                    dut.valid.value = 1
                    is_last = step == group // 4 - 1 and t == terms.count - 1
                    dut.last.value = int(is_last)
                    dut.scale_code.value = sigma & 0x7FFF
                    dut.sb.value = sb
                    if is_last:
                        last_cycle = cycle
                    await _tick(dut)
                    cycle += 1
            dut.valid.value = 0
            dut.last.value = 0
            while int(dut.product_ready.value) == 0:
                await _tick(dut)
                cycle += 1
                assert cycle < last_cycle + 40, "product never ready"
            # presented in cycle t: accumulated at the end of t+1, product final at the end of
            # t+1+SB, ready (high) in cycle t+2+SB
            assert cycle == last_cycle + 2 + sb, (name, cycle, last_cycle, sb)
            column = Terms(terms.sign[None], terms.exp[None], terms.man[None], terms.bsig[None])
            prepared = pe.prepare_weights(column)
            want_acc = int(pe.group_accumulators(act, prepared, group)[0, 0, 0])
            got_acc = dut.group_sum.value.to_signed()
            assert got_acc == want_acc, (name, got_acc, want_acc)
            mantissa, shift = pe.round_to_mantissa(np.array([want_acc]))
            assert dut.product.value.to_signed() == int(mantissa[0]) * sigma, (name, sigma)
            assert int(dut.product_shift.value) == int(shift[0]), name
            for _ in range(4):
                await _tick(dut)
        dut._log.info("%s: %d groups", name, GROUPS)
