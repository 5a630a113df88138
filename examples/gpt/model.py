"""A small GPT-style decoder for the bitmod examples and tests.

Token + learned position embedding, ``n_layers`` pre-norm blocks of causal multi-head
self-attention and a GELU MLP with residuals, a final layer norm and an LM head. The
attention is written with explicit matmuls (``q @ k^T`` and ``p @ v``), so that
``bitmod.compile`` sees the two activation-by-activation products that BitMoD runs on the
PE with INT8 (or INT4) keys and values (paper Sec. IV-B).

The default sizes (vocab 256, d_model 128, 4 heads, 2 blocks, context 64) keep one forward
pass on the emulator at a few seconds. Weights are drawn from a seeded generator, so
``gpt(seed=0)`` is the same model on every machine. They are not trained; to make the
quantization error meaningful the initialisation follows GPT-2's (normal, std 0.02, the
residual projections scaled by 1/sqrt(2·n_layers)) with a few heavier-tailed channels,
as trained LLM weights have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 256
    context: int = 64
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 2
    mlp_ratio: int = 4


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with explicit ``q @ k^T`` and ``p @ v`` products."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if config.d_model % config.n_heads:
            raise ValueError(f"d_model {config.d_model} is not a multiple of n_heads")
        self.n_heads = config.n_heads
        self.head_dim = config.d_model // config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        mask = torch.tril(torch.ones(config.context, config.context, dtype=torch.bool))
        self.register_buffer("causal_mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=2)
        # [B, T, C] -> [B, H, T, D]
        q = q.view(batch, tokens, self.n_heads, self.head_dim).transpose(1, 2)
        k = k.view(batch, tokens, self.n_heads, self.head_dim).transpose(1, 2)
        v = v.view(batch, tokens, self.n_heads, self.head_dim).transpose(1, 2)
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
        mask = self.causal_mask[:tokens, :tokens]
        scores = scores.masked_fill(~mask, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        out = probs @ v
        out = out.transpose(1, 2).reshape(batch, tokens, width)
        return self.proj(out)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        hidden = config.mlp_ratio * config.d_model
        self.fc = nn.Linear(config.d_model, hidden)
        self.proj = nn.Linear(hidden, config.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(nn.functional.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config)
        self.ln2 = nn.LayerNorm(config.d_model)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """``tokens [B, T] (int64) -> logits [B, T, vocab]``."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.position_embedding = nn.Embedding(config.context, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        _, length = tokens.shape
        positions = torch.arange(length, device=tokens.device)
        x = self.token_embedding(tokens) + self.position_embedding(positions)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def _initialise(model: GPT, seed: int) -> None:
    """GPT-2 style init from a private generator, plus a few outlier input channels.

    The outlier channels (a handful of columns scaled up 4-8x) mimic the heavy-tailed weight
    distributions of trained LLMs that per-group data-type selection is designed for.
    """
    generator = torch.Generator().manual_seed(seed)
    residual_std = 0.02 / math.sqrt(2 * model.config.n_layers)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(".bias"):
                parameter.normal_(0.0, 0.01, generator=generator)
            elif "ln" in name:  # layer-norm gains around 1
                parameter.normal_(1.0, 0.05, generator=generator)
            else:
                std = residual_std if name.endswith("proj.weight") else 0.02
                parameter.normal_(0.0, std, generator=generator)
                if parameter.dim() == 2 and parameter.shape[1] >= 16:
                    columns = torch.randperm(parameter.shape[1], generator=generator)[:4]
                    gains = 4.0 + 4.0 * torch.rand(4, generator=generator)
                    parameter[:, columns] *= gains


def gpt(seed: int = 0, **overrides: int) -> GPT:
    """The example decoder in eval mode with seeded weights; ``overrides`` change GPTConfig."""
    model = GPT(GPTConfig(**overrides))
    _initialise(model, seed)
    return model.eval()


def example_tokens(batch: int = 1, tokens: int = 16, seed: int = 1, vocab_size: int = 256):
    """Deterministic token ids ``[batch, tokens]`` to trace and run the example with."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (batch, tokens), generator=generator)
