"""The analytical cycle/energy model against hand-computed values and plain references."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import numpy as np
import pytest
from bitmod.runtime.arch.hwconfig import HardwareConfig
from bitmod.runtime.arch.timing import MAC_PIPELINE_CYCLES
from bitmod.runtime.perf.model import (
    ACCELERATORS,
    ANT_WEIGHT_BITS,
    OLIVE_WEIGHT_BITS,
    TASKS,
    GemmTable,
    accelerator,
    build_workload,
    gemm_plans,
    load_llm_shapes,
    simulate,
)

from tests.test_schedule import tile_groups

SHAPES = load_llm_shapes()
#: A BitMoD mac's cycles after its last step on 8 PE rows with 8 scale bits (docs/rtl.md).
MAC_TAIL = MAC_PIPELINE_CYCLES + 8 + 8
FAST_DRAM = HardwareConfig().with_dram_gbps(1e9)  # effectively infinite bandwidth


def one_gemm(m: int, n: int, k: int, operand: str = "weight", count: int = 1) -> GemmTable:
    return GemmTable(
        name=np.asarray(["g"]),
        phase=np.asarray(["prefill"]),
        operand=np.asarray([operand]),
        m=np.asarray([m], dtype=np.int64),
        n=np.asarray([n], dtype=np.int64),
        k=np.asarray([k], dtype=np.int64),
        count=np.asarray([count], dtype=np.int64),
    )


def brief_formula(m: int, n: int, k: int, terms: int, cfg: HardwareConfig) -> float:
    """The MAC cycles of a compute-bound GEMM: ⌈M/rows⌉·⌈N/cols⌉·⌈K/4⌉·terms / tiles."""
    return math.ceil(m / cfg.rows) * math.ceil(n / cfg.cols) * math.ceil(k / 4) * terms / cfg.tiles


# --------------------------------------------------------------------------------------
# Compute-bound GEMMs
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "terms"), [("int8", 4), ("int6", 3), ("bitmod4", 2), ("bitmod3", 2), ("fp4", 2)]
)
def test_compute_bound_bitmod_matches_the_formula(fmt: str, terms: int) -> None:
    cfg = FAST_DRAM
    m, n, k = 256, 4096, 4096
    acc = accelerator("bitmod-lossy", "llama-2-7b", "discriminative", weight_fmt=fmt)
    result = simulate(acc, one_gemm(m, n, k), cfg)
    formula = brief_formula(m, n, k, terms, cfg)
    # Hand computed: 32 row passes of 8 rows · 32 column blocks (128 columns) = 1024 passes
    # of 1024 steps · terms cycles, plus per mac (the MR rows of one block and one K chunk)
    # the RTL pipeline's tail: 4 cycles, 8 of the last group's bit-serial dequantization and 8
    # of the column accumulator taking its 8 PEs (docs/rtl.md).
    plans = gemm_plans(one_gemm(m, n, k), acc, cfg)
    macs = int(plans.m_blocks[0] * plans.n_blocks[0] * plans.k_chunks[0])
    assert result.compute_cycles == 1024 * 1024 * terms + MAC_TAIL * macs
    assert formula == 1024 * 1024 * terms
    assert abs(result.cycles - formula) / formula < 0.10


def test_compute_cycles_against_an_explicit_pass_loop() -> None:
    """Enumerate the schedule's macs, passes and groups one by one (plain loops)."""
    cfg = HardwareConfig()
    acc = accelerator("bitmod-lossless", "llama-2-7b", "discriminative")
    rows, columns = cfg.rows, cfg.cols * cfg.tiles
    for m, n, k in [(1, 1, 128), (9, 129, 256), (17, 300, 512), (256, 512, 4096), (70, 64, 11008)]:
        plans = gemm_plans(one_gemm(m, n, k), acc, cfg)
        block_rows, kc = int(plans.block_rows[0]), int(plans.kc[0])
        expected = 0
        for col0, row0, k0 in itertools.product(
            range(0, n, columns), range(0, m, block_rows), range(0, k, kc)
        ):
            passes = math.ceil(min(block_rows, m - row0) / rows)
            # a block of few channels runs its passes on tile groups at once (row groups)
            sweeps = math.ceil(passes / tile_groups(min(columns, n - col0)))
            for _sweep, g0 in itertools.product(range(sweeps), range(k0, min(k, k0 + kc), 128)):
                expected += math.ceil(min(128, k - g0) / 4) * 3  # INT6: 3 Booth terms a step
            expected += MAC_TAIL  # the mac's pipeline, last dequantization and column drain
        assert plans.compute_cycles[0] == expected, (m, n, k)


