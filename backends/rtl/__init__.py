"""The BitMoD accelerator in SystemVerilog: the library, its generated packages, the emitter
(``--emit=verilog``), co-simulation against the emulator and the area flow (docs/rtl.md)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["LIBRARY_DIR", "library_files"]

#: The hand-written SystemVerilog library (package data).
LIBRARY_DIR = Path(__file__).with_name("lib")
#: Compilation order, dependencies first (Yosys needs a package read before its users).
_LIBRARY_ORDER = (
    "bitmod_arith_pkg.sv",
    "bitmod_term.sv",
    "bitmod_pe.sv",
    "bitmod_column.sv",
    "bitmod_tile.sv",
    "bitmod_engine.sv",
    "bitmod_pe_engine.sv",
    "bitmod_drain_engine.sv",
    "bitmod_controller.sv",
    "bitmod_accel.sv",
)


def library_files() -> list[Path]:
    """The library's source files, in compilation order (dependencies first)."""
    return [LIBRARY_DIR / name for name in _LIBRARY_ORDER]
