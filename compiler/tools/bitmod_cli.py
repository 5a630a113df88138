"""The ``bitmod`` console command: compile a PyTorch model without writing a Python driver.

::

    bitmod compile examples/gpt/model.py:gpt --example-shape 1x16:int64 --int-range 0:256 \\
        --dtype bitmod3 -o build/gpt
    bitmod compile model.py:make_model --example make_inputs --layer lm_head=int8 -o out
    bitmod run build/gpt            # run the bundle on its saved example inputs, print the report
    bitmod report build/gpt [--json]
    bitmod run-mlir out.mlir --inputs in.safetensors -o results.safetensors  # bitmod-opt's output

``MODEL.py:FACTORY`` names a Python file and a function in it that takes no arguments and
returns the ``nn.Module``. Example inputs come either from ``--example FUNC`` (a function in
the same file returning a tensor or a tuple of tensors) or from one ``--example-shape
DIMS[:DTYPE]`` per input (seeded random values: normal for float dtypes, uniform in
``--int-range`` for integer ones). Every other option is a :func:`bitmod.compile` argument.

``bitmod run-mlir`` runs a function of a module ``bitmod-opt`` lowered (``--pipeline=
bitmod-default``) with :func:`bitmod.compiler.module_runner.run_function`: host ops in torch,
``bsisa.launch`` ops on the emulator, the weights from the parameter archive the module
names (``bitmod.params``, pinned by its SHA-256) or ``--params``. Its inputs are the tensors
``arg0``, ``arg1``, ... of a safetensors file (by position, each of its argument's shape and
dtype), its outputs ``result0``, ``result1``, ... (``-o``, written atomically).

Errors (a missing file or factory, a bad option, a model that cannot be traced or compiled,
IR that is malformed or not lowered, an archive that is not the module's, inputs that do
not match the function) print one line ``bitmod: error: ...`` and exit with status 1 (2 for
command-line syntax, as argparse does), leaving no output directory or file behind;
``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import math
import os
import shutil
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bitmod.compiler.tools.console import print_out, run_console
from bitmod.runtime.keyvalue import KeyValueError, parse_key_values
from bitmod.runtime.storage.jsontext import JsonError, parse_json

if TYPE_CHECKING:
    from bitmod.dialects.diagnostics import DiagnosticError

__all__ = ["CliError", "main"]

_DTYPES = (
    "float32",
    "float16",
    "bfloat16",
    "float64",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "bool",
)


class CliError(Exception):
    """A user error the command reports as one line."""


# --- argument parsing --------------------------------------------------------------------------


_DEVICE_HELP = (
    "torch device (cpu, cuda) whose bit-exact kernels compute the accelerated ops instead of "
    "the instruction interpreter: the same outputs and report, much faster on large models"
)


def _parser() -> argparse.ArgumentParser:
    from bitmod.runtime.arch.hwconfig import HardwareConfig

    parser = argparse.ArgumentParser(
        prog="bitmod",
        description="Compile PyTorch models for BitMoD-style bit-serial accelerators and run "
        "them on the bit-exact emulator.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    compile_ = commands.add_parser(
        "compile",
        help="compile MODEL.py:FACTORY into a bundle directory",
        description="Trace, quantize, tile and lower a model; write IR, binaries, the "
        "parameter archive, the host graph and a report to OUTDIR.",
    )
    compile_.add_argument(
        "model",
        metavar="MODEL.py:FACTORY",
        help="a Python file and the function in it that returns the model",
    )
    compile_.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUTDIR",
        help="bundle directory to write (replaced if it is a bitmod bundle)",
    )
    source = compile_.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--example", metavar="FUNC", help="function in MODEL.py returning the example input(s)"
    )
    source.add_argument(
        "--example-shape",
        action="append",
        metavar="DIMS[:DTYPE]",
        help="shape of one example input, e.g. 1x16:int64 (repeat per input; "
        "dtype defaults to float32)",
    )
    compile_.add_argument(
        "--int-range",
        default="0:2",
        metavar="LO:HI",
        help="integer example values are drawn from [LO, HI) (default 0:2)",
    )
    compile_.add_argument("--seed", type=int, default=0, help="seed of random example inputs")
    compile_.add_argument("--dtype", default="bitmod3", help="weight format (default bitmod3)")
    compile_.add_argument(
        "--group-size", type=int, default=128, help="weights per group along K (default 128)"
    )
    compile_.add_argument(
        "--scale-bits",
        type=int,
        default=8,
        help="bits of the second-level group scales (default 8)",
    )
    compile_.add_argument(
        "--kv-dtype", default="int8", help="run-time format of attention K/V (default int8)"
    )
    compile_.add_argument(
        "--kv-group-size",
        type=int,
        default=None,
        help="K/V group size along the reduction (default: --group-size)",
    )
    compile_.add_argument(
        "--layer",
        action="append",
        default=[],
        metavar="NAME=DTYPE",
        help="per-layer format or 'host' (NAME may be a glob); repeatable",
    )
    compile_.add_argument(
        "--pipeline",
        default=None,
        help="pass pipeline run on each op (default: bitmod-quantize, "
        "bitmod-tile for the hardware, bitmod-lower-to-isa)",
    )
    compile_.add_argument("--tiles", type=int, default=None, help="PE tiles (default 16)")
    compile_.add_argument("--rows", type=int, default=None, help="PE rows per tile (default 8)")
    compile_.add_argument("--cols", type=int, default=None, help="PE cols per tile (default 8)")
    compile_.add_argument(
        "--max-block-rows",
        type=int,
        default=None,
        help="rows of partial sums a column accumulator holds, the largest output block "
        f"(default {HardwareConfig.max_block_rows})",
    )
    compile_.add_argument("--quiet", action="store_true", help="do not print the report")
    compile_.add_argument("--device", default=None, help=_DEVICE_HELP)
    _add_progress_flags(compile_)

    compile_.add_argument(
        "--emit-verilog",
        metavar="DIR",
        help="also write the RTL designs of the example run (bitmod rtl-sim DIR)",
    )
    run = commands.add_parser("run", help="run a bundle on its saved example inputs")
    run.add_argument("bundle", metavar="BUNDLE")
    run.add_argument("--json", action="store_true", help="print the report as JSON")
    run.add_argument("--device", default=None, help=_DEVICE_HELP)

    report = commands.add_parser("report", help="print a bundle's saved report")
    report.add_argument("bundle", metavar="BUNDLE")
    report.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_run_mlir_parser(commands)
    from bitmod.backends.rtl.cli import add_commands

    add_commands(commands)

    from bitmod.compiler.llm.cli import add_eval_parser

    add_eval_parser(commands)  # `bitmod eval`: its own module, compiler/llm/cli.py
    from bitmod.compiler.search.cli import add_search_parsers

    add_search_parsers(commands)  # `bitmod optimize`, `bitmod search`: compiler/search/cli.py
    return parser


_RUN_MLIR_DESCRIPTION = """\
Run a function of a module lowered by bitmod-opt (bitmod-opt model.mlir
--pipeline=bitmod-default -o LOWERED.mlir): its host ops in torch, its
bsisa.launch ops on the bit-exact emulator. Prints cycles and energy per launch
and in total, and the results' dtypes and shapes (--json: as JSON).

