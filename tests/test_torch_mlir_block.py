"""A pre-norm transformer block through torch-mlir, bitmod-opt and the module runner.

``torch_mlir.fx.export_and_import(..., output_type="linalg-on-tensors")`` of a block
(LayerNorm, QKV linear, softmax attention with batch_matmuls, GELU MLP) goes through
``bitmod-opt``'s default pipeline (``kv-dtype`` set for INT4), and the lowered module runs
on :mod:`bitmod.compiler.module_runner`: six launches, the linears on the archive's
weights and Q·Kᵀ / P·V with K and V quantized at run time, one run per batch × head slice.
The result is checked against

* ``bitmod.compile`` of the same module with the same formats (its own frontend, host
  program and per-op modules): each of its ops, on the operands the runner gave the same
  op, computes the same bits (same quantized weights, same K/V plan, same programs' results);
  run side by side, every op whose FP16 operands agree gives the same bits, and operands
  differ at most by one FP16 step where the two host programs round differently
  (torch-mlir's decomposed LayerNorm against PyTorch's fused kernel), so the blocks agree
  within the FP16 tolerance below (bit for bit in most cases);
* a float64 re-implementation of the block with the archive's dequantized weights, the FP16
  biases and the K/V values the machine quantized, within one FP16 step of the largest
  output (``2⁻¹¹ · max|y|``; to first order the six accelerated ops on the longest path,
  each rounding its input and output to FP16 with a PE datapath within 2⁻¹¹ relative, allow
  ``6 · 3 · 2⁻¹¹ · max|y|``; measured: 0.18 to 0.27 · 2⁻¹¹ · max|y|);
* the float model itself, within a quantization tolerance measured with margin (INT8
  weights: INT8 K/V < 0.5 %, INT4 K/V < 2 % relative error, INT4 worse than INT8).

Shapes are odd on purpose: d_model 40 / 72 / 39 / 65, heads 5 / 3 / 3 / 5 (head dims 8, 24,
13, 13), 5 to 9 tokens, batch 1 and 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import bitmod
import numpy as np
import pytest
import torch
from bitmod.compiler.module_runner import ModuleRunError, load_lowered, run_function
from bitmod.compiler.offload import QuantPlan
from bitmod.compiler.tools.bitmod_opt import main
from bitmod.runtime.emulator.machine import Machine
from bitmod.runtime.formats import dequantize, quantize
from torch import nn


class Block(nn.Module):
    """A pre-norm transformer block with explicit attention matmuls."""

    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, 4 * d_model)
        self.fc2 = nn.Linear(4 * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, d_model = x.shape
        head_dim = d_model // self.heads
        q, k, v = self.qkv(self.ln1(x)).split(d_model, dim=-1)
        q, k, v = (t.view(batch, tokens, self.heads, head_dim).transpose(1, 2) for t in (q, k, v))
        scores = (q @ k.transpose(-2, -1)) * head_dim**-0.5
        y = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(batch, tokens, d_model)
        x = x + self.proj(y)
        return x + self.fc2(nn.functional.gelu(self.fc1(self.ln2(x))))


@dataclass(frozen=True)
class Case:
    d_model: int
    heads: int
    tokens: int
    batch: int
    kv_dtype: str
    dtype: str = "bitmod3"

    @property
    def id(self) -> str:
        return (
            f"d{self.d_model}-h{self.heads}-t{self.tokens}-b{self.batch}-"
            f"{self.dtype}-kv{self.kv_dtype}"
        )


CASES = [
    Case(40, 5, 7, 1, "int8"),
    Case(72, 3, 5, 2, "int4"),
    Case(39, 3, 9, 1, "int8", "int8"),
    Case(39, 3, 9, 1, "int4", "int8"),
    Case(65, 5, 6, 2, "int8", "bitmod4"),
]

LINEARS = {"fc1": "qkv", "fc2": "proj", "fc3": "fc1", "fc4": "fc2"}
"""The converted layers (program order) and the block's linears they are."""


@dataclass
class Lowered:
    case: Case
    model: Block
    x: torch.Tensor
    path: Path
    text: str


