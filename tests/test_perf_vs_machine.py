"""The analytical model (runtime.perf) against the emulator (runtime.machine) on compiled GEMMs.

For one GEMM ``Y = X · Wᵀ`` the compiler (``bitmod-tile`` + ``bitmod-lower-to-isa``) emits a
program, ``Machine.run`` executes it instruction by instruction with its event-driven DMA /
PE / drain timing, and ``perf.simulate`` predicts it in closed form. Both must describe the
same hardware doing the same thing:

* the bytes moved over DRAM and through the buffers are the same, exactly (the model counts
  the loads and stores of the schedule the compiler picked);
* the busy cycles of the PE array are the same, exactly;
* total cycles agree within ``TOLERANCE`` — the closed form overlaps loads with compute by
  ``max(compute, bytes / B)`` and adds the unoverlapped first loads, last drain and store
  and single-buffered reloads, where the machine plays every transfer out on the channel.

Shapes: GEMVs (M = 1) and prefill slices (128 / 256 tokens, 256 output channels) at
K = 4096 and 11008 for the weight formats the paper runs (BitMoD-3/4, INT6, INT8), memory-
bound on one DDR4 channel and compute-bound on two; then the schedule each *full*
Llama-2-7B projection gets, forced onto a slice of its columns (column blocks are
independent and identical, so a slice runs the full layer's loop order, block rows and K
chunk at a fraction of the emulation time).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from bitmod.backends.emit import module_to_program
from bitmod.compiler.ir_io import parse_module
from bitmod.passes.bitmod_lower_to_isa import BitmodLowerToIsaPass
from bitmod.passes.bitmod_tile import BitmodTilePass
from bitmod.passes.context import make_context
from bitmod.runtime.arch.hwconfig import HardwareConfig
from bitmod.runtime.arch.nest import matmul_program
from bitmod.runtime.arch.schedule import ArraySpec, Schedule, plan_bitmod_matmul
from bitmod.runtime.emulator.machine import Machine, Report
from bitmod.runtime.formats import QuantizedTensor, get_format, quantize
from bitmod.runtime.isa import Program
from bitmod.runtime.perf.model import GemmTable, accelerator, simulate

TOLERANCE = 0.10
CONFIG = HardwareConfig()  # one DDR4-3200 channel: 25.6 B/cycle
TWO_CHANNELS = HardwareConfig(dram_bytes_per_cycle=51.2)


def gemm(fmt: str, m: int, n: int, k: int, seed: int) -> tuple[QuantizedTensor, np.ndarray]:
    generator = torch.Generator().manual_seed(seed)
    q = quantize(torch.randn(n, k, generator=generator), fmt)
    x = torch.randn(m, k, generator=generator).to(torch.float16).numpy()
    return q, x


def compiled_program(q: QuantizedTensor, m: int, config: HardwareConfig) -> Program:
    """``x @ fc.weight.T`` through bitmod-tile (for ``config``) and bitmod-lower-to-isa."""
    n, k = q.shape
    qtype = f"!bitmod.qweight<{n}x{k}, {q.fmt}, {q.group_size}>"
    text = (
        f"func.func @f(%x: tensor<{m}x{k}xf32>) -> tensor<{m}x{n}xf32> {{\n"
        f'  %w = bitmod.param "fc.weight" : tensor<{n}x{k}xf32>\n'
        f'  %q = bitmod.quantize %w into "fc.weight" : tensor<{n}x{k}xf32> -> {qtype}\n'
        f"  %y = bitmod.matmul %x, %q : (tensor<{m}x{k}xf32>, {qtype}) -> tensor<{m}x{n}xf32>\n"
        f"  func.return %y : tensor<{m}x{n}xf32>\n}}\n"
    )
    ctx = make_context()
    module = parse_module(ctx, text, "gemm.mlir")
    BitmodTilePass(dram_bytes_per_cycle=config.dram_bytes_per_cycle).apply(ctx, module)
    BitmodLowerToIsaPass().apply(ctx, module)
    return module_to_program(module)


def run(
    program: Program, q: QuantizedTensor, x: np.ndarray, config: HardwareConfig = CONFIG
) -> Report:
    return Machine(config).run(program, {"x": x, "fc.weight": q}).report


def one_gemm(m: int, n: int, k: int) -> GemmTable:
    def column(value: object) -> np.ndarray:
        return np.asarray([value])

    return GemmTable(
        name=column("fc"),
        phase=column("prefill"),
        operand=column("weight"),
        m=column(m),
        n=column(n),
        k=column(k),
        count=column(1),
    )


def assert_agree(report: Report, cycles: float, read: float, written: float, busy: float) -> None:
    assert report.dram_bytes_read == read
    assert report.dram_bytes_written == written
    assert report.pe_cycles_busy == busy
    assert abs(report.cycles / cycles - 1) <= TOLERANCE, (report.cycles, cycles)


@pytest.mark.parametrize(
    ("fmt", "m", "n", "k", "config", "bound"),
    [
        ("bitmod3", 1, 1024, 4096, CONFIG, "memory"),
        ("bitmod4", 1, 1024, 11008, CONFIG, "memory"),
        ("int6", 1, 1024, 4096, CONFIG, "memory"),
        ("int8", 1, 1024, 11008, CONFIG, "memory"),
        ("bitmod3", 256, 256, 4096, CONFIG, "memory"),
        ("bitmod4", 128, 256, 11008, CONFIG, "memory"),
        ("int8", 256, 256, 4096, TWO_CHANNELS, "compute"),
        ("int6", 128, 256, 11008, TWO_CHANNELS, "compute"),
    ],
)
def test_perf_predicts_the_machine_on_the_compiled_program(
    fmt: str, m: int, n: int, k: int, config: HardwareConfig, bound: str
) -> None:
    q, x = gemm(fmt, m, n, k, seed=m + k)
    report = run(compiled_program(q, m, config), q, x, config)
    acc = accelerator("bitmod-lossy", "llama-2-7b", "discriminative", weight_fmt=fmt)
    predicted = simulate(acc, one_gemm(m, n, k), config)
    assert_agree(
        report,
        predicted.cycles,
        predicted.dram_read_bytes,
        predicted.dram_write_bytes,
        predicted.compute_cycles,
    )
    assert sum(report.buffer_bytes_read.values()) == predicted.sram_read_bytes
    assert sum(report.buffer_bytes_written.values()) == predicted.sram_write_bytes
    # Energy from the same counts: PE and encoder cycles, SRAM and DRAM bytes.
    machine_sram = sum(report.energy_pj[f"{b}_buffer"] for b in ("act", "weight", "out"))
    assert machine_sram == pytest.approx(predicted.energy_pj["sram"])
    for component in ("pe", "encoder", "dram"):
        assert report.energy_pj[component] == pytest.approx(predicted.energy_pj[component])
    compute_bound = report.cycles <= 1.10 * report.pe_cycles_busy
    assert compute_bound == (bound == "compute")


def full_layer_schedule(fmt: str, n: int, k: int) -> Schedule:
    q = get_format(fmt)
    assert q.accelerated
    return plan_bitmod_matmul(
        256, n, k, fmt=fmt, group_size=128, scale_bits=8, array=ArraySpec.of(CONFIG)
    )


@pytest.mark.parametrize(
    ("fmt", "n", "k", "order", "block_rows", "act_slots"),
    [
        # Llama-2-7B q/k/v/o projections (N = K = 4096) at 256 tokens; the down projection's
        # schedule (k-streamed, blocks as deep as the accumulators) is the compiled bitmod4
        # case above.
        # 64-row blocks streamed in K chunks, rows outside: a row block's activation chunks
        # (512 KB in all) stay for every column block, the weights are read once per row
        # block, and the first mac waits for one chunk, not a whole 512 KB block
        ("bitmod3", 4096, 4096, "k-streamed-rows", 64, 2),
        ("int8", 4096, 4096, "k-streamed-rows", 64, 2),
    ],
)
def test_full_layer_schedules_on_a_slice(
    fmt: str, n: int, k: int, order: str, block_rows: int, act_slots: int
) -> None:
    full = full_layer_schedule(fmt, n, k)
    assert (full.order, full.block_rows, full.act_slots) == (order, block_rows, act_slots)
    m, slice_n = 256, 256
    forced = {"order": full.order, "block_rows": full.block_rows, "kchunk": full.kc}
    predicted = plan_bitmod_matmul(
        m,
        slice_n,
        k,
        fmt=fmt,
        group_size=128,
        scale_bits=8,
        array=ArraySpec.of(CONFIG),
        **forced,
    )
    q, x = gemm(fmt, m, slice_n, k, seed=7)
    program = matmul_program(
        act="x",
        weight="fc.weight",
        out="y",
        m=m,
        n=slice_n,
        k=k,
        fmt=fmt,
        group_size=128,
        special_values=get_format(fmt).special_values,
        config=CONFIG,
        **forced,
    )
    report = run(program, q, x)
    assert_agree(
        report,
        predicted.cycles,
        predicted.dram_read,
        predicted.dram_written,
        predicted.compute_cycles,
    )
