"""An any-to-any model (``lmforge.omni``) behind ``POST /v1/chat/completions``.

In: a message's content is a string or OpenAI content parts, ``text``, ``image_url`` (a
``data:image/png;base64,...`` URI) and ``input_audio`` (``{"data": <base64 WAV>, "format":
"wav"}``); a user message's image and sound go before its text, as ``omni.chat.user_turn`` puts
them. Nothing is fetched: an image URL that is not a ``data:`` URI is refused.

Out: ``choices[i].message.content`` is the reply's text; its images (and its signals, 3-D shapes
and videos, drawn as ``write_reply`` draws them) are ``message.images``, a list of
``{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}``; its sound is
``message.audio`` in OpenAI's audio-output shape, ``{"id", "data": <base64 WAV>, "format": "wav",
"transcript", "expires_at"}``, or a list of those when the reply holds several sounds. The
server keeps no sound: ``expires_at`` is the reply's time, and a later turn cannot name it.
"""

from __future__ import annotations

import base64
import binascii
import io
import time
import uuid

from starlette.concurrency import run_in_threadpool

from lmforge.serve.guard import ServeSettings
from lmforge.serve.models import Refused, ServedOmni
from lmforge.serve.requests import (
    Body,
    check_conversation,
    max_tokens_of,
    message_dicts,
    parts_of,
    sampler_of,
)

__all__ = ["MAX_AUDIO_BYTES", "MAX_IMAGE_BYTES", "MAX_IMAGE_PIXELS", "omni_chat"]

MAX_IMAGE_BYTES = 512 * 1024  # one image part, decoded
MAX_IMAGE_PIXELS = 4096 * 4096  # its width x height, read from the header before decoding
MAX_AUDIO_BYTES = 1 << 20  # one sound part, decoded: about 65 s of 8 kHz 16-bit mono


async def omni_chat(served: ServedOmni, body: Body, settings: ServeSettings) -> dict:
    """``POST /v1/chat/completions`` for an omni model: the whole reply (no stream)."""
    for name in ("stream", "logprobs"):
        if body.get(name, bool, False):
            raise Refused(
                400,
                f"model {served.id!r} is an any-to-any model: it answers whole, with images "
                f"and sounds, without {name}; send {name}: false",
                param=name,
            )
    if body.data.get("stop"):
        raise Refused(400, f"model {served.id!r} takes no stop strings", param="stop")
    n = body.get("n", int, 1, 1, settings.max_n, " (this server's --max-n)")
    max_tokens = max_tokens_of(body, settings, chat=True)
    text = sampler_of(body, temperature=0.0)  # greedy by default, as `lmforge omni chat`
    seed = body.get("seed", int, 0, 0)
    messages = _messages(body.data.get("messages"), served)
    prompt, replies = await run_in_threadpool(served.reply, messages, n, max_tokens, text, seed)
    created = int(time.time())
    completion = sum(r["tokens"] for r in replies)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": created,
        "model": served.id,
        "choices": [
            {"index": k, "message": _message(r, created), "logprobs": None, "finish_reason": "stop"}
            for k, r in enumerate(replies)
        ],
        "usage": {
            "prompt_tokens": prompt * n,
            "completion_tokens": completion,
            "total_tokens": prompt * n + completion,
        },
    }


def _message(files: dict, created: int) -> dict:
    """The assistant message of one reply (``reply_files``' text, PNGs and WAVs)."""
    message = {"role": "assistant", "content": files["reply"]}
    if files["images"]:
        message["images"] = [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + _b64(png)}}
            for png in files["images"]
        ]
    sounds = [
        {
            "id": f"audio_{uuid.uuid4().hex}",
            "data": _b64(wav),
            "format": "wav",
            "transcript": files["reply"],
            "expires_at": created,
        }
        for wav in files["audio"]
    ]
    if sounds:
        message["audio"] = sounds[0] if len(sounds) == 1 else sounds
    return message


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _messages(messages: object, served: ServedOmni) -> list[dict]:
    """The conversation: each message's role, text and media ``[(modality, bytes)]``.

    Raises:
        Refused: a bad conversation or part; media in a turn not the user's; two images or two
            sounds in one message.
    """
    out = []
    for i, m in enumerate(message_dicts(messages)):
        text, parts = parts_of(m.get("content"), f"messages[{i}]")
        if parts and m.get("role") != "user":
            raise Refused(
                400,
                f"messages[{i}] is a {m.get('role')} message: only a user message may carry "
                "image_url or input_audio parts",
                param=f"messages[{i}]",
            )
        media = [_media(part, where, served) for where, part in parts]
        kinds = [modality for modality, _ in media]
        if len(set(kinds)) < len(kinds):
            raise Refused(
                400,
                f"messages[{i}] carries two parts of one kind: a message takes at most one "
                "image and one sound",
                param=f"messages[{i}]",
            )
        if m.get("role") == "assistant" and text is None:
            text = ""  # a reply of images or sound alone: clients send its text, or none
        out.append({"role": m.get("role"), "content": text, "media": media})
    shown = [  # what check_messages reads: a turn of media, or a reply of them, is not empty
        {**m, "content": m["content"] or ("-" if m["media"] or m["role"] == "assistant" else "")}
        for m in out
    ]
    check_conversation(shown)
    return out


