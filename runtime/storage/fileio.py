"""Writing files so that a reader (or a failed or killed run) never sees a partial one.

A file is first *staged* (:func:`stage`): written in full to a temporary file, then
*committed*: renamed onto its path, so a reader sees the old file or the new one. Several
files that belong together are all staged before any is committed (:func:`write_together`),
so a failure while writing any of them leaves none behind.

What the path is decides how it is written, deliberately:

* a regular file, or nothing yet: replaced by rename (the directories above it are created;
  one of them that exists but is not a directory is an error naming it);
* a symbolic link: followed; the file it points to is replaced, the link stays;
* a character device or a FIFO (``/dev/null``, ``/dev/stdout``, a named pipe): written
  through, since renaming a regular file over it would destroy the node;
* a directory or any other kind of file: an error (nothing is renamed over it).

Temporary files and directories are named ``.NAME.bitmod-tmp.PID.XXXXXXXX`` next to what
they become; those left by a run that was killed (its PID no longer runs) are removed the
next time something is written to the same name.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Staged",
    "check_directory_path",
    "check_file_path",
    "commit_all",
    "exchange",
    "file_sha256",
    "make_directory_beside",
    "os_error_reason",
    "stage",
    "write_atomically",
    "write_together",
]

TEMPORARY_MARK = ".bitmod-tmp."


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def default_mode(directory: bool = False) -> int:
    """The mode a plain ``open()`` (or ``mkdir``) gives under the current umask."""
    return (0o777 if directory else 0o666) & ~_umask()


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}{TEMPORARY_MARK}{os.getpid()}."


def _pid_is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def remove_stale_temporaries(path: Path) -> None:
    """Remove the temporaries of ``path`` that runs which no longer run left behind."""
    prefix = f".{path.name}{TEMPORARY_MARK}"
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        pid_text = entry.name[len(prefix) :].split(".", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        if _pid_is_running(int(pid_text)):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            Path(entry.path).unlink(missing_ok=True)


def _check_ancestors(path: Path) -> None:
    """NotADirectoryError naming the nearest existing ancestor of ``path`` if it is a file."""
    for ancestor in path.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(ancestor))
            return


def _check_parents(path: Path) -> None:
    """Create the directories above ``path``; NotADirectoryError naming one that is a file."""
    _check_ancestors(path)
    path.parent.mkdir(parents=True, exist_ok=True)


def _kind(path: Path) -> str:
    """``"new"``, ``"regular"`` or ``"through"`` (a character device or FIFO); OSError for a
    directory or another kind of file."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "new"  # (a file above it that is not a directory is found when it is made)
    if stat.S_ISREG(mode):
        return "regular"
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return "through"
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    raise OSError(errno.EINVAL, "Neither a regular file nor a character device or FIFO", str(path))


def check_file_path(path: str | Path) -> None:
    """Raise OSError (``filename`` = the offending path) for a path that cannot name a file to
    write: an empty one, one ending in ``/`` or naming a directory, one in a symbolic-link
    loop, one under a file that is not a directory. Checked before the work that the file is
    to hold, so a bad option fails at once."""
    text = os.fspath(path)
    if not text:
        raise OSError(errno.ENOENT, "the path is empty", text)
    if text.endswith(os.sep):
        raise IsADirectoryError(errno.EISDIR, "ends in '/', which names a directory", text)
    _check_existing(Path(text), directory=False)


def check_directory_path(path: str | Path) -> None:
    """As :func:`check_file_path`, for a directory to create or fill."""
    text = os.fspath(path)
    if not text:
        raise OSError(errno.ENOENT, "the path is empty", text)
    _check_existing(Path(text), directory=True)


def _check_existing(path: Path, directory: bool) -> None:
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(path)) from None
    else:
        if stat.S_ISDIR(mode) and not directory:
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISDIR(mode) and directory:
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
        return
    _check_ancestors(path)


def os_error_reason(error: OSError, path: str | Path | None = None) -> str:
    """The reason of an OSError, with the file it concerns unless that is ``path`` (and the
    directory, not the name, of a temporary beside the target)."""
    reason = error.strerror or str(error)
    if not error.filename:  # None, or the empty path itself
        return reason
    if TEMPORARY_MARK in os.fspath(error.filename):
        return f"in {Path(error.filename).parent}: {reason}"
    if path is not None and os.path.realpath(error.filename) == os.path.realpath(path):
        return reason
    return f"{error.filename}: {reason}"


