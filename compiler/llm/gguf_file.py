"""A checked reader of GGUF headers: metadata, tensor directory, and the file's integrity.

GGUF (the llama.cpp model file) is a little-endian header followed by aligned tensor data::

    "GGUF", version u32, tensor count u64, metadata count u64,
    metadata:   key (u64 length + UTF-8), value type u32, value
    tensors:    name, dimension count u32, dimensions u64[], ggml type u32, data offset u64
    padding to ``general.alignment`` (default 32), then the tensor data

Only the header is parsed here (with ``struct`` and ``numpy``; the ``gguf`` package's reader
takes ~20 s for Gemma's 262,144-token vocabulary, this one well under a second). Every
inconsistency, a truncated file included (a tensor whose data would run past the end), is a
:class:`GGUFError` naming the file. ``transformers`` reads the tensors themselves.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["GGUFError", "GGUFHeader", "GGUFTensor", "read_gguf_header"]

_MAGIC = b"GGUF"
_SUPPORTED_VERSIONS = (2, 3)
_SCALARS: dict[int, str] = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9
_NUMPY = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "<u1"}
_NUMPY |= {10: "<u8", 11: "<i8", 12: "<f8"}


class GGUFError(ValueError):
    """A file that is not a complete, well-formed GGUF file."""


@dataclass(frozen=True)
class GGUFTensor:
    name: str
    shape: tuple[int, ...]  # GGUF order: fastest-varying dimension first
    ggml_type: int
    offset: int  # from the start of the data section


@dataclass(frozen=True)
class GGUFHeader:
    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: tuple[GGUFTensor, ...]
    data_start: int

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    def require(self, key: str) -> Any:
        if key not in self.metadata:
            raise GGUFError(f"{self.path}: GGUF metadata has no {key!r}")
        return self.metadata[key]


class _Cursor:
    def __init__(self, data: memoryview, path: Path) -> None:
        self.data = data
        self.position = 0
        self.path = path

    def take(self, size: int) -> memoryview:
        end = self.position + size
        if size < 0 or end > len(self.data):
            raise GGUFError(
                f"{self.path}: truncated GGUF header (needs {end:,} bytes, the file has "
                f"{len(self.data):,})"
            )
        chunk = self.data[self.position : end]
        self.position = end
        return chunk

    def scalar(self, kind: int) -> Any:
        fmt = _SCALARS[kind]
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        length = self.scalar(10)
        try:
            return bytes(self.take(length)).decode("utf-8")
        except UnicodeDecodeError:
            raise GGUFError(f"{self.path}: a GGUF string is not UTF-8") from None

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.scalar(kind)
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            element, count = self.scalar(4), self.scalar(10)
            if element in _NUMPY:
                size = np.dtype(_NUMPY[element]).itemsize
                return np.frombuffer(self.take(count * size), dtype=_NUMPY[element]).copy()
            if element == _STRING:
                return [self.string() for _ in range(count)]
            return [self.value(element) for _ in range(count)]
        raise GGUFError(f"{self.path}: unknown GGUF value type {kind} at byte {self.position}")


def _tensor_bytes(tensor: GGUFTensor, path: Path) -> int:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        block, block_bytes = GGML_QUANT_SIZES[GGMLQuantizationType(tensor.ggml_type)]
    except (ValueError, KeyError):
        raise GGUFError(
            f"{path}: tensor {tensor.name!r} has unknown ggml type {tensor.ggml_type}"
        ) from None
    elements = int(np.prod(tensor.shape, dtype=np.int64))
    return elements // block * block_bytes


def read_gguf_header(path: str | Path) -> GGUFHeader:
    """Parse and check the header of the GGUF file ``path`` (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise GGUFError(f"{path}: no such GGUF file")
    try:
        with open(path, "rb") as stream:
            size = path.stat().st_size
            # Headers are small next to the tensors; 64 MiB holds any vocabulary we know of.
            data = memoryview(stream.read(min(size, 64 << 20)))
    except OSError as error:
        raise GGUFError(f"{path}: cannot read ({error.strerror})") from None
    cursor = _Cursor(data, path)
    if bytes(cursor.take(4)) != _MAGIC:
        raise GGUFError(f"{path}: not a GGUF file (bad magic number)")
    version = cursor.scalar(4)
    if version not in _SUPPORTED_VERSIONS:
        raise GGUFError(f"{path}: GGUF version {version} is not supported (2 or 3)")
    tensor_count, kv_count = cursor.scalar(10), cursor.scalar(10)
    metadata: dict[str, Any] = {}
    for _ in range(kv_count):
        key = cursor.string()
        metadata[key] = cursor.value(cursor.scalar(4))
    tensors = []
    for _ in range(tensor_count):
        name = cursor.string()
        dims = tuple(int(cursor.scalar(10)) for _ in range(cursor.scalar(4)))
        tensors.append(GGUFTensor(name, dims, cursor.scalar(4), cursor.scalar(10)))
    alignment = int(metadata.get("general.alignment", 32))
    data_start = -(-cursor.position // alignment) * alignment
    for tensor in tensors:
        end = data_start + tensor.offset + _tensor_bytes(tensor, path)
        if end > size:
            raise GGUFError(
                f"{path}: truncated GGUF file: tensor {tensor.name!r} ends at byte {end:,}, "
                f"the file has {size:,}"
            )
    return GGUFHeader(path, version, metadata, tuple(tensors), data_start)
