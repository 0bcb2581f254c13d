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

import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lmforge.data.corpus import _split_by_ratio, load_corpus
from lmforge.errors import ConfigError, DataError
from lmforge.models.seq2seq import label_smoothed_nll, seq2seq_loss
from lmforge.tokenize import BOS_ID, EOS_ID, PAD_ID, Tokenizer

__all__ = [
    "BUILTIN_PAIRS",
    "Pair",
    "PairsCorpus",
    "PairsTask",
    "bleu",
    "couplet_pairs",
    "encode_pairs",
    "load_pairs",
    "pad_rows",
    "read_pairs",
    "source_batch",
]

Pair = tuple[str, str]
BUILTIN_PAIRS: tuple[str, ...] = ("couplets",)
"""Names accepted by :func:`load_pairs` for the built-in pair tasks."""

_LINE_END = re.compile("[。！？]")
_IDEOGRAPH = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]+")


@dataclass(frozen=True)
class PairsCorpus:
    """A named set of (source, target) pairs split into train, valid and test."""

    name: str
    train: list[Pair]
    valid: list[Pair]
    test: list[Pair]

    def split(self, name: str) -> list[Pair]:
        """The pairs of ``"train"``, ``"valid"`` or ``"test"``."""
        if name not in ("train", "valid", "test"):
            raise ConfigError(f"split must be one of train, valid, test, got {name!r}")
        return getattr(self, name)

    def __repr__(self) -> str:
        return (
            f"PairsCorpus(name={self.name!r}, train={len(self.train)} pairs, "
            f"valid={len(self.valid)} pairs, test={len(self.test)} pairs)"
        )


def read_pairs(path: str | os.PathLike) -> list[Pair]:
    """The (source, target) pairs of a JSON Lines file, in order.

    Raises:
        DataError: the file is missing, unreadable, not UTF-8 or empty; a line is not a JSON
            object; or it lacks a string ``source`` or ``target``. The message names the line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path}: no such pairs file; give a .jsonl file with one "
            '{"source": ..., "target": ...} object per line, or the built-in "couplets"'
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(
            f"{path}: cannot read it as UTF-8 text ({err}); give a UTF-8 .jsonl file"
        ) from None
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(
                f"{path} line {number}: invalid JSON ({err.msg} at column {err.colno}); "
                'give one {"source": ..., "target": ...} object per line'
            ) from None
        if not isinstance(record, dict):
            raise DataError(f"{path} line {number}: expected a JSON object, got {line[:40]!r}")
        missing = [key for key in ("source", "target") if not isinstance(record.get(key), str)]
        if missing:
            raise DataError(
                f"{path} line {number} has no string field {' or '.join(map(repr, missing))}; "
                'give every line a "source" and a "target" string'
            )
        pairs.append((record["source"], record["target"]))
    if not pairs:
        raise DataError(f'{path} is empty; give one {{"source", "target"}} object per line')
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


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int = PAD_ID) -> torch.Tensor:
    """(B, longest) int64 tensor of the rows, right-padded with ``pad_id``."""
    out = torch.full((len(rows), max([1, *map(len, rows)])), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def source_batch(tokenizer: Tokenizer, sources: Sequence[str]) -> torch.Tensor:
    """(B, S) padded source ids (tokens + ``</s>``) of texts, for decoding."""
    return pad_rows([[*ids, EOS_ID] for ids in tokenizer.encode_batch(list(sources), False)])


def _batch(encoded: Sequence[tuple[list[int], list[int]]]) -> tuple[torch.Tensor, ...]:
    """(source (B, S), target_in (B, T), target_out (B, T)), padded."""
    source = pad_rows([src for src, _ in encoded])
    target_in = pad_rows([[BOS_ID, *tgt] for _, tgt in encoded])
    target_out = pad_rows([[*tgt, EOS_ID] for _, tgt in encoded])
    return source, target_in, target_out


class PairsTask:
    """The Trainer's task (``lmforge.train.trainer.Task``) for encoder-decoder families.

    Training batches walk through the train pairs in a fresh seeded order every epoch: batch
    ``step`` holds the pairs at positions ``step * B .. step * B + B - 1`` of the concatenated
    epoch orders, so it depends only on (seed, step). The loss is the model's label-smoothed
    cross-entropy; validation reports the plain cross-entropy per target token (``</s>``
    included) and its perplexity.

    Args:
        model: an encoder-decoder model (its ``config.max_seq_len`` bounds the pairs).
        tokenizer: the one tokenizer of sources and targets.
        train_pairs: pairs to train on.
        valid_pairs: held-out pairs for ``evaluate``, or None.
        batch_size: pairs per batch.
        seed: seed of the epoch orders.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Tokenizer,
        train_pairs: Sequence[Pair],
        valid_pairs: Sequence[Pair] | None,
        batch_size: int,
        seed: int = 0,
    ) -> None:
        if not train_pairs:
            raise DataError("no training pairs; give a pairs file with some lines")
        limit = model.config.max_seq_len
        self.train = encode_pairs(tokenizer, train_pairs, limit)
        self.valid = encode_pairs(tokenizer, valid_pairs, limit) if valid_pairs else None
        self.batch_size = batch_size
        self.seed = seed
        self._orders: dict[int, list[int]] = {}

    def _order(self, epoch: int) -> list[int]:
        if epoch not in self._orders:  # keep two epochs: a batch may straddle their border
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(len(self.train), generator=generator).tolist()
            self._orders = {e: o for e, o in self._orders.items() if e == epoch - 1}
            self._orders[epoch] = order
        return self._orders[epoch]

    def batch(self, step: int) -> tuple[tuple[torch.Tensor, ...], bool]:
        n = len(self.train)
        positions = range(step * self.batch_size, (step + 1) * self.batch_size)
        chosen = [self.train[self._order(p // n)[p % n]] for p in positions]
        return _batch(chosen), True

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...], state=None):
        source, target_in, target_out = batch
        return seq2seq_loss(model, source, target_in, target_out), None

    def tokens(self, batch: tuple[torch.Tensor, ...]) -> int:
        return int((batch[2] != PAD_ID).sum())

    @torch.no_grad()
    def evaluate(self, model: nn.Module, max_tokens: int = 0) -> dict[str, float] | None:
        if not self.valid:
            return None
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        total, count = 0.0, 0
        for start in range(0, len(self.valid), 128):
            source, target_in, target_out = _batch(self.valid[start : start + 128])
            logits = model(source.to(device), target_in.to(device))
            n = int((target_out != PAD_ID).sum())
            total += float(label_smoothed_nll(logits, target_out.to(device), 0.0)) * n
            count += n
            if max_tokens and count >= max_tokens:
                break
        model.train(was_training)
        return {"valid_loss": total / count, "valid_ppl": math.exp(total / count)}


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
