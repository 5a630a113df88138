"""Linears on the accelerator's arithmetic (compiler/llm/hardware.py) equal bitmod.compile's
emulator runs bit for bit, and differ from fake quantization."""

from __future__ import annotations

import pytest
import torch
from bitmod.compiler.api import compile as compile_model
from bitmod.compiler.llm.fakequant import ActivationRangeError
from bitmod.compiler.llm.hardware import accelerated_linears
from bitmod.runtime.formats import dequantize
from bitmod.runtime.storage.archive import ParamArchive
from torch import nn


class TwoLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(200, 96)  # ragged: K = 200 at G = 128
        self.down = nn.Linear(96, 40, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.relu(self.up(x)))


@pytest.mark.parametrize("dtype", ["bitmod3", "int8"])
def test_equal_to_the_compiled_model(dtype: str) -> None:
    torch.manual_seed(0)
    model = TwoLayers().eval()
    x = torch.randn(2, 5, 200)
    compiled = compile_model(model, (x,), dtype=dtype, group_size=128, scale_bits=8)
    expected = compiled(x)
    archive = ParamArchive()
    for name in ("up", "down"):
        archive.put_quantized(f"{name}.weight", compiled.archive.get_quantized(f"{name}.weight"))
    linears = {"up": model.up, "down": model.down}
    with torch.inference_mode(), accelerated_linears(linears, archive) as stored:
        ours = model(x)
        with_dequantized = x @ dequantize(stored["up"]).T + model.up.bias
    assert torch.equal(ours, expected)
    assert model.up.forward.__func__ is nn.Linear.forward  # the modules are restored
    assert not torch.equal(ours, torch.relu(with_dequantized) @ dequantize(stored["down"]).T)


def test_errors_name_the_layer() -> None:
    model = TwoLayers()
    compiled = compile_model(model, (torch.randn(1, 200),), dtype="int8")
    archive = ParamArchive()
    archive.put_quantized("up.weight", compiled.archive.get_quantized("up.weight"))
    with accelerated_linears({"up": model.up}, archive):
        with pytest.raises(ActivationRangeError, match="layer 'up'"):
            model.up(torch.full((1, 200), 1e6))
    with pytest.raises(ValueError, match="belongs to no linear"):
        with accelerated_linears({"down": model.down}, archive):
            pass
