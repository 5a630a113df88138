"""The unified bit-serial representation of BitMoD weights (paper Sec. IV-A, Eq. 4).

Every weight value (in integer grid units) is a short list of terms
``(−1)^s · 2^exp · man · 2^bsig``, and a PE spends one cycle per term on a 4-MAC step, so
:func:`num_terms` is a format's cost in cycles per 4 MACs. Radix-4 Booth decodes INT (and
asymmetric INT after the zero point, and MXINT8), leading-one detection the sign-magnitude
formats; the negative-zero code reads the group's special value from the SV register. The
Booth digits, the LOD rule and the terms of every format: docs/formats.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from bitmod.runtime.formats.registry import Format, get_format

if TYPE_CHECKING:
    from bitmod.runtime.formats.quantizer import QuantizedTensor

__all__ = [
    "Terms",
    "booth_digits",
    "decode_codes",
    "encoding",
    "max_term_sum",
    "num_terms",
    "quantized_terms",
    "value_terms",
]


#: Leading-one detectors in the BitMoD term decoder: LOD formats emit at least this many terms.
_LOD_DETECTORS = 2


@dataclass(frozen=True)
class Terms:
    """Bit-serial terms, each field an int8 array of shape ``values.shape + (T,)``."""

    sign: np.ndarray
    exp: np.ndarray
    man: np.ndarray
    bsig: np.ndarray

    @property
    def count(self) -> int:
        return int(self.sign.shape[-1])

    def values(self) -> np.ndarray:
        """``Σ_t (−1)^s · 2^exp · man · 2^bsig`` as int64 (the inverse of the decoder)."""
        magnitude = self.man.astype(np.int64) << (self.exp.astype(np.int64) + self.bsig)
        return np.where(self.sign.astype(bool), -magnitude, magnitude).sum(axis=-1)


def encoding(fmt: str | Format) -> str:
    """``"booth"`` or ``"lod"``: which term decoder serves ``fmt``."""
    fmt = get_format(fmt)
    if fmt.family in ("int", "int_asym") or fmt.name == "mxint8":
        return "booth"
    return "lod"


def _booth_width(fmt: Format) -> int:
    """Two's complement width of the values the Booth decoder sees."""
    if fmt.family == "int_asym":
        return fmt.bits + 1  # q − z spans −(2^b − 1) .. 2^b − 1
    return fmt.bits


def num_terms(fmt: str | Format, sv_register: tuple[int, ...] | None = None) -> int:
    """Terms per weight = cycles per 4-MAC step (4/3/2/2 for INT8/INT6/FP4/FP3).

    ``sv_register`` overrides the format's special values (the register is programmable).
    """
    fmt = get_format(fmt)
    if encoding(fmt) == "booth":
        return (_booth_width(fmt) + 1) // 2
    magnitudes = _lod_magnitudes(fmt, sv_register)
    most_set_bits = int(max(bin(int(v)).count("1") for v in np.unique(magnitudes)))
    return max(_LOD_DETECTORS, most_set_bits)


def _lod_magnitudes(fmt: Format, sv_register: tuple[int, ...] | None) -> np.ndarray:
    """|value| of every grid point of a leading-one format, plus the SV register's values."""
    magnitudes = np.abs(fmt.grid).astype(np.int64)
    if sv_register is None:
        return magnitudes
    return np.concatenate([magnitudes, np.abs(np.asarray(sv_register, dtype=np.int64))])


def max_term_sum(fmt: str | Format, sv_register: tuple[int, ...] | None = None) -> int:
    """``T = max_w Σ_t |t|`` over every value the term decoder of ``fmt`` can see (its grid,
    the values ``sv_register`` adds, every Booth input of its width): the weight magnitude the
    group accumulator's bound counts (:func:`bitmod.runtime.arch.rules.accumulator_error`)."""
    fmt = get_format(fmt)
    if encoding(fmt) == "booth":
        half = 1 << (_booth_width(fmt) - 1)
        values = np.arange(-half, half, dtype=np.int64)
    else:
        values = _lod_magnitudes(fmt, sv_register)
    terms = value_terms(fmt, values, num_terms(fmt, sv_register))
    magnitude = terms.man.astype(np.int64) << (terms.exp.astype(np.int64) + terms.bsig)
    return int(magnitude.sum(axis=-1).max())


