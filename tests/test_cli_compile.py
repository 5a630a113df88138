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
