"""The fused Triton kernel (runtime/emulator/pe_triton.py) equals the torch PE backend bit for bit.

Needs Triton and either a CUDA GPU or ``TRITON_INTERPRET=1`` (Triton's CPU interpreter, slow:
keep the shapes small there). CI installs neither, so this module is skipped there; it runs on
the GPU host (``BITMOD_TEST_DEVICE=cuda``), which is where the kernel is used.
"""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest
import torch
from bitmod.runtime.emulator import pe_torch
from bitmod.runtime.emulator import reference_pe as ref
from bitmod.runtime.formats.bitserial import quantized_terms, value_terms

pytest.importorskip("triton")
DEVICE = os.environ.get("BITMOD_TEST_DEVICE", "cpu")
if DEVICE == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip(
        "the Triton kernel needs a CUDA device or TRITON_INTERPRET=1", allow_module_level=True
    )
from bitmod.runtime.emulator import pe_triton  # noqa: E402

LARGE = DEVICE != "cpu"


@pytest.mark.parametrize("fmt", ["int8", "int6", "int4_asym", "fp3", "fp4", "bitmod3", "bitmod4"])
@pytest.mark.parametrize("act_kind", ["normal", "wide", "special"])
def test_kernel_equals_torch_backend(fmt: str, act_kind: str) -> None:
    rng = np.random.default_rng(zlib.crc32(f"triton/{fmt}/{act_kind}".encode()))
    m, n, k, group = (67, 300, 1024, 128) if LARGE else (5, 70, 96, 32)
    q = ref.random_quantized(rng, fmt, n, k, group)
    weights = pe_torch.prepare_weights(quantized_terms(q), DEVICE)
    act = torch.from_numpy(ref.random_activations(rng, m, k, act_kind)).to(DEVICE)
    expected = pe_torch.group_accumulators(act, weights, group)
    assert torch.equal(pe_triton.group_accumulators(act, weights, group), expected)


@pytest.mark.parametrize(("k", "group"), [(90, 32), (7, 8), (200, 128)])
def test_ragged_groups_and_partial_steps(k: int, group: int) -> None:
    rng = np.random.default_rng(k)
    weights = pe_torch.prepare_weights(
        value_terms("int4", rng.integers(-8, 8, size=(9, k))), DEVICE
    )
    act = torch.from_numpy(rng.standard_normal((3, k)).astype(np.float16)).to(DEVICE)
    expected = pe_torch.group_accumulators(act, weights, group)
    assert expected.shape[-1] == -(-k // group)
    assert torch.equal(pe_triton.group_accumulators(act, weights, group), expected)
