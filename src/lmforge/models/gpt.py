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
Beyond GPT-2, two options: rotary positions (``positions``) and a copy head (``copy_dim``, the
pointer sentinel mixture of ``lmforge.nn.pointer``), whose log-probs then stand for the logits.
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
from lmforge.nn.attention import (
    KVCache,
    MultiHeadAttention,
    SlotKV,
    check_heads,
    rotary_angles,
)
from lmforge.nn.decoding import generate
from lmforge.nn.layers import AdaptiveInput, FeedForward, OutputHead, init_normal
from lmforge.nn.pointer import CopyHead, copy_mixture, copy_target_mixture
from lmforge.nn.protocol import max_seq_len_context, no_state, num_parameters

__all__ = ["FAMILY", "GPT", "GPTCache", "GPTConfig", "GPTSlots"]


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
        max_seq_len: context size in tokens (number of positions), >= 1.
        positions: "learned" (GPT-2's absolute position embeddings, added to the tokens) or
            "rotary" (RoPE, Su et al. 2021: queries and keys turned by their position; attention
            then depends on relative distance, which makes copying from the context easier to
            learn). Only "learned" exports to Hugging Face's GPT-2.
        dropout: dropout probability in [0, 1) on embeddings, attention weights and residuals.
        tie_embeddings: share the token embedding with the output layer.
        bias: biases in the linear layers (LayerNorms always have them).
        adaptive_cutoffs: () for a full softmax, or cluster boundaries of an adaptive softmax
            (Grave et al. 2017) for large vocabularies. With tie_embeddings the input embedding
            then reads the adaptive softmax's weights (adaptive input, Baevski & Auli 2019):
            frequent tokens their head row, rare ones their narrow cluster row projected up.
        copy_dim: 0, or the width of a copy head (``lmforge.nn.pointer``: the pointer sentinel
            mixture, Merity et al. 2017) that may copy, instead of the softmax's pick, the
            token that followed an earlier position of the context. Not in GPT-2.
        copy_skip: token ids the copy head never copies (their probability is the softmax's
            alone). Chat tuning gives it the marks that close a quotation: copying the one that
            followed a quoted title's last character ended a poem's line there.
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
    positions: str = "learned"
    copy_dim: int = 0
    copy_skip: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_sizes(self, ("d_model", "n_layers", "n_heads", "d_ff", "max_seq_len"))
        check_heads(self.d_model, self.n_heads)
        if self.positions not in ("learned", "rotary"):
            raise ConfigError(f"positions must be 'learned' or 'rotary', got {self.positions!r}")
        if self.positions == "rotary" and self.head_dim % 2:
            raise ConfigError(
                f"rotary positions need an even d_model / n_heads, got {self.head_dim}"
            )
        check_dropout(self.dropout)
        if (
            isinstance(self.copy_dim, bool)
            or not isinstance(self.copy_dim, int)
            or self.copy_dim < 0
        ):
            raise ConfigError(
                f"copy_dim must be an integer >= 0 (0: no copy head), got {self.copy_dim!r}"
            )
        skip = self.copy_skip
        if not isinstance(skip, (list, tuple)) or any(
            isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in skip
        ):
            raise ConfigError(f"copy_skip must be a list of token ids, got {skip!r}")
        if skip and not self.copy_dim:
            raise ConfigError("copy_skip needs a copy head (copy_dim > 0)")
        object.__setattr__(self, "copy_skip", tuple(skip))
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
        self,
        x: torch.Tensor,
        cache: KVCache | SlotKV | None = None,
        mask: torch.Tensor | None = None,
        rotary: tuple | None = None,
    ) -> tuple[torch.Tensor, KVCache]:
        """(B, T, d_model) -> (B, T, d_model), and this layer's keys and values for the cache
        (``mask``, ``rotary``: the attention's, as ``MultiHeadAttention.forward`` takes them)."""
        attended, new_cache = self.attn(self.ln_1(x), cache, mask, rotary=rotary)
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
    copy_keys: torch.Tensor | None = None  # (B, max_seq_len, copy_dim): the copy head's keys

    @property
    def length(self) -> int:
        return self.layers[0].length

    @property
    def window(self) -> torch.Tensor:
        """(B, length) the tokens in the current window."""
        return self.ids[:, : self.length]


