"""Activation-aware weight quantization (AWQ) for every weight format of bitmod.

The method is AWQ's (Lin et al., "AWQ: Activation-aware Weight Quantization for LLM
Compression and Acceleration", MLSys 2024): a per-input-channel scale searched on
calibration activations and folded into the op that produces the input, then a per-group
clipping-ratio search. This implementation is written for bitmod: every candidate is
quantized with the format's own quantizer (:func:`bitmod.runtime.formats.quantize`, i.e.
BitMoD's Algorithm 1 re-run on the scaled weights for the mixtures, the INT8 second-level
scales included), and the result is nothing but modified float weights, so
``bitmod-quantize``, ``bitmod.compile`` and the fake-quantized evaluation quantize them as
they would any model: the accelerator sees other weights, the same INT8 group scales and the
same instruction stream.

Why the scaling is an identity in exact arithmetic
--------------------------------------------------
Take a site (:mod:`bitmod.compiler.search.calibration`): linears ``W_i [N_i, K]`` that all
read ``x [K]``, produced by an op that can absorb a per-channel factor. With ``s > 0 [K]``
and ``S = diag(s)``::

    y_i = W_i x = (W_i S)(S⁻¹ x)

so replacing every ``W_i`` by ``W_i S`` and making the producer emit ``S⁻¹ x`` changes no
output. The producer absorbs ``S⁻¹`` exactly:

* an RMSNorm ``n(x) = (o + w) ⊙ x / rms(x)`` (``o`` = 0, Gemma: 1) emits ``n(x) / s`` when
  ``w' = (o + w) / s − o``;
* a linear whose output rows are the site's channels (``up`` before ``down`` through the
  elementwise ``act(gate) ⊙ up``, ``v`` before ``o`` through the attention's per-channel
  weighted sum ``Σ_t p_t v_t`` when ``o`` reads ``v``'s channels one to one, i.e. no grouped
  KV heads) emits ``S⁻¹ y`` when its rows (and bias) are divided by ``s``.

In floating point the rescaled model equals the original to rounding error, and bit for bit
when every ``s_j`` is a power of two (``power_of_two=True``): multiplying or dividing by
``2^e`` is exact (no overflow or underflow here), so every product ``(x_j / s_j)(w_ij s_j)``
and every norm output is the same float as before, summed in the same order.

What the search minimises
-------------------------
Quantization is not scale invariant: ``Q(W S) S⁻¹ ≠ Q(W)``. Channels with large ``E|x_j|``
matter most to the output, and scaling their weight columns up moves them onto finer steps
of the per-group grid (groups run along K, so a column scale changes each group's shape,
and with it Algorithm 1's choice of special value). With ``H = E[x xᵀ]`` over the
calibration set, the output error of the site under scale ``s`` is::

    L(s) = Σ_i E‖(W_i − Q(W_i S) S⁻¹) x‖² = Σ_i tr(Δ_i H Δ_iᵀ),  Δ_i = W_i − Q(W_i S) S⁻¹

(:func:`bitmod.compiler.search.calibration.output_error`: the exact mean squared error of
the linears' outputs over the calibration tokens, which is AWQ's objective with each linear
as the inspected module). ``s`` is searched, as in AWQ, on the grid ``s = m^α``
(``m = E|x|`` per channel, normalised so ``max(s)·min(s) = 1``) for ``α = 0, 1/n, …,
(n−1)/n``; ``α = 0`` is ``s = 1``, so the chosen scale never has a larger ``L`` than no scale.

Clipping then shrinks each group's range: for ratio ``r`` the group of scaled weights is
clamped to ``±r·max|w|`` before the format's quantizer runs (so its scale, its special value
and, for ``*_asym``, its zero point follow the clamped range), and each group keeps the ratio
(from ``1, 1 − 1/n, …`` down to ``1 − max_shrink``) with the least error of its own partial
output, ``δ_g H'_gg δ_gᵀ`` with ``H' = S⁻¹ H S⁻¹`` the scaled input's second moment and
``δ_g`` the group's error against the unclipped scaled weights. As in AWQ, ``q_proj`` and
``k_proj`` are not clipped by default (their error passes through the softmax, which this
linear objective does not see). The per-group choice ignores how a group's clamp changes
its row's second-level (INT8) channel scale; the final weights are quantized once more by
the compiler, so what is evaluated is exactly what is stored.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from bitmod.compiler.llm.fakequant import QuantConfig
from bitmod.compiler.llm.models import LanguageModel
from bitmod.compiler.search.calibration import (
    Site,
    Statistics,
    find_sites,
    output_error,
)
from bitmod.runtime.formats import dequantize, get_format, quantize
from bitmod.runtime.storage.fileio import write_together
from tqdm import tqdm

__all__ = [
    "AwqResult",
    "AwqSettings",
    "awq_optimize",
    "fold_scales",
    "load_awq",
    "quantized_weight",
    "scale_grid",
    "site_parameters",
]


@dataclass(frozen=True)
class AwqSettings:
    """The searches' grids (AWQ's defaults) and what to search."""

    scale_grid: int = 20
    clip_grid: int = 20
    max_shrink: float = 0.5
    scale: bool = True
    clip: bool = True
    #: round every scale to a power of two (the fold is then bit-exact in float)
    power_of_two: bool = False
    #: also clip q_proj / k_proj (AWQ does not)
    clip_qk: bool = False

    def __post_init__(self) -> None:
        if self.scale_grid < 1 or self.clip_grid < 1:
            raise ValueError(
                f"AWQ grids need at least one point, got scale_grid={self.scale_grid}, "
                f"clip_grid={self.clip_grid}"
            )
        if not 0.0 <= self.max_shrink < 1.0:
            raise ValueError(f"AWQ max_shrink must be in [0, 1), got {self.max_shrink}")

    def clip_ratios(self) -> list[float]:
        steps = max(1, int(round(self.clip_grid * self.max_shrink)))
        return [1.0 - i / self.clip_grid for i in range(steps)]


@dataclass
class AwqResult:
    """The optimised parameters of one model for one quantization configuration."""

    model: str
    config: QuantConfig
    settings: AwqSettings
    #: full parameter name -> new float32 value (norm weights, linear weights)
    parameters: dict[str, torch.Tensor]
    #: site -> chosen α (0: no scale)
    alphas: dict[str, float] = field(default_factory=dict)
    #: site -> (output error before, after the scale search), on the calibration set
    scale_errors: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: linear -> mean chosen clip ratio over its groups
    clip_ratios: dict[str, float] = field(default_factory=dict)
    calibration_tokens: int = 0
    seconds: float = 0.0

    def apply(self, lm: LanguageModel) -> dict[str, torch.Tensor]:
        """Write the parameters into ``lm``; returns the values they replaced."""
        previous = {}
        for name, value in self.parameters.items():
            parameter = lm.model.get_parameter(name)
            previous[name] = parameter.data
            parameter.data = value.to(parameter.device, parameter.dtype)
        return previous

    @contextlib.contextmanager
    def applied(self, lm: LanguageModel) -> Iterator[LanguageModel]:
        """``lm`` with the optimised parameters inside the block; restored on exit."""
        previous = self.apply(lm)
        try:
            yield lm
        finally:
            for name, value in previous.items():
                lm.model.get_parameter(name).data = value

    def summary(self) -> dict[str, object]:
        return {
            "model": self.model,
            "config": self.config.label,
            "dtype": self.config.dtype,
            "group_size": self.config.group_size,
            "scale_bits": self.config.scale_bits,
            "settings": asdict(self.settings),
            "alphas": self.alphas,
            "scale_errors": self.scale_errors,
            "clip_ratios": self.clip_ratios,
            "calibration_tokens": self.calibration_tokens,
            "seconds": self.seconds,
        }

    def files(self, directory: str | Path) -> list[tuple[Path, Callable[[Path], None]]]:
        """``awq.safetensors`` (the parameters) and ``awq.json`` (the choices) in
        ``directory``, as (path, writer) pairs for :func:`write_together`."""
        from safetensors.torch import save_file

        root = Path(directory)
        tensors = {name: value.contiguous().cpu() for name, value in self.parameters.items()}
        text = json.dumps(self.summary(), indent=1) + "\n"
        return [
            (root / "awq.safetensors", lambda path: save_file(tensors, str(path))),
            (root / "awq.json", lambda path: path.write_text(text)),
        ]

    def save(self, directory: str | Path) -> Path:
        """:meth:`files` written together (neither is changed if writing one fails)."""
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        write_together(self.files(root))
        return root


def load_awq(lm: LanguageModel, directory: str | Path) -> AwqResult:
    """An :class:`AwqResult` saved by :meth:`AwqResult.save`, checked against ``lm``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    root = Path(directory)
    try:
        summary = json.loads((root / "awq.json").read_text())
        parameters = load_file(str(root / "awq.safetensors"))
    except (OSError, json.JSONDecodeError, SafetensorError) as error:
        raise ValueError(f"{root}: not an AWQ result ({error})") from None
    for name, value in parameters.items():
        try:
            current = lm.model.get_parameter(name)
        except AttributeError:
            raise ValueError(f"{root}: parameter {name!r} is not in model {lm.name}") from None
        if tuple(current.shape) != tuple(value.shape):
            raise ValueError(
                f"{root}: parameter {name!r} has shape {list(value.shape)}, the model's "
                f"{list(current.shape)}"
            )
    config = QuantConfig(summary["dtype"], summary["group_size"], summary["scale_bits"])
    result = AwqResult(summary["model"], config, AwqSettings(**summary["settings"]), parameters)
    result.alphas = summary["alphas"]
    result.scale_errors = {k: tuple(v) for k, v in summary["scale_errors"].items()}
    result.clip_ratios = summary["clip_ratios"]
    result.calibration_tokens = summary["calibration_tokens"]
    result.seconds = summary["seconds"]
    return result


