"""The BitMoD machine: executes a bsisa program on a memory image, bit-exactly, with a report.

``Machine(config).run(program, memory)`` interprets the instruction stream (loops through the
``L`` registers), moves clipped blocks between the memory image ("DRAM") and the double-buffered
activation / weight buffers, runs every ``mac`` on the vectorized PE model of
:mod:`bitmod.runtime.emulator.pe` over the whole block, and returns the FP16 outputs and a
:class:`Report` of cycles, traffic, utilization and energy.

Timing: the interpreter hands every executed instruction to the cycle model of the
microarchitecture the RTL implements (:mod:`bitmod.runtime.arch.timing`: a controller issuing
one instruction a cycle into the command registers of the load, PE, drain and store engines,
which share one DRAM channel), as the RTL controller snapshots it: durations and dependencies
on earlier work. Both count the same cycles (docs/rtl.md, "Timing"); the PE array's idle time
is attributed to what it waited for (``CYCLE_CAUSES``). The programs the machine refuses are
docs/ISA.md's.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from bitmod.runtime.arch import timing
from bitmod.runtime.arch.hwconfig import HardwareConfig
from bitmod.runtime.arch.rules import (
    block_rows_error,
    group_accumulator_error,
    kchunk_error,
    uses_sv_register,
)
from bitmod.runtime.arch.schedule import ACT_BYTES, MacTiming, WeightLayout
from bitmod.runtime.arch.trace import ACT_BUFFER, WEIGHT_BUFFER, BlockTag, EngineTrace
from bitmod.runtime.emulator import pe
from bitmod.runtime.formats.bitserial import decode_codes, num_terms, value_terms
from bitmod.runtime.formats.quantizer import QuantizedTensor
from bitmod.runtime.formats.registry import get_format
from bitmod.runtime.isa import (
    AccClr,
    CfgArray,
    CfgFmt,
    CfgKchunk,
    CfgMblock,
    CfgSv,
    DescKind,
    Drain,
    EndLoop,
    Halt,
    Instruction,
    LdAct,
    LdWgt,
    Loop,
    Mac,
    Nop,
    Program,
    StOut,
    format_name,
)
from bitmod.runtime.storage.archive import ArchiveError, ParamArchive

__all__ = ["Machine", "MachineError", "Report", "RunResult"]

CYCLE_CAUSES = timing.CAUSES
ENERGY_COMPONENTS = (
    "pe",
    "encoder",
    "act_buffer",
    "weight_buffer",
    "out_buffer",
    "dram",
)


class MachineError(ValueError):
    """A program that cannot run on this machine / memory image; names the instruction."""


@dataclass
class Report:
    """Cycles, traffic, utilization and energy of one run."""

    cycles: int
    cycles_by_cause: dict[str, float]
    dram_bytes_read: int
    dram_bytes_written: int
    buffer_bytes_read: dict[str, int]
    buffer_bytes_written: dict[str, int]
    macs: int  # useful multiply-accumulates (inside the tensors)
    buffer_hits: dict[str, int]  # loads of a block the buffer still held (nothing moved)
    pe_cycles_busy: float  # cycles the PE array computed (compute + dequant tail)
    pe_utilization: float  # useful MAC work / (PE-cycles available)
    energy_pj: dict[str, float]
    instructions_executed: int
    freq_hz: float

    @property
    def total_energy_pj(self) -> float:
        return float(sum(self.energy_pj.values()))

    @property
    def seconds(self) -> float:
        return self.cycles / self.freq_hz

    def format(self) -> str:
        """A human-readable table."""
        lines = [f"cycles            {self.cycles:>16,d}  ({self.seconds * 1e6:.2f} us)"]
        for cause in CYCLE_CAUSES:
            value = self.cycles_by_cause[cause]
            share = value / self.cycles if self.cycles else 0.0
            lines.append(f"  {cause:<16}{value:>16,.0f}  {share:6.1%}")
        lines.append(f"DRAM read         {self.dram_bytes_read:>16,d} B")
        lines.append(f"DRAM written      {self.dram_bytes_written:>16,d} B")
        for name in self.buffer_bytes_read:
            lines.append(
                f"{name + ' buffer':<18}{self.buffer_bytes_read[name]:>16,d} B read, "
                f"{self.buffer_bytes_written[name]:,d} B written"
            )
        hits = ", ".join(f"{name} {count:,d}" for name, count in self.buffer_hits.items())
        lines.append(f"buffer hits       {hits:>16}")
        lines.append(f"MACs              {self.macs:>16,d}")
        lines.append(f"PE utilization    {self.pe_utilization:>16.1%}")
        for name, value in self.energy_pj.items():
            lines.append(f"energy {name:<11}{value / 1e6:>16.3f} uJ")
        lines.append(f"energy total      {self.total_energy_pj / 1e6:>16.3f} uJ")
        return "\n".join(lines)


@dataclass
class RunResult:
    outputs: dict[str, np.ndarray]  # every out descriptor's tensor, FP16
    report: Report


# --- buffers and blocks -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Buffer:
    """An operand buffer: its index in the trace's buffers (which place the blocks)."""

    name: str
    capacity: int
    index: int

    def check(self, block_bytes: int, where: str) -> None:
        if block_bytes > self.capacity:
            raise MachineError(
                f"{where}: block of {block_bytes:,d} bytes overflows the {self.name} buffer "
                f"({self.capacity:,d} bytes); use a smaller K chunk"
            )