Inputs: INPUTS.safetensors holds one tensor per argument of the function, named
by position arg0, arg1, ... (the %arg0, %arg1 torch-mlir prints), each of
exactly its argument's shape and dtype (tensor<2x8xf32>: float32 [2, 8]); a
missing, extra or mismatched tensor is an error naming it.

Outputs (-o): the function's results as the tensors result0, result1, ... of
one safetensors file, written atomically (nothing is written on an error).

The parameter archive is the one the module's bitmod.params attribute names,
relative to the IR file (bitmod-opt -o OUT.mlir writes OUT.params.safetensors),
or --params ARCHIVE; either must be the archive the IR was written with (its
SHA-256 is the module's bitmod.params_sha256)."""


def _add_run_mlir_parser(commands: Any) -> None:
    """Register ``run-mlir`` on the ``bitmod`` command's subparsers."""
    parser = commands.add_parser(
        "run-mlir",
        help="run a module lowered by bitmod-opt on inputs from a safetensors file",
        description=_RUN_MLIR_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("module", metavar="LOWERED.mlir", help="IR written by bitmod-opt")
    parser.add_argument(
        "--params",
        metavar="ARCHIVE",
        help="parameter archive (default: the one the module names, next to it)",
    )
    parser.add_argument(
        "--inputs",
        metavar="INPUTS.safetensors",
        help="the arguments as tensors arg0, arg1, ... (needed unless the function takes none)",
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUTPUTS.safetensors",
        help="write the results as tensors result0, result1, ...",
    )
    parser.add_argument(
        "--func", default="main", metavar="NAME", help="the function to run (default main)"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    _add_progress_flags(parser)


def _add_progress_flags(parser: argparse.ArgumentParser) -> None:
    """``--progress`` / ``--no-progress`` (``args.progress``: True, False or None, the default:
    a bar as :func:`bitmod.runtime.progress.show_progress` decides)."""
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="always show the progress bar",
    )
    progress.add_argument(
        "--no-progress", dest="progress", action="store_false", help="never show the progress bar"
    )


# --- helpers -------------------------------------------------------------------------------------


def _load_module(path_text: str) -> Any:
    path = Path(path_text)
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    name = f"_bitmod_model_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CliError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)  # so the model file can import its neighbours
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SystemExit as error:
        sys.modules.pop(name, None)
        raise CliError(f"{path}: importing it called sys.exit({error.code!r})") from None
    except Exception as error:  # noqa: BLE001 - any failure in user code is reported
        sys.modules.pop(name, None)
        raise CliError(f"{path}: importing it failed: {type(error).__name__}: {error}") from error
    finally:
        sys.path.remove(folder)
    return module


def _function(module: Any, name: str, path: str) -> Callable[..., Any]:
    function = getattr(module, name, None)
    if function is None:
        defined = sorted(
            n
            for n, v in vars(module).items()
            if callable(v)
            and not n.startswith("_")
            and getattr(v, "__module__", None) == module.__name__
        )
        raise CliError(f"{path} has no function {name!r} (it defines: {', '.join(defined)})")
    if not callable(function):
        raise CliError(f"{path}: {name!r} is not a function")
    return function


def _call(function: Callable[..., Any], what: str) -> Any:
    try:
        return function()
    except SystemExit as error:  # the user's code ended the process: not a model
        raise CliError(f"{what} called sys.exit({error.code!r}) instead of returning") from None
    except Exception as error:  # noqa: BLE001
        raise CliError(f"{what} failed: {type(error).__name__}: {error}") from error


def _parse_shape(text: str) -> tuple[tuple[int, ...], str]:
    dims_text, _, dtype = text.partition(":")
    dtype = dtype or "float32"
    if dtype not in _DTYPES:
        raise CliError(
            f"--example-shape {text!r}: unknown dtype {dtype!r} (one of {', '.join(_DTYPES)})"
        )
    try:
        dims = tuple(int(d) for d in dims_text.lower().split("x"))
    except ValueError:
        dims = ()
    if not dims or any(d <= 0 for d in dims):
        raise CliError(f"--example-shape {text!r}: expected positive dimensions like 1x16")
    return dims, dtype


def _parse_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition(":")
    try:
        bounds = (int(low), int(high))
    except ValueError:
        bounds = None
    if not sep or bounds is None or bounds[0] >= bounds[1]:
        raise CliError(f"--int-range {text!r}: expected LO:HI with LO < HI")
    return bounds


def _random_inputs(shapes: Sequence[str], int_range: str, seed: int) -> tuple[Any, ...]:
    import torch

    low, high = _parse_range(int_range)
    generator = torch.Generator().manual_seed(seed)
    inputs = []
    for text in shapes:
        dims, dtype_name = _parse_shape(text)
        dtype = getattr(torch, dtype_name)
        try:
            if dtype.is_floating_point:
                inputs.append(torch.randn(dims, generator=generator).to(dtype))
            elif dtype == torch.bool:
                inputs.append(torch.randint(0, 2, dims, generator=generator).bool())
            else:
                inputs.append(torch.randint(low, high, dims, generator=generator).to(dtype))
        except (RuntimeError, MemoryError):  # torch reports a failed allocation as either
            elements = math.prod(dims)
            raise CliError(
                f"--example-shape {text!r}: cannot allocate an example of {elements:,} elements "
                f"({elements * 4 / 2**30:,.1f} GiB as float32)"
            ) from None
    return tuple(inputs)


def _layers(entries: Sequence[str]) -> dict[str, str]:
    try:
        return parse_key_values(entries, what="NAME=DTYPE")
    except KeyValueError as error:
        raise CliError(f"--layer: {error} (e.g. lm_head=int8)") from None


# --- commands ------------------------------------------------------------------------------------


def _compile(args: argparse.Namespace) -> int:
    spec = args.model
    path, sep, factory_name = spec.rpartition(":")
    if not sep or not path or not factory_name:
        raise CliError(f"{spec!r}: expected MODEL.py:FACTORY (a file and a function in it)")
    layers = _layers(args.layer)
    if args.example_shape:
        for text in args.example_shape:
            _parse_shape(text)  # syntax errors before the slow imports
        _parse_range(args.int_range)
    if args.emit_verilog:
        design, bundle = (Path(os.path.abspath(p)) for p in (args.emit_verilog, args.output))
        if design == bundle or bundle in design.parents or design in bundle.parents:
            raise CliError(
                f"--emit-verilog {args.emit_verilog} and -o {args.output} overlap: the bundle "
                f"directory is replaced as a whole, so give the design a directory outside it"
            )
    if args.emit_verilog and Path(args.emit_verilog).exists():
        raise CliError(
            f"{args.emit_verilog}: already exists (--emit-verilog writes a new directory)"
        )
    module = _load_module(path)
    factory = _function(module, factory_name, path)

    import torch
    from bitmod.compiler.api import compile as compile_model
    from bitmod.runtime.arch.hwconfig import HardwareConfig

    model = _call(factory, f"{path}:{factory_name}()")
    if not isinstance(model, torch.nn.Module):
        raise CliError(
            f"{path}:{factory_name}() returned a {type(model).__name__}, not a torch.nn.Module"
        )
    if args.example:
        example = _call(_function(module, args.example, path), f"{path}:{args.example}()")
        example_args = example if isinstance(example, tuple | list) else (example,)
    else:
        example_args = _random_inputs(args.example_shape, args.int_range, args.seed)
    chosen = {
        k: v
        for k in ("rows", "cols", "tiles", "max_block_rows")
        if (v := getattr(args, k)) is not None
    }
    try:
        hardware = HardwareConfig(**chosen)
    except ValueError as error:
        raise CliError(str(error)) from None
    with _torch_logging_silenced():
        compiled = compile_model(
            model,
            tuple(example_args),
            dtype=args.dtype,
            group_size=args.group_size,
            scale_bits=args.scale_bits,
            pipeline=args.pipeline,
            layers=layers or None,
            kv_dtype=args.kv_dtype,
            kv_group_size=args.kv_group_size,
            hardware=hardware,
            progress=args.progress,
            device=args.device,
        )
    if args.emit_verilog:  # before the bundle: a failure leaves neither
        from bitmod.backends.rtl.emit import emit_compiled

        emit_compiled(compiled, tuple(example_args), args.emit_verilog)
    try:
        if not args.quiet:  # before the bundle, too: unwritable stdout leaves nothing
            print_out(compiled.report().format())
        bundle = compiled.save(args.output)
    except BaseException:
        if args.emit_verilog:
            shutil.rmtree(args.emit_verilog, ignore_errors=True)
        raise
    programs = len(compiled.ops)
    size = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file())
    print_out(f"bitmod: wrote {bundle} ({programs} programs, {size / 1024:.1f} KiB)")
    return 0


@contextmanager
def _torch_logging_silenced() -> Iterator[None]:
    """torch's tracer logs the traceback of a shape error it then raises (``failed while
    attempting to run meta for aten.mm``); the error comes back as one line, so its log
    records are dropped while the model is traced and compiled."""
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def _run(args: argparse.Namespace) -> int:
    from bitmod.compiler.api import load

    compiled = load(args.bundle, device=args.device)
    compiled.run(compiled.example_inputs, label="the saved example inputs")
    report = compiled.report()
    print_out(json.dumps(report.to_json(), indent=1) if args.json else report.format())
    return 0


def _report(args: argparse.Namespace) -> int:
    from bitmod.compiler.api import ModelReport, check_bundle_files

    path = Path(args.bundle) / "report.json"
    if not path.is_file():
        raise CliError(f"{path}: no such file (is {args.bundle} a bitmod bundle?)")
    manifest_path = Path(args.bundle) / "manifest.json"
    if manifest_path.is_file():  # a bundle: its report is the one saved with it
        try:
            manifest = parse_json(manifest_path.read_bytes())
        except JsonError as error:
            raise CliError(f"{manifest_path}: not valid JSON ({error})") from None
        if isinstance(manifest, dict) and "checksums" in manifest:
            check_bundle_files(Path(args.bundle), manifest, ["report.json"])
    try:
        data = parse_json(path.read_bytes())
    except JsonError as error:
        raise CliError(f"{path}: not a bitmod report ({error})") from None
    report = ModelReport.from_json(data, str(path))
    print_out(json.dumps(data, indent=1) if args.json else report.format())
    return 0


def _run_mlir(args: argparse.Namespace) -> int:
    ir_path = Path(args.module)
    _require_file(ir_path, "LOWERED.mlir")
    for given, what in ((args.inputs, "--inputs"), (args.params, "--params")):
        if given is not None:
            _require_file(Path(given), what)
    output = None if args.output is None else Path(args.output)
    if output is not None:  # before the slow imports
        sources = [(ir_path, "LOWERED.mlir"), (args.inputs, "--inputs"), (args.params, "--params")]
        _refuse_overwrite(output, sources)

    import torch
    from bitmod.compiler.module_runner import argument_types, function_op, run_function
    from bitmod.dialects.diagnostics import DiagnosticError

    try:
        ctx, module = _load_lowered(ir_path, args.params)
        if output is not None and ctx.params_archive is not None:
            archive = ctx.params_archive.path
            _refuse_overwrite(output, [(archive, "the parameter archive")])
        func = function_op(module, args.func)
        launches = _check_lowered(ctx, ir_path, func)
        inputs = _read_inputs(args.inputs, ir_path, args.func, argument_types(func))
        with _launch_bar(args.progress, launches) as on_launch:
            run = run_function(ctx, module, inputs, function=args.func, on_launch=on_launch)
    except DiagnosticError as error:
        raise CliError(_diagnostic_text(error, str(ir_path))) from error
    results = {
        f"result{index}": torch.as_tensor(value).detach().contiguous().clone()
        for index, value in enumerate(run.outputs)
    }
    staged = None
    if output is not None:  # staged now, put in place once the summary is printed
        from bitmod.runtime.storage.fileio import stage
        from safetensors.torch import save_file

        staged = stage(output, lambda path: save_file(results, str(path)))
    try:
        _print_run(args, ir_path, ctx, output, run, results, launches)
        if staged is not None:
            staged.commit()
    finally:
        if staged is not None:
            staged.discard()
    if output is not None and not args.json:
        print_out(f"bitmod: wrote {output} ({', '.join(results) or 'no results'})")
    return 0


def _print_run(
    args: argparse.Namespace,
    ir_path: Path,
    ctx: Any,
    output: Path | None,
    run: Any,
    results: Mapping[str, Any],
    launches: Any,
) -> None:
    summary = {
        "module": str(ir_path),
        "function": args.func,
        "params": None if ctx.params_archive is None else str(ctx.params_archive.path),
        "inputs": args.inputs,
        "output": None if output is None else str(output),
        **_run_summary(run.stats, results, launches),
    }
    print_out(json.dumps(summary, indent=1) if args.json else _format_run(summary))


@contextmanager
def _launch_bar(progress: bool | None, launches: int) -> Iterator[Callable[[str], None]]:
    """A tqdm bar on stderr over the ``launches`` of a run (``progress`` as
    :func:`_add_progress_flags` documents); yields the ``on_launch`` hook that advances it."""
    from bitmod.runtime.progress import show_progress
    from tqdm import tqdm

    show = show_progress(progress, launches)
    bar = tqdm(
        total=launches, desc="bitmod run-mlir", unit="launch", disable=not show, file=sys.stderr
    )

    def advance(name: str) -> None:
        bar.set_postfix_str(name, refresh=False)
        bar.update()

    try:
        yield advance
    finally:
        bar.close()


def _require_file(path: Path, what: str) -> None:
    if path.is_dir():
        hint = " (for a bundle directory: bitmod run DIR)" if what == "LOWERED.mlir" else ""
        raise CliError(f"{path}: is a directory, {what} must be a file{hint}")
    if not path.is_file():
        if path.exists():  # a device, a FIFO: not a file the reader can seek in
            raise CliError(f"{path}: not a regular file ({what})")
        raise CliError(f"{path}: no such file ({what})")


def _refuse_overwrite(output: Path, sources: Sequence[tuple[str | Path | None, str]]) -> None:
    """A CliError if ``-o`` names one of the files the command reads."""
    for source, what in sources:
        if source is not None and os.path.realpath(output) == os.path.realpath(source):
            raise CliError(f"-o {output}: is {what}, which the command reads; give another file")


def _load_lowered(ir_path: Path, params: str | None) -> tuple[Any, Any]:
    """Parse the IR file and load its parameter archive (``params``, else the one it names),
    checking the archive's SHA-256 against the module's pin; DiagnosticError on a problem."""
    from bitmod.compiler.ir_io import parse_module
    from bitmod.passes.context import PARAMS_ATTR, load_archive, make_context
    from xdsl.dialects.builtin import StringAttr

    try:
        text = ir_path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise CliError(f"{ir_path}: not MLIR text (it is not UTF-8)") from None
    ctx = make_context()
    module = parse_module(ctx, text, str(ir_path))
    if params is not None:  # an absolute name: load_archive joins it to the IR's directory
        module.attributes[PARAMS_ATTR] = StringAttr(os.path.abspath(params))
    load_archive(ctx, module, ir_path.resolve().parent)
    return ctx, module


def _check_lowered(ctx: Any, ir_path: Path, func: Any) -> int:
    """The number of ``bsisa.launch`` ops of ``func``, or a CliError naming the passes still
    to run when it is not lowered to the ISA: tiled or quantized matmuls left (a partial
    pipeline), or linear layers among its linalg products and no ``bsisa.launch`` (torch-mlir's
    own output). A float ``bitmod.matmul`` next to launches is a host op; a function with no
    linear layer at all (no product, or only products that are not linear layers, which
    ``convert-linalg-to-bitmod`` leaves alone) has nothing to offload and runs on the host
    (0 launches)."""
    from bitmod.dialects.bitmod import MatmulOp
    from bitmod.dialects.diagnostics import location_of
    from bitmod.passes.bitmod_tile import tile_options
    from bitmod.passes.context import machine_of
    from bitmod.passes.stages import unconverted_layers
    from xdsl.dialects.builtin import ModuleOp, TensorType

    ops = list(func.walk())
    tiled = [op for op in ops if op.name == "bsisa.tiled_matmul"]
    matmuls = [op for op in ops if isinstance(op, MatmulOp)]
    quantized = [op for op in matmuls if not isinstance(op.weight.type, TensorType)]
    if tiled:
        op, passes = tiled[0], "-p bitmod-lower-to-isa"
        why = f"{len(tiled)} bsisa.tiled_matmul op(s) are not lowered to launches"
    elif quantized:
        module = func.parent_op()
        recorded = machine_of(module) if isinstance(module, ModuleOp) else None
        passes = "-p bitmod-tile,bitmod-lower-to-isa"
        if recorded is not None:  # tile for the machine its other programs were tiled for
            passes = f"-p '{tile_options(recorded)},bitmod-lower-to-isa'"
        op = quantized[0]
        why = f"{len(quantized)} quantized bitmod.matmul op(s) are not tiled"
    elif launches := sum(1 for op in ops if op.name == "bsisa.launch"):
        return launches
    elif matmuls:
        op, passes = matmuls[0], "-p bitmod-quantize,bitmod-tile,bitmod-lower-to-isa"
        why = f"it has no bsisa.launch op and {len(matmuls)} float bitmod.matmul op(s)"
    elif layers := unconverted_layers(ctx, ops):
        op, passes = layers[0], "--pipeline=bitmod-default"
        why = (
            f"it has no bsisa.launch op and {len(layers)} linear layer(s) among its linalg "
            "products (is it torch-mlir's output, not bitmod-opt's?)"
        )
    else:
        return 0
    location = location_of(op) or ir_path
    lowered = ir_path.with_name(f"{ir_path.stem}.lowered.mlir")
    raise CliError(
        f"{location}: @{func.sym_name.data} is not a lowered module: {why}; lower it first: "
        f"bitmod-opt {ir_path} {passes} -o {lowered}"
    )


def _type_text(shape: Sequence[int], dtype: Any) -> str:
    """``float32 [2, 8]``."""
    from bitmod.compiler.host import dtype_name

    return f"{dtype_name(dtype)} {list(shape)}"


def _read_inputs(
    path: str | None, ir_path: Path, function: str, types: Sequence[tuple[Any, Any]]
) -> list[Any]:
    """The tensors ``arg0``, ``arg1``, ... of the safetensors file ``path``, checked against
    the argument types of ``function``; a CliError naming the first tensor that is missing,
    extra or not of its argument's shape and dtype."""
    names = [f"arg{index}" for index in range(len(types))]
    signature = ", ".join(f"{n}: {_type_text(*t)}" for n, t in zip(names, types, strict=True))
    if path is None:
        if types:
            count = f"{len(types)} argument{'s' if len(types) > 1 else ''}"
            raise CliError(
                f"{ir_path}: @{function} takes {count} ({signature}): give --inputs "
                "FILE.safetensors with one tensor of each name"
            )
        return []
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(path)
    except SafetensorError as error:
        raise CliError(f"{path}: not a safetensors file ({error})") from None
    takes = f"@{function} takes {signature or 'no arguments'}"
    for name in tensors:
        if name not in names:
            raise CliError(
                f"{path}: tensor {name!r} is not an argument of @{function} ({takes}; inputs "
                "are named arg0, arg1, ... by position)"
            )
    for index, (name, (shape, dtype)) in enumerate(zip(names, types, strict=True)):
        if name not in tensors:
            raise CliError(
                f"{path}: no tensor {name!r} for argument {index} of @{function} "
                f"({_type_text(shape, dtype)})"
            )
        tensor = tensors[name]
        if tensor.dtype != dtype or tuple(tensor.shape) != tuple(shape):
            raise CliError(
                f"{path}: tensor {name!r} is {_type_text(tensor.shape, tensor.dtype)}, argument "
                f"{index} of @{function} takes {_type_text(shape, dtype)}"
            )
    return [tensors[name] for name in names]


def _diagnostic_text(error: DiagnosticError, default_file: str) -> str:
    """A DiagnosticError as ``FILE:LINE:COL: 'op' op MESSAGE`` (one line)."""
    where = str(error.location) if error.location is not None else default_file
    subject = f"'{error.op.name}' op " if error.op is not None else ""
    return f"{where}: {subject}{' '.join(str(error.message).split())}"


def _run_summary(
    stats: Mapping[str, Any], results: Mapping[str, Any], launches: int
) -> dict[str, Any]:
    """What ``run-mlir`` reports of a :class:`~bitmod.compiler.module_runner.ModuleRun`: per
    launch (by the name of its weight, as ``ModuleRun.stats``) its
    :class:`~bitmod.compiler.offload.OpStats` as JSON, their sums (and the number of
    ``bsisa.launch`` ops, ``launches``), and each result's name, dtype and shape."""
    from bitmod.compiler.host import dtype_name

    energy: dict[str, float] = {}
    for op in stats.values():
        for part, value in op.energy_pj.items():
            energy[part] = energy.get(part, 0.0) + value
    total = {
        "launches": launches,
        "runs": sum(op.runs for op in stats.values()),
        "cycles": sum(op.cycles for op in stats.values()),
        "macs": sum(op.macs for op in stats.values()),
        "dram_bytes": sum(op.dram_bytes for op in stats.values()),
        "energy_pj": energy,
        "energy_total_pj": sum(op.energy_total_pj for op in stats.values()),
    }
    outputs = [
        {"name": name, "dtype": dtype_name(value.dtype), "shape": list(value.shape)}
        for name, value in results.items()
    ]
    return {
        "total": total,
        "launches": {name: op.to_json() for name, op in stats.items()},
        "outputs": outputs,
    }


def _format_run(summary: Mapping[str, Any]) -> str:
    """The text form of a ``run-mlir`` summary: totals, one line per launch, the results."""
    total = summary["total"]
    lines = [
        f"bitmod run-mlir: @{summary['function']} of {summary['module']} "
        f"({total['launches']} launches, {total['runs']} accelerator runs)",
        f"  cycles {total['cycles']:,d}, energy {total['energy_total_pj'] / 1e6:.4f} uJ, "
        f"MACs {total['macs']:,d}, DRAM {total['dram_bytes']:,d} B",
        "",
    ]
    if summary["launches"]:
        lines.append(f"  {'launch':<28} {'runs':>5} {'cycles':>12} {'energy uJ':>10} {'MACs':>14}")
    else:
        lines.append("  no bsisa.launch: nothing to offload, every op ran on the host")
    for name, op in summary["launches"].items():
        lines.append(
            f"  {name:<28} {op['runs']:>5} {op['cycles']:>12,d} "
            f"{op['energy_total_pj'] / 1e6:>10.4f} {op['macs']:>14,d}"
        )
    lines.append("")
    for result in summary["outputs"]:
        lines.append(f"  {result['name']:<10} {result['dtype']} {result['shape']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bitmod`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    from bitmod.backends.rtl.cli import rtl_sim
    from bitmod.compiler.llm.cli import run_eval
    from bitmod.compiler.search.cli import run_optimize, run_search

    commands = {
        "compile": _compile,
        "run": _run,
        "report": _report,
        "run-mlir": _run_mlir,
        "eval": run_eval,
        "rtl-sim": rtl_sim,
        "optimize": run_optimize,
        "search": run_search,
    }
    return run_console(lambda: _command(commands[args.command], args))


def _command(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return command(args)
    except BrokenPipeError:
        raise  # the reader of stdout went away: run_console ends quietly
    except Exception as error:  # noqa: BLE001 - every failure becomes one line
        if args.debug:
            traceback.print_exc()
        if isinstance(error, OSError):
            where = f"{error.filename}: " if error.filename else ""
            message = f"{where}{error.strerror or error}"
        elif not isinstance(error, CliError | ValueError):
            message = f"internal error: {type(error).__name__}: {error} (rerun with --debug)"
        else:
            message = str(error)
        print(
            f"bitmod: error: {message.splitlines()[0] if message else type(error).__name__}",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
