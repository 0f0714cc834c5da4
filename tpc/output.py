"""Output files: checked before the work that fills them, written atomically, never lost.

A run can take hours, so an output path that cannot be written is refused before anything is
compiled, and a write that fails anyway (a full disk) leaves the result in a fallback file.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from tpc.diagnostics import TpcError

Writer = Callable[[BinaryIO], None]


def check_writable(path: str) -> None:
    """Refuse a path whose file could not be created or replaced, naming the reason."""
    target = Path(path)
    if target.is_dir():
        raise TpcError(f"cannot write '{path}': it is a directory")
    if _is_special(target):
        return  # a device or FIFO (/dev/null): written in place
    parent = target.parent
    if not parent.exists():
        raise TpcError(f"cannot write '{path}': directory '{parent}' does not exist")
    if not parent.is_dir():
        raise TpcError(f"cannot write '{path}': '{parent}' is not a directory")
    if target.exists() and not os.access(target, os.W_OK):
        raise TpcError(f"cannot write '{path}': permission denied")
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".tpc-probe-")
    except OSError as e:
        raise TpcError(f"cannot write '{path}': {e.strerror or e}") from None
    os.close(fd)
    os.unlink(probe)


def write_file(path: str, write: Writer) -> None:
    """Write `path` through a temporary file in its directory, so that it is either the old
    file or the complete new one. On failure the result goes to a fallback file in the temp
    directory and the error says where."""
    try:
        _write_atomic(Path(os.path.realpath(path)), write)  # through a symlink, as open() would
    except OSError as e:
        reason = e.strerror or str(e)
        saved = _write_fallback(Path(path), write)
        raise TpcError(f"cannot write '{path}': {reason}; {saved}") from None


def write_text(path: str, text: str) -> None:
    write_file(path, lambda f: f.write(text.encode()))


def _is_special(path: Path) -> bool:
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _write_atomic(path: Path, write: Writer) -> None:
    if _is_special(path):
        with open(path, "wb") as f:
            write(f)
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; a plain open would not
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _write_fallback(path: Path, write: Writer) -> str:
    try:
        fd, fallback = tempfile.mkstemp(prefix=f"tpc-{path.stem}-", suffix=path.suffix)
    except OSError as e:
        return f"the result could not be saved elsewhere either ({e.strerror or e})"
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
    except OSError as e:
        _remove(fallback)
        return f"the result could not be saved elsewhere either ({e.strerror or e})"
    return f"the result was saved to '{fallback}' instead"


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
