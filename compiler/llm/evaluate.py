"""Perplexity of a real LLM per weight data type (the BitMoD paper's Tables V, VI and VIII).

::

    from bitmod.compiler.llm import QuantConfig, load_model
    from bitmod.compiler.llm.evaluate import evaluate, results_markdown
    lm = load_model("smollm2-135m")
    results = evaluate(lm, "wiki", [QuantConfig(), QuantConfig("bitmod3")], max_tokens=8192)
    print(results_markdown(results))

or ``bitmod eval smollm2-135m --dtype fp32,int3_asym,bitmod3 --max-tokens 8192``.

Windows
-------
The corpus is tokenized as one text (its documents joined by blank lines), without special
tokens, and cut to ``max_tokens``. Windows hold ``context`` text tokens and start every
``stride`` tokens (default ``stride = context``: disjoint windows); only windows that fit
entirely are used, so ``floor((T − context) / stride) + 1`` of them for ``T`` tokens. Each
window is fed as ``[BOS] + window`` when the model has a BOS (Gemma: id 2), else as the window
alone. A window scores the tokens it is the first to see: all of its tokens (the first one
only when a BOS precedes it) for the first window, and the last ``stride`` for the others;
perplexity is ``exp(Σ NLL / scored)`` over every scored token. With disjoint windows and no
BOS, the first token of every window is context only. Windows are run ``batch_size`` at a
time; the LM head is applied in chunks, so Gemma's 262,144-way logits never exist for a whole
window at once.

Arithmetic
----------
``arithmetic="fake"`` (what every quantization paper reports, BitMoD's included): each block
linear multiplies its FP16-rounded input by the *dequantized* stored weights in FP32 and rounds
its output to FP16. ``arithmetic="hardware"``: each block linear computes as the PE array does
(:func:`~bitmod.compiler.llm.hardware.accelerated_linears`: 1-bit term mantissas × 11-bit
activation mantissas, 3 guard bits and round-to-nearest-even, exact group accumulation, INT8
bit-serial dequantization, FP32 column accumulation, FP16 drain), bit-identical to the emulator
running the compiled programs, on the model's device (Triton on CUDA). The same stored codes,
the same FP16 inputs and FP16 outputs: the two differ only in the arithmetic between them.
Everything else (embeddings, norms, attention, LM head) is the host's FP32 in both. Formats
without a bit-serial datapath or without INT group scales have no hardware mode.

Data types are :class:`~bitmod.compiler.llm.fakequant.QuantConfig`\\ s; :data:`PAPER_TABLE`,
:data:`ABLATION`, :data:`SCALE_SWEEP` are the configurations of Tables VI, VIII and V.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from bitmod.compiler.llm.fakequant import (
    FP32,
    QuantConfig,
    fake_quantized,
    quantize_linears,
    weighted_bits_per_weight,
)
from bitmod.compiler.llm.hardware import accelerated_linears
from bitmod.compiler.llm.models import LanguageModel
from bitmod.compiler.llm.text import CORPORA, load_text
from bitmod.runtime.formats import get_format
from tqdm import tqdm

__all__ = [
    "ABLATION",
    "ARITHMETICS",
    "EvalError",
    "PAPER_TABLE",
    "SCALE_SWEEP",
    "PerplexityResult",
    "Window",
    "evaluate",
    "make_windows",
    "perplexity",
    "results_csv",
    "results_markdown",
    "tokens_of",
]


class EvalError(ValueError):
    """Text too short for one window, bad window settings, an unknown corpus."""


#: How the block linears compute (see "Arithmetic" above).
ARITHMETICS = ("fake", "hardware")


def _configs(dtypes: Iterable[str], scale_bits: Sequence[int | None]) -> tuple[QuantConfig, ...]:
    out = []
    for dtype in dtypes:
        for bits in scale_bits:
            config = QuantConfig(dtype, scale_bits=bits)
            if config.is_mx and any(c.dtype == dtype for c in out):
                continue  # MX has no second-level scale: one run
            out.append(config)
    return tuple(out)


#: Table VI's data types at 4 and 3 bits (G = 128, MX block 32), INT8 and FP16 group scales.
PAPER_TABLE: tuple[QuantConfig, ...] = (
    QuantConfig(),
    *_configs(
        (
            "ant4",
            "olive4",
            "mxfp4",
            "int4",
            "int4_asym",
            "bitmod4",
            "ant3",
            "mxfp3",
            "int3",
            "int3_asym",
            "bitmod3",
        ),
        (8, None),
    ),
)
#: Table VIII: the extensions of FP3/FP4 one at a time (INT8 and FP16 group scales).
ABLATION: tuple[QuantConfig, ...] = _configs(
    ("fp4", "fp4_er", "fp4_ea", "bitmod4", "fp3", "fp3_er", "fp3_ea", "bitmod3"), (8, None)
)
#: Table V: the second-level scale precision of INT4-asym (FP16, INT8, INT6, INT4, INT2).
SCALE_SWEEP: tuple[QuantConfig, ...] = _configs(("int4_asym",), (None, 8, 6, 4, 2))


@dataclass(frozen=True)
class Window:
    """One window: text tokens ``[start, start + context)``, scored from ``first_scored``."""

    start: int
    first_scored: int


def make_windows(n_tokens: int, context: int, stride: int, has_bos: bool) -> list[Window]:
    """The windows over ``n_tokens`` text tokens (see the module docstring)."""
    if context < 2 or stride < 1 or stride > context:
        raise EvalError(
            f"bad windows: context {context} must be >= 2 and stride {stride} in 1..context"
        )
    if n_tokens < context:
        raise EvalError(
            f"text has {n_tokens} tokens, fewer than one window of {context}; use a longer "
            f"text or a smaller --context"
        )
    windows = []
    seen = 0
    for start in range(0, n_tokens - context + 1, stride):
        first = max(start + (0 if has_bos else 1), seen)
        windows.append(Window(start, first))
        seen = start + context
    return windows


@dataclass
class PerplexityResult:
    """One configuration evaluated on one text."""

    model: str
    corpus: str
    config: str
    dtype: str
    group_size: int | None
    scale_bits: int | None
    fp16_activations: bool
    perplexity: float
    nll: float  # summed negative log likelihood, nats
    scored_tokens: int
    tokens: int  # text tokens covered by the windows
    windows: int
    context: int
    stride: int
    bos_id: int | None
    bits_per_weight: float | None
    quantize_seconds: float
    eval_seconds: float
    device: str
    arithmetic: str = "fake"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def tokens_of(lm: LanguageModel, corpus: str | Path, split: str = "eval") -> list[int]:
    """The token ids of a bundled corpus (``wiki``, ``news``) or of a text file."""
    if isinstance(corpus, str) and corpus not in CORPORA and not Path(corpus).is_file():
        raise EvalError(
            f"unknown corpus {corpus!r}: not one of {', '.join(CORPORA)} nor a text file"
        )
    try:
        text = load_text(corpus, split)
    except ValueError as error:
        raise EvalError(str(error)) from None
    return lm.tokenizer.encode(text)


def _head_logits(lm: LanguageModel, hidden: torch.Tensor) -> torch.Tensor:
    """The LM head as the model's own forward applies it (Gemma-2-style soft capping too)."""
    logits = lm.model.get_output_embeddings()(hidden).float()
    cap = getattr(lm.model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def _window_nll(
    lm: LanguageModel, batch: torch.Tensor, scored: list[tuple[int, int]], chunk: int
) -> tuple[float, int]:
    """Σ NLL over the scored input positions ``[lo, hi)`` of each row (targets shifted by 1)."""
    hidden = lm.model.get_decoder()(input_ids=batch).last_hidden_state
    total = 0.0
    count = 0
    for row, (lo, hi) in enumerate(scored):
        for begin in range(lo, hi, chunk):
            end = min(begin + chunk, hi)
            logits = _head_logits(lm, hidden[row, begin - 1 : end - 1])
            targets = batch[row, begin:end]
            nll = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
            total += float(nll.double())
            count += end - begin
    return total, count


def perplexity(
    lm: LanguageModel,
    tokens: Sequence[int],
    *,
    context: int = 2048,
    stride: int | None = None,
    batch_size: int = 1,
    device: torch.device | str | None = None,
    progress: bool = False,
    desc: str = "perplexity",
) -> tuple[float, float, int, list[Window]]:
    """(perplexity, Σ NLL, scored tokens, windows) of ``lm`` on ``tokens``."""
    stride = context if stride is None else stride
    windows = make_windows(len(tokens), context, stride, lm.bos_id is not None)
    ids = torch.tensor(list(tokens), dtype=torch.long)
    offset = len(lm.bos)
    bos = torch.tensor(lm.bos, dtype=torch.long)
    device = torch.device(device) if device is not None else _model_device(lm)
    total = 0.0
    count = 0
    bar = tqdm(total=len(windows), desc=desc, unit="window", disable=not progress, file=sys.stderr)
    with torch.inference_mode():
        for first in range(0, len(windows), batch_size):
            group = windows[first : first + batch_size]
            rows = [torch.cat([bos, ids[w.start : w.start + context]]) for w in group]
            batch = torch.stack(rows).to(device)
            # input position p holds text token start + p - offset; the prediction of input
            # position p is made at p - 1.
            scored = [(w.first_scored - w.start + offset, context + offset) for w in group]
            nll, n = _window_nll(lm, batch, scored, chunk=512)
            total += nll
            count += n
            bar.update(len(group))
            bar.set_postfix(ppl=f"{math.exp(total / count):.3f}")
    bar.close()
    return math.exp(total / count), total, count, windows


def _model_device(lm: LanguageModel) -> torch.device:
    return next(lm.model.parameters()).device


def evaluate(
    lm: LanguageModel,
    corpus: str | Path | Sequence[str | Path],
    configs: Sequence[QuantConfig],
    *,
    max_tokens: int | None = None,
    context: int = 2048,
    stride: int | None = None,
    batch_size: int = 1,
    progress: bool = False,
    tokens: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
    on_result: Any = None,
    arithmetic: str | Sequence[str] = "fake",
) -> list[PerplexityResult]:
    """Perplexity of ``lm`` on ``corpus`` (one corpus or several) for every configuration, in
    order, in each of the ``arithmetic`` modes (``"fake"``, ``"hardware"`` or both; the FP32
    reference is run once).

    Quantization uses :func:`~bitmod.compiler.llm.fakequant.quantize_linears` (the compiler's
    stored codes) on the model's device, once per configuration for all modes and corpora.
    ``tokens`` replaces the corpus text: a token list for one corpus, or a mapping from corpus
    name to tokens for several. ``on_result`` is called with each result as it is done (for
    incremental output).
    """
    modes = [arithmetic] if isinstance(arithmetic, str) else list(arithmetic)
    unknown = [mode for mode in modes if mode not in ARITHMETICS]
    if unknown or not modes:
        raise EvalError(
            f"arithmetic {', '.join(map(repr, unknown)) or 'none'}: expected "
            f"{' or '.join(ARITHMETICS)}"
        )
    if "hardware" in modes:
        for config in configs:
            problem = _hardware_problem(config)
            if problem:
                raise EvalError(f"{config.label}: no hardware arithmetic ({problem})")
    texts = _corpus_tokens(lm, corpus, tokens, max_tokens)
    stride = context if stride is None else stride
    for ids in texts.values():
        make_windows(len(ids), context, stride, lm.bos_id is not None)  # fail before any work
    device = _model_device(lm)
    results = []
    for config in configs:
        started = time.perf_counter()
        archive = quantize_linears(lm, config, device=device) if config.quantized else None
        quantize_seconds = time.perf_counter() - started
        for mode in modes if config.quantized else modes[:1]:
            for result in _evaluate_one(
                lm,
                texts,
                config,
                archive,
                "fake" if not config.quantized else mode,
                context=context,
                stride=stride,
                batch_size=batch_size,
                progress=progress,
                quantize_seconds=quantize_seconds,
            ):
                results.append(result)
                if on_result is not None:
                    on_result(result)
    return results


def _corpus_tokens(
    lm: LanguageModel,
    corpus: str | Path | Sequence[str | Path],
    tokens: Sequence[int] | Mapping[str, Sequence[int]] | None,
    max_tokens: int | None,
) -> dict[str, list[int]]:
    """Corpus name -> its (cut) token ids, for ``evaluate``'s one or several corpora."""
    several = not isinstance(corpus, str | Path)
    corpora = list(corpus) if several else [corpus]  # type: ignore[arg-type]
    names = [c if isinstance(c, str) else Path(c).name for c in corpora]
    if len(set(names)) != len(names):
        raise EvalError(f"corpora {', '.join(names)}: a corpus is named twice")
    if isinstance(tokens, Mapping):
        missing = [name for name in names if name not in tokens]
        if missing:
            raise EvalError(f"no tokens given for corpus {', '.join(missing)}")
        texts = {name: list(tokens[name]) for name in names}
    elif tokens is not None:
        if several and len(names) != 1:
            raise EvalError("one token list for several corpora: give a mapping by corpus name")
        texts = {names[0]: list(tokens)}
    else:
        texts = {name: tokens_of(lm, c) for name, c in zip(names, corpora, strict=True)}
    if max_tokens is not None:
        texts = {name: ids[:max_tokens] for name, ids in texts.items()}
    return texts


def _hardware_problem(config: QuantConfig) -> str | None:
    """Why ``config`` cannot run on the PE arithmetic (None if it can)."""
    if not config.quantized:
        return None
    if not get_format(config.dtype).accelerated:
        return f"{config.dtype} has no bit-serial datapath"
    if config.scale_bits is None or config.is_mx:
        return "the PE dequantizes INT group scales, not FP16 or E8M0 ones"
    if not config.rounds_activations:
        return "the PE's activations are FP16"
    return None


def _evaluate_one(
    lm: LanguageModel,
    texts: Mapping[str, list[int]],
    config: QuantConfig,
    archive: Any,
    mode: str,
    *,
    context: int,
    stride: int,
    batch_size: int,
    progress: bool,
    quantize_seconds: float,
) -> Iterator[PerplexityResult]:
    """One configuration in one arithmetic on every corpus of ``texts`` (the weights are put in
    place once; the first corpus's ``eval_seconds`` includes that)."""
    device = _model_device(lm)
    if mode == "hardware":
        arithmetic = accelerated_linears(lm.block_linears(), archive)
    else:
        arithmetic = fake_quantized(lm, archive, fp16_activations=config.rounds_activations)
    label = config.label + (" hw" if mode == "hardware" else "")
    started = time.perf_counter()
    with arithmetic as stored:
        bits = weighted_bits_per_weight(stored) if stored else None
        for corpus_name, ids in texts.items():
            ppl, nll, scored, windows = perplexity(
                lm,
                ids,
                context=context,
                stride=stride,
                batch_size=batch_size,
                progress=progress,
                desc=f"{lm.name} {corpus_name} {label}",
            )
            yield PerplexityResult(
                model=lm.name,
                corpus=corpus_name,
                config=config.label,
                dtype=config.dtype,
                group_size=None
                if not config.quantized
                else (32 if config.is_mx else config.group_size),
                scale_bits=None if not config.quantized or config.is_mx else config.scale_bits,
                fp16_activations=config.rounds_activations,
                perplexity=ppl,
                nll=nll,
                scored_tokens=scored,
                tokens=windows[-1].start + context,
                windows=len(windows),
                context=context,
                stride=stride,
                bos_id=lm.bos_id,
                bits_per_weight=bits,
                quantize_seconds=quantize_seconds,
                eval_seconds=time.perf_counter() - started,
                device=str(device),
                arithmetic=mode,
            )
            started = time.perf_counter()


# --- output ------------------------------------------------------------------------------------


def _scale_label(result: PerplexityResult) -> str:
    if result.dtype == FP32:
        return "FP16 act." if result.fp16_activations else "-"
    if result.scale_bits is None:
        return "E8M0" if result.group_size == 32 and result.dtype.startswith("mx") else "FP16"
    return f"INT{result.scale_bits}"


def results_markdown(results: Sequence[PerplexityResult]) -> str:
    """A Markdown table: one row per (data type, scales[, arithmetic]), one column per corpus
    (the arithmetic column appears when a result used the hardware arithmetic)."""
    corpora = list(dict.fromkeys(r.corpus for r in results))
    with_mode = any(r.arithmetic != "fake" for r in results)
    rows: dict[tuple[str, str, str], dict[str, PerplexityResult]] = {}
    for result in results:
        key = (result.dtype, _scale_label(result), result.arithmetic)
        rows.setdefault(key, {})[result.corpus] = result
    reference = {
        r.corpus: r.perplexity for r in results if r.dtype == FP32 and not r.fp16_activations
    }
    header = (
        "| data type | group | scales | bits/w | "
        + ("arithmetic | " if with_mode else "")
        + " | ".join(f"{c} PPL | Δ vs FP32" for c in corpora)
    )
    lines = [header + " |", "|" + "---|" * (4 + with_mode + 2 * len(corpora))]
    for (dtype, scales, mode), by_corpus in rows.items():
        any_result = next(iter(by_corpus.values()))
        group = "-" if any_result.group_size is None else str(any_result.group_size)
        bits = "32" if any_result.bits_per_weight is None else f"{any_result.bits_per_weight:.3f}"
        cells = []
        for corpus in corpora:
            r = by_corpus.get(corpus)
            if r is None:
                cells += ["", ""]
                continue
            # No FP32 run of this corpus: no delta ("-"), not a NaN that reads as a result.
            if dtype == FP32:
                delta_cell = ""
            elif corpus in reference:
                delta_cell = f"{r.perplexity - reference[corpus]:+.3f}"
            else:
                delta_cell = "-"
            cells += [f"{r.perplexity:.3f}", delta_cell]
        mode_cell = f"{mode} | " if with_mode else ""
        lines.append(
            f"| {dtype} | {group} | {scales} | {bits} | {mode_cell}" + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def results_csv(results: Sequence[PerplexityResult]) -> str:
    buffer = io.StringIO()
    fields = list(PerplexityResult.__dataclass_fields__)
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for result in results:
        writer.writerow(result.to_json())
    return buffer.getvalue()


def results_json(results: Sequence[PerplexityResult]) -> str:
    return json.dumps([r.to_json() for r in results], indent=1)
