"""cocotb bench: one tile (term encoders, PEs, column accumulators, drain units) running whole
macs, driven cycle by cycle as the PE engine drives it (docs/rtl.md), against the scalar
reference PE (FP32 column accumulators) and the PE model's drain (FP16 outputs), bit for bit.

Every accelerated format; two passes of ROWS rows into one MR = 2·ROWS block; random codes,
SV indices, zero points, SV registers (sometimes reprogrammed), SB-bit signed scale codes, FP16
channel scales and biases; groups short enough that the engine must stall between them.
"""

from __future__ import annotations

import os
import zlib

import cocotb
import numpy as np
from bitmod.backends.rtl.packages import format_descriptor
from bitmod.runtime.emulator import pe
from bitmod.runtime.emulator.reference_pe import reference_matmul
from bitmod.runtime.formats import FORMAT_IDS, get_format
from bitmod.runtime.formats.bitserial import decode_codes, num_terms, value_terms
from cocotb.triggers import Timer
from vectors import ACCELERATED, activations, sv_register

ROWS = int(os.environ.get("BITMOD_TILE_ROWS", "2"))
COLS = int(os.environ.get("BITMOD_TILE_COLS", "3"))
PASSES = 2
MACS = int(os.environ.get("BITMOD_RTL_MACS", "1"))


async def _tick(dut) -> None:
    await Timer(1, unit="ns")
    dut.clk.value = 1
    await Timer(1, unit="ns")
    dut.clk.value = 0


def _pack(values, width: int) -> int:
    return sum((int(v) & ((1 << width) - 1)) << (width * i) for i, v in enumerate(values))


async def _run_mac(dut, name: str, rng: np.random.Generator) -> None:
    fmt = get_format(name)
    desc = format_descriptor(name)
    group = int(rng.choice([4, 8, 16, 32]))
    k = group * int(rng.integers(1, 4))
    m, n = PASSES * ROWS, COLS
    register = sv_register(rng, name)
    uses_register = fmt.special_code is not None
    every = np.arange(1 << fmt.bits)
    usable = every[np.isfinite(decode_codes(fmt, every, 0))]
    codes = usable[rng.integers(0, len(usable), (n, k))]
    groups = k // group
    sv_index = (
        rng.integers(0, max(1, fmt.n_candidates), (n, groups))
        if uses_register
        else np.zeros((n, groups), int)
    )
    zeros = (
        rng.integers(0, 1 << fmt.bits, (n, groups))
        if fmt.family == "int_asym"
        else np.zeros((n, groups), int)
    )
    per_weight = np.repeat(sv_index, group, axis=1)
    values = decode_codes(fmt, codes, per_weight, register) - np.repeat(zeros, group, axis=1)
    count = num_terms(fmt, register if uses_register else None)
    terms = value_terms(fmt, values.astype(np.int64), count)
    sb = int(rng.integers(1, 16))
    scale_codes = rng.integers(-(1 << (sb - 1)), 1 << (sb - 1), (n, groups))
    channel_scale = (rng.standard_normal(n) * 0.01).astype(np.float16)
    bias = rng.standard_normal(n).astype(np.float16) if rng.random() < 0.5 else None
    act = activations(rng, (m, k))
    _, column_ref, _ = reference_matmul(act, terms, scale_codes, channel_scale, group, bias)
    # The reference's Fractions lose the sign of a zero C * c; the drain is the PE model's
    # (IEEE) on the reference accumulators.
    column32 = np.array([[float(v) for v in row] for row in column_ref], np.float32)
    y_ref = pe.drain(column32, channel_scale, bias)

    dut.kind.value = desc.kind
    dut.bits.value = desc.bits
    dut.sv_enable.value = int(desc.sv_enable)
    dut.magnitudes.value = _pack(desc.magnitudes, 5)
    dut.sv_regs.value = _pack(register, 16)
    dut.sb.value = sb
    assert FORMAT_IDS[name] >= 0
    steps = group // 4
    issued = 0
    for p in range(PASSES):
        rows = act[p * ROWS : (p + 1) * ROWS].view(np.uint16)
        for g in range(groups):
            if issued:  # the engine's stall: consecutive group ends at least SB + ROWS apart
                for _ in range(max(0, sb + ROWS - steps * count)):
                    dut.f_valid.value = 0
                    await _tick(dut)
            issued += 1
            dut.f_sv_index.value = _pack(sv_index[:, g], 2)
            dut.f_zero.value = _pack(zeros[:, g], 8)
            dut.f_scale.value = _pack(scale_codes[:, g], 15)
            dut.f_crow.value = p * ROWS
            dut.f_replace.value = int(g == 0)
            for j in range(steps):
                k0 = g * group + 4 * j
                dut.f_act.value = _pack([_pack(r[k0 : k0 + 4], 16) for r in rows], 64)
                dut.f_codes.value = _pack([_pack(codes[c, k0 : k0 + 4], 8) for c in range(n)], 32)
                dut.f_lane_valid.value = (1 << (4 * COLS)) - 1
                for t in range(count):
                    dut.f_valid.value = 1
                    dut.f_load.value = int(t == 0)
                    dut.f_term.value = t
                    dut.f_last.value = int(j == steps - 1 and t == count - 1)
                    await _tick(dut)
    dut.f_valid.value = 0
    for _ in range(4 + sb + ROWS):
        await _tick(dut)
    dut.drain_scale.value = _pack(channel_scale.view(np.uint16), 16)
    dut.drain_bias.value = _pack(
        np.zeros(n, np.uint16) if bias is None else bias.view(np.uint16), 16
    )
    dut.drain_has_bias.value = int(bias is not None)
    for row in range(m):
        dut.drain_row.value = row
        await Timer(1, unit="ns")
        c_bits = int(dut.drain_c.value)
        y_bits = int(dut.drain_y.value)
        for c in range(n):
            got_c = np.uint32((c_bits >> (32 * c)) & 0xFFFFFFFF).view(np.float32)
            want_c = np.float32(float(column_ref[row, c]))
            assert got_c.view(np.uint32) == want_c.view(np.uint32), (name, row, c, got_c, want_c)
            got_y = (y_bits >> (16 * c)) & 0xFFFF
            assert got_y == int(y_ref[row, c : c + 1].view(np.uint16)[0]), (name, row, c)


@cocotb.test()
async def whole_macs_match_the_scalar_reference(dut) -> None:
    dut.clk.value = 0
    dut.rst.value = 1
    dut.f_valid.value = 0
    dut.f_last.value = 0
    dut.f_load.value = 0
    dut.f_term.value = 0
    await _tick(dut)
    dut.rst.value = 0
    for name in ACCELERATED:
        rng = np.random.default_rng(zlib.crc32(b"tile/" + name.encode()))
        for _ in range(MACS):
            await _run_mac(dut, name, rng)
        dut._log.info("%s: %d mac(s)", name, MACS)