@dataclass(frozen=True)
class _BlockRange:
    """Where a load's block lies: rows / channels ``[start, end)`` (clipped), K ``[k0, k1)``."""

    name: str
    index: int  # block index along rows / channels
    start: int
    end: int
    k_chunk: int | None  # None: all of K
    k0: int
    k1: int
    block_k: int  # K elements of the buffer block (KC, or K)


@dataclass(kw_only=True)
class _LoadedBlock:
    """A block in a buffer: what it holds."""

    desc: int
    k_chunk: int | None  # None: the block holds all of K
    k0: int  # first K element
    nbytes: int  # bytes moved over DRAM (the part inside the tensor)


@dataclass(kw_only=True)
class _ActBlock(_LoadedBlock):
    data: np.ndarray  # FP16 [valid rows, valid k]
    row_block: int


@dataclass(kw_only=True)
class _WeightBlock(_LoadedBlock):
    fmt: str
    codes: np.ndarray  # [valid channels, valid k]
    sv_index: np.ndarray  # [valid channels, groups]
    zeros: np.ndarray | None
    scale_codes: np.ndarray  # int64 [valid channels, groups]
    channel_scale: np.ndarray  # FP16 [valid channels]
    col_block: int
    sv_needed: list[int] | None = None  # SV slots the block's groups select


@dataclass
class _Accumulators:
    values: np.ndarray | None = None  # FP32 [rows, cols] (valid part)
    act_desc: int = -1
    wgt_desc: int = -1
    row_block: int = -1
    col_block: int = -1
    chunks: set[int] = field(default_factory=set)


@dataclass
class _Drained:
    data: np.ndarray
    act_desc: int
    wgt_desc: int
    row_block: int
    col_block: int


# --- the memory image -------------------------------------------------------------------------


class _Memory:
    """Named tensors: a ParamArchive and/or a mapping, plus what the program stores."""

    def __init__(self, memory: Mapping[str, Any] | ParamArchive | None, inputs: Mapping | None):
        self.archive = memory if isinstance(memory, ParamArchive) else None
        self.mapping: dict[str, Any] = {}
        if memory is not None and not isinstance(memory, ParamArchive):
            if not isinstance(memory, Mapping):
                raise MachineError(
                    f"memory image must be a mapping or a ParamArchive, got {type(memory)}"
                )
            self.mapping.update(memory)
        self.mapping.update(inputs or {})
        self.stored: dict[str, np.ndarray] = {}
        self.written: dict[str, np.ndarray] = {}  # bool mask of what st.out wrote, per tensor
        self._quantized: dict[str, QuantizedTensor] = {}

    def names(self) -> list[str]:
        names = set(self.mapping) | set(self.stored)
        if self.archive is not None:
            names |= set(self.archive.names())
        return sorted(names)

    def _missing(self, name: str, what: str) -> MachineError:
        known = ", ".join(repr(n) for n in self.names()[:12]) or "nothing"
        return MachineError(f"{what} {name!r} is not in the memory image (it has {known})")

    def tensor(self, name: str, what: str) -> np.ndarray:
        if name in self.stored:
            return self.stored[name]
        if name in self.mapping:
            value = self.mapping[name]
        elif (
            self.archive is not None
            and name in self.archive
            and not self.archive.is_quantized(name)
        ):
            value = self.archive.get(name)
        else:
            raise self._missing(name, what)
        if isinstance(value, QuantizedTensor):
            raise MachineError(f"{what} {name!r} is a quantized weight, expected an FP16 tensor")
        if isinstance(value, torch.Tensor):
            if value.dtype != torch.float16:  # numpy has no bfloat16 to convert it to
                raise MachineError(f"{what} {name!r} must be float16, got {value.dtype}")
            value = value.detach().cpu().numpy()
        array = np.asarray(value)
        if array.dtype != np.float16:
            raise MachineError(f"{what} {name!r} must be float16, got {array.dtype}")
        return array

    def quantized(self, name: str) -> QuantizedTensor:
        if name in self._quantized:
            return self._quantized[name]
        if name in self.mapping:
            value = self.mapping[name]
            if not isinstance(value, QuantizedTensor):
                raise MachineError(f"qweight {name!r} is a plain tensor, not a quantized weight")
        elif self.archive is not None and self.archive.is_quantized(name):
            try:
                value = self.archive.get_quantized(name)
            except ArchiveError as err:
                raise MachineError(str(err)) from None
        else:
            raise self._missing(name, "quantized weight")
        self._quantized[name] = value.to("cpu")
        return self._quantized[name]


# --- the machine ------------------------------------------------------------------------------


@dataclass
class _Registers:
    geometry: tuple[int, int, int] | None = None
    fmt: int | None = None
    sb: int | None = None
    group_size: int | None = None
    kchunk: int | None = None
    block_rows: int | None = None  # MR
    sv: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    sv_written: list[bool] = field(default_factory=lambda: [False] * 4)
    loops: list[int] = field(default_factory=lambda: [0] * 8)


