"""The ``bitmod`` console command: compile, run, report, and its one-line errors."""

from __future__ import annotations

import json
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bitmod.compiler.api import compile, load
from bitmod.compiler.tools.bitmod_cli import main

ROOT = Path(__file__).resolve().parents[1]
GPT = ROOT / "examples" / "gpt" / "model.py"

MODEL_FILE = """
import torch
from torch import nn

from helper import WIDTH  # a neighbour module: the model's folder is importable


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(WIDTH, 24)
        self.fc2 = nn.Linear(24, 8, bias=False)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(WIDTH, 4)

    def forward(self, x):
        if x.sum() > 0:
            return self.fc(x)
        return x


def make():
    torch.manual_seed(0)
    return Tiny()


def branchy():
    return Branchy()


def inputs():
    return torch.randn(3, WIDTH, generator=torch.Generator().manual_seed(5))


def broken():
    raise RuntimeError("factory exploded")


def not_a_model():
    return 42
"""


@pytest.fixture()
def model_file(tmp_path: Path) -> Path:
    (tmp_path / "helper.py").write_text("WIDTH = 20\n")
    path = tmp_path / "tiny.py"
    path.write_text(MODEL_FILE)
    return path


def test_compile_run_report(tmp_path, model_file, capsys) -> None:
    out = tmp_path / "bundle"
    status = main(
        [
            "compile",
            f"{model_file}:make",
            "--example",
            "inputs",
            "--dtype",
            "bitmod4",
            "--layer",
            "fc2=int8",
            "--no-progress",
            "-o",
            str(out),
        ]
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert "fc1" in printed and "bitmod: wrote" in printed
    # The bundle is what the Python API gives for the same model and inputs.
    sys.path.insert(0, str(model_file.parent))
    try:
        namespace = runpy.run_path(str(model_file))
    finally:
        sys.path.remove(str(model_file.parent))
    x = namespace["inputs"]()
    expected = compile(namespace["make"](), (x,), dtype="bitmod4", layers={"fc2": "int8"})(x)
    loaded = load(out)
    assert torch.equal(loaded(x), expected)
    dtypes = {layer["name"]: layer["dtype"] for layer in loaded.report().layers}
    assert dtypes == {"fc1": "bitmod4", "fc2": "int8"}

    assert main(["report", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["settings"]["dtype"] == "bitmod4" and len(report["layers"]) == 2
    assert main(["run", str(out)]) == 0
    assert "saved example inputs" in capsys.readouterr().out


def test_max_block_rows_builds_the_variant_machine(tmp_path, model_file, capsys) -> None:
    """40 rows in blocks of at most 8 (one pass) instead of 40: the same bits, the variant's
    hardware in the report, and more cycles (five row blocks re-read the weights)."""
    reports, outputs = {}, {}
    x = torch.randn(40, 20, generator=torch.Generator().manual_seed(3))
    for depth in (None, 8):
        out = tmp_path / f"bundle{depth}"
        extra = [] if depth is None else ["--max-block-rows", str(depth)]
        argv = ["compile", f"{model_file}:make", "--example-shape", "40x20", "--no-progress"]
        assert main([*argv, *extra, "-o", str(out)]) == 0
        capsys.readouterr()
        assert main(["report", str(out), "--json"]) == 0
        reports[depth] = json.loads(capsys.readouterr().out)
        outputs[depth] = load(out)(x)
    assert reports[None]["hardware"]["max_block_rows"] == 128
    assert reports[8]["hardware"]["max_block_rows"] == 8
    assert torch.equal(outputs[None], outputs[8])
    assert reports[8]["cycles"] > reports[None]["cycles"]


def test_gpt_from_shapes(tmp_path, capsys) -> None:
    out = tmp_path / "gpt"
    status = main(
        [
            "compile",
            f"{GPT}:gpt",
            "--example-shape",
            "1x8:int64",
            "--int-range",
            "0:256",
            "--dtype",
            "bitmod3",
            "--quiet",
            "-o",
            str(out),
        ]
    )
    assert status == 0, capsys.readouterr().err
    compiled = load(out)
    (tokens,) = compiled.example_inputs
    assert tokens.shape == (1, 8) and tokens.dtype == torch.int64
    assert int(tokens.max()) < 256 and int(tokens.max()) > 2  # drawn from --int-range
    assert compiled(tokens).shape == (1, 8, 256)
    assert len(compiled.ops) == 13


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{dir}/missing.py:make", "--example-shape", "2x20"], "missing.py: no such file"),
        (["{model}", "--example-shape", "2x20"], "expected MODEL.py:FACTORY"),
        (
            ["{model}:nope", "--example-shape", "2x20"],
            "has no function 'nope' (it defines: Branchy, Tiny, branchy, broken, inputs, make",
        ),
        (["{model}:broken", "--example-shape", "2x20"], "broken() failed: RuntimeError"),
        (["{model}:not_a_model", "--example-shape", "2x20"], "returned a int, not a torch"),
        (["{model}:make", "--example-shape", "2xa"], "expected positive dimensions"),
        (["{model}:make", "--example-shape", "2x20:complex"], "unknown dtype 'complex'"),
        (["{model}:make", "--example-shape", "2x20", "--int-range", "5:1"], "LO < HI"),
        (
            ["{model}:make", "--example-shape", "2x20", "--dtype", "bitmod9"],
            "unknown data type 'bitmod9'",
        ),
        (["{model}:make", "--example-shape", "2x20", "--layer", "fc1"], "expected NAME=DTYPE"),
        (
            [
                "{model}:make",
                "--example-shape",
                "2x20",
                "--layer",
                "fc1=int8",
                "--layer",
                "fc1=int4",
            ],
            "--layer: 'fc1' given twice",
        ),
        (["{model}:make", "--example-shape", "2x20", "--layer", "fc9=int8"], "match no layer"),
        (["{model}:make", "--example-shape", "2x20", "--tiles", "0"], "tiles must be"),
        (
            ["{model}:make", "--example-shape", "2x20", "--max-block-rows", "4"],
            "HardwareConfig.max_block_rows: 4 rows hold less than one pass of the 8 PE rows",
        ),
        (
            ["{model}:branchy", "--example-shape", "2x20"],
            "unsupported construct in the top-level module (Branchy)",
        ),
        (["{model}:make", "--example-shape", "2x21"], "cannot trace Tiny"),
    ],
)
def test_errors_are_one_line(tmp_path, model_file, capsys, argv, message) -> None:
    out = tmp_path / "out"
    argv = [a.format(dir=tmp_path, model=model_file) for a in argv]
    assert main(["compile", *argv, "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bitmod: error: ") and err.count("\n") == 1, err
    assert message in err
    assert not out.exists()


def test_refuses_to_overwrite_a_foreign_directory(tmp_path, model_file, capsys) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "data.txt").write_text("keep")
    assert main(["compile", f"{model_file}:make", "--example", "inputs", "-o", str(out)]) == 1
    assert "not a bitmod bundle" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["data.txt"]


def test_report_of_a_non_bundle(tmp_path, capsys) -> None:
    assert main(["report", str(tmp_path)]) == 1
    assert "report.json: no such file" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "nothing")]) == 1
    assert "is not a directory" in capsys.readouterr().err


