"""`bitmod-quantize{dtype=bitmod3 group-size=128 scale-bits=8 layers=... progress=false}`.

Quantizes the weight of every ``bitmod.matmul`` with :func:`bitmod.runtime.formats.quantize`
(per group of ``G`` weights along K; BitMoD mixtures choose each group's special value by
least squared error, Algorithm 1) and stores codes, group scales, special-value indices (and
zero points) in the parameter archive with ``ParamArchive.put_quantized``, under the weight's
parameter name. In the IR the weight becomes

.. code-block:: mlir

    %w = bitmod.param "fc1.weight" : tensor<128x64xf32>
    %q = bitmod.quantize %w into "fc1.weight"
           : tensor<128x64xf32> -> !bitmod.qweight<128x64, bitmod3, 64>

and the matmul takes ``%q``. The float parameter stays in the archive (the IR still names
it, and it is the reference for accuracy checks).

Options
-------
``dtype``       format name of ``bitmod.runtime.formats.FORMAT_NAMES`` (default ``bitmod3``).
``group-size``  weights per group along K (default 128). A layer with ``K < G`` uses one
                group per row (``G = K`` rounded up to a multiple of 4); when ``G`` does
                not divide K the last group of a row is shorter (ragged, quantized on its
                own weights). MX formats always use their block of 32 (a different
                explicit size is an error).
``scale-bits``  width of the second-level, per-output-channel quantized group scales
                (2..8, default 8); 0 keeps FP16 group scales. MX formats ignore it: their
                block scale is an 8-bit E8M0 exponent, recorded as ``sb`` 8 in the type.
``layers``      per-layer overrides, ``LAYER:DTYPE[:GROUP]`` entries separated by commas,
                e.g. ``layers=fc1:int8,fc3:bitmod4:64``. ``LAYER`` is a layer name (a
                parameter name without its ``.weight`` suffix, e.g. ``fc1``) or a full
                parameter name. Names with characters other than letters, digits, ``_``,
                ``-`` need the value quoted: ``layers="blocks.0.attn:int8"``; bitmod-opt
                quotes an unquoted ``layers=`` value for you. Naming a layer the module
                does not have is an error.
``progress``    show a tqdm progress bar on stderr. Without it the bar appears only when
                stderr is a terminal and there are at least 8 layers (``bitmod.runtime.progress``).

Weights that are already quantized (``bitmod.quantize ... into``) are left alone, so the
pass is idempotent, and so are operands quantized at run time (``bitmod.quantize ...
runtime``: attention's K and V, in the format ``convert-linalg-to-bitmod`` gave them). A
``bitmod.quantize`` without ``into`` written in the input is carried out with the format of
its result type unless ``layers=`` names its layer. A module whose
products are still linalg ops (the pass runs before ``convert-linalg-to-bitmod``) is an
error (:mod:`bitmod.passes.stages`).

The weights to quantize are collected first (so that ``layers=`` is checked against the
module before anything changes); the pattern :class:`QuantizeWeight` then quantizes each at
its ``bitmod.param`` under a ``PatternRewriteWalker``. A weight several ``bitmod.param`` ops
read (tied weights) is quantized once.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bitmod.dialects.bitmod import (
    DEFAULT_SCALE_BITS,
    MAX_SCALE_BITS,
    MatmulOp,
    ParamOp,
    QuantizeOp,
    QWeightType,
    known_format_names,
    unknown_dtype_message,
)
from bitmod.dialects.diagnostics import DiagnosticError, error_at, warn_at
from bitmod.passes.context import archive_of
from bitmod.passes.stages import nothing_to_do
from bitmod.runtime.progress import show_progress
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.rewriter import InsertPoint

if TYPE_CHECKING:
    from bitmod.runtime.storage.archive import ParamArchive

_LAYER_ENTRY = re.compile(r"(?P<layer>[^:\s]+):(?P<dtype>[^:\s]+)(?::(?P<group>[^:\s]+))?")


@dataclass(frozen=True)
class QuantSpec:
    """How to quantize one layer: format, group size along K, second-level scale bits."""

    dtype: str
    group_size: int | None  # None: the pass-wide group size (resolved against K)
    scale_bits: int

    def resolve(self, in_features: int, layer: str) -> tuple[str, int, int]:
        """(format, group size, scale bits) for a weight with `in_features` K."""
        from bitmod.runtime.formats import get_format

        fmt = get_format(self.dtype)
        if fmt.family == "mx":
            block = fmt.block_size
            assert block is not None
            if self.group_size is not None and self.group_size != block:
                raise ValueError(
                    f"layer '{layer}': {fmt.name} uses the MX block size {block}, "
                    f"not group size {self.group_size}"
                )
            return fmt.name, block, DEFAULT_SCALE_BITS
        group = self.group_size if self.group_size is not None else 128
        if in_features < group:
            # one group per row, a whole number of the PE's 4-weight steps (holding K weights)
            group = -(-in_features // 4) * 4
        # K that G does not divide is no error: the last group is shorter (ragged) and is
        # quantized on its own weights (runtime.formats.quantize).
        return fmt.name, group, self.scale_bits


def parse_layer_overrides(text: str) -> dict[str, tuple[str, int | None]]:
    """``"fc1:int8,fc3:bitmod4:64"`` -> ``{"fc1": ("int8", None), "fc3": ("bitmod4", 64)}``.

    Raises ValueError naming the malformed entry.
    """
    overrides: dict[str, tuple[str, int | None]] = {}
    if not text.strip():
        return overrides
    for raw_entry in text.split(","):
        entry = raw_entry.strip()
        if not entry:
            raise ValueError(f"layers '{text}' has an empty entry (a stray ',')")
        match = _LAYER_ENTRY.fullmatch(entry)
        if match is None:
            raise ValueError(
                f"malformed layers entry '{entry}' (expected LAYER:DTYPE or LAYER:DTYPE:GROUP)"
            )
        layer, dtype, group_text = match["layer"], match["dtype"], match["group"]
        if dtype not in known_format_names():
            raise ValueError(f"layers entry '{entry}': {unknown_dtype_message(dtype)}")
        group = None
        if group_text is not None:
            if not group_text.isdigit() or int(group_text) <= 0:
                raise ValueError(
                    f"layers entry '{entry}': group size must be a positive integer, "
                    f"got '{group_text}'"
                )
            group = int(group_text)
        if layer in overrides:
            raise ValueError(f"layers names '{layer}' twice")
        overrides[layer] = (dtype, group)
    return overrides


def layer_name(param_name: str) -> str:
    """The layer a weight parameter belongs to: its name without ``.weight``."""
    return param_name.removesuffix(".weight")


@dataclass
class _Target:
    """One weight to quantize: its parameter, an existing request op, and its users."""

    param: ParamOp
    request: QuantizeOp | None
    users: list[MatmulOp]


@dataclass(frozen=True)
class BitmodQuantizePass(ModulePass):
    """Quantize every `bitmod.matmul` weight per group into the parameter archive."""

    name = "bitmod-quantize"

    dtype: str = "bitmod3"
    group_size: int = 128
    scale_bits: int = DEFAULT_SCALE_BITS
    layers: str | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        # Bad options fail when the pipeline is built, before any IR is read.
        if self.dtype not in known_format_names():
            raise DiagnosticError(f"option dtype: {unknown_dtype_message(self.dtype)}")
        if self.group_size <= 0:
            raise DiagnosticError(
                f"option group-size must be a positive integer, got {self.group_size}"
            )
        if self.scale_bits != 0 and not 2 <= self.scale_bits <= MAX_SCALE_BITS:
            raise DiagnosticError(
                f"option scale-bits must be 0 (FP16 scales) or 2..{MAX_SCALE_BITS}, "
                f"got {self.scale_bits}"
            )
        try:
            parse_layer_overrides(self.layers or "")
        except ValueError as error:
            raise DiagnosticError(f"option layers: {error}") from None

    def spec_for(
        self, layer: str, param: str, overrides: dict[str, tuple[str, int | None]]
    ) -> QuantSpec | None:
        """The override for a layer (by layer or parameter name), if any."""
        for key in (param, layer):
            if key in overrides:
                dtype, group = overrides[key]
                return QuantSpec(dtype, group, self.scale_bits)
        return None

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        archive = archive_of(ctx, self.name)
        overrides = parse_layer_overrides(self.layers or "")
        targets = _collect_targets(op, archive)
        if not targets:
            nothing_to_do(ctx, op, self.name, "bitmod.matmul")
            self._warn_if_requantizing(op)

        params = {target.param.param_name.data for target in targets}
        known = params | {layer_name(name) for name in params}
        unknown = [layer for layer in overrides if layer not in known]
        if unknown:
            have = ", ".join(sorted({layer_name(t.param.param_name.data) for t in targets}))
            raise error_at(
                op,
                f"bitmod-quantize: layers= names {', '.join(unknown)}, which the module does "
                f"not have (layers: {have or 'none'})",
            )

        from tqdm import tqdm

        show = show_progress(self.progress or None, len(targets))
        bar = tqdm(
            total=len(targets), desc=self.name, unit="layer", disable=not show, file=sys.stderr
        )
        with bar:
            pattern = QuantizeWeight(
                self, archive, overrides, {target.param: target for target in targets}, bar
            )
            PatternRewriteWalker(pattern, apply_recursively=False).rewrite_module(op)

    def _warn_if_requantizing(self, module: ModuleOp) -> None:
        """A second run over weights quantized already changes nothing (the float weights are
        gone); say so where its options ask for something else, instead of ignoring them."""
        for qop in module.walk():
            qtype = qop.results[0].type if qop.results else None
            if not isinstance(qop, QuantizeOp) or not isinstance(qtype, QWeightType):
                continue
            have = (qtype.dtype.format_name.data, qtype.group_size.data, qtype.scale_bits.data)
            k = qtype.shape.data[-1].data
            other_group = have[1] != self.group_size and self.group_size < k  # (G > K: one group)
            if self.layers or have[0] != self.dtype or have[2] != self.scale_bits or other_group:
                warn_at(
                    qop,
                    f"{self.name}: the weights are quantized already (this one {have[0]}, "
                    f"G={have[1]}, scale-bits={have[2]}); dtype={self.dtype} "
                    f"group-size={self.group_size} scale-bits={self.scale_bits}"
                    f"{' layers=' + self.layers if self.layers else ''} change nothing "
                    "(quantize once, from the float weights)",
                )
                return


@dataclass
class QuantizeWeight(RewritePattern):
    """Quantize the weight a ``bitmod.param`` reads into the archive; its matmuls (or its
    ``bitmod.quantize`` request) take the ``bitmod.quantize ... into`` of it instead."""

    options: BitmodQuantizePass
    archive: ParamArchive
    overrides: dict[str, tuple[str, int | None]]
    targets: dict[ParamOp, _Target]
    progress: Any = None
    """A tqdm bar advanced once per weight (None: no progress)."""
    done: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    """Parameter -> (format, group size, scale bits) it was quantized with in this run."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ParamOp, rewriter: PatternRewriter) -> None:
        target = self.targets.pop(op, None)
        if target is None:
            return
        param_name = op.param_name.data
        layer = layer_name(param_name)
        if self.progress is not None:
            self.progress.set_postfix_str(layer, refresh=False)
        spec = self.options.spec_for(layer, param_name, self.overrides)
        if spec is None and target.request is not None:
            request_type = target.request.result.type
            assert isinstance(request_type, QWeightType)
            spec = QuantSpec(
                request_type.format_name,
                request_type.group_size.data,
                request_type.scale_bits.data,
            )
        default = QuantSpec(self.options.dtype, self.options.group_size, self.options.scale_bits)
        qweight_type = _quantize_weight(op, spec or default, self.archive, layer, self.done)
        quantize_op = QuantizeOp(op.result, qweight_type, entry=param_name)
        quantize_op.location = op.location
        if target.request is not None:
            rewriter.replace(target.request, quantize_op)
        else:
            rewriter.insert(quantize_op, InsertPoint.after(op))
            users = set(target.users)
            rewriter.replace_uses_with_if(
                op.result, quantize_op.result, lambda use: use.operation in users
            )
        if self.progress is not None:
            self.progress.update()


