"""Whole programs on the RTL against the emulator: bit-identical outputs and equal cycles.

Random compiled programs (bitmod.backends.rtl.cases: every accelerated format, the three loop
orders, odd M and N, bias or none, INT8/INT4 activation matmuls, layers chained through
DRAM) on the two small machines of ``cases.CONFIGS``, one design build per simulator and
machine; and program images the controller must refuse as the decoder does (truncated,
trailing bytes, flipped bits, and CRC-valid images with an unknown opcode, reserved bits
set or unbalanced loops). CI runs ``BITMOD_RTL_CASES`` cases (default 20) on Icarus and the
one-tile ones among them on Verilator too; ``bench/rtl_cosim.py`` runs more.
"""

from __future__ import annotations

import importlib.util
import os
import struct
import zlib
from pathlib import Path

import bitmod
import pytest
from bitmod.backends.rtl.cases import CAPACITY, CONFIGS, MLP_CAPACITY, MLP_MACHINE, random_case
from bitmod.backends.rtl.cosim import build, cosimulate
from bitmod.backends.rtl.emit import emit_design
from bitmod.backends.rtl.sim import simulator_available
from bitmod.runtime.arch.hwconfig import HardwareConfig
from bitmod.runtime.emulator.machine import Machine
from bitmod.runtime.isa import IsaError, Program

CASES = int(os.environ.get("BITMOD_RTL_CASES", "20"))
SIMULATORS = [s for s in ("icarus", "verilator") if simulator_available(s)]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

pytestmark = pytest.mark.skipif(not SIMULATORS, reason="no Verilog simulator installed")


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """One build per (simulator, machine), made on demand."""
    return {}


def _binary(builds, root: Path, simulator: str, config_name: str, design: Path) -> Path:
    key = (simulator, config_name)
    if key not in builds:
        builds[key] = build(design, simulator).resolve()
    return builds[key]


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("seed", range(CASES))
def test_random_program_matches_the_emulator(
    simulator: str, seed: int, builds, tmp_path: Path
) -> None:
    case = random_case(seed)
    if simulator == "verilator" and case.config_name != "1tile":
        pytest.skip("Verilator runs the one-tile machine in CI (bench/rtl_cosim.py runs all)")
    design = tmp_path / "design"
    emit_design(case.program, case.memory, design, case.config, capacity=CAPACITY)
    binary = _binary(builds, tmp_path, simulator, case.config_name, design)
    result = cosimulate(design, simulator, binary=binary)
    assert result.rtl.refused is None and result.emulator_error is None, result.format()
    assert result.identical, f"{case.name}: {result.first_difference}"
    assert result.cycles_equal, f"{case.name}:\n{result.format()}"
    assert result.rtl.counters["cycles"] == sum(result.rtl.causes.values())


def test_build_cache_reuses_a_binary_of_the_same_sources(tmp_path: Path) -> None:
    simulator, cache = SIMULATORS[0], tmp_path / "cache"
    designs = {}
    for name, seed in (("a", 0), ("b", 1), ("c", 2)):  # seeds 0, 1: one tile; 2: two tiles
        case = random_case(seed)
        designs[name] = tmp_path / name
        emit_design(case.program, case.memory, designs[name], case.config, capacity=CAPACITY)
    binary = build(designs["a"], simulator, cache=cache)
    assert build(designs["b"], simulator, cache=cache) == binary
    assert not (designs["b"] / f"build_{simulator}").exists()  # reused, not rebuilt
    assert cosimulate(designs["b"], simulator, binary=binary).cycles_equal
    other = build(designs["c"], simulator, cache=cache)  # another machine: its own binary
    assert other != binary
    assert sorted(p.name for p in cache.iterdir()) == sorted([binary.name, other.name])


def _with_crc(data: bytes) -> bytes:
    """``data`` with the header's CRC-32 recomputed (so the corruption is not a CRC error)."""
    return data[:20] + struct.pack("<I", zlib.crc32(data[24:])) + data[24:]


