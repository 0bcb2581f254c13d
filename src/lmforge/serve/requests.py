"""Reading an OpenAI request: its JSON object field by field, each bad field one 400 that names
it (``Body``); prompts, messages, sampling settings and stop strings."""

from __future__ import annotations

import json

from fastapi import Request

from lmforge.data.dialogues import check_messages
from lmforge.nn.sampling import Sampler
from lmforge.serve.guard import ServeSettings
from lmforge.serve.models import Refused

__all__ = [
    "Body",
    "check_conversation",
    "include_usage",
    "max_tokens_of",
    "message_dicts",
    "messages_of",
    "parts_of",
    "prompts_of",
    "read_body",
    "sampler_of",
    "stops_of",
]


class Body:
    """A request's JSON object, read field by field with clear 400s."""

    def __init__(self, data: object) -> None:
        if not isinstance(data, dict):
            raise Refused(400, "the request body must be a JSON object")
        self.data = data

    def get(
        self, name: str, kinds: type | tuple, default=None, low=None, high=None, high_why: str = ""
    ):
        value = self.data.get(name, default)
        if value is None:
            return default
        ok = isinstance(value, kinds) and not (
            isinstance(value, bool)
            and bool not in (kinds if isinstance(kinds, tuple) else (kinds,))
        )
        if not ok:
            names = (
                kinds.__name__
                if isinstance(kinds, type)
                else " or ".join(k.__name__ for k in kinds)
            )
            raise Refused(
                400, f"'{name}' must be {names}, got {json.dumps(value)[:60]}", param=name
            )
        if low is not None and value < low:
            raise Refused(400, f"'{name}' must be >= {low}, got {value}", param=name)
        if high is not None and value > high:
            raise Refused(
                400, f"'{name}' is {value}: over the limit of {high}{high_why}", param=name
            )
        return value


async def read_body(request: Request) -> Body:
    try:
        return Body(json.loads(await request.body() or b"null"))
    except (ValueError, UnicodeDecodeError):
        raise Refused(400, "the request body is not valid JSON") from None


def sampler_of(body: Body, temperature: float = 1.0) -> Sampler:
    """The sampling fields; ``temperature`` is the default (OpenAI's 1.0)."""
    return Sampler(
        temperature=float(body.get("temperature", (int, float), temperature, 0, 2)),
        top_k=body.get("top_k", int, 0, 0),
        top_p=float(body.get("top_p", (int, float), 1.0, 0, 1)),
        seed=body.get("seed", int, None, 0),
    )


def max_tokens_of(body: Body, settings: ServeSettings, chat: bool) -> int:
    """``max_tokens`` (a chat's ``max_completion_tokens`` over it), else OpenAI's default."""
    why = " (this server's --max-tokens)"
    max_tokens = body.get("max_tokens", int, None, 0, settings.max_tokens, why)
    if chat:
        max_tokens = body.get("max_completion_tokens", int, max_tokens, 0, settings.max_tokens, why)
    if max_tokens is None:
        max_tokens = min(256, settings.max_tokens) if chat else 16  # OpenAI's defaults
    return max_tokens


def stops_of(body: Body) -> list[str]:
    stop = body.data.get("stop")
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if (
        not isinstance(stops, list)
        or len(stops) > 4
        or not all(isinstance(s, str) and s for s in stops)
    ):
        raise Refused(400, "'stop' must be a non-empty string or a list of at most 4 of them")
    return stops


def prompts_of(prompt: object, settings: ServeSettings) -> list:
    """A completion's prompts: a string, a list of strings, a list of token ids, or a list
    of such lists."""
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, int) and not isinstance(p, bool) for p in prompt):
            return [prompt]
        if all(isinstance(p, str) for p in prompt) or all(
            isinstance(p, list) and p and all(isinstance(i, int) for i in p) for p in prompt
        ):
            if len(prompt) > settings.max_prompts:
                raise Refused(
                    400,
                    f"'prompt' lists {len(prompt)} prompts; at most "
                    f"{settings.max_prompts} a request",
                    param="prompt",
                )
            return prompt
    raise Refused(400, "'prompt' must be a string, a list of strings, or token ids", param="prompt")


def messages_of(messages: object) -> list[dict]:
    """A chat request's messages: OpenAI's text content parts joined; the conversation must end
    with a user turn.

    Raises:
        Refused: a bad conversation, or an image or sound part (this model reads text only).
    """
    clean = []
    for i, m in enumerate(message_dicts(messages)):
        content, media = parts_of(m.get("content"), f"messages[{i}]")
        if media:
            where, part = media[0]
            raise Refused(
                400,
                f"{where} is an {part['type']} part, and this model reads text only: send "
                "text, or pick a model whose capabilities list image-input or speech-input",
                param=where,
            )
        clean.append({"role": m.get("role"), "content": content})
    check_conversation(clean)
    return clean


def message_dicts(messages: object) -> list[dict]:
    """``messages``, refused unless a non-empty list of objects."""
    if not isinstance(messages, list) or not messages:
        raise Refused(
            400, "'messages' must be a non-empty list of {role, content}", param="messages"
        )
    if not all(isinstance(m, dict) for m in messages):
        raise Refused(400, "each message must be an object {role, content}", param="messages")
    return messages


def check_conversation(messages: list[dict]) -> None:
    """Refuse a conversation of bad roles or empty turns, or one that does not end with the
    user's turn (``check_messages``; each content a string)."""
    problem = check_messages(messages, ends_with="user")
    if problem:
        raise Refused(400, f"'messages': {problem}", param="messages")


def parts_of(content: object, where: str) -> tuple[object, list[tuple[str, dict]]]:
    """A message's content as its text and its image and sound parts, each with where it
    stands (``messages[0].content[1]``): a string is all text; of a list of OpenAI content
    parts, the text parts are joined.

    Raises:
        Refused: a part that is not ``text``, ``image_url`` or ``input_audio``.
    """
    if not isinstance(content, list):
        return content, []
    texts, media = [], []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind in ("image_url", "input_audio"):
            media.append((at, part))
        else:
            raise Refused(
                400,
                f"{at} is not a content part this server reads: give "
                '{"type": "text", "text": ...}, an image_url or an input_audio part',
                param=at,
            )
    return "".join(texts), media


def include_usage(body: Body) -> bool:
    options = body.get("stream_options", dict, {})
    return bool(options.get("include_usage", False))
