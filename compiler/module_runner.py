"""Running a lowered module: host ops in torch, ``bsisa.launch`` on the emulated accelerator.

``bitmod-opt model.mlir --pipeline=bitmod-default`` leaves a function whose matmuls are
``bsisa.launch`` ops of one ``bsisa.program`` and whose other ops (LayerNorm, softmax, GELU,
reshapes, residual adds: torch-mlir's ``linalg`` / ``tensor`` / ``arith`` / ``math`` ops) run
on the host. :func:`run_function` executes such a function on torch tensors:

* every ``bsisa.launch`` runs its segment of the program (:func:`segment_program`: that
  segment's configuration and schedule, the descriptors it names, ``halt``) on
  :class:`~bitmod.runtime.emulator.machine.Machine` with the parameter archive and the FP16
  activation (and bias) as the memory image, through the same code as ``bitmod.compile``'s
  compiled models (:func:`bitmod.compiler.offload.run_linear_program`); a launch with a
  run-time weight (``weight @d(%bt : ...)``, attention's ``Kᵀ`` / ``V``) rounds it to FP16 and
  quantizes it in the descriptor's format before each run, one run per batch slice
  (:func:`bitmod.compiler.offload.run_runtime_quantized`), so both paths compute the same
  bits for the same operands;
* every other op is evaluated on whole tensors: ``linalg.generic`` broadcasts each operand
  over the iteration space by its indexing map and evaluates the body once on those tensors
  (reductions: once per position of the reduced dims, in order, which is the op's
  sequential semantics), elementwise in the IR's element types (``f32`` in float32, ``f64``
  in float64, ``i64`` in int64); so a ``tensor.extract`` in a body is a gather (torch-mlir's
  embedding lookup) and a ``cf.assert`` there checks every iteration (its bounds checks: a
  failed one is a ModuleRunError with the assertion's message). ``tensor.pad`` (a constant
  padding value) and ``linalg.conv_2d_nchw_fchw`` run as torch's ``pad`` and ``conv2d``.

A value of an op the runner does not know, or a form of a known op it does not handle
(dynamic shapes, non-projected indexing maps), is one :class:`ModuleRunError` naming the op
and its position. The outputs are in the function's result types.
"""

from __future__ import annotations

import itertools
import math
from collections import ChainMap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from bitmod.backends.emit import program_op_to_program
from bitmod.compiler.ir_io import parse_module
from bitmod.compiler.offload import (
    Binding,
    OpRecord,
    OpStats,
    QuantPlan,
    run_linear_program,
    run_runtime_quantized,
    to_fp16,
)
from bitmod.compiler.torch_frontend import CompileError
from bitmod.dialects.bsisa import DrainOp, HaltOp, LaunchOp, ProgramOp, TensorRefInstruction
from bitmod.dialects.diagnostics import DiagnosticError
from bitmod.passes.context import BitmodContext, load_archive, machine_of, make_context
from bitmod.passes.linear_layers import FLOAT_DTYPES, spread_over_dims
from bitmod.runtime.emulator.machine import Machine, MachineError
from bitmod.runtime.isa import DescKind
from bitmod.runtime.storage.archive import ParamArchive
from xdsl.dialects.builtin import (
    ArrayAttr,
    DenseArrayBase,
    DenseIntOrFPElementsAttr,
    DenseResourceAttr,
    FloatAttr,
    IndexType,
    IntegerAttr,
    IntegerType,
    ModuleOp,
    StringAttr,
    TensorType,
)
from xdsl.ir import Attribute, Block, Operation, SSAValue
from xdsl.ir.affine import AffineConstantExpr, AffineDimExpr, AffineMap

if TYPE_CHECKING:
    from xdsl.dialects.func import FuncOp

__all__ = [
    "ModuleRun",
    "ModuleRunError",
    "argument_types",
    "function_op",
    "load_lowered",
    "run_function",
    "segment_program",
]


class ModuleRunError(DiagnosticError):
    """An op the host runner cannot execute (named with its position)."""


@dataclass
class ModuleRun:
    """What one run of a function gave: its results, and per launch (named after its
    weight: ``fc1``, ``matmul1``) the machine's accumulated reports and, when recorded,
    every accelerator run's operands and result."""

    outputs: list[torch.Tensor]
    stats: dict[str, OpStats] = field(default_factory=dict)
    records: list[OpRecord] | None = None


def load_lowered(path: str | Path) -> tuple[BitmodContext, ModuleOp]:
    """Parse the IR file ``path`` and load the parameter archive it names."""
    path = Path(path)
    ctx = make_context()
    module = parse_module(ctx, path.read_text(), str(path))
    load_archive(ctx, module, path.parent)
    return ctx, module


# --- element types ---------------------------------------------------------------------------

_INT_DTYPES = {1: torch.bool, 8: torch.int8, 16: torch.int16, 32: torch.int32, 64: torch.int64}


def _dtype(element_type: Attribute, op: Operation) -> torch.dtype:
    if isinstance(element_type, IndexType):
        return torch.int64
    if isinstance(element_type, IntegerType) and element_type.width.data in _INT_DTYPES:
        return _INT_DTYPES[element_type.width.data]
    dtype = FLOAT_DTYPES.get(type(element_type))
    if dtype is None:
        raise _unsupported(op, f"element type {element_type}")
    return dtype


