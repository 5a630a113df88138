"""The format registry: every weight format of BitMoD and of its comparison points, as data.

A :class:`Format` is a table of the value each stored code decodes to, in *integer grid units*
(the nominal grid divided by its grid unit, so every value is exact in fixed point; the unit is
folded into the scale), plus its special values, mixture candidates and MX element. The grids,
the quantization rules and the MX traps: docs/formats.md.

Numpy only, so that tools reading format metadata (the IR parser, tiling, lowering) start
without torch; the quantizer is :mod:`bitmod.runtime.formats.quantizer`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

__all__ = [
    "FORMAT_IDS",
    "FORMAT_NAMES",
    "Format",
    "get_format",
]

# --------------------------------------------------------------------------------------------
# Value grids (integer grid units), as in the BitMoD authors' code (docs/formats.md).
# --------------------------------------------------------------------------------------------

#: Non-negative magnitudes of the sign-magnitude grid types; the code is ``sign << (b-1) | index``.
_MAGNITUDES: dict[str, tuple[int, ...]] = {
    "fp3": (0, 1, 2, 4),
    "fp4": (0, 1, 2, 3, 4, 6, 8, 12),
    "flint4": (0, 1, 2, 3, 4, 6, 8, 16),
    "fp5_e2m2": (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28),
    "fp5_e3m1": (0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192),
    "flint5": (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 24, 32, 64),
    "fp6_e2m3": (
        *range(0, 17),
        18,
        20,
        22,
        24,
        26,
        28,
        30,
        32,
        36,
        40,
        44,
        48,
        52,
        56,
        60,
    ),
    "fp6_e3m2": (
        0,
        1,
        2,
        3,
        4,
        5,
        6,
        7,
        8,
        10,
        12,
        14,
        16,
        20,
        24,
        28,
        32,
        40,
        48,
        56,
        64,
        80,
        96,
        112,
        128,
        160,
        192,
        224,
        256,
        320,
        384,
        448,
    ),
}

#: Grid unit (nominal value of grid integer 1) of the sign-magnitude types, informational.
_GRID_UNITS: dict[str, float] = {
    "fp3": 0.5,
    "fp4": 0.5,
    "flint4": 1.0,
    "flint5": 1.0,
    "fp5_e2m2": 0.25,
    "fp5_e3m1": 0.125,
    "fp6_e2m3": 0.125,
    "fp6_e3m2": 0.0625,
}

#: Extended FP types: (basic grid, special value replacing the negative-zero code).
_EXTENDED: dict[str, tuple[str, int]] = {
    "fp3_er_pos": ("fp3", 3),
    "fp3_er_neg": ("fp3", -3),
    "fp3_ea_pos": ("fp3", 6),
    "fp3_ea_neg": ("fp3", -6),
    "fp4_er_pos": ("fp4", 10),
    "fp4_er_neg": ("fp4", -10),
    "fp4_ea_pos": ("fp4", 16),
    "fp4_ea_neg": ("fp4", -16),
}

#: Mixtures: candidates in SV-register order (the stored per-group index selects one).
_MIXTURES: dict[str, tuple[str, ...]] = {
    "bitmod3": ("fp3_er_pos", "fp3_er_neg", "fp3_ea_pos", "fp3_ea_neg"),
    "bitmod4": ("fp4_er_pos", "fp4_er_neg", "fp4_ea_pos", "fp4_ea_neg"),
    "fp3_er": ("fp3_er_pos", "fp3_er_neg"),
    "fp3_ea": ("fp3_ea_pos", "fp3_ea_neg"),
    "fp4_er": ("fp4_er_pos", "fp4_er_neg"),
    "fp4_ea": ("fp4_ea_pos", "fp4_ea_neg"),
    # ANT-style per-group choice between INT and a float-like type (the authors' "mixed ant").
    "ant3": ("int3", "fp3"),
    "ant4": ("int4", "flint4"),
}


@dataclass(frozen=True)
class _MxElement:
    """OCP MX v1.0 element format; ``ebits == 0`` means the INT8 element (implied 2^-6)."""

    ebits: int
    mbits: int
    bias: int
    emax: int
    max_normal: float
    #: E4M3: the all-ones magnitude is NaN; E5M2: the all-ones exponent is Inf/NaN.
    has_nan_top_code: bool


_MX_ELEMENTS: dict[str, _MxElement] = {
    "mxfp4": _MxElement(2, 1, 1, 2, 6.0, False),
    "mxfp6_e2m3": _MxElement(2, 3, 1, 2, 7.5, False),
    "mxfp6_e3m2": _MxElement(3, 2, 3, 4, 28.0, False),
    "mxfp8_e4m3": _MxElement(4, 3, 7, 8, 448.0, True),
    "mxfp8_e5m2": _MxElement(5, 2, 15, 15, 57344.0, True),
    "mxint8": _MxElement(0, 7, 0, 0, 127.0 / 64.0, False),
}
MX_BLOCK = 32
E8M0_BIAS = 127

#: MX-FP3, the BitMoD paper's Table VI row. OCP MX v1.0 defines no 3-bit element; this one is
#: the OCP pattern carried down to 3 bits: sign + E2M0 (2 exponent bits, no mantissa, bias 1,
#: no Inf/NaN), magnitudes 0, 1, 2, 4 (the FP3 grid of Sec. III-A with unit 1), emax 2, in a
#: block of 32 with an E8M0 shared scale ``X = floor(log2 absmax) − 2``; elements round to
#: nearest even and saturate at 4. Registered last, after olive4, so no other format's
#: ``FORMAT_IDS`` entry moves.
MXFP3_ELEMENT = _MxElement(2, 0, 1, 2, 4.0, False)

# OliVe (ISCA'23) 4-bit: normal values INT4 (-7..7); the code 1000 marks a victim (value 0) whose
# pair neighbour is an outlier in "abfloat": E2M1 magnitudes biased so the smallest outlier (8)
# lies above the normal range: (1, 1.5, 2, 3, 4, 6, 8, 12) * 2^3.
OLIVE_OUTLIER_MAGNITUDES = (8, 12, 16, 24, 32, 48, 64, 96)
OLIVE_VICTIM_CODE = 0b1000
#: Scale candidates: the group absmax is mapped to one of these grid values (searched by MSE).
OLIVE_SCALE_TARGETS = (7.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0, 96.0)

DEFAULT_GROUP_SIZE = 128
#: Smallest positive normal FP16 value; channel scales below it are rounded up (see the quantizer).
FP16_SMALLEST_NORMAL = 2.0**-14


@dataclass(frozen=True)
class Format:
    """One weight format.

    ``code_table[c, code]`` is the grid value of ``code`` under candidate ``c`` (one row for a
    single type; one per candidate for a mixture, with the candidate's special value at
    ``special_code``). Unused codes are NaN.
    """

    name: str
    family: str
    bits: int
    code_table: tuple[tuple[float, ...], ...]
    special_code: int | None = None
    special_values: tuple[int, ...] = ()
    candidates: tuple[str, ...] = ()
    grid_unit: float = 1.0
    block_size: int | None = None
    accelerated: bool = False
    description: str = ""
    mx_element: _MxElement | None = field(default=None, repr=False)

    @cached_property
    def table(self) -> np.ndarray:
        """``code_table`` as a float64 array ``[n_candidates, 2**bits]``."""
        return np.asarray(self.code_table, dtype=np.float64)

    @property
    def code_values(self) -> np.ndarray:
        """Value of each code; NaN for unused codes and for a mixture's special-value code."""
        values = self.table[0].copy()
        if self.family == "mixture" and self.special_code is not None:
            values[self.special_code] = np.nan
        return values

    @cached_property
    def grid(self) -> np.ndarray:
        """Every representable grid value (all candidates, special values included), sorted."""
        values = self.table[np.isfinite(self.table)]
        if self.family == "olive":
            outliers = np.asarray(OLIVE_OUTLIER_MAGNITUDES, dtype=np.float64)
            values = np.concatenate([values, outliers, -outliers])
        return np.unique(values)

    @property
    def max_value(self) -> float:
        return float(np.abs(self.grid).max())

    @property
    def n_candidates(self) -> int:
        return len(self.code_table)

    @property
    def index_bits(self) -> int:
        """Bits of the per-group candidate / special-value index (0 for a single type)."""
        return math.ceil(math.log2(self.n_candidates)) if self.n_candidates > 1 else 0