def quantized_weight(weight: torch.Tensor, config: QuantConfig) -> torch.Tensor:
    """What ``bitmod-quantize`` makes of ``weight`` under ``config``, dequantized (float32)."""
    group = None if config.is_mx else config.group_size
    return dequantize(quantize(weight.float(), config.dtype, group, config.scale_bits))


def scale_grid(
    mean_abs: torch.Tensor, points: int, power_of_two: bool
) -> list[tuple[float, torch.Tensor]]:
    """``(α, s)`` for ``α = i / points``: ``s = m^α`` normalised to ``max(s)·min(s) = 1``
    (AWQ's grid); rounded to the nearest power of two when asked."""
    m = mean_abs.double().clamp(min=1e-4)
    grid = []
    for i in range(points):
        alpha = i / points
        s = m.pow(alpha)
        s = s / (s.max() * s.min()).sqrt()
        if power_of_two:
            s = torch.exp2(torch.round(torch.log2(s)))
        grid.append((alpha, s.float()))
    return grid


def fold_scales(parameters: dict[str, torch.Tensor], site: Site, scales: torch.Tensor) -> None:
    """Multiply the site's weight columns by ``scales`` and divide its producer by them, in
    ``parameters`` (full parameter name -> tensor; replaced, never modified in place)."""
    s = scales.float()
    for linear in site.linears:
        name = f"{linear}.weight"
        parameters[name] = parameters[name] * s
    fold = site.fold
    assert fold is not None
    if fold.kind == "norm":
        name = f"{fold.module}.weight"
        parameters[name] = (fold.offset + parameters[name]) / s - fold.offset
    else:
        name = f"{fold.module}.weight"
        parameters[name] = parameters[name] / s[:, None]
        bias = f"{fold.module}.bias"
        if bias in parameters:
            parameters[bias] = parameters[bias] / s


