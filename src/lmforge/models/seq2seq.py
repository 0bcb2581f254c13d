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
greedily (``greedy_decode``) or by beam search with the length penalty of Wu et al. 2016
(``beam_search``; the paper used beam 4, alpha 0.6), through the decoder's KV cache; every
decoder can block repeated n-grams of its output or of the source (``Blocking``).

Simplified compared with the paper: one shared vocabulary and tokenizer for source and target (the
paper shared a BPE vocabulary for English-German too); the Trainer's AdamW and warmup + cosine
schedule instead of the inverse-square-root one; no checkpoint averaging. ``norm_first`` moves the
LayerNorms to the input of each sub-layer with a final LayerNorm per stack ("pre-LN", Xiong et al.
2020), which trains more easily without a long warmup.

Encoder-decoder protocol (also followed by ``rnn_seq2seq``; the Family has ``seq2seq=True``):
``forward(source, target_in) -> logits`` (B, S), (B, T) -> (B, T, V) with ``PAD_ID`` padding;
``start_decoding(source) -> state``; ``decode_step(tokens, state) -> (log_probs, state)`` with
tokens (B,) and log-probs (B, V); ``reorder_state(state, index)`` for beam search. Such models are
not causal LMs: ``log_probs`` and ``generate`` raise ConfigError.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from lmforge.config import check_dropout, check_int, require_vocab_size
from lmforge.errors import ConfigError
from lmforge.models.family import Family
from lmforge.nn.attention import KVCache, MultiHeadAttention
from lmforge.tokenize import BOS_ID, EOS_ID, PAD_ID

