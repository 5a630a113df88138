"""Ragged groups through the compiler, the emulator and the perf model (K % G != 0, K % 4 != 0).

The last group of each row holds ``K mod G`` weights. Evidence:

* the fast PE model and the machine against the scalar reference PE
  (``runtime/emulator/reference_pe.py``, one PE, one cycle at a time), bit for bit;
* the machine's cycles by hand: a short group's partial sum reaches the dequantizer after
  fewer steps and may wait longer for it;
* the perf model against the machine on compiled ragged GEMMs (bytes and busy cycles exact);
* ``bitmod-opt`` on the FileCheck MLP with K = 200 (``tests/filecheck/bitmod-opt/ragged-k.mlir``)
  and ``bitmod.compile`` of linears with K = 200 and 70, executed and compared with the
  reference.
"""

from __future__ import annotations

import subprocess
import sys
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from bitmod.runtime.arch.hwconfig import HardwareConfig
from bitmod.runtime.arch.nest import matmul_program
from bitmod.runtime.arch.schedule import ArraySpec, MacTiming, plan_bitmod_matmul
from bitmod.runtime.arch.timing import MAC_PIPELINE_CYCLES
from bitmod.runtime.emulator import pe
from bitmod.runtime.emulator import reference_pe as ref
from bitmod.runtime.emulator.machine import Machine
from bitmod.runtime.formats import get_format, quantize
from bitmod.runtime.formats.bitserial import quantized_terms
from bitmod.runtime.perf.model import GemmTable, accelerator, simulate
from bitmod.runtime.storage.archive import ParamArchive

SMALL = HardwareConfig(rows=4, cols=4, tiles=2)
ROOT = Path(__file__).resolve().parent


def fp16_bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a.view(np.uint16), b.view(np.uint16))


