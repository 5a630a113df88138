"""Per-layer mixed precision: each block linear's format from a candidate set, under a budget.

::

    problem = build_problem(lm, parse_candidates("bitmod3:256,bitmod3,bitmod3:64,bitmod4"),
                            parse_budget("bits=bitmod3"), statistics)
    choice = greedy(problem)                      # sensitivity-greedy baseline
    best = tpe_search(problem, trials=64, seed=0, objective=MeasuredPerplexity(...))
    spec = problem.layers_spec(best.choice)       # "model.layers.0.self_attn.q_proj:bitmod4,..."

The result is a ``layers=`` spec (``LAYER:DTYPE[:GROUP]`` entries) that ``bitmod-quantize``
takes as its ``layers`` option, and :meth:`Problem.layers_mapping` the ``layers=`` mapping of
``bitmod.compile`` (one group size for the whole model there).

Budgets (:func:`parse_budget`): ``bits=B`` (mean storage bits per weight over the block
linears, metadata included), ``cycles=C`` or ``energy=E`` (pJ) of the perf model's generative
workload of the block linears (:mod:`bitmod.compiler.search.costs`); instead of a number the
value may name a candidate (``bits=bitmod3``: no more than uniform bitmod3 costs).

The error a choice is charged (the *proxy*) is the output error of each quantized linear on
the calibration set, ``tr(ΔW H ΔWᵀ)`` (:func:`bitmod.compiler.search.calibration.output_error`)
summed over layers: an error in a linear's output adds to the residual stream, so the sum is
a first-order account of what the mix does to the last hidden state. It is only a proxy;
:func:`validate_proxy` measures how well it ranks mixes by their measured perplexity.

The *sensitivity* proxy (``build_problem(..., sensitivity=MeasuredPerplexity(...))``) measures
instead what each choice does to the loss: ``e[l, c] = max(0, NLL(W with layer l in format c) −
NLL(W))``, the mean negative log-likelihood per token on the objective's tokens with only layer
``l`` quantized (FP16 activations in both). For a mix ``m`` the first-order expansion of the
loss in the weight changes gives ``NLL(m) − NLL(W) ≈ Σ_l e[l, m_l]`` (the cross terms are second
order in ΔW), so ``log PPL(m) ≈ log PPL(W) + Σ_l e[l, m_l]``: the sum is additive as the
knapsack needs, and in the units of the objective. It costs one evaluation per (layer,
candidate) instead of one quantization; negative changes (noise at this sample size) count as
zero so that every upgrade's saved error is non-negative. Measure it on other tokens than the
ones the search is judged on.

* :func:`greedy` (the baseline): every layer starts at its cheapest candidate; upgrades on each
  layer's lower convex hull of (cost, error) are taken in order of error saved per unit of cost
  while they fit the budget (the classic greedy for the multiple-choice knapsack).
* :func:`tpe_search`: Optuna's TPE sampler (as MASE uses) over one categorical choice per
  layer (or per layer kind / per block: ``groups``), the greedy mix enqueued as its first
  trial; every sampled point over budget is *repaired* by the cheapest downgrades (least error
  added per unit of cost saved) until it fits, so every trial respects the budget. Trials run in
  fixed batches on an :mod:`engine <bitmod.compiler.search.engine>`, told to the study in
  order: the same seed gives the same trials and the same choice, serial or on Ray.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from bitmod.compiler.llm.models import LanguageModel
from bitmod.compiler.search.calibration import Statistics, output_error
from bitmod.compiler.search.costs import (
    COST_KINDS,
    Candidate,
    LayerShape,
    layer_costs,
    parse_candidates,
)
from bitmod.compiler.search.engine import Engine, SerialEngine

__all__ = [
    "Budget",
    "MeasuredPerplexity",
    "Problem",
    "SearchResult",
    "build_problem",
    "greedy",
    "parse_budget",
    "proxy_errors",
    "repair",
    "sensitivity_errors",
    "tpe_search",
    "validate_proxy",
]

GROUPINGS = ("layer", "kind", "block")


@dataclass(frozen=True)
class Budget:
    """``kind`` ∈ bits/cycles/energy, bounded by ``value`` or by uniform ``reference``."""

    kind: str
    value: float | None = None
    reference: Candidate | None = None

    @property
    def spelled(self) -> str:
        bound = self.reference.spelled if self.reference is not None else f"{self.value:g}"
        return f"{self.kind}={bound}"


def parse_budget(text: str) -> Budget:
    """``bits=3.2``, ``bits=bitmod3``, ``cycles=bitmod4``, ``energy=2.4e11``: one ValueError
    for a malformed text, an unknown kind, or a value that is neither a positive finite
    number nor a candidate."""
    kind, sep, value = text.partition("=")
    kind, value = kind.strip(), value.strip()
    if not sep or not kind or not value:
        raise ValueError(
            f"budget {text!r}: expected KIND=VALUE with KIND one of {', '.join(COST_KINDS)} "
            "(e.g. bits=3.5 or bits=bitmod3)"
        )
    if kind not in COST_KINDS:
        raise ValueError(f"budget {text!r}: unknown kind {kind!r}; kinds: {', '.join(COST_KINDS)}")
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is not None:
        if not math.isfinite(number) or number <= 0:
            raise ValueError(f"budget {text!r}: the bound must be a positive finite number")
        return Budget(kind, value=number)
    try:
        (reference,) = parse_candidates(value)
    except ValueError as error:
        raise ValueError(
            f"budget {text!r}: {value!r} is neither a number nor a format ({error})"
        ) from None
    return Budget(kind, reference=reference)


@dataclass
class Problem:
    """Layers × candidates: the cost table of the budget's kind, the proxy errors, the limit."""

    layers: list[LayerShape]
    candidates: list[Candidate]
    budget: Budget
    cost: np.ndarray  # [L, C], budget units (bits, cycles, pJ)
    error: np.ndarray  # [L, C], proxy output error
    limit: float  # total cost allowed

    def total_cost(self, choice: Sequence[int]) -> float:
        return float(self.cost[np.arange(len(self.layers)), np.asarray(choice)].sum())

    def proxy(self, choice: Sequence[int]) -> float:
        return float(self.error[np.arange(len(self.layers)), np.asarray(choice)].sum())

    def fits(self, choice: Sequence[int]) -> bool:
        return self.total_cost(choice) <= self.limit * (1 + 1e-12)

    def spelled(self, choice: Sequence[int]) -> list[str]:
        return [self.candidates[c].spelled for c in choice]

    def layers_spec(self, choice: Sequence[int]) -> str:
        """The ``layers=`` option of ``bitmod-quantize`` (``LAYER:DTYPE[:GROUP]``, commas)."""
        return ",".join(
            f"{layer.name}:{self.candidates[c].spelled}"
            for layer, c in zip(self.layers, choice, strict=True)
        )

    def layers_mapping(self, choice: Sequence[int]) -> dict[str, str]:
        """The ``layers=`` mapping of ``bitmod.compile`` (layer name -> format)."""
        if any(self.candidates[c].group_size not in (None, 128) for c in choice):
            raise ValueError(
                "bitmod.compile takes one group size for the whole model; this mix has "
                "per-layer group sizes (use the layers= spec of bitmod-quantize)"
            )
        return {
            layer.name: self.candidates[c].dtype
            for layer, c in zip(self.layers, choice, strict=True)
        }

    def group_ids(self, grouping: str) -> list[int]:
        """Index of each layer's group: itself, its kind (``q_proj``...) or its block."""
        if grouping not in GROUPINGS:
            raise ValueError(f"unknown grouping {grouping!r}; groupings: {', '.join(GROUPINGS)}")
        keys = []
        for layer in self.layers:
            parts = layer.name.split(".")
            digits = [i for i, p in enumerate(parts) if p.isdigit()]
            if grouping == "layer":
                keys.append(layer.name)
            elif grouping == "kind":
                keys.append(parts[-1])
            else:
                keys.append(".".join(parts[: digits[-1] + 1]) if digits else layer.name)
        order = list(dict.fromkeys(keys))
        return [order.index(key) for key in keys]


