"""``bitmod optimize`` (AWQ per format) and ``bitmod search`` (per-layer mixed precision).

::

    bitmod optimize smollm2-135m --dtype int3_asym,bitmod3 --eval-tokens 4096 -o build/awq
    bitmod search smollm2-135m --candidates bitmod3:256,bitmod3,bitmod3:64,bitmod4 \\
        --budget bits=bitmod3 --method both --trials 32 --engine ray -o build/mix
    bitmod search smollm2-135m --candidates bitmod3,bitmod4,int6,int8 --budget cycles=bitmod4

Calibration is the ``calib`` split of ``--calib-corpus`` (disjoint from the ``eval`` split
perplexity is measured on): ``--calib-samples`` windows of ``--calib-context`` tokens.
``--engine ray`` runs the trials (one per format in ``optimize``, one per candidate's
sensitivity table and per search point in ``search``) as Ray tasks on a local Ray, or on the
cluster at ``--address``; ``--gpus-per-trial`` makes each trial ask Ray for GPUs and run on
CUDA. Files are written only when everything succeeded. Errors are one ``bitmod: error:``
line, exit status 1. Modules: :mod:`bitmod.compiler.search.awq`,
:mod:`bitmod.compiler.search.mixed`; ``compiler/tools/bitmod_cli.py`` only registers these
commands.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bitmod.runtime.storage.fileio import check_directory_path, os_error_reason

__all__ = ["add_search_parsers", "run_optimize", "run_search"]


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", metavar="MODEL", help="smollm2-135m, gemma3-270m, a .gguf or HF dir"
    )
    parser.add_argument("--calib-corpus", default="wiki", help="wiki or news (its calib split)")
    parser.add_argument("--calib-samples", type=int, default=4, help="calibration windows (4)")
    parser.add_argument("--calib-context", type=int, default=512, help="tokens per window (512)")
    parser.add_argument("--eval-corpus", default="wiki", help="wiki, news or a text file")
    parser.add_argument(
        "--eval-tokens", type=int, default=0, help="measure perplexity on N eval tokens (0: no)"
    )
    parser.add_argument("--context", type=int, default=1024, help="evaluation window (1024)")
    parser.add_argument("--engine", choices=("serial", "ray"), default="serial")
    parser.add_argument("--address", default=None, help="a Ray cluster to join (ray engine)")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per trial (1)")
    parser.add_argument("--gpus-per-trial", type=float, default=0, help="GPUs each trial asks for")
    parser.add_argument("-o", "--out", default=None, help="output directory")


def add_search_parsers(commands: Any) -> None:
    """Register ``optimize`` and ``search`` on the ``bitmod`` command's subparsers."""
    optimize = commands.add_parser(
        "optimize",
        help="AWQ-style scale and clipping search for a weight format (modified float weights)",
        description="Activation-aware per-channel scales folded into the preceding ops and "
        "per-group clipping, searched with the format's own quantizer on calibration text.",
    )
    _common(optimize)
    optimize.add_argument("--dtype", default="bitmod3", help="comma-separated formats (bitmod3)")
    optimize.add_argument("--group-size", type=int, default=128)
    optimize.add_argument("--scale-bits", type=int, default=8, help="2..8, 0: FP16 scales")
    optimize.add_argument("--scale-grid", type=int, default=20, help="α grid points (20)")
    optimize.add_argument("--clip-grid", type=int, default=20, help="clip grid (20)")
    optimize.add_argument("--max-shrink", type=float, default=0.5, help="least clip ratio 1-x")
    optimize.add_argument("--no-scale", action="store_true", help="clipping only")
    optimize.add_argument("--no-clip", action="store_true", help="scales only")
    optimize.add_argument("--power-of-two", action="store_true", help="power-of-two scales")

    search = commands.add_parser(
        "search",
        help="per-layer mixed precision under a bits/cycles/energy budget (a layers= spec)",
        description="Choose each block linear's format from the candidates to minimise the "
        "calibration proxy or measured perplexity under a budget; prints the layers= spec.",
    )
    _common(search)
    search.add_argument(
        "--candidates",
        default="bitmod3,bitmod4,int6,int8",
        help="comma-separated FORMAT[:GROUP] (default bitmod3,bitmod4,int6,int8)",
    )
    search.add_argument(
        "--budget", required=True, help="bits=B|FORMAT, cycles=C|FORMAT or energy=PJ|FORMAT"
    )
    search.add_argument("--method", choices=("greedy", "tpe", "both"), default="greedy")
    search.add_argument(
        "--objective",
        choices=("proxy", "perplexity"),
        default="proxy",
        help="what TPE minimises: the calibration proxy or perplexity on calib tokens",
    )
    search.add_argument(
        "--proxy",
        choices=("output-error", "sensitivity"),
        default="output-error",
        help="the proxy greedy and proxy-TPE minimise: each linear's output error on the "
        "calibration tokens, or its measured loss sensitivity there (one evaluation per layer "
        "and candidate; see bitmod.compiler.search.mixed)",
    )
    search.add_argument("--search-tokens", type=int, default=512, help="calib tokens per trial")
    search.add_argument("--trials", type=int, default=32)
    search.add_argument("--batch-size", type=int, default=2, help="trials per batch (2)")
    search.add_argument("--seed", type=int, default=0)
    search.add_argument("--grouping", choices=("layer", "kind", "block"), default="layer")
    search.add_argument(
        "--validate", type=int, default=0, help="measure N random mixes to check the proxy"
    )


