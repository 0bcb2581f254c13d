"""Generation over the OpenAI API: completions and chat completions, whole or streamed as
Server-Sent Events exactly as OpenAI sends them, on the served model's continuous-batching
``Engine``. A ``Choice`` turns one generation's token events into text: cut at a stop string,
held back while it may be the start of one, with its log-probabilities.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from functools import partial

from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from lmforge.nn.sampling import Sampler
from lmforge.serve.engine import Busy, Event, GenRequest
from lmforge.serve.guard import ServeSettings
from lmforge.serve.models import Refused, ServedModel
from lmforge.serve.requests import (
    Body,
    include_usage,
    max_tokens_of,
    messages_of,
    prompts_of,
    sampler_of,
    stops_of,
)

__all__ = ["Choice", "chat_completions", "completions"]

# ---------------------------------------------------------------------------------------------
# One choice: a generation's events turned into text.


@dataclass(eq=False)
class Choice:
    """One generated sequence as it arrives: its tokens, text (cut at a stop string) and
    log-probabilities."""

    served: ServedModel
    prompt: list[int]
    stops: list[str]
    index: int
    chat: bool = False
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    tops: list[dict] = field(default_factory=list)
    text: str = ""
    shown: int = 0
    finish: str | None = None
    request: GenRequest | None = None

    def take(self, event: Event) -> None:
        """Add an event; the text grows, or the choice ends."""
        if event.finish == "error":
            raise Refused(500, f"generation failed: {event.error}")
        if event.token is not None and event.finish is None:
            self.ids.append(event.token)
            self.logprobs.append(event.logprob)
            self.tops.append({self.served.pieces([i])[0]: v for i, v in event.top})
            self.text = self.served.continuation(self.prompt, self.ids, self.chat)
            for stop in self.stops:
                at = self.text.find(stop)
                if at >= 0:
                    self.text, self.finish = self.text[:at], "stop"
                    self.request.cancelled = True
        if event.finish is not None and self.finish is None:
            self.finish = event.finish

    def delta(self) -> str:
        """The text not passed on yet, holding back what may be the start of a stop string
        or an unfinished character."""
        end = len(self.text)
        if self.finish is None:
            for stop in self.stops:
                for k in range(min(len(stop) - 1, len(self.text)), 0, -1):
                    if self.text.endswith(stop[:k]):
                        end = min(end, len(self.text) - k)
                        break
            while end > self.shown and self.text[end - 1] == "\ufffd":
                end -= 1
        piece, self.shown = self.text[self.shown : max(end, self.shown)], max(end, self.shown)
        return piece


def _start(
    served: ServedModel,
    prompt: list[int],
    body: Body,
    settings: ServeSettings,
    stops: list[str],
    n: int,
    top: int,
    chat: bool,
    loop,
) -> list[Choice]:
    """Submit ``n`` generations of ``prompt``; their choices."""
    max_tokens = max_tokens_of(body, settings, chat)
    sampler = sampler_of(body)
    choices, stop_ids = [], served.stop_ids(chat)
    for i in range(n):
        choice = Choice(served, prompt, stops, i, chat)
        seeded = (
            sampler
            if sampler.seed is None
            else Sampler(sampler.temperature, sampler.top_k, sampler.top_p, sampler.seed + i)
        )
        choice.request = GenRequest(
            prompt,
            max_tokens,
            seeded,
            stop_ids,
            partial(_mailbox(loop).post, choice.queue),
            top,
        )
        choices.append(choice)
    try:
        for choice in choices:
            served.engine.submit(choice.request)
    except Busy as err:
        for choice in choices:
            choice.request.cancelled = True
        raise Refused(
            503, f"the server is busy ({err}); try again shortly", "server_busy"
        ) from None
    return choices


class _Mailbox:
    """Events from the engine threads to one event loop, one wake-up per batch: an engine step
    posts an event for each of its rows, and the loop, woken once, delivers them all (a
    wake-up per token would cost a system call each)."""

    def __init__(self, loop) -> None:
        self.loop, self.lock, self.items, self.armed = loop, threading.Lock(), [], False

    def post(self, queue: asyncio.Queue, event: Event) -> None:
        with self.lock:
            self.items.append((queue, event))
            if self.armed:
                return
            self.armed = True
        self.loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self.lock:
            items, self.items, self.armed = self.items, [], False
        for queue, event in items:
            queue.put_nowait(event)


_MAILBOXES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _mailbox(loop) -> _Mailbox:
    if loop not in _MAILBOXES:
        _MAILBOXES[loop] = _Mailbox(loop)
    return _MAILBOXES[loop]


async def _finish_all(choices: list[Choice]) -> None:
    try:
        for choice in choices:
            while choice.finish is None:
                choice.take(await choice.queue.get())
    finally:
        for choice in choices:
            choice.request.cancelled = True  # a client gone away, or a stop string: free rows


async def _events(choices: list[Choice]):
    """(choice, done) as each choice's events arrive, choices interleaved."""
    waiting = {asyncio.ensure_future(c.queue.get()): c for c in choices}
    try:
        while waiting:
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                choice = waiting.pop(future)
                choice.take(future.result())
                while choice.finish is None and not choice.queue.empty():  # one chunk for all
                    choice.take(choice.queue.get_nowait())  # that arrived meanwhile
                yield choice
                if choice.finish is None:
                    waiting[asyncio.ensure_future(choice.queue.get())] = choice
    finally:
        for future in waiting:
            future.cancel()
        for choice in choices:
            choice.request.cancelled = True


