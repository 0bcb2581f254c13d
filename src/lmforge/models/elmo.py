"""Bidirectional LSTM language model with layer mixing (family ``elmo``).

Paper: Peters, Neumann, Iyyer, Gardner, Clark, Lee & Zettlemoyer, "Deep contextualized word
representations" (NAACL 2018). A forward LM reads x_1..x_k to predict x_{k+1}, a backward LM
reads x_N..x_k to predict x_{k-1}; both share the token representation and the softmax but have
their own L-layer LSTMs (section 3.1). The biLM maximises, over every position k,

    log p(x_k | x_1..x_{k-1}; Θx, →Θ_LSTM, Θs) + log p(x_k | x_{k+1}..x_N; Θx, ←Θ_LSTM, Θs)

and ELMo's vector of token k is a task-weighted mix of its 2L + 1 representations (eq. 1):

    h_{k,0} = [x_k; x_k]                                 (the token embedding, twice)
    h_{k,j} = [→h_{k,j}; ←h_{k,j}]                       (layer j of both LSTMs, j = 1..L)
    ELMo_k = γ Σ_j s_j h_{k,j},  s = softmax(w)

Training with the one Trainer: it reads random windows x_0..x_T as inputs = x_0..x_{T-1} and
targets = x_1..x_T and minimises ``-log_probs(inputs, targets).mean()``. The forward LM scores
targets[t] from inputs[:t+1]; the backward LM scores inputs[t] from targets[t:] (x_{t+1}..x_T).
``log_probs`` returns the *mean* of the two: the Trainer's loss is then half the paper's summed
objective (the same optimum), exactly the loss of the authors' bilm-tf code (``total_loss = 0.5
* (forward + backward)``), and the perplexity that ``lmforge.evaluate`` derives from it is
exp(mean NLL of both directions) = sqrt(ppl_forward * ppl_backward), the "average forward and
backward perplexity" the paper reports (section 3.4). ``direction_log_probs`` and
``direction_perplexities`` give each direction alone.

Simplified compared with the paper: a token embedding instead of the character CNN with highway
layers; LSTMs of width ``d_model`` without the 4096 -> 512 projection; dropout (0.1, as bilm-tf)
on the embeddings, between layers and before the softmax; an optional adaptive softmax instead
of the sampled one. The residual connection from the first to the second layer is kept
(``residual``, applied from layer 2 on). The mix weights (s, γ) belong to a downstream task: the
model holds one ``ScalarMix`` (equal weights, γ = 1) whose parameters are frozen because the LM
objective does not touch them; a task unfreezes them (``model.mix.requires_grad_(True)``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from lmforge.config import check_dropout, check_sizes, checked_cutoffs, require_vocab_size
from lmforge.errors import ConfigError
from lmforge.models.family import Adaptation, Family
from lmforge.nn.decoding import generate
from lmforge.nn.layers import OutputHead, init_uniform
from lmforge.nn.protocol import max_seq_len_context, no_state, num_parameters

if TYPE_CHECKING:  # only needed for type hints
    from lmforge.tokenize import Tokenizer

__all__ = [
    "ElmoConfig",
    "scalar_mix",
    "ScalarMix",
    "LSTMStack",
    "ELMo",
    "direction_perplexities",
    "FAMILY",
]

INIT_RANGE = 0.1  # uniform init of every weight, as the rnn family (Zaremba et al. 2014)

# Per layer, the (h, c) state of a one-layer torch LSTM: each (1, B, d_model).
LayerStates = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class ElmoConfig:
    """Settings of an ELMo biLM.

    Args:
        vocab_size: number of tokens, set from the tokenizer (0 until then).
        d_model: size of the token embedding and of every LSTM layer (each direction).
        n_layers: L, LSTM layers per direction (the paper: 2).
        max_seq_len: the window length the biLM is trained on (the Trainer's seq_len must equal
            it); the LSTMs themselves read sequences of any length.
        dropout: dropout on the embeddings, between layers and before the softmax.
        residual: add each layer's input to its output from the second layer on (the paper).
        tie_embeddings: the shared softmax reuses the embedding matrix (needs a full softmax).
        adaptive_cutoffs: () for a full softmax, else an adaptive one's clusters (``OutputHead``).
    """

    vocab_size: int = 0
    d_model: int = 128
    n_layers: int = 2
    max_seq_len: int = 64
    dropout: float = 0.1
    residual: bool = True
    tie_embeddings: bool = False
    adaptive_cutoffs: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_sizes(self, ("d_model", "n_layers", "max_seq_len"))
        check_dropout(self.dropout)
        for name in ("residual", "tie_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        cutoffs = checked_cutoffs(self.adaptive_cutoffs, tied=self.tie_embeddings)
        object.__setattr__(self, "adaptive_cutoffs", cutoffs)

    @property
    def d_output(self) -> int:
        """Width of every biLM layer and of an ELMo vector: 2 * d_model."""
        return 2 * self.d_model


# ---------------------------------------------------------------------------------------------
# Layer mixing.


def scalar_mix(layers: torch.Tensor, weights: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """ELMo_k = γ Σ_j s_j h_{k,j} with s = softmax(w) (Peters et al. 2018, eq. 1).

    Args:
        layers: (J, ..., D) the J = L + 1 representations h_{·,j}.
        weights: (J,) the unnormalised layer weights w.
        gamma: () or (1,) the scale γ.

    Returns:
        (..., D) the mixed vectors.
    """
    s = weights.softmax(dim=0)  # (J,)
    return gamma * torch.tensordot(s, layers, dims=1)  # (..., D)


class ScalarMix(nn.Module):
    """The parameters w (J,) and γ of ``scalar_mix``; starts at equal weights and γ = 1."""

    def __init__(self, n_layers: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(n_layers))
        self.gamma = nn.Parameter(torch.ones(1))

    def forward(self, layers: torch.Tensor) -> torch.Tensor:
        """(J, ..., D) -> (..., D)."""
        return scalar_mix(layers, self.weights, self.gamma)


# ---------------------------------------------------------------------------------------------
# The model.


class LSTMStack(nn.Module):
    """``n_layers`` one-layer LSTMs (one direction) that keep every layer's outputs.

    Dropout is applied to each layer's input (the embeddings, then the outputs below); from the
    second layer on the layer's input is added to its output when ``residual``.
    """

    def __init__(self, d_model: int, n_layers: int, dropout: float, residual: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.LSTM(d_model, d_model, batch_first=True) for _ in range(n_layers)
        )
        self.drop = nn.Dropout(dropout)
        self.residual = residual

    def forward(
        self, x: torch.Tensor, state: LayerStates | None = None
    ) -> tuple[list[torch.Tensor], LayerStates]:
        """(B, T, d_model) -> per layer (B, T, d_model) outputs, and per layer the new state."""
        outputs, states = [], []
        for i, lstm in enumerate(self.layers):
            y, layer_state = lstm(self.drop(x), None if state is None else state[i])
            if self.residual and i > 0:
                y = y + x
            outputs.append(y)
            states.append(layer_state)
            x = y
        return outputs, states


class ELMo(nn.Module):
    """Forward and backward LSTM LMs over a shared embedding and softmax, with a layer mix.

    Follows the neural family protocol (``lmforge.models.family``) as a non-recurrent model:
    ``forward``, ``step`` and ``generate`` use the forward LM; ``log_probs`` averages both
    directions (see the module docstring); ``layer_states`` and ``embed`` give the contextual
    representations.
    """

    recurrent = False

    def __init__(self, config: ElmoConfig) -> None:
        super().__init__()
        self.config = c = require_vocab_size(config)
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.forward_lm = LSTMStack(c.d_model, c.n_layers, c.dropout, c.residual)
        self.backward_lm = LSTMStack(c.d_model, c.n_layers, c.dropout, c.residual)
        self.drop = nn.Dropout(c.dropout)
        tie_to = self.tok_emb if c.tie_embeddings else None
        self.head = OutputHead(c.d_model, c.vocab_size, c.adaptive_cutoffs, tie_to)
        init_uniform(self, INIT_RANGE)
        self.mix = ScalarMix(c.n_layers + 1)
        self.mix.requires_grad_(False)  # a downstream task's parameters, not the LM's

    # The parts of the family protocol that several families share (lmforge.nn.protocol).
    context_size = max_seq_len_context
    init_state = no_state
    num_parameters = num_parameters  # of the biLM and the mix

    # -- the two language models ------------------------------------------------------------------

    def _backward_outputs(self, ids: torch.Tensor) -> list[torch.Tensor]:
        """(B, T) -> per layer (B, T, d_model): position t has read ids[t:] from right to left."""
        outputs, _ = self.backward_lm(self.tok_emb(ids.flip(1)))
        return [out.flip(1) for out in outputs]

    def direction_log_probs(
        self, inputs: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each direction's log-probabilities in a window x_0..x_T (inputs x_0..x_{T-1},
        targets x_1..x_T, as the Trainer cuts them).

        Returns:
            forward (B, T): log p(targets[t] | inputs[:t+1]) = log p(x_{t+1} | x_0..x_t), and
            backward (B, T): log p(inputs[t] | targets[t:]) = log p(x_t | x_{t+1}..x_T).
        """
        forward_top = self.forward_lm(self.tok_emb(inputs))[0][-1]  # (B, T, d_model)
        backward_top = self._backward_outputs(targets)[-1]  # (B, T, d_model)
        forward = self.head.target_log_probs(self.drop(forward_top), targets)
        backward = self.head.target_log_probs(self.drop(backward_top), inputs)
        return forward, backward

    def log_probs(
        self, inputs: torch.Tensor, targets: torch.Tensor, state: None = None
    ) -> tuple[torch.Tensor, None]:
        """(B, T), (B, T) -> (B, T) the mean of the two directions' log-probabilities (see
        ``direction_log_probs``), and no state: the Trainer's loss is bilm-tf's
        0.5 * (forward + backward) NLL."""
        forward, backward = self.direction_log_probs(inputs, targets)
        return 0.5 * (forward + backward), None

    def forward(self, ids: torch.Tensor, state: None = None) -> tuple[torch.Tensor, None]:
        """(B, T) ids -> (B, T, V) the forward LM's next-token logits (log-probs when adaptive)."""
        outputs, _ = self.forward_lm(self.tok_emb(ids))
        return self.head.logits(self.drop(outputs[-1])), None

    # -- contextual representations -------------------------------------------------------------

    def layer_states(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (L + 1, B, T, 2 d_model): h_{k,0} = [x_k; x_k] and
        h_{k,j} = [→h_{k,j}; ←h_{k,j}], the forward half having read ids[:k+1] and the
        backward half ids[k:] (Peters et al. 2018, section 3.2)."""
        embedded = self.tok_emb(ids)  # (B, T, d_model)
        forward, _ = self.forward_lm(embedded)
        backward = self._backward_outputs(ids)
        layers = [torch.cat([embedded, embedded], dim=-1)]
        layers += [torch.cat(pair, dim=-1) for pair in zip(forward, backward, strict=True)]
        return torch.stack(layers)

    def embed(
        self, inputs: torch.Tensor | Sequence[str], tokenizer: Tokenizer | None = None
    ) -> torch.Tensor | list[torch.Tensor]:
        """ELMo vectors γ Σ_j s_j h_{k,j} through ``self.mix`` (eq. 1).

        Call ``model.eval()`` first for deterministic vectors (dropout off).

        Args:
            inputs: (B, T) token ids, or sentences to encode with ``tokenizer``.
            tokenizer: needed for sentences; each is read as ``<s> tokens </s>``.

        Returns:
            (B, T, 2 d_model) for ids; for sentences a list of (n_tokens, 2 d_model), one row
            per token of ``tokenizer.encode(sentence, markers=False)`` (the markers' rows
            dropped, as bilm-tf does).
        """
        if isinstance(inputs, torch.Tensor):
            return self.mix(self.layer_states(inputs))
        if isinstance(inputs, str) or tokenizer is None:
            raise ConfigError(
                "embed takes (B, T) ids, or a list of sentences with the tokenizer the model "
                "was trained with"
            )
        device = self.tok_emb.weight.device
        vectors = []
        for ids in tokenizer.encode_batch(list(inputs), markers=True):  # one at a time: no padding
            row = torch.tensor([ids], device=device)
            vectors.append(self.mix(self.layer_states(row))[0, 1:-1])
        return vectors

    # -- generation with the forward LM ---------------------------------------------------------

    def step(
        self, ids: torch.Tensor, cache: LayerStates | None = None
    ) -> tuple[torch.Tensor, LayerStates]:
        """Logits (B, V) of the next token under the forward LM; the cache is its LSTM state.

        Args:
            ids: (B, t) the prompt when ``cache`` is None (t >= 1), else the newest ids.
            cache: what the previous call returned.
        """
        outputs, state = self.forward_lm(self.tok_emb(ids), cache)
        return self.head.logits(self.drop(outputs[-1][:, -1])), state

    generate = generate  # lmforge.nn.decoding.generate, through ``step``: the forward LM


@torch.no_grad()
def direction_perplexities(
    model: ELMo, stream: torch.Tensor, batch_size: int = 16
) -> tuple[float, float]:
    """Forward and backward perplexity of a token stream (``lmforge.data.batching``).

    The stream is cut into consecutive windows of ``max_seq_len`` targets (the training
    condition; the last, shorter one read alone, never padded). The forward LM scores every
    token after the first, the backward LM every token before the last.

    Returns:
        (forward perplexity, backward perplexity).
    """
    was_training = model.training
    model.eval()
    device = model.tok_emb.weight.device
    width, n_targets = model.config.max_seq_len, len(stream) - 1
    full = n_targets // width
    body = full * width
    windows = [(stream[:body].view(full, width), stream[1 : body + 1].view(full, width))]
    if n_targets > body:
        windows.append((stream[body:-1][None], stream[body + 1 :][None]))
    nll = torch.zeros(2, dtype=torch.float64)  # forward, backward
    for inputs, targets in windows:
        for first in range(0, len(inputs), batch_size):
            rows = slice(first, first + batch_size)
            forward, backward = model.direction_log_probs(
                inputs[rows].to(device), targets[rows].to(device)
            )
            nll -= torch.stack([forward.sum(), backward.sum()]).double().cpu()
    model.train(was_training)
    return math.exp(float(nll[0]) / n_targets), math.exp(float(nll[1]) / n_targets)


FAMILY = Family(
    name="elmo",
    config_class=ElmoConfig,
    model_class=ELMo,
    summary="bidirectional LSTM LM with ELMo layer mixing (Peters et al. 2018)",
    adaptation=Adaptation("features", lr=2e-4, dapt=(1000, 3e-4)),
    reads_future=True,
)
