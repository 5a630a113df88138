"""Random co-simulation cases: compiled matmul programs and their memory images.

``random_case(seed)`` draws one: a weight format (every accelerated format in turn), odd M and
N, K of two to four groups (every other case with a shorter last group, K often odd), with or
without a bias, one of the loop orders (``schedule.ORDERS``, forced, with block rows and K
chunks that make it legal), a weight matmul or a K/V-style activation matmul (the right operand
an FP16 tensor quantized at run time to INT8 or INT4, as the compiler's offload does),
sometimes two layers chained through DRAM (the second reads the first's output). In about three
cases of four the row block loop, the column block loop or both are a ``loop.down`` (``L``
counts count-1 .. 0: the last, often narrow block first; more than one iteration in about half
the cases), drawn from the seed apart from the shapes (a case's shapes do not depend on its
directions); ``Case.descending`` lists them. The machines are small (4x4 PEs, one, two or four
tiles, kilobyte buffers) so that blocks are many and programs stay fast to simulate.

Row groups (``runtime.arch.rules.row_groups``): on the multi-tile machines a weight block of
few channels (N of 3 or 4, or the last column block of N = 9, 11 or 19) splits its row passes
over S = 2 (two tiles) or up to 4 (four tiles) tile groups, and blocks of up to four passes
(block rows up to 4 x ROWS) leave a group idle in a last sweep when S does not divide the
passes; ``Case.blocks`` lists every output block and ``Case.row_groups`` their S.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass

import numpy as np
import torch
from bitmod.runtime.arch.hwconfig import HardwareConfig
from bitmod.runtime.arch.nest import quantized_matmul_program
from bitmod.runtime.arch.rules import row_groups
from bitmod.runtime.arch.schedule import ORDERS, STREAMED_ORDERS
from bitmod.runtime.formats import get_format, quantize
from bitmod.runtime.formats.registry import FORMAT_NAMES
from bitmod.runtime.isa import Drain, IsaError, LdAct, LdWgt, LoopDown, Program, StOut

__all__ = [
    "ACCELERATED",
    "BENCH_CAPACITY",
    "CAPACITY",
    "CASE_CONFIGS",
    "CONFIGS",
    "MLP_CAPACITY",
    "MLP_MACHINE",
    "ORDERS",
    "Case",
    "matmul_case",
    "output_blocks",
    "random_case",
]

ACCELERATED = tuple(name for name in FORMAT_NAMES if get_format(name).accelerated)
#: The machines the cases run on (one design build each).
CONFIGS = {
    "1tile": HardwareConfig(
        rows=4,
        cols=4,
        tiles=1,
        act_buffer_bytes=2048,
        weight_buffer_bytes=2048,
        max_block_rows=8,
        dram_bytes_per_cycle=25.6,
    ),
    "2tiles": HardwareConfig(
        rows=4,
        cols=4,
        tiles=2,
        act_buffer_bytes=4096,
        weight_buffer_bytes=4096,
        max_block_rows=16,
        dram_bytes_per_cycle=12.8,
    ),
}
CONFIGS["4tiles"] = dataclasses.replace(
    CONFIGS["2tiles"],
    tiles=4,
    act_buffer_bytes=8192,
    weight_buffer_bytes=8192,
    dram_bytes_per_cycle=25.6,
)
#: The two-tile machine without row groups (a mac runs its passes one after another).
CONFIGS["2tiles-rg1"] = dataclasses.replace(CONFIGS["2tiles"], row_groups=1)
#: Three tiles (not a power of two): a block of one tile's channels splits in 2, tile 2 idles.
CONFIGS["3tiles"] = dataclasses.replace(CONFIGS["4tiles"], tiles=3)
#: Four tiles with blocks of up to 16 passes: the next block's mac overtakes a slow drain.
CONFIGS["4tiles-mr64"] = dataclasses.replace(
    CONFIGS["4tiles"], act_buffer_bytes=16384, max_block_rows=64
)
#: Accumulators of 128 rows (32 passes of 4 rows: 7-bit C rows), the default depth, which
#: BENCHMARKS.md's schedule-quality section weighs against 64.
CONFIGS["4tiles-mr128"] = dataclasses.replace(
    CONFIGS["4tiles"], act_buffer_bytes=32768, weight_buffer_bytes=16384, max_block_rows=128
)
#: The machine of ``random_case(seed)``: one tile every other case (Verilator runs those in CI).
CASE_CONFIGS = ("1tile", "2tiles", "1tile", "4tiles")
#: Design capacity every case fits (so one build per machine runs them all).
CAPACITY = {
    "dram": 1 << 16,
    "image": 1 << 11,
    "descriptors": 8,
    "strings": 8,
    "instructions": 64,
    "output_units": 128,
}
#: The example MLP's machine in the co-simulation test and bench (two tiles of 4x4, buffers for
#: its 64-wide layers) and a capacity its three programs fit.
MLP_MACHINE = dataclasses.replace(
    CONFIGS["2tiles"], act_buffer_bytes=8192, weight_buffer_bytes=8192
)
MLP_CAPACITY = {**CAPACITY, "dram": 1 << 17}
#: The benches' capacity on the default machine (bench/rtl_speed.py's GEMM and the example MLP
#: of bench/rtl_cosim.py share one sixteen-tile build, a few minutes on two cores).
BENCH_CAPACITY = {**CAPACITY, "dram": 1 << 20}


@dataclass(frozen=True)
class Case:
    name: str
    config_name: str
    program: Program
    memory: dict[str, object]
    #: (rows, channels) of every output block its macs accumulate, per layer (row blocks outer)
    blocks: tuple[tuple[int, int], ...] = ()

    @property
    def config(self) -> HardwareConfig:
        return CONFIGS[self.config_name]

    @property
    def row_groups(self) -> tuple[int, ...]:
        """``S`` of each of :attr:`blocks` (the tile groups its macs split their passes over)."""
        config = self.config
        return tuple(
            int(row_groups(channels, config.cols, config.tiles, config.row_groups))
            for _, channels in self.blocks
        )

    @property
    def descending(self) -> tuple[tuple[str, int], ...]:
        """("rows" or "cols", count) of each ``loop.down`` of the program, in program order (a
        descending loop is a row block loop if some ``st.out`` stores by its level as the row
        level, else a column block loop)."""
        code = self.program.instructions
        found = []
        for index, instr in enumerate(code):
            if not isinstance(instr, LoopDown):
                continue
            store = next(i for i in code[index:] if isinstance(i, StOut))
            if instr.lvl == store.row_lvl:
                found.append(("rows", instr.count))
            elif instr.lvl == store.col_lvl:
                found.append(("cols", instr.count))
            else:
                raise AssertionError(f"loop.down L{instr.lvl} is no block loop of {self.name}")
        return tuple(found)


def output_blocks(m: int, n: int, block_rows: int, config: HardwareConfig) -> list[tuple[int, int]]:
    """(rows, channels) of the output blocks of an ``m x n`` output in blocks of ``block_rows``
    rows and ``COLS · TILES`` channels (the last ones clipped), row blocks outer."""
    columns = config.cols * config.tiles
    return [
        (min(block_rows, m - r0), min(columns, n - c0))
        for r0 in range(0, m, block_rows)
        for c0 in range(0, n, columns)
    ]


def _layer(
    rng: np.random.Generator,
    config: HardwareConfig,
    fmt: str,
    order: str,
    m: int,
    n: int,
    k: int,
    group: int,
    names: tuple[str, str, str, str | None],
    activation_matmul: bool,
    rows_down: bool = False,
    cols_down: bool = False,
) -> tuple[Program, dict[str, object], str, int]:
    """A layer's program and memory, the order it runs and its block rows (``rows_down`` /
    ``cols_down``: its row / column block loop a ``loop.down``)."""
    act, weight, out, bias = names
    generator = torch.Generator().manual_seed(int(rng.integers(1 << 31)))
    if activation_matmul:  # B [K, N] in FP16, quantized at run time: W = B^T
        b = torch.randn(k, n, generator=generator).to(torch.float16).to(torch.float32)
        q = quantize(b.T.contiguous(), fmt, group_size=group, scale_bits=8)
    else:
        w = torch.randn(n, k, generator=generator)
        w[:, : k // 3] *= 8.0
        q = quantize(w, fmt, group_size=group, scale_bits=8)
    memory: dict[str, object] = {weight: q}
    memory[act] = torch.randn(m, k, generator=generator).to(torch.float16).numpy()
    if bias is not None:
        memory[bias] = torch.randn(n, generator=generator).to(torch.float16).numpy()
    rows = config.rows
    # block rows: up to four passes, as many as the accumulators hold and M needs
    heights = [i * rows for i in range(1, 5) if i * rows <= config.max_block_rows]
    heights = [h for h in heights if h - rows < m]
    block_rows = int(rng.choice(heights)) if len(heights) > 1 else rows
    kchunk = (
        group
        if order in STREAMED_ORDERS or (order == "acts-resident" and rng.random() < 0.5)
        else 0
    )
    if kchunk and kchunk >= k:
        kchunk = 0 if order not in STREAMED_ORDERS else kchunk
    # the order drawn, with fewer block rows or else another order if its blocks do not fit
    attempts = [(order, r) for r in dict.fromkeys([block_rows, rows])]
    attempts += [(other, rows) for other in ORDERS if other != order]
    for order_tried, rows_tried in attempts:
        chunk = kchunk if order_tried not in STREAMED_ORDERS or kchunk else group
        try:
            program = quantized_matmul_program(
                q,
                m,
                config,
                act=act,
                weight=weight,
                out=out,
                kchunk=chunk if order_tried != "weights-resident" else 0,
                block_rows=rows_tried,
                order=order_tried,
                bias=bias,
                rows_down=rows_down,
                cols_down=cols_down,
            )
            return program, memory, order_tried, rows_tried
        except IsaError:
            continue
    raise AssertionError(f"no schedule fits {m}x{n}x{k} {fmt} on {config}")


def matmul_case(
    config_name: str,
    fmt: str,
    m: int,
    n: int,
    k: int,
    group: int,
    block_rows: int,
    order: str,
    bias: bool = False,
    seed: int = 0,
    rows_down: bool = False,
    cols_down: bool = False,
) -> Case:
    """One weight matmul ``m x n x k`` in ``fmt`` on ``CONFIGS[config_name]`` with blocks of
    ``block_rows`` rows in loop ``order`` (both forced: IsaError if they do not fit), its row /
    column block loop a ``loop.down`` if ``rows_down`` / ``cols_down``."""
    config = CONFIGS[config_name]
    generator = torch.Generator().manual_seed(seed)
    q = quantize(torch.randn(n, k, generator=generator), fmt, group_size=group, scale_bits=8)
    memory: dict[str, object] = {
        "w": q,
        "x": torch.randn(m, k, generator=generator).to(torch.float16).numpy(),
    }
    if bias:
        memory["b"] = torch.randn(n, generator=generator).to(torch.float16).numpy()
    program = quantized_matmul_program(
        q,
        m,
        config,
        kchunk=group if order in STREAMED_ORDERS else 0,
        block_rows=block_rows,
        order=order,
        bias="b" if bias else None,
        rows_down=rows_down,
        cols_down=cols_down,
    )
    name = f"{fmt} {order} {m}x{n}x{k} G{group} MR{block_rows}{_directions(rows_down, cols_down)}"
    name += f" on {config_name}"
    blocks = tuple(output_blocks(m, n, block_rows, config))
    return Case(name, config_name, program, memory, blocks)


def _chain(first: Program, second: Program) -> Program:
    """``second`` after ``first``: one string table, descriptors renumbered, one halt."""
    strings = list(dict.fromkeys(first.strings + second.strings))
    offset = len(first.descriptors)
    descriptors = list(first.descriptors) + [
        dataclasses.replace(d, name=strings.index(second.strings[d.name]))
        for d in second.descriptors
    ]

    def moved(instr):
        if isinstance(instr, LdAct | LdWgt | StOut):
            return dataclasses.replace(instr, desc=instr.desc + offset)
        if isinstance(instr, Drain) and instr.bias is not None:
            return Drain(instr.bias + offset)
        return instr

    code = list(first.instructions[:-1]) + [moved(i) for i in second.instructions]
    program = Program(tuple(strings), tuple(descriptors), tuple(code))
    program.validate()
    return program


def _is_activation_matmul(seed: int) -> bool:
    return seed % 7 in (3, 6)


def _directions(rows_down: bool, cols_down: bool) -> str:
    """`` rows down`` / `` cols down`` / both / nothing, for a case's name."""
    return "".join(
        f" {what} down" for what, down in (("rows", rows_down), ("cols", cols_down)) if down
    )


