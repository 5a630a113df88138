"""Calibration statistics of an LLM's linear layers, and which op feeds each of them.

A *site* is a set of block linears that read the same input tensor (Llama's ``q/k/v`` read
the attention norm's output, ``gate/up`` the MLP norm's, ``o`` and ``down`` their own), with
the op that produces that input when a per-channel scale can be folded into it
(:class:`Fold`): an RMSNorm weight, or the output rows of the linear before it. Sites are
what AWQ scales (:mod:`bitmod.compiler.search.awq`) and what the mixed-precision proxy
measures (:mod:`bitmod.compiler.search.mixed`).

:func:`collect_statistics` runs the model once over calibration windows (the ``calib`` split
of the bundled text, disjoint from the ``eval`` split perplexity is measured on) and keeps,
per site, the input's second moment ``H = E[x xᵀ]`` (float64, ``K × K``) and ``E|x|`` per
channel. ``H`` is all the squared output error of a weight change needs:
``E‖x ΔWᵀ‖² = tr(ΔW H ΔWᵀ)`` (:func:`output_error`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from bitmod.compiler.llm.models import LanguageModel

__all__ = [
    "Fold",
    "Site",
    "SiteStatistics",
    "calibration_windows",
    "collect_statistics",
    "find_sites",
    "output_error",
]


@dataclass(frozen=True)
class Fold:
    """Where a per-input-channel scale ``s`` of a site is undone.

    ``kind == "norm"``: ``module`` is an RMSNorm/LayerNorm whose output is multiplied by
    ``offset + weight`` (``offset`` 1 for Gemma's ``(1 + w)``, else 0); its weight becomes
    ``(offset + weight) / s − offset``. ``kind == "rows"``: ``module`` is the linear whose
    output rows are the site's input channels; its weight rows (and bias) are divided by ``s``.
    """

    kind: str
    module: str
    offset: float = 0.0


@dataclass(frozen=True)
class Site:
    """Block linears reading one input (module paths), and where their input scale folds."""

    name: str
    linears: tuple[str, ...]
    fold: Fold | None


@dataclass
class SiteStatistics:
    """``Σ x xᵀ``, ``Σ |x|`` and the token count of one site's input."""

    gram: torch.Tensor  # float64 [K, K]
    abs_sum: torch.Tensor  # float64 [K]
    tokens: int = 0

    @property
    def second_moment(self) -> torch.Tensor:
        """``H = E[x xᵀ]``."""
        return self.gram / max(self.tokens, 1)

    @property
    def mean_abs(self) -> torch.Tensor:
        """``E|x|`` per input channel."""
        return self.abs_sum / max(self.tokens, 1)


@dataclass
class Statistics:
    """Per-site statistics and the sites themselves."""

    sites: list[Site]
    by_site: dict[str, SiteStatistics] = field(default_factory=dict)
    tokens: int = 0


def _norm_offset(norm: torch.nn.Module) -> float:
    # Gemma's RMSNorms multiply by (1 + weight); every other family here by weight.
    return 1.0 if "Gemma" in type(norm).__name__ else 0.0


def find_sites(lm: LanguageModel) -> list[Site]:
    """The sites of every decoder block, in block order; linears the pattern does not know
    are sites of their own with no fold (clipping only)."""
    linears = lm.block_linears()
    modules = dict(lm.model.named_modules())
    sites: list[Site] = []
    covered: set[str] = set()
    blocks = [
        name
        for name, module in modules.items()
        if hasattr(module, "self_attn") and hasattr(module, "mlp")
    ]
    for block in blocks:
        attn, mlp = f"{block}.self_attn", f"{block}.mlp"
        q, k, v, o = (f"{attn}.{p}_proj" for p in "qkvo")
        gate, up, down = (f"{mlp}.{p}_proj" for p in ("gate", "up", "down"))
        if not all(name in linears for name in (q, k, v, o, gate, up, down)):
            continue
        attn_norm = f"{block}.input_layernorm"
        mlp_norm = (
            f"{block}.pre_feedforward_layernorm"
            if f"{block}.pre_feedforward_layernorm" in modules
            else f"{block}.post_attention_layernorm"
        )
        if attn_norm not in modules or mlp_norm not in modules:
            continue
        v_out = linears[v].out_features
        o_in = linears[o].in_features
        sites += [
            Site(
                f"{attn}.qkv", (q, k, v), Fold("norm", attn_norm, _norm_offset(modules[attn_norm]))
            ),
            # v -> o only when o's input channel j is v's output channel j (no grouped KV).
            Site(o, (o,), Fold("rows", v) if v_out == o_in else None),
            Site(
                f"{mlp}.gate_up",
                (gate, up),
                Fold("norm", mlp_norm, _norm_offset(modules[mlp_norm])),
            ),
            Site(down, (down,), Fold("rows", up)),
        ]
        covered.update((q, k, v, o, gate, up, down))
    sites += [Site(name, (name,), None) for name in linears if name not in covered]
    return sites


def calibration_windows(
    lm: LanguageModel, tokens: Sequence[int], samples: int, context: int
) -> torch.Tensor:
    """``samples`` disjoint windows of ``context`` tokens from the start of ``tokens`` (each
    with the model's BOS in front), as a ``[samples, len(bos) + context]`` tensor."""
    if samples < 1 or context < 2:
        raise ValueError(
            f"calibration needs samples >= 1 and context >= 2, got {samples}, {context}"
        )
    need = samples * context
    if len(tokens) < need:
        raise ValueError(
            f"calibration text has {len(tokens)} tokens, fewer than {samples} windows of "
            f"{context} ({need}); use fewer samples or a shorter context"
        )
    ids = torch.tensor(list(tokens[:need]), dtype=torch.long).reshape(samples, context)
    if lm.bos:
        ids = torch.cat([torch.tensor(lm.bos).expand(samples, len(lm.bos)), ids], dim=1)
    return ids


def collect_statistics(
    lm: LanguageModel, windows: torch.Tensor, sites: list[Site] | None = None
) -> Statistics:
    """Run the decoder over ``windows`` (one at a time) and accumulate every site's input
    statistics (hooks on the site's first linear; the LM head is not run)."""
    sites = find_sites(lm) if sites is None else sites
    linears = lm.block_linears()
    stats = Statistics(sites)
    handles = []

    def hook_for(site: Site):  # noqa: ANN202 - a torch hook
        def hook(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            x = args[0].detach().reshape(-1, args[0].shape[-1])
            entry = stats.by_site.get(site.name)
            if entry is None:
                k = x.shape[1]
                entry = SiteStatistics(
                    torch.zeros(k, k, dtype=torch.float64, device=x.device),
                    torch.zeros(k, dtype=torch.float64, device=x.device),
                )
                stats.by_site[site.name] = entry
            x32 = x.float()
            entry.gram += (x32.T @ x32).double()
            entry.abs_sum += x32.abs().sum(dim=0).double()
            entry.tokens += x.shape[0]

        return hook

    device = next(lm.model.parameters()).device
    try:
        for site in sites:
            handles.append(linears[site.linears[0]].register_forward_pre_hook(hook_for(site)))
        with torch.inference_mode():
            for row in windows:
                lm.model.get_decoder()(input_ids=row[None].to(device))
                stats.tokens += row.numel()
    finally:
        for handle in handles:
            handle.remove()
    return stats


def output_error(delta: torch.Tensor, second_moment: torch.Tensor) -> float:
    """``E‖x Δᵀ‖² = tr(Δ H Δᵀ)``: the squared output error summed over output channels,
    per token, of a weight change ``Δ [N, K]`` on inputs with second moment ``H``."""
    d = delta.double()
    return float(((d @ second_moment.double()) * d).sum())
