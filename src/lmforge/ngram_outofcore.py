"""N-gram estimation out of core: lmplz's stages on disk, within a memory budget (``--memory``).

The result is byte for byte the ARPA file of ``NgramLM.fit`` (same keys, same float operations in
the same order); only where the arrays live changes. Heafield et al. (2013) sort n-grams on disk;
this module does the same with numpy arrays in a temporary folder:

1. read: sentences become token ids (``<s> ... </s>``), written to disk as int32 in chunks that end
   at sentence ends; each chunk holds at most ``chunk_tokens(memory)`` tokens.
2. count, order by order: the n-gram keys of ``models.ngram`` (``id(prefix (n-1)-gram) * V + word``)
   need the global type of each (n-1)-gram, so order n is counted after order n-1 is merged: per
   chunk, the type of the (n-1)-gram at each position is looked up in the merged (n-1)-gram keys
   (and kept on disk for order n+1), the chunk's n-gram keys are made unique and spilled as one
   sorted run (keys, counts, type of the last n-1 words), then the runs are merged in bounded
   pieces (each piece takes at most ``piece / runs`` entries from every run).
3. adjust: continuation counts from the merged (n+1)-grams' suffix types; the n-grams that begin
   with ``<s>`` keep their raw count — they are one contiguous block of the sorted keys.
4. discount: counts-of-counts summed over pieces, then ``kn_discounts`` once per order.
5. interpolate and write: ``interpolate_order`` on pieces cut at context boundaries (a context's
   n-grams are contiguous), looking the lower order's probabilities up on disk; the ARPA file is
   written piece by piece beside its target and moved into place.

Memory: a chunk of tokens, a merge piece, and per order one int64 array of continuation counts
(one entry per distinct n-gram of that order) — everything else is memory-mapped from the
temporary folder, which is removed on success, on error and on Ctrl-C.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path

import numpy as np

from lmforge.arpa import (
    WRITE_PIECE,
    WRITER_THREADS,
    arpa_piece,
    in_order,
    vocab_tables,
    writer_pool,
)
from lmforge.checkpoint import atomic_open
from lmforge.data import read_texts
from lmforge.errors import ConfigError, DataError
from lmforge.models.ngram import (
    BOS,
    BOS_ID,
    EOS,
    EOS_ID,
    LN10,
    UNK,
    UNK_ID,
    NgramConfig,
    _stream,
    discounts_of,
    interpolate_order,
)
from lmforge.progress import Stages
from lmforge.tokenize import Tokenizer, tokenize_lines

__all__ = [
    "ScaleStats",
    "chunk_tokens",
    "fit_arpa_out_of_core",
    "parse_memory",
    "text_lines",
    "tokenized",
]

BYTES_PER_TOKEN = 200  # a chunk: ~12 int64 arrays a token; the rest is for lookup tables
MIN_MEMORY = 1 << 20
_MEMORY = re.compile(r"(\d+(?:\.\d+)?)([KMGT]?)B?", re.IGNORECASE)


@dataclass
class ScaleStats:
    """What an out-of-core or Dask estimation did."""

    ngram_counts: list[int] = field(default_factory=list)
    tokens: int = 0
    chunks: int = 0
    runs: int = 0  # sorted runs spilled to disk, all orders together
    peak_temp_bytes: int = 0
    discounts: list[tuple[float, float, float]] = field(default_factory=list)


def parse_memory(text: str) -> int:
    """Bytes of a memory size such as ``64M``, ``1G``, ``512K`` or ``1.5G`` (powers of 1024).

    Raises:
        ConfigError: not a number with an optional K, M, G or T suffix.
    """
    match = _MEMORY.fullmatch(str(text).strip())
    if not match:
        raise ConfigError(
            f"--memory {text!r} is not a size; give a number with K, M or G, such as 64M or 1G"
        )
    power = " KMGT".index(match[2].upper() or " ")
    return int(float(match[1]) * 1024**power)


def chunk_tokens(memory: int) -> int:
    """Tokens counted at once within ``memory`` bytes (also the entries of a merge piece).

    Raises:
        ConfigError: a budget too small to make progress.
    """
    if memory < MIN_MEMORY:
        raise ConfigError(
            f"--memory {memory:,} bytes is too small to count n-grams in; give at least 1M "
            "(64M or more is sensible)"
        )
    return memory // BYTES_PER_TOKEN


# ---------------------------------------------------------------------------------------------
# Steps shared with the Dask path: pure functions of numpy arrays.


def tokens_left(ids: np.ndarray) -> np.ndarray:
    """(L,) tokens from each position to its sentence's ``</s>``, that one included.

    ``ids`` must end with ``</s>`` (chunks end at sentence ends).
    """
    ends = np.flatnonzero(ids == EOS_ID)
    here = np.arange(len(ids))
    return ends[np.searchsorted(ends, here)] - here + 1


def ngram_types(prev_types, ids, left, n, keys, vocab_size) -> np.ndarray:
    """(L,) global type of the n-gram starting at each position, -1 where none fits.

    Args:
        prev_types: (L,) type of the (n-1)-gram at each position (order 1: the ids themselves).
        keys: the merged, sorted keys of order n (every key of ``ids`` is among them).
    """
    if n == 1:
        return ids
    starts = np.flatnonzero(left >= n)
    types = np.full(len(ids), -1, dtype=np.int64)
    types[starts] = np.searchsorted(keys, prev_types[starts] * vocab_size + ids[starts + n - 1])
    return types


def count_run(types, ids, left, n, vocab_size) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One sorted run of n-grams from a chunk, given the (n-1)-gram ``types`` at each position.

    Returns:
        (R,) unique sorted keys, (R,) their counts, (R,) the type of their last n-1 words.
    """
    starts = np.flatnonzero(left >= n)
    keys = types[starts] * vocab_size + ids[starts + n - 1]
    uniq, first, counts = np.unique(keys, return_index=True, return_counts=True)
    return uniq, counts.astype(np.int64), types[starts + 1][first]


