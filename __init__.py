"""bitmod: a compiler, emulator and RTL generator for BitMoD-style bit-serial accelerators."""

from __future__ import annotations

from typing import Any

__all__ = ["compile", "load"]


def compile(*args: Any, **kwargs: Any) -> Any:  # noqa: A001 - mirrors torch.compile
    """Compile a PyTorch module for the accelerator; see :func:`bitmod.compiler.api.compile`."""
    # Imported on call: the console tools import ``bitmod`` and must not pay for torch.
    from bitmod.compiler.api import compile as _compile

    return _compile(*args, **kwargs)


def load(*args: Any, **kwargs: Any) -> Any:
    """Load a compiled model saved by ``CompiledModel.save``."""
    from bitmod.compiler.api import load as _load

    return _load(*args, **kwargs)
