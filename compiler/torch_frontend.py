"""The PyTorch frontend: ``torch.export`` and a direct walk of the exported ATen graph.

Why a direct FX walk and not torch-mlir
---------------------------------------
A compiled model must run everything the accelerator cannot (norms, softmax, GELU, residual
adds, embeddings, views) on the host, in between the accelerated matmuls. The exported FX
graph already *is* that host program, op for op, and runs with PyTorch's own kernels.
Walking it directly we keep that graph (minus the offloaded weights) as the host program and
replace each accelerated node by a call into the accelerator; the bitmod-dialect module holds
only what the accelerator runs: one ``func.func`` per accelerated op with its
``bitmod.param``/``bitmod.quantize``/``bitmod.matmul``. Going through torch-mlir's
``linalg-on-tensors`` instead would give one MLIR function for the whole model, from which
we would have to split the host part out again and re-execute linalg/tensor/math ops on the
host with a second interpreter; it would also drop the ``nn.Module`` names (needed for
per-layer reports, ``layers=`` overrides and error messages) and embed every weight as a
``dense_resource`` blob. torch-mlir stays the route for ``bitmod-opt`` users who start from
MLIR (``convert-linalg-to-bitmod``).

What is accelerated
-------------------
* *linear*: ``aten.linear`` / ``aten.addmm`` / ``aten.mm`` / ``aten.matmul`` whose weight
  operand is a constant 2-D float tensor (a parameter, buffer or lifted constant, seen through
  ``t``/``transpose``/``permute``), with a constant bias folded into the drain. Inputs
  ``[..., K]`` are flattened to ``M = prod(...)`` rows.
* *matmul*: ``aten.matmul`` / ``aten.bmm`` / ``aten.mm`` of two activations
  ``a[..., M, K] @ b[..., K, N]`` (attention's ``Q·Kᵀ`` and ``P·V``). BitMoD's PE holds one
  FP16 operand, so the right operand (``Kᵀ`` or ``V``) is quantized at run time to INT8 (or
  INT4) per group along the reduction dimension and takes the weight's place (paper
  Sec. IV-B); one accelerator run per batch/head slice.
* ``aten.scaled_dot_product_attention`` is first decomposed into those two matmuls plus host
  ops (scale, mask, softmax), so fused attention is accelerated too.

Everything else runs on the host, and the import records why (:data:`HostOp.reason`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import math
import operator
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from bitmod.compiler.host import HostError, HostProgram, TensorSpec, dtype_name, op_name
from torch import nn
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind, OutputKind
from torch.fx import Node

__all__ = [
    "AcceleratedOp",
    "CompileError",
    "HostOp",
    "ImportedModel",
    "TraceError",
    "export_model",
    "import_model",
]

aten = torch.ops.aten


class CompileError(ValueError):
    """A model, option or saved bundle that bitmod cannot compile or load."""


class TraceError(CompileError):
    """``torch.export`` could not trace the model; the message names the module."""


# --- tracing ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Trace in inference mode (no dropout, running norm statistics), then restore."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, training in modes.items():
            module.training = training


@contextlib.contextmanager
def _quiet_torch_logs() -> Iterator[None]:
    """torch.export logs failed guards at WARNING with graph dumps; our error says it all."""
    names = ("torch.fx.experimental.symbolic_shapes", "torch._export", "torch.export")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # torch's own deprecation notices from deep-copying the graph; not the user's.
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _failing_module(error: BaseException, model: nn.Module) -> tuple[str, str]:
    """(qualified name, "file:line") of the innermost model submodule in the traceback."""
    names = {id(module): name for name, module in model.named_modules()}
    found = ("", "")
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        exc = pending.pop()
        if id(exc) in seen:
            continue
        seen.add(id(exc))
        for frame, line in traceback.walk_tb(exc.__traceback__):
            owner = frame.f_locals.get("self")
            if isinstance(owner, nn.Module) and id(owner) in names:
                found = (names[id(owner)], f"{frame.f_code.co_filename}:{line}")
        pending.extend(e for e in (exc.__cause__, exc.__context__) if e is not None)
    return found


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]


def export_model(
    model: nn.Module, example_args: Sequence[Any], example_kwargs: Mapping[str, Any] | None = None
) -> ExportedProgram:
    """``torch.export`` of ``model`` in eval mode: functional ATen, fused attention decomposed.

    A construct the tracer cannot take (data-dependent control flow, ``.item()``/``.numpy()``
    on activations, unsupported Python) raises :class:`TraceError` naming the innermost
    submodule whose ``forward`` was running and the source line.
    """
    if not isinstance(model, nn.Module):
        raise CompileError(f"bitmod.compile takes a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(example_args, tuple | list):
        example_args = (example_args,)
    kwargs = dict(example_kwargs or {})
    for index, value in enumerate([*example_args, *kwargs.values()]):
        if not isinstance(value, torch.Tensor):
            raise CompileError(
                f"example input {index} is a {type(value).__name__}; bitmod.compile takes "
                f"tensor inputs only (bind other arguments in the model)"
            )
    model_name = type(model).__name__
    # torch.export prints the partial graph of a failed trace to stderr; our error says it.
    printed = io.StringIO()
    try:
        with (
            _eval_mode(model),
            _quiet_torch_logs(),
            torch.no_grad(),
            contextlib.redirect_stderr(printed),
        ):
            exported = torch.export.export(model, tuple(example_args), kwargs, strict=False)
        sys.stderr.write(printed.getvalue())
    except Exception as error:  # noqa: BLE001 - every tracer failure becomes one message
        module, location = _failing_module(error, model)
        where = (
            f"module '{module}' ({type(model.get_submodule(module)).__name__})"
            if module
            else f"the top-level module ({model_name})"
        )
        at = f" at {location}" if location else ""
        raise TraceError(
            f"cannot trace {model_name}: unsupported construct in {where}{at}: "
            f"{type(error).__name__}: {_first_line(error)}"
        ) from error
    # Functionalize (in-place ops become out-of-place, buffer mutations become outputs) and
    # decompose fused attention; every other op stays as traced (an empty table otherwise).
    try:
        with _quiet_torch_logs(), torch.no_grad():
            return exported.run_decompositions(
                {aten.scaled_dot_product_attention.default: _attention_as_matmuls}
            )
    except Exception as error:  # noqa: BLE001
        raise TraceError(
            f"cannot trace {model_name}: functionalizing its graph failed: "
            f"{type(error).__name__}: {_first_line(error)}"
        ) from error


def _attention_as_matmuls(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor:
    """``softmax(Q Kᵀ · scale + mask) V`` with explicit matmuls (PyTorch's SDPA semantics)."""
    if dropout_p != 0.0:
        raise CompileError(f"scaled_dot_product_attention with dropout_p={dropout_p} in eval")
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        repeat = query.shape[-3] // key.shape[-3]
        key = key.repeat_interleave(repeat, dim=-3)
        value = value.repeat_interleave(repeat, dim=-3)
    factor = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = torch.matmul(query, key.transpose(-2, -1)) * factor
    if is_causal:
        keep = torch.ones(query.shape[-2], key.shape[-2], dtype=torch.bool).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    return torch.matmul(torch.softmax(scores, dim=-1), value)


# --- the graph walk --------------------------------------------------------------------------


@dataclass(frozen=True)
class AcceleratedOp:
    """A matmul the accelerator runs.

    ``kind`` is ``"linear"`` (activation × constant weight ``[N, K]`` stored in the archive as
    ``weight``, optional constant ``bias``) or ``"matmul"`` (``a[..., M, K] @ b[..., K, N]``,
    both activations; ``b`` is quantized at run time). ``input_shapes`` are the shapes of the
    activation operands as traced, ``output_shape`` the result's.
    """

    name: str
    kind: str
    module: str
    aten: str
    input_shapes: tuple[tuple[int, ...], ...]
    output_shape: tuple[int, ...]
    dtype: str
    weight: str | None = None
    bias: str | None = None

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """Leading dims: flattened into M for a linear, one run each for a matmul."""
        if self.kind == "linear":
            return self.input_shapes[0][:-1]
        return self.output_shape[:-2]

    @property
    def mkn(self) -> tuple[int, int, int]:
        """(M, K, N) of one accelerator run."""
        if self.kind == "linear":
            k = self.input_shapes[0][-1]
            return math.prod(self.batch_shape), k, self.output_shape[-1]
        return self.output_shape[-2], self.input_shapes[0][-1], self.output_shape[-1]

    @property
    def runs(self) -> int:
        """Accelerator runs per call: 1 for a linear, one per batch/head slice for a matmul."""
        return 1 if self.kind == "linear" else math.prod(self.batch_shape)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "module": self.module,
            "aten": self.aten,
            "input_shapes": [list(s) for s in self.input_shapes],
            "output_shape": list(self.output_shape),
            "dtype": self.dtype,
            "weight": self.weight,
            "bias": self.bias,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AcceleratedOp:
        op = cls(
            str(data["name"]),
            str(data["kind"]),
            str(data["module"]),
            str(data["aten"]),
            tuple(tuple(int(d) for d in s) for s in data["input_shapes"]),
            tuple(int(d) for d in data["output_shape"]),
            str(data["dtype"]),
            data.get("weight"),
            data.get("bias"),
        )
        if op.kind not in ("linear", "matmul"):
            raise ValueError(f"unknown accelerated op kind {op.kind!r}")
        if len(op.input_shapes) != (1 if op.kind == "linear" else 2):
            raise ValueError(f"op {op.name!r}: wrong number of input shapes")
        shapes = [*op.input_shapes, op.output_shape]
        if any(len(shape) < (1 if op.kind == "linear" else 2) for shape in shapes) or any(
            d <= 0 for shape in shapes for d in shape
        ):
            raise ValueError(
                f"op {op.name!r}: shapes {[list(s) for s in shapes]} are not matmul shapes"
            )
        if op.kind == "linear":
            consistent = op.output_shape[:-1] == op.input_shapes[0][:-1]
        else:
            (lhs, rhs), out = op.input_shapes, op.output_shape
            consistent = lhs[-1] == rhs[-2] and out[-2:] == (lhs[-2], rhs[-1])
        if not consistent:
            raise ValueError(
                f"op {op.name!r}: output shape {list(op.output_shape)} does not follow from "
                f"the input shapes {[list(s) for s in op.input_shapes]}"
            )
        return op


@dataclass(frozen=True)
class HostOp:
    """An op kept on the host, and why."""

    node: str
    module: str
    aten: str
    category: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclass
class ImportedModel:
    """The frontend's result: host program, accelerated ops, host ops, archive tensors."""

    model_name: str
    exported: ExportedProgram
    host: HostProgram
    ops: list[AcceleratedOp]
    host_ops: list[HostOp]
    tensors: dict[str, torch.Tensor] = field(repr=False)
    """Everything the archive must hold: host parameters, linear weights [N, K], biases."""


_MATMUL_TARGETS = {
    aten.linear.default,
    aten.addmm.default,
    aten.mm.default,
    aten.matmul.default,
    aten.bmm.default,
}
_TRANSPOSES = {aten.t.default, aten.numpy_T.default, aten.transpose.int, aten.permute.default}
_ALIASES = {aten.detach.default, aten.alias.default, aten.clone.default, aten.contiguous.default}

# Host op categories: (category, reason), matched on the ATen op's base name.
_HOST_CATEGORIES: tuple[tuple[frozenset[str], str, str], ...] = (
    (
        frozenset(
            {
                "layer_norm",
                "native_layer_norm",
                "rms_norm",
                "group_norm",
                "batch_norm",
                "_native_batch_norm_legit_no_training",
                "instance_norm",
            }
        ),
        "normalization",
        "normalization: per-token statistics and a division, not a matmul",
    ),
    (
        frozenset({"softmax", "_softmax", "log_softmax", "_log_softmax", "_safe_softmax"}),
        "softmax",
        "softmax: exponentials and a division, not a matmul",
    ),
    (
        frozenset(
            {
                "gelu",
                "relu",
                "silu",
                "tanh",
                "sigmoid",
                "elu",
                "leaky_relu",
                "hardtanh",
                "mish",
                "softplus",
                "exp",
                "log",
                "sqrt",
                "rsqrt",
                "erf",
                "cos",
                "sin",
                "pow",
                "abs",
                "neg",
                "reciprocal",
            }
        ),
        "activation",
        "element-wise nonlinear function, not a matmul",
    ),
    (
        frozenset(
            {
                "add",
                "sub",
                "mul",
                "div",
                "masked_fill",
                "where",
                "clamp",
                "maximum",
                "minimum",
                "bitwise_not",
                "bitwise_and",
                "bitwise_or",
                "eq",
                "ne",
                "lt",
                "le",
                "gt",
                "ge",
                "logical_not",
                "mean",
                "sum",
                "amax",
                "max",
                "min",
                "var",
            }
        ),
        "elementwise",
        "element-wise arithmetic or reduction (residuals, scaling, masking)",
    ),
    (frozenset({"embedding"}), "embedding", "embedding: a table lookup, not a matmul"),
    (
        frozenset(
            {
                "convolution",
                "conv1d",
                "conv2d",
                "conv3d",
                "conv_transpose1d",
                "conv_transpose2d",
                "_convolution",
            }
        ),
        "convolution",
        "convolution: the accelerator runs matmuls only; no im2col lowering",
    ),
    (
        frozenset(
            {
                "view",
                "reshape",
                "_unsafe_view",
                "transpose",
                "t",
                "permute",
                "expand",
                "split",
                "split_with_sizes",
                "chunk",
                "slice",
                "select",
                "unsqueeze",
                "squeeze",
                "cat",
                "stack",
                "contiguous",
                "clone",
                "flatten",
                "unflatten",
                "numpy_T",
                "alias",
                "detach",
                "getitem",
                "arange",
                "ones",
                "zeros",
                "full",
                "tril",
                "triu",
                "to",
                "_to_copy",
                "type_as",
                "repeat",
                "repeat_interleave",
                "index",
                "gather",
                "scalar_tensor",
                "lift_fresh_copy",
                "empty",
                "new_ones",
                "new_zeros",
                "narrow",
                "dropout",
                "_assert_tensor_metadata",
            }
        ),
        "data movement",
        "layout/data movement only (no arithmetic)",
    ),
)


def _base_name(target_name: str) -> str:
    parts = target_name.split(".")
    return parts[1] if parts[0] in ("aten", "prims") and len(parts) > 1 else parts[-1]


def _host_category(target_name: str) -> tuple[str, str]:
    base = _base_name(target_name)
    for names, category, reason in _HOST_CATEGORIES:
        if base in names:
            return category, reason
    return "other", "no accelerator lowering for this op (the accelerator runs matmuls only)"


def _tensor_meta(node: Any) -> torch.Tensor | None:
    value = node.meta.get("val") if isinstance(node, Node) else None
    return value if isinstance(value, torch.Tensor) else None


def _module_path(node: Node) -> tuple[str, str]:
    """(qualified name, class name) of the innermost module the node was traced in."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", ""
    path, kind = list(stack.values())[-1]
    kind_name = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    return str(path), kind_name.rsplit(".", 1)[-1]


@dataclass
class _Walk:
    """State of one graph walk."""

    constants: dict[str, tuple[str, torch.Tensor]]  # placeholder -> (archive name, tensor)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    ops: list[AcceleratedOp] = field(default_factory=list)
    host_ops: list[HostOp] = field(default_factory=list)
    operands: dict[str, tuple[str, list[Node]]] = field(default_factory=dict)  # by FX node
    names: dict[str, int] = field(default_factory=dict)
    dynamic: set[str] = field(default_factory=set)  # nodes that depend on a user input

    def constant_weight(self, node: Any, node_is_weight: bool) -> tuple[str, torch.Tensor] | None:
        """(archive name, ``W [N, K]``) if ``node`` is a constant weight, else None.

        ``node`` is ``W`` itself (``aten.linear``'s operand, ``node_is_weight``) or ``Wᵀ`` (the
        right operand of ``x @ Wᵀ``). Transposes are followed back to a constant placeholder
        ``P``; when ``W = Pᵀ`` the transposed copy is stored under ``P``'s name + ``.T``.
        """
        flips = 0
        while isinstance(node, Node) and node.op == "call_function":
            if node.target in _ALIASES:
                node = node.args[0]
                continue
            if node.target not in _TRANSPOSES:
                return None
            source = _tensor_meta(node.args[0])
            if source is None or source.dim() != 2:
                return None
            if node.target == aten.permute.default and [d % 2 for d in node.args[1]] != [1, 0]:
                return None
            flips += 1
            node = node.args[0]
        if not isinstance(node, Node) or node.name not in self.constants:
            return None
        name, tensor = self.constants[node.name]
        if tensor.dim() != 2 or not tensor.is_floating_point():
            return None
        if (flips % 2 == 0) == node_is_weight:
            return name, tensor
        return f"{name}.T", tensor.t()

    def constant_vector(self, node: Any, length: int) -> tuple[str, torch.Tensor] | None:
        while isinstance(node, Node) and node.target in _ALIASES:
            node = node.args[0]
        if not isinstance(node, Node) or node.name not in self.constants:
            return None
        name, tensor = self.constants[node.name]
        if tuple(tensor.shape) != (length,) or not tensor.is_floating_point():
            return None
        return name, tensor

    def layer_name(self, node: Node, linear: bool) -> tuple[str, str]:
        """A stable, readable name: the nn.Linear's path, or ``path.opN`` within a module."""
        path, kind = _module_path(node)
        if linear and kind == "Linear" and path and path not in self.names:
            self.names[path] = 1
            return path, path
        base = _base_name(op_name(node.target))
        stem = f"{path}.{base}" if path else base
        index = self.names.get(stem, 0)
        self.names[stem] = index + 1
        return f"{stem}{index}", path


def _linear_operands(node: Node) -> tuple[Any, Any, Any] | None:
    """(x, weightᵀ-side operand, bias) of a matmul-like node, when it is one."""
    if node.target == aten.linear.default:
        x, weight = node.args[0], node.args[1]
        bias = node.args[2] if len(node.args) > 2 else node.kwargs.get("bias")
        return x, ("linear", weight), bias
    if node.target == aten.addmm.default:
        beta = node.kwargs.get("beta", 1)
        alpha = node.kwargs.get("alpha", 1)
        if beta != 1 or alpha != 1:
            return None
        return node.args[1], ("rhs", node.args[2]), node.args[0]
    if node.target in (aten.mm.default, aten.matmul.default, aten.bmm.default):
        return node.args[0], ("rhs", node.args[1]), None
    return None


def _classify(walk: _Walk, node: Node) -> str | None:
    """Offload ``node`` if the accelerator can run it; else the reason it stays on the host."""
    operands = _linear_operands(node)
    if operands is None:
        return "matmul with alpha/beta scaling other than 1"
    x, (form, weight_side), bias = operands
    x_meta, out_meta = _tensor_meta(x), _tensor_meta(node)
    if x_meta is None or out_meta is None:
        return "operand shapes unknown after tracing"
    if not x_meta.is_floating_point() or not out_meta.is_floating_point():
        return "not a floating-point matmul"
    found = walk.constant_weight(weight_side, node_is_weight=form == "linear")
    if found is not None:
        weight_name, weight = found
        if x_meta.dim() < 1 or x_meta.shape[-1] != weight.shape[1]:
            return "weight and input shapes do not line up as [.., K] x [N, K]"
        bias_name = None
        if bias is not None:
            found_bias = walk.constant_vector(bias, weight.shape[0])
            if found_bias is None:
                return "bias is not a constant vector of length N"
            bias_name, bias_tensor = found_bias
            walk.tensors[bias_name] = bias_tensor.detach().to(torch.float32)
        walk.tensors[weight_name] = weight.detach().to(torch.float32).contiguous()
        name, module = walk.layer_name(node, linear=True)
        walk.ops.append(
            AcceleratedOp(
                name,
                "linear",
                module,
                op_name(node.target),
                (tuple(x_meta.shape),),
                tuple(out_meta.shape),
                dtype_name(out_meta.dtype),
                weight_name,
                bias_name,
            )
        )
        walk.operands[node.name] = (name, [x])
        return None
    # Both operands are activations (attention's Q·Kᵀ and P·V).
    if form == "linear" or bias is not None:
        return "weight operand is computed at run time (not a constant)"
    b_meta = _tensor_meta(weight_side)
    if b_meta is None or not b_meta.is_floating_point():
        return "operand shapes unknown after tracing"
    if x_meta.dim() < 2 or b_meta.dim() < 2:
        return "matrix-vector product (1-D operand)"
    if isinstance(x, Node) and x.name not in walk.dynamic:
        return "left operand is a constant; the PE streams the activation on the left"
    if isinstance(weight_side, Node) and weight_side.name not in walk.dynamic:
        return "constant right operand that is not a 2-D weight (batched weights are not lowered)"
    name, module = walk.layer_name(node, linear=False)
    walk.ops.append(
        AcceleratedOp(
            name,
            "matmul",
            module,
            op_name(node.target),
            (tuple(x_meta.shape), tuple(b_meta.shape)),
            tuple(out_meta.shape),
            dtype_name(out_meta.dtype),
        )
    )
    walk.operands[node.name] = (name, [x, weight_side])
    return None


def import_model(
    model: nn.Module,
    example_args: Sequence[Any],
    example_kwargs: Mapping[str, Any] | None = None,
    *,
    keep_on_host: Callable[[str], bool] = lambda name: False,
) -> ImportedModel:
    """Trace ``model`` and split its graph into host program and accelerated ops.

    ``keep_on_host(layer_name)`` forces an otherwise accelerable op onto the host.
    """
    if not isinstance(example_args, tuple | list):
        example_args = (example_args,)
    exported = export_model(model, example_args, example_kwargs)
    signature = exported.graph_signature
    for spec in signature.output_specs:
        if spec.kind != OutputKind.USER_OUTPUT:
            raise CompileError(
                f"{type(model).__name__} mutates {spec.target!r} in forward ({spec.kind.name}); "
                f"compiled models must be pure functions of their inputs"
            )
    constants: dict[str, tuple[str, torch.Tensor]] = {}
    user_inputs: list[str] = []
    for spec in signature.input_specs:
        placeholder = spec.arg.name
        if spec.kind == InputKind.USER_INPUT:
            user_inputs.append(placeholder)
        elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
            target = spec.target
            if target in exported.state_dict:
                tensor = exported.state_dict[target]
            elif target in exported.constants:
                tensor = exported.constants[target]
            else:
                raise CompileError(f"exported program lacks the value of {target!r}")
            if not isinstance(tensor, torch.Tensor):
                raise CompileError(f"constant {target!r} is a {type(tensor).__name__}")
            constants[placeholder] = (target, tensor.detach())
        else:
            raise CompileError(f"unsupported graph input {placeholder!r} of kind {spec.kind.name}")

    walk = _Walk(constants)
    for node in exported.graph.nodes:
        if node.name in user_inputs or any(a.name in walk.dynamic for a in node.all_input_nodes):
            walk.dynamic.add(node.name)
        if node.op != "call_function":
            continue
        try:
            target = op_name(node.target)
        except HostError as error:
            module, _ = _module_path(node)
            raise CompileError(f"module '{module or type(model).__name__}': {error}") from None
        if node.target in _MATMUL_TARGETS:
            before = len(walk.ops)
            reason = _classify(walk, node)
            if reason is None and keep_on_host(walk.ops[-1].name):
                op = walk.ops.pop()
                walk.operands.pop(node.name)
                reason = f"kept on the host by layers={{{op.name!r}: 'host'}}"
            assert reason is not None or len(walk.ops) == before + 1
            if reason is None:
                continue
            module, _ = _module_path(node)
            walk.host_ops.append(HostOp(node.name, module, target, "matmul", reason))
            continue
        if node.target is operator.getitem:
            continue  # tuple projection, not an op
        module, _ = _module_path(node)
        category, reason = _host_category(target)
        walk.host_ops.append(HostOp(node.name, module, target, category, reason))

    inputs = list(example_args) + list((example_kwargs or {}).values())
    try:
        host = HostProgram.from_fx(
            exported.graph,
            inputs=[TensorSpec.of(t) for t in inputs],
            in_spec=exported.call_spec.in_spec,
            out_spec=exported.call_spec.out_spec,
            param_names={p: name for p, (name, _) in constants.items()},
            user_inputs=user_inputs,
            accelerated=walk.operands,
        )
    except HostError as error:
        raise CompileError(f"{type(model).__name__}: {error}") from None
    tensors = dict(walk.tensors)
    for name in host.param_names():
        tensors[name] = next(t for n, t in constants.values() if n == name)
    # Host ops that the pruned host program no longer runs (weight transposes) are not ops.
    kept = {node.name for node in host.nodes}
    host_ops = [op for op in walk.host_ops if op.node in kept]
    return ImportedModel(type(model).__name__, exported, host, walk.ops, host_ops, tensors)


# --- the bitmod-dialect module of one op -------------------------------------------------------


def symbol_name(layer: str) -> str:
    """A bare MLIR symbol for a layer name (``blocks.0.attn.qkv`` -> ``blocks_0_attn_qkv``)."""
    cleaned = "".join(c if c.isalnum() or c == "_" else "_" for c in layer)
    return cleaned if cleaned and not cleaned[0].isdigit() else f"op_{cleaned}"


def op_module(
    op: AcceleratedOp,
    *,
    dtype: str,
    group_size: int,
    k_padded: int,
    scale_bits: int,
    weight: str | None = None,
    runtime_operand: str | None = None,
    params_file: str = "params.safetensors",
) -> Any:
    """The bitmod-dialect module of one accelerated op: ``func.func @<layer>``.

    A linear reads its weight ``weight`` and bias from the archive and asks for
    quantization with a ``bitmod.quantize`` request whose result type carries the layer's
    format, group size and scale bits (``bitmod-quantize`` carries it out)::

        func.func @blocks_0_mlp_fc(%x: tensor<32x128xf32>) -> tensor<32x512xf32> {
          %w = bitmod.param "blocks.0.mlp.fc.weight" : tensor<512x128xf32>
          %q = bitmod.quantize %w : tensor<512x128xf32> -> !bitmod.qweight<512x128, bitmod3, 128>
          %b = bitmod.param "blocks.0.mlp.fc.bias" : tensor<512xf32>
          %y = bitmod.matmul %x, %q bias %b : (...) -> tensor<32x512xf32>
          func.return %y : tensor<32x512xf32>
        }

    An activation matmul describes one batch/head slice ``A [M, K'] @ Bᵀ``: its right operand
    is a function argument quantized at run time into the memory-image tensor
    ``runtime_operand`` (``bitmod.quantize %b runtime into "..."``, the form
    ``convert-linalg-to-bitmod`` gives torch-mlir's attention products: ``bitmod-quantize``
    leaves it alone; the host binds the real K/V per run).
    """
    # Local imports: bitmod.compiler.api imports this module, and loading a saved bundle
    # (bitmod.load) must not import xDSL; only building IR does.
    from bitmod.dialects.bitmod import MatmulOp, ParamOp, QuantizeOp, QWeightType
    from xdsl.dialects.builtin import ModuleOp, StringAttr, TensorType, f32
    from xdsl.dialects.func import FuncOp, ReturnOp
    from xdsl.ir import Block, Region

    m, _, n = op.mkn
    act_type = TensorType(f32, [m, k_padded])
    out_type = TensorType(f32, [m, n])
    qtype = QWeightType([n, k_padded], dtype, group_size, scale_bits)
    if op.kind == "linear":
        assert weight is not None
        block = Block(arg_types=[act_type])
        block.args[0].name_hint = "x"
        param = ParamOp(weight, TensorType(f32, [n, k_padded]))
        request = QuantizeOp(param.result, qtype)
        body: list[Any] = [param, request]
        bias = None
        if op.bias is not None:
            bias_param = ParamOp(op.bias, TensorType(f32, [n]))
            body.append(bias_param)
            bias = bias_param.result
        matmul = MatmulOp(block.args[0], request.result, out_type, bias)
    else:
        assert runtime_operand is not None
        block = Block(arg_types=[act_type, TensorType(f32, [n, k_padded])])
        block.args[0].name_hint = "a"
        block.args[1].name_hint = "b_t"
        request = QuantizeOp(block.args[1], qtype, entry=runtime_operand, runtime=True)
        body = [request]
        matmul = MatmulOp(block.args[0], request.result, out_type)
    matmul.result.name_hint = "y"
    body += [matmul, ReturnOp(matmul.result)]
    block.add_ops(body)
    func = FuncOp(symbol_name(op.name), ([a.type for a in block.args], [out_type]), Region(block))
    return ModuleOp([func], attributes={"bitmod.params": StringAttr(params_file)})
