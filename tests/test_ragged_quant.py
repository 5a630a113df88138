"""Ragged groups: K that the group size does not divide (SmolLM2's K = 576 at G = 128).

The last group of a row holds the ``K mod G`` remaining weights and is quantized on those
alone. Evidence, none of it the quantizer's own output:

* a hand-worked asymmetric row where zero padding would have changed the numbers;
* the slow reference (``reference_quant.quantize_row``, which splits rows on its own) on
  random rows with K % G ≠ 0, for every format of the registry;
* packing and the parameter archive round trip ragged tensors bit for bit;
* bits per weight counted by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from bitmod.runtime.formats import FORMAT_IDS, FORMAT_NAMES, dequantize, get_format, quantize
from bitmod.runtime.formats import reference_quant as ref
from bitmod.runtime.formats.packing import pack_quantized, unpack_quantized
from bitmod.runtime.storage.archive import ParamArchive

MARGIN = 1e-5  # grid units: float32 vs float64 w/s (see reference_quant)
ERROR_GAP = 1e-5


def _random_rows(n: int, k: int, seed: int) -> torch.Tensor:
    """Gaussian rows with a few 3-8 sigma outliers, so mixtures pick different candidates."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=gen)
    spikes = torch.randint(0, k, (n, max(1, k // 24)), generator=gen)
    magnitude = (3 + 5 * torch.rand(spikes.shape, generator=gen)) * torch.where(
        torch.rand(spikes.shape, generator=gen) < 0.5, -1.0, 1.0
    )
    w.scatter_(1, spikes, magnitude)
    return w * 0.02


def test_int_asym_ragged_group_is_quantized_on_its_own_weights() -> None:
    # G = 4, K = 6: groups [0, 4) and [4, 6). The short group [0.25, 1.0] alone (Eq. 2):
    # s = (1.0 - 0.25)/15 = 0.05, z = clamp(round(-0.25/s) = -5, 0, 15) = 0, codes
    # clamp(round(w/s)) = 5 and clamp(20) = 15. Zero-padded to [0.25, 1.0, 0, 0] it would get
    # s = 1/15 instead, z = 0, codes round(3.75) = 4 and 15.
    w = torch.tensor([[0.0, 0.25, 0.5, 0.75, 0.25, 1.0]])
    q = quantize(w, "int4_asym", group_size=4, scale_bits=None)
    assert q.n_groups == 2 and q.last_group_size == 2
    assert q.scales.shape == (1, 2) and q.zeros is not None and q.zeros.shape == (1, 2)
    assert float(q.scales[0, 1]) == float(np.float16(np.float32(0.75) / 15))
    assert q.codes[0, 4:].tolist() == [5, 15] and int(q.zeros[0, 1]) == 0
    padded = quantize(torch.tensor([[0.25, 1.0, 0.0, 0.0]]), "int4_asym", 4, scale_bits=None)
    assert padded.codes[0, :2].tolist() == [4, 15]  # what zero padding would have stored


def test_symmetric_ragged_group_scale_is_its_own_absmax() -> None:
    # int4, G = 4, K = 6: the short group [0.7, -0.35] has s = 0.7/7 = 0.1, codes 7 and -3.5 ->
    # round-to-grid ties go to the lower value: -4.
    w = torch.tensor([[7.0, 1.0, 2.0, 3.0, 0.7, -0.35]])
    q = quantize(w, "int4", group_size=4, scale_bits=None)
    assert q.group_scale()[0].tolist() == [1.0, float(np.float16(np.float32(0.7) / 7))]
    assert dequantize(q)[0, 4:].tolist() == pytest.approx([0.7, -0.4], abs=1e-3)


def test_a_row_shorter_than_one_group_is_one_ragged_group() -> None:
    w = _random_rows(3, 100, seed=1)
    q = quantize(w, "bitmod3")
    assert (q.group_size, q.n_groups, q.last_group_size) == (128, 1, 100)
    exact = quantize(w, "bitmod3", group_size=100)
    assert torch.equal(q.codes, exact.codes) and torch.equal(q.sv_index, exact.sv_index)
    assert torch.equal(dequantize(q), dequantize(exact))


REFERENCE_FORMATS = [
    name for name in FORMAT_NAMES if name in ref.MX_ELEMENTS or get_format(name).family != "mx"
]


def test_the_reference_covers_every_registered_format() -> None:
    assert REFERENCE_FORMATS == list(FORMAT_NAMES)


@pytest.mark.parametrize("name", REFERENCE_FORMATS)
def test_ragged_rows_agree_with_the_reference(name: str) -> None:
    fmt = get_format(name)
    group_size = 32 if fmt.family == "mx" else 48
    n, k = 3, 200  # 200 = 4·48 + 8, and 6·32 + 8
    w = _random_rows(n, k, seed=FORMAT_IDS[name])
    if fmt.family == "mx":
        w = w * torch.exp2(torch.randint(-12, 12, (n, 1)).float())
    q = quantize(w, name, group_size=group_size, scale_bits=None)
    assert q.n_groups == -(-k // group_size) and q.last_group_size == 8
    out = dequantize(q).numpy()
    compared = skipped = 0
    for row in range(n):
        groups = ref.quantize_row([float(x) for x in w[row]], name, group_size)
        assert [(g.start, g.stop) for g in groups][-1] == (k - 8, k)
        for index, group in enumerate(groups):
            if fmt.family == "mx":
                assert int(q.scales[row, index]) == round(np.log2(group.scale)) + 127
                expected = [v * group.scale for v in group.values]
                assert out[row, group.start : group.stop].tolist() == expected
                compared += group.stop - group.start
                continue
            if group.error_gap < ERROR_GAP:
                skipped += 1
                continue
            scale16 = float(np.float16(np.float32(group.scale)))
            assert float(q.scales[row, index]) == scale16, (row, index)
            assert int(q.sv_index[row, index]) == group.index, (row, index)
            if fmt.family == "int_asym" and min(group.margins) >= MARGIN:
                assert q.zeros is not None and int(q.zeros[row, index]) == group.zero
            for offset, margin in enumerate(group.margins):
                if margin < MARGIN:
                    continue
                column = group.start + offset
                compared += 1
                assert int(q.codes[row, column]) == group.codes[offset], (row, column)
                assert out[row, column] == np.float32(group.values[offset] * scale16)
    assert skipped <= 1
    assert compared >= 0.9 * n * k


@pytest.mark.parametrize("name", ["bitmod3", "int4_asym", "int8"])
def test_second_level_scales_of_a_ragged_row_agree_with_the_reference(name: str) -> None:
    w = _random_rows(3, 200, seed=5)
    q = quantize(w, name, group_size=64, scale_bits=8)
    for row in range(3):
        first = [
            float(np.float32(g.scale))
            for g in ref.quantize_row([float(x) for x in w[row]], name, 64)
        ]
        codes, channel, margins = ref.quantize_scales_int(first, 8)
        assert float(q.channel_scale[row]) == channel
        for index, margin in enumerate(margins):
            if margin >= MARGIN:
                assert int(q.scales[row, index]) == codes[index]


def test_bits_per_weight_counts_the_ragged_groups_metadata() -> None:
    w = torch.randn(2, 200)
    # bitmod3: 2 groups of (8 scale + 2 SV) bits and a 16-bit channel scale per 200 weights
    assert quantize(w, "bitmod3").bits_per_weight == 3 + (2 * 10 + 16) / 200
    # int4_asym with FP16 scales: 2 groups of (16 + 4) bits
    assert quantize(w, "int4_asym", scale_bits=None).bits_per_weight == 4 + 2 * 20 / 200
    # MX: 7 blocks of 32 (the last of 8) with an 8-bit exponent each
    assert quantize(w, "mxfp4").bits_per_weight == 4 + 7 * 8 / 200


@pytest.mark.parametrize("name", FORMAT_NAMES)
@pytest.mark.parametrize("scale_bits", [None, 8])
def test_ragged_tensors_pack_and_archive_exactly(
    name: str, scale_bits: int | None, tmp_path
) -> None:
    group_size = None if get_format(name).family == "mx" else 64
    q = quantize(_random_rows(5, 202, seed=2), name, group_size=group_size, scale_bits=scale_bits)
    arrays, meta = pack_quantized(q)
    back = unpack_quantized(arrays, meta)
    archive = ParamArchive()
    archive.put_quantized("w", q)
    archive.save(tmp_path / "a.safetensors")
    loaded = ParamArchive.load(tmp_path / "a.safetensors").get_quantized("w")
    for again in (back, loaded):
        assert again.shape == (5, 202) and again.n_groups == q.n_groups
        assert torch.equal(again.codes, q.codes) and torch.equal(again.sv_index, q.sv_index)
        assert torch.equal(again.scales, q.scales)
        assert torch.equal(dequantize(again), dequantize(q))


def test_olive_needs_an_even_k() -> None:
    with pytest.raises(ValueError, match="K must be even, got 201"):
        quantize(torch.ones(2, 201), "olive4")