def proxy_errors(
    shared: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], int], candidate: Candidate
) -> np.ndarray:
    """One candidate's proxy error of every layer (an engine trial: ``shared`` is (weights,
    input second moments, threads) by layer name)."""
    from bitmod.compiler.llm.fakequant import QuantConfig
    from bitmod.compiler.search.awq import quantized_weight

    weights, moments, threads = shared
    torch.set_num_threads(threads)
    config = QuantConfig(candidate.dtype, candidate.group or 128)
    return np.asarray(
        [
            output_error(weight - quantized_weight(weight, config), moments[name])
            for name, weight in weights.items()
        ]
    )


def build_problem(
    lm: LanguageModel,
    candidates: list[Candidate],
    budget: Budget,
    statistics: Statistics,
    *,
    engine: Engine | None = None,
    threads: int = 1,
    input_tokens: int = 256,
    output_tokens: int = 256,
    sensitivity: MeasuredPerplexity | None = None,
    num_gpus: float = 0,
) -> Problem:
    """The problem for ``lm``'s block linears: costs from :mod:`~bitmod.compiler.search.costs`,
    proxy errors (one engine trial per candidate: output errors on ``statistics``, or with
    ``sensitivity`` the measured loss sensitivity of the module docstring), the budget's limit
    (ValueError when no mix fits it)."""
    engine = engine or SerialEngine()
    linears = lm.block_linears()
    layers = [LayerShape(name, m.out_features, m.in_features) for name, m in linears.items()]
    moments = {}
    for site in statistics.sites:
        entry = statistics.by_site.get(site.name)
        if entry is None:
            raise ValueError(f"no calibration statistics for site {site.name!r}")
        moments.update(dict.fromkeys(site.linears, entry.second_moment))
    missing = [layer.name for layer in layers if layer.name not in moments]
    if missing:
        raise ValueError(f"no calibration statistics for layer {missing[0]!r}")
    cost = layer_costs(
        layers, candidates, budget.kind, input_tokens=input_tokens, output_tokens=output_tokens
    )
    if budget.reference is not None:
        reference = layer_costs(
            layers,
            [budget.reference],
            budget.kind,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
        )
        limit = float(reference.sum())
    elif budget.kind == "bits":
        assert budget.value is not None
        limit = budget.value * sum(layer.weights for layer in layers)
    else:
        assert budget.value is not None
        limit = budget.value
    cheapest = float(cost.min(axis=1).sum())
    if cheapest > limit * (1 + 1e-12):
        cheapest_text = _in_units(budget.kind, cheapest, layers)
        raise ValueError(
            f"budget {budget.spelled} ({_in_units(budget.kind, limit, layers)}) is below the "
            f"cheapest mix of {', '.join(c.spelled for c in candidates)} ({cheapest_text})"
        )
    if sensitivity is not None:
        columns = engine.map(
            sensitivity_errors,
            engine.put(sensitivity),
            candidates,
            num_cpus=sensitivity.threads,
            num_gpus=num_gpus,
        )
    else:
        weights = {name: m.weight.detach().float() for name, m in linears.items()}
        shared = engine.put((weights, moments, threads))
        columns = engine.map(proxy_errors, shared, candidates)
    error = np.stack(columns, axis=1)
    return Problem(layers, candidates, budget, cost, error, limit)


