"""The whole-GEMM fast path equals the machine running the compiled program, bit for bit."""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest
import torch
from bitmod.runtime.arch.hwconfig import HardwareConfig
from bitmod.runtime.arch.nest import quantized_matmul_program
from bitmod.runtime.emulator.fastpath import FastGemm
from bitmod.runtime.emulator.machine import Machine
from bitmod.runtime.formats import quantize

DEVICE = os.environ.get("BITMOD_TEST_DEVICE", "cpu")
CASES = [
    ("bitmod3", 37, 72, 256, 128, True),
    ("int8", 9, 40, 200, 128, False),  # ragged last group
    ("int4_asym", 64, 24, 96, 32, True),
    ("fp4_ea_neg", 3, 17, 130, 64, True),  # ragged, K not a multiple of 4
    ("bitmod4", 70, 130, 512, 128, False),
]


@pytest.mark.parametrize(("fmt", "m", "n", "k", "group", "with_bias"), CASES)
def test_fast_gemm_equals_the_machine(fmt, m, n, k, group, with_bias) -> None:
    rng = np.random.default_rng(zlib.crc32(f"{fmt}/{m}/{n}/{k}".encode()))
    w = torch.from_numpy(rng.standard_normal((n, k)).astype(np.float32))
    q = quantize(w, fmt, group_size=group, scale_bits=8)
    x = (rng.standard_normal((m, k)) * 3).astype(np.float16)
    bias = rng.standard_normal(n).astype(np.float16) if with_bias else None
    config = HardwareConfig(tiles=2)
    program = quantized_matmul_program(q, m, config, bias="b" if with_bias else None)
    memory = {"x": x, "w": q} | ({"b": bias} if with_bias else {})
    expected = Machine(config).run(program, memory).outputs["y"]
    fast = FastGemm(DEVICE).matmul(q, x, None if bias is None else torch.from_numpy(bias))
    assert np.array_equal(fast.cpu().numpy().view(np.uint16), expected.view(np.uint16))


def test_bad_inputs_are_refused() -> None:
    q = quantize(torch.randn(8, 64), "bitmod3", group_size=32)
    gemm = FastGemm("cpu")
    with pytest.raises(ValueError, match="does not match K=64"):
        gemm.matmul(q, torch.zeros((2, 32), dtype=torch.float16))
    with pytest.raises(ValueError, match="must be float16"):
        gemm.matmul(q, torch.zeros((2, 64)))
    with pytest.raises(ValueError, match="no bit-serial lowering"):
        gemm.prepare(quantize(torch.randn(8, 64), "mxfp4"))
    with pytest.raises(ValueError, match="FP16 group scales"):
        gemm.prepare(quantize(torch.randn(8, 64), "int4", group_size=32, scale_bits=None))
    with pytest.raises(ValueError, match="needs CUDA and Triton"):
        FastGemm("cpu", use_triton=True)