def _corrupt(kind: str, data: bytes, program: Program) -> bytes:
    code = len(data) - 8 * len(program.instructions)
    if kind == "truncated":
        return data[:-5]
    if kind == "trailing":
        return data + b"\x00" * 3
    if kind == "flipped bit":
        return data[:40] + bytes([data[40] ^ 0x10]) + data[41:]
    if kind == "bad magic":
        return b"BSIX" + data[4:]
    if kind == "unknown opcode":
        word = bytearray(data[code : code + 8])
        word[7] = 0x7F
        return _with_crc(data[:code] + bytes(word) + data[code + 8 :])
    if kind == "reserved bits":  # the first instruction is cfg.array: set a low bit
        word = bytearray(data[code : code + 8])
        word[0] |= 1
        return _with_crc(data[:code] + bytes(word) + data[code + 8 :])
    if kind == "unbalanced loops":  # drop the last endloop (the word before halt)
        n_instr = len(program.instructions) - 1
        body = data[:code] + data[code : len(data) - 16] + data[len(data) - 8 :]
        header = body[:16] + struct.pack("<I", n_instr) + body[20:]
        return _with_crc(header)
    raise AssertionError(kind)


#: (corruption, the controller's error code: bitmod_controller.sv, cosim.ERROR_CODES)
REFUSALS = [
    ("truncated", 1),
    ("trailing", 5),
    ("flipped bit", 6),
    ("bad magic", 2),
    ("unknown opcode", 8),
    ("reserved bits", 9),
    ("unbalanced loops", 11),
]


@pytest.mark.parametrize(("kind", "code"), REFUSALS)
def test_corrupt_images_are_refused_as_the_decoder_refuses_them(
    kind: str, code: int, builds, tmp_path: Path
) -> None:
    simulator = SIMULATORS[0]
    case = random_case(0)
    data = _corrupt(kind, case.program.encode(), case.program)
    with pytest.raises(IsaError):
        Program.decode(data)
    design = tmp_path / "design"
    emit_design(case.program, case.memory, design, case.config, capacity=CAPACITY, image=data)
    binary = _binary(builds, tmp_path, simulator, case.config_name, design)
    result = cosimulate(design, simulator, binary=binary)
    assert result.emulator_error is not None
    assert result.rtl.counters["error"] == 1 and result.rtl.counters["error_code"] == code, (
        result.rtl.refused
    )
    assert result.identical  # both refused
    assert CONFIGS[case.config_name] == case.config


class _RecordingMachine(Machine):
    """The machine, remembering every program it runs and on what memory."""

    def __init__(self, config: HardwareConfig) -> None:
        super().__init__(config)
        self.runs: list[tuple[Program, object, dict]] = []

    def run(self, program, memory=None, inputs=None):
        self.runs.append((program, memory, dict(inputs or {})))
        return super().run(program, memory, inputs)


def test_example_mlp_matches_the_emulator(tmp_path: Path) -> None:
    """examples/mlp compiled by bitmod.compile: every accelerated op's program, on the memory
    image the compiled model gives it, runs bit-identically and in the same cycles."""
    spec = importlib.util.spec_from_file_location("make_mlp", EXAMPLES / "mlp" / "make_mlp.py")
    assert spec is not None and spec.loader is not None
    make_mlp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_mlp)
    model, example = make_mlp.build()
    compiled = bitmod.compile(model, example, dtype="bitmod3", group_size=64, hardware=MLP_MACHINE)
    machine = _RecordingMachine(MLP_MACHINE)
    compiled.machine = machine
    compiled(example)
    assert len(machine.runs) == 3  # fc1, fc2, fc3
    simulator = SIMULATORS[0]
    binary = None
    for index, (program, archive, inputs) in enumerate(machine.runs):
        memory = {name: archive.get_quantized(name) for name in archive.quantized_names()}
        memory.update(
            {name: archive.get(name).numpy() for name in archive.names() if name not in memory}
        )
        memory.update(inputs)
        design = tmp_path / f"op{index}"
        emit_design(program, memory, design, MLP_MACHINE, capacity=MLP_CAPACITY)
        binary = binary or build(design, simulator).resolve()
        result = cosimulate(design, simulator, binary=binary)
        assert result.identical, result.first_difference
        assert result.cycles_equal, result.format()
