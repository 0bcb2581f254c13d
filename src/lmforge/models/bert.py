"""Bidirectional Transformer encoder with masked-LM and next-sentence heads (BERT).

Paper: Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers for Language
Understanding" (NAACL 2019). The encoder of Vaswani et al. (2017) with post-LayerNorm blocks,
every position attending to every other (no causal mask; padding is masked), and three learned
embeddings summed at the input (section 3.2, figure 2):

    h_0 = Dropout(LN(E[ids] + P[positions] + S[segments]))
    a_l = LN(h_{l-1} + Attn(h_{l-1}; padding mask))          (post-LN, Vaswani et al. 2017)
    h_l = LN(a_l + W_2 GELU(W_1 a_l))                         (exact GELU, width d_ff)
    pooled = tanh(W_p h_L[:, 0])                              (the [CLS] vector)
    mlm_logits = LN(GELU(W_t h_L)) E^T + b                    (masked LM, tied to E; section 3.1)
    nsp_logits = W_n pooled                                   (next sentence prediction)

The parameters and the arithmetic are those of Hugging Face's ``BertForPreTraining`` (LayerNorm
eps from the config, 1e-12 by default), so real checkpoints load through ``lmforge.hub.hf`` and
give the same vectors. Simplified: one dropout probability for embeddings, attention weights and
residuals (BERT's hidden and attention dropouts are both 0.1), absolute positions only, no
decoder variant. BERT is a masked LM: it does not answer ``log_probs``/``generate``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from lmforge.config import check_dropout, check_sizes, require_vocab_size
from lmforge.errors import ConfigError
from lmforge.models.family import Adaptation, Family
from lmforge.nn.attention import MultiHeadAttention, check_heads
from lmforge.nn.layers import FeedForward, init_normal
from lmforge.nn.protocol import max_seq_len_context, no_state, num_parameters, refusal

__all__ = [
    "BERT",
    "BertConfig",
    "BertOutput",
    "FAMILY",
    "key_padding_mask",
    "l2_normalize",
    "mean_pool",
    "pretraining_loss",
    "pseudo_log_likelihood",
]


@dataclass(frozen=True)
class BertConfig:
    """Settings of a BERT encoder (defaults: a small model for CPU pretraining).

    Args:
        vocab_size: number of tokens, set from the tokenizer by the caller (0 = not yet set;
            building a model then raises ConfigError).
        d_model: hidden width, divisible by n_heads (BERT-base: 768).
        n_layers: number of encoder blocks, >= 1 (BERT-base: 12).
        n_heads: attention heads per block, >= 1 (BERT-base: 12).
        d_ff: hidden width of the feed-forward network, >= 1 (BERT-base: 3072).
        max_seq_len: number of learned positions, the longest input, >= 1 (BERT: 512).
        dropout: dropout probability in [0, 1) on embeddings, attention weights and residuals.
        type_vocab_size: number of segment (token type) embeddings, >= 1 (BERT: 2, A and B).
        layer_norm_eps: epsilon of every LayerNorm, > 0 (BERT: 1e-12).
    """

    vocab_size: int = 0
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 1024
    max_seq_len: int = 128
    dropout: float = 0.1
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    def __post_init__(self) -> None:
        check_sizes(
            self, ("d_model", "n_layers", "n_heads", "d_ff", "max_seq_len", "type_vocab_size")
        )
        check_heads(self.d_model, self.n_heads)
        check_dropout(self.dropout)
        eps = self.layer_norm_eps
        if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0 < eps < 1:
            raise ConfigError(f"layer_norm_eps must be a number in (0, 1), got {eps!r}")

    @property
    def head_dim(self) -> int:
        """Width of one attention head, d_model / n_heads."""
        return self.d_model // self.n_heads


# ---------------------------------------------------------------------------------------------
# Pure functions.


def key_padding_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, T) 1/True for real tokens -> (B, 1, 1, T) boolean attention mask (True = may attend),
    or None when there is no padding (the fused kernel is then fastest)."""
    if attention_mask is None:
        return None
    keep = attention_mask.bool()
    if bool(keep.all()):
        return None
    return keep[:, None, None, :]


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the hidden vectors of the real tokens (Reimers & Gurevych 2019, Sentence-BERT).

    Args:
        hidden: (B, T, d) hidden vectors.
        attention_mask: (B, T) 1/True for real tokens, 0/False for padding.

    Returns:
        (B, d) the average over real positions (a row without any gives zeros).
    """
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    total = (hidden * weights).sum(dim=1)  # (B, d)
    return total / weights.sum(dim=1).clamp(min=1e-9)


def l2_normalize(vectors: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """(..., d) -> (..., d) each vector divided by its Euclidean norm (at least eps)."""
    return F.normalize(vectors, p=2.0, dim=-1, eps=eps)


# ---------------------------------------------------------------------------------------------
# Modules.


class EncoderBlock(nn.Module):
    """One post-LN encoder block: x = LN(x + Attn(x)), then x = LN(x + FFN(x)), the FFN a
    ``FeedForward`` with exact GELU (BERT's "intermediate" and "output" dense layers)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float, eps: float) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(d_model, n_heads, dropout, bias=True, causal=False)
        self.ln_1 = nn.LayerNorm(d_model, eps=eps)
        self.mlp = FeedForward(d_model, d_ff, dropout, F.gelu)
        self.ln_2 = nn.LayerNorm(d_model, eps=eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """(B, T, d_model), mask broadcastable to (B, H, T, T) or None -> (B, T, d_model)."""
        attended, _ = self.attn(x, mask=mask)
        x = self.ln_1(x + attended)
        return self.ln_2(x + self.mlp(x))


class MaskedLMHead(nn.Module):
    """BERT's MLM head: dense -> GELU -> LayerNorm, then the word embeddings transposed plus a
    per-token bias (the decoder weight is the embedding's, Press & Wolf 2017)."""

    def __init__(self, d_model: int, vocab_size: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)
        self.ln = nn.LayerNorm(d_model, eps=eps)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, hidden: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """(..., d_model), the (vocab_size, d_model) word embedding -> (..., vocab_size)."""
        x = self.ln(F.gelu(self.dense(hidden)))
        return F.linear(x, embedding, self.bias)


@dataclass(frozen=True)
class BertOutput:
    """What ``BERT.forward`` returns.

    Attributes:
        hidden: (B, T, d_model) the last block's output.
        pooled: (B, d_model) tanh(W_p hidden[:, 0]), the [CLS] summary.
        nsp_logits: (B, 2) next-sentence logits (index 0: B follows A, as in BERT).
        mlm_logits: (B, T, vocab_size) masked-LM logits, or None when not asked for.
    """

    hidden: torch.Tensor
    pooled: torch.Tensor
    nsp_logits: torch.Tensor
    mlm_logits: torch.Tensor | None


# ---------------------------------------------------------------------------------------------
# The model.


_NOT_CAUSAL = (
    "BERT is a masked LM: it sees both sides of every token, so it has no {what}; use it to "
    "fill masks or embed sentences (lmforge embed), and measure it by pseudo-perplexity"
)


class BERT(nn.Module):
    """BERT encoder with MLM and NSP heads. A family of the registry, but a masked LM: it has
    ``recurrent``, ``context_size``, ``init_state`` and ``num_parameters`` like the causal
    families; ``log_probs``, ``step`` and ``generate`` raise ConfigError."""

    recurrent = False

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = c = require_vocab_size(config)
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.pos_emb = nn.Embedding(c.max_seq_len, c.d_model)
        self.seg_emb = nn.Embedding(c.type_vocab_size, c.d_model)
        self.emb_ln = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps)
        self.emb_dropout = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            EncoderBlock(c.d_model, c.n_heads, c.d_ff, c.dropout, c.layer_norm_eps)
            for _ in range(c.n_layers)
        )
        self.pooler = nn.Linear(c.d_model, c.d_model)
        self.mlm_head = MaskedLMHead(c.d_model, c.vocab_size, c.layer_norm_eps)
        self.nsp_head = nn.Linear(c.d_model, 2)
        init_normal(self, std=0.02)  # BERT's: N(0, 0.02) weights, zero biases, LayerNorms 1, 0

    # The parts of the family protocol that several families share (lmforge.nn.protocol).
    context_size = max_seq_len_context
    init_state = no_state
    num_parameters = num_parameters

    def encode(
        self,
        ids: torch.Tensor,
        segment_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The last block's hidden vectors.

        Args:
            ids: (B, T) token ids, T <= max_seq_len, padded on the right.
            segment_ids: (B, T) segment (token type) ids, default all 0 (sentence A).
            attention_mask: (B, T) 1/True for real tokens, 0/False for padding; default all real.

        Returns:
            (B, T, d_model); vectors at padded positions are computed but meaningless.
        """
        length = ids.shape[1]
        if length > self.config.max_seq_len:
            raise ConfigError(
                f"a BERT with max_seq_len={self.config.max_seq_len} cannot read {length} tokens "
                "at once; truncate the input to max_seq_len tokens"
            )
        segments = self.seg_emb.weight[0] if segment_ids is None else self.seg_emb(segment_ids)
        x = self.tok_emb(ids) + segments + self.pos_emb.weight[:length]  # (B, T, d_model)
        x = self.emb_ln(x)
        if self.training:
            x = self.emb_dropout(x)
        mask = key_padding_mask(attention_mask)  # (B, 1, 1, T) or None
        for block in self.blocks:
            x = block(x, mask)
        return x

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, T, d_model) -> (B, d_model) tanh(W_p hidden[:, 0]), BERT's pooler."""
        return torch.tanh(self.pooler(hidden[:, 0]))

    def mlm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., d_model) -> (..., vocab_size) masked-LM logits (decoder tied to tok_emb)."""
        return self.mlm_head(hidden, self.tok_emb.weight)

    def forward(
        self,
        ids: torch.Tensor,
        segment_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        mlm: bool = True,
    ) -> BertOutput:
        """Encode and apply the heads; ``mlm=False`` skips the (B, T, vocab_size) MLM logits
        (for pretraining, apply ``mlm_logits`` to the masked positions' hidden vectors only)."""
        hidden = self.encode(ids, segment_ids, attention_mask)
        pooled = self.pool(hidden)
        mlm_logits = self.mlm_logits(hidden) if mlm else None
        return BertOutput(hidden, pooled, self.nsp_head(pooled), mlm_logits)

    log_probs = refusal(_NOT_CAUSAL.format(what="left-to-right log-probabilities"))
    step = generate = refusal(_NOT_CAUSAL.format(what="generation"))


# ---------------------------------------------------------------------------------------------
# Losses and scores.


def pretraining_loss(
    model: BERT,
    ids: torch.Tensor,
    segment_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    mlm_labels: torch.Tensor,
    nsp_labels: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BERT's pretraining loss (Devlin et al. 2019, appendix A.2): the mean masked-LM
    cross-entropy over the chosen positions plus the mean next-sentence cross-entropy.

    Args:
        model: the BERT.
        ids, segment_ids, attention_mask: (B, T) inputs (``lmforge.train.tasks.MLMTask`` batches).
        mlm_labels: (B, T) original ids at the chosen positions, negative (-100) elsewhere.
        nsp_labels: (B,) 0 where B follows A, 1 where B is a random sentence.

    Returns:
        (total, mlm, nsp) scalar losses in nats; mlm is 0 when no position is chosen.
    """
    hidden = model.encode(ids, segment_ids, attention_mask)  # (B, T, d_model)
    chosen = mlm_labels >= 0  # (B, T)
    logits = model.mlm_logits(hidden[chosen]).float()  # (M, V): the chosen positions only
    mlm_sum = F.cross_entropy(logits, mlm_labels[chosen], reduction="sum")
    mlm = mlm_sum / chosen.sum().clamp(min=1)
    nsp = F.cross_entropy(model.nsp_head(model.pool(hidden)).float(), nsp_labels)
    return mlm + nsp, mlm, nsp


@torch.no_grad()
def pseudo_log_likelihood(
    model: BERT, ids: torch.Tensor, positions: torch.Tensor, mask_id: int, batch_size: int = 64
) -> torch.Tensor:
    """log P(w_t | W without w_t) for each scored position t: the terms of the pseudo-log-
    likelihood PLL(W) = sum_t log P_MLM(w_t | W_{-t}) (Salazar et al. 2020, "Masked Language Model
    Scoring", section 2). Each copy of the sentence masks one position; copies go in batches.

    Args:
        model: the BERT (its mode is left as it is: call ``model.eval()`` first).
        ids: (T,) one sentence with its markers.
        positions: (n,) the positions to score (not the markers).
        mask_id: the [MASK] id.
        batch_size: copies per forward pass.

    Returns:
        (n,) natural-log probabilities of the true tokens.
    """
    out = []
    for start in range(0, len(positions), batch_size):
        chunk = positions[start : start + batch_size]  # (b,)
        rows = torch.arange(len(chunk), device=ids.device)
        copies = ids.repeat(len(chunk), 1)  # (b, T)
        copies[rows, chunk] = mask_id
        hidden = model.encode(copies)[rows, chunk]  # (b, d_model): each copy's masked position
        logp = model.mlm_logits(hidden).float().log_softmax(-1)  # (b, V)
        out.append(logp[rows, ids[chunk]])
    return torch.cat(out) if out else torch.zeros(0)


FAMILY = Family(
    name="bert",
    config_class=BertConfig,
    model_class=BERT,
    summary="bidirectional Transformer encoder (BERT): post-LN, masked-LM and NSP heads",
    embeds=True,
    task="mlm",
    tokenizer="wordpiece",
    # Devlin et al. fine-tune at 2e-5 to 5e-5 (at 2e-4 MiniLM was unsteady); on spam, 1,000 MLM
    # steps moved MiniLM further from a good classifier than 300 did; all-MiniLM-L6-v2's speed
    adaptation=Adaptation("encoder", lr=5e-5, dapt=(300, 1e-4), speed=(1_000, 22_893_116)),
)
