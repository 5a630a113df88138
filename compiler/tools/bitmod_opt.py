"""`bitmod-opt`: parse MLIR, run bitmod passes, print MLIR, ISA assembly or a binary.

Usage::

    bitmod-opt model.mlir -o model.bitmod.mlir \
        --pass-pipeline='builtin.module(convert-linalg-to-bitmod,bitmod-quantize{dtype=bitmod3})'
    bitmod-opt model.mlir -p 'convert-linalg-to-bitmod,bitmod-quantize{layers=fc1:int8}'
    bitmod-opt model.mlir --pipeline=bitmod-default --emit=bin -o model.bin
    cat model.mlir | bitmod-opt - -p convert-linalg-to-bitmod
    bitmod-opt --list-passes
    bitmod-opt invalid.mlir --split-input-file --verify-diagnostics

``--split-input-file`` and ``--verify-diagnostics`` work as in mlir-opt
(:mod:`bitmod.compiler.diagnostics_check`); each chunk is compiled on its own and writes no
parameter archive.

Parameter archive. Weights live in a safetensors archive next to the IR, named by the module
attribute ``bitmod.params`` (relative to the IR file; to the working directory for stdin).
The driver loads it into the compilation context (:mod:`bitmod.passes.context`) before the
passes run, and afterwards writes the archive to ``--params PATH`` or, with ``-o OUT``, next
to the output as ``<OUT without suffix>.params.safetensors``; the printed module's
``bitmod.params`` names that file. Printing to stdout without ``--params`` writes no
archive (a note on stderr says so when the passes changed it).

Errors. Every problem (unreadable or malformed input, failed verification, unknown pass, bad
option value, unknown dtype, shape mismatch, missing archive) is one line
``FILE:LINE:COL: error: MESSAGE`` on stderr naming the op, exit status 1, no traceback unless
``--debug``. Outputs are written to a temporary file and renamed, so a failed run never
leaves a partial ``-o`` file.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from bitmod.compiler.diagnostics_check import process_chunks
from bitmod.compiler.ir_io import parse_module, print_module, verify_module
from bitmod.compiler.pipelines import (
    PIPELINES,
    PassOption,
    build_pipeline,
    pass_options,
    pass_summary,
    preset,
)
from bitmod.dialects.diagnostics import (
    DiagnosticError,
    DiagnosticWarning,
    SourceLocation,
    error_at,
)
from bitmod.passes import ALL_PASSES
from bitmod.passes.context import PARAMS_ATTR, BitmodContext, make_context
from bitmod.runtime.storage.fileio import write_atomically
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.passes import ModulePass, PassPipeline
from xdsl.utils.exceptions import VerifyException

PARAMS_SUFFIX = ".params.safetensors"
EXIT_ERROR = 1


class _ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 1 like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def _argument_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="bitmod-opt",
        description="Run bitmod compiler passes on MLIR (torch-mlir linalg-on-tensors or "
        "bitmod IR).",
    )
    parser.add_argument("input", nargs="?", default="-", help="input .mlir file, '-' = stdin")
    pipeline = parser.add_mutually_exclusive_group()
    pipeline.add_argument(
        "--pass-pipeline",
        metavar="PIPELINE",
        help="mlir-opt syntax: 'builtin.module(a,b{opt=v})'",
    )
    pipeline.add_argument(
        "-p", "--passes", metavar="PIPELINE", help="xdsl-opt syntax: 'a,b{opt=v other=w}'"
    )
    pipeline.add_argument(
        "--pipeline",
        metavar="NAME",
        help=f"a named preset: {', '.join(PIPELINES)}",
    )
    parser.add_argument("-o", "--output", metavar="OUT", help="output file (default stdout)")
    parser.add_argument(
        "--emit",
        choices=("mlir", "asm", "bin"),
        default="mlir",
        help="mlir: the module; asm: bsisa text assembly; bin: bsisa binary",
    )
    parser.add_argument(
        "--params",
        metavar="PATH",
        help="where to write the parameter archive (default: next to -o)",
    )
    parser.add_argument(
        "--list-passes", action="store_true", help="list passes and presets, then exit"
    )
    parser.add_argument(
        "--allow-unregistered-dialect",
        action="store_true",
        help="accept ops of dialects the compiler does not know",
    )
    parser.add_argument(
        "--print-op-generic", action="store_true", help="print every op in the generic form"
    )
    parser.add_argument(
        "--split-input-file",
        action="store_true",
        help="compile each chunk between '// -----' lines on its own (no archive is written)",
    )
    parser.add_argument(
        "--verify-diagnostics",
        action="store_true",
        help="check the diagnostics against the input's expected-error comments "
        "(bitmod.compiler.diagnostics_check)",
    )
    parser.add_argument("--debug", action="store_true", help="print Python tracebacks with errors")
    return parser


def list_passes(available: dict[str, Callable[[], type[ModulePass]]] = ALL_PASSES) -> str:
    """The ``--list-passes`` text: every pass with its summary and options, then the presets.

    Everything comes from the pass classes (:func:`pass_options`, :func:`pass_summary`).
    """
    lines = ["passes:"]
    width = max(len(name) for name in available)
    for name, load in available.items():
        try:
            pass_class = load()
        except ImportError as error:
            lines.append(f"  {name:<{width}}  (not available: {error})")
            continue
        lines.append(f"  {name:<{width}}  {pass_summary(pass_class)}")
        for option in pass_options(pass_class):
            lines.append(f"      {option.name}: {_option_text(option)}")
    lines.append("pipelines (--pipeline=NAME):")
    for name, text in PIPELINES.items():
        lines.append(f"  {name}: {text}")
    return "\n".join(lines) + "\n"


def _option_text(option: PassOption) -> str:
    """``int = 8``: the type and the default as a pipeline would spell it."""
    default = option.spelled_default
    return option.type_text + (" (optional)" if default is None else f" = {default}")


def _pipeline_text(args: argparse.Namespace) -> str | None:
    if args.pipeline is not None:
        return preset(args.pipeline)
    return args.pass_pipeline if args.pass_pipeline is not None else args.passes


def _read_input(path: str) -> tuple[str, str, Path]:
    """(text, name used in diagnostics, directory relative archive names resolve in)."""
    if path == "-":
        return sys.stdin.read(), "<stdin>", Path.cwd()
    try:
        return Path(path).read_text(encoding="utf-8"), path, Path(path).resolve().parent
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise DiagnosticError(
            f"cannot read input: {reason}", location=SourceLocation(path, 1, 1)
        ) from None


def _archive_output(args: argparse.Namespace) -> Path | None:
    if args.params is not None:
        return Path(args.params)
    if args.output is not None:
        output = Path(args.output)
        return output.with_name(output.stem + PARAMS_SUFFIX)
    return None


def _relative_name(archive_path: Path, output: str | None) -> str:
    """How the output IR names the archive: relative to the output's directory."""
    base = Path(output).resolve().parent if output is not None else Path.cwd()
    return os.path.relpath(archive_path.resolve(), base)


