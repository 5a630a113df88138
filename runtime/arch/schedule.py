"""Block schedules of one GEMM on the output-stationary array: the compiler's choice and its cost.

``Y[M, N] = X[M, K] · W[N, K]ᵀ`` is cut into blocks of ``MR`` rows and ``KC`` K elements and run
in one of four loop orders (:data:`ORDERS`); :func:`plan` predicts each candidate's DRAM bytes
and cycles and picks the fastest (the fewest bytes among those within 1 %, then the fewest
cycles). The compiler (``bitmod-tile``), the machine (:class:`WeightLayout`,
:class:`MacTiming`) and the perf model all use it. Notation, the loop orders, the DRAM bytes,
the cycle formula and the choice rule: docs/schedule.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from functools import lru_cache

import numpy as np
from bitmod.runtime.arch.hwconfig import LANES, HardwareConfig
from bitmod.runtime.arch.loops import matmul_config_length, matmul_nest
from bitmod.runtime.arch.rules import block_rows_error, kchunk_error, mac_sweeps
from bitmod.runtime.arch.timing import MAC_PIPELINE_CYCLES
from bitmod.runtime.arch.trace import ACT_BUFFER, WEIGHT_BUFFER, EngineTrace, block_slots
from bitmod.runtime.formats import get_format
from bitmod.runtime.formats.bitserial import num_terms
from bitmod.runtime.isa import Drain, EndLoop, Halt, Instruction, LdAct, LdWgt, Loop, Mac, StOut

__all__ = [
    "ACT_BYTES",
    "ORDERS",
    "LOOP_DIRECTIONS",
    "STREAMED_ORDERS",
    "ArraySpec",
    "MacTiming",
    "Plans",
    "Schedule",
    "WeightLayout",
    "directions_matter",
    "plan",
    "plan_bitmod_matmul",
    "plan_matmul",
    "schedule_code",
    "schedule_cycles",
    "schedule_trace",
]

#: Loop orders, in the order ties are broken.
ORDERS: tuple[str, ...] = ("weights-resident", "acts-resident", "k-streamed", "k-streamed-rows")
WEIGHTS_RESIDENT, ACTS_RESIDENT, K_STREAMED, K_STREAMED_ROWS = range(4)
#: The orders that stream both operands in K chunks (K in two or more chunks).
BOTH_STREAMED = (K_STREAMED, K_STREAMED_ROWS)
STREAMED_ORDERS: tuple[str, ...] = tuple(ORDERS[i] for i in BOTH_STREAMED)
#: Bytes of one FP16 activation or output element.
ACT_BYTES = 2
#: Plans within this fraction of the fewest cycles count as equally fast; of those the one
#: reading the fewest DRAM bytes wins (DRAM is most of the energy), then the fastest of them.
NEAR_FASTEST = 0.01
#: K chunks of at most this many groups are candidates too (besides the largest chunks that
#: fit): a smaller first block starts the array sooner, at a tail per extra mac.
CHUNK_GROUP_CAPS: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
#: The candidates within this fraction of the fewest closed-form cycles (at most
#: ``EXACT_CANDIDATES`` of them, fewest first) are timed exactly, by simulating the trace of
#: their code (:func:`schedule_cycles`), when each runs at most ``EXACT_MACS`` macs; the exact
#: cycles decide. Larger GEMMs keep the closed form: their fill and drain, where it errs, are a
#: small part of them.
EXACT_WINDOW = 0.25
EXACT_CANDIDATES = 64
EXACT_MACS = 1024

_Array = np.ndarray


def _ceil_div(a: _Array | int, b: _Array | int) -> _Array:
    return -(-np.asarray(a, dtype=np.int64) // np.asarray(b, dtype=np.int64))


@dataclass(frozen=True)
class ArraySpec:
    """The array and memory a schedule is planned for."""

    rows: int  # R: PE rows (tokens per pass)
    columns: int  # C: output channels per column block
    act_buffer: int  # bytes
    weight_buffer: int  # bytes
    max_block_rows: int  # rows of partial sums a column accumulator holds
    dram_bytes_per_cycle: float  # B
    tile_columns: int = 0  # channels of one tile (0: the array is one tile)
    row_groups: int = 1  # tile groups a mac splits its passes over (rules.row_groups)

    @classmethod
    def of(cls, cfg: HardwareConfig, columns: int | None = None) -> ArraySpec:
        """The BitMoD array of ``cfg`` (``columns`` overrides ``cols · tiles``: an array of
        another PE, one tile wide, without row groups)."""
        own = columns is None or columns == cfg.cols * cfg.tiles
        return cls(
            rows=cfg.rows,
            columns=cfg.cols * cfg.tiles if columns is None else columns,
            act_buffer=cfg.act_buffer_bytes,
            weight_buffer=cfg.weight_buffer_bytes,
            max_block_rows=cfg.max_block_rows,
            dram_bytes_per_cycle=cfg.dram_bytes_per_cycle,
            tile_columns=cfg.cols if own else 0,
            row_groups=cfg.row_groups if own else 1,
        )

    def sweeps(self, passes: _Array | int, channels: _Array | int) -> _Array | int:
        """Sweeps of a ``mac`` of ``passes`` row passes against a weight block of ``channels``
        valid channels (``rules.mac_sweeps``; ``passes`` without row groups)."""
        if not self.tile_columns or self.row_groups == 1:
            return passes if isinstance(passes, int) else np.asarray(passes, dtype=np.int64)
        tiles = self.columns // self.tile_columns
        return mac_sweeps(passes, channels, self.tile_columns, tiles, self.row_groups)


@dataclass(frozen=True)
class WeightLayout:
    """Bytes of a weight block: ``w(k)`` per channel (docs/schedule.md, "Block bytes")."""

    value_bits: float  # b (fractional for a mixed-precision average)
    group_size: int  # G
    group_bits: int = 0  # SB + index bits + zero-point bits per group
    channel_bytes: int = 2  # FP16 channel scale

    @classmethod
    def of_format(cls, fmt: str, group_size: int, scale_bits: int) -> WeightLayout:
        """A per-group weight of format ``fmt`` (``scale_bits`` 0: FP16 group scales)."""
        format_ = get_format(fmt)
        zero_bits = format_.bits if format_.family == "int_asym" else 0
        return cls(format_.bits, group_size, (scale_bits or 16) + format_.index_bits + zero_bits)

    def channel_block_bytes(self, k: _Array | int) -> _Array:
        """``w(k)``: bytes of one channel's K-chunk of ``k`` elements (vectorized)."""
        k = np.asarray(k, dtype=np.int64)
        codes = np.ceil(k * (self.value_bits / 8)).astype(np.int64)
        groups = _ceil_div(k, self.group_size)
        return codes + (groups * self.group_bits + 7) // 8 + self.channel_bytes

    def block_bytes(self, channels: _Array | int, k: _Array | int) -> _Array:
        """Bytes of ``channels`` weight rows × ``k``."""
        return np.asarray(channels, dtype=np.int64) * self.channel_block_bytes(k)


