"""bitmod.compile refuses non-finite or FP16-overflowing parameters at compile time and reports
FP16 output overflow at run time, naming the layer (before: NaN/huge biases passed silently and
overflowed outputs came back as ±inf)."""

from __future__ import annotations

import bitmod
import numpy as np
import pytest
import torch
from bitmod.compiler.torch_frontend import CompileError
from bitmod.runtime.arch.nest import matmul_program
from bitmod.runtime.emulator.machine import Machine, MachineError
from bitmod.runtime.formats import quantize


def _linear(seed: int = 0) -> torch.nn.Linear:
    torch.manual_seed(seed)
    return torch.nn.Linear(64, 16)


@pytest.mark.parametrize(
    ("where", "value", "message"),
    [
        (
            "weight",
            float("nan"),
            r"layer 'linear0': cannot quantize 'weight': .*non-finite weight nan",
        ),
        ("weight", 1e30, r"layer 'linear0': cannot quantize 'weight': .*overflows FP16"),
        ("bias", float("inf"), r"op 'linear0' bias: value inf at \[2\] is not representable"),
        ("bias", 1e6, r"op 'linear0' bias: value 1000000.0 at \[2\]"),
    ],
)
def test_bad_parameters_are_refused_at_compile_time(where, value, message) -> None:
    model = _linear()
    with torch.no_grad():
        getattr(model, where).view(-1)[2] = value
    with pytest.raises(CompileError, match=message):
        bitmod.compile(model, (torch.randn(2, 64),))


@pytest.mark.parametrize("device", [None, "cpu"])
def test_fp16_output_overflow_is_an_error_naming_the_op(device) -> None:
    model = _linear()
    with torch.no_grad():
        model.weight.mul_(1000)
    compiled = bitmod.compile(model, (torch.randn(2, 64),), dtype="int8", device=device)
    compiled(torch.randn(2, 64))  # in range: runs
    with pytest.raises(CompileError, match=r"op 'linear0': \d+ of 32 outputs overflow FP16"):
        compiled(torch.full((2, 64), 60000.0))


def test_the_machine_refuses_a_non_finite_bias() -> None:
    q = quantize(torch.randn(16, 64), "int8", 32, 8)
    program = matmul_program(
        act="x",
        weight="w",
        out="y",
        m=4,
        n=16,
        k=64,
        fmt="int8",
        group_size=32,
        bias="b",
    )
    bias = np.zeros(16, np.float16)
    bias[5] = np.inf
    with pytest.raises(MachineError, match=r"bias inf at \[5\] is not finite"):
        Machine().run(program, {"x": np.ones((4, 64), np.float16), "w": q, "b": bias})


class _LinearAndProduct(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.proj(x), y @ y.transpose(-1, -2)


@pytest.mark.parametrize(
    ("model", "args", "message"),
    [
        (
            torch.nn.Linear(8, 3),
            (torch.randn(0, 8),),
            r"layer 'linear0': .*input the empty shape \[0, 8\]",
        ),
        (
            _LinearAndProduct(),
            (torch.randn(2, 8), torch.randn(1, 0, 4)),
            r"layer 'matmul0': .*lhs the empty shape \[1, 0, 4\]",
        ),
    ],
)
def test_an_example_with_an_empty_dimension_is_a_compile_error(model, args, message) -> None:
    # Before: an xDSL VerifyException about a "static 2-D tensor" from deep in the lowering.
    with pytest.raises(CompileError, match=message):
        bitmod.compile(model, args, dtype="int8", group_size=8)


def test_call_time_and_api_argument_refusals(tmp_path) -> None:  # noqa: ANN001
    """Found by fuzzing: each was a raw TypeError / AttributeError / torch RuntimeError."""
    from bitmod.compiler.host import HostError
    from bitmod.runtime.arch.hwconfig import HardwareConfig

    compiled = bitmod.compile(
        torch.nn.Linear(8, 4), (torch.randn(2, 8),), dtype="int8", group_size=8
    )
    with pytest.raises(HostError, match=r"input 0 is on meta, not cpu or cuda"):
        compiled(torch.empty(2, 8, device="meta"))
    with pytest.raises(
        CompileError, match=r"run: the inputs must be a tuple or list, got NoneType"
    ):
        compiled.run(None)  # type: ignore[arg-type]
    with pytest.raises(CompileError, match=r"run: the keyword inputs must be a mapping, got list"):
        compiled.run((torch.randn(2, 8),), [1])  # type: ignore[arg-type]
    for bad in (5, None, ""):
        with pytest.raises(CompileError, match=r"save: give a directory path"):
            compiled.save(bad)  # type: ignore[arg-type]
    with pytest.raises(CompileError, match=r"hardware must be a HardwareConfig .* got dict"):
        bitmod.compile(torch.nn.Linear(8, 4), (torch.randn(2, 8),), hardware={"rows": 2})  # type: ignore[arg-type]
    # the well-formed calls still work
    x = torch.randn(2, 8)
    assert torch.equal(compiled.run((x,), {}).outputs, compiled(x))
    small = HardwareConfig(rows=4, cols=4, tiles=2)
    bitmod.compile(torch.nn.Linear(8, 4), (x,), dtype="int8", group_size=8, hardware=small)
    assert list(tmp_path.iterdir()) == []