def _in_units(kind: str, total: float, layers: list[LayerShape]) -> str:
    if kind == "bits":
        return f"{total / sum(layer.weights for layer in layers):.4f} bits/weight"
    return f"{total:.4g} {'cycles' if kind == 'cycles' else 'pJ'}"


def _hull(costs: np.ndarray, errors: np.ndarray) -> list[int]:
    """Candidates on the lower convex hull of (cost, error), cheapest first (dominated and
    concave points dropped: the greedy only ever takes hull steps)."""
    order = sorted(range(len(costs)), key=lambda c: (costs[c], errors[c], c))
    hull: list[int] = []
    for c in order:
        if hull and errors[c] >= errors[hull[-1]]:
            continue  # costs at least as much, saves nothing
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # drop b when the step a -> c saves at least as much per unit as a -> b
            if (errors[a] - errors[b]) * (costs[c] - costs[a]) <= (errors[a] - errors[c]) * (
                costs[b] - costs[a]
            ):
                hull.pop()
            else:
                break
        hull.append(c)
    return hull


def greedy(problem: Problem) -> list[int]:
    """The sensitivity-greedy mix (module docstring); always within the budget."""
    hulls = [_hull(problem.cost[i], problem.error[i]) for i in range(len(problem.layers))]
    position = [0] * len(hulls)
    choice = [hull[0] for hull in hulls]
    total = problem.total_cost(choice)
    while True:
        best = None
        for i, hull in enumerate(hulls):
            if position[i] + 1 >= len(hull):
                continue
            a, b = hull[position[i]], hull[position[i] + 1]
            extra = problem.cost[i, b] - problem.cost[i, a]
            if total + extra > problem.limit * (1 + 1e-12):
                continue
            saved = problem.error[i, a] - problem.error[i, b]
            ratio = saved / extra if extra > 0 else math.inf
            if best is None or ratio > best[0]:
                best = (ratio, i, b, extra)
        if best is None:
            return choice
        _, i, b, extra = best
        choice[i] = b
        position[i] += 1
        total += extra


