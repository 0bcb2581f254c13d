"""``pretrained``: an imported Hugging Face checkpoint's own tokenizer, with the checkpoint's ids.

Not trained here: ``lmforge.hub.hf`` builds it from a checkpoint folder, keeping the checkpoint's
ids and special tokens.
"""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as HFTokenizer

from lmforge.errors import CheckpointError
from lmforge.tokenize.base import _FORMAT_VERSION, Tokenizer
from lmforge.tokenize.subword import _hf_from_json


def _role_id(role: str, doc: str | None = None) -> property:
    """A read-only property: the checkpoint's id of the special token playing ``role``."""

    def get(self: Any) -> int:
        return self._ids[self.special_tokens[role]]

    return property(get, doc=doc)


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

    pad_id = _role_id("pad")
    unk_id = _role_id("unk")
    bos_id = _role_id("bos", "The start marker ([CLS] for BERT).")
    eos_id = _role_id("eos", "The end marker ([SEP] for BERT).")
    mask_id = _role_id("mask")

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


def _pretrained_tokenizer_from_dict(path: Path, data: dict[str, Any]) -> PretrainedTokenizer:
    hf = _hf_from_json(path, data, "tokenizer", "import the model again")
    special_tokens, max_length = data.get("special_tokens"), data.get("max_length", 0)
    problem = _pretrained_problem(hf, special_tokens, max_length)
    if problem:
        raise CheckpointError(f"{path} is not a valid pretrained tokenizer: {problem}")
    return PretrainedTokenizer(hf, special_tokens, max_length, bool(data.get("lowercase")))