def _load_archive(ctx: BitmodContext, module: ModuleOp, base_dir: Path) -> None:
    attr = module.attributes.get(PARAMS_ATTR)
    if attr is None:
        return
    if not isinstance(attr, StringAttr):
        raise error_at(module, f"attribute {PARAMS_ATTR} must be a string (a file name)")
    from bitmod.runtime.storage.archive import ArchiveError, ParamArchive

    try:
        ctx.archive = ParamArchive.load(base_dir / attr.data)
    except ArchiveError as error:
        raise error_at(module, str(error)) from None


def _run_passes(ctx: BitmodContext, module: ModuleOp, pipeline: PassPipeline) -> None:
    if not pipeline.passes:
        return
    for module_pass in pipeline.passes:
        try:
            module_pass.apply(ctx, module)
        except DiagnosticError:
            raise
        except VerifyException as error:
            raise error_at(module, f"{module_pass.name}: {error}") from None
        except ValueError as error:
            if not _is_archive_error(error):
                raise
            raise error_at(module, f"{module_pass.name}: {error}") from None
        verify_module(module)


def _is_archive_error(error: Exception) -> bool:
    # Only a pass that used the archive raises ArchiveError, and then the archive module (with
    # torch) is loaded; looking it up instead of importing it keeps torch out of runs that
    # never touch weights (parsing, tiling, lowering, emitting).
    archive = sys.modules.get("bitmod.runtime.storage.archive")
    return archive is not None and isinstance(error, archive.ArchiveError)


def _emit(ctx: BitmodContext, module: ModuleOp, emit: str, generic: bool = False) -> bytes:
    if emit == "mlir":
        return print_module(ctx, module, generic).encode("utf-8")
    try:
        from bitmod.backends.emit import module_to_program
    except ImportError as error:
        raise error_at(
            module, f"--emit={emit} needs bitmod.backends.emit, which is not available: {error}"
        ) from None
    try:
        program = module_to_program(module)
    except ValueError as error:
        raise error_at(module, f"--emit={emit}: {error}") from None
    return program.to_asm().encode("utf-8") if emit == "asm" else program.encode()