def repair(problem: Problem, choice: Sequence[int]) -> list[int]:
    """``choice`` made to fit the budget by the downgrades adding the least error per unit of
    cost saved (unchanged when it fits)."""
    choice = list(choice)
    total = problem.total_cost(choice)
    while total > problem.limit * (1 + 1e-12):
        best = None
        for i, current in enumerate(choice):
            for c in range(len(problem.candidates)):
                saved = problem.cost[i, current] - problem.cost[i, c]
                if saved <= 0:
                    continue
                added = problem.error[i, c] - problem.error[i, current]
                ratio = added / saved
                if best is None or ratio < best[0]:
                    best = (ratio, i, c, saved)
        assert best is not None  # the cheapest mix fits (build_problem checked)
        _, i, c, saved = best
        choice[i] = c
        total -= saved
    return choice


@dataclass
class MeasuredPerplexity:
    """The measured objective: perplexity of ``model`` (a known name, a path, or a
    :class:`LanguageModel` for small in-memory models) on ``tokens`` with each layer
    fake-quantized as the mix says (weights exactly as ``bitmod-quantize`` stores them, FP16
    activations), ``threads`` torch threads per trial, on CUDA when ``device`` says so."""

    model: str | LanguageModel
    tokens: list[int]
    context: int = 512
    threads: int = 1
    device: str = "cpu"


_WORKER_MODELS: dict[str, tuple[LanguageModel, dict[tuple[str, Candidate], torch.Tensor]]] = {}


def _worker_model(
    objective: MeasuredPerplexity,
) -> tuple[LanguageModel, dict[tuple[str, Candidate], torch.Tensor]]:
    """The model of this process (loaded once per worker), with its quantized-weight cache."""
    from bitmod.compiler.llm.models import load_model

    key = objective.model if isinstance(objective.model, str) else f"object:{id(objective.model)}"
    if key not in _WORKER_MODELS:
        lm = load_model(objective.model) if isinstance(objective.model, str) else objective.model
        lm.model.to(objective.device)
        _WORKER_MODELS[key] = (lm, {})
    return _WORKER_MODELS[key]


