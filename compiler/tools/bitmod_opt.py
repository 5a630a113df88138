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
import stat
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
from bitmod.compiler.tools.console import run_console, write_stdout
from bitmod.dialects.diagnostics import (
    DiagnosticError,
    DiagnosticWarning,
    SourceLocation,
    error_at,
)
from bitmod.passes import ALL_PASSES
from bitmod.passes.context import (
    PARAMS_ATTR,
    PARAMS_HASH_ATTR,
    BitmodContext,
    load_archive,
    machine_of,
    make_context,
)
from bitmod.runtime.storage.fileio import (
    Staged,
    check_file_path,
    commit_all,
    file_sha256,
    os_error_reason,
    stage,
)
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
        choices=("mlir", "asm", "bin", "verilog"),
        default="mlir",
        help="mlir: the module; asm: bsisa text assembly; bin: bsisa binary; verilog: an RTL "
        "design directory (-o DIR; bitmod rtl-sim DIR)",
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


def _writes_through(path: str) -> bool:
    """``-o`` names a character device or FIFO (``/dev/null``, a named pipe)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def _archive_output(args: argparse.Namespace) -> Path | None:
    if args.params is not None:
        return Path(args.params)
    if args.output is not None and not _writes_through(args.output):
        output = Path(args.output)
        return output.with_name(output.stem + PARAMS_SUFFIX)
    return None


def _relative_name(archive_path: Path, output: str | None) -> str:
    """How the output IR names the archive: relative to the output's directory (to the
    working directory for stdout, a device or a pipe)."""
    if output is None or _writes_through(output):
        base = Path.cwd()
    else:
        base = Path(output).resolve().parent
    return os.path.relpath(archive_path.resolve(), base)


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


def _emit_verilog(
    ctx: BitmodContext, module: ModuleOp, output: str | None, pipeline: PassPipeline
) -> None:
    if output is None:
        raise error_at(module, "--emit=verilog writes a directory: give -o DIR")
    from bitmod.backends.rtl.emit import emit_module, tiled_config

    # The machine the programs were tiled for: recorded by bitmod-tile (in this pipeline or an
    # earlier run); a module without the record has its pipeline's bitmod-tile options.
    tile = next((p for p in pipeline.passes if p.name == "bitmod-tile"), None)
    config = machine_of(module) or tiled_config(tile)
    try:
        emit_module(module, ctx.params_archive, output, config)
    except ValueError as error:
        raise error_at(module, f"--emit=verilog: {error}") from None
    except OSError as error:
        raise error_at(
            module, f"--emit=verilog: cannot write {output}: {os_error_reason(error)}"
        ) from None


def _compile(
    args: argparse.Namespace,
    pipeline: PassPipeline,
    text: str,
    source_name: str,
    base_dir: Path,
    staged: list[Staged] | None,
) -> bytes:
    """Parse ``text``, run the passes and emit. With ``staged`` (not None) the parameter
    archive is written to a temporary and appended to it, for :func:`run` to put in place
    together with the output; without, no archive is written (a chunk of a split file)."""
    ctx = make_context(allow_unregistered=args.allow_unregistered_dialect)
    archive_path = _archive_output(args) if staged is not None else None
    if archive_path is not None:
        ctx.params_name = _relative_name(archive_path, args.output)
    else:
        stem = "stdin" if args.input == "-" else Path(args.input).stem
        ctx.params_name = stem + PARAMS_SUFFIX

    module = parse_module(ctx, text, source_name)
    load_archive(ctx, module, base_dir)
    _run_passes(ctx, module, pipeline)

    if args.emit == "verilog":  # a design directory (bitmod.backends.rtl.emit)
        _emit_verilog(ctx, module, args.output, pipeline)
        return b""
    has_archive = PARAMS_ATTR in module.attributes
    # The input's pin names the archive it was read with; the output gets its own.
    module.attributes.pop(PARAMS_HASH_ATTR, None)
    if has_archive and archive_path is not None and staged is not None:
        staged.append(_stage_archive(ctx, module, archive_path))
    elif has_archive and pipeline.passes and staged is not None:
        give = "give -o OUT or --params PATH" if args.output is None else "give --params PATH"
        print(f"bitmod-opt: note: parameter archive not written ({give})", file=sys.stderr)
    return _emit(ctx, module, args.emit, args.print_op_generic)


def run(args: argparse.Namespace) -> None:
    """Everything after argument parsing; raises DiagnosticError on any user error."""
    pipeline_text = _pipeline_text(args)
    pipeline = build_pipeline(pipeline_text) if pipeline_text else PassPipeline(())

    text, source_name, base_dir = _read_input(args.input)
    staged: list[Staged] = []
    try:
        if args.split_input_file or args.verify_diagnostics:
            if args.emit in ("bin", "verilog"):
                raise DiagnosticError(
                    "--split-input-file / --verify-diagnostics print text: use --emit=mlir or asm",
                    location=SourceLocation(source_name, 1, 1),
                )
            data = process_chunks(
                text,
                source_name,
                lambda chunk: _compile(args, pipeline, chunk, source_name, base_dir, None),
                split=args.split_input_file,
                verify=args.verify_diagnostics,
            )
        else:
            data = _compile(args, pipeline, text, source_name, base_dir, staged)
            if args.emit == "verilog":
                return  # _compile wrote the design directory (or nothing, on an error)
        if args.output is not None:
            staged.append(_stage(args.output, "output", lambda path: path.write_bytes(data)))
        # The IR goes last: until it is in place, the old IR (if any) still pins the old
        # archive by hash, and a mismatched pair is an error when it is read.
        try:
            commit_all(staged)
        except OSError as error:
            raise DiagnosticError(
                f"cannot write {error.filename}: {error.strerror}",
                location=SourceLocation(str(error.filename), 1, 1),
            ) from None
    finally:
        for leftover in staged:
            leftover.discard()
    if args.output is None:
        try:
            write_stdout(data)
        except BrokenPipeError:
            raise  # the reader went away: run_console ends the run quietly
        except OSError as error:
            raise DiagnosticError(
                f"cannot write output: {os_error_reason(error)}",
                location=SourceLocation("<stdout>", 1, 1),
            ) from None


def _stage(path: str | Path, what: str, write: Callable[[Path], None]) -> Staged:
    try:
        return stage(path, write)
    except OSError as error:
        raise DiagnosticError(
            f"cannot write {what}: {os_error_reason(error, path)}",
            location=SourceLocation(str(path), 1, 1),
        ) from None


def _stage_archive(ctx: BitmodContext, module: ModuleOp, archive_path: Path) -> Staged:
    """The archive written to a temporary, and the module naming it and pinning its hash."""
    if ctx.params_archive is None:
        raise error_at(module, f"{PARAMS_ATTR} names an archive, but none was loaded")
    staged = _stage(archive_path, "parameter archive", ctx.params_archive.save)
    module.attributes[PARAMS_ATTR] = StringAttr(ctx.params_name)
    module.attributes[PARAMS_HASH_ATTR] = StringAttr(file_sha256(staged.temporary))
    return staged


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
    parser = _argument_parser()
    args = parser.parse_args(argv)
    if args.list_passes:
        return run_console(lambda: _list(parser))
    for flag, path in (("-o", args.output), ("--params", args.params)):
        if path is None or (flag == "-o" and args.emit == "verilog"):
            continue
        try:
            check_file_path(path)
        except OSError as error:
            parser.error(f"{flag} {path!r}: {os_error_reason(error, path)}")
    if args.output is not None and args.params is not None:
        if os.path.realpath(args.output) == os.path.realpath(args.params):
            parser.error(f"-o and --params name the same file ({args.output})")
    return run_console(lambda: _main(args))


def _list(parser: argparse.ArgumentParser) -> int:
    try:
        write_stdout(list_passes())
    except BrokenPipeError:
        raise
    except OSError as error:
        parser.exit(
            EXIT_ERROR, f"{parser.prog}: error: cannot list passes: {os_error_reason(error)}\n"
        )
    return 0


def _main(args: argparse.Namespace) -> int:
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
    except BrokenPipeError:
        raise
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
