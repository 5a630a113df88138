"""The block diagram of docs/rtl.md, drawn with matplotlib.

python -m bitmod.backends.rtl.diagram docs/rtl_blocks.png
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["draw"]

# (label, x, y, width, height, colour); units: a 16 x 10 canvas
_BOXES = {
    "image": ("program image\n(bsisa container)", 0.3, 8.3, 2.6, 1.2, "#eeeeee"),
    "controller": (
        "controller\nimage check (CRC-32, fields, loops)\none instruction a cycle\n"
        "L / cfg registers, bookkeeping",
        3.4,
        6.2,
        4.2,
        3.6,
        "#cfe2f3",
    ),
    "ld_reg": ("cmd reg", 8.4, 9.0, 1.2, 0.6, "#fff2cc"),
    "pe_reg": ("cmd reg", 8.4, 8.1, 1.2, 0.6, "#fff2cc"),
    "dr_reg": ("cmd reg", 8.4, 7.2, 1.2, 0.6, "#fff2cc"),
    "st_reg": ("cmd reg", 8.4, 6.3, 1.2, 0.6, "#fff2cc"),
    "load": ("load engine", 10.2, 9.0, 2.0, 0.6, "#d9ead3"),
    "pe": ("PE engine\n(sequencer)", 10.2, 7.95, 2.0, 0.9, "#d9ead3"),
    "drain": ("drain engine", 10.2, 7.2, 2.0, 0.6, "#d9ead3"),
    "store": ("store engine", 10.2, 6.3, 2.0, 0.6, "#d9ead3"),
    "counters": (
        "done counters\nloads, macs, drains\nstarted / done, stores",
        12.9,
        7.3,
        2.8,
        1.4,
        "#f4cccc",
    ),
    "channel": (
        "DRAM channel\none transfer at a time\nceil(n DEN / NUM) cycles\nloads before stores",
        12.9,
        4.6,
        2.8,
        1.7,
        "#ead1dc",
    ),
    "dram": ("DRAM model\n(tensors, chunked weights)", 12.9, 2.3, 2.8, 1.3, "#eeeeee"),
    "act_buf": ("activation buffer\n16 tagged regions", 0.3, 1.6, 2.6, 1.0, "#fce5cd"),
    "wgt_buf": ("weight buffer\n16 tagged regions", 0.3, 4.4, 2.6, 1.0, "#fce5cd"),
    "out_buf": ("output buffer\n2 slots", 9.6, 3.3, 2.4, 1.0, "#fce5cd"),
    "tiles": ("", 3.4, 0.3, 5.8, 5.6, "#ffffff"),
}


def draw(path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, Rectangle

    fig, ax = plt.subplots(figsize=(16, 10))
    ax.set_xlim(0, 16)
    ax.set_ylim(0, 10)
    ax.axis("off")
    centre = {}
    for key, (label, x, y, w, h, colour) in _BOXES.items():
        ax.add_patch(Rectangle((x, y), w, h, facecolor=colour, edgecolor="black", linewidth=1.2))
        if label:
            ax.text(x + w / 2, y + h / 2, label, ha="center", va="center", fontsize=9)
        centre[key] = (x + w / 2, y + h / 2)
    # the tile array
    ax.text(6.3, 5.55, "tiles x (ROWS x COLS PEs), output-stationary", ha="center", fontsize=10)
    for col in range(4):
        x = 4.0 + 1.25 * col
        ax.add_patch(Rectangle((x, 4.55), 1.0, 0.6, facecolor="#d0e0e3", edgecolor="black"))
        ax.text(x + 0.5, 4.85, "term\nencoder", ha="center", va="center", fontsize=7)
        for row in range(3):
            y = 3.6 - 0.95 * row
            ax.add_patch(Rectangle((x, y), 1.0, 0.75, facecolor="#e6f0ff", edgecolor="black"))
            ax.text(
                x + 0.5, y + 0.375, "PE\nstep, A,\ndequant", ha="center", va="center", fontsize=6
            )
        ax.add_patch(Rectangle((x, 0.45), 1.0, 0.7, facecolor="#d9d2e9", edgecolor="black"))
        ax.text(x + 0.5, 0.8, "column\nacc + drain", ha="center", va="center", fontsize=6)
    ax.text(3.55, 2.6, "activations\nalong rows", fontsize=7, rotation=90, va="center")

    def arrow(a, b, text="", style="-|>", colour="black", bend=None):
        patch = FancyArrowPatch(
            a, b, arrowstyle=style, mutation_scale=14, color=colour, lw=1.2, connectionstyle=bend
        )
        ax.add_patch(patch)
        if text:
            ax.text((a[0] + b[0]) / 2, (a[1] + b[1]) / 2 + 0.12, text, fontsize=7, ha="center")

    arrow((2.9, 8.9), (3.4, 8.9), "bytes")
    for reg, engine in (
        ("ld_reg", "load"),
        ("pe_reg", "pe"),
        ("dr_reg", "drain"),
        ("st_reg", "store"),
    ):
        arrow((7.6, centre[reg][1]), (8.4, centre[reg][1]))
        arrow((9.6, centre[reg][1]), (10.2, centre[engine][1]))
    arrow((12.2, 9.3), (12.9, 8.5), "done")
    arrow((12.2, 8.2), (12.9, 8.1))
    arrow((12.2, 7.5), (12.9, 7.7))
    arrow((12.2, 6.6), (12.9, 7.4))
    arrow((14.3, 7.3), (14.3, 6.3), "needs met?", colour="#990000")
    arrow((12.2, 9.1), (13.4, 6.3), "request / grant", style="<|-|>")
    arrow((12.2, 6.4), (12.9, 6.0), style="<|-|>")
    arrow((14.3, 4.6), (14.3, 3.6), "DMA", style="<|-|>")
    arrow((12.9, 5.9), (1.6, 5.4), "ld.wgt blocks", bend="angle,angleA=180,angleB=90")
    arrow((12.9, 4.9), (2.9, 2.3), "ld.act blocks")
    arrow((12.0, 3.8), (12.9, 4.7), "st.out blocks")
    arrow((2.9, 2.1), (4.0, 2.1), "FP16 x4 / row")
    arrow((2.9, 4.85), (4.0, 4.85), "codes, metadata")
    arrow((9.2, 0.8), (9.6, 3.3), "FP16 rows")
    arrow((10.3, 7.95), (8.6, 5.9), "F stage")
    ax.set_title("BitMoD accelerator RTL (backends/rtl): controller, engines, one DRAM channel",
                 fontsize=12)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    draw(sys.argv[1] if len(sys.argv) > 1 else "rtl_blocks.png")
