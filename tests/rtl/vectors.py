"""Random stimulus shared by the cocotb benches (imported by the cocotb modules, which the
simulator loads with this folder on ``sys.path``)."""

from __future__ import annotations

import numpy as np
from bitmod.runtime.formats import get_format
from bitmod.runtime.formats.bitserial import Terms, decode_codes, num_terms, value_terms
from bitmod.runtime.formats.registry import FORMAT_NAMES

ACCELERATED = [name for name in FORMAT_NAMES if get_format(name).accelerated]

SPECIAL_ACTIVATIONS = np.array(
    [0.0, -0.0, 65504.0, -65504.0, 2.0**-24, -(2.0**-24), 2.0**-14, -(2.0**-14), 1.0, -1.0,
     1.0009765625, 0.333, 1000.0, -3.0e-7, 2.0**-20, 2047.0, 1.5, -2.5],
    dtype=np.float16,
)  # fmt: skip


def activations(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """FP16 activations mixing the whole finite range (subnormals included), zeros, the
    extremes and N(0, 1), and per row of four one large lane with three tiny ones (alignment
    far beyond the guard bits)."""
    kind = rng.integers(0, 4, shape)
    finite = rng.integers(0, 0x7C00, shape, dtype=np.uint16)
    finite |= (rng.integers(0, 2, shape) << 15).astype(np.uint16)
    out = finite.view(np.float16).copy()
    out = np.where(
        kind == 1, SPECIAL_ACTIVATIONS[rng.integers(0, len(SPECIAL_ACTIVATIONS), shape)], out
    )
    out = np.where(kind == 2, rng.standard_normal(shape).astype(np.float16), out)
    spread = rng.random(shape[:-1]) < 0.15
    tiny = (rng.integers(1, 0x0400, shape, dtype=np.uint16)).view(np.float16)
    out = np.where(spread[..., None], tiny, out)
    big = rng.integers(0, shape[-1], shape[:-1])
    flat = out.reshape(-1, shape[-1])
    flat[np.arange(flat.shape[0]), big.reshape(-1)] = np.where(
        spread.reshape(-1), np.float16(60000.0), flat[np.arange(flat.shape[0]), big.reshape(-1)]
    )
    return flat.reshape(shape).astype(np.float16)


def sv_register(rng: np.random.Generator, fmt_name: str) -> tuple[int, ...]:
    """The format's own special values, or (one time in four) reprogrammed ones."""
    fmt = get_format(fmt_name)
    own = (tuple(fmt.special_values) + (0, 0, 0, 0))[:4]
    if fmt.special_code is None or rng.random() < 0.75:
        return own
    return tuple(int(v) for v in rng.integers(-40, 41, 4))


def grid_values(
    rng: np.random.Generator, fmt_name: str, count: int, register: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``count`` random weights: (codes, SV index, zero point, grid values after the zero
    point), every code used by the format's decoder (never the unused symmetric-INT code)."""
    fmt = get_format(fmt_name)
    every = np.arange(1 << fmt.bits)
    usable = every[np.isfinite(decode_codes(fmt, every, 0))]
    codes = usable[rng.integers(0, len(usable), count)]
    index = (
        rng.integers(0, max(1, fmt.n_candidates), count)
        if fmt.special_code is not None
        else np.zeros(count, int)
    )
    zero = (
        rng.integers(0, 1 << fmt.bits, count) if fmt.family == "int_asym" else np.zeros(count, int)
    )
    values = decode_codes(fmt, codes, index, register) - zero
    return codes, index, zero, values.astype(np.int64)


def terms_of(fmt_name: str, values: np.ndarray, register: tuple[int, ...]) -> Terms:
    fmt = get_format(fmt_name)
    return value_terms(
        fmt, values, num_terms(fmt, register if fmt.special_code is not None else None)
    )