# --------------------------------------------------------------------------------------------
# Building the registry
# --------------------------------------------------------------------------------------------


def _sign_magnitude_table(magnitudes: tuple[int, ...], bits: int, special: float | None) -> list:
    half = 1 << (bits - 1)
    if len(magnitudes) != half:
        raise AssertionError(f"{len(magnitudes)} magnitudes for a {bits}-bit sign-magnitude type")
    table = [float(m) for m in magnitudes] + [-float(m) for m in magnitudes]
    table[half] = 0.0 if special is None else float(special)
    return table


def twos_complement_table(bits: int, symmetric: bool) -> list:
    table = [float(c if c < (1 << (bits - 1)) else c - (1 << bits)) for c in range(1 << bits)]
    if symmetric:
        table[1 << (bits - 1)] = math.nan
    return table


def _mx_table(element: _MxElement, bits: int) -> tuple[list, float]:
    """Code table in grid units (multiples of the element's smallest subnormal) and that unit."""
    if element.ebits == 0:
        return twos_complement_table(bits, symmetric=False), 2.0**-6
    unit = 2.0 ** (1 - element.bias - element.mbits)
    magnitudes = []
    for mag in range(1 << (bits - 1)):
        exponent, mantissa = mag >> element.mbits, mag & ((1 << element.mbits) - 1)
        top_exponent = exponent == (1 << element.ebits) - 1
        if element.has_nan_top_code and element.ebits == 4 and mag == (1 << (bits - 1)) - 1:
            magnitudes.append(math.nan)  # E4M3: S.1111.111 is NaN
        elif element.has_nan_top_code and element.ebits == 5 and top_exponent:
            magnitudes.append(math.nan)  # E5M2: exponent 11111 is Inf/NaN
        elif exponent == 0:
            magnitudes.append(float(mantissa))
        else:
            value = (1 + mantissa / (1 << element.mbits)) * 2.0 ** (exponent - element.bias)
            magnitudes.append(value / unit)
    table = magnitudes + [-m for m in magnitudes]
    return table, unit


