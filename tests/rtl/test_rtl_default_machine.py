"""The default machine (sixteen tiles of 8x8, 512 KiB buffers) in CI: its emitted design
elaborates in Verilator (``verilator --lint-only``: every module at the machine's parameters),
without the minutes a build and a run of it take (bench/rtl_speed.py and bench/rtl_cosim.py
co-simulate it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from bitmod.backends.rtl.cosim import CosimError, lint
from bitmod.backends.rtl.emit import emit_design
from bitmod.backends.rtl.sim import simulator_available
from bitmod.runtime.arch.hwconfig import HardwareConfig
from bitmod.runtime.arch.nest import matmul_program
from bitmod.runtime.formats import get_format, quantize

pytestmark = pytest.mark.skipif(
    not simulator_available("verilator"), reason="Verilator is not installed"
)


def _default_design(directory: Path) -> Path:
    config = HardwareConfig()
    generator = torch.Generator().manual_seed(3)
    q = quantize(torch.randn(136, 128, generator=generator), "bitmod3", group_size=128)
    x = torch.randn(9, 128, generator=generator).to(torch.float16).numpy()
    program = matmul_program(
        act="x",
        weight="w",
        out="y",
        m=9,
        n=136,
        k=128,
        fmt="bitmod3",
        group_size=128,
        special_values=get_format("bitmod3").special_values,
        config=config,
    )
    emit_design(program, {"x": x, "w": q}, directory, config)
    return directory


def test_the_default_machine_elaborates(tmp_path: Path) -> None:
    design = _default_design(tmp_path / "design")
    meta = json.loads((design / "design.json").read_text())
    default = HardwareConfig()
    assert (meta["config"]["rows"], meta["config"]["cols"], meta["config"]["tiles"]) == (
        default.rows,
        default.cols,
        default.tiles,
    )
    package = (design / "rtl" / "bitmod_cfg_pkg.sv").read_text()
    assert f"localparam int TILES = {default.tiles};" in package
    assert f"localparam int ROW_GROUPS = {default.row_groups};" in package
    assert meta["config"]["row_groups"] == default.row_groups
    lint(design)


def test_a_design_that_does_not_elaborate_is_an_error(tmp_path: Path) -> None:
    design = _default_design(tmp_path / "design")
    tile = design / "rtl" / "bitmod_tile.sv"
    tile.write_text(tile.read_text().replace("bitmod_arith_pkg::pe_next(", "no_such_function("))
    with pytest.raises(CosimError, match="no_such_function"):
        lint(design)