def _value_dtype(value: SSAValue, op: Operation) -> torch.dtype:
    value_type = value.type
    element = value_type.get_element_type() if isinstance(value_type, TensorType) else value_type
    return _dtype(element, op)


def _static_shape(value: SSAValue, op: Operation) -> tuple[int, ...]:
    value_type = value.type
    if not isinstance(value_type, TensorType):
        raise _unsupported(op, f"a {value_type} value (tensors expected)")
    shape = tuple(int(d) for d in value_type.get_shape())
    if any(d < 0 for d in shape):
        raise _unsupported(op, f"the dynamic shape of {value_type}")
    return shape


def _unsupported(op: Operation, what: str) -> ModuleRunError:
    return ModuleRunError(f"module runner: cannot run this op on the host: {what}", op)


# --- scalar-wise ops (on whole tensors) ------------------------------------------------------

# arith.cmpf / arith.cmpi predicates by their MLIR enum index.
_CMPF: dict[int, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    0: lambda a, b: torch.zeros_like(a, dtype=torch.bool),
    1: torch.eq,
    2: torch.gt,
    3: torch.ge,
    4: torch.lt,
    5: torch.le,
    6: lambda a, b: torch.ne(a, b) & ~(a.isnan() | b.isnan()),
    7: lambda a, b: ~(a.isnan() | b.isnan()),
    8: lambda a, b: torch.eq(a, b) | a.isnan() | b.isnan(),
    9: lambda a, b: ~torch.le(a, b),
    10: lambda a, b: ~torch.lt(a, b),
    11: lambda a, b: ~torch.ge(a, b),
    12: lambda a, b: ~torch.gt(a, b),
    13: torch.ne,
    14: lambda a, b: a.isnan() | b.isnan(),
    15: lambda a, b: torch.ones_like(a, dtype=torch.bool),
}
_CMPI: dict[int, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    0: torch.eq,
    1: torch.ne,
    2: torch.lt,
    3: torch.le,
    4: torch.gt,
    5: torch.ge,
}
_BINARY: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "arith.addf": torch.add,
    "arith.subf": torch.sub,
    "arith.mulf": torch.mul,
    "arith.divf": torch.div,
    "arith.maximumf": torch.maximum,
    "arith.minimumf": torch.minimum,
    "arith.maxnumf": torch.fmax,
    "arith.minnumf": torch.fmin,
    "arith.addi": torch.add,
    "arith.subi": torch.sub,
    "arith.muli": torch.mul,
    "arith.maxsi": torch.maximum,
    "arith.minsi": torch.minimum,
    "arith.andi": torch.bitwise_and,
    "arith.ori": torch.bitwise_or,
    "arith.xori": torch.bitwise_xor,
    "math.powf": torch.pow,
    "math.fpowi": torch.pow,
    "math.atan2": torch.atan2,
    "arith.remf": torch.fmod,
    "linalg.add": torch.add,
    "linalg.sub": torch.sub,
    "linalg.mul": torch.mul,
    "linalg.div": torch.div,
    "linalg.max": torch.maximum,
    "linalg.min": torch.minimum,
}
_UNARY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "arith.negf": torch.neg,
    "math.exp": torch.exp,
    "math.exp2": torch.exp2,
    "math.log": torch.log,
    "math.log2": torch.log2,
    "math.erf": torch.erf,
    "math.rsqrt": torch.rsqrt,
    "math.sqrt": torch.sqrt,
    "math.tanh": torch.tanh,
    "math.log1p": torch.log1p,
    "math.expm1": torch.expm1,
    "math.atan": torch.atan,
    "math.roundeven": torch.round,  # torch rounds half to even
    "math.round": lambda x: torch.sign(x) * torch.floor(torch.abs(x) + 0.5),  # half away from 0
    "math.trunc": torch.trunc,
    "math.sin": torch.sin,
    "math.cos": torch.cos,
    "math.absf": torch.abs,
    "math.floor": torch.floor,
    "math.ceil": torch.ceil,
    "linalg.exp": torch.exp,
    "linalg.log": torch.log,
    "linalg.abs": torch.abs,
    "linalg.negf": torch.neg,
    "linalg.rsqrt": torch.rsqrt,
    "linalg.sqrt": torch.sqrt,
    "linalg.tanh": torch.tanh,
    "linalg.erf": torch.erf,
}
_NAMED_ELEMENTWISE = frozenset(n for n in (*_BINARY, *_UNARY) if n.startswith("linalg."))
"""``linalg.add`` & co.: ``ins`` elementwise into ``outs`` (the last operand)."""
_CASTS = (
    "arith.extf",
    "arith.truncf",
    "arith.sitofp",
    "arith.fptosi",
    "arith.index_cast",
    "arith.extsi",
    "arith.trunci",
)


