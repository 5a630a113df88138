"""Whole GEMMs on the accelerator's arithmetic, without the instruction interpreter.

A compiled matmul's result does not depend on its schedule: every output is one PE's group
accumulators, dequantized and added into its column accumulator in K order, then drained —
whatever the loop order, block rows or K chunks (chunks are whole groups, accumulated in K
order). So ``y = act @ dequant(W)ᵀ (+ bias)`` can be computed for all rows and channels at once,
bit-identical to :meth:`bitmod.runtime.emulator.machine.Machine.run` of the program, on any torch
device: :class:`FastGemm` prepares a quantized weight once (terms decoded with the format's
special values, the values ``cfg.sv`` loads; scale codes and channel scales on the device) and
runs activations through :mod:`~bitmod.runtime.emulator.pe_torch`, with the group accumulation
in the fused Triton kernel of :mod:`~bitmod.runtime.emulator.pe_triton` on CUDA.

The cycles and energy of such a run come from the machine's timing model on the same program
(``Machine.run(..., compute=False)`` traces the program without computing), which is what the
interpreter would report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from bitmod.runtime.emulator import pe_torch
from bitmod.runtime.formats.bitserial import quantized_terms
from bitmod.runtime.formats.quantizer import QuantizedTensor

__all__ = ["FastGemm", "PreparedGemm", "triton_available"]

#: Rows of activations per kernel call: bounds the int64 accumulator tensor [rows, N, groups].
_ROW_BLOCK = 1 << 12


def triton_available(device: torch.device) -> bool:
    """Whether the fused kernel can run on ``device`` (a CUDA device with Triton installed)."""
    if device.type != "cuda":
        return False
    try:
        import triton  # noqa: F401  (optional: CUDA installs only)
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class PreparedGemm:
    """A quantized weight ``[N, K]`` ready for :meth:`FastGemm.run` on one device."""

    weights: pe_torch.TorchWeights
    scale_codes: torch.Tensor  # int64 [N, groups]
    channel_scale: torch.Tensor  # float16 [N]
    group_size: int
    shape: tuple[int, int]


class FastGemm:
    """Bit-exact ``act @ W.T (+ bias)`` for quantized weights on ``device`` ("cpu", "cuda")."""

    def __init__(self, device: str | torch.device = "cpu", *, use_triton: bool | None = None):
        self.device = torch.device(device)
        if self.device.type not in ("cpu", "cuda"):
            # Others (meta holds no data; mps lacks float64) are not the machine's arithmetic.
            raise ValueError(f"the bit-exact kernels run on cpu or cuda, not {self.device.type!r}")
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("CUDA is not available on this machine")
        available = triton_available(self.device)
        if use_triton and not available:
            raise ValueError(f"the Triton kernel needs CUDA and Triton; device is {self.device}")
        self.use_triton = available if use_triton is None else use_triton
        if self.use_triton:
            from bitmod.runtime.emulator import pe_triton  # imports Triton

            self._group_accumulators = pe_triton.group_accumulators
        else:
            self._group_accumulators = pe_torch.group_accumulators

    def prepare(self, q: QuantizedTensor) -> PreparedGemm:
        """Decode ``q``'s terms once (ValueError for a format without a bit-serial datapath or
        without INT group scales, as the machine refuses them)."""
        if not q.format.accelerated:
            raise ValueError(f"format {q.fmt} has no bit-serial lowering")
        if q.scale_bits is None or q.channel_scale is None:
            raise ValueError(f"weight {q.fmt} has FP16 group scales; the PE needs INT scales")
        return PreparedGemm(
            weights=pe_torch.prepare_weights(quantized_terms(q), self.device),
            scale_codes=q.scales.to(device=self.device, dtype=torch.int64),
            channel_scale=q.channel_scale.to(device=self.device, dtype=torch.float16),
            group_size=q.group_size,
            shape=tuple(q.shape),
        )

    def run(
        self, prepared: PreparedGemm, act: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """FP16 ``act`` [M, K] (any device; moved) → FP16 [M, N] on this device."""
        n, k = prepared.shape
        if act.dim() != 2 or act.shape[1] != k:
            raise ValueError(f"activation of shape {list(act.shape)} does not match K={k}")
        if act.dtype != torch.float16:
            raise ValueError(f"activations must be float16, got {act.dtype}")
        act = act.to(self.device)
        if bias is not None:
            bias = bias.to(device=self.device, dtype=torch.float16)
        with pe_torch.exact_mode():
            blocks = []
            for r0 in range(0, act.shape[0], _ROW_BLOCK):
                acc = self._group_accumulators(
                    act[r0 : r0 + _ROW_BLOCK], prepared.weights, prepared.group_size
                )
                x = pe_torch.dequantize_groups(acc, prepared.scale_codes)
                column = pe_torch.accumulate_groups(
                    torch.zeros(acc.shape[:2], dtype=torch.float32, device=self.device), x
                )
                blocks.append(pe_torch.drain(column, prepared.channel_scale, bias))
        if not blocks:
            return torch.empty((0, n), dtype=torch.float16, device=self.device)
        return torch.cat(blocks)

    def matmul(
        self, q: QuantizedTensor, act: torch.Tensor | np.ndarray, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """:meth:`prepare` and :meth:`run` in one call."""
        if isinstance(act, np.ndarray):
            act = torch.from_numpy(act)
        return self.run(self.prepare(q), act, bias)