def _build_registry() -> dict[str, Format]:
    formats: dict[str, Format] = {}
    for bits in range(3, 9):
        formats[f"int{bits}"] = Format(
            f"int{bits}",
            "int",
            bits,
            (tuple(twos_complement_table(bits, True)),),
            accelerated=True,
            description=f"symmetric INT{bits}, two's complement, Booth-encoded bit-serial terms",
        )
        formats[f"int{bits}_asym"] = Format(
            f"int{bits}_asym",
            "int_asym",
            bits,
            (tuple(float(c) for c in range(1 << bits)),),
            accelerated=True,
            description=f"asymmetric INT{bits}: unsigned code minus a per-group zero point",
        )
    for name, magnitudes in _MAGNITUDES.items():
        bits = int(math.log2(len(magnitudes))) + 1
        family = "flint" if name.startswith("flint") else "fp"
        formats[name] = Format(
            name,
            family,
            bits,
            (tuple(_sign_magnitude_table(magnitudes, bits, None)),),
            grid_unit=_GRID_UNITS[name],
            accelerated=name in ("fp3", "fp4"),
            description=f"basic {name} grid, sign-magnitude with a redundant negative zero",
        )
    for name, (basic, special) in _EXTENDED.items():
        magnitudes = _MAGNITUDES[basic]
        bits = int(math.log2(len(magnitudes))) + 1
        formats[name] = Format(
            name,
            "fp_er" if "_er_" in name else "fp_ea",
            bits,
            (tuple(_sign_magnitude_table(magnitudes, bits, special)),),
            special_code=1 << (bits - 1),
            special_values=(special,),
            grid_unit=_GRID_UNITS[basic],
            accelerated=True,
            description=f"{basic} with the negative-zero code replaced by {special:+d}",
        )
    for name, members in _MIXTURES.items():
        rows = tuple(formats[m].code_table[0] for m in members)
        bits = formats[members[0]].bits
        extended = all(m in _EXTENDED for m in members)
        formats[name] = Format(
            name,
            "mixture",
            bits,
            rows,
            special_code=(1 << (bits - 1)) if extended else None,
            special_values=tuple(_EXTENDED[m][1] for m in members) if extended else (),
            candidates=members,
            grid_unit=formats[members[0]].grid_unit,
            accelerated=extended,
            description="per-group choice (least squared error) among " + ", ".join(members),
        )
    for name, element in _MX_ELEMENTS.items():
        bits = 8 if name.startswith("mxfp8") or name == "mxint8" else int(name[4])
        table, unit = _mx_table(element, bits)
        formats[name] = Format(
            name,
            "mx",
            bits,
            (tuple(table),),
            grid_unit=unit,
            block_size=MX_BLOCK,
            mx_element=element,
            description="OCP MX v1.0: block of 32 with an E8M0 shared scale",
        )
    formats["olive4"] = Format(
        "olive4",
        "olive",
        4,
        (tuple(twos_complement_table(4, True)),),
        special_code=OLIVE_VICTIM_CODE,
        description="OliVe outlier-victim pairs: INT4 normals, abfloat E2M1 (bias 3) outliers",
    )
    table, unit = _mx_table(MXFP3_ELEMENT, 3)
    formats["mxfp3"] = Format(
        "mxfp3",
        "mx",
        3,
        (tuple(table),),
        grid_unit=unit,
        block_size=MX_BLOCK,
        mx_element=MXFP3_ELEMENT,
        description="MX-FP3 (not in OCP MX v1.0): E2M0 elements 0, 1, 2, 4, block of 32 with an "
        "E8M0 shared scale",
    )
    return formats


_REGISTRY: dict[str, Format] = _build_registry()

#: Every format name, in a stable order.
FORMAT_NAMES: tuple[str, ...] = tuple(_REGISTRY)

#: Stable numeric id of each format, used by the ISA's ``cfg.fmt``. Append only.
FORMAT_IDS: dict[str, int] = {name: index for index, name in enumerate(FORMAT_NAMES)}


def get_format(name: str | Format) -> Format:
    """The format called ``name``; ``ValueError`` listing the valid names otherwise."""
    if isinstance(name, Format):
        return name
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown data type {name!r}; valid names: {', '.join(FORMAT_NAMES)}"
        ) from None
