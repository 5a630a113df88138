"""Perplexity evaluation and fake quantization, on a tiny random Llama and on the real SmolLM2.

The evaluation's numbers are checked against transformers' own loss (``labels=``) and against
a per-token log-softmax of the full logits; the fake-quantized weights against what
``bitmod.compile`` stores in its parameter archive (codes, special-value indices, INT8 scale
codes, channel scales: the test fails if the two paths diverge).
"""

from __future__ import annotations

import math

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="the llm extra is not installed")

from bitmod.compiler.llm.evaluate import (  # noqa: E402
    EvalError,
    evaluate,
    make_windows,
    perplexity,
)
from bitmod.compiler.llm.fakequant import (  # noqa: E402
    ActivationRangeError,
    QuantConfig,
    fake_quantized,
    quantize_linears,
)
from bitmod.compiler.llm.models import LanguageModel, load_model  # noqa: E402
from bitmod.runtime.formats import dequantize, quantize  # noqa: E402


def tiny_lm(bos_id: int | None = None, seed: int = 0) -> LanguageModel:
    """A 2-layer random Llama: hidden 48, FFN 80, vocabulary 64 (no download, no tokenizer)."""
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=48,
        intermediate_size=80,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    model = transformers.LlamaForCausalLM(config).eval()
    return LanguageModel("tiny", model, None, bos_id, None, 128)  # type: ignore[arg-type]


