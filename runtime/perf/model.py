"""Analytical cycle and energy model of BitMoD and of the accelerators it is compared against.

Whole LLM workloads (:func:`build_workload`) in milliseconds: every accelerator
(:func:`accelerator`: FP16 baseline, ANT, OliVe, MixPE-style, lossless and lossy BitMoD, at
iso-area) is charged, GEMM by GEMM, the schedule the compiler's planner picks for it
(:mod:`bitmod.runtime.arch.schedule`), and :func:`simulate` sums cycles, traffic and energy.
Workloads, PE timing, the energy formulas, the comparison points and the cited precisions:
docs/perf-model.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from bitmod.runtime.arch.hwconfig import LANES, PE_KINDS, HardwareConfig
from bitmod.runtime.arch.schedule import ArraySpec, MacTiming, Plans, WeightLayout, plan
from bitmod.runtime.formats import get_format
from bitmod.runtime.formats.bitserial import num_terms
from bitmod.runtime.storage.jsontext import JsonError, parse_json

__all__ = [
    "ACCELERATORS",
    "ANT_WEIGHT_BITS",
    "OLIVE_WEIGHT_BITS",
    "TASKS",
    "Accelerator",
    "GemmTable",
    "LLMShape",
    "OperandSpec",
    "SimResult",
    "accelerator",
    "build_workload",
    "gemm_plans",
    "load_llm_shapes",
    "simulate",
]

TASKS: tuple[str, ...] = ("discriminative", "generative")

#: Group size and scale bits of every per-group format in the comparison (paper III-C).
GROUP_SIZE = 128
SCALE_BITS = 8

# ---------------------------------------------------------------------------------------
# Cited data: weight precision each baseline needs (bits per weight, per-channel types), from
# the BitMoD authors' public simulator, abdelfattah-lab/BitMoD-HPCA-25, bitmod_sim/test_ant.py
# and test_olive.py (docs/perf-model.md).
# ---------------------------------------------------------------------------------------
ANT_WEIGHT_BITS: dict[str, float] = {
    "opt-1.3b": 5.0,
    "phi-2": 5.0,
    "yi-6b": 5.25,
    "llama-2-7b": 5.0,
    "llama-2-13b": 4.0,
    "llama-3-8b": 5.0,
}
OLIVE_WEIGHT_BITS: dict[str, float] = {
    "opt-1.3b": 4.0,
    "phi-2": 4.0,
    "yi-6b": 4.0,
    "llama-2-7b": 4.0,
    "llama-2-13b": 4.0,
    "llama-3-8b": 4.5,
}


# =======================================================================================
# LLM shapes and workloads
# =======================================================================================


@dataclass(frozen=True)
class LLMShape:
    """The published config fields of one decoder-only LLM (``perf/data/llm_shapes.json``)."""

    key: str
    display: str
    hf_id: str
    mlp: str  # "gated" (gate/up/down) or "fc" (fc1/fc2)
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    num_hidden_layers: int
    vocab_size: int
    #: ``head_dim`` of the config when it is not ``hidden_size / heads`` (Gemma 3: 256)
    explicit_head_dim: int | None = None

    @property
    def head_dim(self) -> int:
        return self.explicit_head_dim or self.hidden_size // self.num_attention_heads

    @property
    def queries_per_kv_head(self) -> int:
        return self.num_attention_heads // self.num_key_value_heads

    def linear_layers(self) -> list[tuple[str, int, int]]:
        """``(name, N, K)`` of the linear layers of one decoder layer (weight ``[N, K]``)."""
        h, f = self.hidden_size, self.intermediate_size
        q, kv = self.num_attention_heads * self.head_dim, self.num_key_value_heads * self.head_dim
        attn = [("q_proj", q, h), ("k_proj", kv, h), ("v_proj", kv, h), ("o_proj", h, q)]
        if self.mlp == "gated":
            return [*attn, ("gate_proj", f, h), ("up_proj", f, h), ("down_proj", h, f)]
        return [*attn, ("fc1", f, h), ("fc2", h, f)]

    def weight_count(self) -> int:
        """Parameters of all linear layers including the LM head (embeddings excluded)."""
        per_layer = sum(n * k for _, n, k in self.linear_layers())
        return per_layer * self.num_hidden_layers + self.vocab_size * self.hidden_size


_SHAPE_INT_FIELDS = (
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "num_hidden_layers",
    "vocab_size",
)


def load_llm_shapes(path: str | Path | None = None) -> dict[str, LLMShape]:
    """The model table; ``path`` None reads the packaged ``data/llm_shapes.json``.

    Raises ValueError naming the file and the model on a malformed entry.
    """
    if path is None:
        text = resources.files("bitmod.runtime.perf").joinpath("data/llm_shapes.json").read_text()
        where = "bitmod/runtime/perf/data/llm_shapes.json"
    else:
        where = str(path)
        try:
            text = Path(path).read_text()
        except OSError as error:
            raise ValueError(f"{where}: cannot read LLM shapes: {error}") from None
    try:
        models = parse_json(text)["models"]
    except (JsonError, KeyError, TypeError) as error:
        raise ValueError(f"{where}: not an LLM shape table ({error})") from None
    shapes: dict[str, LLMShape] = {}
    for key, entry in models.items():
        try:
            ints = {name: entry[name] for name in _SHAPE_INT_FIELDS}
            shape = LLMShape(
                key=key,
                display=str(entry.get("display", key)),
                hf_id=str(entry["hf_id"]),
                mlp=str(entry["mlp"]),
                explicit_head_dim=entry.get("head_dim"),
                **ints,
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"{where}: model {key!r} lacks field {error}") from None
        bad = [n for n, v in ints.items() if not isinstance(v, int) or isinstance(v, bool) or v < 1]
        if bad:
            raise ValueError(f"{where}: model {key!r}: fields {bad} must be positive ints")
        if shape.mlp not in ("gated", "fc"):
            raise ValueError(f"{where}: model {key!r}: mlp must be 'gated' or 'fc'")
        head_dim = shape.explicit_head_dim
        if head_dim is not None and (not isinstance(head_dim, int) or head_dim < 1):
            raise ValueError(f"{where}: model {key!r}: head_dim must be a positive int")
        if (head_dim is None and shape.hidden_size % shape.num_attention_heads) or (
            shape.num_attention_heads % shape.num_key_value_heads
        ):
            raise ValueError(
                f"{where}: model {key!r}: heads must divide hidden_size and kv heads must "
                "divide heads"
            )
        shapes[key] = shape
    return shapes


@dataclass(frozen=True)
class GemmTable:
    """A workload: parallel arrays, one entry per distinct GEMM, ``count`` repetitions each.

    ``operand`` is ``"weight"`` (a linear layer's weight matrix) or ``"kv"`` (the K or V cache
    as the weight operand of Q·Kᵀ / P·V); ``phase`` is ``"prefill"`` or ``"decode"``.
    """

    name: np.ndarray  # str
    phase: np.ndarray  # str
    operand: np.ndarray  # str
    m: np.ndarray  # int64
    n: np.ndarray  # int64
    k: np.ndarray  # int64
    count: np.ndarray  # int64

    @classmethod
    def from_rows(cls, rows: Sequence[tuple[str, str, str, int, int, int, int]]) -> GemmTable:
        """The table of ``(name, phase, operand, m, n, k, count)`` rows."""
        columns = list(zip(*rows, strict=True))
        return cls(
            name=np.asarray(columns[0]),
            phase=np.asarray(columns[1]),
            operand=np.asarray(columns[2]),
            m=np.asarray(columns[3], dtype=np.int64),
            n=np.asarray(columns[4], dtype=np.int64),
            k=np.asarray(columns[5], dtype=np.int64),
            count=np.asarray(columns[6], dtype=np.int64),
        )

    def __len__(self) -> int:
        return len(self.m)

    def macs(self) -> int:
        return int(np.sum(self.m * self.n * self.k * self.count))


def _attention_gemms(
    shape: LLMShape, queries: int, context: int, phase: str, count: int
) -> list[tuple[str, str, str, int, int, int, int]]:
    """Q·Kᵀ and P·V of every KV head of one layer, ``count`` layers (and steps) alike.

    Queries sharing a KV head (GQA) are stacked along M: ``M = queries · q_per_kv``.
    Q·Kᵀ: ``N = context`` keys, ``K = head_dim``; P·V: ``N = head_dim``, ``K = context``.
    The full ``context × context`` score matrix is computed in prefill (no causal skipping).
    """
    m = queries * shape.queries_per_kv_head
    reps = count * shape.num_key_value_heads
    d = shape.head_dim
    return [
        ("attn_qk", phase, "kv", m, context, d, reps),
        ("attn_pv", phase, "kv", m, d, context, reps),
    ]


def build_workload(
    shape: LLMShape, task: str, input_tokens: int = 256, output_tokens: int | None = None
) -> GemmTable:
    """Every GEMM of the paper's workload for ``shape`` (batch 1).

    * ``discriminative``: one forward pass over ``input_tokens`` (M = 256), LM head for every
      position (scoring needs each position's logits), 1 output token.
    * ``generative``: the same prefill with the LM head for the last position only, then
      ``output_tokens − 1`` decoding steps (the prefill yields the first token): GEMVs with
      M = 1, attention over a context growing from ``input_tokens + 1`` to
      ``input_tokens + output_tokens − 1``. ``output_tokens`` defaults to 256.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid: {list(TASKS)}")
    if not isinstance(input_tokens, int) or input_tokens < 1:
        raise ValueError(f"input_tokens must be a positive int, got {input_tokens!r}")
    if output_tokens is None:
        output_tokens = 1 if task == "discriminative" else 256
    if not isinstance(output_tokens, int) or output_tokens < 1:
        raise ValueError(f"output_tokens must be a positive int, got {output_tokens!r}")
    layers = shape.num_hidden_layers
    rows: list[tuple[str, str, str, int, int, int, int]] = []
    s = input_tokens
    for name, n, k in shape.linear_layers():
        rows.append((name, "prefill", "weight", s, n, k, layers))
    rows += _attention_gemms(shape, s, s, "prefill", layers)
    head_m = s if task == "discriminative" else 1
    rows.append(("lm_head", "prefill", "weight", head_m, shape.vocab_size, shape.hidden_size, 1))
    steps = output_tokens - 1
    if steps > 0:
        for name, n, k in shape.linear_layers():
            rows.append((name, "decode", "weight", 1, n, k, layers * steps))
        rows.append(("lm_head", "decode", "weight", 1, shape.vocab_size, shape.hidden_size, steps))
        for step in range(1, steps + 1):
            rows += _attention_gemms(shape, 1, s + step, "decode", layers)
    return GemmTable.from_rows(rows)


# =======================================================================================
# Operand formats and PE behaviour
# =======================================================================================


@dataclass(frozen=True)
class OperandSpec:
    """How one accelerator stores and consumes a weight operand.

    ``label``: what it is (e.g. ``"bitmod3"``, ``"ANT 5b/ch"``). Storage: a per-group format
    ``fmt`` (G = 128, INT8 scales) is packed as the BitMoD buffers hold it
    (:meth:`WeightLayout.of_format`), otherwise ``value_bits`` a value plus ``channel_bits``
    per channel. The PE consumes ``macs_per_step`` MACs in ``step_cycles`` cycles;
    ``tail_cycles`` are not overlapped at the end of a ``mac`` (and stall every group shorter
    than that). A ``bit_serial`` operand runs on the BitMoD PE instead, with ``tail_cycles``
    its scale bits (:meth:`MacTiming.bit_serial_terms`).
    """

    label: str
    value_bits: float
    fmt: str | None = None
    group_size: int = GROUP_SIZE
    channel_bits: float = 0.0
    macs_per_step: int = 1
    step_cycles: int = 1
    tail_cycles: int = 0
    bit_serial: bool = False

    def layout(self) -> WeightLayout:
        if self.fmt is not None:
            return WeightLayout.of_format(self.fmt, self.group_size, SCALE_BITS)
        return WeightLayout(self.value_bits, self.group_size, 0, round(self.channel_bits / 8))

    def timing(self, rows: int) -> MacTiming:
        """The PE's cycles on this operand, in an array of ``rows`` PE rows."""
        if self.bit_serial:
            return MacTiming.bit_serial_terms(
                self.step_cycles, self.group_size, self.tail_cycles, rows
            )
        return MacTiming(self.macs_per_step, self.step_cycles, self.group_size, self.tail_cycles)


def bit_parallel_operand(label: str, bits: float, channel_bits: float = 16.0) -> OperandSpec:
    """A per-channel operand of a bit-parallel PE: one MAC per cycle, FP16 channel scale."""
    return OperandSpec(label=label, value_bits=bits, channel_bits=channel_bits)


def grouped_operand(fmt: str, bit_serial: bool, tail_cycles: int) -> OperandSpec:
    """A per-group operand of ``fmt`` (G = 128, INT8 scales) on a BitMoD or MixPE PE.

    On the bit-serial BitMoD PE (:meth:`MacTiming.bit_serial`): 4 MACs per ``num_terms(fmt)``
    cycles, the last group's SB-cycle bit-serial dequantization is the tail. On MixPE: one MAC
    per cycle.
    """
    bits = float(get_format(fmt).bits)
    if bit_serial:
        return OperandSpec(
            label=fmt,
            value_bits=bits,
            fmt=fmt,
            macs_per_step=LANES,
            step_cycles=num_terms(fmt),
            tail_cycles=tail_cycles,
            bit_serial=True,
        )
    return OperandSpec(label=fmt, value_bits=bits, fmt=fmt, tail_cycles=tail_cycles)


FP16_OPERAND = OperandSpec(label="fp16", value_bits=16.0)


@dataclass(frozen=True)
class Accelerator:
    """One comparison point: a PE kind and the operand formats it runs for one model/task."""

    name: str
    pe_kind: str
    weight: OperandSpec
    kv: OperandSpec
    has_encoder: bool = False

    def __post_init__(self) -> None:
        if self.pe_kind not in PE_KINDS:
            raise ValueError(f"unknown PE kind {self.pe_kind!r}; valid: {list(PE_KINDS)}")


#: Accelerator names in report order; ``bitmod-lossless`` is compared with ``fp16``,
#: ``bitmod-lossy`` with ``ant`` and ``olive`` (paper V-C).
ACCELERATORS: tuple[str, ...] = (
    "fp16",
    "ant",
    "olive",
    "mixpe",
    "bitmod-lossless",
    "bitmod-lossy",
)


def accelerator(name: str, model: str, task: str, weight_fmt: str | None = None) -> Accelerator:
    """The comparison point ``name`` configured as the paper does for ``model`` and ``task``.

    ``weight_fmt`` overrides the weight precision: a format name for the BitMoD / MixPE PEs
    (e.g. ``"int5"``), or a number of bits (``"6"``) for ANT / OliVe.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid: {list(TASKS)}")
    kv_int8_serial = grouped_operand("int8", bit_serial=True, tail_cycles=SCALE_BITS)
    kv_int8_parallel = grouped_operand("int8", bit_serial=False, tail_cycles=0)
    if name == "fp16":
        return Accelerator(name, "fp16", FP16_OPERAND, FP16_OPERAND)
    if name in ("bitmod-lossless", "bitmod-lossy"):
        if weight_fmt is None:
            lossy = "bitmod4" if task == "discriminative" else "bitmod3"
            weight_fmt = "int6" if name == "bitmod-lossless" else lossy
        fmt = _accelerated_format(weight_fmt)
        weight = grouped_operand(fmt, bit_serial=True, tail_cycles=SCALE_BITS)
        return Accelerator(name, "bitmod", weight, kv_int8_serial, has_encoder=True)
    if name in ("ant", "olive"):
        table = ANT_WEIGHT_BITS if name == "ant" else OLIVE_WEIGHT_BITS
        if weight_fmt is not None:
            bits = _parse_bits(weight_fmt, name)
        elif model in table:
            bits = table[model]
        else:
            raise ValueError(
                f"no cited {name} precision for model {model!r}; pass weight bits explicitly"
            )
        label = f"{name.upper() if name == 'ant' else 'OliVe'} {bits:g}b/ch"
        return Accelerator(name, name, bit_parallel_operand(label, bits), kv_int8_parallel)
    if name == "mixpe":
        fmt = weight_fmt or "int4_asym"
        if get_format(fmt).family not in ("int", "int_asym"):
            raise ValueError(f"MixPE runs integer weights; {fmt!r} is not an INT format")
        weight = grouped_operand(fmt, bit_serial=False, tail_cycles=1)
        return Accelerator(name, "mixpe", weight, kv_int8_parallel)
    raise ValueError(f"unknown accelerator {name!r}; valid: {list(ACCELERATORS)}")


def _accelerated_format(fmt: str) -> str:
    fmt_obj = get_format(fmt)
    if fmt_obj.family in ("mx", "olive") or fmt_obj.family == "int_asym":
        raise ValueError(f"format {fmt!r} has no BitMoD bit-serial lowering")
    num_terms(fmt)  # raises for formats without a term decomposition
    return fmt


def _parse_bits(text: str, name: str) -> float:
    try:
        bits = float(text)
    except ValueError:
        raise ValueError(
            f"{name} weight precision must be a number of bits, got {text!r}"
        ) from None
    if not 2 <= bits <= 8:
        raise ValueError(f"{name} weight precision must be within 2..8 bits, got {bits:g}")
    return bits


# =======================================================================================
# The model
# =======================================================================================


def array_shape(
    cfg: HardwareConfig, acc: Accelerator, pe_count: int | None = None
) -> tuple[int, int]:
    """(rows, columns) of ``acc``'s array: BitMoD as configured, others at iso-area."""
    if acc.pe_kind == "bitmod" and pe_count is None:
        return cfg.rows, cfg.cols * cfg.tiles
    count = cfg.iso_area_pe_count(acc.pe_kind) if pe_count is None else pe_count
    if count < cfg.rows or count % cfg.rows:
        raise ValueError(f"{acc.name}: {count} PEs do not form whole columns of {cfg.rows} rows")
    return cfg.rows, count // cfg.rows


def gemm_plans(
    workload: GemmTable, acc: Accelerator, cfg: HardwareConfig, pe_count: int | None = None
) -> Plans:
    """The schedule of every GEMM of ``workload`` on ``acc`` (docs/schedule.md): the weight
    operand's for linear layers, the K/V operand's for attention. ValueError naming a GEMM
    that no schedule fits."""
    rows, columns = array_shape(cfg, acc, pe_count)
    array = ArraySpec.of(cfg, columns=columns)
    assert array.rows == rows
    is_kv = workload.operand == "kv"
    parts = [(mask, op) for mask, op in ((~is_kv, acc.weight), (is_kv, acc.kv)) if mask.any()]
    planned = [
        (
            mask,
            plan(
                workload.m[mask],
                workload.n[mask],
                workload.k[mask],
                array,
                op.layout(),
                op.timing(rows),
            ),
        )
        for mask, op in parts
    ]
    values = {}
    for name in Plans.__dataclass_fields__:
        template = getattr(planned[0][1], name)
        column = np.zeros(len(workload), dtype=template.dtype)
        for mask, part in planned:
            column[mask] = getattr(part, name)
        values[name] = column
    plans = Plans(**values)
    unplanned = np.flatnonzero(~np.isfinite(plans.cycles))
    if unplanned.size:
        i = int(unplanned[0])
        raise ValueError(
            f"{acc.name}: GEMM {workload.name[i]} ({workload.phase[i]}, M={workload.m[i]} "
            f"N={workload.n[i]} K={workload.k[i]}) fits no schedule of the "
            f"{cfg.act_buffer_bytes} B / {cfg.weight_buffer_bytes} B buffers"
        )
    return plans


ENERGY_COMPONENTS: tuple[str, ...] = ("pe", "encoder", "sram", "dram")


@dataclass(frozen=True)
class SimResult:
    """Totals of one accelerator on one workload (cycles, bytes, energy in pJ by component)."""

    accelerator: str
    weight_label: str
    pe_count: int
    cycles: float
    compute_cycles: float
    dram_cycles: float
    dram_read_bytes: float
    dram_write_bytes: float
    sram_read_bytes: float
    sram_write_bytes: float
    energy_pj: dict[str, float]
    phase_cycles: dict[str, float]
    per_gemm_cycles: np.ndarray

    @property
    def total_energy_pj(self) -> float:
        return float(sum(self.energy_pj.values()))

    def seconds(self, cfg: HardwareConfig) -> float:
        return self.cycles / cfg.freq_hz

    def edp(self, cfg: HardwareConfig) -> float:
        """Energy-delay product in J·s."""
        return self.total_energy_pj * 1e-12 * self.seconds(cfg)


def simulate(
    acc: Accelerator,
    workload: GemmTable,
    cfg: HardwareConfig | None = None,
    pe_count: int | None = None,
) -> SimResult:
    """Run ``workload`` on ``acc`` (vectorized over the GEMM table).

    ``pe_count`` overrides the iso-area PE count (sensitivity studies).
    """
    cfg = cfg or HardwareConfig()
    rows, columns = array_shape(cfg, acc, pe_count)
    n_pes = rows * columns
    count = workload.count
    plans = gemm_plans(workload, acc, cfg, pe_count)
    compute, read, written, cycles = (
        plans.compute_cycles,
        plans.dram_read,
        plans.dram_written,
        plans.cycles,
    )
    dram = (read + written) / cfg.dram_bytes_per_cycle
    sram_read = plans.sram_read
    sram_write = read + written

    table = cfg.energy
    total_compute = float(np.sum(compute * count))
    total_mac = float(np.sum(plans.mac_cycles * count))
    energy = {
        "pe": table.pe(acc.pe_kind) * n_pes * total_compute,
        "encoder": (
            table.encoder_pj_per_tile_cycle * cfg.tiles * total_mac if acc.has_encoder else 0.0
        ),
        "sram": float(
            np.sum(
                (
                    table.sram_read_pj_per_byte * sram_read
                    + table.sram_write_pj_per_byte * sram_write
                )
                * count
            )
        ),
        "dram": float(np.sum(8 * (read + written) * count)) * table.dram_pj_per_bit,
    }
    return SimResult(
        accelerator=acc.name,
        weight_label=acc.weight.label,
        pe_count=n_pes,
        cycles=float(np.sum(cycles * count)),
        compute_cycles=total_compute,
        dram_cycles=float(np.sum(dram * count)),
        dram_read_bytes=float(np.sum(read * count)),
        dram_write_bytes=float(np.sum(written * count)),
        sram_read_bytes=float(np.sum(sram_read * count)),
        sram_write_bytes=float(np.sum(sram_write * count)),
        energy_pj=energy,
        phase_cycles={
            phase: float(np.sum((cycles * count)[workload.phase == phase]))
            for phase in ("prefill", "decode")
        },
        per_gemm_cycles=cycles,
    )
