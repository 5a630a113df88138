"""The external parameter archive: weights live here, not in the IR (like IREE's parameters).

A safetensors file. A plain tensor is stored under its name. A quantized weight ``name`` is stored
packed (see :mod:`bitmod.runtime.formats.packing`) as ``name.codes``, ``name.scales``, ``name.sv``,
``name.channel_scale``, ``name.zeros`` (those that apply), and its metadata (format, shape, group
size, scale bits) as JSON in the safetensors header under ``bitmod.q.<name>``.

Integrity: :meth:`ParamArchive.save` records a CRC-32 per parameter in the header
(``bitmod.checksums``): of a plain tensor's dtype, shape and bytes, and of a quantized weight's
metadata text and the bytes of its packed parts. :meth:`ParamArchive.load` recomputes them
and names the first parameter that differs, so a flipped bit, two same-shape tensors swapped
under each other's names or an edited format/shape entry are found before anything runs. A
safetensors file without that entry (written by another tool) is read unchecked.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import torch
from bitmod.runtime.formats.packing import pack_quantized, unpack_quantized
from bitmod.runtime.formats.quantizer import QuantizedTensor
from bitmod.runtime.storage.fileio import write_atomically
from safetensors import SafetensorError
from safetensors.torch import load_file, save

__all__ = ["ArchiveError", "ParamArchive", "canonical_safetensors"]

_QUANT_PREFIX = "bitmod.q."
_CHECKSUMS = "bitmod.checksums"
_PACKED_PARTS = ("codes", "scales", "sv", "channel_scale", "zeros")


class ArchiveError(ValueError):
    """A parameter archive that cannot be read, or a parameter it lacks."""


def canonical_safetensors(data: bytes) -> bytes:
    """``data`` (a safetensors file) with its JSON header written in one canonical form: keys
    sorted, no spaces, padded with spaces to 8 bytes as the format asks. safetensors writes its
    metadata map in hash order, so the same archive saved twice differed byte for byte (and so
    did the SHA-256 that pins an archive in the IR); the tensor bytes and their offsets, which
    are relative to the end of the header, are unchanged."""
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + length :]


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

    # -- integrity --------------------------------------------------------------------------

    def _checksum(self, name: str) -> str:
        """CRC-32 (hex) of parameter ``name``: metadata and packed parts of a quantized weight,
        dtype, shape and bytes of a plain tensor."""
        if self.is_quantized(name):
            crc = zlib.crc32(self._metadata[_QUANT_PREFIX + name].encode())
            parts = [f"{name}.{part}" for part in _PACKED_PARTS]
        else:
            crc, parts = 0, [name]
        for key in parts:
            tensor = self._tensors.get(key)
            if tensor is None:
                continue
            crc = zlib.crc32(f"{key}:{tensor.dtype}:{list(tensor.shape)}".encode(), crc)
            # reshape(-1): a 0-d tensor (a scalar parameter) has no last dimension to view.
            raw = tensor.contiguous().reshape(-1).view(torch.uint8)
            crc = zlib.crc32(raw.numpy().tobytes(), crc)
        return f"{crc:08x}"

    def checksums(self) -> dict[str, str]:
        """Parameter name -> CRC-32 of its stored form (what :meth:`save` records)."""
        return {name: self._checksum(name) for name in self.names()}

    def verify(self) -> None:
        """ArchiveError naming the first parameter whose checksum differs from the recorded
        one (or that has none). A plain safetensors file (no bitmod metadata) has nothing
        recorded to check; a bitmod archive always records its checksums, so bitmod metadata
        without them is a damaged archive, not one to trust unchecked."""
        if _CHECKSUMS not in self._metadata:
            if any(key.startswith("bitmod.") for key in self._metadata):
                raise ArchiveError(
                    f"parameter archive{self._where()} has bitmod metadata but no checksum "
                    f"table ({_CHECKSUMS!r}): its header is damaged"
                )
            return
        try:
            recorded = json.loads(self._metadata[_CHECKSUMS])
            if not isinstance(recorded, dict):
                raise ValueError("not a JSON object")
        except ValueError as error:
            raise ArchiveError(
                f"parameter archive{self._where()}: bad checksum table: {error}"
            ) from None
        names = self.names()
        for name in names:
            if name not in recorded:
                raise ArchiveError(f"parameter {name!r}{self._where()} has no recorded checksum")
            actual = self._checksum(name)
            if recorded[name] != actual:
                raise ArchiveError(
                    f"parameter {name!r}{self._where()} is damaged: checksum {actual}, "
                    f"recorded {recorded[name]}"
                )
        missing = sorted(set(recorded) - set(names))
        if missing:
            raise ArchiveError(f"parameter {missing[0]!r} is missing{self._where()}")

    # -- files ------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write atomically (a reader never sees a half-written archive), with checksums."""
        path = Path(path)
        metadata = {**self._metadata, _CHECKSUMS: json.dumps(self.checksums(), sort_keys=True)}
        data = canonical_safetensors(save(self._tensors, metadata=metadata))
        write_atomically(path, lambda temporary: temporary.write_bytes(data))
        self._metadata = metadata
        self.path = path

    @classmethod
    def load(cls, path: str | Path) -> ParamArchive:
        path = Path(path)
        try:
            with open(path, "rb"):
                pass
        except FileNotFoundError:
            raise ArchiveError(f"parameter archive {path} does not exist") from None
        except OSError as error:  # unreadable, a directory, ...: say which, not "missing"
            raise ArchiveError(
                f"cannot read parameter archive {path}: {error.strerror or error}"
            ) from None
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
        archive.verify()  # then the bytes: what is well-formed must also be what was saved
        return archive
