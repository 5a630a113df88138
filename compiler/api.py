"""``bitmod.compile`` and ``bitmod.load``: a PyTorch model on the emulated BitMoD accelerator.

::

    import bitmod
    compiled = bitmod.compile(model, (tokens,), dtype="bitmod3")
    logits = compiled(tokens)          # matmuls on the emulator, the rest on the host
    print(compiled.report())           # cycles, energy, bits/weight, per-layer dtype and error
    compiled.save("build/gpt")         # IR, binaries, parameter archive, host graph, report
    again = bitmod.load("build/gpt")   # runs without the model's source or torch tracing

How a model is compiled
-----------------------
1. :mod:`bitmod.compiler.torch_frontend` traces the model with ``torch.export`` and walks the
   ATen graph: every matmul with a constant weight (``nn.Linear`` and friends) and every
   activation × activation matmul (attention) becomes an *accelerated op*; the rest of the
   graph is kept as the host program (:mod:`bitmod.compiler.host`).
2. Each accelerated op gets its own bitmod-dialect module (``op_module``), which runs through
   the pass pipeline ``bitmod-quantize`` (weights into the parameter archive, Algorithm 1 per
   group), ``bitmod-tile`` (output-stationary tiling for the hardware's array) and
   ``bitmod-lower-to-isa``; :func:`bitmod.backends.emit.module_to_program` gives its binary.
   Attention matmuls skip ``bitmod-quantize``: their right operand is quantized when the
   model runs (INT8 by default, ``kv_dtype="int4"`` for INT4), see
   :mod:`bitmod.compiler.offload`.
3. Calling the compiled model runs the host program; each accelerated op executes its binary
   on :class:`bitmod.runtime.emulator.machine.Machine` with the archive and its FP16
   activation as the memory image. Results are what the binary computes, bit for bit.

Per-layer choices (``layers=``)
-------------------------------
A mapping from layer names (as listed in ``report()``: an ``nn.Linear``'s module path, or
``<module>.<op><i>`` for other matmuls such as ``blocks.0.attn.matmul0``) or
:func:`fnmatch` patterns (``"blocks.*.mlp.*"``) to a format name, or ``"host"`` to keep the
layer on the host in floating point. An exact name wins over patterns; among patterns the last
matching entry wins. Every key must match at least one layer.

Shapes
------
The graph is static: the compiled model accepts inputs of the example's shapes and dtypes
only. K that is not a multiple of the group size is not padded: the last group of each row
is shorter and quantized on its own weights (:func:`bitmod.compiler.offload.plan_groups`);
any M and N work (the tiles are clipped).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import os
import shutil
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_type_hints

import torch
from bitmod.compiler.host import HostError, HostProgram
from bitmod.compiler.offload import (
    Binding,
    FastPath,
    OpRecord,
    OpStats,
    QuantPlan,
    check_accelerated_dtype,
    plan_groups,
    run_op,
    to_fp16,
)
from bitmod.compiler.torch_frontend import (
    AcceleratedOp,
    CompileError,
    HostOp,
    TraceError,
    import_model,
    op_module,
)
from bitmod.runtime.arch.hwconfig import AreaTable, EnergyTable, HardwareConfig
from bitmod.runtime.emulator.machine import Machine, MachineError
from bitmod.runtime.formats import dequantize
from bitmod.runtime.isa import CfgArray, DescKind, IsaError, Program, format_name
from bitmod.runtime.progress import show_progress
from bitmod.runtime.storage.archive import ArchiveError, ParamArchive
from bitmod.runtime.storage.fileio import exchange, make_directory_beside, write_atomically
from bitmod.runtime.storage.jsontext import JsonError, parse_json
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm import tqdm

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "CompileError",
    "CompiledModel",
    "CompiledOp",
    "ModelReport",
    "RunOutput",
    "TraceError",
    "check_bundle_files",
    "compile",
    "load",
]

BUNDLE_FORMAT = "bitmod-compiled-model"
BUNDLE_VERSION = 2  # 2: SHA-256 of every file and of every manifest entry
HOST = "host"
"""The ``layers=`` value that keeps a layer on the host."""

_FILES = {
    "manifest": "manifest.json",
    "host": "host.json",
    "params": "params.safetensors",
    "ir": "model.mlir",
    "inputs": "inputs.safetensors",
    "report": "report.json",
}
_PROGRAM_DIR = "programs"


# --- the compiled model ------------------------------------------------------------------------


@dataclass
class CompiledOp:
    """One accelerated op: what it is, how it was quantized, its binary and memory names."""

    op: AcceleratedOp
    plan: QuantPlan
    program: Program
    binding: Binding
    lowered_ir: str
    weight_error: dict[str, float] | None = None  # linears: relative/abs error of Ŵ vs W
    bits_per_weight: float | None = None  # linears: storage incl. metadata per weight


@dataclass
class RunOutput:
    """What :meth:`CompiledModel.run` returns."""

    outputs: Any
    stats: dict[str, OpStats]
    records: list[OpRecord] | None = None


@dataclass
class ModelReport:
    """Cycles, energy, bits per weight, per-layer formats and errors, where each op ran."""

    model: str
    settings: dict[str, Any]
    hardware: dict[str, Any]
    inputs: str
    cycles: int
    seconds: float
    energy_pj: float
    energy_by_component: dict[str, float]
    macs: int
    bits_per_weight: float | None
    layers: list[dict[str, Any]]
    host_ops: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Any, source: str) -> ModelReport:
        """A report read back from :meth:`to_json`'s JSON (a bundle's ``report.json``);
        CompileError naming ``source`` and the first entry that is missing or mistyped."""

        def fail(where: str, problem: str) -> CompileError:
            return CompileError(f"{source}: not a bitmod report ({where}: {problem})")

        def check_fields(value: Any, fields: Mapping[str, Any], where: str) -> None:
            if not isinstance(value, dict):
                raise fail(where or "the file", "expected a JSON object")
            for name, expected in fields.items():
                key = f"{where}.{name}" if where else name
                if name not in value:
                    raise fail(key, "missing")
                if not _json_is(value[name], expected):
                    raise fail(key, f"expected {_json_type_name(expected)}, got {value[name]!r}")

        check_fields(data, get_type_hints(cls), "")
        check_fields(data["settings"], _REPORT_SETTINGS, "settings")
        check_fields(data["hardware"], _REPORT_HARDWARE, "hardware")
        for index, layer in enumerate(data["layers"]):
            check_fields(layer, _REPORT_LAYER, f"layers[{index}]")
        for index, op in enumerate(data["host_ops"]):
            check_fields(op, _REPORT_HOST_OP, f"host_ops[{index}]")
            if "." not in op["aten"]:
                raise fail(f"host_ops[{index}].aten", f"not an aten op name: {op['aten']!r}")
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{name: value for name, value in data.items() if name in known})

    def format(self) -> str:
        """A human-readable table: totals, accelerated layers, host ops by category."""
        bits = "-" if self.bits_per_weight is None else f"{self.bits_per_weight:.3f}"
        lines = [
            f"bitmod report: {self.model} (weights {self.settings['dtype']}, "
            f"K/V {self.settings['kv_dtype']}, group {self.settings['group_size']}, "
            f"{self.hardware['tiles']} tiles of {self.hardware['rows']}x{self.hardware['cols']}"
            f" PEs; run on {self.inputs})",
            f"  cycles {self.cycles:,d} ({self.seconds * 1e6:.2f} us at "
            f"{self.hardware['freq_hz'] / 1e9:g} GHz), energy {self.energy_pj / 1e6:.3f} uJ, "
            f"MACs {self.macs:,d}, bits/weight {bits}",
            "",
            f"  {'layer':<28} {'where':<11} {'dtype':<8} {'M x K x N':<18} {'runs':>4} "
            f"{'bits/w':>6} {'rel.err':>8} {'cycles':>10} {'energy uJ':>10}",
        ]
        for layer in self.layers:
            shape = f"{layer['m']}x{layer['k']}x{layer['n']}"
            if layer["k_padded"] != layer["k"]:
                shape += f" (K->{layer['k_padded']})"
            bits_w = "-" if layer["bits_per_weight"] is None else f"{layer['bits_per_weight']:.2f}"
            error = "-" if layer["rel_error"] is None else f"{layer['rel_error']:.4f}"
            lines.append(
                f"  {layer['name']:<28} {layer['where']:<11} {layer['dtype']:<8} {shape:<18} "
                f"{layer['runs']:>4} {bits_w:>6} {error:>8} {layer['cycles']:>10,d} "
                f"{layer['energy_pj'] / 1e6:>10.4f}"
            )
        by_category: dict[str, list[str]] = {}
        for op in self.host_ops:
            by_category.setdefault(op["category"], []).append(op["aten"].split(".")[1])
        if by_category:
            lines.append("")
            lines.append(f"  host ops ({len(self.host_ops)}):")
            reasons = {op["category"]: op["reason"] for op in self.host_ops}
            for category, names in by_category.items():
                kinds = ", ".join(sorted(set(names)))
                lines.append(f"    {len(names):>3} {category} ({kinds}): {reasons[category]}")
            for op in self.host_ops:
                if op["category"] == "matmul":
                    lines.append(f"    host matmul {op['module'] or op['node']}: {op['reason']}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


_NUMBER = float
_REPORT_SETTINGS = {"dtype": str, "kv_dtype": str, "group_size": int}
_REPORT_HARDWARE = {"tiles": int, "rows": int, "cols": int, "freq_hz": _NUMBER}
_REPORT_LAYER = {
    "name": str,
    "where": str,
    "dtype": str,
    "m": int,
    "k": int,
    "n": int,
    "k_padded": int,
    "runs": int,
    "bits_per_weight": _NUMBER | None,
    "rel_error": _NUMBER | None,
    "cycles": int,
    "energy_pj": _NUMBER,
}
_REPORT_HOST_OP = {"node": str, "module": str, "aten": str, "category": str, "reason": str}
"""The entries of a report's settings, hardware, layers and host ops that ``format`` reads."""


