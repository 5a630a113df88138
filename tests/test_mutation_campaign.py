"""A seeded mutation campaign over program binaries, assembly texts and parameter archives.

Every mutant of a compiled matmul's binary, of its printed assembly and of its parameter archive
must either be refused with one of the project's errors (``IsaError``, ``MachineError``,
``ArchiveError``) or run to exactly the original outputs (a mutation of bytes that carry no
meaning, such as padding). A mutant that runs to a different result is a *silent change*, any
other exception a *foreign exception*: the campaign asserts there are none of either.

Mutations (seeded, one per mutant): binaries — flips of 1–3 bits, a random byte, a truncation,
an inserted or deleted byte, two 8-byte words swapped; assembly — a character replaced,
deleted or inserted, a digit changed, a line deleted, duplicated or swapped with another;
archives — the same byte mutations of the safetensors file, and two tensors of one shape
swapped in its header. ``BITMOD_MUTANTS=N`` sets the mutants per kind (CI: 120); the counts
are printed (``pytest -s``) for the record.
"""

from __future__ import annotations

import json
import os
import struct
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from bitmod.runtime.arch.hwconfig import HardwareConfig
from bitmod.runtime.arch.nest import matmul_program
from bitmod.runtime.emulator.machine import Machine, MachineError
from bitmod.runtime.formats import quantize
from bitmod.runtime.isa import IsaError, assemble
from bitmod.runtime.storage.archive import ArchiveError, ParamArchive

MUTANTS = int(os.environ.get("BITMOD_MUTANTS", "120"))
PROJECT_ERRORS = (IsaError, MachineError, ArchiveError)
CONFIG = HardwareConfig(rows=4, cols=4, tiles=2)


def _case(tmp_path: Path):
    generator = torch.Generator().manual_seed(0)
    m, n, k = 8, 24, 96  # K = 96 at G = 64: a ragged last group
    archive = ParamArchive()
    archive.put_quantized("w1", quantize(torch.randn(n, k, generator=generator), "bitmod3", 64))
    archive.put_quantized("w2", quantize(torch.randn(n, k, generator=generator), "bitmod3", 64))
    archive.put("b", torch.randn(n, generator=generator).to(torch.float16))
    program = matmul_program(
        act="x",
        weight="w1",
        out="y",
        m=m,
        n=n,
        k=k,
        fmt="bitmod3",
        group_size=64,
        config=CONFIG,
        bias="b",
    )
    x = torch.randn(m, k, generator=generator).to(torch.float16).numpy()
    path = tmp_path / "params.safetensors"
    archive.save(path)  # canonical header: the mutants hit the same bytes in every run
    return program, path, {"x": x}


def _outputs(program, archive, inputs) -> dict[str, np.ndarray]:
    return Machine(CONFIG).run(program, archive, inputs).outputs


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(
        np.array_equal(a[key].view(np.uint16), b[key].view(np.uint16)) for key in a
    )