def _scalar_op(op: Operation, args: list[torch.Tensor]) -> torch.Tensor | None:
    """The value of an elementwise arith/math op on (broadcast) tensors, None if not one."""
    name = op.name
    if name in _BINARY:
        return _BINARY[name](args[0], args[1])
    if name in _UNARY:
        return _UNARY[name](args[0])
    if name in _CASTS:
        dtype = _value_dtype(op.results[0], op)
        if name == "arith.fptosi":
            return args[0].trunc().to(dtype)
        return args[0].to(dtype)
    if name in ("arith.extui", "arith.uitofp"):
        # The operand's bits as an unsigned number (torch's integers are signed).
        return _unsigned(op, args[0]).to(_value_dtype(op.results[0], op))
    if name == "arith.bitcast":
        # The same bits in another type of the same width (not a value conversion).
        return args[0].contiguous().view(_value_dtype(op.results[0], op))
    if name == "arith.remsi":
        if bool((args[1] == 0).any()):
            raise ModuleRunError("module runner: integer remainder by zero", op)
        return torch.fmod(args[0], args[1])  # the sign of the dividend, as remsi
    if name == "arith.select":
        return torch.where(args[0], args[1], args[2])
    if name in ("arith.cmpf", "arith.cmpi"):
        predicate = op.properties["predicate"]
        assert isinstance(predicate, IntegerAttr)
        table = _CMPF if name == "arith.cmpf" else _CMPI
        compare = table.get(predicate.value.data)
        if compare is None:
            raise _unsupported(op, f"predicate {predicate.value.data}")
        return compare(args[0], args[1])
    return None


def _unsigned(op: Operation, value: torch.Tensor) -> torch.Tensor:
    """``value``'s bits read as an unsigned integer (in int64; i64 itself only below 2^63)."""
    operand_type = op.operands[0].type
    element = (
        operand_type.get_element_type() if isinstance(operand_type, TensorType) else operand_type
    )
    if value.dtype == torch.bool:
        return value.to(torch.int64)
    width = element.width.data if isinstance(element, IntegerType) else 64
    if width >= 64:
        if bool((value < 0).any()):
            raise _unsupported(op, "an unsigned i64 at or above 2^63")
        return value.to(torch.int64)
    return value.to(torch.int64) & ((1 << width) - 1)


def _constant(op: Operation, ctx: BitmodContext) -> torch.Tensor:
    from bitmod.passes.linear_layers import constant_tensor

    value = op.properties.get("value")
    result = op.results[0]
    dtype = _value_dtype(result, op)
    if isinstance(value, FloatAttr | IntegerAttr):
        number = value.value.data
        return torch.tensor(number, dtype=dtype)
    if not isinstance(result.type, TensorType):
        raise _unsupported(op, f"constant {value}")
    shape = _static_shape(result, op)
    data = getattr(value, "data", None)
    values = getattr(data, "data", None)
    if isinstance(values, list | tuple) and len(values) == 1 and math.prod(shape) != 1:
        return torch.tensor(values[0], dtype=dtype).expand(shape).clone()  # a splat
    if isinstance(value, DenseIntOrFPElementsAttr | DenseResourceAttr):
        tensor = constant_tensor(ctx, op, dtype)  # type: ignore[arg-type]
        if tensor is not None:
            return tensor
    if isinstance(values, list | tuple) and len(values) == math.prod(shape):
        return torch.tensor(list(values), dtype=dtype).reshape(shape)
    raise _unsupported(op, f"constant {value}")


# --- linalg.generic --------------------------------------------------------------------------


def _dims_of(indexing: AffineMap, op: Operation) -> list[int | tuple[str, int]]:
    """Per operand axis: the loop dim it follows, or ("const", c) for a constant index."""
    axes: list[int | tuple[str, int]] = []
    for expr in indexing.results:
        if isinstance(expr, AffineDimExpr):
            axes.append(expr.position)
        elif isinstance(expr, AffineConstantExpr):
            axes.append(("const", expr.value))
        else:
            raise _unsupported(op, f"indexing map {indexing} (projections only)")
    return axes


def _to_space(value: torch.Tensor, indexing: AffineMap, rank: int, op: Operation) -> torch.Tensor:
    """``value`` as a rank-``rank`` tensor over the loop dims (size 1 where it does not vary)."""
    axes = _dims_of(indexing, op)
    for axis in reversed(range(len(axes))):
        entry = axes[axis]
        if isinstance(entry, tuple):
            value = value.select(axis, entry[1])
    dims = [d for d in axes if isinstance(d, int)]
    if len(set(dims)) != len(dims):
        raise _unsupported(op, f"indexing map {indexing} repeats a dim")
    return spread_over_dims(value, dims, rank)


def _from_space(
    value: torch.Tensor, indexing: AffineMap, shape: tuple[int, ...], op: Operation
) -> torch.Tensor:
    """The inverse of :func:`_to_space` for an output: loop-space values in operand layout."""
    axes = _dims_of(indexing, op)
    dims = [d for d in axes if isinstance(d, int)]
    others = [d for d in range(value.dim()) if d not in dims]
    if any(value.shape[d] != 1 for d in others):
        raise _unsupported(op, f"output map {indexing} drops a dim that varies")
    value = value.permute(dims + others).reshape([value.shape[d] for d in dims])
    for axis, entry in enumerate(axes):
        if isinstance(entry, tuple):
            value = value.unsqueeze(axis)
    return value.expand(shape).clone()