def reference_y(q, x: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    _, _, y = ref.reference_matmul(
        x,
        quantized_terms(q),
        q.scales.numpy().astype(np.int64),
        q.channel_scale.numpy(),
        q.group_size,
        bias,
    )
    return y


@pytest.mark.parametrize("fmt", ["int8", "int6", "int4_asym", "bitmod3", "bitmod4", "fp4_ea_neg"])
@pytest.mark.parametrize(("k", "group"), [(72, 32), (70, 16), (6, 16)])
def test_fast_pe_matches_the_scalar_reference_on_ragged_k(fmt: str, k: int, group: int) -> None:
    rng = np.random.default_rng(zlib.crc32(f"{fmt}{k}{group}".encode()))
    m, n = 3, 4
    q = ref.random_quantized(rng, fmt, n, k, group)
    assert q.n_groups == -(-k // group) and q.last_group_size == k - (q.n_groups - 1) * group
    terms = quantized_terms(q)
    act = ref.random_activations(rng, m, k, "wide")
    codes = q.scales.numpy().astype(np.int64)
    ref_acc, ref_column, ref_y = ref.reference_matmul(
        act, terms, codes, q.channel_scale.numpy(), group
    )
    weights = pe.prepare_weights(terms)
    acc = pe.group_accumulators(act, weights, group)
    column = pe.accumulate_groups(
        np.zeros(acc.shape[:2], np.float32), pe.dequantize_groups(acc, codes)
    )
    y = pe.drain(column, q.channel_scale.numpy())
    assert acc.shape == (m, n, q.n_groups)
    assert np.array_equal(acc, ref_acc.astype(np.int64))
    assert all(
        Fraction(float(column[i, j])) == ref_column[i, j] for i in range(m) for j in range(n)
    )
    assert fp16_bits_equal(y, ref_y)


@pytest.mark.parametrize(
    ("fmt", "m", "n", "k", "group", "kchunk", "order", "block_rows"),
    [
        ("bitmod3", 9, 17, 200, 32, 0, None, 0),  # one chunk of all K = 6·32 + 8
        ("bitmod3", 9, 17, 200, 32, 64, None, 0),  # chunks 64, 64, 64, 8: a short last chunk
        ("int4_asym", 7, 9, 100, 32, 0, "acts-resident", 8),  # 3·32 + 4
        ("bitmod4", 13, 20, 70, 16, 32, "k-streamed", 8),  # K % 4 = 2: a 2-lane last step
        ("int8", 5, 12, 36, 16, 0, "weights-resident", 4),
    ],
)
def test_machine_matches_the_scalar_reference_on_ragged_k(
    fmt, m, n, k, group, kchunk, order, block_rows
) -> None:
    rng = np.random.default_rng(zlib.crc32(f"{fmt}{m}{n}{k}{kchunk}".encode()))
    q = ref.random_quantized(rng, fmt, n, k, group)
    x = ref.random_activations(rng, m, k, "normal")
    b = rng.standard_normal(n).astype(np.float16)
    program = matmul_program(
        act="x",
        weight="w",
        out="y",
        m=m,
        n=n,
        k=k,
        fmt=fmt,
        group_size=group,
        special_values=get_format(fmt).special_values,
        config=SMALL,
        kchunk=kchunk,
        order=order,
        block_rows=block_rows,
        bias="b",
    )
    result = Machine(SMALL).run(program.encode(), {"x": x, "w": q, "b": b})
    assert fp16_bits_equal(result.outputs["y"], reference_y(q, x, b))


def test_a_short_group_is_dequantized_after_fewer_steps() -> None:
    # bitmod3 (2 terms a step), G = 8, SB = 8, K = 36, 4 PE rows: groups end >= SB + 4 = 12
    # cycles apart (the bit-serial dequantization, then the column accumulator's 4 PEs; docs/
    # rtl.md): four groups of 2 steps (4 cycles: each waits 12 - 4 = 8, the first excepted) and
    # a group of 4 weights (1 step, 2 cycles: waits 12 - 2 = 10); then the tail of 4 pipeline
    # cycles, the last group's SB = 8 and its 4 column cycles. One pass of 4 rows.
    config = HardwareConfig(rows=4, cols=4, tiles=1, dram_bytes_per_cycle=1e6)
    rng = np.random.default_rng(3)
    q = ref.random_quantized(rng, "bitmod3", 4, 36, 8)
    x = ref.random_activations(rng, 4, 36, "normal")
    program = matmul_program(
        act="x",
        weight="w",
        out="y",
        m=4,
        n=4,
        k=36,
        fmt="bitmod3",
        group_size=8,
        special_values=get_format("bitmod3").special_values,
        config=config,
    )
    report = Machine(config).run(program, {"x": x, "w": q}).report
    assert report.cycles_by_cause["compute"] == 9 * 2
    tail = MAC_PIPELINE_CYCLES + 8 + 4
    assert report.cycles_by_cause["dequant_tail"] == 3 * 8 + 10 + tail
    timing = MacTiming.bit_serial("bitmod3", 8, 8, rows=4)
    assert [int(c) for c in timing.cycles(1, 36)] == [18, 3 * 8 + 10 + tail]
    assert [int(c) for c in timing.cycles(2, 36)] == [36, 2 * (4 * 8 + 10) - 8 + tail]
    # a whole-group K: (groups - 1)·s + the tail
    assert [int(c) for c in timing.cycles(3, 32)] == [48, (12 - 1) * 8 + tail]


def _one_gemm(m: int, n: int, k: int) -> GemmTable:
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


@pytest.mark.parametrize(
    ("fmt", "m", "n", "k", "bandwidth"),
    [
        ("bitmod3", 1, 1024, 576, 25.6),  # SmolLM2's K: 4 groups + 64
        ("bitmod4", 64, 256, 1600, 51.2),  # 12 groups + 64, compute-bound
        ("int8", 128, 256, 200, 51.2),
    ],
)
def test_perf_model_costs_ragged_gemms_as_the_machine_runs_them(fmt, m, n, k, bandwidth) -> None:
    config = HardwareConfig(dram_bytes_per_cycle=bandwidth)
    generator = torch.Generator().manual_seed(k)
    q = quantize(torch.randn(n, k, generator=generator), fmt)
    assert q.last_group_size == k % 128
    x = torch.randn(m, k, generator=generator).to(torch.float16).numpy()
    schedule = plan_bitmod_matmul(
        m, n, k, fmt=fmt, group_size=128, scale_bits=8, array=ArraySpec.of(config)
    )
    program = matmul_program(
        act="x",
        weight="fc.weight",
        out="y",
        m=m,
        n=n,
        k=k,
        fmt=fmt,
        group_size=128,
        special_values=get_format(fmt).special_values,
        config=config,
    )
    report = Machine(config).run(program, {"x": x, "fc.weight": q}).report
    predicted = simulate(
        accelerator("bitmod-lossy", "llama-2-7b", "discriminative", weight_fmt=fmt),
        _one_gemm(m, n, k),
        config,
    )
    assert report.dram_bytes_read == predicted.dram_read_bytes == schedule.dram_read
    assert report.dram_bytes_written == predicted.dram_write_bytes
    assert report.pe_cycles_busy == predicted.compute_cycles == schedule.compute_cycles
    assert abs(report.cycles / predicted.cycles - 1) <= 0.10


def test_bitmod_opt_ragged_mlp_binary_runs_on_the_emulator(tmp_path) -> None:
    source = ROOT / "filecheck" / "bitmod-opt" / "ragged-k.mlir"
    binary = tmp_path / "mlp.bin"
    subprocess.run(
        [sys.executable, "-m", "bitmod.compiler.tools.bitmod_opt", str(source)]
        + ["--pipeline", "bitmod-default", "--emit", "bin", "-o", str(binary)],
        check=True,
    )
    archive = ParamArchive.load(tmp_path / "mlp.params.safetensors")
    fc1, fc2 = archive.get_quantized("fc1.weight"), archive.get_quantized("fc2.weight")
    assert (fc1.shape, fc1.group_size, fc1.n_groups, fc1.last_group_size) == ((64, 200), 128, 2, 72)
    x = np.random.default_rng(0).standard_normal((4, 200)).astype(np.float16)
    result = Machine().run(binary.read_bytes(), archive, {"x": x})
    hidden = reference_y(fc1, x)
    assert fp16_bits_equal(result.outputs["h"], hidden)
    assert fp16_bits_equal(result.outputs["result0"], reference_y(fc2, hidden))


@pytest.mark.parametrize("k", [200, 70])
def test_compile_runs_ragged_linears_bit_exactly_without_padding(k: int) -> None:
    import bitmod

    torch.manual_seed(k)
    model = torch.nn.Linear(k, 12)
    x = torch.randn(3, k)
    compiled = bitmod.compile(model, (x,), dtype="bitmod3")
    (op,) = compiled.ops.values()
    assert op.plan.k_padded == k and op.op.mkn == (3, k, 12)
    run = compiled.run((x,), record=True)
    (record,) = run.records
    assert record.act.shape == (3, k)  # the FP16 activation as loaded: no padding
    q = compiled.archive.get_quantized(op.binding.weight)
    assert q.shape == (12, k)
    bias = model.bias.detach().to(torch.float16).numpy()
    assert fp16_bits_equal(record.out.numpy(), reference_y(q, record.act.numpy(), bias))
