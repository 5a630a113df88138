"""bitmod.runtime.storage.archive: the safetensors parameter archive, round trips, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from bitmod.runtime.formats import dequantize, quantize
from bitmod.runtime.storage.archive import ArchiveError, ParamArchive


def _weight(n: int = 4, k: int = 256, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed))


def _archive() -> ParamArchive:
    archive = ParamArchive(metadata={"model": "toy"})
    archive.put("bias", torch.arange(4, dtype=torch.float32))
    archive.put("w3", _weight())  # plain
    archive.put_quantized("layer0.w", quantize(_weight(seed=1), "bitmod3"))
    archive.put_quantized("layer1.w", quantize(_weight(seed=2), "int4_asym", scale_bits=None))
    archive.put_quantized("layer2.w", quantize(_weight(seed=3), "mxfp4"))
    return archive


def test_round_trip_plain_and_quantized(tmp_path: Path) -> None:
    archive = _archive()
    path = tmp_path / "params.safetensors"
    archive.save(path)
    loaded = ParamArchive.load(path)
    assert loaded.names() == ["bias", "layer0.w", "layer1.w", "layer2.w", "w3"]
    assert loaded.quantized_names() == ["layer0.w", "layer1.w", "layer2.w"]
    assert "layer0.w" in loaded and "bias" in loaded and "layer0.w.codes" in loaded
    assert "nothing" not in loaded and 3 not in loaded
    assert torch.equal(loaded.get("bias"), torch.arange(4, dtype=torch.float32))
    assert torch.equal(loaded.get("w3"), _weight())
    for name in loaded.quantized_names():
        a, b = archive.get_quantized(name), loaded.get_quantized(name)
        assert torch.equal(dequantize(a), dequantize(b))
        assert torch.equal(a.codes, b.codes) and torch.equal(a.sv_index, b.sv_index)
    assert loaded.quantized_metadata("layer0.w") == {
        "fmt": "bitmod3",
        "shape": [4, 256],
        "group_size": 128,
        "scale_bits": 8,
    }


def test_quantized_weights_are_stored_packed(tmp_path: Path) -> None:
    path = tmp_path / "params.safetensors"
    _archive().save(path)
    loaded = ParamArchive.load(path)
    # 4 × 256 three-bit codes = 384 bytes; 2 groups of 2-bit SV indices -> 1 byte per row
    assert loaded.get("layer0.w.codes").shape == (4, 96)
    assert loaded.get("layer0.w.sv").shape == (4, 1)
    assert loaded.get("layer1.w.zeros").shape == (4, 1)  # 2 four-bit zero points
    assert not loaded.is_quantized("w3") and loaded.is_quantized("layer2.w")


def test_missing_parameter_is_named(tmp_path: Path) -> None:
    path = tmp_path / "params.safetensors"
    _archive().save(path)
    loaded = ParamArchive.load(path)
    with pytest.raises(ArchiveError, match=rf"parameter 'layer9.w' not found in {path}"):
        loaded.get("layer9.w")
    with pytest.raises(ArchiveError, match=r"quantized parameter 'w3' not found"):
        loaded.get_quantized("w3")
    with pytest.raises(ArchiveError, match=r"'layer9.w' not found"):
        loaded.quantized_metadata("layer9.w")
    assert issubclass(ArchiveError, ValueError)


def test_nonexistent_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.safetensors"
    with pytest.raises(ArchiveError, match=rf"{path} does not exist"):
        ParamArchive.load(path)


def _corrupt(path: Path, data: bytes) -> None:
    path.write_bytes(data)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b[: len(b) // 2], id="truncated-data"),
        pytest.param(lambda b: b[:20], id="truncated-header"),
        pytest.param(lambda b: b[:4], id="shorter-than-length"),
        pytest.param(lambda b: b"", id="empty"),
        pytest.param(lambda b: b"not a safetensors file at all, just text" * 4, id="garbage"),
        pytest.param(lambda b: (10**9).to_bytes(8, "little") + b[8:], id="huge-header-length"),
        pytest.param(lambda b: b[:8] + b"\xff" * 16 + b[24:], id="broken-header-json"),
    ],
)
def test_corrupt_archive_names_the_path(tmp_path: Path, damage) -> None:
    good = tmp_path / "good.safetensors"
    _archive().save(good)
    bad = tmp_path / "bad.safetensors"
    _corrupt(bad, damage(good.read_bytes()))
    with pytest.raises(ArchiveError, match=rf"corrupt parameter archive {bad}"):
        ParamArchive.load(bad)


def _rewrite(path: Path, edit) -> None:
    """Load the raw tensors + metadata, let ``edit`` change them, write them back as-is."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as handle:
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
        metadata = handle.metadata()
    edit(tensors, metadata)
    save_file(tensors, str(path), metadata=metadata)