def _run_generic(op: Operation, env: Mapping[SSAValue, Any], run_block: _BlockRunner) -> list[Any]:
    from xdsl.dialects.linalg.ops import GenericOp

    assert isinstance(op, GenericOp)
    maps = [m.data for m in op.indexing_maps.data]
    operands = [*op.inputs, *op.outputs]
    values = [env[v] for v in operands]
    rank = maps[0].num_dims
    sizes = [1] * rank
    for value, indexing in zip(values, maps, strict=True):
        for axis, entry in enumerate(_dims_of(indexing, op)):
            if isinstance(entry, int):
                sizes[entry] = value.shape[axis]
    spaces = [
        _to_space(v, m, rank, op) if isinstance(v, torch.Tensor) and v.dim() else v
        for v, m in zip(values, maps, strict=True)
    ]
    kinds = [it.data.value for it in op.iterator_types.data]
    reduced = [d for d, kind in enumerate(kinds) if kind == "reduction"]
    n_inputs = len(op.inputs)
    outputs = spaces[n_inputs:]
    block = op.body.block
    positions = itertools.product(*(range(sizes[d]) for d in reduced)) if reduced else [()]
    for position in positions:
        ins = []
        for space in spaces[:n_inputs]:
            for dim, index in zip(reduced, position, strict=True):
                if isinstance(space, torch.Tensor) and space.dim() and space.shape[dim] > 1:
                    space = space.narrow(dim, index, 1)
            ins.append(space)
        here = {d: i for d, i in zip(reduced, position, strict=True)}

        def index_of(dim: int, here: dict[int, int] = here) -> torch.Tensor:
            if dim in here:
                return torch.tensor(here[dim], dtype=torch.int64)
            shape = [1] * rank
            shape[dim] = sizes[dim]
            return torch.arange(sizes[dim], dtype=torch.int64).reshape(shape)

        outputs = run_block(block, [*ins, *outputs], env, index_of)
    results = []
    space_shape = [1 if d in reduced else sizes[d] for d in range(rank)]
    for space, indexing, result in zip(outputs, maps[n_inputs:], op.results, strict=True):
        full = torch.as_tensor(space).to(_value_dtype(result, op)).expand(space_shape)
        results.append(_from_space(full, indexing, _static_shape(result, op), op))
    return results


_BlockRunner = Callable[
    [Block, list[Any], Mapping[SSAValue, Any], Callable[[int], torch.Tensor]], list[Any]
]


# --- bsisa.launch ----------------------------------------------------------------------------


def _launch_binding(
    launch: LaunchOp, program: Any, act: str, out: str, bias: str | None
) -> Binding:
    """What the launch binds, checked against what its segment reads and writes: one weight,
    the launch's activation and output, and a bias exactly when the segment's drain adds one
    (a launch that binds a bias its segment never reads would drop it silently)."""
    names: dict[DescKind, list[str]] = {}
    for desc in program.descriptors:
        names.setdefault(desc.kind, []).append(program.strings[desc.name])
    where = f"@{launch.program.root_reference.data}[{launch.segment.value.data}]"
    weights = names.get(DescKind.QWEIGHT, [])
    if len(weights) != 1:
        raise ModuleRunError(
            f"module runner: segment {where} reads {len(weights)} weights (one ld.wgt of one "
            f"qweight expected)",
            launch,
        )
    for what, tensor, kind in (("act", act, DescKind.ACT), ("out", out, DescKind.OUT)):
        if tensor not in names.get(kind, []):
            raise ModuleRunError(
                f"module runner: the launch's {what} {tensor!r} is not what segment {where} "
                f"{'reads' if kind is DescKind.ACT else 'stores'} "
                f"({', '.join(map(repr, names.get(kind, []))) or 'nothing'})",
                launch,
            )
    biases = names.get(DescKind.BIAS, [])
    if (bias is None) != (not biases) or (bias is not None and bias not in biases):
        raise ModuleRunError(
            f"module runner: the launch binds {'no bias' if bias is None else f'bias {bias!r}'}, "
            f"segment "
            f"{where}'s drain adds {', '.join(map(repr, biases)) or 'none'}",
            launch,
        )
    return Binding(act, weights[0], out, bias)


def segment_program(program: ProgramOp, segment: int) -> Any:
    """The runtime Program of one segment of ``program``: its configuration and schedule,
    the descriptors it names (in table order) and ``halt``."""
    code = list(program.code)
    starts = program.segments()
    stop = starts[segment + 1] if segment + 1 < len(starts) else len(code)
    ops = [o.clone() for o in code[starts[segment] : stop] if not isinstance(o, HaltOp)]
    named: set[str] = set()
    for top in ops:
        for inner in top.walk():
            if isinstance(inner, TensorRefInstruction):
                named.add(inner.desc_name)
            elif isinstance(inner, DrainOp) and inner.bias_name is not None:
                named.add(inner.bias_name)
    descriptors = [d.clone() for d in program.descriptors if d.sym_name.data in named]
    return program_op_to_program(ProgramOp(program.sym_name.data, [*descriptors, *ops, HaltOp()]))