def merge_runs(pieces: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]):
    """Sorted runs (keys, counts, suffix types) -> one run, counts of equal keys summed."""
    keys = np.concatenate([p[0] for p in pieces])
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    first = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    counts = np.add.reduceat(np.concatenate([p[1] for p in pieces])[order], first)
    suffix = np.concatenate([p[2] for p in pieces])[order][first]
    return keys[first], counts.astype(np.int64), suffix


def start_block(keys: np.ndarray, block: tuple[int, int], vocab_size: int) -> tuple[int, int]:
    """The n-grams that begin with ``<s>``, a contiguous range of the sorted keys, from the
    range of order n-1 (order 1: ``(BOS_ID, BOS_ID + 1)``)."""
    lo, hi = block
    return int(np.searchsorted(keys, lo * vocab_size)), int(np.searchsorted(keys, hi * vocab_size))


def adjusted_piece(raw, continuation, begin, block, n, order) -> np.ndarray:
    """Adjusted counts of the n-grams ``begin .. begin + len(raw)`` (``models.ngram`` stage 2)."""
    if n == order:
        a = raw.copy()
    else:
        a = continuation.copy()
        lo, hi = max(block[0] - begin, 0), min(block[1] - begin, len(raw))
        if lo < hi:
            a[lo:hi] = raw[lo:hi]
    if n == 1:
        a[[i - begin for i in (UNK_ID, BOS_ID) if begin <= i < begin + len(a)]] = 0
    return a


def histogram(adjusted: np.ndarray) -> np.ndarray:
    """(4,) n_1..n_4 of a piece; summed over pieces they are ``counts_of_counts``."""
    return np.bincount(np.minimum(adjusted, 5), minlength=6)[1:5]


def interpolate_block(keys, adjusted, suffix, lower_prob, discounts, vocab_size):
    """Probabilities of n-grams that hold every n-gram of their contexts (order >= 2).

    Returns:
        (G,) probabilities, the first context's type, and gamma of each context from it on.
    """
    context = keys // vocab_size
    first = int(context[0])
    local = context - first
    n_contexts = int(local[-1]) + 1
    prob, gamma = interpolate_order(adjusted, local, n_contexts, lower_prob[suffix], discounts)
    return prob, first, gamma