def measured_perplexity(
    objective: MeasuredPerplexity, mix: tuple[tuple[str, Candidate], ...]
) -> float:
    """Perplexity of one mix (an engine trial: ``mix`` = (layer, candidate) pairs)."""
    from bitmod.compiler.llm.evaluate import perplexity
    from bitmod.compiler.llm.fakequant import fake_quantized

    torch.set_num_threads(objective.threads)
    lm, cache = _worker_model(objective)
    linears = lm.block_linears()
    originals = {}
    try:
        for name, candidate in mix:
            module = linears[name]
            weight = _quantized_layer(lm, cache, name, candidate)
            originals[name] = module.weight.data
            module.weight.data = weight.to(module.weight.device)
        with fake_quantized(lm, None, fp16_activations=True):
            ppl, *_ = perplexity(lm, objective.tokens, context=objective.context)
    finally:
        for name, weight in originals.items():
            linears[name].weight.data = weight
    return ppl


def _quantized_layer(
    lm: LanguageModel,
    cache: dict[tuple[str, Candidate], torch.Tensor],
    name: str,
    candidate: Candidate,
) -> torch.Tensor:
    """Layer ``name``'s weight in ``candidate``'s format, as ``bitmod-quantize`` stores it."""
    from bitmod.compiler.llm.fakequant import QuantConfig
    from bitmod.compiler.search.awq import quantized_weight

    if (name, candidate) not in cache:
        weight = lm.block_linears()[name].weight.detach()
        config = QuantConfig(candidate.dtype, candidate.group or 128)
        cache[(name, candidate)] = quantized_weight(weight, config)
    return cache[(name, candidate)]


def sensitivity_errors(objective: MeasuredPerplexity, candidate: Candidate) -> np.ndarray:
    """One candidate's sensitivity proxy of every layer (an engine trial): the increase of the
    mean NLL per token on ``objective``'s tokens with only that layer in ``candidate``'s format
    (module docstring), clipped at zero."""
    from bitmod.compiler.llm.evaluate import perplexity
    from bitmod.compiler.llm.fakequant import fake_quantized

    torch.set_num_threads(objective.threads)
    lm, cache = _worker_model(objective)
    linears = lm.block_linears()

    def mean_nll() -> float:
        ppl, *_ = perplexity(lm, objective.tokens, context=objective.context)
        return math.log(ppl)

    increases = []
    with fake_quantized(lm, None, fp16_activations=True):
        reference = mean_nll()
        for name, module in linears.items():
            original = module.weight.data
            module.weight.data = _quantized_layer(lm, cache, name, candidate).to(original.device)
            try:
                increases.append(max(0.0, mean_nll() - reference))
            finally:
                module.weight.data = original
    return np.asarray(increases)


@dataclass
class SearchResult:
    """A chosen mix and how it was found."""

    method: str
    choice: list[int]
    objective: float  # what the method minimised (proxy, or measured perplexity)
    objective_kind: str
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    engine: str = "serial"


def _mixes(
    problem: Problem, choices: Sequence[Sequence[int]]
) -> list[tuple[tuple[str, Candidate], ...]]:
    return [
        tuple(
            (layer.name, problem.candidates[c])
            for layer, c in zip(problem.layers, choice, strict=True)
        )
        for choice in choices
    ]


def evaluate_mixes(
    problem: Problem,
    choices: Sequence[Sequence[int]],
    objective: MeasuredPerplexity | None,
    engine: Engine,
    num_gpus: float = 0,
    shared: Any = None,
) -> list[float]:
    """The objective of each mix: measured perplexity (engine trials) or the proxy."""
    if objective is None:
        return [problem.proxy(choice) for choice in choices]
    shared = engine.put(objective) if shared is None else shared
    return engine.map(
        measured_perplexity,
        shared,
        _mixes(problem, choices),
        num_cpus=objective.threads,
        num_gpus=num_gpus,
    )


