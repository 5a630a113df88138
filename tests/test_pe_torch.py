"""The torch PE backend (runtime/emulator/pe_torch.py) equals the numpy PE model bit for bit.

Run on CPU here (CI has no GPU); the same tests take ``BITMOD_TEST_DEVICE=cuda`` on a GPU host.
"""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest
import torch
from bitmod.runtime.emulator import pe, pe_torch
from bitmod.runtime.emulator import reference_pe as ref
from bitmod.runtime.formats import FORMAT_NAMES, get_format
from bitmod.runtime.formats.bitserial import decode_codes, num_terms, quantized_terms, value_terms

DEVICE = os.environ.get("BITMOD_TEST_DEVICE", "cpu")
ACCELERATED = [name for name in FORMAT_NAMES if get_format(name).accelerated]


def same_bits(a: np.ndarray, b: torch.Tensor) -> bool:
    b = b.cpu().numpy()
    if a.dtype.kind == "f":
        width = {2: np.uint16, 4: np.uint32}[a.dtype.itemsize]
        return a.shape == b.shape and np.array_equal(a.view(width), b.view(width))
    return np.array_equal(a, b)


def both_backends(act, terms, codes, channel_scale, group, bias):
    """(numpy results, torch results) of every stage: A, x_g, C, y."""
    weights = pe.prepare_weights(terms)
    acc = pe.group_accumulators(act, weights, group)
    x = pe.dequantize_groups(acc, codes)
    column = pe.accumulate_groups(np.zeros(acc.shape[:2], np.float32), x)
    y = pe.drain(column, channel_scale, bias)
    t_weights = pe_torch.prepare_weights(terms, DEVICE)
    t_acc = pe_torch.group_accumulators(torch.from_numpy(act).to(DEVICE), t_weights, group)
    t_x = pe_torch.dequantize_groups(t_acc, torch.from_numpy(codes))
    t_column = pe_torch.accumulate_groups(torch.zeros(t_acc.shape[:2], device=DEVICE), t_x)
    t_bias = None if bias is None else torch.from_numpy(bias)
    t_y = pe_torch.drain(t_column, torch.from_numpy(channel_scale), t_bias)
    return (acc, x, column, y), (t_acc, t_x, t_column, t_y)


@pytest.mark.parametrize("fmt", ACCELERATED)
@pytest.mark.parametrize("act_kind", ["normal", "wide", "special"])
def test_every_accelerated_format_bit_identical(fmt: str, act_kind: str) -> None:
    rng = np.random.default_rng(zlib.crc32(f"torch/{fmt}/{act_kind}".encode()))
    m, n, k, group = 5, 7, 96, 32  # odd rows and columns, three groups
    q = ref.random_quantized(rng, fmt, n, k, group)
    codes = rng.integers(-128, 128, size=q.scales.shape)
    codes[0, 0] = -128
    bias = rng.standard_normal(n).astype(np.float16) if act_kind != "wide" else None
    act = ref.random_activations(rng, m, k, act_kind)
    ours, theirs = both_backends(
        act, quantized_terms(q), codes, q.channel_scale.numpy(), group, bias
    )
    for stage, (a, b) in zip(("A", "x_g", "C", "y"), zip(ours, theirs, strict=True), strict=True):
        assert same_bits(a, b), f"{fmt}/{act_kind}: stage {stage} differs"


def test_extreme_values_alignment_and_ties() -> None:
    """Lanes 2^30 apart (everything but the largest rounds away), exact RNE ties, overflowing
    drains (±inf in FP16) and subnormal results."""
    group = 8
    act = np.array(
        [
            [65504.0, 2.0**-24, 2.0**-24, 3 * 2.0**-24, 1.0, 1.0, 1.0, 1.0],
            [1.0, 1.0 / 16, 3.0 / 16, 5.0 / 16, -1.0, 1.0 / 16, -3.0 / 16, 5.0 / 16],
            [65504.0] * 8,
            [2.0**-24] * 8,
        ],
        dtype=np.float16,
    )
    values = np.array([[127, 1, 1, 1, -128, 127, 3, 2], [1, 1, 1, 1, 1, 1, 1, 1]])
    terms = value_terms("int8", values)
    codes = np.array([[127], [1]])
    channel_scale = np.array([65504.0, 2.0**-24], dtype=np.float16)
    ours, theirs = both_backends(act, terms, codes, channel_scale, group, None)
    for a, b in zip(ours, theirs, strict=True):
        assert same_bits(a, b)
    assert np.isinf(ours[3][2, 0])  # the first channel overflows FP16 for the 65504 row


def test_reprogrammed_special_values() -> None:
    rng = np.random.default_rng(3)
    q = ref.random_quantized(rng, "bitmod4", 6, 64, 16)
    register = (5, -9, 12, -7)  # other special values than the format's own
    index = np.repeat(q.sv_index.numpy(), 16, axis=1)
    values = decode_codes("bitmod4", q.codes.numpy(), index, register)
    terms = value_terms("bitmod4", values, num_terms("bitmod4", register))
    act = ref.random_activations(rng, 3, 64, "wide")
    codes = q.scales.numpy().astype(np.int64)
    ours, theirs = both_backends(act, terms, codes, q.channel_scale.numpy(), 16, None)
    for a, b in zip(ours, theirs, strict=True):
        assert same_bits(a, b)


def test_inf_and_nan_activations_are_refused() -> None:
    terms = value_terms("int4", np.ones((1, 8), dtype=np.int64))
    weights = pe_torch.prepare_weights(terms, DEVICE)
    act = torch.ones((1, 8), dtype=torch.float16)
    act[0, 5] = float("inf")
    with pytest.raises(ValueError, match=r"index \[0, 5\] is Inf/NaN"):
        pe_torch.group_accumulators(act.to(DEVICE), weights, 8)


def test_round_to_mantissa_matches_numpy_on_edges() -> None:
    values = np.array(
        [
            0,
            1,
            -1,
            (1 << 24) - 1,
            1 << 24,
            (1 << 24) + 1,
            (1 << 25) + 1,
            (1 << 25) + 3,
            (1 << 26) - 1,
            -(1 << 40) - (1 << 16),
            (1 << 62) - 1,
            -(1 << 62),
        ],
        dtype=np.int64,
    )
    m, s = pe.round_to_mantissa(values)
    tm, ts = pe_torch.round_to_mantissa(torch.from_numpy(values).to(DEVICE))
    assert same_bits(m, tm) and same_bits(s, ts)
