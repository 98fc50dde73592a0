"""Files that survive a kill at any moment, and a lock that keeps two processes out of one run.

Every file a run writes goes to a temporary name in the same directory, is flushed to disk,
and is renamed over the old one: a reader sees the old file or the new one, never half of
either. The lock is an ``fcntl`` lock on ``<run>/.lock``, released by the kernel when the
process ends however it ends, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mmkeras.errors import MMKerasError, first_line

LOCK_NAME = ".lock"


def _tmp_name(path: Path) -> Path:
    # the pid keeps two writers off one temporary file; the suffixes stay, since Keras reads
    # the format from them (".weights.h5", ".keras")
    stem, dot, suffixes = path.name.partition(".")
    return path.with_name(f".{stem}.{os.getpid()}.tmp{dot}{suffixes}")


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot sync a directory; the rename still holds
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` to make the file at a temporary path, then move it over ``path``.

    A kill during ``write`` leaves ``path`` as it was (and a stray temporary file, removed
    by the next write)."""
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        write(tmp)
        if tmp.is_file():
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):  # a failed write() names no file: say which one
            raise MMKerasError(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def remove_stale_temporaries(directory: Path) -> None:
    """Remove temporary files a killed process left behind (``.NAME.PID.tmp.SUFFIX``)."""
    if not directory.is_dir():
        return
    for p in list(directory.glob(".*.tmp.*")) + list(directory.glob("*.tmp.keras")):
        with contextlib.suppress(OSError):
            p.unlink()


class RunLock:
    """An exclusive lock on a run directory for as long as this process works in it.

    ``with RunLock(run_dir, "train"):`` raises :class:`MMKerasError` at once, naming the pid
    and the command of the holder, when another process holds it."""

    def __init__(self, directory: str | os.PathLike[str], purpose: str = "train"):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self.purpose = purpose
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks here; runs are still written atomically
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise MMKerasError(
                f"{self.directory} is in use by another mmkeras process ({holder}); wait for it to "
                "finish, or pass --output NEW_DIR"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, {self.purpose}".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays for the next holder
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def locked(directory: str | os.PathLike[str], purpose: str) -> Iterator[RunLock]:
    lock = RunLock(directory, purpose)
    lock.acquire()
    try:
        yield lock
    finally:
        lock.release()


def read_json_object(path: Path, hint: str = "") -> dict[str, Any]:
    """The JSON object in ``path``, or a one-line :class:`MMKerasError` naming the file (and ``hint``,
    what to do about it) when it is unreadable, corrupt or not an object."""
    suffix = f"; {hint}" if hint else ""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise MMKerasError(f"{path} is corrupt or unreadable ({first_line(exc)}){suffix}") from None
    if not isinstance(value, dict):
        raise MMKerasError(f"{path} is corrupt: expected a JSON object{suffix}")
    return value
