"""The sentence rule, special tokens and ids, and the ``Tokenizer`` every kind answers.

A line becomes ``<s>`` + ``tokens(line)`` + ``</s>`` (see ``sentence_tokens``); perplexity counts
``</s>`` but not ``<s>``. Every vocabulary starts with ``SPECIAL_TOKENS`` at ids 0..4, and no token
string is empty or holds whitespace, so the n-gram model can write tokens to ARPA files.
"""

import json
import os
from collections.abc import Sequence
from typing import Any

from lmforge.checkpoint import atomic_write_text
from lmforge.errors import DataError

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


def sentence_tokens(tokens: Sequence[str]) -> list[str]:
    """The one sentence rule of lmforge: ``[<s>, *tokens, </s>]``."""
    return [BOS, *tokens, EOS]


class Tokenizer:
    """What every tokenizer answers; build one with ``train_tokenizer`` or ``load_tokenizer``.

    Subclasses provide ``vocab``, ``tokens_batch``, ``_ids_batch``, ``_decode_known`` and
    ``to_dict``; markers, id checks and saving live here once.
    """

    kind: str
    # The Jinja chat template of a chat model's tokenizer (``lmforge.tokenize.chat``), read
    # from its folder's record by ``lmforge.chat.load_chat_model``; None for a plain LM.
    chat_template: str | None = None

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


def split_words(lines: Sequence[str]) -> list[list[str]]:
    """Whitespace-separated words of each line, as KenLM's lmplz and query read text."""
    return [line.split() for line in lines]


def tokenize_lines(lines: Sequence[str], tokenizer: Tokenizer | None) -> list[list[str]]:
    """Token strings of each line with ``tokenizer``, or whitespace words without one."""
    return split_words(lines) if tokenizer is None else tokenizer.tokens_batch(lines)


def _has_whitespace(token: str) -> bool:
    return any(ch.isspace() for ch in token)
