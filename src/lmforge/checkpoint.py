"""Atomic file writes, and training checkpoints written as a whole.

Nothing lmforge writes is ever left half-written: each file goes to a temporary file beside its
target (``.<name>.<hex>.tmp``), is synced, and is moved into place with ``os.replace``.

A training run's folder holds, beside ``config.json`` (with the run's ``run_id``) and
``tokenizer.json``::

    checkpoints/step-00000100.<hex>/   one checkpoint: last, best, optimizer, trainer.json,
                                       model.safetensors, and manifest.json, written last
    trainer_state -> checkpoints/step-00000100.<hex>     the current checkpoint (a symlink)
    model.safetensors                  the folder's weights (see the invariant)
    metrics.jsonl                      one JSON record per log line

A checkpoint is written into a temporary folder in ``checkpoints/``, its manifest (every file's
name, size and sha256, the step, the run's id) last, renamed to its own name, and made current
by ONE rename: a new ``trainer_state`` symlink replaces the old one. Older checkpoints and any
temporary leftovers are removed afterwards, or at the start of the next job if it was killed.

Invariant, at every moment, whatever was killed when: before a run's first checkpoint there is
no ``trainer_state`` and no weights (at most a dangling link); from then on ``trainer_state``
names a complete checkpoint of the run in ``config.json`` whose files match its manifest, and
``model.safetensors`` holds the bytes of that checkpoint's ``model.safetensors`` (the last
weights while training, the best once finished). While training it is the symlink
``trainer_state/model.safetensors``; once the run has finished, a hard link to that file (so
the model outlives its checkpoints), made a symlink again before a resumed run's next checkpoint
is made current. A resume verifies the manifest and the run's id (``read_checkpoint``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from lmforge.errors import CheckpointError

__all__ = [
    "ARPA_FILE",
    "CONFIG_FILE",
    "METRICS_FILE",
    "STATE_DIR",
    "TOKENIZER_FILE",
    "WEIGHTS_FILE",
    "atomic_write_bytes",
    "atomic_write_text",
    "clean_leftovers",
    "has_checkpoint",
    "new_run_id",
    "read_checkpoint",
    "read_json",
    "remove_checkpoints",
    "start_run",
    "write_checkpoint",
    "write_json",
]

# The files of a model folder (``lmforge.folders`` owns the folder; the Trainer fills in the
# weights, checkpoints and metrics while it trains).
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
TOKENIZER_FILE, ARPA_FILE = "tokenizer.json", "model.arpa"
STATE_DIR, VERSIONS_DIR, METRICS_FILE = "trainer_state", "checkpoints", "metrics.jsonl"
MANIFEST_FILE = "manifest.json"
# A folder holding one of these holds a run or a model; a new run removes them (and the rest of
# what a run writes) only when told to overwrite. A tokenizer or metrics without them are what a
# run killed before its config.json left, and are simply removed.
RUN_MARKS = (CONFIG_FILE, WEIGHTS_FILE, ARPA_FILE, STATE_DIR, VERSIONS_DIR)
RUN_FILES = (*RUN_MARKS, TOKENIZER_FILE, METRICS_FILE)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a synced temporary file and ``os.replace``."""
    with atomic_open(path) as f:
        f.write(data)


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb"):
    """A file to write ``path`` through, a piece at a time: a hidden temporary beside it, synced
    and moved into place with ``os.replace`` when the block ends, removed if the block raises."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(target)
    try:
        with open(tmp, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: object) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def read_json(path: str | os.PathLike, what: str = "file") -> dict:
    """Read a JSON object, or raise ``CheckpointError`` naming the file."""
    target = Path(path)
    try:
        obj = json.loads(target.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{target}: no such {what}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{target}: corrupt {what} ({err}); re-create it") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{target}: corrupt {what} (not a JSON object); re-create it")
    return obj


# -- runs and checkpoints -------------------------------------------------------------------------


def new_run_id() -> str:
    """A new training run's id (recorded in ``config.json`` and in every checkpoint)."""
    return uuid.uuid4().hex[:16]


def start_run(folder: str | os.PathLike, overwrite: bool = False) -> None:
    """Make ``folder`` ready for a new run: refuse when it holds another run's (or model's)
    files, unless ``overwrite``, which removes them first.

    Raises:
        CheckpointError: the folder holds another run and ``overwrite`` is False.
    """
    target = Path(folder)
    marks = [name for name in RUN_MARKS if os.path.lexists(target / name)]
    if marks and not overwrite:
        raise CheckpointError(
            f"{target} already holds a run or model ({', '.join(marks)}); continue a run with "
            "--resume, replace it with --overwrite, or give another --out"
        )
    for name in RUN_FILES:
        _remove(target / name)
    clean_leftovers(target)


