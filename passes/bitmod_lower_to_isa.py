"""`bitmod-lower-to-isa`: tiled matmuls become one ``bsisa.program``.

Every ``bsisa.tiled_matmul`` (made by ``bitmod-tile``) becomes a *segment* of a single
``bsisa.program @program`` appended to the module, and is replaced in its function by a
``bsisa.launch @program[i]`` that binds the host tensors to the segment's descriptors.
Segments follow the order of the tiled matmuls in the module (a walk: functions in order,
ops in order). Each segment is self-contained so a host can run it alone::

    cfg.array rows=R cols=C tiles=T
    cfg.fmt fmt=F sb=S g=G
    cfg.sv slot=i value=v          for the format's special values, in candidate order
    cfg.kchunk KC
    cfg.mblock MR                  when the tiling's blocks have more rows than the array
    <the schedule of the tiled matmul, role names replaced by descriptors>

(:func:`bitmod.runtime.arch.nest.matmul_config`, the configuration ``matmul_program`` emits too)

and the program ends with ``halt``.

Descriptors
-----------
One ``bsisa.desc @d<i>`` per distinct (kind, tensor), in order of first use:

* ``qweight``: the archive name of the weight, the ``into`` name of its
  ``bitmod.quantize`` (format, scale bits and group size from its ``!bitmod.qweight``); for
  a weight quantized at run time (``bitmod.quantize ... runtime``) the memory-image name the
  host quantizes it into, one ``[N, K]`` slice, and the launch binds the float tensor
  (``weight @d1(%bt : ...)``: the host runs the segment once per batch slice);
* ``bias``: the name of its ``bitmod.param`` when it is one, else a value name (below);
* ``act`` / ``out``: the activation and the result, named after the SSA value: a function
  argument by its name (``%x`` -> ``"x"``, else ``"arg<i>"``), a value the function returns
  directly by ``"result<i>"``, any other value by its name hint or ``"t<j>"``. In a module
  with several functions the names get the function's name as prefix (``"forward.x"``).
  A name already taken by another tensor gets a ``"_<j>"`` suffix. A batched ``[B, M, K]``
  activation is the ``[B·M, K]`` matrix in DRAM.

The output of one segment feeding the activation of the next is the same DRAM tensor (the
``out`` and ``act`` descriptors name the same string), so a chain of matmuls runs as one
program; anything else between them (an activation function, a residual add) is a host op
that the host runs between segments.

What stays on the host
----------------------
A ``bitmod.matmul`` that is still in the module after this pass (its weight is a float
tensor: not quantized) is a host op, as is every op that is neither ``bsisa.launch`` nor
``bsisa.program``. ``bsisa.launch`` is the only accelerator call; the driver and the Python
API find the accelerator's work by walking for it (``segment`` indexes the program's
segments). ``bitmod.quantize`` / ``bitmod.param`` ops that only fed lowered matmuls are
removed: the program names those weights itself.

Every segment is checked and named before anything changes; then the pattern
:class:`LaunchSegment` replaces each tiled matmul under a ``PatternRewriteWalker``. A
module with no tiled matmul gets a warning or an error as :mod:`bitmod.passes.stages` says.

Errors (one diagnostic naming the op; the module is left unchanged): a weight format without
a bit-serial datapath (``Format.accelerated`` false: MX, OliVe, flint, ...) -> "format X has
no bit-serial lowering"; FP16 group scales (``sb=0``); a weight not quantized into the
archive (``bitmod.quantize`` without ``into``); a quantized ``bitmod.matmul`` that was not
tiled; a value the ISA cannot encode (group size not a multiple of 4, more than four special
values, ...); a module that already holds a ``bsisa.program``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bitmod.dialects.bitmod import MatmulOp, ParamOp, QuantizeOp, QWeightType
from bitmod.dialects.diagnostics import DiagnosticError, error_at
from bitmod.passes.bitmod_tile import unaccelerated_format_message
from bitmod.passes.stages import nothing_to_do
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, SymbolRefAttr
from xdsl.ir import BlockArgument, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriter, PatternRewriteWalker, RewritePattern
from xdsl.rewriter import InsertPoint

if TYPE_CHECKING:
    from bitmod.dialects.bsisa import DescOp, QWeightInfo, TiledMatmulOp
    from xdsl.dialects.func import FuncOp


@dataclass
class _TensorNames:
    """Gives every host tensor the program touches a unique DRAM name (module docstring)."""

    module: ModuleOp
    taken: set[str] = field(default_factory=set)
    names: dict[SSAValue, str] = field(default_factory=dict)
    functions: list[FuncOp] = field(default_factory=list)
    counter: int = 0

    def __post_init__(self) -> None:
        from xdsl.dialects.func import FuncOp

        # Archive names are fixed; SSA-derived names step aside for them.
        for op in self.module.walk():
            if isinstance(op, ParamOp):
                self.taken.add(op.param_name.data)
            elif isinstance(op, QuantizeOp) and op.entry is not None:
                self.taken.add(op.entry.data)
        self.functions += [op for op in self.module.walk() if isinstance(op, FuncOp)]

    def _function_of(self, value: SSAValue) -> FuncOp | None:
        from xdsl.dialects.func import FuncOp

        owner = value.owner
        op = owner.parent_op() if not isinstance(owner, Operation) else owner
        while op is not None and not isinstance(op, FuncOp):
            op = op.parent_op()
        return op

    def _base_name(self, value: SSAValue) -> str:
        from xdsl.dialects.func import ReturnOp

        func = self._function_of(value)
        if isinstance(value, BlockArgument) and func is not None and value.block is func.body.block:
            base = value.name_hint or f"arg{value.index}"
        else:
            base = None
            for use in value.uses:
                if isinstance(use.operation, ReturnOp):
                    base = f"result{use.index}"
                    break
            if base is None:
                base = value.name_hint or f"t{self.counter}"
                self.counter += 1
        if len(self.functions) > 1 and func is not None:
            base = f"{func.sym_name.data}.{base}"
        return base

    def name(self, value: SSAValue) -> str:
        if value not in self.names:
            base = candidate = self._base_name(value)
            suffix = 1
            while candidate in self.taken:
                candidate = f"{base}_{suffix}"
                suffix += 1
            self.taken.add(candidate)
            self.names[value] = candidate
        return self.names[value]


def weight_archive_name(tiled: TiledMatmulOp) -> str:
    """The archive name of a tiled matmul's quantized weight (DiagnosticError if none)."""
    producer = tiled.weight.owner
    if not isinstance(producer, QuantizeOp):
        raise error_at(
            tiled,
            "bitmod-lower-to-isa: the weight must come from 'bitmod.quantize ... into' "
            "(a quantized tensor of the parameter archive)",
        )
    if producer.entry is None:
        raise error_at(
            tiled,
            "bitmod-lower-to-isa: the weight is not quantized yet (bitmod.quantize without "
            "'into'); run bitmod-quantize first",
        )
    return producer.entry.data


