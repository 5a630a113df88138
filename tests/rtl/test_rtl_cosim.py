"""Whole programs on the RTL against the emulator: bit-identical outputs and equal cycles.

Random compiled programs (bitmod.backends.rtl.cases: every accelerated format, the four loop
orders, odd M and N, bias or none, INT8/INT4 activation matmuls, layers chained through
DRAM, row and/or column block loops descending: ``loop.down``) on the small machines of
``cases.CONFIGS`` (one, two, three and four tiles), one design build per simulator and
machine; matmuls shaped to split their row passes over tile groups (row
groups: S = 2 and 4, an idle group in a last sweep, blocks of different S one after another,
the machine without row groups, an Inf activation in a later group's pass); and program
images the controller must refuse as the decoder does (truncated, trailing bytes, flipped
bits, and CRC-valid images with an unknown opcode, reserved bits set, a ``loop.down`` of count 0
or unbalanced loops); matmuls with both block loops descending, in each order. CI
runs ``BITMOD_RTL_CASES`` cases (default 20) on Icarus and the one- and four-tile ones among
them on Verilator too; ``bench/rtl_cosim.py`` runs more.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import struct
import zlib
from pathlib import Path

import bitmod
import numpy as np
import pytest
from bitmod.backends.rtl.cases import (
    CAPACITY,
    CASE_CONFIGS,
    CONFIGS,
    MLP_CAPACITY,
    MLP_MACHINE,
    matmul_case,
    random_case,
)
from bitmod.backends.rtl.cosim import CosimResult, build, cosimulate
from bitmod.backends.rtl.emit import emit_design
from bitmod.backends.rtl.sim import simulator_available
from bitmod.runtime.arch.hwconfig import HardwareConfig
from bitmod.runtime.emulator.machine import Machine
from bitmod.runtime.isa import IsaError, LoopDown, Program

CASES = int(os.environ.get("BITMOD_RTL_CASES", "20"))
SIMULATORS = [s for s in ("icarus", "verilator") if simulator_available(s)]
#: The machines of the random cases Verilator runs in CI (a build of 20-40 s each); Icarus
#: runs them all.
VERILATOR_CONFIGS = ("1tile", "4tiles")

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


def _cosimulate(case, simulator: str, builds, root: Path, memory=None) -> CosimResult:
    """``case`` (its memory, or ``memory``) emitted, built once per machine and co-simulated."""
    design = root / "design"
    emit_design(
        case.program,
        case.memory if memory is None else memory,
        design,
        case.config,
        capacity=CAPACITY,
    )
    binary = _binary(builds, root, simulator, case.config_name, design)
    return cosimulate(design, simulator, binary=binary)


def _assert_agree(case, result: CosimResult) -> None:
    """Both ran to the end, with bit-identical outputs and equal cycles."""
    assert result.rtl.refused is None and result.emulator_error is None, result.format()
    assert result.identical, f"{case.name}: {result.first_difference}"
    assert result.cycles_equal, f"{case.name}:\n{result.format()}"


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("seed", range(CASES))
def test_random_program_matches_the_emulator(
    simulator: str, seed: int, builds, tmp_path: Path
) -> None:
    case = random_case(seed)
    if simulator == "verilator" and case.config_name not in VERILATOR_CONFIGS:
        pytest.skip("Verilator runs one and four tiles in CI (bench/rtl_cosim.py runs all)")
    result = _cosimulate(case, simulator, builds, tmp_path)
    _assert_agree(case, result)
    assert result.rtl.counters["cycles"] == sum(result.rtl.causes.values())


def test_random_cases_split_their_row_passes() -> None:
    """The random cases CI runs cover the row groups: blocks of S = 2 and S = 4 whose macs take
    fewer sweeps than passes, a group idle in a last sweep, blocks of different S in one
    program (the drain of one while the next one's mac runs)."""
    cases = [random_case(seed) for seed in range(max(CASES, 20))]
    assert {c.config_name for c in cases} == set(CASE_CONFIGS)
    split, idle, mixed = set(), 0, 0
    for case in cases:
        rows = case.config.rows
        for (block_rows, _), groups in zip(case.blocks, case.row_groups, strict=True):
            passes = -(-block_rows // rows)
            if groups > 1 and passes > 1:
                split.add(groups)
                idle += passes % groups != 0
        mixed += len(set(case.row_groups)) > 1
    assert split == {2, 4} and idle >= 2 and mixed >= 2, (split, idle, mixed)


def test_random_cases_run_descending_block_loops() -> None:
    """Half the random cases CI runs or more have a ``loop.down`` block loop of more than one
    iteration, row and column loops both, on every machine; some have none."""
    cases = [random_case(seed) for seed in range(max(CASES, 20))]
    descending = [[what for what, count in c.descending if count > 1] for c in cases]
    assert sum(map(bool, descending)) * 2 >= len(cases), descending
    assert {what for found in descending for what in found} == {"rows", "cols"}
    assert any(set(found) == {"rows", "cols"} for found in descending)
    assert {c.config_name for c, found in zip(cases, descending, strict=True) if found} == set(
        CASE_CONFIGS
    )
    assert any(not any(isinstance(i, LoopDown) for i in c.program.instructions) for c in cases)


#: Both block loops descending: (config, format, M, N, K, G, block rows, order, bias). 13 rows
#: in blocks of 4 (the last of 1 row) by 11 channels in blocks of 4 (the last of 3); on two tiles
#: 13 x 11 in blocks of 8 x 8: the narrow column block (3 channels, S = 2) runs first.
DESCENDING_CASES = [
    ("1tile", "int4", 13, 11, 64, 16, 4, "weights-resident", True),
    ("1tile", "int4", 13, 11, 64, 16, 4, "acts-resident", False),
    ("1tile", "int4", 13, 11, 64, 16, 4, "k-streamed", True),
    ("2tiles", "bitmod3", 13, 11, 64, 32, 8, "acts-resident", False),
    ("4tiles", "int6", 13, 21, 64, 16, 8, "k-streamed-rows", True),
]


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize(
    "shape", DESCENDING_CASES, ids=[f"{c[0]}-{c[1]}-{c[7]}" for c in DESCENDING_CASES]
)
def test_descending_block_loops_match_the_emulator(
    simulator: str, shape, builds, tmp_path: Path
) -> None:
    """``loop.down`` row and column block loops: the RTL agrees with the emulator bit for bit
    and in cycles; the outputs are those of the ascending program, its cycles not."""
    config_name, _, m, n, _, _, block_rows, *_ = shape
    if simulator == "verilator" and config_name not in VERILATOR_CONFIGS:
        pytest.skip("Verilator runs one and four tiles in CI")
    case = matmul_case(*shape, rows_down=True, cols_down=True)
    ascending = matmul_case(*shape)
    columns = CONFIGS[config_name].cols * CONFIGS[config_name].tiles
    row_blocks, col_blocks = -(-m // block_rows), -(-n // columns)
    assert row_blocks > 1 and col_blocks > 1 and n % columns != 0  # a narrow last column block
    downs = [i for i in case.program.instructions if isinstance(i, LoopDown)]
    assert sorted(i.count for i in downs) == sorted([row_blocks, col_blocks])
    assert sorted(case.descending) == sorted([("rows", row_blocks), ("cols", col_blocks)])
    assert not any(isinstance(i, LoopDown) for i in ascending.program.instructions)
    emulated = Machine(case.config).run(case.program, case.memory)
    reference = Machine(case.config).run(ascending.program, ascending.memory)
    assert np.array_equal(
        emulated.outputs["y"].view(np.uint16), reference.outputs["y"].view(np.uint16)
    )
    # the blocks run in another order: equal cycles below also check the RTL's order
    assert emulated.report.cycles != reference.report.cycles
    result = _cosimulate(case, simulator, builds, tmp_path)
    _assert_agree(case, result)
    assert result.rtl.counters["cycles"] == emulated.report.cycles
    assert np.array_equal(
        result.rtl.outputs["y"].view(np.uint16), emulated.outputs["y"].view(np.uint16)
    )


#: Matmuls shaped for the row groups: (config, format, M, N, K, G, block rows, order, bias) and
#: the S of each output block (rules.row_groups).
ROW_GROUP_CASES = [
    # N = 4 on two tiles: S = 2; 9 rows in a block of 12: 3 passes in 2 sweeps, group 1 idle
    (("2tiles", "int4", 9, 4, 48, 16, 12, "weights-resident", True), (2,)),
    # N = 11: a full block (S = 1), then 3 channels (S = 2); 13 rows in blocks of 8
    (("2tiles", "bitmod3", 13, 11, 64, 32, 8, "acts-resident", False), (1, 2, 1, 2)),
    # N = 21 on four tiles: 16 channels (S = 1), then 5 (Wg = 2, S = 2); 4 passes a block
    (("4tiles", "fp4", 13, 21, 40, 16, 16, "k-streamed", True), (1, 2)),
    # N = 3: S = 4, Wg = 1; 9 rows: 3 passes in one sweep, group 3 idle
    (("4tiles", "int8_asym", 9, 3, 64, 32, 12, "weights-resident", False), (4,)),
    # N = 9: three tiles' channels, Wg = 4: no split
    (("4tiles", "int5", 9, 9, 37, 16, 12, "acts-resident", True), (1,)),
    # three tiles: N = 4 is one tile's (Wg = 1), S = 2 (S·Wg ≤ 3), tile 2 idle; N = 14: a full
    # block of 12 (S = 1), then 2 channels (S = 2)
    (("3tiles", "int4", 9, 4, 48, 16, 12, "weights-resident", True), (2,)),
    (("3tiles", "bitmod3", 13, 14, 64, 32, 16, "k-streamed", False), (1, 2)),
    # no row groups: N = 3 on two tiles runs on tile 0, its 3 passes one after another
    (("2tiles-rg1", "int4", 9, 3, 48, 16, 12, "acts-resident", True), (1,)),
    # 16 passes of one K group: the 4-channel block's mac (S = 4, 4 sweeps) starts the cycle
    # after the full block's drain (S = 1, 64 cycles) and writes its sweeps' C rows while the
    # drain reads them; with C rows by pass (p * ROWS + r) it would overwrite pass 15 of tile 3
    # before the drain reaches it (docs/rtl.md, "The drain engine")
    (("4tiles-mr64", "int4", 64, 20, 16, 16, 64, "weights-resident", False), (1, 4)),
    # accumulators of 128 rows: 130 rows in blocks of 128 (32 passes, then 1); N = 20: a full
    # block (S = 1, 32 sweeps), then 4 channels (S = 4, 8 sweeps)
    (("4tiles-mr128", "int4", 130, 20, 32, 16, 128, "weights-resident", True), (1, 4, 1, 4)),
]


@pytest.mark.parametrize(
    ("shape", "groups"),
    ROW_GROUP_CASES,
    ids=[f"{c}-{f}-{m}x{n}x{k}-MR{r}" for (c, f, m, n, k, _, r, *_), _ in ROW_GROUP_CASES],
)
def test_row_groups_match_the_emulator(shape, groups, builds, tmp_path: Path) -> None:
    simulator = SIMULATORS[0]
    case = matmul_case(*shape)
    assert case.row_groups == groups
    result = _cosimulate(case, simulator, builds, tmp_path)
    _assert_agree(case, result)
    # a block that splits its passes takes fewer cycles than on the machine without groups
    rows = case.config.rows
    sweeps_saved = any(
        s > 1 and -(-r // rows) > 1 for (r, _), s in zip(case.blocks, groups, strict=True)
    )
    ungrouped = Machine(dataclasses.replace(case.config, row_groups=1)).run(
        case.program, case.memory
    )
    if sweeps_saved:
        assert result.rtl.counters["cycles"] < ungrouped.report.cycles
    else:
        assert result.rtl.counters["cycles"] == ungrouped.report.cycles


#: Matmuls (four tiles, INT8, weights-resident in 16-row blocks: M, N, K, G) in which the
#: channel frees with a store and the next block's load both waiting, and the machine's cycles;
#: serving the store first would take 1,935, 3,171 and 5,121 cycles (the last one faster: the
#: RTL must follow the rule, not the better order).
CHANNEL_CASES = [((33, 20, 128, 32), 1933), ((33, 33, 128, 16), 3169), ((64, 33, 128, 32), 5124)]


@pytest.mark.parametrize(("shape", "cycles"), CHANNEL_CASES, ids=[str(c[0]) for c in CHANNEL_CASES])
def test_a_load_and_a_store_waiting_together_load_first(
    shape: tuple[int, int, int, int], cycles: int, builds, tmp_path: Path
) -> None:
    """The load goes first (docs/rtl.md, "DRAM"); the random cases' small machines never have
    both waiting at once."""
    m, n, k, group = shape
    case = matmul_case("4tiles", "int8", m, n, k, group, 16, "weights-resident")
    result = _cosimulate(case, SIMULATORS[0], builds, tmp_path)
    _assert_agree(case, result)
    assert result.rtl.counters["cycles"] == cycles


def test_an_inf_activation_in_a_later_groups_pass_is_refused(builds, tmp_path: Path) -> None:
    """Row 8 of a 9-row block on four tiles (S = 4) is group 2's pass of the one sweep: both
    refuse the mac (error 20)."""
    simulator = SIMULATORS[0]
    case = matmul_case("4tiles", "int4", 9, 3, 32, 16, 12, "weights-resident")
    assert case.row_groups == (4,)
    x = case.memory["x"].copy()
    x[8, 5] = np.inf
    result = _cosimulate(case, simulator, builds, tmp_path, memory={**case.memory, "x": x})
    assert result.emulator_error is not None and "Inf" in result.emulator_error
    assert result.rtl.counters["error"] == 1 and result.rtl.counters["error_code"] == 20
    assert result.identical  # both refused


def test_build_cache_reuses_a_binary_of_the_same_sources(tmp_path: Path) -> None:
    simulator, cache = SIMULATORS[0], tmp_path / "cache"
    designs = {}
    for name, seed in (("a", 0), ("b", 2), ("c", 1)):  # seeds 0, 2: one tile; 1: two tiles
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
    if kind.startswith("loop.down"):  # the first loop.down: count 0, or a reserved bit (32) set
        index = next(
            i for i, instr in enumerate(program.instructions) if isinstance(instr, LoopDown)
        )
        at = code + 8 * index
        word = bytearray(data[at : at + 8])
        assert word[7] == LoopDown.OPCODE
        if kind == "loop.down count 0":
            word[0:4] = bytes(4)
        else:
            word[4] |= 1
        return _with_crc(data[:at] + bytes(word) + data[at + 8 :])
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
    ("loop.down count 0", 10),
    ("loop.down reserved bits", 9),
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
