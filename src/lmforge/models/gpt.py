"""Decoder-only Transformer language model (GPT).

Papers: Radford et al., "Improving Language Understanding by Generative Pre-Training" (2018):
a Transformer decoder (Vaswani et al. 2017) without cross-attention, trained to predict the next
token; Radford et al., "Language Models are Unsupervised Multitask Learners" (2019, GPT-2):
LayerNorm moved to the input of each sub-block plus a final LayerNorm ("pre-LN"), residual
projections initialised with std 0.02 / sqrt(2 * n_layers), token embedding tied to the output
softmax (Press & Wolf 2017).

    h_0 = E[ids] + P[positions]                      (token + learned position embeddings)
    a_l = h_{l-1} + Attn(LN(h_{l-1}))                (causal multi-head self-attention)
    h_l = a_l + W_2 GELU(W_1 LN(a_l))                (position-wise MLP, width d_ff)
    logits = LN(h_L) E^T                             (tied output head)

Simplified compared with GPT-2: no byte-level BPE of its own (any lmforge tokenizer), no
weight decay groups (the Trainer's business), the context is ``max_seq_len`` tokens; generation
beyond it slides a window over the last ``max_seq_len`` tokens, recomputing it at every step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from lmforge.config import check_dropout, check_sizes, checked_cutoffs, require_vocab_size
from lmforge.errors import ConfigError
from lmforge.models.family import Adaptation, Family
from lmforge.nn.attention import KVCache, MultiHeadAttention, check_heads
from lmforge.nn.decoding import generate
from lmforge.nn.layers import AdaptiveInput, FeedForward, OutputHead, init_normal
from lmforge.nn.protocol import max_seq_len_context, no_state, num_parameters

__all__ = ["FAMILY", "GPT", "GPTCache", "GPTConfig"]


@dataclass(frozen=True)
class GPTConfig:
    """Settings of a GPT model.

    Args:
        vocab_size: number of tokens, set from the tokenizer by the caller (0 = not yet set;
            building a model then raises ConfigError).
        d_model: width of the residual stream, divisible by n_heads.
        n_layers: number of Transformer blocks, >= 1.
        n_heads: attention heads per block, >= 1.
        d_ff: hidden width of the MLP, >= 1 (GPT-2: 4 * d_model).
        max_seq_len: context size in tokens (number of learned positions), >= 1.
        dropout: dropout probability in [0, 1) on embeddings, attention weights and residuals.
        tie_embeddings: share the token embedding with the output layer.
        bias: biases in the linear layers (LayerNorms always have them).
        adaptive_cutoffs: () for a full softmax, or cluster boundaries of an adaptive softmax
            (Grave et al. 2017) for large vocabularies. With tie_embeddings the input embedding
            then reads the adaptive softmax's weights (adaptive input, Baevski & Auli 2019):
            frequent tokens their head row, rare ones their narrow cluster row projected up.
    """

    vocab_size: int = 0
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 512
    max_seq_len: int = 64
    dropout: float = 0.0
    tie_embeddings: bool = True
    bias: bool = True
    adaptive_cutoffs: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_sizes(self, ("d_model", "n_layers", "n_heads", "d_ff", "max_seq_len"))
        check_heads(self.d_model, self.n_heads)
        check_dropout(self.dropout)
        for name in ("tie_embeddings", "bias"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        object.__setattr__(self, "adaptive_cutoffs", checked_cutoffs(self.adaptive_cutoffs))

    @property
    def head_dim(self) -> int:
        """Width of one attention head, d_model / n_heads."""
        return self.d_model // self.n_heads


# ---------------------------------------------------------------------------------------------
# Modules.


class Block(nn.Module):
    """One pre-LN Transformer decoder block: x + Attn(LN(x)), then x + MLP(LN(x)), the MLP a
    ``FeedForward`` with exact GELU."""

    def __init__(
        self, d_model: int, n_heads: int, d_ff: int, dropout: float, bias: bool = True
    ) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads, dropout, bias=bias, causal=True)
        self.ln_2 = nn.LayerNorm(d_model)
        self.mlp = FeedForward(d_model, d_ff, dropout, F.gelu, bias=bias)

    def forward(
        self, x: torch.Tensor, cache: KVCache | None = None
    ) -> tuple[torch.Tensor, KVCache]:
        """(B, T, d_model) -> (B, T, d_model), and this layer's keys and values for the cache."""
        attended, new_cache = self.attn(self.ln_1(x), cache)
        x = x + attended
        x = x + self.mlp(self.ln_2(x))
        return x, new_cache


@dataclass(frozen=True)
class GPTCache:
    """What ``GPT.step`` carries from one call to the next.

    Attributes:
        ids: (B, max_seq_len) buffer whose first ``length`` columns are the tokens of the current
            window (kept to recompute the window when it slides).
        layers: per block, the keys and values of those tokens.
    """

    ids: torch.Tensor
    layers: list[KVCache]

    @property
    def length(self) -> int:
        return self.layers[0].length

    @property
    def window(self) -> torch.Tensor:
        """(B, length) the tokens in the current window."""
        return self.ids[:, : self.length]


# ---------------------------------------------------------------------------------------------
# The model.


