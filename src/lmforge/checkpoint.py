"""Atomic file writes and checkpoint folders.

Nothing lmforge writes is ever left half-written: each file goes to a temporary file beside its
target and is moved into place with ``os.replace``.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from lmforge.errors import CheckpointError

__all__ = [
    "ARPA_FILE",
    "CONFIG_FILE",
    "TOKENIZER_FILE",
    "WEIGHTS_FILE",
    "atomic_write_bytes",
    "atomic_write_text",
    "read_json",
    "write_json",
]

# The files of a model folder (``lmforge.folders`` owns the folder; the Trainer fills in the
# weights while it trains).
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
TOKENIZER_FILE, ARPA_FILE = "tokenizer.json", "model.arpa"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_bytes(data)
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
