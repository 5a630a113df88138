"""Host execution of the ops the accelerator does not run: the FX graph as a host program.

``bitmod.compile`` keeps the ATen graph that ``torch.export`` produced as the *host program*.
Every node of it runs on the host with PyTorch's own ATen kernels (layer norms, softmax, GELU,
residual adds, embeddings, views), except the nodes that the compiler offloaded: those became
``accel`` nodes that call into the emulated accelerator through a callback the compiled model
supplies (:mod:`bitmod.compiler.offload`).

The host program is its own small serializable graph rather than a ``torch.fx.GraphModule``
so that a saved model (``CompiledModel.save``) holds:

* no Python code and no pickles: nodes are JSON, an op is named by its ATen overload
  (``"aten.layer_norm.default"``) and resolved with ``torch.ops`` when loaded;
* no float copies of the offloaded weights (``torch.export.save`` would keep every parameter
  of the exported program; ours names only the tensors host nodes read, by archive name).

Loading and running it needs no tracing and no model source.

Node kinds
----------
``input``   the i-th flattened user input (``target`` = str(i))
``param``   a tensor of the parameter archive (``target`` = its archive name)
``call``    an ATen op overload or an ``operator`` builtin applied to ``args``/``kwargs``
``accel``   an offloaded op (``target`` = its name) applied to its activation operands
``output``  the flattened outputs (``args`` = the list of returned values)
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from bitmod.runtime.storage.jsontext import JsonError, parse_json
from torch.utils import _pytree as pytree

__all__ = [
    "HOST_PROGRAM_VERSION",
    "HostError",
    "HostNode",
    "HostProgram",
    "TensorSpec",
    "op_name",
    "resolve_op",
]

HOST_PROGRAM_VERSION = 1

NODE_KINDS = ("input", "param", "call", "accel", "output")


class HostError(ValueError):
    """A host program that cannot be built, read or run; the message names the node."""


@dataclass(frozen=True)
class TensorSpec:
    """Shape and dtype of a tensor the compiled model takes (its graph is static)."""

    shape: tuple[int, ...]
    dtype: str  # torch dtype name without the "torch." prefix, e.g. "float32"

    @classmethod
    def of(cls, tensor: torch.Tensor) -> TensorSpec:
        return cls(tuple(int(d) for d in tensor.shape), dtype_name(tensor.dtype))

    def to_json(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, data: Any) -> TensorSpec:
        if not isinstance(data, dict) or set(data) != {"shape", "dtype"}:
            raise HostError(f"bad tensor spec {data!r}: expected {{'shape': [...], 'dtype': ...}}")
        shape = data["shape"]
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise HostError(f"bad tensor spec shape {shape!r}")
        parse_dtype(data["dtype"])
        return cls(tuple(shape), data["dtype"])


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def parse_dtype(name: Any) -> torch.dtype:
    dtype = getattr(torch, name, None) if isinstance(name, str) else None
    if not isinstance(dtype, torch.dtype):
        raise HostError(f"unknown torch dtype {name!r}")
    return dtype


# --- ops -------------------------------------------------------------------------------------

_OPERATOR_BUILTINS = ("getitem", "add", "sub", "mul", "truediv", "floordiv", "neg", "pow")


def op_name(target: Any) -> str:
    """The serializable name of an FX call target; HostError if it has none."""
    if isinstance(target, torch._ops.OpOverload):
        if target._schema.is_mutable:
            raise HostError(f"in-place op {target} (host programs are functional graphs)")
        return str(target)  # "aten.linear.default"
    if callable(target) and getattr(target, "__name__", None) in _OPERATOR_BUILTINS:
        if getattr(operator, target.__name__, None) is target:
            return f"operator.{target.__name__}"
    raise HostError(
        f"cannot keep {getattr(target, '__qualname__', target)!r} in a host program: only ATen "
        f"op overloads and operator.{{{', '.join(_OPERATOR_BUILTINS)}}} are supported"
    )


def resolve_op(name: str) -> Callable[..., Any]:
    """Inverse of :func:`op_name`."""
    parts = name.split(".")
    if len(parts) == 2 and parts[0] == "operator" and parts[1] in _OPERATOR_BUILTINS:
        return getattr(operator, parts[1])
    if len(parts) == 3:
        namespace, op, overload = parts
        try:
            resolved = getattr(getattr(getattr(torch.ops, namespace), op), overload)
        except (AttributeError, RuntimeError):
            resolved = None
        if isinstance(resolved, torch._ops.OpOverload):
            op_name(resolved)  # rejects in-place ops a hand-edited file may name
            return resolved
    raise HostError(f"unknown host op {name!r} (not an ATen op overload of this torch version)")


# --- argument encoding -----------------------------------------------------------------------

_FLOAT_SPECIALS = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _encode(value: Any, refs: Callable[[Any], str | None], where: str) -> Any:
    """JSON-able form of an FX argument; ``refs`` maps an FX node to its name."""
    name = refs(value)
    if name is not None:
        return {"$node": name}
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, list):
        return [_encode(v, refs, where) for v in value]
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v, refs, where) for v in value]}
    if isinstance(value, torch.dtype):
        return {"$dtype": dtype_name(value)}
    if isinstance(value, torch.device):
        return {"$device": str(value)}
    if isinstance(value, torch.layout):
        return {"$layout": str(value).removeprefix("torch.")}
    if isinstance(value, torch.memory_format):
        return {"$memory_format": str(value).removeprefix("torch.")}
    raise HostError(f"{where}: cannot serialize argument {value!r} of type {type(value).__name__}")


def _decode(value: Any, env: Mapping[str, Any], where: str) -> Any:
    if isinstance(value, list):
        return [_decode(v, env, where) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        raise HostError(f"{where}: malformed argument {value!r}")
    ((tag, payload),) = value.items()
    if tag == "$node":
        if payload not in env:
            raise HostError(f"{where}: uses {payload!r} before it is defined")
        return env[payload]
    if tag == "$tuple" and isinstance(payload, list):
        return tuple(_decode(v, env, where) for v in payload)
    if tag == "$float" and payload in _FLOAT_SPECIALS:
        return _FLOAT_SPECIALS[payload]
    if tag == "$dtype":
        return parse_dtype(payload)
    if tag == "$device" and isinstance(payload, str):
        return torch.device(payload)
    if tag == "$layout" and isinstance(getattr(torch, str(payload), None), torch.layout):
        return getattr(torch, payload)
    if tag == "$memory_format" and isinstance(
        getattr(torch, str(payload), None), torch.memory_format
    ):
        return getattr(torch, payload)
    raise HostError(f"{where}: malformed argument {value!r}")


def _node_refs(value: Any) -> list[str]:
    """Names of the nodes an encoded argument refers to."""
    if isinstance(value, list):
        return [name for v in value for name in _node_refs(v)]
    if isinstance(value, dict):
        if "$node" in value:
            return [value["$node"]]
        return [name for v in value.values() for name in _node_refs(v)]
    return []


# --- the program -----------------------------------------------------------------------------


@dataclass(frozen=True)
class HostNode:
    name: str
    kind: str
    target: str = ""
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.target:
            data["target"] = self.target
        if self.args:
            data["args"] = self.args
        if self.kwargs:
            data["kwargs"] = self.kwargs
        return data


@dataclass
class HostProgram:
    """A straight-line graph of host ops and offloaded ops (see the module docstring)."""

    nodes: list[HostNode]
    inputs: list[TensorSpec]
    in_spec: str  # torch.utils._pytree.treespec_dumps of (args, kwargs)
    out_spec: str
    _ops: dict[str, Callable[..., Any]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._validate()

    # -- construction from torch.fx --------------------------------------------------------

    @classmethod
    def from_fx(
        cls,
        graph: torch.fx.Graph,
        *,
        inputs: Sequence[TensorSpec],
        in_spec: pytree.TreeSpec,
        out_spec: pytree.TreeSpec,
        param_names: Mapping[str, str],
        user_inputs: Sequence[str],
        accelerated: Mapping[str, tuple[str, Sequence[torch.fx.Node]]],
    ) -> HostProgram:
        """Convert an exported ATen graph.

        ``param_names`` maps a placeholder to its archive name, ``user_inputs`` lists the
        user-input placeholders in call order, ``accelerated`` maps an offloaded node's name to
        its op name and the activation operands it takes (everything else of it lives in the
        accelerator's program and the archive). Nodes no longer used (e.g. the weight
        placeholders of offloaded linears) are dropped.
        """
        user_index = {name: i for i, name in enumerate(user_inputs)}

        def refs(value: Any) -> str | None:
            return value.name if isinstance(value, torch.fx.Node) else None

        nodes: list[HostNode] = []
        for node in graph.nodes:
            where = f"node {node.name!r}"
            if node.op == "placeholder":
                if node.name in param_names:
                    nodes.append(HostNode(node.name, "param", param_names[node.name]))
                elif node.name in user_index:
                    nodes.append(HostNode(node.name, "input", str(user_index[node.name])))
                else:
                    raise HostError(f"{where}: placeholder is neither a parameter nor an input")
            elif node.op == "call_function":
                if node.name in accelerated:
                    op, operand_nodes = accelerated[node.name]
                    operands = [_encode(a, refs, where) for a in operand_nodes]
                    nodes.append(HostNode(node.name, "accel", op, operands))
                    continue
                try:
                    target = op_name(node.target)
                except HostError as error:
                    raise HostError(f"{where}: {error}") from None
                args = [_encode(a, refs, where) for a in node.args]
                kwargs = {k: _encode(v, refs, where) for k, v in node.kwargs.items()}
                nodes.append(HostNode(node.name, "call", target, args, kwargs))
            elif node.op == "output":
                (results,) = node.args
                outputs = _encode(list(results), refs, where)
                nodes.append(HostNode(node.name, "output", "", [outputs]))
            else:
                raise HostError(f"{where}: FX op kind {node.op!r} is not supported")
        return cls(
            _prune(nodes),
            list(inputs),
            pytree.treespec_dumps(in_spec),
            pytree.treespec_dumps(out_spec),
        )

    # -- checks ----------------------------------------------------------------------------

    def _validate(self) -> None:
        seen: set[str] = set()
        outputs = 0
        for node in self.nodes:
            where = f"host node {node.name!r}"
            if node.kind not in NODE_KINDS:
                raise HostError(f"{where}: unknown kind {node.kind!r}")
            if node.name in seen:
                raise HostError(f"{where}: defined twice")
            for ref in _node_refs(node.args) + _node_refs(node.kwargs):
                if ref not in seen:
                    raise HostError(f"{where}: uses {ref!r} before it is defined")
            if node.kind == "input":
                if not node.target.isdigit() or int(node.target) >= len(self.inputs):
                    raise HostError(f"{where}: input index {node.target!r} out of range")
            elif node.kind == "call":
                self._ops[node.target] = resolve_op(node.target)
            elif node.kind in ("param", "accel") and not node.target:
                raise HostError(f"{where}: needs a target name")
            elif node.kind == "output":
                outputs += 1
            seen.add(node.name)
        if outputs != 1 or self.nodes[-1].kind != "output":
            raise HostError("host program must end with exactly one output node")
        for spec in (self.in_spec, self.out_spec):
            try:
                pytree.treespec_loads(spec)
            except Exception as error:  # noqa: BLE001 - any decoding failure is a bad file
                raise HostError(f"bad pytree spec {spec[:80]!r}: {error}") from None

    def param_names(self) -> list[str]:
        return [node.target for node in self.nodes if node.kind == "param"]

    def accel_names(self) -> list[str]:
        return [node.target for node in self.nodes if node.kind == "accel"]

    # -- running ---------------------------------------------------------------------------

    def flatten_inputs(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> list[torch.Tensor]:
        """The user's call arguments as the flat tensor list the graph takes, checked."""
        flat, spec = pytree.tree_flatten((tuple(args), dict(kwargs)))
        expected = pytree.treespec_loads(self.in_spec)
        if spec != expected or len(flat) != len(self.inputs):
            raise HostError(
                f"the compiled model takes {len(self.inputs)} tensor input(s) structured as "
                f"when it was compiled; got {len(flat)} value(s) structured as {spec}"
            )
        for index, (value, expected_spec) in enumerate(zip(flat, self.inputs, strict=True)):
            if not isinstance(value, torch.Tensor):
                raise HostError(f"input {index} must be a tensor, got {type(value).__name__}")
            if value.device.type not in ("cpu", "cuda"):
                # The host graph runs in torch on the input's device; meta holds no values.
                raise HostError(f"input {index} is on {value.device}, not cpu or cuda")
            got = TensorSpec.of(value)
            if got != expected_spec:
                raise HostError(
                    f"input {index} is {got.dtype}{list(got.shape)} but the model was compiled "
                    f"for {expected_spec.dtype}{list(expected_spec.shape)} (shapes are static: "
                    f"compile again with an example of the new shape)"
                )
        return flat

    def run(
        self,
        inputs: Sequence[torch.Tensor],
        params: Callable[[str], torch.Tensor],
        accelerated: Callable[[str, list[torch.Tensor]], torch.Tensor],
    ) -> Any:
        """Execute with flat ``inputs``; returns the outputs in the model's structure.

        ``params(name)`` fetches an archive tensor; ``accelerated(name, operands)`` runs an
        offloaded op.
        """
        env: dict[str, Any] = {}
        uses = _last_uses(self.nodes)
        with torch.no_grad():
            for position, node in enumerate(self.nodes):
                where = f"host node {node.name!r}"
                if node.kind == "input":
                    env[node.name] = inputs[int(node.target)]
                elif node.kind == "param":
                    env[node.name] = params(node.target)
                elif node.kind == "accel":
                    operands = _decode(node.args, env, where)
                    env[node.name] = accelerated(node.target, operands)
                elif node.kind == "call":
                    args = _decode(node.args, env, where)
                    kwargs = {k: _decode(v, env, where) for k, v in node.kwargs.items()}
                    try:
                        env[node.name] = self._ops[node.target](*args, **kwargs)
                    except Exception as error:
                        raise HostError(f"{where} ({node.target}) failed: {error}") from error
                else:
                    flat = _decode(node.args[0], env, where)
                    return pytree.tree_unflatten(flat, pytree.treespec_loads(self.out_spec))
                for name in uses.get(position, ()):  # free intermediates early
                    env.pop(name, None)
        raise HostError("host program has no output node")  # unreachable after _validate

    # -- files -----------------------------------------------------------------------------

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": HOST_PROGRAM_VERSION,
                "inputs": [spec.to_json() for spec in self.inputs],
                "in_spec": self.in_spec,
                "out_spec": self.out_spec,
                "nodes": [node.to_json() for node in self.nodes],
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str, source: str = "<host program>") -> HostProgram:
        try:
            data = parse_json(text)
        except JsonError as error:
            raise HostError(f"{source}: not valid JSON ({error})") from None
        try:
            if not isinstance(data, dict):
                raise HostError("expected a JSON object")
            if data.get("version") != HOST_PROGRAM_VERSION:
                raise HostError(
                    f"host program version {data.get('version')!r}, this bitmod reads "
                    f"{HOST_PROGRAM_VERSION}"
                )
            nodes = []
            for entry in data["nodes"]:
                if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                    raise HostError(f"malformed node {entry!r}")
                unknown = set(entry) - {"name", "kind", "target", "args", "kwargs"}
                if unknown:
                    raise HostError(f"node {entry['name']!r}: unknown fields {sorted(unknown)}")
                nodes.append(
                    HostNode(
                        entry["name"],
                        entry.get("kind", ""),
                        entry.get("target", ""),
                        list(entry.get("args", [])),
                        dict(entry.get("kwargs", {})),
                    )
                )
            inputs = [TensorSpec.from_json(spec) for spec in data["inputs"]]
            return cls(nodes, inputs, str(data["in_spec"]), str(data["out_spec"]))
        except HostError as error:
            raise HostError(f"{source}: {error}") from None
        except (KeyError, TypeError, ValueError) as error:
            raise HostError(f"{source}: malformed host program ({error!r})") from None


def _prune(nodes: list[HostNode]) -> list[HostNode]:
    """Drop nodes whose values nothing uses (offloaded weights, their views)."""
    used: set[str] = set()
    kept: list[HostNode] = []
    for node in reversed(nodes):
        if node.kind == "output" or node.name in used or node.kind == "input":
            kept.append(node)
            used.update(_node_refs(node.args) + _node_refs(node.kwargs))
    return kept[::-1]


def _last_uses(nodes: Sequence[HostNode]) -> dict[int, list[str]]:
    """For each node position, the values whose last use it is (to free them after)."""
    last: dict[str, int] = {}
    for position, node in enumerate(nodes):
        for ref in _node_refs(node.args) + _node_refs(node.kwargs):
            last[ref] = position
    by_position: dict[int, list[str]] = {}
    for name, position in last.items():
        by_position.setdefault(position, []).append(name)
    return by_position
