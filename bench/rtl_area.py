"""Gate-level area of the BitMoD PE against an FP16 MAC PE and a FIGNA-like FP16 x INT8 PE.

    python bench/rtl_area.py                                # print the table
    python bench/rtl_area.py --out bench/results/rtl_area.md

Every block is synthesized by Yosys from this repository's SystemVerilog
(``bitmod.backends.rtl.area``: generic synthesis, flip-flops legalized to plain D flip-flops,
ABC onto NAND/NOR/NOT, ``stat -tech cmos``); NAND2 equivalents are transistors / 4. The
baseline is the FP16 PE measured in the same run, and every ratio is to it.

Per-PE rows add the PE's share of what a tile shares: the term encoder of its column (one per
column, 4 lanes, over ROWS = 8 PEs) and the column accumulator (one FP32 adder and the
dequantized-value rounding per column, with one pass of C storage, MAX_ROWS = 8), and, for the
FIGNA-like PE, the row's FP16 -> integer aligner (over COLS = 8 PEs). Throughput differs: the
FP16 and FIGNA-like PEs do 1 MAC a cycle, the BitMoD PE 4 / terms (2 for its 3- and 4-bit
formats, 1 for INT8), so area per MAC/cycle is printed too.

The row groups' hardware (docs/rtl.md, "The PE engine") is measured on the default machine
(16 tiles, 4 row sets): one lane spread as wide as the three the engine has (a 2:1 multiplexer
network: its area is linear in its width) and one tile's activation row-set select, against
the 16 tiles' PEs, term encoders and column accumulators.

Paper (BitMoD, HPCA 2025): the authors' simulator uses 1,507.7 um^2 per BitMoD PE and 1,968.7
um^2 per FP16 PE (ratio 0.77); Table X gives 97,090 um^2 for an 8x8 BitMoD tile plus 2,419 um^2
of term encoder, against 95,498 um^2 for the FP16 tile (48 PEs). Those are 28 nm layouts of
the authors' RTL; the numbers here are transistor estimates of this repository's RTL, whose PE
contract (docs/ISA.md) differs: an exact 64-bit fixed-point group accumulator instead of a
normalizing floating accumulator, and a 16-bit programmable special-value register.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bitmod.backends.rtl.area import BASELINES, BlockArea, synthesize, yosys_available

PARTS = BASELINES.with_name("pe_parts.sv")
ROWS = COLS = 8
#: The default machine's row groups (HardwareConfig: 16 tiles, row_groups = 4 row sets).
TILES, ROW_SETS = 16, 4
#: Bits a tile gets through the lane spreads: 4 codes (32 bits) and a metadata word with its
#: inside-the-block bit (33) per column for the mac, an FP16 scale and bias (32) for the drain.
SPREAD_BITS_PER_TILE = COLS * (32 + 33 + 32)
PAPER_PE_UM2 = {"bitmod": 1507.7, "fp16": 1968.7}
PAPER_TILE_UM2 = {"bitmod": 97_090.0, "encoder": 2_419.0, "fp16": 95_498.0}
PAPER_FP16_TILE_PES = 48


def measure() -> dict[str, BlockArea]:
    blocks = {
        "fp16_pe": ("fp16_mac_pe", {}, [BASELINES]),
        "figna_pe": ("figna_pe", {}, [BASELINES]),
        "figna_align": ("figna_align", {}, [BASELINES]),
        "bitmod_pe": ("bitmod_pe", {}, []),
        "encoder": ("bitmod_term_encoder", {}, []),
        "column": ("bitmod_column", {"ROWS": ROWS, "MAX_ROWS": ROWS}, []),
        "step": ("pe_part_step", {}, [PARTS]),
        "accumulator": ("pe_part_accumulator", {}, [PARTS]),
        "dequantizer": ("pe_part_dequantizer", {}, [PARTS]),
        # the row groups' hardware on the default machine: one lane spread as wide as the
        # three (codes, metadata, drain scale + bias), and one tile's activation row-set select
        "lane_spread": (
            "bitmod_lane_spread",
            {"TILES": TILES, "W": SPREAD_BITS_PER_TILE},
            [],
        ),
        "row_select": ("row_group_part_select", {"ROWS": ROWS, "ROW_SETS": ROW_SETS}, [PARTS]),
    }
    results = {}
    for key, (top, parameters, extra) in blocks.items():
        results[key] = synthesize(top, parameters, extra)
        print(f"  synthesized {top}", file=sys.stderr)
    return results


def table(a: dict[str, BlockArea]) -> str:
    base = a["fp16_pe"].transistors
    rows = [
        ("FP16 x FP16 MAC PE (baseline)", base, 1.0),
        ("FIGNA-like FP16 x INT8 PE", a["figna_pe"].transistors, 1.0),
        (
            "  + 1/8 row aligner",
            a["figna_pe"].transistors + a["figna_align"].transistors / COLS,
            1.0,
        ),
        ("BitMoD PE", a["bitmod_pe"].transistors, 2.0),
        (
            "  + 1/8 term encoder",
            a["bitmod_pe"].transistors + a["encoder"].transistors / ROWS,
            2.0,
        ),
        (
            "  + 1/8 column accumulator",
            a["bitmod_pe"].transistors
            + (a["encoder"].transistors + a["column"].transistors) / ROWS,
            2.0,
        ),
    ]
    lines = [
        "| block | transistors | NAND2 eq. | ratio to FP16 PE | MAC/cycle "
        "| per MAC/cycle vs FP16 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, transistors, macs in rows:
        lines.append(
            f"| {name} | {transistors:,.0f} | {transistors / 4:,.0f} | {transistors / base:.2f} "
            f"| {macs:g} | {transistors / macs / base:.2f} |"
        )
    lines += [
        "",
        "Blocks as synthesized (cells = NAND/NOR/NOT/DFF after ABC):",
        "",
        "| block | cells | flip-flops | transistors |",
        "|---|---:|---:|---:|",
    ]
    for block in a.values():
        lines.append(
            f"| {block.top} | {block.cells:,} | {block.flip_flops:,} | {block.transistors:,} |"
        )
    pe = a["bitmod_pe"].transistors
    lines += [
        "",
        "Where the BitMoD PE's transistors go (parts synthesized alone; the PE shares nothing):",
        "",
        "| part | transistors | share of the PE |",
        "|---|---:|---:|",
    ]
    for key, label in (
        ("step", "4-lane step (alignment, 3 guard bits, RNE, adder tree) + register"),
        ("accumulator", "64-bit exact group accumulator (shifter + adder + register)"),
        ("dequantizer", "24-bit rounding of A + bit-serial dequantizer"),
    ):
        lines.append(f"| {label} | {a[key].transistors:,} | {a[key].transistors / pe:.0%} |")
    tile = ROWS * COLS * pe + COLS * (a["encoder"].transistors + a["column"].transistors)
    spread = a["lane_spread"].transistors
    select = TILES * a["row_select"].transistors
    lines += [
        "",
        f"What the row groups cost on the default machine ({TILES} tiles, {ROW_SETS} row sets; "
        'docs/rtl.md, "The PE engine"), against the tiles\' PEs, encoders and column '
        "accumulators:",
        "",
        "| part | transistors | NAND2 eq. | share of the tiles |",
        "|---|---:|---:|---:|",
        f"| lane spreads ({SPREAD_BITS_PER_TILE} bits a tile: codes, metadata, drain "
        f"scale + bias) | {spread:,} | {spread / 4:,.0f} | {spread / (TILES * tile):.2%} |",
        f"| activation row-set select ({TILES} tiles) | {select:,} | {select / 4:,.0f} "
        f"| {select / (TILES * tile):.2%} |",
    ]
    fp16_tile = PAPER_FP16_TILE_PES * base
    paper_ratio = PAPER_PE_UM2["bitmod"] / PAPER_PE_UM2["fp16"]
    paper_tile = (PAPER_TILE_UM2["bitmod"] + PAPER_TILE_UM2["encoder"]) / PAPER_TILE_UM2["fp16"]
    lines += [
        "",
        "Beside the paper (28 nm layouts of the authors' RTL):",
        "",
        "| comparison | this RTL (transistors) | paper (um^2) |",
        "|---|---:|---:|",
        f"| BitMoD PE / FP16 PE | {pe / base:.2f} | {paper_ratio:.2f} (1,507.7 / 1,968.7) |",
        f"| 8x8 BitMoD tile + encoders / 48-PE FP16 tile | {tile / fp16_tile:.2f} "
        f"| {paper_tile:.2f} ((97,090 + 2,419) / 95,498) |",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the table (markdown) here")
    args = parser.parse_args(argv)
    if not yosys_available():
        print("rtl_area: yosys (and yosys-abc) are not installed", file=sys.stderr)
        return 1
    text = table(measure())
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("# Gate-level area (bench/rtl_area.py)\n\n" + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