def booth_digits(values: np.ndarray, digits: int) -> np.ndarray:
    """Radix-4 Booth digits ``d_i ∈ {−2..2}`` with ``Σ d_i 4^i = values``; shape ``+ (digits,)``."""
    v = np.asarray(values, dtype=np.int64)[..., None]
    position = 2 * np.arange(digits, dtype=np.int64)
    low = (v >> position) & 1  # b_{2i}
    high = (v >> (position + 1)) & 1  # b_{2i+1}
    previous = np.where(position > 0, (v >> np.maximum(position - 1, 0)) & 1, 0)  # b_{2i-1}
    return (-2 * high + low + previous).astype(np.int8)


def value_terms(fmt: str | Format, values: np.ndarray, terms: int | None = None) -> Terms:
    """Bit-serial terms of integer grid ``values`` under ``fmt``'s decoder.

    ``terms`` defaults to :func:`num_terms`; a value that needs more raises ``ValueError``.
    """
    fmt = get_format(fmt)
    v = np.asarray(values)
    if v.dtype.kind == "f":
        if not np.all(np.isfinite(v)) or np.any(v != np.round(v)):
            raise ValueError(f"value_terms: {fmt.name} values must be finite integers")
    v = v.astype(np.int64)
    count = num_terms(fmt) if terms is None else terms
    if encoding(fmt) == "booth":
        width = 2 * count
        low, high = -(1 << (width - 1)), (1 << (width - 1)) - 1
        if v.size and (v.min() < low or v.max() > high):
            raise ValueError(f"value_terms: {fmt.name} value outside [{low}, {high}]")
        digits = booth_digits(v, count)
        bsig = np.broadcast_to(2 * np.arange(count, dtype=np.int8), digits.shape)
        return Terms(
            (digits < 0).astype(np.int8),
            (np.abs(digits) == 2).astype(np.int8),
            (digits != 0).astype(np.int8),
            np.ascontiguousarray(bsig),
        )
    magnitude = np.abs(v)
    sign = np.broadcast_to((v < 0).astype(np.int8)[..., None], v.shape + (count,))
    exp = np.zeros(v.shape + (count,), dtype=np.int8)
    man = np.zeros(v.shape + (count,), dtype=np.int8)
    for t in range(count):  # one leading-one detection per term (count ≤ 4)
        nonzero = magnitude > 0
        position = np.where(nonzero, np.floor(np.log2(np.maximum(magnitude, 1))), 0).astype(
            np.int64
        )
        exp[..., t] = position
        man[..., t] = nonzero
        magnitude = magnitude - np.where(nonzero, np.int64(1) << position, 0)
    if np.any(magnitude):
        raise ValueError(f"value_terms: a {fmt.name} value needs more than {count} terms")
    sign = np.where(man.astype(bool), sign, 0).astype(np.int8)
    return Terms(sign, exp, man, np.zeros_like(exp))


def decode_codes(
    fmt: str | Format,
    codes: np.ndarray,
    sv_index: np.ndarray,
    sv_register: tuple[int, ...] | np.ndarray | None = None,
) -> np.ndarray:
    """The term decoder's front end: stored codes → integer grid values.

    The negative-zero code (``fmt.special_code``) reads the SV register entry selected by the
    per-weight index (``sv_index`` broadcast to ``codes``' shape); ``sv_register`` defaults to the
    format's special values and may be reprogrammed. Non-mixture formats ignore ``sv_index``.
    """
    fmt = get_format(fmt)
    codes = np.asarray(codes, dtype=np.int64)
    index = np.broadcast_to(np.asarray(sv_index, dtype=np.int64), codes.shape)
    if fmt.family == "mixture" and fmt.special_code is None:  # ANT-style: per-group code tables
        return fmt.table[index, codes]
    values = fmt.table[0][codes]
    if fmt.special_code is not None and fmt.family in ("mixture", "fp_er", "fp_ea"):
        chosen = fmt.special_values if sv_register is None else sv_register
        register = np.asarray(chosen, dtype=np.float64)
        values = np.where(codes == fmt.special_code, register[index], values)
    return values


def quantized_terms(q: QuantizedTensor) -> Terms:
    """Terms ``[N, K, T]`` of every weight of ``q`` (zero points and special values applied)."""
    return value_terms(q.fmt, q.values().cpu().numpy())
