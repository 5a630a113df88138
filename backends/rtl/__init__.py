"""The BitMoD accelerator in SystemVerilog: the library, its generated packages, the emitter
(``--emit=verilog``), co-simulation against the emulator and the area flow (docs/rtl.md)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["LIBRARY_DIR", "library_files"]

#: The hand-written SystemVerilog library (package data).
LIBRARY_DIR = Path(__file__).with_name("lib")


def library_files() -> list[Path]:
    """The library's source files, in compilation order (dependencies first)."""
    return sorted(LIBRARY_DIR.glob("*.sv"))