@dataclass(frozen=True)
class MacTiming:
    """Cycles of one ``mac``: ``d`` MACs per PE step in ``t`` cycles, a ``tail`` after the last
    step, and ``group_cycles`` of post-processing per group that the next group's steps hide
    (stalling the difference when they are fewer).

    The BitMoD PE (:meth:`bit_serial`, as the RTL pipelines it, docs/rtl.md): a group's sum is
    dequantized bit-serially in SB cycles and the column's shared accumulator then takes its
    ROWS PEs one a cycle, so groups end at least ``SB + ROWS`` cycles apart, and a mac ends
    ``MAC_PIPELINE_CYCLES + SB + ROWS`` cycles after its last step.
    """

    macs_per_step: int  # d
    step_cycles: int  # t
    group_size: int  # G
    tail_cycles: int  # after the last step of a mac
    group_cycles: int | None = None  # per group; None: tail_cycles

    @property
    def per_group(self) -> int:
        """Post-processing cycles of a group, hidden behind the next group's steps."""
        return self.tail_cycles if self.group_cycles is None else self.group_cycles

    @property
    def group_stall(self) -> int:
        """``s``: cycles every whole group but the first waits when its steps are fewer than
        the previous group's post-processing."""
        return max(0, self.per_group - -(-self.group_size // self.macs_per_step) * self.step_cycles)

    @classmethod
    def bit_serial(cls, fmt: str, group_size: int, scale_bits: int, rows: int) -> MacTiming:
        """The BitMoD PE of ``rows`` PE rows on ``fmt``: 4 MACs per ``num_terms(fmt)`` cycles."""
        return cls.bit_serial_terms(num_terms(fmt), group_size, scale_bits, rows)

    @classmethod
    def bit_serial_terms(cls, terms: int, group_size: int, scale_bits: int, rows: int) -> MacTiming:
        """The BitMoD PE with ``terms`` terms a weight (the SV register may add terms)."""
        return cls(
            LANES, terms, group_size, MAC_PIPELINE_CYCLES + scale_bits + rows, scale_bits + rows
        )

    def cycles(self, passes: _Array | int, k: _Array | int) -> tuple[_Array, _Array]:
        """(MAC cycles, dequantization cycles) of ``mac(p, k)`` (docs/schedule.md, "Cycles").

        Every group after the mac's first waits ``max(0, per_group − its MAC cycles)`` (the
        previous group's post-processing must be over when it ends). When G does not divide
        k, each pass ends with a short group of ``k mod G`` weights (``⌈(k mod G)/d⌉·t`` MAC
        cycles), which waits longer than a whole group.
        """
        passes = np.asarray(passes, dtype=np.int64)
        k = np.asarray(k, dtype=np.int64)
        compute = passes * _ceil_div(k, self.macs_per_step) * self.step_cycles
        per_pass = _ceil_div(k, self.group_size)
        stalls = passes * ((per_pass - 1) * self.group_stall + self._last_stall(k))
        return compute, stalls - self.first_stall(k) + self.tail_cycles

    def _last_stall(self, k: _Array | int) -> _Array:
        """The wait of the last group of a pass over ``k`` (a short group when G ∤ k)."""
        k = np.asarray(k, dtype=np.int64)
        last = k - (_ceil_div(k, self.group_size) - 1) * self.group_size
        return np.maximum(
            0, self.per_group - _ceil_div(last, self.macs_per_step) * self.step_cycles
        )

    def first_stall(self, k: _Array | int) -> _Array:
        """The wait a mac's first group does not have: ``s``, or the short group's if k < G."""
        k = np.asarray(k, dtype=np.int64)
        return np.where(k > self.group_size, self.group_stall, self._last_stall(k))


@dataclass(frozen=True)
class Schedule:
    """One GEMM's schedule (what ``bitmod-tile`` records in ``#bsisa.tiling``) and its cost."""

    order: str
    block_rows: int  # MR
    kc: int  # K elements per weight block
    act_kc: int  # K elements per activation block: kc, or K when the block holds all of K
    m_blocks: int
    n_blocks: int
    k_chunks: int
    act_block_bytes: int  # buffer space of one block (a clipped block takes the same)
    weight_block_bytes: int
    act_slots: int  # 2: double-buffered, 1: the block has the whole buffer
    weight_slots: int
    compute_cycles: float
    dram_read: float
    dram_written: float
    cycles: float
    rows_down: bool = False  # the row block loop counts down (``loop.down``)
    cols_down: bool = False  # the column block loop counts down


@dataclass(frozen=True)
class Plans:
    """Vectorized :class:`Schedule`: one entry per GEMM (``order`` indexes :data:`ORDERS`;
    ``cycles`` is inf where nothing fits). ``sram_read`` are the buffer bytes the PEs read,
    ``mac_cycles`` the part of ``compute_cycles`` that is MAC steps (no dequantization)."""

    order: _Array
    block_rows: _Array
    kc: _Array
    act_kc: _Array
    m_blocks: _Array
    n_blocks: _Array
    k_chunks: _Array
    act_block_bytes: _Array
    weight_block_bytes: _Array
    act_slots: _Array
    weight_slots: _Array
    compute_cycles: _Array
    dram_read: _Array
    dram_written: _Array
    cycles: _Array
    sram_read: _Array
    mac_cycles: _Array
    rows_down: _Array
    cols_down: _Array

    def schedule(self, index: int = 0) -> Schedule:
        values = {f.name: getattr(self, f.name)[index] for f in fields(Schedule)}
        values["order"] = ORDERS[int(values["order"])]
        for name, value in values.items():
            if isinstance(value, np.bool_):
                values[name] = bool(value)
            elif isinstance(value, np.integer):
                values[name] = int(value)
            elif isinstance(value, np.floating):
                values[name] = float(value)
        return Schedule(**values)

    def where(self, mask: _Array, other: Plans) -> Plans:
        """Entries of ``self`` where ``mask``, else of ``other``."""
        return Plans(
            **{
                f.name: np.where(mask, getattr(self, f.name), getattr(other, f.name))
                for f in fields(Plans)
            }
        )


def _most_groups(fits: Callable[[_Array], _Array], estimate: _Array, total: _Array) -> _Array:
    """The largest ``g`` in ``[0, total]`` with ``fits(g)`` (``fits`` monotone, ``fits(0)``),
    starting from ``estimate`` (within a few groups of the answer)."""
    g = np.clip(estimate, 0, total)
    while True:
        too_many = (g > 0) & ~fits(g)
        if not too_many.any():
            break
        g = np.where(too_many, g - 1, g)
    while True:
        one_more = (g < total) & fits(g + 1)
        if not one_more.any():
            return g
        g = np.where(one_more, g + 1, g)


def _chunking(k: _Array, group: int, most_groups: _Array, kchunk: int) -> tuple[_Array, _Array]:
    """(KC, feasible): the fewest chunks of at most ``most_groups`` groups, balanced; or the
    forced ``kchunk`` when it is within ``most_groups``."""
    total = _ceil_div(k, group)
    if kchunk:
        kc = np.minimum(kchunk, k)
        return kc, _ceil_div(kc, group) <= most_groups
    chunks = _ceil_div(total, np.maximum(most_groups, 1))
    kc = np.minimum(_ceil_div(total, chunks) * group, k)
    return kc, most_groups >= 1


def _evaluate(
    order: int,
    block_rows: int,
    m: _Array,
    n: _Array,
    k: _Array,
    array: ArraySpec,
    layout: WeightLayout,
    timing: MacTiming,
    kchunk: int,
    forced_rows: bool,
    chunk_cap: int = 0,
) -> Plans:
    """The plan of one (order, MR) for every GEMM, its K chunks of at most ``chunk_cap``
    groups (0: as many as fit); ``cycles`` inf where it does not fit (or, unless
    ``forced_rows``, where ``MR`` has more rows than ``M`` needs)."""
    rows, cols, bandwidth = array.rows, array.columns, array.dram_bytes_per_cycle
    group = layout.group_size
    mr = block_rows
    one = np.ones_like(m)
    row_passes = _ceil_div(m, rows)
    feasible = (mr == rows) | (mr <= row_passes * rows) | forced_rows

    def weight_fits(slots: int) -> Callable[[_Array], _Array]:
        return lambda g: slots * layout.block_bytes(cols, g * group) <= array.weight_buffer

    per_group = group * layout.value_bits / 8 + layout.group_bits / 8
    weight_estimate = (
        int(max(0.0, array.weight_buffer / 2 / cols - layout.channel_bytes) / per_group) * one
    )
    total_groups = _ceil_div(k, group)
    if order == WEIGHTS_RESIDENT:
        kc = k.copy()
        feasible &= (kchunk == 0) | (kchunk >= k)
        act_kc = k
        weight_slots = np.where(2 * layout.block_bytes(cols, k) <= array.weight_buffer, 2, 1)
        feasible &= layout.block_bytes(cols, k) <= array.weight_buffer
        act_slots = 2 * one
    else:
        most = _most_groups(weight_fits(2), weight_estimate, total_groups)
        if order in BOTH_STREAMED:
            act_most = array.act_buffer // (2 * ACT_BYTES * mr * group) * one
            most = np.minimum(most, act_most)
        if chunk_cap:
            most = np.minimum(most, chunk_cap)
        kc, fits = _chunking(k, group, most, kchunk)
        feasible &= fits
        weight_slots = 2 * one
        if order == ACTS_RESIDENT:
            act_kc = k
            act_slots = np.where(2 * ACT_BYTES * mr * k <= array.act_buffer, 2, 1)
            feasible &= ACT_BYTES * mr * k <= array.act_buffer
        else:
            act_kc = kc
            act_slots = 2 * one
            feasible &= kc < k  # one chunk is weights-resident with more traffic
    act_block = ACT_BYTES * mr * act_kc
    weight_block = layout.block_bytes(cols, kc)
    feasible &= act_slots * act_block <= array.act_buffer
    feasible &= weight_slots * weight_block <= array.weight_buffer

    m_blocks, n_blocks, k_chunks = _ceil_div(m, mr), _ceil_div(n, cols), _ceil_div(k, kc)
    kc_last = k - (k_chunks - 1) * kc
    # Sweeps of one column block's macs over a K chunk, summed over its row blocks (a mac of p
    # passes sweeps ⌈p/S⌉ times, S the row groups its channels leave: ArraySpec.sweeps); the
    # last column block may have fewer channels, so more row groups.
    rows_last = m - (m_blocks - 1) * mr
    cols_last = n - (n_blocks - 1) * cols
    block_passes = np.minimum(mr, row_passes * rows) // rows
    last_passes = _ceil_div(rows_last, rows)

    def column_sweeps(channels: _Array) -> _Array:
        return (m_blocks - 1) * array.sweeps(block_passes, channels) + array.sweeps(
            last_passes, channels
        )

    sweeps_full, sweeps_last = column_sweeps(cols * one), column_sweeps(cols_last)

    def column_cycles(sweeps: _Array) -> tuple[_Array, _Array]:
        """(cycles, MAC-step cycles) of one column block: Σ over row blocks and chunks of
        mac(p, kc)."""
        full_mac, full_dequant = timing.cycles(sweeps, kc)
        last_mac, last_dequant = timing.cycles(sweeps, kc_last)
        steps = (k_chunks - 1) * full_mac + last_mac
        # The dequantization term counts (p·groups − 1)·s + SB per mac (the first group's
        # wait excepted: MacTiming.first_stall); the sums over sweeps above count it once per
        # chunk, so add the other row blocks' SB minus that.
        total = steps + (k_chunks - 1) * full_dequant + last_dequant
        total = total + (m_blocks - 1) * (
            (k_chunks - 1) * (timing.tail_cycles - timing.first_stall(kc))
            + timing.tail_cycles
            - timing.first_stall(kc_last)
        )
        return total, steps

    full_column, full_steps = column_cycles(sweeps_full)
    last_column, last_steps = column_cycles(sweeps_last)
    compute = ((n_blocks - 1) * full_column + last_column).astype(np.float64)
    mac_steps = ((n_blocks - 1) * full_steps + last_steps).astype(np.float64)
    # The phases' own compute (below): the first row block's share of a column block is its
    # share of the sweeps; the first column block is the last one when it is the only one.
    first_row_passes = np.where(m_blocks > 1, block_passes, last_passes)

    def first_row_share(channels: _Array, sweeps: _Array) -> _Array:
        return array.sweeps(first_row_passes, channels) / sweeps

    share_full, share_last = (
        first_row_share(cols * one, sweeps_full),
        first_row_share(cols_last, sweeps_last),
    )
    several = n_blocks > 1
    first_column = np.where(several, full_column, last_column)
    first_column_first_row = first_column * np.where(several, share_full, share_last)
    later_columns = compute - first_column
    later_columns_first_row = np.where(
        several, (n_blocks - 2) * full_column * share_full + last_column * share_last, 0.0
    )

    x_bytes = ACT_BYTES * m * k
    y_bytes = ACT_BYTES * m * n
    sweep = n * (
        (k_chunks - 1) * layout.channel_block_bytes(kc) + layout.channel_block_bytes(kc_last)
    )
    # A streamed operand's blocks repeat as a cyclic sweep; the buffer keeps them (hits, no
    # transfer) when one sweep fits its slots, else round-robin placement misses every one.
    act_slots_held = block_slots(act_block, array.act_buffer)
    weight_slots_held = block_slots(weight_block, array.weight_buffer)
    # Phases: (count, bytes each, compute each) of the outer blocks, the first row / column
    # block apart (a clipped last block is smaller); a kept operand is read in its first
    # phases only.
    zero = np.zeros_like(m, dtype=np.float64)
    rows_first, cols_first = np.minimum(mr, m), np.minimum(cols, n)
    row_first = ACT_BYTES * rows_first * k
    later_rows, later_cols = np.maximum(m_blocks - 1, 1), np.maximum(n_blocks - 1, 1)
    row_later = (x_bytes - row_first) / later_rows
    column_first = sweep * cols_first / n
    column_later = (sweep - column_first) / later_cols
    if order == WEIGHTS_RESIDENT:
        acts_kept = m_blocks <= act_slots_held
        read = sweep + np.where(acts_kept, 1, n_blocks) * x_bytes
        phases = [
            (one, column_first + x_bytes, first_column),
            (
                n_blocks - 1,
                column_later + np.where(acts_kept, zero, x_bytes),
                later_columns / later_cols,
            ),
        ]
    elif order in (ACTS_RESIDENT, K_STREAMED_ROWS):
        # Row blocks outside: the resident block of all of K is read once; in k-streamed-rows
        # a row block's chunks, loaded for its first column block, are hits for the others
        # when they all stay. The weights are read once when every block stays.
        act_reads = (
            np.where(k_chunks <= act_slots_held, 1, n_blocks) if order == K_STREAMED_ROWS else one
        )
        weights_kept = n_blocks * k_chunks <= weight_slots_held
        read = act_reads * x_bytes + np.where(weights_kept, 1, m_blocks) * sweep
        row_first_compute = first_column_first_row + later_columns_first_row
        phases = [
            (one, act_reads * row_first + sweep, row_first_compute),
            (
                m_blocks - 1,
                act_reads * row_later + np.where(weights_kept, zero, sweep),
                (compute - row_first_compute) / later_rows,
            ),
        ]
    else:
        acts_kept = m_blocks * k_chunks <= act_slots_held
        weights_kept = k_chunks <= weight_slots_held
        read = np.where(acts_kept, 1, n_blocks) * x_bytes
        read = read + np.where(weights_kept, 1, m_blocks) * sweep
        phases = [
            (one, row_first + column_first, first_column_first_row),
            (
                m_blocks - 1,
                row_later + np.where(weights_kept, zero, column_first),
                (first_column - first_column_first_row) / later_rows,
            ),
            (
                n_blocks - 1,
                np.where(acts_kept, zero, row_first) + column_later,
                later_columns_first_row / later_cols,
            ),
            (
                (m_blocks - 1) * (n_blocks - 1),
                np.where(acts_kept, zero, row_later) + np.where(weights_kept, zero, column_later),
                (later_columns - later_columns_first_row) / (later_rows * later_cols),
            ),
        ]
    read = read.astype(np.float64)

    rows0, cols0 = np.minimum(mr, m), np.minimum(cols, n)
    first_act = ACT_BYTES * rows0 * np.minimum(act_kc, k)
    first_weight = layout.block_bytes(cols0, np.minimum(kc, k))
    first = first_act + first_weight
    last_store = ACT_BYTES * rows_last * cols_last
    drain = array.sweeps(last_passes, cols_last) * rows
    # After the last mac: its drain starts ROWS cycles before the mac ends and the store once
    # the drain has started, reading its block in its own last cycle (docs/rtl.md, "The drain
    # and the store overlap the work they read"): it ends max(drain, store) + 1 - ROWS after.
    tail = np.maximum(drain, last_store / bandwidth) + 1 - rows
    body = read + y_bytes - first - last_store

    # Single-slot reloads of the resident operand: each waits for the last mac on the old
    # block, then moves the block and the first streamed block behind it.
    if order == WEIGHTS_RESIDENT:
        single = weight_slots == 1
        reload_bytes = (n - cols0) * layout.channel_block_bytes(k) + (n_blocks - 1) * first_act
        last_mac_busy = sum(timing.cycles(_ceil_div(rows_last, rows), k))
        outer = n_blocks
    elif order == ACTS_RESIDENT:
        single = act_slots == 1
        reload_bytes = ACT_BYTES * (m - rows0) * k + (m_blocks - 1) * first_weight
        last_mac_busy = sum(timing.cycles(array.sweeps(block_passes, cols_last), kc_last))
        outer = m_blocks
    else:
        single = np.zeros_like(feasible)
        reload_bytes = last_mac_busy = outer = one
    reload = np.where(single, reload_bytes / bandwidth, 0.0)
    idle = np.where(single, (outer - 1) * last_mac_busy, 0.0)
    # Each phase takes the longer of its share of the compute and its own transfers (a kept
    # operand's bytes all fall in the first), so front-loaded traffic is not hidden behind
    # compute that comes after it.
    count = sum(c for c, _, _ in phases)
    stores = y_bytes / count
    phased = -first / bandwidth
    for phase_count, phase_bytes, phase_compute in phases:
        phased = phased + phase_count * np.maximum(
            phase_compute, (phase_bytes + stores) / bandwidth
        )
    cycles = (
        first / bandwidth
        + np.maximum(np.maximum(compute + reload, body / bandwidth + idle), phased)
        + tail
    )
    cycles = np.where(feasible, cycles, np.inf)
    # The weight buffer is read once per sweep of its block.
    weight_reads = (sweeps_full * (n - cols_last) + sweeps_last * cols_last) * sweep / n
    sram_read = n_blocks * x_bytes + weight_reads + y_bytes
    return Plans(
        order=np.full_like(m, order),
        block_rows=np.full_like(m, mr),
        kc=kc * one,
        act_kc=act_kc * one,
        m_blocks=m_blocks,
        n_blocks=n_blocks,
        k_chunks=k_chunks,
        act_block_bytes=act_block * one,
        weight_block_bytes=weight_block * one,
        act_slots=act_slots * one,
        weight_slots=weight_slots * one,
        compute_cycles=compute,
        dram_read=read,
        dram_written=y_bytes.astype(np.float64),
        cycles=cycles,
        sram_read=sram_read.astype(np.float64),
        mac_cycles=mac_steps,
        rows_down=np.zeros(m.shape, bool),
        cols_down=np.zeros(m.shape, bool),
    )


def schedule_code(
    order: str,
    m_blocks: int,
    n_blocks: int,
    k_chunks: int,
    rows_down: bool = False,
    cols_down: bool = False,
) -> list[Instruction]:
    """The loop nest a schedule runs as (:func:`bitmod.runtime.arch.loops.matmul_nest`, no bias:
    the drain reads the bias from the buffers, at no cost) and its ``halt``."""
    nest = matmul_nest(
        order,
        m_blocks=m_blocks,
        n_blocks=n_blocks,
        k_chunks=k_chunks,
        bias=False,
        rows_down=rows_down,
        cols_down=cols_down,
    )
    return [*nest, Halt()]


def schedule_trace(
    schedule: Schedule,
    m: int,
    n: int,
    k: int,
    array: ArraySpec,
    layout: WeightLayout,
    timing: MacTiming,
    special_values: int = 0,
) -> EngineTrace:
    """The engine trace the machine records running ``schedule``'s program for an ``m×n×k``
    GEMM (``special_values``: the ``cfg.sv`` instructions of its configuration)."""
    return _trace(
        schedule.order,
        schedule.block_rows,
        schedule.kc,
        m,
        n,
        k,
        array,
        layout,
        timing,
        special_values,
        schedule.rows_down,
        schedule.cols_down,
    )


def schedule_cycles(
    schedule: Schedule,
    m: int,
    n: int,
    k: int,
    array: ArraySpec,
    layout: WeightLayout,
    timing: MacTiming,
    special_values: int = 0,
) -> int:
    """The machine's cycles of ``schedule``'s program: its trace, simulated."""
    return _exact_cycles(
        schedule.order,
        schedule.block_rows,
        schedule.kc,
        m,
        n,
        k,
        array,
        layout,
        timing,
        special_values,
        schedule.rows_down,
        schedule.cols_down,
    )


def _trace(
    order: str,
    block_rows: int,
    kc: int,
    m: int,
    n: int,
    k: int,
    array: ArraySpec,
    layout: WeightLayout,
    timing: MacTiming,
    special_values: int,
    rows_down: bool = False,
    cols_down: bool = False,
) -> EngineTrace:
    """The code of the schedule executed without data: the loops counted, every block clipped
    to its tensor as the machine clips it, each instruction handed to :class:`EngineTrace`."""
    rows, columns = array.rows, array.columns
    code = schedule_code(
        order, -(-m // block_rows), -(-n // columns), -(-k // kc), rows_down, cols_down
    )
    trace = EngineTrace(array.act_buffer, array.weight_buffer, array.dram_bytes_per_cycle)
    for _ in range(
        matmul_config_length(special_values=special_values, block_rows=block_rows, rows=rows)
    ):
        trace.control()
    counters = [0] * 8
    open_loops: list[tuple[Loop, int]] = []  # (the open loop, pc of its body)
    act_rows = weight_channels = weight_k = 0
    mac_cycles: dict[tuple[int, int], tuple[int, int]] = {}  # per (passes, k)

    def k_extent(level: int | None) -> tuple[int, int]:
        """(K elements of the buffer block, of them inside the tensor) of a load."""
        if level is None:
            return k, k
        first = counters[level] * kc
        return kc, min(k, first + kc) - first

    def tag(level: int | None, k_level: int | None) -> tuple[int, int, int | None]:
        """The block's tag (descriptor 0: its operand; it has one per buffer)."""
        return (
            0,
            0 if level is None else counters[level],
            (None if k_level is None else counters[k_level]),
        )

    def extent(level: int | None, size: int, total: int) -> int:
        first = 0 if level is None else counters[level] * size
        return min(total, first + size) - first

    pc = 0
    while pc < len(code):
        instr = code[pc]
        pc += 1
        match instr:
            case Loop():
                counters[instr.lvl] = instr.first_index()
                open_loops.append((instr, pc))
                trace.control()
            case EndLoop():
                loop, body = open_loops[-1]
                following = loop.next_index(counters[loop.lvl])
                trace.control()
                if following is not None:
                    counters[loop.lvl] = following
                    pc = body
                else:
                    open_loops.pop()
            case LdAct(_, row_level, k_level):
                block_k, valid_k = k_extent(k_level)
                act_rows = extent(row_level, block_rows, m)
                block, moved = block_rows * block_k, act_rows * valid_k
                trace.load(
                    ACT_BUFFER,
                    ACT_BYTES * block,
                    ACT_BYTES * moved,
                    "act",
                    tag(row_level, k_level),
                )
            case LdWgt(_, col_level, k_level):
                block_k, weight_k = k_extent(k_level)
                weight_channels = extent(col_level, columns, n)
                block = int(layout.block_bytes(columns, block_k))
                nbytes = int(layout.block_bytes(weight_channels, weight_k))
                trace.load(WEIGHT_BUFFER, block, nbytes, "w", tag(col_level, k_level))
            case Mac():
                shape = (int(array.sweeps(-(-act_rows // rows), weight_channels)), weight_k)
                if shape not in mac_cycles:
                    compute, tail = timing.cycles(*shape)
                    mac_cycles[shape] = int(compute), int(tail)
                trace.mac(*mac_cycles[shape])
            case Drain():
                trace.drain(int(array.sweeps(-(-act_rows // rows), weight_channels)), rows)
            case StOut():
                trace.store("out", ACT_BYTES * act_rows * weight_channels)
            case Halt():
                trace.halt()
                break
            case _:
                trace.control()  # acc.clr
    return trace


#: Distinct exact timings kept: a six-LLM ``bitmod-sim`` run times about 10^4 candidates, and
#: evicting them made it re-time each of them per accelerator sweep.
EXACT_CACHE_SIZE = 1 << 16


@lru_cache(maxsize=EXACT_CACHE_SIZE)
def _exact_cycles(
    order: str,
    block_rows: int,
    kc: int,
    m: int,
    n: int,
    k: int,
    array: ArraySpec,
    layout: WeightLayout,
    timing: MacTiming,
    special_values: int,
    rows_down: bool = False,
    cols_down: bool = False,
) -> int:
    """:func:`schedule_cycles` by value (cached: the planner times the same code often)."""
    trace = _trace(
        order, block_rows, kc, m, n, k, array, layout, timing, special_values, rows_down, cols_down
    )
    return trace.simulate().cycles


def _time_exactly(
    stacked: dict[str, _Array],
    m: _Array,
    n: _Array,
    k: _Array,
    array: ArraySpec,
    layout: WeightLayout,
    timing: MacTiming,
    special_values: int,
    base: int,
) -> _Array:
    """The candidates' cycles with the exact ones of each small GEMM (see ``EXACT_WINDOW``);
    the candidates of such a GEMM that were not timed are out of the running (inf).

    Candidates ``base`` and on are the first ``base`` with block loops counting down
    (``LOOP_DIRECTIONS``, in that order): they are timed where their ascending twin is, and
    are never chosen elsewhere (the closed form does not see the order of the blocks)."""
    cycles = stacked["cycles"].copy()
    macs = stacked["m_blocks"] * stacked["n_blocks"] * stacked["k_chunks"]
    for gemm in range(cycles.shape[1]):
        estimate = cycles[:base, gemm]
        finite = np.flatnonzero(np.isfinite(estimate))
        if not finite.size:
            continue
        best = estimate[finite].min()
        ranked = finite[np.argsort(estimate[finite], kind="stable")]
        timed = ranked[estimate[ranked] <= best * (1 + EXACT_WINDOW)][:EXACT_CANDIDATES]
        if (macs[timed, gemm] > EXACT_MACS).any():
            cycles[base:, gemm] = np.inf
            continue
        twins = timed[None, :] + base * np.arange(1, len(cycles) // base)[:, None]
        twins = twins.ravel()
        twins = twins[np.isfinite(cycles[twins, gemm])]
        exact = np.full_like(cycles[:, gemm], np.inf)
        for candidate in np.concatenate([timed, twins]):
            exact[candidate] = _exact_cycles(
                ORDERS[int(stacked["order"][candidate, gemm])],
                int(stacked["block_rows"][candidate, gemm]),
                int(stacked["kc"][candidate, gemm]),
                int(m[gemm]),
                int(n[gemm]),
                int(k[gemm]),
                array,
                layout,
                timing,
                special_values,
                bool(stacked["rows_down"][candidate, gemm]),
                bool(stacked["cols_down"][candidate, gemm]),
            )
        cycles[:, gemm] = exact
    return cycles


#: The block loop directions tried besides both ascending: (rows down, columns down).
LOOP_DIRECTIONS: tuple[tuple[bool, bool], ...] = ((False, True), (True, False), (True, True))


def directions_matter(
    m: _Array | int,
    n: _Array | int,
    block_rows: _Array | int,
    columns: int,
    rows_down: bool,
    cols_down: bool,
) -> _Array | bool:
    """Whether counting the row / column block loop down (as asked) changes the order of
    unequal blocks: each loop asked to count down has more than one block and a short last one.

    Blocks of one size in the other order take the same cycles (every block moves the same
    bytes and MAC steps), so only a short last block -- a remainder of rows or of channels,
    the one with little compute -- is worth running first: its loads then overlap the next
    block's compute instead of coming after all of it (docs/schedule.md, "Block order")."""
    uneven_rows = (m > block_rows) & (m % block_rows != 0)
    uneven_cols = (n > columns) & (n % columns != 0)
    return (uneven_rows | (not rows_down)) & (uneven_cols | (not cols_down))


def _counting_down(
    plans: Plans, rows_down: bool, cols_down: bool, m: _Array, n: _Array, columns: int
) -> Plans:
    """``plans`` with its row / column block loops counting down where that changes the
    order of its blocks (:func:`directions_matter`); inf elsewhere."""
    useful = directions_matter(m, n, plans.block_rows, columns, rows_down, cols_down)
    return replace(
        plans,
        rows_down=np.full(m.shape, rows_down),
        cols_down=np.full(m.shape, cols_down),
        cycles=np.where(useful, plans.cycles, np.inf),
    )


def plan(
    m: _Array | int,
    n: _Array | int,
    k: _Array | int,
    array: ArraySpec,
    layout: WeightLayout,
    timing: MacTiming,
    *,
    kchunk: int = 0,
    block_rows: int = 0,
    order: str | None = None,
    special_values: int = 0,
    exact: bool = True,
) -> Plans:
    """The fastest schedule of every GEMM ``(m[i], n[i], k[i])`` (docs/schedule.md, "Choosing").

    ``kchunk``, ``block_rows`` and ``order`` (0 / None: choose) force that part of the plan;
    a GEMM nothing fits gets ``cycles = inf``. ``special_values``: the ``cfg.sv`` instructions
    of the program's configuration (a cycle each, for the exact timing). ``exact=False``: the
    closed form alone over the largest chunks (the planner before exact timing; benchmarks
    measure against it).
    """
    m, n, k = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, np.int64)) for v in (m, n, k)))
    row_choices = (
        [block_rows]
        if block_rows
        else range(array.rows, max(array.rows, array.max_block_rows) + 1, array.rows)
    )
    orders = range(len(ORDERS)) if order is None else [ORDERS.index(order)]
    most_groups = int(_ceil_div(k, layout.group_size).max(initial=1))
    caps = [0]
    if exact and not kchunk:
        caps += [cap for cap in CHUNK_GROUP_CAPS if cap < most_groups]
    choices = [
        (order_index, mr, cap)
        for order_index in orders
        for mr in row_choices
        for cap in (caps if order_index != WEIGHTS_RESIDENT else [0])
    ]
    candidates = [
        _evaluate(order_index, mr, m, n, k, array, layout, timing, kchunk, bool(block_rows), cap)
        for order_index, mr, cap in choices
    ]
    candidate_caps = [cap for _, _, cap in choices]
    base = len(candidates)
    if exact:
        candidates += [
            _counting_down(candidate, rows_down, cols_down, m, n, array.columns)
            for rows_down, cols_down in LOOP_DIRECTIONS
            for candidate in candidates[:base]
        ]
        candidate_caps *= 1 + len(LOOP_DIRECTIONS)
    stacked = {f.name: np.stack([getattr(c, f.name) for c in candidates]) for f in fields(Plans)}
    # Capped chunks are candidates only where they are timed exactly (the closed form does
    # not see what a smaller first block saves): large GEMMs keep the largest chunks.
    capped = np.array([cap != 0 for cap in candidate_caps])[:, None]
    macs = stacked["m_blocks"] * stacked["n_blocks"] * stacked["k_chunks"]
    stacked["cycles"] = np.where(capped & (macs > EXACT_MACS), np.inf, stacked["cycles"])
    if exact:
        stacked["cycles"] = _time_exactly(
            stacked, m, n, k, array, layout, timing, special_values, base
        )
    cycles = stacked["cycles"]
    fastest = cycles.min(axis=0)
    eligible = np.isfinite(cycles) & (cycles <= fastest * (1 + NEAR_FASTEST))
    # The fewest bytes, then the fewest cycles; lexsort keeps the first of equals: the earlier
    # order, the smaller MR, the larger chunks, the ascending loops.
    reads = np.where(eligible, stacked["dram_read"], np.inf)
    choice = np.lexsort((cycles, reads), axis=0)[0]
    columns = np.arange(choice.size)
    return Plans(**{name: values[choice, columns] for name, values in stacked.items()})


def plan_matmul(
    m: int,
    n: int,
    k: int,
    *,
    array: ArraySpec,
    layout: WeightLayout,
    timing: MacTiming,
    kchunk: int = 0,
    block_rows: int = 0,
    order: str | None = None,
    special_values: int = 0,
    exact: bool = True,
) -> Schedule:
    """The schedule of one GEMM; ValueError saying what does not fit (or is malformed)."""
    group = layout.group_size
    if kchunk < 0 or block_rows < 0:
        raise ValueError(f"kchunk and block_rows must be >= 0, got {kchunk} and {block_rows}")
    problem = (kchunk and kchunk_error(kchunk, group, k)) or (
        block_rows and block_rows_error(block_rows, array.rows, array.max_block_rows)
    )
    if problem:
        raise ValueError(problem)
    if order is not None and order not in ORDERS:
        raise ValueError(f"unknown loop order {order!r}; valid: {', '.join(ORDERS)}")
    schedule = plan(
        m,
        n,
        k,
        array,
        layout,
        timing,
        kchunk=kchunk,
        block_rows=block_rows,
        order=order,
        special_values=special_values,
        exact=exact,
    ).schedule()
    if np.isfinite(schedule.cycles):
        return schedule
    rows = block_rows or array.rows
    if order in STREAMED_ORDERS and not kchunk:
        # These orders cut K in two or more chunks; say so rather than blame the buffers.
        if k <= group:
            raise ValueError(
                f"{order} needs K in two or more chunks of whole groups, but K = {k} is a "
                f"single group (G = {group}); use another loop order"
            )
        smallest_chunks = plan(
            m, n, k, array, layout, timing, kchunk=group, block_rows=block_rows, order=order
        )
        if np.isfinite(smallest_chunks.schedule().cycles):
            raise ValueError(
                f"{order} needs K in two or more chunks, but all of K = {k} fits one chunk "
                f"of the buffers; force chunks with kchunk (a multiple of G = {group} below "
                f"{k}) or use another loop order"
            )
    if array.dram_bytes_per_cycle < 1.0:
        # A tiny bandwidth makes the predicted cycles overflow to inf, not the buffers.
        faster = replace(array, dram_bytes_per_cycle=1.0)
        options = {"kchunk": kchunk, "block_rows": block_rows, "order": order}
        if np.isfinite(plan(m, n, k, faster, layout, timing, **options).schedule().cycles):
            raise ValueError(
                f"at {array.dram_bytes_per_cycle:g} DRAM bytes per cycle the predicted cycles "
                "overflow; give a larger DRAM bandwidth"
            )
    if kchunk:
        kc = min(kchunk, k)
        raise ValueError(
            f"a K chunk of {kchunk} does not fit: double-buffered activation block "
            f"2x{ACT_BYTES * rows * kc} B (buffer {array.act_buffer} B), weight block "
            f"2x{int(layout.block_bytes(array.columns, kc))} B (buffer {array.weight_buffer} B)"
        )
    one_group = min(group, k)
    weight = int(layout.block_bytes(array.columns, one_group))
    act = ACT_BYTES * rows * one_group
    if 2 * weight > array.weight_buffer:
        raise ValueError(
            f"the weight block of one group ({one_group} along K) takes {weight} B; "
            f"double-buffered it does not fit the {array.weight_buffer} B weight buffer"
        )
    if 2 * act > array.act_buffer:
        raise ValueError(
            f"the activation block of one group ({one_group} along K) takes {act} B; "
            f"double-buffered it does not fit the {array.act_buffer} B activation buffer"
        )
    raise ValueError(
        f"no {order or 'loop order'} with {rows}-row blocks fits the {array.act_buffer} B "
        f"activation and {array.weight_buffer} B weight buffers"
    )


def plan_bitmod_matmul(
    m: int,
    n: int,
    k: int,
    *,
    fmt: str,
    group_size: int,
    scale_bits: int,
    array: ArraySpec,
    kchunk: int = 0,
    block_rows: int = 0,
    order: str | None = None,
    special_values: int | None = None,
    exact: bool = True,
) -> Schedule:
    """:func:`plan_matmul` of a ``fmt`` weight on the BitMoD PE (what ``bitmod-tile`` emits);
    ``special_values``: how many ``cfg.sv`` the program sets (None: the format's own)."""
    if special_values is None:
        special_values = len(get_format(fmt).special_values)
    return plan_matmul(
        m,
        n,
        k,
        array=array,
        layout=WeightLayout.of_format(fmt, group_size, scale_bits),
        timing=MacTiming.bit_serial(fmt, group_size, scale_bits, array.rows),
        kchunk=kchunk,
        block_rows=block_rows,
        order=order,
        special_values=special_values,
        exact=exact,
    )