@dataclass
class _Segment:
    """One tiled matmul's part of the program."""

    tiled: TiledMatmulOp
    index: int
    roles: dict[str, str]
    config: list[Operation]


@dataclass
class _ProgramBuilder:
    """Collects the descriptors and segments of the program."""

    names: _TensorNames
    descriptors: list[DescOp] = field(default_factory=list)
    by_tensor: dict[tuple[str, str], DescOp] = field(default_factory=dict)
    segments: list[_Segment] = field(default_factory=list)

    def descriptor(
        self,
        kind: str,
        tensor: str,
        shape: tuple[int, ...],
        weight: QWeightInfo | None = None,
    ) -> DescOp:
        from bitmod.dialects.bsisa import DescOp

        key = (kind, tensor)
        if key not in self.by_tensor:
            desc = DescOp(
                f"d{len(self.descriptors)}",
                kind,
                tensor,
                shape,
                None if weight is None else weight.fmt,
                None if weight is None else weight.scale_bits,
                None if weight is None else weight.group_size,
            )
            self.descriptors.append(desc)
            self.by_tensor[key] = desc
        desc = self.by_tensor[key]
        if desc.shape_tuple != shape or desc.info.fmt != (None if weight is None else weight.fmt):
            raise ValueError(
                f"tensor '{tensor}' is used as a {kind} of shape {list(shape)} here and "
                f"{list(desc.shape_tuple)} elsewhere"
            )
        return desc

    def add_segment(self, tiled: TiledMatmulOp) -> _Segment:
        """Check ``tiled`` and plan its segment (nothing in the module changes)."""
        from bitmod.dialects.bsisa import ops_from_isa
        from bitmod.runtime import isa
        from bitmod.runtime.arch.nest import matmul_config
        from bitmod.runtime.formats import get_format

        weight = tiled.weight_info
        problem = unaccelerated_format_message(weight.fmt)
        if problem:
            raise error_at(tiled, problem)
        fmt = get_format(weight.fmt)
        if weight.scale_bits == 0:
            raise error_at(
                tiled,
                f"bitmod-lower-to-isa: the {weight.fmt} weight has FP16 group scales (sb=0); "
                "the bit-serial datapath dequantizes integer scale codes: quantize with "
                "scale-bits >= 2",
            )
        m, n, k = tiled.matrix_shapes()
        try:
            descs = {
                "act": self.descriptor("act", self.names.name(tiled.act), (m, k)),
                "weight": self.descriptor(
                    "qweight", weight_archive_name(tiled), weight.shape, weight
                ),
                "out": self.descriptor("out", self.names.name(tiled.result), (m, n)),
            }
            if tiled.bias is not None:
                producer = tiled.bias.owner
                bias_name = (
                    producer.param_name.data
                    if isinstance(producer, ParamOp)
                    else self.names.name(tiled.bias)
                )
                descs["bias"] = self.descriptor("bias", bias_name, (n,))
        except ValueError as error:
            raise error_at(tiled, f"bitmod-lower-to-isa: {error}") from None
        try:
            config = ops_from_isa(
                matmul_config(**tiled.config_fields(), special_values=fmt.special_values),
                lambda index: "",  # configuration names no tensor
            )
            for desc in descs.values():
                desc.to_isa(0).check(n_strings=1)
        except isa.IsaError as error:
            raise error_at(
                tiled, f"bitmod-lower-to-isa: the ISA cannot encode this matmul: {error}"
            ) from None
        segment = _Segment(
            tiled,
            len(self.segments),
            {role: desc.sym_name.data for role, desc in descs.items()},
            list(config),
        )
        self.segments.append(segment)
        return segment