def _json_is(value: Any, expected: Any) -> bool:
    """Whether a JSON value has type ``expected`` (a float may be written as an integer)."""
    alternatives = typing.get_args(expected) if isinstance(expected, types.UnionType) else ()
    if alternatives:
        return any(_json_is(value, alternative) for alternative in alternatives)
    origin = typing.get_origin(expected) or expected
    if expected is type(None):
        return value is None
    if isinstance(value, bool):
        return origin is bool
    if origin is float:
        return isinstance(value, int | float)
    return isinstance(value, origin)


def _json_type_name(expected: Any) -> str:
    alternatives = typing.get_args(expected) if isinstance(expected, types.UnionType) else ()
    if alternatives:
        return " or ".join(_json_type_name(alternative) for alternative in alternatives)
    origin = typing.get_origin(expected) or expected
    names = {str: "a string", int: "an integer", float: "a number", dict: "an object"}
    return {list: "a list", type(None): "null"}.get(origin) or names.get(origin, str(origin))


class CompiledModel:
    """A model compiled for the BitMoD accelerator; call it like the model."""

    def __init__(
        self,
        *,
        model_name: str,
        host: HostProgram,
        ops: Sequence[CompiledOp],
        host_ops: Sequence[HostOp],
        archive: ParamArchive,
        settings: Mapping[str, Any],
        hardware: HardwareConfig,
        ir: str,
        example_inputs: Sequence[torch.Tensor],
        device: str | torch.device | None = None,
    ) -> None:
        self.model_name = model_name
        self.host = host
        self.ops = {c.op.name: c for c in ops}
        self.host_ops = list(host_ops)
        self.archive = archive
        self.settings = dict(settings)
        self.hardware = hardware
        self.ir = ir
        self.example_inputs = list(example_inputs)
        self.machine = Machine(hardware)
        self._fast: FastPath | None = None
        if device is not None:
            self.to_device(device)
        self._bias16: dict[str, torch.Tensor] = {}
        self._last: tuple[str, dict[str, OpStats]] | None = None
        self._check()

    def _check(self) -> None:
        """Every name the host program and the programs need is in the archive."""
        for name in self.host.param_names():
            if name not in self.archive:
                raise CompileError(f"host parameter {name!r} is missing from the archive")
        for name in self.host.accel_names():
            if name not in self.ops:
                raise CompileError(f"host program calls unknown accelerated op {name!r}")
        for compiled in self.ops.values():
            op = compiled.op
            if op.kind == "linear" and not self.archive.is_quantized(compiled.binding.weight):
                raise CompileError(
                    f"op '{op.name}': quantized weight {compiled.binding.weight!r} is missing "
                    f"from the archive"
                )
            if compiled.binding.bias is not None and compiled.binding.bias not in self.archive:
                raise CompileError(f"op '{op.name}': bias {compiled.binding.bias!r} is missing")
            if compiled.binding.bias is not None:
                to_fp16(self.archive.get(compiled.binding.bias), f"op '{op.name}' bias")
            strings = set(compiled.program.strings)
            for name in (compiled.binding.act, compiled.binding.weight, compiled.binding.out):
                if name not in strings:
                    raise CompileError(f"op '{op.name}': its program has no tensor {name!r}")
            geometry = next(
                (i for i in compiled.program.instructions if isinstance(i, CfgArray)), None
            )
            if geometry is None:
                raise CompileError(f"op '{op.name}': its program declares no array (cfg.array)")
            mine = (self.hardware.rows, self.hardware.cols, self.hardware.tiles)
            if (geometry.rows, geometry.cols, geometry.tiles) != mine:
                raise CompileError(
                    f"op '{op.name}': program tiled for rows={geometry.rows} "
                    f"cols={geometry.cols} tiles={geometry.tiles}, the hardware has "
                    f"rows={mine[0]} cols={mine[1]} tiles={mine[2]} (compile with a matching "
                    f"hardware=HardwareConfig(...) instead of tiling options in the pipeline)"
                )

    # -- running ---------------------------------------------------------------------------

    def to_device(self, device: str | torch.device | None) -> CompiledModel:
        """Run the accelerated ops' arithmetic on ``device`` ("cpu", "cuda", ...: the bit-exact
        torch kernels, Triton on CUDA) instead of the instruction interpreter; ``None`` goes
        back to the interpreter. Outputs and reports are the same bits either way
        (:class:`~bitmod.compiler.offload.FastPath`)."""
        if device is None:
            self._fast = None
            return self
        try:
            self._fast = FastPath(self.machine, device)
        except (RuntimeError, ValueError) as error:
            raise CompileError(f"device {str(device)!r}: {error}") from None
        return self

    @property
    def device(self) -> torch.device | None:
        """The device of the fast path, None when the interpreter runs every op."""
        return None if self._fast is None else self._fast.device

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.run(args, kwargs).outputs

    def run(
        self,
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None = None,
        *,
        record: bool = False,
        label: str = "last call",
    ) -> RunOutput:
        """Run once; ``record=True`` also returns every accelerator run's operands/result."""
        if not isinstance(args, tuple | list):
            raise CompileError(
                f"run: the inputs must be a tuple or list, got {type(args).__name__}"
            )
        if kwargs is not None and not isinstance(kwargs, Mapping):
            raise CompileError(
                f"run: the keyword inputs must be a mapping, got {type(kwargs).__name__}"
            )
        flat = self.host.flatten_inputs(tuple(args), dict(kwargs or {}))
        stats = {name: OpStats() for name in self.ops}
        records: list[OpRecord] | None = [] if record else None

        def accelerated(name: str, operands: list[torch.Tensor]) -> torch.Tensor:
            compiled = self.ops[name]
            try:
                return run_op(
                    compiled.op,
                    compiled.plan,
                    compiled.program,
                    compiled.binding,
                    operands,
                    machine=self.machine,
                    archive=self.archive,
                    bias16=self._bias(compiled),
                    stats=stats[name],
                    records=records,
                    fast=self._fast,
                )
            except MachineError as error:
                raise CompileError(f"op '{name}' failed on the machine: {error}") from None

        outputs = self.host.run(flat, self.archive.get, accelerated)
        self._last = (label, stats)
        return RunOutput(outputs, stats, records)

    def _bias(self, compiled: CompiledOp) -> torch.Tensor | None:
        name = compiled.binding.bias
        if name is None:
            return None
        if name not in self._bias16:
            self._bias16[name] = self.archive.get(name).detach().to(torch.float16).contiguous()
        return self._bias16[name]

    # -- the report ------------------------------------------------------------------------

    def report(self) -> ModelReport:
        """The report of the last call (before any call: of a run on the example inputs)."""
        if self._last is None:
            self.run(self.example_inputs, label="the example inputs")
        assert self._last is not None
        label, stats = self._last
        layers = []
        total_bits = 0.0
        total_weights = 0
        energy: dict[str, float] = {}
        for name, compiled in self.ops.items():
            op, plan, op_stats = compiled.op, compiled.plan, stats[name]
            m, k, n = op.mkn
            if op.kind == "linear":
                rel_error = (
                    None if compiled.weight_error is None else compiled.weight_error["relative"]
                )
                bits = compiled.bits_per_weight
                if bits is not None:
                    total_bits += bits * n * plan.k_padded
                    total_weights += n * k
                why = "constant-weight matmul: quantized weight on the bit-serial PE"
            else:
                rel_error = op_stats.kv_relative_error
                bits = None
                why = (
                    f"activation x activation matmul: right operand quantized to "
                    f"{plan.dtype} at run time (paper Sec. IV-B)"
                )
            for component, value in op_stats.energy_pj.items():
                energy[component] = energy.get(component, 0.0) + value
            layers.append(
                {
                    "name": name,
                    "kind": op.kind,
                    "module": op.module,
                    "aten": op.aten,
                    "where": "accelerator",
                    "why": why,
                    "dtype": plan.dtype,
                    "group_size": plan.group_size,
                    "scale_bits": plan.scale_bits,
                    "m": m,
                    "k": k,
                    "n": n,
                    "k_padded": plan.k_padded,
                    "runs": op_stats.runs,
                    "bits_per_weight": bits,
                    "rel_error": rel_error,
                    "weight_error": compiled.weight_error,
                    "instructions": len(compiled.program.instructions),
                    "cycles": op_stats.cycles,
                    "energy_pj": op_stats.energy_total_pj,
                    "macs": op_stats.macs,
                    "dram_bytes": op_stats.dram_bytes,
                    "cycles_by_cause": dict(op_stats.cycles_by_cause),
                }
            )
        host_ops = [dict(op.to_json(), where="host") for op in self.host_ops]
        cycles = sum(layer["cycles"] for layer in layers)
        return ModelReport(
            model=self.model_name,
            settings=dict(self.settings),
            hardware=_hardware_to_json(self.hardware),
            inputs=label,
            cycles=cycles,
            seconds=cycles / self.hardware.freq_hz,
            energy_pj=float(sum(energy.values())),
            energy_by_component=energy,
            macs=sum(layer["macs"] for layer in layers),
            bits_per_weight=total_bits / total_weights if total_weights else None,
            layers=layers,
            host_ops=host_ops,
        )

    # -- saving ----------------------------------------------------------------------------

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the bundle atomically: ``directory`` is then the complete new bundle, and
        until then the old one (never a mix, never none; a failure leaves no trace).

        An existing ``directory`` is replaced only if it is a bitmod bundle (or empty); a
        symbolic link to one is followed. Files and directories get the modes a plain
        ``open()`` / ``mkdir`` gives. OSError becomes a CompileError naming the path.
        """
        if not isinstance(directory, str | os.PathLike) or not os.fspath(directory):
            raise CompileError(f"save: give a directory path, got {directory!r}")
        target = Path(directory)
        if target.exists() and not _is_replaceable(target):
            raise CompileError(
                f"{target} exists and is not a bitmod bundle (no {_FILES['manifest']}); "
                f"refusing to overwrite it"
            )
        report = self.report()
        real = Path(os.path.realpath(target))
        try:
            staging = make_directory_beside(real)
            try:
                self._write(staging, report)
                if real.exists():
                    exchange(staging, real)  # one step; staging now holds the old bundle
                else:
                    os.replace(staging, real)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        except OSError as error:
            where = f" ({error.filename})" if error.filename else ""
            raise CompileError(
                f"cannot write bundle {target}: {error.strerror or error}{where}"
            ) from None
        return target

    def _write(self, root: Path, report: ModelReport) -> None:
        (root / _PROGRAM_DIR).mkdir()
        ops_json = []
        for index, (name, compiled) in enumerate(self.ops.items()):
            stem = f"{_PROGRAM_DIR}/{index:03d}_{_file_stem(name)}"
            (root / f"{stem}.bin").write_bytes(compiled.program.encode())
            (root / f"{stem}.s").write_text(compiled.program.to_asm() + "\n")
            (root / f"{stem}.mlir").write_text(compiled.lowered_ir)
            ops_json.append(
                {
                    "op": compiled.op.to_json(),
                    "plan": compiled.plan.to_json(),
                    "binding": compiled.binding.to_json(),
                    "program": f"{stem}.bin",
                    "lowered_ir": f"{stem}.mlir",
                    "weight_error": compiled.weight_error,
                    "bits_per_weight": compiled.bits_per_weight,
                }
            )
        manifest = {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            "model": self.model_name,
            "settings": self.settings,
            "hardware": _hardware_to_json(self.hardware),
            "ops": ops_json,
            "host_ops": [op.to_json() for op in self.host_ops],
            "files": dict(_FILES),
        }
        (root / _FILES["host"]).write_text(self.host.to_json())
        self.archive.save(root / _FILES["params"])
        (root / _FILES["ir"]).write_text(self.ir)
        inputs = {f"input.{i}": t.contiguous() for i, t in enumerate(self.example_inputs)}
        # (through write_atomically for the file mode: safetensors creates files 0600)
        write_atomically(root / _FILES["inputs"], lambda path: save_file(inputs, str(path)))
        (root / _FILES["report"]).write_text(json.dumps(report.to_json(), indent=1) + "\n")
        manifest["checksums"] = {
            path.relative_to(root).as_posix(): _sha256(path)
            for path in sorted(root.rglob("*"))
            if path.is_file()
        }
        manifest["entry_checksums"] = _entry_checksums(manifest)
        (root / _FILES["manifest"]).write_text(json.dumps(manifest, indent=1) + "\n")

    def __repr__(self) -> str:
        return (
            f"CompiledModel({self.model_name}: {len(self.ops)} accelerated ops, "
            f"{len(self.host_ops)} host ops, weights {self.settings.get('dtype')})"
        )


def _is_replaceable(path: Path) -> bool:
    if not path.is_dir():
        return False
    return (path / _FILES["manifest"]).is_file() or not any(path.iterdir())


def _file_stem(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:80]


# --- hardware configuration as JSON ----------------------------------------------------------


def _plain(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else value


def _hardware_to_json(hardware: HardwareConfig) -> dict[str, Any]:
    data = {
        f.name: getattr(hardware, f.name)
        for f in dataclasses.fields(hardware)
        if f.name not in ("energy", "area")
    }
    for table in ("energy", "area"):
        value = getattr(hardware, table)
        data[table] = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return data


def _hardware_from_json(data: Mapping[str, Any]) -> HardwareConfig:
    scalars = {k: v for k, v in data.items() if k not in ("energy", "area")}
    return HardwareConfig(
        **scalars, energy=EnergyTable(**data["energy"]), area=AreaTable(**data["area"])
    )


# --- layer rules -------------------------------------------------------------------------------


class _LayerRules:
    """``layers=``: exact names beat patterns; the last matching pattern wins."""

    def __init__(self, layers: Mapping[str, str] | None) -> None:
        if layers is not None and not isinstance(layers, Mapping):
            raise CompileError(
                f"layers must be a mapping of layer name or pattern to a format name or "
                f"'{HOST}', got {type(layers).__name__}"
            )
        self.rules: dict[str, str] = {}
        for key, value in (layers or {}).items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise CompileError(f"layers entry {key!r}: {value!r}: expected str: str")
            if value != HOST:
                check_accelerated_dtype(value, f"layers[{key!r}]")
            self.rules[key] = value
        self.used: set[str] = set()
        self.seen: list[str] = []

    def lookup(self, name: str) -> str | None:
        self.seen.append(name)
        if name in self.rules:
            self.used.add(name)
            return self.rules[name]
        found = None
        for pattern, value in self.rules.items():
            if fnmatch.fnmatchcase(name, pattern):
                self.used.add(pattern)
                found = value
        return found

    def check_all_used(self) -> None:
        unused = [key for key in self.rules if key not in self.used]
        if unused:
            raise CompileError(
                f"layers= names {', '.join(repr(k) for k in unused)}, which match no layer; "
                f"layers: {', '.join(self.seen) or 'none'}"
            )


# --- compile -----------------------------------------------------------------------------------


def _default_pipeline(hardware: HardwareConfig) -> str:
    return (
        "bitmod-quantize,"
        f"bitmod-tile{{rows={hardware.rows} cols={hardware.cols} tiles={hardware.tiles} "
        f"act-buffer={hardware.act_buffer_bytes} weight-buffer={hardware.weight_buffer_bytes} "
        f"max-block-rows={hardware.max_block_rows} row-groups={hardware.row_groups} "
        f"dram-bytes-per-cycle={hardware.dram_bytes_per_cycle}}},"
        "bitmod-lower-to-isa"
    )


def _passes(pipeline: str) -> list[Any]:
    # The compiler (xDSL, dialects, passes) is imported only by ``compile``: ``load`` and
    # running a saved bundle need the machine alone.
    from bitmod.compiler.pipelines import PIPELINES, build_pipeline
    from bitmod.dialects.diagnostics import DiagnosticError

    text = PIPELINES.get(pipeline, pipeline)
    try:
        return list(build_pipeline(text).passes)
    except DiagnosticError as error:
        raise CompileError(f"pipeline {pipeline!r}: {error.render('<pipeline>')}") from None


def _check_options(
    dtype: str, group_size: int, scale_bits: int, kv_dtype: str, kv_group_size: int
) -> None:
    check_accelerated_dtype(dtype, "dtype")
    check_accelerated_dtype(kv_dtype, "kv_dtype")
    for what, value in (("group_size", group_size), ("kv_group_size", kv_group_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0 or value % 4:
            raise CompileError(
                f"{what} must be a positive multiple of 4 (the PE takes 4 weights a cycle), "
                f"got {value!r}"
            )
    if not isinstance(scale_bits, int) or isinstance(scale_bits, bool) or not 2 <= scale_bits <= 8:
        raise CompileError(
            f"scale_bits must be 2..8 (the PE dequantizes by an integer group scale, one bit a "
            f"cycle), got {scale_bits!r}"
        )


def _check_not_empty(op: AcceleratedOp) -> None:
    """Refuse an op the example traced with a zero-size operand: no tile has work for it."""
    shapes = {"input": op.input_shapes[0], "output": op.output_shape}
    if op.kind != "linear" and len(op.input_shapes) > 1:
        shapes = {"lhs": op.input_shapes[0], "rhs": op.input_shapes[1], "output": op.output_shape}
    for what, shape in shapes.items():
        if 0 in shape:
            raise CompileError(
                f"layer {op.name!r}{f' ({op.module})' if op.module else ''}: the example gives "
                f"its {what} the empty shape {list(shape)}; compile with example inputs that have "
                f"no zero-size dimension (the accelerator's matmul needs M, K, N >= 1)"
            )


def compile(  # noqa: A001 - the public name mirrors torch.compile
    model: torch.nn.Module,
    example_args: Sequence[Any] | torch.Tensor,
    dtype: str = "bitmod3",
    group_size: int = 128,
    scale_bits: int = 8,
    pipeline: str | None = None,
    layers: Mapping[str, str] | None = None,
    kv_dtype: str = "int8",
    *,
    example_kwargs: Mapping[str, Any] | None = None,
    kv_group_size: int | None = None,
    hardware: HardwareConfig | None = None,
    progress: bool | None = None,
    device: str | torch.device | None = None,
) -> CompiledModel:
    """Compile ``model`` for the BitMoD accelerator (see the module docstring).

    ``dtype``: weight format of the linears (``bitmod3``, ``bitmod4``, ``int8``, ... any
    format with a bit-serial lowering); ``group_size`` weights per group along K;
    ``scale_bits`` of the second-level INT group scales; ``kv_dtype`` the run-time format of
    attention's K and V (``int8`` or ``int4``), grouped by ``kv_group_size`` (default
    ``group_size``) along the reduction; ``layers`` per-layer formats or ``"host"``;
    ``pipeline`` a pass pipeline (or preset name) run on each op's module instead of the
    default ``bitmod-quantize,bitmod-tile{...hardware...},bitmod-lower-to-isa`` (its
    ``bitmod-quantize`` is skipped for run-time quantized ops; formats come from ``dtype`` /
    ``layers``); ``hardware`` the accelerator (default: the paper's 16 tiles of 8x8);
    ``progress`` shows a tqdm bar (default: on a terminal, for 8 layers or more); ``device``
    runs the accelerated ops on the bit-exact torch/Triton kernels of that device instead of
    the instruction interpreter (:meth:`CompiledModel.to_device`: same outputs, same report).
    """
    if hardware is not None and not isinstance(hardware, HardwareConfig):
        raise CompileError(
            f"hardware must be a HardwareConfig (e.g. HardwareConfig(rows=8, tiles=4)), got "
            f"{type(hardware).__name__}"
        )
    hardware = hardware or HardwareConfig()
    kv_group_size = group_size if kv_group_size is None else kv_group_size
    _check_options(dtype, group_size, scale_bits, kv_dtype, kv_group_size)
    rules = _LayerRules(layers)
    if not isinstance(example_args, tuple | list):
        example_args = (example_args,)
    imported = import_model(
        model,
        example_args,
        example_kwargs,
        keep_on_host=lambda name: rules.lookup(name) == HOST,
    )
    rules.check_all_used()
    for op in imported.ops:
        _check_not_empty(op)
    passes = _passes(pipeline if pipeline is not None else _default_pipeline(hardware))

    # Local imports, as in _passes: keep xDSL out of load() and run().
    from bitmod.compiler.ir_io import print_module
    from bitmod.dialects.diagnostics import DiagnosticError
    from bitmod.passes.context import make_context
    from xdsl.dialects.builtin import ModuleOp

    ctx = make_context()
    for name, tensor in imported.tensors.items():
        ctx.archive.put(name, tensor)
    show = show_progress(progress, len(imported.ops))
    compiled_ops: list[CompiledOp] = []
    quantized_funcs: list[Any] = []
    bar = tqdm(imported.ops, desc="bitmod.compile", unit="layer", disable=not show, file=sys.stderr)
    for op in bar:
        bar.set_postfix_str(op.name, refresh=False)
        compiled, quantized_func = _compile_op(
            op,
            ctx,
            passes,
            rules,
            dtype=dtype,
            group_size=group_size,
            scale_bits=scale_bits,
            kv_dtype=kv_dtype,
            kv_group_size=kv_group_size,
            imported_tensors=imported.tensors,
            print_module=print_module,
            diagnostic=DiagnosticError,
        )
        compiled_ops.append(compiled)
        quantized_funcs.append(quantized_func)
    bar.close()

    ir_module = ModuleOp(quantized_funcs)
    from xdsl.dialects.builtin import StringAttr  # local: see _passes

    ir_module.attributes["bitmod.params"] = StringAttr(_FILES["params"])
    archive = _bundle_archive(imported.host.param_names(), compiled_ops, ctx.archive)
    settings = {
        "dtype": dtype,
        "group_size": group_size,
        "scale_bits": scale_bits,
        "kv_dtype": kv_dtype,
        "kv_group_size": kv_group_size,
        "layers": dict(layers or {}),
        "pipeline": pipeline if pipeline is not None else _default_pipeline(hardware),
    }
    inputs = list(example_args) + list((example_kwargs or {}).values())
    return CompiledModel(
        model_name=imported.model_name,
        host=imported.host,
        ops=compiled_ops,
        host_ops=imported.host_ops,
        archive=archive,
        settings=settings,
        hardware=hardware,
        ir=print_module(ctx, ir_module),
        example_inputs=[t.detach().clone() for t in inputs],
        device=device,
    )


def _compile_op(
    op: AcceleratedOp,
    ctx: Any,
    passes: list[Any],
    rules: _LayerRules,
    *,
    dtype: str,
    group_size: int,
    scale_bits: int,
    kv_dtype: str,
    kv_group_size: int,
    imported_tensors: Mapping[str, torch.Tensor],
    print_module: Callable[[Any, Any], str],
    diagnostic: type[Exception],
) -> tuple[CompiledOp, Any]:
    """Build, quantize, tile and lower one op; (its CompiledOp, its quantized func)."""
    # Local imports: see _passes.
    from bitmod.backends.emit import EmitError, find_program, module_to_program
    from bitmod.dialects.bsisa import LaunchOp
    from xdsl.dialects.func import FuncOp

    _, k, n = op.mkn
    layer_dtype = rules.lookup(op.name) or (dtype if op.kind == "linear" else kv_dtype)
    group, k_padded = plan_groups(k, group_size if op.kind == "linear" else kv_group_size)
    plan = QuantPlan(layer_dtype, group, k_padded, scale_bits)
    weight_name = runtime_operand = None
    if op.kind == "linear":
        assert op.weight is not None
        weight_name = op.weight
    else:
        runtime_operand = f"{op.name}.rhs"
    module = op_module(
        op,
        dtype=layer_dtype,
        group_size=group,
        k_padded=k_padded,
        scale_bits=scale_bits,
        weight=weight_name,
        runtime_operand=runtime_operand,
        params_file=_FILES["params"],
    )
    quantized_func = None
    try:
        for compiler_pass in passes:
            if compiler_pass.name == "bitmod-quantize" and op.kind != "linear":
                continue  # the right operand is quantized at run time
            if compiler_pass.name == "bitmod-tile" and quantized_func is None:
                quantized_func = _only_func(module, FuncOp).clone()
            compiler_pass.apply(ctx, module)
        program = module_to_program(module)
    except diagnostic as error:
        raise CompileError(f"layer '{op.name}': {error.message}") from None  # type: ignore[attr-defined]
    except EmitError as error:
        raise CompileError(f"layer '{op.name}': pipeline produced no program: {error}") from None
    if quantized_func is None:
        quantized_func = _only_func(module, FuncOp).clone()
    launches = [o for o in module.walk() if isinstance(o, LaunchOp)]
    if len(launches) != 1:
        raise CompileError(f"layer '{op.name}': expected one bsisa.launch, got {len(launches)}")
    (launch,) = launches
    program_op = find_program(module)

    def tensor_of(ref: Any) -> str:
        desc = program_op.descriptor(ref.root_reference.data)
        assert desc is not None
        return desc.tensor.data

    weights = [d.tensor.data for d in program_op.descriptors if d.kind.data == "qweight"]
    binding = Binding(
        tensor_of(launch.act_desc),
        weights[0],
        tensor_of(launch.out_desc),
        None if launch.bias_desc is None else tensor_of(launch.bias_desc),
    )
    expected_weight = weight_name if op.kind == "linear" else runtime_operand
    if binding.weight != expected_weight:
        raise CompileError(
            f"layer '{op.name}': program loads weight {binding.weight!r}, expected "
            f"{expected_weight!r}"
        )
    weight_error = bits = None
    if op.kind == "linear":
        assert weight_name is not None and op.weight is not None
        q = ctx.archive.get_quantized(weight_name)
        original = imported_tensors[op.weight].to(torch.float32)
        approx = dequantize(q)
        difference = approx - original
        norm = float(original.norm())
        weight_error = {
            "relative": float(difference.norm()) / norm if norm else 0.0,
            "max_abs": float(difference.abs().max()),
        }
        bits = float(q.bits_per_weight)
    compiled = CompiledOp(op, plan, program, binding, print_module(ctx, module), weight_error, bits)
    return compiled, quantized_func


def _only_func(module: Any, func_type: type) -> Any:
    funcs = [o for o in module.ops if isinstance(o, func_type)]
    assert len(funcs) == 1
    return funcs[0]


def _bundle_archive(
    host_params: Sequence[str], ops: Sequence[CompiledOp], source: ParamArchive
) -> ParamArchive:
    """What a compiled model needs: host parameters, quantized weights, biases (no float
    copies of the offloaded weights)."""
    archive = ParamArchive()
    for name in host_params:
        archive.put(name, source.get(name))
    for compiled in ops:
        if compiled.op.kind == "linear":
            archive.put_quantized(
                compiled.binding.weight, source.get_quantized(compiled.binding.weight)
            )
        if compiled.binding.bias is not None and compiled.binding.bias not in archive:
            archive.put(compiled.binding.bias, source.get(compiled.binding.bias))
    return archive


# --- load --------------------------------------------------------------------------------------


def load(
    directory: str | os.PathLike[str], device: str | torch.device | None = None
) -> CompiledModel:
    """A compiled model saved by :meth:`CompiledModel.save`; no model source, no tracing;
    ``device`` as for :func:`compile`.

    A missing or corrupt file raises :class:`CompileError` naming it.
    """
    root = Path(directory)
    if not root.is_dir():
        raise CompileError(f"{root} is not a directory (expected a bundle saved by bitmod)")
    manifest_path = root / _FILES["manifest"]
    manifest = _read_json(manifest_path)
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise CompileError(f"{manifest_path}: not a bitmod compiled-model manifest")
    if manifest.get("version") != BUNDLE_VERSION:
        raise CompileError(
            f"{manifest_path}: bundle version {manifest.get('version')!r}, this bitmod reads "
            f"{BUNDLE_VERSION}"
        )
    _check_entries(manifest, manifest_path)
    try:
        host = HostProgram.from_json(_read_text(root / _FILES["host"]), str(root / _FILES["host"]))
        archive = ParamArchive.load(root / _FILES["params"])
        ops = [_load_op(root, entry) for entry in manifest["ops"]]
        host_ops = [HostOp(**entry) for entry in manifest["host_ops"]]
        hardware = _hardware_from_json(manifest["hardware"])
        check_bundle_files(root, manifest)
        inputs_path = root / _FILES["inputs"]
        try:
            tensors = load_file(str(inputs_path))
            example_inputs = [tensors[f"input.{i}"] for i in range(len(tensors))]
        except (SafetensorError, OSError, KeyError) as error:
            raise CompileError(f"{inputs_path}: not the saved example inputs ({error})") from None
        return CompiledModel(
            model_name=str(manifest["model"]),
            host=host,
            ops=ops,
            host_ops=host_ops,
            archive=archive,
            settings=dict(manifest["settings"]),
            hardware=hardware,
            ir=_read_text(root / _FILES["ir"]),
            example_inputs=example_inputs,
            device=device,
        )
    except (HostError, ArchiveError) as error:
        raise CompileError(str(error)) from None
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, CompileError):
            raise
        raise CompileError(f"{manifest_path}: malformed manifest ({error!r})") from None


def _sha256(path: Path) -> str:
    return hashlib.sha256(_read_bytes(path)).hexdigest()


def _entry_checksums(manifest: Mapping[str, Any]) -> dict[str, str]:
    """SHA-256 of each manifest entry (``ops[i]`` and ``host_ops[i]`` one by one), so an edit
    is reported by the entry it changed."""

    def digest(value: Any) -> str:
        return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()

    sums: dict[str, str] = {}
    for key, value in manifest.items():
        if key == "entry_checksums":
            continue
        if key in ("ops", "host_ops") and isinstance(value, list):
            sums.update({f"{key}[{i}]": digest(item) for i, item in enumerate(value)})
            sums[f"{key}.count"] = digest(len(value))
        else:
            sums[key] = digest(value)
    return sums


def _check_entries(manifest: Mapping[str, Any], path: Path) -> None:
    """Every manifest entry is as saved: a CompileError names the first edited one."""
    saved = manifest.get("entry_checksums")
    if not isinstance(saved, dict):
        raise CompileError(f"{path}: no entry checksums (not written by bitmod.save)")
    now = _entry_checksums(manifest)
    for key in [*now, *(k for k in saved if k not in now)]:
        if saved.get(key) != now.get(key):
            what = f"entry {key!r}"
            op = _entry_op_name(manifest, key)
            if op is not None:
                what += f" (op {op!r})"
            raise CompileError(
                f"{path}: {what} differs from what was saved (edited or damaged manifest)"
            )


def _entry_op_name(manifest: Mapping[str, Any], key: str) -> str | None:
    for field_name, inner in (("ops", ("op", "name")), ("host_ops", ("name",))):
        prefix = f"{field_name}["
        if key.startswith(prefix) and key.endswith("]"):
            try:
                item: Any = manifest[field_name][int(key[len(prefix) : -1])]
                for part in inner:
                    item = item[part]
                return str(item)
            except (KeyError, IndexError, TypeError, ValueError):
                return None
    return None


def check_bundle_files(root: Path, manifest: Mapping[str, Any], names: Sequence[str] = ()) -> None:
    """Each file of the bundle (or just ``names``) is the one saved: CompileError naming a
    missing, empty, truncated or modified file (SHA-256 against the manifest's checksums)."""
    checksums = manifest.get("checksums")
    if not isinstance(checksums, dict):
        raise CompileError(f"{root / _FILES['manifest']}: no file checksums")
    for name in names or list(checksums):
        path = root / str(name)
        expected = checksums.get(name)
        if expected is None:
            raise CompileError(f"{path}: not listed in the bundle's manifest")
        if not path.is_file():
            raise CompileError(f"{path}: missing from the bundle")
        if path.stat().st_size == 0:
            raise CompileError(f"{path}: empty (the bundle is damaged)")
        if _sha256(path) != expected:
            raise CompileError(
                f"{path}: truncated or modified since the bundle was saved (SHA-256 mismatch)"
            )


def _load_op(root: Path, entry: Mapping[str, Any]) -> CompiledOp:
    program_path = root / str(entry["program"])
    try:
        program = Program.decode(_read_bytes(program_path))
    except IsaError as error:
        raise CompileError(f"{program_path}: corrupt program: {error}") from None
    op = AcceleratedOp.from_json(entry["op"])
    plan = QuantPlan.from_json(entry["plan"])
    _check_program_fits(op, plan, program)
    weight_error = entry.get("weight_error")
    if weight_error is not None and (
        not isinstance(weight_error, dict)
        or set(weight_error) != {"relative", "max_abs"}
        or not all(_is_number(v) for v in weight_error.values())
    ):
        raise ValueError(
            f"op {op.name!r}: weight_error {weight_error!r} is not {{relative, max_abs}}"
        )
    bits = entry.get("bits_per_weight")
    if bits is not None and not _is_number(bits):
        raise ValueError(f"op {op.name!r}: bits_per_weight {bits!r} is not a number")
    return CompiledOp(
        op,
        plan,
        program,
        Binding.from_json(entry["binding"]),
        _read_text(root / str(entry["lowered_ir"])),
        weight_error,
        bits,
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_program_fits(op: AcceleratedOp, plan: QuantPlan, program: Program) -> None:
    """The manifest's op and plan describe the program saved with them: its output [M, N]
    and, for a linear, its weight's format, group size and scale bits (ValueError if not)."""
    m, _, n = op.mkn
    for desc in program.descriptors:
        if desc.kind is DescKind.OUT and (desc.dim0, desc.dim1) != (m, n):
            raise ValueError(
                f"op {op.name!r}: its program stores a {desc.dim0}x{desc.dim1} output, the op "
                f"says {m}x{n}"
            )
        if desc.kind is DescKind.QWEIGHT and op.kind == "linear":
            saved = (format_name(desc.fmt), desc.group_size, desc.scale_bits, desc.dim1)
            if saved != (plan.dtype, plan.group_size, plan.scale_bits, plan.k_padded):
                raise ValueError(
                    f"op {op.name!r}: plan {plan.dtype} G={plan.group_size} "
                    f"scale_bits={plan.scale_bits} K={plan.k_padded}, its program's weight is "
                    f"{saved[0]} G={saved[1]} scale_bits={saved[2]} K={saved[3]}"
                )


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise CompileError(f"{path}: cannot read ({error.strerror})") from None


def _read_text(path: Path) -> str:
    try:
        return _read_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        raise CompileError(f"{path}: not UTF-8 text") from None


def _read_json(path: Path) -> Any:
    try:
        return parse_json(_read_text(path))
    except JsonError as error:
        raise CompileError(f"{path}: not valid JSON ({error})") from None