def site_parameters(lm: LanguageModel, sites: list[Site]) -> dict[str, torch.Tensor]:
    """Float32 copies of every parameter the sites' scales or clipping touch, by full name
    (what :func:`fold_scales` rewrites and :attr:`AwqResult.parameters` holds)."""
    modules = dict(lm.model.named_modules())
    names: list[str] = []
    for site in sites:
        names += [f"{linear}.weight" for linear in site.linears]
        if site.fold is not None:
            names.append(f"{site.fold.module}.weight")
            if (
                site.fold.kind == "rows"
                and getattr(modules[site.fold.module], "bias", None) is not None
            ):
                names.append(f"{site.fold.module}.bias")
    return {
        name: lm.model.get_parameter(name).detach().float().clone() for name in dict.fromkeys(names)
    }


def _site_error(
    weights: list[torch.Tensor],
    scales: torch.Tensor,
    second_moment: torch.Tensor,
    config: QuantConfig,
) -> float:
    """``L(s)`` of the module docstring for one site."""
    total = 0.0
    for weight in weights:
        scaled = weight * scales
        delta = (scaled - quantized_weight(scaled, config)) / scales
        total += output_error(delta, second_moment)
    return total


def _clip(
    weight: torch.Tensor, second_moment: torch.Tensor, config: QuantConfig, ratios: list[float]
) -> tuple[torch.Tensor, float]:
    """The clipped weight (each group clamped at its best ratio) and the mean ratio."""
    n, k = weight.shape
    group = get_format(config.dtype).block_size if config.is_mx else config.group_size
    group = min(group, k)
    starts = list(range(0, k, group))
    h = second_moment.float()
    blocks = [h[a : a + group, a : a + group] for a in starts]
    absmax = torch.stack([weight[:, a : a + group].abs().amax(dim=1) for a in starts], dim=1)
    best_error = best_ratio = None
    for ratio in ratios:
        bound = (absmax * ratio).repeat_interleave(group, dim=1)[:, :k]
        clipped = torch.maximum(torch.minimum(weight, bound), -bound)
        delta = weight - quantized_weight(clipped, config)
        error = torch.stack(
            [
                ((delta[:, a : a + group] @ block) * delta[:, a : a + group]).sum(dim=1)
                for a, block in zip(starts, blocks, strict=True)
            ],
            dim=1,
        )
        if best_error is None:
            best_error, best_ratio = error, torch.full_like(error, ratio)
            continue
        better = error < best_error
        best_error = torch.where(better, error, best_error)
        best_ratio = torch.where(better, torch.full_like(error, ratio), best_ratio)
    assert best_ratio is not None
    bound = (absmax * best_ratio).repeat_interleave(group, dim=1)[:, :k]
    return torch.maximum(torch.minimum(weight, bound), -bound), float(best_ratio.mean())


