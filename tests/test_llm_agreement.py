"""The real SmolLM2 (cut to its first two decoder layers) through ``bitmod.compile`` on the
emulator, against fake quantization of the compiled model's own stored weights
(compiler/llm/agreement.py)."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

pytest.importorskip("transformers", reason="the llm extra is not installed")

from bitmod.compiler.llm.agreement import (  # noqa: E402
    compile_lm,
    hardware_agreement,
    stored_archive,
)
from bitmod.compiler.llm.evaluate import tokens_of  # noqa: E402
from bitmod.compiler.llm.fakequant import QuantConfig, quantize_linears  # noqa: E402
from bitmod.compiler.llm.models import LanguageModel, load_model  # noqa: E402

pytestmark = pytest.mark.needs_smollm2

LAYERS = 2
WINDOW = 7  # + BOS-free SmolLM2: 7 model inputs


@pytest.fixture(scope="module")
def two_layers() -> LanguageModel:
    """SmolLM2-135M with only its first decoder layers (CI-sized: 14 linears)."""
    lm = load_model("smollm2-135m")
    model = copy.deepcopy(lm.model)
    model.model.layers = model.model.layers[:LAYERS]
    model.config.num_hidden_layers = LAYERS
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:LAYERS]
    return dataclasses.replace(lm, model=model)


@pytest.fixture(scope="module")
def window(two_layers: LanguageModel) -> list[int]:
    return tokens_of(two_layers, "wiki")[:WINDOW]


@pytest.fixture(scope="module")
def compiled(two_layers: LanguageModel, window: list[int]):  # noqa: ANN201 - a CompiledModel
    return compile_lm(two_layers, window, "bitmod3")


def test_every_block_linear_is_compiled_with_the_quantizers_codes(
    two_layers: LanguageModel, compiled
) -> None:
    archive = stored_archive(two_layers, compiled)
    linears = two_layers.block_linears()
    assert {name.removesuffix(".weight") for name in archive.quantized_names()} == set(linears)
    # The fake-quant quantizer, run on its own, stores what bitmod.compile stored.
    ours = quantize_linears(two_layers, QuantConfig("bitmod3"), names=list(linears))
    for entry in archive.quantized_names():
        a, b = archive.get_quantized(entry), ours.get_quantized(entry)
        for part in ("codes", "sv_index", "scales", "channel_scale"):
            x, y = getattr(a, part), getattr(b, part)
            assert (x is None and y is None) or torch.equal(x, y), (entry, part)


def test_emulator_logits_agree_with_fake_quant(
    two_layers: LanguageModel, window: list[int], compiled
) -> None:
    agreement, _ = hardware_agreement(two_layers, window, "bitmod3", compiled=compiled)
    ids = torch.tensor([[*two_layers.bos, *window]])
    with torch.inference_mode():
        fp32 = two_layers.model(input_ids=ids).logits.float()
    assert agreement.tokens == ids.shape[1]
    assert agreement.accelerated_ops >= 7 * LAYERS  # every linear (+ attention products)
    assert agreement.cycles > 0 and agreement.energy_uj > 0
    # Only the arithmetic differs (FP16 bit-serial PEs, INT8 K/V vs FP32): the emulator lands
    # much closer to the fake-quantized model than quantization moves it away from FP32.
    fake_vs_fp32 = (fp32 - _fake_logits(two_layers, compiled, ids)).abs().mean()
    assert agreement.mean_abs_diff < 0.25 * float(fake_vs_fp32)
    assert agreement.top1_agreement >= 6 / 7
    assert agreement.perplexity_emulator == pytest.approx(agreement.perplexity_fake_quant, rel=0.1)


def _fake_logits(lm: LanguageModel, compiled, ids: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    from bitmod.compiler.llm.fakequant import fake_quantized

    with torch.inference_mode(), fake_quantized(lm, stored_archive(lm, compiled)):
        return lm.model(input_ids=ids).logits.float()
