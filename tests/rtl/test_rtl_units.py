"""The datapath library, unit by unit, in cocotb benches on Icarus (tests/rtl/cocotb_*.py).

Each test builds one bench (a library module or a thin wrapper in tests/rtl/benches) and runs
its cocotb module; the expected values come from the Python models they are checked against
(runtime/formats/bitserial, runtime/emulator/pe.py, runtime/emulator/reference_pe.py, numpy).
``BITMOD_RTL_VECTORS`` sets the random vectors per format of the PE bench (CI default 2,000;
the acceptance run, ``BITMOD_RTL_VECTORS=10000 python -m pytest tests/rtl/test_rtl_units.py``,
is recorded in BENCHMARKS.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bitmod.backends.rtl.sim import run_cocotb, simulator_available

HERE = Path(__file__).parent
BENCHES = HERE / "benches"

pytestmark = pytest.mark.skipif(
    not simulator_available("icarus"), reason="Icarus Verilog (iverilog) is not installed"
)


def _run(tmp_path: Path, top: str, module: str, bench: str | None = None, **kwargs) -> None:
    extra = [BENCHES / bench] if bench else []
    run_cocotb(
        top=top,
        test_module=module,
        test_dir=HERE,
        build_dir=tmp_path / top,
        extra_sources=extra,
        **kwargs,
    )


def test_term_encoder_exhaustive(tmp_path: Path) -> None:
    _run(tmp_path, "term_encoder_tb", "cocotb_term_encoder", "term_encoder_tb.sv")


def test_pe_step_lane_vectors(tmp_path: Path) -> None:
    _run(
        tmp_path,
        "pe_step_tb",
        "cocotb_pe",
        "pe_step_tb.sv",
        testcase="step_matches_the_scalar_reference",
    )


def test_pe_groups_and_dequantizer(tmp_path: Path) -> None:
    _run(
        tmp_path,
        "pe_tb",
        "cocotb_pe",
        "pe_tb.sv",
        testcase="groups_accumulate_and_dequantize_exactly",
    )


def test_rounding_units(tmp_path: Path) -> None:
    _run(tmp_path, "fp_units_tb", "cocotb_fp_units", "fp_units_tb.sv")


def test_tile_runs_whole_macs(tmp_path: Path) -> None:
    _run(
        tmp_path,
        "bitmod_tile",
        "cocotb_tile",
        parameters={"ROWS": 2, "COLS": 3, "MAX_ROWS": 4},
        env={"BITMOD_TILE_ROWS": "2", "BITMOD_TILE_COLS": "3"},
    )


def test_comparison_pes_of_the_area_flow(tmp_path: Path) -> None:
    from bitmod.backends.rtl.area import BASELINES

    run_cocotb(
        top="baselines_tb",
        test_module="cocotb_baselines",
        test_dir=HERE,
        build_dir=tmp_path / "baselines_tb",
        extra_sources=[BASELINES, BENCHES / "baselines_tb.sv"],
    )
