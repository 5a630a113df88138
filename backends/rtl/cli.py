"""``bitmod rtl-sim DIR``: co-simulate emitted designs against the emulator.

``DIR`` is one design (``bitmod-opt --emit=verilog -o DIR``) or a directory of them
(``bitmod compile --emit-verilog DIR``: ``DIR/op<i>``); designs of the same machine and
capacity share one build. Prints, per design, whether the outputs are bit-identical (the first
differing element if not) and the RTL's and the emulator's cycles by cause; exits 1 unless
every design agrees.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bitmod.backends.rtl.cosim import SIMULATORS, CosimError, build, cosimulate, load_design

__all__ = ["add_commands", "rtl_sim"]


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``rtl-sim`` to the ``bitmod`` console tool's commands."""
    sim = commands.add_parser(
        "rtl-sim",
        help="co-simulate emitted RTL designs against the emulator",
        description=__doc__.splitlines()[0],
    )
    sim.add_argument("design", metavar="DIR", help="an emitted design, or a directory of them")
    sim.add_argument(
        "--simulator", choices=SIMULATORS, default="verilator", help="default verilator"
    )


def _designs(root: Path) -> list[Path]:
    if (root / "design.json").is_file():
        return [root]
    designs = (
        sorted(p for p in root.iterdir() if (p / "design.json").is_file()) if root.is_dir() else []
    )
    if not designs:
        raise ValueError(f"{root}: no emitted design (design.json) here or in its subdirectories")
    return designs


def rtl_sim(args: argparse.Namespace) -> int:
    builds: dict[str, Path] = {}
    agree = True
    for design in _designs(Path(args.design)):
        meta = load_design(design)
        key = json.dumps([meta["config"], meta["capacity"]], sort_keys=True)
        try:
            if key not in builds:
                builds[key] = build(design, args.simulator).resolve()
            result = cosimulate(design, args.simulator, binary=builds[key])
        except (CosimError, OSError) as error:
            # The simulator's log (if any) goes to stderr; the error line says what failed.
            headline, _, log = str(error).partition("\n")
            if log:
                print(log, file=sys.stderr)
            raise ValueError(f"{design}: {headline}") from None
        print(f"== {design} ({args.simulator})")
        print(result.format())
        agree &= result.identical and (result.cycles_equal or result.rtl.refused is not None)
    return 0 if agree else 1
