"""The machine: bit-exact runs against the scalar reference PE, the cycle model, the report and
every error a program or memory image can cause."""

from __future__ import annotations

import dataclasses
import math
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from bitmod.runtime.arch.hwconfig import HardwareConfig
from bitmod.runtime.arch.nest import matmul_program
from bitmod.runtime.arch.rules import row_groups
from bitmod.runtime.arch.schedule import ORDERS, STREAMED_ORDERS
from bitmod.runtime.arch.timing import MAC_PIPELINE_CYCLES
from bitmod.runtime.emulator import pe
from bitmod.runtime.emulator import reference_pe as ref
from bitmod.runtime.emulator.machine import Machine, MachineError
from bitmod.runtime.formats import FORMAT_IDS, dequantize, get_format, quantize
from bitmod.runtime.formats.bitserial import decode_codes, num_terms, quantized_terms, value_terms
from bitmod.runtime.isa import (
    AccClr,
    CfgArray,
    CfgFmt,
    CfgKchunk,
    CfgMblock,
    CfgSv,
    DescKind,
    Descriptor,
    Drain,
    EndLoop,
    Halt,
    IsaError,
    LdAct,
    LdWgt,
    Loop,
    LoopDown,
    Mac,
    Nop,
    Program,
    StOut,
    assemble,
)
from bitmod.runtime.storage.archive import ParamArchive

from tests.test_schedule import tile_groups

SMALL = HardwareConfig(rows=4, cols=4, tiles=2)


def fp16_bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a.view(np.uint16), b.view(np.uint16))


def make_case(fmt: str, m: int, n: int, k: int, group: int, seed: int, bias: bool = True):
    rng = np.random.default_rng(seed)
    q = ref.random_quantized(rng, fmt, n, k, group)
    x = ref.random_activations(rng, m, k, "normal")
    b = rng.standard_normal(n).astype(np.float16) if bias else None
    return q, x, b


def program_for(
    q,
    m,
    config,
    kchunk=None,
    bias=True,
    special_values=None,
    order=None,
    block_rows=0,
    rows_down=None,
    cols_down=None,
):
    """The compiler's program for ``x @ w.T (+ b)`` on ``config`` (parts of the schedule forced
    where given)."""
    fmt = get_format(q.fmt)
    sv = fmt.special_values if special_values is None else special_values
    return matmul_program(
        act="x",
        weight="w",
        out="y",
        m=m,
        n=q.shape[0],
        k=q.shape[1],
        fmt=q.fmt,
        group_size=q.group_size,
        scale_bits=q.scale_bits,
        special_values=sv,
        config=config,
        kchunk=kchunk or 0,
        order=order,
        block_rows=block_rows,
        bias="b" if bias else None,
        rows_down=rows_down,
        cols_down=cols_down,
    )


def reference_output(q, x, b, register=None):
    """Scalar reference PE over the whole matrix; ``register`` reprograms the SV register."""
    fmt = get_format(q.fmt)
    if register is None:
        terms = quantized_terms(q)
    else:
        index = np.repeat(q.sv_index.numpy(), q.group_size, axis=1)
        values = decode_codes(fmt, q.codes.numpy(), index, register)
        terms = value_terms(fmt, values, num_terms(fmt, register))
    _, _, y = ref.reference_matmul(
        x, terms, q.scales.numpy().astype(np.int64), q.channel_scale.numpy(), q.group_size, b
    )
    return y


# --- bit-exactness against the scalar reference PE --------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "m", "n", "k", "group", "kchunk", "bias", "order", "block_rows"),
    [
        ("int8", 10, 20, 64, 16, 32, True, None, 0),  # clipped row and column blocks, 2 K chunks
        ("int6", 4, 8, 64, 32, None, False, None, 0),
        ("bitmod3", 9, 17, 96, 16, 48, True, None, 0),  # partial last K chunk (96 = 48 + 48)
        ("bitmod4", 5, 12, 64, 16, None, True, None, 0),
        ("int4_asym", 7, 9, 64, 32, 32, True, None, 0),
        ("fp3_ea_neg", 3, 5, 32, 16, None, False, None, 0),
        # every loop order, with blocks of several array passes (SMALL has 4 PE rows)
        ("int8", 13, 20, 64, 16, None, True, "weights-resident", 8),  # 13 = 8 + 5 rows
        ("bitmod3", 13, 20, 96, 16, 32, True, "acts-resident", 12),  # all K resident, 3 chunks
        ("bitmod4", 30, 9, 64, 16, 16, False, "k-streamed", 16),  # 4 passes, last block 2
    ],
)
def test_machine_matches_scalar_reference(
    fmt, m, n, k, group, kchunk, bias, order, block_rows
) -> None:
    q, x, b = make_case(fmt, m, n, k, group, zlib.crc32(f"{fmt}{m}{n}{k}".encode()), bias)
    program = program_for(q, m, SMALL, kchunk, bias, order=order, block_rows=block_rows)
    memory = {"x": x, "w": q} | ({"b": b} if bias else {})
    result = Machine(SMALL).run(program.encode(), memory)
    assert fp16_bits_equal(result.outputs["y"], reference_output(q, x, b if bias else None))