def test_packed_array_of_the_wrong_shape_names_the_parameter(tmp_path: Path) -> None:
    path = tmp_path / "params.safetensors"
    _archive().save(path)
    _rewrite(path, lambda t, m: t.update({"layer0.w.codes": t["layer0.w.codes"][:, 1:].clone()}))
    with pytest.raises(ArchiveError, match=rf"'layer0.w' in {path}: packed array 'codes'"):
        ParamArchive.load(path)


def test_missing_packed_part_names_the_parameter(tmp_path: Path) -> None:
    path = tmp_path / "params.safetensors"
    _archive().save(path)
    _rewrite(path, lambda t, m: t.pop("layer1.w.zeros"))
    with pytest.raises(ArchiveError, match=r"'layer1.w' .*missing packed array 'zeros'"):
        ParamArchive.load(path)


def test_bad_quantized_metadata_names_the_parameter(tmp_path: Path) -> None:
    path = tmp_path / "params.safetensors"
    _archive().save(path)
    _rewrite(path, lambda t, m: m.update({"bitmod.q.layer2.w": "{not json"}))
    with pytest.raises(ArchiveError, match=r"'layer2.w'"):
        ParamArchive.load(path)
    _rewrite(
        path,
        lambda t, m: m.update(
            {
                "bitmod.q.layer2.w": json.dumps(
                    {"fmt": "mxfp9", "shape": [4, 256], "group_size": 32, "scale_bits": None}
                )
            }
        ),
    )
    with pytest.raises(ArchiveError, match=r"'layer2.w'.*unknown data type 'mxfp9'"):
        ParamArchive.load(path)


def test_failed_save_leaves_no_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "params.safetensors"
    archive = _archive()
    archive.save(path)
    before = path.read_bytes()
    broken = _archive()
    shared = torch.zeros(8)
    broken.put("a", shared)
    broken.put("b", shared)  # safetensors refuses tensors that share memory
    with pytest.raises(RuntimeError):
        broken.save(path)
    assert path.read_bytes() == before  # the old archive is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.safetensors"]  # no temp file
    with pytest.raises(RuntimeError):
        broken.save(tmp_path / "new.safetensors")
    assert not (tmp_path / "new.safetensors").exists()


def test_put_quantized_replaces_all_parts(tmp_path: Path) -> None:
    archive = ParamArchive()
    archive.put_quantized("w", quantize(_weight(), "int4_asym"))  # has .zeros
    archive.put_quantized("w", quantize(_weight(), "bitmod3"))  # has .sv, no .zeros
    path = tmp_path / "p.safetensors"
    archive.save(path)
    loaded = ParamArchive.load(path)
    assert "w.zeros" not in loaded and loaded.get_quantized("w").fmt == "bitmod3"


def test_a_name_both_plain_and_quantized_is_listed_once() -> None:
    archive = ParamArchive()
    weight = torch.randn(4, 128)
    archive.put("fc1.weight", weight)
    archive.put_quantized("fc1.weight", quantize(weight, "bitmod3"))
    assert archive.names() == ["fc1.weight"]


def test_the_same_archive_saves_to_the_same_bytes(tmp_path: Path) -> None:
    """safetensors writes its metadata map in hash order; the archive's header is canonical, so
    builds are reproducible and the SHA-256 that pins an archive in the IR is stable."""
    digests = set()
    for i in range(6):
        path = tmp_path / f"params{i}.safetensors"
        _archive().save(path)
        data = path.read_bytes()
        digests.add(data)
        length = int.from_bytes(data[:8], "little")
        assert length % 8 == 0
        header = json.loads(data[8 : 8 + length])
        assert list(header) == sorted(header)
        assert list(header["__metadata__"]) == sorted(header["__metadata__"])
    assert len(digests) == 1
    loaded = ParamArchive.load(tmp_path / "params0.safetensors")
    assert torch.equal(loaded.get("w3"), _weight())


def test_a_scalar_parameter_round_trips_and_is_checked(tmp_path: Path) -> None:
    """A 0-d tensor (``nn.Parameter(torch.tensor(0.5))``) has no dimension to view as bytes:
    it is stored, checksummed and verified like any other; a flipped bit in it is caught."""
    archive = ParamArchive()
    archive.put("scale", torch.tensor(0.5))
    path = tmp_path / "params.safetensors"
    archive.save(path)
    loaded = ParamArchive.load(path)
    assert loaded.get("scale").shape == () and float(loaded.get("scale")) == 0.5
    data = bytearray(path.read_bytes())
    data[data.rindex(torch.tensor(0.5).numpy().tobytes()) + 3] ^= 0x01  # the value's sign bit
    path.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="scale"):
        ParamArchive.load(path)
