"""ARPA files: the text format that KenLM, SRILM and IRSTLM exchange n-gram models in.

An n-gram of order n is stored as a sorted int64 key ``id(prefix (n-1)-gram) * V + id(word)``
(order 1: the word id), so a model is a few arrays per order and every lookup is a vectorised
``np.searchsorted``. Values here are log10, as in the file.
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from lmforge.checkpoint import atomic_open, atomic_write_text
from lmforge.errors import CheckpointError

__all__ = ["arpa_text_reference", "find_keys", "format_g7", "read_arpa", "write_arpa"]

UNK, BOS, EOS = "<unk>", "<s>", "</s>"


def find_keys(table: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Index of each key in the sorted table, -1 where absent."""
    if len(table) == 0:
        return np.full(len(keys), -1, dtype=np.int64)
    order = np.argsort(keys)  # sorted queries walk the table in cache order
    index = np.empty(len(keys), dtype=np.int64)
    index[order] = np.searchsorted(table, keys[order])
    index[index == len(table)] = 0
    return np.where(table[index] == keys, index, -1)


def write_arpa(path, vocab, keys, log10_prob, log10_backoff) -> None:
    """Write an ARPA file atomically (values with 7 significant digits, ``'%.7g'``).

    The lines are assembled as byte matrices, a few numpy operations per block of n-grams,
    the blocks of an order on every core (numpy lets go of the GIL in them);
    ``arpa_text_reference`` is the readable path, byte for byte the same file.
    """
    if any("\0" in word for word in vocab):  # NUL pads the byte matrices: the readable path
        atomic_write_text(path, arpa_text_reference(vocab, keys, log10_prob, log10_backoff))
        return
    with atomic_open(path) as out:
        for block in _arpa_blocks(vocab, keys, log10_prob, log10_backoff):
            out.write(block)


def arpa_text_reference(vocab, keys, log10_prob, log10_backoff) -> str:
    """The text of an ARPA file, one Python format per line (the reference for ``write_arpa``)."""
    return "".join(_arpa_chunks(vocab, keys, log10_prob, log10_backoff))