def _media(part: dict, where: str, served: ServedOmni) -> tuple[str, bytes]:
    """An ``image_url`` or ``input_audio`` part's modality and file bytes; every limit on
    them is checked here.

    Raises:
        Refused: a modality the model lacks, not a data URI (nothing is fetched), another audio
            format than wav, bad base64, over the size limit, an image that does not decode.
    """
    modality = "image" if part["type"] == "image_url" else "speech"
    if modality not in served.modalities:
        raise Refused(
            400,
            f"{where} is an {part['type']} part, and model {served.id!r} has no {modality} "
            f"tokenizer (it holds {', '.join(served.modalities)}): leave the part out",
            param=where,
        )
    if modality == "image":
        url = part.get("image_url")
        url = url.get("url") if isinstance(url, dict) else url
        head, comma, data = url.partition(",") if isinstance(url, str) else ("", "", "")
        if not head.startswith("data:"):
            raise Refused(
                400,
                f"{where}: image_url.url must be a data URI, data:image/png;base64,...; this "
                "server fetches no URL: send the image's bytes",
                param=where,
            )
        if not (comma and head.startswith("data:image/") and head.endswith(";base64")):
            raise Refused(
                400, f"{where}: the data URI must read data:image/png;base64,<data>", param=where
            )
        limit, what = MAX_IMAGE_BYTES, "image"
    else:
        audio = part.get("input_audio")
        data = audio.get("data") if isinstance(audio, dict) else None
        if not isinstance(data, str):
            raise Refused(
                400,
                f'{where}: input_audio must be {{"data": <base64 WAV>, "format": "wav"}}',
                param=where,
            )
        if audio.get("format") != "wav":
            raise Refused(
                400,
                f"{where}: audio format {audio.get('format')!r} is not read here: send a WAV "
                "with format 'wav'",
                param=where,
            )
        limit, what = MAX_AUDIO_BYTES, "WAV"
    try:
        raw = base64.b64decode(data, validate=True)  # as long as --max-body lets it be
    except (binascii.Error, ValueError):
        raise Refused(
            400, f"{where}: the {what} is not valid base64; encode the file's bytes", param=where
        ) from None
    if len(raw) > limit:
        raise Refused(
            400,
            f"{where}: the {what} is {len(raw):,} bytes, over this server's limit of {limit:,}; "
            "send a smaller one",
            param=where,
        )
    if modality == "image":
        _check_pixels(raw, where)
    return modality, raw


def _check_pixels(png: bytes, where: str) -> None:
    """Refuse an image that does not decode or has more than MAX_IMAGE_PIXELS (read from the
    header: a small file can hold a huge blank image)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(png)) as img:
            width, height = img.size
        size = f"{width} x {height}" if width * height > MAX_IMAGE_PIXELS else ""
    except Image.DecompressionBombError:  # PIL's own limit, far above ours
        size = f"over {2 * Image.MAX_IMAGE_PIXELS:,}"
    except (OSError, ValueError):
        raise Refused(400, f"{where}: the image does not decode; send a PNG", param=where) from None
    if size:
        raise Refused(
            400,
            f"{where}: the image is {size} pixels, over this server's limit of "
            f"{MAX_IMAGE_PIXELS:,}; send a smaller one (the model sees 8 x 8)",
            param=where,
        )