@dataclass
class _Accelerator:
    machine: Machine
    archive: ParamArchive
    stats: dict[str, OpStats]
    records: list[OpRecord] | None
    on_launch: Callable[[str], None] | None = None  # called with each finished launch's name
    programs: dict[tuple[int, int], Any] = field(default_factory=dict)

    def run(self, launch: LaunchOp, env: Mapping[SSAValue, Any]) -> torch.Tensor:
        program_op = launch.program_op()
        key = (id(program_op), launch.segment.value.data)
        if key not in self.programs:
            self.programs[key] = (program_op, segment_program(program_op, key[1]))
        program = self.programs[key][1]

        def tensor_of(ref: Any) -> str:
            desc = program_op.descriptor(ref.root_reference.data)
            assert desc is not None
            return desc.tensor.data

        binding = _launch_binding(
            launch,
            program,
            tensor_of(launch.act_desc),
            tensor_of(launch.out_desc),
            None if launch.bias_desc is None else tensor_of(launch.bias_desc),
        )
        name = binding.weight.removesuffix(".weight").removesuffix(".rhs")
        stats = self.stats.setdefault(name, OpStats())
        shape = _static_shape(launch.result, launch)
        dtype = _value_dtype(launch.result, launch)
        act = env[launch.act]
        try:
            if launch.weight is None:
                act16 = to_fp16(act.reshape(-1, act.shape[-1]), f"op '{name}' input")
                bias16 = None
                if launch.bias is not None:
                    bias16 = env[launch.bias].detach().to(torch.float16).contiguous()
                out = run_linear_program(
                    name,
                    program,
                    binding,
                    act16.contiguous(),
                    bias16,
                    machine=self.machine,
                    archive=self.archive,
                    stats=stats,
                    records=self.records,
                )
            else:
                assert launch.weight_desc is not None
                desc = program_op.descriptor(launch.weight_desc.root_reference.data)
                assert desc is not None and desc.info.fmt is not None
                weight = env[launch.weight]
                k = weight.shape[-1]
                plan = QuantPlan(desc.info.fmt, int(desc.info.group_size), k, desc.info.scale_bits)
                out = run_runtime_quantized(
                    name,
                    plan,
                    program,
                    binding,
                    to_fp16(act.reshape(-1, *act.shape[-2:]), f"op '{name}' left operand"),
                    to_fp16(weight.reshape(-1, *weight.shape[-2:]), f"op '{name}' right operand"),
                    machine=self.machine,
                    stats=stats,
                    records=self.records,
                )
        except (CompileError, MachineError) as problem:
            raise ModuleRunError(f"module runner: {problem}", launch) from None
        if self.on_launch is not None:
            self.on_launch(name)
        return out.to(dtype).reshape(shape)


# --- the interpreter -------------------------------------------------------------------------


@dataclass
class _Interpreter:
    ctx: BitmodContext
    accelerator: _Accelerator

    def run_block(
        self,
        block: Block,
        args: Sequence[Any],
        outer: Mapping[SSAValue, Any],
        index_of: Callable[[int], torch.Tensor] | None = None,
    ) -> list[Any]:
        """Run ``block`` with ``args``; values of enclosing blocks come from ``outer``. The
        operands of its terminator are the result."""
        # A body sees the values of the blocks around it (a generic's captured scalars); the
        # chain keeps a reduction step from copying them.
        env: ChainMap[SSAValue, Any] = ChainMap({}, outer)  # type: ignore[arg-type]
        for arg, value in zip(block.args, args, strict=True):
            env[arg] = value
        for op in block.ops:
            if op.name in ("func.return", "linalg.yield", "tm_tensor.yield"):
                return [env[v] for v in op.operands]
            results = self.run_op(op, env, index_of)
            for result, value in zip(op.results, results, strict=True):
                env[result] = value
        raise _unsupported(block.parent_op() or block.ops.first, "a block without terminator")  # type: ignore[arg-type]

    def run_op(
        self,
        op: Operation,
        env: Mapping[SSAValue, Any],
        index_of: Callable[[int], torch.Tensor] | None,
    ) -> list[Any]:
        name = op.name
        args = [env[v] for v in op.operands]
        if name == "arith.constant":
            return [_constant(op, self.ctx)]
        if name == "linalg.index":
            if index_of is None:
                raise _unsupported(op, "linalg.index outside a linalg.generic")
            dim = op.properties["dim"]
            assert isinstance(dim, IntegerAttr)
            return [index_of(dim.value.data)]
        if name == "linalg.generic":
            return _run_generic(op, env, self._generic_body)
        if name in _NAMED_ELEMENTWISE:
            ins = args[: len(args) - 1]
            value = _scalar_op(op, ins)
            assert value is not None
            return [value.to(_value_dtype(op.results[0], op)).contiguous()]
        value = _scalar_op(op, args)
        if value is not None:
            return [value]
        if name == "cf.assert":
            _check_assertion(op, args[0])
            return []
        if name == "tensor.pad":
            return [_pad(op, args, self._padding_value(op, env))]
        if name == "tm_tensor.scan":
            return self._scan(op, args, env)
        handler = _TENSOR_OPS.get(name)
        if handler is not None:
            return [handler(self, op, args)]
        raise _unsupported(op, "no host implementation of this op")

    def _scan(self, op: Operation, args: list[Any], env: Mapping[SSAValue, Any]) -> list[Any]:
        """``tm_tensor.scan`` (``bitmod.dialects.tm_tensor``): one step of the region per
        position along the dimension, on whole slices of the other dimensions."""
        from bitmod.dialects.tm_tensor import ScanOp

        assert isinstance(op, ScanOp)
        source, _, accumulator = args
        dim = op.scan_dimension
        block = op.body.block
        steps = source.unbind(dim)
        first = steps[0] if op.is_inclusive else accumulator.to(source.dtype)
        outputs = [first]
        for position in range(1, len(steps)):
            operand = steps[position] if op.is_inclusive else steps[position - 1]
            (value,) = self.run_block(block, [operand, outputs[-1]], env)
            outputs.append(torch.as_tensor(value, dtype=source.dtype).expand(operand.shape))
        result = torch.stack(outputs, dim).contiguous()
        return [result, outputs[-1].contiguous()]

    def _padding_value(self, op: Operation, env: Mapping[SSAValue, Any]) -> Any:
        """The value a ``tensor.pad`` region yields: one that does not depend on the position
        (defined outside the region, or an ``arith.constant`` inside it)."""
        (block,) = op.regions[0].blocks
        terminator = block.last_op
        if terminator is None or terminator.name != "tensor.yield" or len(terminator.operands) != 1:
            raise _unsupported(op, "a tensor.pad region that does not end in one tensor.yield")
        (value,) = terminator.operands
        owner = value.owner
        if isinstance(owner, Operation) and owner.parent_block() is block:
            if owner.name != "arith.constant":
                raise _unsupported(op, "a padding value that depends on the position")
            return _constant(owner, self.ctx)
        if not isinstance(owner, Operation) and value in block.args:
            raise _unsupported(op, "a padding value that depends on the position")
        return env[value]

    def _generic_body(
        self,
        block: Block,
        args: list[Any],
        outer: Mapping[SSAValue, Any],
        index_of: Callable[[int], torch.Tensor],
    ) -> list[Any]:
        return self.run_block(block, args, outer, index_of)


