"""A scalar reference model of ONE BitMoD PE, written straight from docs/ISA.md "PE arithmetic".

Deliberately naive: one PE, one cycle at a time, Python ints for the datapath and exact
``Fraction`` arithmetic with an explicit round-to-nearest-even for FP32 and FP16. It shares
nothing with the fast model (runtime/emulator/pe.py) except the bit-serial terms it is fed. The
golden model of tests/test_pe.py, tests/test_machine.py, bench/emulate.py and the RTL testbenches.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
from bitmod.runtime.formats.bitserial import Terms
from bitmod.runtime.formats.quantizer import QuantizedTensor, quantize


def round_float(x: Fraction, mantissa_bits: int, min_exp: int, max_finite: Fraction) -> Fraction:
    """RNE of ``x`` to a binary float with ``mantissa_bits`` (hidden bit included) whose smallest
    normal is ``2^min_exp`` (gradual underflow below it); overflow gives ±inf (as a float)."""
    if x == 0:
        return Fraction(0)
    sign = -1 if x < 0 else 1
    x = abs(x)
    exponent = x.numerator.bit_length() - x.denominator.bit_length()
    if Fraction(2) ** exponent > x:
        exponent -= 1
    exponent = max(exponent, min_exp)
    ulp = Fraction(2) ** (exponent - mantissa_bits + 1)
    units = x / ulp
    floor = units.numerator // units.denominator
    remainder = units - floor
    if remainder > Fraction(1, 2) or (remainder == Fraction(1, 2) and floor % 2 == 1):
        floor += 1
    result = floor * ulp
    if result > max_finite:
        return Fraction(sign) * Fraction(10**40)  # stands for inf; compared via to_fp16
    return sign * result


FP32_MAX = (2 - Fraction(1, 2**23)) * Fraction(2) ** 127
FP16_MAX = Fraction(65504)


def fp32(x: Fraction) -> Fraction:
    return round_float(x, 24, -126, FP32_MAX)


def fp16(x: Fraction) -> Fraction:
    return round_float(x, 11, -14, FP16_MAX)


def fp16_fields(bits: int) -> tuple[int, int, int]:
    """(sign, 11-bit mantissa with hidden bit, exponent ea) of an FP16 bit pattern."""
    sign = bits >> 15
    biased = (bits >> 10) & 0x1F
    fraction = bits & 0x3FF
    if biased == 0:
        return sign, fraction, -24
    return sign, fraction | 0x400, biased - 25


def fp16_value(bits: int) -> Fraction:
    sign, man, exp = fp16_fields(bits)
    return (-1) ** sign * man * Fraction(2) ** exp


def rne_shift_right(value: int, shift: int) -> int:
    """``round(value / 2^shift)`` to nearest even, for ``value ≥ 0``."""
    kept, remainder = value >> shift, value & ((1 << shift) - 1)
    half = 1 << (shift - 1)
    if remainder > half or (remainder == half and kept & 1):
        kept += 1
    return kept


@dataclass
class ScalarPE:
    """One PE (plus its column's dequantizer and accumulator), one cycle at a time."""

    group_size: int

    def run(
        self,
        act_bits: list[int],
        terms: list[list[tuple[int, int, int, int]]],
        scale_codes: list[int],
        channel_scale_bits: int,
        bias_bits: int | None,
    ) -> tuple[list[int], Fraction, Fraction]:
        """Returns (group accumulators in 2^-27 units, column accumulator C, FP16 output y)."""
        accumulators = []
        column = Fraction(0)
        k_total = len(act_bits)
        # A ragged last group (G not dividing K) ends after its own steps; a last step past K
        # has fewer lanes.
        for g in range(-(-k_total // self.group_size)):
            acc = 0
            end = min(k_total, (g + 1) * self.group_size)
            for k0 in range(g * self.group_size, end, 4):
                lanes = range(k0, min(k0 + 4, end))
                for t in range(len(terms[k0])):
                    acc += self.cycle([act_bits[i] for i in lanes], [terms[i][t] for i in lanes])
            accumulators.append(acc)
            # dequantization: 24-bit RNE, exact scale product, one FP32 rounding, FP32 add
            magnitude = abs(acc)
            shift = max(magnitude.bit_length() - 24, 0)
            mantissa = rne_shift_right(magnitude, shift) if shift else magnitude
            mantissa = -mantissa if acc < 0 else mantissa
            product = mantissa * scale_codes[g]
            x = fp32(Fraction(product) * Fraction(2) ** (shift - 27))
            column = fp32(column + x)
        y = fp32(column * fp16_value(channel_scale_bits))
        if bias_bits is not None:
            y = fp32(y + fp16_value(bias_bits))
        return accumulators, column, fp16(y)

    @staticmethod
    def cycle(act_bits: list[int], lane_terms: list[tuple[int, int, int, int]]) -> int:
        """One 4-lane cycle: returns D · 2^(E − 3 + bsig) in units of 2^-27."""
        bsigs = {term[3] for term in lane_terms}
        assert len(bsigs) == 1, "lanes of a cycle share bsig"
        bsig = bsigs.pop()
        lanes = []
        for bits, (w_sign, w_exp, w_man, _) in zip(act_bits, lane_terms, strict=True):
            a_sign, a_man, a_exp = fp16_fields(bits)
            product = w_man * a_man
            if product:
                lanes.append((a_sign ^ w_sign, product, a_exp + w_exp))
        if not lanes:
            return 0
        big_e = max(e for _, _, e in lanes)
        d_sum = 0
        for sign, product, e in lanes:
            distance = big_e - e
            if distance <= 3:
                p = product << (3 - distance)
            else:
                p = rne_shift_right(product, distance - 3)
            d_sum += -p if sign else p
        exponent = big_e - 3 + bsig + 27
        assert exponent >= 0
        return d_sum << exponent


def reference_matmul(
    act: np.ndarray,
    terms: Terms,
    scale_codes: np.ndarray,
    channel_scale: np.ndarray,
    group_size: int,
    bias: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scalar PE per output: (A [M,N,G] int, C [M,N] object Fractions, y [M,N] fp16)."""
    m, k = act.shape
    n = terms.sign.shape[0]
    act_bits = act.view(np.uint16)
    scale_bits = np.asarray(channel_scale, np.float16).view(np.uint16)
    bias_bits = None if bias is None else np.asarray(bias, np.float16).view(np.uint16)
    model = ScalarPE(group_size)
    acc = np.zeros((m, n, -(-k // group_size)), dtype=object)
    column = np.zeros((m, n), dtype=object)
    y = np.zeros((m, n), dtype=np.float16)
    for col in range(n):
        col_terms = [
            [
                (
                    int(terms.sign[col, kk, t]),
                    int(terms.exp[col, kk, t]),
                    int(terms.man[col, kk, t]),
                    int(terms.bsig[col, kk, t]),
                )
                for t in range(terms.sign.shape[2])
            ]
            for kk in range(k)
        ]
        for row in range(m):
            a_list, c, out = model.run(
                [int(b) for b in act_bits[row]],
                col_terms,
                [int(s) for s in scale_codes[col]],
                int(scale_bits[col]),
                None if bias_bits is None else int(bias_bits[col]),
            )
            acc[row, col] = a_list
            column[row, col] = c
            y[row, col] = (
                np.float16(float(out))
                if abs(out) <= FP16_MAX
                else np.float16(np.inf if out > 0 else -np.inf)
            )
    return acc, column, y


# --- inputs -----------------------------------------------------------------------------------


def random_activations(rng: np.random.Generator, m: int, k: int, kind: str) -> np.ndarray:
    if kind == "normal":
        return rng.standard_normal((m, k)).astype(np.float16)
    if kind == "wide":  # exponents across the whole FP16 range, incl. subnormals and zeros
        bits = rng.integers(0, 0x7C00, size=(m, k), dtype=np.uint16)
        bits |= (rng.integers(0, 2, size=(m, k)) << 15).astype(np.uint16)
        return bits.view(np.float16)
    if kind == "special":
        pool = np.array(
            [
                0.0,
                -0.0,
                65504.0,
                -65504.0,
                2.0**-24,
                -(2.0**-24),
                2.0**-14,
                6.1e-5,
                1.0,
                -1.0,
                0.333,
                1000.0,
                -3.0e-7,
                2.0**-20,
            ],
            dtype=np.float16,
        )
        return pool[rng.integers(0, len(pool), size=(m, k))]
    raise ValueError(kind)


def random_quantized(
    rng: np.random.Generator, fmt: str, n: int, k: int, group: int
) -> QuantizedTensor:
    w = torch.from_numpy(rng.standard_normal((n, k)).astype(np.float32))
    w[:, : k // 3] *= 20.0  # groups of very different magnitude
    return quantize(w, fmt, group_size=group, scale_bits=8)
