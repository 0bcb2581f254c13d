"""Scaled dot-product attention: the paper's reference path, the fast path, and multi-head.

Vaswani et al., "Attention Is All You Need" (2017): eq. 1,
``Attention(Q, K, V) = softmax(Q Kᵀ / sqrt(d_k)) V``, and section 3.2.2, multi-head attention
(h heads of size d_k = d_model / h, projected in, attended in parallel, concatenated, projected
out). ``attention_reference`` follows the paper's figure 2 op by op; ``attention`` is PyTorch's
fused ``scaled_dot_product_attention``; a test keeps them equal.

Masks are boolean with True meaning "may attend" (the convention of
``scaled_dot_product_attention``), broadcastable to (B, H, T_q, T_k).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from lmforge.errors import ConfigError

__all__ = [
    "SlotKV",
    "KVCache",
    "MultiHeadAttention",
    "attention",
    "apply_rotary",
    "attention_reference",
    "cached_causal_mask",
    "causal_mask",
    "check_heads",
    "rotary_angles",
]


def check_heads(d_model: int, n_heads: int) -> None:
    """Raise ConfigError unless ``n_heads`` >= 1 heads split ``d_model`` evenly."""
    if n_heads < 1 or d_model % n_heads:
        raise ConfigError(
            f"d_model must be divisible by n_heads, got d_model={d_model} and n_heads={n_heads}; "
            "choose n_heads among the divisors of d_model"
        )


def causal_mask(size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(T, T) boolean mask, True where query t may attend key s, that is s <= t."""
    return torch.ones(size, size, dtype=torch.bool, device=device).tril()