def _lower(tmp: Path, case: Case) -> Lowered:
    from torch_mlir import fx

    torch.manual_seed(case.d_model * 100 + case.heads)
    model = Block(case.d_model, case.heads).eval()
    x = torch.randn(case.batch, case.tokens, case.d_model)
    tmp.mkdir(parents=True, exist_ok=True)
    source = tmp / "block.mlir"
    source.write_text(str(fx.export_and_import(model, x, output_type="linalg-on-tensors")))
    if case.kv_dtype == "int8" and case.dtype == "bitmod3":
        pipeline = ["--pipeline=bitmod-default"]  # INT8 K/V is the default
    else:
        pipeline = [
            "-p",
            f"convert-linalg-to-bitmod{{kv-dtype={case.kv_dtype}}},"
            f"bitmod-quantize{{dtype={case.dtype}}},bitmod-tile,bitmod-lower-to-isa",
        ]
    out = tmp / "lowered.mlir"
    assert main([str(source), *pipeline, "-o", str(out)]) == 0
    return Lowered(case, model, x, out, out.read_text())


@pytest.fixture(scope="module", params=CASES, ids=[c.id for c in CASES])
def lowered(request, tmp_path_factory) -> Lowered:
    return _lower(tmp_path_factory.mktemp(request.param.id), request.param)


def test_every_matmul_of_the_block_is_a_launch(lowered: Lowered) -> None:
    text = lowered.text
    assert "linalg.batch_matmul" not in text and "linalg.matmul" not in text
    assert text.count("bsisa.launch") == 6
    for name in ("matmul1.rhs", "matmul2.rhs"):
        assert f'qweight "{name}"' in text and f'fmt "{lowered.case.kv_dtype}"' in text
    ctx, module = load_lowered(lowered.path)
    run = run_function(ctx, module, [lowered.x])
    runs = {name: stats.runs for name, stats in run.stats.items()}
    slices = lowered.case.batch * lowered.case.heads
    assert runs == {"fc1": 1, "matmul1": slices, "matmul2": slices, "fc2": 1, "fc3": 1, "fc4": 1}


def test_the_block_equals_bitmod_compile_bit_for_bit(lowered: Lowered) -> None:
    case = lowered.case
    ctx, module = load_lowered(lowered.path)
    run = run_function(ctx, module, [lowered.x], record=True)
    compiled = bitmod.compile(lowered.model, (lowered.x,), dtype=case.dtype, kv_dtype=case.kv_dtype)
    reference = compiled.run((lowered.x,), record=True)
    assert run.records is not None and reference.records is not None
    assert len(run.records) == len(reference.records) == 4 + 2 * case.batch * case.heads

    # Each op of bitmod.compile (its own program, plan and archive) on the operands the
    # module runner gave the same op: the same bits.
    machine = Machine()
    launches = list(dict.fromkeys(record.op for record in run.records))
    assert launches == ["fc1", "matmul1", "matmul2", "fc2", "fc3", "fc4"]
    for launch, name in zip(launches, compiled.ops, strict=True):
        op = compiled.ops[name]
        for record in (r for r in run.records if r.op == launch):
            inputs: dict[str, object] = {op.binding.act: record.act.numpy()}
            memory = compiled.archive
            if record.weight is None:
                if op.binding.bias is not None:
                    bias = compiled.archive.get(op.binding.bias).half()
                    inputs[op.binding.bias] = bias.numpy()
            else:
                w = record.weight
                assert op.plan == QuantPlan(w.fmt, w.group_size, w.shape[1], w.scale_bits)
                inputs[op.binding.weight] = w
                memory = None
            out = machine.run(op.program, memory, inputs).outputs[op.binding.out]
            assert torch.equal(torch.from_numpy(np.array(out)), record.out), (launch, name)

    # Run side by side, an op whose FP16 operands are equal in both paths gives equal bits.
    # The host ops differ in rounding (torch-mlir's decomposed LayerNorm/softmax/GELU in
    # f32/f64 against PyTorch's fused kernels), which can move an activation across an FP16
    # rounding boundary: then the two differ by one FP16 step in that element.
    for mine, theirs in zip(run.records, reference.records, strict=True):
        assert mine.index == theirs.index
        same_weight = mine.weight is None or (
            theirs.weight is not None
            and torch.equal(mine.weight.codes, theirs.weight.codes)
            and torch.equal(mine.weight.scales, theirs.weight.scales)
        )
        if torch.equal(mine.act, theirs.act) and same_weight:
            assert torch.equal(mine.out, theirs.out), (mine.op, theirs.op, mine.index)
        else:
            step = torch.finfo(torch.float16).eps * theirs.act.float().abs()
            assert bool(((mine.act.float() - theirs.act.float()).abs() <= step).all())
    y, expected = run.outputs[0].double(), reference.outputs.double()
    assert float((y - expected).abs().max()) <= 6 * 3 * 2.0**-11 * float(expected.abs().max())

    # the same stored weights: the archive's codes are the model's weights quantized
    for layer, module_name in LINEARS.items():
        stored = ctx.archive.get_quantized(f"{layer}.weight")
        weight = getattr(lowered.model, module_name).weight.detach()
        again = quantize(weight.float(), case.dtype, stored.group_size, stored.scale_bits)
        assert torch.equal(stored.codes, again.codes) and torch.equal(stored.scales, again.scales)


