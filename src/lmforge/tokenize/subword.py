"""``bpe``, ``bytebpe`` and ``wordpiece`` tokenizers, backed by Hugging Face ``tokenizers``.

Sentencepiece-style BPE, GPT-2 byte-level BPE and BERT WordPiece, trained to ``vocab_size``; they
add no markers themselves (lmforge adds ``<s>`` and ``</s>``).
"""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from lmforge.errors import CheckpointError, ConfigError
from lmforge.tokenize.base import (
    _FORMAT_VERSION,
    SPACE_MARK,
    SPECIAL_TOKENS,
    UNK,
    WHITESPACE,
    Tokenizer,
    _has_whitespace,
)

_BYTEBPE_MIN_VOCAB = len(SPECIAL_TOKENS) + 256


class SubwordTokenizer(Tokenizer):
    """A ``bpe``, ``bytebpe`` or ``wordpiece`` tokenizer wrapping a Hugging Face ``Tokenizer``.

    Args:
        kind: one of "bpe", "bytebpe", "wordpiece".
        hf: the trained Hugging Face tokenizer; it must add no markers of its own.
    """

    def __init__(self, kind: str, hf: HFTokenizer) -> None:
        self.kind = kind
        self._hf = hf
        ids = hf.get_vocab(with_added_tokens=True)
        self._ids = ids
        self._vocab = tuple(sorted(ids, key=ids.__getitem__))

    @property
    def vocab(self) -> tuple[str, ...]:
        return self._vocab

    def tokens_batch(self, lines: Sequence[str]) -> list[list[str]]:
        return [e.tokens for e in self._hf.encode_batch(list(lines), add_special_tokens=False)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "format_version": _FORMAT_VERSION,
            "hf": json.loads(self._hf.to_str()),
        }

    def _index(self) -> dict[str, int]:
        return self._ids

    def _ids_batch(self, lines: Sequence[str]) -> list[list[int]]:
        encodings = self._hf.encode_batch_fast(list(lines), add_special_tokens=False)
        return [e.ids for e in encodings]

    def _decode_known(self, ids: list[int]) -> str:
        return self._hf.decode(ids, skip_special_tokens=True)


def _hf_problem(hf: HFTokenizer) -> str | None:
    """What is wrong with a Hugging Face tokenizer for lmforge, or None if it is usable."""
    ids = hf.get_vocab(with_added_tokens=True)
    if any(ids.get(token) != i for i, token in enumerate(SPECIAL_TOKENS)):
        return f"its vocabulary must hold {list(SPECIAL_TOKENS)} at ids 0..4"
    if sorted(ids.values()) != list(range(len(ids))):
        return "its token ids are not 0 .. vocab_size - 1 without gaps"
    if any(not token or _has_whitespace(token) for token in ids):
        return "a token string is empty or holds whitespace"
    if hf.post_processor is not None:
        return "it has a post-processor; lmforge adds <s> and </s> itself"
    return None


def _whitespace_normalizer() -> normalizers.Normalizer:
    """Every whitespace character to a plain space, so Metaspace/BERT splitting sees them all."""
    return normalizers.Replace(Regex(f"[{WHITESPACE}]"), " ")


def _build_hf(kind: str) -> tuple[HFTokenizer, dict[str, Any]]:
    """An untrained Hugging Face tokenizer of ``kind`` and its trainer's extra arguments."""
    if kind == "bpe":
        hf = HFTokenizer(models.BPE(unk_token=UNK))
        hf.normalizer = _whitespace_normalizer()
        hf.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPACE_MARK, prepend_scheme="always")
        hf.decoder = decoders.Metaspace(replacement=SPACE_MARK, prepend_scheme="always")
        return hf, {}
    if kind == "bytebpe":
        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        return hf, {"initial_alphabet": pre_tokenizers.ByteLevel.alphabet()}
    assert kind == "wordpiece", kind
    hf = HFTokenizer(models.WordPiece(unk_token=UNK, continuing_subword_prefix="##"))
    bert = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False
    )
    hf.normalizer = normalizers.Sequence([_whitespace_normalizer(), bert])
    hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    hf.decoder = decoders.WordPiece(prefix="##")
    return hf, {"continuing_subword_prefix": "##"}


def _train_subword_tokenizer(kind: str, lines: list[str], vocab_size: int) -> SubwordTokenizer:
    if kind == "bytebpe" and vocab_size < _BYTEBPE_MIN_VOCAB:
        raise ConfigError(
            f"vocab_size={vocab_size} is too small for the bytebpe tokenizer: the "
            f"{len(SPECIAL_TOKENS)} special tokens and 256 bytes alone take {_BYTEBPE_MIN_VOCAB}; "
            f"give vocab_size >= {_BYTEBPE_MIN_VOCAB}"
        )
    hf, extra = _build_hf(kind)
    trainer_class = trainers.WordPieceTrainer if kind == "wordpiece" else trainers.BpeTrainer
    trainer = trainer_class(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False, **extra
    )
    hf.train_from_iterator(lines, trainer, length=len(lines))
    # The trainers keep the whole alphabet even when it exceeds vocab_size.
    if hf.get_vocab_size() > vocab_size:
        raise ConfigError(
            f"vocab_size={vocab_size} is too small for the {kind} tokenizer on this text: the "
            f"special tokens and the characters of the text alone take {hf.get_vocab_size()}; "
            f"give vocab_size >= {hf.get_vocab_size()}"
        )
    if kind == "wordpiece":
        _renumber_wordpiece(hf)
    problem = _hf_problem(hf)
    assert problem is None, problem
    return SubwordTokenizer(kind, hf)


def _renumber_wordpiece(hf: HFTokenizer) -> None:
    """Give a trained WordPiece vocabulary ids in a fixed order: the special tokens first, as
    trained, then every other token sorted. Hugging Face's trainer numbers the same tokens
    differently in each process (its hash maps are randomly seeded); WordPiece reads only which
    tokens exist, so the order changes no tokenization. (On a small text the trainer may also
    break ties between equally frequent merges differently, so that the token sets differ:
    that, this does not fix.)"""
    vocab = hf.get_vocab()
    specials = [t for t in SPECIAL_TOKENS if t in vocab]
    rest = sorted(set(vocab) - set(specials))
    old = hf.model
    hf.model = models.WordPiece(
        {token: i for i, token in enumerate([*specials, *rest])},
        unk_token=old.unk_token,
        continuing_subword_prefix=old.continuing_subword_prefix,
        max_input_chars_per_word=old.max_input_chars_per_word,
    )


def _subword_tokenizer_from_dict(path: Path, kind: str, data: dict[str, Any]) -> SubwordTokenizer:
    hf = _hf_from_json(path, data, f"{kind} tokenizer", "retrain it")
    problem = _hf_problem(hf)
    if problem:
        raise CheckpointError(f"{path} is not a valid {kind} tokenizer: {problem}; retrain it")
    return SubwordTokenizer(kind, hf)


def _hf_from_json(path: Path, data: dict[str, Any], what: str, fix: str) -> HFTokenizer:
    """The Hugging Face tokenizer under 'hf' in the tokenizer file ``path`` read as ``data``.

    Raises:
        CheckpointError: naming ``what`` the file should hold and the ``fix``.
    """
    try:
        return HFTokenizer.from_str(json.dumps(data.get("hf")))
    except Exception as err:  # tokenizers raises a bare Exception for a bad document
        raise CheckpointError(
            f"{path} does not hold a valid {what} under 'hf' ({err}); {fix}"
        ) from None
