"""``bitmod eval``: perplexity of a real LLM per weight data type, from the shell.

::

    bitmod eval smollm2-135m --dtype fp32,int3_asym,bitmod3 --max-tokens 4096
    bitmod eval gemma3-270m --table paper --corpus news --json out.json --csv out.csv
    bitmod eval path/to/model.gguf --dtype int4_asym --scale-bits 8,6,4,2,fp16
    bitmod eval ./hf-model-dir --corpus my_text.txt --context 1024 --stride 512

``MODEL`` is a known name (``smollm2-135m``, ``gemma3-270m``), a GGUF file or a Hugging Face
directory (:func:`bitmod.compiler.llm.load_model`). ``--dtype`` takes data type names (and
``fp32``), each run at every ``--scale-bits`` value; ``--table`` takes a preset instead
(``paper`` = Table VI, ``ablation`` = Table VIII, ``scale-sweep`` = Table V). The Markdown
table goes to stdout; ``--json``/``--csv``/``--markdown`` also write files, only once every run
has finished (no partial files). Windows, BOS and token counts are described in
:mod:`bitmod.compiler.llm.evaluate`. Errors are one ``bitmod: error:`` line, exit status 1.

This module is the whole subcommand; ``compiler/tools/bitmod_cli.py`` only registers it.
Nothing here imports torch until the command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_eval_parser", "run_eval"]

_TABLES = ("paper", "ablation", "scale-sweep")


def add_eval_parser(commands: Any) -> None:
    """Register ``eval`` on the ``bitmod`` command's subparsers."""
    parser = commands.add_parser(
        "eval",
        help="perplexity of a real LLM per weight data type (fake-quantized from the "
        "compiler's stored codes)",
        description="Load a pretrained LLM, quantize its block linears per data type exactly "
        "as bitmod-quantize stores them, and measure perplexity on bundled or given text.",
    )
    parser.add_argument(
        "model", metavar="MODEL", help="smollm2-135m, gemma3-270m, a .gguf or HF dir"
    )
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument(
        "--dtype",
        default="fp32,int3_asym,bitmod3",
        help="comma-separated data types, fp32 for the reference (default fp32,int3_asym,bitmod3)",
    )
    choice.add_argument("--table", choices=_TABLES, help="a preset list of configurations")
    parser.add_argument(
        "--corpus",
        default="wiki",
        help="wiki, news or a text file; several comma-separated, each weight format quantized "
        "once for all of them (default wiki)",
    )
    parser.add_argument("--group-size", type=int, default=128, help="default 128 (MX: 32)")
    parser.add_argument(
        "--scale-bits",
        default="8",
        help="comma-separated group-scale precisions: 2..8 or fp16 (default 8)",
    )
    parser.add_argument("--no-fp16-act", action="store_true", help="keep activations in FP32")
    parser.add_argument("--context", type=int, default=2048, help="tokens per window (2048)")
    parser.add_argument("--stride", type=int, default=None, help="window stride (= context)")
    parser.add_argument("--max-tokens", type=int, default=None, help="use the first N tokens")
    parser.add_argument("--batch-size", type=int, default=1, help="windows per forward pass")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    parser.add_argument(
        "--arithmetic",
        default="fake",
        help="fake (dequantized weights in FP32 matmuls), hardware (the PE's bit-exact "
        "arithmetic, Triton on CUDA), or fake,hardware for both (default fake)",
    )
    parser.add_argument("--json", metavar="FILE", help="write every result as JSON")
    parser.add_argument("--csv", metavar="FILE", help="write every result as CSV")
    parser.add_argument("--markdown", metavar="FILE", help="write the table")
    bar = parser.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None)
    bar.add_argument("--no-progress", dest="progress", action="store_false")


def _scale_bits(text: str) -> list[int | None]:
    values: list[int | None] = []
    for item in text.split(","):
        item = item.strip().lower()
        if item in ("fp16", "0"):
            values.append(None)
        elif item.isdigit() and 2 <= int(item) <= 8:
            values.append(int(item))
        else:
            raise ValueError(f"--scale-bits: {item!r} is not 2..8 or fp16")
    return values