def _reference(lowered: Lowered, archive, records) -> torch.Tensor:
    """The block in float64 with the archive's dequantized weights, FP16 biases and the K/V
    the machine quantized (from the run's records)."""
    model, case = lowered.model, lowered.case
    d, heads = case.d_model, case.heads
    head_dim = d // heads

    def linear(x: torch.Tensor, layer: str) -> torch.Tensor:
        w = dequantize(archive.get_quantized(f"{layer}.weight")).double()[:, : x.shape[-1]]
        b = archive.get(f"{layer}.bias").half().double()
        return x @ w.T + b

    def norm(x: torch.Tensor, ln: nn.LayerNorm) -> torch.Tensor:
        return nn.functional.layer_norm(
            x, (d,), ln.weight.detach().double(), ln.bias.detach().double(), ln.eps
        )

    def slices(name: str) -> torch.Tensor:
        weights = [r.weight for r in records if r.op == name]
        rows = [dequantize(w).double()[:, : w.shape[1]] for w in weights]
        return torch.stack(rows)

    x = lowered.x.double()
    batch, tokens = x.shape[:2]
    q, _, _ = linear(norm(x, model.ln1), "fc1").split(d, dim=-1)
    q = q.view(batch, tokens, heads, head_dim).transpose(1, 2).reshape(-1, tokens, head_dim)
    keys = slices("matmul1")  # [B·H, T, hd]: W = K, one row per key token
    values_t = slices("matmul2")  # [B·H, hd, T]: W = Vᵀ, one row per value channel
    p = (q @ keys.transpose(1, 2) * head_dim**-0.5).softmax(dim=-1)
    y = (p @ values_t.transpose(1, 2)).view(batch, heads, tokens, head_dim)
    x = x + linear(y.transpose(1, 2).reshape(batch, tokens, d), "fc2")
    return x + linear(nn.functional.gelu(linear(norm(x, model.ln2), "fc3")), "fc4")


def test_the_block_agrees_with_a_float64_reimplementation(lowered: Lowered) -> None:
    ctx, module = load_lowered(lowered.path)
    run = run_function(ctx, module, [lowered.x], record=True)
    expected = _reference(lowered, ctx.archive, run.records)
    y = run.outputs[0].double()
    # First order, the six FP16-rounding ops allow 6 * 3 * 2^-11 * max|y|; measured here are
    # 0.18..0.27 * 2^-11 * max|y| (later ops damp earlier roundings), so one FP16 step of the
    # largest output is the bound.
    tolerance = 2.0**-11 * float(expected.abs().max())
    assert float((y - expected).abs().max()) < tolerance


def test_int8_weights_stay_close_to_the_float_model(tmp_path: Path) -> None:
    errors = {}
    for kv_dtype in ("int8", "int4"):
        lowered = _lower(tmp_path / kv_dtype, Case(39, 3, 9, 1, kv_dtype, "int8"))
        ctx, module = load_lowered(lowered.path)
        y = run_function(ctx, module, [lowered.x]).outputs[0]
        expected = lowered.model(lowered.x).detach()
        errors[kv_dtype] = float((y - expected).norm() / expected.norm())
    assert 0 < errors["int8"] < 0.005
    assert errors["int8"] < errors["int4"] < 0.02


