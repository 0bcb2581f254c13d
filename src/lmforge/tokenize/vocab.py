"""``word``, ``char`` and ``jieba`` tokenizers: a splitter plus a plain vocabulary list.

* ``word``: whitespace words as given (``str.split``). Words seen at most ``rare_threshold`` times
  in training, and every word not in the vocabulary, become ``<rare>`` (Bengio et al. 2003, "merging
  all words with frequency <= 3 into a single symbol"); with ``rare_threshold=0`` every training
  word is kept and unseen words become ``<unk>``.
* ``char``: one token per character, whitespace shown as "▁"; every training character is kept.
* ``jieba``: Chinese word segmentation by jieba (default dictionary, HMM on), then as ``word``.
"""

import contextlib
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from lmforge.errors import CheckpointError
from lmforge.tokenize.base import (
    _FORMAT_VERSION,
    _TO_SPACE_MARK,
    RARE,
    SPACE_MARK,
    SPECIAL_TOKENS,
    UNK,
    Tokenizer,
    _has_whitespace,
)


class _WordSplitter:
    """Whitespace words exactly as given."""

    kind = "word"

    def split(self, line: str) -> list[str]:
        return line.split()

    def join(self, tokens: list[str]) -> str:
        return " ".join(tokens)


class _CharSplitter:
    """One token per character; whitespace becomes "▁" so no token holds whitespace."""

    kind = "char"

    def split(self, line: str) -> list[str]:
        return list(line.translate(_TO_SPACE_MARK))

    def join(self, tokens: list[str]) -> str:
        return "".join(tokens).replace(SPACE_MARK, " ")


class _JiebaSplitter:
    """jieba word segmentation with its own ``jieba.Tokenizer``, loaded on first use."""

    kind = "jieba"

    def __init__(self) -> None:
        self._segmenter: Any = None

    def split(self, line: str) -> list[str]:
        # Splitting each piece drops jieba's whitespace pieces and guarantees none remains inside.
        return [word for piece in self._jieba().cut(line) for word in piece.split()]

    def join(self, tokens: list[str]) -> str:
        """Best effort: a space only between two ASCII tokens, since jieba drops the spaces."""
        parts: list[str] = []
        for token in tokens:
            if parts and parts[-1][-1].isascii() and token[0].isascii():
                parts.append(" ")
            parts.append(token)
        return "".join(parts)

    def _jieba(self) -> Any:
        if self._segmenter is None:
            import jieba  # slow to import and only this kind needs it

            segmenter = jieba.Tokenizer()
            with _quiet_logger("jieba"):
                segmenter.initialize()
            self._segmenter = segmenter
        return self._segmenter

    def __getstate__(self) -> dict[str, Any]:
        return {"_segmenter": None}  # jieba's lock cannot be pickled; workers load their own


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    """Hide a library's INFO/DEBUG chatter (jieba's "Building prefix dict") for one call."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


_SPLITTERS = {"word": _WordSplitter, "char": _CharSplitter, "jieba": _JiebaSplitter}


class VocabTokenizer(Tokenizer):
    """A ``word``, ``char`` or ``jieba`` tokenizer: split the line, look each piece up.

    Args:
        vocab: token strings by id: ``SPECIAL_TOKENS``, then ``RARE`` if ``rare_threshold > 0``,
            then the kept pieces.
        rare_threshold: training count at or below which a piece was merged into ``RARE``;
            0 means none was, and unknown pieces map to ``UNK`` instead of ``RARE``.
        splitter: how a line becomes pieces and pieces become text again (one per kind).
    """

    def __init__(self, vocab: Sequence[str], rare_threshold: int, splitter: Any) -> None:
        problem = _vocab_problem(vocab, rare_threshold)
        assert problem is None, problem
        self.kind = splitter.kind
        self.rare_threshold = rare_threshold
        self._vocab = tuple(vocab)
        self._ids = {token: i for i, token in enumerate(self._vocab)}
        self._splitter = splitter
        self._unknown = RARE if rare_threshold > 0 else UNK

    @property
    def vocab(self) -> tuple[str, ...]:
        return self._vocab

    def tokens_batch(self, lines: Sequence[str]) -> list[list[str]]:
        ids, unknown, split = self._ids, self._unknown, self._splitter.split
        return [[piece if piece in ids else unknown for piece in split(line)] for line in lines]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "format_version": _FORMAT_VERSION,
            "rare_threshold": self.rare_threshold,
            "vocab": list(self._vocab),
        }

    def _index(self) -> dict[str, int]:
        return self._ids

    def _ids_batch(self, lines: Sequence[str]) -> list[list[int]]:
        get, unknown_id, split = self._ids.get, self._ids[self._unknown], self._splitter.split
        return [[get(piece, unknown_id) for piece in split(line)] for line in lines]

    def _decode_known(self, ids: list[int]) -> str:
        return self._splitter.join([self._vocab[i] for i in ids])


def _vocab_problem(vocab: Sequence[Any], rare_threshold: int) -> str | None:
    """What is wrong with a word/char/jieba vocabulary, or None if it is usable."""
    head = _vocab_head(rare_threshold)
    if tuple(vocab[: len(head)]) != head:
        return f"the vocabulary must start with {list(head)}"
    if not all(isinstance(t, str) and t and not _has_whitespace(t) for t in vocab):
        return "every token must be a non-empty string without whitespace"
    if len(set(vocab)) != len(vocab):
        return "the vocabulary lists a token twice"
    return None


def _vocab_head(rare_threshold: int) -> tuple[str, ...]:
    return (*SPECIAL_TOKENS, RARE) if rare_threshold > 0 else SPECIAL_TOKENS


def _count_vocab(pieces: Iterable[list[str]], rare_threshold: int) -> list[str]:
    """Reserved tokens, then pieces seen more than ``rare_threshold`` times.

    Order: descending count, ties by first appearance (``most_common`` sorts stably).
    """
    counts: Counter[str] = Counter()
    for row in pieces:
        counts.update(row)
    head = _vocab_head(rare_threshold)
    reserved = set(head)
    kept = [p for p, n in counts.most_common() if n > rare_threshold and p not in reserved]
    return [*head, *kept]


def _train_vocab_tokenizer(kind: str, lines: list[str], rare_threshold: int) -> VocabTokenizer:
    splitter = _SPLITTERS[kind]()
    vocab = _count_vocab((splitter.split(line) for line in lines), rare_threshold)
    return VocabTokenizer(vocab, rare_threshold, splitter)


def _vocab_tokenizer_from_dict(path: Path, kind: str, data: dict[str, Any]) -> VocabTokenizer:
    vocab, rare_threshold = data.get("vocab"), data.get("rare_threshold")
    problem = None
    if not isinstance(rare_threshold, int) or rare_threshold < 0:
        problem = "rare_threshold must be an integer >= 0"
    elif not isinstance(vocab, list):
        problem = "vocab must be a list of token strings"
    else:
        problem = _vocab_problem(vocab, rare_threshold)
    if problem:
        raise CheckpointError(f"{path} is not a valid {kind} tokenizer: {problem}; retrain it")
    return VocabTokenizer(vocab, rare_threshold, _SPLITTERS[kind]())