def random_case(seed: int) -> Case:
    """Case ``seed`` (deterministic; formats, orders and options cycle with the seed)."""
    rng = np.random.default_rng(zlib.crc32(f"rtl-case/{seed}".encode()))
    # the block loops' directions, from a generator of their own (the shapes stay those of rng)
    directions = np.random.default_rng(zlib.crc32(f"rtl-case-down/{seed}".encode()))
    rows_down, cols_down = (bool(d) for d in directions.integers(0, 2, 2))
    config_name = CASE_CONFIGS[seed % len(CASE_CONFIGS)]
    config = CONFIGS[config_name]
    activation_matmul = _is_activation_matmul(seed)
    # the weight cases take the formats in turn (all of them within 28 weight cases)
    weight_rank = seed - sum(map(_is_activation_matmul, range(seed)))
    fmt = (
        ("int8", "int4")[seed % 2]
        if activation_matmul
        else ACCELERATED[weight_rank % len(ACCELERATED)]
    )
    # every order on every machine within len(CASE_CONFIGS) * len(ORDERS) = 16 cases
    order = ORDERS[(seed // len(CASE_CONFIGS)) % len(ORDERS)]
    group = int(rng.choice([16, 32]))
    # K of 2-4 groups, every other case ragged: a shorter last group, K often odd
    k = group * int(rng.integers(2, 5)) + (int(rng.choice([1, 5, 7, 10])) if seed % 2 else 0)
    m = int(rng.choice([3, 5, 7, 9, 13]))
    n = int(rng.choice([3, 4, 5, 7, 9, 11, 13, 19]))
    with_bias = bool(seed % 2)
    chained = seed % 5 == 4 and not activation_matmul
    if chained:  # the second layer's K is this N: whole groups of 4
        n = int(rng.choice([8, 12, 20]))
    program, memory, order, block_rows = _layer(
        rng, config, fmt, order, m, n, k, group,
        ("x", "w1", "h", "b1" if with_bias else None), activation_matmul, rows_down, cols_down,
    )  # fmt: skip
    blocks = output_blocks(m, n, block_rows, config)
    name = f"{fmt} {order} {m}x{n}x{k} G{group}{' bias' if with_bias else ''} MR{block_rows}"
    name += _directions(rows_down, cols_down)
    if activation_matmul:
        name += " (activation matmul)"
    if chained:  # a second layer on h: its output comes back from DRAM
        second_n = int(rng.choice([5, 7, 11]))
        rows_down, cols_down = (bool(d) for d in directions.integers(0, 2, 2))
        second, more, _, second_rows = _layer(
            rng, config, fmt, ORDERS[(seed + 1) % len(ORDERS)], m, second_n, n, 4,
            ("h", "w2", "y", None), False, rows_down, cols_down,
        )  # fmt: skip
        del more["h"]
        memory.update(more)
        program = _chain(program, second)
        blocks += output_blocks(m, second_n, second_rows, config)
        name += f" -> {second_n}{_directions(rows_down, cols_down)}"
    return Case(
        f"case {seed}: {name} on {config_name}", config_name, program, memory, tuple(blocks)
    )
