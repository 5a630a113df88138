"""Fake quantization of an LLM's linears from exactly what the compiler stores.

:func:`quantize_linears` quantizes every decoder-block ``nn.Linear`` weight the way
``bitmod-quantize`` does (:func:`bitmod.runtime.formats.quantize`: Algorithm 1 per group of
``G`` along K, a ragged last group on its own weights, second-level INT scales) and stores it
in a :class:`~bitmod.runtime.storage.archive.ParamArchive` with ``put_quantized``: packed codes,
special-value indices, INT8 scale codes and FP16 channel scales, the layout the emulator reads.
:func:`fake_quantized` then runs the model with each weight replaced by
``dequantize(archive.get_quantized(name))``, the unpacked archive entry, so the evaluated
weights are the stored ones bit for bit (``tests/test_llm_eval.py`` checks them against
``bitmod.compile``'s archive).

Activations: with ``fp16_activations`` (the default for quantized configurations) each
quantized linear sees its input rounded to FP16 (round to nearest even, the PE's activation
format) and its output is rounded to FP16 (what the accelerator writes back); the product is
computed in FP32 from those FP16 values. Everything else (norms, attention, the LM head) runs
in FP32 on the host, as in the BitMoD paper's weight-only evaluation (Sec. V-A: activations
stay FP16, K/V are not quantized). An activation beyond FP16's range is an error naming the
layer, as it is on the accelerator.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from bitmod.compiler.llm.models import LanguageModel
from bitmod.runtime.arch.hwconfig import LANES
from bitmod.runtime.formats import QuantizedTensor, dequantize, get_format, quantize
from bitmod.runtime.storage.archive import ParamArchive
from tqdm import tqdm

__all__ = [
    "FP32",
    "ActivationRangeError",
    "QuantConfig",
    "fake_quantized",
    "quantize_linears",
    "round_fp16_activation",
    "weighted_bits_per_weight",
]

FP32 = "fp32"
"""The ``dtype`` of the unquantized reference."""

_FP16_MAX = 65504.0


class ActivationRangeError(ValueError):
    """An activation a quantized linear would see in FP16 is out of FP16's range."""


@dataclass(frozen=True)
class QuantConfig:
    """One evaluated configuration: weight format, group size, scale bits, activations."""

    dtype: str = FP32
    group_size: int = 128
    #: bits of the second-level INT group scales; None keeps FP16 group scales. MX ignores it.
    scale_bits: int | None = 8
    #: round each quantized linear's input and output to FP16 (None: yes unless FP32)
    fp16_activations: bool | None = None

    def __post_init__(self) -> None:
        if self.dtype != FP32:
            get_format(self.dtype)  # ValueError listing the formats

    @property
    def quantized(self) -> bool:
        return self.dtype != FP32

    @property
    def rounds_activations(self) -> bool:
        return self.quantized if self.fp16_activations is None else self.fp16_activations

    @property
    def is_mx(self) -> bool:
        return self.quantized and get_format(self.dtype).family == "mx"

    @property
    def label(self) -> str:
        """``bitmod3 g128 s8``, ``mxfp4 b32``, ``fp32``, ``fp32 a16``."""
        if not self.quantized:
            return FP32 + (" a16" if self.rounds_activations else "")
        if self.is_mx:
            return f"{self.dtype} b{get_format(self.dtype).block_size}"
        scale = "fp16" if self.scale_bits is None else f"s{self.scale_bits}"
        return f"{self.dtype} g{self.group_size} {scale}"


def splits_lanes(dtype: str, group_size: int) -> bool:
    """``dtype`` is a bit-serial format and ``group_size`` not a multiple of ``LANES``: the PE
    takes ``LANES`` weights of a group a cycle, so the accelerator cannot run those groups
    (``bitmod compile`` refuses them) though fake quantization can."""
    return group_size % LANES != 0 and get_format(dtype).accelerated


def accelerator_refusal(config: QuantConfig) -> str | None:
    """Why the accelerator cannot run ``config``'s weights although fake quantization can
    (:func:`splits_lanes`; MX keeps its own block); None when it can."""
    if not config.quantized or config.is_mx or not splits_lanes(config.dtype, config.group_size):
        return None
    return (
        f"{config.label}: group size {config.group_size} is not a multiple of {LANES} (the PE "
        f"takes {LANES} weights a cycle): fake quantization only, the accelerator cannot run it"
    )


