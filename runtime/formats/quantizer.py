"""The quantizer: float weights to per-group codes of a format, and back (torch, CPU or CUDA).

Symmetric grids, asymmetric INT, Algorithm 1's mixtures, VS-Quant second-level scales, OCP MX
and OliVe onto the registry's grids (:mod:`bitmod.runtime.formats.registry`), vectorized over
all groups. The formulas, the rounding rule and why nearest-value rounding is one table gather
per weight: docs/formats.md.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import numpy as np
import torch
from bitmod.runtime.formats.registry import (
    DEFAULT_GROUP_SIZE,
    E8M0_BIAS,
    FP16_SMALLEST_NORMAL,
    MX_BLOCK,
    OLIVE_OUTLIER_MAGNITUDES,
    OLIVE_SCALE_TARGETS,
    OLIVE_VICTIM_CODE,
    Format,
    get_format,
    twos_complement_table,
)

__all__ = ["QuantizedTensor", "dequantize", "quantize"]

# --------------------------------------------------------------------------------------------
# The quantized tensor
# --------------------------------------------------------------------------------------------


@dataclass
class QuantizedTensor:
    """A weight ``[N, K]`` quantized per group of ``group_size`` along ``K``.

    ``values() * group_scale()`` (broadcast per group) is the dequantized weight. There are
    ``n_groups = ceil(K / G)`` groups per row; when ``G`` does not divide ``K`` the last one is
    *ragged*: it holds the ``K − (n_groups − 1)·G`` remaining weights and has its own scale,
    special-value index and zero point (see :func:`quantize`).
    """

    fmt: str
    shape: tuple[int, int]
    group_size: int
    scale_bits: int | None
    codes: torch.Tensor  # uint8 [N, K]: stored bit patterns
    sv_index: torch.Tensor  # uint8 [N, K // G]: candidate / special-value index
    scales: torch.Tensor  # int8 codes | float16 | uint8 E8M0 codes, [N, K // G]
    channel_scale: torch.Tensor | None = None  # float16 [N] when scale_bits is set
    zeros: torch.Tensor | None = None  # uint8 [N, K // G] zero points of *_asym

    @property
    def format(self) -> Format:
        return get_format(self.fmt)

    @property
    def n_groups(self) -> int:
        """Groups per row, the ragged last one included: ``ceil(K / G)``."""
        return -(-self.shape[1] // self.group_size)

    @property
    def last_group_size(self) -> int:
        """Weights in the last group of a row: ``G``, or fewer when ``G`` does not divide K."""
        return self.shape[1] - (self.n_groups - 1) * self.group_size

    def values(self) -> torch.Tensor:
        """Grid value of every weight (special values substituted, zero points subtracted)."""
        fmt = self.format
        table = torch.as_tensor(fmt.table, dtype=torch.float32, device=self.codes.device)
        codes = self.codes.long()
        if fmt.family == "olive":
            return _olive_decode(codes)
        k = self.shape[1]
        rows = _per_weight(self.sv_index.long(), self.group_size, k)
        values = table[rows, codes]
        if self.zeros is not None:
            values = values - _per_weight(self.zeros.float(), self.group_size, k)
        return values

    def group_scale(self) -> torch.Tensor:
        """Effective float32 scale of every group, in value per grid unit."""
        fmt = self.format
        if fmt.family == "mx":
            exponent = self.scales.to(torch.float32) - E8M0_BIAS
            return torch.exp2(exponent) * fmt.grid_unit
        if self.scale_bits is None:
            return self.scales.to(torch.float32)
        assert self.channel_scale is not None
        return self.scales.to(torch.float32) * self.channel_scale.to(torch.float32)[:, None]

    @property
    def bits_per_weight(self) -> float:
        """Storage per weight including all metadata (scales, indices, zero points).

        Metadata is counted per stored group, so a ragged last group costs a whole group's
        metadata for its fewer weights.
        """
        fmt = self.format
        n, k = self.shape
        if fmt.family == "mx":
            return fmt.bits + 8 * self.n_groups / k
        scale = 16 if self.scale_bits is None else self.scale_bits
        per_group = scale + fmt.index_bits + (fmt.bits if self.zeros is not None else 0)
        per_channel = 16 if self.scale_bits is not None else 0
        return fmt.bits + (per_group * self.n_groups + per_channel) / k

    def to(self, device: torch.device | str) -> QuantizedTensor:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return QuantizedTensor(
            self.fmt,
            self.shape,
            self.group_size,
            self.scale_bits,
            self.codes.to(device),
            self.sv_index.to(device),
            self.scales.to(device),
            move(self.channel_scale),
            move(self.zeros),
        )


def _per_weight(per_group: torch.Tensor, group_size: int, k: int) -> torch.Tensor:
    """Broadcast a ``[N, ceil(K/G)]`` tensor to ``[N, K]`` (a ragged last group is shorter;
    ``G > K`` is one group of ``K``)."""
    return per_group.repeat_interleave(min(group_size, k), dim=1)[:, :k]


def dequantize(q: QuantizedTensor) -> torch.Tensor:
    """The float32 weight ``[N, K]`` that ``q`` represents."""
    scale = _per_weight(q.group_scale(), q.group_size, q.shape[1])
    return q.values() * scale


# --------------------------------------------------------------------------------------------
# Quantization
# --------------------------------------------------------------------------------------------


def _check_input(w: torch.Tensor, fmt: Format, group_size: int) -> torch.Tensor:
    if not isinstance(w, torch.Tensor):
        w = torch.as_tensor(np.asarray(w))
    if w.dim() != 2:
        raise ValueError(f"quantize: weight must be 2-D [N, K], got shape {tuple(w.shape)}")
    n, k = w.shape
    if n == 0 or k == 0:
        raise ValueError(f"quantize: empty weight of shape {tuple(w.shape)}")
    if not w.is_floating_point():
        raise ValueError(f"quantize: weight must be floating point, got {w.dtype}")
    if group_size <= 0:
        raise ValueError(f"quantize: group size must be positive, got {group_size}")
    if fmt.family == "olive" and group_size % 2:
        raise ValueError(
            f"quantize: olive4 pairs weights, so the group size must be even, got {group_size}"
        )
    if fmt.family == "olive" and k % 2:
        raise ValueError(f"quantize: olive4 pairs weights along K, so K must be even, got {k}")
    w32 = w.to(torch.float32).contiguous()  # a transposed view quantizes like its copy
    # One cheap reduction first; the element-wise search only when something is off.
    bad = ~torch.isfinite(w32) if not bool(torch.isfinite(w32.sum())) else None
    if bad is not None and bool(bad.any()):
        row, col = (int(i) for i in bad.nonzero()[0])
        value = float(w[row, col])
        if math.isfinite(value):
            raise ValueError(
                f"quantize: weight {value:.6g} at [{row}, {col}] is outside float32's range"
            )
        raise ValueError(f"quantize: non-finite weight {value} at [{row}, {col}]")
    return w32


def _integer_or_none(name: str, value: object) -> int | None:
    """``value`` as an ``int`` (numpy integers too); ValueError for a bool, float or string."""
    if value is None:
        return None
    if not isinstance(value, bool):
        try:
            return operator.index(value)  # type: ignore[arg-type]
        except TypeError:
            pass
    raise ValueError(
        f"quantize: {name} must be an integer or None, got {type(value).__name__} {value!r}"
    )


def quantize(
    w: torch.Tensor,
    fmt: str | Format,
    group_size: int | None = None,
    scale_bits: int | None = 8,
) -> QuantizedTensor:
    """Quantize ``w [N, K]`` per group of ``group_size`` weights along ``K``.

    ``group_size=None`` means 128, or the OCP block of 32 for MX formats (which accept no other).
    ``scale_bits=None`` keeps FP16 group scales; an integer applies the second-level symmetric
    quantization of group scales per output channel (ignored by MX, whose scale is E8M0).
    Works on CPU and CUDA tensors; the result lives on ``w``'s device.

    Ragged K: when ``G`` does not divide ``K`` a row has ``ceil(K/G)`` groups and the last
    one holds only the ``K mod G`` remaining weights. That group is quantized like any other
    over *its real weights alone*: its absmax (or min/max), its scale, Algorithm 1's squared
    error and its zero point see no padding, so it gets its own scale, special-value index
    and zero point and no value is changed by padding; the second-level scale quantization
    treats its scale like the others of the row. MX blocks follow the same rule (a short last
    block has its own E8M0 exponent). OliVe pairs weights along K, so it needs K even.
    """
    fmt = get_format(fmt)
    group_size = _integer_or_none("group_size", group_size)
    scale_bits = _integer_or_none("scale_bits", scale_bits)
    if fmt.family == "mx":
        if group_size not in (None, MX_BLOCK):
            raise ValueError(
                f"quantize: {fmt.name} uses the OCP MX block size {MX_BLOCK}, not {group_size}"
            )
        group_size = MX_BLOCK
    elif group_size is None:
        group_size = DEFAULT_GROUP_SIZE
    if scale_bits is not None and not 2 <= scale_bits <= 8:
        raise ValueError(f"quantize: scale_bits must be in 2..8 or None, got {scale_bits}")
    w = _check_input(w, fmt, group_size)
    n, k = w.shape
    parts = [_quantize_rows(w[rows], fmt, group_size) for rows in _row_blocks(w)]
    codes, first_level, sv_index = (torch.cat([p[i] for p in parts]) for i in range(3))
    zeros = torch.cat([p[3] for p in parts]) if parts[0][3] is not None else None
    if fmt.family == "mx":
        return QuantizedTensor(fmt.name, (n, k), group_size, None, codes, sv_index, first_level)
    channel_scale = None
    if scale_bits is None:
        scales = first_level.to(torch.float16)
        overflow = torch.isinf(scales)
        if bool(overflow.any()):  # an inf scale would dequantize to inf/NaN silently
            row, group = (int(i) for i in overflow.nonzero()[0])
            raise ValueError(
                f"quantize: group scale {float(first_level[row, group]):.3g} of row {row}, "
                f"group {group} overflows FP16; use scale_bits=8 or rescale the weight"
            )
    else:
        scales, channel_scale = _quantize_scales(first_level, scale_bits)
    return QuantizedTensor(
        fmt.name, (n, k), group_size, scale_bits, codes, sv_index, scales, channel_scale, zeros
    )


#: Rows are quantized in blocks of about this many weights on the CPU: the dozen whole-block
#: passes of the quantizer then stay in cache (4x faster than whole-tensor passes at 4096²).
_CPU_BLOCK_WEIGHTS = 1 << 18


def _row_blocks(w: torch.Tensor) -> list[slice]:
    n, k = w.shape
    rows = n if w.device.type != "cpu" else max(1, _CPU_BLOCK_WEIGHTS // k)
    return [slice(start, min(start + rows, n)) for start in range(0, n, rows)]


def _quantize_rows(
    w: torch.Tensor, fmt: Format, group_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Codes ``[n, K]``, first-level scales (E8M0 codes for MX), indices and zero points."""
    n, k = w.shape
    whole = k - k % group_size
    if 0 < whole < k:  # a ragged last group, quantized on its own real weights (see quantize)
        parts = (
            _quantize_rows(w[:, :whole], fmt, group_size),
            _quantize_rows(w[:, whole:], fmt, k - whole),
        )
        codes, scale, sv_index = (torch.cat([p[i] for p in parts], dim=1) for i in range(3))
        zero_parts = [p[3] for p in parts if p[3] is not None]
        return codes, scale, sv_index, torch.cat(zero_parts, dim=1) if zero_parts else None
    group_size = min(group_size, k)
    groups = w.reshape(n, k // group_size, group_size)
    no_index = torch.zeros(groups.shape[:2], dtype=torch.uint8, device=w.device)
    zeros = None
    if fmt.family == "mx":
        codes, scale = _quantize_mx(groups, fmt)
        sv_index = no_index
    elif fmt.family == "int_asym":
        codes, scale, zeros = _quantize_int_asym(groups, fmt.bits)
        sv_index = no_index
    elif fmt.family == "olive":
        codes, scale = _quantize_olive(groups)
        sv_index = no_index
    else:
        codes, scale, sv_index = _quantize_candidates(groups, fmt)
    return codes.reshape(n, k), scale, sv_index, zeros


def _round_grid_lut(grid: np.ndarray, top: int | None = None) -> tuple[np.ndarray, int]:
    """``LUT[ceil(2x) + offset]`` = index of the grid value nearest ``x`` (ties to the lower).

    The LUT covers ``x`` in ``[−top, top]`` (default: the grid's own maximum); why a half-unit
    LUT is exact for integer grids: docs/formats.md, "The rounding rule".
    """
    top = int(np.abs(grid).max()) if top is None else top
    half_points = np.arange(-2 * top, 2 * top + 1) / 2.0
    distance = np.abs(half_points[:, None] - grid[None, :])
    # argmin keeps the first (lowest) grid value on ties; grid is sorted ascending.
    return distance.argmin(axis=1), 2 * top


@dataclass(frozen=True)
class _CandidateLuts:
    """The candidates of one format prepared for vectorized rounding.

    Rounding works on ``x2 = 2x = W / (s/2)`` (exactly twice ``W/s``): cell
    ``c = ceil(x2) + offset`` rounds to ``values2[i, c] / 2`` under candidate ``i``, stored as
    code ``codes[i · cells + c]``. Candidates with the same largest magnitude share ``s`` and
    hence the cells (``scale_groups``).
    """

    values2: torch.Tensor  # float32 [C, cells]: twice the rounded grid value
    codes: torch.Tensor  # int32 [C · cells]
    max_values: tuple[float, ...]
    scale_groups: tuple[tuple[float, tuple[int, ...]], ...]  # (max|grid|, candidate positions)
    offset: int

    @property
    def cells(self) -> int:
        return 2 * self.offset + 1


_LUT_CACHE: dict[tuple[str, str], _CandidateLuts] = {}


def _candidate_luts(fmt: Format, device: torch.device) -> _CandidateLuts:
    key = (fmt.name, str(device))
    if key not in _LUT_CACHE:
        rows = fmt.table
        # One spare cell each side: W/s may exceed max|grid| by an ulp.
        top = int(np.nanmax(np.abs(rows))) + 1
        values, codes, maxima = [], [], []
        for row in rows:
            grid = np.unique(row[np.isfinite(row)])
            # The canonical code of a value is its first code: +0 rather than −0.
            code_of_grid = np.array([int(np.flatnonzero(row == v)[0]) for v in grid])
            index, _ = _round_grid_lut(grid, top)
            values.append(2.0 * grid[index])
            codes.append(code_of_grid[index])
            maxima.append(float(np.abs(grid).max()))
        groups: dict[float, list[int]] = {}
        for position, max_value in enumerate(maxima):
            groups.setdefault(max_value, []).append(position)
        _LUT_CACHE[key] = _CandidateLuts(
            torch.as_tensor(np.stack(values), dtype=torch.float32, device=device),
            torch.as_tensor(np.concatenate(codes), dtype=torch.int32, device=device),
            tuple(maxima),
            tuple((m, tuple(p)) for m, p in groups.items()),
            2 * top,
        )
    return _LUT_CACHE[key]


def _quantize_candidates(
    groups: torch.Tensor, fmt: Format
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Algorithm 1, vectorized over all groups: best candidate per group by mean squared error.

    Per candidate: ``s = absmax / max|grid|``, ``q = LUT[ceil(2W/s)]`` and the error
    ``mean((q·s − W)²)``, computed as ``(s/2)² · mean((2q − 2W/s)²)``. The loops run over the
    (at most four) candidates; everything inside is whole-tensor work.
    """
    luts = _candidate_luts(fmt, groups.device)
    absmax = groups.abs().amax(dim=-1, keepdim=True)
    size = groups.shape[-1]
    errors: list[torch.Tensor | None] = [None] * len(luts.max_values)
    cells: dict[float, torch.Tensor] = {}
    for max_value, positions in luts.scale_groups:
        half_scale = absmax / (2.0 * max_value)
        x2 = groups / torch.where(half_scale > 0, half_scale, torch.ones_like(half_scale))
        # A subnormal s/2 carries few bits, so W/(s/2) may pass max|grid| by more than the
        # spare cell: saturating is the nearest grid value there, as for any |W/s| > max.
        cell = torch.ceil(x2).clamp_(-luts.offset, luts.offset).to(torch.int32).add_(luts.offset)
        cells[max_value] = cell
        for position in positions:
            q2 = torch.index_select(luts.values2[position], 0, cell.view(-1)).view_as(x2)
            distance = torch.linalg.vector_norm(q2.sub_(x2), dim=-1)
            errors[position] = distance.square_().mul_(half_scale[..., 0].square() / size)
    # argmin returns the first minimum: the first candidate wins equal errors. Candidates on the
    # last, contiguous axis: a CPU argmin over the outer axis is ~7x slower.
    best_index = torch.stack(errors, dim=-1).argmin(dim=-1)  # type: ignore[arg-type]
    maxima = torch.as_tensor(luts.max_values, dtype=groups.dtype, device=groups.device)
    best_max = maxima[best_index]
    best_scale = absmax[..., 0] / best_max
    best_cell = None
    for max_value, cell in cells.items():
        chosen = (best_max == max_value)[..., None]
        best_cell = cell if best_cell is None else torch.where(chosen, cell, best_cell)
    assert best_cell is not None
    flat = best_cell.add_(best_index.to(torch.int32)[..., None] * luts.cells)
    codes = torch.index_select(luts.codes, 0, flat.view(-1)).view_as(flat).to(torch.uint8)
    return codes, best_scale, best_index.to(torch.uint8)


def _quantize_int_asym(
    groups: torch.Tensor, bits: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric INT (Eq. 2): codes, scale, zero point per group."""
    qmax = (1 << bits) - 1
    low = groups.amin(dim=-1, keepdim=True)
    high = groups.amax(dim=-1, keepdim=True)
    scale = (high - low) / qmax
    # A constant group (max == min) keeps its value: scale |w| / qmax puts it at code 0 or qmax.
    scale = torch.where(scale > 0, scale, low.abs() / qmax)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero = torch.round(-low / safe).clamp_(0, qmax)
    codes = (torch.round(groups / safe) + zero).clamp_(0, qmax)
    codes = torch.where(scale > 0, codes, zero.expand_as(codes))
    return codes.to(torch.uint8), scale[..., 0], zero[..., 0].to(torch.uint8)


def _quantize_scales(scale: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Second-level symmetric quantization of the group scales of each output channel
    (docs/formats.md, "Second-level scale quantization": the formula, and why ``c`` is rounded
    up below FP16's normal range)."""
    qmax = (1 << (bits - 1)) - 1
    channel = scale.amax(dim=1) / qmax
    channel16 = channel.to(torch.float16)
    if bool(torch.isinf(channel16).any()):
        row = int(torch.isinf(channel16).nonzero()[0])
        raise ValueError(f"quantize: channel {row} scale {float(channel[row]):.3g} overflows FP16")
    below_normal = (channel > 0) & (channel < FP16_SMALLEST_NORMAL)
    rounded_down = channel16.to(torch.float32) < channel
    up = torch.nextafter(channel16, torch.full_like(channel16, float("inf")))
    channel16 = torch.where(below_normal & rounded_down, up, channel16)
    c = channel16.to(torch.float32)[:, None]
    safe = torch.where(c > 0, c, torch.ones_like(c))
    codes = torch.round(scale / safe).clamp_(0, qmax).to(torch.int8)
    return codes, channel16


def _quantize_mx(groups: torch.Tensor, fmt: Format) -> tuple[torch.Tensor, torch.Tensor]:
    """OCP MX: shared E8M0 exponent per block, elements rounded to nearest even, saturating."""
    element = fmt.mx_element
    assert element is not None
    absmax = groups.abs().amax(dim=-1, keepdim=True)
    _, exponent = torch.frexp(absmax)  # absmax = m·2^e, m in [0.5, 1): floor(log2) = e − 1
    shared = (exponent.to(torch.int32) - 1 - element.emax).clamp_(-127, 127)
    shared = torch.where(absmax > 0, shared, torch.full_like(shared, -127))
    v = groups / torch.exp2(shared.to(torch.float32))
    if element.ebits == 0:
        quantum = torch.full_like(v, 2.0**-6)
    else:
        _, e = torch.frexp(v)
        emin = 1 - element.bias
        quantum = torch.exp2((e.to(torch.float32) - 1).clamp_(min=emin) - element.mbits)
    rounded = torch.round(v / quantum) * quantum  # torch.round is half-to-even
    rounded = rounded.clamp_(-element.max_normal, element.max_normal)
    grid_values = rounded / fmt.grid_unit
    codes = _codes_of_values(grid_values, fmt.table[0])
    return codes, (shared[..., 0] + E8M0_BIAS).to(torch.uint8)


def _codes_of_values(values: torch.Tensor, table_row: np.ndarray) -> torch.Tensor:
    """Code of every (exactly representable) grid value; +0 for zero."""
    finite = np.isfinite(table_row)
    order = np.argsort(np.where(finite, table_row, np.inf), kind="stable")
    order = order[: int(finite.sum())]
    sorted_values = torch.as_tensor(table_row[order], dtype=torch.float32, device=values.device)
    sorted_codes = torch.as_tensor(order.astype(np.uint8), device=values.device)
    position = torch.searchsorted(sorted_values, values.contiguous())
    # Zero has two codes (+0 first in stable order, since +0 precedes -0 in code order).
    return sorted_codes[position.clamp_(max=len(order) - 1)]


def _olive_decode(codes: torch.Tensor) -> torch.Tensor:
    """Grid values of OliVe codes: pairs along K, a victim code marks its neighbour an outlier."""
    n, k = codes.shape
    pairs = codes.reshape(n, k // 2, 2)
    normal_table = torch.as_tensor(
        twos_complement_table(4, True), dtype=torch.float32, device=codes.device
    ).nan_to_num(0.0)
    magnitudes = torch.tensor(OLIVE_OUTLIER_MAGNITUDES, dtype=torch.float32, device=codes.device)
    outlier_table = torch.cat([magnitudes, -magnitudes])
    victim = pairs == OLIVE_VICTIM_CODE
    # A pair with two victim codes holds the outlier -8 first (see _quantize_olive).
    first_is_outlier = victim[..., 1]
    second_is_outlier = victim[..., 0] & ~victim[..., 1]
    outlier_slot = torch.stack([first_is_outlier, second_is_outlier], dim=-1)
    normal = normal_table[pairs]
    outlier = outlier_table[pairs]
    values = torch.where(outlier_slot, outlier, torch.where(victim, 0.0, normal))
    return values.reshape(n, k)


_OLIVE_OUTLIER_LUT, _OLIVE_OUTLIER_OFFSET = _round_grid_lut(
    np.asarray(OLIVE_OUTLIER_MAGNITUDES, dtype=np.float64)
)


def _quantize_olive(groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """OliVe outlier-victim pair quantization per group, the scale searched among
    ``OLIVE_SCALE_TARGETS`` (the rules, and the −8 collision: docs/formats.md, "OliVe")."""
    n, g_count, size = groups.shape
    absmax = groups.abs().amax(dim=-1, keepdim=True)
    device = groups.device
    magnitudes = torch.as_tensor(OLIVE_OUTLIER_MAGNITUDES, dtype=torch.float32, device=device)
    positive_lut_t = torch.as_tensor(_OLIVE_OUTLIER_LUT, device=device)
    positive_offset = _OLIVE_OUTLIER_OFFSET
    best_codes = best_scale = best_error = None
    for target in OLIVE_SCALE_TARGETS:
        scale = absmax / target
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        x = (groups / safe).reshape(n, g_count, size // 2, 2)
        magnitude = x.abs()
        is_outlier_pair = magnitude.amax(dim=-1, keepdim=True) > 7.5
        larger = (magnitude[..., 1:] > magnitude[..., :1]).long()  # slot of the outlier
        slot = torch.arange(2, device=device)
        outlier_slot = is_outlier_pair & (slot == larger)
        victim_slot = is_outlier_pair & ~outlier_slot
        # Outlier magnitude index on the abfloat grid (nearest, ties to the lower).
        cell = torch.ceil(2.0 * magnitude).clamp_(-positive_offset, positive_offset).long()
        mag_index = positive_lut_t[cell + positive_offset]
        negative = x < 0
        # −8 in the second slot would collide with the victim identifier: use −12 instead.
        collide = negative & (mag_index == 0) & (slot == 1)
        mag_index = torch.where(collide, torch.ones_like(mag_index), mag_index)
        outlier_code = mag_index + 8 * negative.long()
        outlier_value = magnitudes[mag_index] * torch.where(negative, -1.0, 1.0)
        normal_value = torch.round(x).clamp_(-7, 7)
        normal_code = torch.remainder(normal_value.long(), 16)
        codes = torch.where(
            outlier_slot,
            outlier_code,
            torch.where(victim_slot, torch.full_like(normal_code, OLIVE_VICTIM_CODE), normal_code),
        )
        q = torch.where(outlier_slot, outlier_value, torch.where(victim_slot, 0.0, normal_value))
        error = (q.reshape(n, g_count, size) * scale - groups).square_().mean(dim=-1)
        codes = codes.reshape(n, g_count, size).to(torch.uint8)
        if best_error is None:
            best_codes, best_scale, best_error = codes, scale[..., 0], error
            continue
        better = error < best_error
        best_codes = torch.where(better[..., None], codes, best_codes)
        best_scale = torch.where(better, scale[..., 0], best_scale)
        best_error = torch.where(better, error, best_error)
    assert best_codes is not None and best_scale is not None
    return best_codes, best_scale
