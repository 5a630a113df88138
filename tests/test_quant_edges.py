"""Quantizer edge cases: tiny and subnormal rows, weights beyond float32's range."""

from __future__ import annotations

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
    """Rows of absmax 1e-3 (INT8's channel scale is subnormal in FP16), 1e-6 and 1e-39 (a
    float32 subnormal) quantize with INT8 and FP16 group scales; small rows keep their
    relative accuracy, rows below what the scales can express become zero."""
    rng = np.random.default_rng(11)
    k = 128
    base = torch.from_numpy(rng.standard_normal((4, k)).astype(np.float32))
    base /= base.abs().amax(dim=1, keepdim=True)
    w = base * torch.tensor([[1.0], [1e-3], [1e-6], [1e-39]])
    for scale_bits in (8, None):
        q = quantize(w, fmt, scale_bits=scale_bits)
        out = dequantize(q)
        assert torch.isfinite(out).all()
        normal_error = float((out[0] - w[0]).norm() / w[0].norm())
        small_error = float((out[1] - w[1]).norm() / w[1].norm())
        assert small_error <= 2 * normal_error + 1e-3, (fmt, scale_bits)
        assert float(out[3].abs().max()) <= 1e-30


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