def tpe_search(
    problem: Problem,
    *,
    trials: int,
    seed: int = 0,
    objective: MeasuredPerplexity | None = None,
    engine: Engine | None = None,
    batch_size: int = 2,
    grouping: str = "layer",
    start: Sequence[Sequence[int]] = (),
    num_gpus: float = 0,
    progress: Callable[[int, float], None] | None = None,
) -> SearchResult:
    """TPE over the layers' (or groups') candidates (module docstring); ``start`` mixes are
    evaluated first as trials of their own (e.g. the greedy one), so the result is never
    worse than they are. Returns the best repaired mix."""
    import optuna

    if trials < 1 or batch_size < 1:
        raise ValueError(f"TPE needs trials >= 1 and batch_size >= 1, got {trials}, {batch_size}")
    engine = engine or SerialEngine()
    started = time.perf_counter()
    groups = problem.group_ids(grouping)
    n_groups = max(groups) + 1
    distribution = optuna.distributions.CategoricalDistribution(
        list(range(len(problem.candidates)))
    )
    distributions = {f"g{g}": distribution for g in range(n_groups)}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(1, min(10, trials // 3)))
    study = optuna.create_study(direction="minimize", sampler=sampler)
    shared = engine.put(objective) if objective is not None else None
    history: list[dict[str, Any]] = []
    best: tuple[float, list[int]] | None = None
    done = 0

    def record(choice: list[int], value: float) -> None:
        nonlocal best, done
        history.append(
            {
                "trial": done,
                "objective": value,
                "proxy": problem.proxy(choice),
                "cost": problem.total_cost(choice),
            }
        )
        if best is None or value < best[0]:
            best = (value, choice)
        done += 1
        if progress is not None:
            progress(done, value)

    # Start mixes are trials of their own, evaluated as given (repaired); the study learns
    # them under their groups' choices (the first layer of a group speaks for it).
    starts = [repair(problem, list(mix)) for mix in start][:trials]
    if starts:
        values = evaluate_mixes(problem, starts, objective, engine, num_gpus, shared)
        for choice, value in zip(starts, values, strict=True):
            params: dict[str, int] = {}
            for i, g in enumerate(groups):
                params.setdefault(f"g{g}", int(choice[i]))
            study.add_trial(
                optuna.trial.create_trial(params=params, distributions=distributions, value=value)
            )
            record(choice, value)
    while done < trials:
        asked = [study.ask(distributions) for _ in range(min(batch_size, trials - done))]
        choices = [repair(problem, [t.params[f"g{g}"] for g in groups]) for t in asked]
        values = evaluate_mixes(problem, choices, objective, engine, num_gpus, shared)
        for trial, choice, value in zip(asked, choices, values, strict=True):
            study.tell(trial, value)
            record(choice, value)
    assert best is not None
    return SearchResult(
        "tpe",
        best[1],
        best[0],
        "perplexity" if objective is not None else "proxy",
        history,
        time.perf_counter() - started,
        engine.name,
    )


def _ranks(values: Sequence[float]) -> np.ndarray:
    order = np.argsort(np.asarray(values), kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (ties broken by position)."""
    ra, rb = _ranks(a), _ranks(b)
    return float(np.corrcoef(ra, rb)[0, 1])


def validate_proxy(
    problem: Problem,
    objective: MeasuredPerplexity,
    *,
    mixes: int,
    seed: int = 0,
    engine: Engine | None = None,
    extra: Sequence[Sequence[int]] = (),
) -> dict[str, Any]:
    """Proxy vs measured perplexity on ``mixes`` random mixes (each repaired to the budget)
    plus ``extra`` ones: the points and Spearman's rank correlation."""
    engine = engine or SerialEngine()
    generator = np.random.default_rng(seed)
    choices = [list(c) for c in extra]
    for _ in range(mixes):
        raw = generator.integers(0, len(problem.candidates), len(problem.layers))
        choices.append(repair(problem, raw.tolist()))
    measured = evaluate_mixes(problem, choices, objective, engine)
    proxies = [problem.proxy(c) for c in choices]
    return {
        "points": [
            {"proxy": p, "perplexity": m, "cost": problem.total_cost(c)}
            for p, m, c in zip(proxies, measured, choices, strict=True)
        ],
        "spearman": spearman(proxies, measured),
    }