def _arpa_chunks(vocab, keys, log10_prob, log10_backoff) -> Iterable[str]:
    order, V = len(keys), len(vocab)
    yield "\\data\\\n"
    yield "".join(f"ngram {n}={len(k)}\n" for n, k in enumerate(keys, start=1))
    texts = vocab
    for n in range(1, order + 1):
        if n > 1:
            prefix, words = (keys[n - 1] // V).tolist(), (keys[n - 1] % V).tolist()
            texts = [f"{texts[p]} {vocab[w]}" for p, w in zip(prefix, words, strict=True)]
        prob = log10_prob[n - 1].tolist()
        yield f"\n\\{n}-grams:\n"
        if n < order:
            backoff = log10_backoff[n - 1].tolist()
            yield "".join(map("{:.7g}\t{}\t{:.7g}\n".format, prob, texts, backoff))
        else:
            yield "".join(map("{:.7g}\t{}\n".format, prob, texts))
    yield "\n\\end\\\n"


# -- the vectorised writer ------------------------------------------------------------------------
# Strings are the rows of a uint8 matrix, padded with NUL bytes (which no line of the file holds,
# see write_arpa); a block of lines is its fields' matrices side by side, and its bytes are the
# matrix's nonzero bytes in row order. So a block costs a few numpy operations, however many
# lines it holds.

_BLOCK = 1 << 15  # n-grams per block: the matrices stay some MiB
WRITE_PIECE = 1 << 16  # n-grams per piece of ``arpa_piece`` at the most, for its callers
_TAB, _NEWLINE = (np.frombuffer(c, np.uint8)[None] for c in (b"\t", b"\n"))


def _arpa_blocks(vocab, keys, log10_prob, log10_backoff) -> Iterable[bytes]:
    """The bytes of the ARPA file, a block of n-grams at a time: each line's text is its
    context's (the order below's n-gram and a space, kept as a table) and its word."""
    order = len(keys)
    header = "".join(f"ngram {n}={len(k)}\n" for n, k in enumerate(keys, start=1))
    yield f"\\data\\\n{header}".encode()
    words, contexts = vocab_tables(vocab)
    with writer_pool() as pool:
        for n in range(1, order + 1):
            yield f"\n\\{n}-grams:\n".encode()
            table = None  # this order's n-grams and a space: the contexts of the next
            if 1 < n < order:
                prefix, word = keys[n - 1] // len(vocab), keys[n - 1] % len(vocab)
                length = contexts[1][prefix] + words[1][word]
                table = np.zeros((len(length), int(length.max(initial=0)) + 1), dtype=np.uint8)
            job = partial(_arpa_block, n, order, words, contexts, table, keys, log10_prob)
            yield from in_order(
                pool, partial(job, log10_backoff), range(0, len(keys[n - 1]), _BLOCK)
            )
            if table is not None:
                contexts = table, length + 1
    yield b"\n\\end\\\n"


def _arpa_block(n, order, words, contexts, table, keys, log10_prob, log10_backoff, start: int):
    """The lines of the order-n n-grams from ``start`` on (``_BLOCK`` of them); their texts
    and a space go into their rows of ``table`` (None for orders 1 and ``order``), where
    the next order finds its contexts."""
    rows = slice(start, start + _BLOCK)
    block = keys[n - 1][rows]
    backoff = log10_backoff[n - 1][rows] if n < order else None
    data, text = _lines(
        words, contexts if n > 1 else None, 0, block, log10_prob[n - 1][rows], backoff
    )
    if table is not None:
        _context_rows(table[rows], *text, contexts[1][block // len(words[1])])
    return data


def _lines(words, contexts, first: int, block, log10_prob, log10_backoff):
    """The ARPA lines of n-grams ``block`` (keys) and their (context, word) byte tables:
    ``contexts`` holds the texts of prefixes ``first ..`` (None at order 1)."""
    V = len(words[1])
    text = [_take(words, block % V)]
    if contexts is not None:
        text.insert(0, _take(contexts, block // V - first))
    line = [_format_g7(log10_prob), _TAB, *text]
    if log10_backoff is not None:
        line += [_TAB, _format_g7(log10_backoff)]
    return _join_rows([*line, _NEWLINE]), text


def vocab_tables(vocab: list[str]) -> tuple:
    """The NUL-padded byte tables of the words, and of the words each with a space after it
    (the texts of order 1 as contexts): what ``arpa_piece`` reads."""
    words = _padded([w.encode("utf-8") for w in vocab])
    return words, _padded([w.encode("utf-8") + b" " for w in vocab])


def arpa_piece(tables, keys, n: int, begin: int, end: int, log10_prob, log10_backoff) -> bytes:
    """The ARPA lines of the order-n n-grams ``begin .. end``, as ``write_arpa`` writes them,
    for a writer that holds no order whole: ``keys`` per order may be memory maps; the texts
    of the prefixes are built from the orders below for this piece alone.

    Args:
        tables: ``vocab_tables(vocab)``.
        log10_prob, log10_backoff: the piece's values (backoff None at the highest order).
    """
    block = np.asarray(keys[n - 1][begin:end])
    contexts, first = None, 0
    if n > 1 and len(block):
        first = int(block[0]) // len(tables[0][1])
        contexts = _texts(tables, keys, n - 1, first, int(block[-1]) // len(tables[0][1]) + 1)
    return _lines(tables[0], contexts, first, block, log10_prob, log10_backoff)[0]


def _texts(tables, keys, n: int, begin: int, end: int):
    """(chars, lengths): the texts of the order-n n-grams ``begin .. end``, each and a space."""
    words, spaced = tables
    if n == 1:
        return spaced[0][begin:end], spaced[1][begin:end]
    V = len(words[1])
    block = np.asarray(keys[n - 1][begin:end])
    first = int(block[0]) // V
    contexts = _texts(tables, keys, n - 1, first, int(block[-1]) // V + 1)
    prefix, word = block // V - first, block % V
    length = contexts[1][prefix] + words[1][word]
    chars = np.zeros((len(block), int(length.max()) + 1), dtype=np.uint8)
    _context_rows(chars, _take(contexts, prefix), _take(words, word), contexts[1][prefix])
    return chars, length + 1


WRITER_THREADS = min(4, os.cpu_count() or 1)


def writer_pool() -> ThreadPoolExecutor:
    """Threads for the blocks of a writer: numpy lets go of the GIL in their work."""
    return ThreadPoolExecutor(max_workers=WRITER_THREADS)


def in_order(pool: ThreadPoolExecutor, job, items, ahead: int = 8) -> Iterable:
    """``job(item)`` of each item, in order, with at most ``ahead`` running or waiting: a
    bounded ``pool.map`` (a writer holds a few blocks, not a whole order)."""
    waiting = deque()
    for item in items:
        waiting.append(pool.submit(job, item))
        if len(waiting) >= ahead:
            yield waiting.popleft().result()
    while waiting:
        yield waiting.popleft().result()


def _context_rows(chars: np.ndarray, context: np.ndarray, word: np.ndarray, context_length):
    """Write the strings context (which ends in a space) + word + ' ' of a block into the
    zeroed rows ``chars``, left-aligned: each word's bytes move to where its context ends (its
    NUL padding is not written: it could reach past the row)."""
    chars[:, : context.shape[1]] = context
    row = np.arange(len(context)) * chars.shape[1] + context_length  # where each word goes
    flat = chars.reshape(-1)  # a view (the rows are contiguous): writes land in chars
    used = word != 0
    flat[(row[:, None] + np.arange(word.shape[1]))[used]] = word[used]
    flat[row + used.sum(1)] = ord(" ")


def _padded(strings: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """(R, longest) NUL-padded characters and (R,) lengths of ``strings``."""
    lengths = np.fromiter(map(len, strings), np.int64, len(strings))
    width = int(lengths.max()) if len(lengths) else 0
    chars = np.zeros((len(lengths), width), dtype=np.uint8)
    chars[np.arange(width) < lengths[:, None]] = np.frombuffer(b"".join(strings), np.uint8)
    return chars, lengths


def _take(table: tuple[np.ndarray, np.ndarray], index: np.ndarray) -> np.ndarray:
    """Rows ``index`` of a padded table, only as wide as the longest of them."""
    width = int(table[1][index].max()) if len(index) else 0
    return table[0][:, :width][index]


def _join_rows(fields: list[np.ndarray]) -> bytes:
    """The nonzero bytes of the fields (each (R, W), or (1, W) for every row) side by side."""
    rows = max(len(field) for field in fields)
    chars = np.concatenate([np.broadcast_to(f, (rows, f.shape[1])) for f in fields], axis=1)
    flat = chars.ravel()
    return flat[flat != 0].tobytes()


def format_g7(values: np.ndarray) -> list[str]:
    """``'%.7g' % v`` of every value, through the vectorised path the ARPA writer takes."""
    x = np.asarray(values, dtype=np.float64)
    return _join_rows([_format_g7(x), _NEWLINE]).decode("ascii").split("\n")[:-1]


_POW10 = 10.0 ** np.arange(12)  # exact in float64
_POW10_INT = 10 ** np.arange(11, dtype=np.int64)
_COLUMNS = np.arange(19)
_SPANS = (_COLUMNS >= np.arange(160)[:, None] // 20) & (_COLUMNS < np.arange(160)[:, None] % 20)
_SPANS = _SPANS.astype(np.uint8)  # row start * 20 + stop: 1 in columns start .. stop - 1


def _format_g7(x: np.ndarray) -> np.ndarray:
    """``'%.7g' % v`` of every value of ``x``: (R, at most 19) characters, NUL-padded.

    '%.7g' rounds to 7 significant digits d1..d7 and exponent e, then writes fixed point when
    -4 <= e < 7 (exponent notation otherwise), dropping trailing zeros and a bare point. Here
    the digits come from rint(|v| * 10**(6 - e)): 10**(6 - e) is an exact power of ten, so the
    product is off by at most half a unit in its last place, and the rounding is the correctly
    rounded one unless the product lies within 1e-6 of a half. Such values, exponent notation,
    nan and inf (rare in an ARPA file) are formatted by Python.

    Every value is first written in the same 19 columns: a sign, the digits of 10**6 .. 10**0,
    the point, the digits of 10**-1 .. 10**-10; its string is the columns from the sign or the
    first digit to the last nonzero digit (the point only when a digit follows it), the others
    are set to NUL.
    """
    a = np.abs(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.floor(np.log10(a))
    usual = np.isfinite(e) & (e >= -5) & (e <= 6)  # e = -5 may round up to 1e-4
    e = np.where(usual, e, 0).astype(np.int64)
    scaled = np.where(usual, a, 1.0) * _POW10[6 - e]
    rounded = np.rint(scaled)
    usual &= (scaled >= 1e6) & (scaled < 1e7) & (np.abs(scaled - rounded) < 0.5 - 1e-6)
    carry = rounded >= 1e7  # 9999999.5 and above round to 1e7: one more digit before the point
    e += carry
    usual &= (e >= -4) & (e <= 6)
    mantissa = np.where(usual, np.where(carry, 1e6, rounded), 0).astype(np.int32)  # d1..d7
    e[~usual] = 0
    last = e + 1 - _significant_digits(mantissa)  # power of ten of the last digit written
    last[~usual] = 0  # zero: '0'
    fixed = mantissa.astype(np.int64) * _POW10_INT[e + 4]  # the value times 10**10
    whole = (fixed // 10**10).astype(np.int32)
    fraction = fixed - whole.astype(np.int64) * 10**10
    high = (fraction // 10**5).astype(np.int32)
    low = (fraction - high.astype(np.int64) * 10**5).astype(np.int32)
    chars = np.empty((len(x), 19), dtype=np.uint8)
    _write_digits(whole, chars[:, 1:8])
    _write_digits(high, chars[:, 9:14])
    _write_digits(low, chars[:, 14:19])
    chars[:, 8] = ord(".")
    chars[:, 0] = 0
    minus = np.signbit(x) & (usual | (a == 0))
    start = 7 - np.maximum(e, 0) - minus  # the column of the sign, or of 10**max(e, 0)
    stop = np.where(last >= 0, 8, 9 - last)
    chars *= _SPANS[start * 20 + stop]
    negative = np.flatnonzero(minus)
    chars[negative, start[negative]] = ord("-")
    rare = np.flatnonzero(~usual & (a != 0))
    if len(rare):
        texts = [f"{v:.7g}".encode() for v in x[rare].tolist()]
        rare_chars, _ = _padded(texts)
        chars[rare] = 0
        chars[rare, : rare_chars.shape[1]] = rare_chars
        start[rare] = 0
        stop[rare] = rare_chars.shape[1]
    if not len(x):
        return chars
    return chars[:, start.min() : stop.max()]  # the columns some value of the block uses


def _significant_digits(mantissa: np.ndarray) -> np.ndarray:
    """The digits of each 7-digit number up to its last nonzero one (7 less its trailing zeros)."""
    count = np.full(len(mantissa), 7, dtype=np.int64)
    only_zeros = np.ones(len(mantissa), dtype=bool)
    rest = mantissa
    for _ in range(6):
        quotient = rest // 10
        only_zeros &= rest == quotient * 10
        count -= only_zeros
        rest = quotient
    return count


def _write_digits(numbers: np.ndarray, out: np.ndarray) -> None:
    """The decimal digits of ``numbers`` (R,) as ASCII into ``out`` (R, k), zeros first."""
    rest = numbers
    for column in range(out.shape[1] - 1, -1, -1):
        quotient = rest // 10
        out[:, column] = rest - quotient * 10 + ord("0")
        rest = quotient


def read_arpa(path: str | os.PathLike):
    """Read an ARPA file.

    Returns:
        vocab (``<unk>``, ``<s>``, ``</s>`` first, then the file's order), and per order the
        sorted n-gram keys, log10 probabilities and (below the highest order) log10 backoffs.

    Raises:
        CheckpointError: a missing, truncated or malformed file, naming it.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError):
        raise CheckpointError(
            f"{path}: no such ARPA file; give the path of a .arpa model"
        ) from None
    except UnicodeDecodeError as err:
        raise CheckpointError(
            f"{path} is not UTF-8 at byte {err.start}; is it an ARPA file?"
        ) from None
    except OSError as err:
        raise CheckpointError(f"cannot read the ARPA file {path}: {err.strerror}") from None
    sections = _arpa_sections(path, text.splitlines())
    order = len(sections)
    vocab, probs, backoffs = _arpa_unigrams(sections[0], order)
    word_ids = {w: i for i, w in enumerate(vocab)}
    keys = [np.arange(len(vocab), dtype=np.int64)]
    probs, backoffs = [probs], [backoffs]
    for section in sections[1:]:
        k, p, b = _arpa_order(section, order, word_ids, keys)
        keys.append(k)
        probs.append(p)
        backoffs.append(b)
    return vocab, keys, probs, backoffs[: order - 1]


@dataclass(frozen=True)
class _Section:
    """The lines of one ``\\n-grams:`` section and the file's line number of the first."""

    path: Path
    n: int
    first: int
    lines: list[str]

    def at(self, index: int | None) -> str:
        """Where line ``index`` of the section is, for a message (the file alone for None)."""
        return str(self.path) if index is None else f"{self.path} line {self.first + index}"


_HEADER_LINE = re.compile(r"ngram\s+(\d+)\s*=\s*(\d+)\s*")


def _arpa_header(path: Path, lines: list[str]) -> tuple[list[int], int]:
    """The n-gram counts the ``\\data\\`` header declares, and the index of ``\\1-grams:``."""
    declared: list[int] = []
    i = 0
    while i < len(lines) and not lines[i].startswith("\\1-grams:"):
        if lines[i].startswith("ngram "):
            match = _HEADER_LINE.fullmatch(lines[i].strip())
            if not match or int(match[1]) != len(declared) + 1:
                raise CheckpointError(
                    f"{path} line {i + 1}: {lines[i][:60]!r} is not the header line "
                    f"'ngram {len(declared) + 1}=COUNT'; the file is corrupt"
                )
            declared.append(int(match[2]))
        i += 1
    if not declared or i == len(lines):
        raise CheckpointError(
            f"{path} is not an ARPA file: no \\data\\ counts or \\1-grams: section"
        )
    return declared, i


def _arpa_sections(path: Path, lines: list[str]) -> list[_Section]:
    """The ``\\n-grams:`` sections, checked against the header's counts."""
    declared, i = _arpa_header(path, lines)
    sections = []
    for n, count in enumerate(declared, start=1):
        if i >= len(lines) or lines[i].strip() != f"\\{n}-grams:":
            line = f" line {i + 1}" if i < len(lines) else ""
            raise CheckpointError(
                f"{path}{line}: expected the \\{n}-grams: section; the file is corrupt"
            )
        section = lines[i + 1 : i + 1 + count]
        if len(section) < count or not all(section):
            end = section.index("") if not all(section) else len(section)
            raise CheckpointError(
                f"{path} line {i + 2 + end}: the header declares {count} {n}-grams but the "
                "section holds fewer; the file is truncated or corrupt"
            )
        sections.append(_Section(path, n, i + 2, section))
        i += 1 + count
        while i < len(lines) and not lines[i].strip():
            i += 1
    return sections


def _parse_section(section: _Section, order: int, word_ids: dict[str, int]):
    """Log10 probabilities, (G, n) word ids and log10 backoffs of one ARPA section."""
    lines, n = section.lines, section.n
    try:
        probs, texts, backoffs = _fields_fast(lines, n < order) or _fields_general(lines, n)
        words = " ".join(texts).split(" ")
        if len(words) != n * len(lines):
            raise ValueError
    except (ValueError, IndexError):
        raise CheckpointError(
            f"{section.at(_first_malformed(lines, n))}: malformed line in the \\{n}-grams: "
            f"section; each line must be 'log10prob<TAB>{n} words[<TAB>log10backoff]'"
        ) from None
    finite = np.isfinite(probs) & np.isfinite(backoffs)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise CheckpointError(
            f"{section.at(bad)}: {lines[bad][:60]!r} holds a number that is not finite "
            "(nan or inf); the file is corrupt: re-create it"
        )
    try:
        ids = np.fromiter(map(word_ids.__getitem__, words), np.int64, len(words))
    except KeyError as err:
        bad = next(j for j, word in enumerate(words) if word not in word_ids) // n
        raise CheckpointError(
            f"{section.at(bad)}: the {n}-gram word {err} is not among the unigrams"
        ) from None
    return probs, ids.reshape(len(lines), n), backoffs


def _first_malformed(lines: list[str], n: int) -> int | None:
    """The index of the first line that no ARPA layout reads, or None."""
    for index, line in enumerate(lines):
        try:
            _fields_general([line], n)
        except ValueError:
            return index
    return None


def _fields_fast(lines: list[str], with_backoff: bool):
    """KenLM's layout (every line 'prob<TAB>words<TAB>backoff'): split all lines at once."""
    width = 3 if with_backoff else 2
    fields = "\t".join(lines).split("\t")
    if len(fields) != width * len(lines):
        return None
    try:
        probs = np.array(fields[0::width], dtype=np.float64)
        backoffs = np.array(fields[2::width], dtype=np.float64) if with_backoff else None
    except ValueError:
        return None
    if backoffs is None:
        backoffs = np.zeros(len(lines))
    return probs, [t.strip() for t in fields[1::width]], backoffs


def _fields_general(lines: list[str], n: int):
    """Any whitespace layout; the backoff may be left out where it is 0 (SRILM)."""
    split = [line.split() for line in lines]
    if any(len(f) not in (n + 1, n + 2) for f in split):
        raise ValueError
    probs = np.array([float(f[0]) for f in split])
    backoffs = np.array([float(f[n + 1]) if len(f) == n + 2 else 0.0 for f in split])
    return probs, [" ".join(f[1 : n + 1]) for f in split], backoffs


def _arpa_unigrams(section: _Section, order: int):
    words = [line.split()[1] if len(line.split()) > 1 else "" for line in section.lines]
    for marker in (BOS, EOS):
        if marker not in words:
            raise CheckpointError(f"{section.path}: the ARPA file has no {marker} unigram")
    word_ids = {w: i for i, w in enumerate(words)}
    probs, _, backoffs = _parse_section(section, order, word_ids)
    if len(word_ids) < len(words):
        first = {}
        twice = next(i for i, w in enumerate(words) if first.setdefault(w, i) != i)
        raise CheckpointError(
            f"{section.at(twice)}: the unigram {words[twice]!r} is listed twice; the file is "
            "corrupt"
        )
    # lmforge's ids: <unk>, <s>, </s> first, then the file's order.
    if UNK not in word_ids:  # as KenLM does for such files
        words.append(UNK)
        probs = np.append(probs, -100.0)
        backoffs = np.append(backoffs, 0.0)
    rest = [i for i, w in enumerate(words) if w not in (UNK, BOS, EOS)]
    perm = [words.index(UNK), words.index(BOS), words.index(EOS), *rest]
    return [words[i] for i in perm], probs[perm], backoffs[perm]


def _arpa_order(section: _Section, order: int, word_ids: dict[str, int], keys: list):
    V, n = len(word_ids), section.n
    probs, ids, backoffs = _parse_section(section, order, word_ids)
    prefix = ids[:, 0]
    for m in range(2, n):
        prefix = find_keys(keys[m - 1], prefix * V + ids[:, m - 1])
        if (prefix < 0).any():
            index = int(np.flatnonzero(prefix < 0)[0])
            bad = " ".join(section.lines[index].split()[1 : n + 1])
            raise CheckpointError(
                f"{section.at(index)}: the {n}-gram '{bad}' has no {m}-gram prefix in the file; "
                "lmforge needs every prefix listed (as KenLM and SRILM write them)"
            )
    k = prefix * V + ids[:, n - 1]
    sort = np.argsort(k, kind="stable")
    k = k[sort]
    if len(k) > 1 and (k[1:] == k[:-1]).any():
        twice = int(sort[1:][k[1:] == k[:-1]][0])
        raise CheckpointError(
            f"{section.at(twice)}: this {n}-gram is listed twice; the file is corrupt"
        )
    return k, probs[sort], backoffs[sort]
