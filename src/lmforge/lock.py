"""One writer per output folder.

A job that writes a folder (a training run, ``save_model``) holds ``<folder>/.lmforge.lock`` for
its whole length: an exclusive ``flock`` on that file, which holds the writer's pid. A second
writer fails at once with a ``CheckpointError`` naming the holder's pid. The kernel drops the
lock when its process dies, so a stale lock (its process gone) is simply taken over. The file is
removed on release, before the lock is dropped; a taker checks that the file it locked is still
the one at the path, so two writers can never both hold a folder.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lmforge.errors import CheckpointError

__all__ = ["LOCK_FILE", "folder_lock"]

LOCK_FILE = ".lmforge.lock"


@contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold the writer's lock of ``folder`` (created if needed) for the ``with`` block.

    A folder this call created and that is empty again at the end is removed.

    Raises:
        CheckpointError: another live process holds the folder (its pid is named).
    """
    target = Path(folder)
    created = not target.exists()
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CheckpointError(f"{target}: cannot create the folder ({err.strerror})") from None
    path = target / LOCK_FILE
    fd = _acquire(path)
    try:
        yield target
    finally:
        path.unlink(missing_ok=True)  # before the unlock: see the module docstring
        os.close(fd)
        if created:
            _remove_if_empty(target)


def _acquire(path: Path) -> int:
    """An open descriptor of ``path`` that holds its exclusive lock, with our pid written in."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise CheckpointError(f"{path.parent}: cannot write here ({err.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise CheckpointError(
                f"{path.parent} is being written by another lmforge process (pid {holder}); "
                "wait for it to finish or write to another folder"
            ) from None
        if _same_file(fd, path):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
            return fd
        os.close(fd)  # the holder removed the file as we opened it: try the new one


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass
