"""Co-simulation: an emitted design on Icarus or Verilator against the emulator.

:func:`build` compiles ``DIR`` (Verilator: a standalone binary, ``--binary --timing``; Icarus:
``iverilog -g2012``), :func:`run_rtl` runs it and reads back the counters and the output
tensors, :func:`cosimulate` also runs :class:`bitmod.runtime.emulator.machine.Machine` on the
same program and memory image and compares: outputs bit for bit (the first differing element
otherwise) and cycles, in total and by cause.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from bitmod.backends.rtl.emit import COUNTERS
from bitmod.runtime.arch.hwconfig import HardwareConfig
from bitmod.runtime.isa import IsaError, Program
from bitmod.runtime.storage.archive import ParamArchive
from bitmod.runtime.storage.jsontext import JsonError, parse_json

__all__ = [
    "CosimError",
    "CosimResult",
    "DesignError",
    "RtlRun",
    "build",
    "cosimulate",
    "lint",
    "load_design",
    "run_rtl",
]

SIMULATORS = ("verilator", "icarus")
#: Verilator's options for the library (its lint warnings are style, widths and the memory
#: model's blocking writes; they are not errors of the design).
VERILATOR_OPTIONS = (
    "-Wno-fatal", "-Wno-lint", "-Wno-style", "-Wno-WIDTH", "-Wno-BLKSEQ", "--top-module",
    "bitmod_tb",
)  # fmt: skip
#: The controller's error codes (bitmod_controller.sv).
ERROR_CODES = {
    1: "truncated image",
    2: "bad magic",
    3: "unsupported version",
    4: "reserved header field set",
    5: "trailing bytes",
    6: "CRC mismatch",
    7: "bad descriptor",
    8: "unknown opcode",
    9: "reserved instruction bits set",
    10: "field out of range",
    11: "unbalanced loops",
    12: "level names no open loop",
    13: "bad descriptor reference",
    14: "program exceeds the design's tables",
    15: "cfg.array differs from the machine",
    16: "bad cfg.mblock",
    17: "block outside its tensor",
    18: "block overflows its buffer",
    19: "weight format differs from cfg.fmt",
    20: "Inf/NaN activation",
    21: "the program ends without halt",
    22: "an output block stored a second time",
    23: "an output element never stored",
    24: "the group accumulator can overflow (G x max term sum > 2^20)",
}


class DesignError(ValueError):
    """A design directory whose ``design.json`` is not one :func:`emit_design` wrote."""


def _first_problem(log: str) -> str:
    """The first line of a tool's log that reports an error (else its first line)."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    flagged = [line for line in lines if "error" in line.lower()]
    return (flagged or lines or ["(no output)"])[0][:300]


def load_design(directory: str | Path) -> dict[str, Any]:
    """``design.json`` of an emitted design, checked: DesignError naming the file and the
    entry that is missing or of the wrong kind (an edited or damaged design)."""
    path = Path(directory) / "design.json"
    try:
        design = parse_json(path.read_bytes())
    except OSError as error:
        raise DesignError(f"{path}: cannot read ({error.strerror})") from None
    except JsonError as error:
        raise DesignError(f"{path}: not valid JSON ({error})") from None

    def bad(what: str) -> DesignError:
        return DesignError(f"{path}: {what} (not a design.json that bitmod emitted)")

    if not isinstance(design, dict):
        raise bad("expected a JSON object")
    for key in ("config", "outputs", "capacity"):
        if not isinstance(design.get(key), dict):
            raise bad(f"no {key!r} object")
    try:
        HardwareConfig(**design["config"])
    except (TypeError, ValueError) as error:
        raise bad(f"'config' is not a machine ({error})") from None
    if not all(isinstance(v, int) and v > 0 for v in design["capacity"].values()):
        raise bad("'capacity' values must be positive integers")
    if not design["outputs"]:
        raise bad("no outputs")
    for name, entry in design["outputs"].items():
        ok = (
            isinstance(entry, list)
            and len(entry) == 3
            and all(isinstance(v, int) and v >= 0 for v in entry[:2])
            and isinstance(entry[2], list)
            and all(isinstance(d, int) and d > 0 for d in entry[2])
        )
        if not ok or entry[1] != 2 * math.prod(entry[2]):
            raise bad(f"output {name!r} is not [address, bytes, shape] of FP16 data")
    return design


class CosimError(RuntimeError):
    """A design that does not build or run."""


