"""Recurrent language models: families ``rnn`` (Elman), ``lstm`` and ``gru``.

Papers:

- ``rnn``: Mikolov, Karafiat, Burget, Cernocky & Khudanpur, "Recurrent neural network based
  language model" (Interspeech 2010): h_t = tanh(W_ih x_t + W_hh h_{t-1} + b), softmax output.
- ``lstm``: Zaremba, Sutskever & Vinyals, "Recurrent Neural Network Regularization" (2014):
  stacked LSTMs (Hochreiter & Schmidhuber 1997) with dropout on the non-recurrent connections
  only: on the embeddings, between layers and before the softmax, never on h_{t-1} -> h_t.
- ``gru``: Cho et al., "Learning Phrase Representations using RNN Encoder-Decoder for
  Statistical Machine Translation" (2014), the gated recurrent unit.

All three share one model, ``RecurrentLM``: embedding (size ``d_model``) -> dropout ->
``n_layers`` of ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` (dropout between layers) -> dropout ->
``OutputHead`` (full, tied to the embedding as Press & Wolf 2017, or adaptive). Every weight is
initialised uniform(-0.1, 0.1), Zaremba's setting for the small model (they use 0.05 and 0.04
for the medium and large ones). Training is truncated backpropagation through time: the
Trainer carries the state from one batch to the next (``recurrent = True``) and detaches it.

Simplified compared with the papers: Mikolov's RNNLM used a class-based output layer and
backpropagation through time with its own truncation; here the output is the shared
``OutputHead`` (its adaptive softmax plays the role of the classes) and optimisation is the
Trainer's. Zaremba's learning-rate schedule and gradient clipping (norm 5) belong to the
Trainer's config, not to this file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from lmforge.config import check_dropout, check_sizes, checked_cutoffs, require_vocab_size
from lmforge.errors import ConfigError
from lmforge.models.family import Family
from lmforge.nn.decoding import generate
from lmforge.nn.layers import OutputHead, init_uniform
from lmforge.nn.protocol import num_parameters

__all__ = [
    "CELLS",
    "RNNConfig",
    "RNNLMConfig",
    "LSTMConfig",
    "GRUConfig",
    "RecurrentLM",
    "FAMILY_RNN",
    "FAMILY_LSTM",
    "FAMILY_GRU",
]

CELLS = ("rnn", "lstm", "gru")
INIT_RANGE = 0.1  # Zaremba et al.'s small model

# A state is h (n_layers, B, d_model), or (h, c) for the LSTM.
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class RNNConfig:
    """Settings of a recurrent LM.

    Args:
        vocab_size: number of tokens, set from the tokenizer (0 until then).
        cell: "rnn" (Elman, tanh), "lstm" or "gru".
        d_model: size of the embeddings and of every layer's hidden state.
        n_layers: number of stacked recurrent layers.
        dropout: dropout on the non-recurrent connections (Zaremba et al. 2014).
        tie_embeddings: the output layer reuses the embedding matrix (needs a full softmax).
        adaptive_cutoffs: () for a full softmax, else an adaptive one's clusters (``OutputHead``).
    """

    family_cell: ClassVar[str | None] = None  # the cell a family's subclass requires

    vocab_size: int = 0
    cell: str = "lstm"
    d_model: int = 200
    n_layers: int = 2
    dropout: float = 0.0
    tie_embeddings: bool = False
    adaptive_cutoffs: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_sizes(self, ("d_model", "n_layers"))
        if self.cell not in CELLS:
            raise ConfigError(f"cell must be one of {', '.join(CELLS)}; got {self.cell!r}")
        if self.family_cell is not None and self.cell != self.family_cell:
            raise ConfigError(
                f"cell must be {self.family_cell!r} in the {self.family_cell} family, got "
                f"{self.cell!r}; use the {self.cell} family for that cell"
            )
        check_dropout(self.dropout)
        if not isinstance(self.tie_embeddings, bool):
            raise ConfigError(f"tie_embeddings must be true or false, got {self.tie_embeddings!r}")
        cutoffs = checked_cutoffs(self.adaptive_cutoffs, tied=self.tie_embeddings)
        object.__setattr__(self, "adaptive_cutoffs", cutoffs)


@dataclass(frozen=True)
class RNNLMConfig(RNNConfig):
    """``RNNConfig`` of the ``rnn`` family (Elman cells)."""

    family_cell: ClassVar[str | None] = "rnn"
    cell: str = "rnn"


@dataclass(frozen=True)
class LSTMConfig(RNNConfig):
    """``RNNConfig`` of the ``lstm`` family."""

    family_cell: ClassVar[str | None] = "lstm"
    cell: str = "lstm"


@dataclass(frozen=True)
class GRUConfig(RNNConfig):
    """``RNNConfig`` of the ``gru`` family."""

    family_cell: ClassVar[str | None] = "gru"
    cell: str = "gru"


# ---------------------------------------------------------------------------------------------
# The model.


def recurrent_layers(cell: str, d_model: int, n_layers: int, dropout: float) -> nn.Module:
    """``n_layers`` stacked cells, batch first, dropout on the outputs between layers only."""
    between = dropout if n_layers > 1 else 0.0  # torch warns when there is no "between"
    if cell == "lstm":
        return nn.LSTM(d_model, d_model, n_layers, batch_first=True, dropout=between)
    if cell == "gru":
        return nn.GRU(d_model, d_model, n_layers, batch_first=True, dropout=between)
    return nn.RNN(
        d_model, d_model, n_layers, nonlinearity="tanh", batch_first=True, dropout=between
    )


class RecurrentLM(nn.Module):
    """Embedding -> stacked RNN / LSTM / GRU -> output head; the state is carried by the caller."""

    recurrent = True

    def __init__(self, config: RNNConfig) -> None:
        super().__init__()
        self.config = require_vocab_size(config)
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.layers = recurrent_layers(config.cell, config.d_model, config.n_layers, config.dropout)
        tie_to = self.embed if config.tie_embeddings else None
        self.head = OutputHead(config.d_model, config.vocab_size, config.adaptive_cutoffs, tie_to)
        init_uniform(self, INIT_RANGE)

    context_size = 0  # the state carries the context
    num_parameters = num_parameters  # lmforge.nn.protocol: a tied matrix counted once
    generate = generate  # lmforge.nn.decoding.generate(self, prompt_ids, max_new_tokens, sampler)

    def init_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """Zeros: h (n_layers, B, d_model), or (h, c) for the LSTM."""
        weight = self.embed.weight
        shape = (self.config.n_layers, batch_size, self.config.d_model)
        h = torch.zeros(shape, dtype=weight.dtype, device=device or weight.device)
        return (h, torch.zeros_like(h)) if self.config.cell == "lstm" else h

    def hidden(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """(B, T) ids -> (B, T, d_model) top-layer outputs (after dropout), and the new state."""
        if state is None:
            state = self.init_state(ids.shape[0], ids.device)
        x = self.drop(self.embed(ids))  # (B, T, d_model)
        out, state = self.layers(x, state)  # (B, T, d_model)
        return self.drop(out), state

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """(B, T) ids -> (B, T, V) logits of the next token (log-probs when adaptive), state."""
        out, state = self.hidden(ids, state)
        return self.head.logits(out), state

    def log_probs(
        self, inputs: torch.Tensor, targets: torch.Tensor, state: State | None = None
    ) -> tuple[torch.Tensor, State]:
        """(B, T), (B, T) -> (B, T) log p(targets[:, t] | state, inputs[:, :t+1]), state."""
        out, state = self.hidden(inputs, state)
        return self.head.target_log_probs(out, targets), state

    def step(self, ids: torch.Tensor, cache: State | None = None) -> tuple[torch.Tensor, State]:
        """Logits (B, V) of the next token; the cache is the recurrent state.

        Args:
            ids: (B, t) the prompt when ``cache`` is None (t >= 1), else the newest ids.
            cache: what the previous call returned.
        """
        out, state = self.hidden(ids, cache)
        return self.head.logits(out[:, -1]), state


def _family(name: str, config_class: type, summary: str) -> Family:
    return Family(name, config_class, RecurrentLM, summary)


FAMILY_RNN = _family("rnn", RNNLMConfig, "Elman recurrent LM (Mikolov et al. 2010)")
FAMILY_LSTM = _family(
    "lstm", LSTMConfig, "stacked LSTM LM with non-recurrent dropout (Zaremba et al. 2014)"
)
FAMILY_GRU = _family("gru", GRUConfig, "stacked GRU LM (Cho et al. 2014)")
