"""What ``lmforge ngram`` does, as plain Python functions: estimate, evaluate and load the n-gram
model. numpy only: nothing here imports torch.

Text becomes token sequences by one rule: a tokenizer from ``lmforge.tokenize`` (or, with none,
whitespace-separated words exactly as KenLM's lmplz reads them), then ``<s>`` ... ``</s>``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from lmforge.errors import CheckpointError, DataError
from lmforge.folders import load_model
from lmforge.models import get_family
from lmforge.models.ngram import NgramConfig, NgramEvaluation, NgramLM
from lmforge.tokenize import Tokenizer, tokenize_lines, train_tokenizer

__all__ = ["evaluate_ngram", "load_ngram", "train_ngram"]


def train_ngram(
    lines: Sequence[str],
    config: NgramConfig,
    tokenizer_kind: str | None = None,
    vocab_size: int = 8000,
    rare_threshold: int = 3,
    progress: bool = False,
) -> tuple[NgramLM, Tokenizer | None]:
    """Train a tokenizer (unless ``tokenizer_kind`` is None) and an n-gram model on ``lines``."""
    if not lines:
        raise DataError("no training text; give a file or corpus with some lines")
    tokenizer = None
    if tokenizer_kind is not None:
        tokenizer = train_tokenizer(
            tokenizer_kind, lines, vocab_size=vocab_size, rare_threshold=rare_threshold
        )
    model = NgramLM.fit(tokenize_lines(lines, tokenizer), config, progress=progress)
    return model, tokenizer


def evaluate_ngram(
    model: NgramLM, tokenizer: Tokenizer | None, lines: Sequence[str]
) -> NgramEvaluation:
    """Perplexity of ``lines`` (with and without OOVs), tokenised as the model was trained."""
    return model.evaluate(tokenize_lines(lines, tokenizer))


def load_ngram(path: str | os.PathLike) -> tuple[NgramLM, Tokenizer | None]:
    """An n-gram model and its tokenizer (None: whitespace words) from an ARPA file or a model
    folder.

    Raises:
        CheckpointError: a missing or corrupt path, or a folder of another family.
    """
    model, tokenizer, record = load_model(path)
    if get_family(record["family"]).fitting != "counting":
        raise CheckpointError(
            f"{path} holds a {record['family']!r} model, not an n-gram model; use `lmforge eval` "
            "or `lmforge generate` for it"
        )
    return model, tokenizer