def _example_gpt():
    """The example GPT (examples/gpt/model.py), small: token and position embeddings, two
    causal-attention blocks, the LM head."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "examples" / "gpt" / "model.py"
    spec = importlib.util.spec_from_file_location("example_gpt_model", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    model = module.gpt(vocab_size=64, context=16, d_model=32, n_heads=2).eval()
    for layer in model.modules():  # torch-mlir imports persistent buffers only
        if "causal_mask" in layer._buffers:
            mask = layer._buffers.pop("causal_mask")
            layer.register_buffer("causal_mask", mask, persistent=True)
    return model, module.example_tokens(tokens=10, vocab_size=64)


def test_a_whole_gpt_with_a_causal_mask_runs_as_torch_does(tmp_path: Path) -> None:
    """torch-mlir's GPT: embedding gathers with their bounds checks, a boolean causal mask
    (an i8 dense_resource) and masked_fill's -inf (``dense<0xFF800000>``) on the host; the
    unlowered module computes torch's logits, the lowered one (INT8 weights and K/V) the
    same next tokens."""
    from torch_mlir import fx

    model, tokens = _example_gpt()
    source = tmp_path / "gpt.mlir"
    source.write_text(str(fx.export_and_import(model, tokens, output_type="linalg-on-tensors")))
    with torch.no_grad():
        expected = model(tokens)
    ctx, module = load_lowered(source)
    (host,) = run_function(ctx, module, [tokens]).outputs
    torch.testing.assert_close(host, expected, rtol=1e-5, atol=1e-5)
    lowered = tmp_path / "gpt.lowered.mlir"
    pipeline = (
        "convert-linalg-to-bitmod,bitmod-quantize{dtype=int8},bitmod-tile,bitmod-lower-to-isa"
    )
    assert main([str(source), "-p", pipeline, "-o", str(lowered)]) == 0
    ctx, module = load_lowered(lowered)
    run = run_function(ctx, module, [tokens])
    assert len(run.stats) == 2 * 6 + 1  # per block: qkv, q·kᵀ, p·v, proj, fc, proj; the head
    (logits,) = run.outputs
    assert float((logits - expected).norm() / expected.norm()) < 0.05
    assert torch.equal(logits.argmax(-1), expected.argmax(-1))


def _g() -> torch.Generator:
    return torch.Generator().manual_seed(5)


#: torch functions whose torch-mlir form the host runs, with their inputs: what Llama-style
#: models need (RMSNorm's x², rotary's concatenations, masks of -inf) and more.
HOST_FUNCTIONS = {
    "rms_norm": (
        lambda x: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6),
        lambda: (torch.randn(3, 6, generator=_g()),),
    ),
    "rotary": (
        lambda x: torch.cat([-x[..., 2:], x[..., :2]], -1) * torch.cos(torch.arange(4.0)),
        lambda: (torch.randn(3, 4, generator=_g()),),
    ),
    "stack_roll": (
        lambda x: torch.stack([x, x.roll(1, -1)], 0),
        lambda: (torch.randn(2, 5, generator=_g()),),
    ),
    "masked_softmax": (
        lambda x: torch.softmax(x.masked_fill(x > 0.5, float("-inf")), -1),
        lambda: (torch.randn(3, 5, generator=_g()),),
    ),
    "softplus_atan": (
        lambda x: torch.nn.functional.softplus(x) + torch.atan(x),
        lambda: (torch.randn(3, 4, generator=_g()),),
    ),
    "round_half_even": (
        lambda x: torch.round(x * 2) + torch.round(torch.tensor([0.5, 1.5, 2.5, -0.5])),
        lambda: (torch.randn(3, 4, generator=_g()),),
    ),
    "count_positive": (lambda x: (x > 0).sum(-1), lambda: (torch.randn(3, 4, generator=_g()),)),
    "max_pool": (
        lambda x: torch.nn.functional.max_pool2d(x, 3, stride=2, padding=1, dilation=1),
        lambda: (torch.randn(1, 2, 6, 5, generator=_g()),),
    ),
    "cumsum": (  # tm_tensor.scan
        lambda x: x.cumsum(-1) + (x > 0).long().cumsum(0),
        lambda: (torch.randn(3, 4, generator=_g()),),
    ),
    "int_remainder": (
        lambda x: torch.remainder((x * 10).to(torch.int64), 3),
        lambda: (torch.randn(3, 4, generator=_g()),),
    ),
}


@pytest.mark.parametrize("name", sorted(HOST_FUNCTIONS))
def test_torch_mlir_host_ops_compute_what_torch_does(name: str) -> None:
    from torch_mlir import fx

    function, make_inputs = HOST_FUNCTIONS[name]
    inputs = make_inputs()

    class Wrapped(nn.Module):
        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            return function(*args)

    text = str(fx.export_and_import(Wrapped(), *inputs, output_type="linalg-on-tensors"))
    ctx = bitmod.passes.context.make_context()
    module = bitmod.compiler.ir_io.parse_module(ctx, text, f"{name}.mlir")
    (result,) = run_function(ctx, module, list(inputs)).outputs
    with torch.no_grad():
        expected = function(*inputs)
    assert result.dtype == expected.dtype
    torch.testing.assert_close(result, expected, rtol=1e-6, atol=1e-6)


def test_unsigned_and_bit_casts_read_the_bits(tmp_path: Path) -> None:
    """``arith.extui`` / ``uitofp`` read an i8 of bits 0xFF as 255 and ``arith.bitcast`` keeps
    the bits (before: -1 and a value conversion); ``arith.remsi`` by zero is an error."""
    source = tmp_path / "casts.mlir"
    source.write_text(
        "#map = affine_map<(d0) -> (d0)>\n"
        "func.func @main(%x: tensor<2xi8>, %f: tensor<2xf32>) -> (tensor<2xi32>, tensor<2xf32>,"
        " tensor<2xi32>) {\n"
        "  %ei = tensor.empty() : tensor<2xi32>\n"
        "  %ef = tensor.empty() : tensor<2xf32>\n"
        "  %u, %g, %b = linalg.generic {indexing_maps = [#map, #map, #map, #map, #map],"
        ' iterator_types = ["parallel"]} ins(%x, %f : tensor<2xi8>, tensor<2xf32>)'
        " outs(%ei, %ef, %ei : tensor<2xi32>, tensor<2xf32>, tensor<2xi32>) {\n"
        "  ^bb0(%a: i8, %c: f32, %o1: i32, %o2: f32, %o3: i32):\n"
        "    %1 = arith.extui %a : i8 to i32\n"
        "    %2 = arith.uitofp %a : i8 to f32\n"
        "    %3 = arith.bitcast %c : f32 to i32\n"
        "    linalg.yield %1, %2, %3 : i32, f32, i32\n"
        "  } -> (tensor<2xi32>, tensor<2xf32>, tensor<2xi32>)\n"
        "  func.return %u, %g, %b : tensor<2xi32>, tensor<2xf32>, tensor<2xi32>\n}\n"
    )
    ctx, module = load_lowered(source)
    x = torch.tensor([-1, 5], dtype=torch.int8)
    f = torch.tensor([1.0, -2.0])
    unsigned, floats, bits = run_function(ctx, module, [x, f]).outputs
    assert unsigned.tolist() == [255, 5] and floats.tolist() == [255.0, 5.0]
    assert bits.tolist() == [0x3F800000, -0x40000000]  # 0xC0000000 as a signed i32
    source.write_text(
        "#map = affine_map<(d0) -> (d0)>\n"
        "func.func @main(%x: tensor<2xi64>, %y: tensor<2xi64>) -> tensor<2xi64> {\n"
        "  %e = tensor.empty() : tensor<2xi64>\n"
        "  %r = linalg.generic {indexing_maps = [#map, #map, #map],"
        ' iterator_types = ["parallel"]} ins(%x, %y : tensor<2xi64>, tensor<2xi64>)'
        " outs(%e : tensor<2xi64>) {\n"
        "  ^bb0(%a: i64, %b: i64, %o: i64):\n"
        "    %1 = arith.remsi %a, %b : i64\n"
        "    linalg.yield %1 : i64\n"
        "  } -> tensor<2xi64>\n"
        "  func.return %r : tensor<2xi64>\n}\n"
    )
    ctx, module = load_lowered(source)
    (remainder,) = run_function(ctx, module, [torch.tensor([-7, 7]), torch.tensor([3, -3])]).outputs
    assert remainder.tolist() == [-1, 1]  # the sign of the dividend
    with pytest.raises(ModuleRunError, match="integer remainder by zero"):
        run_function(ctx, module, [torch.tensor([1, 2]), torch.tensor([1, 0])])


def test_an_exclusive_scan_starts_from_the_accumulator(tmp_path: Path) -> None:
    """``inclusive(false)``: position 0 is the accumulator, position i combines the input at
    i - 1 with the output at i - 1 (a running maximum here); the second result is the last."""
    source = tmp_path / "scan.mlir"
    source.write_text(
        "func.func @main(%x: tensor<3x2xf32>, %o: tensor<3x2xf32>, %a: tensor<2xf32>) ->"
        " (tensor<3x2xf32>, tensor<2xf32>) {\n"
        "  %s:2 = tm_tensor.scan dimension(0) inclusive(false) ins(%x : tensor<3x2xf32>)"
        " outs(%o, %a : tensor<3x2xf32>, tensor<2xf32>) {\n"
        "  ^bb0(%p: f32, %q: f32):\n"
        "    %m = arith.maximumf %p, %q : f32\n"
        "    tm_tensor.yield %m : f32\n"
        "  } -> tensor<3x2xf32>, tensor<2xf32>\n"
        "  func.return %s#0, %s#1 : tensor<3x2xf32>, tensor<2xf32>\n}\n"
    )
    ctx, module = load_lowered(source)
    x = torch.tensor([[3.0, -1.0], [1.0, 5.0], [4.0, 0.0]])
    start = torch.tensor([2.0, -9.0])
    output, last = run_function(ctx, module, [x, torch.zeros(3, 2), start]).outputs
    assert output.tolist() == [[2.0, -9.0], [3.0, -1.0], [3.0, 5.0]]
    assert last.tolist() == [3.0, 5.0]


def _hugging_face(family: str) -> nn.Module:
    """A random two-layer causal LM of ``family`` (vocabulary 64, hidden 64), its norm weights
    made non-trivial."""
    import transformers

    torch.manual_seed(0)
    common = dict(vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=2)
    common |= dict(max_position_embeddings=128)
    if family == "llama":
        config = transformers.LlamaConfig(num_attention_heads=4, num_key_value_heads=2, **common)
        model = transformers.LlamaForCausalLM(config)
    elif family == "qwen2":
        config = transformers.Qwen2Config(num_attention_heads=4, num_key_value_heads=2, **common)
        model = transformers.Qwen2ForCausalLM(config)
    elif family == "gemma3":
        config = transformers.Gemma3TextConfig(
            num_attention_heads=2, num_key_value_heads=1, head_dim=32, sliding_window=8, **common
        )
        model = transformers.Gemma3ForCausalLM(config)
    else:
        config = transformers.GPT2Config(vocab_size=64, n_embd=64, n_layer=2, n_head=4)
        model = transformers.GPT2LMHeadModel(config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.uniform_(-0.5, 0.5) if family == "gemma3" else parameter.uniform_(
                    0.5, 1.5
                )

    class Logits(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return self.model(input_ids=tokens, use_cache=False).logits

    wrapped = Logits().eval()
    for layer in wrapped.modules():  # torch-mlir imports persistent buffers only
        layer._non_persistent_buffers_set.clear()
    return wrapped


#: Host tolerance: Gemma 3's GELU (tanh form) comes out of torch-mlir with the constant
#: 7.977240e-01 for sqrt(2/pi) = 0.7978846, which moves its logits by about 2e-5.
_HOST_TOLERANCE = {"gemma3": 1e-4}


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma3", "gpt2"])
def test_hugging_face_models_run_as_transformers_does(tmp_path: Path, family: str) -> None:
    """transformers' causal LMs through torch-mlir (Llama and Qwen2: GQA, RMSNorm, rotary,
    SiLU, position ids by torch.cumsum, a tm_tensor.scan; Gemma 3: sliding-window and global
    attention, GELU; GPT-2: learned positions, LayerNorm): the host computes transformers'
    logits; lowered with INT8 weights and K/V, the same next tokens."""
    from torch_mlir import fx

    model = _hugging_face(family)
    tokens = torch.randint(0, 64, (1, 12), generator=_g())
    with torch.no_grad():
        expected = model(tokens)
    source = tmp_path / f"{family}.mlir"
    source.write_text(str(fx.export_and_import(model, tokens, output_type="linalg-on-tensors")))
    ctx, module = load_lowered(source)
    (host,) = run_function(ctx, module, [tokens]).outputs
    tolerance = _HOST_TOLERANCE.get(family, 1e-5)
    torch.testing.assert_close(host, expected, rtol=tolerance, atol=tolerance)
    lowered = tmp_path / f"{family}.lowered.mlir"
    pipeline = (
        "convert-linalg-to-bitmod,bitmod-quantize{dtype=int8},bitmod-tile,bitmod-lower-to-isa"
    )
    assert main([str(source), "-p", pipeline, "-o", str(lowered)]) == 0
    (logits,) = run_function(*load_lowered(lowered), [tokens]).outputs
    assert float((logits - expected).norm() / expected.norm()) < 0.05
    # the next token of every position, or one whose float logit is as good within 2 %
    # of the logits' range (a random model's near ties)
    chosen = expected.gather(-1, logits.argmax(-1, keepdim=True)).squeeze(-1)
    slack = 0.02 * float(expected.max() - expected.min())
    assert bool((chosen >= expected.amax(-1) - slack).all())
    assert float((logits.argmax(-1) == expected.argmax(-1)).float().mean()) >= 0.75


# --- the activation products alone, and what the runner refuses ---------------------------

PRODUCTS = (
    Path(__file__).parent / "filecheck" / "convert-linalg-to-bitmod" / "activation-products.mlir"
)


def _lower_products(tmp_path: Path, convert: str) -> tuple[object, object]:
    out = tmp_path / "products.mlir"
    pipeline = f"{convert},bitmod-quantize,bitmod-tile,bitmod-lower-to-isa"
    assert main([str(PRODUCTS), "-p", pipeline, "-o", str(out)]) == 0
    return load_lowered(out)


def _fake_quantized_t(b: torch.Tensor, fmt: str, group: int) -> torch.Tensor:
    """Bᵀ of ``b [..., K, N]`` rounded to FP16 and quantized per row (float64 [..., N, K])."""
    rows = b.half().float().transpose(-1, -2)
    flat = rows.reshape(-1, rows.shape[-1]).contiguous()
    return dequantize(quantize(flat, fmt, group, 8)).double().reshape(rows.shape)


@pytest.mark.parametrize(("kv_dtype", "group"), [("int8", 128), ("int4", 4)])
def test_products_compute_with_run_time_quantized_operands(tmp_path, kv_dtype, group) -> None:
    ctx, module = _lower_products(
        tmp_path, f"convert-linalg-to-bitmod{{kv-dtype={kv_dtype} kv-group-size={group}}}"
    )
    torch.manual_seed(3)
    q, k, v = torch.randn(2, 3, 4), torch.randn(1, 3, 2, 4), torch.randn(2, 3, 4)
    (o,) = run_function(ctx, module, [q, k, v], function="attention").outputs
    # K^T as torch-mlir builds it: [1, T, H, D] -> [1, H, D, T] -> [H, D, T]
    k_t = k.permute(0, 2, 3, 1).reshape(2, 4, 3)
    g = min(group, 4)  # K = 4 (head dim) and K = 3 (tokens) are one group of 4 each
    s = (q.half().double() @ _fake_quantized_t(k_t, kv_dtype, g).transpose(1, 2)).half()
    expected = s.double() @ _fake_quantized_t(v, kv_dtype, g).transpose(1, 2)
    assert float((o.double() - expected).abs().max()) <= 3 * 2.0**-11 * float(expected.abs().max())
    x, w = torch.randn(2, 4), torch.randn(4, 3)
    (y,) = run_function(ctx, module, [x, w], function="plain").outputs
    expected = x.half().double() @ _fake_quantized_t(w, kv_dtype, g).transpose(0, 1)
    assert float((y.double() - expected).abs().max()) <= 2 * 2.0**-11 * float(expected.abs().max())


def test_products_kept_on_the_host_run_in_float(tmp_path: Path) -> None:
    out = tmp_path / "host.mlir"
    pipeline = "convert-linalg-to-bitmod{kv-dtype=host}"
    assert main([str(PRODUCTS), "-p", pipeline, "-o", str(out)]) == 0
    ctx, module = load_lowered(out)
    torch.manual_seed(4)
    q, k, v = torch.randn(2, 3, 4), torch.randn(1, 3, 2, 4), torch.randn(2, 3, 4)
    (o,) = run_function(ctx, module, [q, k, v], function="attention").outputs
    k_t = k.permute(0, 2, 3, 1).reshape(2, 4, 3)
    torch.testing.assert_close(o, (q @ k_t) @ v, rtol=1e-6, atol=1e-6)


def test_a_k_value_beyond_fp16_is_an_error_at_its_launch(tmp_path: Path) -> None:
    ctx, module = _lower_products(tmp_path, "convert-linalg-to-bitmod")
    k = torch.zeros(1, 3, 2, 4)
    k[0, 1, 0, 2] = 1e6
    with pytest.raises(ModuleRunError) as caught:
        run_function(
            ctx, module, [torch.ones(2, 3, 4), k, torch.ones(2, 3, 4)], function="attention"
        )
    message = caught.value.render()
    assert (
        message.startswith(f"{tmp_path / 'products.mlir'}:")
        and ": error: 'bsisa.launch' op" in message
    )
    assert (
        "op 'matmul1' right operand: value 1000000.0 at [0, 1, 2] is not representable in FP16"
        in message
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "  %i = arith.constant 5 : index\n"
            "  %e = tensor.extract %x[%i] : tensor<4xf32>\n"
            "  %y = tensor.from_elements %e : tensor<1xf32>\n",
            "'tensor.extract' op module runner: tensor.extract index 5 is out of bounds for "
            "dimension 0 of size 4",
        ),
        (
            "  %y = tensor.pad %x low[0] high[-3] {\n"
            "  ^bb0(%p: index):\n"
            "    %z = arith.constant 0.0 : f32\n"
            "    tensor.yield %z : f32\n"
            "  } : tensor<4xf32> to tensor<1xf32>\n",
            "'tensor.pad' op module runner: cannot run this op on the host: negative padding "
            "amounts",
        ),
        (
            "  %y = tensor.pad %x low[0] high[-3] {\n"
            "  ^bb0(%p: index):\n"
            "    %c = arith.index_cast %p : index to i64\n"
            "    %z = arith.sitofp %c : i64 to f32\n"
            "    tensor.yield %z : f32\n"
            "  } : tensor<4xf32> to tensor<1xf32>\n",
            "'tensor.pad' op module runner: cannot run this op on the host: a padding value "
            "that depends on the position",
        ),
    ],
)
def test_host_gathers_and_pads_refuse_what_they_cannot_do(tmp_path: Path, body, message) -> None:
    source = tmp_path / "f.mlir"
    source.write_text(
        "func.func @main(%x: tensor<4xf32>) -> tensor<1xf32> {\n"
        + body
        + "  func.return %y : tensor<1xf32>\n}\n"
    )
    ctx, module = load_lowered(source)
    with pytest.raises(ModuleRunError) as caught:
        run_function(ctx, module, [torch.ones(4)])
    assert caught.value.render().endswith(message)


def test_a_host_pad_and_gather_compute_what_torch_does(tmp_path: Path) -> None:
    source = tmp_path / "f.mlir"
    source.write_text(
        "func.func @main(%x: tensor<2x3xf32>) -> (tensor<3x6xf32>, tensor<1xf32>) {\n"
        "  %v = arith.constant -2.5 : f32\n"
        "  %y = tensor.pad %x low[1, 0] high[0, 3] {\n"
        "  ^bb0(%p: index, %q: index):\n"
        "    tensor.yield %v : f32\n"
        "  } : tensor<2x3xf32> to tensor<3x6xf32>\n"
        "  %i = arith.constant 1 : index\n"
        "  %j = arith.constant 2 : index\n"
        "  %e = tensor.extract %x[%i, %j] : tensor<2x3xf32>\n"
        "  %g = tensor.from_elements %e : tensor<1xf32>\n"
        "  func.return %y, %g : tensor<3x6xf32>, tensor<1xf32>\n}\n"
    )
    ctx, module = load_lowered(source)
    x = torch.randn(2, 3)
    padded, element = run_function(ctx, module, [x]).outputs
    expected = torch.full((3, 6), -2.5)
    expected[1:, :3] = x
    assert torch.equal(padded, expected)
    assert torch.equal(element, x[1, 2:3])


def test_what_the_runner_cannot_run_is_one_located_error(tmp_path: Path) -> None:
    source = tmp_path / "f.mlir"
    source.write_text(
        "func.func @main(%x: tensor<2xf32>) -> tensor<2xf32> {\n"
        "  %y = math.cbrt %x : tensor<2xf32>\n"
        "  func.return %y : tensor<2xf32>\n"
        "}\n"
    )
    ctx, module = load_lowered(source)
    with pytest.raises(ModuleRunError) as caught:
        run_function(ctx, module, [torch.ones(2)])
    assert caught.value.render() == (
        f"{source}:2:3: error: 'math.cbrt' op module runner: cannot run this op on the host: "
        "no host implementation of this op"
    )
    with pytest.raises(ModuleRunError) as caught:
        run_function(ctx, module, [torch.ones(3)])
    assert caught.value.render() == (
        f"{source}:1:1: error: 'func.func' op module runner: input 0 of @main has shape [3], "
        "the function takes [2]"
    )
    with pytest.raises(ModuleRunError, match="no function @forward .functions: @main."):
        run_function(ctx, module, [torch.ones(2)], function="forward")


def test_a_saved_bundles_ir_takes_the_whole_pipeline(tmp_path: Path) -> None:
    # bitmod.compile writes its attention operands in the same run-time form, so its saved
    # model.mlir now lowers through bitmod-quantize too (it used to stop there).
    torch.manual_seed(5)
    model, x = Block(40, 5).eval(), torch.randn(1, 7, 40)
    bundle = bitmod.compile(model, (x,), dtype="bitmod3").save(tmp_path / "bundle")
    out = tmp_path / "lowered.mlir"
    pipeline = "bitmod-quantize,bitmod-tile,bitmod-lower-to-isa"
    assert main([str(bundle / "model.mlir"), "-p", pipeline, "-o", str(out)]) == 0
    text = out.read_text()
    assert text.count("bsisa.launch") == 6
    assert text.count("weight @") == 2  # the two launches that bind K / V
    assert 'qweight "matmul0.rhs"' in text and 'qweight "matmul1.rhs"' in text
