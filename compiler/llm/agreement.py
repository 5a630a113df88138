"""A real LLM on the bit-exact emulator: ``bitmod.compile`` of the whole model, and how close it
comes to the fake-quantized evaluation of the same stored weights.

:func:`compile_lm` traces the model on one window of ``T`` tokens and compiles it: every
decoder-block linear runs on the emulated accelerator with the chosen weight format, attention's
``Q·Kᵀ`` and ``P·V`` with run-time INT8 K/V (BitMoD Sec. IV-B); embeddings, norms, RoPE,
softmax and the LM head stay on the host (the LM head in FP32, as in the perplexity
evaluation). :func:`hardware_agreement` runs the window on the emulator and the fake-quantized
model built from *the compiled model's own archive* (the same codes, special-value indices and
scales, see :mod:`bitmod.compiler.llm.fakequant`), and compares the logits and the perplexity of
both on that window. What differs is only the arithmetic: the PE's FP16-input bit-serial
datapath with INT8 group scales and FP16 outputs, INT8 K/V and FP16 attention products on
the accelerator, against FP32 matmuls of FP16-rounded inputs with FP32 attention.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from bitmod.compiler.llm.fakequant import fake_quantized
from bitmod.compiler.llm.models import LanguageModel
from bitmod.runtime.storage.archive import ParamArchive

__all__ = ["Agreement", "LogitsOnly", "compile_lm", "hardware_agreement"]

#: Module path of the wrapped model inside :class:`LogitsOnly` (layer names get this prefix).
WRAPPED = "model"


class LogitsOnly(torch.nn.Module):
    """``ids -> logits`` of a Hugging Face causal LM (no KV cache): what ``torch.export``
    traces."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids, use_cache=False).logits


def compile_lm(
    lm: LanguageModel,
    window: Sequence[int],
    dtype: str = "bitmod3",
    *,
    kv_dtype: str = "int8",
    progress: bool | None = None,
) -> Any:
    """``bitmod.compile`` of ``lm`` for one window (``[BOS] +`` ``window`` tokens)."""
    from bitmod.compiler.api import compile as bitmod_compile

    ids = torch.tensor([[*lm.bos, *window]], dtype=torch.long)
    head = _head_name(lm)
    return bitmod_compile(
        LogitsOnly(lm.model),
        (ids,),
        dtype=dtype,
        kv_dtype=kv_dtype,
        layers={f"{WRAPPED}.{head}": "host"},
        progress=progress,
    )


def _head_name(lm: LanguageModel) -> str:
    head = lm.model.get_output_embeddings()
    return next(name for name, module in lm.model.named_modules() if module is head)


@dataclass
class Agreement:
    """Emulator vs fake-quantized logits on one window."""

    dtype: str
    kv_dtype: str
    tokens: int  # model inputs (BOS included)
    max_abs_diff: float
    mean_abs_diff: float
    max_abs_logit: float
    top1_agreement: float
    perplexity_emulator: float
    perplexity_fake_quant: float
    perplexity_fp32: float
    cycles: int
    energy_uj: float
    accelerated_ops: int
    compile_seconds: float
    emulate_seconds: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        return (
            f"{self.dtype} weights, {self.kv_dtype} K/V, {self.tokens} tokens: emulator vs "
            f"fake-quant logits max |diff| {self.max_abs_diff:.4f} (max |logit| "
            f"{self.max_abs_logit:.2f}), mean {self.mean_abs_diff:.4f}, top-1 agreement "
            f"{self.top1_agreement:.1%}; perplexity on the window: emulator "
            f"{self.perplexity_emulator:.3f}, fake-quant {self.perplexity_fake_quant:.3f}, FP32 "
            f"{self.perplexity_fp32:.3f}; {self.cycles:,} cycles, {self.energy_uj:,.1f} uJ over "
            f"{self.accelerated_ops} accelerated ops (compile {self.compile_seconds:.0f} s, "
            f"emulated run {self.emulate_seconds:.0f} s)"
        )


def _window_perplexity(logits: torch.Tensor, ids: torch.Tensor) -> float:
    """exp of the mean NLL of every next token of the window (positions 1..T-1)."""
    nll = torch.nn.functional.cross_entropy(logits[0, :-1].double(), ids[0, 1:], reduction="mean")
    return math.exp(float(nll))


def stored_archive(lm: LanguageModel, compiled: Any) -> ParamArchive:
    """The compiled model's quantized linears, under the LM's own layer names."""
    archive = ParamArchive()
    prefix = f"{WRAPPED}."
    linears = lm.block_linears()
    for name, op in compiled.ops.items():
        if op.op.kind != "linear":
            continue
        layer = name.removeprefix(prefix)
        if layer not in linears:
            raise ValueError(f"compiled layer {name!r} is no block linear of {lm.name}")
        archive.put_quantized(f"{layer}.weight", compiled.archive.get_quantized(op.binding.weight))
    return archive


def hardware_agreement(
    lm: LanguageModel,
    window: Sequence[int],
    dtype: str = "bitmod3",
    *,
    kv_dtype: str = "int8",
    compiled: Any = None,
    progress: bool | None = None,
) -> tuple[Agreement, Any]:
    """Compile (unless ``compiled`` is given), run the window on the emulator and compare.

    Returns the :class:`Agreement` and the compiled model.
    """
    ids = torch.tensor([[*lm.bos, *window]], dtype=torch.long)
    started = time.perf_counter()
    if compiled is None:
        compiled = compile_lm(lm, window, dtype, kv_dtype=kv_dtype, progress=progress)
    compiled_at = time.perf_counter()
    emulated = compiled(ids).float()
    ran_at = time.perf_counter()
    report = compiled.report()
    with torch.inference_mode():
        reference = lm.model(input_ids=ids).logits.float()
        with fake_quantized(lm, stored_archive(lm, compiled)):
            fake = lm.model(input_ids=ids).logits.float()
    difference = (emulated - fake).abs()
    return (
        Agreement(
            dtype=dtype,
            kv_dtype=kv_dtype,
            tokens=int(ids.shape[1]),
            max_abs_diff=float(difference.max()),
            mean_abs_diff=float(difference.mean()),
            max_abs_logit=float(fake.abs().max()),
            top1_agreement=float((emulated.argmax(-1) == fake.argmax(-1)).float().mean()),
            perplexity_emulator=_window_perplexity(emulated, ids),
            perplexity_fake_quant=_window_perplexity(fake, ids),
            perplexity_fp32=_window_perplexity(reference, ids),
            cycles=int(report.cycles),
            energy_uj=float(report.energy_pj) / 1e6,
            accelerated_ops=len(compiled.ops),
            compile_seconds=compiled_at - started,
            emulate_seconds=ran_at - compiled_at,
        ),
        compiled,
    )
