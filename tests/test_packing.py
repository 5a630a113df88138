"""bitmod.runtime.formats.packing: codes and metadata at their real bit widths, unpacked exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from bitmod.runtime.formats import FORMAT_NAMES, QuantizedTensor, dequantize, get_format, quantize
from bitmod.runtime.formats.packing import (
    pack_bits,
    pack_quantized,
    packed_row_bytes,
    unpack_bits,
    unpack_quantized,
)


def test_pack_bits_hand_worked() -> None:
    # 3-bit values 1, 2, 7, 0, 5 least-significant bit first:
    #   1 -> 1,0,0   2 -> 0,1,0   7 -> 1,1,1   0 -> 0,0,0   5 -> 1,0,1
    # stream positions 0..14: 1 0 0 0 1 0 1 1 | 1 0 0 0 1 0 1 (+ one pad bit)
    # byte 0 = 2^0 + 2^4 + 2^6 + 2^7 = 209; byte 1 = 2^0 + 2^4 + 2^6 = 81
    packed = pack_bits(np.array([[1, 2, 7, 0, 5]]), 3)
    assert packed.dtype == np.uint8
    assert packed.tolist() == [[209, 81]]
    assert unpack_bits(packed, 3, 5).tolist() == [[1, 2, 7, 0, 5]]
    # 2-bit SV indices 3, 0, 2, 1: bits 0-1 = 3, bits 2-3 = 0, bits 4-5 = 2, bits 6-7 = 1
    #   -> 3 + 2·16 + 1·64 = 99
    assert pack_bits(np.array([3, 0, 2, 1]), 2).tolist() == [99]


@pytest.mark.parametrize("bits", range(1, 17))
def test_pack_bits_round_trip_and_size(bits: int) -> None:
    rng = np.random.default_rng(bits)
    for count in (1, 7, 8, 33, 128):
        values = rng.integers(0, 1 << bits, size=(3, count))
        packed = pack_bits(values, bits)
        assert packed.shape == (3, packed_row_bytes(count, bits)) == (3, -(-count * bits // 8))
        assert unpack_bits(packed, bits, count).tolist() == values.tolist()


def test_pack_bits_errors() -> None:
    with pytest.raises(ValueError, match="do not fit in 3 bits"):
        pack_bits(np.array([8]), 3)
    with pytest.raises(ValueError, match="do not fit"):
        pack_bits(np.array([-1]), 3)
    with pytest.raises(ValueError, match="out of range"):
        pack_bits(np.array([0]), 0)
    with pytest.raises(ValueError, match="expected 2 bytes"):
        unpack_bits(np.zeros((1, 3), dtype=np.uint8), 3, 5)


def _weight(seed: int) -> torch.Tensor:
    w = torch.randn(3, 96, generator=torch.Generator().manual_seed(seed))
    w[1, 5] = 7.0  # an outlier
    return w


def _assert_same(a: QuantizedTensor, b: QuantizedTensor) -> None:
    header = ("fmt", "shape", "group_size", "scale_bits")
    assert [getattr(a, h) for h in header] == [getattr(b, h) for h in header]
    for field in ("codes", "sv_index", "scales", "channel_scale", "zeros"):
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None) == (y is None), field
        if x is not None:
            assert x.dtype == y.dtype and torch.equal(x, y), field
    assert torch.equal(dequantize(a), dequantize(b))


@pytest.mark.parametrize("name", FORMAT_NAMES)
@pytest.mark.parametrize("scale_bits", [8, None])
def test_quantized_round_trip_is_exact_at_real_bit_widths(name: str, scale_bits) -> None:
    fmt = get_format(name)
    q = quantize(_weight(fmt.bits), name, group_size=32, scale_bits=scale_bits)
    arrays, meta = pack_quantized(q)
    n, groups = 3, 3  # K = 96, G = 32
    # codes take exactly `bits` bits: 96 codes · b bits = 12·b bytes per row, no padding
    assert arrays["codes"].shape == (n, 12 * fmt.bits) and arrays["codes"].dtype == np.uint8
    if fmt.index_bits:  # 3 groups · 2 (or 1) bits -> one byte per row
        assert arrays["sv"].shape == (n, 1)
    else:
        assert "sv" not in arrays
    if fmt.family == "int_asym":  # 3 zero points · b bits
        assert arrays["zeros"].shape == (n, packed_row_bytes(groups, fmt.bits))
    else:
        assert "zeros" not in arrays
    assert arrays["scales"].shape == (n, groups)
    assert ("channel_scale" in arrays) == (q.channel_scale is not None)
    _assert_same(q, unpack_quantized(arrays, meta))


def test_three_bit_weights_take_three_bits() -> None:
    # 4096 × 4096 bitmod3, G = 128: 3 bits + (2-bit SV + 8-bit scale) per 128 + FP16 per channel
    w = torch.randn(64, 4096, generator=torch.Generator().manual_seed(0))
    arrays, _ = pack_quantized(quantize(w, "bitmod3"))
    assert arrays["codes"].nbytes == 64 * 4096 * 3 // 8
    assert arrays["sv"].nbytes == 64 * 32 * 2 // 8
    assert arrays["scales"].nbytes == 64 * 32 and arrays["channel_scale"].nbytes == 64 * 2
    total_bits = 8 * sum(a.nbytes for a in arrays.values())
    assert total_bits / w.numel() == quantize(w, "bitmod3").bits_per_weight


def _packed_bitmod3() -> tuple[dict[str, np.ndarray], dict]:
    return pack_quantized(quantize(_weight(1), "bitmod3", group_size=32))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda a, m: a.update(codes=a["codes"][:, :-1]), r"'codes' is uint8\[3, 35\], expected"),
        (lambda a, m: a.update(codes=a["codes"][:2]), r"'codes' is uint8\[2, 36\]"),
        (lambda a, m: a.update(codes=a["codes"].astype(np.int16)), r"'codes' is int16"),
        (lambda a, m: a.update(scales=a["scales"].astype(np.float16)), r"'scales' is float16"),
        (lambda a, m: a.pop("sv"), "missing packed array 'sv'"),
        (lambda a, m: a.pop("channel_scale"), "missing packed array 'channel_scale'"),
        (lambda a, m: m.update(fmt="bitmod5"), "unknown data type 'bitmod5'"),
        (lambda a, m: m.update(shape=[3, 0]), "bad quantized-weight metadata"),
        (lambda a, m: m.pop("group_size"), "bad quantized-weight metadata"),
    ],
)
def test_unpack_rejects_inconsistent_arrays(mutate, message) -> None:
    arrays, meta = _packed_bitmod3()
    mutate(arrays, meta)
    with pytest.raises(ValueError, match=message):
        unpack_quantized(arrays, meta)


def test_unpack_accepts_json_metadata() -> None:
    arrays, meta = _packed_bitmod3()
    _assert_same(unpack_quantized(arrays, meta), unpack_quantized(arrays, json.dumps(meta)))