@dataclass
class Staged:
    """A file written in full to :attr:`temporary`, waiting to be put at :attr:`target`."""

    target: Path
    """Where it goes: the path given, with symbolic links followed."""
    temporary: Path
    write_through: bool
    """The target is a character device or FIFO: copy the bytes in, do not rename."""

    def commit(self) -> None:
        """Put the file in place (then the temporary is gone); an OSError names the target."""
        try:
            if self.write_through:
                with open(self.temporary, "rb") as source, open(self.target, "wb") as sink:
                    shutil.copyfileobj(source, sink)
            else:
                os.replace(self.temporary, self.target)
        except OSError as error:
            raise OSError(error.errno, error.strerror, str(self.target)) from error
        finally:
            self.temporary.unlink(missing_ok=True)

    def discard(self) -> None:
        self.temporary.unlink(missing_ok=True)


def stage(path: str | Path, write: Callable[[Path], None]) -> Staged:
    """Let ``write`` fill a temporary file for ``path`` (module docstring for the kinds of
    path); raises OSError (with the offending path as ``filename``) and leaves nothing."""
    check_file_path(path)
    target = Path(os.path.realpath(path))
    kind = _kind(target)
    if kind == "through":
        handle, temporary = tempfile.mkstemp(prefix=f"bitmod-tmp.{os.getpid()}.")
    else:
        _check_parents(target)
        remove_stale_temporaries(target)
        handle, temporary = tempfile.mkstemp(prefix=_temporary_prefix(target), dir=target.parent)
    os.close(handle)
    staged = Staged(target, Path(temporary), write_through=kind == "through")
    try:
        write(staged.temporary)
        os.chmod(staged.temporary, default_mode())
    except BaseException:
        staged.discard()
        raise
    return staged


def commit_all(staged: Sequence[Staged]) -> None:
    """Put staged files in place in the order given; if one fails, the rest are discarded.

    (A kill between two commits can still leave the first new and the second old: a reader
    that must not pair them checks a content hash.)
    """
    try:
        for file in staged:
            file.commit()
    finally:
        for file in staged:
            file.discard()  # (nothing left to remove for those committed)


def write_together(files: Sequence[tuple[str | Path, Callable[[Path], None]]]) -> None:
    """Write several files that belong together: all are staged before the first is put in
    place, so an error while writing any of them leaves none of them changed."""
    staged: list[Staged] = []
    try:
        for path, write in files:
            staged.append(stage(path, write))
        commit_all(staged)
    finally:
        for file in staged:
            file.discard()


def write_atomically(path: str | Path, write: Callable[[Path], None]) -> None:
    """Let ``write`` fill a temporary file, then put it at ``path`` (module docstring).

    On any error the temporary file is removed and ``path`` is left as it was. The file gets
    the mode a plain ``open()`` would give (``mkstemp`` creates it 0600).
    """
    write_together([(path, write)])


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def make_directory_beside(path: Path) -> Path:
    """A new empty directory next to ``path``, to be renamed onto it (the mode ``mkdir``
    gives, not ``mkdtemp``'s 0700); stale ones of killed runs are removed first."""
    _check_parents(path)
    remove_stale_temporaries(path)
    directory = Path(tempfile.mkdtemp(prefix=_temporary_prefix(path), dir=path.parent))
    os.chmod(directory, default_mode(directory=True))
    return directory


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange(first: Path, second: Path) -> None:
    """Swap two existing paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``).

    Where the system cannot, ``second`` is moved aside to a clearly named temporary and
    ``first`` renamed onto it: a kill between the two renames leaves ``second`` at
    ``.NAME.bitmod-tmp.PID.*`` instead of in place. Either way ``first`` holds what
    ``second`` held afterwards.
    """
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is not None:
        result = renameat2(
            _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
        )
        if result == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(code, os.strerror(code), str(second))
    aside = Path(tempfile.mkdtemp(prefix=_temporary_prefix(second), dir=second.parent))
    os.replace(second, aside / second.name)
    os.replace(first, second)
    os.replace(aside / second.name, first)
    aside.rmdir()