def _tokens(n: int, seed: int = 1) -> list[int]:
    return torch.randint(2, 64, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def _hf_nll(lm: LanguageModel, ids: list[int]) -> tuple[float, int]:
    """transformers' own loss over one input (mean over its len - 1 predictions), summed."""
    x = torch.tensor([ids])
    with torch.inference_mode():
        loss = float(lm.model(input_ids=x, labels=x).loss)
    return loss * (len(ids) - 1), len(ids) - 1


def test_disjoint_windows_match_transformers_loss() -> None:
    lm, ids = tiny_lm(), _tokens(100)
    ppl, nll, scored, windows = perplexity(lm, ids, context=32)
    assert [w.start for w in windows] == [0, 32, 64]
    parts = [_hf_nll(lm, ids[s : s + 32]) for s in (0, 32, 64)]
    assert scored == sum(n for _, n in parts) == 3 * 31
    assert nll == pytest.approx(sum(x for x, _ in parts), rel=1e-5)
    assert ppl == pytest.approx(math.exp(nll / scored), rel=1e-9)


def test_bos_windows_score_every_text_token() -> None:
    lm, ids = tiny_lm(bos_id=1), _tokens(64)
    _, nll, scored, _ = perplexity(lm, ids, context=32)
    parts = [_hf_nll(lm, [1, *ids[s : s + 32]]) for s in (0, 32)]
    assert scored == 64
    assert nll == pytest.approx(sum(x for x, _ in parts), rel=1e-5)


def test_sliding_windows_score_each_token_once_with_the_longest_context() -> None:
    lm, ids = tiny_lm(), _tokens(48)
    _, nll, scored, windows = perplexity(lm, ids, context=32, stride=8, batch_size=2)
    assert windows == make_windows(48, 32, 8, has_bos=False)
    expected = 0.0
    for window in windows:
        x = torch.tensor([ids[window.start : window.start + 32]])
        with torch.inference_mode():
            logp = torch.log_softmax(lm.model(input_ids=x).logits[0].double(), dim=-1)
        for token in range(window.first_scored, window.start + 32):
            expected -= float(logp[token - window.start - 1, ids[token]])
    assert scored == 47
    assert nll == pytest.approx(expected, rel=1e-5)


def test_text_shorter_than_one_window_is_one_error() -> None:
    with pytest.raises(EvalError, match="text has 20 tokens, fewer than one window of 32"):
        evaluate(tiny_lm(), "wiki", [QuantConfig()], tokens=_tokens(20), context=32)


def test_fake_quantized_weights_are_the_archive_entries_and_are_restored() -> None:
    lm = tiny_lm()
    linears = lm.block_linears()
    assert len(linears) == 14 and "lm_head" not in linears
    before = {name: module.weight.data.clone() for name, module in linears.items()}
    config = QuantConfig("bitmod3", group_size=32)  # K = 48: a ragged last group of 16
    archive = quantize_linears(lm, config)
    seen: dict[str, torch.Tensor] = {}
    probe = linears["model.layers.1.mlp.down_proj"]
    with fake_quantized(lm, archive) as stored:
        # registered after fake_quantized's own hooks, so it sees the rounded output
        handle = probe.register_forward_hook(lambda _m, _a, out: seen.setdefault("out", out))
        for name, module in linears.items():
            expected = quantize(before[name], "bitmod3", 32, 8)
            assert torch.equal(stored[name].codes, expected.codes), name
            assert torch.equal(stored[name].sv_index, expected.sv_index), name
            assert torch.equal(module.weight.data, dequantize(expected)), name
        with torch.inference_mode():
            lm.model(input_ids=torch.tensor([_tokens(8)]))
    handle.remove()
    out = seen["out"]
    assert torch.equal(out, out.half().float())  # the accelerator's FP16 output
    for name, module in linears.items():
        assert torch.equal(module.weight.data, before[name])
        assert not module._forward_hooks and not module._forward_pre_hooks


def test_activations_outside_fp16_name_the_layer() -> None:
    lm = tiny_lm()
    lm.model.model.norm.weight.data.fill_(1.0)
    lm.model.model.layers[0].input_layernorm.weight.data.fill_(1e6)
    archive = quantize_linears(lm, QuantConfig("int8"), names=["model.layers.0.self_attn.q_proj"])
    with (
        fake_quantized(lm, archive),
        pytest.raises(
            ActivationRangeError, match="layer 'model.layers.0.self_attn.q_proj': input activation"
        ),
    ):
        lm.model(input_ids=torch.tensor([_tokens(4)]))


def test_evaluate_reports_tokens_windows_and_bits() -> None:
    lm = tiny_lm()
    results = evaluate(
        lm,
        "wiki",
        [QuantConfig(), QuantConfig("bitmod3"), QuantConfig("mxfp3")],
        tokens=_tokens(80),
        context=32,
    )
    fp32, bitmod3, mxfp3 = results
    assert (fp32.tokens, fp32.windows, fp32.scored_tokens) == (64, 2, 62)
    assert fp32.bits_per_weight is None and not fp32.fp16_activations
    # K = 48 or 80 < G = 128: one group a row; 3 bits + (8 scale + 2 SV) per group + 16-bit
    # channel scale, averaged over the layers' weights.
    shapes = [tuple(m.weight.shape) for m in lm.block_linears().values()]
    expected = sum(n * k * (3 + 26 / k) for n, k in shapes) / sum(n * k for n, k in shapes)
    assert bitmod3.bits_per_weight == pytest.approx(expected)
    assert mxfp3.group_size == 32 and mxfp3.scale_bits is None
    assert fp32.perplexity < bitmod3.perplexity < mxfp3.perplexity * 10


# --- the real SmolLM2 ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2() -> LanguageModel:
    return load_model("smollm2-135m")


@pytest.mark.needs_smollm2
def test_smollm2_fp32_perplexity_is_transformers_loss(smollm2: LanguageModel) -> None:
    from bitmod.compiler.llm.evaluate import tokens_of

    ids = tokens_of(smollm2, "wiki")[:512]
    _, nll, scored, _ = perplexity(smollm2, ids, context=256)
    parts = [_hf_nll(smollm2, ids[s : s + 256]) for s in (0, 256)]
    assert scored == 510
    assert nll == pytest.approx(sum(x for x, _ in parts), rel=1e-5)


@pytest.mark.needs_smollm2
@pytest.mark.parametrize("dtype", ["bitmod3", "int3_asym"])
def test_fake_quant_uses_the_codes_bitmod_compile_stores(smollm2: LanguageModel, dtype) -> None:
    import bitmod

    layer = "model.layers.3.mlp.down_proj"  # K = 1536 = 12 groups of 128
    module = smollm2.block_linears()[layer]

    class One(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.down_proj = module

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.down_proj(x)

    compiled = bitmod.compile(One(), (torch.zeros(1, 4, 1536),), dtype=dtype)
    theirs = compiled.archive.get_quantized(compiled.ops["down_proj"].binding.weight)
    archive = quantize_linears(smollm2, QuantConfig(dtype), names=[layer])
    with fake_quantized(smollm2, archive) as stored:
        ours = stored[layer]
        for part in ("codes", "sv_index", "scales", "channel_scale", "zeros"):
            a, b = getattr(ours, part), getattr(theirs, part)
            assert (a is None and b is None) or torch.equal(a, b), part
        assert torch.equal(module.weight.data, dequantize(theirs))


@pytest.mark.needs_smollm2
def test_smollm2_ci_slice_orders_bitmod3_before_int3_asym(smollm2: LanguageModel) -> None:
    # The full tables (BENCHMARKS.md) measure bitmod3 below int3_asym on both corpora; the CI
    # slice (one 512-token window) must show the same order, and FP32 below both.
    from bitmod.compiler.llm.evaluate import tokens_of

    ids = tokens_of(smollm2, "wiki")[:512]
    fp32, int3_asym, bitmod3 = evaluate(
        smollm2,
        "wiki",
        [QuantConfig(), QuantConfig("int3_asym"), QuantConfig("bitmod3")],
        tokens=ids,
        context=512,
    )
    assert fp32.perplexity < bitmod3.perplexity < int3_asym.perplexity


# --- hardware arithmetic -------------------------------------------------------------------------


def test_hardware_arithmetic_perplexity_is_the_loss_of_the_pe_computed_model() -> None:
    from bitmod.compiler.llm.evaluate import results_markdown
    from bitmod.compiler.llm.hardware import accelerated_linears

    lm = tiny_lm()
    ids = _tokens(33)
    config = QuantConfig("bitmod3", group_size=32)  # K = 48: ragged last group of 16
    fake, hardware = evaluate(
        lm, "wiki", [config], tokens=ids, context=32, arithmetic=["fake", "hardware"]
    )
    assert (fake.arithmetic, hardware.arithmetic) == ("fake", "hardware")
    assert hardware.bits_per_weight == fake.bits_per_weight
    # One window, no BOS: transformers' own loss of the model whose block linears run on the
    # PE arithmetic, from the same stored codes.
    archive = quantize_linears(lm, config)
    with accelerated_linears(lm.block_linears(), archive):
        nll, count = _hf_nll(lm, ids[:32])
    assert hardware.scored_tokens == count
    assert hardware.nll == pytest.approx(nll, rel=1e-5)
    # Not the fake-quantized number, but close to it (the arithmetic is all that differs).
    assert hardware.nll != fake.nll
    assert hardware.perplexity == pytest.approx(fake.perplexity, rel=0.05)
    table = results_markdown([fake, hardware])
    assert "| arithmetic |" in table and "| hardware |" in table and "| fake |" in table


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        (QuantConfig("mxfp4"), "mxfp4 has no bit-serial datapath"),
        (QuantConfig("bitmod3", scale_bits=None), "INT group scales"),
        (QuantConfig("int8", fp16_activations=False), "activations are FP16"),
    ],
)
def test_hardware_arithmetic_refuses_what_the_pe_cannot_compute(config, problem) -> None:
    with pytest.raises(EvalError, match=problem):
        evaluate(tiny_lm(), "wiki", [config], tokens=_tokens(40), context=32, arithmetic="hardware")


