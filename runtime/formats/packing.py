"""Packing quantized weights to their real bit widths, and back.

A ``b``-bit code takes ``b`` bits: the codes of one output channel are concatenated
least-significant bit first and the row is padded to a whole byte, so every channel starts on a
byte boundary (a DMA engine loads channel rows independently). The per-group metadata is packed
the same way: the special-value index at ``Format.index_bits`` bits, INT zero points at ``b`` bits,
INT scale codes as bytes, FP16 scales and channel scales as FP16. A row has ``ceil(K / G)``
groups of metadata: a ragged last group (``G`` not dividing ``K``) is stored like the others.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
from bitmod.runtime.formats.quantizer import QuantizedTensor
from bitmod.runtime.formats.registry import get_format

__all__ = ["pack_bits", "pack_quantized", "packed_row_bytes", "unpack_bits", "unpack_quantized"]


def packed_row_bytes(count: int, bits: int) -> int:
    """Bytes of one packed row of ``count`` values of ``bits`` bits."""
    return (count * bits + 7) // 8


def pack_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """Pack the last axis of unsigned ``values`` (each < 2^bits) to ``bits`` bits per value."""
    v = np.asarray(values)
    if bits < 1 or bits > 16:
        raise ValueError(f"pack_bits: {bits} bits per value is out of range 1..16")
    if v.size and (v.min() < 0 or v.max() >= (1 << bits)):
        raise ValueError(f"pack_bits: values do not fit in {bits} bits")
    v = v.astype(np.uint16)
    planes = ((v[..., None] >> np.arange(bits, dtype=np.uint16)) & 1).astype(np.uint8)
    flat = planes.reshape(*v.shape[:-1], v.shape[-1] * bits)
    return np.packbits(flat, axis=-1, bitorder="little")


def unpack_bits(data: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``count`` values per row of packed bytes."""
    d = np.asarray(data, dtype=np.uint8)
    if d.shape[-1] != packed_row_bytes(count, bits):
        raise ValueError(
            f"unpack_bits: rows of {d.shape[-1]} bytes cannot hold exactly {count} values of "
            f"{bits} bits (expected {packed_row_bytes(count, bits)} bytes)"
        )
    flat = np.unpackbits(d, axis=-1, count=count * bits, bitorder="little")
    planes = flat.reshape(*d.shape[:-1], count, bits).astype(np.uint16)
    return (planes << np.arange(bits, dtype=np.uint16)).sum(axis=-1).astype(np.uint16)


def pack_quantized(q: QuantizedTensor) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Packed arrays (``codes``, ``scales``, ``sv``, ``channel_scale``, ``zeros``) + metadata."""
    fmt = q.format
    arrays: dict[str, np.ndarray] = {
        "codes": pack_bits(q.codes.cpu().numpy(), fmt.bits),
        "scales": q.scales.cpu().numpy(),
    }
    if fmt.index_bits:
        arrays["sv"] = pack_bits(q.sv_index.cpu().numpy(), fmt.index_bits)
    if q.channel_scale is not None:
        arrays["channel_scale"] = q.channel_scale.cpu().numpy()
    if q.zeros is not None:
        arrays["zeros"] = pack_bits(q.zeros.cpu().numpy(), fmt.bits)
    meta = {
        "fmt": q.fmt,
        "shape": list(q.shape),
        "group_size": q.group_size,
        "scale_bits": q.scale_bits,
    }
    return arrays, meta


def _expect(
    arrays: dict[str, np.ndarray], key: str, shape: tuple[int, ...], dtype: str
) -> np.ndarray:
    if key not in arrays:
        raise ValueError(f"missing packed array {key!r}")
    a = np.asarray(arrays[key])
    if a.shape != shape or a.dtype != np.dtype(dtype):
        raise ValueError(
            f"packed array {key!r} is {a.dtype}{list(a.shape)}, expected {dtype}{list(shape)}"
        )
    return a


def unpack_quantized(arrays: dict[str, np.ndarray], meta: dict[str, Any] | str) -> QuantizedTensor:
    """Rebuild the :class:`QuantizedTensor` that :func:`pack_quantized` packed, exactly."""
    if isinstance(meta, str):
        meta = json.loads(meta)
    try:
        fmt = get_format(meta["fmt"])
        n, k = (int(x) for x in meta["shape"])
        group_size = int(meta["group_size"])
        scale_bits = None if meta["scale_bits"] is None else int(meta["scale_bits"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"bad quantized-weight metadata {meta!r}: {error}") from None
    if n <= 0 or k <= 0 or group_size <= 0:
        raise ValueError(f"bad quantized-weight metadata: shape {[n, k]}, group size {group_size}")
    groups = -(-k // group_size)
    packed_codes = _expect(arrays, "codes", (n, packed_row_bytes(k, fmt.bits)), "uint8")
    codes = unpack_bits(packed_codes, fmt.bits, k)
    if fmt.family == "mx":
        scale_dtype = "uint8"
    else:
        scale_dtype = "float16" if scale_bits is None else "int8"
    scales = _expect(arrays, "scales", (n, groups), scale_dtype)
    if fmt.index_bits:
        packed = _expect(arrays, "sv", (n, packed_row_bytes(groups, fmt.index_bits)), "uint8")
        sv = unpack_bits(packed, fmt.index_bits, groups)
        if sv.max(initial=0) >= fmt.n_candidates:
            raise ValueError(f"special-value index out of range 0..{fmt.n_candidates - 1}")
    else:
        sv = np.zeros((n, groups), dtype=np.uint8)
    channel = None
    if scale_bits is not None and fmt.family != "mx":
        channel = torch.from_numpy(_expect(arrays, "channel_scale", (n,), "float16").copy())
    zeros = None
    if fmt.family == "int_asym":
        packed = _expect(arrays, "zeros", (n, packed_row_bytes(groups, fmt.bits)), "uint8")
        zeros = torch.from_numpy(unpack_bits(packed, fmt.bits, groups).astype(np.uint8))
    return QuantizedTensor(
        fmt.name,
        (n, k),
        group_size,
        scale_bits,
        torch.from_numpy(codes.astype(np.uint8)),
        torch.from_numpy(sv.astype(np.uint8)),
        torch.from_numpy(scales.copy()),
        channel,
        zeros,
    )
