"""`bitmod-tile{rows=8 cols=8 tiles=16 dataflow=os act-buffer=524288 weight-buffer=524288
max-block-rows=128 row-groups=4 dram-bytes-per-cycle=25.6 kchunk=0 block-rows=0 order=auto}`:
tiling of the quantized matmuls.

Every ``bitmod.matmul`` whose weight is a ``!bitmod.qweight`` becomes a
``bsisa.tiled_matmul`` with the same operands and result, a ``#bsisa.tiling`` attribute and
the schedule as a loop nest of ``bsisa.loop`` ops (loops stay loops: the schedule has the
same number of ops for any M, N, K). Matmuls with float weights are left alone: they run on
the host. A matmul whose weight is quantized at run time per batch slice
(``!bitmod.qweight<BxNxK, ...>``) is tiled for one slice (``M`` rows of its ``[B, M, K]``
activation); the host runs the program once per slice.

The schedule is :mod:`bitmod.runtime.arch.schedule`'s: with ``M`` rows of activations (a batched
``[B, M, K]`` activation counts ``B·M``), ``N`` output channels and ``K`` inputs, the array of
``rows × (cols·tiles)`` output-stationary PEs computes output blocks of ``MR × (cols·tiles)``
(``MR`` a multiple of ``rows``, at most ``max-block-rows``: the depth of the column
accumulators), and one of four loop orders moves the blocks: a weight block of all of K
resident while the activation blocks stream (``weights-resident``), an activation block of
all of K resident while the weight blocks stream chunk by chunk (``acts-resident``), or both
streamed in K chunks, the column block loop outside (``k-streamed``) or the row block loop
(``k-streamed-rows``). :func:`bitmod.runtime.arch.schedule.plan_matmul` picks the
order, ``MR`` and the K chunk ``KC`` with the fewest predicted cycles for the buffers (each
streamed block double-buffered; a resident block double-buffered when two fit) and the
DRAM bandwidth (``dram-bytes-per-cycle``, default :class:`HardwareConfig`'s) — the same
prediction ``bitmod-sim`` (``runtime.perf``) charges, and
what the emulator measures for this program. The nest is
:func:`bitmod.runtime.arch.nest.matmul_nest` with the tensors named by their roles (``@act``,
``@weight``, ``@out``, ``@bias``); ``bitmod-lower-to-isa`` puts the configuration in front.

``row-groups`` is the most tile groups a ``mac`` splits its row passes over when its weight
block's channels leave tiles idle (a power of two; :func:`bitmod.runtime.arch.rules.row_groups`):
it changes the machine's timing, not the program, so the planner needs it to predict cycles.

``kchunk=N``, ``block-rows=N`` (N > 0) and ``order=NAME`` force that part of the schedule;
``KC`` must be a multiple of the group size ``G`` (or at least ``K``), ``MR`` a multiple of
``rows`` within ``max-block-rows``.

The module records the machine in its ``bitmod.machine`` attribute (``passes.context``), which
``bitmod run-mlir`` runs the programs on; tiling a module whose other programs were tiled for
another machine is an error.

Every quantized matmul is planned before any is rewritten (by a ``PatternRewriteWalker``
applying :class:`TileQuantizedMatmul`), so an error leaves the module as it was.

Errors (one diagnostic naming the op, nothing changed): a ``dataflow`` other than ``os``;
``rows``, ``cols``, ``tiles``, a buffer size or ``max-block-rows`` that is not positive or
does not fit the ISA's fields; ``row-groups`` that is not a power of two; a forced
``kchunk`` that the group size does not divide, a forced ``block-rows`` or ``order`` that is
not valid; a matmul no schedule fits (a weight or
activation block of a single group that does not fit its buffer twice, or a forced choice
that does not fit); a weight format without a bit-serial datapath (``Format.accelerated``
false: MX, OliVe, ANT, ...), which no schedule of this array can run. A module without a
quantized matmul gets a warning or an error as :mod:`bitmod.passes.stages` describes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from bitmod.dialects.bitmod import MatmulOp, QWeightType
from bitmod.dialects.diagnostics import DiagnosticError, error_at, warn_at
from bitmod.passes.context import (
    MACHINE_ATTR,
    MACHINE_OPTIONS,
    encoding_problem,
    machine_attribute,
    machine_of,
)
from bitmod.passes.stages import nothing_to_do
from bitmod.runtime.arch.hwconfig import HardwareConfig
from bitmod.runtime.arch.rules import (
    accumulator_depth_error,
    block_rows_error,
    row_group_error,
)
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

if TYPE_CHECKING:
    from bitmod.runtime.arch.schedule import ArraySpec, Schedule

_HW = HardwareConfig()


def unaccelerated_format_message(fmt_name: str) -> str | None:
    """Why weights of format ``fmt_name`` cannot run on the bit-serial PE, or None."""
    from bitmod.runtime.formats import get_format

    fmt = get_format(fmt_name)
    if fmt.accelerated:
        return None
    return (
        f"format {fmt_name} has no bit-serial lowering (family '{fmt.family}'); quantize this "
        "layer to an accelerated format or keep it on the host"
    )


def tile_option_values(hardware: HardwareConfig) -> dict[str, int | float]:
    """``bitmod-tile``'s machine options (by option name) that describe ``hardware``."""
    return {option: getattr(hardware, field) for option, field in MACHINE_OPTIONS.items()}