__all__ = [
    "FAMILY",
    "Blocking",
    "Seq2Seq",
    "Seq2SeqConfig",
    "Seq2SeqState",
    "banned_tokens",
    "beam_search",
    "greedy_decode",
    "label_smoothed_nll",
    "length_penalty",
    "mbr_decode",
    "mbr_select",
    "sample_decode",
    "sentence_bleu",
    "seq2seq_loss",
    "sinusoidal_positions",
    "source_padding_mask",
    "source_tokens",
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
        check_int("vocab_size", self.vocab_size, 0, " (0 = set from the tokenizer)")
        for name in ("d_model", "n_layers", "n_heads", "d_ff", "max_seq_len"):
            check_int(name, getattr(self, name), 1)
        if self.d_model % self.n_heads or self.d_model % 2:
            raise ConfigError(
                f"d_model must be even and divisible by n_heads, got d_model={self.d_model} and "
                f"n_heads={self.n_heads}; choose an even d_model that n_heads divides"
            )
        check_dropout(self.dropout)
        smoothing = self.label_smoothing
        if isinstance(smoothing, bool) or not isinstance(smoothing, int | float):
            raise ConfigError(f"label_smoothing must be a number in [0, 1), got {smoothing!r}")
        if not 0.0 <= smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be a number in [0, 1), got {smoothing!r}")
        if not isinstance(self.norm_first, bool):
            raise ConfigError(f"norm_first must be true or false, got {self.norm_first!r}")


# ---------------------------------------------------------------------------------------------
# Math: positions, masks, the loss, the length penalty.


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


def length_penalty(length: int, alpha: float) -> float:
    """lp(Y) = ((5 + |Y|) / 6)^alpha, Wu et al. 2016 (GNMT), eq. 14; 1 when alpha = 0."""
    return ((5.0 + length) / 6.0) ** alpha


def _ngram_counts(ids: Sequence[int], max_order: int) -> Counter:
    """Counts of the 1- to max_order-grams of ``ids`` (tuples)."""
    return Counter(
        tuple(ids[i : i + n]) for n in range(1, max_order + 1) for i in range(len(ids) - n + 1)
    )


def sentence_bleu(hypothesis: Sequence[int], reference: Sequence[int], max_order: int = 4) -> float:
    """BLEU of one hypothesis against one reference, in [0, 1], with add-one smoothing of the
    2- to max_order-gram precisions ("BLEU+1", Lin & Och 2004) so that a short sentence without
    a 4-gram match still scores above 0:

        BLEU = BP * exp(mean_n log p_n),  p_1 = m_1 / h_1,  p_n = (m_n + 1) / (h_n + 1) for n > 1,
        BP = min(1, exp(1 - |ref| / |hyp|)),

    m_n: n-grams of the hypothesis also in the reference (clipped), h_n: its n-grams.
    """
    return _bleu_of_counts(
        _ngram_counts(hypothesis, max_order),
        len(hypothesis),
        _ngram_counts(reference, max_order),
        len(reference),
        max_order,
    )


def _bleu_of_counts(hyp: Counter, hyp_len: int, ref: Counter, ref_len: int, max_order: int):
    if hyp_len == 0:
        return 0.0
    matches, totals = [0] * max_order, [0] * max_order
    for gram, count in hyp.items():
        n = len(gram) - 1
        totals[n] += count
        matches[n] += min(count, ref.get(gram, 0))
    if matches[0] == 0:
        return 0.0
    log_p = math.log(matches[0] / totals[0])
    log_p += sum(math.log((matches[n] + 1) / (totals[n] + 1)) for n in range(1, max_order))
    brevity = min(0.0, 1.0 - ref_len / hyp_len)
    return math.exp(brevity + log_p / max_order)


def mbr_select(samples: Sequence[Sequence[int]], max_order: int = 4) -> list[int]:
    """Minimum-Bayes-risk choice among samples of a model (Kumar & Byrne 2004; Eikema & Aziz
    2020): the sample with the highest expected ``sentence_bleu`` when the reference is drawn
    from the model, estimated with the samples themselves as pseudo-references:

        y* = argmax_{h in samples} (1 / N) sum_j BLEU(h, s_j).

    Unlike the mode (beam search), this favours what the samples agree on, so a model whose
    distribution is right but flat is not pushed to its most generic output. Ties go to the
    first sample.
    """
    if not samples:
        return []
    unique = Counter(tuple(s) for s in samples)  # duplicates: one candidate, counted as weight
    counts = {h: _ngram_counts(h, max_order) for h in unique}
    best, best_score = None, -1.0
    for h in unique:
        score = sum(
            weight * _bleu_of_counts(counts[h], len(h), counts[r], len(r), max_order)
            for r, weight in unique.items()
        )
        if score > best_score:
            best, best_score = h, score
    return list(best)


# ---------------------------------------------------------------------------------------------
# Modules.


class FeedForward(nn.Module):
    """FFN(x) = W_2 ReLU(W_1 x + b_1) + b_2 (eq. 2), dropout on the output."""

    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.fc = nn.Linear(d_model, d_ff)
        self.proj = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.relu(self.fc(x))))  # (B, T, d_model)


class EncoderLayer(nn.Module):
    """Self-attention over the source, then the FFN; each in a residual with a LayerNorm."""

    def __init__(
        self, d_model: int, n_heads: int, d_ff: int, dropout: float, norm_first: bool
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout, causal=False)
        self.ln_1 = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, d_ff, dropout)
        self.ln_2 = nn.LayerNorm(d_model)

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
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout, causal=True)
        self.ln_1 = nn.LayerNorm(d_model)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout, causal=False)
        self.ln_2 = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, d_ff, dropout)
        self.ln_3 = nn.LayerNorm(d_model)

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
    """Encoder-decoder Transformer with one tied embedding (see the module docstring).

    Raises:
        ConfigError: ``config.vocab_size`` is still 0.
    """

    recurrent = False

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        require_vocab_size(config)
        self.config = c = config
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

    @property
    def context_size(self) -> int:
        return self.config.max_seq_len

    def init_state(self, batch_size: int, device: torch.device | str | None = None) -> None:
        return None

    def num_parameters(self) -> int:
        """Number of parameters (the one embedding counted once)."""
        return sum(p.numel() for p in self.parameters())

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

    def log_probs(self, inputs, targets, state=None):
        raise ConfigError(
            "a seq2seq model is an encoder-decoder, not a causal LM: it has no perplexity over a "
            "token stream; score pairs with lmforge.data.pairs.PairsTask or decode with "
            "`lmforge generate MODEL --prompt SOURCE --beam 4`"
        )

    def generate(self, prompt_ids, max_new_tokens, sampler=None, eos_id=None):
        raise ConfigError(
            "a seq2seq model decodes a target from a source: use "
            "lmforge.models.seq2seq.greedy_decode / beam_search, or "
            "`lmforge generate MODEL --prompt SOURCE --beam 4`"
        )


