"""`bitmod-tile{rows=8 cols=8 tiles=16 dataflow=os act-buffer=524288 weight-buffer=524288
kchunk=0}`: output-stationary tiling of the quantized matmuls.

Every ``bitmod.matmul`` whose weight is a ``!bitmod.qweight`` becomes a
``bsisa.tiled_matmul`` with the same operands and result, a ``#bsisa.tiling`` attribute and
the schedule as a loop nest of ``bsisa.loop`` ops (loops stay loops: the schedule has the
same number of ops for any M, N, K). Matmuls with float weights are left alone: they run on
the host.

Mapping (docs/ISA.md)
---------------------
An array pass computes an output block of ``R × (C·T)`` elements (``R`` rows, ``C`` columns,
``T`` tiles): ``R`` tokens by ``C·T`` output channels. With ``M`` rows of activations (a
batched ``[B, M, K]`` activation counts ``B·M``), ``N`` output channels and ``K`` inputs,

    m_blocks = ⌈M / R⌉,   n_blocks = ⌈N / (C·T)⌉,   k_chunks = ⌈K / KC⌉.

The loop nest is the canonical one of :func:`bitmod.runtime.isa.matmul_program`
(column blocks outermost, so a weight block stays in the buffer while the row blocks
stream past it)::

    k_chunks == 1                          k_chunks > 1
    loop L0 count=n_blocks                 loop L0 count=n_blocks
      ld.wgt @weight col=L0 k=-              loop L1 count=m_blocks
      loop L1 count=m_blocks                   acc.clr
        acc.clr                                loop L2 count=k_chunks
        ld.act @act row=L1 k=-                   ld.act @act row=L1 k=L2
        mac                                      ld.wgt @weight col=L0 k=L2
        drain [bias @bias]                       mac
        st.out @out row=L1 col=L0              drain [bias @bias]
                                               st.out @out row=L1 col=L0

Choosing the K chunk
--------------------
Both buffers are double-buffered, so one block may use half of each. The block sizes are
the machine's (:mod:`bitmod.runtime.machine`, docs/ISA.md "Timing"):

    act block    A(KC) = R · KC · 2 bytes                                   (FP16)
    weight block W(KC) = C·T · (⌈KC·b/8⌉ + ⌈(KC/G)·(SB + i + z)/8⌉ + 2) bytes

for a ``b``-bit format with ``i`` SV-index bits and ``z`` zero-point bits per group, ``SB``
scale bits and a 2-byte channel scale per channel. ``KC`` is a multiple of the group size
``G`` (``K`` is one: the ``!bitmod.qweight`` verifier checks). With ``g*`` the most groups
per chunk for which ``2·A ≤ act-buffer`` and ``2·W ≤ weight-buffer``, the pass takes the
fewest chunks, ``k_chunks = ⌈(K/G) / g*⌉``, and balances them:
``KC = G · ⌈(K/G) / k_chunks⌉``. ``kchunk=N`` (N > 0) forces ``KC = min(N, K)`` instead; it
must be a multiple of ``G`` and fit the buffers.

Errors (one diagnostic naming the op, nothing changed): a ``dataflow`` other than ``os``;
``rows``, ``cols``, ``tiles`` or a buffer size that is not positive or does not fit the ISA's
``cfg.array`` fields; a forced ``kchunk`` that the group size does not divide; a weight (or
activation) block of a single group that does not fit its buffer twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bitmod.compiler.diagnostics import DiagnosticError, error_at
from bitmod.dialects.bitmod import MatmulOp, QWeightType
from bitmod.dialects.bsisa import (
    AccClrOp,
    DrainOp,
    LdActOp,
    LdWgtOp,
    LoopOp,
    MacOp,
    StOutOp,
    TiledMatmulOp,
    TilingAttr,
    act_block_bytes,
    ceil_div,
    matrix_shape,
    qweight_info,
    weight_block_bytes,
)
from bitmod.runtime import isa
from bitmod.runtime.hwconfig import HardwareConfig
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

_HW = HardwareConfig()

#: Loop levels of the schedule.
COL_LEVEL, ROW_LEVEL, K_LEVEL = 0, 1, 2


@dataclass(frozen=True)
class BlockPlan:
    """The numbers ``bitmod-tile`` derives for one matmul."""

    kc: int
    m_blocks: int
    n_blocks: int
    k_chunks: int
    act_block_bytes: int
    weight_block_bytes: int


def plan_blocks(
    m: int,
    n: int,
    k: int,
    *,
    fmt: str,
    group_size: int,
    scale_bits: int,
    rows: int,
    block_cols: int,
    act_buffer: int,
    weight_buffer: int,
    kchunk: int = 0,
) -> BlockPlan:
    """The K chunk and block counts of the module docstring; ValueError if nothing fits."""
    n_groups = ceil_div(k, group_size)

    def act_bytes(groups: int) -> int:
        return act_block_bytes(rows, groups * group_size)

    def weight_bytes(groups: int) -> int:
        return weight_block_bytes(block_cols, groups * group_size, fmt, group_size, scale_bits)

    def fits(groups: int) -> bool:
        return 2 * act_bytes(groups) <= act_buffer and 2 * weight_bytes(groups) <= weight_buffer

    if kchunk:
        if kchunk % group_size:
            raise ValueError(f"group size {group_size} does not divide the K chunk {kchunk}")
        groups = min(kchunk, n_groups * group_size) // group_size
        if not fits(groups):
            raise ValueError(
                f"a K chunk of {kchunk} does not fit: double-buffered activation block "
                f"2x{act_bytes(groups)} B (buffer {act_buffer} B), weight block "
                f"2x{weight_bytes(groups)} B (buffer {weight_buffer} B)"
            )
    else:
        if not fits(1):
            what, block, buffer = (
                ("weight", weight_bytes(1), weight_buffer)
                if 2 * weight_bytes(1) > weight_buffer
                else ("activation", act_bytes(1), act_buffer)
            )
            raise ValueError(
                f"the {what} block of one group ({group_size} along K) takes {block} B; "
                f"double-buffered it does not fit the {buffer} B {what} buffer"
            )
        low, high = 1, n_groups  # most groups per chunk that fit: fits(low) holds
        while low < high:
            mid = (low + high + 1) // 2
            low, high = (mid, high) if fits(mid) else (low, mid - 1)
        groups = ceil_div(n_groups, ceil_div(n_groups, low))
    kc = groups * group_size
    return BlockPlan(
        kc=kc,
        m_blocks=ceil_div(m, rows),
        n_blocks=ceil_div(n, block_cols),
        k_chunks=ceil_div(k, kc),
        act_block_bytes=act_bytes(groups),
        weight_block_bytes=weight_bytes(groups),
    )


def output_stationary_schedule(plan: BlockPlan, has_bias: bool) -> list[Operation]:
    """The loop nest of the module docstring, tensors named by their roles."""
    bias = "bias" if has_bias else None

    def finish() -> list[Operation]:
        return [DrainOp(bias), StOutOp("out", ROW_LEVEL, COL_LEVEL)]

    if plan.k_chunks == 1:
        row_loop = LoopOp(
            ROW_LEVEL,
            plan.m_blocks,
            [AccClrOp(), LdActOp("act", ROW_LEVEL, None), MacOp(), *finish()],
        )
        return [LoopOp(COL_LEVEL, plan.n_blocks, [LdWgtOp("weight", COL_LEVEL, None), row_loop])]
    k_loop = LoopOp(
        K_LEVEL,
        plan.k_chunks,
        [LdActOp("act", ROW_LEVEL, K_LEVEL), LdWgtOp("weight", COL_LEVEL, K_LEVEL), MacOp()],
    )
    row_loop = LoopOp(ROW_LEVEL, plan.m_blocks, [AccClrOp(), k_loop, *finish()])
    return [LoopOp(COL_LEVEL, plan.n_blocks, [row_loop])]


@dataclass(frozen=True)
class BitmodTilePass(ModulePass):
    """Output-stationary tiling of quantized ``bitmod.matmul`` ops (see the module doc)."""

    name = "bitmod-tile"

    DATAFLOWS: ClassVar[tuple[str, ...]] = ("os",)

    rows: int = _HW.rows
    cols: int = _HW.cols
    tiles: int = _HW.tiles
    dataflow: str = "os"
    act_buffer: int = _HW.act_buffer_bytes
    weight_buffer: int = _HW.weight_buffer_bytes
    kchunk: int = 0

    def __post_init__(self) -> None:
        # Checked on construction, so that bitmod-opt reports a bad option at its place in
        # the pipeline string before any pass runs.
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
        ):
            if value < 1:
                raise DiagnosticError(f"{option} must be positive, got {value}")
        if self.kchunk < 0:
            raise DiagnosticError(f"kchunk must be >= 0 (0: automatic), got {self.kchunk}")
        try:
            isa.CfgArray(self.rows, self.cols, self.tiles).check()
            if self.kchunk:
                isa.CfgKchunk(self.kchunk).check()
        except isa.IsaError as error:
            raise DiagnosticError(f"bad array geometry: {error}") from None

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        matmuls = [
            matmul
            for matmul in op.walk()
            if isinstance(matmul, MatmulOp) and isinstance(matmul.weight.type, QWeightType)
        ]
        # Plan everything first so that an error leaves the module untouched.
        planned = [(matmul, self.plan(matmul)) for matmul in matmuls]
        for matmul, plan in planned:
            self.rewrite(matmul, plan)

    def plan(self, matmul: MatmulOp) -> BlockPlan:
        weight = qweight_info(matmul.weight.type)
        assert weight is not None
        m, k = matrix_shape(matmul.input, "activation")
        n = weight.shape[0]
        try:
            return plan_blocks(
                m,
                n,
                k,
                fmt=weight.fmt,
                group_size=weight.group_size,
                scale_bits=weight.scale_bits,
                rows=self.rows,
                block_cols=self.cols * self.tiles,
                act_buffer=self.act_buffer,
                weight_buffer=self.weight_buffer,
                kchunk=self.kchunk,
            )
        except ValueError as error:
            raise error_at(matmul, f"bitmod-tile: {error}") from None

    def rewrite(self, matmul: MatmulOp, plan: BlockPlan) -> None:
        tiling = TilingAttr.make(
            rows=self.rows,
            cols=self.cols,
            tiles=self.tiles,
            kc=plan.kc,
            m_blocks=plan.m_blocks,
            n_blocks=plan.n_blocks,
            k_chunks=plan.k_chunks,
            act_block_bytes=plan.act_block_bytes,
            weight_block_bytes=plan.weight_block_bytes,
        )
        tiled = TiledMatmulOp(
            matmul.input,
            matmul.weight,
            matmul.bias,
            matmul.result.type,
            tiling,
            output_stationary_schedule(plan, matmul.bias is not None),
        )
        tiled.location = matmul.location
        tiled.attributes |= matmul.attributes
        Rewriter.replace_op(matmul, tiled)