def test_bit_parallel_pes_do_one_mac_per_cycle_at_iso_area() -> None:
    cfg = FAST_DRAM
    m, n, k = 64, 1600, 256
    for name, kind in [("fp16", "fp16"), ("ant", "ant"), ("olive", "olive"), ("mixpe", "mixpe")]:
        acc = accelerator(name, "llama-2-7b", "discriminative")
        columns = cfg.iso_area_pe_count(kind) // cfg.rows
        plans = gemm_plans(one_gemm(m, n, k), acc, cfg)
        macs = plans.m_blocks[0] * plans.n_blocks[0] * plans.k_chunks[0]
        tail = 1 if name == "mixpe" else 0  # MixPE: one dequantization cycle a mac
        expected = math.ceil(m / 8) * math.ceil(n / columns) * k + tail * macs
        result = simulate(acc, one_gemm(m, n, k), cfg)
        assert result.compute_cycles == expected, name
        assert result.pe_count == cfg.iso_area_pe_count(kind)
    # FP16: 800 PEs = 8 × 100 -> 8 · 16 · 256 cycles.
    fp16 = simulate(accelerator("fp16", "llama-2-7b", "discriminative"), one_gemm(m, n, k), cfg)
    assert fp16.compute_cycles == 8 * 16 * 256


def test_pe_count_override() -> None:
    acc = accelerator("ant", "llama-2-7b", "discriminative")
    result = simulate(acc, one_gemm(8, 1024, 128), FAST_DRAM, pe_count=1024)
    assert result.pe_count == 1024
    assert result.compute_cycles == 1 * 8 * 128
    with pytest.raises(ValueError, match="whole columns"):
        simulate(acc, one_gemm(8, 8, 8), FAST_DRAM, pe_count=1001)


# --------------------------------------------------------------------------------------
# Memory-bound GEMMs and the refetch model
# --------------------------------------------------------------------------------------