def cached_causal_mask(
    new: int, past: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """(T_new, T_past + T_new) mask for ``new`` queries that follow ``past`` cached positions:
    every past key plus the causal part of the new ones (query i sees keys s <= past + i)."""
    return torch.ones(new, past + new, dtype=torch.bool, device=device).tril(diagonal=past)


def attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Scaled dot-product attention exactly as drawn in Vaswani et al. 2017, figure 2 / eq. 1.

    MatMul(Q, Kᵀ) -> Scale by 1/sqrt(d_k) -> Mask (optional) -> SoftMax -> MatMul with V.

    Args:
        q: (B, H, T_q, D) queries.
        k: (B, H, T_k, D) keys.
        v: (B, H, T_k, D_v) values.
        mask: boolean, broadcastable to (B, H, T_q, T_k); True = may attend.
        dropout_p: dropout on the attention weights (applied whenever > 0: pass 0 in eval).

    Returns:
        (B, H, T_q, D_v) attended values.
    """
    scores = q @ k.transpose(-2, -1)  # MatMul: (B, H, T_q, T_k)
    scores = scores / math.sqrt(q.shape[-1])  # Scale
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # Mask
    weights = torch.softmax(scores, dim=-1)  # SoftMax over keys: (B, H, T_q, T_k)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v  # MatMul: (B, H, T_q, D_v)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """The fast path of :func:`attention_reference`: ``F.scaled_dot_product_attention``.

    Same arguments and shapes, plus ``is_causal``: the (T, T) causal mask without building it
    (only for T_q == T_k; with a KV cache pass an explicit mask instead).
    """
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal
    )


def rotary_angles(head_dim: int, length: int, base: float = 10000.0) -> tuple[torch.Tensor, ...]:
    """(cos, sin), each (length, head_dim), of rotary position embeddings (RoPE, Su et al.
    2021): at position p the pair (i, i + D/2) of a query or key turns by the angle
    p * base^(-2i/D) (the halves layout of GPT-NeoX and Llama)."""
    if head_dim % 2:
        raise ConfigError(f"rotary positions need an even head width, got {head_dim}")
    inverse = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.arange(length, dtype=torch.float64)[:, None] * inverse[None]  # (L, D/2)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().float(), angles.sin().float()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``x`` (..., T, D) with each pair (i, i + D/2) rotated by its position's angle; ``cos``
    and ``sin`` broadcast to it (rows of ``rotary_angles``)."""
    half = x.shape[-1] // 2
    turned = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + turned * sin


@dataclass(frozen=True)
class KVCache:
    """Keys and values of the positions attended so far, for decoding token by token.

    At inference a decoder's earlier keys and values never change, so each step computes only the
    new ones. They live in the first ``length`` positions of two buffers of shape
    (B, H, capacity, D); ``append`` writes new positions in place when they fit (no copy of the
    past per token) and reallocates, doubling, when they do not. The buffers are shared between a
    cache and the one ``append`` returns: continue from the newest cache only (to branch, as beam
    search does, copy the buffers first), and do not backpropagate through an appended cache.
    """

    key_buffer: torch.Tensor  # (B, H, capacity, D)
    value_buffer: torch.Tensor  # (B, H, capacity, D)
    length: int

    @classmethod
    def empty(
        cls, batch: int, n_heads: int, head_dim: int, capacity: int, like: torch.Tensor
    ) -> KVCache:
        """A cache with room for ``capacity`` positions, of ``like``'s dtype and device."""
        shape = (batch, n_heads, capacity, head_dim)
        return cls(like.new_empty(shape), like.new_empty(shape), 0)

    @property
    def keys(self) -> torch.Tensor:
        """(B, H, length, D) a view of the filled positions."""
        return self.key_buffer.narrow(2, 0, self.length)

    @property
    def values(self) -> torch.Tensor:
        """(B, H, length, D) a view of the filled positions."""
        return self.value_buffer.narrow(2, 0, self.length)

    def append(self, k: torch.Tensor, v: torch.Tensor) -> KVCache:
        """The cache extended by k, v (B, H, T, D) at positions length .. length + T - 1."""
        end = self.length + k.shape[2]
        key_buffer, value_buffer = self.key_buffer, self.value_buffer
        capacity = key_buffer.shape[2]
        if end > capacity or key_buffer.dtype != k.dtype:  # (a new dtype: under autocast)
            capacity = capacity if end <= capacity else max(end, 2 * capacity)
            pad = (0, 0, 0, capacity - self.length)  # grow dim 2 of a (B, H, T, D) tensor
            key_buffer = F.pad(self.keys.to(k.dtype), pad)
            value_buffer = F.pad(self.values.to(v.dtype), pad)
        key_buffer.narrow(2, self.length, k.shape[2]).copy_(k)
        value_buffer.narrow(2, self.length, v.shape[2]).copy_(v)
        return KVCache(key_buffer, value_buffer, end)


@dataclass(frozen=True)
class SlotKV:
    """Keys and values of sequences decoded side by side, each at its own length: a server's
    continuous batching, where requests join and leave between steps. Row r of the buffers
    holds one sequence; ``append`` writes one new position per active row (rows 0 .. n-1) at
    ``positions[r]``, and ``keys`` / ``values`` are those rows' first ``span`` positions. A row
    must not see its unwritten positions: the caller masks each row's attention at
    ``positions[r]`` (``MultiHeadAttention.forward``'s ``mask``).
    """

    key_buffer: torch.Tensor  # (S, H, capacity, D)
    value_buffer: torch.Tensor  # (S, H, capacity, D)
    positions: torch.Tensor  # (n,) int64, n <= S
    span: int

    def append(self, k: torch.Tensor, v: torch.Tensor) -> SlotKV:
        """Write k, v (n, H, 1, D) at each row's position (in place)."""
        rows = torch.arange(len(self.positions), device=k.device)
        self.key_buffer[rows, :, self.positions] = k[:, :, 0]
        self.value_buffer[rows, :, self.positions] = v[:, :, 0]
        return self

    @property
    def keys(self) -> torch.Tensor:
        return self.key_buffer[: len(self.positions), :, : self.span]

    @property
    def values(self) -> torch.Tensor:
        return self.value_buffer[: len(self.positions), :, : self.span]


class MultiHeadAttention(nn.Module):
    """Multi-head attention (Vaswani et al. 2017, section 3.2.2) with one fused q/k/v projection.

    Self-attention by default (causal for decoders); with ``memory`` it is cross-attention: the
    queries come from ``x``, the keys and values from ``memory`` (the encoder's output), using
    the same fused weight split in two.

    Args:
        d_model: model width; also the input and output width.
        n_heads: number of heads; must divide d_model.
        dropout: dropout on attention weights and on the output (the residual branch).
        bias: whether the projections have biases.
        causal: whether position t may only attend positions <= t (decoder self-attention).
    """

    def __init__(
        self, d_model: int, n_heads: int, dropout: float, bias: bool = True, causal: bool = True
    ) -> None:
        super().__init__()
        check_heads(d_model, n_heads)
        self.d_model = d_model
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.dropout = dropout
        self.causal = causal
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.proj = nn.Linear(d_model, d_model, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d_model) -> (B, H, T, D), a view."""
        batch, length, _ = x.shape
        return x.view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)

    def _self_qkv(
        self, x: torch.Tensor, cache: KVCache | None, rotary: tuple | None = None
    ) -> tuple[torch.Tensor, KVCache]:
        """Queries of x (B, H, T, D), and the cache holding x's keys and values after the cached
        ones; with ``rotary`` (cos, sin) the queries and keys turned by their positions."""
        batch, length, _ = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.n_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # views, each (B, H, T, D)
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        if cache is None:
            return q, KVCache(k, v, length)
        return q, cache.append(k, v)

    def _cross_qkv(
        self, x: torch.Tensor, memory: torch.Tensor, cache: KVCache | None
    ) -> tuple[torch.Tensor, KVCache]:
        """Queries from x (B, H, T, D); keys and values from memory (B, H, S, D), or the cached
        ones (the memory does not change while a decoder generates)."""
        width = self.d_model
        w_q, w_kv = self.qkv.weight.split([width, 2 * width])
        b_q, b_kv = (
            (None, None) if self.qkv.bias is None else self.qkv.bias.split([width, 2 * width])
        )
        q = self._heads(F.linear(x, w_q, b_q))
        if cache is not None:
            return q, cache
        k, v = F.linear(memory, w_kv, b_kv).split(width, dim=2)  # each (B, S, d_model)
        return q, KVCache(self._heads(k), self._heads(v), memory.shape[1])

    def forward(
        self,
        x: torch.Tensor,
        cache: KVCache | None = None,
        mask: torch.Tensor | None = None,
        memory: torch.Tensor | None = None,
        rotary: tuple | None = None,
    ) -> tuple[torch.Tensor, KVCache]:
        """Attend and project.

        Args:
            x: (B, T, d_model) the queries' inputs (and keys'/values' in self-attention).
            cache: what an earlier call returned (or an empty ``KVCache`` sized for the whole
                generation). Self-attention: the past keys and values, (B, H, T_past, D); the new
                queries attend to all of them plus (causally) to the new positions.
                Cross-attention: the memory's keys and values, reused as they are.
            mask: boolean, broadcastable to (B, H, T, T_keys), True = may attend (padding).
                It replaces the causal mask, so give the full mask when both apply.
            memory: (B, S, d_model) the encoder's output, for cross-attention (never causal).
            rotary: (cos, sin) of the new positions, broadcastable to (B, H, T, D), to turn
                the queries and keys by (self-attention with rotary positions).

        Returns:
            y: (B, T, d_model), and the cache to pass next: for self-attention the keys and
            values of past and new positions, (B, H, T_past + T, D).
        """
        batch, length, width = x.shape
        if memory is None:
            q, cache = self._self_qkv(x, cache, rotary)
        else:
            q, cache = self._cross_qkv(x, memory, cache)
        k, v = cache.keys, cache.values  # (B, H, T_keys, D)
        # Causal self-attention: without a cache the fused kernel's is_causal (no mask is built);
        # several new queries after a cache need an explicit mask; a single new query (the
        # newest position) may see every key and needs none.
        is_causal = False
        if self.causal and memory is None and mask is None and length > 1:
            past = k.shape[2] - length
            if past == 0:
                is_causal = True
            else:
                mask = cached_causal_mask(length, past, device=x.device)
        dropout_p = self.dropout if self.training else 0.0
        y = attention(q, k, v, mask=mask, is_causal=is_causal, dropout_p=dropout_p)  # (B, H, T, D)
        y = y.transpose(1, 2).reshape(batch, length, width)  # concatenate the heads
        y = self.proj(y)
        return (self.resid_dropout(y) if self.training else y), cache
