"""The torch frontend and the host program: what is offloaded, what stays, and why.

The host program is checked by running it with the offloaded ops computed by plain torch
(the float weights the frontend recorded): it must reproduce the model's own output exactly,
before and after a JSON round trip, which shows that the graph walk kept every host op and
wired each offloaded op to the right operands and weights.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from bitmod.compiler.host import HostError, HostProgram
from bitmod.compiler.torch_frontend import (
    CompileError,
    ImportedModel,
    TraceError,
    import_model,
)
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "gpt"))
from model import example_tokens, gpt  # noqa: E402


def run_with_torch(imported: ImportedModel, *args: torch.Tensor, host: HostProgram | None = None):
    """Run the host program with every offloaded op computed in float32 by torch."""
    host = host or imported.host
    ops = {op.name: op for op in imported.ops}

    def accelerated(name: str, operands: list[torch.Tensor]) -> torch.Tensor:
        op = ops[name]
        if op.kind == "linear":
            bias = imported.tensors[op.bias] if op.bias else None
            return F.linear(operands[0], imported.tensors[op.weight], bias)
        return torch.matmul(*operands)

    return host.run(host.flatten_inputs(args, {}), imported.tensors.__getitem__, accelerated)


@pytest.fixture(scope="module")
def gpt_import() -> tuple[nn.Module, torch.Tensor, ImportedModel]:
    model = gpt(seed=0)
    tokens = example_tokens(batch=2, tokens=16)
    return model, tokens, import_model(model, (tokens,))


def test_gpt_offloads_every_matmul(gpt_import) -> None:
    _, _, imported = gpt_import
    linears = [op.name for op in imported.ops if op.kind == "linear"]
    matmuls = [op.name for op in imported.ops if op.kind == "matmul"]
    per_block = ["attn.qkv", "attn.proj", "mlp.fc", "mlp.proj"]
    assert linears == [f"blocks.{b}.{n}" for b in (0, 1) for n in per_block] + ["lm_head"]
    assert matmuls == [f"blocks.{b}.attn.matmul{i}" for b in (0, 1) for i in (0, 1)]
    qk = next(op for op in imported.ops if op.name == "blocks.0.attn.matmul0")
    # [B, H, T, D] @ [B, H, D, T]: one run per (batch, head), M = T, K = D, N = T
    assert qk.input_shapes == ((2, 4, 16, 32), (2, 4, 32, 16))
    assert (qk.mkn, qk.runs) == ((16, 32, 16), 8)
    fc = next(op for op in imported.ops if op.name == "blocks.0.mlp.fc")
    assert (fc.mkn, fc.runs, fc.weight, fc.bias) == (
        (32, 128, 512),
        1,
        "blocks.0.mlp.fc.weight",
        "blocks.0.mlp.fc.bias",
    )
    assert next(op for op in imported.ops if op.name == "lm_head").bias is None


def test_gpt_host_ops_say_why(gpt_import) -> None:
    _, _, imported = gpt_import
    categories = {(op.aten, op.category) for op in imported.host_ops}
    assert ("aten.layer_norm.default", "normalization") in categories
    assert ("aten.softmax.int", "softmax") in categories
    assert ("aten.gelu.default", "activation") in categories
    assert ("aten.embedding.default", "embedding") in categories
    assert ("aten.add.Tensor", "elementwise") in categories
    assert all(op.reason for op in imported.host_ops)
    # No matmul stayed on the host, and the offloaded weights are not host parameters.
    assert not [op for op in imported.host_ops if op.category == "matmul"]
    assert "blocks.0.mlp.fc.weight" not in imported.host.param_names()
    assert "token_embedding.weight" in imported.host.param_names()


def test_host_program_reproduces_the_model(gpt_import) -> None:
    model, tokens, imported = gpt_import
    with torch.no_grad():
        expected = model(tokens)
    assert torch.equal(run_with_torch(imported, tokens), expected)
    reloaded = HostProgram.from_json(imported.host.to_json())
    assert reloaded.to_json() == imported.host.to_json()
    assert torch.equal(run_with_torch(imported, tokens, host=reloaded), expected)


class LinearZoo(nn.Module):
    """Every way of writing a constant-weight matmul the frontend recognises."""

    def __init__(self) -> None:
        super().__init__()
        self.with_bias = nn.Linear(12, 10)
        self.without_bias = nn.Linear(12, 6, bias=False)
        self.w_nk = nn.Parameter(torch.randn(5, 12))  # used as x @ w_nk.t()
        self.w_kn = nn.Parameter(torch.randn(12, 7))  # used as x @ w_kn  (weight = w_kn.T)
        self.b = nn.Parameter(torch.randn(5))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        flat = x.reshape(-1, 12)
        return (
            self.with_bias(x),
            self.without_bias(x),
            torch.mm(flat, self.w_nk.t()),
            torch.addmm(self.b, flat, self.w_nk.t()),
            torch.matmul(x, self.w_kn),
            F.linear(x, self.w_nk, self.b),
        )


def test_linear_forms() -> None:
    torch.manual_seed(0)
    model = LinearZoo()
    x = torch.randn(2, 3, 12)
    imported = import_model(model, (x,))
    got = {op.name: (op.kind, op.weight, op.bias, op.mkn) for op in imported.ops}
    assert got == {
        "with_bias": ("linear", "with_bias.weight", "with_bias.bias", (6, 12, 10)),
        "without_bias": ("linear", "without_bias.weight", None, (6, 12, 6)),
        "mm0": ("linear", "w_nk", None, (6, 12, 5)),
        "addmm0": ("linear", "w_nk", "b", (6, 12, 5)),
        "matmul0": ("linear", "w_kn.T", None, (6, 12, 7)),
        "linear0": ("linear", "w_nk", "b", (6, 12, 5)),
    }
    assert torch.equal(imported.tensors["w_kn.T"], model.w_kn.detach().t())
    outputs = run_with_torch(imported, x)
    for got_out, want in zip(outputs, model(x), strict=True):
        torch.testing.assert_close(got_out, want, rtol=1e-6, atol=1e-6)


class Attention(nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def test_fused_attention_becomes_two_offloaded_matmuls() -> None:
    seeds = (torch.Generator().manual_seed(i) for i in range(3))
    q, k, v = (torch.randn(1, 2, 5, 8, generator=seed) for seed in seeds)
    imported = import_model(Attention(), (q, k, v))
    assert [(op.kind, op.mkn, op.runs) for op in imported.ops] == [
        ("matmul", (5, 8, 5), 2),
        ("matmul", (5, 5, 8), 2),
    ]
    torch.testing.assert_close(
        run_with_torch(imported, q, k, v), Attention()(q, k, v), rtol=1e-5, atol=1e-6
    )


class WithConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).transpose(1, 2))


def test_host_only_op_is_reported() -> None:
    imported = import_model(WithConv(), (torch.randn(1, 4, 9),))
    assert [op.name for op in imported.ops] == ["head"]
    (conv,) = [op for op in imported.host_ops if op.category == "convolution"]
    assert conv.module == "conv" and "matmuls only" in conv.reason
    assert "conv.weight" in imported.host.param_names()


def test_keep_on_host_override() -> None:
    imported = import_model(
        WithConv(), (torch.randn(1, 4, 9),), keep_on_host=lambda name: name == "head"
    )
    assert imported.ops == []
    (head,) = [op for op in imported.host_ops if op.category == "matmul"]
    assert head.module == "head" and "layers=" in head.reason


class Inner(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow: not traceable
            return x * 2
        return x


class Outer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 4), Inner())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


def test_untraceable_construct_names_the_module() -> None:
    with pytest.raises(TraceError) as error:
        import_model(Outer(), (torch.randn(2, 4),))
    message = str(error.value)
    assert "module 'encoder.1' (Inner)" in message
    assert "test_frontend.py:" in message  # the source line of the failing forward


class Mutates(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("calls", torch.zeros(1))
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.add_(1)
        return self.fc(x)


def test_bad_models_and_inputs() -> None:
    with pytest.raises(CompileError, match="mutates 'calls'"):
        import_model(Mutates(), (torch.randn(2, 4),))
    with pytest.raises(CompileError, match="tensor inputs only"):
        import_model(nn.Linear(4, 4), (3,))
    with pytest.raises(CompileError, match="takes a torch.nn.Module"):
        import_model(lambda x: x, (torch.randn(2),))  # type: ignore[arg-type]


def test_eval_mode_is_traced_and_restored() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)).train()
    imported = import_model(model, (torch.randn(2, 4),))
    assert model.training and model[1].training
    x = torch.randn(2, 4)
    assert torch.equal(run_with_torch(imported, x), model.eval()(x))


def test_host_program_input_checks(gpt_import) -> None:
    _, tokens, imported = gpt_import
    with pytest.raises(HostError, match=r"compiled for int64\[2, 16\]"):
        imported.host.flatten_inputs((tokens[:, :8],), {})
    with pytest.raises(HostError, match="1 tensor input"):
        imported.host.flatten_inputs((tokens, tokens), {})


def _corrupt(text: str, edit) -> str:
    data = json.loads(text)
    edit(data)
    return json.dumps(data)


def test_corrupt_host_program_is_rejected(gpt_import) -> None:
    text = gpt_import[2].host.to_json()
    call = [n["kind"] for n in json.loads(text)["nodes"]].index("call")
    cases = {
        "unknown host op": lambda d: d["nodes"][call].update(target="aten.no_such_op.default"),
        "in-place op": lambda d: d["nodes"][call].update(target="aten.add_.Tensor"),
        "before it is defined": lambda d: d["nodes"].reverse(),
        "version": lambda d: d.update(version=99),
        "unknown kind": lambda d: d["nodes"][call].update(kind="jump"),
        "exactly one output": lambda d: d["nodes"].pop(),
    }
    for message, edit in cases.items():
        with pytest.raises(HostError, match=message):
            HostProgram.from_json(_corrupt(text, edit), "bundle/host.json")
    with pytest.raises(HostError, match="bundle/host.json: not valid JSON"):
        HostProgram.from_json(text[: len(text) // 2], "bundle/host.json")


def test_special_float_arguments_round_trip() -> None:
    class Masked(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.masked_fill(x < 0, -math.inf).clamp(max=math.inf)

    imported = import_model(Masked(), (torch.randn(3),))
    host = HostProgram.from_json(imported.host.to_json())
    x = torch.tensor([1.0, -2.0, 3.0])
    assert torch.equal(run_with_torch(imported, x, host=host), Masked()(x))


class BatchedWeight(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 4, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.bmm(x, self.w) + torch.bmm(self.w.transpose(1, 2), x.transpose(1, 2)).sum()


def test_constant_operands_that_cannot_be_weights_stay_on_the_host() -> None:
    imported = import_model(BatchedWeight(), (torch.randn(3, 2, 4),))
    assert imported.ops == []
    reasons = sorted(op.reason for op in imported.host_ops if op.category == "matmul")
    assert reasons == [
        "constant right operand that is not a 2-D weight (batched weights are not lowered)",
        "left operand is a constant; the PE streams the activation on the left",
    ]
