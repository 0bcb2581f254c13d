"""Tokenizers: the one rule that turns a line of text into tokens for every model family.

A line becomes ``<s>`` + ``tokens(line)`` + ``</s>`` (see ``sentence_tokens``); perplexity counts
``</s>`` but not ``<s>``. Every vocabulary starts with ``SPECIAL_TOKENS`` at ids 0..4, and no token
string is empty or holds whitespace, so the n-gram model can write tokens to ARPA files.

Kinds:

* ``word``: whitespace words as given (``str.split``). Words seen at most ``rare_threshold`` times
  in training, and every word not in the vocabulary, become ``<rare>`` (Bengio et al. 2003, "merging
  all words with frequency <= 3 into a single symbol"); with ``rare_threshold=0`` every training
  word is kept and unseen words become ``<unk>``.
* ``char``: one token per character, whitespace shown as "▁"; every training character is kept.
* ``jieba``: Chinese word segmentation by jieba (default dictionary, HMM on), then as ``word``.
* ``bpe``, ``bytebpe``, ``wordpiece``: Hugging Face ``tokenizers`` models (sentencepiece-style BPE,
  GPT-2 byte-level BPE, BERT WordPiece) trained to ``vocab_size``; they add no markers themselves.
* ``pretrained`` (not trained here): an imported Hugging Face checkpoint's tokenizer, keeping the
  checkpoint's ids and special tokens (``PretrainedTokenizer``; see ``lmforge.hub.hf``).

A tokenizer is saved as one JSON file and read back with ``load_tokenizer``.
"""

import contextlib
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from lmforge.checkpoint import atomic_write_text
from lmforge.errors import CheckpointError, ConfigError, DataError

__all__ = [
    "PAD",
    "UNK",
    "BOS",
    "EOS",
    "MASK",
    "RARE",
    "SPECIAL_TOKENS",
    "PAD_ID",
    "UNK_ID",
    "BOS_ID",
    "EOS_ID",
    "MASK_ID",
    "TOKENIZER_KINDS",
    "SPACE_MARK",
    "WHITESPACE",
    "Tokenizer",
    "VocabTokenizer",
    "SubwordTokenizer",
    "PretrainedTokenizer",
    "PRETRAINED_ROLES",
    "train_tokenizer",
    "load_tokenizer",
    "sentence_tokens",
]

PAD, UNK, BOS, EOS, MASK, RARE = "<pad>", "<unk>", "<s>", "</s>", "<mask>", "<rare>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS, MASK)
PAD_ID, UNK_ID, BOS_ID, EOS_ID, MASK_ID = range(len(SPECIAL_TOKENS))
TOKENIZER_KINDS = ("word", "char", "jieba", "bpe", "bytebpe", "wordpiece")

_FORMAT_VERSION = 1
SPACE_MARK = "\u2581"  # "▁", sentencepiece's visible space
# Every character for which str.isspace() is true (a test recomputes it); ARPA readers split on
# any of them.
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_TO_SPACE_MARK = str.maketrans(dict.fromkeys(WHITESPACE, SPACE_MARK))
_BYTEBPE_MIN_VOCAB = len(SPECIAL_TOKENS) + 256


def sentence_tokens(tokens: Sequence[str]) -> list[str]:
    """The one sentence rule of lmforge: ``[<s>, *tokens, </s>]``."""
    return [BOS, *tokens, EOS]


