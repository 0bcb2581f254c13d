"""Classifier heads: a pretrained model plus exactly one new output layer.

* ``SequenceClassifier`` (Devlin et al. 2019, section 4.1): a BERT's pooled [CLS] vector,
  tanh(W_p h_L[:, 0]) (BERT's pooler), then dropout and one ``nn.Linear(d_model, n_labels)``
  ("The only new parameters introduced during fine-tuning are classification layer weights W").
* ``TokenClassifier`` (section 5.3): each token's last hidden vector, dropout, one
  ``nn.Linear``; a word is labelled at its first sub-token, the others are not scored.
* ``CausalClassifier`` (Radford et al. 2018, section 3.2): a GPT's final hidden state of the
  last real token (or the mean over its tokens), dropout, one ``nn.Linear``; the GPT's LM head
  stays, for the auxiliary language-modelling loss (``losses``).

Every head answers ``forward(ids, attention_mask) -> logits`` and names its pretrained model
``base`` and its classes ``n_labels``. ``HEADS`` names the BERT heads by the task they solve
("sequence", "token"), as a fine-tuned folder records it (``lmforge.folders``). The heads use
their base only through its methods: this module imports no model class.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from lmforge.errors import ConfigError

__all__ = [
    "HEADS",
    "POOLINGS",
    "CausalClassifier",
    "EncoderClassifier",
    "SequenceClassifier",
    "TokenClassifier",
    "check_pooling",
    "head_task",
]

POOLINGS = ("last", "mean")  # what a causal classifier reads: the last token's state, or the mean


def check_pooling(pooling: str) -> str:
    """``pooling`` if it is one of ``POOLINGS``, else a ConfigError naming them."""
    if pooling not in POOLINGS:
        raise ConfigError(f"unknown pooling {pooling!r}; use {' or '.join(POOLINGS)}")
    return pooling


class _Head(nn.Module):
    """What every head shares: the new layer, no recurrent state, its base's config, a
    parameter count, its number of classes."""

    recurrent = False

    def _add_output(self, d_model: int, n_labels: int, dropout: float) -> None:
        """Dropout and the one new layer, initialised as BERT and GPT initialise theirs:
        N(0, 0.02) weights, zero bias (added after the base: its weights come first)."""
        if n_labels < 2:
            raise ConfigError(f"n_labels must be >= 2 for a classifier, got {n_labels}")
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(d_model, n_labels)
        nn.init.normal_(self.classifier.weight, mean=0.0, std=0.02)
        nn.init.zeros_(self.classifier.bias)

    @property
    def config(self):
        return self.base.config

    @property
    def n_labels(self) -> int:
        return self.classifier.out_features

    def init_state(self, batch_size: int, device=None) -> None:
        return None

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


# ---------------------------------------------------------------------------------------------
# BERT: one linear layer on the encoder.


class EncoderClassifier(_Head):
    """A pretrained BERT plus dropout and one linear layer (its weights are ``encoder.*`` and
    ``classifier.*``)."""

    def __init__(self, encoder: nn.Module, n_labels: int) -> None:
        super().__init__()
        self.encoder = encoder
        self._add_output(encoder.config.d_model, n_labels, encoder.config.dropout)

    @property
    def base(self) -> nn.Module:
        return self.encoder


class SequenceClassifier(EncoderClassifier):
    """Sentence classification: pooled [CLS] vector -> dropout -> Linear(d_model, n_labels).

    Args:
        encoder: a pretrained BERT (its MLM and NSP heads stay unused).
        n_labels: number of classes, >= 2.
    """

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        """(B, T) ids and mask -> (B, n_labels) logits."""
        pooled = self.encoder.pool(self.encoder.encode(ids, attention_mask=attention_mask))
        return self.classifier(self.dropout(pooled))


class TokenClassifier(EncoderClassifier):
    """Token tagging: each last hidden vector -> dropout -> Linear(d_model, n_labels).

    Args:
        encoder: a pretrained BERT (its MLM and NSP heads stay unused).
        n_labels: number of tags, >= 2.
    """

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        """(B, T) ids and mask -> (B, T, n_labels) logits."""
        hidden = self.encoder.encode(ids, attention_mask=attention_mask)  # (B, T, d_model)
        return self.classifier(self.dropout(hidden))


HEADS = {"sequence": SequenceClassifier, "token": TokenClassifier}


def head_task(model: object) -> str | None:
    """The task of a ``HEADS`` classifier ("sequence" or "token"); None for any other model."""
    return next((task for task, head in HEADS.items() if type(model) is head), None)


# ---------------------------------------------------------------------------------------------
# GPT: one linear layer on the last (or every) token's final state, and the auxiliary LM loss.


class CausalClassifier(_Head):
    """A GPT plus one linear layer on the last real token's final hidden state (``pooling``
    "last", GPT-1's) or on the mean of every real token's final hidden state ("mean").

    A text longer than ``window`` tokens is read as consecutive windows of ``window`` tokens,
    each on its own; the pooled states of its windows are averaged.

    Args:
        lm: the (pretrained) GPT; its LM head stays for the auxiliary loss.
        n_labels: number of classes, >= 2.
        window: tokens per window, at most the GPT's ``max_seq_len`` (the default).
        pooling: "last" or "mean".
    """

    def __init__(
        self, lm: nn.Module, n_labels: int, window: int | None = None, pooling: str = "last"
    ) -> None:
        super().__init__()
        self.pooling = check_pooling(pooling)
        self.lm = lm
        self.window = min(window or lm.config.max_seq_len, lm.config.max_seq_len)
        self._add_output(lm.config.d_model, n_labels, lm.config.dropout or 0.1)

    @property
    def base(self) -> nn.Module:
        return self.lm

    def _read(self, ids: torch.Tensor, mask: torch.Tensor):
        """(B, T) right-padded ids and mask -> (B, d_model) pooled states, and the hidden
        states (R, L, d_model), ids and mask (R, L) of the R windows holding text."""
        batch, length = ids.shape
        count = -(-length // self.window)
        if count > 1:  # cut into windows: (B * count, window)
            pad = count * self.window - length
            ids = F.pad(ids, (0, pad)).view(batch * count, self.window)
            mask = F.pad(mask, (0, pad)).view(batch * count, self.window)
        real = mask[:, 0]  # windows with at least one token (the text is right-padded)
        ids, mask = ids[real], mask[real]
        hidden, _ = self.lm.hidden_states(ids)
        if self.pooling == "mean":
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            states = (hidden * weights).sum(dim=1) / weights.sum(dim=1)  # (R, d)
        else:
            last = mask.sum(dim=1) - 1  # index of each window's last real token
            states = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        if count > 1:
            spread = states.new_zeros(batch * count, states.shape[-1])
            spread[real] = states
            counts = real.view(batch, count).sum(dim=1, keepdim=True).clamp(min=1)
            states = spread.view(batch, count, -1).sum(dim=1) / counts
        return states, hidden, ids, mask

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) right-padded ids and mask -> (B, n_labels) logits."""
        pooled = self._read(ids, attention_mask)[0]
        return self.classifier(self.dropout(pooled))

    def losses(self, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor):
        """(task cross-entropy, next-token cross-entropy over the real tokens), one forward."""
        pooled, hidden, ids, mask = self._read(ids, mask)
        task = F.cross_entropy(self.classifier(self.dropout(pooled)).float(), labels)
        logp = self.lm.head.target_log_probs(hidden[:, :-1], ids[:, 1:])  # (R, L-1)
        scored = mask[:, 1:]
        return task, -(logp * scored).sum() / scored.sum().clamp(min=1)
