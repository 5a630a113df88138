"""The group accumulation (PE steps 1–4) as one fused Triton kernel for CUDA GPUs.

:func:`group_accumulators` computes exactly what :func:`bitmod.runtime.emulator.pe_torch.
group_accumulators` computes (and so the numpy PE model), for inputs already on a CUDA device,
in one kernel: a program owns a ``BLOCK_R × BLOCK_C`` tile of PEs and one group, walks the
group's 4-lane steps and the terms of each step, and keeps the exact accumulator in int64
registers. Every operation is on integers — exponent add and max, the alignment shift with
round-to-nearest-even, the signed adder tree, the shift by ``E − 3 + bsig + 27`` and the int64
accumulation — so the compiler has no floating-point operation it could contract or reorder,
and the result does not depend on how the GPU schedules the programs.

Triton is imported when this module is; on a machine without it (CPU-only installs, CI) use
:mod:`~bitmod.runtime.emulator.pe_torch`, which is the reference this kernel is tested against
(``tests/test_pe_triton.py``, on a GPU host or with ``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from bitmod.runtime.arch.hwconfig import LANES
from bitmod.runtime.emulator.pe import ACC_LSB_EXP, GUARD_BITS
from bitmod.runtime.emulator.pe_torch import NO_LANE, TorchWeights, decode_fp16

__all__ = ["group_accumulators"]

BLOCK_R = 32
BLOCK_C = 64


@triton.jit
def _group_kernel(
    act_man_ptr,  # int32 [R, K_pad]: signed 11-bit mantissas
    act_exp_ptr,  # int32 [R, K_pad]: exponents, NO_LANE for zero lanes
    w_exp_ptr,  # int32 [T, C, K_pad]: NO_LANE where man = 0
    w_sign_ptr,  # int8 [T, C, K_pad]: 1 for a negative term
    w_bsig_ptr,  # int32 [T, C, steps]
    out_ptr,  # int64 [R, C, groups]
    n_rows,
    n_cols,
    k_pad,
    n_steps,
    n_groups,
    N_TERMS: tl.constexpr,
    STEPS_PER_GROUP: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_C: tl.constexpr,
    NO_LANE: tl.constexpr,
    GUARD: tl.constexpr,
    LSB: tl.constexpr,
):
    pid_r = tl.program_id(0)
    pid_c = tl.program_id(1)
    group = tl.program_id(2)
    rows = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    row_ok = rows < n_rows
    col_ok = cols < n_cols
    acc = tl.zeros((BLOCK_R, BLOCK_C), dtype=tl.int64)
    first_step = group * STEPS_PER_GROUP
    for j in range(0, STEPS_PER_GROUP):
        step = first_step + j
        in_range = step < n_steps
        row_mask = row_ok & in_range
        col_mask = col_ok & in_range
        k0 = step * 4
        a_base = rows * k_pad + k0
        am0 = tl.load(act_man_ptr + a_base + 0, mask=row_mask, other=0)
        am1 = tl.load(act_man_ptr + a_base + 1, mask=row_mask, other=0)
        am2 = tl.load(act_man_ptr + a_base + 2, mask=row_mask, other=0)
        am3 = tl.load(act_man_ptr + a_base + 3, mask=row_mask, other=0)
        ae0 = tl.load(act_exp_ptr + a_base + 0, mask=row_mask, other=NO_LANE)
        ae1 = tl.load(act_exp_ptr + a_base + 1, mask=row_mask, other=NO_LANE)
        ae2 = tl.load(act_exp_ptr + a_base + 2, mask=row_mask, other=NO_LANE)
        ae3 = tl.load(act_exp_ptr + a_base + 3, mask=row_mask, other=NO_LANE)
        for t in range(0, N_TERMS):
            w_base = (t * n_cols + cols) * k_pad + k0
            we0 = tl.load(w_exp_ptr + w_base + 0, mask=col_mask, other=NO_LANE)
            we1 = tl.load(w_exp_ptr + w_base + 1, mask=col_mask, other=NO_LANE)
            we2 = tl.load(w_exp_ptr + w_base + 2, mask=col_mask, other=NO_LANE)
            we3 = tl.load(w_exp_ptr + w_base + 3, mask=col_mask, other=NO_LANE)
            ws0 = tl.load(w_sign_ptr + w_base + 0, mask=col_mask, other=0).to(tl.int32)
            ws1 = tl.load(w_sign_ptr + w_base + 1, mask=col_mask, other=0).to(tl.int32)
            ws2 = tl.load(w_sign_ptr + w_base + 2, mask=col_mask, other=0).to(tl.int32)
            ws3 = tl.load(w_sign_ptr + w_base + 3, mask=col_mask, other=0).to(tl.int32)
            bsig = tl.load(
                w_bsig_ptr + (t * n_cols + cols) * n_steps + step, mask=col_mask, other=0
            )
            live0 = (ae0[:, None] > NO_LANE // 2) & (we0[None, :] > NO_LANE // 2)
            live1 = (ae1[:, None] > NO_LANE // 2) & (we1[None, :] > NO_LANE // 2)
            live2 = (ae2[:, None] > NO_LANE // 2) & (we2[None, :] > NO_LANE // 2)
            live3 = (ae3[:, None] > NO_LANE // 2) & (we3[None, :] > NO_LANE // 2)
            e0 = tl.where(live0, ae0[:, None] + we0[None, :], NO_LANE)
            e1 = tl.where(live1, ae1[:, None] + we1[None, :], NO_LANE)
            e2 = tl.where(live2, ae2[:, None] + we2[None, :], NO_LANE)
            e3 = tl.where(live3, ae3[:, None] + we3[None, :], NO_LANE)
            big_e = tl.maximum(tl.maximum(e0, e1), tl.maximum(e2, e3))
            d = _aligned(am0[:, None], ws0[None, :], e0, big_e, live0, GUARD)
            d += _aligned(am1[:, None], ws1[None, :], e1, big_e, live1, GUARD)
            d += _aligned(am2[:, None], ws2[None, :], e2, big_e, live2, GUARD)
            d += _aligned(am3[:, None], ws3[None, :], e3, big_e, live3, GUARD)
            shift = big_e - GUARD + bsig[None, :] - LSB
            any_live = live0 | live1 | live2 | live3
            shift = tl.where(any_live, shift, 0)
            acc += tl.where(any_live, d.to(tl.int64) << shift.to(tl.int64), 0)
    offsets = (rows[:, None] * n_cols + cols[None, :]) * n_groups + group
    tl.store(out_ptr + offsets, acc, mask=row_ok[:, None] & col_ok[None, :])


@triton.jit
def _aligned(man, w_negative, lane_e, big_e, live, GUARD: tl.constexpr):
    """``±RNE(|Ma| · 2^(3 − (E − e)))`` of one lane (0 where the lane is not live)."""
    magnitude = tl.abs(man)
    shift = big_e - lane_e - GUARD
    right = tl.minimum(tl.maximum(shift, 0), 30)
    kept = magnitude >> right
    remainder = magnitude - (kept << right)
    half = tl.where(right > 0, 1 << tl.maximum(right - 1, 0), 0)
    up = (remainder > half) | ((remainder == half) & (right > 0) & ((kept & 1) == 1))
    rounded = kept + up.to(tl.int32)
    left = magnitude << tl.maximum(-shift, 0)
    value = tl.where(shift <= 0, left, rounded)
    negative = (man < 0) != (w_negative != 0)
    value = tl.where(negative, -value, value)
    return tl.where(live, value, 0)


def group_accumulators(act: torch.Tensor, weights: TorchWeights, group_size: int) -> torch.Tensor:
    """``A`` [R, C, ⌈K/G⌉] int64 (units ``2^ACC_LSB_EXP``) of FP16 ``act`` [R, K]; the same
    contract, arguments and result as :func:`bitmod.runtime.emulator.pe_torch.group_accumulators`
    (the tensors on one CUDA device, or anywhere under ``TRITON_INTERPRET=1``)."""
    rows, k = act.shape
    cols, k_w, n_terms = weights.shape
    if k != k_w:
        raise ValueError(f"activation K={k} does not match weight K={k_w}")
    if group_size % LANES or group_size < LANES:
        raise ValueError(f"group size {group_size} must be a positive multiple of {LANES}")
    man, exp = decode_fp16(act)
    k_pad = weights.exp.shape[-1]
    if k_pad != k:
        man = torch.nn.functional.pad(man, (0, k_pad - k))
        exp = torch.nn.functional.pad(exp, (0, k_pad - k), value=NO_LANE)
    steps = k_pad // LANES
    n_groups = -(-k // group_size)
    out = torch.empty((rows, cols, n_groups), dtype=torch.int64, device=act.device)
    grid = (triton.cdiv(rows, BLOCK_R), triton.cdiv(cols, BLOCK_C), n_groups)
    _group_kernel[grid](
        man.contiguous(),
        exp.contiguous(),
        weights.exp.contiguous(),
        weights.sign.to(torch.int8).contiguous(),
        weights.bsig.contiguous(),
        out,
        rows,
        cols,
        k_pad,
        steps,
        n_groups,
        N_TERMS=n_terms,
        STEPS_PER_GROUP=group_size // LANES,
        BLOCK_R=BLOCK_R,
        BLOCK_C=BLOCK_C,
        NO_LANE=NO_LANE,
        GUARD=GUARD_BITS,
        LSB=ACC_LSB_EXP,
    )
    return out
