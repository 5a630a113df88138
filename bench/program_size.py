"""Program size and lowering time of Llama-2-7B-shaped decoder layers (bitmod3).

    python bench/program_size.py                       # 1 and 4 layers, M = 1 and 256 tokens
    python bench/program_size.py --no-quantize         # shapes only (lowering reads no weights)
    python bench/program_size.py --out bench/results/program_size.md

Each decoder layer has the seven linear layers of ``runtime/perf/data/llm_shapes.json``
(q, k, v, o: 4096x4096; gate, up: 11008x4096; down: 4096x11008) as quantized
``bitmod.matmul`` ops, with host ops standing in for attention, SiLU·gate and the residual
adds (``arith.addf`` / ``arith.mulf`` on tensors), in the IR that ``bitmod-quantize`` leaves:
``bitmod.param`` + ``bitmod.quantize ... into`` + ``bitmod.matmul``.

Weights. Random weights are quantized to bitmod3 (G = 128, INT8 scales) with
``bitmod.runtime.formats.quantize``, once per distinct shape (3 shapes), and the memory image
holds the same quantized tensor under every layer's names: tiling and lowering read only the IR
(shapes, formats, archive names), never weight values, so quantizing 4 x 7 matrices of a 7B
model on a laptop CPU (minutes) would measure nothing more. Quantization time is reported on
its own; ``--no-quantize`` skips it.

Timed (CPU, wall clock, best of ``--repeat``; ``cold`` is the first repetition, which also
pays one-time imports): parsing the IR text, ``bitmod-tile``,
``bitmod-lower-to-isa``, and emitting (``module_to_program`` + ``encode``). The program must
lower in under 10 s, and its size must not grow with M, N or K: the loops stay loops, so every
matmul takes at most ``PER_MATMUL`` instructions (``cfg.array``, ``cfg.fmt``, up to four
``cfg.sv``, ``cfg.kchunk``, ``cfg.mblock`` and a loop nest of at most 12), whatever schedule
the planner picks for its shape (M = 1 and M = 256 get different loop orders and block rows,
so their counts differ by a few instructions), and L layers take L times one layer's. The
baseline, measured in the same run, is the size of the same schedule fully unrolled (what a
program without loops would need): every instruction once per iteration of its loops.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from bitmod.backends.emit import module_to_program
from bitmod.compiler.ir_io import parse_module
from bitmod.dialects.bsisa import ProgramOp, TiledMatmulOp
from bitmod.passes.bitmod_lower_to_isa import BitmodLowerToIsaPass
from bitmod.passes.bitmod_tile import BitmodTilePass
from bitmod.passes.context import make_context
from bitmod.runtime.formats import QuantizedTensor, quantize
from bitmod.runtime.isa import EndLoop, Instruction, Loop
from bitmod.runtime.perf.model import load_llm_shapes

FORMAT = "bitmod3"
GROUP = 128
LIMIT_SECONDS = 10.0
PER_MATMUL = 4 + 4 + 12  # cfg.array/fmt/kchunk/mblock, four cfg.sv, the largest loop nest


def decoder_ir(layers: int, tokens: int, linear: list[tuple[str, int, int]], hidden: int) -> str:
    """The IR of ``layers`` decoder layers for ``tokens`` tokens (module docstring)."""
    dims = {name: (n, k) for name, n, k in linear}

    def t(cols: int) -> str:
        return f"tensor<{tokens}x{cols}xf32>"

    lines = [f"func.func @decoder(%x0: {t(hidden)}) -> {t(hidden)} {{"]

    def matmul(layer: int, name: str, act: str) -> str:
        n, k = dims[name]
        q = f"!bitmod.qweight<{n}x{k}, {FORMAT}, {GROUP}>"
        weight = f"layers.{layer}.{name}.weight"
        lines.extend(
            [
                f'  %w{layer}_{name} = bitmod.param "{weight}" : tensor<{n}x{k}xf32>',
                f'  %q{layer}_{name} = bitmod.quantize %w{layer}_{name} into "{weight}" : '
                f"tensor<{n}x{k}xf32> -> {q}",
                f"  %{name}{layer} = bitmod.matmul {act}, %q{layer}_{name} : "
                f"({t(k)}, {q}) -> {t(n)}",
            ]
        )
        return f"%{name}{layer}"

    for layer in range(layers):
        x, inter = f"%x{layer}", dims["gate_proj"][0]
        q, k, v = (matmul(layer, name, x) for name in ("q_proj", "k_proj", "v_proj"))
        # attention (host): stands in for softmax(q kᵀ) v
        lines.append(f"  %qk{layer} = arith.addf {q}, {k} : {t(hidden)}")
        lines.append(f"  %attn{layer} = arith.mulf %qk{layer}, {v} : {t(hidden)}")
        o = matmul(layer, "o_proj", f"%attn{layer}")
        lines.append(f"  %h{layer} = arith.addf {x}, {o} : {t(hidden)}")
        gate = matmul(layer, "gate_proj", f"%h{layer}")
        up = matmul(layer, "up_proj", f"%h{layer}")
        lines.append(f"  %act{layer} = arith.mulf {gate}, {up} : {t(inter)}")
        down = matmul(layer, "down_proj", f"%act{layer}")
        lines.append(f"  %x{layer + 1} = arith.addf %h{layer}, {down} : {t(hidden)}")
    lines += [f"  func.return %x{layers} : {t(hidden)}", "}"]
    return "\n".join(lines) + "\n"


@dataclass
class Result:
    layers: int
    tokens: int
    matmuls: int
    instructions: int
    binary_bytes: int
    macs: int  # mac instructions executed (a mac runs a block's rows, ROWS at a time)
    unrolled_instructions: int
    seconds: dict[str, float]
    cold_seconds: float

    @property
    def lower_seconds(self) -> float:
        return sum(self.seconds.values())


def measure(layers: int, tokens: int, shape_linear: list, hidden: int, repeat: int) -> Result:
    text = decoder_ir(layers, tokens, shape_linear, hidden)
    best: dict[str, float] = {}
    cold = 0.0
    for repetition in range(repeat):
        ctx = make_context()
        times: dict[str, float] = {}
        start = time.perf_counter()
        module = parse_module(ctx, text, "decoder.mlir")
        times["parse"] = time.perf_counter() - start
        start = time.perf_counter()
        BitmodTilePass().apply(ctx, module)
        times["tile"] = time.perf_counter() - start
        tiled = [op for op in module.walk() if isinstance(op, TiledMatmulOp)]
        macs = sum(
            op.tiling.get("m_blocks") * op.tiling.get("n_blocks") * op.tiling.get("k_chunks")
            for op in tiled
        )
        start = time.perf_counter()
        BitmodLowerToIsaPass().apply(ctx, module)
        times["lower"] = time.perf_counter() - start
        start = time.perf_counter()
        program = module_to_program(module)
        binary = program.encode()
        times["emit"] = time.perf_counter() - start
        best = {key: min(best.get(key, float("inf")), value) for key, value in times.items()}
        if repetition == 0:
            cold = sum(times.values())
    assert len([op for op in module.ops if isinstance(op, ProgramOp)]) == 1
    return Result(
        layers=layers,
        tokens=tokens,
        matmuls=len(tiled),
        instructions=len(program.instructions),
        binary_bytes=len(binary),
        macs=macs,
        unrolled_instructions=unrolled_size(program.instructions),
        seconds=best,
        cold_seconds=cold,
    )


def unrolled_size(instructions: Sequence[Instruction]) -> int:
    """Instructions a program without loops would need: each one once per iteration of the
    loops around it (``loop`` / ``endloop`` themselves disappear)."""
    total, multiplier, counts = 0, 1, []
    for instr in instructions:
        if isinstance(instr, Loop):
            counts.append(instr.count)
            multiplier *= instr.count
        elif isinstance(instr, EndLoop):
            multiplier //= counts.pop()
        else:
            total += multiplier
    return total


def quantized_weights(linear: list, layers: int) -> tuple[dict[str, QuantizedTensor], float]:
    """Random bitmod3 weights, one quantization per distinct shape, shared by every layer.

    Returned as the name -> QuantizedTensor memory image that ``bitmod.runtime.emulator.machine``
    accepts (packing 28 copies into a ParamArchive would only time the packer).
    """
    generator = torch.Generator().manual_seed(0)
    by_shape: dict[tuple[int, int], QuantizedTensor] = {}
    start = time.perf_counter()
    for _, n, k in linear:
        if (n, k) not in by_shape:
            by_shape[(n, k)] = quantize(torch.randn(n, k, generator=generator), FORMAT, GROUP, 8)
    seconds = time.perf_counter() - start
    weights = {
        f"layers.{layer}.{name}.weight": by_shape[(n, k)]
        for layer in range(layers)
        for name, n, k in linear
    }
    return weights, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--tokens", type=int, nargs="+", default=[256, 1])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-quantize", action="store_true")
    parser.add_argument("--out", type=Path, help="write the results as Markdown here")
    args = parser.parse_args(argv)
    if min(args.layers) < 1 or min(args.tokens) < 1 or args.repeat < 1:
        parser.error("--layers, --tokens and --repeat must be positive")

    shape = load_llm_shapes()["llama-2-7b"]
    linear = shape.linear_layers()
    lines = [
        "# Program size: Llama-2-7B decoder layers, bitmod3 (G=128, INT8 scales)",
        "",
        f"Machine: {torch.get_num_threads()} CPU threads; default array (8x8 PEs x 16 tiles, "
        "512 KiB act/weight buffers). Times: best of "
        f"{args.repeat}, seconds. `unrolled` = the same schedule without loops (baseline).",
        "",
    ]
    if not args.no_quantize:
        weights, seconds = quantized_weights(linear, max(args.layers))
        lines.append(
            f"Quantized {len({(n, k) for _, n, k in linear})} distinct random weights "
            f"({sum(n * k for n, k in {(n, k) for _, n, k in linear}) / 1e6:.0f} M weights) "
            f"to bitmod3 in {seconds:.1f} s, shared by the {len(weights)} weights of "
            f"{max(args.layers)} layers."
        )
        lines.append("")
    header = (
        "| layers | tokens M | matmuls | instructions | binary B | macs executed | "
        "unrolled instr. | unrolled / looped | parse | tile | lower | emit | total | cold |"
    )
    lines += [header, "|" + "---|" * 14]
    print("\n".join(lines), flush=True)
    results = []
    for layers in args.layers:
        for tokens in args.tokens:
            result = measure(layers, tokens, linear, shape.hidden_size, args.repeat)
            results.append(result)
            s = result.seconds
            lines.append(
                f"| {layers} | {tokens} | {result.matmuls} | {result.instructions} | "
                f"{result.binary_bytes:,} | {result.macs:,} | "
                f"{result.unrolled_instructions:,} | "
                f"{result.unrolled_instructions / result.instructions:,.0f}x | "
                f"{s['parse']:.2f} | {s['tile']:.2f} | {s['lower']:.2f} | {s['emit']:.3f} | "
                f"{result.lower_seconds:.2f} | {result.cold_seconds:.2f} |"
            )
            print(lines[-1], flush=True)
    if not args.no_quantize:
        # Every weight the program names is in the memory image, as its descriptor says.
        for layers in args.layers:
            ctx = make_context()
            module = parse_module(ctx, decoder_ir(layers, 1, linear, shape.hidden_size), "d")
            BitmodTilePass().apply(ctx, module)
            BitmodLowerToIsaPass().apply(ctx, module)
            program = module_to_program(module)
            for desc in program.descriptors:
                if desc.kind.name == "QWEIGHT":
                    q = weights[program.strings[desc.name]]
                    assert (q.fmt, q.shape, q.group_size, q.scale_bits) == (
                        FORMAT,
                        (desc.dim0, desc.dim1),
                        desc.group_size,
                        desc.scale_bits,
                    )

    bounded = all(r.instructions <= PER_MATMUL * r.matmuls + 1 for r in results)
    by_tokens: dict[int, dict[int, int]] = {}
    for result in results:
        by_tokens.setdefault(result.tokens, {})[result.layers] = result.instructions
    # L layers of identical matmuls: L times one layer's instructions, plus the one halt.
    proportional = all(
        count - 1 == layers * (counts[min(counts)] - 1) // min(counts)
        for counts in by_tokens.values()
        for layers, count in counts.items()
    )
    slowest = max(max(result.lower_seconds, result.cold_seconds) for result in results)
    lines += [
        "",
        f"- At most {PER_MATMUL} instructions per matmul for every M, N, K (loops stay loops): "
        f"{'yes' if bounded else 'NO'}; per matmul here: "
        + ", ".join(
            f"M = {r.tokens}: {(r.instructions - 1) / r.matmuls:.1f}"
            for r in results
            if r.layers == min(args.layers)
        )
        + " (the planner's loop order and block rows differ with M).",
        "- Instructions by number of layers: "
        + "; ".join(
            f"M = {tokens}: "
            + ", ".join(f"{layers} layer(s) {count}" for layers, count in sorted(counts.items()))
            for tokens, counts in by_tokens.items()
        )
        + f" — proportional to the layers: {'yes' if proportional else 'NO'}.",
        f"- Slowest parse+tile+lower+emit (cold or best): {slowest:.2f} s "
        f"(limit {LIMIT_SECONDS:.0f} s): {'met' if slowest < LIMIT_SECONDS else 'NOT met'}.",
    ]
    report = "\n".join(lines) + "\n"
    print("\n".join(lines[-3:]))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
    ok = bounded and proportional and slowest < LIMIT_SECONDS
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
