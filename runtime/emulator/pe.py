"""Bit-exact, vectorized model of the BitMoD PE array arithmetic.

The arithmetic is the contract of docs/ISA.md, "PE arithmetic" (paper Sec. IV-B, Fig. 5): FP16
activations times bit-serial weight terms (``bitmod.runtime.formats.bitserial``) in four lanes a
cycle, aligned to the largest exponent with 3 guard bits and round-to-nearest-even (steps 1–3),
an exact fixed-point group accumulator with LSB ``2^−27`` (``ACC_LSB_EXP``, step 4), the group
scale applied bit-serially and an FP32 column accumulator (step 5), and the FP16 drain (step 6).
This module computes it over whole blocks at once; the step numbers below are the contract's.

How the fast model stays exact
------------------------------
Steps 1–3 run in float32 over arrays ``[terms, rows, cols, steps]``, one array per lane:
``a · 2^exp · man`` is an FP16 mantissa times a power of two, hence exact in float32. Step 2's
RNE is float32 addition's own rounding: ``C = 1.5 · 2^(E+20)`` has an ulp of ``2^(E−3)`` and
``|a_i t_i| < 2^(E+11)`` keeps ``a_i t_i + C`` in C's binade, so ``fl(a_i t_i + C) − C`` is
``p_i · 2^(E−3)`` exactly (ties to even). The four ``p_i`` are integers below ``2^14``, their
sum below ``2^16``: exact. Step 4: each cycle's
``D · 2^(E−3+bsig)`` is exact in float32 (a 17-bit integer times a power of two) and a multiple
of ``2^−27``; summed in float64 it stays exact while every partial sum is below ``2^26`` (53
bits above the LSB), which an a-priori bound ``2·G·max|a|·max Σ_t|t|`` checks per block;
otherwise the sum runs in int64 units of ``2^−27``, exact while ``|A| < 2^63``
(``|A| ≤ G · max|w| · 65504 · 2^27`` with ``G ≤ 256`` stays below ``2^60`` for every
accelerated format). Step 5 uses integer RNE, an exact int64 product and a single
float64→float32 rounding of an exactly representable value; the FP32 additions in K order use
``numpy.add.accumulate``, which adds strictly left to right.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from bitmod.runtime.arch.hwconfig import LANES
from bitmod.runtime.formats.bitserial import Terms

__all__ = [
    "ACC_LSB_EXP",
    "GUARD_BITS",
    "LANES",
    "MANTISSA_BITS",
    "ActFields",
    "PreparedWeights",
    "accumulate_groups",
    "decode_fp16",
    "dequantize_groups",
    "drain",
    "error_bound",
    "group_accumulators",
    "pe_matmul",
    "prepare_weights",
    "round_to_mantissa",
]

GUARD_BITS = 3  # extra bits kept when aligning a lane to the largest exponent
ACC_LSB_EXP = -27  # group accumulator LSB: min FP16 exponent (−24) minus the guard bits
MANTISSA_BITS = 24  # the group sum is rounded to this many bits before dequantization
_FP16_EXP_MIN = -24
_ZERO_EXP = -(1 << 13)  # exponent of a zero lane: below anything real, and two of them fit int16
_WORK_ELEMENTS = 1 << 18  # elements of one [R, C, steps, T] temporary per chunk


@dataclass(frozen=True)
class ActFields:
    """FP16 activations split into sign, 11-bit mantissa (hidden bit included) and exponent."""

    sign: np.ndarray  # int8, 1 for negative
    man: np.ndarray  # int32, 0..2047
    exp: np.ndarray  # int32, ea: value = (−1)^sign · man · 2^exp


def decode_fp16(a: np.ndarray) -> ActFields:
    """Split FP16 values; ValueError naming the first Inf/NaN (the PE has no special values)."""
    a = np.asarray(a)
    if a.dtype != np.float16:
        raise ValueError(f"activations must be float16, got {a.dtype}")
    bits = a.view(np.uint16).astype(np.int32)
    biased = (bits >> 10) & 0x1F
    if np.any(biased == 0x1F):
        where = tuple(int(i) for i in np.argwhere(biased == 0x1F)[0])
        raise ValueError(f"activation {a[where]} at index {list(where)} is Inf/NaN")
    fraction = bits & 0x3FF
    normal = biased > 0
    man = np.where(normal, fraction | 0x400, fraction).astype(np.int32)
    exp = np.where(normal, biased - 25, _FP16_EXP_MIN).astype(np.int32)
    return ActFields((bits >> 15).astype(np.int8), man, exp)


@dataclass(frozen=True)
class PreparedWeights:
    """A weight block's terms in the layout the fast PE model consumes.

    Lane-major, K innermost: ``value`` [4, T, C, K/4] float32 ``(−1)^s · man · 2^exp`` (``bsig``
    excluded), ``exp`` [4, T, C, K/4] int16 (``_ZERO_EXP`` where ``man = 0``), ``bsig``
    [T, C, K/4] int32 (shared by a step's lanes). Lane ``i`` of step ``j`` is K element
    ``4j + i``. ``max_term_sum`` is ``max Σ_t |t|`` over the block (for the fast-path check).
    """

    value: np.ndarray
    exp: np.ndarray
    bsig: np.ndarray
    max_term_sum: float

    @cached_property
    def any_bsig(self) -> bool:
        return bool(self.bsig.any())

    @cached_property
    def bsig_scale(self) -> np.ndarray:
        """``2^bsig`` [T, C, K/4] float32."""
        return _pow2_float32(self.bsig)

    @property
    def nbytes(self) -> int:
        return self.value.nbytes + self.exp.nbytes + self.bsig.nbytes

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, K, T)."""
        _, t, c, steps = self.value.shape
        return c, steps * LANES, t


def prepare_weights(terms: Terms) -> PreparedWeights:
    """Convert bit-serial terms ``[C, K, T]`` for :func:`group_accumulators`.

    A K that is not a multiple of 4 gets zero lanes up to the next step (``man = 0``: no part
    in the step's exponent, nothing added), with the step's shared bit significance.
    """
    c, k, t = terms.sign.shape
    if k % LANES:
        pad = ((0, 0), (0, LANES - k % LANES), (0, 0))
        terms = Terms(
            np.pad(terms.sign, pad),
            np.pad(terms.exp, pad),
            np.pad(terms.man, pad),
            np.pad(terms.bsig, pad, mode="edge"),
        )
        k += pad[1][1]
    man = terms.man.astype(np.int32)
    exp = terms.exp.astype(np.int32)
    magnitude = np.ldexp(man.astype(np.float32), exp).astype(np.float32)
    value = np.where(terms.sign.astype(bool), -magnitude, magnitude).astype(np.float32)
    lane_exp = np.where(man != 0, exp, _ZERO_EXP).astype(np.int16)
    bsig = terms.bsig.astype(np.int32).reshape(c, k // LANES, LANES, t)
    if np.any(bsig != bsig[:, :, :1, :]):
        raise ValueError("terms of one step must share their bit significance across lanes")
    term_sum = (np.abs(magnitude) * np.exp2(terms.bsig.astype(np.float64))).sum(axis=-1)

    def lane_major(x: np.ndarray) -> np.ndarray:  # [C, K, T] -> [4, T, C, K/4]
        return np.ascontiguousarray(x.reshape(c, k // LANES, LANES, t).transpose(2, 3, 0, 1))

    return PreparedWeights(
        lane_major(value),
        lane_major(lane_exp),
        np.ascontiguousarray(bsig[:, :, 0, :].transpose(2, 0, 1)),
        float(term_sum.max(initial=0.0)),
    )


def _pow2_float32(exponent: np.ndarray) -> np.ndarray:
    """``2^exponent`` as float32 for int32 exponents in the normal range, via the bit pattern."""
    return ((exponent + 127) << 23).view(np.float32)


def _steps_accumulate(
    act: np.ndarray,
    act_exp: np.ndarray,
    weights: PreparedWeights,
    s0: int,
    s1: int,
    group_size: int,
    float_sum: bool,
) -> np.ndarray:
    """Group accumulators (int64, units 2^ACC_LSB_EXP) for steps [s0, s1) of whole groups.

    ``act`` [4, R, K/4] float32 and ``act_exp`` [4, R, K/4] int16 are lane-major. Every array
    below is [T, R, C, steps] (steps innermost); each lane is its own array, so the lane max and
    the adder tree are elementwise. With ``float_sum`` the exact per-cycle contributions are
    summed in float64, which is exact when every partial sum is below 2^26 (the caller checks a
    bound), else in int64.
    """
    a = act[:, None, :, None, s0:s1]
    ae = act_exp[:, None, :, None, s0:s1]
    w = weights.value[:, :, None, :, s0:s1]
    we = weights.exp[:, :, None, :, s0:s1]
    big_e = ae[0] + we[0]  # E = max_i e_i, int16; ≈ 2·_ZERO_EXP for zero lanes
    lane_e = np.empty_like(big_e)
    for i in range(1, LANES):
        np.maximum(big_e, np.add(ae[i], we[i], out=lane_e), out=big_e)
    big_e = np.where(big_e > _ZERO_EXP // 2, big_e, _FP16_EXP_MIN).astype(np.int32)
    # Step 2 by the round-to-nearest-even of float32 addition: C = 1.5·2^(E+20) has an ulp of
    # 2^(E−3), and |a_i·t_i| < 2^(E+11) keeps a_i·t_i + C in C's binade, so fl(a_i·t_i + C) − C
    # is a_i·t_i rounded to a multiple of 2^(E−3), ties to even: p_i · 2^(E−3), exactly.
    magic = (((big_e + (127 + 20)) << 23) | (1 << 22)).view(np.float32)
    d = np.zeros(big_e.shape, np.float32)
    lane = np.empty(big_e.shape, np.float32)
    for i in range(LANES):
        np.multiply(a[i], w[i], out=lane)  # man·Ma·2^e_i, exact in float32
        lane += magic
        lane -= magic
        d += lane  # D · 2^(E−3): the adder tree, exact (16 significant bits at most)
    t, rows, cols, steps = d.shape
    steps_per_group = group_size // LANES
    shape = (t, rows, cols, steps // steps_per_group, steps_per_group)
    if float_sum:
        if weights.any_bsig:
            d *= weights.bsig_scale[:, None, :, s0:s1]  # · 2^bsig, exact
        total = d.reshape(shape).sum(axis=(0, 4), dtype=np.float64)
        return np.ldexp(total, -ACC_LSB_EXP).astype(np.int64)
    d *= _pow2_float32(GUARD_BITS - big_e)  # D, an integer below 2^16
    exponent = big_e + (weights.bsig[:, None, :, s0:s1] - GUARD_BITS)  # E − 3 + bsig ≥ −27
    contribution = d.astype(np.int64) << (exponent - ACC_LSB_EXP)
    return contribution.reshape(shape).sum(axis=(0, 4))


#: The float64 fast path of step 4 is exact while every partial sum stays below 2^26: then each
#: is a multiple of 2^−27 with at most 53 significant bits.
_FLOAT_SUM_LIMIT = 2.0**26


def group_accumulators(act: np.ndarray, weights: PreparedWeights, group_size: int) -> np.ndarray:
    """Steps 1–4 for every PE and group: ``A`` [R, C, ⌈K/G⌉] int64, units ``2^ACC_LSB_EXP``.

    ``act`` is FP16 [R, K]; rows and columns of the array are the leading axes. When ``G``
    does not divide K the last group is shorter: its partial sum is complete after
    ``⌈(K mod G)/4⌉`` steps (lanes past K are zero and add nothing).
    """
    rows, k = act.shape
    cols, k_w, n_terms = weights.shape
    if k_w != -(-k // LANES) * LANES:
        raise ValueError(f"activation K={k} does not match weight K={k_w}")
    if group_size % LANES or group_size <= 0:
        raise ValueError(f"group size {group_size} must be a positive multiple of 4")
    if k_w != k:  # zero lanes up to the last step, as prepare_weights gave the weights
        act = np.pad(np.asarray(act), ((0, 0), (0, k_w - k)))
        k = k_w
    fields = decode_fp16(act)

    def lane_major(x: np.ndarray) -> np.ndarray:  # [R, K] -> [4, R, K/4]
        return np.ascontiguousarray(x.reshape(rows, k // LANES, LANES).transpose(2, 0, 1))

    act32 = act.astype(np.float32)
    act_exp = np.where(fields.man != 0, fields.exp, _ZERO_EXP).astype(np.int16)
    # |partial sum| ≤ Σ |D_c| 2^(E−3+bsig) ≤ Σ_k |a_k| W1_k (1 + 2^−13) + 2^−24 Σ W1_k < 2·G·
    # max|a|·max W1 + small: the per-lane rounding adds at most half a unit of 2^(E−3+bsig).
    bound = 2.0 * group_size * float(np.abs(act32).max(initial=0.0)) * weights.max_term_sum
    float_sum = bound + group_size * weights.max_term_sum < _FLOAT_SUM_LIMIT
    act32, act_exp = lane_major(act32), lane_major(act_exp)
    steps_per_group = group_size // LANES
    per_group_elements = max(1, rows * cols * steps_per_group * n_terms)
    chunk_groups = max(1, _WORK_ELEMENTS // per_group_elements)
    full_groups = k // group_size
    out = np.empty((rows, cols, -(-k // group_size)), dtype=np.int64)
    for g0 in range(0, full_groups, chunk_groups):
        g1 = min(full_groups, g0 + chunk_groups)
        out[:, :, g0:g1] = _steps_accumulate(
            act32,
            act_exp,
            weights,
            g0 * steps_per_group,
            g1 * steps_per_group,
            group_size,
            float_sum,
        )
    if full_groups * group_size < k:  # the ragged last group: its own, shorter steps
        tail = k - full_groups * group_size
        out[:, :, full_groups:] = _steps_accumulate(
            act32, act_exp, weights, full_groups * steps_per_group, k // LANES, tail, float_sum
        )
    return out


def round_to_mantissa(acc: np.ndarray, bits: int = MANTISSA_BITS) -> tuple[np.ndarray, np.ndarray]:
    """RNE of an int64 ``acc`` to ``bits`` significant bits: ``acc ≈ m · 2^shift``.

    Returns ``(m, shift)`` (int64 each); ``|m| ≤ 2^bits`` (a carry may reach exactly 2^bits).
    """
    acc = np.asarray(acc, dtype=np.int64)
    magnitude = np.abs(acc)
    # frexp of the float64 rounding may overshoot the bit length by one near powers of two.
    _, length = np.frexp(magnitude.astype(np.float64))
    length = length.astype(np.int64)
    over = (length > 0) & ((magnitude >> np.maximum(length - 1, 0)) == 0)
    length = np.where(over, length - 1, length)
    shift = np.maximum(length - bits, 0)
    kept = magnitude >> shift
    remainder = magnitude - (kept << shift)
    half = np.where(shift > 0, np.int64(1) << np.maximum(shift - 1, 0), 0)
    round_up = (remainder > half) | ((remainder == half) & (shift > 0) & ((kept & 1) == 1))
    kept = kept + round_up
    return np.where(acc < 0, -kept, kept), shift


def dequantize_groups(acc: np.ndarray, scale_codes: np.ndarray) -> np.ndarray:
    """Step 5 up to the FP32 rounding: ``fp32(round24(A) · σ_g)`` [R, C, G] float32.

    ``scale_codes`` [C, G] are the signed SB-bit group scale codes.
    """
    mantissa, shift = round_to_mantissa(acc)
    product = mantissa * np.asarray(scale_codes, dtype=np.int64)[None]  # |·| < 2^40: exact
    exact = np.ldexp(product.astype(np.float64), shift + ACC_LSB_EXP)  # < 2^53 bits: exact
    return exact.astype(np.float32)  # the single RNE to FP32


def accumulate_groups(column_acc: np.ndarray, group_values: np.ndarray) -> np.ndarray:
    """``C += x_g`` in FP32 for each group in K order (strictly sequential, RNE)."""
    stacked = np.concatenate([column_acc[..., None], group_values], axis=-1).astype(np.float32)
    return np.add.accumulate(stacked, axis=-1, dtype=np.float32)[..., -1]


def drain(
    column_acc: np.ndarray, channel_scale: np.ndarray, bias: np.ndarray | None = None
) -> np.ndarray:
    """Step 6: ``fp16(fp32(C · fp32(c)) + fp32(bias))`` per output, ``c``/``bias`` per column."""
    scaled = column_acc.astype(np.float32) * np.asarray(channel_scale, np.float16).astype(
        np.float32
    )
    if bias is not None:
        scaled = scaled + np.asarray(bias, np.float16).astype(np.float32)
    with np.errstate(over="ignore"):
        return scaled.astype(np.float16)


def pe_matmul(
    act: np.ndarray,
    weights: PreparedWeights,
    scale_codes: np.ndarray,
    channel_scale: np.ndarray,
    group_size: int,
    bias: np.ndarray | None = None,
) -> np.ndarray:
    """The whole PE pipeline for one pass: FP16 [R, K] × terms [C, K, T] → FP16 [R, C]."""
    acc = group_accumulators(act, weights, group_size)
    column = accumulate_groups(
        np.zeros(acc.shape[:2], np.float32), dequantize_groups(acc, scale_codes)
    )
    return drain(column, channel_scale, bias)


def error_bound(
    act: np.ndarray,
    values: np.ndarray,
    term_abs: np.ndarray,
    scale_codes: np.ndarray,
    channel_scale: np.ndarray,
    group_size: int,
    bias: np.ndarray | None = None,
) -> np.ndarray:
    """Bound on ``|y − y_ref|`` [M, N], ``y_ref`` the float64 matmul of the dequantized weights.

    Inputs: FP16 ``act`` [M, K]; integer grid ``values`` [N, K]; ``term_abs`` [N, K]
    ``W1 = Σ_t |t|`` (the magnitudes of a weight's bit-serial terms); group scale codes
    ``σ_g`` [N, K/G]; FP16 channel scales ``c`` [N]; optional FP16 bias [N]. ``u = 2^−24``.

    Derivation (grid units inside a group, ``S_g = Σ_{k∈g} a_k v_k`` exact):

    * Alignment (step 2). Only lanes with ``E − e_i > 3`` round, at most 3 per cycle, each by
      at most half a unit of ``2^(E−3+bsig)``, i.e. ``2^(E−4+bsig)``. The lane ``j`` that sets
      ``E`` has ``|a_j t_j| = Ma_j · 2^(E+bsig)``; for a normal ``a_j`` ``Ma_j ≥ 2^10`` so
      ``2^(E+bsig) ≤ 2^−10 |a_j t_j|``; for a subnormal ``E = −24 + exp_j`` so
      ``2^(E+bsig) = 2^−24 |t_j|``. Bounding the max by the sum over the cycle's lanes and
      summing over cycles:
      ``|A_g − S_g| ≤ ε_g = 3·2^−14 Σ_{k∈g} |a_k| W1_k + 3·2^−28 Σ_{k∈g} W1_k``.
    * Step 4 is exact. Rounding ``A`` to 24 bits and the product to FP32 each cost a relative
      ``u``: ``|x_g − σ_g S_g| ≤ |σ_g| (ε_g + (2u + u²)(P_g + ε_g))`` with
      ``P_g = Σ_{k∈g} |a_k v_k| ≥ |S_g|``, and ``|x_g| ≤ |σ_g| (P_g + ε_g)(1 + u)²``.
    * FP32 recursive summation of ``n`` groups (Higham, Thm. 4.4): ``γ_n Σ|x_g|`` with
      ``γ_n = n u / (1 − n u)``. Call the total so far ``δ_C``, and ``X = Σ|σ_g| P_g``.
    * Drain: ``fp32(C · c)`` adds ``u |c| (X + δ_C)``; ``+ bias`` adds ``u (|c|(X + δ_C) + |b|)``
      (the channel scale and bias are exact in FP32); the FP16 rounding adds
      ``2^−11 |y| + 2^−25`` (relative half-ulp for normals, half the subnormal spacing).
    * ``y_ref`` uses ``dequantize``'s float32 weights ``fp32(v · fp32(σ c))`` (``σ c`` is exact,
      the product rounds: ``u |c σ v|``), so it is off the exact value by ``u |c| X`` more; its
      float64 matmul adds ``K · 2^−52 |c| X``.
    """
    a = np.abs(np.asarray(act, np.float16).astype(np.float64))
    v = np.abs(np.asarray(values, np.float64))
    w1 = np.asarray(term_abs, np.float64)
    sigma = np.abs(np.asarray(scale_codes, np.float64))
    c = np.abs(np.asarray(channel_scale, np.float16).astype(np.float64))
    b = np.zeros(v.shape[0]) if bias is None else np.abs(np.asarray(bias, np.float16).astype(float))
    m, k = a.shape
    n = v.shape[0]
    groups = -(-k // group_size)
    if groups * group_size != k:  # a ragged last group: zeros add nothing to any term below
        a = np.pad(a, ((0, 0), (0, groups * group_size - k)))
        v = np.pad(v, ((0, 0), (0, groups * group_size - k)))
        w1 = np.pad(w1, ((0, 0), (0, groups * group_size - k)))
    u = 2.0**-24
    a_g = a.reshape(m, groups, group_size)
    p = np.einsum("mgk,ngk->mng", a_g, v.reshape(n, groups, group_size))
    eps = 3 * 2.0**-14 * np.einsum("mgk,ngk->mng", a_g, w1.reshape(n, groups, group_size))
    eps += 3 * 2.0**-28 * w1.reshape(n, groups, group_size).sum(axis=-1)[None]
    s = sigma[None]
    group_err = s * (eps + (2 * u + u * u) * (p + eps))
    x_abs = s * (p + eps) * (1 + u) ** 2
    gamma = groups * u / (1 - groups * u)
    delta_c = group_err.sum(-1) + gamma * x_abs.sum(-1)
    big_x = (s * p).sum(-1)
    scaled = c[None] * (big_x + delta_c)
    err = c[None] * delta_c + u * scaled + u * (scaled + b[None])
    y_abs = scaled + b[None] + err
    err += 2.0**-11 * y_abs + 2.0**-25
    err += (u + k * 2.0**-52) * c[None] * big_x
    return err * (1 + 1e-9)