def _rename_roles(ops: list[Operation], roles: dict[str, str]) -> None:
    from bitmod.dialects.bsisa import DrainOp, TensorRefInstruction

    for top in ops:
        for op in top.walk():
            if isinstance(op, TensorRefInstruction):
                op.desc = SymbolRefAttr(roles[op.desc_name])
            elif isinstance(op, DrainOp) and op.bias_name is not None:
                op.bias = SymbolRefAttr(roles[op.bias_name])


@dataclass
class LaunchSegment(RewritePattern):
    """A tiled matmul -> the ``bsisa.launch`` of its segment of the program; the quantize and
    param ops only it used are erased (the program names the weight itself)."""

    segments: dict[Operation, _Segment]
    """The segments planned for the tiled matmuls (module docstring)."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        segment = self.segments.pop(op, None)
        if segment is None:
            return
        from bitmod.dialects.bsisa import DEFAULT_PROGRAM_NAME, LaunchOp

        tiled, roles = segment.tiled, segment.roles
        runtime_weight = _runtime_operand(tiled.weight)
        launch = LaunchOp(
            DEFAULT_PROGRAM_NAME,
            segment.index,
            tiled.act,
            roles["act"],
            tiled.bias,
            roles.get("bias"),
            roles["out"],
            tiled.result.type,
            runtime_weight,
            None if runtime_weight is None else roles["weight"],
        )
        launch.location = tiled.location
        weight = tiled.weight
        rewriter.replace(tiled, launch)
        _erase_dead_producers(weight, rewriter)


@dataclass(frozen=True)
class BitmodLowerToIsaPass(ModulePass):
    """Lower tiled matmuls to one bsisa.program and the bsisa.launch ops that call it."""

    name = "bitmod-lower-to-isa"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        from bitmod.dialects.bsisa import DEFAULT_PROGRAM_NAME, HaltOp, ProgramOp, TiledMatmulOp

        tiled_ops = [t for t in op.walk() if isinstance(t, TiledMatmulOp)]
        matmuls = [matmul for matmul in op.walk() if isinstance(matmul, MatmulOp)]
        for matmul in matmuls:
            if isinstance(matmul.weight.type, QWeightType):
                raise error_at(
                    matmul,
                    "bitmod-lower-to-isa: this quantized matmul is not tiled; run bitmod-tile "
                    "before bitmod-lower-to-isa",
                )
        if not tiled_ops:
            nothing_to_do(
                ctx,
                op,
                self.name,
                "bsisa.tiled_matmul",
                matmuls,
                "bitmod-quantize and bitmod-tile",
                produced=("bsisa.program",),
            )
            return
        existing = [p for p in op.ops if isinstance(p, ProgramOp)]
        if existing:
            raise DiagnosticError(
                f"bitmod-lower-to-isa: the module already holds bsisa.program "
                f"@{existing[0].sym_name.data}; lower all tiled matmuls in one run",
                op=existing[0],
            )
        builder = _ProgramBuilder(_TensorNames(op))
        # Every check and name first, so that an error leaves the module untouched.
        for tiled in tiled_ops:
            builder.add_segment(tiled)
        code: list[Operation] = []
        for segment in builder.segments:
            schedule = list(segment.tiled.schedule.block.ops)
            for schedule_op in schedule:
                schedule_op.detach()
            _rename_roles(schedule, segment.roles)
            code += [*segment.config, *schedule]
        program = ProgramOp(DEFAULT_PROGRAM_NAME, [*builder.descriptors, *code, HaltOp()])
        pattern = LaunchSegment({segment.tiled: segment for segment in builder.segments})
        PatternRewriteWalker(pattern, apply_recursively=False).rewrite_module(op)
        PatternRewriter(InsertPoint.at_end(op.body.block)).insert(program)


def _runtime_operand(weight: SSAValue) -> SSAValue | None:
    """The float tensor a run-time quantized weight is made of (None for an archive one)."""
    producer = weight.owner
    if isinstance(producer, QuantizeOp) and producer.is_runtime:
        return producer.weight
    return None


def _erase_dead_producers(value: SSAValue, rewriter: PatternRewriter) -> None:
    """Erase the quantize (and param) ops of a weight nothing uses any more."""
    producer = value.owner
    if not isinstance(producer, QuantizeOp | ParamOp) or value.uses:
        return
    operands = list(producer.operands)
    rewriter.erase(producer)
    for operand in operands:
        _erase_dead_producers(operand, rewriter)