def warn_accelerator_refusals(configs: Sequence[QuantConfig]) -> None:
    """One ``warning:`` line on standard error per configuration the accelerator cannot run."""
    for config in configs:
        reason = accelerator_refusal(config)
        if reason is not None:
            print(f"warning: {reason}", file=sys.stderr)


def quantize_linears(
    lm: LanguageModel,
    config: QuantConfig,
    *,
    names: Sequence[str] | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> ParamArchive:
    """Quantize the block linears (or ``names``) into a new archive, as ``bitmod-quantize``
    stores them: the entry of module ``m`` is ``m.weight``."""
    if not config.quantized:
        raise ValueError("quantize_linears: the fp32 configuration quantizes nothing")
    linears = lm.block_linears()
    chosen = list(linears) if names is None else list(names)
    unknown = [name for name in chosen if name not in linears]
    if unknown:
        raise ValueError(f"quantize_linears: no block linear named {', '.join(unknown)}")
    archive = ParamArchive()
    group = None if config.is_mx else config.group_size
    bar = tqdm(chosen, desc=f"quantize {config.label}", unit="layer", disable=not progress)
    for name in bar:
        weight = linears[name].weight.detach()
        if device is not None:
            weight = weight.to(device)
        archive.put_quantized(
            f"{name}.weight",
            quantize(weight.to(torch.float32), config.dtype, group, config.scale_bits),
        )
    return archive


def round_fp16_activation(x: torch.Tensor, layer: str, what: str) -> torch.Tensor:
    """``x`` rounded to FP16 (nearest even) in its own dtype; ActivationRangeError naming
    ``layer`` if a value is beyond FP16's range."""
    bad = ~torch.isfinite(x) | (x.abs() > _FP16_MAX)
    if bool(bad.any()):
        value = float(x.detach()[bad][0])
        raise ActivationRangeError(
            f"layer '{layer}': {what} activation {value:g} is outside FP16's range "
            f"(max {_FP16_MAX:g}), which the accelerator cannot represent"
        )
    return x.to(torch.float16).to(x.dtype)


@contextlib.contextmanager
def fake_quantized(
    lm: LanguageModel,
    archive: ParamArchive | None,
    *,
    fp16_activations: bool = True,
) -> Iterator[Mapping[str, QuantizedTensor]]:
    """Run ``lm`` with its linears' weights from ``archive`` (None: keep the FP32 weights, e.g.
    to study FP16 activations alone); yields the unpacked archive entries by layer. The
    original weights are restored and the hooks removed on exit."""
    linears = lm.block_linears()
    names = (
        [name.removesuffix(".weight") for name in archive.quantized_names()]
        if archive is not None
        else list(linears)
    )
    originals: dict[str, torch.Tensor] = {}
    handles = []
    stored: dict[str, QuantizedTensor] = {}
    try:
        for name in names:
            module = linears[name]
            if archive is not None:
                stored[name] = archive.get_quantized(f"{name}.weight")
                approx = dequantize(stored[name])
                if tuple(approx.shape) != tuple(module.weight.shape):
                    raise ValueError(
                        f"layer '{name}': archive weight {list(approx.shape)}, module weight "
                        f"{list(module.weight.shape)}"
                    )
                originals[name] = module.weight.data
                module.weight.data = approx.to(module.weight.device, module.weight.dtype)
            if fp16_activations:
                handles.append(module.register_forward_pre_hook(_input_rounder(name)))
                handles.append(module.register_forward_hook(_output_rounder(name)))
        yield stored
    finally:
        for handle in handles:
            handle.remove()
        for name, weight in originals.items():
            linears[name].weight.data = weight


def _input_rounder(layer: str):  # noqa: ANN202 - a torch hook
    def hook(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return (round_fp16_activation(args[0], layer, "input"), *args[1:])

    return hook


def _output_rounder(layer: str):  # noqa: ANN202 - a torch hook
    def hook(_module: torch.nn.Module, _args: object, output: torch.Tensor) -> torch.Tensor:
        return round_fp16_activation(output, layer, "output")

    return hook


def weighted_bits_per_weight(stored: Mapping[str, QuantizedTensor]) -> float:
    """Storage bits per weight over all ``stored`` weights, metadata included."""
    bits = weights = 0.0
    for q in stored.values():
        count = q.shape[0] * q.shape[1]
        bits += q.bits_per_weight * count
        weights += count
    return bits / weights if weights else float("nan")
