"""bitmod.compile / CompiledModel / bitmod.load, checked against independent references.

* Every accelerator run of a compiled model (its FP16 activation and quantized weight as
  recorded) agrees with a float64 matmul of the dequantized weight within the PE's derived
  error bound (:func:`bitmod.runtime.emulator.pe.error_bound`): this checks the memory images the
  compiled model builds (ragged K, FP16 conversion, K/V slices, biases) end to end through
  the binary.
* The GPT example's logits agree with a plain torch re-implementation of the decoder that
  uses the same dequantized weights and the same INT8 K/V, within the tolerance derived in
  :func:`logit_tolerance`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from bitmod.compiler.api import CompiledModel, CompileError, compile, load
from bitmod.compiler.host import HostError
from bitmod.compiler.offload import OpRecord, plan_groups
from bitmod.runtime.arch.hwconfig import HardwareConfig
from bitmod.runtime.emulator import pe
from bitmod.runtime.formats import QuantizedTensor, dequantize, quantize
from bitmod.runtime.formats.bitserial import quantized_terms
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "gpt"))
from model import GPT, example_tokens, gpt  # noqa: E402

# --- independent references --------------------------------------------------------------------


def pe_bound_violations(
    act: torch.Tensor, q: QuantizedTensor, out: torch.Tensor, bias: torch.Tensor | None
) -> int:
    """How many outputs of one accelerator run fall outside the PE error bound."""
    terms = quantized_terms(q)
    term_abs = (
        terms.man.astype(np.float64)
        * np.exp2(terms.exp.astype(np.float64) + terms.bsig.astype(np.float64))
    ).sum(-1)
    bias16 = None if bias is None else bias.to(torch.float16).numpy()
    bound = pe.error_bound(
        act.numpy(),
        q.values().numpy(),
        term_abs,
        q.scales.numpy(),
        q.channel_scale.numpy(),
        q.group_size,
        bias16,
    )
    reference = act.double() @ dequantize(q).double().T
    if bias16 is not None:
        reference = reference + torch.from_numpy(bias16).double()
    return int(((out.double() - reference).abs().numpy() > bound).sum())


def check_every_run(compiled: CompiledModel, records: list[OpRecord]) -> None:
    assert records, "nothing was recorded"
    for record in records:
        op = compiled.ops[record.op]
        q = record.weight or compiled.archive.get_quantized(op.binding.weight)
        bias = None if op.binding.bias is None else compiled.archive.get(op.binding.bias)
        assert pe_bound_violations(record.act, q, record.out, bias) == 0, record.op


def logit_tolerance(reference: torch.Tensor, accelerated_ops_on_path: int) -> float:
    """Tolerance of compiled vs float32 reference logits (same weights, same K/V).

    The two differ only by FP16 roundings the reference does not make: each accelerated op
    rounds its input and its output to FP16 (half an ulp each, relative 2^-11) and its PE
    datapath adds at most 3·2^-14 relative to Σ|a·w| per group (3 guard bits) plus FP32
    roundings (pe.error_bound). To first order these relative perturbations add up along
    the path from the input to the logits, with unit gain per op (layer norms renormalise,
    residual adds do not amplify a relative error of their operands): 3·2^-11 per op on
    the path, times the logits' scale.
    """
    return accelerated_ops_on_path * 3 * 2.0**-11 * float(reference.abs().max())


def reference_gpt(
    model: GPT, compiled: CompiledModel, records: list[OpRecord], tokens: torch.Tensor
) -> torch.Tensor:
    """The decoder written out in float32 torch with the compiled model's dequantized
    weights, FP16 biases and the run-time quantized K/V it recorded."""
    config = model.config
    params = dict(model.named_parameters())
    recorded: dict[str, list[OpRecord]] = {}
    for record in records:
        recorded.setdefault(record.op, []).append(record)

    def linear(name: str, x: torch.Tensor) -> torch.Tensor:
        op = compiled.ops[name]
        k = op.op.mkn[1]
        weight = dequantize(compiled.archive.get_quantized(op.binding.weight))[:, :k]
        bias = None if op.op.bias is None else params[op.op.bias].half().float()
        return F.linear(x, weight, bias)

    def with_recorded_rhs(name: str, a: torch.Tensor) -> torch.Tensor:
        k = a.shape[-1]
        rhs = torch.stack([dequantize(r.weight)[:, :k].T for r in recorded[name]])
        return a @ rhs.reshape(*a.shape[:-2], k, -1)

    batch, length = tokens.shape
    heads, width = config.n_heads, config.d_model
    head_dim = width // heads
    x = F.embedding(tokens, params["token_embedding.weight"])
    x = x + F.embedding(torch.arange(length), params["position_embedding.weight"])
    causal = torch.tril(torch.ones(length, length, dtype=torch.bool))
    for i in range(config.n_layers):
        p = f"blocks.{i}."
        h = F.layer_norm(x, (width,), params[p + "ln1.weight"], params[p + "ln1.bias"])
        q, k, v = (
            t.reshape(batch, length, heads, head_dim).transpose(1, 2)
            for t in linear(p + "attn.qkv", h).split(width, dim=2)
        )
        scores = with_recorded_rhs(p + "attn.matmul0", q) / math.sqrt(head_dim)
        probs = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
        out = with_recorded_rhs(p + "attn.matmul1", probs)
        x = x + linear(p + "attn.proj", out.transpose(1, 2).reshape(batch, length, width))
        h = F.layer_norm(x, (width,), params[p + "ln2.weight"], params[p + "ln2.bias"])
        x = x + linear(p + "mlp.proj", F.gelu(linear(p + "mlp.fc", h)))
    x = F.layer_norm(x, (width,), params["ln_f.weight"], params["ln_f.bias"])
    return linear("lm_head", x)


# --- the GPT example -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gpt_setup() -> tuple[GPT, torch.Tensor]:
    return gpt(seed=0), example_tokens(batch=2, tokens=16)


@pytest.fixture(scope="module")
def gpt_bitmod3(gpt_setup) -> CompiledModel:
    model, tokens = gpt_setup
    return compile(model, (tokens,), dtype="bitmod3")


def test_gpt_logits_match_the_dequantized_reference(gpt_setup, gpt_bitmod3) -> None:
    model, tokens = gpt_setup
    run = gpt_bitmod3.run((tokens,), record=True)
    check_every_run(gpt_bitmod3, run.records)
    with torch.no_grad():
        reference = reference_gpt(model, gpt_bitmod3, run.records, tokens)
    # On the longest path: qkv, Q·Kᵀ, P·V, proj, fc, proj per block, and the LM head.
    tolerance = logit_tolerance(reference, 6 * model.config.n_layers + 1)
    difference = float((run.outputs - reference).abs().max())
    assert difference <= tolerance, (difference, tolerance)
    # The tolerance is far below the quantization error itself (the test can fail).
    with torch.no_grad():
        fp32 = model(tokens)
    assert float((fp32 - reference).abs().max()) > 20 * tolerance


def test_error_orders_int8_bitmod4_bitmod3(gpt_setup, gpt_bitmod3) -> None:
    model, tokens = gpt_setup
    with torch.no_grad():
        fp32 = model(tokens)

    def error(compiled: CompiledModel) -> float:
        return float((compiled(tokens) - fp32).norm() / fp32.norm())

    errors = [error(compile(model, (tokens,), dtype=d)) for d in ("int8", "bitmod4")]
    errors.append(error(gpt_bitmod3))
    assert errors[0] < errors[1] < errors[2], errors


def test_gpt_report(gpt_setup, gpt_bitmod3) -> None:
    _, tokens = gpt_setup
    gpt_bitmod3(tokens)
    report = gpt_bitmod3.report()
    layers = {layer["name"]: layer for layer in report.layers}
    assert len(layers) == 13 and all(la["where"] == "accelerator" for la in layers.values())
    qk = layers["blocks.0.attn.matmul0"]
    assert (qk["dtype"], qk["runs"], qk["m"], qk["k"], qk["n"]) == ("int8", 8, 16, 32, 16)
    assert 0 < qk["rel_error"] < 0.02  # INT8 K: ~1/254 of a row's absmax per element
    fc = layers["blocks.0.mlp.fc"]
    assert fc["dtype"] == "bitmod3" and fc["runs"] == 1
    # 3-bit codes + (8-bit scale + 2-bit SV index) per 128 + an FP16 channel scale per row
    assert fc["bits_per_weight"] == pytest.approx(3 + 10 / 128 + 16 / 128)
    assert report.cycles == sum(la["cycles"] for la in report.layers) > 0
    assert report.energy_pj == pytest.approx(sum(report.energy_by_component.values()))
    assert report.macs == 2 * 16 * (  # per token: linears + attention over 16 positions
        2 * (128 * 384 + 128 * 128 + 128 * 512 + 512 * 128 + 2 * 4 * 32 * 16) + 128 * 256
    )
    host = {op["category"] for op in report.host_ops}
    assert {"normalization", "softmax", "activation", "embedding"} <= host
    assert all(op["where"] == "host" and op["reason"] for op in report.host_ops)
    text = report.format()
    assert "blocks.1.attn.matmul1" in text and "normalization" in text


def test_kv_int4_option(gpt_setup) -> None:
    model, tokens = gpt_setup
    compiled = compile(model, (tokens,), dtype="int8", kv_dtype="int4")
    run = compiled.run((tokens,), record=True)
    check_every_run(compiled, [r for r in run.records if r.weight is not None][:8])
    layers = {la["name"]: la for la in compiled.report().layers}
    assert layers["blocks.0.attn.matmul1"]["dtype"] == "int4"
    assert layers["blocks.0.attn.matmul1"]["rel_error"] > 0.02  # 4 bits: ~1/14 of absmax


def test_save_load_run_identical(tmp_path, gpt_setup, gpt_bitmod3) -> None:
    _, tokens = gpt_setup
    expected = gpt_bitmod3(tokens)
    bundle = gpt_bitmod3.save(tmp_path / "gpt")
    files = {p.name for p in bundle.iterdir()}
    assert {
        "manifest.json",
        "host.json",
        "params.safetensors",
        "model.mlir",
        "report.json",
        "inputs.safetensors",
        "programs",
    } <= files
    assert len(list((bundle / "programs").glob("*.bin"))) == 13
    assert "bitmod.quantize" in (bundle / "model.mlir").read_text()
    loaded = load(bundle)
    assert torch.equal(loaded(tokens), expected)
    assert loaded.report().to_json() == gpt_bitmod3.report().to_json()
    saved = json.loads((bundle / "report.json").read_text())
    assert saved["cycles"] == gpt_bitmod3.report().cycles
    # Saving again over the bundle replaces it.
    gpt_bitmod3.save(bundle)
    assert torch.equal(load(bundle)(tokens), expected)


def test_load_errors_name_the_file(tmp_path, gpt_bitmod3) -> None:
    bundle = gpt_bitmod3.save(tmp_path / "gpt")
    with pytest.raises(CompileError, match="is not a directory"):
        load(tmp_path / "missing")

    program = sorted((bundle / "programs").glob("*.bin"))[0]
    data = program.read_bytes()
    program.write_bytes(data[:-5])
    with pytest.raises(CompileError, match=f"{program.name}: corrupt program"):
        load(bundle)
    program.write_bytes(data)

    params = bundle / "params.safetensors"
    good = params.read_bytes()
    params.write_bytes(good[: len(good) // 3])
    with pytest.raises(CompileError, match="params.safetensors"):
        load(bundle)
    params.write_bytes(good)

    manifest = bundle / "manifest.json"
    text = manifest.read_text()
    manifest.write_text(text.replace('"version": 2', '"version": 7'))
    with pytest.raises(CompileError, match="bundle version 7"):
        load(bundle)
    manifest.write_text(text[:100])
    with pytest.raises(CompileError, match="manifest.json: not valid JSON"):
        load(bundle)
    manifest.write_text(text)
    load(bundle)


def test_save_refuses_foreign_directory(tmp_path, gpt_bitmod3) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(CompileError, match="not a bitmod bundle"):
        gpt_bitmod3.save(foreign)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]  # no staging left behind


# --- linears -------------------------------------------------------------------------------------


class TwoLinears(nn.Module):
    def __init__(self, k: int, n: int) -> None:
        super().__init__()
        self.with_bias = nn.Linear(k, n)
        self.without_bias = nn.Linear(k, n, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.with_bias(x), self.without_bias(x)


@pytest.mark.parametrize(
    ("shape", "n", "dtype"),
    [
        ((2, 3, 128), 16, "bitmod3"),  # batched input, one group
        ((5, 200), 37, "bitmod4"),  # K = 200: 128 + a ragged group of 72, ragged N and M
        ((1, 37), 9, "int8"),  # K = 37 < G: one group (G = 40) of 37 weights
        ((3, 1, 384), 130, "int6"),  # three groups; N over one pass of 128 columns
    ],
)
def test_linear_shapes(shape, n, dtype) -> None:
    torch.manual_seed(sum(shape) + n)
    model = TwoLinears(shape[-1], n)
    x = torch.randn(*shape)
    compiled = compile(model, (x,), dtype=dtype)
    run = compiled.run((x,), record=True)
    check_every_run(compiled, run.records)
    group, k_padded = plan_groups(shape[-1], 128)
    for name, output in zip(("with_bias", "without_bias"), run.outputs, strict=True):
        op = compiled.ops[name]
        assert (op.plan.group_size, op.plan.k_padded) == (group, k_padded)
        assert output.shape == (*shape[:-1], n) and output.dtype == torch.float32
        # The output is the binary's FP16 result reshaped: compare with the recorded store.
        (record,) = [r for r in run.records if r.op == name]
        assert torch.equal(output.reshape(-1, n), record.out.float())
        q = compiled.archive.get_quantized(op.binding.weight)
        assert q.shape == (n, shape[-1]) == (n, k_padded)  # K is not padded
        # the stored codes are the unpadded weight's, a ragged last group on its own weights
        direct = quantize(getattr(model, name).weight.detach(), dtype, group, 8)
        assert torch.equal(q.codes, direct.codes) and torch.equal(q.scales, direct.scales)
    assert compiled.ops["with_bias"].binding.bias == "with_bias.bias"
    assert compiled.ops["without_bias"].binding.bias is None


def test_plan_groups() -> None:
    assert plan_groups(128, 128) == (128, 128)
    assert plan_groups(4096, 128) == (128, 4096)
    assert plan_groups(200, 128) == (128, 200)  # no padding: a ragged last group of 72
    assert plan_groups(64, 128) == (64, 64)
    assert plan_groups(37, 128) == (40, 37)
    assert plan_groups(16, 32) == (16, 16)
    with pytest.raises(CompileError, match="multiple of 4"):
        plan_groups(64, 30)


class WithConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).transpose(1, 2))


def test_host_only_op_runs_and_is_reported() -> None:
    torch.manual_seed(3)
    model = WithConv().eval()
    x = torch.randn(2, 8, 5)
    compiled = compile(model, (x,), dtype="int8")
    out = compiled(x)
    with torch.no_grad():
        expected = model(x)
    # INT8 weights, FP16 activations: close to the float model.
    assert float((out - expected).abs().max()) < 0.02 * float(expected.abs().max())
    report = compiled.report()
    assert [layer["name"] for layer in report.layers] == ["head"]
    (conv,) = [op for op in report.host_ops if op["category"] == "convolution"]
    assert conv["where"] == "host" and conv["module"] == "conv"
    assert "convolution" in report.format()


def test_layers_overrides(gpt_setup) -> None:
    model, tokens = gpt_setup
    compiled = compile(
        model,
        (tokens,),
        dtype="bitmod3",
        layers={
            "lm_head": "host",
            "blocks.*.mlp.*": "bitmod4",
            "blocks.1.mlp.fc": "int8",
            "blocks.0.attn.matmul*": "int4",
        },
    )
    report = compiled.report()
    dtypes = {layer["name"]: layer["dtype"] for layer in report.layers}
    assert "lm_head" not in dtypes
    assert dtypes["blocks.0.mlp.fc"] == dtypes["blocks.0.mlp.proj"] == "bitmod4"
    assert dtypes["blocks.1.mlp.fc"] == "int8" and dtypes["blocks.1.mlp.proj"] == "bitmod4"
    assert dtypes["blocks.0.attn.matmul0"] == "int4" and dtypes["blocks.1.attn.matmul0"] == "int8"
    assert dtypes["blocks.0.attn.qkv"] == "bitmod3"
    (head,) = [op for op in report.host_ops if op["category"] == "matmul"]
    assert head["module"] == "lm_head" and "layers=" in head["reason"]
    assert compiled(tokens).shape == (2, 16, 256)


def test_option_errors() -> None:
    model, x = nn.Linear(8, 8), torch.randn(2, 8)
    cases = [
        ({"dtype": "bitmod5"}, "unknown data type 'bitmod5'"),
        ({"dtype": "mxfp4"}, "no bit-serial lowering"),
        ({"kv_dtype": "olive4"}, "kv_dtype: format 'olive4' has no bit-serial lowering"),
        ({"group_size": 6}, "group_size must be a positive multiple of 4"),
        ({"scale_bits": None}, "scale_bits must be 2..8"),
        ({"layers": {"nope": "int8"}}, "layers= names 'nope', which match no layer"),
        ({"layers": {"*": "fp16"}}, "layers\\['\\*'\\]"),
        ({"pipeline": "bitmod-quantize,no-such-pass"}, "unknown pass 'no-such-pass'"),
    ]
    for options, message in cases:
        with pytest.raises(CompileError, match=message):
            compile(model, (x,), **options)


def test_call_with_wrong_input_shape(gpt_setup, gpt_bitmod3) -> None:
    with pytest.raises(HostError, match="compiled for int64"):
        gpt_bitmod3(example_tokens(batch=1, tokens=16))


def test_activation_outside_fp16_is_a_clear_error() -> None:
    model = nn.Linear(4, 4)
    compiled = compile(model, (torch.randn(1, 4),), dtype="int8")
    with pytest.raises(CompileError, match="op 'linear'|not representable in FP16"):
        compiled(torch.full((1, 4), 1e6))


def test_progress_bar(capsys) -> None:
    model = nn.Sequential(*(nn.Linear(8, 8) for _ in range(3)))
    compile(model, (torch.randn(1, 8),), dtype="int8", progress=True)
    assert "bitmod.compile" in capsys.readouterr().err


class TiedWithKwargs(nn.Module):
    """Tied embedding/LM head, a linear applied twice, a keyword input, a dict output."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(50, 16)
        self.fc = nn.Linear(16, 16)
        self.head = nn.Linear(16, 50, bias=False)
        self.head.weight = self.embedding.weight

    def forward(self, tokens: torch.Tensor, scale: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.fc(self.fc(self.embedding(tokens) * scale))
        return {"logits": self.head(hidden), "hidden": hidden}


def test_tied_weights_kwargs_and_dict_outputs(tmp_path) -> None:
    torch.manual_seed(1)
    model = TiedWithKwargs().eval()
    tokens, scale = torch.randint(0, 50, (2, 5)), torch.tensor(0.5)
    compiled = compile(model, (tokens,), example_kwargs={"scale": scale}, dtype="int8")
    assert sorted(compiled.ops) == ["fc", "fc.linear0", "head"]
    run = compiled.run((tokens,), {"scale": scale}, record=True)
    check_every_run(compiled, run.records)
    assert set(run.outputs) == {"logits", "hidden"}
    with torch.no_grad():
        expected = model(tokens, scale)
    for key in expected:
        assert float((run.outputs[key] - expected[key]).abs().max()) < 0.05 * float(
            expected[key].abs().max()
        )
    # The shared matrix is both a host parameter (embedding) and a quantized weight (head).
    head_weight = compiled.ops["head"].binding.weight
    assert head_weight in compiled.host.param_names()
    assert compiled.archive.is_quantized(head_weight)
    loaded = load(compiled.save(tmp_path / "tied"))
    again = loaded(tokens, scale=scale)
    assert all(torch.equal(again[k], run.outputs[k]) for k in expected)


def test_tiling_follows_the_hardware_config(tmp_path: Path) -> None:
    # A machine with 16-row column accumulators: every planned block must fit them (with the
    # default 128 rows this GEMM of 64 rows is planned activations-resident in one block).
    hardware = dataclasses.replace(HardwareConfig(), max_block_rows=16)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4096, 512))
    x = torch.randn(64, 4096)
    compiled = compile(model, (x,), dtype="int8", hardware=hardware)
    compiled.save(tmp_path / "bundle")
    assembly = "".join(p.read_text() for p in (tmp_path / "bundle").rglob("*.s"))
    block_rows = [int(r) for r in re.findall(r"cfg\.mblock rows=(\d+)", assembly)]
    assert block_rows and max(block_rows) <= 16
    with torch.no_grad():
        assert torch.allclose(compiled(x).float(), model(x), atol=0.05, rtol=0.05)


