"""Archive integrity: flipped bits, swapped same-shape tensors and edited metadata are found on
load, naming the parameter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from bitmod.runtime.formats import quantize
from bitmod.runtime.storage.archive import ArchiveError, ParamArchive
from safetensors import safe_open
from safetensors.torch import save_file


def _saved(tmp_path: Path) -> Path:
    archive = ParamArchive()
    generator = torch.Generator().manual_seed(0)
    archive.put("a.bias", torch.randn(16, generator=generator))
    archive.put("b.bias", torch.randn(16, generator=generator))
    archive.put_quantized(
        "fc1.weight", quantize(torch.randn(16, 256, generator=generator), "bitmod3")
    )
    archive.put_quantized(
        "fc2.weight", quantize(torch.randn(16, 256, generator=generator), "bitmod3")
    )
    path = tmp_path / "params.safetensors"
    archive.save(path)
    return path


def _rewrite(path: Path, edit) -> None:
    with safe_open(str(path), "pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        metadata = handle.metadata()
    edit(tensors, metadata)
    save_file(tensors, str(path), metadata=metadata)


def test_a_saved_archive_loads_and_checks(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    loaded = ParamArchive.load(path)
    with safe_open(str(path), "pt") as handle:
        recorded = json.loads(handle.metadata()["bitmod.checksums"])
    assert recorded == loaded.checksums() and sorted(recorded) == loaded.names()


def test_a_flipped_bit_in_packed_codes(tmp_path: Path) -> None:
    path = _saved(tmp_path)

    def flip(tensors, metadata):
        codes = tensors["fc2.weight.codes"].clone()
        codes.view(-1)[37] ^= 0x04
        tensors["fc2.weight.codes"] = codes

    _rewrite(path, flip)
    with pytest.raises(ArchiveError, match=r"parameter 'fc2.weight' .* is damaged"):
        ParamArchive.load(path)


def test_swapped_same_shape_tensors(tmp_path: Path) -> None:
    path = _saved(tmp_path)

    def swap(tensors, metadata):
        tensors["a.bias"], tensors["b.bias"] = tensors["b.bias"], tensors["a.bias"]

    _rewrite(path, swap)
    with pytest.raises(ArchiveError, match=r"parameter 'a.bias' .* is damaged"):
        ParamArchive.load(path)


def test_edited_format_entry(tmp_path: Path) -> None:
    """int3 has bitmod3's code width but no SV index: the edited entry would unpack without
    the index array, so only the checksum tells that the metadata is not what was saved."""
    path = _saved(tmp_path)

    def edit(tensors, metadata):
        meta = json.loads(metadata["bitmod.q.fc1.weight"])
        meta["fmt"] = "int3"
        metadata["bitmod.q.fc1.weight"] = json.dumps(meta)

    _rewrite(path, edit)
    with pytest.raises(ArchiveError, match=r"parameter 'fc1.weight' .* is damaged"):
        ParamArchive.load(path)


def test_removed_and_added_parameters(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    _rewrite(path, lambda tensors, metadata: tensors.pop("b.bias"))
    with pytest.raises(ArchiveError, match=r"parameter 'b.bias' is missing"):
        ParamArchive.load(path)
    path = _saved(tmp_path)
    _rewrite(path, lambda tensors, metadata: tensors.update({"extra": torch.zeros(3)}))
    with pytest.raises(ArchiveError, match=r"parameter 'extra' .* has no recorded checksum"):
        ParamArchive.load(path)


def test_a_foreign_safetensors_file_is_read_unchecked(tmp_path: Path) -> None:
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.ones(2, 2)}, str(path))
    assert ParamArchive.load(path).get("w").tolist() == [[1.0, 1.0], [1.0, 1.0]]


def test_bitmod_metadata_without_its_checksum_table_is_damage(tmp_path) -> None:
    import struct

    archive = ParamArchive()
    archive.put_quantized("w", quantize(torch.randn(8, 64), "bitmod3", 32))
    path = tmp_path / "a.safetensors"
    archive.save(path)
    data = path.read_bytes()
    (size,) = struct.unpack_from("<Q", data)
    header = json.loads(data[8 : 8 + size])
    header["__metadata__"]["bitmod.checksumz"] = header["__metadata__"].pop("bitmod.checksums")
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + size :])
    with pytest.raises(ArchiveError, match="bitmod metadata but no checksum table"):
        ParamArchive.load(path)
