"""Command-line inputs a fuzzing campaign found unhandled: each was an "internal error" (or,
for ``-o DIR/``, a regular file where a directory was named) and is now one located line,
exit status 1, and no file written.

The input is a small linalg module from the FileCheck suite (three weight forms), lowered
here by ``bitmod-opt`` where a test needs the lowered form.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
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
    assert "the launch's out 'result0' is not what segment @program[0] stores (nothing)" in err
    assert not (tmp_path / "o.st").exists()
    assert bitmod(["run-mlir", str(lowered), *argv]) == 0  # the intact program runs


# --- bitmod compile / run / report / bitmod-sim --------------------------------------------------

MODEL_FILE = """
import sys
import torch


def make():
    torch.manual_seed(0)
    return torch.nn.Linear(20, 8)


def exits():
    sys.exit(0)
"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("edge_bundle")
    (tmp / "model.py").write_text(MODEL_FILE)
    out = tmp / "bundle"
    argv = ["compile", f"{tmp / 'model.py'}:make", "-o", str(out), "--example-shape", "2x20"]
    assert bitmod([*argv, "--quiet"]) == 0
    return out


def _error(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert bitmod(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("bitmod: error: ") and "internal error" not in err, err
    return err


def test_compile_refusals(tmp_path: Path, capsys, bundle: Path) -> None:
    model = bundle.parent / "model.py"
    out = tmp_path / "out"
    err = _error(capsys, ["compile", f"{model}:exits", "-o", str(out), "--example-shape", "2x20"])
    assert f"{model}:exits() called sys.exit(0) instead of returning" in err
    err = _error(
        capsys, ["compile", f"{model}:make", "-o", str(out), "--example-shape", "100000000000x20"]
    )
    assert (
        "--example-shape '100000000000x20': cannot allocate an example of 2,000,000,000,000" in err
    )
    argv = ["compile", f"{model}:make", "-o", str(out), "--example-shape", "2x20"]
    err = _error(capsys, [*argv, "--device", "meta"])
    assert "device 'meta': the bit-exact kernels run on cpu or cuda, not 'meta'" in err
    assert not out.exists()


def test_run_on_the_meta_device_is_refused(capsys, bundle: Path) -> None:
    err = _error(capsys, ["run", str(bundle), "--device", "meta"])
    assert "device 'meta': the bit-exact kernels run on cpu or cuda" in err


@pytest.mark.parametrize("name", ["manifest.json", "report.json"])
@pytest.mark.parametrize("command", ["run", "report"])
def test_deeply_nested_json_is_a_clean_error(tmp_path, capsys, bundle, name, command) -> None:
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    (copy / name).write_text("[" * 100_000)
    err = _error(capsys, [command, str(copy)])
    # The manifest is read first and is itself damaged; a report.json edit is a checksum mismatch.
    expected = "not valid JSON (nested deeper" if name == "manifest.json" else "SHA-256 mismatch"
    assert expected in err


def test_deeply_nested_shape_table_for_bitmod_sim(tmp_path: Path, capsys) -> None:
    from bitmod.compiler.tools.bitmod_sim import main as bitmod_sim

    table = tmp_path / "deep.json"
    table.write_text("[" * 100_000)
    with pytest.raises(SystemExit) as exit_info:
        bitmod_sim(["--shapes", str(table)])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert f"--shapes: {table}: not an LLM shape table (nested deeper" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("edit", "value", "message"),
    [
        (("op", "output_shape"), [3, 25], "output shape [3, 25] does not follow from the input"),
        (("op", "output_shape"), [2, 9], "its program stores a 2x8 output, the op says 2x9"),
        (("weight_error",), "big", "weight_error 'big' is not {relative, max_abs}"),
        (("bits_per_weight",), "x", "bits_per_weight 'x' is not a number"),
        (
            ("plan", "dtype"),
            "int8",
            "plan int8 G=20 scale_bits=8 K=20, its program's weight is bitmod3",
        ),
        (("plan", "group_size"), 0, "is out of range"),
    ],
)
def test_consistent_but_wrong_manifest_edits(
    tmp_path, capsys, bundle, edit, value, message
) -> None:
    """Edits whose entry checksums were recomputed (a deliberate edit, or a tool that rewrote
    the manifest) pass the integrity check: the manifest is checked against itself and its
    programs instead (before: internal errors at run or report time)."""
    from bitmod.compiler.api import _entry_checksums

    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    node = manifest["ops"][0]
    for key in edit[:-1]:
        node = node[key]
    node[edit[-1]] = value
    manifest["entry_checksums"] = _entry_checksums(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    err = _error(capsys, ["run", str(copy)])
    assert "manifest.json: malformed manifest" in err and message in err


def _bitmod_into_dev_full(argv: list[str]) -> subprocess.CompletedProcess[str]:
    with open("/dev/full", "w") as full:
        return subprocess.run(
            [sys.executable, "-m", "bitmod.compiler.tools.bitmod_cli", *argv],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_a_full_standard_output_leaves_no_bundle_and_says_so(tmp_path: Path, bundle) -> None:
    out = tmp_path / "out"
    argv = ["compile", f"{bundle.parent / 'model.py'}:make", "-o", str(out)]
    result = _bitmod_into_dev_full([*argv, "--example-shape", "2x20"])
    assert (result.returncode, result.stderr) == (
        1,
        "bitmod: error: standard output: No space left on device\n",
    )
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_a_full_standard_output_leaves_no_run_mlir_outputs(tmp_path: Path, capsys) -> None:
    lowered = tmp_path / "low.mlir"
    assert bitmod_opt([str(SOURCE), LOWER, "-o", str(lowered)]) == 0
    save_file({"arg0": torch.randn(2, 4)}, tmp_path / "in.safetensors")
    outputs = tmp_path / "outputs.safetensors"
    argv = ["run-mlir", str(lowered), "--func", "forms", "-o", str(outputs)]
    result = _bitmod_into_dev_full([*argv, "--inputs", str(tmp_path / "in.safetensors")])
    assert result.returncode == 1
    assert result.stderr == "bitmod: error: standard output: No space left on device\n"
    assert not outputs.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "in.safetensors",
        "low.mlir",
        "low.params.safetensors",
    ]


@pytest.mark.parametrize("design", ["out", "out/rtl"])
def test_a_design_directory_overlapping_the_bundle_is_refused(
    tmp_path, capsys, bundle, design
) -> None:
    model = bundle.parent / "model.py"
    argv = ["compile", f"{model}:make", "-o", str(tmp_path / "out"), "--example-shape", "2x20"]
    err = _error(capsys, [*argv, "--emit-verilog", str(tmp_path / design)])
    assert f"--emit-verilog {tmp_path / design} and -o {tmp_path / 'out'} overlap" in err
    assert list(tmp_path.iterdir()) == []  # (before: an empty out/ was left behind)


@pytest.mark.parametrize(
    ("out", "message"),
    [("", "--out: the path is empty"), ("loop", "--out: loop: Too many levels of symbolic links")],
)
def test_bitmod_sim_out_that_names_no_directory(tmp_path: Path, capsys, out, message) -> None:
    from bitmod.compiler.tools.bitmod_sim import main as bitmod_sim

    os.symlink("loop2", tmp_path / "loop")
    os.symlink("loop", tmp_path / "loop2")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(SystemExit) as exit_info:
            bitmod_sim(["--models", "opt-1.3b", "--out", out])
    finally:
        os.chdir(cwd)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loop", "loop2"]


def test_a_value_used_before_its_definition(tmp_path: Path, capsys) -> None:
    """xDSL parses a forward reference in a function body without checking dominance; the
    runner then met an undefined value (a KeyError)."""
    source = tmp_path / "forward.mlir"
    source.write_text(
        "func.func @f(%x: tensor<2xf32>) -> tensor<2xf32> {\n"
        "  %a = arith.addf %b, %x : tensor<2xf32>\n"
        "  %b = arith.addf %x, %x : tensor<2xf32>\n"
        "  func.return %a : tensor<2xf32>\n"
        "}\n"
    )
    assert bitmod_opt([str(source), "-o", str(tmp_path / "out.mlir")]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"{source}:2:3: error: 'arith.addf' op operand #0 is used before it is defined "
        "(by the arith.addf at 3:3)\n"
    )
    assert not (tmp_path / "out.mlir").exists()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        # the first launch binds fc1.bias; its segment's drain no longer adds it (bias dropped)
        (lambda t: t.replace("bsisa.drain bias @d3", "bsisa.drain", 1), "the launch binds bias"),
        # the first segment loads no weight (was an IndexError)
        (
            lambda t: t.replace("      bsisa.ld.wgt @d1 col L0 k -\n", "", 1),
            "segment @program[0] reads 0 weights",
        ),
    ],
)
def test_a_launch_and_its_segment_disagree(tmp_path: Path, capsys, edit, message) -> None:
    lowered = tmp_path / "low.mlir"
    assert bitmod_opt([str(SOURCE), LOWER, "-o", str(lowered)]) == 0
    broken = tmp_path / "broken.mlir"
    broken.write_text(edit(lowered.read_text()))
    assert broken.read_text() != lowered.read_text()
    save_file({"arg0": torch.randn(2, 4)}, tmp_path / "in.safetensors")
    argv = ["--params", str(tmp_path / "low.params.safetensors"), "--func", "forms"]
    argv += ["--inputs", str(tmp_path / "in.safetensors")]
    capsys.readouterr()
    assert bitmod(["run-mlir", str(broken), *argv]) == 1
    err = capsys.readouterr().err
    assert f"{broken}:4:5: 'bsisa.launch' op module runner: " in err and message in err, err