# --- bundle integrity ----------------------------------------------------------------------------


def _edit_manifest(bundle, edit) -> str:
    path = bundle / "manifest.json"
    text = path.read_text()
    data = json.loads(text)
    edit(data)
    path.write_text(json.dumps(data, indent=1))
    return text


@pytest.mark.parametrize(
    ("edit", "entry"),
    [
        (lambda m: m["ops"][0]["plan"].update(dtype="int8"), r"entry 'ops\[0\]' \(op '"),
        (lambda m: m["ops"][1]["op"].update(mkn=[2, 2, 2]), r"entry 'ops\[1\]' \(op '"),
        (
            lambda m: m["host_ops"][0].update(name="renamed"),
            r"entry 'host_ops\[0\]' \(op 'renamed'\)",
        ),
        (lambda m: m["settings"].update(dtype="bitmod4"), r"entry 'settings'"),
        (lambda m: m["ops"].pop(), r"entry 'ops.count'"),
    ],
)
def test_an_edited_manifest_entry_is_named_on_load(tmp_path, gpt_bitmod3, edit, entry) -> None:
    bundle = gpt_bitmod3.save(tmp_path / "gpt")
    _edit_manifest(bundle, edit)
    with pytest.raises(CompileError, match=f"manifest.json: {entry}"):
        load(bundle)


@pytest.mark.parametrize(
    "name", ["model.mlir", "report.json", "host.json", "programs/*.mlir", "programs/*.s"]
)
@pytest.mark.parametrize("damage", ["truncate", "empty"])
def test_a_damaged_bundle_file_is_named_on_load(tmp_path, gpt_bitmod3, name, damage) -> None:
    bundle = gpt_bitmod3.save(tmp_path / "gpt")
    path = sorted(bundle.glob(name))[0]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"")
    expected = "empty" if damage == "empty" else "truncated or modified"
    expected += "|not valid JSON"  # host.json is parsed before the checksums are compared
    with pytest.raises(CompileError, match=f"{path.name}: ({expected})"):
        load(bundle)


def test_bitmod_report_refuses_a_modified_report(tmp_path, gpt_bitmod3) -> None:
    import subprocess
    import sys

    bundle = gpt_bitmod3.save(tmp_path / "gpt")
    report = bundle / "report.json"
    report.write_text(report.read_text().replace('"cycles": ', '"cycles": 1', 1))  # valid JSON
    command = [sys.executable, "-m", "bitmod.compiler.tools.bitmod_cli", "report", str(bundle)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 1
    assert "report.json: truncated or modified since the bundle was saved" in result.stderr
