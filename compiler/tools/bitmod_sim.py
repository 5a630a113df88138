"""``bitmod-sim``: the paper's accelerator evaluation (Fig. 7, Fig. 8, Fig. 9) from the shell.

Runs the six LLMs (batch 1, 256 input tokens; 1 output token for discriminative tasks, 256
for generative ones) on every accelerator of :mod:`bitmod.runtime.perf.model`, prints speedup and
energy normalized to the FP16 baseline with their means, and with ``--out DIR`` writes:

* ``fig7_speedup.png``, ``fig8_energy.png`` — bar charts like the paper's Fig. 7 / Fig. 8;
* ``fig9_pareto.png``, ``pareto.csv`` — perplexity (cited) vs modelled EDP (generative only);
* ``speedup_table.md`` — the tables in Markdown; ``results.json`` — every number.

Bad options give one error line and exit status 2; nothing is written unless the whole run
succeeds (files are rendered in a temporary directory and moved into DIR at the end).

Examples::

    bitmod-sim
    bitmod-sim --models llama-2-7b,phi-2 --task generative --out sim_out --dram-gbps 32
    bitmod-sim --pe-count ant=1024 --pe-count olive=1152     # the authors' array sizes
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from bitmod.compiler.tools.console import print_out, run_console
from bitmod.runtime.arch.hwconfig import PE_KINDS, HardwareConfig
from bitmod.runtime.keyvalue import KeyValueError, parse_key_values
from bitmod.runtime.perf.model import ACCELERATORS, TASKS, accelerator, load_llm_shapes
from bitmod.runtime.perf.report import (
    PARETO_MODELS,
    format_markdown,
    format_text,
    pareto_points,
    plot_energy,
    plot_pareto,
    plot_speedup,
    run_sweep,
    summarize,
)
from bitmod.runtime.storage.fileio import (
    check_directory_path,
    make_directory_beside,
    os_error_reason,
)
from tqdm import tqdm

PROG = "bitmod-sim"

_ENERGY_KEYS = (
    "encoder_pj_per_tile_cycle",
    "sram_read_pj_per_byte",
    "sram_write_pj_per_byte",
    "dram_pj_per_bit",
)


class CliError(Exception):
    """A bad option: reported as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Cycle/energy model of BitMoD vs FP16, ANT, OliVe and MixPE-style "
        "accelerators on the paper's six LLM workloads.",
    )
    parser.add_argument(
        "--models",
        default="all",
        help="comma-separated model keys, or 'all' (default); see --list-models",
    )
    parser.add_argument("--list-models", action="store_true", help="print model keys and exit")
    parser.add_argument(
        "--task", choices=[*TASKS, "both"], default="both", help="workload (default: both)"
    )
    parser.add_argument("--out", help="directory for PNG plots, tables and JSON")
    parser.add_argument("--shapes", type=Path, help="an llm_shapes.json to use instead")
    parser.add_argument("--input-tokens", type=int, default=256, help="prompt length (default 256)")
    parser.add_argument(
        "--output-tokens",
        type=int,
        default=256,
        help="tokens generated in the generative task (default 256; the first comes from the "
        "prefill, the others from decoding steps)",
    )
    hw = parser.add_argument_group("hardware overrides (defaults: runtime/arch/hwconfig.py)")
    hw.add_argument("--dram-gbps", type=float, help="DRAM bandwidth in GB/s (default 25.6)")
    hw.add_argument("--tiles", type=int, help="BitMoD tiles (default 16); sets the area budget")
    hw.add_argument("--rows", type=int, help="PE rows per tile (default 8)")
    hw.add_argument("--cols", type=int, help="PE columns per tile (default 8)")
    hw.add_argument("--act-buffer-kb", type=int, help="activation buffer KiB (default 512)")
    hw.add_argument("--weight-buffer-kb", type=int, help="weight buffer KiB (default 512)")
    hw.add_argument(
        "--row-groups",
        type=int,
        help="BitMoD's tile groups for narrow weight blocks (a power of two, default 4; 1: off)",
    )
    hw.add_argument(
        "--max-block-rows",
        type=int,
        help="rows of partial sums a column accumulator holds, the largest output block "
        f"(at least --rows, default {HardwareConfig.max_block_rows})",
    )
    for flag, metavar, purpose in (
        ("--pe-count", "KIND=N", f"the iso-area PE count of a PE kind ({', '.join(PE_KINDS)})"),
        ("--pe-area", "KIND=UM2", "one PE's area in um^2 (changes iso-area counts)"),
        ("--energy", "KEY=PJ", f"an energy constant: {', '.join(_ENERGY_KEYS)} or pe.KIND"),
    ):
        hw.add_argument(
            flag, action="append", default=[], metavar=metavar, help=f"override {purpose}"
        )
    parser.add_argument(
        "--weight",
        action="append",
        default=[],
        metavar="ACC=FMT",
        help="weight precision of an accelerator for every model and task: a format for "
        "bitmod-lossless/bitmod-lossy/mixpe (e.g. bitmod-lossy=int4), bits for ant/olive "
        "(e.g. ant=5; needed for models without cited ANT/OliVe precisions)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def _pairs(items: Sequence[str], option: str, convert: type) -> dict[str, float | int]:
    try:
        pairs = parse_key_values(items, option=option)
    except KeyValueError as error:
        raise CliError(str(error)) from None
    out: dict[str, float | int] = {}
    for key, value in pairs.items():
        try:
            out[key] = convert(value)
        except ValueError:
            raise CliError(f"{option} {key}: {value!r} is not a valid {convert.__name__}") from None
    return out


def build_config(args: argparse.Namespace) -> tuple[HardwareConfig, dict[str, int]]:
    """The HardwareConfig and PE-count overrides the options ask for (CliError if bad)."""
    cfg = HardwareConfig()
    changes: dict[str, object] = {}
    for option, field, scale in (
        ("tiles", "tiles", 1),
        ("rows", "rows", 1),
        ("cols", "cols", 1),
        ("act_buffer_kb", "act_buffer_bytes", 1024),
        ("weight_buffer_kb", "weight_buffer_bytes", 1024),
        ("row_groups", "row_groups", 1),
        ("max_block_rows", "max_block_rows", 1),
    ):
        value = getattr(args, option)
        if value is not None:
            changes[field] = value * scale
    energy = cfg.energy
    energy_changes = _pairs(args.energy, "--energy", float)
    pe_energy = dict(energy.pe_pj_per_cycle)
    scalar_energy = {}
    for key, value in energy_changes.items():
        if key.startswith("pe.") and key[3:] in PE_KINDS:
            pe_energy[key[3:]] = value
        elif key in _ENERGY_KEYS:
            scalar_energy[key] = value
        else:
            valid = [*_ENERGY_KEYS, *(f"pe.{k}" for k in PE_KINDS)]
            raise CliError(f"--energy: unknown constant {key!r}; valid: {', '.join(valid)}")
    areas = _pairs(args.pe_area, "--pe-area", float)
    _check_kinds(areas, "--pe-area")
    pe_counts = {k: int(v) for k, v in _pairs(args.pe_count, "--pe-count", int).items()}
    _check_kinds(pe_counts, "--pe-count")
    try:
        energy = dataclasses.replace(energy, pe_pj_per_cycle=pe_energy, **scalar_energy)
        area = dataclasses.replace(cfg.area, pe_area_um2={**cfg.area.pe_area_um2, **areas})
        cfg = dataclasses.replace(cfg, energy=energy, area=area, **changes)
        if args.dram_gbps is not None:
            cfg = cfg.with_dram_gbps(args.dram_gbps)
        for kind, count in pe_counts.items():
            if count < cfg.rows or count % cfg.rows:
                raise ValueError(
                    f"--pe-count {kind}={count}: must be a positive multiple of rows ({cfg.rows})"
                )
        for kind in PE_KINDS:
            if kind not in pe_counts and cfg.iso_area_pe_count(kind) < cfg.rows:
                raise ValueError(f"no whole column of {kind} PEs fits the area budget")
    except ValueError as error:
        raise CliError(str(error)) from None
    return cfg, pe_counts


def _check_kinds(table: dict, option: str) -> None:
    unknown = sorted(set(table) - set(PE_KINDS))
    if unknown:
        raise CliError(f"{option}: unknown PE kind {unknown[0]!r}; valid: {', '.join(PE_KINDS)}")


def _weight_overrides(items: Sequence[str]) -> dict[str, str]:
    try:
        weights = parse_key_values(items, what="ACC=FMT", option="--weight")
    except KeyValueError as error:
        raise CliError(str(error)) from None
    for name, fmt in weights.items():
        if name not in ACCELERATORS or name == "fp16":
            valid = ", ".join(a for a in ACCELERATORS if a != "fp16")
            raise CliError(f"--weight: unknown accelerator {name!r}; valid: {valid}")
        try:
            accelerator(name, "", TASKS[0], weight_fmt=fmt)
        except ValueError as error:
            raise CliError(f"--weight {name}={fmt}: {error}") from None
    return weights


def _select_models(text: str, available: Sequence[str]) -> list[str]:
    if text == "all":
        return list(available)
    models = [m.strip() for m in text.split(",") if m.strip()]
    if not models:
        raise CliError("--models: no model given")
    unknown = [m for m in models if m not in available]
    if unknown:
        raise CliError(f"--models: unknown model {unknown[0]!r}; valid: {', '.join(available)}")
    return list(dict.fromkeys(models))


def _results_json(sweep, summary, cfg: HardwareConfig, points) -> dict:  # type: ignore[no-untyped-def]
    return {
        "config": {
            "rows": cfg.rows,
            "cols": cfg.cols,
            "tiles": cfg.tiles,
            "freq_hz": cfg.freq_hz,
            "dram_gbps": cfg.dram_gbps,
            "act_buffer_bytes": cfg.act_buffer_bytes,
            "weight_buffer_bytes": cfg.weight_buffer_bytes,
            "row_groups": cfg.row_groups,
            "max_block_rows": cfg.max_block_rows,
            "pe_counts": summary.pe_counts,
        },
        "results": {
            task: {
                model: {
                    acc: {
                        "weight": r.weight_label,
                        "cycles": r.cycles,
                        "compute_cycles": r.compute_cycles,
                        "dram_cycles": r.dram_cycles,
                        "phase_cycles": r.phase_cycles,
                        "dram_bytes": r.dram_read_bytes + r.dram_write_bytes,
                        "energy_pj": r.energy_pj,
                        "speedup_vs_fp16": summary.speedup[task][model][acc],
                        "energy_vs_fp16": summary.energy[task][model][acc],
                    }
                    for acc, r in by_acc.items()
                }
                for model, by_acc in by_model.items()
            }
            for task, by_model in sweep.items()
        },
        "comparisons": summary.comparisons(),
        "pareto": [dataclasses.asdict(p) for p in points],
    }


def _write_outputs(out: Path, summary, sweep, cfg: HardwareConfig, points) -> list[str]:  # type: ignore[no-untyped-def]
    """Render everything into a temporary directory next to ``out``, then move it in."""
    staging = make_directory_beside(out)
    try:
        plot_speedup(summary, staging / "fig7_speedup.png")
        plot_energy(summary, staging / "fig8_energy.png")
        (staging / "speedup_table.md").write_text(format_markdown(summary))
        (staging / "results.json").write_text(
            json.dumps(_results_json(sweep, summary, cfg, points), indent=1) + "\n"
        )
        if points:
            plot_pareto(points, staging / "fig9_pareto.png")
            with open(staging / "pareto.csv", "w", newline="") as handle:
                writer = csv.writer(handle)
                fields = [f.name for f in dataclasses.fields(points[0])]
                writer.writerow(fields)
                for p in points:
                    writer.writerow([getattr(p, f) for f in fields])
        out.mkdir(parents=True, exist_ok=True)
        names = sorted(path.name for path in staging.iterdir())
        for name in names:
            (staging / name).replace(out / name)
        return names
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def run(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        shapes = load_llm_shapes(args.shapes)
    except ValueError as error:
        parser.error(f"--shapes: {error}")
    if args.list_models:
        for key, shape in shapes.items():
            print_out(f"{key:14s} {shape.display:14s} {shape.hf_id}")
        return 0
    try:
        models = _select_models(args.models, list(shapes))
        cfg, pe_counts = build_config(args)
        weights = _weight_overrides(args.weight)
        for option in ("input_tokens", "output_tokens"):
            if getattr(args, option) < 1:
                raise CliError(f"--{option.replace('_', '-')} must be >= 1")
        if args.out is not None:
            args.out = _check_out(args.out)
    except CliError as error:
        parser.error(str(error))
    tasks = list(TASKS) if args.task == "both" else [args.task]

    def progress(jobs):  # type: ignore[no-untyped-def]
        return tqdm(jobs, desc=PROG, unit="run", disable=True if args.no_progress else None)

    try:
        sweep = run_sweep(
            models,
            tasks,
            cfg,
            pe_counts,
            shapes=shapes,
            progress=progress,
            weights=weights,
            input_tokens=args.input_tokens,
            output_tokens=args.output_tokens,
        )
        summary = summarize(sweep)
        pareto_models = [m for m in PARETO_MODELS if m in models]
        points = (
            pareto_points(
                cfg, pareto_models, pe_counts, shapes, args.input_tokens, args.output_tokens
            )
            if "generative" in tasks and pareto_models
            else []
        )
    except ValueError as error:
        parser.error(str(error))
    text = format_text(summary)
    if points:
        text += "Pareto (generative; perplexity cited from the paper, EDP modelled):\n"
        for p in points:
            ppl = f"{p.ppl:.2f} ({p.ppl_source})" if p.ppl is not None else "-"
            text += f"  {p.model:11s} {p.accelerator:6s} {p.weight:14s} "
            text += f"EDP {p.edp_js:9.4g} J*s  ppl {ppl}\n"
    print_out(text, end="")
    if args.out is not None:
        try:
            names = _write_outputs(args.out, summary, sweep, cfg, points)
        except OSError as error:
            parser.error(f"--out: cannot write {error.filename or args.out}: {error.strerror}")
        print_out(f"wrote {', '.join(names)} to {args.out}")
    return 0


def _check_out(out_text: str) -> Path:
    """``--out`` is a directory or can become one (CliError naming what is in the way)."""
    try:
        check_directory_path(out_text)
    except NotADirectoryError as error:
        what = "exists and is" if error.filename == out_text else "is"
        raise CliError(f"--out: {error.filename} {what} not a directory") from None
    except OSError as error:
        raise CliError(f"--out: {os_error_reason(error)}") from None
    return Path(out_text)


def _run_printing_errors(argv: Sequence[str] | None) -> int:
    try:
        return run(argv)
    except BrokenPipeError:
        raise
    except OSError as error:  # standard output closed or full (print_out names it)
        where = f"{error.filename}: " if error.filename else ""
        print(f"{PROG}: error: {where}{error.strerror or error}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    sys.exit(run_console(lambda: _run_printing_errors(argv)))


if __name__ == "__main__":
    main()