@pytest.mark.parametrize(
    ("order", "kchunk"), [("weights-resident", None), ("acts-resident", 32), ("k-streamed", 32)]
)
def test_block_loops_counting_down_compute_the_same_bits(order: str, kchunk: int | None) -> None:
    """``loop.down`` visits the same blocks in the other order: 13 rows in blocks of 8 (the
    last of 5) and 19 channels on 8 columns (the last block of 3), each block loop down."""
    q, x, b = make_case("bitmod3", 13, 19, 96, 16, 77, True)
    expected = reference_output(q, x, b)
    memory = {"x": x, "w": q, "b": b}
    cycles = set()
    for rows_down, cols_down in [(False, False), (True, False), (False, True), (True, True)]:
        program = program_for(
            q,
            13,
            SMALL,
            kchunk,
            True,
            order=order,
            block_rows=8,
            rows_down=rows_down,
            cols_down=cols_down,
        )
        descending = [i for i in program.instructions if isinstance(i, LoopDown)]
        assert len(descending) == rows_down + cols_down
        result = Machine(SMALL).run(Program.decode(program.encode()), memory)
        assert fp16_bits_equal(result.outputs["y"], expected)
        cycles.add(result.report.cycles)
    assert len(cycles) > 1  # the order of unequal blocks shows in the timing


RANDOM_FORMATS = ["int8", "int6", "int5_asym", "fp4", "bitmod3", "bitmod4", "fp4_er_pos"]


