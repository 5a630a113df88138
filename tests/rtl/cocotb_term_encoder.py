"""cocotb bench: the term encoder against runtime/formats/bitserial, exhaustively.

Every code of every accelerated format (every zero point of the asymmetric INT formats, every
SV index of the formats with special values), under several SV register contents: the
format's own special values, reprogrammed ones with more set bits (more terms), extreme int16
values and zeros. Expected terms: ``value_terms(fmt, decode_codes(...) - zero, num_terms(fmt,
register))``, term by term (sign, exp, man, bsig); the term count is ``num_terms`` too.
"""

from __future__ import annotations

import itertools
import os
import time

import cocotb
import numpy as np
from bitmod.runtime.formats import FORMAT_IDS, get_format
from bitmod.runtime.formats.bitserial import decode_codes, num_terms, value_terms
from cocotb.triggers import Timer

REGISTERS = [
    None,  # the format's own special values
    (5, -7, 9, -1),
    (7, -11, 13, -21),  # three set bits: three terms
    (32767, -32768, 1, 0),
    (0, 0, 0, 0),
    (-3, 3, -6, 6),
]


def _sv_word(register: tuple[int, ...]) -> int:
    return sum((v & 0xFFFF) << (16 * i) for i, v in enumerate(register))


async def _cycle(dut) -> None:
    """The rising edge after the outputs were read (the inputs settled before)."""
    dut.clk.value = 1
    await Timer(1, unit="ns")
    dut.clk.value = 0


async def _step(dut, codes: list[int], terms: int) -> list[tuple[list[int], ...]]:
    """Present four codes, run ``terms`` cycles, return per term (sign, exp, man, bsig)."""
    dut.codes.value = sum(c << (8 * i) for i, c in enumerate(codes))
    out = []
    for t in range(terms):
        dut.load.value = int(t == 0)
        dut.term.value = t
        await Timer(1, unit="ns")
        sign, exp, man = int(dut.sign.value), int(dut.exp.value), int(dut.man.value)
        out.append(
            (
                [(sign >> i) & 1 for i in range(4)],
                [(exp >> (4 * i)) & 0xF for i in range(4)],
                [(man >> i) & 1 for i in range(4)],
                int(dut.bsig.value),
            )
        )
        await _cycle(dut)
    return out


@cocotb.test()
async def every_code_of_every_format(dut) -> None:
    dut.clk.value = 0
    dut.lane_valid.value = 0xF
    checked = 0
    only = os.environ.get("BITMOD_RTL_FORMATS")
    for name, fmt_id in FORMAT_IDS.items():
        if only and name not in only.split(","):
            continue
        started = time.time()
        fmt = get_format(name)
        dut.fmt.value = fmt_id
        await Timer(1, unit="ns")
        assert int(dut.accelerated.value) == int(fmt.accelerated), name
        if not fmt.accelerated:
            continue
        every = np.arange(1 << fmt.bits)
        # the symmetric INT formats leave their most negative code unused (NaN in the table)
        codes = [int(c) for c in every[np.isfinite(decode_codes(fmt, every, 0))]]
        uses_register = fmt.special_code is not None
        registers = REGISTERS if uses_register else [None]
        zeros = range(1 << fmt.bits) if fmt.family == "int_asym" else [0]
        indices = range(4) if uses_register else [0]
        for register, zero, index in itertools.product(registers, zeros, indices):
            chosen = tuple(fmt.special_values) if register is None else register
            chosen = (chosen + (0, 0, 0, 0))[:4]
            dut.sv_regs.value = _sv_word(chosen)
            dut.zero.value = zero
            dut.sv_index.value = index
            await Timer(1, unit="ns")
            count = num_terms(fmt, chosen if uses_register else None)
            assert int(dut.terms.value) == count, (name, chosen, int(dut.terms.value), count)
            values = decode_codes(fmt, np.array(codes), index, chosen) - zero
            expected = value_terms(fmt, values, count)
            padded = codes + [codes[0]] * (-len(codes) % 4)
            for start in range(0, len(codes), 4):
                got = await _step(dut, padded[start : start + 4], count)
                for lane in range(min(4, len(codes) - start)):
                    position = start + lane
                    for t in range(count):
                        want = (
                            int(expected.sign[position, t]),
                            int(expected.exp[position, t]),
                            int(expected.man[position, t]),
                            int(expected.bsig[position, t]),
                        )
                        have = (got[t][0][lane], got[t][1][lane], got[t][2][lane], got[t][3])
                        assert have == want, (name, chosen, zero, index, codes[position], t)
                    checked += 1
        dut._log.info("%s: %.1fs", name, time.time() - started)
    dut._log.info("checked %d (code, zero point, SV index, register) combinations", checked)


@cocotb.test()
async def lanes_outside_the_tensor_are_zero(dut) -> None:
    """A lane outside the tensor encodes 0 whatever its stored code (no term is set)."""
    dut.clk.value = 0
    for name in ("int8", "int4_asym", "bitmod3", "fp4"):
        fmt = get_format(name)
        dut.fmt.value = FORMAT_IDS[name]
        dut.sv_regs.value = _sv_word(((fmt.special_values or (0,)) + (0, 0, 0, 0))[:4])
        dut.zero.value = 3
        dut.sv_index.value = 0
        dut.lane_valid.value = 0b0101
        register = (tuple(fmt.special_values) + (0,) * 4)[:4]
        count = num_terms(fmt, register if fmt.special_code is not None else None)
        code = (1 << fmt.bits) - 1
        got = await _step(dut, [code] * 4, count)
        value = decode_codes(fmt, np.array([code]), 0, register) - (
            3 if fmt.family == "int_asym" else 0
        )
        expected = value_terms(fmt, value, count)
        for t in range(count):
            assert got[t][2][1] == 0 and got[t][2][3] == 0, (name, t)
            assert got[t][2][0] == got[t][2][2] == int(expected.man[0, t]), (name, t)