# ---------------------------------------------------------------------------------------------
# Decoding: any model of the encoder-decoder protocol (seq2seq, rnn_seq2seq).


def banned_tokens(prefix: Sequence[int], n: int, within: Sequence[int] | None = None) -> set[int]:
    """Tokens that, appended to ``prefix``, would repeat an n-gram of ``within`` (by default of
    the prefix itself): the n-gram blocking of Hugging Face's ``no_repeat_ngram_size`` (and,
    with ``within`` the source, ``encoder_no_repeat_ngram_size``). n = 1 bans every token seen;
    n = 0 bans nothing. ``</s>`` is never banned, so a hypothesis can always end."""
    if n < 1 or len(prefix) < n - 1:
        return set()
    seen = list(prefix if within is None else within)
    tail = list(prefix[len(prefix) - n + 1 :])  # the last n - 1 tokens ([] for n = 1)
    out = {seen[i + n - 1] for i in range(len(seen) - n + 1) if seen[i : i + n - 1] == tail}
    out.discard(EOS_ID)
    return out


@dataclass(frozen=True)
class Blocking:
    """Repeats a decoder may not write (``banned_tokens``): ``no_repeat_ngram`` n-grams of its
    own output, ``source_no_repeat_ngram`` n-grams of the source (0 = allowed)."""

    no_repeat_ngram: int = 0
    source_no_repeat_ngram: int = 0

    def __post_init__(self) -> None:
        check_int("no_repeat_ngram", self.no_repeat_ngram, 0)
        check_int("source_no_repeat_ngram", self.source_no_repeat_ngram, 0)

    def __bool__(self) -> bool:
        return bool(self.no_repeat_ngram or self.source_no_repeat_ngram)

    def apply(
        self, logp: torch.Tensor, prefixes: Sequence[Sequence[int]], sources: Sequence[list[int]]
    ) -> torch.Tensor:
        """(rows, V) log-probabilities with -inf at each row's banned next tokens (row r has
        written ``prefixes[r]`` for source ``sources[r]``)."""
        if not self:
            return logp
        rows, cols = [], []
        for r, prefix in enumerate(prefixes):
            banned = banned_tokens(prefix, self.no_repeat_ngram)
            banned |= banned_tokens(prefix, self.source_no_repeat_ngram, sources[r])
            rows += [r] * len(banned)
            cols += sorted(banned)
        if not rows:
            return logp
        index = (torch.tensor(rows, device=logp.device), torch.tensor(cols, device=logp.device))
        return logp.index_put(index, torch.tensor(-math.inf, device=logp.device))


def source_tokens(source: torch.Tensor) -> list[list[int]]:
    """(B, S) padded source ids -> per row its tokens without padding and markers."""
    return [[t for t in row if t not in (PAD_ID, BOS_ID, EOS_ID)] for row in source.tolist()]


@torch.no_grad()
def greedy_decode(
    model: nn.Module,
    source: torch.Tensor,
    max_len: int | None = None,
    blocking: Blocking = Blocking(),
) -> list[list[int]]:
    """The most likely next token at every step (of those ``blocking`` allows), for (B, S)
    padded sources.

    Returns:
        per source, the target ids without ``<s>`` and ``</s>``, after at most ``max_len`` steps
        (and at most the model's ``max_seq_len``).
    """
    return _decode_rows(model, source, max_len, lambda logp: logp.argmax(dim=-1), blocking)