@pytest.mark.parametrize("seed", range(6))
def test_random_programs_match_scalar_reference(seed: int) -> None:
    """Random shapes, geometry, K chunks, formats, signed scale codes, bias, SV register order."""
    rng = np.random.default_rng(1000 + seed)
    fmt = RANDOM_FORMATS[int(rng.integers(len(RANDOM_FORMATS)))]
    group = int(rng.choice([8, 16, 32]))
    k = group * int(rng.integers(1, 5))
    m, n = int(rng.integers(1, 9)), int(rng.integers(1, 13))
    config = HardwareConfig(
        rows=int(rng.integers(1, 5)), cols=int(rng.integers(1, 5)), tiles=int(rng.integers(1, 4))
    )
    kchunk = group * int(rng.integers(1, k // group + 1))
    order = str(rng.choice(ORDERS))
    if order == "weights-resident":
        kchunk = k
    elif order in STREAMED_ORDERS and kchunk == k:
        order = "acts-resident"
    block_rows = config.rows * int(rng.integers(1, 4))
    q = ref.random_quantized(rng, fmt, n, k, group)
    codes = rng.integers(-128, 128, size=q.scales.shape).astype(np.int8)
    q = dataclasses.replace(q, scales=torch.from_numpy(codes))  # negative scale codes, too
    x = ref.random_activations(rng, m, k, str(rng.choice(["normal", "wide", "special"])))
    bias = rng.standard_normal(n).astype(np.float16) if rng.integers(2) else None
    register = None
    if get_format(fmt).special_values:
        register = tuple(int(v) for v in rng.permutation(get_format(fmt).special_values))
    program = program_for(q, m, config, kchunk, bias is not None, register, order, block_rows)
    memory = {"x": x, "w": q} | ({"b": bias} if bias is not None else {})
    result = Machine(config).run(Program.decode(program.encode()), memory)
    assert fp16_bits_equal(result.outputs["y"], reference_output(q, x, bias, register))


def test_decoded_block_cache_changes_nothing_but_speed() -> None:
    """Acts-resident: each weight block streams past 3 row blocks; decoded once (cached),
    or every time (no cache), or with a cache that holds one block (evictions)."""
    q, x, b = make_case("bitmod4", 12, 20, 64, 16, 21)
    program = program_for(q, 12, SMALL, order="acts-resident", block_rows=4, kchunk=32)
    memory = {"x": x, "w": q, "b": b}
    runs = [
        Machine(SMALL, decode_cache_bytes=size).run(program, memory) for size in (2**30, 0, 4000)
    ]
    for run in runs[1:]:
        assert fp16_bits_equal(run.outputs["y"], runs[0].outputs["y"])
        assert run.report == runs[0].report
    assert fp16_bits_equal(runs[0].outputs["y"], reference_output(q, x, b))


def test_reprogrammed_special_values_are_used() -> None:
    """The SV register is programmable: the machine decodes with the program's values, which
    here include 7 (three set bits: a third term per weight)."""
    q, x, b = make_case("bitmod3", 6, 8, 64, 16, 11)
    register = (3, -5, 7, -6)
    program = program_for(q, 6, SMALL, special_values=register)
    result = Machine(SMALL).run(program, {"x": x, "w": q, "b": b})
    expected = reference_output(q, x, b, register)
    assert fp16_bits_equal(result.outputs["y"], expected)
    default = Machine(SMALL).run(program_for(q, 6, SMALL), {"x": x, "w": q, "b": b})
    assert not fp16_bits_equal(default.outputs["y"], expected)
    assert (
        result.report.cycles_by_cause["compute"] == 1.5 * default.report.cycles_by_cause["compute"]
    )  # 3 terms instead of 2


def test_error_against_float64_within_the_derived_bound() -> None:
    q, x, b = make_case("bitmod4", 12, 40, 256, 128, 5)
    result = Machine(SMALL).run(program_for(q, 12, SMALL, kchunk=128), {"x": x, "w": q, "b": b})
    y_ref = x.astype(np.float64) @ dequantize(q).double().numpy().T + b.astype(np.float64)
    terms = quantized_terms(q)
    term_abs = (terms.man.astype(np.int64) << (terms.exp.astype(np.int64) + terms.bsig)).sum(-1)
    bound = pe.error_bound(
        x, q.values().numpy(), term_abs, q.scales.numpy(), q.channel_scale.numpy(), 128, b
    )
    assert np.all(np.abs(result.outputs["y"].astype(np.float64) - y_ref) <= bound)


def test_parameter_archive_memory_image(tmp_path: Path) -> None:
    q, x, b = make_case("bitmod3", 5, 10, 64, 32, 3)
    archive = ParamArchive()
    archive.put_quantized("w", q)
    archive.put("b", b)
    archive.save(tmp_path / "params.safetensors")
    loaded = ParamArchive.load(tmp_path / "params.safetensors")
    program = program_for(q, 5, SMALL)
    from_archive = Machine(SMALL).run(program, loaded, inputs={"x": torch.from_numpy(x)})
    from_dict = Machine(SMALL).run(program, {"x": x, "w": q, "b": b})
    assert fp16_bits_equal(from_archive.outputs["y"], from_dict.outputs["y"])


def test_two_layer_program_chains_through_dram() -> None:
    """Layer 2 reads layer 1's output; text assembly, one binary, multiple cfg segments."""
    rng = np.random.default_rng(9)
    q1 = ref.random_quantized(rng, "int8", 16, 32, 16)
    q2 = ref.random_quantized(rng, "bitmod4", 8, 16, 16)
    x = ref.random_activations(rng, 4, 32, "normal")
    sv = get_format("bitmod4").special_values
    text = f"""
    .desc x act "x" 4x32
    .desc w1 qweight "w1" 16x32 fmt=int8 sb=8 g=16
    .desc h out "h" 4x16
    .desc h_in act "h" 4x16
    .desc w2 qweight "w2" 8x16 fmt=bitmod4 sb=8 g=16
    .desc y out "y" 4x8
    cfg.array rows=4 cols=4 tiles=2
    cfg.fmt fmt=int8 sb=8 g=16
    cfg.kchunk 32
    loop L0 count=2          ; column blocks of layer 1
      ld.wgt w1 col=L0 k=-
      acc.clr
      ld.act x row=- k=-
      mac
      drain bias=-
      st.out h row=- col=L0
    endloop L0
    cfg.fmt fmt=bitmod4 sb=8 g=16
    {chr(10).join(f"cfg.sv slot={i} value={v}" for i, v in enumerate(sv))}
    cfg.kchunk 16
    acc.clr
    ld.act h_in row=- k=-
    ld.wgt w2 col=- k=-
    mac
    drain bias=-
    st.out y row=- col=-
    halt
    """
    program = assemble(text)
    result = Machine(SMALL).run(Program.decode(program.encode()), {"x": x, "w1": q1, "w2": q2})
    h = ref.reference_matmul(
        x, quantized_terms(q1), q1.scales.numpy().astype(np.int64), q1.channel_scale.numpy(), 16
    )[2]
    y = ref.reference_matmul(
        h, quantized_terms(q2), q2.scales.numpy().astype(np.int64), q2.channel_scale.numpy(), 16
    )[2]
    assert fp16_bits_equal(result.outputs["h"], h)
    assert fp16_bits_equal(result.outputs["y"], y)


# --- the cycle model --------------------------------------------------------------------------


def formula_cycles(m, n, k, terms, config):
    """⌈M/rows⌉·⌈N/cols⌉·⌈K/4⌉·terms / tiles: the MAC cycles of a compute-bound GEMM."""
    return (
        math.ceil(m / config.rows)
        * math.ceil(n / config.cols)
        * math.ceil(k / 4)
        * terms
        / config.tiles
    )


@pytest.mark.parametrize(
    ("fmt", "terms"),
    [("int8", 4), ("int6", 3), ("fp4", 2), ("bitmod4", 2), ("fp3", 2), ("bitmod3", 2)],
)
def test_compute_bound_cycles_match_the_formula(fmt: str, terms: int) -> None:
    # 64 DRAM bytes per cycle keeps the loads behind compute for every format.
    config = HardwareConfig(dram_bytes_per_cycle=64.0)
    m, n, k = 256, 256, 1024
    q, x, _ = make_case(fmt, m, n, k, 128, 1, bias=False)
    expected = formula_cycles(m, n, k, terms, config)
    # Blocks of one array pass (8 rows): one mac, so one exposed tail, per pass: the RTL
    # pipeline's 4 cycles, SB = 8 of the last group's dequantization and 8 of the column
    # accumulator taking its 8 PEs (docs/rtl.md); groups of 32 steps hide the others.
    tail = MAC_PIPELINE_CYCLES + 8 + 8
    program = program_for(q, m, config, bias=False, order="weights-resident", block_rows=8)
    report = Machine(config).run(program, {"x": x, "w": q}).report
    assert report.cycles_by_cause["compute"] == expected
    assert expected <= report.cycles <= 1.10 * expected
    passes = (m // 8) * (n // 128)
    assert report.cycles_by_cause["dequant_tail"] == tail * passes
    assert report.pe_utilization > 0.9
    assert sum(report.cycles_by_cause.values()) == pytest.approx(report.cycles)
    # The compiler's own schedule: the same MACs, the tail once per mac of MR rows x KC.
    program = program_for(q, m, config, bias=False)
    (mblock,) = [i.rows for i in program.instructions if isinstance(i, CfgMblock)] or [8]
    (kchunk,) = [i.kc for i in program.instructions if isinstance(i, CfgKchunk)]
    report = Machine(config).run(program, {"x": x, "w": q}).report
    assert report.cycles_by_cause["compute"] == expected
    macs = math.ceil(m / mblock) * (n // 128) * math.ceil(k / kchunk)
    assert report.cycles_by_cause["dequant_tail"] == tail * macs
    assert expected <= report.cycles <= 1.10 * expected


def test_short_groups_expose_the_dequantization() -> None:
    """G = 8 with 2 terms: 4 MAC cycles a group cannot hide its 8 dequantization cycles and
    the column accumulator's 4 (one per PE row): every group after the first waits 12 - 4."""
    config = HardwareConfig(rows=4, cols=4, tiles=1, dram_bytes_per_cycle=1e6)
    q, x, _ = make_case("bitmod3", 4, 4, 64, 8, 12, bias=False)
    report = Machine(config).run(program_for(q, 4, config, bias=False), {"x": x, "w": q}).report
    groups = 64 // 8
    assert report.cycles_by_cause["compute"] == groups * 2 * 2
    tail = MAC_PIPELINE_CYCLES + 8 + 4
    assert report.cycles_by_cause["dequant_tail"] == (groups - 1) * (8 + 4 - 4) + tail


@pytest.mark.parametrize(("m", "n", "order"), [(64, 128, "weights-resident"), (1, 1024, None)])
def test_dram_bound_gemm_is_paced_by_the_channel(m: int, n: int, order: str | None) -> None:
    """bitmod3 at DDR4 (25.6 B/cycle). Streaming 8-row activation blocks past resident
    weights (one column block: every act block is new) needs 8 rows × 4 K × 2 B = 64 B per
    4-MAC step of 2 cycles, 32 B a cycle; a GEMV reads every weight byte for 2 MACs per weight.
    Either way the run takes bytes / B."""
    config = HardwareConfig()
    k = 1024
    q, x, _ = make_case("bitmod3", m, n, k, 128, 2, bias=False)
    program = program_for(q, m, config, bias=False, order=order, block_rows=8)
    report = Machine(config).run(program, {"x": x, "w": q}).report
    channel_cycles = (report.dram_bytes_read + report.dram_bytes_written) / 25.6
    assert report.cycles >= channel_cycles
    assert report.cycles <= 1.10 * channel_cycles
    assert report.cycles_by_cause["dram_stall"] > 0.1 * report.cycles


def test_traffic_and_energy_by_hand() -> None:
    config = HardwareConfig(rows=4, cols=4, tiles=2, dram_bytes_per_cycle=8.0)
    m, n, k, group = 6, 10, 64, 32
    q, x, b = make_case("int8", m, n, k, group, 4)
    program = program_for(q, m, config, order="weights-resident", block_rows=4)
    report = Machine(config).run(program, {"x": x, "w": q, "b": b}).report
    # weights-resident nest: weights once; activations read by the macs of both column blocks
    # (2 row blocks × ⌈10/8⌉ = 2 column blocks) but moved once: the second column block's two
    # act blocks (4 rows × 64 K × 2 B, one region of 32 KB each) are still in the buffer.
    # Outputs once. int8: K bytes of codes + 2 groups × 1 B scale per channel + 2 B scale.
    weight_bytes = n * (k + 2 + 2)
    act_bytes = 2 * m * k
    out_bytes = 2 * m * n
    assert report.dram_bytes_read == weight_bytes + act_bytes
    assert report.dram_bytes_written == out_bytes
    assert report.buffer_hits == {"activation": 2, "weight": 0}
    assert report.buffer_bytes_written["activation"] == act_bytes
    assert report.macs == m * n * k
    assert report.buffer_bytes_read["activation"] == 2 * act_bytes
    # every mac reads its weight block: column block 0 (8 ch) for 2 row blocks, block 1 (2 ch)
    assert report.buffer_bytes_read["weight"] == 2 * weight_bytes
    e = config.energy
    passes = 2 * 2
    assert report.cycles_by_cause["compute"] == passes * (k // 4) * 4
    busy = passes * ((k // 4) * 4 + MAC_PIPELINE_CYCLES + 8 + 4)  # the tail on 4 PE rows
    assert report.energy_pj["pe"] == pytest.approx(e.pe("bitmod") * config.total_pes * busy)
    assert report.energy_pj["dram"] == pytest.approx(
        8 * (weight_bytes + act_bytes + out_bytes) * e.dram_pj_per_bit
    )
    assert report.energy_pj["encoder"] == pytest.approx(
        e.encoder_pj_per_tile_cycle * config.tiles * passes * (k // 4) * 4
    )
    assert sum(report.cycles_by_cause.values()) == pytest.approx(report.cycles)
    assert report.total_energy_pj == pytest.approx(sum(report.energy_pj.values()))
    assert "PE utilization" in report.format()


def test_acts_resident_traffic_and_cycles_by_hand() -> None:
    """The same GEMM with one 8-row activation block (2 passes of 4 rows) holding all of K,
    and the weights in 2 K chunks of 32 streaming past it."""
    config = HardwareConfig(rows=4, cols=4, tiles=2, dram_bytes_per_cycle=8.0)
    m, n, k, group = 6, 10, 64, 32
    q, x, b = make_case("int8", m, n, k, group, 4)
    program = program_for(q, m, config, order="acts-resident", block_rows=8, kchunk=32)
    assert CfgMblock(8) in program.instructions
    report = Machine(config).run(program, {"x": x, "w": q, "b": b}).report
    weight_bytes = n * 2 * (32 + 1 + 2)  # per chunk: codes, one scale code, channel scale
    assert report.dram_bytes_read == weight_bytes + m * k * 2  # activations once
    assert report.dram_bytes_written == m * n * 2
    # 2 column blocks × 2 chunks = 4 macs of 2 passes, 8 steps × 4 terms a pass, and a tail of
    # 4 + SB + 4 PE rows = 16 (groups of 32 steps hide the others). Column block 0 has 8
    # channels, one tile's 4 each; block 1 has channels 8..9, which fit tile 0, so tile 1
    # runs the second pass beside it (row groups): its macs sweep K once.
    assert report.cycles_by_cause["compute"] == (2 * 2 + 2 * 1) * 8 * 4
    assert report.cycles_by_cause["dequant_tail"] == 4 * (MAC_PIPELINE_CYCLES + 8 + 4)
    # Each mac reads its K chunk of the 6 rows once and its weight block once per sweep.
    assert report.buffer_bytes_read["activation"] == 4 * m * 32 * 2
    assert report.buffer_bytes_read["weight"] == 2 * (8 * 2 + 2 * 1) * (32 + 1 + 2)
    # Without row groups every mac makes both passes on both tiles.
    plain = dataclasses.replace(config, row_groups=1)
    report = Machine(plain).run(program, {"x": x, "w": q, "b": b}).report
    assert report.cycles_by_cause["compute"] == 4 * 2 * 8 * 4
    assert report.buffer_bytes_read["weight"] == 2 * weight_bytes
    baseline = Machine(config).run(
        program_for(q, m, config, order="weights-resident", block_rows=4),
        {"x": x, "w": q, "b": b},
    )
    assert fp16_bits_equal(
        Machine(config).run(program, {"x": x, "w": q, "b": b}).outputs["y"],
        baseline.outputs["y"],
    )


def test_double_buffering_hides_loads() -> None:
    """The same program on a buffer that holds two act blocks and on one that holds one."""
    m, n, k = 64, 128, 512
    q, x, _ = make_case("int8", m, n, k, 128, 6, bias=False)
    act_block = 8 * k * 2
    double = HardwareConfig(dram_bytes_per_cycle=8.0, act_buffer_bytes=2 * act_block)
    single = dataclasses.replace(double, act_buffer_bytes=act_block + 1024)
    program = program_for(q, m, double, bias=False, order="weights-resident", block_rows=8)
    fast = Machine(double).run(program, {"x": x, "w": q}).report
    slow = Machine(single).run(program, {"x": x, "w": q}).report
    # A mac is 512 cycles + a 20-cycle tail; an act block takes 8192 B / 8 = 1024 cycles, an
    # output block 2048 B / 8 = 256. With one slot the next block's load waits for the mac:
    # ≈ W + 8 × (1024 + 532) (the store hides under the next load's mac); with two the loads
    # run back to back with the stores between them (DRAM bound): ≈ W + 8 × (1024 + 256).
    assert slow.cycles > fast.cycles + 7 * (532 - 256)
    assert fast.cycles_by_cause["compute"] == slow.cycles_by_cause["compute"]


# --- errors -----------------------------------------------------------------------------------


def _simple():
    q, x, b = make_case("bitmod3", 6, 8, 64, 32, 8)
    return q, x, b, program_for(q, 6, SMALL)


def test_corrupt_and_truncated_binary() -> None:
    q, x, b, program = _simple()
    binary = program.encode()
    with pytest.raises(IsaError, match="CRC"):
        Machine(SMALL).run(binary[:-1] + bytes([binary[-1] ^ 4]), {"x": x, "w": q, "b": b})
    with pytest.raises(IsaError, match="truncated"):
        Machine(SMALL).run(binary[:-5], {"x": x, "w": q, "b": b})


@pytest.mark.parametrize(
    ("memory_change", "message"),
    [
        (lambda mem: mem.pop("w"), r"quantized weight 'w' is not in the memory image"),
        (lambda mem: mem.pop("x"), r"activation 'x' is not in the memory image"),
        (lambda mem: mem.pop("b"), r"bias 'b' is not in the memory image"),
        (lambda mem: mem.update(x=mem["x"][:, :32]), r"'x'.*shape \[6, 32\], descriptor says 6x64"),
        (lambda mem: mem.update(x=mem["x"].astype(np.float32)), r"'x' must be float16"),
        (
            lambda mem: mem.update(x=torch.from_numpy(mem["x"]).to(torch.bfloat16)),
            r"activation 'x' must be float16, got torch.bfloat16",
        ),
        (lambda mem: mem.update(b=mem["b"][:4]), r"bias 'b'.*shape \[4\]"),
        (
            lambda mem: mem.update(w=quantize(torch.randn(8, 64), "bitmod4", 32)),
            r"weight is bitmod4, descriptor says bitmod3",
        ),
        (
            lambda mem: mem.update(w=quantize(torch.randn(8, 64), "bitmod3", 16)),
            r"group size 16, descriptor says 32",
        ),
        (
            lambda mem: mem.update(w=quantize(torch.randn(9, 64), "bitmod3", 32)),
            r"shape \[9, 64\], descriptor says 8x64",
        ),
        (lambda mem: mem.update(w=mem["x"]), r"'w' is a plain tensor"),
    ],
)
def test_memory_image_errors(memory_change, message) -> None:
    q, x, b, program = _simple()
    memory = {"x": x, "w": q, "b": b}
    memory_change(memory)
    with pytest.raises(MachineError, match=message):
        Machine(SMALL).run(program, memory)


def test_archive_missing_parameter_named() -> None:
    q, x, b, program = _simple()
    archive = ParamArchive()
    archive.put("b", b)
    with pytest.raises(MachineError, match=r"descriptor d1 \(qweight 'w'\).*'w' is not in"):
        Machine(SMALL).run(program, archive, inputs={"x": x})


def _run_code(code, descriptors=None, config=SMALL, memory=None):
    q, x, b = make_case("int8", 8, 16, 64, 32, 10)
    int8 = FORMAT_IDS["int8"]
    descriptors = descriptors or (
        Descriptor(0, DescKind.ACT, 8, 64),
        Descriptor(1, DescKind.QWEIGHT, 16, 64, int8, 8, 32),
        Descriptor(2, DescKind.OUT, 8, 16),
        Descriptor(3, DescKind.BIAS, 16, 1),
    )
    program = Program(("x", "w", "y", "b"), descriptors, tuple(code) + (Halt(),))
    return Machine(config).run(program, memory or {"x": x, "w": q, "b": b})


INT8 = FORMAT_IDS["int8"]
SETUP = (CfgArray(4, 4, 2), CfgFmt(INT8, 8, 32), CfgKchunk(64))
CHUNKED = (CfgArray(4, 4, 2), CfgFmt(INT8, 8, 32), CfgKchunk(32))


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ((CfgArray(8, 8, 16),), r"instruction 0 \(cfg.array\): program compiled for rows=8"),
        ((CfgArray(4, 4, 2), LdAct(0, None, None)), r"instruction 1 \(ld.act\): no cfg.kchunk"),
        ((*SETUP, Mac()), r"instruction 3 \(mac\): no activation block"),
        (
            (*SETUP, CfgFmt(FORMAT_IDS["int4"], 8, 32), LdWgt(1, None, None)),
            r"instruction 4 \(ld.wgt\): weight 'w' is int8 sb=8 g=32, but cfg.fmt set int4",
        ),
        (
            (CfgArray(4, 4, 2), CfgFmt(INT8, 8, 32), CfgKchunk(48), LdWgt(1, None, None)),
            r"K chunk 48 is not a multiple of the group size 32",
        ),
        (
            (*SETUP, Loop(0, 3), LdAct(0, 0, None), EndLoop(0)),
            r"instruction 4 \(ld.act\): block \(row block 2, all of K\) lies outside",
        ),
        (
            (*SETUP, Loop(0, 3), LdWgt(1, 0, None), EndLoop(0)),
            r"ld.wgt\): block \(column block 2, all of K\) lies outside",
        ),
        (
            (*CHUNKED, Loop(0, 3), LdWgt(1, None, 0), EndLoop(0)),
            r"ld.wgt\): block \(column block 0, K chunk 2\) lies outside",
        ),
        (
            (
                *CHUNKED,
                Loop(0, 1),
                LdAct(0, None, 0),
                EndLoop(0),
                Loop(1, 2),
                LdWgt(1, None, 1),
                EndLoop(1),
                Mac(),
            ),
            r"instruction 9 \(mac\): activation block is K chunk 0, weight block is K chunk 1",
        ),
        (
            (*CHUNKED, Loop(0, 1), LdAct(0, None, 0), EndLoop(0), LdWgt(1, None, None), Mac()),
            r"instruction 7 \(mac\): the weight block holds all of K, the activation block only "
            r"K chunk 0",
        ),
        (
            (
                *CHUNKED,
                Loop(0, 1),
                LdAct(0, None, 0),
                LdWgt(1, None, 0),
                Mac(),
                EndLoop(0),
                Drain(),
            ),
            r"instruction 8 \(drain\): K chunk\(s\) \[1\] of 2 never accumulated",
        ),
        (
            (
                *CHUNKED,
                LdAct(0, None, None),
                Loop(0, 1),
                LdWgt(1, None, 0),
                Mac(),
                EndLoop(0),
                Loop(0, 1),
                LdWgt(1, None, 0),
                Mac(),
                EndLoop(0),
            ),
            r"instruction 10 \(mac\): K chunk 0 accumulated twice",
        ),
        (
            (
                *CHUNKED,
                LdAct(0, None, None),
                Loop(0, 1),
                LdWgt(1, None, 0),
                Mac(),
                EndLoop(0),
                LdWgt(1, None, None),
                Mac(),
            ),
            r"instruction 9 \(mac\): K chunk 0 accumulated twice",
        ),
        ((CfgMblock(8),), r"instruction 0 \(cfg.mblock\): no cfg.array before it"),
        ((*SETUP, CfgMblock(6)), r"cfg.mblock\): blocks of 6 rows must be a multiple of the 4 PE"),
        ((*SETUP, CfgMblock(132)), r"at most the 128 rows the column accumulators hold"),
        (
            (*SETUP, LdAct(0, None, None), LdWgt(1, None, None), Mac(), Mac()),
            r"instruction 6 \(mac\): K chunk 0 accumulated twice",
        ),
        (
            (
                *SETUP,
                LdAct(0, None, None),
                LdWgt(1, None, None),
                Mac(),
                Loop(2, 2),
                LdAct(0, 2, None),
                EndLoop(2),
                Mac(),
            ),
            r"mac\): accumulators hold row block 0 x column block 0; this mac is row block 1",
        ),
        ((*SETUP, Drain()), r"instruction 3 \(drain\): nothing accumulated"),
        ((*SETUP, StOut(2, None, None)), r"instruction 3 \(st.out\): nothing drained"),
        (
            (
                *SETUP,
                Loop(1, 2),
                AccClr(),
                LdAct(0, None, None),
                LdWgt(1, None, None),
                Mac(),
                Drain(),
                StOut(2, 1, None),
                EndLoop(1),
            ),
            r"st.out\): stores at row block 1, column block 0, but the drained block is row "
            r"block 0",
        ),
    ],
)
def test_program_errors_name_the_instruction(code, message) -> None:
    with pytest.raises(MachineError, match=message):
        _run_code(code)


def test_buffer_overflow_names_the_instruction() -> None:
    config = dataclasses.replace(SMALL, weight_buffer_bytes=256)
    message = r"instruction 4 \(ld.wgt\): block of 544 bytes overflows the weight buffer \(256"
    with pytest.raises(MachineError, match=message):
        _run_code((*SETUP, LdAct(0, None, None), LdWgt(1, None, None)), config=config)
    config = dataclasses.replace(SMALL, act_buffer_bytes=256)
    message = r"instruction 3 \(ld.act\): block of 512 bytes overflows the activation buffer"
    with pytest.raises(MachineError, match=message):
        _run_code((*SETUP, LdAct(0, None, None)), config=config)


def test_unset_special_value_slot_is_an_error() -> None:
    q, x, b = make_case("bitmod3", 6, 8, 64, 32, 8)
    program = program_for(q, 6, SMALL, special_values=(3, -3))  # slots 2, 3 never set
    assert int(q.sv_index.max()) >= 2
    with pytest.raises(MachineError, match=r"mac\): weight groups select special-value slot"):
        Machine(SMALL).run(program, {"x": x, "w": q, "b": b})


def test_reading_an_output_before_it_is_stored_is_an_error() -> None:
    """Layer 2 reads all of 'h' after layer 1 stored only its first column block."""
    rng = np.random.default_rng(3)
    q1 = ref.random_quantized(rng, "int8", 16, 32, 16)
    q2 = ref.random_quantized(rng, "int8", 8, 16, 16)
    x = ref.random_activations(rng, 4, 32, "normal")
    text = """
    .desc x act "x" 4x32
    .desc w1 qweight "w1" 16x32 fmt=int8 sb=8 g=16
    .desc h out "h" 4x16
    .desc h_in act "h" 4x16
    .desc w2 qweight "w2" 8x16 fmt=int8 sb=8 g=16
    cfg.array rows=4 cols=4 tiles=2
    cfg.fmt fmt=int8 sb=8 g=16
    cfg.kchunk 32
    ld.wgt w1 col=- k=-
    ld.act x row=- k=-
    mac
    drain bias=-
    st.out h row=- col=-
    cfg.kchunk 16
    ld.act h_in row=- k=-
    halt
    """
    with pytest.raises(
        MachineError,
        match=r"instruction 9 \(ld.act\): reads rows 0.. K 0.. of "
        r"'h' before st.out wrote them",
    ):
        Machine(SMALL).run(assemble(text), {"x": x, "w1": q1, "w2": q2})


def test_inf_activation_is_an_error_naming_the_mac() -> None:
    q, x, b, program = _simple()
    x = x.copy()
    x[5, 40] = np.inf
    with pytest.raises(
        MachineError,
        match=r"\(mac\): activation 'x' row block 1, all of K: "
        r"activation inf at index \[1, 40\] is Inf/NaN",
    ):
        Machine(SMALL).run(program, {"x": x, "w": q, "b": b})


def test_wrong_output_shape_and_bias_length() -> None:
    q, x, b = make_case("int8", 8, 16, 64, 32, 10)
    base = (*SETUP, LdAct(0, None, None), LdWgt(1, None, None), Mac())
    bad_out = (
        Descriptor(0, DescKind.ACT, 8, 64),
        Descriptor(1, DescKind.QWEIGHT, 16, 64, INT8, 8, 32),
        Descriptor(2, DescKind.OUT, 8, 12),
        Descriptor(3, DescKind.BIAS, 16, 1),
    )
    with pytest.raises(
        MachineError,
        match=r"st.out\): output 'y' is 8x12, the matmul of 'x' "
        r"and 'w' is 8x16",
    ):
        _run_code((*base, Drain(), StOut(2, None, None)), descriptors=bad_out)


NO_OUTPUT = (
    Descriptor(0, DescKind.ACT, 8, 64),
    Descriptor(1, DescKind.QWEIGHT, 16, 64, FORMAT_IDS["int8"], 8, 32),
    Descriptor(3, DescKind.BIAS, 16, 1),
)


def test_nop_costs_a_cycle_and_empty_program_runs() -> None:
    # one controller cycle each, the halt _run_code appends too
    assert _run_code((Nop(), Nop(), Nop()), NO_OUTPUT).report.cycles == 4
    assert _run_code((), NO_OUTPUT).report.cycles == 1


def test_an_output_the_program_never_stores_is_an_error_not_zeros() -> None:
    with pytest.raises(MachineError, match=r"output 'y' \(8x16\) is never stored"):
        _run_code((AccClr(), CfgSv(0, 1)))


def test_row_groups_rule_against_a_plain_reference() -> None:
    """``rules.row_groups`` (vectorized) against ``tile_groups`` (scalar loops): the most groups
    of equal power-of-two width, each holding the block's tiles, that fit the array, capped by
    the limit."""
    for cols, tiles, limit in [(8, 16, 4), (4, 2, 4), (4, 12, 8), (8, 16, 1), (2, 7, 2)]:
        channels = np.arange(0, cols * tiles + 1)
        got = row_groups(channels, cols, tiles, limit)
        for ch, groups in zip(channels, got, strict=True):
            assert groups == tile_groups(int(ch), cols, tiles, limit), (cols, tiles, limit, ch)


@pytest.mark.parametrize("order", ORDERS)
def test_row_groups_keep_results_and_cut_the_sweeps_by_hand(order: str) -> None:
    """N = 6 channels on 4 tiles of 4 columns fill 2 tiles: two groups of two tiles take two
    row passes at once. A 16-row block (4 passes of 4 rows) makes 2 sweeps instead of 4; the
    outputs are bit-identical to the machine without row groups."""
    config = HardwareConfig(rows=4, cols=4, tiles=4, dram_bytes_per_cycle=8.0)
    plain = dataclasses.replace(config, row_groups=1)
    m, n, k, group = 13, 6, 64, 32
    q, x, b = make_case("bitmod3", m, n, k, group, 11)
    kchunk = 0 if order == "weights-resident" else 32
    program = program_for(q, m, config, order=order, block_rows=16, kchunk=kchunk)
    grouped = Machine(config).run(program, {"x": x, "w": q, "b": b})
    alone = Machine(plain).run(program, {"x": x, "w": q, "b": b})
    assert fp16_bits_equal(grouped.outputs["y"], alone.outputs["y"])
    # passes = ceil(13/4) = 4; bitmod3 has 2 terms: K/4 steps x 2 cycles per sweep
    steps = k // 4 * num_terms("bitmod3")
    assert alone.report.cycles_by_cause["compute"] == 4 * steps
    assert grouped.report.cycles_by_cause["compute"] == 2 * steps
    assert grouped.report.cycles_by_cause["drain"] <= alone.report.cycles_by_cause["drain"]
    assert grouped.report.cycles < alone.report.cycles
    # the weight terms go out once a sweep
    assert (
        grouped.report.buffer_bytes_read["weight"] * 2 == alone.report.buffer_bytes_read["weight"]
    )
