"""bitmod-tile + bitmod-lower-to-isa: block planning, programs, program size, end to end.

Independent references: hand-worked block sizes (derivations in runtime/arch/schedule.py and
passes/bitmod_tile.py), :func:`bitmod.runtime.arch.nest.matmul_program` (the runtime's program for
one matmul: the same planner and nest, so equality checks the pass's plumbing: options,
roles -> descriptors, configuration), and a float64 ``X · dequantize(W)ᵀ + b`` computed with
torch for the numbers the emulated machine produces from the compiled program.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from bitmod.backends.emit import module_to_program
from bitmod.compiler.ir_io import parse_module, print_module
from bitmod.dialects import bsisa
from bitmod.dialects.diagnostics import DiagnosticError
from bitmod.passes.bitmod_lower_to_isa import BitmodLowerToIsaPass
from bitmod.passes.bitmod_quantize import BitmodQuantizePass
from bitmod.passes.bitmod_tile import BitmodTilePass
from bitmod.passes.context import BitmodContext, make_context
from bitmod.runtime import isa
from bitmod.runtime.arch.hwconfig import HardwareConfig
from bitmod.runtime.arch.nest import matmul_program
from bitmod.runtime.arch.schedule import ArraySpec, plan_bitmod_matmul
from bitmod.runtime.emulator.machine import Machine
from bitmod.runtime.formats import dequantize, get_format
from xdsl.dialects.builtin import ModuleOp

FILECHECK_DIRS = [
    Path(__file__).parent / "filecheck" / name for name in ("bitmod-tile", "bitmod-lower-to-isa")
]


def qtype(n: int, k: int, fmt: str, group: int, sb: int = 8) -> str:
    suffix = "" if sb == 8 else f", sb={sb}"
    return f"!bitmod.qweight<{n}x{k}, {fmt}, {group}{suffix}>"


def matmul_module(
    m: int, n: int, k: int, fmt: str = "bitmod3", group: int = 128, bias: bool = False
) -> str:
    """One quantized matmul ``x [M, K] · fc.weight [N, K]ᵀ (+ b)`` in bitmod IR."""
    q = qtype(n, k, fmt, group)
    args = f"%x: tensor<{m}x{k}xf32>" + (f", %b: tensor<{n}xf32>" if bias else "")
    bias_use, bias_type = (" bias %b", f", tensor<{n}xf32>") if bias else ("", "")
    return (
        f"func.func @f({args}) -> tensor<{m}x{n}xf32> {{\n"
        f'  %w = bitmod.param "fc.weight" : tensor<{n}x{k}xf32>\n'
        f'  %q = bitmod.quantize %w into "fc.weight" : tensor<{n}x{k}xf32> -> {q}\n'
        f"  %y = bitmod.matmul %x, %q{bias_use} : (tensor<{m}x{k}xf32>, {q}{bias_type}) "
        f"-> tensor<{m}x{n}xf32>\n"
        f"  func.return %y : tensor<{m}x{n}xf32>\n}}\n"
    )


def lower(text: str, ctx: BitmodContext | None = None, **tile_options: int | str) -> ModuleOp:
    ctx = ctx or make_context()
    module = parse_module(ctx, text, "test.mlir")
    BitmodTilePass(**tile_options).apply(ctx, module)  # type: ignore[arg-type]
    module.verify()
    BitmodLowerToIsaPass().apply(ctx, module)
    module.verify()
    return module


# --- block planning --------------------------------------------------------------------------


def array(columns: int = 128, act: int = 512 * 1024, weight: int = 512 * 1024) -> ArraySpec:
    return ArraySpec(8, columns, act, weight, max_block_rows=64, dram_bytes_per_cycle=25.6)


def test_plan_of_a_llama_down_projection() -> None:
    # bitmod3, G = 128, SB = 8, 128 channels a block: W(g groups) = 128 (48 g + ceil(1.25 g)
    # + 2) bytes; 2 W <= 512 KiB holds for g = 41 (W = 258816), not for g = 42 (265088).
    # K = 11008 = 86 groups; with 8-row blocks -> 3 chunks of ceil(86/3) = 29 groups.
    common = dict(fmt="bitmod3", group_size=128, scale_bits=8, array=array())
    plan = plan_bitmod_matmul(256, 4096, 11008, order="k-streamed", block_rows=8, **common)
    assert (plan.kc, plan.k_chunks, plan.m_blocks, plan.n_blocks) == (3712, 3, 32, 32)
    assert plan.weight_block_bytes == 128 * (29 * 48 + 37 + 2)
    assert plan.act_block_bytes == 8 * 3712 * 2
    # One group more per chunk would not fit: 2 x 128 x (42 x 48 + 53 + 2) > 512 KiB.
    assert 2 * 128 * (42 * 48 + 53 + 2) > 512 * 1024 >= 2 * 128 * (41 * 48 + 52 + 2)
    # The choice: 64-row blocks, whose double-buffered activation chunk (64 x KC x 2 B)
    # holds 16 groups -> 6 chunks of ceil(86/6) = 15 groups.
    plan = plan_bitmod_matmul(256, 4096, 11008, **common)
    assert (plan.order, plan.block_rows, plan.kc, plan.k_chunks) == ("k-streamed", 64, 1920, 6)
    # Bytes read: the activation once per column block, the weight once per row block, in
    # 5 chunks of 15 groups and a last one of 11008 - 5 x 1920 = 1408 (11 groups).
    x_bytes = 256 * 11008 * 2
    w_bytes = 4096 * (5 * (15 * 48 + 19 + 2) + (11 * 48 + 14 + 2))
    assert plan.dram_read == 32 * x_bytes + 4 * w_bytes
    assert plan.dram_written == 256 * 4096 * 2


def test_plan_int8_asym_counts_zero_points() -> None:
    # int8_asym, G = 64, SB = 4: per channel and group 64 B codes + (4 + 8 zero-point bits)
    # per group; K = 256 in one chunk: 256 + ceil(4 x 12 / 8) + 2 = 264 B a channel.
    plan = plan_bitmod_matmul(
        8,
        64,
        256,
        fmt="int8_asym",
        group_size=64,
        scale_bits=4,
        array=array(64, 1 << 20, 1 << 20),
        order="weights-resident",  # K in one chunk (the planner streams 64-element chunks)
    )
    assert (plan.kc, plan.k_chunks) == (256, 1)
    assert plan.weight_block_bytes == 64 * 264


def test_plan_forced_chunk_and_its_errors() -> None:
    common = dict(fmt="int4", group_size=32, scale_bits=8, array=array(8, 4096, 4096))
    plan = plan_bitmod_matmul(16, 16, 320, kchunk=96, **common)
    # 96 = 3 groups; K = 320 = 10 groups -> ceil(320 / 96) = 4 chunks.
    assert (plan.kc, plan.k_chunks) == (96, 4)
    with pytest.raises(ValueError, match="K chunk 80 is not a multiple of the group size 32"):
        plan_bitmod_matmul(16, 16, 320, kchunk=80, **common)
    # One group for 8 channels: 8 x (16 + 1 + 2) = 152 B; 2 x 152 > 300.
    with pytest.raises(ValueError, match="weight block of one group .* takes 152 B"):
        plan_bitmod_matmul(16, 16, 320, **(common | {"array": array(8, 4096, 300)}))


# --- programs: the same as runtime.matmul_program ---------------------------------------


@pytest.mark.parametrize(
    ("m", "n", "k", "fmt", "group", "bias", "options"),
    [
        (16, 192, 256, "bitmod3", 128, True, {}),
        (1, 4096, 4096, "bitmod4", 128, False, {}),
        (37, 300, 512, "int4_asym", 64, True, {"tiles": 2, "kchunk": 128}),
        (5, 40, 96, "fp3_er_neg", 32, False, {"rows": 4, "cols": 4, "tiles": 1}),
        (3, 11008, 4096, "int8", 128, False, {"weight_buffer": 65536}),
    ],
)
def test_lowered_matmul_is_the_canonical_program(
    m: int, n: int, k: int, fmt: str, group: int, bias: bool, options: dict[str, int]
) -> None:
    module = lower(matmul_module(m, n, k, fmt, group, bias), **options)
    program = module_to_program(module)
    # The K chunk is the tile pass's choice (tested above); the rest is fixed by the shapes.
    hardware = {"rows", "cols", "tiles"}
    config = HardwareConfig(
        **{key: value for key, value in options.items() if key in hardware},
        weight_buffer_bytes=options.get("weight_buffer", 512 * 1024),
    )
    expected = matmul_program(
        act="x",
        weight="fc.weight",
        out="result0",
        m=m,
        n=n,
        k=k,
        fmt=fmt,
        group_size=group,
        scale_bits=8,
        special_values=get_format(fmt).special_values,
        config=config,
        kchunk=options.get("kchunk", 0),
        bias="b" if bias else None,
    )
    assert program == expected
    assert program.encode() == expected.encode()


def _program(module: ModuleOp) -> bsisa.ProgramOp:
    (program,) = [op for op in module.ops if isinstance(op, bsisa.ProgramOp)]
    return program


# --- program size: loops stay loops ----------------------------------------------------------


def instruction_count(module: ModuleOp) -> int:
    return len(module_to_program(module).instructions)


def test_instruction_count_does_not_grow_with_tiles() -> None:
    # One array pass (M <= 8, N <= 128, K in one chunk) vs 512 x 86 passes of the same K.
    # The same loop order and block rows (the planner may pick others for other shapes;
    # each order's nest has a fixed size).
    fixed = {"order": "weights-resident", "block_rows": 8}
    one_tile = instruction_count(lower(matmul_module(8, 128, 128, "bitmod3"), **fixed))
    many_tiles = instruction_count(lower(matmul_module(4096, 11008, 128, "bitmod3"), **fixed))
    assert one_tile == many_tiles
    # cfg.array, cfg.fmt, 4 x cfg.sv, cfg.kchunk, loop, ld.wgt, loop, acc.clr, ld.act, mac,
    # drain, st.out, endloop, endloop, halt
    assert one_tile == 18
    # With K in chunks (forced to one group) the count is the same for 2 and 100 chunks,
    # and for 1 and 64 x 8 output blocks.
    streamed = {"kchunk": 128, "order": "k-streamed", "block_rows": 8}
    two_chunks = instruction_count(lower(matmul_module(8, 128, 256, "bitmod3"), **streamed))
    many_chunks = instruction_count(lower(matmul_module(512, 1024, 12800, "bitmod3"), **streamed))
    assert two_chunks == many_chunks == one_tile + 2  # the K loop's loop/endloop pair


def test_instruction_count_grows_with_layers() -> None:
    def layers(count: int) -> str:
        q = qtype(64, 64, "int8", 64)
        body = "".join(
            f'  %w{i} = bitmod.param "l{i}.weight" : tensor<64x64xf32>\n'
            f'  %q{i} = bitmod.quantize %w{i} into "l{i}.weight" : tensor<64x64xf32> -> {q}\n'
            f"  %h{i + 1} = bitmod.matmul %h{i}, %q{i} : (tensor<4x64xf32>, {q}) "
            f"-> tensor<4x64xf32>\n"
            for i in range(count)
        )
        return (
            f"func.func @f(%h0: tensor<4x64xf32>) -> tensor<4x64xf32> {{\n{body}"
            f"  func.return %h{count} : tensor<4x64xf32>\n}}\n"
        )

    # int8: no special values, one K chunk: 3 cfg + 10 in the loop nest per layer, + halt.
    counts = [instruction_count(lower(layers(count))) for count in (1, 2, 5)]
    assert counts == [13 + 1, 2 * 13 + 1, 5 * 13 + 1]


# --- names, host ops, errors -----------------------------------------------------------------


def test_tensor_names_and_shared_descriptors() -> None:
    q = qtype(32, 64, "int4", 64)
    text = (
        "func.func @a(%x: tensor<4x64xf32>, %0: tensor<4x32xf32>) -> tensor<4x32xf32> {\n"
        '  %w = bitmod.param "fc.weight" : tensor<32x64xf32>\n'
        '  %q = bitmod.quantize %w into "fc.weight" : tensor<32x64xf32> -> ' + q + "\n"
        f"  %1 = bitmod.matmul %x, %q : (tensor<4x64xf32>, {q}) -> tensor<4x32xf32>\n"
        f"  %2 = bitmod.matmul %x, %q : (tensor<4x64xf32>, {q}) -> tensor<4x32xf32>\n"
        "  %3 = arith.addf %1, %2 : tensor<4x32xf32>\n"
        "  func.return %3 : tensor<4x32xf32>\n}\n"
        "func.func @b(%x: tensor<4x64xf32>) -> tensor<4x32xf32> {\n"
        '  %w = bitmod.param "fc.weight" : tensor<32x64xf32>\n'
        '  %q = bitmod.quantize %w into "fc.weight" : tensor<32x64xf32> -> ' + q + "\n"
        f"  %y = bitmod.matmul %x, %q : (tensor<4x64xf32>, {q}) -> tensor<4x32xf32>\n"
        "  func.return %y : tensor<4x32xf32>\n}\n"
    )
    program = _program(lower(text))
    names = [(d.kind.data, d.tensor.data) for d in program.descriptors]
    # Two functions: names get the function as prefix; unnamed values are t<j>; the shared
    # activation and the shared weight have one descriptor each.
    assert names == [
        ("act", "a.x"),
        ("qweight", "fc.weight"),
        ("out", "a.t0"),
        ("out", "a.t1"),
        ("act", "b.x"),
        ("out", "b.result0"),
    ]
    assert len(program.segments()) == 3


def test_name_of_a_value_never_takes_an_archive_name() -> None:
    q = qtype(8, 32, "int8", 32)
    text = (
        "func.func @f(%x: tensor<2x32xf32>) -> tensor<2x8xf32> {\n"
        '  %w = bitmod.param "x" : tensor<8x32xf32>\n'
        '  %q = bitmod.quantize %w into "x" : tensor<8x32xf32> -> ' + q + "\n"
        f"  %y = bitmod.matmul %x, %q : (tensor<2x32xf32>, {q}) -> tensor<2x8xf32>\n"
        "  func.return %y : tensor<2x8xf32>\n}\n"
    )
    names = [(d.kind.data, d.tensor.data) for d in _program(lower(text)).descriptors]
    assert names == [("act", "x_1"), ("qweight", "x"), ("out", "result0")]


def test_failed_lowering_leaves_the_module_unchanged() -> None:
    # The second weight is a quantization request not carried out yet (no 'into'): tiling
    # takes it, lowering refuses it after the first matmul already had its segment planned.
    good, pending = qtype(32, 64, "bitmod3", 64), qtype(32, 32, "int4", 32)
    text = (
        "func.func @f(%x: tensor<4x64xf32>) -> tensor<4x32xf32> {\n"
        '  %w1 = bitmod.param "a.weight" : tensor<32x64xf32>\n'
        '  %q1 = bitmod.quantize %w1 into "a.weight" : tensor<32x64xf32> -> ' + good + "\n"
        f"  %h = bitmod.matmul %x, %q1 : (tensor<4x64xf32>, {good}) -> tensor<4x32xf32>\n"
        '  %w2 = bitmod.param "b.weight" : tensor<32x32xf32>\n'
        "  %q2 = bitmod.quantize %w2 : tensor<32x32xf32> -> " + pending + "\n"
        f"  %y = bitmod.matmul %h, %q2 : (tensor<4x32xf32>, {pending}) -> tensor<4x32xf32>\n"
        "  func.return %y : tensor<4x32xf32>\n}\n"
    )
    ctx = make_context()
    module = parse_module(ctx, text, "test.mlir")
    BitmodTilePass().apply(ctx, module)
    before = print_module(ctx, module)
    with pytest.raises(DiagnosticError, match="the weight is not quantized yet") as error:
        BitmodLowerToIsaPass().apply(ctx, module)
    assert error.value.location is not None and error.value.location.line == 7  # the 2nd matmul
    assert print_module(ctx, module) == before


def test_lowering_without_tiled_matmuls_changes_nothing() -> None:
    text = (
        "func.func @f(%x: tensor<2x4xf32>, %w: tensor<3x4xf32>) -> tensor<2x3xf32> {\n"
        "  %y = bitmod.matmul %x, %w : (tensor<2x4xf32>, tensor<3x4xf32>) -> tensor<2x3xf32>\n"
        "  func.return %y : tensor<2x3xf32>\n}\n"
    )
    ctx = make_context()
    module = parse_module(ctx, text, "test.mlir")
    before = print_module(ctx, module)
    BitmodTilePass().apply(ctx, module)
    BitmodLowerToIsaPass().apply(ctx, module)
    assert print_module(ctx, module) == before


# --- end to end: quantize, tile, lower, run on the machine ------------------------------------


def test_two_layer_program_computes_the_layers_on_the_machine() -> None:
    # y = (x W1ᵀ + b1) W2ᵀ with bitmod3 / int4 weights; the two layers chain through the
    # DRAM tensor "h" (fc1's out is fc2's act). Enough rows and channels for several blocks
    # and, with a small weight buffer, several K chunks.
    m, k, hidden, n = 20, 256, 160, 48
    text = (
        f"func.func @f(%x: tensor<{m}x{k}xf32>) -> tensor<{m}x{n}xf32> {{\n"
        f'  %w1 = bitmod.param "fc1.weight" : tensor<{hidden}x{k}xf32>\n'
        f'  %b1 = bitmod.param "fc1.bias" : tensor<{hidden}xf32>\n'
        f"  %h = bitmod.matmul %x, %w1 bias %b1 : (tensor<{m}x{k}xf32>, "
        f"tensor<{hidden}x{k}xf32>, tensor<{hidden}xf32>) -> tensor<{m}x{hidden}xf32>\n"
        f'  %w2 = bitmod.param "fc2.weight" : tensor<{n}x{hidden}xf32>\n'
        f"  %y = bitmod.matmul %h, %w2 : (tensor<{m}x{hidden}xf32>, "
        f"tensor<{n}x{hidden}xf32>) -> tensor<{m}x{n}xf32>\n"
        f"  func.return %y : tensor<{m}x{n}xf32>\n}}\n"
    )
    generator = torch.Generator().manual_seed(7)
    ctx = make_context()
    ctx.archive.put("fc1.weight", torch.randn(hidden, k, generator=generator) / 16)
    ctx.archive.put("fc1.bias", torch.randn(hidden, generator=generator))
    ctx.archive.put("fc2.weight", torch.randn(n, hidden, generator=generator) / 16)
    module = parse_module(ctx, text, "test.mlir")
    BitmodQuantizePass(dtype="bitmod3", group_size=32, layers="fc2:int4:32").apply(ctx, module)
    BitmodTilePass(tiles=2, weight_buffer=2048).apply(ctx, module)
    BitmodLowerToIsaPass().apply(ctx, module)
    module.verify()
    program = module_to_program(module)
    kchunks = [i.kc for i in program.instructions if isinstance(i, isa.CfgKchunk)]
    assert len(kchunks) == 2 and kchunks[0] < k  # fc1 needs several K chunks

    x = torch.randn(m, k, generator=generator).to(torch.float16)
    bias = ctx.archive.get("fc1.bias").to(torch.float16)
    result = Machine(HardwareConfig(tiles=2)).run(
        program.encode(), ctx.archive, {"x": x.numpy(), "fc1.bias": bias.numpy()}
    )

    def reference(act: torch.Tensor, name: str, b: torch.Tensor | None) -> torch.Tensor:
        w = dequantize(ctx.archive.get_quantized(name)).double()
        out = act.double() @ w.T + (0 if b is None else b.double())
        return out.to(torch.float16)

    h = reference(x, "fc1.weight", bias)
    y = reference(h, "fc2.weight", None)
    got_h = torch.from_numpy(result.outputs["h"]).double()
    got_y = torch.from_numpy(result.outputs["result0"]).double()
    # The machine rounds products to 3 guard bits and group sums to 24 bits; FP16 outputs.
    assert torch.allclose(got_h, h.double(), rtol=2e-3, atol=2e-3 * h.double().abs().max())
    assert torch.allclose(got_y, y.double(), rtol=5e-3, atol=5e-3 * y.double().abs().max())


# --- parse -> print -> parse of every FileCheck input of the two passes -----------------------


@pytest.mark.parametrize(
    "path",
    sorted(p for d in FILECHECK_DIRS for p in d.glob("*.mlir")),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_filecheck_inputs_round_trip(path: Path) -> None:
    ctx = make_context()
    first = print_module(ctx, parse_module(ctx, path.read_text(), str(path)))
    assert print_module(ctx, parse_module(ctx, first, "printed.mlir")) == first


def test_round_trip_covers_both_passes() -> None:
    assert all(any(d.glob("*.mlir")) for d in FILECHECK_DIRS)
    assert np.sum([len(list(d.glob("*.mlir"))) for d in FILECHECK_DIRS]) >= 8
