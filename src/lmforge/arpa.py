"""ARPA files: the text format that KenLM, SRILM and IRSTLM exchange n-gram models in.

An n-gram of order n is stored as a sorted int64 key ``id(prefix (n-1)-gram) * V + id(word)``
(order 1: the word id), so a model is a few arrays per order and every lookup is a vectorised
``np.searchsorted``. Values here are log10, as in the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmforge.checkpoint import atomic_write_text
from lmforge.errors import CheckpointError

__all__ = ["find_keys", "read_arpa", "write_arpa"]

UNK, BOS, EOS = "<unk>", "<s>", "</s>"


def find_keys(table: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Index of each key in the sorted table, -1 where absent."""
    order = np.argsort(keys, kind="stable")  # sorted queries walk the table in cache order
    index = np.empty(len(keys), dtype=np.int64)
    index[order] = np.searchsorted(table, keys[order])
    index[index == len(table)] = 0
    return np.where(table[index] == keys, index, -1)


def write_arpa(path, vocab, keys, log10_prob, log10_backoff) -> None:
    """Write an ARPA file atomically (values with 7 significant digits)."""
    atomic_write_text(path, "".join(_arpa_chunks(vocab, keys, log10_prob, log10_backoff)))


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