def _check_common(args: argparse.Namespace) -> None:
    for option in ("calib_samples", "calib_context", "context", "threads"):
        if getattr(args, option) < 1:
            raise ValueError(f"--{option.replace('_', '-')} must be >= 1")
    if args.eval_tokens < 0:
        raise ValueError("--eval-tokens must be >= 0")
    if not math.isfinite(args.gpus_per_trial) or args.gpus_per_trial < 0:
        raise ValueError(
            f"--gpus-per-trial must be a finite number >= 0, got {args.gpus_per_trial}"
        )
    local = args.engine == "serial" or args.address is None
    if local:  # a cluster (--address) has machines of its own; this one is known
        cpus = os.cpu_count() or 1
        if args.num_cpus is not None and args.num_cpus < 1:
            raise ValueError(f"--num-cpus must be >= 1, got {args.num_cpus}")
        if args.engine == "ray" and args.num_cpus is not None:
            cpus = args.num_cpus
        if args.threads > cpus:
            raise ValueError(
                f"--threads {args.threads}: a trial cannot have more threads than the "
                f"{cpus} CPUs {'the local Ray is given' if args.engine == 'ray' else 'here'}"
            )
        if args.gpus_per_trial > 0:
            import torch

            if not torch.cuda.is_available():
                raise ValueError("--gpus-per-trial: this machine has no CUDA GPU")
    if args.out is not None:
        try:
            check_directory_path(args.out)
        except OSError as error:
            raise ValueError(f"--out {args.out!r}: {os_error_reason(error, args.out)}") from None
        args.out = Path(args.out)


def _check_context(lm: Any, args: argparse.Namespace) -> None:
    """Windows no longer than the model's positions (a longer one is not the model's behaviour)."""
    for option in ("calib_context", "context"):
        value = getattr(args, option)
        if value > lm.context_length:
            raise ValueError(
                f"--{option.replace('_', '-')} {value} is longer than {lm.name}'s "
                f"{lm.context_length} positions (max_position_embeddings)"
            )


