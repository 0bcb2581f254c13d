"""Choosing the next token: greedy, temperature, top-k and top-p (nucleus) sampling.

``sample_next`` is the one rule every decoder picks a token by (causal generation, the
encoder-decoders' greedy and sampled decoding, the n-gram model's sampling): a pure function of
the scores and an explicit ``torch.Generator``. ``Sampler`` bundles its settings as a validated,
frozen config. The loops that call it are in ``lmforge.nn.decoding``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lmforge.errors import ConfigError

__all__ = ["Sampler", "sample_next"]


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
    return _inverse_cdf_draw(logits.softmax(dim=-1), generator)


def _inverse_cdf_draw(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One token per row of (B, V) probabilities by inverse-CDF sampling: the first token whose
    cumulative probability reaches u ~ U(0, total). One uniform per row: ``torch.multinomial``
    (or Gumbel noise) draws one per vocabulary entry, which dominates decoding time on a CPU when
    many rows are sampled (minimum-Bayes-risk decoding). Tokens of probability 0 are never drawn.

    Returns:
        (B,) int64 token ids.
    """
    cdf = probs.cumsum(dim=-1)  # (B, V), non-decreasing
    u = torch.rand(cdf.shape[0], 1, generator=generator, device=cdf.device) * cdf[:, -1:]
    u = u.clamp(min=torch.finfo(u.dtype).tiny)  # u = 0 would pick a leading zero
    return torch.searchsorted(cdf, u)[:, 0].clamp(max=cdf.shape[1] - 1)


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