def _compile(
    args: argparse.Namespace,
    pipeline: PassPipeline,
    text: str,
    source_name: str,
    base_dir: Path,
    archive: bool,
) -> bytes:
    """Parse ``text``, run the passes and emit; writes the parameter archive if ``archive``."""
    ctx = make_context(allow_unregistered=args.allow_unregistered_dialect)
    archive_path = _archive_output(args) if archive else None
    if archive_path is not None:
        ctx.params_name = _relative_name(archive_path, args.output)
    else:
        stem = "stdin" if args.input == "-" else Path(args.input).stem
        ctx.params_name = stem + PARAMS_SUFFIX

    module = parse_module(ctx, text, source_name)
    _load_archive(ctx, module, base_dir)
    _run_passes(ctx, module, pipeline)

    has_archive = PARAMS_ATTR in module.attributes
    if has_archive and archive_path is not None:
        module.attributes[PARAMS_ATTR] = StringAttr(ctx.params_name)
    data = _emit(ctx, module, args.emit, args.print_op_generic)

    if has_archive and archive_path is not None:
        if ctx.params_archive is None:
            raise error_at(module, f"{PARAMS_ATTR} names an archive, but none was loaded")
        try:
            ctx.params_archive.save(archive_path)
        except OSError as error:
            raise DiagnosticError(
                f"cannot write parameter archive: {error.strerror or error}",
                location=SourceLocation(str(archive_path), 1, 1),
            ) from None
    elif has_archive and pipeline.passes and archive:
        print(
            "bitmod-opt: note: parameter archive not written (give -o OUT or --params PATH)",
            file=sys.stderr,
        )
    return data


def run(args: argparse.Namespace) -> None:
    """Everything after argument parsing; raises DiagnosticError on any user error."""
    pipeline_text = _pipeline_text(args)
    pipeline = build_pipeline(pipeline_text) if pipeline_text else PassPipeline(())

    text, source_name, base_dir = _read_input(args.input)
    if args.split_input_file or args.verify_diagnostics:
        if args.emit == "bin":
            raise DiagnosticError(
                "--split-input-file / --verify-diagnostics print text: use --emit=mlir or asm",
                location=SourceLocation(source_name, 1, 1),
            )
        data = process_chunks(
            text,
            source_name,
            lambda chunk: _compile(args, pipeline, chunk, source_name, base_dir, archive=False),
            split=args.split_input_file,
            verify=args.verify_diagnostics,
        )
    else:
        data = _compile(args, pipeline, text, source_name, base_dir, archive=True)

    if args.output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        write_atomically(Path(args.output), lambda temporary: temporary.write_bytes(data))
    except OSError as error:
        raise DiagnosticError(
            f"cannot write output: {error.strerror or error}",
            location=SourceLocation(args.output, 1, 1),
        ) from None


def _diagnostic_printer(show: Callable[..., None], source_name: str) -> Callable[..., None]:
    """A ``warnings.showwarning`` printing a pass's DiagnosticWarning as one located line."""

    def show_warning(
        message: Warning | str, category: type[Warning], *args: object, **kwargs: object
    ) -> None:
        if isinstance(message, DiagnosticWarning):
            print(message.render(source_name), file=sys.stderr)
        else:
            show(message, category, *args, **kwargs)

    return show_warning


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns (and exits with) 0 on success, 1 on any error."""
    args = _argument_parser().parse_args(argv)
    if args.list_passes:
        sys.stdout.write(list_passes())
        return 0
    source_name = "<stdin>" if args.input == "-" else args.input
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", DiagnosticWarning)
            warnings.showwarning = _diagnostic_printer(warnings.showwarning, source_name)
            run(args)
    except DiagnosticError as error:
        if args.debug:
            traceback.print_exc()
        print(error.render(source_name), file=sys.stderr)
        return EXIT_ERROR
    except Exception as error:  # a compiler bug: still one line unless --debug
        if args.debug:
            traceback.print_exc()
        internal = DiagnosticError(
            f"internal compiler error: {type(error).__name__}: {error} "
            "(rerun with --debug for a traceback)",
            location=SourceLocation(source_name, 0, 0),
        )
        print(internal.render(), file=sys.stderr)
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
