"""The pass registry: every pass ``bitmod-opt`` knows, by its command-line name.

Values are factories so that listing the passes (``bitmod-opt --list-passes``) does not
import them, and a pass whose module is missing or broken only fails when it is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from xdsl.passes import ModulePass


def _lazy(module: str, class_name: str) -> Callable[[], type[ModulePass]]:
    def load() -> type[ModulePass]:
        return getattr(importlib.import_module(module), class_name)

    load.__qualname__ = f"load_{class_name}"
    return load


ALL_PASSES: dict[str, Callable[[], type[ModulePass]]] = {
    "convert-linalg-to-bitmod": _lazy(
        "bitmod.passes.convert_linalg_to_bitmod", "ConvertLinalgToBitmodPass"
    ),
    "bitmod-quantize": _lazy("bitmod.passes.bitmod_quantize", "BitmodQuantizePass"),
    "bitmod-tile": _lazy("bitmod.passes.bitmod_tile", "BitmodTilePass"),
    "bitmod-lower-to-isa": _lazy("bitmod.passes.bitmod_lower_to_isa", "BitmodLowerToIsaPass"),
}
"""Pass name -> factory returning the pass class (the form xDSL's PassPipeline takes)."""

PASS_SUMMARIES: dict[str, str] = {
    "convert-linalg-to-bitmod": "linalg matmul/batch_matmul with constant weights (+ bias add) "
    "-> bitmod.param + bitmod.matmul; weights move to the parameter archive",
    "bitmod-quantize": "quantize every bitmod.matmul weight per group "
    "{dtype= group-size= scale-bits= layers= progress=}",
    "bitmod-tile": "output-stationary tiling onto rows x cols PE tiles "
    "{rows= cols= tiles= dataflow= act-buffer= weight-buffer= max-block-rows= "
    "dram-bytes-per-cycle= kchunk= block-rows= order=}",
    "bitmod-lower-to-isa": "lower tiled bitmod ops to the bsisa instruction set",
}
"""One line per pass for --list-passes (kept here so listing imports no pass)."""