def has_checkpoint(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a checkpoint (made current, so complete; ``read_checkpoint``
    checks it)."""
    return os.path.lexists(Path(folder) / STATE_DIR)


def remove_checkpoints(folder: str | os.PathLike) -> None:
    """Remove what a Trainer wrote into ``folder``: checkpoints, weights, metrics, leftovers."""
    target = Path(folder)
    for name in (STATE_DIR, VERSIONS_DIR, WEIGHTS_FILE, METRICS_FILE):
        _remove(target / name)
    clean_leftovers(target)


def clean_leftovers(folder: str | os.PathLike) -> None:
    """Finish what a killed job left: remove temporary files and folders and every checkpoint
    but the current one; a finished run's weights become a plain file."""
    target = Path(folder)
    versions = target / VERSIONS_DIR
    current = _current(target)
    for leftover in target.glob(".*.tmp"):
        _remove(leftover)
    if versions.is_dir():
        for entry in versions.iterdir():
            if current is None or entry.name != current.name:
                _remove(entry)
    if current is not None and (target / WEIGHTS_FILE).is_symlink():
        if read_json(current / MANIFEST_FILE, "checkpoint manifest").get("finished"):
            _settle_weights(target)


@contextmanager
def write_checkpoint(
    folder: str | os.PathLike, step: int, run_id: str, finished: bool = False
) -> Iterator[Callable[[str, bytes], None]]:
    """Write one checkpoint as a whole: ``add(name, data)`` each file in the ``with`` block;
    on leaving it the manifest is written and the checkpoint made current (see the module
    docstring). An error inside the block leaves the current checkpoint as it was.

    Args:
        folder: the run's folder.
        step: the optimizer step the checkpoint holds.
        run_id: the run's id (``config.json``'s ``run_id``).
        finished: the run is done; ``model.safetensors`` becomes a plain file.
    """
    target = Path(folder)
    versions = target / VERSIONS_DIR
    versions.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:08d}.{uuid.uuid4().hex[:6]}"
    tmp = _temp_path(versions / name)
    tmp.mkdir()
    files: dict[str, dict] = {}

    def add(file_name: str, data: bytes) -> None:
        _write_synced(tmp / file_name, data)
        files[file_name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    try:
        yield add
        manifest = {"run_id": run_id, "step": step, "finished": finished, "files": files}
        _write_synced(tmp / MANIFEST_FILE, (json.dumps(manifest, indent=2) + "\n").encode())
        _sync_dir(tmp)
        os.rename(tmp, versions / name)
        _sync_dir(versions)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _make_current(target, versions / name)
    clean_leftovers(target)  # the older checkpoints; a finished run's weights become a file


def read_checkpoint(folder: str | os.PathLike, run_id: str | None = None) -> tuple[Path, dict]:
    """The current checkpoint of ``folder``, checked against its manifest.

    Args:
        run_id: the run it must belong to (None: any run).

    Returns:
        (the checkpoint's folder, its manifest).

    Raises:
        CheckpointError: no complete checkpoint, one of another run, or a file that does not
            match the manifest (named, with what to do).
    """
    target = Path(folder)
    path = _current(target)
    if path is None or not (path / MANIFEST_FILE).is_file():
        raise CheckpointError(
            f"{target} holds no complete checkpoint to resume (the run stopped before its first "
            "one, or it was written by another lmforge); start it again with --overwrite"
        )
    manifest = read_json(path / MANIFEST_FILE, "checkpoint manifest")
    if run_id is not None and manifest.get("run_id") != run_id:
        raise CheckpointError(
            f"{path} belongs to run {manifest.get('run_id')}, not to the run {run_id} of "
            f"{target / CONFIG_FILE}; start the run again with --overwrite"
        )
    for file_name, expected in manifest.get("files", {}).items():
        _verify(path / file_name, expected)
    return path, manifest


# -- helpers --------------------------------------------------------------------------------------


def _temp_path(target: Path) -> Path:
    """A temporary name beside ``target``: hidden, unique, ending in .tmp (cleaned at start)."""
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")


def _write_synced(path: Path, data: bytes) -> None:
    """Create ``path`` holding ``data``, synced to disk."""
    # 0o666 less the umask, as open() gives: every file lmforge writes gets the same mode
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _current(folder: Path) -> Path | None:
    """The current checkpoint's folder, or None."""
    link = folder / STATE_DIR
    if not link.is_symlink() or not link.is_dir():
        return None
    return folder / VERSIONS_DIR / Path(os.readlink(link)).name


def _make_current(folder: Path, version: Path) -> None:
    """Swap ``version`` in as the current checkpoint with one rename (the commit point)."""
    weights = folder / WEIGHTS_FILE
    if not weights.is_symlink():  # a finished run's plain file: hand it back to the link
        _replace_with_symlink(weights, Path(STATE_DIR) / WEIGHTS_FILE)
    _replace_with_symlink(folder / STATE_DIR, Path(VERSIONS_DIR) / version.name)
    _sync_dir(folder)


def _replace_with_symlink(path: Path, points_to: Path) -> None:
    tmp = _temp_path(path)
    os.symlink(points_to, tmp)
    os.replace(tmp, path)


def _settle_weights(folder: Path) -> None:
    """Make ``model.safetensors`` a plain file: a hard link to the current checkpoint's."""
    source = folder / STATE_DIR / WEIGHTS_FILE
    tmp = _temp_path(folder / WEIGHTS_FILE)
    try:
        os.link(source.resolve(), tmp)
    except OSError:  # no hard links here: the symlink stays
        return
    os.replace(tmp, folder / WEIGHTS_FILE)
    _sync_dir(folder)


def _verify(path: Path, expected: dict) -> None:
    """Check one checkpoint file against its manifest entry."""
    fix = "the checkpoint is damaged: start the run again with --overwrite"
    if not path.is_file():
        raise CheckpointError(f"{path}: missing from its checkpoint; {fix}")
    size = path.stat().st_size
    if size != expected.get("size"):
        raise CheckpointError(
            f"{path}: {size} bytes, but its manifest says {expected.get('size')}; {fix}"
        )
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    if digest != expected.get("sha256"):
        raise CheckpointError(f"{path}: its sha256 does not match the manifest; {fix}")
