"""Command-line inputs a fuzzing campaign found unhandled: each was an "internal error" (or,
for ``-o DIR/``, a regular file where a directory was named) and is now one located line,
exit status 1, and no file written.

The input is a small linalg module from the FileCheck suite (three weight forms), lowered
here by ``bitmod-opt`` where a test needs the lowered form.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from bitmod.compiler.tools.bitmod_cli import main as bitmod
from bitmod.compiler.tools.bitmod_opt import main as bitmod_opt
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "tests" / "filecheck" / "convert-linalg-to-bitmod" / "weight-forms.mlir"
LOWER = (
    "--pass-pipeline=builtin.module(convert-linalg-to-bitmod,bitmod-quantize,bitmod-tile,"
    "bitmod-lower-to-isa)"
)
CONVERT = "--pass-pipeline=builtin.module(convert-linalg-to-bitmod)"


def _files(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*")}


def test_a_leading_byte_order_mark_is_skipped(tmp_path: Path, capsys) -> None:
    plain, marked = tmp_path / "plain.mlir", tmp_path / "marked.mlir"
    plain.write_text(SOURCE.read_text())
    marked.write_bytes(b"\xef\xbb\xbf" + SOURCE.read_bytes())
    assert bitmod_opt([str(plain), CONVERT, "-o", str(tmp_path / "a.mlir")]) == 0
    assert bitmod_opt([str(marked), CONVERT, "-o", str(tmp_path / "b.mlir")]) == 0
    a = (tmp_path / "a.mlir").read_text()
    assert a == (tmp_path / "b.mlir").read_text().replace("b.params", "a.params")
    capsys.readouterr()


def test_a_bad_first_token_is_a_located_error(tmp_path: Path, capsys) -> None:
    source = tmp_path / "bad.mlir"
    source.write_text("$$ not mlir\n")
    assert bitmod_opt([str(source)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{source}:1:1: error: Unexpected character") and "internal" not in err


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("", "-o '': the path is empty"),
        ("loop", "-o 'loop': Too many levels of symbolic links"),
        ("newdir/", "-o 'newdir/': ends in '/', which names a directory"),
    ],
)
def test_output_paths_that_cannot_name_a_file(tmp_path: Path, capsys, output, message) -> None:
    (tmp_path / "in.mlir").write_text(SOURCE.read_text())
    os.symlink("loop2", tmp_path / "loop")
    os.symlink("loop", tmp_path / "loop2")
    before = _files(tmp_path)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(SystemExit) as exit_info:
            bitmod_opt(["in.mlir", CONVERT, "-o", output])
    finally:
        os.chdir(cwd)
    assert exit_info.value.code == 1
    assert message in capsys.readouterr().err
    assert _files(tmp_path) == before


def test_verilog_into_an_unwritable_place_names_it(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("")
    status = bitmod_opt([str(SOURCE), LOWER, "--emit=verilog", "-o", str(blocker / "rtl")])
    err = capsys.readouterr().err
    assert status == 1
    assert f"--emit=verilog: cannot write {blocker / 'rtl'}: {blocker}: Not a directory" in err
    assert _files(tmp_path) == {"afile"}


def test_a_launch_whose_output_no_store_writes(tmp_path: Path, capsys) -> None:
    lowered = tmp_path / "low.mlir"
    assert bitmod_opt([str(SOURCE), LOWER, "-o", str(lowered)]) == 0
    text = lowered.read_text()
    assert "bsisa.st.out @d2 " in text
    broken = tmp_path / "nostore.mlir"
    broken.write_text("\n".join(line for line in text.splitlines() if "bsisa.st.out" not in line))
    save_file({"arg0": torch.randn(2, 4)}, tmp_path / "in.safetensors")
    argv = ["--params", str(tmp_path / "low.params.safetensors"), "--inputs"]
    argv += [str(tmp_path / "in.safetensors"), "--func", "forms", "-o", str(tmp_path / "o.st")]
    capsys.readouterr()
    assert bitmod(["run-mlir", str(broken), *argv]) == 1
    err = capsys.readouterr().err
    launch_line = next(i for i, line in enumerate(text.splitlines(), 1) if "bsisa.launch" in line)
    assert f"{broken}:{launch_line}:5: 'bsisa.launch' op" in err
    assert "output 'result0' is never stored: no st.out of the program writes it" in err
    assert not (tmp_path / "o.st").exists()
    assert bitmod(["run-mlir", str(lowered), *argv]) == 0  # the intact program runs
