"""Gate-level area estimates with Yosys (generic synthesis, no liberty file).

Each block is synthesized flat (``synth -flatten``), its flip-flops legalized to plain positive
edge D flip-flops (``dfflegalize -cell $_DFF_P_ 01``: enables and resets become gates, so the
CMOS estimate counts them) and the logic mapped by ABC to the ``cmos2`` gate set (NAND, NOR,
NOT); ``stat -tech cmos`` then estimates transistors. A NAND2 equivalent is 4 transistors.
These are technology-independent relative sizes, not µm²: compare blocks with each other (the
ratio to the FP16 PE), not with the paper's 28 nm numbers.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bitmod.backends.rtl import LIBRARY_DIR, library_files
from bitmod.backends.rtl.sim import generated_packages

__all__ = ["BASELINES", "AreaError", "BlockArea", "synthesize", "yosys_available"]

#: The comparison PEs (FP16 x FP16 MAC, FIGNA-like FP16 x INT8).
BASELINES = LIBRARY_DIR.parent / "area" / "baseline_pes.sv"
TRANSISTORS_PER_NAND2 = 4


class AreaError(RuntimeError):
    """Yosys failed or printed no statistics."""


@dataclass(frozen=True)
class BlockArea:
    """One synthesized block."""

    top: str
    cells: int
    flip_flops: int
    transistors: int

    @property
    def nand2(self) -> float:
        return self.transistors / TRANSISTORS_PER_NAND2


def yosys_available() -> bool:
    return shutil.which("yosys") is not None and shutil.which("yosys-abc") is not None


def synthesize(
    top: str,
    parameters: Mapping[str, int] | None = None,
    extra_sources: Sequence[Path] = (),
) -> BlockArea:
    """Synthesize ``top`` (a library module, or one of ``extra_sources``) and count it."""
    with tempfile.TemporaryDirectory(prefix="bitmod-area-") as work:
        directory = Path(work)
        sources = [*generated_packages(directory), *library_files(), *map(Path, extra_sources)]
        chparam = "".join(
            f"chparam -set {name} {value} {top}\n" for name, value in (parameters or {}).items()
        )
        script = directory / "area.ys"
        script.write_text(
            f"read_verilog -sv {' '.join(str(s) for s in sources)}\n"
            f"{chparam}"
            f"hierarchy -check -top {top}\n"
            f"synth -flatten -top {top}\n"
            "dfflegalize -cell $_DFF_P_ 01\n"
            "abc -g cmos2\n"
            "opt_clean\n"
            "stat -tech cmos\n"
        )
        log = directory / "yosys.log"
        result = subprocess.run(
            ["yosys", "-q", "-l", str(log), str(script)], capture_output=True, text=True
        )
        text = log.read_text() if log.exists() else ""
        if result.returncode != 0:
            raise AreaError(f"yosys failed on {top}:\n{(result.stderr or text)[-3000:]}")
    stats = text[text.rfind("Printing statistics") :]
    cells = re.search(r"Number of cells:\s+(\d+)", stats)
    transistors = re.search(r"Estimated number of transistors:\s+(\d+)", stats)
    if cells is None or transistors is None:
        raise AreaError(f"yosys printed no statistics for {top}")
    flops = re.search(r"\$_DFF_P_\s+(\d+)", stats)
    return BlockArea(
        top, int(cells.group(1)), int(flops.group(1)) if flops else 0, int(transistors.group(1))
    )
