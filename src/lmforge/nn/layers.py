"""Blocks shared by the neural families. Each takes explicit sizes, never a whole config."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["OutputHead"]


class OutputHead(nn.Module):
    """Maps hidden vectors to next-token log-probabilities: a full softmax or an adaptive one.

    With ``cutoffs`` empty this is one linear layer (optionally sharing its weight with the input
    embedding: ``tie_to``). With cutoffs it is ``torch.nn.AdaptiveLogSoftmaxWithLoss`` (Grave et
    al. 2017): frequent tokens (ids below the first cutoff) in the head, rarer ones in smaller
    clusters, which makes large vocabularies cheap. Token ids must be sorted by falling frequency
    for that to pay (the ``word`` tokenizer's are).

    Args:
        d_in: size of the hidden vectors.
        vocab_size: number of tokens.
        cutoffs: increasing cluster boundaries, each < vocab_size; () for a full softmax.
        tie_to: an ``nn.Embedding`` of shape (vocab_size, d_in) whose weight the full softmax
            reuses (Press & Wolf 2017); not allowed with cutoffs.
    """

    def __init__(
        self,
        d_in: int,
        vocab_size: int,
        cutoffs: tuple[int, ...] = (),
        tie_to: nn.Embedding | None = None,
    ) -> None:
        super().__init__()
        self.cutoffs = tuple(c for c in cutoffs if c < vocab_size)
        if self.cutoffs:
            assert tie_to is None, "tied embeddings need a full softmax"
            self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(d_in, vocab_size, list(self.cutoffs))
        else:
            self.linear = nn.Linear(d_in, vocab_size, bias=tie_to is None)
            if tie_to is not None:
                self.linear.weight = tie_to.weight

    def log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., d_in) -> (..., vocab_size) log-probabilities of every token."""
        if self.cutoffs:
            flat = self.adaptive.log_prob(hidden.reshape(-1, hidden.shape[-1]))
            return flat.view(*hidden.shape[:-1], -1)
        return F.log_softmax(self.linear(hidden), dim=-1)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., d_in) -> (..., vocab_size) unnormalised scores (log-probs for adaptive)."""
        return self.log_probs(hidden) if self.cutoffs else self.linear(hidden)

    def target_log_probs(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(B, T, d_in), (B, T) -> (B, T) log p(target) without building all log-probs when
        the softmax is adaptive."""
        if self.cutoffs:
            out = self.adaptive(hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1))
            return out.output.view(targets.shape)
        logits = self.linear(hidden)
        return -F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
        ).view(targets.shape)
