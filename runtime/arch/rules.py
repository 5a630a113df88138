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

__all__ = ["block_rows_error", "kchunk_error"]


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


def kchunk_error(kc: int, group_size: int, k: int | None = None) -> str | None:
    """Why ``KC = kc`` is not a K chunk of a weight of group size ``group_size`` and ``k``
    elements along K (None: K unknown here, so the chunk must be whole groups), or None."""
    if kc % group_size and (k is None or kc < k):
        return f"K chunk {kc} is not a multiple of the group size {group_size}"
    return None
