"""Continuous batching: one worker thread per served model decodes every active request together,
one token per request per step; requests join and leave between steps (Yu et al. 2022, Orca;
vLLM's scheduler). The event loop only hands requests in and reads tokens out.

A ``Decoder`` adapts a family to the loop: a gpt decodes all its rows in one batched step over
per-row KV caches (``GPT.step_slots``); other neural causal families step each row with its own
state (``model.step``), and the n-gram model scores the next word from its context
(``NgramLM.next_log_probs``), each request still advancing one token per round beside the others.

Bounded: at most ``max_batch`` requests decode at once and ``max_waiting`` wait; ``submit``
beyond that raises ``Busy`` (the server answers 503). A cancelled request (its client went away)
leaves at the next step and frees its row.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from lmforge.nn.sampling import Sampler, sample_next

__all__ = ["Busy", "Engine", "Event", "GenRequest", "decoder_for"]


class Busy(Exception):
    """The engine's queue is full."""


@dataclass(frozen=True)
class Event:
    """What a request produced: a token (with its log-probability and, when asked, the most
    likely alternatives), or the end (``finish``: "stop", "length" or "error")."""

    token: int | None = None
    logprob: float = 0.0
    top: tuple[tuple[int, float], ...] = ()
    finish: str | None = None
    error: str | None = None


@dataclass(eq=False)
class GenRequest:
    """One sequence to extend.

    Args:
        prompt: token ids (or, for an n-gram model, word ids) to read first, non-empty.
        max_tokens: the most tokens to write.
        sampler: how to pick them; its seed makes the request reproducible.
        stop_ids: tokens that end the request (not passed on as text; reported as the event).
        emit: called from the worker thread with each ``Event``.
        top_logprobs: alternatives to report per token (0: none).
    """

    prompt: list[int]
    max_tokens: int
    sampler: Sampler
    stop_ids: frozenset[int]
    emit: Callable[[Event], None]
    top_logprobs: int = 0
    cancelled: bool = False
    written: int = 0
    generator: torch.Generator | None = field(default=None, repr=False)
    last: int = 0

    def __post_init__(self) -> None:
        if self.sampler.seed is not None:
            self.generator = torch.Generator().manual_seed(self.sampler.seed)


# ---------------------------------------------------------------------------------------------
# Decoders: a family's view of rows 0 .. n-1.


class SlotDecoder:
    """A gpt: every active row in one step (``GPT.step_slots``)."""

    def __init__(self, model, slots: int) -> None:
        self.model, self.slots = model, model.new_slots(slots)
        self.limit = model.config.max_seq_len

    def prefill(self, row: int, prompt: list[int]) -> torch.Tensor:
        return self.model.prefill_slot(self.slots, row, torch.tensor(prompt))

    def step(self, tokens: list[int]) -> torch.Tensor:
        return self.model.step_slots(self.slots, torch.tensor(tokens))

    def move(self, source: int, target: int) -> None:
        self.model.move_slot(self.slots, source, target)

    def room(self, row: int) -> int:
        return self.limit - int(self.slots.lengths[row])


class StateDecoder:
    """Another neural causal family: each row steps with its own state (``model.step``)."""

    def __init__(self, model, slots: int) -> None:
        self.model, self.states = model, [None] * slots
        self.lengths = [0] * slots
        self.limit = getattr(model.config, "max_seq_len", None)

    def prefill(self, row: int, prompt: list[int]) -> torch.Tensor:
        logits, self.states[row] = self.model.step(torch.tensor([prompt]), None)
        self.lengths[row] = len(prompt)
        return logits[0]

    def step(self, tokens: list[int]) -> torch.Tensor:
        rows = []
        for row, token in enumerate(tokens):
            logits, self.states[row] = self.model.step(torch.tensor([[token]]), self.states[row])
            self.lengths[row] += 1
            rows.append(logits[0])
        return torch.stack(rows)

    def move(self, source: int, target: int) -> None:
        self.states[target], self.lengths[target] = self.states[source], self.lengths[source]
        self.states[source] = None

    def room(self, row: int) -> int:
        return 1 << 30  # a recurrent state (or a sliding window) has no end


class NgramDecoder:
    """The n-gram model: the next word's log-probabilities after each row's words."""

    def __init__(self, model, slots: int) -> None:
        self.model, self.contexts = model, [[] for _ in range(slots)]

    def prefill(self, row: int, prompt: list[int]) -> torch.Tensor:
        self.contexts[row] = [self.model.vocab[i] for i in prompt]
        return torch.from_numpy(self.model.next_log_probs(self.contexts[row]))

    def step(self, tokens: list[int]) -> torch.Tensor:
        rows = []
        for row, token in enumerate(tokens):
            self.contexts[row].append(self.model.vocab[token])
            rows.append(torch.from_numpy(self.model.next_log_probs(self.contexts[row])))
        return torch.stack(rows)

    def move(self, source: int, target: int) -> None:
        self.contexts[target], self.contexts[source] = self.contexts[source], []

    def room(self, row: int) -> int:
        return 1 << 30


