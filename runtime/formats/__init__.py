"""Number formats: the registry, the quantizer, bit-serial terms and packing.

* :mod:`.registry`: every format as data (value grid, special values, family); numpy only;
* :mod:`.quantizer`: ``quantize`` / ``dequantize`` / ``QuantizedTensor`` (torch; vectorized
  Algorithm 1, second-level INT scales, MX and OliVe);
* :mod:`.bitserial`: the unified bit-serial term representation the PE consumes;
* :mod:`.packing`: the stored bit layout of quantized weights;
* :mod:`.reference_quant`: a slow, obviously-right reference quantizer (the tests' oracle).

The registry's names are importable from here; the quantizer's are too, loaded on first use
so that tools reading format metadata (the IR parser, tiling, lowering) start without torch.
The grids and rules are written out in ``docs/formats.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bitmod.runtime.formats.registry import (
    DEFAULT_GROUP_SIZE,
    FORMAT_IDS,
    FORMAT_NAMES,
    Format,
    get_format,
)

if TYPE_CHECKING:
    from bitmod.runtime.formats.quantizer import QuantizedTensor, dequantize, quantize

__all__ = [
    "DEFAULT_GROUP_SIZE",
    "FORMAT_IDS",
    "FORMAT_NAMES",
    "Format",
    "QuantizedTensor",
    "dequantize",
    "get_format",
    "quantize",
]

_QUANTIZER_NAMES = ("QuantizedTensor", "dequantize", "quantize")


def __getattr__(name: str) -> object:
    """``quantize``, ``dequantize`` and ``QuantizedTensor``, imported with torch on first use."""
    if name in _QUANTIZER_NAMES:
        from bitmod.runtime.formats import quantizer

        return getattr(quantizer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
