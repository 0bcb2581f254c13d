"""The binary n-gram format (``.lmb``): an n-gram model as a memory-mappable file, for fast load
and query (the role of KenLM's ``build_binary``).

Layout: the 8-byte magic ``LMFORGEB``, a little-endian u32 format version and u32 header length,
a JSON header (order, vocabulary size, n-gram counts, and the byte offset of every array), then
the arrays, each aligned to 64 bytes: the vocabulary (UTF-8 words separated by ``\\n``), and per
order the sorted int64 keys (``lmforge.arpa``'s ``id(prefix) * V + id(word)``), the float64
natural-log probabilities and, below the highest order, the float64 natural-log backoffs.
Loading maps the file and reads the arrays in place (``np.frombuffer`` over ``mmap``): nothing
is parsed but the header and the vocabulary, so the values are exactly those written.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from pathlib import Path

import numpy as np

from lmforge.errors import CheckpointError

__all__ = ["MAGIC", "is_binary", "read_binary", "write_binary"]

MAGIC = b"LMFORGEB"
VERSION = 1
ALIGN = 64


def is_binary(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file that starts with the binary format's magic."""
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def write_binary(path, vocab, keys, log_prob, log_backoff) -> None:
    """Write a model's tables (natural logs) as a binary file, through a temporary file renamed
    into place when complete."""
    target = Path(path)
    words = "\n".join(vocab).encode("utf-8")
    arrays = [("vocab", np.frombuffer(words, dtype=np.uint8))]
    for n, table in enumerate(keys, start=1):
        arrays.append((f"keys{n}", np.ascontiguousarray(table, dtype="<i8")))
        arrays.append((f"prob{n}", np.ascontiguousarray(log_prob[n - 1], dtype="<f8")))
        if n < len(keys):
            arrays.append((f"backoff{n}", np.ascontiguousarray(log_backoff[n - 1], dtype="<f8")))
    header = {"order": len(keys), "vocab_size": len(vocab), "counts": [len(k) for k in keys]}
    # offsets depend on the header's length, which depends on the offsets: fix the header size
    # with room to spare, then fill it in.
    place = {}
    start = _aligned(len(MAGIC) + 8 + 4096 + 64 * len(arrays))
    at = start
    for name, array in arrays:
        place[name] = [at, array.size, array.dtype.str]
        at = _aligned(at + array.nbytes)
    header["arrays"] = place
    text = json.dumps(header).encode("utf-8")
    if len(MAGIC) + 8 + len(text) > start:
        raise CheckpointError(f"{target}: the binary header does not fit; this is a bug")
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(temp, "wb") as f:
            f.write(MAGIC + struct.pack("<II", VERSION, len(text)) + text)
            for name, array in arrays:
                f.seek(place[name][0])
                f.write(array.tobytes())
            f.truncate(at)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def read_binary(path: str | os.PathLike):
    """The tables of a binary file: (vocab, keys, log_prob, log_backoff), the arrays read-only
    views of the mapped file.

    Raises:
        CheckpointError: a missing, truncated or foreign file, named, with what to do.
    """
    source = Path(path)
    try:
        with open(source, "rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{source}: cannot read the binary model ({err})") from None
    redo = f"; rebuild it with `lmforge ngram binary MODEL.arpa {source.name}`"
    if mapped[: len(MAGIC)] != MAGIC or len(mapped) < len(MAGIC) + 8:
        raise CheckpointError(f"{source}: not an lmforge binary n-gram model{redo}")
    version, size = struct.unpack_from("<II", mapped, len(MAGIC))
    if version != VERSION:
        raise CheckpointError(f"{source}: binary format version {version}, not {VERSION}{redo}")
    try:
        header = json.loads(bytes(mapped[len(MAGIC) + 8 : len(MAGIC) + 8 + size]))
        arrays = {}
        for name, (offset, count, dtype) in header["arrays"].items():
            arrays[name] = np.frombuffer(mapped, dtype=np.dtype(dtype), count=count, offset=offset)
        vocab = arrays["vocab"].tobytes().decode("utf-8").split("\n")
        order = header["order"]
        keys = [arrays[f"keys{n}"] for n in range(1, order + 1)]
        log_prob = [arrays[f"prob{n}"] for n in range(1, order + 1)]
        log_backoff = [arrays[f"backoff{n}"] for n in range(1, order)]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{source}: a damaged binary model ({err}){redo}") from None
    if len(vocab) != header["vocab_size"] or [len(k) for k in keys] != header["counts"]:
        raise CheckpointError(f"{source}: a damaged binary model (sizes disagree){redo}")
    return vocab, keys, log_prob, log_backoff


def _aligned(offset: int) -> int:
    return -(-offset // ALIGN) * ALIGN
