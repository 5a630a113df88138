"""The tables of docs/formats.md, docs/hardware.md and docs/perf-model.md, written from the code.

    python docs/tables.py            # rewrite every generated table in place
    python docs/tables.py --check    # exit 1 naming the tables that differ from the code

A generated table sits between ``<!-- table: NAME -->`` and ``<!-- end table -->``; everything
outside those markers is hand-written. ``tests/test_docs.py`` runs the check, so a change to a
format, a hardware constant or a cited precision that is not carried into the docs fails the
suite.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from bitmod.runtime.arch import hwconfig
from bitmod.runtime.arch.hwconfig import (
    AREA_SOURCES,
    ENERGY_SOURCES,
    PE_KINDS,
    AreaTable,
    EnergyTable,
    HardwareConfig,
)
from bitmod.runtime.formats import FORMAT_NAMES, Format, get_format, quantize
from bitmod.runtime.formats.bitserial import encoding, num_terms
from bitmod.runtime.formats.registry import (
    E8M0_BIAS,
    MX_BLOCK,
    OLIVE_OUTLIER_MAGNITUDES,
    OLIVE_SCALE_TARGETS,
    OLIVE_VICTIM_CODE,
)
from bitmod.runtime.perf.model import (
    ACCELERATORS,
    ANT_WEIGHT_BITS,
    OLIVE_WEIGHT_BITS,
    TASKS,
    accelerator,
    load_llm_shapes,
)

DOCS = Path(__file__).resolve().parent
_BLOCK = re.compile(r"(<!-- table: ([\w-]+) -->\n)(.*?)(<!-- end table -->)", re.DOTALL)

#: K of the per-channel scale's share in the bits/weight table.
BITS_TABLE_K = 4096


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> str:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    """Exact short form of a dyadic value: ``0.125``, ``1.52587890625e-05``, ``448``."""
    value = float(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.12g}"


def _runs(values: Iterable[float]) -> str:
    """Sorted values. In a grid of more than 16 a run of five or more equal steps is written
    ``a, b, …, z``; of a grid of more than 64 the first 24 values and the last 3 are shown,
    the middle as ``[…]``."""
    v = sorted(float(x) for x in values)
    if len(v) <= 16:
        return ", ".join(_number(x) for x in v)
    parts: list[tuple[str, int, int]] = []  # (text, index of its first and last value)
    i = 0
    while i < len(v):
        j = i + 1
        if j < len(v):
            step = v[j] - v[i]
            while j + 1 < len(v) and math.isclose(v[j + 1] - v[j], step):
                j += 1
        if j - i >= 4:
            parts.append((f"{_number(v[i])}, {_number(v[i + 1])}, …, {_number(v[j])}", i, j))
            i = j + 1
        else:
            parts.append((_number(v[i]), i, i))
            i += 1
    if len(v) > 64:
        head = [part for part in parts if part[1] < 24]
        if head[-1][2] < len(v) - 1:
            tail = v[max(head[-1][2] + 1, len(v) - 3) :]
            return ", ".join([*(text for text, _, _ in head), "[…]", *map(_number, tail)])
    return ", ".join(text for text, _, _ in parts)


def _values(values: Iterable[float], unit: float = 1.0) -> str:
    """A grid, as ``±`` magnitudes when it is symmetric; values scaled by ``unit``."""
    grid = np.unique(np.asarray(list(values), dtype=np.float64)) * unit
    if not np.array_equal(np.sort(-grid), grid):
        return _runs(grid)
    positive = grid[grid > 0]
    count = f" ({grid.size} values)" if grid.size > 64 else ""
    prefix = "0, " if 0 in grid else ""
    return prefix + "±{" + _runs(positive) + "}" + count


def _finite(values: Iterable[float]) -> np.ndarray:
    array = np.asarray(list(values), dtype=np.float64)
    return array[np.isfinite(array)]


def _code(code: int, bits: int) -> str:
    return format(code, f"0{bits}b")


# --------------------------------------------------------------------------------------------
# docs/formats.md
# --------------------------------------------------------------------------------------------

_SIGN_MAGNITUDE = ("fp", "flint")


def formats_grids() -> str:
    rows = []
    for name in FORMAT_NAMES:
        fmt = get_format(name)
        if fmt.family not in ("int", "int_asym", *_SIGN_MAGNITUDE):
            continue
        grid = _finite(fmt.table[0])
        if fmt.family == "int_asym":
            values = f"codes {_runs(grid)}; value = code − z"
            nominal = "(code − z) · s"
        else:
            values = _values(grid)
            nominal = _values(grid, fmt.grid_unit)
        rows.append(
            [
                f"`{name}`",
                fmt.family,
                fmt.bits,
                _number(fmt.grid_unit),
                values,
                nominal,
                _number(fmt.max_value),
            ]
        )
    return _table(
        ["format", "family", "bits", "grid unit", "grid (integer units)", "nominal", "max"], rows
    )


def formats_extended() -> str:
    rows = []
    for name in FORMAT_NAMES:
        fmt = get_format(name)
        if fmt.family not in ("fp_er", "fp_ea"):
            continue
        basic = name[:3]
        basic_max = get_format(basic).max_value
        special = fmt.special_values[0]
        assert fmt.special_code is not None
        where = "inside" if abs(special) < basic_max else "outside"
        rows.append(
            [
                f"`{name}`",
                f"`{basic}`",
                _code(fmt.special_code, fmt.bits),
                f"{special:+d}",
                f"{special * fmt.grid_unit:+g}",
                f"{where} ±{_number(basic_max)}",
                _number(fmt.max_value),
                _values(_finite(fmt.table[0])),
            ]
        )
    return _table(
        [
            "format",
            "basic",
            "SV code",
            "special value (units)",
            "nominal",
            "basic range",
            "max (scale divisor)",
            "grid (integer units)",
        ],
        rows,
    )


def formats_mixtures() -> str:
    rows = []
    for name in FORMAT_NAMES:
        fmt = get_format(name)
        if fmt.family != "mixture":
            continue
        candidates = ", ".join(
            f"{index}: `{member}`" for index, member in enumerate(fmt.candidates)
        )
        register = ", ".join(f"{v:+d}" for v in fmt.special_values) or "– (per-group code table)"
        rows.append(
            [f"`{name}`", fmt.bits, candidates, fmt.index_bits, register, _number(fmt.max_value)]
        )
    return _table(
        ["mixture", "bits", "candidates (index)", "index bits", "SV register", "max"], rows
    )


def _unwritten_codes(fmt: Format) -> str:
    """The codes the MX quantizer never writes, by reason."""
    element = fmt.mx_element
    assert element is not None
    table = fmt.table[0]
    top = element.max_normal / fmt.grid_unit
    nan = [c for c in range(table.size) if np.isnan(table[c])]
    beyond = [c for c in range(table.size) if np.isfinite(table[c]) and abs(table[c]) > top]
    negative_zero = [c for c in range(table.size) if table[c] == 0 and c >= table.size // 2]
    parts = []
    if negative_zero:
        parts.append("−0 " + ", ".join(_code(c, fmt.bits) for c in negative_zero))
    if nan:
        magnitudes = {c & ((1 << (fmt.bits - 1)) - 1) for c in nan}
        exponent_ones = ((1 << element.ebits) - 1) << element.mbits
        if magnitudes == {exponent_ones | m for m in range(1 << element.mbits)}:
            pattern = "s." + "1" * element.ebits + "." + "x" * element.mbits
        else:
            mask = (1 << element.mbits) - 1
            pattern = ", ".join(
                f"s.{_code(m >> element.mbits, element.ebits)}.{_code(m & mask, element.mbits)}"
                for m in sorted(magnitudes)
            )
        parts.append(f"NaN/Inf {pattern} ({len(nan)} codes)")
    if beyond:
        parts.append("beyond max normal " + ", ".join(_code(c, fmt.bits) for c in beyond))
    return "; ".join(parts)


def formats_mx_elements() -> str:
    rows = []
    for name in FORMAT_NAMES:
        fmt = get_format(name)
        if fmt.family != "mx":
            continue
        element = fmt.mx_element
        assert element is not None
        if element.ebits == 0:
            kind, bias = "INT8 (two's complement)", "–"
        else:
            kind, bias = f"E{element.ebits}M{element.mbits}", str(element.bias)
        rows.append(
            [
                f"`{name}`",
                kind,
                bias,
                element.emax,
                _number(element.max_normal),
                _number(fmt.grid_unit),
                _number(element.max_normal / fmt.grid_unit),
                _unwritten_codes(fmt),
            ]
        )
    return _table(
        [
            "format",
            "element",
            "bias",
            "emax",
            "max normal",
            "grid unit",
            "max (units)",
            "codes never written",
        ],
        rows,
    )


def formats_mx_grids() -> str:
    rows = []
    for name in FORMAT_NAMES:
        fmt = get_format(name)
        if fmt.family != "mx":
            continue
        element = fmt.mx_element
        assert element is not None
        grid = _finite(fmt.table[0])
        grid = grid[np.abs(grid) <= element.max_normal / fmt.grid_unit]
        rows.append([f"`{name}`", _values(grid), _values(grid, fmt.grid_unit)])
    return _table(["format", "element grid (integer units)", "nominal element values"], rows)


def _mx_trap(name: str, block_values: list[float]) -> tuple[int, list[float], list[int]]:
    row = block_values + [0.0] * (MX_BLOCK - len(block_values))
    q = quantize(torch.tensor([row], dtype=torch.float32), name)
    values = (q.values() * q.group_scale()).flatten()[: len(block_values)].tolist()
    return int(q.scales[0, 0]), values, q.codes[0, : len(block_values)].tolist()


_MX_TRAPS: tuple[tuple[str, str, list[float]], ...] = (
    ("mxfp4", "carry into the exponent, subnormals, saturation", [7.5, 1.8, 0.6, 0.9, -7.0]),
    ("mxfp4", "ties to even", [6.0, 0.25, 0.75, 2.5]),
    ("mxfp8_e4m3", "saturation at 448, never the NaN code", [500.0, 448.0, 460.0, 1.97]),
    ("mxfp8_e5m2", "emax 15; saturation at 57344, never Inf", [65000.0, 60000.0, 1.0]),
    ("mxint8", "implied 2^-6, saturation at 127/64", [1.999, 1.0, -1.0, 1 / 128, 3 / 128]),
    ("mxfp4", "all-zero block", [0.0]),
)


def formats_mx_traps() -> str:
    rows = []
    for name, what, block in _MX_TRAPS:
        code, values, codes = _mx_trap(name, block)
        bits = get_format(name).bits
        rows.append(
            [
                f"`{name}`",
                what,
                ", ".join(_number(v) for v in block),
                f"{code} (X = {code - E8M0_BIAS})",
                ", ".join(_number(v) for v in values),
                ", ".join(_code(c, bits) for c in codes),
            ]
        )
    return _table(["format", "trap", "block (rest 0)", "E8M0 code", "elements ×2^X", "codes"], rows)


def formats_olive() -> str:
    magnitudes = np.asarray(OLIVE_OUTLIER_MAGNITUDES, dtype=np.float64)
    normal = _finite(get_format("olive4").table[0])
    rows = [
        [
            "normal (INT4)",
            _values(normal),
            f"two's complement; `{_code(OLIVE_VICTIM_CODE, 4)}` is the victim identifier, not −8",
        ],
        [
            "outlier (abfloat E2M1, bias 3)",
            _values(np.concatenate([magnitudes, -magnitudes])),
            "sign-magnitude: code = sign·8 + index",
        ],
        ["victim", "0", f"stored as `{_code(OLIVE_VICTIM_CODE, 4)}`"],
        [
            "scale targets t (s = absmax / t)",
            ", ".join(_number(t) for t in OLIVE_SCALE_TARGETS),
            "searched per group by MSE",
        ],
    ]
    return _table(["part", "values (integer units)", "encoding"], rows)


def formats_bits() -> str:
    rows = []
    weight = torch.linspace(-1.0, 1.0, BITS_TABLE_K).reshape(1, BITS_TABLE_K)
    for name in FORMAT_NAMES:
        fmt = get_format(name)
        int8 = quantize(weight, name, scale_bits=8)
        fp16 = quantize(weight, name, scale_bits=None)
        zero_bits = fmt.bits if int8.zeros is not None else 0
        if fmt.family == "mx":
            fp16_column = f"{_number(fp16.bits_per_weight)} (E8M0 scale)"
            int8_column = "same (no second level)"
        else:
            fp16_column = _number(fp16.bits_per_weight)
            int8_column = _number(int8.bits_per_weight)
        rows.append(
            [
                f"`{name}`",
                fmt.bits,
                int8.group_size,
                fmt.index_bits,
                zero_bits,
                fp16_column,
                int8_column,
            ]
        )
    return _table(
        [
            "format",
            "b",
            "G",
            "i",
            "z",
            "FP16 group scales",
            f"INT8 group scales + FP16 channel scale, K = {BITS_TABLE_K}",
        ],
        rows,
    )


def formats_terms() -> str:
    rows = []
    for name in FORMAT_NAMES:
        fmt = get_format(name)
        decoder = "Booth" if encoding(fmt) == "booth" else "LOD"
        rows.append([f"`{name}`", decoder, num_terms(fmt), "yes" if fmt.accelerated else "no"])
    return _table(["format", "decoder", "terms = cycles per 4-MAC step", "runs on the PE"], rows)


# --------------------------------------------------------------------------------------------
# docs/hardware.md
# --------------------------------------------------------------------------------------------

_CONFIG_MEANING = {
    "rows": "PE rows of a tile (tokens per array pass)",
    "cols": "PE columns of a tile (output channels per tile)",
    "tiles": "tiles; all columns of all tiles form one column block of `cols·tiles` channels",
    "freq_hz": "clock",
    "act_buffer_bytes": "activation buffer",
    "weight_buffer_bytes": "weight buffer",
    "act_buffer_banks": "banks of the activation buffer (must divide its size)",
    "weight_buffer_banks": "banks of the weight buffer (must divide its size)",
    "dram_bytes_per_cycle": "DRAM bandwidth `B`",
    "max_block_rows": "rows of partial sums a column accumulator holds (largest `MR`)",
    "row_groups": "most tile groups a `mac` splits its row passes over when its weight block "
    "leaves tiles idle (a power of two; 1: off)",
    "energy": "`EnergyTable` (below)",
    "area": "`AreaTable` (below)",
}


def hardware_config() -> str:
    cfg = HardwareConfig()
    rows = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name in ("energy", "area"):
            shown = "…"
        elif isinstance(value, float) and value >= 1e6:
            shown = f"{value:.0e}".replace("e+0", "e").replace("e+", "e")
        else:
            shown = _number(value)
        rows.append([f"`{f.name}`", shown, _CONFIG_MEANING[f.name]])
    return _table(["field", "default", "meaning"], rows)


def hardware_table_x() -> str:
    rows = [
        [
            "FP16 baseline",
            "PE array",
            _number(hwconfig.TABLE_X_FP16_TILE_AREA_UM2),
            _number(hwconfig.TABLE_X_FP16_TILE_POWER_MW),
            hwconfig.TABLE_X_FP16_TILE_PES,
        ],
        [
            "BitMoD",
            "PE array",
            _number(hwconfig.TABLE_X_BITMOD_TILE_AREA_UM2),
            _number(hwconfig.TABLE_X_BITMOD_TILE_POWER_MW),
            hwconfig.TABLE_X_BITMOD_TILE_PES,
        ],
        [
            "BitMoD",
            "term encoder",
            _number(hwconfig.TABLE_X_ENCODER_AREA_UM2),
            _number(hwconfig.TABLE_X_ENCODER_POWER_MW),
            "–",
        ],
    ]
    return _table(["design", "part", "area per tile (µm²)", "power (mW, 1 GHz)", "PEs"], rows)


def hardware_per_pe() -> str:
    energy, area = EnergyTable(), AreaTable()
    rows = [
        [
            f"`{kind}`",
            f"{area.pe(kind):,.1f}",
            f"{energy.pe(kind):.3f}",
            area.source(f"pe_area_um2.{kind}"),
            energy.source(f"pe_pj_per_cycle.{kind}"),
        ]
        for kind in PE_KINDS
    ]
    return _table(["PE kind", "area (µm²)", "pJ / cycle", "area source", "energy source"], rows)


def hardware_other_constants() -> str:
    energy, area = EnergyTable(), AreaTable()
    rows = [
        [
            "`encoder_area_um2`",
            _number(area.encoder_area_um2),
            "µm² per tile",
            AREA_SOURCES["encoder_area_um2"],
        ],
    ]
    units = {
        "encoder_pj_per_tile_cycle": "pJ per tile per MAC cycle",
        "sram_read_pj_per_byte": "pJ per byte",
        "sram_write_pj_per_byte": "pJ per byte",
        "dram_pj_per_bit": "pJ per bit",
    }
    for name, unit in units.items():
        rows.append([f"`{name}`", f"{getattr(energy, name):g}", unit, ENERGY_SOURCES[name]])
    return _table(["constant", "value", "unit", "source"], rows)


def hardware_iso_area() -> str:
    cfg = HardwareConfig()
    rows = []
    for kind in PE_KINDS:
        count = cfg.iso_area_pe_count(kind)
        rows.append(
            [
                f"`{kind}`",
                f"{cfg.area.pe(kind):,.1f}",
                f"{count:,}",
                count // cfg.rows,
                f"{count * cfg.area.pe(kind) / cfg.compute_area_um2:.1%}",
            ]
        )
    return _table(["PE kind", "µm² / PE", "PEs", "columns of 8", "of the budget"], rows)


# --------------------------------------------------------------------------------------------
# docs/perf-model.md
# --------------------------------------------------------------------------------------------


def perf_precisions() -> str:
    shapes = load_llm_shapes()
    rows = [
        [shapes[m].display, f"`{m}`", _number(ANT_WEIGHT_BITS[m]), _number(OLIVE_WEIGHT_BITS[m])]
        for m in ANT_WEIGHT_BITS
    ]
    return _table(["model", "key", "ANT bits/weight", "OliVe bits/weight"], rows)


def perf_accelerators() -> str:
    cfg = HardwareConfig()
    model = "llama-2-7b"
    rows = []
    for name in ACCELERATORS:
        by_task = {task: accelerator(name, model, task) for task in TASKS}
        acc = by_task[TASKS[0]]
        labels = " / ".join(dict.fromkeys(by_task[t].weight.label for t in TASKS))
        if name in ("ant", "olive"):
            labels = f"per model (table below); {load_llm_shapes()[model].display}: {labels}"
        weight, kv = acc.weight, acc.kv
        rows.append(
            [
                f"`{name}`",
                f"`{acc.pe_kind}`",
                f"{cfg.iso_area_pe_count(acc.pe_kind):,}",
                labels,
                weight.macs_per_step,
                "terms" if weight.fmt and acc.pe_kind == "bitmod" else weight.step_cycles,
                weight.timing(cfg.rows).tail_cycles,
                kv.label,
                "yes" if acc.has_encoder else "no",
            ]
        )
    return _table(
        [
            "accelerator",
            "PE kind",
            "PEs",
            "weights (discriminative / generative)",
            "d",
            "t",
            "tail",
            "K/V",
            "encoder",
        ],
        rows,
    )


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------

RENDERERS: dict[str, Callable[[], str]] = {
    "formats-grids": formats_grids,
    "formats-extended": formats_extended,
    "formats-mixtures": formats_mixtures,
    "formats-mx-elements": formats_mx_elements,
    "formats-mx-grids": formats_mx_grids,
    "formats-mx-traps": formats_mx_traps,
    "formats-olive": formats_olive,
    "formats-bits": formats_bits,
    "formats-terms": formats_terms,
    "hardware-config": hardware_config,
    "hardware-table-x": hardware_table_x,
    "hardware-per-pe": hardware_per_pe,
    "hardware-other-constants": hardware_other_constants,
    "hardware-iso-area": hardware_iso_area,
    "perf-precisions": perf_precisions,
    "perf-accelerators": perf_accelerators,
}

PAGES = ("formats.md", "hardware.md", "perf-model.md")


def render_page(text: str, page: str) -> str:
    """``text`` with every generated table re-rendered; ValueError for an unknown name."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(2)
        if name not in RENDERERS:
            raise ValueError(f"docs/{page}: unknown generated table {name!r}")
        return match.group(1) + RENDERERS[name]() + match.group(4)

    return _BLOCK.sub(replace, text)


def stale_tables() -> list[str]:
    """``page: table`` of every generated table whose text differs from the code's."""
    stale = []
    for page in PAGES:
        text = (DOCS / page).read_text()
        for match in _BLOCK.finditer(text):
            name = match.group(2)
            if name not in RENDERERS or RENDERERS[name]() != match.group(3):
                stale.append(f"docs/{page}: {name}")
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report stale tables")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_tables()
        for entry in stale:
            print(f"stale generated table: {entry} (run python docs/tables.py)", file=sys.stderr)
        return 1 if stale else 0
    for page in PAGES:
        path = DOCS / page
        text = path.read_text()
        path.write_text(render_page(text, page))
    return 0


if __name__ == "__main__":
    sys.exit(main())
