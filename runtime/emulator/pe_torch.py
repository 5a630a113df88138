"""The PE arithmetic of :mod:`bitmod.runtime.emulator.pe` in torch, on CPU or CUDA, bit-identical.

Same contract (``docs/ISA.md``, "PE arithmetic"), same results bit for bit, computed on any
torch device. Steps 1–4 are done in integers here, not by the float32 rounding trick of the numpy
model, so that nothing a GPU may do to floating point can change them:

* Alignment (step 2) of lane ``i``: with ``s = E − e_i − 3``, ``p_i = Ma_i · 2^(−s)`` exactly
  when ``s ≤ 0`` (a left shift), else ``⌊Ma_i / 2^s⌉`` rounded to nearest even by integer shift
  and compare (``q = Ma >> s``, remainder against ``2^(s−1)``, ties to the even ``q``).
  ``Ma < 2^11`` and ``s ≤ 3`` below zero, so ``|p_i| < 2^14`` and the int32 adder tree
  ``D = Σ p_i`` (step 3) is exact.
* The group accumulator (step 4) is an int64 sum of ``D · 2^(E − 3 + bsig + 27)``: exact,
  whatever order the device reduces in (integer addition is associative).
* Step 5 rounds the accumulator to 24 bits in int64, multiplies by the scale code in int64
  (``|·| < 2^40``), scales by a power of two in float64 (exact: a < 53-bit integer times
  ``2^n`` in range; the power of two is built from its bit pattern, since ``torch.ldexp`` goes
  through ``pow``, which is not exact on CUDA) and converts to float32 once (round to nearest
  even).
* The FP32 column accumulation adds the groups one at a time in K order (a loop of elementwise
  float32 additions: no reduction kernel, so no reassociation), and the drain is an
  elementwise float32 multiply, an elementwise float32 add and a conversion to float16, each a
  separate kernel: no fused multiply-add can contract them (torch evaluates eagerly; nothing
  here is compiled).

No matrix-multiply kernel is used, so TF32 and reduced-precision reductions
(``torch.backends.cuda.matmul.allow_tf32`` and friends) cannot apply; :func:`exact_mode` turns
them off anyway for callers that also run matmuls. Subnormal float32 values are kept: CUDA's
float32 addition and multiplication flush nothing unless compiled with ``-ftz``, which torch is
not.

Groups: the last group of a row may be shorter than ``G`` (a K that ``G`` does not divide) and K
need not be a multiple of 4: lanes past the end are zero (a zero lane takes no part in the
exponent max and adds nothing), which is what the array computes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from bitmod.runtime.arch.hwconfig import LANES
from bitmod.runtime.emulator.pe import ACC_LSB_EXP, GUARD_BITS, MANTISSA_BITS
from bitmod.runtime.formats.bitserial import Terms

__all__ = [
    "NO_LANE",
    "TorchWeights",
    "accumulate_groups",
    "decode_fp16",
    "dequantize_groups",
    "drain",
    "exact_mode",
    "group_accumulators",
    "pe_matmul",
    "prepare_weights",
    "round_to_mantissa",
]

#: Exponent of a lane that contributes nothing (zero mantissa): below every real exponent.
NO_LANE = -(1 << 12)
_FP16_EXP_MIN = -24
#: Elements of one [T, R, C, steps, 4] temporary per chunk of groups.
_WORK_ELEMENTS = 1 << 22


@contextlib.contextmanager
def exact_mode() -> Iterator[None]:
    """No TF32 and no reduced-precision reductions in matmuls while the block runs."""
    matmul = torch.backends.cuda.matmul
    saved = (
        matmul.allow_tf32,
        matmul.allow_fp16_reduced_precision_reduction,
        matmul.allow_bf16_reduced_precision_reduction,
        torch.backends.cudnn.allow_tf32,
    )
    matmul.allow_tf32 = False
    matmul.allow_fp16_reduced_precision_reduction = False
    matmul.allow_bf16_reduced_precision_reduction = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        (
            matmul.allow_tf32,
            matmul.allow_fp16_reduced_precision_reduction,
            matmul.allow_bf16_reduced_precision_reduction,
            torch.backends.cudnn.allow_tf32,
        ) = saved


def decode_fp16(act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """FP16 ``act`` → (signed 11-bit mantissa ``±Ma`` int32, exponent ``ea`` int32).

    A zero lane gets exponent ``NO_LANE``; ValueError names the first Inf/NaN (the PE has no
    special values).
    """
    if act.dtype != torch.float16:
        raise ValueError(f"activations must be float16, got {act.dtype}")
    bits = act.contiguous().view(torch.int16).to(torch.int32) & 0xFFFF
    biased = (bits >> 10) & 0x1F
    special = biased == 0x1F
    if bool(special.any()):
        where = [int(i) for i in torch.nonzero(special)[0]]
        raise ValueError(f"activation {float(act[tuple(where)])} at index {where} is Inf/NaN")
    fraction = bits & 0x3FF
    normal = biased > 0
    man = torch.where(normal, fraction | 0x400, fraction)
    exp = torch.where(normal, biased - 25, torch.full_like(biased, _FP16_EXP_MIN))
    exp = torch.where(man != 0, exp, torch.full_like(exp, NO_LANE))
    signed = torch.where((bits >> 15) != 0, -man, man)
    return signed, exp


@dataclass(frozen=True)
class TorchWeights:
    """A weight block's terms on a device: ``sign`` [T, C, K] bool, ``exp`` [T, C, K] int32
    (``NO_LANE`` where ``man = 0``), ``bsig`` [T, C, steps] int32 (shared by a step's lanes);
    K is padded with zero terms to whole 4-lane steps. ``k`` is the real K."""

    sign: torch.Tensor
    exp: torch.Tensor
    bsig: torch.Tensor
    k: int

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, K, T)."""
        t, c, _ = self.exp.shape
        return c, self.k, t


def prepare_weights(terms: Terms, device: str | torch.device = "cpu") -> TorchWeights:
    """Terms ``[C, K, T]`` → :class:`TorchWeights` on ``device``."""
    c, k, t = terms.sign.shape
    steps = -(-k // LANES)
    pad = steps * LANES - k
    man = np.pad(terms.man.astype(np.int32), ((0, 0), (0, pad), (0, 0)))
    exp = np.pad(terms.exp.astype(np.int32), ((0, 0), (0, pad), (0, 0)))
    sign = np.pad(terms.sign.astype(bool), ((0, 0), (0, pad), (0, 0)))
    bsig = np.pad(terms.bsig.astype(np.int32), ((0, 0), (0, pad), (0, 0)), mode="edge")
    bsig = bsig.reshape(c, steps, LANES, t)
    if np.any(bsig != bsig[:, :, :1, :]):
        raise ValueError("terms of one step must share their bit significance across lanes")
    exp = np.where(man != 0, exp, NO_LANE)

    def term_major(x: np.ndarray) -> torch.Tensor:  # [C, ·, T] -> [T, C, ·]
        return torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 0))).to(device)

    return TorchWeights(term_major(sign), term_major(exp), term_major(bsig[:, :, 0, :]), k)