def _empty(self: _Interpreter, op: Operation, args: list[Any]) -> torch.Tensor:
    if args:
        raise _unsupported(op, "dynamic sizes")
    return torch.zeros(_static_shape(op.results[0], op), dtype=_value_dtype(op.results[0], op))


def _fill(self: _Interpreter, op: Operation, args: list[Any]) -> torch.Tensor:
    scalar, init = args
    return torch.full_like(init, float(scalar) if init.is_floating_point() else int(scalar))


def _transpose(self: _Interpreter, op: Operation, args: list[Any]) -> torch.Tensor:
    permutation = op.properties["permutation"]
    assert isinstance(permutation, DenseArrayBase)
    return args[0].permute(tuple(permutation.get_values())).contiguous()


def _broadcast(self: _Interpreter, op: Operation, args: list[Any]) -> torch.Tensor:
    dimensions = op.properties["dimensions"]
    assert isinstance(dimensions, DenseArrayBase)
    value = args[0]
    for dim in sorted(dimensions.get_values()):
        value = value.unsqueeze(dim)
    return value.expand(args[1].shape).clone()


def _product(self: _Interpreter, op: Operation, args: list[Any]) -> torch.Tensor:
    """A product left on the host, in float: ``C + A·B`` as the op's indexing maps say."""
    lhs, rhs, init = args
    maps = op.properties.get("indexing_maps")
    if not isinstance(maps, ArrayAttr):
        raise _unsupported(op, "a product without indexing maps")
    letters = []
    for indexing in maps.data:
        dims = _dims_of(indexing.data, op)
        if not all(isinstance(d, int) for d in dims):
            raise _unsupported(op, f"indexing map {indexing.data} (dims only)")
        letters.append("".join(chr(ord("a") + int(d)) for d in dims))
    product = torch.einsum(f"{letters[0]},{letters[1]}->{letters[2]}", lhs, rhs)
    return (init + product.to(init.dtype)).contiguous()


def _reshape(self: _Interpreter, op: Operation, args: list[Any]) -> torch.Tensor:
    return args[0].reshape(_static_shape(op.results[0], op)).contiguous()


def _static_slice(op: Operation) -> tuple[list[int], list[int], list[int]]:
    values = []
    for key in ("static_offsets", "static_sizes", "static_strides"):
        attr = op.properties[key]
        assert isinstance(attr, DenseArrayBase)
        values.append([int(v) for v in attr.get_values()])
    if any(v < 0 for group in values for v in group) or len(op.operands) > 2:
        raise _unsupported(op, "dynamic offsets, sizes or strides")
    return values[0], values[1], values[2]


def _extract_slice(self: _Interpreter, op: Operation, args: list[Any]) -> torch.Tensor:
    offsets, sizes, strides = _static_slice(op)
    index = tuple(
        slice(o, o + (s - 1) * t + 1, t) for o, s, t in zip(offsets, sizes, strides, strict=True)
    )
    return args[0][index].reshape(_static_shape(op.results[0], op)).contiguous()


def _insert_slice(self: _Interpreter, op: Operation, args: list[Any]) -> torch.Tensor:
    offsets, sizes, strides = _static_slice(op)
    result = args[1].clone()
    index = tuple(
        slice(o, o + (s - 1) * t + 1, t) for o, s, t in zip(offsets, sizes, strides, strict=True)
    )
    result[index] = args[0].reshape(result[index].shape)
    return result