def _setup(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(model, calibration statistics, engine)."""
    import torch
    from bitmod.compiler.llm.evaluate import tokens_of
    from bitmod.compiler.llm.models import load_model
    from bitmod.compiler.search.calibration import calibration_windows, collect_statistics
    from bitmod.compiler.search.engine import make_engine

    engine = make_engine(args.engine, args.address, args.num_cpus)
    lm = load_model(args.model)
    _check_context(lm, args)
    if args.gpus_per_trial > 0 and torch.cuda.is_available():
        lm.model.to("cuda")
    windows = calibration_windows(
        lm, tokens_of(lm, args.calib_corpus, "calib"), args.calib_samples, args.calib_context
    )
    return lm, collect_statistics(lm, windows), engine


def _eval_tokens(lm: Any, args: argparse.Namespace) -> list[int]:
    from bitmod.compiler.llm.evaluate import tokens_of

    return tokens_of(lm, args.eval_corpus)[: args.eval_tokens]


def _write(out: Path, files: list[tuple[Path, Callable[[Path], None]]]) -> None:
    """All output files at once: an error while writing any leaves none of them changed."""
    from bitmod.runtime.storage.fileio import write_together

    for path, _ in files:
        path.parent.mkdir(parents=True, exist_ok=True)
    write_together(files)


def _text(path: Path, text: str) -> tuple[Path, Callable[[Path], None]]:
    return path, lambda staged: staged.write_text(text)


def run_optimize(args: argparse.Namespace) -> int:
    """Run ``bitmod optimize``; returns the exit status."""
    from bitmod.compiler.llm.fakequant import QuantConfig, warn_accelerator_refusals
    from bitmod.compiler.search.awq import AwqSettings

    _check_common(args)
    dtypes = [d.strip() for d in args.dtype.split(",") if d.strip()]
    if not dtypes:
        raise ValueError("--dtype: no data type given")
    try:
        configs = [
            QuantConfig(d, args.group_size, None if args.scale_bits == 0 else args.scale_bits)
            for d in dtypes
        ]
    except ValueError as error:
        raise ValueError(f"--dtype: {error}") from None
    warn_accelerator_refusals(configs)
    settings = AwqSettings(
        args.scale_grid,
        args.clip_grid,
        args.max_shrink,
        scale=not args.no_scale,
        clip=not args.no_clip,
        power_of_two=args.power_of_two,
    )
    lm, statistics, engine = _setup(args)
    eval_ids = _eval_tokens(lm, args) if args.eval_tokens else None
    shared = engine.put((lm, statistics, settings, eval_ids, args.context, args.threads))
    outcomes = engine.map(
        _optimize_one, shared, configs, num_cpus=args.threads, num_gpus=args.gpus_per_trial
    )
    rows = []
    print(f"{lm.name}: AWQ on {statistics.tokens} calibration tokens ({args.calib_corpus} calib)")
    print("| data type | AWQ s | plain PPL | AWQ PPL |")
    print("|---|---|---|---|")
    for config, (result, plain, optimised) in zip(configs, outcomes, strict=True):
        rows.append(
            {
                "config": config.label,
                "awq_seconds": result.seconds,
                "plain_ppl": plain,
                "awq_ppl": optimised,
            }
        )
        print(
            f"| {config.label} | {result.seconds:.0f} | {_number(plain)} | {_number(optimised)} |"
        )
    if args.out is not None:
        files = [_text(args.out / "results.json", json.dumps(rows, indent=1) + "\n")]
        for config, (result, _, _) in zip(configs, outcomes, strict=True):
            files += result.files(args.out / config.dtype)
        _write(args.out, files)
        print(f"wrote {args.out}")
    return 0


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _optimize_one(shared: tuple[Any, ...], config: Any) -> tuple[Any, float | None, float | None]:
    """One format's AWQ (+ perplexity before/after): an engine trial."""
    import torch
    from bitmod.compiler.llm.evaluate import evaluate
    from bitmod.compiler.search.awq import awq_optimize

    lm, statistics, settings, eval_ids, context, threads = shared
    torch.set_num_threads(threads)
    result = awq_optimize(lm, config, statistics, settings)
    plain = optimised = None
    if eval_ids:
        plain = evaluate(lm, "eval", [config], context=context, tokens=eval_ids)[0].perplexity
        with result.applied(lm):
            optimised = evaluate(lm, "eval", [config], context=context, tokens=eval_ids)[
                0
            ].perplexity
    return result, plain, optimised


def run_search(args: argparse.Namespace) -> int:
    """Run ``bitmod search``; returns the exit status."""
    import numpy as np
    from bitmod.compiler.llm.evaluate import tokens_of
    from bitmod.compiler.search.costs import layer_costs, parse_candidates
    from bitmod.compiler.search.mixed import (
        MeasuredPerplexity,
        build_problem,
        evaluate_mixes,
        greedy,
        parse_budget,
        tpe_search,
        validate_proxy,
    )

    _check_common(args)
    candidates = parse_candidates(args.candidates)
    budget = parse_budget(args.budget)
    if args.trials < 1 or args.batch_size < 1:
        raise ValueError("--trials and --batch-size must be >= 1")
    if args.validate < 0 or 0 < args.validate < 3:
        # Spearman's rank correlation of two mixes is always +-1, of one undefined.
        raise ValueError(f"--validate must be 0 (off) or >= 3 mixes, got {args.validate}")
    if (args.objective == "perplexity" or args.validate) and args.search_tokens < 2:
        raise ValueError(
            f"--search-tokens must be >= 2 to measure perplexity, got {args.search_tokens}"
        )
    lm, statistics, engine = _setup(args)
    started = time.perf_counter()
    device = "cuda" if args.gpus_per_trial > 0 else "cpu"
    calib = tokens_of(lm, args.calib_corpus, "calib")
    offset = args.calib_samples * args.calib_context  # tokens the statistics did not see
    sensitivity = None
    if args.proxy == "sensitivity":  # on the statistics' own tokens, not the held-out ones
        sensitivity = MeasuredPerplexity(
            args.model, calib[:offset], min(args.context, offset), args.threads, device
        )
    problem = build_problem(
        lm,
        candidates,
        budget,
        statistics,
        engine=engine,
        threads=args.threads,
        sensitivity=sensitivity,
        num_gpus=args.gpus_per_trial,
    )
    search_objective = None
    if args.objective == "perplexity" or args.validate:
        ids = calib[offset : offset + args.search_tokens]
        search_objective = MeasuredPerplexity(
            args.model, ids, min(args.context, len(ids)), args.threads, device
        )
    results: dict[str, Any] = {}
    baseline = greedy(problem)
    results["greedy"] = {"choice": baseline, "objective": problem.proxy(baseline)}
    if args.method in ("tpe", "both"):
        found = tpe_search(
            problem,
            trials=args.trials,
            seed=args.seed,
            objective=search_objective if args.objective == "perplexity" else None,
            engine=engine,
            batch_size=args.batch_size,
            grouping=args.grouping,
            start=[baseline],
            num_gpus=args.gpus_per_trial,
        )
        results["tpe"] = {
            "choice": found.choice,
            "objective": found.objective,
            "history": found.history,
        }
    if args.method == "tpe":
        results.pop("greedy")
    validation = None
    if args.validate:
        assert search_objective is not None
        validation = validate_proxy(
            problem,
            search_objective,
            mixes=args.validate,
            seed=args.seed,
            engine=engine,
            extra=[baseline],
        )
    bits = layer_costs(problem.layers, candidates, "bits")
    weights = sum(layer.weights for layer in problem.layers)
    summary: dict[str, Any] = {
        "model": lm.name,
        "candidates": [c.spelled for c in candidates],
        "budget": budget.spelled,
        "limit": problem.limit,
        "proxy": args.proxy,
        "calibration_tokens": statistics.tokens,
        "engine": engine.name,
        "methods": {},
        "validation": validation,
    }
    eval_ids = _eval_tokens(lm, args) if args.eval_tokens else None
    for method, found in results.items():
        choice = found["choice"]
        entry = {
            "objective": found["objective"],
            "proxy": problem.proxy(choice),
            "cost": problem.total_cost(choice),
            "bits_per_weight": float(bits[np.arange(len(choice)), choice].sum()) / weights,
            "counts": {
                c.spelled: int(sum(1 for x in choice if x == j)) for j, c in enumerate(candidates)
            },
            "layers": problem.layers_spec(choice),
        }
        if "history" in found:
            entry["history"] = found["history"]
        if eval_ids:
            evaluation = MeasuredPerplexity(
                args.model, eval_ids, args.context, args.threads, device
            )
            (entry["eval_ppl"],) = evaluate_mixes(
                problem, [choice], evaluation, engine, args.gpus_per_trial
            )
        summary["methods"][method] = entry
        counts = ", ".join(f"{k} x{v}" for k, v in entry["counts"].items() if v)
        ppl = f", eval PPL {entry['eval_ppl']:.3f}" if "eval_ppl" in entry else ""
        print(
            f"{method}: {entry['bits_per_weight']:.4f} bits/weight, cost {entry['cost']:.4g} "
            f"(limit {problem.limit:.4g}), proxy {entry['proxy']:.4g}{ppl}; {counts}"
        )
    if validation is not None:
        count, rho = len(validation["points"]), validation["spearman"]
        print(f"proxy vs measured perplexity on {count} mixes: Spearman {rho:.3f}")
    summary["seconds"] = time.perf_counter() - started
    final = summary["methods"]["tpe" if "tpe" in summary["methods"] else "greedy"]
    if args.out is None:
        print(f"layers={final['layers']}")
    else:
        _write(
            args.out,
            [
                _text(args.out / "layers.txt", final["layers"] + "\n"),
                _text(args.out / "search.json", json.dumps(summary, indent=1) + "\n"),
            ],
        )
        print(f"wrote {args.out}/layers.txt and search.json")
    sys.stdout.flush()
    return 0
