"""Dialogues for chat tuning: JSON Lines in the OpenAI / Hugging Face messages form.

One conversation per line::

    {"messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "..."},
                  {"role": "assistant", "content": "..."}, ...]}

An optional system message comes first; then user and assistant turns alternate, starting with
the user and ending with the assistant. Other keys (on a line or on a message) are kept and
ignored here. ``encode_dialogue`` renders a conversation with a chat template and marks the
tokens a chat-tuned model learns to write: every assistant turn, its end-of-turn token included.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from lmforge.data.batching import pad_rows
from lmforge.data.corpus import read_jsonl
from lmforge.errors import ConfigError, DataError
from lmforge.tokenize import ChatTemplate, Tokenizer, encode_text

__all__ = [
    "ROLES",
    "check_messages",
    "dialogue_batch",
    "encode_dialogue",
    "load_dialogues",
    "pack_dialogues",
    "read_dialogues",
]

ROLES = ("system", "user", "assistant")
_SHAPE = '{"messages": [{"role": ..., "content": ...}, ...]}'


def read_dialogues(path: str | os.PathLike) -> list[dict]:
    """The conversations of a JSON Lines file (also ``.jsonl.xz`` / ``.jsonl.gz``), in order.

    Raises:
        DataError: naming the file and line: not JSON, no ``messages`` list, a wrong role, an
            empty content, turns out of order, or a conversation that does not end with an
            assistant turn.
    """
    dialogues = []
    for number, record in read_jsonl(path, _SHAPE):
        problem = check_messages(record.get("messages"))
        if problem:
            raise DataError(f"{path} line {number}: {problem}; give one {_SHAPE} per line")
        dialogues.append(record)
    return dialogues


def load_dialogues(source: str | os.PathLike, split: str = "train") -> list[dict]:
    """Conversations by name or path: a built-in set (``lmforge.data.tang_chat``'s
    ``BUILTIN_DIALOGUES``, its ``split``) or a JSON Lines file (``read_dialogues``)."""
    from lmforge.data.tang_chat import BUILTIN_DIALOGUES  # builds on the corpus reader too

    if str(source) in BUILTIN_DIALOGUES and not Path(source).exists():
        return BUILTIN_DIALOGUES[str(source)](split)
    return read_dialogues(source)


def check_messages(messages: object, ends_with: str | None = "assistant") -> str | None:
    """What is wrong with a conversation, or None.

    Args:
        messages: the ``messages`` list.
        ends_with: the role of the last turn ("assistant" for training, "user" for a prompt),
            or None for any (an empty conversation is then fine too).
    """
    if not isinstance(messages, list) or (ends_with and not messages):
        return "'messages' must be a non-empty list of messages"
    expected = "user"
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"message {i + 1} is not a JSON object"
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            return f"message {i + 1} has role {role!r}; roles are {', '.join(ROLES)}"
        if not isinstance(content, str) or not content.strip():
            return f"message {i + 1} ({role}) has no content; give a non-empty string"
        if role == "system" and i == 0:
            continue
        if role != expected:
            where = "only first" if role == "system" else f"after a {_other(role)} turn"
            return f"message {i + 1} is a {role} turn where the {expected}'s turn belongs ({where})"
        expected = _other(role)
    last = messages[-1]["role"] if messages else None
    if ends_with and last != ends_with:
        return f"the conversation ends with a {last} turn; it must end with the {ends_with}'s turn"
    return None


def _other(role: str) -> str:
    return "assistant" if role == "user" else "user"


def encode_dialogue(
    tokenizer: Tokenizer, template: ChatTemplate, messages: Sequence[dict]
) -> tuple[list[int], list[bool]]:
    """A conversation's ids as the template renders it, and which of them an assistant wrote.

    Assistant turn i spans the ids between the conversation up to it rendered with a generation
    prompt and the conversation up to and including it: its content and its end-of-turn token.

    Returns:
        (ids, mask): mask[t] is True where ids[t] belongs to an assistant turn.

    Raises:
        ConfigError: the template does not render the conversation turn by turn (an earlier
            part of the conversation is not a prefix of a later one).
    """
    ids = encode_text(tokenizer, template.render(messages, tokenizer))
    mask = [False] * len(ids)
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = encode_text(tokenizer, template.render(messages[:i], tokenizer, True))
        through = encode_text(tokenizer, template.render(messages[: i + 1], tokenizer))
        if ids[: len(before)] != before or ids[: len(through)] != through:
            raise ConfigError(
                "the chat template does not render a conversation turn by turn (the text up to "
                "an assistant turn must begin the whole); use a template that appends each turn"
            )
        mask[len(before) : len(through)] = [True] * (len(through) - len(before))
    return ids, mask


def dialogue_batch(rows: Sequence[tuple[list[int], list[bool]]], pad_id: int):
    """Encoded conversations (``encode_dialogue``) as one next-token batch, right-padded.

    Returns:
        inputs (B, T) = ids[:-1], targets (B, T) = ids[1:], weights (B, T) float: 1 where the
        target is an assistant's token, 0 at context and padding.
    """
    inputs, _ = pad_rows([ids[:-1] for ids, _ in rows], pad_id)
    targets, _ = pad_rows([ids[1:] for ids, _ in rows], pad_id)
    weights, _ = pad_rows([mask[1:] for _, mask in rows], 0, torch.float32)
    return inputs, targets, weights


def pack_dialogues(
    rows: Sequence[tuple[list[int], list[bool]]], width: int
) -> list[tuple[list[int], list[bool]]]:
    """Encoded conversations packed in order into rows of at most ``width`` ids: each row holds
    as many consecutive conversations as fit (a conversation longer than ``width`` is its own
    row). Fewer, fuller rows than one conversation per row; a conversation may read the ones
    packed before it, whose tokens carry no loss of its own."""
    packed: list[tuple[list[int], list[bool]]] = []
    ids: list[int] = []
    mask: list[bool] = []
    for row_ids, row_mask in rows:
        if ids and len(ids) + len(row_ids) > width:
            packed.append((ids, mask))
            ids, mask = [], []
        ids, mask = ids + row_ids, mask + row_mask
    if ids:
        packed.append((ids, mask))
    return packed
