"""Tokenizers by kind name: ``train_tokenizer`` trains one, ``load_tokenizer`` reads one back."""

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lmforge.errors import CheckpointError, ConfigError, DataError
from lmforge.tokenize.base import _FORMAT_VERSION, TOKENIZER_KINDS, Tokenizer
from lmforge.tokenize.pretrained import PretrainedTokenizer, _pretrained_tokenizer_from_dict
from lmforge.tokenize.subword import _subword_tokenizer_from_dict, _train_subword_tokenizer
from lmforge.tokenize.vocab import _SPLITTERS, _train_vocab_tokenizer, _vocab_tokenizer_from_dict


def train_tokenizer(
    kind: str, lines: Sequence[str], *, vocab_size: int = 8000, rare_threshold: int = 3
) -> Tokenizer:
    """Train a tokenizer of ``kind`` on ``lines``.

    Args:
        kind: one of ``TOKENIZER_KINDS``.
        lines: training text, one line per item; empty lines are skipped.
        vocab_size: target vocabulary size of bpe, bytebpe and wordpiece (specials included).
            word, char and jieba ignore it: their vocabulary is every piece above the threshold.
        rare_threshold: word and jieba merge pieces seen at most this often into ``<rare>``;
            0 keeps every piece (unseen ones become ``<unk>``). char keeps every character.

    Raises:
        ConfigError: unknown ``kind``, negative ``rare_threshold``, or ``vocab_size`` too small.
        DataError: ``lines`` holds no text.
    """
    _check_kind(kind)
    if rare_threshold < 0:
        raise ConfigError(f"rare_threshold={rare_threshold} must be >= 0 (0 keeps every word)")
    text = [line for line in lines if line.strip()]
    if not text:
        raise DataError(
            f"no text to train the {kind} tokenizer on; give lines with some non-space text"
        )
    if kind in _SPLITTERS:
        return _train_vocab_tokenizer(kind, text, 0 if kind == "char" else rare_threshold)
    return _train_subword_tokenizer(kind, text, vocab_size)


def load_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """Read a tokenizer written by ``Tokenizer.save``.

    Raises:
        CheckpointError: the file is missing, unreadable, corrupt or of an unknown kind.
    """
    path = Path(path)
    data = _read_json(path)
    kind = data.get("kind")
    if kind not in (*TOKENIZER_KINDS, PretrainedTokenizer.kind):
        raise CheckpointError(
            f"{path} holds tokenizer kind {kind!r}, not one of {', '.join(TOKENIZER_KINDS)}; "
            "give a tokenizer file saved by lmforge"
        )
    if data.get("format_version") != _FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format_version {data.get('format_version')!r}, this lmforge reads "
            f"{_FORMAT_VERSION}; save the tokenizer again with this version"
        )
    if kind in _SPLITTERS:
        return _vocab_tokenizer_from_dict(path, kind, data)
    if kind == PretrainedTokenizer.kind:
        return _pretrained_tokenizer_from_dict(path, data)
    return _subword_tokenizer_from_dict(path, kind, data)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckpointError(
            f"tokenizer file {path} does not exist; give the tokenizer.json saved with the "
            "model, or train a tokenizer with train_tokenizer()"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"cannot read tokenizer file {path} ({err}); give a tokenizer.json saved by lmforge"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise CheckpointError(
            f"tokenizer file {path} is not valid JSON ({err}); it may be truncated or edited: "
            "save the tokenizer again or retrain it"
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"tokenizer file {path} must hold a JSON object; retrain it")
    return data


def _check_kind(kind: str) -> None:
    if kind not in TOKENIZER_KINDS:
        raise ConfigError(
            f"unknown tokenizer kind {kind!r}; choose one of {', '.join(TOKENIZER_KINDS)}"
        )