def _collect_targets(module: ModuleOp, archive: ParamArchive) -> list[_Target]:
    """The weights of all matmuls that still need quantizing, in program order."""
    targets: dict[ParamOp, _Target] = {}
    for matmul in module.walk():
        if not isinstance(matmul, MatmulOp):
            continue
        weight = matmul.weight
        producer = weight.owner
        request: QuantizeOp | None = None
        if isinstance(producer, QuantizeOp):
            if producer.is_runtime:
                continue  # an activation (K/V): the host quantizes it when the program runs
            if producer.entry is not None:
                if producer.entry.data not in archive or not archive.is_quantized(
                    producer.entry.data
                ):
                    raise error_at(
                        producer,
                        f"quantized weight '{producer.entry.data}' is not in the parameter archive",
                    )
                continue  # already quantized
            request = producer
            producer = producer.weight.owner
        if not isinstance(producer, ParamOp):
            raise error_at(
                matmul,
                "operand 'weight' does not come from a bitmod.param; bitmod-quantize "
                "quantizes weights of the parameter archive only",
            )
        target = targets.setdefault(producer, _Target(producer, request, []))
        if target.request is not request:
            raise error_at(
                request or matmul,
                f"weight '{producer.param_name.data}' is quantized by two different ops; "
                "bitmod-quantize supports one quantization per weight",
            )
        target.users.append(matmul)
    return list(targets.values())


