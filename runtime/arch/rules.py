"""The blocking rules every layer enforces: one definition each, called from every site.

An output block has ``MR`` rows (register ``MR``, ``cfg.mblock``): the array takes them
``ROWS`` at a time, so ``MR`` is a multiple of ``ROWS``, and each column accumulator holds the
partial sums of all ``MR`` rows, so ``MR`` is at most the accumulators' depth. A weight block
holds ``KC`` elements of K (``cfg.kchunk``): a group's scale is applied once its ``G`` weights
are accumulated, so a chunk is whole groups (or all of K, if K is shorter than the chunk).

Each function returns the message of the broken rule, or None (positivity is the ISA's field
check, made before these); callers wrap it in their own
error type with their own location (the planner's ValueError, the machine's MachineError, the
dialect's VerifyException).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np
from bitmod.runtime.formats.bitserial import max_term_sum
from bitmod.runtime.formats.registry import get_format

__all__ = [
    "GROUP_TERM_LIMIT",
    "accumulator_error",
    "block_rows_error",
    "group_accumulator_error",
    "kchunk_error",
    "mac_sweeps",
    "row_groups",
    "row_groups_of",
    "row_group_error",
    "uses_sv_register",
]

#: The largest ``G · T`` (group size times the largest term-magnitude sum of one weight) the
#: 64-bit group accumulator holds for any FP16 activations: see :func:`accumulator_error`.
GROUP_TERM_LIMIT = 1 << 20


def block_rows_error(block_rows: int, rows: int, depth: int | None = None) -> str | None:
    """Why ``MR = block_rows`` is not a block height of a ``rows``-row array whose column
    accumulators hold ``depth`` rows (None: depth unknown here), or None."""
    if depth is None:
        if block_rows % rows:
            return f"blocks of {block_rows} rows must be a multiple of the {rows} PE rows"
        return None
    if block_rows % rows or block_rows > depth:
        return (
            f"blocks of {block_rows} rows must be a multiple of the {rows} PE rows and at "
            f"most the {depth} rows the column accumulators hold"
        )
    return None


def accumulator_depth_error(depth: int, rows: int) -> str | None:
    """Why column accumulators of ``depth`` rows cannot serve a ``rows``-row array, or None:
    a block is whole passes of ``rows`` rows (the largest ``MR`` is the last multiple of
    ``rows`` up to ``depth``), so it must hold one pass."""
    if depth < rows:
        return f"{depth} rows hold less than one pass of the {rows} PE rows"
    return None


def row_group_error(limit: int) -> str | None:
    """Why ``limit`` tile groups is not a row-group count of the PE engine, or None."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1 or limit & (limit - 1):
        return f"row groups must be a power of two (1, 2, 4, ...), got {limit!r}"
    return None