def _param(self: _Interpreter, op: Operation, args: list[Any]) -> torch.Tensor:
    from bitmod.dialects.bitmod import ParamOp

    assert isinstance(op, ParamOp)
    archive = self.ctx.archive
    name = op.param_name.data
    if archive is None or name not in archive:
        raise _unsupported(op, f"parameter '{name}' is not in the archive")
    return archive.get(name).to(_value_dtype(op.result, op))


def _host_matmul(self: _Interpreter, op: Operation, args: list[Any]) -> torch.Tensor:
    from bitmod.dialects.bitmod import MatmulOp

    assert isinstance(op, MatmulOp)
    if not isinstance(op.weight.type, TensorType):
        raise _unsupported(op, "a quantized bitmod.matmul (run bitmod-tile,bitmod-lower-to-isa)")
    x, w = args[0], args[1]
    y = torch.matmul(x, w.transpose(-1, -2))
    if op.bias is not None:
        y = y + args[2]
    return y.to(_value_dtype(op.result, op))


def _launch(self: _Interpreter, op: Operation, args: list[Any]) -> torch.Tensor:
    assert isinstance(op, LaunchOp)
    return self.accelerator.run(op, dict(zip(op.operands, args, strict=True)))


def _identity(self: _Interpreter, op: Operation, args: list[Any]) -> torch.Tensor:
    return args[0]


def _check_assertion(op: Operation, condition: Any) -> None:
    """``cf.assert``: every position of ``condition`` (one per iteration of an enclosing
    ``linalg.generic``) must hold; a ModuleRunError with the assertion's message otherwise."""
    holds = torch.as_tensor(condition, dtype=torch.bool)
    if not bool(holds.all()):
        message = op.properties.get("msg")
        text = message.data if isinstance(message, StringAttr) else "(no message)"
        raise ModuleRunError(f"module runner: assertion failed: {text}", op)


def _extract(self: _Interpreter, op: Operation, args: list[Any]) -> torch.Tensor:
    """``tensor.extract``: one element, or (in a ``linalg.generic`` body, with an index per
    iteration) one per iteration: a gather. An index out of bounds is an error (MLIR leaves
    it undefined; torch would wrap a negative one)."""
    source, *indices = args
    if len(indices) != source.dim():
        raise _unsupported(op, f"{len(indices)} indices into a rank-{source.dim()} tensor")
    index = []
    for dim, (size, value) in enumerate(zip(source.shape, indices, strict=True)):
        position = torch.as_tensor(value).long()
        if bool(((position < 0) | (position >= size)).any()):
            bad = int(position[(position < 0) | (position >= size)].flatten()[0])
            raise ModuleRunError(
                f"module runner: tensor.extract index {bad} is out of bounds for dimension "
                f"{dim} of size {size}",
                op,
            )
        index.append(position)
    return source[tuple(index)]


def _concat(self: _Interpreter, op: Operation, args: list[Any]) -> torch.Tensor:
    """``tensor.concat``: the operands along ``dim``."""
    dim = op.properties.get("dim")
    if not isinstance(dim, IntegerAttr):
        raise _unsupported(op, "a tensor.concat without a static dim")
    return torch.cat(list(args), dim=int(dim.value.data)).contiguous()


def _from_elements(self: _Interpreter, op: Operation, args: list[Any]) -> torch.Tensor:
    """``tensor.from_elements``: the scalars in row-major order."""
    dtype = _value_dtype(op.results[0], op)
    values = torch.stack([torch.as_tensor(value, dtype=dtype) for value in args])
    return values.reshape(_static_shape(op.results[0], op))


def _pad(op: Operation, args: list[Any], value: Any) -> torch.Tensor:
    """``tensor.pad`` with static low/high amounts and a constant padding value."""
    if len(args) != 1:
        raise _unsupported(op, "dynamic padding amounts")
    amounts = []
    for key in ("static_low", "static_high"):
        attr = op.properties[key]
        assert isinstance(attr, DenseArrayBase)
        amounts.append([int(v) for v in attr.get_values()])
    low, high = amounts
    if any(v < 0 for v in (*low, *high)):
        raise _unsupported(op, "negative padding amounts")
    # torch.nn.functional.pad takes (low, high) pairs from the last dimension back.
    pairs = [amount for dim in reversed(range(len(low))) for amount in (low[dim], high[dim])]
    source = args[0]
    fill = float(value) if source.is_floating_point() else int(value)
    padded = torch.nn.functional.pad(source, pairs, value=fill)
    return padded.reshape(_static_shape(op.results[0], op)).contiguous()


def _window_steps(op: Operation) -> tuple[tuple[int, int], tuple[int, int]]:
    """The (strides, dilations) of a 2-D convolution or pooling op (default 1)."""
    steps = []
    for key in ("strides", "dilations"):
        attr = op.properties.get(key)
        values = (1, 1) if attr is None else tuple(int(v) for v in attr.get_values())  # type: ignore[attr-defined]
        if len(values) != 2:
            raise _unsupported(op, f"{key} of {len(values)} dimensions")
        steps.append(values)
    return steps[0], steps[1]  # type: ignore[return-value]


def _check_window_output(op: Operation, computed: torch.Tensor, init: torch.Tensor) -> None:
    """The shape a convolution or pooling op computes is its init operand's."""
    if tuple(computed.shape) != tuple(init.shape):
        raise _unsupported(op, f"an output of shape {list(init.shape)} for {list(computed.shape)}")


