"""Running an offloaded op: memory images for the emulated accelerator, K/V quantization.

Each accelerated op of a compiled model has its own bsisa :class:`~bitmod.runtime.isa.Program`
(one ``bsisa.program`` with one segment, lowered from that op's module; the ISA has no entry
points, so a bundle holds one binary per op). Running the op means executing that binary on
:class:`bitmod.runtime.emulator.machine.Machine` with a memory image made of

* the parameter archive (the quantized weight of a linear, stored by ``bitmod-quantize``), and
* the op's activation, rounded to FP16 (the PE's activation format), plus the bias in FP16
  (K is never padded: a K that the group size does not divide ends in a shorter group, see
  :func:`plan_groups`);

so the result is exactly what the binary computes. The FP16 output is converted back to the
host's dtype.

Activation × activation matmuls (attention ``Q·Kᵀ`` and ``P·V``, BitMoD paper Sec. IV-B): the
PE keeps one FP16 operand, so the right operand ``B`` of ``A @ B`` (``Kᵀ`` or ``V``) is
quantized at run time and takes the weight's place: ``W = Bᵀ`` ``[N, K]``, grouped along the
reduction dimension K (per key token over the head dimension for ``Q·Kᵀ``, per value channel
over the tokens for ``P·V``), with the same quantizer as the weights
(:func:`bitmod.runtime.formats.quantize`, symmetric INT8 or INT4, INT8 second-level group
scales per row). ``B`` is first rounded to FP16, the format K and V have in memory. One run per
batch × head slice, all slices quantized in one vectorized call (rows are independent:
groups and channel scales are per row).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from bitmod.compiler.torch_frontend import AcceleratedOp, CompileError
from bitmod.runtime.emulator.fastpath import FastGemm, PreparedGemm
from bitmod.runtime.emulator.machine import Machine, MachineError, Report, RunResult
from bitmod.runtime.formats import (
    FORMAT_NAMES,
    QuantizedTensor,
    dequantize,
    get_format,
    quantize,
)
from bitmod.runtime.isa import Program
from bitmod.runtime.storage.archive import ParamArchive

__all__ = [
    "Binding",
    "FastPath",
    "OpRecord",
    "OpStats",
    "QuantPlan",
    "plan_groups",
    "quantize_rows",
    "run_linear_program",
    "run_op",
    "run_runtime_quantized",
    "to_fp16",
]

FP16_MAX = 65504.0


def plan_groups(k: int, group_size: int) -> tuple[int, int]:
    """(group size G', K') for a reduction of length ``k`` and requested ``group_size``.

    The ISA needs a group size that is a multiple of 4. A reduction shorter than one group is
    a single group of ``ceil4(k)`` (holding the ``k`` real weights); a longer one keeps ``G``.
    K is not padded (``K' = k``): when ``G`` does not divide K the last group of a row is
    shorter, quantized on its own weights, and the PE dequantizes its partial sum after fewer
    steps (a ragged group, see :func:`bitmod.runtime.formats.quantize`). Bundles saved by
    older versions may hold ``K' > k`` (zero-padded weights); :func:`run_op` pads their
    activations to match.
    """
    if group_size <= 0 or group_size % 4:
        raise CompileError(f"group size {group_size} must be a positive multiple of 4")
    return min(group_size, 4 * math.ceil(k / 4)), k


@dataclass(frozen=True)
class QuantPlan:
    """How one op is quantized: format, group size, K (``k_padded``: K itself; larger only in
    bundles of older versions, which zero-padded K), scale bits."""

    dtype: str
    group_size: int
    k_padded: int
    scale_bits: int

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> QuantPlan:
        plan = cls(
            str(data["dtype"]),
            int(data["group_size"]),
            int(data["k_padded"]),
            int(data["scale_bits"]),
        )
        if plan.group_size <= 0 or plan.k_padded <= 0 or not 2 <= plan.scale_bits <= 8:
            raise ValueError(f"quantization plan {dict(data)!r} is out of range")
        get_format(plan.dtype)  # ValueError naming an unknown format
        return plan


@dataclass(frozen=True)
class Binding:
    """Memory-image names of one op's program: activation, weight, bias, output."""

    act: str
    weight: str
    out: str
    bias: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Binding:
        bias = data.get("bias")
        return cls(
            str(data["act"]),
            str(data["weight"]),
            str(data["out"]),
            None if bias is None else str(bias),
        )


@dataclass
class OpStats:
    """Accumulated machine reports of one op over every run of it."""

    runs: int = 0
    cycles: int = 0
    macs: int = 0
    dram_bytes: int = 0
    pe_cycles_busy: float = 0.0
    energy_pj: dict[str, float] = field(default_factory=dict)
    cycles_by_cause: dict[str, float] = field(default_factory=dict)
    kv_error_sq: float = 0.0  # Σ (B̂ − B)² of run-time quantized operands
    kv_norm_sq: float = 0.0  # Σ B²

    @property
    def kv_relative_error(self) -> float | None:
        """‖B̂ − B‖ / ‖B‖ over every run (None for a linear or before any run)."""
        if self.kv_norm_sq == 0.0:
            return None
        return math.sqrt(self.kv_error_sq / self.kv_norm_sq)

    def add(self, report: Report) -> None:
        self.runs += 1
        self.cycles += report.cycles
        self.macs += report.macs
        self.dram_bytes += report.dram_bytes_read + report.dram_bytes_written
        self.pe_cycles_busy += report.pe_cycles_busy
        for name, value in report.energy_pj.items():
            self.energy_pj[name] = self.energy_pj.get(name, 0.0) + value
        for name, value in report.cycles_by_cause.items():
            self.cycles_by_cause[name] = self.cycles_by_cause.get(name, 0.0) + value

    @property
    def energy_total_pj(self) -> float:
        return float(sum(self.energy_pj.values()))

    def to_json(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "cycles": self.cycles,
            "macs": self.macs,
            "dram_bytes": self.dram_bytes,
            "pe_cycles_busy": self.pe_cycles_busy,
            "energy_pj": dict(self.energy_pj),
            "energy_total_pj": self.energy_total_pj,
            "cycles_by_cause": dict(self.cycles_by_cause),
            "kv_relative_error": self.kv_relative_error,
        }


@dataclass
class OpRecord:
    """What one accelerator run saw (kept only when a run is recorded)."""

    op: str
    index: int  # batch/head slice (0 for a linear)
    act: torch.Tensor  # FP16 [M, K'] as loaded
    weight: QuantizedTensor | None  # the run-time quantized K/V (None for a linear)
    out: torch.Tensor  # FP16 [M, N] as stored


def to_fp16(x: torch.Tensor, what: str) -> torch.Tensor:
    """Round to FP16 (RNE); a clear error for values the PE cannot represent."""
    x = x.detach()
    if not x.is_floating_point():
        raise CompileError(f"{what}: expected a floating-point tensor, got {x.dtype}")
    bad = ~torch.isfinite(x) | (x.abs() > FP16_MAX)
    if bool(bad.any()):
        index = tuple(int(i) for i in bad.nonzero()[0])
        raise CompileError(
            f"{what}: value {float(x[index])} at {list(index)} is not representable in FP16 "
            f"(the accelerator's activation format, max {FP16_MAX:g})"
        )
    return x.to(torch.float16)


def _pad_k(x: torch.Tensor, k_padded: int) -> torch.Tensor:
    k = x.shape[-1]
    if k == k_padded:
        return x.contiguous()
    return torch.nn.functional.pad(x, (0, k_padded - k)).contiguous()


def quantize_rows(w: torch.Tensor, plan: QuantPlan) -> QuantizedTensor:
    """Quantize ``w [rows, K]`` (padded to ``plan.k_padded``) per group along K."""
    return quantize(
        _pad_k(w.to(torch.float32), plan.k_padded),
        plan.dtype,
        plan.group_size,
        plan.scale_bits,
    )


def _slice_rows(q: QuantizedTensor, start: int, stop: int) -> QuantizedTensor:
    """Rows ``[start, stop)`` of a quantized tensor (groups and channel scales are per row)."""

    def rows(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t[start:stop].contiguous()

    return QuantizedTensor(
        q.fmt,
        (stop - start, q.shape[1]),
        q.group_size,
        q.scale_bits,
        q.codes[start:stop],
        q.sv_index[start:stop],
        q.scales[start:stop],
        rows(q.channel_scale),
        rows(q.zeros),
    )


class FastPath:
    """Runs ops through :class:`~bitmod.runtime.emulator.fastpath.FastGemm` on ``device``
    instead of the instruction interpreter, with the interpreter's own report.

    The values are bit-identical to ``Machine.run`` of the op's program (FastGemm's contract:
    a compiled matmul's result does not depend on its schedule). The report comes from
    ``Machine.run(..., compute=False)`` of the same program on the same memory image: the
    machine's timing and traffic depend on the program, the shapes and the configuration, not
    on the values, so one timing run per op serves every later run of it (shapes are fixed by
    the trace). The interpreter's per-instruction loop, not the arithmetic, is then paid once
    per op instead of once per call.
    """

    def __init__(self, machine: Machine, device: str | torch.device) -> None:
        self.machine = machine
        self.gemm = FastGemm(device)
        self._prepared: dict[str, PreparedGemm] = {}
        self._reports: dict[str, Report] = {}

    @property
    def device(self) -> torch.device:
        return self.gemm.device

    def prepared(self, name: str, archive: ParamArchive) -> PreparedGemm:
        """The stored weight ``name`` decoded on the device (once)."""
        if name not in self._prepared:
            self._prepared[name] = self.gemm.prepare(archive.get_quantized(name))
        return self._prepared[name]

    def report(
        self,
        op: str,
        program: Program,
        memory: ParamArchive | None,
        inputs: Mapping[str, Any],
    ) -> Report:
        """The machine's report of ``op``'s program (a timing-only run, cached by op)."""
        if op not in self._reports:
            self._reports[op] = self.machine.run(program, memory, inputs, compute=False).report
        return self._reports[op]


def run_op(
    op: AcceleratedOp,
    plan: QuantPlan,
    program: Program,
    binding: Binding,
    operands: list[torch.Tensor],
    *,
    machine: Machine,
    archive: ParamArchive,
    bias16: torch.Tensor | None,
    stats: OpStats,
    records: list[OpRecord] | None = None,
    fast: FastPath | None = None,
) -> torch.Tensor:
    """Execute ``op`` on the machine (or through ``fast``, to the same bits and report);
    returns the result in the traced shape and dtype."""
    out_dtype = getattr(torch, op.dtype)
    m, k, n = op.mkn
    if op.kind == "linear":
        (x,) = operands
        if tuple(x.shape) != op.input_shapes[0]:
            raise CompileError(
                f"op '{op.name}': input shape {list(x.shape)} differs from the traced "
                f"{list(op.input_shapes[0])}"
            )
        act = _pad_k(to_fp16(x.reshape(m, k), f"op '{op.name}' input"), plan.k_padded)
        out = run_linear_program(
            op.name,
            program,
            binding,
            act,
            bias16,
            machine=machine,
            archive=archive,
            stats=stats,
            records=records,
            fast=fast,
        )
        return out.to(out_dtype).reshape(op.output_shape)

    a, b = operands
    batch = op.batch_shape
    a = a.expand(*batch, m, k).reshape(-1, m, k)
    b = b.expand(*batch, k, n).reshape(-1, k, n)
    # W = Bᵀ per slice; B lives in memory as FP16.
    b16 = to_fp16(b, f"op '{op.name}' right operand")
    a16 = to_fp16(a, f"op '{op.name}' left operand")
    out = run_runtime_quantized(
        op.name,
        plan,
        program,
        binding,
        a16,
        b16.transpose(1, 2),
        machine=machine,
        stats=stats,
        records=records,
        fast=fast,
    )
    return out.to(out_dtype).reshape(op.output_shape)


def run_linear_program(
    name: str,
    program: Program,
    binding: Binding,
    act: torch.Tensor,
    bias16: torch.Tensor | None,
    *,
    machine: Machine,
    archive: ParamArchive,
    stats: OpStats,
    records: list[OpRecord] | None = None,
    fast: FastPath | None = None,
) -> torch.Tensor:
    """One run of the program of op ``name`` (weight in ``archive``) on the FP16 activation
    ``act [M, K']``: its FP16 ``[M, N]`` result."""
    inputs: dict[str, Any] = {binding.act: act.numpy()}
    if binding.bias is not None:
        assert bias16 is not None
        inputs[binding.bias] = bias16.numpy()
    if fast is not None:
        stats.add(fast.report(name, program, archive, inputs))
        prepared = fast.prepared(binding.weight, archive)
        out = fast.gemm.run(prepared, act, bias16).cpu()
    else:
        result = machine.run(program, archive, inputs)
        stats.add(result.report)
        out = _stored_output(result, binding)
    if records is not None:
        records.append(OpRecord(name, 0, act, None, out))
    _check_finite_output(name, out)
    return out


def run_runtime_quantized(
    name: str,
    plan: QuantPlan,
    program: Program,
    binding: Binding,
    acts16: torch.Tensor,
    weights16: torch.Tensor,
    *,
    machine: Machine,
    stats: OpStats,
    records: list[OpRecord] | None = None,
    fast: FastPath | None = None,
) -> torch.Tensor:
    """``A·Wᵀ`` per slice with ``W`` quantized now (module docstring): FP16 ``acts16
    [runs, M, K]`` and ``weights16 [runs, N, K]`` (``Bᵀ`` of ``A·B``, already FP16) give the
    FP16 ``[runs, M, N]`` results, one run of the program of op ``name`` each."""
    runs, n, k = weights16.shape
    # All slices stacked as rows [runs·N, K], quantized in one call (rows are independent).
    weight_rows = weights16.reshape(-1, k)
    quantized = quantize_rows(weight_rows.to(torch.float32), plan)
    reference = weight_rows.to(torch.float64)
    stats.kv_error_sq += float(((dequantize(quantized)[:, :k] - reference) ** 2).sum())
    stats.kv_norm_sq += float((reference**2).sum())
    acts = _pad_k(acts16, plan.k_padded)
    outs = []
    for index in range(runs):
        weight = _slice_rows(quantized, index * n, (index + 1) * n)
        memory = {binding.act: acts[index].numpy(), binding.weight: weight}
        if fast is not None:
            stats.add(fast.report(name, program, None, memory))
            out = fast.gemm.matmul(weight, acts[index]).cpu()
        else:
            result = machine.run(program, None, memory)
            stats.add(result.report)
            out = _stored_output(result, binding)
        if records is not None:
            records.append(OpRecord(name, index, acts[index], weight, out))
        _check_finite_output(name, out)
        outs.append(out)
    return torch.stack(outs)


def _stored_output(result: RunResult, binding: Binding) -> torch.Tensor:
    """The launch's output as the program stored it; a program that stores no tensor of
    that name (its ``st.out`` deleted, or pointed elsewhere) is a MachineError."""
    stored = result.outputs.get(binding.out)
    if stored is None:
        others = ", ".join(repr(name) for name in result.outputs) or "none"
        raise MachineError(
            f"output {binding.out!r} is never stored: no st.out of the program writes it "
            f"(outputs it stores: {others})"
        )
    return torch.from_numpy(np.array(stored))


def _check_finite_output(name: str, out: torch.Tensor) -> None:
    """The FP16 drain overflowed (finite inputs, so the result itself is beyond 65504): an
    error naming the op, never an infinity handed on to the next layer."""
    bad = ~torch.isfinite(out)
    if bool(bad.any()):
        index = [int(i) for i in bad.nonzero()[0]]
        raise CompileError(
            f"op '{name}': {int(bad.sum())} of {out.numel()} outputs overflow FP16 (the "
            f"accelerator's output format, max {FP16_MAX:g}), the first at {index}"
        )


def check_accelerated_dtype(name: str, what: str) -> str:
    """``name`` if it is a format the PE runs; CompileError listing those otherwise."""
    try:
        fmt = get_format(name)
    except ValueError as error:
        raise CompileError(f"{what}: {error}") from None
    if not fmt.accelerated:
        runnable = [f for f in FORMAT_NAMES if get_format(f).accelerated]
        raise CompileError(
            f"{what}: format '{name}' has no bit-serial lowering on the BitMoD PE; "
            f"accelerated formats: {', '.join(runnable)}"
        )
    return fmt.name
