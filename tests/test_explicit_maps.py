"""Upstream MLIR's explicit-maps contractions run as the transposed forms they stand for.

``linalg.matmul indexing_maps = [(i,k), (j,k), (i,j)] ins(%x, %w)`` is ``X·Wᵀ`` with ``W`` as
``nn.Linear`` stores it; ``linalg.matmul ins(%x, %wt)`` of a ``linalg.transpose`` is the same
product as torch-mlir writes it. Both modules go through ``bitmod-default``: the explicit form
must become the same accelerator program and give the very bits of the transpose form, and the
host's product (maps that are no linear layer, A^T·B) must be torch's.
"""

from __future__ import annotations

from pathlib import Path

import torch
from bitmod.compiler.module_runner import load_lowered, run_function
from bitmod.compiler.tools.bitmod_opt import main as bitmod_opt
from bitmod.runtime.formats import dequantize, quantize

N, K, M = 5, 12, 3

_MAPS = {
    "a": "affine_map<(d0, d1, d2) -> (d0, d2)>",
    "bt": "affine_map<(d0, d1, d2) -> (d1, d2)>",
    "at": "affine_map<(d0, d1, d2) -> (d2, d0)>",
    "b": "affine_map<(d0, d1, d2) -> (d2, d1)>",
    "c": "affine_map<(d0, d1, d2) -> (d0, d1)>",
}


def _dense(t: torch.Tensor) -> str:
    rows = ", ".join("[" + ", ".join(f"{v:.8e}" for v in row) + "]" for row in t.tolist())
    return f"dense<[{rows}]> : tensor<{t.shape[0]}x{t.shape[1]}xf32>"


def _module(weight: torch.Tensor, explicit: bool) -> str:
    """``main(x [M,K], xt [K,M], v [K,N]) -> (x·Wᵀ, xtᵀ·v)``."""
    if explicit:
        linear = (
            f"  %y = linalg.matmul indexing_maps = [{_MAPS['a']}, {_MAPS['bt']}, {_MAPS['c']}]"
            f" ins(%x, %w : tensor<{M}x{K}xf32>, tensor<{N}x{K}xf32>)"
            f" outs(%acc : tensor<{M}x{N}xf32>) -> tensor<{M}x{N}xf32>\n"
        )
    else:
        linear = (
            f"  %et = tensor.empty() : tensor<{K}x{N}xf32>\n"
            f"  %wt = linalg.transpose ins(%w : tensor<{N}x{K}xf32>)"
            f" outs(%et : tensor<{K}x{N}xf32>) permutation = [1, 0]\n"
            f"  %y = linalg.matmul ins(%x, %wt : tensor<{M}x{K}xf32>, tensor<{K}x{N}xf32>)"
            f" outs(%acc : tensor<{M}x{N}xf32>) -> tensor<{M}x{N}xf32>\n"
        )
    return (
        f"func.func @main(%x: tensor<{M}x{K}xf32>, %xt: tensor<{K}x{M}xf32>,"
        f" %v: tensor<{K}x{N}xf32>) -> (tensor<{M}x{N}xf32>, tensor<{M}x{N}xf32>) {{\n"
        "  %zero = arith.constant 0.000000e+00 : f32\n"
        f"  %w = arith.constant {_dense(weight)}\n"
        f"  %e = tensor.empty() : tensor<{M}x{N}xf32>\n"
        f"  %acc = linalg.fill ins(%zero : f32) outs(%e : tensor<{M}x{N}xf32>)"
        f" -> tensor<{M}x{N}xf32>\n"
        + linear
        + f"  %h = linalg.matmul indexing_maps = [{_MAPS['at']}, {_MAPS['b']}, {_MAPS['c']}]"
        f" ins(%xt, %v : tensor<{K}x{M}xf32>, tensor<{K}x{N}xf32>)"
        f" outs(%acc : tensor<{M}x{N}xf32>) -> tensor<{M}x{N}xf32>\n"
        f"  func.return %y, %h : tensor<{M}x{N}xf32>, tensor<{M}x{N}xf32>\n"
        "}\n"
    )


def _lower_and_run(tmp_path: Path, name: str, text: str, inputs: list[torch.Tensor]):
    source, lowered = tmp_path / f"{name}.mlir", tmp_path / f"{name}.lowered.mlir"
    source.write_text(text)
    assert bitmod_opt([str(source), "--pipeline=bitmod-default", "-o", str(lowered)]) == 0
    ctx, module = load_lowered(lowered)
    return lowered.read_text(), run_function(ctx, module, inputs).outputs


def test_the_explicit_form_runs_as_the_transposed_one(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(N, K, generator=generator)
    x = torch.randn(M, K, generator=generator)
    xt, v = torch.randn(K, M, generator=generator), torch.randn(K, N, generator=generator)
    inputs = [x, xt, v]
    explicit_ir, (y, h) = _lower_and_run(tmp_path, "explicit", _module(weight, True), inputs)
    transposed_ir, (y_ref, h_ref) = _lower_and_run(
        tmp_path, "transposed", _module(weight, False), inputs
    )
    assert "bsisa.launch" in explicit_ir and explicit_ir.count("bsisa.launch") == 1
    assert torch.equal(y, y_ref)
    # bitmod-default quantizes to bitmod3 (groups of 128, 8-bit scales); the accelerator's
    # FP16 activations and accumulation leave a small difference to float.
    w3 = dequantize(quantize(weight, "bitmod3", group_size=128, scale_bits=8))
    torch.testing.assert_close(y, x @ w3.T, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(h, xt.T @ v)  # on the host, in float
    assert torch.equal(h, h_ref)
