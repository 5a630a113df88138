"""The pass registry: every pass ``bitmod-opt`` knows, by its command-line name.

Each pass is a `ModulePass` dataclass in the module named after it (``bitmod-tile`` in
:mod:`bitmod.passes.bitmod_tile`); its fields are its options and the first line of its
docstring its summary, which is all ``bitmod-opt --list-passes`` shows
(:func:`bitmod.compiler.pipelines.pass_options`). The rewrites are xDSL `RewritePattern`s
in the same module, applied by a `PatternRewriteWalker`.

Values are factories so that a run imports only the passes it uses (parsing alone imports
none), and a pass whose module is missing or broken only fails when it is used. Listing
imports every pass module, so a pass module imports at module level only what declaring
the pass needs; torch, the planner and the dialects the rewrite produces are imported by
the code that runs the pass.
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
