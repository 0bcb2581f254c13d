"""The binary n-gram format (``.lmb``): an n-gram model as a memory-mappable file, for fast load
and query (the role of KenLM's ``build_binary``).

Layout: the 8-byte magic ``LMFORGEB``, a little-endian u32 format version and u32 header length,
a JSON header (order, vocabulary size, n-gram counts, and the byte offset of every array), then
the arrays, each aligned to 64 bytes: the vocabulary (UTF-8 words separated by ``\\n``), and per
order the sorted int64 keys (``lmforge.arpa``'s ``id(prefix) * V + id(word)``), the float64
natural-log probabilities and, below the highest order, the float64 natural-log backoffs; above
the unigrams, a hash table of the keys that queries use in place of a binary search (``slots``:
key and index packed in each slot, see ``hash_slots`` and ``slot_table``).
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

from lmforge.checkpoint import atomic_open
from lmforge.errors import CheckpointError

__all__ = [
    "MAGIC",
    "find_slotted",
    "hash_slots",
    "is_binary",
    "read_binary",
    "slot_table",
    "write_binary",
]

MAGIC = b"LMFORGEB"
VERSION = 2  # 2: hash tables (version 1 files: rebuild them)
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
        packed = slot_table(table) if n > 1 else None
        if packed is not None:
            arrays.append((f"slots{n}", packed.astype("<i8")))
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
    with atomic_open(target) as f:
        f.write(MAGIC + struct.pack("<II", VERSION, len(text)) + text)
        for name, array in arrays:
            f.seek(place[name][0])
            f.write(array.tobytes())
        f.truncate(at)


def read_binary(path: str | os.PathLike):
    """The tables of a binary file: (vocab, keys, log_prob, log_backoff, slots), the arrays
    read-only views of the mapped file (``slots``: the hash tables of orders 2 and up, None for
    an order whose keys and indices do not fit in 63 bits together).

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
        slots = [arrays.get(f"slots{n}") for n in range(2, order + 1)]  # None: not packable
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{source}: a damaged binary model ({err}){redo}") from None
    short = any(
        table is not None and len(table) <= 1 << _bits(len(k))
        for table, k in zip(slots, keys[1:], strict=True)
    )
    if len(vocab) != header["vocab_size"] or [len(k) for k in keys] != header["counts"] or short:
        raise CheckpointError(f"{source}: a damaged binary model (sizes disagree){redo}")
    return vocab, keys, log_prob, log_backoff, slots


# -- the hash tables ------------------------------------------------------------------------------
# Open addressing with linear probing (as KenLM's "probing" binary): a key's home slot is the top
# bits of key * _MULTIPLIER (Fibonacci hashing); a slot holds the index of a key in the sorted
# table, or -1. The table never wraps around: keys that run past the last home slot go on into
# a tail, and one empty slot ends it.

_MULTIPLIER = np.int64(0x9E3779B97F4A7C15 - 2**64)  # 2**64 / golden ratio, as a signed int64


def _home(keys: np.ndarray, bits: int) -> np.ndarray:
    """The top ``bits`` bits of key * _MULTIPLIER modulo 2**64 (int64 products wrap)."""
    product = (np.asarray(keys, dtype=np.int64) * _MULTIPLIER).view(np.uint64)
    return (product >> np.uint64(64 - bits)).view(np.int64)


def _bits(count: int) -> int:
    return max(1, (2 * count - 1).bit_length())  # at least 2 slots per key: short probes


def hash_slots(keys: np.ndarray) -> np.ndarray:
    """The hash table of a sorted key array: (2**bits + tail,) indices into ``keys`` or -1
    (``slot_table`` packs the key of each slot beside its index, as queries read it).

    Keys are placed in the order of their home slots, each in the first free slot from its
    home: slot_i = i + max_{j <= i} (home_j - j) over keys sorted by home, so that the slots from
    a key's home to its own are all taken, as lookups need.
    """
    bits = _bits(len(keys))
    home = _home(keys, bits)
    by_home = np.argsort(home, kind="stable")
    steps = np.arange(len(keys))
    placed = np.maximum.accumulate(home[by_home] - steps) + steps if len(keys) else steps
    size = max(1 << bits, int(placed[-1]) + 1 if len(keys) else 0) + 1  # ends with an empty slot
    slots = np.full(size, -1, dtype=np.int64)
    slots[placed] = by_home
    return slots


def slot_table(keys: np.ndarray) -> np.ndarray | None:
    """The hash table of ``keys`` as queries read it: in each slot ``key << b | index`` (b the
    bits of an index) or -1, so that one read both checks the key and gives its index; None
    where the keys and indices do not fit in 63 bits together (queries then search ``keys``)."""
    shift = _index_bits(len(keys))
    if len(keys) and int(keys[-1]).bit_length() + shift > 63:
        return None
    slots = hash_slots(keys)
    return np.where(slots >= 0, keys[slots] << shift | slots, -1) if len(keys) else slots


def find_slotted(keys: np.ndarray, table: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Index of each query in the sorted ``keys``, -1 where absent, through their hash table
    (``slot_table``). Equal to ``lmforge.arpa.find_keys`` (a test checks it)."""
    shift = _index_bits(len(keys))
    index_of = np.int64((1 << shift) - 1)
    slot = _home(queries, _bits(len(keys)))
    # take and compress: numpy's fastest gather and filter (x[bool mask] is ~5x slower)
    value = table.take(slot)
    missed = value >> shift != queries  # empty slots (-1) match no query
    found = value & index_of | -missed.astype(np.int64)  # -1 where missed (x[mask] = -1 is slow)
    waiting = np.flatnonzero(missed)
    waiting = waiting.compress(value.take(waiting) >= 0)  # another key sits there: go on
    slot = slot.take(waiting) + 1
    while len(waiting):
        value = table.take(slot)
        hit = value >> shift == queries.take(waiting)
        found[waiting.compress(hit)] = value.compress(hit) & index_of
        go_on = (value >= 0) & ~hit
        waiting, slot = waiting.compress(go_on), slot.compress(go_on) + 1
    return found


def _index_bits(count: int) -> int:
    return max(1, (count - 1).bit_length())


def _aligned(offset: int) -> int:
    return -(-offset // ALIGN) * ALIGN