def decoder_for(model, family, slots: int):
    """The decoder of a served model of ``family`` (a registry ``Family``)."""
    if family.fitting == "counting":
        return NgramDecoder(model, slots)
    if hasattr(model, "step_slots"):
        return SlotDecoder(model, slots)
    return StateDecoder(model, slots)


# ---------------------------------------------------------------------------------------------
# The loop.


class Engine:
    """Decodes the requests of one model on a worker thread, all active ones each step.

    Args:
        decoder: the family's decoder (``decoder_for``), sized for ``max_batch`` rows.
        max_batch: requests that decode at once.
        max_waiting: requests that may wait for a row; more are refused (``Busy``).
    """

    def __init__(self, decoder, max_batch: int = 32, max_waiting: int = 256) -> None:
        self.decoder, self.max_batch, self.max_waiting = decoder, max_batch, max_waiting
        self.waiting: deque[GenRequest] = deque()
        self.active: list[GenRequest] = []
        self.lock = threading.Condition()
        self.closed = False
        self.steps = 0  # batched steps taken (a test reads how many rows they held)
        self.rows_stepped = 0
        self.thread = threading.Thread(target=self._run, daemon=True, name="lmforge-engine")
        self.thread.start()

    def submit(self, request: GenRequest) -> None:
        """Queue a request; its events come through ``request.emit``.

        Raises:
            Busy: ``max_waiting`` requests wait already.
        """
        with self.lock:
            if len(self.waiting) >= self.max_waiting:
                raise Busy(f"{len(self.waiting)} requests are waiting for this model")
            self.waiting.append(request)
            self.lock.notify()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.lock.notify()
        self.thread.join(timeout=10)

    @property
    def load(self) -> dict:
        return {"active": len(self.active), "waiting": len(self.waiting)}

    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self.lock:
                    while not self.closed and not self.waiting and not self.active:
                        self.lock.wait()
                    if self.closed:
                        break
                    joining = []
                    while self.waiting and len(self.active) + len(joining) < self.max_batch:
                        joining.append(self.waiting.popleft())
                for request in joining:
                    self._join(request)
                if self.active:
                    self._step()
        for request in [*self.active, *self.waiting]:
            request.emit(Event(finish="error", error="the server is shutting down"))

    def _join(self, request: GenRequest) -> None:
        if request.cancelled:
            return
        row = len(self.active)
        try:
            logits = self.decoder.prefill(row, request.prompt)
        except Exception as err:  # a request must never stop the loop
            request.emit(Event(finish="error", error=str(err)))
            return
        self.active.append(request)
        if request.max_tokens == 0:
            self._finish(row, "length")
            return
        self._choose([row], logits[None])

    def _step(self) -> None:
        rows = list(range(len(self.active)))
        try:
            logits = self.decoder.step([r.last for r in self.active])
        except Exception as err:
            for request in self.active:
                request.emit(Event(finish="error", error=str(err)))
            self.active.clear()
            return
        self.steps += 1
        self.rows_stepped += len(rows)
        self._choose(rows, logits)

    def _choose(self, rows: list[int], logits: torch.Tensor) -> None:
        """Pick each row's next token, emit it, and retire the rows that are done."""
        logp = logits.float().log_softmax(dim=-1)
        done = []
        for i, row in enumerate(rows):
            request = self.active[row]
            if request.cancelled:
                done.append((row, None))
                continue
            s = request.sampler
            token = int(
                sample_next(logits[i : i + 1], s.temperature, s.top_k, s.top_p, request.generator)[
                    0
                ]
            )
            top = ()
            if request.top_logprobs:
                best = logp[i].topk(min(request.top_logprobs, logp.shape[-1]))
                top = tuple(zip(best.indices.tolist(), best.values.tolist(), strict=True))
            if token in request.stop_ids:
                request.emit(
                    Event(token=token, logprob=float(logp[i, token]), top=top, finish="stop")
                )
                done.append((row, None))
                continue
            request.written += 1
            request.last = token
            request.emit(Event(token=token, logprob=float(logp[i, token]), top=top))
            if request.written >= request.max_tokens or self.decoder.room(row) <= 0:
                done.append((row, "length"))
        for row, reason in sorted(done, reverse=True):  # the highest rows first
            self._finish(row, reason)

    def _finish(self, row: int, reason: str | None) -> None:
        """Retire row ``row`` (its request emits ``reason`` unless already ended) and move the
        last active row into its place."""
        request = self.active[row]
        if reason is not None:
            request.emit(Event(finish=reason))
        last = len(self.active) - 1
        if row != last:
            self.decoder.move(last, row)
            self.active[row] = self.active[last]
        self.active.pop()