def _sse(obj) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def _usage_chunk(rid: str, kind: str, created: int, model: str, usage: dict) -> str:
    """The last event before ``[DONE]`` with ``stream_options.include_usage``: no choices."""
    obj = {"id": rid, "object": kind, "created": created, "model": model, "choices": []}
    return _sse({**obj, "usage": usage})


def _sse_response(events) -> StreamingResponse:
    return StreamingResponse(
        events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


# ---------------------------------------------------------------------------------------------
# The endpoints.


async def completions(served: ServedModel, body: Body, settings: ServeSettings):
    """``POST /v1/completions``: a dict, or a streaming response of Server-Sent Events."""
    prompts = prompts_of(body.data.get("prompt"), settings)
    stream = body.get("stream", bool, False)
    echo = body.get("echo", bool, False)
    top = body.get("logprobs", int, None, 0, 5)
    n = body.get("n", int, 1, 1, settings.max_n, " (this server's --max-n)")
    if served.family.seq2seq:
        return await _translate(served, prompts, body, settings)
    if len(prompts) * n > settings.max_n * 4:
        raise Refused(
            400,
            f"{len(prompts)} prompts x n={n} is over the limit of "
            f"{settings.max_n * 4} sequences a request",
        )
    stops = stops_of(body)
    loop = asyncio.get_running_loop()
    runs = []  # (prompt ids, echo logprobs or None, choices)
    for prompt in prompts:
        ids = served.completion_prompt(prompt, settings.max_prompt_tokens)
        echoed = None
        if echo and top is not None:
            own = ids[len(served.bos()) :]
            echoed = await run_in_threadpool(served.prompt_logprobs, own, top)
        runs.append((ids, echoed, None))
    runs = [
        (ids, echoed, _start(served, ids, body, settings, stops, n, top or 0, False, loop))
        for ids, echoed, _ in runs
    ]
    created, rid = int(time.time()), f"cmpl-{uuid.uuid4().hex}"
    all_choices = [c for _, _, cs in runs for c in cs]
    for k, choice in enumerate(all_choices):
        choice.index = k
    prompt_tokens = sum(len(ids) * n for ids, _, _ in runs)

    def shape(choice, text, logprobs=None, finish=None):
        return {
            "id": rid,
            "object": "text_completion",
            "created": created,
            "model": served.id,
            "choices": [
                {
                    "text": text,
                    "index": choice.index,
                    "logprobs": logprobs,
                    "finish_reason": finish,
                }
            ],
        }

    if not stream:
        await _finish_all(all_choices)
        out = []
        for ids, echoed, choices in runs:
            for choice in choices:
                text = choice.text
                if echo:
                    text = served.decode(ids[len(served.bos()) :]) + text
                logprobs = (
                    None if top is None else _completion_logprobs(served, ids, echoed, choice)
                )
                out.append(
                    {
                        "text": text,
                        "index": choice.index,
                        "logprobs": logprobs,
                        "finish_reason": choice.finish,
                    }
                )
        usage = _usage(prompt_tokens, sum(len(c.ids) for c in all_choices))
        return {
            "id": rid,
            "object": "text_completion",
            "created": created,
            "model": served.id,
            "choices": out,
            "usage": usage,
        }

    with_usage = include_usage(body)

    async def events():
        if echo:
            for ids, _, choices in runs:
                for choice in choices:
                    yield _sse(shape(choice, served.decode(ids[len(served.bos()) :])))
        sent = dict.fromkeys(range(len(all_choices)), 0)  # choice -> tokens whose text went out
        async for choice in _events(all_choices):
            piece = choice.delta()
            fresh = len(choice.ids) > sent[choice.index]  # tokens whose log-probs are not out
            if piece or choice.finish or (top is not None and fresh):
                logprobs = None
                if top is not None and fresh:
                    new = slice(sent[choice.index], len(choice.ids))
                    logprobs = {
                        "tokens": served.pieces(choice.ids[new]),
                        "token_logprobs": choice.logprobs[new],
                        "top_logprobs": choice.tops[new],
                        "text_offset": _offsets(served, choice.ids[new]),
                    }
                    sent[choice.index] = len(choice.ids)
                yield _sse(shape(choice, piece, logprobs, choice.finish))
        if with_usage:
            usage = _usage(prompt_tokens, sum(len(c.ids) for c in all_choices))
            yield _usage_chunk(rid, "text_completion", created, served.id, usage)
        yield "data: [DONE]\n\n"

    return _sse_response(events())


async def chat_completions(served: ServedModel, body: Body, settings: ServeSettings):
    """``POST /v1/chat/completions``: a dict, or a streaming response of Server-Sent Events."""
    messages = messages_of(body.data.get("messages"))
    stream = body.get("stream", bool, False)
    n = body.get("n", int, 1, 1, settings.max_n, " (this server's --max-n)")
    want_logprobs = body.get("logprobs", bool, False)
    top = body.get("top_logprobs", int, 0, 0, 20) if want_logprobs else 0
    ids = served.chat_prompt(messages, settings.max_prompt_tokens)
    stops = stops_of(body)
    choices = _start(served, ids, body, settings, stops, n, top, True, asyncio.get_running_loop())
    created, rid = int(time.time()), f"chatcmpl-{uuid.uuid4().hex}"

    def logprob_content(choice, start, end):
        pieces = served.pieces(choice.ids[start:end])
        return [
            {
                "token": p,
                "logprob": lp,
                "bytes": list(p.encode()),
                "top_logprobs": [
                    {"token": t, "logprob": v, "bytes": list(t.encode())} for t, v in tops.items()
                ],
            }
            for p, lp, tops in zip(
                pieces, choice.logprobs[start:end], choice.tops[start:end], strict=True
            )
        ]

    if not stream:
        await _finish_all(choices)
        out = [
            {
                "index": c.index,
                "message": {"role": "assistant", "content": c.text},
                "logprobs": {"content": logprob_content(c, 0, len(c.ids))}
                if want_logprobs
                else None,
                "finish_reason": c.finish,
            }
            for c in choices
        ]
        return {
            "id": rid,
            "object": "chat.completion",
            "created": created,
            "model": served.id,
            "choices": out,
            "usage": _usage(len(ids) * n, sum(len(c.ids) for c in choices)),
        }

    with_usage = include_usage(body)

    def chunk(choice, delta, finish=None, logprobs=None):
        obj = {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": served.id,
            "choices": [
                {
                    "index": choice.index,
                    "delta": delta,
                    "logprobs": logprobs,
                    "finish_reason": finish,
                }
            ],
        }
        if with_usage:
            obj["usage"] = None
        return _sse(obj)

    async def events():
        for choice in choices:
            yield chunk(choice, {"role": "assistant", "content": ""})
        # The last content chunk carries the finish reason: each choice's newest text is held
        # until the next event says whether more follows. pending: choice -> (text not sent,
        # the tokens it covers); sent: choice -> tokens whose text went out.
        pending: dict[int, tuple[str, int]] = {}
        sent = dict.fromkeys(range(len(choices)), 0)
        async for choice in _events(choices):
            k = choice.index
            piece = choice.delta()
            held, upto = pending.pop(k, ("", sent[k]))
            if choice.finish is not None:
                text = held + piece
                logprobs = (
                    {"content": logprob_content(choice, sent[k], len(choice.ids))}
                    if want_logprobs
                    else None
                )
                yield chunk(choice, {"content": text} if text else {}, choice.finish, logprobs)
                continue
            if held:
                logprobs = (
                    {"content": logprob_content(choice, sent[k], upto)} if want_logprobs else None
                )
                sent[k] = upto
                yield chunk(choice, {"content": held}, None, logprobs)
            if piece:
                pending[k] = (piece, len(choice.ids))
        if with_usage:
            usage = _usage(len(ids) * n, sum(len(c.ids) for c in choices))
            yield _usage_chunk(rid, "chat.completion.chunk", created, served.id, usage)
        yield "data: [DONE]\n\n"

    return _sse_response(events())


def _completion_logprobs(served: ServedModel, ids: list[int], echoed, choice: Choice) -> dict:
    """The OpenAI completions ``logprobs`` object: the prompt's tokens first when echoed."""
    tokens, logprobs, tops = [], [], []
    if echoed is not None:
        own = ids[len(served.bos()) :]
        tokens += served.pieces(own)
        logprobs += echoed[0]
        tops += echoed[1] or [{} for _ in own]
    tokens += served.pieces(choice.ids)
    logprobs += choice.logprobs
    tops += choice.tops
    return {
        "tokens": tokens,
        "token_logprobs": logprobs,
        "top_logprobs": tops,
        "text_offset": _offsets(served, tokens),
    }


def _offsets(served: ServedModel, pieces: list) -> list[int]:
    """Where each token's text starts (n-gram words: joined by spaces), from 0; ``pieces`` are
    token strings, or ids."""
    if pieces and isinstance(pieces[0], int):
        pieces = served.pieces(pieces)
    offsets, at = [], 0
    for k, piece in enumerate(pieces):
        at += 1 if k and served.counting else 0
        offsets.append(at)
        at += len(piece)
    return offsets


async def _translate(
    served: ServedModel, prompts: list, body: Body, settings: ServeSettings
) -> dict:
    """A seq2seq model's completion: the translation of each prompt."""
    if (
        body.get("stream", bool, False)
        or body.data.get("logprobs") is not None
        or body.get("echo", bool, False)
    ):
        raise Refused(
            400,
            f"model {served.id!r} is an encoder-decoder: it translates its "
            "prompt, without stream, echo or logprobs",
        )
    max_tokens = body.get("max_tokens", int, 64, 1, settings.max_tokens)
    out = []
    for k, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise Refused(400, "an encoder-decoder takes text prompts")
        text = await run_in_threadpool(served.translate, prompt, max_tokens)
        out.append({"text": text, "index": k, "logprobs": None, "finish_reason": "stop"})
    return {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": served.id,
        "choices": out,
    }