def test_unknown_arithmetic_is_one_error() -> None:
    with pytest.raises(EvalError, match="arithmetic 'exact': expected fake or hardware"):
        evaluate(
            tiny_lm(), "wiki", [QuantConfig()], tokens=_tokens(40), context=32, arithmetic="exact"
        )


def test_several_corpora_quantize_once_and_match_one_at_a_time(monkeypatch) -> None:  # noqa: ANN001
    import bitmod.compiler.llm.evaluate as evaluate_module

    lm = tiny_lm()
    texts = {"a": _tokens(80, seed=1), "b": _tokens(70, seed=2)}
    configs = [QuantConfig(), QuantConfig("bitmod3")]
    alone = [
        r
        for name, ids in texts.items()
        for r in evaluate(lm, name, configs, tokens=ids, context=32)
    ]
    calls = []
    real = evaluate_module.quantize_linears

    def counting(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate_module, "quantize_linears", counting)
    together = evaluate(lm, ["a", "b"], configs, tokens=texts, context=32)
    assert calls == [QuantConfig("bitmod3")]
    assert [(r.corpus, r.config) for r in together] == [
        ("a", "fp32"),
        ("b", "fp32"),
        ("a", configs[1].label),
        ("b", configs[1].label),
    ]
    by_key = {(r.corpus, r.config): r for r in alone}
    for result in together:
        reference = by_key[(result.corpus, result.config)]
        assert (result.perplexity, result.scored_tokens) == (
            reference.perplexity,
            reference.scored_tokens,
        )


def test_several_corpora_need_tokens_for_each() -> None:
    with pytest.raises(EvalError, match="no tokens given for corpus b"):
        evaluate(tiny_lm(), ["a", "b"], [QuantConfig()], tokens={"a": _tokens(40)}, context=32)
    with pytest.raises(EvalError, match="named twice"):
        evaluate(tiny_lm(), ["wiki", "wiki"], [QuantConfig()], context=32)