@dataclass(frozen=True)
class GPTSlots:
    """The state of up to S sequences decoded side by side, each at its own length
    (``GPT.new_slots``; a server's continuous batching). The active sequences are rows
    0 .. n-1; a caller keeps them there (``move_slot`` fills a finished row with the last one).

    Attributes:
        keys, values: per block, (S, H, max_seq_len, D) buffers.
        lengths: (S,) int64, the tokens each row has read.
        ids, copy_keys: with a copy head, (S, max_seq_len) the tokens and (S, max_seq_len,
            copy_dim) its keys; else None.
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    lengths: torch.Tensor
    ids: torch.Tensor | None = None
    copy_keys: torch.Tensor | None = None


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
        if c.positions == "learned":
            self.pos_emb = nn.Embedding(c.max_seq_len, c.d_model)
        else:  # not weights: rebuilt from the config, never saved
            cos, sin = rotary_angles(c.head_dim, c.max_seq_len)
            self.register_buffer("rotary_cos", cos, persistent=False)
            self.register_buffer("rotary_sin", sin, persistent=False)
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
        self.copy = CopyHead(c.d_model, c.copy_dim, c.max_seq_len) if c.copy_dim else None
        self.register_buffer("copy_skip", torch.tensor(c.copy_skip, dtype=torch.long), False)
        self._init_weights()

    def _init_weights(self) -> None:
        """GPT-2 initialisation: N(0, 0.02) weights, zero biases, and the two projections that
        add into the residual stream scaled by 1/sqrt(2 * n_layers) (Radford et al. 2019, 2.3)."""
        init_normal(self, std=0.02)
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layers)
        for block in self.blocks:
            nn.init.normal_(block.attn.proj.weight, mean=0.0, std=residual_std)
            nn.init.normal_(block.mlp.proj.weight, mean=0.0, std=residual_std)
        if self.copy is not None:
            self.copy.reset_sentinel()

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
        x, rotary = self.tok_emb(ids), None  # (B, T, d_model)
        if self.config.positions == "learned":
            x = x + self.pos_emb.weight[start : start + length]  # (T, d_model), a view
        else:
            window = slice(start, start + length)
            rotary = (self.rotary_cos[window], self.rotary_sin[window])  # (T, D) each
        if self.training:
            x = self.emb_dropout(x)
        new_caches = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, None if caches is None else caches[i], rotary=rotary)
            new_caches.append(kv)
        return self.ln_f(x), new_caches

    def forward(self, ids: torch.Tensor, state: None = None) -> tuple[torch.Tensor, None]:
        """(B, T) ids -> (B, T, vocab_size) next-token logits (with a copy head: the mixture's
        log-probs), and no state."""
        hidden, _ = self.hidden_states(ids)
        logits = self.head.logits(hidden)
        if self.copy is None:
            return logits, None
        weights, candidates = self._copy_window(hidden, ids)
        return copy_mixture(logits.log_softmax(dim=-1), weights, candidates), None

    def log_probs(
        self, inputs: torch.Tensor, targets: torch.Tensor, state: None = None
    ) -> tuple[torch.Tensor, None]:
        """(B, T), (B, T) -> (B, T) log p(targets[:, t] | inputs[:, :t+1]), and no state."""
        return self.selected_log_probs(inputs, targets, None), None

    def selected_log_probs(
        self, inputs: torch.Tensor, targets: torch.Tensor, keep: torch.Tensor | None
    ) -> torch.Tensor:
        """(B, T) inputs and targets, (B, T) bool ``keep`` -> (N,) log p(target) at the N kept
        positions (None: every position, (B, T)); the output layer reads those only (chat
        tuning scores the assistant's tokens alone, and a small model's output layer is much of
        its cost)."""
        hidden, _ = self.hidden_states(inputs)
        pick = (lambda x: x) if keep is None else (lambda x: x[keep])
        log_probs = self.head.target_log_probs(pick(hidden), pick(targets))
        if self.copy is None:
            return log_probs
        weights, candidates = self._copy_window(hidden, inputs)
        candidates = candidates.expand(-1, inputs.shape[1], -1)  # (B, T, T - 1)
        return copy_target_mixture(log_probs, pick(weights), pick(candidates), pick(targets))

    def _copy_window(self, hidden: torch.Tensor, ids: torch.Tensor):
        """The copy head over a window read at once: its log weights (B, T, T) at every
        position, and the tokens (B, 1, T - 1) that positions 0 .. T - 2 copy."""
        positions = torch.arange(ids.shape[1], device=ids.device)
        keys = self.copy.key(hidden[:, :-1])  # (B, T - 1, P)
        candidates = ids[:, None, 1:]
        allowed = positions[None, :-1] < positions[:, None]  # (T, T - 1): s < t
        allowed = allowed[None] & self._copyable(candidates)  # (B, T, T - 1)
        return self.copy.log_weights(hidden, keys, allowed), candidates

    def _copyable(self, candidates: torch.Tensor) -> torch.Tensor:
        """Whether each candidate token may be copied (not in ``copy_skip``)."""
        return ~torch.isin(candidates, self.copy_skip)

    def _next_logits(
        self, hidden: torch.Tensor, ids: torch.Tensor, keys: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        """(B, d_model) hidden vectors of each row's newest token -> (B, V) the copy mixture's
        next-token log-probs, given the rows' tokens ``ids`` (B, >= S + 1) and copy keys
        (B, S, P) so far, and the newest token's position (B,) in each row (it points at
        s < its position)."""
        logits = self.head.logits(hidden)
        span = keys.shape[1]
        candidates = ids[:, None, 1 : span + 1]  # (B, 1, S)
        allowed = torch.arange(span, device=hidden.device)[None] < positions[:, None]  # (B, S)
        allowed = allowed[:, None] & self._copyable(candidates)
        weights = self.copy.log_weights(hidden[:, None], keys, allowed)  # (B, 1, 1 + S)
        return copy_mixture(logits.log_softmax(dim=-1)[:, None], weights, candidates)[:, 0]

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
        cache = GPTCache(cache.ids, layers, cache.copy_keys)
        if self.copy is None:
            return self.head.logits(hidden[:, -1]), cache
        cache.copy_keys[:, start:end] = self.copy.key(hidden)
        newest = torch.full((ids.shape[0],), end - 1, device=ids.device)
        keys = cache.copy_keys[:, : end - 1]
        return self._next_logits(hidden[:, -1], cache.ids, keys, newest), cache

    def empty_cache(self, like: torch.Tensor) -> GPTCache:
        """An empty cache with room for max_seq_len positions, for a batch like ``like``."""
        c = self.config
        batch, capacity = like.shape[0], c.max_seq_len
        weight = self.tok_emb.weight
        layers = [
            KVCache.empty(batch, c.n_heads, c.head_dim, capacity, weight) for _ in self.blocks
        ]
        keys = weight.new_empty(batch, capacity, c.copy_dim) if self.copy is not None else None
        return GPTCache(like.new_empty(batch, capacity), layers, keys)

    generate = generate  # lmforge.nn.decoding.generate(self, prompt_ids, max_new_tokens, sampler)

    # -- continuous batching: sequences that join and leave between steps ------------------------

    def new_slots(self, slots: int) -> GPTSlots:
        """Empty state for up to ``slots`` sequences of at most max_seq_len tokens each."""
        c, weight = self.config, self.ln_f.weight
        shape = (slots, c.n_heads, c.max_seq_len, c.head_dim)
        keys = [weight.new_zeros(shape) for _ in self.blocks]
        values = [weight.new_zeros(shape) for _ in self.blocks]
        lengths = torch.zeros(slots, dtype=torch.long, device=weight.device)
        if self.copy is None:
            return GPTSlots(keys, values, lengths)
        ids = lengths.new_zeros(slots, c.max_seq_len)
        return GPTSlots(
            keys, values, lengths, ids, weight.new_zeros(slots, c.max_seq_len, c.copy_dim)
        )

    def prefill_slot(self, slots: GPTSlots, row: int, ids: torch.Tensor) -> torch.Tensor:
        """Read a prompt (T,) into row ``row`` (replacing what it held); (V,) logits of the
        next token."""
        hidden, caches = self.hidden_states(ids[None])
        for keys, values, cache in zip(slots.keys, slots.values, caches, strict=True):
            keys[row, :, : len(ids)] = cache.keys[0]
            values[row, :, : len(ids)] = cache.values[0]
        slots.lengths[row] = len(ids)
        if self.copy is None:
            return self.head.logits(hidden[0, -1])
        slots.ids[row, : len(ids)] = ids
        slots.copy_keys[row, : len(ids)] = self.copy.key(hidden[0])
        newest = slots.lengths[row : row + 1] - 1
        keys = slots.copy_keys[row : row + 1, : len(ids) - 1]
        return self._next_logits(hidden[:, -1], slots.ids[row : row + 1], keys, newest)[0]

    def step_slots(self, slots: GPTSlots, ids: torch.Tensor) -> torch.Tensor:
        """Append one token to each of rows 0 .. n-1, ``ids`` (n,); (n, V) logits of the next
        tokens. Equal to ``step`` of each row on its own; a row must have room (its length
        < max_seq_len)."""
        positions = slots.lengths[: len(ids)].clone()  # where each new token goes
        if int(positions.max()) >= self.config.max_seq_len:
            raise ConfigError(f"a row is full: max_seq_len={self.config.max_seq_len}")
        span = int(positions.max()) + 1
        mask = torch.arange(span, device=ids.device)[None] <= positions[:, None]  # (n, span)
        mask = mask[:, None, None, :]  # (n, 1, 1, span): each row sees its own tokens only
        x, rotary = self.tok_emb(ids), None
        if self.config.positions == "learned":
            x = x + self.pos_emb(positions)
        else:  # each row turned by its own position: (n, 1, 1, D)
            rotary = (
                self.rotary_cos[positions][:, None, None],
                self.rotary_sin[positions][:, None, None],
            )
        x = x[:, None]  # (n, 1, d_model)
        for block, keys, values in zip(self.blocks, slots.keys, slots.values, strict=True):
            x, _ = block(x, SlotKV(keys, values, positions, span), mask, rotary)
        slots.lengths[: len(ids)] += 1
        hidden, rows = self.ln_f(x)[:, 0], torch.arange(len(ids))
        if self.copy is None:
            return self.head.logits(hidden)
        slots.ids[rows, positions] = ids
        slots.copy_keys[rows, positions] = self.copy.key(hidden)
        keys = slots.copy_keys[: len(ids), : span - 1]
        return self._next_logits(hidden, slots.ids[: len(ids)], keys, positions)

    @staticmethod
    def move_slot(slots: GPTSlots, source: int, target: int) -> None:
        """Copy row ``source`` into row ``target`` (to keep the active rows first)."""
        length = int(slots.lengths[source])
        for buffer in (*slots.keys, *slots.values):
            buffer[target, :, :length] = buffer[source, :, :length]
        for buffer in (slots.ids, slots.copy_keys):
            if buffer is not None:
                buffer[target, :length] = buffer[source, :length]
        slots.lengths[target] = length


FAMILY = Family(
    name="gpt",
    config_class=GPTConfig,
    model_class=GPT,
    summary="decoder-only Transformer (GPT): causal self-attention, pre-LN, tied embeddings",
    # the default vertical base (4 x 128) trains at 5,000 tokens/s (RESULTS.md)
    adaptation=Adaptation("causal", lr=2e-4, dapt=(1000, 3e-4), speed=(5_000, 1_833_728)),
)
