"""Talking to a chat model: load one, and write the assistant's next turn of a conversation.

``reply`` renders the conversation with the tokenizer's chat template and a generation prompt,
then runs the one token loop (``lmforge.nn.decoding.decode_tokens``) with the sampler until the
end-of-turn token, ``max_new_tokens``, or the model's context limit. The text is streamed to a
callback as it is written.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from lmforge.data.dialogues import check_messages
from lmforge.errors import ConfigError, DataError
from lmforge.folders import load_model
from lmforge.models import family_of
from lmforge.nn.decoding import decode_tokens
from lmforge.nn.sampling import Sampler
from lmforge.tokenize import (
    CHAT_TOKENS,
    END_OF_TURN,
    ChatTemplate,
    Tokenizer,
    encode_text,
    has_role_tokens,
)

__all__ = ["GREEDY", "Reply", "chat_family", "decode_reply", "load_chat_model", "reply"]

GREEDY = Sampler(temperature=0.0)


@dataclass(frozen=True)
class Reply:
    """The assistant's turn.

    Attributes:
        text: what it wrote, without the end-of-turn token (a role token it wrote shows as its
            string, such as ``<|user|>``).
        tokens: how many tokens it wrote, the end-of-turn token not counted.
        seconds: wall-clock time of the generation (prompt included).
        stopped: True when it ended with the end-of-turn token (not at ``max_new_tokens`` or
            the context limit).
    """

    text: str
    tokens: int
    seconds: float
    stopped: bool


def chat_family(model) -> str:
    """The family name of a model that can be chat-tuned or chatted with.

    Raises:
        ConfigError: a model that is not a left-to-right LM of the Trainer (ngram, bert,
            encoder-decoders, elmo), named with the reason.
    """
    family = family_of(model)
    if family.fitting != "trainer":
        raise ConfigError(
            f"{family.name} models are counted, not trained: they cannot be chat-tuned; "
            "use a neural causal LM (gpt)"
        )
    if not family.promptable:
        why = "reads the future" if family.causal else "is not a left-to-right LM"
        raise ConfigError(f"a {family.name} model {why}, so it cannot chat; use a gpt model")
    return family.name


def load_chat_model(folder: str | os.PathLike):
    """A chat model folder (made by ``lmforge chat-tune``, or a Hugging Face folder exported
    from one).

    Returns:
        (model in eval mode, tokenizer with its ``chat_template``, read from the folder's
        record by ``lmforge.folders.load_model``).

    Raises:
        CheckpointError: no such folder, or a broken one.
        ConfigError: the folder holds a model that was not chat-tuned.
    """
    model, tokenizer, _ = load_model(folder)
    chat_family(model)
    if tokenizer is None or not tokenizer.chat_template or not has_role_tokens(tokenizer):
        raise ConfigError(
            f"{folder} holds a language model without a chat template; make a chat model of "
            f"it with `lmforge chat-tune {folder} --dialogues FILE.jsonl --out DIR`"
        )
    return model, tokenizer


def reply(
    model,
    tokenizer: Tokenizer,
    messages: Sequence[dict],
    max_new_tokens: int = 200,
    sampler: Sampler | None = None,
    on_text: Callable[[str], None] | None = None,
) -> Reply:
    """The assistant's next turn after ``messages``.

    Args:
        model: a chat model (``load_chat_model``).
        tokenizer: its tokenizer, with its ``chat_template``.
        messages: the conversation so far, ending with a user turn.
        max_new_tokens: the most tokens to write.
        sampler: how to pick each token; None is greedy.
        on_text: called with each new piece of text as soon as it is written.

    Raises:
        DataError: a malformed conversation.
        ConfigError: a tokenizer without a chat template.
    """
    problem = check_messages(list(messages), ends_with="user")
    if problem:
        raise DataError(f"cannot reply to this conversation: {problem}")
    if not tokenizer.chat_template:
        raise ConfigError(
            "this tokenizer has no chat template; load the model with load_chat_model"
        )
    template = ChatTemplate(tokenizer.chat_template)
    limit = getattr(model.config, "max_seq_len", None)  # learned positions: a hard limit
    prompt = _prompt_ids(tokenizer, template, list(messages), limit, max_new_tokens)
    steps = max_new_tokens if limit is None else min(max_new_tokens, limit - len(prompt))
    end_id = tokenizer.token_to_id(END_OF_TURN)
    stream = _Stream(tokenizer, on_text)
    sampler = sampler or GREEDY
    device = next(model.parameters()).device
    generator = None
    if sampler.seed is not None:
        generator = torch.Generator(device=device).manual_seed(sampler.seed)

    def choose(logits: torch.Tensor, written: torch.Tensor) -> torch.Tensor:
        token = sampler(logits, generator)
        stream.add(int(token[0]), end_id)
        return token

    started = time.perf_counter()
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            inputs = torch.tensor([prompt], dtype=torch.long, device=device)
            out = decode_tokens(model.step, inputs, None, steps, choose, end_id)[0].tolist()
    finally:
        model.train(was_training)
    seconds = time.perf_counter() - started
    stopped = bool(out) and out[-1] == end_id
    ids = out[:-1] if stopped else out
    stream.flush()
    return Reply(decode_reply(tokenizer, ids), len(ids), seconds, stopped)


def _prompt_ids(
    tokenizer: Tokenizer, template: ChatTemplate, messages: list[dict], limit, room: int
) -> list[int]:
    """The rendered conversation with a generation prompt. For a model with a ``limit`` of
    positions, the reply needs ``room`` of them, at most a sixteenth (the context matters more
    than a long reply: the reply stops at the limit): while the prompt leaves less, the oldest
    exchanges after the system message are left out, and a last turn still too long is cut on
    the left."""
    system = messages[:1] if messages[0]["role"] == "system" else []
    turns = messages[len(system) :]
    need = 0 if limit is None else min(room, max(1, limit // 16))
    while True:
        ids = encode_text(tokenizer, template.render([*system, *turns], tokenizer, True))
        if limit is None or len(ids) + need <= limit or len(turns) == 1:
            break
        turns = turns[2:]  # the oldest user turn and its answer
    if limit is not None and len(ids) + need > limit:
        ids = ids[len(ids) + need - limit :]
    return ids


def decode_reply(tokenizer: Tokenizer, ids: Sequence[int]) -> str:
    """Text of a reply's ids; a role or end-of-turn token shows as its string."""
    chat_ids = {tokenizer.token_to_id(token): token for token in CHAT_TOKENS}
    parts, run = [], []
    for i in ids:
        if i in chat_ids:
            parts += [tokenizer.decode(run), chat_ids[i]]
            run = []
        else:
            run.append(i)
    return "".join([*parts, tokenizer.decode(run)])


class _Stream:
    """Hands each newly written piece of text to ``on_text``: the reply is decoded again after
    every token and the new end passed on (a piece may need several tokens, as a character
    of a byte-level BPE does)."""

    def __init__(self, tokenizer: Tokenizer, on_text: Callable[[str], None] | None) -> None:
        self.tokenizer, self.on_text = tokenizer, on_text
        self.ids: list[int] = []
        self.shown = ""

    def add(self, token: int, end_id: int) -> None:
        if self.on_text is None or token == end_id:
            return
        self.ids.append(token)
        text = decode_reply(self.tokenizer, self.ids)
        if text.startswith(self.shown) and not text.endswith("\ufffd"):
            self.on_text(text[len(self.shown) :])
            self.shown = text

    def flush(self) -> None:
        if self.on_text is not None:
            text = decode_reply(self.tokenizer, self.ids)
            if text.startswith(self.shown) and len(text) > len(self.shown):
                self.on_text(text[len(self.shown) :])
