"""LSTM encoder-decoder with attention (family ``rnn_seq2seq``): the baseline of ``seq2seq``.

Papers: Sutskever et al., "Sequence to Sequence Learning with Neural Networks" (2014): an LSTM
reads the source, another LSTM writes the target from its final state; Luong et al., "Effective
Approaches to Attention-based Neural Machine Translation" (2015): global attention with the
"general" score over every encoder output.

    m_1..m_S = BiLSTM(E[source])                        (d_model / 2 per direction, concatenated)
    h_t = LSTM(E[y_{t-1}], h_{t-1})                     (started from the encoder's final states)
    a_t = softmax_s(h_t^T W_a m_s)                       (Luong eq. 8, "general"; padding masked)
    c_t = sum_s a_t,s m_s
    h~_t = tanh(W_c [c_t; h_t])                          (Luong eq. 5)
    logits_t = h~_t E^T                                  (one embedding matrix, tied)

Simplified compared with Luong et al.: no input feeding (h~_{t-1} is not fed to the next step),
so the decoder LSTM runs over the whole target at once in training; one shared vocabulary and
embedding for source and target; a bidirectional encoder whose two final states, concatenated,
start the decoder layer by layer. It follows the encoder-decoder protocol of
``lmforge.models.seq2seq`` and is decoded by the same decoders (``lmforge.nn.decoding``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lmforge.config import check_dropout, check_fraction, check_sizes, require_vocab_size
from lmforge.errors import ConfigError
from lmforge.models.family import Family
from lmforge.nn.protocol import max_seq_len_context, no_state, num_parameters, refusal
from lmforge.tokenize import PAD_ID

__all__ = ["FAMILY", "RNNSeq2Seq", "RNNSeq2SeqConfig", "RNNSeq2SeqState", "luong_attention"]


@dataclass(frozen=True)
class RNNSeq2SeqConfig:
    """Settings of an LSTM encoder-decoder.

    Args:
        vocab_size: number of tokens of the shared vocabulary, set from the tokenizer by the
            caller (0 = not yet set; building a model then raises ConfigError).
        d_model: embedding width, decoder LSTM width and encoder output width (two directions
            of d_model / 2); even.
        n_layers: LSTM layers in the encoder and, as many, in the decoder.
        max_seq_len: most tokens of a source (with ``</s>``) and of a target (with ``<s>`` or
            ``</s>``); also the longest decoded output.
        dropout: dropout in [0, 1) on embeddings, between LSTM layers and before the output.
        label_smoothing: epsilon of the label-smoothed training loss, in [0, 1).
    """

    vocab_size: int = 0
    d_model: int = 256
    n_layers: int = 1
    max_seq_len: int = 64
    dropout: float = 0.1
    label_smoothing: float = 0.1

    def __post_init__(self) -> None:
        check_sizes(self, ("d_model", "n_layers", "max_seq_len"))
        if self.d_model % 2:
            raise ConfigError(
                f"d_model must be even (two encoder directions of d_model / 2), got {self.d_model}"
            )
        check_dropout(self.dropout)
        check_fraction("label_smoothing", self.label_smoothing)


def luong_attention(
    queries: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor, source_mask: torch.Tensor
) -> torch.Tensor:
    """Global attention (Luong et al. 2015, eqs. 7-8): softmax over the source of q_t . k_s.

    Args:
        queries: (B, T, d) decoder states h_t.
        keys: (B, S, d) the encoder outputs mapped by W_a ("general" score h_t^T W_a m_s).
        memory: (B, S, d) the encoder outputs m_s, averaged into the context.
        source_mask: (B, S) True at real source tokens.

    Returns:
        (B, T, d) contexts c_t.
    """
    scores = queries @ keys.transpose(1, 2)  # (B, T, S)
    scores = scores.masked_fill(~source_mask[:, None, :], float("-inf"))
    return torch.softmax(scores, dim=-1) @ memory  # (B, T, d)


@dataclass(frozen=True)
class RNNSeq2SeqState:
    """What ``RNNSeq2Seq.decode_step`` carries: the decoder LSTM's (h, c), each
    (n_layers, B, d_model), the memory (B, S, d_model), its W_a keys and the (B, S) mask."""

    hidden: tuple[torch.Tensor, torch.Tensor]
    memory: torch.Tensor
    keys: torch.Tensor
    source_mask: torch.Tensor


class RNNSeq2Seq(nn.Module):
    """LSTM encoder-decoder with Luong attention (see the module docstring)."""

    recurrent = False

    def __init__(self, config: RNNSeq2SeqConfig) -> None:
        super().__init__()
        self.config = c = require_vocab_size(config)
        between = c.dropout if c.n_layers > 1 else 0.0
        self.embedding = nn.Embedding(c.vocab_size, c.d_model)
        self.encoder = nn.LSTM(
            c.d_model, c.d_model // 2, c.n_layers, batch_first=True, bidirectional=True,
            dropout=between,
        )  # fmt: skip
        self.decoder = nn.LSTM(c.d_model, c.d_model, c.n_layers, batch_first=True, dropout=between)
        self.attn_in = nn.Linear(c.d_model, c.d_model, bias=False)  # W_a
        self.attn_out = nn.Linear(2 * c.d_model, c.d_model, bias=False)  # W_c
        self.dropout = nn.Dropout(c.dropout)
        nn.init.normal_(self.embedding.weight, mean=0.0, std=c.d_model**-0.5)

    # The parts of the family protocol that several families share (lmforge.nn.protocol).
    context_size = max_seq_len_context
    init_state = no_state
    num_parameters = num_parameters

    def _check_length(self, length: int) -> None:
        if length > self.config.max_seq_len:
            raise ConfigError(
                f"an rnn_seq2seq model with max_seq_len={self.config.max_seq_len} cannot read "
                f"{length} tokens; shorten the sequence or train with a larger max_seq_len"
            )

    def start_decoding(self, source: torch.Tensor) -> RNNSeq2SeqState:
        """Encode (B, S) padded sources: memory, keys, mask and the decoder's first (h, c)."""
        self._check_length(source.shape[1])
        mask = source != PAD_ID  # (B, S)
        lengths = mask.sum(dim=1).clamp(min=1).cpu()
        packed = pack_padded_sequence(
            self.dropout(self.embedding(source)), lengths, batch_first=True, enforce_sorted=False
        )
        out, (h, c) = self.encoder(packed)  # h, c: (2 * n_layers, B, d_model / 2)
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=source.shape[1])
        layers, batch = self.config.n_layers, source.shape[0]

        def join(state: torch.Tensor) -> torch.Tensor:  # both directions of each layer
            return state.view(layers, 2, batch, -1).permute(0, 2, 1, 3).reshape(layers, batch, -1)

        return RNNSeq2SeqState((join(h), join(c)), memory, self.attn_in(memory), mask)

    def _decode(
        self, target_in: torch.Tensor, state: RNNSeq2SeqState
    ) -> tuple[torch.Tensor, RNNSeq2SeqState]:
        """(B, T) target inputs -> (B, T, V) logits, and the state after them."""
        out, hidden = self.decoder(self.dropout(self.embedding(target_in)), state.hidden)
        context = luong_attention(out, state.keys, state.memory, state.source_mask)
        attentional = torch.tanh(self.attn_out(torch.cat([context, out], dim=-1)))  # (B, T, d)
        logits = self.dropout(attentional) @ self.embedding.weight.T  # (B, T, V)
        return logits, RNNSeq2SeqState(hidden, state.memory, state.keys, state.source_mask)

    def forward(self, source: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
        """(B, S) source, (B, T) target inputs (``<s>`` + target) -> (B, T, V) logits."""
        self._check_length(target_in.shape[1])
        return self._decode(target_in, self.start_decoding(source))[0]

    def decode_step(
        self, tokens: torch.Tensor, state: RNNSeq2SeqState
    ) -> tuple[torch.Tensor, RNNSeq2SeqState]:
        """(B,) the newest target tokens -> (B, V) log-probabilities of the next, and the state."""
        logits, state = self._decode(tokens[:, None], state)
        return F.log_softmax(logits[:, 0].float(), dim=-1), state

    def reorder_state(self, state: RNNSeq2SeqState, index: torch.Tensor) -> RNNSeq2SeqState:
        """The state of rows ``index`` (B',) of the batch, for beam search."""
        h, c = state.hidden
        return RNNSeq2SeqState(
            (h.index_select(1, index), c.index_select(1, index)),
            state.memory.index_select(0, index),
            state.keys.index_select(0, index),
            state.source_mask.index_select(0, index),
        )

    log_probs = generate = refusal(
        "an rnn_seq2seq model is an encoder-decoder, not a causal LM: it decodes a target from a "
        "source; decode with lmforge.nn.decoding.greedy_decode / beam_search or "
        "`lmforge generate MODEL --prompt SOURCE --beam 4`"
    )


FAMILY = Family(
    name="rnn_seq2seq",
    config_class=RNNSeq2SeqConfig,
    model_class=RNNSeq2Seq,
    summary="LSTM encoder-decoder with Luong attention (baseline of seq2seq); trained on pairs",
    task="pairs",
)
