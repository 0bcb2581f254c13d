"""Sequence-to-sequence data: (source, target) pairs, the built-in couplet task, batches, BLEU.

A pairs file is JSON Lines, one object per non-blank line with string fields ``source`` and
``target``; every problem is a :class:`~lmforge.errors.DataError` naming the file and line.

The built-in task ``couplets`` is cut from the built-in ``tang`` corpus (one poem body per line),
keeping the corpus's own train/valid/test splits: every poem body is split into its lines at the
full stops (。！？), every line at the Chinese comma (，) into its two halves, and a pair is kept
when the line has exactly two halves of the same length, 5 or 7 characters (regulated verse), each
made of CJK ideographs only (this drops lacunae □ and editorial brackets). Source = first half,
target = second half: given 上聯 "秦川雄帝宅", write 下聯 "函谷壯皇居".

Token layout (one tokenizer for both sides): source = tokens + ``</s>``; the decoder reads
``<s>`` + target and predicts target + ``</s>``; ``<pad>`` (id 0) fills batches and is never
scored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from lmforge.data.batching import pad_rows
from lmforge.data.corpus import Corpus, _split_by_ratio, load_corpus, read_jsonl
from lmforge.errors import ConfigError, DataError
from lmforge.tokenize import BOS_ID, EOS_ID, PAD_ID, Tokenizer

__all__ = [
    "BUILTIN_PAIRS",
    "Pair",
    "PairsCorpus",
    "bleu",
    "couplet_pairs",
    "encode_pairs",
    "load_pairs",
    "pair_batch",
    "read_pairs",
    "source_batch",
]

Pair = tuple[str, str]
BUILTIN_PAIRS: tuple[str, ...] = ("couplets",)
"""Names accepted by :func:`load_pairs` for the built-in pair tasks."""

_SHAPE = '{"source": ..., "target": ...} object'
_LINE_END = re.compile("[。！？]")
_IDEOGRAPH = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]+")


class PairsCorpus(Corpus):
    """A named set of (source, target) pairs split into train, valid and test: a ``Corpus``
    whose items are pairs."""

    UNIT = "pairs"


def read_pairs(path: str | os.PathLike) -> list[Pair]:
    """The (source, target) pairs of a JSON Lines file, in order (``read_jsonl``).

    Raises:
        DataError: the file is missing, unreadable, not UTF-8 or empty; a line is not a JSON
            object; or it lacks a string ``source`` or ``target``. The message names the line.
    """
    pairs = []
    for number, record in read_jsonl(path, _SHAPE):
        missing = [key for key in ("source", "target") if not isinstance(record.get(key), str)]
        if missing:
            raise DataError(
                f"{path} line {number} has no string field {' or '.join(map(repr, missing))}; "
                'give every line a "source" and a "target" string'
            )
        pairs.append((record["source"], record["target"]))
    return pairs


def couplet_pairs(poems: Iterable[str]) -> list[Pair]:
    """The couplets of poem bodies (the cut is described in the module docstring)."""
    pairs = []
    for poem in poems:
        for line in _LINE_END.split(poem):
            halves = line.strip().split("，")
            if len(halves) != 2:
                continue
            first, second = halves[0].strip(), halves[1].strip()
            if len(first) == len(second) and len(first) in (5, 7):
                if _IDEOGRAPH.fullmatch(first) and _IDEOGRAPH.fullmatch(second):
                    pairs.append((first, second))
    return pairs


def load_pairs(
    source: str | os.PathLike, valid_ratio: float = 0.1, test_ratio: float = 0.1, seed: int = 0
) -> PairsCorpus:
    """The built-in ``couplets`` task, or a pairs file split at random by ratio and seed (as
    ``lmforge.data.load_corpus`` splits a text file; every split keeps the file order).

    Raises:
        DataError: a bad file (see ``read_pairs``), or too few pairs for three splits.
    """
    if isinstance(source, str) and source == "couplets":
        tang = load_corpus("tang")
        train, valid, test = (
            couplet_pairs(tang.split(name)) for name in ("train", "valid", "test")
        )
        return PairsCorpus("couplets", train, valid, test)
    path = Path(source)
    if not path.is_file():
        raise DataError(
            f"{path}: no such pairs file; give a .jsonl file with one {_SHAPE} per line, "
            'or the built-in "couplets"'
        )
    pairs = read_pairs(path)
    train, valid, test = _split_by_ratio(pairs, valid_ratio, test_ratio, seed)
    if not (train and valid and test):
        raise DataError(
            f"{path} has {len(pairs)} pairs, too few for non-empty train/valid/test splits at "
            f"valid_ratio={valid_ratio}, test_ratio={test_ratio}; give more pairs"
        )
    return PairsCorpus(path.name.removesuffix(".jsonl"), train, valid, test)


def encode_pairs(
    tokenizer: Tokenizer, pairs: Sequence[Pair], max_seq_len: int
) -> list[tuple[list[int], list[int]]]:
    """(source ids + ``</s>``, target ids) of every pair.

    Raises:
        DataError: a source or target does not fit ``max_seq_len`` tokens with its marker.
    """
    sources = tokenizer.encode_batch([s for s, _ in pairs], markers=False)
    targets = tokenizer.encode_batch([t for _, t in pairs], markers=False)
    out = []
    for number, (src, tgt) in enumerate(zip(sources, targets, strict=True), start=1):
        longest = max(len(src), len(tgt)) + 1
        if longest > max_seq_len:
            raise DataError(
                f"pair {number} has {longest} tokens with its marker, more than the model's "
                f"max_seq_len={max_seq_len}; raise max_seq_len or shorten the pair"
            )
        out.append(([*src, EOS_ID], tgt))
    return out


def source_batch(tokenizer: Tokenizer, sources: Sequence[str]) -> torch.Tensor:
    """(B, S) padded source ids (tokens + ``</s>``) of texts, for decoding."""
    rows = [[*ids, EOS_ID] for ids in tokenizer.encode_batch(list(sources), False)]
    return pad_rows(rows, PAD_ID)[0]


def pair_batch(encoded: Sequence[tuple[list[int], list[int]]]) -> tuple[torch.Tensor, ...]:
    """(source (B, S), target_in (B, T), target_out (B, T)) of encoded pairs (``encode_pairs``),
    padded with ``<pad>``: the decoder reads ``<s>`` + target and predicts target + ``</s>``."""
    source = pad_rows([src for src, _ in encoded], PAD_ID)[0]
    target_in = pad_rows([[BOS_ID, *tgt] for _, tgt in encoded], PAD_ID)[0]
    target_out = pad_rows([[*tgt, EOS_ID] for _, tgt in encoded], PAD_ID)[0]
    return source, target_in, target_out


def bleu(
    hypotheses: Sequence[str], references: Sequence[str], tokenize: str = "zh", max_order: int = 4
) -> float:
    """Corpus BLEU (Papineni et al. 2002) by sacrebleu, one reference per hypothesis.

    ``tokenize="zh"`` makes every CJK character a token (and splits other text as 13a does), the
    usual character-level BLEU for Chinese; ``"13a"`` is sacrebleu's default for spaced text.
    ``max_order`` is the longest n-gram counted: 4 is standard BLEU; Chinese poetry generation
    reports BLEU-2 too (Zhang & Lapata 2014), as 4-gram matches are rare in 5-character lines.

    Raises:
        ConfigError: sacrebleu is not installed (``pip install "lmforge[bleu]"``).
    """
    try:
        from sacrebleu.metrics import BLEU
    except ImportError:
        raise ConfigError('BLEU needs sacrebleu: pip install "lmforge[bleu]"') from None
    metric = BLEU(tokenize=tokenize, max_ngram_order=max_order)
    return metric.corpus_score(list(hypotheses), [list(references)]).score