def row_groups(channels: np.ndarray | int, cols: int, tiles: int, limit: int) -> np.ndarray:
    """``S``: the tile groups a ``mac`` of a weight block of ``channels`` valid channels splits
    its passes over (vectorized over ``channels``).

    Tile ``t`` holds channels ``[t·cols, (t+1)·cols)`` of the block, so ``⌈channels/cols⌉``
    tiles hold any. When fewer than half the tiles do, the others would idle: the PE engine
    instead groups the tiles by ``Wg``, the smallest power of two ``≥ ⌈channels/cols⌉``
    (tile ``t`` is lane ``t mod Wg`` of group ``⌊t/Wg⌋``), gives every group the same weight
    terms and a different activation pass, and so runs group ``j`` on passes
    ``j, j + S, j + 2S, …``: a ``mac`` of ``p`` passes issues ``⌈p/S⌉`` sweeps over its K range.
    ``S`` is the largest power of two with ``S ≤ limit`` (the activation rows the buffer
    delivers at once, ``HardwareConfig.row_groups``) and ``S·Wg ≤ tiles``. Powers of two keep
    the group and pass arithmetic shifts in the RTL (``bitmod_pe_engine``).
    """
    needed = np.maximum(-(-np.asarray(channels, dtype=np.int64) // cols), 1)
    width = np.ones_like(needed)
    groups = np.ones_like(needed)
    for _ in range(max(tiles, limit).bit_length()):
        width = np.where(width < needed, 2 * width, width)
    cap = np.minimum(limit, tiles // width)
    for _ in range(max(tiles, limit).bit_length()):
        groups = np.where(2 * groups <= cap, 2 * groups, groups)
    return groups


@cache
def row_groups_of(channels: int, cols: int, tiles: int, limit: int) -> int:
    """:func:`row_groups` of one block (cached: the machine and the planner's traces ask it
    once per ``mac``, where numpy's overhead would dominate)."""
    return int(row_groups(channels, cols, tiles, limit))


def mac_sweeps(
    passes: np.ndarray | int, channels: np.ndarray | int, cols: int, tiles: int, limit: int
) -> np.ndarray | int:
    """Sweeps of a ``mac`` of ``passes`` row passes over its K range: ``⌈passes / S⌉`` with
    ``S = row_groups(channels, cols, tiles, limit)`` (vectorized; an int for int arguments)."""
    if isinstance(passes, int) and isinstance(channels, int):
        return -(-passes // row_groups_of(channels, cols, tiles, limit))
    groups = row_groups(channels, cols, tiles, limit)
    return -(-np.asarray(passes, dtype=np.int64) // groups)


def kchunk_error(kc: int, group_size: int, k: int | None = None) -> str | None:
    """Why ``KC = kc`` is not a K chunk of a weight of group size ``group_size`` and ``k``
    elements along K (None: K unknown here, so the chunk must be whole groups), or None."""
    if kc % group_size and (k is None or kc < k):
        return f"K chunk {kc} is not a multiple of the group size {group_size}"
    return None


def accumulator_error(group_size: int, term_sum: int, what: str = "the weights") -> str | None:
    """Why a group of ``group_size`` weights whose terms sum to at most ``term_sum`` in
    magnitude (``T = max_w Σ_t |t|``: ``|w|`` for leading-one terms, ``Σ |d_i|·4^i`` for Booth
    digits) can overflow the group accumulator, or None.

    The accumulator is a two's-complement integer of 64 bits in units of ``2^−27`` (the PE
    contract, docs/ISA.md step 4), so it holds ``|A| < 2^63``. A cycle adds
    ``D·2^(E−3) = Σ_i p_i·2^(E−3)`` over the four lanes, each ``p_i`` the lane product
    ``a_i·t_i`` rounded to a multiple of ``2^(E−3)``: ``|p_i·2^(E−3)| ≤ |a_i t_i| + 2^(E−4)``,
    so a cycle adds at most ``Σ_i |a_i t_i| + 2^(E−2)``. ``E`` is the exponent of the largest
    lane; if that lane is normal its 11-bit mantissa is at least ``2^10``, so its product is at
    least ``2^(E+10)`` and the slack ``2^(E−2)`` is at most ``2^−12`` of it; if it is subnormal,
    ``E = −24 + bsig`` and the slack is below ``2^−26·|t|``. Summed over the group's weights
    and terms,

        |A| · 2^−27 ≤ (1 + 2^−12) · G · max|a| · T,   max|a| = 65504 < 2^16,

    and ``|A| < 2^63`` holds whenever ``G · T ≤ 2^63 / (2^27 · 65504 · (1 + 2^−12))``
    ``≈ 1.0488e6``; the rule uses ``G · T ≤ 2^20`` (:data:`GROUP_TERM_LIMIT`). Every format at
    its default special values stays far inside (BitMoD-4 at G = 128: ``128 · 16``; INT8's Booth
    digits ``T = 170`` allow G up to 6,168); a programmed special value of 16,384 at G = 128
    (``2^21``) does not.
    """
    if group_size * term_sum > GROUP_TERM_LIMIT:
        return (
            f"{what} of a group of {group_size} can sum {group_size} x {term_sum} term units "
            f"> 2^20: the 64-bit group accumulator can overflow for FP16 activations "
            f"(G x max|w| must be at most {GROUP_TERM_LIMIT:,})"
        )
    return None


def uses_sv_register(fmt: str) -> bool:
    """Whether ``fmt``'s term decoder reads the special-value register (its negative-zero code
    stands for a programmable value)."""
    format_ = get_format(fmt)
    return format_.special_code is not None and format_.family in ("mixture", "fp_er", "fp_ea")


def group_accumulator_error(
    fmt: str, group_size: int, sv_register: Sequence[int | None]
) -> str | None:
    """:func:`accumulator_error` for weights in ``fmt`` with groups of ``group_size`` under the
    special-value register ``sv_register`` (unset slots None: a group selecting one is another
    error, found where it is selected). Cached: the machine asks at every ``mac``."""
    register = None
    if uses_sv_register(fmt):
        register = tuple(int(v) for v in sv_register if v is not None)
    return _group_accumulator_error(fmt, group_size, register)


@cache
def _group_accumulator_error(
    fmt: str, group_size: int, register: tuple[int, ...] | None
) -> str | None:
    values = "" if not register else f" and SV register {list(register)}"
    return accumulator_error(group_size, max_term_sum(fmt, register), f"{fmt} weights{values}")