def _decode_rows(
    model: nn.Module, source: torch.Tensor, max_len: int | None, choose, blocking: Blocking
):
    """One target per row of (B, S) sources, token by token: ``choose`` maps the (B, V)
    log-probabilities (-inf where ``blocking`` bans a token) to the (B,) next tokens; rows that
    ended keep ``</s>``. Returns per row the ids without ``<s>`` and ``</s>``, after at most
    ``max_len`` (and ``max_seq_len``) steps."""
    max_len = min(max_len or math.inf, model.config.max_seq_len)  # positions it can read
    state = model.start_decoding(source)
    tokens = torch.full((source.shape[0],), BOS_ID, dtype=torch.long, device=source.device)
    done = torch.zeros_like(tokens, dtype=torch.bool)
    sources = source_tokens(source) if blocking else []
    out: list[list[int]] = [[] for _ in range(source.shape[0])]
    for _ in range(max_len):
        logp, state = model.decode_step(tokens, state)
        tokens = choose(blocking.apply(logp, out, sources)).masked_fill(done, EOS_ID)  # (B,)
        for row, token in zip(out, tokens.tolist(), strict=True):
            if token != EOS_ID:  # a row that ended draws only </s> from here on
                row.append(token)
        done |= tokens == EOS_ID
        if bool(done.all()):
            break
    return out


@torch.no_grad()
def beam_search(
    model: nn.Module,
    source: torch.Tensor,
    beam_size: int = 4,
    max_len: int | None = None,
    alpha: float = 0.6,
    blocking: Blocking = Blocking(),
) -> list[list[int]]:
    """Beam search (Sutskever et al. 2014; Wu et al. 2016's length penalty) for (B, S) sources.

    Every source keeps ``beam_size`` live hypotheses; at each step the best ``2 * beam_size``
    extensions are ranked, an extension by ``</s>`` among the first ``beam_size`` finishes a
    hypothesis, scored log p(Y) / lp(|Y|) (``length_penalty``, |Y| counting ``</s>``), and the best
    non-final ones live on. A source is done when ``beam_size`` hypotheses have finished (or at
    ``max_len``, when the live ones are scored as they are). With beam_size 1 this is greedy.
    Extensions ``blocking`` bans are never taken.

    Returns:
        per source, the best target's ids without ``<s>`` and ``</s>``.
    """
    if beam_size < 1:
        raise ConfigError(f"beam_size must be an integer >= 1, got {beam_size!r}")
    max_len = min(max_len or math.inf, model.config.max_seq_len)  # positions it can read
    batch, k = source.shape[0], beam_size
    state = model.start_decoding(source.repeat_interleave(k, dim=0))  # rows b * k + j
    tokens = torch.full((batch * k,), BOS_ID, dtype=torch.long, device=source.device)
    scores = torch.full((batch, k), -math.inf, device=source.device)
    scores[:, 0] = 0.0  # the k beams start identical: expand only the first
    prefixes: list[list[list[int]]] = [[[] for _ in range(k)] for _ in range(batch)]
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    sources = [row for row in source_tokens(source) for _ in range(k)] if blocking else []
    for step in range(max_len):
        logp, state = model.decode_step(tokens, state)  # (B * k, V)
        logp = blocking.apply(logp, [p for beams in prefixes for p in beams], sources)
        vocab = logp.shape[-1]
        total = (scores.reshape(-1, 1) + logp.float()).view(batch, k * vocab)
        top_scores, top_index = total.topk(min(2 * k, k * vocab), dim=1)  # (B, 2k)
        top_scores, top_index = top_scores.tolist(), top_index.tolist()
        rows, next_tokens, next_scores = [], [], []
        for b in range(batch):
            alive: list[tuple[int, int, float]] = []  # (beam, token, score)
            if len(finished[b]) < k:
                for rank, (score, flat) in enumerate(zip(top_scores[b], top_index[b], strict=True)):
                    beam, token = divmod(flat, vocab)
                    if score == -math.inf or len(alive) == k:
                        break
                    if token == EOS_ID:
                        if rank < k:
                            penalty = length_penalty(step + 1, alpha)
                            finished[b].append((score / penalty, prefixes[b][beam]))
                    else:
                        alive.append((beam, token, score))
            alive += [(0, PAD_ID, -math.inf)] * (k - len(alive))  # a done source: idle rows
            prefixes[b] = [prefixes[b][beam] + [token] for beam, token, _ in alive]
            rows += [b * k + beam for beam, _, _ in alive]
            next_tokens += [token for _, token, _ in alive]
            next_scores.append([score for _, _, score in alive])
        if all(len(f) >= k for f in finished):
            break
        index = torch.tensor(rows, device=source.device)
        state = model.reorder_state(state, index)
        tokens = torch.tensor(next_tokens, device=source.device)
        scores = torch.tensor(next_scores, device=source.device)
    best = []
    for b in range(batch):
        candidates = list(finished[b])
        if len(candidates) < k:  # ran out of steps: score the live hypotheses as they are
            live = scores[b].tolist()
            candidates += [
                (s / length_penalty(len(p), alpha), p)
                for s, p in zip(live, prefixes[b], strict=True)
                if s > -math.inf
            ]
        best.append(max(candidates, key=lambda c: c[0])[1] if candidates else [])
    return best