class GPT(nn.Module):
    """Decoder-only Transformer language model, following the neural family protocol
    (``lmforge.models.family``)."""

    recurrent = False

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = c = require_vocab_size(config)
        adaptive_tied = c.tie_embeddings and bool(c.adaptive_cutoffs)
        if not adaptive_tied:
            self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.pos_emb = nn.Embedding(c.max_seq_len, c.d_model)
        self.emb_dropout = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            Block(c.d_model, c.n_heads, c.d_ff, c.dropout, bias=c.bias) for _ in range(c.n_layers)
        )
        self.ln_f = nn.LayerNorm(c.d_model)
        full_tied = c.tie_embeddings and not adaptive_tied
        self.head = OutputHead(
            c.d_model, c.vocab_size, c.adaptive_cutoffs, tie_to=self.tok_emb if full_tied else None
        )
        if adaptive_tied:
            self.tok_emb = AdaptiveInput(self.head)
        self._init_weights()

    def _init_weights(self) -> None:
        """GPT-2 initialisation: N(0, 0.02) weights, zero biases, and the two projections that
        add into the residual stream scaled by 1/sqrt(2 * n_layers) (Radford et al. 2019, 2.3)."""
        init_normal(self, std=0.02)
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layers)
        for block in self.blocks:
            nn.init.normal_(block.attn.proj.weight, mean=0.0, std=residual_std)
            nn.init.normal_(block.mlp.proj.weight, mean=0.0, std=residual_std)

    # The parts of the family protocol that several families share (lmforge.nn.protocol).
    context_size = max_seq_len_context
    init_state = no_state
    num_parameters = num_parameters

    def hidden_states(
        self, ids: torch.Tensor, start: int = 0, caches: list[KVCache] | None = None
    ) -> tuple[torch.Tensor, list[KVCache]]:
        """The final-LayerNorm'd hidden vectors.

        Args:
            ids: (B, T) token ids at positions start .. start + T - 1 (< max_seq_len).
            start: position of the first token (the number of cached positions).
            caches: per block, keys and values of the ``start`` earlier tokens, or None.

        Returns:
            (B, T, d_model) hidden vectors, and per block the keys and values of all
            ``start + T`` tokens.
        """
        length = ids.shape[1]
        if start + length > self.config.max_seq_len:
            raise ConfigError(
                f"a GPT with max_seq_len={self.config.max_seq_len} cannot read {start + length} "
                f"tokens at once; give windows of at most max_seq_len tokens"
            )
        positions = self.pos_emb.weight[start : start + length]  # (T, d_model), a view
        x = self.tok_emb(ids) + positions  # (B, T, d_model)
        if self.training:
            x = self.emb_dropout(x)
        new_caches = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, None if caches is None else caches[i])
            new_caches.append(kv)
        return self.ln_f(x), new_caches

    def forward(self, ids: torch.Tensor, state: None = None) -> tuple[torch.Tensor, None]:
        """(B, T) ids -> (B, T, vocab_size) next-token logits, and no state."""
        hidden, _ = self.hidden_states(ids)
        return self.head.logits(hidden), None

    def log_probs(
        self, inputs: torch.Tensor, targets: torch.Tensor, state: None = None
    ) -> tuple[torch.Tensor, None]:
        """(B, T), (B, T) -> (B, T) log p(targets[:, t] | inputs[:, :t+1]), and no state."""
        hidden, _ = self.hidden_states(inputs)
        return self.head.target_log_probs(hidden, targets), None

    def step(
        self, ids: torch.Tensor, cache: GPTCache | None = None
    ) -> tuple[torch.Tensor, GPTCache]:
        """One generation step with a per-layer KV cache.

        Args:
            ids: (B, t) the prompt when cache is None, else the newest token(s).
            cache: what the previous step returned.

        Returns:
            (B, vocab_size) logits of the next token, and the cache for the next step (its
            buffers are written in place: continue from the newest cache only). When the window
            would exceed max_seq_len, the last max_seq_len tokens are recomputed from scratch
            (learned absolute positions cannot be shifted inside a cache).
        """
        limit = self.config.max_seq_len
        if cache is None or cache.length + ids.shape[1] > limit:
            if cache is not None:
                ids = torch.cat([cache.window, ids], dim=1)
            ids = ids[:, -limit:]
            cache = self.empty_cache(ids)
        start, end = cache.length, cache.length + ids.shape[1]
        hidden, layers = self.hidden_states(ids, start, cache.layers)
        cache.ids[:, start:end] = ids
        return self.head.logits(hidden[:, -1]), GPTCache(cache.ids, layers)

    def empty_cache(self, like: torch.Tensor) -> GPTCache:
        """An empty cache with room for max_seq_len positions, for a batch like ``like``."""
        c = self.config
        batch, capacity = like.shape[0], c.max_seq_len
        weight = self.tok_emb.weight
        layers = [
            KVCache.empty(batch, c.n_heads, c.head_dim, capacity, weight) for _ in self.blocks
        ]
        return GPTCache(like.new_empty(batch, capacity), layers)

    generate = generate  # lmforge.nn.decoding.generate(self, prompt_ids, max_new_tokens, sampler)


FAMILY = Family(
    name="gpt",
    config_class=GPTConfig,
    model_class=GPT,
    summary="decoder-only Transformer (GPT): causal self-attention, pre-LN, tied embeddings",
    # the default vertical base (4 x 128) trains at 5,000 tokens/s (RESULTS.md)
    adaptation=Adaptation("causal", lr=2e-4, dapt=(1000, 3e-4), speed=(5_000, 1_833_728)),
)