def _pooling_nchw_max(self: _Interpreter, op: Operation, args: list[Any]) -> torch.Tensor:
    """``linalg.pooling_nchw_max``: ``max(C, max over each window of I)``; the second operand
    only gives the window's shape (torch-mlir pads the input with -inf first)."""
    source, window, init = args
    stride, dilation = _window_steps(op)
    pooled = torch.nn.functional.max_pool2d(
        source.to(init.dtype), tuple(window.shape), stride=stride, dilation=dilation
    )
    _check_window_output(op, pooled, init)
    return torch.maximum(init, pooled).contiguous()


def _conv_2d_nchw_fchw(self: _Interpreter, op: Operation, args: list[Any]) -> torch.Tensor:
    """``linalg.conv_2d_nchw_fchw``: ``C + conv(I, F)`` with the op's strides and dilations
    (torch's ``conv2d`` has the same layouts: N, C, H, W and F, C, KH, KW)."""
    source, kernel, init = args
    stride, dilation = _window_steps(op)
    product = torch.nn.functional.conv2d(
        source.to(init.dtype), kernel.to(init.dtype), stride=stride, dilation=dilation
    )
    _check_window_output(op, product, init)
    return (init + product).contiguous()


_TENSOR_OPS: dict[str, Callable[[_Interpreter, Operation, list[Any]], torch.Tensor]] = {
    "tensor.empty": _empty,
    "linalg.fill": _fill,
    "linalg.transpose": _transpose,
    "linalg.broadcast": _broadcast,
    "linalg.copy": lambda self, op, args: args[0].clone(),
    "linalg.matmul": _product,
    "linalg.batch_matmul": _product,
    "linalg.conv_2d_nchw_fchw": _conv_2d_nchw_fchw,
    "linalg.pooling_nchw_max": _pooling_nchw_max,
    "tensor.collapse_shape": _reshape,
    "tensor.expand_shape": _reshape,
    "tensor.reshape": _reshape,
    "tensor.cast": _identity,
    "tensor.extract": _extract,
    "tensor.from_elements": _from_elements,
    "tensor.concat": _concat,
    "tensor.extract_slice": _extract_slice,
    "tensor.insert_slice": _insert_slice,
    "bitmod.param": _param,
    "bitmod.matmul": _host_matmul,
    "bsisa.launch": _launch,
}


def function_op(module: ModuleOp, function: str = "main") -> FuncOp:
    """The ``func.func @function`` of ``module``; a ModuleRunError listing the functions it
    has when there is none of that name."""
    from xdsl.dialects.func import FuncOp

    funcs = [op for op in module.ops if isinstance(op, FuncOp) and op.sym_name.data == function]
    if not funcs:
        names = [op.sym_name.data for op in module.ops if isinstance(op, FuncOp)]
        raise ModuleRunError(
            f"module runner: the module has no function @{function} (functions: "
            f"{', '.join('@' + n for n in names) or 'none'})"
        )
    (func,) = funcs
    return func


def argument_types(func: FuncOp) -> list[tuple[tuple[int, ...], torch.dtype]]:
    """The static shape and the dtype of each argument of ``func``: what :func:`run_function`
    takes (it converts an input of another dtype); a ModuleRunError for a dynamic shape or
    an element type the runner has no dtype for."""
    return [(_static_shape(arg, func), _value_dtype(arg, func)) for arg in func.body.block.args]


def run_function(
    ctx: BitmodContext,
    module: ModuleOp,
    inputs: Sequence[torch.Tensor],
    *,
    function: str = "main",
    machine: Machine | None = None,
    record: bool = False,
    on_launch: Callable[[str], None] | None = None,
) -> ModuleRun:
    """Run ``function`` of the lowered ``module`` on ``inputs`` (module docstring); the
    parameter archive is ``ctx.archive`` (:func:`load_lowered` loads it). ``machine``
    (default: the one the module's ``bitmod.machine`` records, which ``bitmod-tile`` wrote,
    else the default machine) runs the launches. ``on_launch`` is called with the layer name
    of every ``bsisa.launch`` once it has run (a progress bar)."""
    func = function_op(module, function)
    block = func.body.block
    if len(inputs) != len(block.args):
        raise ModuleRunError(
            f"module runner: @{function} takes {len(block.args)} inputs, got {len(inputs)}", func
        )
    prepared = []
    for index, (arg, value) in enumerate(zip(block.args, inputs, strict=True)):
        shape = _static_shape(arg, func)
        if tuple(value.shape) != shape:
            raise ModuleRunError(
                f"module runner: input {index} of @{function} has shape {list(value.shape)}, "
                f"the function takes {list(shape)}",
                func,
            )
        prepared.append(value.detach().to(_value_dtype(arg, func)))
    archive = ctx.archive if ctx.archive is not None else ParamArchive()
    records: list[OpRecord] | None = [] if record else None
    stats: dict[str, OpStats] = {}
    if machine is None:
        hardware = machine_of(module)
        machine = Machine() if hardware is None else Machine(hardware)
    accelerator = _Accelerator(machine, archive, stats, records, on_launch)
    interpreter = _Interpreter(ctx, accelerator)
    with torch.no_grad():
        outputs = interpreter.run_block(block, prepared, {})
    return ModuleRun(list(outputs), stats, records)
