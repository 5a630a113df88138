"""What the console tools share: a standard output that may be closed, or a pipe whose
reader has gone (``bitmod report --json | head``)."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from typing import TextIO

__all__ = ["EXIT_BROKEN_PIPE", "print_out", "run_console", "stdout", "write_stdout"]

EXIT_BROKEN_PIPE = 1
"""Exit status when the reader of standard output went away (Python's documented advice)."""


def stdout() -> TextIO:
    """``sys.stdout``; OSError (EBADF) if the process was started with it closed."""
    if sys.stdout is None:
        raise OSError(errno.EBADF, "standard output is closed")
    return sys.stdout


def write_stdout(data: str | bytes) -> None:
    """Write ``data`` (text, or bytes as they are) to standard output and flush it."""
    stream = stdout()
    if isinstance(data, bytes):
        stream.flush()
        stream.buffer.write(data)
    else:
        stream.write(data)
    stream.flush()


def print_out(text: str, end: str = "\n") -> None:
    """Print ``text`` to standard output and flush it now, so that a failure (a full disk
    behind ``> FILE``, a closed descriptor) comes while the command can still undo what it
    has not yet written; the OSError then names standard output."""
    try:
        write_stdout(text + end)
    except BrokenPipeError:
        raise  # run_console ends quietly
    except OSError as error:
        reason = error.strerror or str(error)
        if error.filename is None and "standard output" not in reason:
            raise OSError(error.errno, reason, "standard output") from None
        raise


def run_console(command: Callable[[], int]) -> int:
    """Run a tool's command and flush its output; if the reader of standard output has gone
    (a ``BrokenPipeError``), stop quietly with :data:`EXIT_BROKEN_PIPE` instead of a traceback,
    as a tool killed by SIGPIPE would."""
    try:
        status = command()
        if sys.stdout is not None:
            sys.stdout.flush()
        return status
    except BrokenPipeError:
        # Python flushes stdout again at exit: point it at /dev/null so that cannot fail.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (AttributeError, OSError, ValueError):
            pass
        return EXIT_BROKEN_PIPE
