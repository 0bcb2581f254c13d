"""One vocabulary over every modality, laid out as AnyGPT (Zhan et al. 2024, section 3) does.

The ids are, in order:

1. the text tokens: a tokenizer of lmforge (bpe by default, ``OmniConfig.text_tokenizer``) with
   the chat role tokens (``<|user|>``, ``<|assistant|>``, ``<|end|>``, ...), exactly as a text
   chat model has them;
2. each modality's code range, one after the other (``image`` codes ``0..K-1`` are ids
   ``offset_image .. offset_image + K - 1``). A modality whose first codes are another's
   (``shared``: a video's frames are image codes) writes those with the other's ids, and only
   the rest of its codes get a range of their own;
3. the boundary tokens ``<image>``, ``</image>``, ... one pair per modality, and ``<frame>``,
   the separator between a video's frames.

A message's content is a list of parts: a string (text), or an ``Item`` (a modality and its
codes). A conversation is written as the default chat template writes one,
``<s><|user|>...<|end|><|assistant|>...<|end|>``, with an item written as
``<image> c1 c2 ... </image>`` (a video as ``<video> f1 <frame> f2 ... </video>``). Only the
assistant's parts and its ``<|end|>`` carry loss (``encode_conversation``'s mask).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from lmforge.errors import ConfigError
from lmforge.tokenize import Tokenizer
from lmforge.tokenize.chat import END_OF_TURN, ROLE_TOKENS, encode_text

__all__ = ["FRAME", "Item", "OmniVocab", "encode_conversation"]

FRAME = "<frame>"


@dataclass(frozen=True)
class Item:
    """One item of a modality inside a message: its codes, ``tokens_per_item`` of them;
    ``copy``: a perturbed copy of a training item (``Bank``), which the decoder only reads;
    ``views``: the codes of other views of it (``Modality.views``), which ``Omni.reply`` reads
    beside ``codes`` in a given item."""

    modality: str
    codes: tuple[int, ...]
    copy: bool = field(default=False, compare=False)
    views: tuple[tuple[int, ...], ...] = field(default=(), compare=False)


class OmniVocab:
    """The shared vocabulary: text ids, then the code ranges, then the boundary tokens.

    Args:
        text: the text tokenizer (with the role tokens).
        sizes: each modality's (codebook_size, tokens_per_item), in layout order.
        frames: modalities whose items are frames of equal length (video: number of frames).
        shared: modality -> (another modality, n): its codes 0..n-1 are the other's 0..n-1.
    """

    def __init__(
        self,
        text: Tokenizer,
        sizes: dict[str, tuple[int, int]],
        frames: dict[str, int] | None = None,
        shared: dict[str, tuple[str, int]] | None = None,
    ) -> None:
        self.text, self.sizes, self.frames = text, dict(sizes), dict(frames or {})
        self.shared = {m: (other, int(n)) for m, (other, n) in (shared or {}).items()}
        for name, (other, n) in self.shared.items():
            if other not in self.sizes or not 0 < n <= min(self.sizes[other][0], sizes[name][0]):
                raise ConfigError(f"{name} cannot share {n} codes with {other!r}")
        self.offsets: dict[str, int] = {}
        next_id = text.vocab_size
        for name, (codebook, _) in self.sizes.items():
            self.offsets[name] = next_id
            next_id += codebook - self._lent(name)
        self.boundary: dict[str, int] = {}
        for name in self.sizes:
            self.boundary[f"<{name}>"], self.boundary[f"</{name}>"] = next_id, next_id + 1
            next_id += 2
        self.boundary[FRAME] = next_id
        self.vocab_size = next_id + 1
        index = text._index()
        self.user, self.assistant = index[ROLE_TOKENS["user"]], index[ROLE_TOKENS["assistant"]]
        self.system, self.end = index[ROLE_TOKENS["system"]], index[END_OF_TURN]

    def layout(self) -> dict:
        """The JSON form (``from_layout`` reads it back, given the text tokenizer)."""
        layout = {"sizes": {k: list(v) for k, v in self.sizes.items()}, "frames": self.frames}
        if self.shared:
            layout["shared"] = {k: list(v) for k, v in self.shared.items()}
        return layout

    @classmethod
    def from_layout(cls, text: Tokenizer, layout: dict) -> OmniVocab:
        sizes = {k: tuple(v) for k, v in layout["sizes"].items()}
        return cls(text, sizes, layout["frames"], layout.get("shared"))

    def _lent(self, modality: str) -> int:
        """How many of ``modality``'s codes are another modality's."""
        return self.shared[modality][1] if modality in self.shared else 0

    def code_id(self, modality: str, code: int) -> int:
        """The id of one of ``modality``'s codes."""
        lent = self._lent(modality)
        if code < lent:
            return self.offsets[self.shared[modality][0]] + code
        return self.offsets[modality] + code - lent

    def code_of(self, modality: str, token: int) -> int | None:
        """The code of ``modality`` that id ``token`` writes, or None."""
        lent = self._lent(modality)
        own = token - self.offsets[modality]
        if 0 <= own < self.sizes[modality][0] - lent:
            return own + lent
        if lent and 0 <= token - self.offsets[self.shared[modality][0]] < lent:
            return token - self.offsets[self.shared[modality][0]]
        return None

    def item_ids(self, item: Item) -> list[int]:
        """``<m> codes </m>``; a framed modality gets ``<frame>`` between its frames."""
        codebook, length = self.sizes[item.modality]
        codes = list(item.codes)
        if len(codes) != length or not all(0 <= c < codebook for c in codes):
            raise ConfigError(
                f"a {item.modality} item is {length} codes in [0, {codebook}); got {len(codes)}"
            )
        ids = [self.code_id(item.modality, c) for c in codes]
        frames = self.frames.get(item.modality)
        if frames:
            step = length // frames
            framed = []
            for f in range(frames):
                framed += ([self.boundary[FRAME]] if f else []) + ids[f * step : (f + 1) * step]
            ids = framed
        return [self.boundary[f"<{item.modality}>"], *ids, self.boundary[f"</{item.modality}>"]]

    def content_ids(self, parts: Sequence[str | Item]) -> list[int]:
        ids: list[int] = []
        for part in parts:
            ids += encode_text(self.text, part) if isinstance(part, str) else self.item_ids(part)
        return ids

    def modality_of(self, token: int) -> str | None:
        """The modality whose own code range holds ``token``, or None."""
        for name, (codebook, _) in self.sizes.items():
            if 0 <= token - self.offsets[name] < codebook - self._lent(name):
                return name
        return None

    def allowed(self, modality: str) -> list[int]:
        """The ids of ``modality``'s codes, in code order."""
        return [self.code_id(modality, c) for c in range(self.sizes[modality][0])]

    def decode(self, ids: Sequence[int]) -> list[str | Item]:
        """Parts of a turn's ids, up to its ``<|end|>``: text runs, and the items between a
        modality's boundaries (an item cut short or holding foreign ids is dropped: the judge
        counts it wrong)."""
        parts: list[str | Item] = []
        opening = {self.boundary[f"<{m}>"]: m for m in self.sizes}
        text: list[int] = []
        i = 0
        while i < len(ids):
            token = ids[i]
            if token in opening:
                name, codes, i = opening[token], [], i + 1
                while i < len(ids) and ids[i] != self.boundary[f"</{name}>"]:
                    code = self.code_of(name, ids[i])
                    if code is not None:
                        codes.append(code)
                    i += 1
                if text:
                    parts.append(self.text.decode(text))
                    text = []
                if len(codes) == self.sizes[name][1]:
                    parts.append(Item(name, tuple(codes)))
            elif token == self.end:  # the turn ends here
                break
            elif token < self.text.vocab_size:
                text.append(token)
            i += 1
        if text:
            parts.append(self.text.decode(text))
        return parts


def encode_conversation(
    vocab: OmniVocab, messages: Sequence[dict], given: Sequence[str] = ()
) -> tuple[list[int], list[bool]]:
    """A conversation's ids and which of them count in the loss: the assistant's (its parts and
    ``<|end|>``), and the codes of every real item (not a perturbed ``copy``) of a ``given``
    modality wherever it stands (the ids between its ``<m>`` and ``</m>``;
    ``OmniConfig.given_loss``).

    Args:
        messages: ``{"role": "user"|"assistant"|"system", "content": [str | Item, ...]}``.
    """
    ids, mask = [vocab.text.bos_id], [False]
    role_ids = {"user": vocab.user, "assistant": vocab.assistant, "system": vocab.system}
    for message in messages:
        answer = message["role"] == "assistant"
        ids.append(role_ids[message["role"]])
        mask.append(False)
        for part in message["content"]:
            part_ids = vocab.content_ids([part])
            inner = isinstance(part, Item) and part.modality in given and not part.copy
            ids += part_ids
            mask += [answer or (inner and 0 < k < len(part_ids) - 1) for k in range(len(part_ids))]
        ids.append(vocab.end)
        mask.append(answer)
    return ids, mask
