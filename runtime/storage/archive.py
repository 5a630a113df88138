"""The external parameter archive: weights live here, not in the IR (like IREE's parameters).

A safetensors file. A plain tensor is stored under its name. A quantized weight ``name`` is stored
packed (see :mod:`bitmod.runtime.formats.packing`) as ``name.codes``, ``name.scales``, ``name.sv``,
``name.channel_scale``, ``name.zeros`` (those that apply), and its metadata (format, shape, group
size, scale bits) as JSON in the safetensors header under ``bitmod.q.<name>``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from bitmod.runtime.formats.packing import pack_quantized, unpack_quantized
from bitmod.runtime.formats.quantizer import QuantizedTensor
from bitmod.runtime.storage.fileio import write_atomically
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

__all__ = ["ArchiveError", "ParamArchive"]

_QUANT_PREFIX = "bitmod.q."
_PACKED_PARTS = ("codes", "scales", "sv", "channel_scale", "zeros")


class ArchiveError(ValueError):
    """A parameter archive that cannot be read, or a parameter it lacks."""


class ParamArchive:
    """Named tensors and quantized weights, in memory until :meth:`save`."""

    def __init__(
        self,
        tensors: dict[str, torch.Tensor] | None = None,
        metadata: dict[str, str] | None = None,
        path: str | Path | None = None,
    ) -> None:
        self._tensors: dict[str, torch.Tensor] = dict(tensors or {})
        self._metadata: dict[str, str] = dict(metadata or {})
        self.path = Path(path) if path is not None else None

    # -- plain tensors ----------------------------------------------------------------------

    def names(self) -> list[str]:
        """Parameter names: plain tensors and quantized weights (not their packed parts)."""
        quantized = self.quantized_names()
        parts = {f"{name}.{part}" for name in quantized for part in _PACKED_PARTS}
        return sorted({n for n in self._tensors if n not in parts} | set(quantized))

    def quantized_names(self) -> list[str]:
        return sorted(
            k[len(_QUANT_PREFIX) :] for k in self._metadata if k.startswith(_QUANT_PREFIX)
        )

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._tensors or self.is_quantized(name))

    def _where(self) -> str:
        return f" in {self.path}" if self.path is not None else ""

    def get(self, name: str) -> torch.Tensor:
        """The plain tensor ``name``; a clear :class:`ArchiveError` when it is missing."""
        if name not in self._tensors:
            known = ", ".join(self.names()[:20]) or "none"
            raise ArchiveError(f"parameter {name!r} not found{self._where()} (has: {known})")
        return self._tensors[name]

    def put(self, name: str, tensor: torch.Tensor | np.ndarray) -> None:
        if not isinstance(tensor, torch.Tensor):
            tensor = torch.from_numpy(np.ascontiguousarray(tensor))
        self._tensors[name] = tensor.detach().cpu().contiguous()

    # -- quantized weights ------------------------------------------------------------------

    def is_quantized(self, name: str) -> bool:
        return _QUANT_PREFIX + name in self._metadata

    def put_quantized(self, name: str, q: QuantizedTensor) -> None:
        arrays, meta = pack_quantized(q)
        for part in _PACKED_PARTS:
            self._tensors.pop(f"{name}.{part}", None)
        for part, array in arrays.items():
            self._tensors[f"{name}.{part}"] = torch.from_numpy(np.ascontiguousarray(array))
        self._metadata[_QUANT_PREFIX + name] = json.dumps(meta)

    def get_quantized(self, name: str) -> QuantizedTensor:
        if not self.is_quantized(name):
            raise ArchiveError(f"quantized parameter {name!r} not found{self._where()}")
        arrays = {
            part: self._tensors[f"{name}.{part}"].numpy()
            for part in _PACKED_PARTS
            if f"{name}.{part}" in self._tensors
        }
        try:
            return unpack_quantized(arrays, self._metadata[_QUANT_PREFIX + name])
        except (ValueError, json.JSONDecodeError) as error:
            raise ArchiveError(f"quantized parameter {name!r}{self._where()}: {error}") from None

    def quantized_metadata(self, name: str) -> dict:
        """Format, shape, group size and scale bits of a quantized weight, without unpacking."""
        if not self.is_quantized(name):
            raise ArchiveError(f"quantized parameter {name!r} not found{self._where()}")
        return json.loads(self._metadata[_QUANT_PREFIX + name])

    # -- files ------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write atomically: a reader never sees a half-written archive."""
        path = Path(path)
        write_atomically(
            path, lambda temporary: save_file(self._tensors, temporary, metadata=self._metadata)
        )
        self.path = path

    @classmethod
    def load(cls, path: str | Path) -> ParamArchive:
        path = Path(path)
        if not path.is_file():
            raise ArchiveError(f"parameter archive {path} does not exist")
        try:
            tensors = load_file(str(path))
            with open(path, "rb") as stream:
                header_length = int.from_bytes(stream.read(8), "little")
                header = json.loads(stream.read(header_length))
        except (SafetensorError, OSError, ValueError, RuntimeError) as error:
            raise ArchiveError(f"corrupt parameter archive {path}: {error}") from None
        metadata = header.get("__metadata__", {}) or {}
        archive = cls(tensors, metadata, path)
        for name in archive.quantized_names():
            archive.get_quantized(name)  # validates shapes and metadata up front
        return archive
