"""Run a model's quantized linears on the accelerator's own arithmetic, bit-exactly.

:func:`fake_quantized <bitmod.compiler.llm.fakequant.fake_quantized>` evaluates what every
quantization paper evaluates: the dequantized weights in a floating-point matmul.
:func:`accelerated_linears` instead computes each quantized linear as the BitMoD PE array does
(docs/ISA.md, "PE arithmetic": 1-bit term mantissas × 11-bit activation mantissas aligned with
three guard bits and rounded to nearest even, exact group accumulation, bit-serial INT8
dequantization, FP32 column accumulation, FP16 drain), through
:class:`~bitmod.runtime.emulator.fastpath.FastGemm` — the fused Triton kernel on a GPU, the torch
backend elsewhere — which is bit-identical to the emulator running the compiled program. The
input of each linear is rounded to FP16 (an error names the layer if it is out of FP16's range,
as on the accelerator); the FP16 result is handed back in the host's dtype.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import torch
from bitmod.compiler.llm.fakequant import round_fp16_activation
from bitmod.runtime.emulator.fastpath import FastGemm, PreparedGemm
from bitmod.runtime.formats import QuantizedTensor
from bitmod.runtime.storage.archive import ParamArchive

__all__ = ["accelerated_linears"]


def _accelerated_forward(
    gemm: FastGemm, prepared: PreparedGemm, bias: torch.Tensor | None, layer: str
):  # noqa: ANN202 - an nn.Module forward
    n, k = prepared.shape

    def forward(x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != k:
            raise ValueError(f"layer '{layer}': input has {x.shape[-1]} features, weight K={k}")
        rows = round_fp16_activation(x, layer, "input").reshape(-1, k).to(torch.float16)
        y = gemm.run(prepared, rows, bias)
        return y.to(device=x.device, dtype=x.dtype).reshape(*x.shape[:-1], n)

    return forward


@contextlib.contextmanager
def accelerated_linears(
    linears: Mapping[str, torch.nn.Linear],
    archive: ParamArchive,
    *,
    device: str | torch.device | None = None,
) -> Iterator[dict[str, QuantizedTensor]]:
    """Within the block, every linear ``name`` whose weight ``name.weight`` is quantized in
    ``archive`` computes on the accelerator's arithmetic on ``device`` (default: the module's
    own). Yields the stored weights by layer; the modules are restored on exit."""
    stored: dict[str, QuantizedTensor] = {}
    replaced: list[torch.nn.Linear] = []
    gemms: dict[torch.device, FastGemm] = {}
    try:
        for entry in archive.quantized_names():
            name = entry.removesuffix(".weight")
            if name not in linears:
                raise ValueError(f"archive weight {entry!r} belongs to no linear of the model")
            module = linears[name]
            q = archive.get_quantized(entry)
            if tuple(q.shape) != tuple(module.weight.shape):
                raise ValueError(
                    f"layer '{name}': archive weight {list(q.shape)}, module weight "
                    f"{list(module.weight.shape)}"
                )
            where = torch.device(device) if device is not None else module.weight.device
            gemm = gemms.setdefault(where, FastGemm(where))
            prepared = gemm.prepare(q)
            bias = None if module.bias is None else module.bias.detach().to(torch.float16)
            module.forward = _accelerated_forward(gemm, prepared, bias, name)  # type: ignore[method-assign]
            replaced.append(module)
            stored[name] = q
        yield stored
    finally:
        for module in replaced:
            del module.forward  # back to the class's forward