def test_memory_bound_gemv_is_bytes_over_bandwidth() -> None:
    cfg = HardwareConfig()  # 25.6 B/cycle
    n, k = 4096, 4096
    fp16 = simulate(accelerator("fp16", "llama-2-7b", "generative"), one_gemm(1, n, k), cfg)
    bytes_moved = n * k * 2 + k * 2 + n * 2  # FP16 weights + input vector + output vector
    assert fp16.dram_read_bytes + fp16.dram_write_bytes == bytes_moved
    # + the last block's drain (8 cycles), which nothing overlaps; timed exactly (the
    # machine's cycles), the channel also idles a few cycles per column block
    assert bytes_moved / 25.6 + 8 <= fp16.cycles <= 1.01 * (bytes_moved / 25.6 + 8)

    acc = accelerator("bitmod-lossy", "llama-2-7b", "generative")
    lossy = simulate(acc, one_gemm(1, n, k), cfg)
    # FP3 codes + per group (128) an INT8 scale and a 2-bit SV index + an FP16 channel scale
    # per channel and K chunk.
    chunks = int(gemm_plans(one_gemm(1, n, k), acc, cfg).k_chunks[0])
    weight_bytes = n * (k * 3 // 8 + (k // 128) * 10 // 8 + 2 * chunks)
    bytes_moved = weight_bytes + k * 2 + n * 2
    assert lossy.dram_read_bytes + lossy.dram_write_bytes == bytes_moved
    # Timed exactly (the machine's cycles): the channel also idles a few cycles per column
    # block between a weight block and the store before it.
    assert bytes_moved / 25.6 + 8 <= lossy.cycles <= 1.01 * (bytes_moved / 25.6 + 8)
    assert lossy.cycles > lossy.compute_cycles


def test_prefill_traffic_follows_the_chosen_loop_order() -> None:
    """FP16 256 x 11008 x 4096 (Llama-2-7B gate projection): 90 MB of weights, 2 MB of
    activations. Blocks of 64 rows stream in K chunks with the row loop outside
    (k-streamed-rows): a row block's chunks (512 KiB in all) stay in the buffer while the
    weights stream past for every column block: activations read once, weights once per 64
    rows, and the first mac waits for one chunk of the rows, not all of K."""
    cfg = HardwareConfig()
    m, n, k = 256, 11008, 4096
    acc = accelerator("fp16", "llama-2-7b", "discriminative")
    plans = gemm_plans(one_gemm(m, n, k), acc, cfg)
    schedule = plans.schedule()
    assert (schedule.order, schedule.block_rows, schedule.act_slots) == ("k-streamed-rows", 64, 2)
    w_bytes, x_bytes = n * k * 2, m * k * 2
    assert schedule.dram_read == x_bytes + (m // 64) * w_bytes
    assert schedule.dram_written == m * n * 2
    # An 8-row GEMV-like prefill reads each operand once whatever the order.
    small = gemm_plans(one_gemm(8, n, k), acc, cfg).schedule()
    assert small.dram_read == w_bytes + 8 * k * 2


def test_cycles_are_max_of_compute_and_memory_plus_fixed_parts() -> None:
    cfg = HardwareConfig()
    workload = build_workload(SHAPES["opt-1.3b"], "generative")
    for name in ACCELERATORS:
        result = simulate(accelerator(name, "opt-1.3b", "generative"), workload, cfg)
        lower = max(result.compute_cycles, result.dram_cycles)
        # Above: the fixed parts (first loads, last drain and store) and stalls of
        # single-buffered reloads, a fraction of the whole.
        assert lower <= result.cycles <= 1.2 * lower
        assert result.phase_cycles["prefill"] + result.phase_cycles["decode"] == pytest.approx(
            result.cycles
        )


def test_lower_bandwidth_never_speeds_up() -> None:
    workload = build_workload(SHAPES["phi-2"], "discriminative")
    acc = accelerator("bitmod-lossless", "phi-2", "discriminative")
    times = [
        simulate(acc, workload, HardwareConfig().with_dram_gbps(gbps)).cycles
        for gbps in (6.4, 12.8, 25.6, 51.2, 1e6)
    ]
    assert times == sorted(times, reverse=True)


# --------------------------------------------------------------------------------------
# Storage and energy
# --------------------------------------------------------------------------------------


def test_energy_components_sum_and_match_hand_values() -> None:
    cfg = HardwareConfig()
    m, n, k = 1, 4096, 4096
    acc = accelerator("bitmod-lossy", "llama-2-7b", "generative")
    result = simulate(acc, one_gemm(m, n, k, count=3), cfg)
    e = result.energy_pj
    assert set(e) == {"pe", "encoder", "sram", "dram"}
    assert result.total_energy_pj == pytest.approx(sum(e.values()))
    # Compute: 1 row block · 32 column blocks · (1024 steps · 2 terms + the tail) cycles, 3 times.
    compute = 3 * 32 * (1024 * 2 + MAC_TAIL)
    assert result.compute_cycles == compute
    assert e["pe"] == pytest.approx(compute * 1024 * 37.5 / 64)
    # The encoder feeds terms during MAC steps only (not the tails).
    assert e["encoder"] == pytest.approx(3 * 32 * 1024 * 2 * 16 * 1.86)
    dram_bytes = result.dram_read_bytes + result.dram_write_bytes
    assert e["dram"] == pytest.approx(dram_bytes * 8 * 18.75)
    w_bytes = n * (k * 3 // 8 + 32 * 10 // 8 + 2)  # codes, scales + SV indices, channel scale
    sram_read = 3 * (w_bytes + 2 * k * 32 + 2 * n)
    sram_write = 3 * (w_bytes + 2 * k + 2 * n)  # DRAM fills + outputs
    assert result.sram_read_bytes == sram_read
    assert e["sram"] == pytest.approx(1.9 * sram_read + 2.1 * sram_write)
    fp16 = simulate(accelerator("fp16", "llama-2-7b", "generative"), one_gemm(m, n, k), cfg)
    assert fp16.energy_pj["encoder"] == 0.0


def test_energy_table_overrides_flow_through() -> None:
    cfg = HardwareConfig()
    cheap = dataclasses.replace(cfg, energy=dataclasses.replace(cfg.energy, dram_pj_per_bit=0.0))
    acc = accelerator("ant", "phi-2", "generative")
    work = one_gemm(1, 2560, 2560)
    assert simulate(acc, work, cheap).energy_pj["dram"] == 0.0
    assert simulate(acc, work, cfg).energy_pj["dram"] > 0.0


# --------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------


def test_shapes_from_published_configs() -> None:
    assert set(SHAPES) == {"opt-1.3b", "phi-2", "yi-6b", "llama-2-7b", "llama-2-13b", "llama-3-8b"}
    llama = SHAPES["llama-2-7b"]
    assert dict((n, (o, i)) for n, o, i in llama.linear_layers()) == {
        "q_proj": (4096, 4096),
        "k_proj": (4096, 4096),
        "v_proj": (4096, 4096),
        "o_proj": (4096, 4096),
        "gate_proj": (11008, 4096),
        "up_proj": (11008, 4096),
        "down_proj": (4096, 11008),
    }
    # GQA: Llama-3-8B has 8 KV heads of 128 -> k_proj is [1024, 4096].
    assert ("k_proj", 1024, 4096) in SHAPES["llama-3-8b"].linear_layers()
    assert ("k_proj", 512, 4096) in SHAPES["yi-6b"].linear_layers()
    # OPT and Phi-2 use fc1/fc2.
    assert [n for n, _, _ in SHAPES["opt-1.3b"].linear_layers()][-2:] == ["fc1", "fc2"]
    assert ("fc1", 10240, 2560) in SHAPES["phi-2"].linear_layers()
    # Parameter counts of the linear layers + LM head (embeddings excluded), in billions.
    expected = {"llama-2-7b": 6.61, "llama-2-13b": 12.85, "llama-3-8b": 7.50, "opt-1.3b": 1.31}
    for key, billions in expected.items():
        assert SHAPES[key].weight_count() / 1e9 == pytest.approx(billions, abs=0.01)


def test_discriminative_workload_macs() -> None:
    shape = SHAPES["llama-2-7b"]
    work = build_workload(shape, "discriminative")
    s, h, f, layers, v = 256, 4096, 11008, 32, 32000
    linear = s * (4 * h * h + 3 * h * f) * layers
    attention = 2 * s * s * h * layers  # Q·Kᵀ and P·V over all heads
    head = s * h * v
    assert work.macs() == linear + attention + head
    assert set(work.phase) == {"prefill"}


def test_generative_workload_decodes_255_steps_with_growing_context() -> None:
    shape = SHAPES["llama-3-8b"]
    work = build_workload(shape, "generative")
    decode = work.phase == "decode"
    qk = decode & (work.name == "attn_qk")
    assert sorted(work.n[qk].tolist()) == list(range(257, 512))
    assert set(work.m[qk].tolist()) == {4}  # 32 query heads share 8 KV heads
    assert set(work.count[qk].tolist()) == {32 * 8}
    linear = decode & (work.operand == "weight") & (work.name != "lm_head")
    assert set(work.m[linear].tolist()) == {1}
    assert set(work.count[linear].tolist()) == {32 * 255}
    head = work.name == "lm_head"
    assert sorted(zip(work.phase[head], work.m[head], work.count[head], strict=True)) == [
        ("decode", 1, 255),
        ("prefill", 1, 1),
    ]


def test_accelerator_precisions_follow_the_paper_setup() -> None:
    for model in SHAPES:
        for task in TASKS:
            lossy = accelerator("bitmod-lossy", model, task)
            assert lossy.weight.label == ("bitmod4" if task == "discriminative" else "bitmod3")
            assert accelerator("bitmod-lossless", model, task).weight.label == "int6"
            ant = accelerator("ant", model, task)
            assert ant.weight.value_bits == ANT_WEIGHT_BITS[model]
            assert accelerator("olive", model, task).weight.value_bits == OLIVE_WEIGHT_BITS[model]
            assert accelerator("fp16", model, task).weight.value_bits == 16
    # ANT and OliVe need more bits than 3-bit BitMoD for generation (paper V-C).
    assert min(ANT_WEIGHT_BITS.values()) > 3 and min(OLIVE_WEIGHT_BITS.values()) > 3


def test_bad_inputs_raise_clear_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="unknown accelerator 'tpu'"):
        accelerator("tpu", "phi-2", "generative")
    with pytest.raises(ValueError, match="unknown task"):
        accelerator("fp16", "phi-2", "translation")
    with pytest.raises(ValueError, match="unknown task"):
        build_workload(SHAPES["phi-2"], "translation")
    with pytest.raises(ValueError, match="no BitMoD bit-serial lowering"):
        accelerator("bitmod-lossy", "phi-2", "generative", weight_fmt="mxfp4")
    with pytest.raises(ValueError, match="not an INT format"):
        accelerator("mixpe", "phi-2", "generative", weight_fmt="fp4")
    with pytest.raises(ValueError, match="2..8 bits"):
        accelerator("ant", "phi-2", "generative", weight_fmt="12")
    with pytest.raises(ValueError, match="no cited ant precision"):
        accelerator("ant", "gpt-5", "generative")
    bad = tmp_path / "shapes.json"
    bad.write_text(json.dumps({"models": {"m": {"hf_id": "x", "mlp": "gated"}}}))
    with pytest.raises(ValueError, match=r"shapes.json: model 'm' lacks field"):
        load_llm_shapes(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not an LLM shape table"):
        load_llm_shapes(bad)
    with pytest.raises(ValueError, match="cannot read"):
        load_llm_shapes(tmp_path / "missing.json")
