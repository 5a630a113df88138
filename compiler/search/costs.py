"""What a per-layer format choice costs: storage bits, and cycles/energy from the perf model.

A *candidate* is a format with an optional group size, spelled as in ``layers=``:
``bitmod3`` (G = 128), ``bitmod3:64``. Its storage per layer is the quantizer's own count
(:attr:`bitmod.runtime.formats.QuantizedTensor.bits_per_weight`, metadata included, ragged last
group charged a whole group's metadata), read off a one-row quantization of the layer's K so
there is one formula. Cycles and energy are :func:`bitmod.runtime.perf.model.simulate` of the
layer's GEMMs on the BitMoD accelerator (:class:`~bitmod.runtime.arch.hwconfig.HardwareConfig`
defaults: 16 tiles of 8×8 PEs) with the candidate as its weight operand: the generative
workload of the perf model (a prefill of ``input_tokens`` rows, then ``output_tokens − 1``
one-row decoding steps), per block linear. The perf model's costs add up GEMM by GEMM, so a
mix costs the sum of its layers' costs; attention (INT8 K/V, the same for every mix) is
charged once on top for the whole-model EDP (:func:`attention_cost`). Formats without a BitMoD
bit-serial datapath (``*_asym``, MX, OliVe) have bits but no cycles or energy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from bitmod.compiler.llm.fakequant import splits_lanes
from bitmod.runtime.arch.hwconfig import LANES, HardwareConfig
from bitmod.runtime.formats import FORMAT_NAMES, get_format, quantize
from bitmod.runtime.perf.model import (
    GemmTable,
    LLMShape,
    accelerator,
    build_workload,
    simulate,
)

__all__ = [
    "COST_KINDS",
    "Candidate",
    "LayerShape",
    "attention_cost",
    "layer_costs",
    "parse_candidates",
]

COST_KINDS = ("bits", "cycles", "energy")
"""What a budget can bound: mean bits/weight, total cycles, total energy (pJ)."""


@dataclass(frozen=True)
class Candidate:
    """One format choice of a layer: ``dtype`` and group size (None: 128, MX: its block)."""

    dtype: str
    group_size: int | None = None

    @property
    def spelled(self) -> str:
        """As ``layers=`` spells it: ``bitmod3`` or ``bitmod3:64``."""
        return self.dtype if self.group_size is None else f"{self.dtype}:{self.group_size}"

    @property
    def group(self) -> int | None:
        """The group size ``quantize`` gets (None: MX's block)."""
        if get_format(self.dtype).family == "mx":
            return None
        return 128 if self.group_size is None else self.group_size

    @property
    def accelerated(self) -> bool:
        """Whether the BitMoD PE runs it (so it has cycles and energy)."""
        try:
            accelerator("bitmod-lossy", "", "generative", weight_fmt=self.dtype)
        except ValueError:
            return False
        return True


def parse_candidates(text: str | list[str]) -> list[Candidate]:
    """``"bitmod3,bitmod4:64,int8"`` (or a list) -> candidates; one ValueError naming the
    first bad entry (an unknown format lists the known ones; a group size the accelerator
    cannot run for a format it runs) or a repeated one."""
    items = text.split(",") if isinstance(text, str) else list(text)
    candidates: list[Candidate] = []
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        dtype, _, group_text = item.partition(":")
        if dtype not in FORMAT_NAMES:
            raise ValueError(
                f"candidate {item!r}: unknown format {dtype!r}; known formats: "
                f"{', '.join(FORMAT_NAMES)}"
            )
        group = None
        if item.endswith(":"):
            raise ValueError(f"candidate {item!r}: no group size after ':'")
        if group_text:
            if not (group_text.isascii() and group_text.isdigit()) or int(group_text) <= 0:
                raise ValueError(
                    f"candidate {item!r}: group size must be a positive integer, got {group_text!r}"
                )
            group = int(group_text)
            block = get_format(dtype).block_size
            if get_format(dtype).family == "mx" and group != block:
                raise ValueError(f"candidate {item!r}: {dtype} uses the MX block size {block}")
        candidate = Candidate(dtype, group)
        if group is not None and splits_lanes(dtype, group):
            # the layers= the search writes must compile: bitmod-lower-to-isa refuses this group
            raise ValueError(
                f"candidate {item!r}: group size must be a multiple of {LANES} for {dtype} (the "
                f"PE takes {LANES} weights a cycle), got {group}"
            )
        # bitmod3 and bitmod3:128 are one candidate (compare what quantize gets).
        if any((c.dtype, c.group) == (dtype, candidate.group) for c in candidates):
            raise ValueError(f"candidate {item!r} is given twice")
        candidates.append(candidate)
    if len(candidates) < 1:
        raise ValueError("no candidate format given")
    return candidates


@dataclass(frozen=True)
class LayerShape:
    """A block linear: module path and weight shape ``[N, K]``."""

    name: str
    n: int
    k: int

    @property
    def weights(self) -> int:
        return self.n * self.k


@cache
def _bits_per_weight(dtype: str, group: int | None, k: int) -> float:
    probe = torch.linspace(-1.0, 1.0, k + k % 2, dtype=torch.float32)[:k][None]
    return quantize(probe, dtype, group, 8).bits_per_weight


def _gemms(n: int, k: int, input_tokens: int, output_tokens: int) -> GemmTable:
    rows = [("linear", "prefill", "weight", input_tokens, n, k, 1)]
    if output_tokens > 1:
        rows.append(("linear", "decode", "weight", 1, n, k, output_tokens - 1))
    return GemmTable.from_rows(rows)


@cache
def _perf_cost(
    dtype: str, group: int, n: int, k: int, input_tokens: int, output_tokens: int
) -> tuple[float, float]:
    acc = accelerator("bitmod-lossy", "", "generative", weight_fmt=dtype)
    acc = dataclasses.replace(acc, weight=dataclasses.replace(acc.weight, group_size=group))
    result = simulate(acc, _gemms(n, k, input_tokens, output_tokens), HardwareConfig())
    return result.cycles, result.total_energy_pj


def layer_costs(
    layers: list[LayerShape],
    candidates: list[Candidate],
    kind: str,
    *,
    input_tokens: int = 256,
    output_tokens: int = 256,
) -> np.ndarray:
    """``[layers, candidates]`` cost of each choice: storage bits (``bits``), cycles or pJ."""
    if kind not in COST_KINDS:
        raise ValueError(f"unknown cost {kind!r}; costs: {', '.join(COST_KINDS)}")
    table = np.zeros((len(layers), len(candidates)))
    for j, candidate in enumerate(candidates):
        if kind != "bits" and not candidate.accelerated:
            raise ValueError(
                f"candidate {candidate.spelled!r} has no BitMoD datapath, so no {kind} "
                "(budget it in bits, or use bit-serial formats: intN, fpN, bitmodN, ...)"
            )
        for i, layer in enumerate(layers):
            group = candidate.group
            if kind == "bits":
                table[i, j] = _bits_per_weight(candidate.dtype, group, layer.k) * layer.weights
            else:
                assert group is not None
                cycles, energy = _perf_cost(
                    candidate.dtype, group, layer.n, layer.k, input_tokens, output_tokens
                )
                table[i, j] = cycles if kind == "cycles" else energy
    return table


def attention_cost(
    shape: LLMShape, *, input_tokens: int = 256, output_tokens: int = 256
) -> tuple[float, float]:
    """(cycles, pJ) of the attention GEMMs (INT8 K/V) of the generative workload of ``shape``,
    the part of a whole-model cost no weight format changes."""
    workload = build_workload(shape, "generative", input_tokens, output_tokens)
    keep = workload.operand == "kv"
    table = GemmTable(*(getattr(workload, f.name)[keep] for f in dataclasses.fields(GemmTable)))
    result = simulate(accelerator("bitmod-lossy", "", "generative"), table, HardwareConfig())
    return result.cycles, result.total_energy_pj
