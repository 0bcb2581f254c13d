"""Choosing the next token: greedy, temperature, top-k and top-p (nucleus) sampling.

``sample_next`` is a pure function of the logits and an explicit ``torch.Generator``; ``Sampler``
bundles its settings as a validated, frozen config; ``generate`` is the one decoding loop every
neural family's ``generate`` goes through (``model.step(ids, cache)``, see
``lmforge.models.family``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from lmforge.errors import ConfigError

__all__ = ["Sampler", "generate", "sample_next"]


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one next token per row.

    p(w) ∝ exp(logit_w / temperature), restricted to the ``top_k`` most likely tokens (Fan et
    al. 2018) and then to the nucleus: the smallest set of most likely tokens whose probability
    sums to at least ``top_p`` (Holtzman et al. 2020, section 3.1), renormalised.

    Args:
        logits: (B, V) unnormalised scores (log-probabilities work too).
        temperature: 0 for greedy decoding (argmax); otherwise > 0, lower is sharper.
        top_k: keep only the k highest-scoring tokens; 0 keeps all.
        top_p: keep the nucleus of mass top_p, in (0, 1]; 1 keeps all.
        generator: the source of randomness, for reproducible samples.

    Returns:
        (B,) int64 token ids.
    """
    if temperature == 0.0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature  # (B, V)
    if 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (B, 1) the k-th largest score
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True, stable=True)  # (B, V)
        sorted_probs = sorted_logits.softmax(dim=-1)
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs  # (B, V) mass of better tokens
        drop_sorted = mass_before >= top_p  # the nucleus already holds top_p without this token
        drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@dataclass(frozen=True)
class Sampler:
    """How to pick each next token (see :func:`sample_next`).

    Args:
        temperature: 0 for greedy decoding, else > 0.
        top_k: keep the k most likely tokens, >= 0 (0 = all).
        top_p: nucleus mass in (0, 1] (1 = all).
        seed: seeds the ``torch.Generator`` that ``generate`` creates; None draws from torch's
            global generator.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        t = self.temperature
        if (
            isinstance(t, bool)
            or not isinstance(t, int | float)
            or not (math.isfinite(t) and t >= 0)
        ):
            raise ConfigError(f"temperature must be a number >= 0 (0 = greedy), got {t!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ConfigError(f"top_k must be an integer >= 0 (0 = no limit), got {self.top_k!r}")
        p = self.top_p
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 < p <= 1.0:
            raise ConfigError(f"top_p must be a number in (0, 1] (1 = no limit), got {p!r}")
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0
        ):
            raise ConfigError(f"seed must be None or an integer >= 0, got {self.seed!r}")

    def __call__(self, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """(B, V) logits -> (B,) next token ids."""
        return sample_next(logits, self.temperature, self.top_k, self.top_p, generator)


def generate(
    model: nn.Module,
    prompt_ids: torch.Tensor,
    max_new_tokens: int,
    sampler: Sampler,
    eos_id: int | None = None,
) -> torch.Tensor:
    """Extend each prompt by up to ``max_new_tokens`` tokens, one ``model.step`` per token.

    The first step reads the whole prompt (cache None); each later step reads only the newest
    token and the model's cache. Once a row has produced ``eos_id`` it is padded with ``eos_id``;
    the loop stops early when every row has.

    Args:
        model: a neural family's model (``step(ids, cache) -> (logits (B, V), cache)``).
        prompt_ids: (B, t) int64 prompt, t >= 1.
        max_new_tokens: how many tokens to add, >= 0.
        sampler: how to pick each token; its seed makes the result reproducible.
        eos_id: the end-of-sequence id, or None to always produce max_new_tokens.

    Returns:
        (B, t + n) int64 ids, n = max_new_tokens unless every row ended early.
    """
    if prompt_ids.dim() != 2 or prompt_ids.shape[1] == 0:
        raise ConfigError(f"prompt_ids must be (batch, length >= 1), got {tuple(prompt_ids.shape)}")
    if max_new_tokens < 0:
        raise ConfigError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    generator = None
    if sampler.seed is not None:
        generator = torch.Generator(device=prompt_ids.device).manual_seed(sampler.seed)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            out = _decode(model, prompt_ids, max_new_tokens, sampler, generator, eos_id)
    finally:
        model.train(was_training)
    return out.clone()  # a normal tensor, usable outside inference mode (e.g. to train on)


def _decode(
    model: nn.Module,
    prompt_ids: torch.Tensor,
    max_new_tokens: int,
    sampler: Sampler,
    generator: torch.Generator | None,
    eos_id: int | None,
) -> torch.Tensor:
    """The decoding loop of :func:`generate`, writing into one preallocated (B, t + n) tensor."""
    batch, start = prompt_ids.shape
    out = prompt_ids.new_empty(batch, start + max_new_tokens)
    out[:, :start] = prompt_ids
    if max_new_tokens == 0:
        return out
    finished = None if eos_id is None else torch.zeros(batch, dtype=torch.bool, device=out.device)
    logits, cache = model.step(prompt_ids, None)  # (B, V)
    for i in range(max_new_tokens):
        next_ids = sampler(logits, generator)  # (B,)
        if finished is not None:
            next_ids = next_ids.masked_fill(finished, eos_id)
            finished |= next_ids == eos_id
        out[:, start + i] = next_ids
        if i + 1 == max_new_tokens or (finished is not None and bool(finished.all())):
            return out[:, : start + i + 1]
        logits, cache = model.step(out[:, start + i : start + i + 1], cache)
    return out
