"""The any-to-any model as one object: the frozen modality tokenizers, the shared vocabulary and
lmforge's GPT over it, with the decoding that keeps every generated item well formed.

An omni folder (written and read through ``lmforge.folders``) holds ``config.json`` (kind
``omni``: the modalities, the vocabulary layout and the training settings), ``decoder/`` (a
gpt model folder whose tokenizer is the text part of the vocabulary) and one part folder per
modality tokenizer (``image/``, ``speech/``, ...).

Decoding (``Omni.reply``) follows the layout: outside an item the model writes text, an item's
opening token, or ``<|end|>``; after ``<image>`` it may only write image codes, exactly
``tokens_per_item`` of them (with ``<frame>`` placed between a video's frames), and the closing
token is then written for it. Text is greedy unless asked otherwise; an item's codes are sampled
at its modality's temperature (``Modality.temperature``, ``item_samplers``): greedy decoding would
draw one image per label, temperature 1 draws items as varied as real ones but more of them
wrong, and speech and 3-D shapes are judged right most often near greedy — ``benchmarks/
RESULTS.md`` gives the figures.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from lmforge.errors import CheckpointError
from lmforge.folders import load_model, load_part, read_record, save_model, save_part
from lmforge.nn.sampling import Sampler
from lmforge.omni.modalities import MODALITIES
from lmforge.omni.vocab import FRAME, Item, OmniVocab, encode_conversation

__all__ = ["KIND", "Omni", "GREEDY", "item_samplers", "item_temperatures"]

KIND = "omni"
GREEDY = Sampler(temperature=0.0)


def item_temperatures(temperature: float | None = None) -> dict[str, float]:
    """The sampling temperature of each modality's items: its own (``Modality.temperature``),
    or ``temperature`` for every modality where given."""
    return {
        name: m.temperature if temperature is None else temperature
        for name, m in MODALITIES.items()
    }


def item_samplers(temperature: float | None = None) -> dict[str, Sampler]:
    """A sampler per modality at ``item_temperatures(temperature)`` (ConfigError names a
    bad temperature)."""
    return {m: Sampler(temperature=t) for m, t in item_temperatures(temperature).items()}


@dataclass
class Omni:
    """The decoder, its vocabulary and the modality tokenizers (name -> tokenizer)."""

    decoder: torch.nn.Module
    vocab: OmniVocab
    tokenizers: dict
    record: dict

    def save(self, folder: str | os.PathLike, locked: bool = False) -> Path:
        """Write the folder (``locked``: the caller holds its lock, as ``train_omni`` does)."""
        out = Path(folder)
        for name, tokenizer in self.tokenizers.items():
            tokenizer.save(out / name)
        save_model(out / "decoder", self.decoder, self.vocab.text, omni=self.vocab.layout())
        config = {**self.record, "modalities": list(self.tokenizers), "layout": self.vocab.layout()}
        return save_part(out, KIND, config, {}, locked=locked)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Omni:
        """Raises CheckpointError: not an omni folder, or a part missing or damaged."""
        path = Path(folder)
        if not (path / "config.json").exists():
            raise CheckpointError(
                f"{path}: no omni model here; make one with `lmforge omni train --out {path}`"
            )
        record, _ = load_part(path, KIND)
        tokenizers = {}
        for name in record.get("modalities", []):
            if name not in MODALITIES:
                raise CheckpointError(f"{path}: unknown modality {name!r}; re-create the folder")
            tokenizers[name] = MODALITIES[name].tokenizer_class().load(path / name)
        decoder, text, _ = load_model(path / "decoder")
        vocab = OmniVocab.from_layout(text, record["layout"])
        if decoder.config.vocab_size != vocab.vocab_size:
            raise CheckpointError(
                f"{path}: the decoder has {decoder.config.vocab_size} tokens, the layout "
                f"{vocab.vocab_size}; re-create the folder with `lmforge omni train`"
            )
        return cls(decoder.eval(), vocab, tokenizers, record)

    # -- items <-> codes --------------------------------------------------------------------

    def encode(self, modality: str, x: torch.Tensor, views: bool = True) -> list[Item]:
        """Items (B, ...) of ``modality`` as their codes; with ``views``, each also carries the
        codes of its modality's other views of it (``Modality.views``), which ``reply`` reads
        beside it."""
        tokenizer = self.tokenizers[modality]
        others = (
            [tokenizer.encode(v).tolist() for v in MODALITIES[modality].views(x)] if views else []
        )
        return [
            Item(modality, tuple(row), views=tuple(tuple(o[i]) for o in others))
            for i, row in enumerate(tokenizer.encode(x).tolist())
        ]

    def decode(self, item: Item) -> torch.Tensor:
        """An item's codes back to the modality's form (one item, no batch dimension)."""
        return self.tokenizers[item.modality].decode(torch.tensor([item.codes]))[0]

    # -- decoding ---------------------------------------------------------------------------

    @torch.no_grad()
    def reply(
        self,
        conversations: list[list[dict]],
        max_new_tokens: int = 160,
        text: Sampler = GREEDY,
        items: dict[str, Sampler] | None = None,
        seed: int = 0,
    ) -> list[list]:
        """The assistant's next turn in each conversation, as parts (text and ``Item``\\ s).

        Conversations of equal prompt length are decoded together, one batch per length. A
        conversation whose given items carry ``views`` is read once as written and once per
        view. While the reply is text, its next-token probabilities are averaged over those
        readings; inside an item it draws, they are the reading's as written (a mixture of
        readings blends the drawings of different words: RESULTS.md, 2026-12-07). Each token
        chosen is written in every reading (one reply).
        ``items``: the sampler of each modality's codes (default ``item_samplers()``).
        """
        items = item_samplers() if items is None else items
        prompts = [
            [encode_conversation(self.vocab, v)[0] + [self.vocab.assistant] for v in _readings(m)]
            for m in conversations
        ]
        replies: list = [None] * len(prompts)
        generator = torch.Generator().manual_seed(seed)
        by_length: dict[int, list[int]] = {}
        for i, readings in enumerate(prompts):
            by_length.setdefault(len(readings[0]), []).append(i)
        limit = self.decoder.config.max_seq_len
        for batch in by_length.values():
            rows = [ids[-limit:] for i in batch for ids in prompts[i]]
            groups, start = [], 0
            for i in batch:
                groups.append(range(start, start + len(prompts[i])))
                start += len(prompts[i])
            decoded = self._decode(
                torch.tensor(rows), groups, max_new_tokens, text, items, generator
            )
            for i, ids in zip(batch, decoded, strict=True):
                replies[i] = self.vocab.decode(ids)
        return replies

    def _decode(self, prompt, groups, max_new_tokens, text, items, generator) -> list[list[int]]:
        """The new ids of each group of ``prompt``'s rows (consecutive rows: the readings of
        one conversation, ``reply``)."""
        vocab, size = self.vocab, len(groups)
        masks, openings = self._masks(), self._openings
        row_group = torch.tensor([g for g, rows in enumerate(groups) for _ in rows])
        logits, cache = self.decoder.step(prompt)
        out: list[list[int]] = [[] for _ in range(size)]
        inside: list[str | None] = [None] * size  # the modality of the item being written
        count = [0] * size  # its codes so far
        done = [False] * size
        for _ in range(max_new_tokens):
            allowed = torch.stack([masks[m or "text"] for m in inside])  # (G, V)
            # text is chosen from all readings; an item's codes follow the reading as written
            readings = [
                rows if m is None else rows[:1] for rows, m in zip(groups, inside, strict=True)
            ]
            masked = logits.float().masked_fill(~allowed[row_group], float("-inf"))
            scores = _pooled(masked, readings)
            chosen = {m: items[m](scores, generator) for m in dict.fromkeys(inside) if m}
            chosen[None] = text(scores, generator)
            next_ids = []
            for r in range(size):
                token = int(chosen[inside[r]][r])
                forced = self._forced(inside[r], count[r], out[r])
                token = forced if forced is not None else token
                if done[r]:
                    token = vocab.end
                elif inside[r] and forced is None:
                    count[r] += 1
                elif token == vocab.boundary.get(f"</{inside[r]}>"):
                    inside[r], count[r] = None, 0
                elif token in openings:
                    inside[r] = openings[token]
                if not done[r]:
                    out[r].append(token)
                done[r] = done[r] or token == vocab.end
                next_ids.append(token)
            if all(done):
                break
            step = torch.tensor(next_ids)[row_group]
            logits, cache = self.decoder.step(step[:, None], cache)
        return out

    def _forced(self, modality: str | None, count: int, written: list[int]) -> int | None:
        """The token the layout dictates here: a closing token after the last code, a
        ``<frame>`` between frames; None where the model chooses."""
        if modality is None:
            return None
        length = self.vocab.sizes[modality][1]
        if count == length:
            return self.vocab.boundary[f"</{modality}>"]
        frames = self.vocab.frames.get(modality)
        frame = self.vocab.boundary[FRAME]
        if frames and count and count % (length // frames) == 0 and written[-1] != frame:
            return frame
        return None

    @property
    def _openings(self) -> dict[int, str]:
        return {self.vocab.boundary[f"<{m}>"]: m for m in self.vocab.sizes}

    def _masks(self) -> dict[str, torch.Tensor]:
        """Which ids may come next: "text" outside an item, a modality's codes inside one."""
        vocab, size = self.vocab, self.vocab.vocab_size
        text = torch.zeros(size, dtype=torch.bool)
        text[: vocab.text.vocab_size] = True
        for token in (
            vocab.user,
            vocab.assistant,
            vocab.system,
            vocab.text.bos_id,
            vocab.text.pad_id,
        ):
            text[token] = False
        text[list(self._openings)] = True
        masks = {"text": text}
        for name in vocab.sizes:
            inside = torch.zeros(size, dtype=torch.bool)
            inside[list(vocab.allowed(name))] = True
            masks[name] = inside
        return masks


