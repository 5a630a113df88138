"""Quantizer edge cases: tiny and subnormal rows, weights beyond float32's range."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from bitmod.runtime.formats import FORMAT_NAMES, dequantize, quantize
from bitmod.runtime.formats import reference_quant as ref


def test_tiny_channel_scale_is_rounded_up_hand_worked() -> None:
    # INT4 (max 7), G = 4, one group: absmax 1e-4 -> s = 1e-4 / 7 = 1.4285714e-5,
    # c_exact = s / 127 = 1.12486e-7: below FP16's normal range (2^-14). Nearest would give
    # 2 * 2^-24 = 1.1920929e-7 (fine here), but the rule rounds up only when nearest rounds
    # down; take absmax 7e-5 instead: s = 1e-5, c_exact = 7.874e-8, nearest = 2^-24 =
    # 5.96e-8 (below c_exact), so c = 2 * 2^-24 and the code is round(1e-5 / 1.1920929e-7)
    # = round(83.886) = 84 (not clamped at 127 with a 25% too small scale, as nearest gives).
    row = [7e-5, 0.0, 0.0, -3e-5]
    q = quantize(torch.tensor([row]), "int4", group_size=4, scale_bits=8)
    assert q.channel_scale.tolist() == [2 * 2.0**-24]
    assert q.scales.tolist() == [[84]]
    effective = 84 * 2 * 2.0**-24
    assert dequantize(q)[0].tolist() == pytest.approx(
        [7 * effective, 0.0, 0.0, -3 * effective], rel=1e-6
    )
    codes, channel, _ = ref.quantize_scales_int([float(np.float32(7e-5 / 7))], 8)
    assert (codes, channel) == ([84], 2 * 2.0**-24)


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_tiny_and_subnormal_rows_quantize(fmt: str) -> None:
    """Rows of absmax 1e-3 (INT8's channel scale is subnormal in FP16), 1e-6, 1e-39 (a
    float32 subnormal) and 4e-42 (one whose ``s/2`` keeps so few bits that ``W/(s/2)`` passes
    the grid by more than a cell: INT8, FP6 e3m2) quantize with INT8 and FP16 group scales;
    small rows keep their relative accuracy, rows below what the scales can express become
    zero."""
    rng = np.random.default_rng(11)
    k = 128
    base = torch.from_numpy(rng.standard_normal((5, k)).astype(np.float32))
    base /= base.abs().amax(dim=1, keepdim=True)
    w = base * torch.tensor([[1.0], [1e-3], [1e-6], [1e-39], [4e-42]])
    for scale_bits in (8, None):
        q = quantize(w, fmt, scale_bits=scale_bits)
        out = dequantize(q)
        assert torch.isfinite(out).all()
        normal_error = float((out[0] - w[0]).norm() / w[0].norm())
        small_error = float((out[1] - w[1]).norm() / w[1].norm())
        assert small_error <= 2 * normal_error + 1e-3, (fmt, scale_bits)
        assert float(out[3:].abs().max()) <= 1e-30


@pytest.mark.parametrize("fmt", ["bitmod3", "int8", "mxfp4", "olive4"])
def test_weights_beyond_float32_are_refused_by_position(fmt: str) -> None:
    w = torch.randn(3, 128, dtype=torch.float64)
    w[2, 17] = 1e39
    with pytest.raises(ValueError, match=r"weight 1e\+39 at \[2, 17\] is outside float32's range"):
        quantize(w, fmt)


@pytest.mark.parametrize("fmt", ["bitmod3", "int4_asym", "mxfp4", "olive4"])
def test_a_non_contiguous_weight_quantizes_like_its_copy(fmt: str) -> None:
    """``linear.weight.t()`` and a strided slice are views torch cannot ``.view`` into groups."""
    base = torch.randn(96, 128, generator=torch.Generator().manual_seed(3))
    for view in (base.t(), base[:, ::2]):
        assert not view.is_contiguous()
        got = dequantize(quantize(view, fmt))
        expected = dequantize(quantize(view.contiguous(), fmt))
        assert torch.equal(got, expected)


@pytest.mark.parametrize(
    ("group_size", "scale_bits", "message"),
    [
        (32.0, 8, "group_size must be an integer or None, got float 32.0"),
        ("32", 8, "group_size must be an integer or None, got str '32'"),
        (True, 8, "group_size must be an integer or None, got bool True"),
        (32, "8", "scale_bits must be an integer or None, got str '8'"),
    ],
)
def test_group_size_and_scale_bits_of_another_type_are_refused(
    group_size: object, scale_bits: object, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(f"quantize: {message}")):
        quantize(torch.randn(4, 64), "int8", group_size, scale_bits)  # type: ignore[arg-type]


def test_numpy_integers_are_integers() -> None:
    w = torch.randn(4, 64, generator=torch.Generator().manual_seed(2))
    q = quantize(w, "int8", np.int64(32), np.int32(8))  # type: ignore[arg-type]
    assert type(q.group_size) is int and torch.equal(
        dequantize(q), dequantize(quantize(w, "int8", 32))
    )


def test_a_group_larger_than_k_is_one_group_of_k() -> None:
    """``G > K``: every row is one group; dequantizing costs memory of ``K``, not of ``G``."""
    w = torch.randn(4, 64, generator=torch.Generator().manual_seed(4))
    huge = quantize(w, "int8", group_size=2**30)
    assert torch.equal(dequantize(huge), dequantize(quantize(w, "int8", group_size=64)))


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_an_all_zero_group_is_zero_in_the_quantizer_and_the_reference(fmt: str) -> None:
    """A row of a zero group then a random one: both quantizers give exact zeros for the first
    and agree on the second's group scale (the reference divided by a zero OliVe scale)."""
    w = torch.cat([torch.zeros(32), torch.randn(32, generator=torch.Generator().manual_seed(5))])
    out = dequantize(quantize(w[None], fmt, group_size=32, scale_bits=None))[0]
    groups = ref.quantize_row([float(x) for x in w], fmt, 32)
    assert [v * groups[0].scale for v in groups[0].values] == [0.0] * 32
    assert out[:32].abs().max() == 0
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("value", [0.0, 0.75, -3.0])
@pytest.mark.parametrize("fmt", [f for f in FORMAT_NAMES if f.endswith("_asym")])
def test_a_constant_asymmetric_group_keeps_its_value(fmt: str, value: float) -> None:
    w = torch.full((1, 16), value)
    q = quantize(w, fmt, group_size=16, scale_bits=None)
    (group,) = ref.quantize_row([value] * 16, fmt, 16)
    assert q.zeros is not None and int(q.zeros[0, 0]) == group.zero
    assert q.codes[0].tolist() == group.codes
    # The scale is stored in FP16: the value comes back to within its rounding (2^-11).
    assert torch.allclose(dequantize(q)[0], w[0], rtol=2.0**-11, atol=0)