def _byte_mutant(data: bytes, rng: np.random.Generator) -> bytes:
    out = bytearray(data)
    kind = rng.integers(6)
    where = int(rng.integers(len(out)))
    if kind == 0:
        for _ in range(int(rng.integers(1, 4))):
            bit = int(rng.integers(len(out) * 8))
            out[bit // 8] ^= 1 << (bit % 8)
    elif kind == 1:
        out[where] = (out[where] + int(rng.integers(1, 256))) % 256
    elif kind == 2:
        del out[where:]
    elif kind == 3:
        out.insert(where, int(rng.integers(256)))
    elif kind == 4:
        del out[where]
    else:
        a, b = (int(i) for i in rng.integers(0, len(out) // 8, 2))
        out[a * 8 : a * 8 + 8], out[b * 8 : b * 8 + 8] = (
            out[b * 8 : b * 8 + 8],
            out[a * 8 : a * 8 + 8],
        )
    return bytes(out)


def _text_mutant(text: str, rng: np.random.Generator) -> str:
    lines = text.splitlines()
    kind = rng.integers(7)
    if kind >= 4:
        i, j = (int(v) for v in rng.integers(0, len(lines), 2))
        if kind == 4:
            del lines[i]
        elif kind == 5:
            lines.insert(i, lines[i])
        else:
            lines[i], lines[j] = lines[j], lines[i]
        return "\n".join(lines) + "\n"
    chars = list(text)
    where = int(rng.integers(len(chars)))
    if kind == 0:
        chars[where] = chr(int(rng.integers(32, 127)))
    elif kind == 1:
        del chars[where]
    elif kind == 2:
        chars.insert(where, chr(int(rng.integers(32, 127))))
    else:
        digits = [i for i, c in enumerate(chars) if c.isdigit()]
        position = digits[int(rng.integers(len(digits)))]
        chars[position] = str((int(chars[position]) + int(rng.integers(1, 10))) % 10)
    return "".join(chars)


def _header_swap(data: bytes) -> bytes:
    """Two tensors of one shape and dtype trade places (their header offsets swapped)."""
    (size,) = struct.unpack_from("<Q", data)
    header = json.loads(data[8 : 8 + size])
    by_shape: dict[tuple, list[str]] = {}
    for name, entry in header.items():
        if name != "__metadata__":
            by_shape.setdefault((entry["dtype"], tuple(entry["shape"])), []).append(name)
    a, b = next(names for names in by_shape.values() if len(names) >= 2)[:2]
    header[a]["data_offsets"], header[b]["data_offsets"] = (
        header[b]["data_offsets"],
        header[a]["data_offsets"],
    )
    text = json.dumps(header).encode()
    text += b" " * (size - len(text)) if len(text) <= size else b""
    return struct.pack("<Q", len(text)) + text + data[8 + size :]


def _classify(run: Callable[[], dict[str, np.ndarray]], expected, counts: Counter, log: list):
    try:
        outputs = run()
    except PROJECT_ERRORS:
        counts["refused"] += 1
        return
    except Exception as error:  # noqa: BLE001 - a foreign exception is what we count
        counts["foreign exception"] += 1
        log.append(f"{type(error).__name__}: {error}")
        return
    if _same(outputs, expected):
        counts["same result"] += 1
    else:
        counts["silent change"] += 1
        log.append("silent change")


def test_mutants_are_refused_or_harmless(tmp_path) -> None:
    program, archive_path, inputs = _case(tmp_path)
    archive = ParamArchive.load(archive_path)
    expected = _outputs(program, archive, inputs)
    rng = np.random.default_rng(2026)
    binary, text, archive_bytes = program.encode(), program.to_asm(), archive_path.read_bytes()
    counts: dict[str, Counter] = {kind: Counter() for kind in ("binary", "assembly", "archive")}
    log: list[str] = []
    for _ in range(MUTANTS):
        mutant = _byte_mutant(binary, rng)
        _classify(lambda m=mutant: _outputs(m, archive, inputs), expected, counts["binary"], log)
        source = _text_mutant(text, rng)
        _classify(
            lambda s=source: _outputs(assemble(s), archive, inputs),
            expected,
            counts["assembly"],
            log,
        )
        damaged = tmp_path / "mutant.safetensors"
        damaged.write_bytes(_byte_mutant(archive_bytes, rng))
        _classify(
            lambda d=damaged: _outputs(program, ParamArchive.load(d), inputs),
            expected,
            counts["archive"],
            log,
        )
    damaged.write_bytes(_header_swap(archive_bytes))
    _classify(
        lambda: _outputs(program, ParamArchive.load(damaged), inputs),
        expected,
        counts["archive"],
        log,
    )
    print("mutation campaign:", {kind: dict(c) for kind, c in counts.items()})
    for kind, c in counts.items():
        assert c["silent change"] == 0 and c["foreign exception"] == 0, (kind, c, log[:5])
        assert c["refused"] > 0.8 * MUTANTS, (kind, c)


@pytest.mark.parametrize("edit", [("value=3", "value=5"), ("drain bias=d3", "drain bias=-")])
def test_an_edited_assembly_text_is_refused_by_its_checksum(tmp_path, edit) -> None:
    program, _, _ = _case(tmp_path)
    text = program.to_asm()
    assert edit[0] in text
    with pytest.raises(IsaError, match=r"\.checksum 0x[0-9a-f]{8} does not match the program"):
        assemble(text.replace(edit[0], edit[1], 1))
    edited = "\n".join(line for line in text.splitlines() if not line.startswith(".checksum"))
    assemble(edited.replace(edit[0], edit[1], 1))  # without the line: an edited program
