"""The matmul programs: a planned schedule as a bsisa program.

The code is :mod:`bitmod.runtime.arch.loops`'s (:func:`matmul_config`, :func:`matmul_nest`,
re-exported here), the schedule :mod:`bitmod.runtime.arch.schedule`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bitmod.runtime.arch.hwconfig import HardwareConfig
from bitmod.runtime.arch.loops import (
    ACT_DESC,
    BIAS_DESC,
    K_LEVEL,
    MATMUL_ROLES,
    MIDDLE_LEVEL,
    OUT_DESC,
    OUTER_LEVEL,
    WEIGHT_DESC,
    matmul_config,
    matmul_nest,
)
from bitmod.runtime.arch.schedule import ArraySpec, plan_bitmod_matmul
from bitmod.runtime.formats.registry import get_format
from bitmod.runtime.isa import (
    DescKind,
    Descriptor,
    Halt,
    IsaError,
    Program,
    format_id,
)

if TYPE_CHECKING:
    from bitmod.runtime.formats.quantizer import QuantizedTensor

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
    "matmul_nest",
    "matmul_program",
    "quantized_matmul_program",
]


def matmul_program(
    *,
    act: str,
    weight: str,
    out: str,
    m: int,
    n: int,
    k: int,
    fmt: str,
    group_size: int,
    scale_bits: int = 8,
    special_values: Sequence[int] | None = None,
    config: HardwareConfig | None = None,
    kchunk: int = 0,
    block_rows: int = 0,
    order: str | None = None,
    bias: str | None = None,
    rows_down: bool | None = None,
    cols_down: bool | None = None,
) -> Program:
    """``out[M,N] = act[M,K] @ dequant(weight[N,K]).T (+ bias)`` as one bsisa program.

    The schedule is the one ``bitmod-tile`` picks for this matmul on ``config`` (default
    :class:`~bitmod.runtime.arch.hwconfig.HardwareConfig`):
    :func:`bitmod.runtime.arch.schedule.plan_matmul`,
    with ``kchunk``, ``block_rows``, ``order``, ``rows_down`` and ``cols_down`` (the row / column
    block loop a ``loop.down``; None: the planner's choice) forcing parts of it; the code is
    :func:`matmul_config` and :func:`matmul_nest`. ``special_values`` fill SV[0..3] (default:
    the format's own ``Format.special_values``; ``()`` sets none). IsaError for arguments no
    program can express.
    """
    config = config or HardwareConfig()
    names = [act, weight, out] + ([bias] if bias is not None else [])
    strings = tuple(dict.fromkeys(names))
    if len(strings) != len(names):
        raise IsaError(f"tensor names must be distinct: {names}")
    fmt_id = format_id(fmt)  # IsaError for an unknown format, before anything else reads it
    if special_values is None:
        special_values = get_format(fmt).special_values
    try:
        schedule = plan_bitmod_matmul(
            m,
            n,
            k,
            fmt=fmt,
            group_size=group_size,
            scale_bits=scale_bits,
            array=ArraySpec.of(config),
            kchunk=kchunk,
            block_rows=block_rows,
            order=order,
            special_values=len(special_values),
        )
    except ValueError as error:
        raise IsaError(f"matmul {m}x{n}x{k} {fmt}: {error}") from None
    descriptors = [
        Descriptor(ACT_DESC, DescKind.ACT, m, k),
        Descriptor(WEIGHT_DESC, DescKind.QWEIGHT, n, k, fmt_id, scale_bits, group_size),
        Descriptor(OUT_DESC, DescKind.OUT, m, n),
    ]
    if bias is not None:
        descriptors.append(Descriptor(BIAS_DESC, DescKind.BIAS, n, 1))
    code = matmul_config(
        rows=config.rows,
        cols=config.cols,
        tiles=config.tiles,
        fmt=fmt,
        scale_bits=scale_bits,
        group_size=group_size,
        special_values=special_values,
        kc=schedule.kc,
        block_rows=schedule.block_rows,
    )
    code += matmul_nest(
        schedule.order,
        m_blocks=schedule.m_blocks,
        n_blocks=schedule.n_blocks,
        k_chunks=schedule.k_chunks,
        bias=bias is not None,
        rows_down=schedule.rows_down if rows_down is None else rows_down,
        cols_down=schedule.cols_down if cols_down is None else cols_down,
    )
    code.append(Halt())
    program = Program(strings, tuple(descriptors), tuple(code))
    program.validate()
    return program


def quantized_matmul_program(
    q: QuantizedTensor,
    m: int,
    config: HardwareConfig | None = None,
    *,
    act: str = "x",
    weight: str = "w",
    out: str = "y",
    kchunk: int = 0,
    block_rows: int = 0,
    order: str | None = None,
    bias: str | None = None,
    rows_down: bool | None = None,
    cols_down: bool | None = None,
) -> Program:
    """:func:`matmul_program` of ``out = act[m, K] @ dequant(q).T (+ bias)``, its N, K,
    format, group size and scale bits those of the quantized weight ``q``."""
    n, k = q.shape
    return matmul_program(
        act=act,
        weight=weight,
        out=out,
        m=m,
        n=n,
        k=k,
        fmt=q.fmt,
        group_size=q.group_size,
        scale_bits=q.scale_bits,
        config=config,
        kchunk=kchunk,
        block_rows=block_rows,
        order=order,
        bias=bias,
        rows_down=rows_down,
        cols_down=cols_down,
    )