class Machine:
    """A BitMoD accelerator of ``config`` (rows × cols PEs per tile, ``tiles`` tiles)."""

    #: Bytes of decoded weight blocks one run keeps (see ``_Run._prepared``).
    DECODE_CACHE_BYTES = 512 * 2**20
    #: Instructions a run may execute per block operation its tensors need (see
    #: :func:`instruction_budget`).
    BUDGET_PER_BLOCK = 64

    def __init__(
        self,
        config: HardwareConfig | None = None,
        pe_kind: str = "bitmod",
        decode_cache_bytes: int = DECODE_CACHE_BYTES,
        instruction_budget: int | None = None,
    ) -> None:
        self.config = config or HardwareConfig()
        self.pe_kind = pe_kind
        self.decode_cache_bytes = decode_cache_bytes
        self.instruction_budget = instruction_budget
        self.config.energy.pe(pe_kind)  # validates the kind

    # The run is a method object: all per-run state lives on _Run.
    def run(
        self,
        program: Program | bytes,
        memory: Mapping[str, Any] | ParamArchive | None = None,
        inputs: Mapping[str, Any] | None = None,
        *,
        compute: bool = True,
    ) -> RunResult:
        """Execute ``program`` (a Program or its binary) on ``memory`` (+ ``inputs``).

        ``compute=False`` plays the program's timing and traffic out without the PE arithmetic:
        the report is the one a computing run gives (cycles, bytes, energy depend on the
        program, the shapes and the configuration, never on the values), the outputs are zeros
        and the weight values are not decoded (so value errors of a corrupt image go unseen).
        Raises :class:`bitmod.runtime.isa.IsaError` for a corrupt binary and
        :class:`MachineError` for anything the machine or memory image cannot do.
        """
        if isinstance(program, bytes | bytearray | memoryview):
            program = Program.decode(bytes(program))
        else:
            program.validate()
        self._check_budget(program)
        return _Run(self, program, _Memory(memory, inputs), compute).execute()

    def instruction_budget_of(self, program: Program) -> int:
        """The instructions a run of ``program`` may execute: ``instruction_budget`` if set,
        else ``BUDGET_PER_BLOCK · (instructions + Σ_out ⌈M/ROWS⌉·⌈N/(COLS·TILES)⌉·⌈K/4⌉)``.

        A block operation (loads, ``mac``, ``drain``, ``st.out`` of one output block and K
        chunk) takes a handful of instructions; an output of ``M × N`` from a K-long reduction
        has at most ``⌈M/ROWS⌉·⌈N/(COLS·TILES)⌉`` blocks and ``⌈K/4⌉`` chunks (a chunk is at
        least one 4-lane step), so any program that does the declared work stays far inside.
        """
        if self.instruction_budget is not None:
            return self.instruction_budget
        config = self.config
        descriptors = program.descriptors
        blocks = 0
        k = max((d.dim1 for d in descriptors if d.kind is not DescKind.OUT), default=1)
        for d in descriptors:
            if d.kind is DescKind.OUT:
                row_blocks = -(-d.dim0 // config.rows)
                col_blocks = -(-d.dim1 // (config.cols * config.tiles))
                blocks += row_blocks * col_blocks * -(-k // 4)
        return self.BUDGET_PER_BLOCK * (len(program.instructions) + blocks)

    def _check_budget(self, program: Program) -> None:
        """Refuse, before running, a program whose loops execute more instructions than the
        budget (loop counts are constants, so the count is exact up to an early ``halt``)."""
        budget = self.instruction_budget_of(program)
        executed = 0
        multipliers = [1]  # executions per instruction at each loop depth
        for index, instr in enumerate(program.instructions):
            runs = multipliers.pop() if isinstance(instr, EndLoop) else multipliers[-1]
            if isinstance(instr, Loop):
                multipliers.append(runs * max(instr.count, 1))
            executed += runs
            if executed > budget:
                raise MachineError(
                    f"instruction {index} ({instr.MNEMONIC}): the program executes more than "
                    f"its budget of {budget:,} instructions (this one runs "
                    f"{runs:,} times); a program for these tensors needs far fewer "
                    f"(Machine(instruction_budget=...) raises the budget)"
                )
            if isinstance(instr, Halt) and len(multipliers) == 1:
                break  # nothing after a top-level halt runs


class _Run:
    def __init__(self, machine: Machine, program: Program, memory: _Memory, compute: bool) -> None:
        self.machine = machine
        self.compute = compute
        self.config = machine.config
        self.program = program
        self.memory = memory
        self.regs = _Registers()
        self.act_buffer = _Buffer("activation", self.config.act_buffer_bytes, ACT_BUFFER)
        self.weight_buffer = _Buffer("weight", self.config.weight_buffer_bytes, WEIGHT_BUFFER)
        self.act: _ActBlock | None = None
        self.weights: _WeightBlock | None = None
        self.acc = _Accumulators()
        self.drained: _Drained | None = None
        self.outputs: dict[str, np.ndarray] = {}
        # timing: every executed instruction for the cycle model, with what the RTL
        # controller snapshots into engine commands (docs/rtl.md, "The controller")
        self.trace = EngineTrace(
            self.config.act_buffer_bytes,
            self.config.weight_buffer_bytes,
            self.config.dram_bytes_per_cycle,
        )
        self.dram_read = 0
        self.dram_written = 0
        self.buffer_read = {"activation": 0, "weight": 0, "output": 0}
        self.buffer_written = {"activation": 0, "weight": 0, "output": 0}
        self.macs = 0
        self.useful_pe_cycles = 0.0
        self.executed = 0
        self.decoded: OrderedDict[tuple, tuple[pe.PreparedWeights, int]] = OrderedDict()
        self.decoded_bytes = 0
        self._check_descriptors()

    # -- helpers -------------------------------------------------------------------------------

    def where(self, index: int, instr: Instruction) -> str:
        return f"instruction {index} ({instr.MNEMONIC})"

    def desc_name(self, desc: int) -> str:
        return self.program.descriptor_name(desc)

    def _check_descriptors(self) -> None:
        """Resolve every parameter / input up front: missing names and shapes fail early."""
        produced = {
            self.desc_name(i)
            for i, d in enumerate(self.program.descriptors)
            if d.kind is DescKind.OUT
        }
        for i, d in enumerate(self.program.descriptors):
            name = self.desc_name(i)
            label = f"descriptor d{i} ({d.kind.name.lower()} {name!r})"
            try:
                if d.kind is DescKind.ACT and name not in produced:
                    self._check_shape(self.memory.tensor(name, "activation"), d.shape, label)
                elif d.kind is DescKind.BIAS:
                    bias = self.memory.tensor(name, "bias")
                    self._check_shape(bias, d.shape, label)
                    if not np.isfinite(bias).all():
                        index = [int(i) for i in np.argwhere(~np.isfinite(bias))[0]]
                        raise MachineError(
                            f"{label}: bias {float(bias[tuple(index)])} at {index} is not finite"
                        )
                elif d.kind is DescKind.QWEIGHT:
                    self._check_qweight(self.memory.quantized(name), i, label)
            except MachineError as err:
                message = str(err)
                raise MachineError(
                    message if message.startswith("descriptor") else f"{label}: {message}"
                ) from None
            if d.kind is DescKind.OUT:
                self.outputs.setdefault(name, np.zeros(d.shape, np.float16))
                if self.outputs[name].shape != d.shape:
                    raise MachineError(
                        f"{label}: shape {d.dim0}x{d.dim1} disagrees with another out "
                        f"descriptor of the same tensor {self.outputs[name].shape}"
                    )

    @staticmethod
    def _check_shape(array: np.ndarray, shape: tuple[int, ...], label: str) -> None:
        if tuple(array.shape) != tuple(shape):
            expected = "x".join(map(str, shape))
            raise MachineError(
                f"{label}: tensor has shape {list(array.shape)}, descriptor says {expected}"
            )

    def _check_qweight(self, q: QuantizedTensor, index: int, label: str) -> None:
        d = self.program.descriptors[index]
        if tuple(q.shape) != (d.dim0, d.dim1):
            raise MachineError(
                f"{label}: weight has shape {list(q.shape)}, descriptor says {d.dim0}x{d.dim1}"
            )
        fmt = get_format(q.fmt)
        if q.fmt != format_name(d.fmt):
            raise MachineError(f"{label}: weight is {q.fmt}, descriptor says {format_name(d.fmt)}")
        if q.group_size != d.group_size:
            raise MachineError(
                f"{label}: weight has group size {q.group_size}, descriptor says {d.group_size}"
            )
        if q.scale_bits != d.scale_bits:
            raise MachineError(
                f"{label}: weight has {q.scale_bits} scale bits, descriptor says {d.scale_bits}"
            )
        if not fmt.accelerated:
            raise MachineError(f"{label}: format {q.fmt} has no bit-serial lowering")
        if q.channel_scale is None:
            raise MachineError(f"{label}: weight has no FP16 channel scale")
        self._check_weight_image(q, label)

    @staticmethod
    def _check_weight_image(q: QuantizedTensor, label: str) -> None:
        """The stored weight is one the hardware's memory can hold: codes of the format's
        width, SV indices and zero points in range, integral signed SB-bit scale codes, one
        scale per group, finite channel scales."""
        n, k = q.shape
        groups = q.n_groups
        fmt = get_format(q.fmt)
        assert q.scale_bits is not None and q.channel_scale is not None
        half = 1 << (q.scale_bits - 1)
        checks: list[tuple[str, torch.Tensor | None, tuple[int, ...], int, int]] = [
            ("codes", q.codes, (n, k), 0, (1 << fmt.bits) - 1),
            ("SV indices", q.sv_index, (n, groups), 0, max(fmt.n_candidates, 1) - 1),
            ("scale codes", q.scales, (n, groups), -half, half - 1),
            ("zero points", q.zeros, (n, groups), 0, (1 << fmt.bits) - 1),
        ]
        for what, tensor, shape, low, high in checks:
            if tensor is None:
                continue
            if tuple(tensor.shape) != shape:
                raise MachineError(
                    f"{label}: {what} have shape {list(tensor.shape)}, a {n}x{k} weight in "
                    f"groups of {q.group_size} has {list(shape)}"
                )
            if tensor.is_floating_point() or tensor.is_complex():
                values = tensor.to(torch.float64)
                if not bool(torch.isfinite(values).all()) or bool((values != values.round()).any()):
                    raise MachineError(
                        f"{label}: {what} must be integers, got {tensor.dtype} values that are not"
                    )
            if tensor.numel():
                wide = tensor.to(torch.int64) if not tensor.is_floating_point() else values
                bad = (wide < low) | (wide > high)
                if bool(bad.any()):
                    where = [int(i) for i in bad.nonzero()[0]]
                    raise MachineError(
                        f"{label}: {what} {int(wide[tuple(where)])} at {where} outside "
                        f"{low}..{high}"
                    )
        channel = q.channel_scale
        if tuple(channel.shape) != (n,):
            raise MachineError(
                f"{label}: channel scales have shape {list(channel.shape)}, not [{n}]"
            )
        if not bool(torch.isfinite(channel.to(torch.float32)).all()):
            row = int((~torch.isfinite(channel.to(torch.float32))).nonzero()[0])
            raise MachineError(f"{label}: channel scale of row {row} is {float(channel[row])}")

    # -- the interpreter -----------------------------------------------------------------------

    def execute(self) -> RunResult:
        code = self.program.instructions
        pc = 0
        loop_starts: list[tuple[Loop, int]] = []  # (the open loop, its pc)
        while pc < len(code):
            instr = code[pc]
            self.executed += 1
            if isinstance(instr, Halt):
                self.trace.halt()
                break
            traced = len(self.trace)
            if isinstance(instr, Loop):
                self.regs.loops[instr.lvl] = instr.first_index()
                loop_starts.append((instr, pc))
            elif isinstance(instr, EndLoop):
                loop, start = loop_starts[-1]
                following = loop.next_index(self.regs.loops[loop.lvl])
                if following is not None:
                    self.regs.loops[loop.lvl] = following
                    self.trace.control()
                    pc = start + 1
                    continue
                loop_starts.pop()
            else:
                self.step(pc, instr)
            if len(self.trace) == traced:  # the controller's own instruction: one cycle
                self.trace.control()
            pc += 1
        else:
            raise MachineError(
                f"the program ends after instruction {len(code) - 1} without halt (truncated?)"
            )
        return self.finish()

    def step(self, index: int, instr: Instruction) -> None:
        where = self.where(index, instr)
        match instr:
            case CfgArray(rows, cols, tiles):
                mine = (self.config.rows, self.config.cols, self.config.tiles)
                if (rows, cols, tiles) != mine:
                    raise MachineError(
                        f"{where}: program compiled for rows={rows} cols={cols} tiles={tiles}, "
                        f"the machine has rows={mine[0]} cols={mine[1]} tiles={mine[2]}"
                    )
                self.regs.geometry = (rows, cols, tiles)
                self.regs.block_rows = rows
                self.trace.reconfigure()
            case CfgFmt(fmt, sb, group_size):
                self.regs.fmt, self.regs.sb, self.regs.group_size = fmt, sb, group_size
                self.trace.reconfigure()
            case CfgSv(slot, value):
                self.regs.sv[slot] = value
                self.regs.sv_written[slot] = True
            case CfgKchunk(kc):
                self.regs.kchunk = kc
                self.trace.reconfigure()
            case CfgMblock(block_rows):
                self._need(where, "geometry")
                problem = block_rows_error(block_rows, self.config.rows, self.config.max_block_rows)
                if problem:
                    raise MachineError(f"{where}: {problem}")
                self.regs.block_rows = block_rows
                self.trace.reconfigure()
            case LdAct():
                self.load_act(where, instr)
            case LdWgt():
                self.load_weights(where, instr)
            case AccClr():
                self.acc = _Accumulators()
            case Mac():
                self.mac(where)
            case Drain(bias):
                self.drain(where, bias)
            case StOut():
                self.store(where, instr)
            case Nop():
                pass
            case _:
                raise MachineError(f"{where}: not executable")

    def _need(self, where: str, *names: str) -> None:
        for name in names:
            if getattr(self.regs, name) is None:
                instr = {
                    "geometry": "cfg.array",
                    "fmt": "cfg.fmt",
                    "kchunk": "cfg.kchunk",
                }[name]
                raise MachineError(f"{where}: no {instr} before it")

    def _block_index(self, lvl: int | None) -> int:
        return 0 if lvl is None else self.regs.loops[lvl]

    def _k_range(self, lvl: int | None, k: int) -> tuple[int | None, int, int, int]:
        """(chunk or None, first K, end K, K elements of the buffer block) of a load: chunk
        ``L_k`` of ``KC`` elements, or all of K without a K level."""
        if lvl is None:
            return None, 0, k, k
        kc = self.regs.kchunk
        assert kc is not None
        chunk = self.regs.loops[lvl]
        return chunk, chunk * kc, min(k, chunk * kc + kc), kc

    @staticmethod
    def _chunk_text(chunk: int | None) -> str:
        return "all of K" if chunk is None else f"K chunk {chunk}"

    def _load_transfer(
        self,
        where: str,
        buffer: _Buffer,
        block_bytes: int,
        tensor: str,
        nbytes: int,
        tag: BlockTag,
    ) -> None:
        """The load engine's command (:meth:`EngineTrace.load`) of a block of ``block_bytes``
        of buffer space, ``nbytes`` of it moved from ``tensor``; nothing moves when the buffer
        still holds the block (``tag``)."""
        buffer.check(block_bytes, where)
        if self.trace.load(buffer.index, block_bytes, nbytes, tensor, tag):
            return
        self.dram_read += nbytes
        self.buffer_written[buffer.name] += nbytes

    # -- loads ---------------------------------------------------------------------------------

    def _block(
        self, where: str, desc_index: int, outer_lvl: int | None, k_lvl: int | None, size: int
    ) -> _BlockRange:
        """The block of ``size`` rows (act) / channels (weight) at ``L[outer_lvl]`` by the K
        range of ``k_lvl`` (MachineError if it starts outside the tensor)."""
        desc = self.program.descriptors[desc_index]
        name = self.desc_name(desc_index)
        index = self._block_index(outer_lvl)
        outer, k = desc.shape
        k_chunk, k0, k1, block_k = self._k_range(k_lvl, k)
        start = index * size
        if start >= outer or k0 >= k:
            what, unit = ("row", "rows") if desc.kind is DescKind.ACT else ("column", "channels")
            raise MachineError(
                f"{where}: block ({what} block {index}, {self._chunk_text(k_chunk)}) lies "
                f"outside {'activation' if desc.kind is DescKind.ACT else 'weight'} {name!r} "
                f"({outer}x{k}, {size} {unit} x {block_k} K per block)"
            )
        return _BlockRange(name, index, start, min(outer, start + size), k_chunk, k0, k1, block_k)

    def load_act(self, where: str, instr: LdAct) -> None:
        self._need(where, "geometry", "kchunk")
        rows = self.regs.block_rows
        assert rows is not None
        desc = self.program.descriptors[instr.desc]
        block = self._block(where, instr.desc, instr.row_lvl, instr.k_lvl, rows)
        tensor = self.memory.tensor(block.name, "activation")
        written = self.memory.written.get(block.name)
        if written is not None and not written[block.start : block.end, block.k0 : block.k1].all():
            raise MachineError(
                f"{where}: reads rows {block.start}.. K {block.k0}.. of {block.name!r} before "
                f"st.out wrote them"
            )
        self._check_shape(tensor, desc.shape, f"{where}: activation {block.name!r}")
        data = tensor[block.start : block.end, block.k0 : block.k1]
        nbytes = data.size * ACT_BYTES
        block_bytes = rows * block.block_k * ACT_BYTES
        tag = (instr.desc, block.index, block.k_chunk)
        self._load_transfer(where, self.act_buffer, block_bytes, block.name, nbytes, tag)
        self.act = _ActBlock(
            data=np.ascontiguousarray(data) if self.compute else data,
            row_block=block.index,
            k_chunk=block.k_chunk,
            k0=block.k0,
            desc=instr.desc,
            nbytes=nbytes,
        )

    def load_weights(self, where: str, instr: LdWgt) -> None:
        self._need(where, "geometry", "fmt", "kchunk")
        desc = self.program.descriptors[instr.desc]
        name = self.desc_name(instr.desc)
        if (desc.fmt, desc.scale_bits, desc.group_size) != (
            self.regs.fmt,
            self.regs.sb,
            self.regs.group_size,
        ):
            raise MachineError(
                f"{where}: weight {name!r} is {format_name(desc.fmt)} sb={desc.scale_bits} "
                f"g={desc.group_size}, but cfg.fmt set {format_name(self.regs.fmt)} "
                f"sb={self.regs.sb} g={self.regs.group_size}"
            )
        kc = self.regs.kchunk
        group = desc.group_size
        problem = kchunk_error(kc, group, desc.dim1)
        if problem:
            raise MachineError(f"{where}: {problem}")
        columns = self.config.cols * self.config.tiles
        block = self._block(where, instr.desc, instr.col_lvl, instr.k_lvl, columns)
        q = self.memory.quantized(name)
        channels, k_range = slice(block.start, block.end), slice(block.k0, block.k1)
        groups = slice(block.k0 // group, -(-block.k1 // group))
        layout = WeightLayout.of_format(q.fmt, group, desc.scale_bits)
        block_bytes = int(layout.block_bytes(columns, block.block_k))
        nbytes = int(layout.block_bytes(block.end - block.start, block.k1 - block.k0))
        tag = (instr.desc, block.index, block.k_chunk)
        self._load_transfer(where, self.weight_buffer, block_bytes, name, nbytes, tag)
        self.weights = _WeightBlock(
            fmt=q.fmt,
            codes=q.codes[channels, k_range].numpy(),
            sv_index=q.sv_index[channels, groups].numpy(),
            zeros=None if q.zeros is None else q.zeros[channels, groups].numpy(),
            scale_codes=q.scales[channels, groups].numpy().astype(np.int64),
            channel_scale=q.channel_scale[channels].numpy(),
            col_block=block.index,
            k_chunk=block.k_chunk,
            k0=block.k0,
            desc=instr.desc,
            nbytes=nbytes,
        )

    # -- compute -------------------------------------------------------------------------------

    def _sv_register(self, where: str, block: _WeightBlock) -> tuple[int, ...]:
        """The SV register the term decoder of ``block`` reads (empty for formats without
        special values); MachineError if a group selects a slot no ``cfg.sv`` set."""
        if not uses_sv_register(block.fmt):
            return ()
        if block.sv_needed is None:
            block.sv_needed = sorted({int(i) for i in np.unique(block.sv_index)})
        unset = [i for i in block.sv_needed if not self.regs.sv_written[i]]
        if unset:
            raise MachineError(
                f"{where}: weight groups select special-value slot(s) {unset}, never set by cfg.sv"
            )
        return tuple(self.regs.sv)

    def _prepared(self, where: str, block: _WeightBlock) -> tuple[pe.PreparedWeights, int]:
        """The term decoder: codes → grid values (SV register) → bit-serial terms.

        The hardware decodes a block each time it streams it; the emulator keeps decoded blocks
        (keyed by weight, block and SV register, least recently used first out, at most
        ``Machine.decode_cache_bytes``), so a schedule that streams the weights past resident
        activations several times decodes each block once.
        """
        fmt = get_format(block.fmt)
        register = self._sv_register(where, block)
        key = (
            self.desc_name(block.desc),
            block.col_block,
            block.k0,
            block.codes.shape[1],
            register,
        )
        cached = self.decoded.get(key)
        if cached is not None:
            self.decoded.move_to_end(key)
            return cached
        group = self.regs.group_size
        per_weight_index = np.repeat(block.sv_index, group, axis=1)[:, : block.codes.shape[1]]
        values = decode_codes(fmt, block.codes, per_weight_index, register or None)
        if block.zeros is not None:
            values = values - np.repeat(block.zeros, group, axis=1)[:, : block.codes.shape[1]]
        terms_count = num_terms(fmt, register or None)
        try:
            terms = value_terms(fmt, values, terms_count)
        except ValueError as err:
            raise MachineError(f"{where}: {err}") from None
        prepared = pe.prepare_weights(terms)
        self.decoded[key] = (prepared, terms_count)
        self.decoded_bytes += prepared.nbytes
        while self.decoded_bytes > self.machine.decode_cache_bytes and len(self.decoded) > 1:
            _, (evicted, _) = self.decoded.popitem(last=False)
            self.decoded_bytes -= evicted.nbytes
        return prepared, terms_count

    def mac(self, where: str) -> None:
        self._need(where, "geometry", "fmt", "kchunk")
        act, weights = self.act, self.weights
        if act is None or weights is None:
            raise MachineError(f"{where}: no {'activation' if act is None else 'weight'} block")
        act_desc = self.program.descriptors[act.desc]
        wgt_desc = self.program.descriptors[weights.desc]
        if act_desc.dim1 != wgt_desc.dim1:
            raise MachineError(
                f"{where}: activation {self.desc_name(act.desc)!r} has K={act_desc.dim1}, "
                f"weight {self.desc_name(weights.desc)!r} has K={wgt_desc.dim1}"
            )
        # The mac runs the weight block's K range; the activation block must hold it.
        k_valid = weights.codes.shape[1]
        if weights.k_chunk is None and act.k_chunk is not None:
            raise MachineError(
                f"{where}: the weight block holds all of K, the activation block only "
                f"K chunk {act.k_chunk}"
            )
        if act.k_chunk is not None and act.k_chunk != weights.k_chunk:
            raise MachineError(
                f"{where}: activation block is K chunk {act.k_chunk}, "
                f"weight block is K chunk {weights.k_chunk}"
            )
        first = weights.k0 - act.k0
        act_data = act.data[:, first : first + k_valid]
        k_chunks = -(-act_desc.dim1 // self.regs.kchunk)
        chunks = set(range(k_chunks)) if weights.k_chunk is None else {weights.k_chunk}
        acc = self.acc
        key = (act.desc, weights.desc, act.row_block, weights.col_block)
        if acc.chunks and key != (acc.act_desc, acc.wgt_desc, acc.row_block, acc.col_block):
            raise MachineError(
                f"{where}: accumulators hold row block {acc.row_block} x column block "
                f"{acc.col_block}; this mac is row block {act.row_block} x column block "
                f"{weights.col_block} without acc.clr"
            )
        if chunks & acc.chunks:
            raise MachineError(
                f"{where}: K chunk {min(chunks & acc.chunks)} accumulated twice without acc.clr"
            )
        group = self.regs.group_size
        register = tuple(
            v if w else None for v, w in zip(self.regs.sv, self.regs.sv_written, strict=True)
        )
        problem = group_accumulator_error(weights.fmt, group, register)
        if problem:
            raise MachineError(f"{where}: {problem}")
        if self.compute:
            prepared, terms = self._prepared(where, weights)
            try:
                acc_values = pe.group_accumulators(act_data, prepared, group)
            except ValueError as err:  # an Inf/NaN activation: the PE has no special values
                raise MachineError(
                    f"{where}: activation {self.desc_name(act.desc)!r} row block "
                    f"{act.row_block}, {self._chunk_text(weights.k_chunk)}: {err}"
                ) from None
            x = pe.dequantize_groups(acc_values, weights.scale_codes)
            if acc.values is None:
                acc.values = np.zeros(x.shape[:2], np.float32)
            acc.values = pe.accumulate_groups(acc.values, x)
        else:
            register = self._sv_register(where, weights)
            terms = num_terms(get_format(weights.fmt), register or None)
            if acc.values is None:
                acc.values = np.zeros((act_data.shape[0], weights.codes.shape[0]), np.float32)
        acc.act_desc, acc.wgt_desc, acc.row_block, acc.col_block = key
        acc.chunks |= chunks
        # timing: the array takes the block's rows ROWS at a time, one pass per group of idle
        # tiles at once (runtime.arch.rules.row_groups; runtime.arch.schedule.MacTiming)
        rows = act_data.shape[0]
        sweeps = self.config.mac_sweeps(rows, weights.codes.shape[0])
        mac_timing = MacTiming.bit_serial_terms(terms, group, self.regs.sb, self.config.rows)
        compute, tail = (int(v) for v in mac_timing.cycles(sweeps, k_valid))
        self.trace.mac(compute, tail)
        # Every sweep broadcasts the weight block's terms again; the activation rows once.
        self.buffer_read["activation"] += act_data.size * ACT_BYTES
        self.buffer_read["weight"] += sweeps * weights.nbytes
        useful = rows * weights.codes.shape[0] * k_valid
        self.macs += useful
        self.useful_pe_cycles += useful * terms / pe.LANES

    def drain(self, where: str, bias: int | None) -> None:
        acc = self.acc
        if acc.values is None:
            raise MachineError(f"{where}: nothing accumulated since acc.clr")
        k = self.program.descriptors[acc.act_desc].dim1
        chunks = -(-k // self.regs.kchunk)
        if acc.chunks != set(range(chunks)):
            missing = sorted(set(range(chunks)) - acc.chunks)
            raise MachineError(f"{where}: K chunk(s) {missing} of {chunks} never accumulated")
        assert self.weights is not None
        wgt_desc = self.program.descriptors[acc.wgt_desc]
        columns = self.config.cols * self.config.tiles
        c0 = acc.col_block * columns
        c1 = min(wgt_desc.dim0, c0 + columns)
        channel_scale = self.memory.quantized(self.desc_name(acc.wgt_desc)).channel_scale
        bias_values = None
        if bias is not None:
            bias_desc = self.program.descriptors[bias]
            if bias_desc.dim0 != wgt_desc.dim0:
                raise MachineError(
                    f"{where}: bias {self.desc_name(bias)!r} has {bias_desc.dim0} channels, "
                    f"weight {self.desc_name(acc.wgt_desc)!r} has {wgt_desc.dim0}"
                )
            bias_values = self.memory.tensor(self.desc_name(bias), "bias")[c0:c1]
        if self.compute:
            data = pe.drain(acc.values, channel_scale[c0:c1].numpy(), bias_values)
        else:
            data = np.zeros(acc.values.shape, np.float16)
        self.trace.drain(self.config.mac_sweeps(*data.shape), self.config.rows)
        nbytes = data.size * ACT_BYTES
        self.buffer_written["output"] += nbytes
        self.drained = _Drained(data, acc.act_desc, acc.wgt_desc, acc.row_block, acc.col_block)

    def store(self, where: str, instr: StOut) -> None:
        drained = self.drained
        if drained is None:
            raise MachineError(f"{where}: nothing drained to store")
        desc = self.program.descriptors[instr.desc]
        name = self.desc_name(instr.desc)
        row_block = self._block_index(instr.row_lvl)
        col_block = self._block_index(instr.col_lvl)
        if (row_block, col_block) != (drained.row_block, drained.col_block):
            raise MachineError(
                f"{where}: stores at row block {row_block}, column block {col_block}, but the "
                f"drained block is row block {drained.row_block}, column block "
                f"{drained.col_block}"
            )
        m = self.program.descriptors[drained.act_desc].dim0
        n = self.program.descriptors[drained.wgt_desc].dim0
        if desc.shape != (m, n):
            raise MachineError(
                f"{where}: output {name!r} is {desc.dim0}x{desc.dim1}, the matmul of "
                f"{self.desc_name(drained.act_desc)!r} and {self.desc_name(drained.wgt_desc)!r}"
                f" is {m}x{n}"
            )
        rows, columns = self.regs.block_rows, self.config.cols * self.config.tiles
        assert rows is not None
        r0, c0 = row_block * rows, col_block * columns
        out = self.outputs[name]
        rows_written = slice(r0, r0 + drained.data.shape[0])
        cols_written = slice(c0, c0 + drained.data.shape[1])
        mask = self.memory.written.setdefault(name, np.zeros(out.shape, bool))
        if mask[rows_written, cols_written].any():
            raise MachineError(
                f"{where}: output {name!r} row block {row_block}, column block {col_block} "
                f"is stored a second time"
            )
        out[rows_written, cols_written] = drained.data
        self.memory.stored[name] = out
        mask[rows_written, cols_written] = True
        nbytes = drained.data.size * ACT_BYTES
        self.trace.store(name, nbytes)
        self.dram_written += nbytes
        self.buffer_read["output"] += nbytes
        self.drained = None

    # -- the report ----------------------------------------------------------------------------

    def _check_outputs_written(self) -> None:
        """Every element of every output is stored exactly once by the program."""
        rows, columns = (
            self.regs.block_rows or self.config.rows,
            self.config.cols * self.config.tiles,
        )
        for name, out in self.outputs.items():
            mask = self.memory.written.get(name)
            if mask is not None and mask.all():
                continue
            if mask is None:
                raise MachineError(
                    f"output {name!r} ({out.shape[0]}x{out.shape[1]}) is never stored"
                )
            r, c = (int(i) for i in np.argwhere(~mask)[0])
            missing = int((~mask).sum())
            raise MachineError(
                f"output {name!r}: {missing} of {mask.size} elements never stored, the first "
                f"at row {r}, column {c} (row block {r // rows}, column block {c // columns})"
            )

    def finish(self) -> RunResult:
        self._check_outputs_written()
        timed = self.trace.simulate()
        cycles = timed.cycles
        self.causes = timed.causes
        config = self.config
        table = config.energy
        busy = self.causes["compute"] + self.causes["dequant_tail"]
        read_pj, write_pj = table.sram_read_pj_per_byte, table.sram_write_pj_per_byte
        energy = {
            "pe": table.pe(self.machine.pe_kind) * config.total_pes * busy,
            "encoder": table.encoder_pj_per_tile_cycle * config.tiles * self.causes["compute"],
            "act_buffer": read_pj * self.buffer_read["activation"]
            + write_pj * self.buffer_written["activation"],
            "weight_buffer": read_pj * self.buffer_read["weight"]
            + write_pj * self.buffer_written["weight"],
            "out_buffer": read_pj * self.buffer_read["output"]
            + write_pj * self.buffer_written["output"],
            "dram": 8 * (self.dram_read + self.dram_written) * table.dram_pj_per_bit,
        }
        report = Report(
            cycles=cycles,
            cycles_by_cause=dict(self.causes),
            dram_bytes_read=self.dram_read,
            dram_bytes_written=self.dram_written,
            buffer_bytes_read=dict(self.buffer_read),
            buffer_bytes_written=dict(self.buffer_written),
            macs=self.macs,
            buffer_hits={
                name: self.trace.buffers[buffer.index].hits
                for name, buffer in (
                    ("activation", self.act_buffer),
                    ("weight", self.weight_buffer),
                )
            },
            pe_cycles_busy=busy,
            pe_utilization=self.useful_pe_cycles / (config.total_pes * cycles) if cycles else 0.0,
            energy_pj=energy,
            instructions_executed=self.executed,
            freq_hz=config.freq_hz,
        )
        outputs = {name: array.copy() for name, array in self.outputs.items()}
        return RunResult(outputs, report)
