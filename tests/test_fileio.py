"""runtime.storage.fileio: staged writes, files that belong together, one-step exchange."""

from __future__ import annotations

import ctypes
import os
import socket
from pathlib import Path

import pytest
from bitmod.runtime.storage import fileio


def test_files_written_together_change_none_when_one_fails(tmp_path: Path) -> None:
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("old a")

    def broken(path: Path) -> None:
        path.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        fileio.write_together([(first, lambda p: p.write_text("new a")), (second, broken)])
    assert first.read_text() == "old a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    fileio.write_together(
        [(first, lambda p: p.write_text("new a")), (second, lambda p: p.write_text("b"))]
    )
    assert (first.read_text(), second.read_text()) == ("new a", "b")


def test_paths_that_are_not_regular_files(tmp_path: Path) -> None:
    listening = socket.socket(socket.AF_UNIX)
    sock = tmp_path / "s"
    listening.bind(str(sock))
    try:
        with pytest.raises(OSError, match="Neither a regular file nor a character device or FIFO"):
            fileio.write_atomically(sock, lambda p: p.write_text("x"))
    finally:
        listening.close()
    with pytest.raises(IsADirectoryError):
        fileio.write_atomically(tmp_path, lambda p: p.write_text("x"))
    dangling = tmp_path / "link"
    dangling.symlink_to("made/by/the/write.txt")
    fileio.write_atomically(dangling, lambda p: p.write_text("through the link"))
    assert dangling.is_symlink() and dangling.read_text() == "through the link"


@pytest.mark.parametrize("has_renameat2", [True, False])
def test_exchange_swaps_two_directories(tmp_path: Path, monkeypatch, has_renameat2: bool) -> None:
    new, old = tmp_path / "new", tmp_path / "bundle"
    new.mkdir()
    (new / "v").write_text("2")
    old.mkdir()
    (old / "v").write_text("1")
    if not has_renameat2:

        class NoRenameat2:
            def __init__(self, *args: object, **kwargs: object) -> None:
                pass

        monkeypatch.setattr(ctypes, "CDLL", NoRenameat2)
    fileio.exchange(new, old)
    assert ((old / "v").read_text(), (new / "v").read_text()) == ("2", "1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "new"]


def test_a_directory_beside_gets_the_mkdir_mode(tmp_path: Path) -> None:
    made = fileio.make_directory_beside(tmp_path / "deep" / "bundle")
    umask = os.umask(0)
    os.umask(umask)
    assert made.parent == tmp_path / "deep" and made.name.startswith(".bundle.bitmod-tmp.")
    assert made.stat().st_mode & 0o777 == 0o777 & ~umask