@torch.no_grad()
def sample_decode(
    model: nn.Module,
    source: torch.Tensor,
    num_samples: int,
    max_len: int | None = None,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    blocking: Blocking = Blocking(),
) -> list[list[list[int]]]:
    """``num_samples`` ancestral samples of a target for each of (B, S) padded sources: every
    token drawn from the model's next-token distribution (its log-probabilities / temperature),
    renormalised over the tokens ``blocking`` allows.

    Returns:
        per source, ``num_samples`` lists of target ids without ``<s>`` and ``</s>``.
    """
    if num_samples < 1 or temperature <= 0:
        raise ConfigError(
            f"sampling needs num_samples >= 1 and temperature > 0, got {num_samples!r} and "
            f"{temperature!r}"
        )

    def draw(logp: torch.Tensor) -> torch.Tensor:
        # Inverse-CDF sampling: one uniform per row (torch.multinomial, or Gumbel noise over the
        # whole vocabulary, spends most of the decoding time drawing random numbers on a CPU).
        cdf = torch.softmax(logp / temperature, dim=-1).cumsum(dim=-1)  # (rows, V)
        u = torch.rand(cdf.shape[0], 1, generator=generator, device=cdf.device) * cdf[:, -1:]
        return torch.searchsorted(cdf, u)[:, 0].clamp(max=cdf.shape[1] - 1)

    many = source.repeat_interleave(num_samples, dim=0)
    rows = _decode_rows(model, many, max_len, draw, blocking)
    return [rows[b * num_samples : (b + 1) * num_samples] for b in range(source.shape[0])]


def mbr_decode(
    model: nn.Module,
    source: torch.Tensor,
    num_samples: int = 32,
    max_len: int | None = None,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
    blocking: Blocking = Blocking(),
) -> list[list[int]]:
    """Sampling-based minimum-Bayes-risk decoding: ``num_samples`` samples per source
    (``sample_decode`` at ``temperature``, with ``blocking``), the one with the highest expected
    BLEU against the others (``mbr_select``). Returns per source the chosen target's ids."""
    samples = sample_decode(model, source, num_samples, max_len, temperature, generator, blocking)
    return [mbr_select(per_source) for per_source in samples]


FAMILY = Family(
    name="seq2seq",
    config_class=Seq2SeqConfig,
    model_class=Seq2Seq,
    fitting="trainer",
    summary="encoder-decoder Transformer (Vaswani et al. 2017): post-LN, sinusoidal positions, "
    "label smoothing, beam search; trained on (source, target) pairs",
    causal=False,
    seq2seq=True,
)