def tile_options(hardware: HardwareConfig) -> str:
    """``bitmod-tile{...}`` spelled for ``hardware``: the pass that plans for that machine."""
    values = " ".join(f"{key}={value}" for key, value in tile_option_values(hardware).items())
    return f"bitmod-tile{{{values}}}"


def machine_differences(recorded: HardwareConfig, asked: HardwareConfig) -> list[str]:
    """``"tiles: 16 here, 4 recorded"`` for every machine option that differs."""
    old, new = tile_option_values(recorded), tile_option_values(asked)
    return [f"{key}: {new[key]} here, {old[key]} recorded" for key in old if old[key] != new[key]]


@dataclass(frozen=True)
class BitmodTilePass(ModulePass):
    """Tile quantized bitmod.matmul ops onto the output-stationary PE array."""

    name = "bitmod-tile"

    DATAFLOWS: ClassVar[tuple[str, ...]] = ("os",)

    rows: int = _HW.rows
    cols: int = _HW.cols
    tiles: int = _HW.tiles
    dataflow: str = "os"
    act_buffer: int = _HW.act_buffer_bytes
    weight_buffer: int = _HW.weight_buffer_bytes
    max_block_rows: int = _HW.max_block_rows
    row_groups: int = _HW.row_groups
    dram_bytes_per_cycle: int | float = _HW.dram_bytes_per_cycle
    kchunk: int = 0
    block_rows: int = 0
    order: str = "auto"

    def __post_init__(self) -> None:
        # Checked on construction, so that bitmod-opt reports a bad option at its place in
        # the pipeline string before any pass runs.
        from bitmod.runtime import isa
        from bitmod.runtime.arch.schedule import ORDERS

        if self.dataflow not in self.DATAFLOWS:
            raise DiagnosticError(
                f"dataflow '{self.dataflow}' is not supported; the array is "
                f"output-stationary: dataflow={'|'.join(self.DATAFLOWS)}"
            )
        for option, value in (
            ("rows", self.rows),
            ("cols", self.cols),
            ("tiles", self.tiles),
            ("act-buffer", self.act_buffer),
            ("weight-buffer", self.weight_buffer),
            ("max-block-rows", self.max_block_rows),
        ):
            if value < 1:
                raise DiagnosticError(f"{option} must be positive, got {value}")
        for option, value in (("kchunk", self.kchunk), ("block-rows", self.block_rows)):
            if value < 0:
                raise DiagnosticError(f"{option} must be >= 0 (0: automatic), got {value}")
        if self.order != "auto" and self.order not in ORDERS:
            raise DiagnosticError(
                f"order '{self.order}' is not a loop order; valid: auto, {', '.join(ORDERS)}"
            )
        if not self.dram_bytes_per_cycle > 0:
            raise DiagnosticError(
                f"dram-bytes-per-cycle must be positive, got {self.dram_bytes_per_cycle}"
            )
        problem = row_group_error(self.row_groups)
        if problem:
            raise DiagnosticError(f"row-groups: {problem}")
        problem = accumulator_depth_error(self.max_block_rows, self.rows)
        if problem:
            raise DiagnosticError(f"max-block-rows: {problem}")
        problem = self.block_rows and block_rows_error(
            self.block_rows, self.rows, self.max_block_rows
        )
        if problem:
            raise DiagnosticError(f"block-rows: {problem}")
        problem = encoding_problem(self.rows, self.cols, self.tiles, self.max_block_rows)
        if problem is None and self.kchunk:
            try:
                isa.CfgKchunk(self.kchunk).check()
            except isa.IsaError as error:
                problem = str(error)
        if problem:
            raise DiagnosticError(f"bad array geometry: {problem}")
        try:
            self.hardware  # noqa: B018 (the options must describe a machine)
        except ValueError as error:
            raise DiagnosticError(f"the machine these options describe: {error}") from None

    @property
    def hardware(self) -> HardwareConfig:
        """The machine these options describe (what the RTL emitter builds)."""
        return HardwareConfig(
            rows=self.rows,
            cols=self.cols,
            tiles=self.tiles,
            act_buffer_bytes=self.act_buffer,
            weight_buffer_bytes=self.weight_buffer,
            max_block_rows=self.max_block_rows,
            row_groups=self.row_groups,
            dram_bytes_per_cycle=float(self.dram_bytes_per_cycle),
        )

    @property
    def array(self) -> ArraySpec:
        from bitmod.runtime.arch.schedule import ArraySpec

        return ArraySpec.of(self.hardware)

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        matmuls = [matmul for matmul in op.walk() if isinstance(matmul, MatmulOp)]
        quantized = [matmul for matmul in matmuls if _is_quantized(matmul)]
        if not quantized:
            nothing_to_do(
                ctx,
                op,
                self.name,
                "quantized bitmod.matmul",
                matmuls,
                "bitmod-quantize",
                produced=("bsisa.tiled_matmul",),
            )
        recorded = machine_of(op)
        differences = [] if recorded is None else machine_differences(recorded, self.hardware)
        if not quantized:
            if differences:
                # Idempotent as bitmod-quantize is: nothing left to tile, but say that these
                # options, which describe another machine, changed nothing.
                warn_at(
                    op,
                    f"{self.name}: the module is tiled already, for another machine "
                    f"({'; '.join(differences)}); these options change nothing",
                )
            return
        if differences:
            raise error_at(
                quantized[0],
                f"{self.name}: the module's other programs were tiled for another machine "
                f"({'; '.join(differences)}); one module runs on one machine: tile this one "
                f"with the same options ({MACHINE_ATTR})",
            )
        # Plan every matmul before rewriting any, so that an error leaves the module as it was.
        pattern = TileQuantizedMatmul(self, {matmul: self.plan(matmul) for matmul in quantized})
        PatternRewriteWalker(pattern, apply_recursively=False).rewrite_module(op)
        op.attributes[MACHINE_ATTR] = machine_attribute(self.hardware)

    def plan(self, matmul: MatmulOp) -> Schedule:
        """The schedule of one quantized matmul (DiagnosticError naming it if none fits)."""
        from bitmod.dialects.bsisa import qweight_info, slice_matrix_shape
        from bitmod.runtime.arch.schedule import plan_bitmod_matmul

        weight = qweight_info(matmul.weight.type)
        assert weight is not None
        problem = unaccelerated_format_message(weight.fmt)
        if problem:
            raise error_at(matmul, f"{self.name}: {problem}")
        m, k = slice_matrix_shape(matmul.input, "activation", weight.batch)
        n = weight.shape[0]
        try:
            return plan_bitmod_matmul(
                m,
                n,
                k,
                fmt=weight.fmt,
                group_size=weight.group_size,
                scale_bits=weight.scale_bits,
                array=self.array,
                kchunk=self.kchunk,
                block_rows=self.block_rows,
                order=None if self.order == "auto" else self.order,
            )
        except ValueError as error:
            raise error_at(matmul, f"{self.name}: {error}") from None


