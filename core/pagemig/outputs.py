"""Files a command writes: checked before the work starts, replaced whole or not at all.

A run can take minutes; a result path that cannot be written must be refused before the
first simulated second, not after the last one.  Permission bits do not answer "can I
create a file here" (root ignores them, and ``/proc`` or a read-only mount refuse even
root), so :func:`check_output_path` asks the file system itself: it creates and removes a
probe file in the directory that will hold the output.

Every write goes to a temporary file in the destination's own directory and is renamed
over the destination with :func:`os.replace` (atomic on POSIX within one file system): a
reader sees the old file or the new one, never half of one, and a write that fails (disk
full, interrupted) leaves whatever was there before.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["OutputPathError", "atomic_output", "atomic_write_bytes", "atomic_write_text", "check_output_dir",
           "check_output_path"]


class OutputPathError(ValueError):
    """An output that cannot be written; the message is one line naming the option, the path and why."""


def _label(option: str, path: Path) -> str:
    return f"{option} {path}" if option else str(path)


def _probe(option: str, path: Path, directory: Path) -> None:
    """Create and remove a file in ``directory``: the only test of writability that root cannot skip."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".pagemig-probe-", dir=directory)
    except OSError as exc:
        raise OutputPathError(f"{_label(option, path)}: directory {directory} is not writable "
                              f"(creating a file there: {exc.strerror or exc})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def _existing_ancestor(option: str, path: Path, start: Path) -> Path:
    """The nearest directory at or above ``start`` that exists (where missing ones would be created)."""
    d = start
    while not d.exists():
        if d.parent == d:
            break
        d = d.parent
    if not d.is_dir():
        raise OutputPathError(f"{_label(option, path)}: {d} is not a directory")
    return d


def check_output_path(option: str, path: str | Path, *, create_parents: bool = False) -> Path:
    """Refuse a file path that cannot be written, before any work is done.

    ``create_parents``: a missing directory is acceptable when the writer will create it
    (then the nearest existing ancestor must be writable); otherwise it is an error.
    """
    p = Path(path)
    if p.is_dir():
        raise OutputPathError(f"{_label(option, p)}: is a directory; expected a file path")
    parent = p.parent
    if not parent.exists():
        if not create_parents:
            raise OutputPathError(f"{_label(option, p)}: directory {parent} is missing")
        _probe(option, p, _existing_ancestor(option, p, parent))
        return p
    if not parent.is_dir():
        raise OutputPathError(f"{_label(option, p)}: {parent} is not a directory")
    _probe(option, p, parent)
    return p


def check_output_dir(option: str, path: str | Path) -> Path:
    """Refuse a directory the command would write into (creating it if missing) but cannot."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputPathError(f"{_label(option, p)}: is not a directory")
    _probe(option, p, _existing_ancestor(option, p, p))
    return p


def _new_file_mode(dest: Path) -> int:
    """The mode a plain ``open(dest, "w")`` would give: the old file's, or 0o666 less the umask."""
    try:
        return dest.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed onto ``path`` only if the block succeeds.

    The temporary name keeps the suffix, so writers that choose a format by extension
    (matplotlib's ``savefig``) still do.  A failed write raises :class:`OutputPathError`.
    """
    dest = Path(path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{dest.suffix}", dir=dest.parent)
    except OSError as exc:
        raise OutputPathError(f"{dest}: cannot write it ({exc.strerror or exc})") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _new_file_mode(dest))
        os.replace(tmp, dest)
    except OSError as exc:
        raise OutputPathError(f"{dest}: cannot write it ({exc.strerror or exc})") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_output(path) as tmp, tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    return atomic_write_bytes(path, text.encode(encoding))
