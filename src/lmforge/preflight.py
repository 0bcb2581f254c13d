"""Checks before work: what a job will write, and where it will run, is checked before it starts.

A job that finds out at its end that its output path is a file, or a folder it cannot write,
has wasted its run; one that finds out that ``device`` does not exist after it has begun a model
folder leaves it half-written. These checks touch nothing: they only look.
"""

from __future__ import annotations

import os
from pathlib import Path

from lmforge.errors import ConfigError

__all__ = ["available_devices", "check_device", "check_output_file", "check_output_folder"]


def check_output_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """``path`` as a Path, once it is clear that a file can be written there.

    Raises:
        ConfigError: ``path`` is a folder, lies under a file, or its folder cannot be written.
    """
    target = Path(path)
    if _probe(target, what).is_dir():
        raise ConfigError(f"{target} is a folder; give the path of the {what} to write")
    _check_parent(target, target.parent, what)
    return target


def check_output_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """``path`` as a Path, once it is clear that a folder can be made (or written) there.

    Raises:
        ConfigError: ``path`` is a file, lies under a file, or cannot be written.
    """
    target = Path(path)
    if _probe(target, what).exists() and not target.is_dir():
        raise ConfigError(f"{target} is a file; give a folder path for the {what}")
    _check_parent(target, target, what)
    return target


def available_devices() -> list[str]:
    """The devices this torch can run on: cpu, then cuda:0, ... and mps where present."""
    import torch  # only the jobs that train need it

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def check_device(device: str) -> None:
    """Raise ConfigError unless torch can run on ``device`` here ("cuda" means cuda:0)."""
    import torch

    offered = available_devices()
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"device {device!r} is not a device name; this machine offers {', '.join(offered)}"
        ) from None
    if parsed.type == "cpu":
        return
    name = f"cuda:{parsed.index or 0}" if parsed.type == "cuda" else str(parsed)
    if name not in offered:
        raise ConfigError(
            f"device {device!r} is not available here (this torch offers {', '.join(offered)}); "
            "set device to one of those"
        )


def _probe(target: Path, what: str) -> Path:
    """``target``, once ``os.stat`` can tell whether it exists (a path too long or a loop of
    links cannot be written either)."""
    try:
        os.stat(target)
    except (FileNotFoundError, NotADirectoryError):
        pass  # a new path, or one under a file (``_check_parent`` names the file)
    except OSError as err:
        raise ConfigError(
            f"{target}: cannot use this path for the {what} ({err.strerror})"
        ) from None
    return target


def _check_parent(target: Path, start: Path, what: str) -> None:
    """The nearest existing folder at or above ``start`` must be a folder that can be written."""
    existing = start
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(
            f"{target}: {existing} is a file, so no {what} can be written under it; give "
            "another path"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{target}: the folder {existing} cannot be written (permission denied); give a "
            f"path you can write to for the {what}"
        )
