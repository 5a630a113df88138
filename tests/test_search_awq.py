"""AWQ on bitmod formats: the folded scales are an identity before quantization (to float
tolerance, and bit for bit with power-of-two scales), the scale search's objective is the
measured output error of the quantized linears, and the search never raises it."""

from __future__ import annotations

import os

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="the llm extra is not installed")

from bitmod.compiler.llm.fakequant import QuantConfig  # noqa: E402
from bitmod.compiler.llm.models import LanguageModel  # noqa: E402
from bitmod.compiler.search.awq import (  # noqa: E402
    AwqSettings,
    awq_optimize,
    fold_scales,
    load_awq,
    quantized_weight,
    site_parameters,
)
from bitmod.compiler.search.calibration import (  # noqa: E402
    calibration_windows,
    collect_statistics,
    find_sites,
)


def tiny_llama(kv_heads: int = 4, seed: int = 0) -> LanguageModel:
    """A 2-layer random Llama, hidden 64 (4 heads), FFN 96; norm weights made non-trivial."""
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        max_position_embeddings=128,
    )
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("layernorm.weight"):
                parameter.uniform_(0.5, 1.5)
    return LanguageModel("tiny", model, None, None, None, 128)  # type: ignore[arg-type]


def tiny_gemma3(seed: int = 0) -> LanguageModel:
    torch.manual_seed(seed)
    config = transformers.Gemma3TextConfig(
        vocab_size=64,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=128,
        sliding_window=16,
    )
    model = transformers.Gemma3ForCausalLM(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "layernorm" in name:
                parameter.uniform_(-0.5, 0.5)
    return LanguageModel("tiny-gemma", model, None, 2, None, 128)  # type: ignore[arg-type]


def _ids(n: int = 40, seed: int = 3) -> torch.Tensor:
    return torch.randint(3, 64, (2, n), generator=torch.Generator().manual_seed(seed))


def _logits(lm: LanguageModel, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return lm.model(input_ids=ids).logits


def _random_scales(lm: LanguageModel, power_of_two: bool) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    linears = lm.block_linears()
    scales = {}
    for site in find_sites(lm):
        if site.fold is None:
            continue
        k = linears[site.linears[0]].in_features
        exponent = torch.randn(k, generator=generator) * 1.5
        scales[site.name] = (
            torch.exp2(torch.round(exponent)) if power_of_two else torch.exp(exponent)
        )
    return scales


def _fold_all(lm: LanguageModel, scales: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    sites = find_sites(lm)
    parameters = site_parameters(lm, sites)
    for site in sites:
        if site.name in scales:
            fold_scales(parameters, site, scales[site.name])
    return parameters


def _apply(lm: LanguageModel, parameters: dict[str, torch.Tensor]) -> None:
    for name, value in parameters.items():
        lm.model.get_parameter(name).data = value


def test_sites_of_llama_fold_into_norms_and_previous_rows() -> None:
    mha = {site.name: site for site in find_sites(tiny_llama(kv_heads=4))}
    block = "model.layers.0"
    assert mha[f"{block}.self_attn.qkv"].fold.module == f"{block}.input_layernorm"
    assert mha[f"{block}.self_attn.o_proj"].fold.module == f"{block}.self_attn.v_proj"
    assert mha[f"{block}.mlp.gate_up"].fold.module == f"{block}.post_attention_layernorm"
    assert mha[f"{block}.mlp.down_proj"].fold.module == f"{block}.mlp.up_proj"
    assert len(mha) == 8
    gqa = {site.name: site for site in find_sites(tiny_llama(kv_heads=2))}
    assert gqa[f"{block}.self_attn.o_proj"].fold is None  # v has 32 rows, o 64 columns
    gemma = {site.name: site for site in find_sites(tiny_gemma3())}
    norm = gemma[f"{block}.mlp.gate_up"].fold
    assert norm.module == f"{block}.pre_feedforward_layernorm" and norm.offset == 1.0


@pytest.mark.parametrize("make", [tiny_llama, lambda: tiny_llama(kv_heads=2), tiny_gemma3])
def test_folded_scales_compute_the_same_function_in_float(make) -> None:  # noqa: ANN001
    lm, ids = make(), _ids()
    before = _logits(lm, ids)
    _apply(lm, _fold_all(lm, _random_scales(lm, power_of_two=False)))
    after = _logits(lm, ids)
    assert not torch.equal(before, after)  # the weights did change ...
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)  # ... the function not


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_power_of_two_scales_are_bit_exact(kv_heads: int) -> None:
    lm, ids = tiny_llama(kv_heads), _ids()
    before = _logits(lm, ids)
    parameters = _fold_all(lm, _random_scales(lm, power_of_two=True))
    changed = [n for n, v in parameters.items() if not torch.equal(v, lm.model.get_parameter(n))]
    unscaled = (
        [] if kv_heads == 4 else [f"model.layers.{i}.self_attn.o_proj.weight" for i in (0, 1)]
    )
    assert sorted(changed) == sorted(set(parameters) - set(unscaled))
    _apply(lm, parameters)
    assert torch.equal(_logits(lm, ids), before)


def _statistics(lm: LanguageModel):  # noqa: ANN202
    tokens = torch.randint(3, 64, (256,), generator=torch.Generator().manual_seed(5)).tolist()
    return collect_statistics(lm, calibration_windows(lm, tokens, 4, 64))


def test_awq_with_power_of_two_scales_and_no_clipping_keeps_the_float_model() -> None:
    lm, ids = tiny_llama(kv_heads=4), _ids()
    before = _logits(lm, ids)
    settings = AwqSettings(scale_grid=8, clip=False, power_of_two=True)
    result = awq_optimize(lm, QuantConfig("bitmod3", group_size=32), _statistics(lm), settings)
    assert any(alpha > 0 for alpha in result.alphas.values())
    with result.applied(lm):
        assert torch.equal(_logits(lm, ids), before)
    assert torch.equal(_logits(lm, ids), before)  # restored


def _site_inputs(lm: LanguageModel, windows: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every block linear's input on the windows, captured by plain hooks."""
    captured: dict[str, list[torch.Tensor]] = {}
    handles = [
        module.register_forward_pre_hook(
            lambda _m, args, name=name: captured.setdefault(name, []).append(
                args[0].reshape(-1, args[0].shape[-1])
            )
        )
        for name, module in lm.block_linears().items()
    ]
    with torch.inference_mode():
        for row in windows:
            lm.model(input_ids=row[None])
    for handle in handles:
        handle.remove()
    return {name: torch.cat(parts) for name, parts in captured.items()}


@pytest.mark.parametrize("dtype", ["bitmod3", "int3_asym", "mxfp4"])
def test_scale_search_objective_is_the_measured_output_error(dtype: str) -> None:
    lm = tiny_llama(kv_heads=2)
    tokens = torch.randint(3, 64, (256,), generator=torch.Generator().manual_seed(5)).tolist()
    windows = calibration_windows(lm, tokens, 4, 64)
    config = QuantConfig(dtype, group_size=32)
    result = awq_optimize(
        lm, config, collect_statistics(lm, windows), AwqSettings(scale_grid=6, clip=False)
    )
    original = _site_inputs(lm, windows)
    weights = {name: m.weight.detach().clone() for name, m in lm.block_linears().items()}
    with result.applied(lm):
        scaled = _site_inputs(lm, windows)
        linears = lm.block_linears()
        sites = find_sites(lm)
        # A linear whose rows a later site divides (up before down) has its output in other
        # units; the sites checked are the others (q/k/v, down).
        row_scaled = {s.fold.module for s in sites if s.fold is not None and s.fold.kind == "rows"}
        checked = [s for s in sites if s.fold is not None and not row_scaled & set(s.linears)]
        assert {s.name.rsplit(".", 1)[-1] for s in checked} == {"qkv", "down_proj"}
        for site in checked:
            measured = 0.0
            for name in site.linears:
                weight = linears[name].weight.detach()
                reference = original[name].double() @ weights[name].double().T
                output = scaled[name].double() @ quantized_weight(weight, config).double().T
                measured += float((output - reference).square().sum()) / len(original[name])
            before, after = result.scale_errors[site.name]
            assert after == pytest.approx(measured, rel=1e-3)
            assert after <= before


def test_clipping_changes_weights_within_their_group_range_and_round_trips(tmp_path) -> None:  # noqa: ANN001
    lm = tiny_llama(kv_heads=2)
    config = QuantConfig("int4_asym", group_size=32)
    result = awq_optimize(lm, config, _statistics(lm), AwqSettings(scale_grid=4, clip_grid=10))
    assert set(result.clip_ratios) == {
        name for name in lm.block_linears() if not name.endswith(("q_proj", "k_proj"))
    }
    assert all(0.5 <= r <= 1.0 for r in result.clip_ratios.values())
    again = load_awq(lm, result.save(tmp_path / "awq"))
    assert again.alphas == result.alphas and again.config == config
    assert all(torch.equal(again.parameters[n], v) for n, v in result.parameters.items())


def test_bad_awq_settings_and_configs_are_one_error_each() -> None:
    lm = tiny_llama()
    with pytest.raises(ValueError, match="at least one point"):
        AwqSettings(scale_grid=0)
    with pytest.raises(ValueError, match="max_shrink"):
        AwqSettings(max_shrink=1.0)
    with pytest.raises(ValueError, match="quantized data type"):
        awq_optimize(lm, QuantConfig(), _statistics(lm))
    with pytest.raises(ValueError, match="fewer than 4 windows"):
        calibration_windows(lm, list(range(10)), 4, 64)


@pytest.mark.skipif(
    os.environ.get("BITMOD_TEST_DEVICE", "cpu") == "cpu", reason="BITMOD_TEST_DEVICE is cpu"
)
def test_awq_on_the_test_device_matches_the_cpu() -> None:
    """AWQ with the model and its statistics on a GPU (``BITMOD_TEST_DEVICE=cuda``) chooses the
    same scales as on the CPU (the first GPU run failed: a CPU tensor in the scale search)."""
    device = os.environ["BITMOD_TEST_DEVICE"]
    config = QuantConfig("bitmod3", group_size=32)
    settings = AwqSettings(scale_grid=6, clip_grid=4)
    results = []
    for where in ("cpu", device):
        lm = tiny_llama(kv_heads=2)
        lm.model.to(where)
        results.append(awq_optimize(lm, config, _statistics(lm), settings))
    on_cpu, on_device = results
    assert on_device.alphas == on_cpu.alphas
    assert on_device.clip_ratios == pytest.approx(on_cpu.clip_ratios)
