"""Encoder-decoder Transformer (family ``seq2seq``) for sequence-to-sequence tasks.

Paper: Vaswani et al., "Attention Is All You Need" (2017).

    x_0 = sqrt(d_model) E[source] + PE                  (sections 3.4, 3.5)
    x_l = LN(x' + FFN(x')),  x' = LN(x_{l-1} + SelfAttn(x_{l-1}))          (encoder, 3.1)
    y_0 = sqrt(d_model) E[target_in] + PE
    y' = LN(y_{l-1} + MaskedSelfAttn(y_{l-1}))
    y'' = LN(y' + CrossAttn(y', x_N))                   (queries from the decoder, 3.2.3)
    y_l = LN(y'' + FFN(y'')),  FFN(h) = W_2 ReLU(W_1 h)  (eq. 2)
    logits = y_N E^T                                    (one embedding matrix, 3.4)

Trained with label-smoothed cross-entropy (5.4, epsilon 0.1: ``label_smoothed_nll``); decoded
through the decoder's KV cache by ``lmforge.nn.decoding``: greedily, by beam search with the
length penalty of Wu et al. 2016 (the paper used beam 4, alpha 0.6), or by minimum-Bayes-risk
over samples, each able to block repeated n-grams of its output or of the source.

Simplified compared with the paper: one shared vocabulary and tokenizer for source and target (the
paper shared a BPE vocabulary for English-German too); the Trainer's AdamW and warmup + cosine
schedule instead of the inverse-square-root one; no checkpoint averaging. ``norm_first`` moves the
LayerNorms to the input of each sub-layer with a final LayerNorm per stack ("pre-LN", Xiong et al.
2020), which trains more easily without a long warmup.

Encoder-decoder protocol (also followed by ``rnn_seq2seq``; the Family has ``seq2seq=True``):
``forward(source, target_in) -> logits`` (B, S), (B, T) -> (B, T, V) with ``PAD_ID`` padding;
``start_decoding(source) -> state``; ``decode_step(tokens, state) -> (log_probs, state)`` with
tokens (B,) and log-probs (B, V); ``reorder_state(state, index)`` for beam search; the decoders
of ``lmforge.nn.decoding`` read only these. Such models are not causal LMs: ``log_probs`` and
``generate`` raise ConfigError.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from lmforge.config import check_dropout, check_fraction, check_sizes, require_vocab_size
from lmforge.errors import ConfigError
from lmforge.models.family import Family
from lmforge.nn.attention import KVCache, MultiHeadAttention
from lmforge.nn.layers import FeedForward
from lmforge.nn.protocol import max_seq_len_context, no_state, num_parameters, refusal
from lmforge.tokenize import PAD_ID

__all__ = [
    "FAMILY",
    "Seq2Seq",
    "Seq2SeqConfig",
    "Seq2SeqState",
    "label_smoothed_nll",
    "seq2seq_loss",
    "sinusoidal_positions",
    "source_padding_mask",
]


@dataclass(frozen=True)
class Seq2SeqConfig:
    """Settings of an encoder-decoder Transformer.

    Args:
        vocab_size: number of tokens of the shared source/target vocabulary, set from the
            tokenizer by the caller (0 = not yet set; building a model then raises ConfigError).
        d_model: width of both stacks, even and divisible by n_heads (paper base: 512).
        n_layers: layers in the encoder and, as many, in the decoder (paper: 6).
        n_heads: attention heads per attention sub-layer (paper: 8).
        d_ff: hidden width of the feed-forward sub-layers (paper: 2048).
        max_seq_len: most tokens of a source (with its ``</s>``) and of a target (with ``<s>``
            or ``</s>``); also the longest decoded output.
        dropout: dropout in [0, 1) on embeddings, attention weights and sub-layer outputs.
        label_smoothing: epsilon of the label-smoothed training loss, in [0, 1).
        norm_first: LayerNorm at each sub-layer's input (pre-LN) instead of after the residual
            addition (post-LN, the paper's).
    """

    vocab_size: int = 0
    d_model: int = 256
    n_layers: int = 3
    n_heads: int = 4
    d_ff: int = 1024
    max_seq_len: int = 64
    dropout: float = 0.1
    label_smoothing: float = 0.1
    norm_first: bool = False

    def __post_init__(self) -> None:
        check_sizes(self, ("d_model", "n_layers", "n_heads", "d_ff", "max_seq_len"))
        if self.d_model % self.n_heads or self.d_model % 2:
            raise ConfigError(
                f"d_model must be even and divisible by n_heads, got d_model={self.d_model} and "
                f"n_heads={self.n_heads}; choose an even d_model that n_heads divides"
            )
        check_dropout(self.dropout)
        check_fraction("label_smoothing", self.label_smoothing)
        if not isinstance(self.norm_first, bool):
            raise ConfigError(f"norm_first must be true or false, got {self.norm_first!r}")


# ---------------------------------------------------------------------------------------------
# Math: positions, masks, the loss.


def sinusoidal_positions(length: int, d_model: int) -> torch.Tensor:
    """(length, d_model) sinusoidal positional encodings, Vaswani et al. 2017, section 3.5:

    PE(pos, 2i) = sin(pos / 10000^(2i / d_model)),
    PE(pos, 2i + 1) = cos(pos / 10000^(2i / d_model)).
    """
    position = torch.arange(length, dtype=torch.float64)[:, None]  # (L, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (d_model / 2,)
    angle = position / torch.pow(10000.0, two_i / d_model)  # (L, d_model / 2)
    out = torch.empty(length, d_model, dtype=torch.float64)
    out[:, 0::2] = torch.sin(angle)
    out[:, 1::2] = torch.cos(angle)
    return out.float()


def source_padding_mask(source: torch.Tensor) -> torch.Tensor:
    """(B, S) ids -> (B, 1, 1, S) boolean mask, True where a key is a real token (not PAD_ID)."""
    return (source != PAD_ID)[:, None, None, :]


def label_smoothed_nll(
    logits: torch.Tensor, targets: torch.Tensor, epsilon: float, ignore_index: int = PAD_ID
) -> torch.Tensor:
    """Mean label-smoothed cross-entropy over the targets that are not ``ignore_index``.

    Szegedy et al. 2016, section 7 (used by Vaswani et al. 2017, 5.4): the one-hot target is
    replaced by q' = (1 - eps) * onehot + eps / V, so the loss per token is
    (1 - eps) * (-log p(target)) + eps * mean_v(-log p(v)). With eps = 0 it is cross-entropy.

    Args:
        logits: (..., V) unnormalised scores.
        targets: (...) token ids.
        epsilon: smoothing in [0, 1).
        ignore_index: target id that is not scored (padding).
    """
    logp = F.log_softmax(logits.float(), dim=-1)  # (..., V)
    keep = targets != ignore_index  # (...)
    nll = -logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (...)
    smooth = -logp.mean(dim=-1)  # (...) cross-entropy against the uniform distribution
    per_token = (1.0 - epsilon) * nll + epsilon * smooth
    return per_token[keep].sum() / keep.sum().clamp(min=1)


def seq2seq_loss(
    model: nn.Module,
    source: torch.Tensor,
    target_in: torch.Tensor,
    target_out: torch.Tensor,
    epsilon: float | None = None,
) -> torch.Tensor:
    """The training loss of an encoder-decoder model on a padded batch (B, S), (B, T), (B, T):
    label-smoothed with the model's ``config.label_smoothing`` unless ``epsilon`` is given."""
    if epsilon is None:
        epsilon = model.config.label_smoothing
    return label_smoothed_nll(model(source, target_in), target_out, epsilon)


# ---------------------------------------------------------------------------------------------
# Modules.


def _attention(d_model: int, n_heads: int, dropout: float, causal: bool):
    """An attention sub-layer and the LayerNorm of its residual connection."""
    return MultiHeadAttention(d_model, n_heads, dropout, causal=causal), nn.LayerNorm(d_model)


class EncoderLayer(nn.Module):
    """Self-attention over the source, then the FFN; each in a residual with a LayerNorm."""

    def __init__(
        self, d_model: int, n_heads: int, d_ff: int, dropout: float, norm_first: bool
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn, self.ln_1 = _attention(d_model, n_heads, dropout, causal=False)
        self.ffn, self.ln_2 = FeedForward(d_model, d_ff, dropout, F.relu), nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, source_mask: torch.Tensor) -> torch.Tensor:
        """(B, S, d_model), (B, 1, 1, S) -> (B, S, d_model)."""
        if self.norm_first:
            x = x + self.self_attn(self.ln_1(x), mask=source_mask)[0]
            return x + self.ffn(self.ln_2(x))
        x = self.ln_1(x + self.self_attn(x, mask=source_mask)[0])
        return self.ln_2(x + self.ffn(x))


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention over the encoder output, then the FFN."""

    def __init__(
        self, d_model: int, n_heads: int, d_ff: int, dropout: float, norm_first: bool
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn, self.ln_1 = _attention(d_model, n_heads, dropout, causal=True)
        self.cross_attn, self.ln_2 = _attention(d_model, n_heads, dropout, causal=False)
        self.ffn, self.ln_3 = FeedForward(d_model, d_ff, dropout, F.relu), nn.LayerNorm(d_model)

    def forward(
        self,
        y: torch.Tensor,
        memory: torch.Tensor,
        source_mask: torch.Tensor,
        self_cache: KVCache | None = None,
        cross_cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, KVCache, KVCache]:
        """(B, T, d_model) decoder states, (B, S, d_model) memory, (B, 1, 1, S) mask ->
        (B, T, d_model), and the self- and cross-attention caches to decode on with."""
        if self.norm_first:
            attended, self_cache = self.self_attn(self.ln_1(y), self_cache)
            y = y + attended
            attended, cross_cache = self.cross_attn(
                self.ln_2(y), cross_cache, mask=source_mask, memory=memory
            )
            y = y + attended
            return y + self.ffn(self.ln_3(y)), self_cache, cross_cache
        attended, self_cache = self.self_attn(y, self_cache)
        y = self.ln_1(y + attended)
        attended, cross_cache = self.cross_attn(y, cross_cache, mask=source_mask, memory=memory)
        y = self.ln_2(y + attended)
        return self.ln_3(y + self.ffn(y)), self_cache, cross_cache


@dataclass(frozen=True)
class Seq2SeqState:
    """What ``Seq2Seq.decode_step`` carries from one step to the next.

    Attributes:
        memory: (B, S, d_model) the encoder's output.
        source_mask: (B, 1, 1, S) True at real source tokens.
        self_caches: per decoder layer, the keys and values of the tokens decoded so far.
        cross_caches: per decoder layer, the memory's keys and values (None before the first
            step computes them).
    """

    memory: torch.Tensor
    source_mask: torch.Tensor
    self_caches: list[KVCache]
    cross_caches: list[KVCache] | None

    @property
    def length(self) -> int:
        """Number of target tokens decoded so far (the position of the next one)."""
        return self.self_caches[0].length


def _select(cache: KVCache, index: torch.Tensor) -> KVCache:
    """The cache's rows ``index`` (B',), copied (beams branch)."""
    keys = cache.key_buffer.index_select(0, index)
    return KVCache(keys, cache.value_buffer.index_select(0, index), cache.length)


# ---------------------------------------------------------------------------------------------
# The model.


class Seq2Seq(nn.Module):
    """Encoder-decoder Transformer with one tied embedding (see the module docstring)."""

    recurrent = False

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.config = c = require_vocab_size(config)
        self.embedding = nn.Embedding(c.vocab_size, c.d_model)
        self.register_buffer(
            "positions", sinusoidal_positions(c.max_seq_len, c.d_model), persistent=False
        )
        self.emb_dropout = nn.Dropout(c.dropout)
        layer_args = (c.d_model, c.n_heads, c.d_ff, c.dropout, c.norm_first)
        self.encoder = nn.ModuleList(EncoderLayer(*layer_args) for _ in range(c.n_layers))
        self.decoder = nn.ModuleList(DecoderLayer(*layer_args) for _ in range(c.n_layers))
        # Pre-LN stacks end with a LayerNorm (their last residual sum is not normalised).
        self.encoder_ln = nn.LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        self.decoder_ln = nn.LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        """Xavier-uniform linear weights, zero biases (as tensor2tensor); embedding N(0, 1/d_model)
        so that the sqrt(d_model)-scaled inputs have unit variance."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.embedding.weight, mean=0.0, std=self.config.d_model**-0.5)

    # The parts of the family protocol that several families share (lmforge.nn.protocol).
    context_size = max_seq_len_context
    init_state = no_state
    num_parameters = num_parameters

    def _embed(self, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        """(B, T) ids at positions start.. -> (B, T, d_model) sqrt(d_model) E[ids] + PE."""
        end = start + ids.shape[1]
        if end > self.config.max_seq_len:
            raise ConfigError(
                f"a seq2seq model with max_seq_len={self.config.max_seq_len} cannot read "
                f"{end} tokens; shorten the sequence or train with a larger max_seq_len"
            )
        x = self.embedding(ids) * math.sqrt(self.config.d_model) + self.positions[start:end]
        return self.emb_dropout(x)

    def encode(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) padded source ids -> (B, S, d_model) memory and its (B, 1, 1, S) mask."""
        mask = source_padding_mask(source)
        x = self._embed(source)
        for layer in self.encoder:
            x = layer(x, mask)
        return self.encoder_ln(x), mask

    def forward(self, source: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
        """(B, S) source, (B, T) target inputs (``<s>`` + target) -> (B, T, V) logits of the
        next target token at every position (teacher forcing)."""
        memory, mask = self.encode(source)
        y = self._embed(target_in)
        for layer in self.decoder:
            y, _, _ = layer(y, memory, mask)
        return self.decoder_ln(y) @ self.embedding.weight.T  # (B, T, V)

    def start_decoding(self, source: torch.Tensor) -> Seq2SeqState:
        """Encode (B, S) sources and make empty decoder caches for up to max_seq_len tokens."""
        memory, mask = self.encode(source)
        c = self.config
        head_dim = c.d_model // c.n_heads
        caches = [
            KVCache.empty(source.shape[0], c.n_heads, head_dim, c.max_seq_len, memory)
            for _ in self.decoder
        ]
        return Seq2SeqState(memory, mask, caches, None)

    def decode_step(
        self, tokens: torch.Tensor, state: Seq2SeqState
    ) -> tuple[torch.Tensor, Seq2SeqState]:
        """(B,) the newest target tokens -> (B, V) log-probabilities of the next, and the state."""
        y = self._embed(tokens[:, None], start=state.length)  # (B, 1, d_model)
        self_caches, cross_caches = [], []
        for i, layer in enumerate(self.decoder):
            cross = None if state.cross_caches is None else state.cross_caches[i]
            y, self_cache, cross = layer(
                y, state.memory, state.source_mask, state.self_caches[i], cross
            )
            self_caches.append(self_cache)
            cross_caches.append(cross)
        logits = self.decoder_ln(y[:, 0]) @ self.embedding.weight.T  # (B, V)
        new_state = Seq2SeqState(state.memory, state.source_mask, self_caches, cross_caches)
        return F.log_softmax(logits.float(), dim=-1), new_state

    def reorder_state(self, state: Seq2SeqState, index: torch.Tensor) -> Seq2SeqState:
        """The state of rows ``index`` (B',) of the batch, for beam search."""
        cross = state.cross_caches
        cross = None if cross is None else [_select(c, index) for c in cross]
        return Seq2SeqState(
            state.memory.index_select(0, index),
            state.source_mask.index_select(0, index),
            [_select(c, index) for c in state.self_caches],
            cross,
        )

    log_probs = generate = refusal(
        "a seq2seq model is an encoder-decoder, not a causal LM: it has no perplexity over a "
        "token stream and decodes a target from a source; score pairs with "
        "lmforge.train.tasks.PairsTask, decode with lmforge.nn.decoding.greedy_decode / "
        "beam_search or `lmforge generate MODEL --prompt SOURCE --beam 4`"
    )


FAMILY = Family(
    name="seq2seq",
    config_class=Seq2SeqConfig,
    model_class=Seq2Seq,
    summary="encoder-decoder Transformer (Vaswani et al. 2017): post-LN, sinusoidal positions, "
    "label smoothing, beam search; trained on (source, target) pairs",
    task="pairs",
)
