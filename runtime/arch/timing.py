"""The cycle model of the machine's microarchitecture (docs/rtl.md, "Timing").

Filled in with the event model that the RTL implements; this first part holds the DRAM
bandwidth as an exact fraction.
"""

from __future__ import annotations

from fractions import Fraction

__all__ = ["MAX_DRAM_DENOMINATOR", "dram_fraction", "transfer_cycles"]

#: The DRAM bandwidth in bytes per cycle is the nearest fraction with at most this denominator.
MAX_DRAM_DENOMINATOR = 1 << 16


def dram_fraction(bytes_per_cycle: float) -> tuple[int, int]:
    """``(num, den)`` with ``num / den`` bytes per cycle (25.6 -> 128/5)."""
    value = Fraction(repr(float(bytes_per_cycle))).limit_denominator(MAX_DRAM_DENOMINATOR)
    if value <= 0:
        raise ValueError(f"DRAM bandwidth must be positive, got {bytes_per_cycle!r}")
    return value.numerator, value.denominator


def transfer_cycles(nbytes: int, num: int, den: int) -> int:
    """Cycles a transfer of ``nbytes`` holds the channel: ``ceil(nbytes * den / num)``."""
    return -(-nbytes * den // num)
