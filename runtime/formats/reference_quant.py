"""A plain, slow reference of the quantizers, written from docs/formats.md and nothing else.

Python loops over groups and elements, float64 arithmetic, every grid value compared one by one:
slow on purpose, so that it is obviously right and shares no code with
``bitmod.runtime.formats`` (whose vectorized Algorithm 1 the tests compare against it).

Rounding rule (docs/formats.md, the authors' midpoint thresholds): ``x`` goes to the nearest
grid value; at an exact midpoint it goes to the *lower* grid value. Here that is "scan the grid
in ascending order and replace the best only on a strictly smaller distance". Algorithm 1 keeps
the candidate with the least mean squared error, replacing only on a strictly smaller error, so
the first candidate in SV-register order wins equal errors.

Ties and floating point: the fast quantizer computes ``w / s`` in float32, this reference in
float64, so an element within ~1e-6 grid units of a midpoint may round differently, and two
candidates whose errors agree to ~1e-6 may be ordered differently. Every result therefore
carries ``margins`` (each element's distance to the nearest rounding midpoint, in grid units)
and ``error_gap`` (relative gap between the chosen candidate's error and the runner-up's, among
candidates whose quantized values differ); comparisons skip elements and groups below a
threshold (and assert that they are rare). Exact ties
(identical quantized groups under two candidates of the same scale) need no skipping: both
implementations compute bit-identical errors and both keep the first candidate.

Ragged rows: a row of ``K`` weights splits into groups of ``G`` consecutive weights, the last
group holding whatever remains (``K mod G`` weights when ``G`` does not divide ``K``); every
group, the short one included, is quantized from its own weights only (:func:`row_groups`,
:func:`quantize_row`).

The oracle of ``tests/test_formats.py`` and ``tests/test_bitserial.py``
(``bitmod.runtime.formats.reference_quant``); nothing in the project itself imports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# ----------------------------------------------------------------------------------------------
# docs/formats.md's value grids, typed in again (integer grid units).
# ----------------------------------------------------------------------------------------------

#: Non-negative magnitudes of the sign-magnitude types; code = sign << (bits - 1) | index.
SIGN_MAGNITUDE: dict[str, tuple[int, ...]] = {
    "fp3": (0, 1, 2, 4),
    "fp4": (0, 1, 2, 3, 4, 6, 8, 12),
    "flint4": (0, 1, 2, 3, 4, 6, 8, 16),
    "fp5_e2m2": (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28),
    "fp5_e3m1": (0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192),
    "flint5": (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 24, 32, 64),
}


def _fp_magnitudes(ebits: int, mbits: int) -> tuple[int, ...]:
    """Magnitudes of an FP type with subnormals and no Inf/NaN, in units of the least subnormal.

    Exponent field ``e``, mantissa ``m``: subnormal ``m`` (e = 0), normal ``(2^M + m)·2^(e−1)``.
    """
    values = []
    for e in range(1 << ebits):
        for m in range(1 << mbits):
            values.append(m if e == 0 else ((1 << mbits) + m) << (e - 1))
    return tuple(values)


SIGN_MAGNITUDE["fp6_e2m3"] = _fp_magnitudes(2, 3)  # max 15·4 = 60
SIGN_MAGNITUDE["fp6_e3m2"] = _fp_magnitudes(3, 2)  # max 7·64 = 448

#: Extended FP types: the negative-zero code holds this special value.
EXTENDED: dict[str, tuple[str, int]] = {
    "fp3_er_pos": ("fp3", 3),
    "fp3_er_neg": ("fp3", -3),
    "fp3_ea_pos": ("fp3", 6),
    "fp3_ea_neg": ("fp3", -6),
    "fp4_er_pos": ("fp4", 10),
    "fp4_er_neg": ("fp4", -10),
    "fp4_ea_pos": ("fp4", 16),
    "fp4_ea_neg": ("fp4", -16),
}

#: Mixtures, candidates in SV-register order.
MIXTURES: dict[str, tuple[str, ...]] = {
    "bitmod3": ("fp3_er_pos", "fp3_er_neg", "fp3_ea_pos", "fp3_ea_neg"),
    "bitmod4": ("fp4_er_pos", "fp4_er_neg", "fp4_ea_pos", "fp4_ea_neg"),
    "fp3_er": ("fp3_er_pos", "fp3_er_neg"),
    "fp3_ea": ("fp3_ea_pos", "fp3_ea_neg"),
    "fp4_er": ("fp4_er_pos", "fp4_er_neg"),
    "fp4_ea": ("fp4_ea_pos", "fp4_ea_neg"),
    "ant3": ("int3", "fp3"),
    "ant4": ("int4", "flint4"),
}

SYMMETRIC_SINGLE = (
    *(f"int{b}" for b in range(3, 9)),
    *SIGN_MAGNITUDE,
    *EXTENDED,
)


def code_table(name: str) -> list[float | None]:
    """Value of every code of a single (non-mixture) symmetric type; None for an unused code.

    INT-sym: two's complement with the most negative code unused. Sign-magnitude: the negative
    zero code is a redundant zero (basic types) or holds the special value (ER/EA).
    """
    if name.startswith("int") and "_" not in name:
        bits = int(name[3:])
        table: list[float | None] = []
        for code in range(1 << bits):
            value = code - (1 << bits) if code >= 1 << (bits - 1) else code
            table.append(None if value == -(1 << (bits - 1)) else float(value))
        return table
    special = None
    basic = name
    if name in EXTENDED:
        basic, special = EXTENDED[name]
    magnitudes = SIGN_MAGNITUDE[basic]
    table = [float(m) for m in magnitudes] + [-float(m) for m in magnitudes]
    table[len(magnitudes)] = 0.0 if special is None else float(special)
    return table


def grid_of(name: str) -> list[float]:
    """Sorted representable values of a single type, or of all candidates of a mixture."""
    members = MIXTURES.get(name, (name,))
    return sorted({v for m in members for v in code_table(m) if v is not None})


# ----------------------------------------------------------------------------------------------
# Symmetric types and Algorithm 1
# ----------------------------------------------------------------------------------------------


def nearest(x: float, grid: list[float]) -> float:
    """Nearest grid value; an exact midpoint goes to the lower value (ascending scan, strict <)."""
    best = grid[0]
    for value in grid[1:]:
        if abs(x - value) < abs(x - best):
            best = value
    return best


def midpoint_margin(x: float, grid: list[float]) -> float:
    """Distance from ``x`` to the nearest rounding midpoint between neighbouring grid values."""
    margin = math.inf
    for low, high in zip(grid, grid[1:], strict=False):
        margin = min(margin, abs(x - (low + high) / 2))
    return margin


@dataclass
class GroupResult:
    codes: list[int]
    values: list[float]  # grid values chosen
    scale: float  # first-level scale (float64)
    error: float  # mean squared error with the first-level scale
    margins: list[float]  # each element's distance to a rounding midpoint, grid units
    index: int = 0  # candidate / SV index
    error_gap: float = math.inf  # relative error gap to the runner-up candidate


def quantize_group_symmetric(group: list[float], name: str) -> GroupResult:
    """``s = absmax / max|grid|``, ``q = nearest(w / s)``, code = first code holding ``q``."""
    table = code_table(name)
    grid = sorted({v for v in table if v is not None})
    top = max(abs(v) for v in grid)
    absmax = max(abs(w) for w in group)
    scale = absmax / top
    values, margins = [], []
    for w in group:
        x = w / scale if scale > 0 else 0.0
        values.append(nearest(x, grid))
        margins.append(midpoint_margin(x, grid))
    error = sum((v * scale - w) ** 2 for v, w in zip(values, group, strict=True)) / len(group)
    codes = [table.index(v) for v in values]  # first code: +0, not -0
    return GroupResult(codes, values, scale, error, margins)


def quantize_group_mixture(group: list[float], name: str) -> GroupResult:
    """Algorithm 1 on one group: every candidate, keep the least MSE (first wins ties)."""
    results = [quantize_group_symmetric(group, member) for member in MIXTURES[name]]
    best_index = 0
    for index, result in enumerate(results):
        if result.error < results[best_index].error:
            best_index = index
    best = results[best_index]
    best.index = best_index
    for result in results:
        if result is best or (result.values == best.values and result.scale == best.scale):
            continue  # an exact tie: identical arithmetic in both implementations
        gap = abs(result.error - best.error) / max(best.error, 1e-30)
        best.error_gap = min(best.error_gap, gap)
    return best


def quantize_group(group: list[float], name: str) -> GroupResult:
    if name in MIXTURES:
        return quantize_group_mixture(group, name)
    return quantize_group_symmetric(group, name)


def round_half_even(x: float) -> int:
    return round(x)  # Python's round() on a float is round-half-to-even


def quantize_group_asym(group: list[float], bits: int) -> tuple[list[int], float, int, list[float]]:
    """Eq. 2: ``s = (max − min)/(2^b − 1)``, ``z = clamp(round(−min/s))``,
    ``q = clamp(round(w/s) + z)``.

    Returns codes, scale, zero and each code's distance to a .5 rounding tie (the zero point's
    own margin folded in).
    """
    qmax = (1 << bits) - 1
    low, high = min(group), max(group)
    scale = (high - low) / qmax
    if scale == 0:
        # A constant group ``c``: ``s = |c|/(2^b − 1)`` puts ``c > 0`` at code ``2^b − 1`` over
        # zero point 0 and ``c < 0`` at code 0 over zero point ``2^b − 1``; ``c = 0`` is all
        # zeros with ``s = 0``.
        if low == 0:
            return [0] * len(group), 0.0, 0, [math.inf] * len(group)
        scale = abs(low) / qmax
        zero = 0 if low > 0 else qmax
        return [qmax - zero] * len(group), scale, zero, [math.inf] * len(group)
    zero_margin = _tie_margin(-low / scale)
    margins = [min(zero_margin, _tie_margin(w / scale)) for w in group]
    zero = min(max(round_half_even(-low / scale), 0), qmax)
    codes = [min(max(round_half_even(w / scale) + zero, 0), qmax) for w in group]
    return codes, scale, zero, margins


def _tie_margin(x: float) -> float:
    """Distance of ``x`` to the nearest ``k + 0.5``."""
    return abs(abs(x - math.floor(x)) - 0.5)


def quantize_scales_int(scales: list[float], bits: int) -> tuple[list[int], float, list[float]]:
    """VS-Quant second level: ``c = fp16(max s / (2^(b−1) − 1))``, ``code = clamp(round(s/c))``;
    a ``c`` below FP16's smallest normal (``2^−14``) is rounded up to the next FP16 value instead.

    ``scales`` are the float32 first-level scales; returns codes, ``c`` and each code's margin
    to a .5 rounding tie.
    """
    qmax = (1 << (bits - 1)) - 1
    exact = float(np.float32(max(scales) / qmax))
    channel = float(np.float16(exact))
    if 0 < exact < 2.0**-14 and channel < exact:  # below FP16's normal range: round up
        channel = float(np.nextafter(np.float16(channel), np.float16(np.inf)))
    codes, margins = [], []
    for s in scales:
        ratio = s / channel if channel > 0 else 0.0
        margins.append(_tie_margin(ratio))
        codes.append(min(max(round_half_even(ratio), 0), qmax))
    return codes, channel, margins


# ----------------------------------------------------------------------------------------------
# OCP MX v1.0
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MxElement:
    ebits: int  # 0: INT8 element
    mbits: int
    emax: int
    max_normal: float


MX_ELEMENTS: dict[str, MxElement] = {
    "mxfp3": MxElement(2, 0, 2, 4.0),  # E2M0: 0, 1, 2, 4 (not in OCP v1.0; the paper's MX-FP3)
    "mxfp4": MxElement(2, 1, 2, 6.0),
    "mxfp6_e2m3": MxElement(2, 3, 2, 7.5),
    "mxfp6_e3m2": MxElement(3, 2, 4, 28.0),
    "mxfp8_e4m3": MxElement(4, 3, 8, 448.0),
    "mxfp8_e5m2": MxElement(5, 2, 15, 57344.0),
    "mxint8": MxElement(0, 6, 0, 127 / 64),
}


def mx_element_round(v: float, element: MxElement) -> float:
    """``v`` rounded to nearest even on the element grid, saturating at its largest normal.

    FP: the quantum of ``v`` is ``2^(max(floor(log2|v|), emin) − M)`` with
    ``emin = 1 − bias = 2 − 2^(E−1)`` (subnormals share the smallest normal's quantum).
    INT8: quantum ``2^−6``.
    """
    if element.ebits == 0:
        quantum = 2.0**-6
    else:
        emin = 2 - (1 << (element.ebits - 1))
        if v == 0:
            return 0.0
        exponent = math.frexp(abs(v))[1] - 1  # floor(log2 |v|)
        quantum = 2.0 ** (max(exponent, emin) - element.mbits)
    rounded = round_half_even(v / quantum) * quantum
    return max(-element.max_normal, min(element.max_normal, rounded))


def mx_block(block: list[float], name: str) -> tuple[int, list[float]]:
    """Shared exponent ``X = floor(log2 absmax) − emax`` (clamped to ±127) and element values."""
    element = MX_ELEMENTS[name]
    absmax = max(abs(w) for w in block)
    shared = -127 if absmax == 0 else math.frexp(absmax)[1] - 1 - element.emax
    shared = max(-127, min(127, shared))
    return shared, [mx_element_round(w * 2.0**-shared, element) for w in block]


# ----------------------------------------------------------------------------------------------
# OliVe 4-bit outlier-victim pairs
# ----------------------------------------------------------------------------------------------

OLIVE_OUTLIERS = [8.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0, 96.0]  # abfloat E2M1, bias 3
OLIVE_TARGETS = [7.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0, 96.0]  # absmax -> this grid value
OLIVE_VICTIM = 8  # code 1000


@dataclass
class OliveResult:
    codes: list[int]
    values: list[float]
    scale: float
    margins: list[float]
    error_gap: float = math.inf


def _olive_with_scale(group: list[float], scale: float) -> tuple[list[int], list[float], list]:
    """One scale: pairs beyond INT4 keep the larger element as an outlier, the other is pruned."""
    codes: list[int] = []
    values: list[float] = []
    margins: list[float] = []
    divisor = scale if scale > 0 else 1.0  # an all-zero group: scale 0, every code 0
    for first in range(0, len(group), 2):
        pair = [group[first] / divisor, group[first + 1] / divisor]
        big = max(abs(pair[0]), abs(pair[1]))
        pair_margin = min(abs(big - 7.5), abs(abs(pair[1]) - abs(pair[0])))
        if big > 7.5:
            outlier = 1 if abs(pair[1]) > abs(pair[0]) else 0
            for slot, x in enumerate(pair):
                if slot != outlier:
                    codes.append(OLIVE_VICTIM)
                    values.append(0.0)
                    margins.append(pair_margin)
                    continue
                magnitude = nearest(abs(x), OLIVE_OUTLIERS)
                if x < 0 and magnitude == 8.0 and slot == 1:
                    magnitude = 12.0  # code 1000 in the second slot would read as the victim mark
                index = OLIVE_OUTLIERS.index(magnitude)
                codes.append(index + (8 if x < 0 else 0))
                values.append(-magnitude if x < 0 else magnitude)
                margins.append(min(pair_margin, midpoint_margin(abs(x), OLIVE_OUTLIERS)))
        else:
            for x in pair:
                value = max(-7, min(7, round_half_even(x)))
                codes.append(value % 16)
                values.append(float(value))
                margins.append(min(pair_margin, _tie_margin(x)))
    return codes, values, margins


def quantize_group_olive(group: list[float]) -> OliveResult:
    """Every scale ``absmax / t``; the least squared error wins (the first on a tie)."""
    absmax = max(abs(w) for w in group)
    results = []
    for target in OLIVE_TARGETS:
        scale = float(np.float32(absmax / target))
        codes, values, margins = _olive_with_scale(group, scale)
        error = sum((v * scale - w) ** 2 for v, w in zip(values, group, strict=True))
        results.append((error, codes, values, scale, margins))
    best = 0
    for index, result in enumerate(results):
        if result[0] < results[best][0]:
            best = index
    error, codes, values, scale, margins = results[best]
    gap = min(
        (abs(r[0] - error) / max(error, 1e-30) for i, r in enumerate(results) if i != best),
        default=math.inf,
    )
    return OliveResult(codes, values, scale, margins, gap)


# ----------------------------------------------------------------------------------------------
# Whole rows, ragged last group included
# ----------------------------------------------------------------------------------------------


def row_groups(k: int, group_size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of every group of a row of ``k``: ``G`` each, the last one shorter."""
    return [(start, min(start + group_size, k)) for start in range(0, k, group_size)]


@dataclass
class RowGroup:
    """One group of a row quantized by :func:`quantize_row`, any family."""

    start: int
    stop: int
    codes: list[int]
    values: list[float]  # grid values after special values / minus the zero point
    scale: float  # first-level scale; for MX the block's power of two
    margins: list[float]
    index: int = 0
    zero: int = 0
    error_gap: float = math.inf


def quantize_row(row: list[float], name: str, group_size: int) -> list[RowGroup]:
    """Quantize one row group by group (a ragged last group on its own weights only)."""
    groups = []
    for start, stop in row_groups(len(row), group_size):
        group = row[start:stop]
        if name in MX_ELEMENTS:
            shared, elements = mx_block(group, name)
            scale = 2.0**shared
            groups.append(RowGroup(start, stop, [], elements, scale, [math.inf] * len(group)))
        elif name.endswith("_asym"):
            bits = int(name[3:].split("_")[0])
            codes, scale, zero, margins = quantize_group_asym(group, bits)
            values = [float(c - zero) for c in codes]
            groups.append(RowGroup(start, stop, codes, values, scale, margins, zero=zero))
        elif name == "olive4":
            result = quantize_group_olive(group)
            groups.append(
                RowGroup(
                    start,
                    stop,
                    result.codes,
                    result.values,
                    result.scale,
                    result.margins,
                    error_gap=result.error_gap,
                )
            )
        else:
            r = quantize_group(group, name)
            groups.append(
                RowGroup(
                    start, stop, r.codes, r.values, r.scale, r.margins, r.index, 0, r.error_gap
                )
            )
    return groups