def _configs(args: argparse.Namespace) -> list[Any]:
    from bitmod.compiler.llm import evaluate as ev
    from bitmod.compiler.llm.fakequant import FP32, QuantConfig

    if args.table is not None:
        return list(
            {"paper": ev.PAPER_TABLE, "ablation": ev.ABLATION}.get(args.table, ev.SCALE_SWEEP)
        )
    configs: list[Any] = []
    for dtype in (d.strip() for d in args.dtype.split(",")):
        if not dtype:
            continue
        for bits in [8] if dtype == FP32 else _scale_bits(args.scale_bits):
            try:
                config = QuantConfig(
                    dtype, args.group_size, bits, False if args.no_fp16_act else None
                )
            except ValueError as error:
                raise ValueError(f"--dtype: {error}") from None
            if config not in configs:
                configs.append(config)
    if not configs:
        raise ValueError("--dtype: no data type given")
    return configs


def run_eval(args: argparse.Namespace) -> int:
    """Run ``bitmod eval``; returns the exit status."""
    import torch
    from bitmod.compiler.llm.evaluate import evaluate, results_csv, results_json, results_markdown
    from bitmod.compiler.llm.fakequant import warn_accelerator_refusals
    from bitmod.compiler.llm.models import load_model
    from bitmod.runtime.storage.fileio import write_together

    configs = _configs(args)
    if args.group_size <= 0:
        raise ValueError(f"--group-size must be positive, got {args.group_size}")
    warn_accelerator_refusals(configs)
    for option, least in (("context", 2), ("stride", 1), ("max_tokens", 1), ("batch_size", 1)):
        value = getattr(args, option)
        if value is not None and value < least:
            raise ValueError(f"--{option.replace('_', '-')} must be >= {least}, got {value}")
    outputs = _check_outputs(args)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    lm = load_model(args.model)
    if args.context > lm.context_length:
        raise ValueError(
            f"--context {args.context} is longer than {lm.name}'s {lm.context_length} positions "
            f"(max_position_embeddings)"
        )
    try:
        lm.model.to(device)
    except (RuntimeError, AssertionError) as error:
        raise ValueError(f"--device {args.device}: {error}") from None
    show = sys.stderr.isatty() if args.progress is None else args.progress
    corpora = [c.strip() for c in args.corpus.split(",") if c.strip()]
    if not corpora:
        raise ValueError("--corpus: no corpus given")
    results = evaluate(
        lm,
        corpora,
        configs,
        max_tokens=args.max_tokens,
        context=args.context,
        stride=args.stride,
        batch_size=args.batch_size,
        progress=show,
        arithmetic=[mode.strip() for mode in args.arithmetic.split(",") if mode.strip()],
    )
    table = results_markdown(results)
    firsts: dict[str, Any] = {}
    for result in results:
        firsts.setdefault(result.corpus, result)
    for first in firsts.values():
        print(
            f"{lm.name} on {first.corpus}: {first.tokens:,} tokens in {first.windows} windows of "
            f"{first.context} (stride {first.stride}, BOS "
            f"{'none' if first.bos_id is None else first.bos_id}), {first.scored_tokens:,} scored"
        )
    print(table)
    texts = {
        "json": results_json(results) + "\n",
        "csv": results_csv(results),
        "markdown": table + "\n",
    }
    write_together(
        [
            (path, lambda temporary, text=texts[option]: temporary.write_text(text))
            for option, path in outputs.items()
        ]
    )
    return 0


def _check_outputs(args: argparse.Namespace) -> dict[str, Path]:
    """The output files by option, checked before the evaluation: each can be written, and no
    two name the same file (the second would silently replace the first)."""
    from bitmod.runtime.storage.fileio import check_file_path, os_error_reason

    outputs: dict[str, Path] = {}
    seen: dict[str, str] = {}
    for option in ("json", "csv", "markdown"):
        path = getattr(args, option)
        if path is None:
            continue
        text = os.fspath(path)
        try:
            check_file_path(text)
        except OSError as error:
            raise ValueError(f"--{option} {text!r}: {os_error_reason(error, text)}") from None
        real = os.path.realpath(text)
        if real in seen:
            raise ValueError(f"--{seen[real]} and --{option} name the same file {text}")
        seen[real] = option
        outputs[option] = Path(text)
    return outputs
