"""The device fast path of compiled models against the instruction interpreter.

``Machine.run(..., compute=False)`` must report what a computing run reports (the timing and the
traffic do not depend on the values), and a model compiled with ``device=...`` must give the
interpreter's outputs bit for bit and the interpreter's report field for field: the fast path
computes through :class:`bitmod.runtime.emulator.fastpath.FastGemm` and takes its report from
one timing-only run per op. ``BITMOD_TEST_DEVICE=cuda`` runs the same checks on a GPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import bitmod
import numpy as np
import pytest
import torch
from bitmod.compiler.torch_frontend import CompileError
from bitmod.runtime.arch.hwconfig import HardwareConfig
from bitmod.runtime.arch.nest import matmul_program
from bitmod.runtime.arch.schedule import ORDERS
from bitmod.runtime.emulator.machine import Machine
from bitmod.runtime.formats import quantize

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "gpt"))
from model import example_tokens, gpt  # noqa: E402

DEVICE = os.environ.get("BITMOD_TEST_DEVICE", "cpu")


def _program_and_memory(fmt: str, m: int, n: int, k: int, order: str | None, bias: bool):
    generator = torch.Generator().manual_seed(m * 1000 + n + k)
    q = quantize(torch.randn(n, k, generator=generator), fmt)
    memory = {
        "x": torch.randn(m, k, generator=generator).to(torch.float16).numpy(),
        "w": q,
    }
    if bias:
        memory["b"] = torch.randn(n, generator=generator).to(torch.float16).numpy()
    program = matmul_program(
        act="x",
        weight="w",
        out="y",
        m=m,
        n=n,
        k=k,
        fmt=fmt,
        group_size=128,
        order=order,
        kchunk=128 if order == "k-streamed" else 0,  # k-streamed needs several chunks
        bias="b" if bias else None,
    )
    return program, memory


@pytest.mark.parametrize("order", [None, *ORDERS])
@pytest.mark.parametrize(
    ("fmt", "m", "n", "k", "bias"),
    [
        ("bitmod3", 20, 300, 512, True),
        ("bitmod4", 9, 130, 576, False),  # ragged: 4 groups + 64
        ("int8", 33, 128, 200, True),  # K < 2G, ragged
        ("int4_asym", 1, 256, 1024, False),
    ],
)
def test_timing_only_run_reports_what_the_computing_run_reports(fmt, m, n, k, bias, order):
    program, memory = _program_and_memory(fmt, m, n, k, order, bias)
    machine = Machine(HardwareConfig())
    computed = machine.run(program, memory)
    timed = machine.run(program, memory, compute=False)
    assert timed.report == computed.report
    assert computed.report.cycles > 0 and np.any(computed.outputs["y"] != 0)
    assert not np.any(timed.outputs["y"])  # nothing computed


def test_timing_only_run_still_refuses_a_bad_image() -> None:
    program, memory = _program_and_memory("bitmod3", 4, 64, 256, None, False)
    memory["x"] = memory["x"][:, :128]
    with pytest.raises(ValueError, match="descriptor d0"):
        Machine().run(program, memory, compute=False)


@pytest.fixture(scope="module")
def gpt_models():
    model, tokens = gpt(seed=0), example_tokens(batch=2, tokens=16)
    with torch.no_grad():
        interpreted = bitmod.compile(model, (tokens,), dtype="bitmod3", kv_dtype="int4")
        fast = bitmod.compile(model, (tokens,), dtype="bitmod3", kv_dtype="int4", device=DEVICE)
    return interpreted, fast, tokens


def test_compiled_gpt_on_the_device_path_equals_the_interpreter(gpt_models) -> None:
    interpreted, fast, tokens = gpt_models
    assert fast.device == torch.device(DEVICE) and interpreted.device is None
    other = example_tokens(batch=2, tokens=16, seed=7)
    for inputs in (tokens, other):
        expected = interpreted(inputs)
        got = fast(inputs)
        assert torch.equal(got.view(torch.int32), expected.view(torch.int32))
        assert fast.report().to_json() == interpreted.report().to_json()
    kinds = {c.op.kind for c in fast.ops.values()}
    assert kinds >= {"linear", "matmul"}, kinds  # projections and Q·Kᵀ / P·V both covered


def test_saved_bundle_runs_on_the_device_path(tmp_path, gpt_models) -> None:
    interpreted, _, tokens = gpt_models
    bundle = interpreted.save(tmp_path / "gpt")
    loaded = bitmod.load(bundle, device=DEVICE)
    assert torch.equal(loaded(tokens), interpreted(tokens))
    assert loaded.to_device(None).device is None


def test_unknown_device_is_one_error(gpt_models) -> None:
    interpreted, _, _ = gpt_models
    with pytest.raises(CompileError, match="device 'tpu9'"):
        interpreted.to_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(CompileError, match="CUDA is not available"):
            interpreted.to_device("cuda")
    assert interpreted.device is None


def test_cli_run_with_device_prints_the_interpreters_report(tmp_path, gpt_models) -> None:
    interpreted, _, _ = gpt_models
    bundle = interpreted.save(tmp_path / "gpt")
    command = [sys.executable, "-m", "bitmod.compiler.tools.bitmod_cli", "run", str(bundle)]
    plain = subprocess.run(command + ["--json"], capture_output=True, text=True, check=True)
    fast = subprocess.run(
        command + ["--json", "--device", DEVICE], capture_output=True, text=True, check=True
    )
    assert fast.stdout == plain.stdout
    bad = subprocess.run(command + ["--device", "tpu9"], capture_output=True, text=True)
    assert bad.returncode == 1 and "device 'tpu9'" in bad.stderr
