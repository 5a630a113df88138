"""cocotb bench: the rounding units of bitmod_arith_pkg.sv against numpy and the PE model.

Random bit patterns over the whole finite range (normals, subnormals, zeros of both signs),
plus ties and boundary values; ``BITMOD_RTL_VECTORS`` vectors per unit (default 2,000).
"""

from __future__ import annotations

import os

import cocotb
import numpy as np
from bitmod.runtime.emulator import pe
from cocotb.triggers import Timer

VECTORS = int(os.environ.get("BITMOD_RTL_VECTORS", "2000"))


def _finite32(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random finite FP32 bit patterns: uniform exponents (0 = zero/subnormal), and specials."""
    sign = rng.integers(0, 2, n, dtype=np.uint32) << 31
    exponent = rng.integers(0, 255, n, dtype=np.uint32) << 23
    fraction = rng.integers(0, 1 << 23, n, dtype=np.uint32)
    fraction[rng.random(n) < 0.2] = 0  # exact powers of two, ties
    bits = sign | exponent | fraction
    bits[:8] = [0, 0x80000000, 1, 0x80000001, 0x007FFFFF, 0x00800000, 0x7F7FFFFF, 0xFF7FFFFF]
    return bits


def _f32(bits: np.ndarray) -> np.ndarray:
    return bits.astype(np.uint32).view(np.float32)


def _bits32(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, np.float32).view(np.uint32)


async def _settle() -> None:
    await Timer(1, unit="ns")


@cocotb.test()
async def fp32_add_matches_numpy(dut) -> None:
    rng = np.random.default_rng(1)
    a, b = _finite32(rng, VECTORS), _finite32(rng, VECTORS)
    # close magnitudes: cancellation and normalization
    b[VECTORS // 2 :] = (a[VECTORS // 2 :] ^ 0x80000000) + rng.integers(
        -3, 4, VECTORS - VECTORS // 2
    ).astype(np.uint32)
    with np.errstate(over="ignore"):
        want = _bits32(_f32(a) + _f32(b))
    for x, y, w in zip(a, b, want, strict=True):
        if not np.isfinite(_f32(np.array([y]))[0]):
            continue
        dut.add_a.value, dut.add_b.value = int(x), int(y)
        await _settle()
        assert int(dut.add_y.value) == int(w), (hex(x), hex(y), hex(int(dut.add_y.value)), hex(w))


@cocotb.test()
async def fp32_mul_matches_numpy(dut) -> None:
    rng = np.random.default_rng(2)
    a, b = _finite32(rng, VECTORS), _finite32(rng, VECTORS)
    # products near the subnormal boundary and near overflow
    b[: VECTORS // 3] = (
        (rng.integers(0, 2, VECTORS // 3, dtype=np.uint32) << 31)
        | (
            (254 - (a[: VECTORS // 3] >> 23 & 0xFF) + rng.integers(-30, 30, VECTORS // 3))
            .clip(1, 254)
            .astype(np.uint32)
            << 23
        )
        | rng.integers(0, 1 << 23, VECTORS // 3, dtype=np.uint32)
    )
    with np.errstate(over="ignore", under="ignore"):
        want = _bits32(_f32(a) * _f32(b))
    for x, y, w in zip(a, b, want, strict=True):
        dut.mul_a.value, dut.mul_b.value = int(x), int(y)
        await _settle()
        assert int(dut.mul_y.value) == int(w), (hex(x), hex(y), hex(int(dut.mul_y.value)), hex(w))


@cocotb.test()
async def fp16_to_fp32_exhaustive(dut) -> None:
    bits = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    finite = bits[(bits & 0x7C00) != 0x7C00]
    want = _bits32(finite.view(np.float16).astype(np.float32))
    for h, w in zip(finite, want, strict=True):
        dut.widen_in.value = int(h)
        await _settle()
        assert int(dut.widen_out.value) == int(w), (hex(h), hex(int(dut.widen_out.value)), hex(w))


@cocotb.test()
async def fp32_to_fp16_matches_numpy(dut) -> None:
    rng = np.random.default_rng(3)
    bits = _finite32(rng, VECTORS)
    # the FP16 range: exponents 100..143, with ties (13 / more low bits exactly half)
    near = rng.integers(100, 144, VECTORS, dtype=np.uint32) << 23
    near |= rng.integers(0, 1 << 23, VECTORS, dtype=np.uint32) & ~np.uint32(0xFFF)
    near |= np.where(rng.random(VECTORS) < 0.5, np.uint32(0x1000), np.uint32(0))
    near |= rng.integers(0, 2, VECTORS, dtype=np.uint32) << 31
    bits = np.concatenate(
        [bits, near, _bits32(np.float32([65504, 65519.99, 65520, 2**-24, 2**-25, 3 * 2**-26]))]
    )
    with np.errstate(over="ignore"):
        want = _f32(bits).astype(np.float16).view(np.uint16)
    for f, w in zip(bits, want, strict=True):
        dut.narrow_in.value = int(f)
        await _settle()
        assert int(dut.narrow_out.value) == int(w), (hex(f), hex(int(dut.narrow_out.value)), hex(w))


@cocotb.test()
async def round24_matches_the_pe_model(dut) -> None:
    rng = np.random.default_rng(4)
    lengths = rng.integers(0, 64, VECTORS)
    acc = rng.integers(0, 1 << 62, VECTORS, dtype=np.int64) >> (62 - np.minimum(lengths, 62))
    acc = np.where(rng.random(VECTORS) < 0.5, -acc, acc)
    # |A| < 2^63 by the ISA's bound (the int64 minimum is outside the contract)
    acc[:6] = [0, 1, -1, (1 << 24) - 1, (1 << 25) - 1, -((1 << 63) - 1)]
    acc[6:10] = [(1 << 25) + 1, (1 << 25) + 3, 3 << 40, (1 << 63) - 1]
    mantissa, shift = pe.round_to_mantissa(acc)
    for a, m, s in zip(acc, mantissa, shift, strict=True):
        dut.round_in.value = int(a) & ((1 << 64) - 1)
        await _settle()
        got = int(dut.round_mantissa.value) * (-1 if int(dut.round_negative.value) else 1)
        assert (got, int(dut.round_shift.value)) == (int(m), int(s)), (int(a), got, int(m))


@cocotb.test()
async def fix_to_fp32_matches_the_pe_model(dut) -> None:
    rng = np.random.default_rng(5)
    lengths = rng.integers(0, 40, VECTORS)
    product = rng.integers(0, 1 << 39, VECTORS, dtype=np.int64) >> (39 - lengths)
    product = np.where(rng.random(VECTORS) < 0.5, -product, product)
    shift = rng.integers(0, 41, VECTORS)
    product[:4] = [0, 1, -(1 << 38), (1 << 24) + 1]
    want = _bits32(np.ldexp(product.astype(np.float64), shift + pe.ACC_LSB_EXP).astype(np.float32))
    for p, s, w in zip(product, shift, want, strict=True):
        dut.fix_product.value = int(p) & ((1 << 41) - 1)
        dut.fix_shift.value = int(s)
        await _settle()
        assert int(dut.fix_out.value) == int(w), (
            int(p),
            int(s),
            hex(int(dut.fix_out.value)),
            hex(w),
        )