def unigram_probs(adjusted, discounts, vocab_size) -> np.ndarray:
    """Order 1 of ``models.ngram._interpolate``: against the uniform distribution."""
    uniform = np.full(vocab_size, 1.0 / (vocab_size - 1))  # <unk> included, <s> excluded
    context = np.zeros(vocab_size, dtype=np.int64)
    prob, _ = interpolate_order(adjusted, context, 1, uniform, discounts)
    prob[BOS_ID] = 1.0  # <s> is never predicted; lmplz writes log10 p = 0
    return prob


def context_boundary(keys, end: int, vocab_size: int) -> int:
    """The first index at or after ``end`` where a new context starts."""
    if end >= len(keys):
        return len(keys)
    return int(np.searchsorted(keys, (int(keys[end - 1]) // vocab_size + 1) * vocab_size))


def write_arpa_streaming(path, vocab, keys, prob, gamma, piece: int) -> None:
    """Write an ARPA file as ``lmforge.arpa.write_arpa`` does (the same bytes), a piece at a
    time, the pieces formatted on every core (``arpa.arpa_piece``).

    Args:
        keys: per order, sorted keys (arrays or memory maps).
        prob: per order, probabilities (natural, not log).
        gamma: per order below the highest, the backoff weights (natural, not log).
        piece: n-grams formatted at once (at most ``arpa.WRITE_PIECE``: a piece's byte tables
            take some hundred bytes an n-gram, and each thread holds one or two).
    """
    tables, piece = vocab_tables(vocab), max(1, min(piece, WRITE_PIECE))

    def lines(n: int, begin: int) -> bytes:
        end = begin + piece
        logp = np.log(np.asarray(prob[n - 1][begin:end])) / LN10
        backoff = None
        if n < len(keys):
            backoff = np.log(np.asarray(gamma[n - 1][begin:end])) / LN10
        return arpa_piece(tables, keys, n, begin, end, logp, backoff)

    with atomic_open(path) as out, writer_pool() as pool:
        out.write(b"\\data\\\n")
        out.write("".join(f"ngram {n}={len(k)}\n" for n, k in enumerate(keys, start=1)).encode())
        for n in range(1, len(keys) + 1):
            out.write(f"\n\\{n}-grams:\n".encode())
            pieces = range(0, len(keys[n - 1]), piece)
            for data in in_order(pool, partial(lines, n), pieces, ahead=2 * WRITER_THREADS):
                out.write(data)
        out.write(b"\n\\end\\\n")


def text_lines(path: str | os.PathLike, lazy: bool = True) -> Iterable[str]:
    """The lines of a text source as ``read_texts`` gives them; a plain text file lazily.

    Raises:
        DataError: a missing file, or a line that is not UTF-8 (naming the line).
    """
    path = Path(path)
    if not lazy or not path.is_file() or {".jsonl", ".xz", ".gz"} & set(path.suffixes):
        return read_texts(path)
    return _plain_lines(path)


def _plain_lines(path: Path) -> Iterator[str]:
    with open(path, "rb") as f:  # binary: only \n ends a line, as in read_texts
        for number, line in enumerate(f, start=1):
            try:
                yield line.decode("utf-8").removesuffix("\n").removesuffix("\r")
            except UnicodeDecodeError:
                raise DataError(f"{path} line {number} is not UTF-8; give a UTF-8 text") from None


def tokenized(
    lines: Iterable[str], tokenizer: Tokenizer | None, batch: int = 4096
) -> Iterator[list[str]]:
    """The token lists of ``lines``, tokenised a batch at a time (never all at once)."""
    lines = iter(lines)
    while chunk := list(islice(lines, batch)):
        yield from tokenize_lines(chunk, tokenizer)


def read_chunks(
    sentences: Iterable[Sequence[str]], word_ids: dict[str, int], max_tokens: int, memory: int
) -> Iterator[np.ndarray]:
    """Token ids (``<s> ... </s>`` each sentence) in chunks of at most ``max_tokens``, cut at
    sentence ends; ``word_ids`` grows in first-seen order, as in ``NgramLM.fit``.

    Raises:
        ConfigError: one sentence does not fit in a chunk.
    """
    pending: list[np.ndarray] = []
    size = 0
    for ids in _id_batches(sentences, word_ids, max_tokens, memory):
        if size + len(ids) > max_tokens:
            yield np.concatenate(pending)
            pending, size = [], 0
        pending.append(ids)
        size += len(ids)
    if pending:
        yield np.concatenate(pending)


def _id_batches(sentences, word_ids, max_tokens: int, memory: int) -> Iterator[np.ndarray]:
    """Ids of a few sentences at a time: Python strings of at most 65,536 tokens are held."""
    batch: list[Sequence[str]] = []
    size, limit = 0, min(max_tokens, 1 << 16)
    for sentence in sentences:
        if len(sentence) + 2 > max_tokens:
            need = (len(sentence) + 2) * BYTES_PER_TOKEN
            raise ConfigError(
                f"--memory {memory / 2**20:.1f}M is too small: a sentence of {len(sentence):,} "
                f"tokens must fit in one chunk; give at least --memory {need // 2**20 + 1}M"
            )
        if batch and size + len(sentence) + 2 > limit:
            yield _stream(batch, word_ids, grow=True).ids
            batch, size = [], 0
        batch.append(sentence)
        size += len(sentence) + 2
    if batch:
        yield _stream(batch, word_ids, grow=True).ids


# ---------------------------------------------------------------------------------------------
# The out-of-core driver: the arrays above, spilled to and merged from a temporary folder.


class _FileArray:
    """A 1-D array in a file, read a slice at a time: scans leave no mapped pages resident."""

    def __init__(self, path: Path, dtype) -> None:
        self.path, self.dtype = path, np.dtype(dtype)
        self.length = path.stat().st_size // self.dtype.itemsize if path.exists() else 0

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: slice) -> np.ndarray:
        begin, end, _ = index.indices(self.length)
        if end <= begin:
            return np.zeros(0, dtype=self.dtype)
        offset = begin * self.dtype.itemsize
        return np.fromfile(self.path, self.dtype, end - begin, offset=offset)


class _Folder:
    """The temporary folder: named int64/float64/int32 files and the peak of their sizes.

    ``open`` reads a file in slices (scans); ``map`` memory-maps it, only for lookups.
    """

    def __init__(self, root: str | None) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="lmforge-ngram-", dir=root))
        self.peak = 0

    def append(self, name: str, array: np.ndarray) -> None:
        with open(self.path / name, "ab") as f:
            f.write(np.ascontiguousarray(array).tobytes())

    def open(self, name: str, dtype) -> _FileArray:
        return _FileArray(self.path / name, dtype)

    def map(self, name: str, dtype) -> np.memmap | np.ndarray:
        path = self.path / name
        if not path.exists() or path.stat().st_size == 0:
            return np.zeros(0, dtype=dtype)
        return np.memmap(path, dtype=dtype, mode="r")

    def remove(self, *names: str) -> None:
        self.note()
        for name in names:
            (self.path / name).unlink(missing_ok=True)

    def note(self) -> None:
        used = sum(f.stat().st_size for f in self.path.iterdir())
        self.peak = max(self.peak, used)