def _readings(messages: list[dict]) -> list[list[dict]]:
    """A conversation as written, then once per view of its items (``Item.views``): the k-th
    reading puts each item's k-th view in its place (an item with fewer views stays)."""
    items = [p for m in messages for p in m["content"] if isinstance(p, Item)]
    count = max((len(item.views) for item in items), default=0)
    return [messages] + [
        [{**m, "content": [_view(p, k) for p in m["content"]]} for m in messages]
        for k in range(count)
    ]


def _view(part, k: int):
    if isinstance(part, Item) and k < len(part.views):
        return Item(part.modality, part.views[k], part.copy)
    return part


def _pooled(scores: torch.Tensor, groups) -> torch.Tensor:
    """One row of scores per group of rows: a lone row as it is, a group's rows as the log of
    their mean probability (each row's scores normalised first)."""
    if len(groups) == len(scores):  # every row alone
        return scores
    return torch.stack(
        [
            scores[rows[0]]
            if len(rows) == 1
            else torch.logsumexp(torch.log_softmax(scores[rows[0] : rows[-1] + 1], -1), 0)
            - math.log(len(rows))
            for rows in groups
        ]
    )


def is_omni_folder(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds an omni model (its ``config.json`` says so)."""
    try:
        return read_record(folder).get("kind") == KIND
    except CheckpointError:
        return False