def awq_optimize(
    lm: LanguageModel,
    config: QuantConfig,
    statistics: Statistics,
    settings: AwqSettings | None = None,
    *,
    progress: bool = False,
) -> AwqResult:
    """Search the scales and clipping ratios of every site of ``lm`` for ``config`` on the
    calibration ``statistics``; ``lm`` itself is left unchanged (apply the result with
    :meth:`AwqResult.applied`)."""
    settings = settings or AwqSettings()
    if not config.quantized:
        raise ValueError("AWQ needs a quantized data type, not fp32")
    started = time.perf_counter()
    sites = statistics.sites or find_sites(lm)
    missing = [site.name for site in sites if site.name not in statistics.by_site]
    if missing:
        raise ValueError(f"AWQ: no calibration statistics for site {missing[0]!r}")
    parameters = site_parameters(lm, sites)
    result = AwqResult(lm.name, config, settings, parameters, calibration_tokens=statistics.tokens)
    input_scales: dict[str, torch.Tensor] = {}
    bar = tqdm(sites, desc=f"awq {config.label}", unit="site", disable=not progress)
    for site in bar:
        h = statistics.by_site[site.name].second_moment  # float64
        if not settings.scale or site.fold is None:
            continue
        weights = [parameters[f"{linear}.weight"] for linear in site.linears]
        ones = torch.ones(h.shape[0], device=h.device)
        baseline = _site_error(weights, ones, h, config)
        best = (baseline, 0.0, ones)
        for alpha, scales in scale_grid(
            statistics.by_site[site.name].mean_abs, settings.scale_grid, settings.power_of_two
        ):
            if alpha == 0.0 and not settings.power_of_two:
                continue  # s = 1 exactly: the baseline
            error = _site_error(weights, scales, h, config)
            if error < best[0]:
                best = (error, alpha, scales)
        error, alpha, scales = best
        result.alphas[site.name] = alpha
        result.scale_errors[site.name] = (baseline, error)
        if alpha != 0.0 or not bool((scales == 1).all()):
            fold_scales(parameters, site, scales)
            input_scales[site.name] = scales
    if settings.clip:
        ratios = settings.clip_ratios()
        for site in tqdm(sites, desc=f"awq clip {config.label}", unit="site", disable=not progress):
            h = statistics.by_site[site.name].second_moment.float()
            s = input_scales.get(site.name)
            if s is not None:
                h = h / (s[:, None] * s[None, :])
            for linear in site.linears:
                if not settings.clip_qk and linear.endswith(("q_proj", "k_proj")):
                    continue
                name = f"{linear}.weight"
                parameters[name], result.clip_ratios[linear] = _clip(
                    parameters[name], h, config, ratios
                )
    result.seconds = time.perf_counter() - started
    return result