def _round_shift(man: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``man · 2^(−shift)`` rounded to nearest even (``man ≥ 0`` int32; any int32 ``shift``)."""
    right = shift.clamp(min=0, max=30)
    kept = man >> right
    remainder = man - (kept << right)
    half = torch.where(right > 0, 1 << (right - 1).clamp(min=0), torch.zeros_like(right))
    up = (remainder > half) | ((remainder == half) & (right > 0) & ((kept & 1) == 1))
    rounded = kept + up.to(kept.dtype)
    return torch.where(shift <= 0, man << (-shift).clamp(min=0), rounded)


def _steps_accumulate(
    act_man: torch.Tensor,
    act_exp: torch.Tensor,
    weights: TorchWeights,
    s0: int,
    s1: int,
    group_of_step: torch.Tensor,
    n_groups: int,
) -> torch.Tensor:
    """Group accumulators [R, C, n_groups] int64 (units ``2^ACC_LSB_EXP``) of steps [s0, s1).

    ``act_man``/``act_exp`` are [R, steps, 4]; every temporary is [T, R, C, steps, 4].
    """
    am = act_man[None, :, None, s0:s1, :]
    ae = act_exp[None, :, None, s0:s1, :]
    t, c, _ = weights.exp.shape
    we = weights.exp[:, None, :, s0 * LANES : s1 * LANES].reshape(t, 1, c, s1 - s0, LANES)
    ws = weights.sign[:, None, :, s0 * LANES : s1 * LANES].reshape(t, 1, c, s1 - s0, LANES)
    lane_e = ae + we  # e_i; far below -1000 when either factor is zero
    live = (ae > NO_LANE // 2) & (we > NO_LANE // 2)
    lane_e = torch.where(live, lane_e, torch.full_like(lane_e, NO_LANE))
    big_e = lane_e.amax(dim=-1, keepdim=True)
    shift = big_e - lane_e - GUARD_BITS  # s = E - e_i - 3
    magnitude = _round_shift(am.abs().expand_as(shift), shift)
    negative = (am < 0) ^ ws
    lanes = torch.where(live, torch.where(negative, -magnitude, magnitude), 0)
    d = lanes.sum(dim=-1, dtype=torch.int64)  # [T, R, C, steps]: the adder tree, exact
    step_e = big_e[..., 0]
    any_live = live.any(dim=-1)
    bsig = weights.bsig[:, None, :, s0:s1]
    exponent = step_e - GUARD_BITS + bsig - ACC_LSB_EXP  # >= 0 where a lane is live
    contribution = torch.where(any_live, d << exponent.clamp(min=0), 0)
    per_step = contribution.sum(dim=0)  # over terms: [R, C, steps]
    rows, cols, _ = per_step.shape
    out = torch.zeros((rows, cols, n_groups), dtype=torch.int64, device=per_step.device)
    index = group_of_step[s0:s1].expand(rows, cols, -1)
    return out.scatter_add_(2, index, per_step)


def group_accumulators(act: torch.Tensor, weights: TorchWeights, group_size: int) -> torch.Tensor:
    """Steps 1–4 for every PE and group: ``A`` [R, C, ⌈K/G⌉] int64, units ``2^ACC_LSB_EXP``.

    ``act`` is FP16 [R, K] on the weights' device; the last group may be shorter than ``G``.
    """
    rows, k = act.shape
    cols, k_w, n_terms = weights.shape
    if k != k_w:
        raise ValueError(f"activation K={k} does not match weight K={k_w}")
    if group_size % LANES or group_size < LANES:
        raise ValueError(f"group size {group_size} must be a positive multiple of {LANES}")
    man, exp = decode_fp16(act)
    steps = -(-k // LANES)
    pad = steps * LANES - k
    if pad:
        man = torch.nn.functional.pad(man, (0, pad))
        exp = torch.nn.functional.pad(exp, (0, pad), value=NO_LANE)
    man = man.reshape(rows, steps, LANES)
    exp = exp.reshape(rows, steps, LANES)
    steps_per_group = group_size // LANES
    n_groups = -(-k // group_size)
    group_of_step = torch.arange(steps, device=act.device) // steps_per_group
    per_step = max(1, n_terms * rows * cols * LANES)
    chunk = max(steps_per_group, _WORK_ELEMENTS // per_step // steps_per_group * steps_per_group)
    total = torch.zeros((rows, cols, n_groups), dtype=torch.int64, device=act.device)
    for s0 in range(0, steps, chunk):
        s1 = min(steps, s0 + chunk)
        total += _steps_accumulate(man, exp, weights, s0, s1, group_of_step, n_groups)
    return total


def round_to_mantissa(
    acc: torch.Tensor, bits: int = MANTISSA_BITS
) -> tuple[torch.Tensor, torch.Tensor]:
    """RNE of int64 ``acc`` to ``bits`` significant bits: ``acc ≈ m · 2^shift`` (int64 each)."""
    magnitude = acc.abs()
    length = torch.zeros_like(magnitude)
    remaining = magnitude.clone()
    for step in (32, 16, 8, 4, 2, 1):  # bit length by binary search: exact, no float
        big = remaining >= (1 << step)
        length += torch.where(big, step, 0)
        remaining = torch.where(big, remaining >> step, remaining)
    length += (remaining > 0).to(length.dtype)
    shift = (length - bits).clamp(min=0)
    kept = magnitude >> shift
    remainder = magnitude - (kept << shift)
    half = torch.where(shift > 0, 1 << (shift - 1).clamp(min=0), torch.zeros_like(shift))
    up = (remainder > half) | ((remainder == half) & (shift > 0) & ((kept & 1) == 1))
    kept = kept + up.to(kept.dtype)
    return torch.where(acc < 0, -kept, kept), shift


def _pow2_float64(exponent: torch.Tensor) -> torch.Tensor:
    """``2^exponent`` exactly, from the float64 bit pattern (``torch.ldexp`` multiplies by
    ``pow(2, e)``, which CUDA does not compute exactly for every ``e``); normal range only."""
    return ((exponent.to(torch.int64) + 1023) << 52).view(torch.float64)


def dequantize_groups(acc: torch.Tensor, scale_codes: torch.Tensor) -> torch.Tensor:
    """Step 5 up to the FP32 rounding: ``fp32(round24(A) · σ_g)`` [R, C, groups] float32."""
    mantissa, shift = round_to_mantissa(acc)
    product = mantissa * scale_codes.to(device=acc.device, dtype=torch.int64)[None]
    exact = product.to(torch.float64) * _pow2_float64(shift + ACC_LSB_EXP)
    return exact.to(torch.float32)


def accumulate_groups(column_acc: torch.Tensor, group_values: torch.Tensor) -> torch.Tensor:
    """``C += x_g`` in FP32 for each group in K order: one elementwise addition per group."""
    column = column_acc.to(torch.float32).clone()
    for g in range(group_values.shape[-1]):
        column = column + group_values[..., g]
    return column


def drain(
    column_acc: torch.Tensor, channel_scale: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Step 6: ``fp16(fp32(C · fp32(c)) + fp32(bias))``, each operation rounded on its own."""
    scale = channel_scale.to(device=column_acc.device, dtype=torch.float16).to(torch.float32)
    scaled = column_acc.to(torch.float32) * scale
    if bias is not None:
        scaled = scaled + bias.to(device=column_acc.device, dtype=torch.float16).to(torch.float32)
    return scaled.to(torch.float16)


def pe_matmul(
    act: torch.Tensor,
    weights: TorchWeights,
    scale_codes: torch.Tensor,
    channel_scale: torch.Tensor,
    group_size: int,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """The whole pipeline for one block: FP16 [R, K] × terms [C, K, T] → FP16 [R, C]."""
    acc = group_accumulators(act, weights, group_size)
    column = accumulate_groups(
        torch.zeros(acc.shape[:2], dtype=torch.float32, device=acc.device),
        dequantize_groups(acc, scale_codes),
    )
    return drain(column, channel_scale, bias)