def _is_quantized(matmul: MatmulOp) -> bool:
    return isinstance(matmul.weight.type, QWeightType)


@dataclass
class TileQuantizedMatmul(RewritePattern):
    """A quantized ``bitmod.matmul`` -> ``bsisa.tiled_matmul`` with its schedule's loop nest."""

    tiling: BitmodTilePass
    schedules: dict[MatmulOp, Schedule] = field(default_factory=dict)
    """Schedules planned beforehand; a matmul not in here is planned when it is matched."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: MatmulOp, rewriter: PatternRewriter) -> None:
        if not _is_quantized(op):
            return  # a float weight: the matmul runs on the host
        from bitmod.dialects.bsisa import TiledMatmulOp, TilingAttr, ops_from_isa
        from bitmod.runtime.arch.nest import MATMUL_ROLES, matmul_nest

        schedule = self.schedules.pop(op, None) or self.tiling.plan(op)
        tiling = TilingAttr.from_schedule(
            schedule, rows=self.tiling.rows, cols=self.tiling.cols, tiles=self.tiling.tiles
        )
        nest = matmul_nest(
            schedule.order,
            m_blocks=schedule.m_blocks,
            n_blocks=schedule.n_blocks,
            k_chunks=schedule.k_chunks,
            bias=op.bias is not None,
            rows_down=schedule.rows_down,
            cols_down=schedule.cols_down,
        )
        tiled = TiledMatmulOp(
            op.input,
            op.weight,
            op.bias,
            op.result.type,
            tiling,
            ops_from_isa(nest, lambda index: MATMUL_ROLES[index]),
        )
        tiled.location = op.location
        tiled.attributes |= op.attributes
        rewriter.replace(op, tiled)