def fit_arpa_out_of_core(
    sentences: Iterable[Sequence[str]],
    config: NgramConfig,
    arpa_path: str | os.PathLike,
    memory: int,
    temp_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> ScaleStats:
    """Estimate as ``NgramLM.fit`` and write the ARPA file, holding about ``memory`` bytes.

    Args:
        sentences: tokenised sentences (read once, lazily: a generator is welcome).
        memory: the budget in bytes (``parse_memory("1G")``).
        temp_dir: where the temporary folder goes (default: the system's temporary folder).

    Returns:
        Counts, spilled runs and the peak bytes of the temporary folder.

    Raises:
        ConfigError: a budget too small; DataError: no text, or discounts that cannot be estimated.
    """
    piece = chunk_tokens(memory)
    folder = _Folder(None if temp_dir is None else str(temp_dir))
    try:
        return _estimate(sentences, config, arpa_path, memory, piece, folder, progress)
    finally:
        shutil.rmtree(folder.path, ignore_errors=True)


def _estimate(sentences, config, arpa_path, memory, piece, folder, progress) -> ScaleStats:
    stages = Stages(4 + config.order, enabled=progress)
    stats = ScaleStats()
    stages.next(f"reading tokens in chunks of {piece:,} into {folder.path}")
    word_ids = {UNK: UNK_ID, BOS: BOS_ID, EOS: EOS_ID}
    bounds = [0]
    for ids in read_chunks(sentences, word_ids, piece, memory):
        folder.append("ids", ids.astype(np.int32))
        bounds.append(bounds[-1] + len(ids))
    if bounds[-1] == 0:
        raise DataError("no sentences to train the n-gram model on; give some text")
    if len(word_ids) >= 2**31:
        raise DataError("more than 2**31 distinct words; lmforge cannot index them")
    vocab, V = list(word_ids), len(word_ids)
    stats.tokens, stats.chunks = bounds[-1], len(bounds) - 1
    chunks = list(zip(bounds[:-1], bounds[1:], strict=True))
    stages.next(f"counting unigrams ({stats.tokens:,} tokens, {stats.chunks} chunks)")
    raw = np.zeros(V, dtype=np.int64)
    for begin, end in chunks:
        raw += np.bincount(folder.open("ids", np.int32)[begin:end], minlength=V)
    folder.append("keys1", np.arange(V, dtype=np.int64))
    folder.append("raw1", raw)
    for n in range(2, config.order + 1):
        stages.next(f"counting {n}-grams")
        stats.runs += _count_order(folder, chunks, n, config.order, V, piece)
    stages.next("adjusting counts and estimating discounts")
    stats.discounts = _adjust(folder, config, V, piece)
    stages.next("interpolating probabilities")
    _interpolate(folder, config.order, stats.discounts, V, piece)
    stages.next(f"writing {arpa_path}")
    keys = [folder.open(f"keys{n}", np.int64) for n in range(1, config.order + 1)]
    prob = [folder.open(f"prob{n}", np.float64) for n in range(1, config.order + 1)]
    gamma = [folder.open(f"gamma{n}", np.float64) for n in range(1, config.order)]
    write_arpa_streaming(arpa_path, vocab, keys, prob, gamma, piece // 8)
    folder.note()
    stats.ngram_counts = [len(k) for k in keys]
    stats.peak_temp_bytes = folder.peak
    if progress:
        print(
            f"         temporary disk peak {folder.peak / 2**20:,.1f} MiB, {stats.runs} sorted "
            f"runs, {stats.chunks} chunks",
            file=sys.stderr,
        )
    stages.done()
    return stats


def _count_order(folder: _Folder, chunks, n: int, order: int, V: int, piece: int) -> int:
    """Count order n from the merged order n-1; returns the number of runs spilled."""
    ids_file = folder.open("ids", np.int32)
    keys_prev = folder.map(f"keys{n - 1}", np.int64)
    prev_file = folder.open(f"types{n - 2}", np.int64) if n > 3 else None
    keep = 3 <= n < order  # order n+1 starts from these (n-1)-gram types
    runs = []
    for r, (begin, end) in enumerate(chunks):
        ids = ids_file[begin:end].astype(np.int64)
        left = tokens_left(ids)
        prev = ids if n <= 3 else prev_file[begin:end]
        types = ngram_types(prev, ids, left, n - 1, keys_prev, V)
        if keep:
            folder.append(f"types{n - 1}", types)
        run = count_run(types, ids, left, n, V)
        for name, array in zip(("k", "c", "s"), run, strict=True):
            folder.append(f"run{r}.{name}", array)
        runs.append(len(run[0]))
    folder.remove(f"types{n - 2}")
    _merge(folder, runs, n, piece)
    return len(runs)


def _merge(folder: _Folder, lengths: list[int], n: int, piece: int) -> None:
    """k-way merge of the runs in pieces: each piece takes < piece / runs entries of each run."""
    runs = [tuple(folder.open(f"run{r}.{x}", np.int64) for x in "kcs") for r in range(len(lengths))]
    searched = [folder.map(f"run{r}.k", np.int64) for r in range(len(lengths))]
    pos = [0] * len(runs)
    step = max(1, piece // max(1, len(runs)))
    while any(p < len(run[0]) for p, run in zip(pos, runs, strict=True)):
        bound = min(
            (int(k[p + step]) for p, k in zip(pos, searched, strict=True) if p + step < len(k)),
            default=None,
        )
        parts = []
        for r, run in enumerate(runs):
            end = len(run[0]) if bound is None else int(np.searchsorted(searched[r], bound))
            parts.append(tuple(x[pos[r] : end] for x in run))
            pos[r] = end
        keys, counts, suffix = merge_runs(parts)
        folder.append(f"keys{n}", keys)
        folder.append(f"raw{n}", counts)
        folder.append(f"suffix{n}", suffix)
    folder.remove(*(f"run{r}.{x}" for r in range(len(runs)) for x in "kcs"))


def _adjust(folder: _Folder, config: NgramConfig, V: int, piece: int) -> list[tuple]:
    """Adjusted counts of every order on disk; returns the discounts of every order."""
    discounts = []
    block = (BOS_ID, BOS_ID + 1)
    for n in range(1, config.order + 1):
        keys, raw = folder.map(f"keys{n}", np.int64), folder.open(f"raw{n}", np.int64)
        if n > 1:
            block = start_block(keys, block, V)
        continuation = None
        if n < config.order:  # distinct left extensions: one per (n+1)-gram with this suffix
            continuation = np.zeros(len(keys), dtype=np.int64)
            suffix = folder.open(f"suffix{n + 1}", np.int64)
            for begin in range(0, len(suffix), piece):
                continuation += np.bincount(suffix[begin : begin + piece], minlength=len(keys))
        counts = np.zeros(4, dtype=np.int64)
        for begin in range(0, max(len(keys), 1), piece):
            part = raw[begin : begin + piece]
            cont = None if continuation is None else continuation[begin : begin + piece]
            a = adjusted_piece(part, cont, begin, block, n, config.order)
            folder.append(f"adjusted{n}", a)
            counts += histogram(a)
        folder.remove(f"raw{n}")
        discounts.append(discounts_of(n, counts, config))
    return discounts


def _interpolate(folder: _Folder, order: int, discounts, V: int, piece: int) -> None:
    """Probabilities and gammas of every order on disk, lowest order first."""
    adjusted = folder.open("adjusted1", np.int64)[:]
    folder.append("prob1", unigram_probs(adjusted, discounts[0], V))
    for n in range(2, order + 1):
        keys, scan = folder.map(f"keys{n}", np.int64), folder.open(f"keys{n}", np.int64)
        adjusted = folder.open(f"adjusted{n}", np.int64)
        suffix = folder.open(f"suffix{n}", np.int64)
        lower = folder.map(f"prob{n - 1}", np.float64)
        begin = written = 0  # n-grams done; gammas of contexts written (1.0 for non-contexts)
        while begin < len(keys):
            end = context_boundary(keys, min(begin + piece, len(keys)), V)
            prob, first, gamma = interpolate_block(
                scan[begin:end],
                adjusted[begin:end],
                suffix[begin:end],
                lower,
                discounts[n - 1],
                V,
            )
            folder.append(f"prob{n}", prob)
            folder.append(f"gamma{n - 1}", np.ones(first - written))
            folder.append(f"gamma{n - 1}", gamma)
            begin, written = end, first + len(gamma)
        folder.append(f"gamma{n - 1}", np.ones(len(lower) - written))
        folder.remove(f"adjusted{n - 1}", f"suffix{n - 1}")
    folder.remove(f"adjusted{order}", f"suffix{order}")
