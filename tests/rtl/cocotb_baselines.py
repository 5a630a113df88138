"""cocotb bench: the comparison PEs of the area flow.

* the FP16 x FP16 MAC PE equals numpy: ``acc = float32(acc + float32(a) * float32(b))`` after
  every cycle (the FP16 product is exact in FP32), over random FP16 values of the whole finite
  range (subnormals, ±0, ±65504);
* the FIGNA-like FP16 x INT8 PE (row aligner + integer MAC) equals its own definition computed
  here in Python integers: each activation's mantissa aligned to the group's largest exponent
  with 3 guard bits, nearest even, times the INT8 weight, summed exactly.
"""

from __future__ import annotations

import os

import cocotb
import numpy as np
from bitmod.runtime.emulator.reference_pe import fp16_fields, rne_shift_right
from cocotb.triggers import Timer
from vectors import activations

GROUPS = int(os.environ.get("BITMOD_RTL_GROUPS", "12"))


async def _tick(dut) -> None:
    await Timer(1, unit="ns")
    dut.clk.value = 1
    await Timer(1, unit="ns")
    dut.clk.value = 0


def _aligned(bits: int, group_exp: int) -> int:
    sign, man, exp = fp16_fields(bits)
    distance = group_exp - exp
    value = man << 3
    if distance > 0:
        value = rne_shift_right(value, min(distance, 15))
    return -value if sign else value


@cocotb.test()
async def fp16_mac_matches_numpy_and_figna_its_definition(dut) -> None:
    rng = np.random.default_rng(11)
    dut.clk.value = 0
    dut.rst.value = 1
    dut.valid.value = 0
    await _tick(dut)
    dut.rst.value = 0
    for _ in range(GROUPS):
        length = int(rng.integers(4, 130))
        a = activations(rng, (1, length))[0]
        b = activations(rng, (1, length))[0]
        w = rng.integers(-128, 128, length)
        live = [fp16_fields(int(x))[2] for x in a.view(np.uint16) if fp16_fields(int(x))[1]]
        group_exp = max(live) if live else -24
        acc = np.float32(0)
        exact = 0
        for i in range(length):
            dut.valid.value = 1
            dut.clear.value = int(i == 0)
            dut.a.value = int(a[i : i + 1].view(np.uint16)[0])
            dut.b.value = int(b[i : i + 1].view(np.uint16)[0])
            dut.h.value = int(a[i : i + 1].view(np.uint16)[0])
            dut.group_exp.value = group_exp
            dut.w.value = int(w[i])
            await Timer(1, unit="ns")
            assert dut.aligned.value.to_signed() == _aligned(int(a.view(np.uint16)[i]), group_exp)
            await _tick(dut)
            product = np.float32(a[i]) * np.float32(b[i])
            acc = product if i == 0 else np.float32(acc + product)
            exact += _aligned(int(a.view(np.uint16)[i]), group_exp) * int(w[i])
            assert int(dut.fp16_acc.value) == int(acc.view(np.uint32)), (i, acc)
            assert dut.figna_acc.value.to_signed() == exact, i
        dut.valid.value = 0
        await _tick(dut)