@dataclass
class RtlRun:
    counters: dict[str, int]
    outputs: dict[str, np.ndarray]
    seconds: float

    @property
    def refused(self) -> str | None:
        if not self.counters["error"]:
            return None
        code = self.counters["error_code"]
        return f"{ERROR_CODES.get(code, f'error {code}')} at {self.counters['error_where']}"

    @property
    def causes(self) -> dict[str, int]:
        return {
            c: self.counters[c] for c in ("compute", "dequant_tail", "drain", "dram_stall", "other")
        }


@dataclass
class CosimResult:
    rtl: RtlRun
    emulator_cycles: int | None
    emulator_causes: dict[str, float]
    emulator_error: str | None
    identical: bool
    first_difference: str | None
    cycles_equal: bool
    details: list[str] = field(default_factory=list)
    emulator_hits: dict[str, int] = field(default_factory=dict)  # loads the buffers held

    def format(self) -> str:
        lines = []
        if self.rtl.refused or self.emulator_error:
            lines.append(f"RTL: {'refused: ' + self.rtl.refused if self.rtl.refused else 'ran'}")
            lines.append(
                f"emulator: {'refused: ' + self.emulator_error if self.emulator_error else 'ran'}"
            )
        lines.append(f"bit-identical outputs: {'yes' if self.identical else 'no'}")
        if self.first_difference:
            lines.append(f"  first difference: {self.first_difference}")
        if self.emulator_cycles is not None and not self.rtl.refused:
            lines.append(f"{'cycles':<14}{'RTL':>14}{'emulator':>14}")
            lines.append(
                f"{'total':<14}{self.rtl.counters['cycles']:>14,d}{self.emulator_cycles:>14,d}"
            )
            for cause, value in self.rtl.causes.items():
                lines.append(f"{cause:<14}{value:>14,d}{int(self.emulator_causes[cause]):>14,d}")
            lines.append(f"cycles equal: {'yes' if self.cycles_equal else 'no'}")
        lines.append(f"boot (image check): {self.rtl.counters['boot_cycles']:,d} cycles")
        return "\n".join(lines)


def _binary(directory: Path, simulator: str) -> Path:
    return (
        directory
        / f"build_{simulator}"
        / ("bitmod_tb" if simulator == "verilator" else "bitmod_tb.vvp")
    )


