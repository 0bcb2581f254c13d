"""A copy head: the pointer sentinel mixture of Merity et al., "Pointer Sentinel Mixture Models"
(ICLR 2017, eqs. 3-7), over a decoder's own context.

At position t the head attends over the earlier positions s < t and a sentinel. The weight on s
copies the token that followed s, x_{s+1}; the sentinel's weight keeps the softmax:

    z_s = q(h_t) . k(h_s) / sqrt(P)    for s < t        z_sentinel = w . h_t + b
    a = softmax([z_sentinel, z_0, ..., z_{t-1}])
    p(v) = a_sentinel p_vocab(v) + sum_s a_s [x_{s+1} = v]

"Find where this token stood and write what came after it" is then one attention. A small model
tuned briefly does not otherwise learn it (an induction head, Olsson et al. 2022, forms after
far more training; RESULTS.md, issue 18). Merity et al. query an RNN's last state and point at
words; here the queries and keys are a Transformer's final hidden states, and every position
may point back.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["CopyHead", "copy_mixture", "copy_target_mixture"]

TINY = 1e-30  # floor of the copied mass before its log: no -inf, no NaN gradient


class CopyHead(nn.Module):
    """The pointer's query and key projections (d_model -> copy_dim) and its sentinel score.

    The sentinel's bias starts at log(max_seq_len) + 2, so that a new head (scores near 0 at
    N(0, 0.02) weights) leaves about 90% of the weight on the softmax of the model it joins.
    """

    def __init__(self, d_model: int, copy_dim: int, max_seq_len: int) -> None:
        super().__init__()
        self.query = nn.Linear(d_model, copy_dim)
        self.key = nn.Linear(d_model, copy_dim)
        self.sentinel = nn.Linear(d_model, 1)
        self.start_bias = math.log(max_seq_len) + 2.0

    def reset_sentinel(self) -> None:
        nn.init.constant_(self.sentinel.bias, self.start_bias)

    def log_weights(
        self, hidden: torch.Tensor, keys: torch.Tensor, allowed: torch.Tensor
    ) -> torch.Tensor:
        """log a: (B, T, d_model) queries, (B, S, P) keys, (B or 1, T, S) bool ``allowed``
        -> (B, T, 1 + S), the sentinel first."""
        scores = self.query(hidden) @ keys.transpose(-1, -2) / math.sqrt(keys.shape[-1])
        scores = scores.masked_fill(~allowed, float("-inf"))  # (B, T, S)
        return torch.cat([self.sentinel(hidden), scores], dim=-1).log_softmax(dim=-1)


def copy_mixture(
    vocab_log_probs: torch.Tensor, log_weights: torch.Tensor, candidates: torch.Tensor
) -> torch.Tensor:
    """log p(v) for every v: (..., V) the softmax's log-probs, (..., 1 + S) ``log_weights``,
    (..., S) ``candidates`` (the token each position copies; broadcast against the weights)
    -> (..., V)."""
    copied = log_weights[..., 1:].exp()  # (..., S)
    index = candidates.expand_as(copied)
    mass = torch.zeros_like(vocab_log_probs).scatter_add_(-1, index, copied)  # (..., V)
    return torch.logaddexp(log_weights[..., :1] + vocab_log_probs, mass.clamp_min(TINY).log())


def copy_target_mixture(
    target_log_probs: torch.Tensor,
    log_weights: torch.Tensor,
    candidates: torch.Tensor,
    targets: torch.Tensor,
) -> torch.Tensor:
    """log p(target) alone: (...) the softmax's log-probs of ``targets`` (...), (..., 1 + S)
    ``log_weights``, (..., S) ``candidates`` -> (...); ``copy_mixture`` read at the targets,
    without the (..., V) tensor."""
    hits = candidates == targets[..., None]  # (..., S)
    mass = (log_weights[..., 1:].exp() * hits).sum(dim=-1)
    return torch.logaddexp(log_weights[..., 0] + target_log_probs, mass.clamp_min(TINY).log())