class Tokenizer:
    """What every tokenizer answers; build one with ``train_tokenizer`` or ``load_tokenizer``.

    Subclasses provide ``vocab``, ``tokens_batch``, ``_ids_batch``, ``_decode_known`` and
    ``to_dict``; markers, id checks and saving live here once.
    """

    kind: str

    @property
    def vocab(self) -> tuple[str, ...]:
        """Token strings indexed by id; ``SPECIAL_TOKENS`` come first."""
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""
        return len(self.vocab)

    # Ids of the special roles (an imported checkpoint's tokenizer keeps its own ids). BERT
    # reads bos as [CLS] and eos as [SEP].
    pad_id = PAD_ID
    unk_id = UNK_ID
    bos_id = BOS_ID
    eos_id = EOS_ID
    mask_id = MASK_ID

    def tokens(self, line: str) -> list[str]:
        """Token strings of one line, without markers; unknown pieces are mapped as per kind."""
        return self.tokens_batch([line])[0]

    def tokens_batch(self, lines: Sequence[str]) -> list[list[str]]:
        """Token strings of many lines (the fast path)."""
        raise NotImplementedError

    def encode(self, line: str, markers: bool = True) -> list[int]:
        """Ids of one line; with ``markers`` it is ``[BOS_ID, ..., EOS_ID]``."""
        return self.encode_batch([line], markers=markers)[0]

    def encode_batch(self, lines: Sequence[str], markers: bool = True) -> list[list[int]]:
        """Ids of many lines (the fast path); with ``markers`` each is wrapped in BOS/EOS."""
        rows = self._ids_batch(lines)
        if markers:
            return [[BOS_ID, *row, EOS_ID] for row in rows]
        return rows

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``, skipping special tokens; best-effort inverse of ``encode``.

        Raises:
            DataError: an id is outside ``0 .. vocab_size - 1``.
        """
        checked = [self._check_id(int(i)) for i in ids]
        return self._decode_known([i for i in checked if i >= len(SPECIAL_TOKENS)])

    def token_to_id(self, token: str) -> int:
        """Id of a token string of the vocabulary.

        Raises:
            DataError: ``token`` is not in the vocabulary.
        """
        index = self._index()
        if token not in index:
            raise DataError(
                f"token {token!r} is not in the vocabulary of this {self.kind} tokenizer; "
                "map text with tokens() or encode(), which handle unknown words"
            )
        return index[token]

    def id_to_token(self, i: int) -> str:
        """Token string of id ``i``.

        Raises:
            DataError: ``i`` is outside ``0 .. vocab_size - 1``.
        """
        return self.vocab[self._check_id(i)]

    def to_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the tokenizer, as plain JSON values."""
        raise NotImplementedError

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the tokenizer to one JSON file, atomically (temp file beside it, then replace)."""
        atomic_write_text(path, json.dumps(self.to_dict(), ensure_ascii=False))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, vocab_size={self.vocab_size})"

    def _check_id(self, i: int) -> int:
        if not 0 <= i < self.vocab_size:
            raise DataError(
                f"token id {i} is out of range for this {self.kind} tokenizer; "
                f"ids run from 0 to {self.vocab_size - 1}: use the tokenizer the ids were made with"
            )
        return i

    def _index(self) -> dict[str, int]:
        raise NotImplementedError

    def _ids_batch(self, lines: Sequence[str]) -> list[list[int]]:
        raise NotImplementedError

    def _decode_known(self, ids: list[int]) -> str:
        raise NotImplementedError


# ----------------------------------------------------------------------------------------------
# word, char, jieba: a splitter plus a plain vocabulary list


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


# ----------------------------------------------------------------------------------------------
# bpe, bytebpe, wordpiece: Hugging Face tokenizers


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
    problem = _hf_problem(hf)
    assert problem is None, problem
    return SubwordTokenizer(kind, hf)


# ----------------------------------------------------------------------------------------------
# pretrained: a Hugging Face checkpoint's own tokenizer, with the checkpoint's ids


class PretrainedTokenizer(Tokenizer):
    """The tokenizer of an imported Hugging Face checkpoint (``lmforge.hub.hf``), ids unchanged.

    A checkpoint's embedding rows are indexed by its own ids, so its special tokens keep them
    (BERT: [PAD]=0, [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103) instead of lmforge's 0..4.
    Each plays an lmforge role: ``encode`` with markers gives ``[bos, ..., eos]``, that is
    [CLS] ... [SEP] for BERT.

    Args:
        hf: the checkpoint's Hugging Face tokenizer; its truncation and padding are switched off
            (lmforge adds markers, truncates and pads itself).
        special_tokens: token string of each role in ``PRETRAINED_ROLES`` (pad, unk, bos, eos,
            mask), each in the vocabulary.
        max_length: most tokens of one encoded line, markers included; 0 = the model's limit.
        lowercase: lower-case lines before tokenizing (sentence-transformers' do_lower_case).
    """

    kind = "pretrained"

    def __init__(
        self,
        hf: HFTokenizer,
        special_tokens: dict[str, str],
        max_length: int = 0,
        lowercase: bool = False,
    ) -> None:
        problem = _pretrained_problem(hf, special_tokens, max_length)
        if problem:
            raise CheckpointError(f"cannot use this Hugging Face tokenizer: {problem}")
        hf.no_truncation()
        hf.no_padding()
        self._hf = hf
        self._ids = hf.get_vocab(with_added_tokens=True)
        self._vocab = tuple(sorted(self._ids, key=self._ids.__getitem__))
        self.special_tokens = {role: special_tokens[role] for role in PRETRAINED_ROLES}
        self.max_length = max_length
        self.lowercase = lowercase
        self._special_ids = {self._ids[token] for token in self.special_tokens.values()}

    @property
    def vocab(self) -> tuple[str, ...]:
        return self._vocab

    @property
    def pad_id(self) -> int:
        return self._ids[self.special_tokens["pad"]]

    @property
    def unk_id(self) -> int:
        return self._ids[self.special_tokens["unk"]]

    @property
    def bos_id(self) -> int:
        """The start marker ([CLS] for BERT)."""
        return self._ids[self.special_tokens["bos"]]

    @property
    def eos_id(self) -> int:
        """The end marker ([SEP] for BERT)."""
        return self._ids[self.special_tokens["eos"]]

    @property
    def mask_id(self) -> int:
        return self._ids[self.special_tokens["mask"]]

    def tokens_batch(self, lines: Sequence[str]) -> list[list[str]]:
        encodings = self._hf.encode_batch(self._prepared(lines), add_special_tokens=False)
        return [e.tokens for e in encodings]

    def encode_batch(self, lines: Sequence[str], markers: bool = True) -> list[list[int]]:
        rows = self._ids_batch(lines)
        if markers:
            bos, eos = self.bos_id, self.eos_id
            return [[bos, *row, eos] for row in rows]
        return rows

    def decode(self, ids: Sequence[int]) -> str:
        checked = [self._check_id(int(i)) for i in ids]
        return self._hf.decode([i for i in checked if i not in self._special_ids])

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "format_version": _FORMAT_VERSION,
            "special_tokens": self.special_tokens,
            "max_length": self.max_length,
            "lowercase": self.lowercase,
            "hf": json.loads(self._hf.to_str()),
        }

    def _index(self) -> dict[str, int]:
        return self._ids

    def _prepared(self, lines: Sequence[str]) -> list[str]:
        return [line.lower() for line in lines] if self.lowercase else list(lines)

    def _ids_batch(self, lines: Sequence[str]) -> list[list[int]]:
        encodings = self._hf.encode_batch_fast(self._prepared(lines), add_special_tokens=False)
        return [e.ids for e in encodings]


PRETRAINED_ROLES = ("pad", "unk", "bos", "eos", "mask")


def _pretrained_problem(hf: Any, special_tokens: Any, max_length: Any) -> str | None:
    """What is wrong with the parts of a PretrainedTokenizer, or None if they are usable."""
    if not isinstance(hf, HFTokenizer):
        return "'hf' is not a Hugging Face tokenizer"
    ids = hf.get_vocab(with_added_tokens=True)
    if sorted(ids.values()) != list(range(len(ids))):
        return "its token ids are not 0 .. vocab_size - 1 without gaps"
    if not isinstance(special_tokens, dict):
        return "special_tokens must map roles to token strings"
    for role in PRETRAINED_ROLES:
        if special_tokens.get(role) not in ids:
            return f"the {role} token {special_tokens.get(role)!r} is not in its vocabulary"
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 0:
        return f"max_length must be an integer >= 0, got {max_length!r}"
    return None


# ----------------------------------------------------------------------------------------------
# training, saving, loading


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


def _subword_tokenizer_from_dict(path: Path, kind: str, data: dict[str, Any]) -> SubwordTokenizer:
    try:
        hf = HFTokenizer.from_str(json.dumps(data.get("hf")))
    except Exception as err:  # tokenizers raises a bare Exception for a bad document
        raise CheckpointError(
            f"{path} does not hold a valid {kind} tokenizer under 'hf' ({err}); retrain it"
        ) from None
    problem = _hf_problem(hf)
    if problem:
        raise CheckpointError(f"{path} is not a valid {kind} tokenizer: {problem}; retrain it")
    return SubwordTokenizer(kind, hf)


def _pretrained_tokenizer_from_dict(path: Path, data: dict[str, Any]) -> PretrainedTokenizer:
    try:
        hf = HFTokenizer.from_str(json.dumps(data.get("hf")))
    except Exception as err:  # tokenizers raises a bare Exception for a bad document
        raise CheckpointError(
            f"{path} does not hold a valid tokenizer under 'hf' ({err}); import the model again"
        ) from None
    special_tokens, max_length = data.get("special_tokens"), data.get("max_length", 0)
    problem = _pretrained_problem(hf, special_tokens, max_length)
    if problem:
        raise CheckpointError(f"{path} is not a valid pretrained tokenizer: {problem}")
    return PretrainedTokenizer(hf, special_tokens, max_length, bool(data.get("lowercase")))


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


def _has_whitespace(token: str) -> bool:
    return any(ch.isspace() for ch in token)
