"""Feed-forward neural language model (family ``nnlm``).

Paper: Bengio, Ducharme, Vincent & Jauvin, "A Neural Probabilistic Language Model", JMLR 3
(2003). Each word w has a learned feature vector C(w) of size m (``d_model``); the next word is
predicted from the n-1 previous words (``context``) by eq. 1 of the paper:

    x = (C(w_{t-1}), C(w_{t-2}), ..., C(w_{t-n+1}))      concatenation, size (n-1) m
    y = b + W x + U tanh(d + H x)                         unnormalised log-probabilities
    P(w_t = i | context) = softmax(y)_i

Here the output layer is one ``OutputHead`` over the concatenation [tanh(d + H x), x], whose
weight is [U, W] and bias b: the same sum ``U tanh(d + H x) + W x + b``. With ``direct=False``
there are no direct connections (W = 0 in the paper); with ``d_hidden=0`` there is no hidden
layer (h = 0 in the paper's Table 1). The paper's "mix" with an interpolated trigram is
``lmforge.evaluate.mix_log_probs``.

Simplified compared with the paper: no parallel (data- or parameter-parallel) training, no
weight decay built in (the Trainer's optimizer decides), optional dropout (absent in the paper)
on the features and the hidden layer, and an optional adaptive softmax (Grave et al. 2017) for
large vocabularies. Positions whose n-1 previous tokens run off the left edge of the input are
padded with ``<s>``, so a window is read as if it started a sentence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from lmforge.config import (
    check_dropout,
    check_int,
    check_sizes,
    checked_cutoffs,
    require_vocab_size,
)
from lmforge.errors import ConfigError
from lmforge.models.family import Family
from lmforge.nn.decoding import generate
from lmforge.nn.layers import OutputHead
from lmforge.nn.protocol import no_state, num_parameters
from lmforge.tokenize import BOS_ID

__all__ = ["NNLMConfig", "NNLM", "context_windows", "FAMILY"]


@dataclass(frozen=True)
class NNLMConfig:
    """Settings of a Bengio et al. (2003) feed-forward LM.

    Args:
        vocab_size: number of tokens, set from the tokenizer (0 until then).
        context: n-1, how many tokens are read to predict the next one: the current token and
            the context-1 before it.
        d_model: m, the size of each token's feature vector C(w).
        d_hidden: h, the size of the tanh hidden layer; 0 for none.
        direct: direct connections W from the features to the output.
        dropout: dropout on the features and the hidden layer during training.
        adaptive_cutoffs: () for a full softmax, else an adaptive one's clusters (``OutputHead``).
    """

    vocab_size: int = 0
    context: int = 4
    d_model: int = 60
    d_hidden: int = 50
    direct: bool = True
    dropout: float = 0.0
    adaptive_cutoffs: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_sizes(self, ("context", "d_model"))
        check_int("d_hidden", self.d_hidden, 0, " (0 for no hidden layer)")
        if not isinstance(self.direct, bool):
            raise ConfigError(f"direct must be true or false, got {self.direct!r}")
        if self.d_hidden == 0 and not self.direct:
            raise ConfigError(
                "d_hidden is 0 and direct is false, so nothing reaches the output; "
                "set d_hidden >= 1 or direct = true"
            )
        check_dropout(self.dropout)
        object.__setattr__(self, "adaptive_cutoffs", checked_cutoffs(self.adaptive_cutoffs))

    @property
    def d_features(self) -> int:
        """(n-1) m: the size of x, the concatenated feature vectors."""
        return self.context * self.d_model


# ---------------------------------------------------------------------------------------------
# The math.


def context_windows(ids: torch.Tensor, context: int, pad_id: int = BOS_ID) -> torch.Tensor:
    """The ``context`` tokens ending at every position, the left edge padded with ``pad_id``.

    Args:
        ids: (B, T) token ids.
        context: n-1, the window length.
        pad_id: the id standing before the first token.

    Returns:
        (B, T, context) ids; row t is ids[t-context+1 .. t], oldest first.
    """
    padded = F.pad(ids, (context - 1, 0), value=pad_id)  # (B, T + context - 1)
    return padded.unfold(1, context, 1)  # (B, T, context)


def context_windows_reference(ids: torch.Tensor, context: int, pad_id: int = BOS_ID):
    """Plain-Python ``context_windows`` (the readable reference)."""
    rows = []
    for row in ids.tolist():
        padded = [pad_id] * (context - 1) + row
        rows.append([padded[t : t + context] for t in range(len(row))])
    return torch.tensor(rows, dtype=ids.dtype).view(ids.shape[0], ids.shape[1], context)


# ---------------------------------------------------------------------------------------------
# The model.


class NNLM(nn.Module):
    """Bengio et al. (2003): y = b + W x + U tanh(d + H x) over the n-1 previous tokens."""

    recurrent = False

    def __init__(self, config: NNLMConfig) -> None:
        super().__init__()
        self.config = require_vocab_size(config)
        self.embed = nn.Embedding(config.vocab_size, config.d_model)  # C
        self.hidden = nn.Linear(config.d_features, config.d_hidden) if config.d_hidden else None
        self.drop = nn.Dropout(config.dropout)
        d_out = config.d_hidden + (config.d_features if config.direct else 0)
        self.head = OutputHead(d_out, config.vocab_size, config.adaptive_cutoffs)  # [U, W], b

    @property
    def context_size(self) -> int:
        return self.config.context

    # The parts of the family protocol that several families share (lmforge.nn.protocol).
    init_state = no_state
    num_parameters = num_parameters  # C, H, d, U, W, b
    generate = generate  # lmforge.nn.decoding.generate(self, prompt_ids, max_new_tokens, sampler)

    def features(self, windows: torch.Tensor) -> torch.Tensor:
        """(..., context) ids -> (..., d_hidden [+ d_features]): [tanh(d + H x), x]."""
        x = self.drop(self.embed(windows).flatten(-2))  # (..., context * d_model)
        parts = []
        if self.hidden is not None:
            parts.append(self.drop(torch.tanh(self.hidden(x))))  # (..., d_hidden)
        if self.config.direct:
            parts.append(x)
        return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]

    def forward(self, ids: torch.Tensor, state: None = None) -> tuple[torch.Tensor, None]:
        """(B, T) ids -> (B, T, V) logits of the next token (log-probs when adaptive), None."""
        hidden = self.features(context_windows(ids, self.config.context))
        return self.head.logits(hidden), None

    def log_probs(
        self, inputs: torch.Tensor, targets: torch.Tensor, state: None = None
    ) -> tuple[torch.Tensor, None]:
        """(B, T), (B, T) -> (B, T) log p(targets[:, t] | inputs[:, t-context+1 .. t]), None."""
        hidden = self.features(context_windows(inputs, self.config.context))
        return self.head.target_log_probs(hidden, targets), None

    def step(
        self, ids: torch.Tensor, cache: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, V) of the next token; the cache is the last ``context`` ids (B, context).

        Args:
            ids: (B, t) the prompt when ``cache`` is None (t may be 0), else the newest ids.
            cache: what the previous call returned.
        """
        n = self.config.context
        if cache is None:
            cache = torch.full((ids.shape[0], n), BOS_ID, dtype=torch.long, device=ids.device)
        window = torch.cat([cache, ids.to(cache.dtype)], dim=1)[:, -n:]  # (B, context)
        return self.head.logits(self.features(window)), window


FAMILY = Family(
    name="nnlm",
    config_class=NNLMConfig,
    model_class=NNLM,
    summary="feed-forward neural LM over the n-1 previous tokens (Bengio et al. 2003)",
)