def _quantize_weight(
    param: ParamOp,
    spec: QuantSpec,
    archive: ParamArchive,
    layer: str,
    done: dict[str, tuple[str, int, int]],
) -> QWeightType:
    """Quantize the weight ``param`` reads into the archive (once per parameter: `done`
    maps parameters quantized earlier in this run to their format, group size and scale
    bits, so a tied weight read by several `bitmod.param` ops is quantized once); its type."""
    from bitmod.runtime.formats import quantize
    from bitmod.runtime.storage.archive import ArchiveError

    name = param.param_name.data
    param_type = param.result.type
    assert isinstance(param_type, TensorType)
    shape = tuple(param_type.get_shape())
    if len(shape) != 2:
        raise error_at(param, f"weight '{name}' must be 2-D [N, K], got {param_type}")
    try:
        weight = archive.get(name)
    except ArchiveError as error:
        raise error_at(param, str(error)) from None
    if tuple(weight.shape) != shape:
        raise error_at(
            param,
            f"parameter '{name}' has shape {list(weight.shape)} in the archive but "
            f"{param_type} in the IR",
        )
    try:
        dtype, group, scale_bits = spec.resolve(shape[1], layer)
        if name not in done:
            quantized = quantize(
                weight.float(), dtype, group, None if scale_bits == 0 else scale_bits
            )
            archive.put_quantized(name, quantized)
            done[name] = (dtype, group, scale_bits)
    except ValueError as error:
        raise error_at(param, f"cannot quantize '{name}': {error}") from None
    if done[name] != (dtype, group, scale_bits):
        raise error_at(
            param,
            f"weight '{name}' is shared by layers asking for different quantizations "
            f"({done[name]} and {(dtype, group, scale_bits)}); the archive holds one",
        )
    return QWeightType(shape, dtype, group, scale_bits)
