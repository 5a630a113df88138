"""HardwareConfig, EnergyTable, AreaTable: paper Table X figures, iso-area counts, validation."""

from __future__ import annotations

import dataclasses
import math

import pytest
from bitmod.runtime.arch.hwconfig import (
    AREA_SOURCES,
    ENERGY_SOURCES,
    PE_KINDS,
    AreaTable,
    EnergyTable,
    HardwareConfig,
)


def test_defaults_are_the_papers_design() -> None:
    cfg = HardwareConfig()
    assert (cfg.rows, cfg.cols, cfg.tiles) == (8, 8, 16)
    assert cfg.total_pes == 1024
    assert cfg.freq_hz == 1e9
    assert cfg.act_buffer_bytes == cfg.weight_buffer_bytes == 512 * 1024
    # DDR4-3200, 64 data bits: 3.2e9 transfers/s * 8 B = 25.6 GB/s = 25.6 B/cycle at 1 GHz.
    assert cfg.dram_bytes_per_cycle == pytest.approx(3.2e9 * 8 / 1e9)
    assert cfg.dram_gbps == pytest.approx(25.6)


def test_table_x_per_pe_figures() -> None:
    """Per-PE numbers are Table X tile figures divided by 48 (FP16) / 64 (BitMoD) PEs."""
    energy, area = EnergyTable(), AreaTable()
    assert energy.pe("fp16") == pytest.approx(36.96 / 48)  # mW at 1 GHz = pJ/cycle
    assert energy.pe("fp16") == pytest.approx(0.77)
    assert energy.pe("bitmod") == pytest.approx(37.5 / 64)
    assert energy.encoder_pj_per_tile_cycle == pytest.approx(1.86)
    assert area.pe("fp16") * 48 == pytest.approx(95_498)
    assert area.pe("bitmod") * 64 == pytest.approx(97_090)
    assert area.encoder_area_um2 == 2_419
    # BitMoD tile with its encoder: Table X "Total" column.
    assert HardwareConfig().bitmod_tile_area_um2 == pytest.approx(99_509)


def test_iso_area_pe_counts_from_the_area_table() -> None:
    cfg = HardwareConfig()
    budget = 16 * (97_090 + 2_419)
    assert cfg.compute_area_um2 == pytest.approx(budget)
    for kind in PE_KINDS:
        count = cfg.iso_area_pe_count(kind)
        if kind == "bitmod":
            assert count == 1024
            continue
        per_pe = cfg.area.pe(kind)
        assert count % 8 == 0
        assert count * per_pe <= budget  # fits ...
        assert (count + 8) * per_pe > budget  # ... and one more column would not
    # Hand-computed: floor(1,592,144 / (8 * 1,989.54)) = 100 columns -> 800 FP16 PEs;
    # floor(1,592,144 / (8 * 1,318.6)) = 150 columns -> 1,200 ANT PEs.
    assert cfg.iso_area_pe_count("fp16") == 800
    assert cfg.iso_area_pe_count("ant") == 1200


def test_iso_area_follows_overridden_areas_and_tiles() -> None:
    area = dataclasses.replace(
        AreaTable(), pe_area_um2={**AreaTable().pe_area_um2, "fp16": 1_000.0}
    )
    cfg = HardwareConfig(tiles=2, area=area)
    budget = 2 * (64 * 97_090 / 64 + 2_419)
    assert cfg.iso_area_pe_count("fp16") == 8 * math.floor(budget / 8_000)


def test_every_constant_has_a_source() -> None:
    for kind in PE_KINDS:
        assert ENERGY_SOURCES[f"pe_pj_per_cycle.{kind}"]
        assert AREA_SOURCES[f"pe_area_um2.{kind}"]
    for field in dataclasses.fields(EnergyTable):
        if field.name != "pe_pj_per_cycle":
            assert EnergyTable().source(field.name)
    assert AreaTable().source("encoder_area_um2")


def test_overrides_and_hashing() -> None:
    energy = dataclasses.replace(EnergyTable(), dram_pj_per_bit=10.0)
    cfg = dataclasses.replace(HardwareConfig(), energy=energy)
    assert cfg.energy.dram_pj_per_bit == 10.0
    assert HardwareConfig() == HardwareConfig()
    assert hash(HardwareConfig()) == hash(HardwareConfig())
    assert cfg != HardwareConfig()
    assert HardwareConfig().with_dram_gbps(32).dram_bytes_per_cycle == pytest.approx(32.0)
    assert HardwareConfig(freq_hz=2e9).with_dram_gbps(32).dram_bytes_per_cycle == 16.0


def test_energy_table_is_immutable() -> None:
    table = EnergyTable()
    with pytest.raises(TypeError):
        table.pe_pj_per_cycle["fp16"] = 1.0  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        table.dram_pj_per_bit = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tiles": 0}, "HardwareConfig.tiles"),
        ({"rows": 2.5}, "HardwareConfig.rows"),
        ({"dram_bytes_per_cycle": -1.0}, "HardwareConfig.dram_bytes_per_cycle"),
        ({"freq_hz": float("nan")}, "HardwareConfig.freq_hz"),
        ({"act_buffer_banks": 3}, "act_buffer_bytes"),
    ],
)
def test_bad_config_names_the_field(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HardwareConfig(**kwargs)


def test_bad_tables_name_the_entry() -> None:
    with pytest.raises(ValueError, match="lacks PE kinds"):
        EnergyTable(pe_pj_per_cycle={"fp16": 1.0})
    with pytest.raises(ValueError, match=r"sram_read_pj_per_byte"):
        EnergyTable(sram_read_pj_per_byte=-1.0)
    with pytest.raises(ValueError, match="must be > 0"):
        AreaTable(pe_area_um2={**AreaTable().pe_area_um2, "ant": 0.0})
    with pytest.raises(ValueError, match="no entry 'tpu'"):
        EnergyTable().pe("tpu")
    with pytest.raises(ValueError, match="GB/s"):
        HardwareConfig().with_dram_gbps(0)
