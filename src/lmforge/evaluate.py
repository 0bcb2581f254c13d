"""Perplexity: one definition for every model family.

Perplexity is exp(mean negative log-likelihood per token), over the same tokens for every family:
each sentence's tokens and its ``</s>``, never ``<s>`` (the rule of ``lmforge.tokenize``).
"""

from __future__ import annotations

import math

__all__ = ["perplexity"]


def perplexity(total_nll: float, n_tokens: int) -> float:
    """exp(total_nll / n_tokens), with total_nll the summed negative natural-log likelihood.

    Raises:
        ValueError: no tokens.
    """
    if n_tokens <= 0:
        raise ValueError("perplexity needs at least one token")
    return math.exp(total_nll / n_tokens)
