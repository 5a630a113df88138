"""Hardware configuration of the BitMoD accelerator and its comparison points.

One frozen :class:`HardwareConfig` describes the machine that both the instruction-level
emulator (:mod:`bitmod.runtime.emulator.machine`) and the analytical cycle/energy model
(:mod:`bitmod.runtime.perf.model`) run against: array geometry, clock, on-chip buffers, DRAM
bandwidth, and two tables of constants, :class:`EnergyTable` and :class:`AreaTable`, each
constant carrying its source in :data:`ENERGY_SOURCES` / :data:`AREA_SOURCES`. The defaults,
paper Table X and how its FP16 PE count was recovered, the iso-area rule and the energy table:
docs/hardware.md.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from bitmod.runtime.arch.rules import accumulator_depth_error, mac_sweeps, row_group_error

#: MACs a BitMoD PE performs per cycle (its 4 lanes: one 4-element K step of a dot product).
LANES = 4

#: PE kinds known to the tables, in the order the reports list them.
PE_KINDS: tuple[str, ...] = ("fp16", "bitmod", "ant", "olive", "mixpe")

# ---------------------------------------------------------------------------------------
# Paper Table X (28 nm, 1 GHz). 1 mW at 1 GHz is 1 pJ per cycle.
# ---------------------------------------------------------------------------------------
TABLE_X_FP16_TILE_AREA_UM2 = 95_498.0
TABLE_X_FP16_TILE_POWER_MW = 36.96
TABLE_X_FP16_TILE_PES = 48  # recovered: docs/hardware.md
TABLE_X_BITMOD_TILE_AREA_UM2 = 97_090.0
TABLE_X_BITMOD_TILE_POWER_MW = 37.5
TABLE_X_BITMOD_TILE_PES = 64  # one 8×8 tile
TABLE_X_ENCODER_AREA_UM2 = 2_419.0
TABLE_X_ENCODER_POWER_MW = 1.86

_TABLE_X_FREQ_HZ = 1e9


def _pj_per_cycle(power_mw: float, freq_hz: float = _TABLE_X_FREQ_HZ) -> float:
    """Energy per cycle in pJ of a block drawing ``power_mw`` at ``freq_hz``: P / f."""
    return power_mw * 1e-3 / freq_hz * 1e12


def _frozen(mapping: Mapping[str, float]) -> Mapping[str, float]:
    return MappingProxyType(dict(mapping))


# The BitMoD authors' public simulator (abdelfattah-lab/BitMoD-HPCA-25, bitmod_sim/test_ant.py,
# test_olive.py): their FP16-activation re-implementations of the ANT and OliVe PEs.
_ANT_PE_AREA_UM2 = 1_318.6
_ANT_PE_PJ = 0.56
_OLIVE_PE_PJ = 0.613

_DEFAULT_PE_AREA_UM2: dict[str, float] = {
    "fp16": TABLE_X_FP16_TILE_AREA_UM2 / TABLE_X_FP16_TILE_PES,  # 1,989.5
    "bitmod": TABLE_X_BITMOD_TILE_AREA_UM2 / TABLE_X_BITMOD_TILE_PES,  # 1,517.0
    "ant": _ANT_PE_AREA_UM2,
    "olive": _ANT_PE_AREA_UM2 * _OLIVE_PE_PJ / _ANT_PE_PJ,  # 1,443.4
    "mixpe": _ANT_PE_AREA_UM2,
}

_DEFAULT_PE_PJ: dict[str, float] = {
    "fp16": _pj_per_cycle(TABLE_X_FP16_TILE_POWER_MW) / TABLE_X_FP16_TILE_PES,  # 0.770
    "bitmod": _pj_per_cycle(TABLE_X_BITMOD_TILE_POWER_MW) / TABLE_X_BITMOD_TILE_PES,  # 0.586
    "ant": _ANT_PE_PJ,
    "olive": _OLIVE_PE_PJ,
    "mixpe": _ANT_PE_PJ,
}

#: Where each constant comes from (keys: ``pe_area_um2.<kind>``, ``pe_pj_per_cycle.<kind>``,
#: and the scalar field names of the two tables).
AREA_SOURCES: Mapping[str, str] = MappingProxyType(
    {
        "pe_area_um2.fp16": "paper Table X: 95,498 um^2 per FP16 tile / 48 PEs",
        "pe_area_um2.bitmod": "paper Table X: 97,090 um^2 per BitMoD tile / 64 PEs",
        "pe_area_um2.ant": (
            "BitMoD authors' public simulator (abdelfattah-lab/BitMoD-HPCA-25, "
            "bitmod_sim/test_ant.py): ANT PE with FP16 activations, 28 nm synthesis"
        ),
        "pe_area_um2.olive": (
            "estimate: ANT PE area x 0.613/0.56 (OliVe / ANT PE energy in the authors' "
            "simulator, which lists the same 1,318.6 um^2 for both). OliVe also decodes "
            "outliers (abfloat, much wider exponent range), so its aligner and accumulator "
            "are wider; paper V-C: 'OliVe requires more complicated PEs with significant "
            "hardware overhead'. We assume area grows like switched energy"
        ),
        "pe_area_um2.mixpe": (
            "assumption: same as the ANT PE (an FP16-activation x <=8-bit integer weight "
            "MAC, one per cycle); MixPE (Zhang et al., 2024) gives no 28 nm figure we could use"
        ),
        "encoder_area_um2": "paper Table X: bit-serial term encoder, 2,419 um^2 per tile",
    }
)

ENERGY_SOURCES: Mapping[str, str] = MappingProxyType(
    {
        "pe_pj_per_cycle.fp16": "paper Table X: 36.96 mW / 48 PEs at 1 GHz",
        "pe_pj_per_cycle.bitmod": "paper Table X: 37.5 mW / 64 PEs at 1 GHz",
        "pe_pj_per_cycle.ant": "BitMoD authors' public simulator, bitmod_sim/test_ant.py",
        "pe_pj_per_cycle.olive": "BitMoD authors' public simulator, bitmod_sim/test_olive.py",
        "pe_pj_per_cycle.mixpe": "assumption: same as the ANT PE (see pe_area_um2.mixpe)",
        "encoder_pj_per_tile_cycle": "paper Table X: term encoder 1.86 mW per tile at 1 GHz",
        "sram_read_pj_per_byte": (
            "estimate for a 512 KB, 8-bank (64 KB/bank) SRAM at 28 nm: Horowitz ISSCC'14 "
            "45 nm 64-bit reads (8 KB: 10 pJ, 32 KB: 20 pJ, 1 MB: 100 pJ) interpolated "
            "to a 64 KB bank (~30 pJ) and scaled by ~0.5 to 28 nm -> ~15 pJ / 8 B. "
            "The paper used CACTI 7, which is not available here"
        ),
        "sram_write_pj_per_byte": "as the read figure, writes ~10 % dearer (CACTI-like)",
        "dram_pj_per_bit": (
            "DDR4 read/write energy incl. I/O: 1,200 pJ per 64-bit burst beat = 18.75 "
            "pJ/bit, the DRAMsim3-derived figure of the BitMoD authors' simulator "
            "(bitmod_sim/accelerator.py)"
        ),
    }
)


@dataclass(frozen=True)
class EnergyTable:
    """Energy constants (pJ). Every value is overridable with :func:`dataclasses.replace`.

    ``pe_pj_per_cycle[kind]`` is the energy of one PE of that kind for one active cycle
    (paper Table X powers divided by PE count and frequency); the bit-serial term encoder
    is charged per tile per active cycle. SRAM figures are per byte moved, DRAM per bit.
    """

    pe_pj_per_cycle: Mapping[str, float] = field(default_factory=lambda: _frozen(_DEFAULT_PE_PJ))
    encoder_pj_per_tile_cycle: float = _pj_per_cycle(TABLE_X_ENCODER_POWER_MW)
    sram_read_pj_per_byte: float = 1.9
    sram_write_pj_per_byte: float = 2.1
    dram_pj_per_bit: float = 18.75

    def __post_init__(self) -> None:
        object.__setattr__(self, "pe_pj_per_cycle", _frozen(self.pe_pj_per_cycle))
        _check_kind_table("EnergyTable.pe_pj_per_cycle", self.pe_pj_per_cycle)
        for name in (
            "encoder_pj_per_tile_cycle",
            "sram_read_pj_per_byte",
            "sram_write_pj_per_byte",
            "dram_pj_per_bit",
        ):
            _check_nonnegative(f"EnergyTable.{name}", getattr(self, name))

    def __hash__(self) -> int:
        return hash(
            (
                tuple(sorted(self.pe_pj_per_cycle.items())),
                self.encoder_pj_per_tile_cycle,
                self.sram_read_pj_per_byte,
                self.sram_write_pj_per_byte,
                self.dram_pj_per_bit,
            )
        )

    def pe(self, kind: str) -> float:
        """pJ per active cycle of one PE of ``kind``."""
        return _lookup("EnergyTable.pe_pj_per_cycle", self.pe_pj_per_cycle, kind)

    def source(self, key: str) -> str:
        """Source of constant ``key``, e.g. ``"dram_pj_per_bit"``, ``"pe_pj_per_cycle.ant"``."""
        return _lookup("ENERGY_SOURCES", ENERGY_SOURCES, key)


@dataclass(frozen=True)
class AreaTable:
    """Area constants (µm², 28 nm). ``pe_area_um2[kind]`` is one PE without the encoder."""

    pe_area_um2: Mapping[str, float] = field(default_factory=lambda: _frozen(_DEFAULT_PE_AREA_UM2))
    encoder_area_um2: float = TABLE_X_ENCODER_AREA_UM2

    def __post_init__(self) -> None:
        object.__setattr__(self, "pe_area_um2", _frozen(self.pe_area_um2))
        _check_kind_table("AreaTable.pe_area_um2", self.pe_area_um2, strictly_positive=True)
        _check_nonnegative("AreaTable.encoder_area_um2", self.encoder_area_um2)

    def __hash__(self) -> int:
        return hash((tuple(sorted(self.pe_area_um2.items())), self.encoder_area_um2))

    def pe(self, kind: str) -> float:
        """µm² of one PE of ``kind``."""
        return _lookup("AreaTable.pe_area_um2", self.pe_area_um2, kind)

    def source(self, key: str) -> str:
        return _lookup("AREA_SOURCES", AREA_SOURCES, key)


@dataclass(frozen=True)
class HardwareConfig:
    """The accelerator: ``tiles`` tiles of ``rows × cols`` output-stationary PEs.

    Defaults are the paper's evaluated BitMoD design (Section V-A / V-C); docs/hardware.md
    derives ``tiles``, ``dram_bytes_per_cycle`` and ``max_block_rows``.
    """

    rows: int = 8
    cols: int = 8
    tiles: int = 16
    freq_hz: float = 1e9
    act_buffer_bytes: int = 512 * 1024
    weight_buffer_bytes: int = 512 * 1024
    act_buffer_banks: int = 8
    weight_buffer_banks: int = 8
    dram_bytes_per_cycle: float = 25.6
    max_block_rows: int = 128
    #: Tile groups a mac may split its row passes over when its weight block leaves tiles idle
    #: (a power of two: the activation row sets the buffer delivers per fetch; 1 turns it off;
    #: ``runtime.arch.rules.row_groups``, docs/rtl.md "The PE engine").
    row_groups: int = 4
    energy: EnergyTable = field(default_factory=EnergyTable)
    area: AreaTable = field(default_factory=AreaTable)

    def __post_init__(self) -> None:
        for name in (
            "rows",
            "cols",
            "tiles",
            "act_buffer_bytes",
            "weight_buffer_bytes",
            "act_buffer_banks",
            "weight_buffer_banks",
            "max_block_rows",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"HardwareConfig.{name} must be a positive int, got {value!r}")
        problem = row_group_error(self.row_groups)
        if problem:
            raise ValueError(f"HardwareConfig.row_groups: {problem}")
        problem = accumulator_depth_error(self.max_block_rows, self.rows)
        if problem:
            raise ValueError(f"HardwareConfig.max_block_rows: {problem}")
        for name in ("freq_hz", "dram_bytes_per_cycle"):
            value = getattr(self, name)
            if not _is_positive_finite(value):
                raise ValueError(f"HardwareConfig.{name} must be a positive number, got {value!r}")
        for name, bytes_, banks in (
            ("act_buffer", self.act_buffer_bytes, self.act_buffer_banks),
            ("weight_buffer", self.weight_buffer_bytes, self.weight_buffer_banks),
        ):
            if bytes_ % banks:
                raise ValueError(
                    f"HardwareConfig.{name}_bytes ({bytes_}) must split evenly into "
                    f"{name}_banks ({banks})"
                )
        from bitmod.runtime.arch.timing import dram_fraction

        try:
            dram_fraction(self.dram_bytes_per_cycle)
        except ValueError as error:
            raise ValueError(f"HardwareConfig.dram_bytes_per_cycle: {error}") from None
        if not isinstance(self.energy, EnergyTable):
            raise ValueError("HardwareConfig.energy must be an EnergyTable")
        if not isinstance(self.area, AreaTable):
            raise ValueError("HardwareConfig.area must be an AreaTable")

    # -- geometry ------------------------------------------------------------------------
    @property
    def pes_per_tile(self) -> int:
        return self.rows * self.cols

    @property
    def total_pes(self) -> int:
        return self.pes_per_tile * self.tiles

    def mac_sweeps(self, rows: int, channels: int) -> int:
        """Sweeps of a ``mac`` over its K range for ``rows`` activation rows and a weight
        block of ``channels`` valid channels: ``⌈⌈rows/ROWS⌉ / S⌉`` (``rules.row_groups``)."""
        passes = -(-rows // self.rows)
        return int(mac_sweeps(passes, channels, self.cols, self.tiles, self.row_groups))

    # -- memory --------------------------------------------------------------------------
    @property
    def dram_gbps(self) -> float:
        """DRAM bandwidth in GB/s (10⁹ bytes per second)."""
        return self.dram_bytes_per_cycle * self.freq_hz / 1e9

    def with_dram_gbps(self, gbps: float) -> HardwareConfig:
        """A copy whose DRAM delivers ``gbps`` GB/s at this clock."""
        if not _is_positive_finite(gbps):
            raise ValueError(f"DRAM bandwidth must be a positive number of GB/s, got {gbps!r}")
        return dataclasses.replace(self, dram_bytes_per_cycle=gbps * 1e9 / self.freq_hz)

    # -- area ----------------------------------------------------------------------------
    @property
    def bitmod_tile_area_um2(self) -> float:
        """One BitMoD tile: its rows·cols PEs plus the term encoder (Table X "Total")."""
        return self.pes_per_tile * self.area.pe("bitmod") + self.area.encoder_area_um2

    @property
    def compute_area_um2(self) -> float:
        """The iso-area budget: the area of this config's BitMoD PE array with encoders."""
        return self.tiles * self.bitmod_tile_area_um2

    def iso_area_pe_count(self, kind: str) -> int:
        """PEs of ``kind`` that fit in :attr:`compute_area_um2`, in whole columns of ``rows``.

        ``n = rows · floor(budget / (rows · area(kind)))``. For ``"bitmod"`` this is the
        configured array itself (its encoder is part of the budget).
        """
        if kind == "bitmod":
            return self.total_pes
        per_column = self.rows * self.area.pe(kind)
        return self.rows * math.floor(self.compute_area_um2 / per_column + 1e-9)


def _is_positive_finite(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _check_nonnegative(name: str, value: Any) -> None:
    if not (isinstance(value, int | float) and not isinstance(value, bool)) or not (
        math.isfinite(value) and value >= 0
    ):
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")


def _check_kind_table(
    name: str, table: Mapping[str, float], strictly_positive: bool = False
) -> None:
    missing = [kind for kind in PE_KINDS if kind not in table]
    if missing:
        raise ValueError(f"{name} lacks PE kinds {missing} (needs all of {list(PE_KINDS)})")
    for kind, value in table.items():
        _check_nonnegative(f"{name}[{kind!r}]", value)
        if strictly_positive and value == 0:
            raise ValueError(f"{name}[{kind!r}] must be > 0")


def _lookup(name: str, table: Mapping[str, Any], key: str) -> Any:
    try:
        return table[key]
    except KeyError:
        raise ValueError(f"{name} has no entry {key!r}; valid: {sorted(table)}") from None