def test_console_script(tmp_path) -> None:
    script = shutil.which("bitmod") or str(Path(sys.executable).with_name("bitmod"))
    if not Path(script).exists():
        pytest.fail("the bitmod console script is not installed: pip install -e .")
    result = subprocess.run(
        [
            script,
            "compile",
            str(tmp_path / "none.py:f"),
            "--example-shape",
            "1",
            "-o",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr == f"bitmod: error: {tmp_path / 'none.py'}: no such file\n"
    usage = subprocess.run([script, "compile"], capture_output=True, text=True)
    assert usage.returncode == 2 and "MODEL.py:FACTORY" in usage.stderr


class Killed(BaseException):
    """Stands for a kill signal: nothing in the tool catches it (it is no Exception)."""


# --- files and streams ---------------------------------------------------------------------


def _compile_tiny(model_file: Path, out: Path) -> list[str]:
    return ["compile", f"{model_file}:make", "--example", "inputs", "--quiet", "-o", str(out)]


def test_bundle_modes_follow_the_umask(tmp_path, model_file, capsys) -> None:
    import os

    out = tmp_path / "bundle"
    assert main(_compile_tiny(model_file, out)) == 0
    umask = os.umask(0)
    os.umask(umask)
    modes = {
        str(path.relative_to(tmp_path)): path.stat().st_mode & 0o777
        for path in [out, *out.rglob("*")]
    }
    expected = {name: (0o777 if (tmp_path / name).is_dir() else 0o666) & ~umask for name in modes}
    assert modes == expected  # the directory was 0700 and inputs.safetensors 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "helper.py", "tiny.py"]


def test_replacing_a_bundle_is_one_step(tmp_path, model_file, capsys, monkeypatch) -> None:
    import os

    out = tmp_path / "bundle"
    assert main(_compile_tiny(model_file, out)) == 0
    first = (out / "manifest.json").read_text()
    real_replace = os.replace

    def killed_after_moving_the_old_bundle_away(source: object, destination: object) -> None:
        real_replace(source, destination)
        if Path(source) == out:  # the old bundle moved aside, the new one not yet in place
            raise Killed

    monkeypatch.setattr(os, "replace", killed_after_moving_the_old_bundle_away)
    argv = _compile_tiny(model_file, out)
    argv[argv.index("--example") : argv.index("--example") + 2] = ["--example-shape", "5x20"]
    assert main(argv) == 0
    monkeypatch.undo()
    assert (out / "manifest.json").read_text() != first
    assert load(out).example_inputs[0].shape == (5, 20)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "helper.py", "tiny.py"]


def test_unwritable_output_directory_is_one_error(
    tmp_path, model_file, capsys, monkeypatch
) -> None:
    import tempfile

    out = tmp_path / "ro" / "bundle"
    out.parent.mkdir()
    real_mkdtemp = tempfile.mkdtemp

    def read_only(*args: object, **kwargs: object) -> str:
        if Path(str(kwargs.get("dir", ""))) == out.parent:
            raise PermissionError(13, "Permission denied", str(out.parent))
        return real_mkdtemp(*args, **kwargs)  # type: ignore[arg-type]

    # (tests run as root, for whom a chmod 555 directory is still writable)
    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    assert main(_compile_tiny(model_file, out)) == 1
    err = capsys.readouterr().err
    assert err == f"bitmod: error: cannot write bundle {out}: Permission denied ({out.parent})\n"
    assert list(out.parent.iterdir()) == []


def test_a_wrong_example_shape_prints_one_line(tmp_path, model_file) -> None:
    # torch's tracer logs a traceback of the shape error before raising it, through a log
    # handler made when torch was imported: only a fresh process shows what a terminal would.
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "bitmod.compiler.tools.bitmod_cli", "compile"]
        + [f"{model_file}:make", "--example-shape", "2x21", "-o", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("bitmod: error: cannot trace Tiny")
    assert not out.exists()


REPORT = {
    "model": "Tiny",
    "settings": {"dtype": "int8", "kv_dtype": "int8", "group_size": 32},
    "hardware": {"tiles": 16, "rows": 8, "cols": 8, "freq_hz": 1e9},
    "inputs": "the example inputs",
    "cycles": 1200,
    "seconds": 1.2e-6,
    "energy_pj": 5.0e5,
    "energy_by_component": {"pe": 5.0e5},
    "macs": 480,
    "bits_per_weight": 8.25,
    "layers": [
        {
            "name": "fc1",
            "where": "accelerator",
            "dtype": "int8",
            "m": 3,
            "k": 20,
            "n": 8,
            "k_padded": 32,
            "runs": 1,
            "bits_per_weight": 8.25,
            "rel_error": 0.004,
            "cycles": 1200,
            "energy_pj": 5.0e5,
        }
    ],
    "host_ops": [
        {
            "node": "relu",
            "module": "",
            "aten": "aten.relu.default",
            "category": "elementwise",
            "reason": "no elementwise unit",
        }
    ],
}


def test_report_of_a_hand_written_report(tmp_path, capsys) -> None:
    (tmp_path / "report.json").write_text(json.dumps(REPORT))
    assert main(["report", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == (
        "  cycles 1,200 (1.20 us at 1 GHz), energy 0.500 uJ, MACs 480, bits/weight 8.250"
    )
    assert (
        lines[4].split() == "fc1 accelerator int8 3x20x8 (K->32) 1 8.25 0.0040 1,200 0.5000".split()
    )


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"layers": 5}, "layers: expected a list, got 5"),
        ({"cycles": "many"}, "cycles: expected an integer, got 'many'"),
        ({"layers": [{"name": "fc1"}]}, "layers[0].where: missing"),
        ({"settings": {"dtype": "int8"}}, "settings.kv_dtype: missing"),
        ({"host_ops": [{**REPORT["host_ops"][0], "aten": "relu"}]}, "not an aten op name"),
        ({"bits_per_weight": "8"}, "bits_per_weight: expected a number or null, got '8'"),
    ],
)
def test_report_of_a_damaged_report_is_one_error(tmp_path, capsys, change, problem) -> None:
    path = tmp_path / "report.json"
    path.write_text(json.dumps({**REPORT, **change}))
    assert main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"bitmod: error: {path}: not a bitmod report (") and problem in err
    assert err.count("\n") == 1 and "internal" not in err


def test_report_into_a_pipe_whose_reader_left(tmp_path) -> None:
    import os

    (tmp_path / "report.json").write_text(json.dumps(REPORT))
    read_end, write_end = os.pipe()
    os.close(read_end)  # `bitmod report --json | head` after head exited
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bitmod.compiler.tools.bitmod_cli",
            "report",
            str(tmp_path),
            "--json",
        ],
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    os.close(write_end)
    assert (result.returncode, result.stderr) == (1, "")
    closed = subprocess.run(
        ["sh", "-c", 'exec "$0" "$@" >&-', sys.executable, "-m", "bitmod.compiler.tools.bitmod_cli"]
        + ["report", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (closed.returncode, closed.stderr) == (1, "bitmod: error: standard output is closed\n")