def test_quantizing_again_warns_that_its_options_change_nothing(tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "q.mlir")
    twice = "--pass-pipeline=builtin.module(convert-linalg-to-bitmod,bitmod-quantize{dtype=int8},"
    assert bitmod_opt([str(SOURCE), twice + "bitmod-quantize{dtype=int4})", "-o", out]) == 0
    err = capsys.readouterr().err
    assert (
        "warning: 'bitmod.quantize' op bitmod-quantize: the weights are quantized already " in err
    )
    assert "(this one int8, G=4, scale-bits=8); dtype=int4 group-size=128" in err
    assert "int8" in Path(out).read_text() and "int4" not in Path(out).read_text()
    # the same options again: idempotent, silent (as mlir-opt passes are)
    assert bitmod_opt([str(SOURCE), twice + "bitmod-quantize{dtype=int8})", "-o", out]) == 0
    assert capsys.readouterr().err == ""


def test_a_bandwidth_too_small_to_model_says_what_is_allowed(tmp_path: Path, capsys) -> None:
    tile = "bitmod-tile{dram-bytes-per-cycle=1e-300}"
    pipeline = f"--pass-pipeline=builtin.module(convert-linalg-to-bitmod,bitmod-quantize,{tile})"
    assert bitmod_opt([str(SOURCE), pipeline, "-o", str(tmp_path / "t.mlir")]) == 1
    err = capsys.readouterr().err
    # (before: "must be positive, got 1e-300", of a positive value)
    assert "DRAM bandwidth must be at least 1/65536 bytes per cycle, got 1e-300" in err


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="needs /dev/null")
def test_run_mlir_params_that_is_not_a_regular_file(tmp_path: Path, capsys) -> None:
    lowered = tmp_path / "low.mlir"
    assert bitmod_opt([str(SOURCE), LOWER, "-o", str(lowered)]) == 0
    capsys.readouterr()
    assert bitmod(["run-mlir", str(lowered), "--func", "forms", "--params", "/dev/null"]) == 1
    assert "/dev/null: not a regular file (--params)" in capsys.readouterr().err