def build(
    directory: str | Path,
    simulator: str = "verilator",
    jobs: int = 2,
    cache: str | Path | None = None,
) -> Path:
    """Compile the design in ``directory``; the simulation binary's path. With ``cache`` (a
    directory), a binary built before from the same sources is reused (and a new one kept)."""
    directory = Path(directory)
    if simulator not in SIMULATORS:
        raise CosimError(f"unknown simulator {simulator!r}; valid: {', '.join(SIMULATORS)}")
    files = [directory / line for line in (directory / "files.f").read_text().split()]
    if cache is not None:
        digest = hashlib.sha256(simulator.encode())
        for source in files:
            digest.update(source.name.encode() + b"\0" + source.read_bytes())
        cached = Path(cache) / f"{simulator}-{digest.hexdigest()[:20]}"
        if not cached.exists():
            Path(cache).mkdir(parents=True, exist_ok=True)
            binary = build(directory, simulator, jobs)
            partial = cached.with_suffix(".partial")
            shutil.copy2(binary, partial)
            partial.rename(cached)
        return cached
    out = directory / f"build_{simulator}"
    out.mkdir(exist_ok=True)
    if simulator == "verilator":
        if shutil.which("verilator") is None:
            raise CosimError("verilator is not installed")
        command = [
            "verilator", "--binary", "--timing", "-j", str(jobs), *VERILATOR_OPTIONS,
            # functions of at most ~2,000 statements: g++ takes superlinear time on the
            # 100,000-line ones a sixteen-tile design has otherwise
            "--output-split-cfuncs", "2000",
            "--Mdir", str(out), "-o", "bitmod_tb", *map(str, files),
        ]  # fmt: skip
    else:
        if shutil.which("iverilog") is None:
            raise CosimError("iverilog is not installed")
        command = [
            "iverilog",
            "-g2012",
            "-s",
            "bitmod_tb",
            "-o",
            str(_binary(directory, simulator)),
            *map(str, files),
        ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        log = result.stdout + result.stderr
        raise CosimError(f"{simulator} build failed: {_first_problem(log)}\n{log[-4000:]}")
    return _binary(directory, simulator)


def lint(directory: str | Path) -> str:
    """Elaborate the design in ``directory`` with ``verilator --lint-only`` (every module,
    parameter and width of the machine it was emitted for, without building it); its
    messages. CosimError if Verilator finds an error."""
    directory = Path(directory)
    if shutil.which("verilator") is None:
        raise CosimError("verilator is not installed")
    files = [directory / line for line in (directory / "files.f").read_text().split()]
    command = ["verilator", "--lint-only", "--timing", *VERILATOR_OPTIONS, *map(str, files)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=directory)
    text = result.stdout + result.stderr
    if result.returncode != 0 or "%Error" in text:
        raise CosimError(f"verilator --lint-only failed:\n{text[-4000:]}")
    return text


def run_rtl(
    directory: str | Path,
    simulator: str = "verilator",
    limit: int | None = None,
    binary: Path | None = None,
) -> RtlRun:
    """Run the built design (or ``binary``, another design's build of the same configuration
    and capacity) on the images in ``directory``; its counters and output tensors."""
    directory = Path(directory)
    binary = binary or _binary(directory, simulator)
    if not binary.exists():
        build(directory, simulator)
    for stale in [directory / "counters.hex", *directory.glob("tensor*.hex")]:
        stale.unlink(missing_ok=True)
    plus = [f"+limit={limit}"] if limit is not None else []
    command = (
        [str(binary.resolve()), *plus]
        if simulator == "verilator"
        else ["vvp", "-n", str(binary.resolve()), *plus]
    )
    started = time.perf_counter()
    result = subprocess.run(command, cwd=directory, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    counters_file = directory / "counters.hex"
    if result.returncode != 0 or not counters_file.exists():
        log = result.stdout + result.stderr
        raise CosimError(f"{simulator} run failed: {_first_problem(log)}\n{log[-4000:]}")
    words = _hex_words(counters_file)
    counters = dict(zip(COUNTERS, words, strict=True))
    if counters["error"] == 0xFFFFFFFF:
        raise CosimError("the design did not finish within the cycle limit")
    design = load_design(directory)
    outputs = {}
    if not counters["error"]:
        for i, (name, (_, nbytes, shape)) in enumerate(design["outputs"].items()):
            data = bytes(_hex_words(directory / f"tensor{i}.hex"))
            if len(data) != nbytes:
                raise CosimError(f"output {name!r}: the RTL wrote {len(data)} bytes, not {nbytes}")
            outputs[name] = np.frombuffer(data, dtype=np.float16).reshape(shape).copy()
    return RtlRun(counters, outputs, seconds)


def _hex_words(path: Path) -> list[int]:
    """The words of a ``$writememh`` file (address comments skipped)."""
    words = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("//", "@")):
            words.append(int(line, 16))
    return words


def _first_difference(name: str, rtl: np.ndarray, emulated: np.ndarray) -> str | None:
    a, b = rtl.view(np.uint16), emulated.view(np.uint16)
    if np.array_equal(a, b):
        return None
    where = tuple(int(i) for i in np.argwhere(a != b)[0])
    return (
        f"{name}{list(where)}: RTL {rtl[where]!r} (0x{int(a[where]):04x}), "
        f"emulator {emulated[where]!r} (0x{int(b[where]):04x})"
    )


def cosimulate(
    directory: str | Path, simulator: str = "verilator", binary: Path | None = None
) -> CosimResult:
    """Run the design on ``simulator`` (``binary``: see :func:`run_rtl`) and on the emulator;
    compare outputs and cycles."""
    from bitmod.runtime.emulator.machine import Machine, MachineError

    directory = Path(directory)
    design = load_design(directory)
    config = HardwareConfig(**design["config"])
    rtl = run_rtl(directory, simulator, binary=binary)
    emulator_error = None
    emulated = None
    try:
        program = Program.decode((directory / "program.bin").read_bytes())
        emulated = Machine(config).run(program, ParamArchive.load(directory / "memory.safetensors"))
    except (IsaError, MachineError) as error:
        emulator_error = str(error)
    if emulated is None:
        identical = rtl.refused is not None
        return CosimResult(rtl, None, {}, emulator_error, identical, None, identical)
    if rtl.refused:
        return CosimResult(
            rtl,
            emulated.report.cycles,
            emulated.report.cycles_by_cause,
            None,
            False,
            f"RTL refused: {rtl.refused}",
            False,
        )
    if set(emulated.outputs) != set(design["outputs"]):
        raise DesignError(
            f"{directory / 'design.json'}: outputs {sorted(design['outputs'])}, the program "
            f"stores {sorted(emulated.outputs)}"
        )
    difference = None
    for name, expected in emulated.outputs.items():
        difference = difference or _first_difference(name, rtl.outputs[name], expected)
    report = emulated.report
    cycles_equal = rtl.counters["cycles"] == report.cycles and all(
        rtl.causes[c] == report.cycles_by_cause[c] for c in rtl.causes
    )
    return CosimResult(
        rtl,
        report.cycles,
        report.cycles_by_cause,
        None,
        difference is None,
        difference,
        cycles_equal,
        emulator_hits=dict(report.buffer_hits),
    )
