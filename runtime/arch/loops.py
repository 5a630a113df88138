"""The code of a GEMM's schedule: its configuration and its loop nest, as bsisa instructions.

:func:`matmul_config` and :func:`matmul_nest` are the one definition of the code a GEMM runs
under and as: ``bitmod-tile`` and :func:`bitmod.runtime.arch.nest.matmul_program` emit them,
and the planner (:mod:`bitmod.runtime.arch.schedule`) times exactly this code.
"""

from __future__ import annotations

from collections.abc import Sequence

from bitmod.runtime.isa import (
    NUM_SV_SLOTS,
    AccClr,
    CfgArray,
    CfgFmt,
    CfgKchunk,
    CfgMblock,
    CfgSv,
    Drain,
    EndLoop,
    Instruction,
    IsaError,
    LdAct,
    LdWgt,
    Loop,
    LoopDown,
    Mac,
    StOut,
    format_id,
)

__all__ = [
    "ACT_DESC",
    "BIAS_DESC",
    "K_LEVEL",
    "MATMUL_ROLES",
    "MIDDLE_LEVEL",
    "OUTER_LEVEL",
    "OUT_DESC",
    "WEIGHT_DESC",
    "matmul_config",
    "matmul_config_length",
    "matmul_nest",
]

#: Descriptor indices of a matmul's tensors in :func:`matmul_nest` (the ``bitmod-tile`` pass
#: names them by role: ``@act``, ``@weight``, ``@out``, ``@bias``).
ACT_DESC, WEIGHT_DESC, OUT_DESC, BIAS_DESC = range(4)
MATMUL_ROLES: tuple[str, ...] = ("act", "weight", "out", "bias")
#: Loop levels of the nest: the outer and middle block loops and the K-chunk loop.
OUTER_LEVEL, MIDDLE_LEVEL, K_LEVEL = range(3)


def matmul_config(
    *,
    rows: int,
    cols: int,
    tiles: int,
    fmt: str,
    scale_bits: int,
    group_size: int,
    special_values: Sequence[int],
    kc: int,
    block_rows: int,
) -> list[Instruction]:
    """What a matmul's nest runs under: ``cfg.array``, ``cfg.fmt``, one ``cfg.sv`` per special
    value (slot order), ``cfg.kchunk`` and, for blocks of more rows than the array has,
    ``cfg.mblock`` (``cfg.array`` resets ``MR`` to ``ROWS``). IsaError if not encodable."""
    if len(special_values) > NUM_SV_SLOTS:
        raise IsaError(f"at most {NUM_SV_SLOTS} special values, got {len(special_values)}")
    code: list[Instruction] = [
        CfgArray(rows, cols, tiles),
        CfgFmt(format_id(fmt), scale_bits, group_size),
        *(CfgSv(slot, int(v)) for slot, v in enumerate(special_values)),
        CfgKchunk(kc),
    ]
    if block_rows != rows:
        code.append(CfgMblock(block_rows))
    for instr in code:
        instr.check()
    return code


def matmul_config_length(*, special_values: int, block_rows: int, rows: int) -> int:
    """Instructions of :func:`matmul_config` with ``special_values`` values (the controller
    spends a cycle on each before the nest starts)."""
    return 3 + special_values + (block_rows != rows)


