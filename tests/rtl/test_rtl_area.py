"""The Yosys area flow (bitmod.backends.rtl.area) counts what the RTL declares."""

from __future__ import annotations

import pytest
from bitmod.backends.rtl import LIBRARY_DIR, library_files
from bitmod.backends.rtl.area import BASELINES, AreaError, synthesize, yosys_available

pytestmark = pytest.mark.skipif(not yosys_available(), reason="yosys/yosys-abc not installed")


def test_flip_flops_are_the_declared_registers() -> None:
    # the FIGNA-like PE holds only its 40-bit accumulator; legalized flip-flops are 1 bit each
    block = synthesize("figna_pe", extra_sources=[BASELINES])
    assert block.flip_flops == 40
    assert block.transistors > 0
    assert block.nand2 == block.transistors / 4
    # the combinational aligner has none
    assert synthesize("figna_align", extra_sources=[BASELINES]).flip_flops == 0


def test_unknown_top_is_one_error() -> None:
    with pytest.raises(AreaError, match="yosys failed on no_such_module"):
        synthesize("no_such_module")


def test_the_compilation_order_names_every_library_file() -> None:
    # synthesize reads the whole library in this order (a package after its users fails)
    assert sorted(library_files()) == sorted(LIBRARY_DIR.glob("*.sv"))
    assert library_files()[0].name == "bitmod_arith_pkg.sv"