def matmul_nest(
    order: str,
    *,
    m_blocks: int,
    n_blocks: int,
    k_chunks: int,
    bias: bool,
    rows_down: bool = False,
    cols_down: bool = False,
) -> list[Instruction]:
    """The loop nest of a schedule (:mod:`bitmod.runtime.arch.schedule`), tensors as descriptors
    ``ACT_DESC`` … ``BIAS_DESC``. ``order`` is one of ``schedule.ORDERS``::

        weights-resident          acts-resident                 k-streamed
        loop L0 n_blocks          loop L0 m_blocks              loop L0 n_blocks
          ld.wgt col=L0 k=-         ld.act row=L0 k=-             loop L1 m_blocks
          loop L1 m_blocks          loop L1 n_blocks                acc.clr
            acc.clr                   acc.clr                       loop L2 k_chunks
            ld.act row=L1 k=-         loop L2 k_chunks (*)            ld.act row=L1 k=L2
            mac                         ld.wgt col=L1 k=L2            ld.wgt col=L0 k=L2
            drain                       mac                           mac
            st.out row=L1 col=L0      drain                         drain
                                      st.out row=L0 col=L1          st.out row=L1 col=L0

        k-streamed-rows
        loop L0 m_blocks
          loop L1 n_blocks
            acc.clr
            loop L2 k_chunks
              ld.act row=L0 k=L2
              ld.wgt col=L1 k=L2
              mac
            drain
            st.out row=L0 col=L1

    (*) without the L2 loop (``k=-``) when K is one chunk. A load without a K level holds
    the whole K. ``k-streamed-rows`` is k-streamed with the row block loop outside: a row
    block's activation chunks, loaded for its first column block, are buffer hits for the
    others when they all fit, so the first output block needs one chunk, not all of K, of
    its rows before its first mac. ``rows_down`` / ``cols_down``: the loop over row / column
    blocks is a ``loop.down`` (the last block, which may be narrow, first).
    """
    bias_desc = BIAS_DESC if bias else None

    def row_loop(level: int) -> Loop:
        return (LoopDown if rows_down else Loop)(level, m_blocks)

    def col_loop(level: int) -> Loop:
        return (LoopDown if cols_down else Loop)(level, n_blocks)

    finish: list[Instruction] = [Drain(bias_desc)]
    if order == "weights-resident":
        if k_chunks != 1:
            raise IsaError(f"weights-resident needs K in one chunk, got {k_chunks} chunks")
        return [
            col_loop(OUTER_LEVEL),
            LdWgt(WEIGHT_DESC, OUTER_LEVEL, None),
            row_loop(MIDDLE_LEVEL),
            AccClr(),
            LdAct(ACT_DESC, MIDDLE_LEVEL, None),
            Mac(),
            *finish,
            StOut(OUT_DESC, MIDDLE_LEVEL, OUTER_LEVEL),
            EndLoop(MIDDLE_LEVEL),
            EndLoop(OUTER_LEVEL),
        ]
    if order == "acts-resident":
        chunked = k_chunks > 1
        weights: list[Instruction] = [
            LdWgt(WEIGHT_DESC, MIDDLE_LEVEL, K_LEVEL if chunked else None),
            Mac(),
        ]
        if chunked:
            weights = [Loop(K_LEVEL, k_chunks), *weights, EndLoop(K_LEVEL)]
        return [
            row_loop(OUTER_LEVEL),
            LdAct(ACT_DESC, OUTER_LEVEL, None),
            col_loop(MIDDLE_LEVEL),
            AccClr(),
            *weights,
            *finish,
            StOut(OUT_DESC, OUTER_LEVEL, MIDDLE_LEVEL),
            EndLoop(MIDDLE_LEVEL),
            EndLoop(OUTER_LEVEL),
        ]
    if order in ("k-streamed", "k-streamed-rows"):
        if order == "k-streamed-rows":
            row_level, col_level = OUTER_LEVEL, MIDDLE_LEVEL
            block_loops = [row_loop(row_level), col_loop(col_level)]
        else:
            row_level, col_level = MIDDLE_LEVEL, OUTER_LEVEL
            block_loops = [col_loop(col_level), row_loop(row_level)]
        return [
            *block_loops,
            AccClr(),
            Loop(K_LEVEL, k_chunks),
            LdAct(ACT_DESC, row_level, K_LEVEL),
            LdWgt(WEIGHT_DESC, col_level, K_LEVEL),
            Mac(),
            EndLoop(K_LEVEL),
            *finish,
            StOut(OUT_DESC, row_level, col_level),
            EndLoop(MIDDLE_LEVEL),
            EndLoop(OUTER_LEVEL),
        ]
    raise IsaError(f"unknown loop order {order!r}")
