"""Classifier heads: what a causal head reads (last real token, mean, windows), and the names
and attributes that model folders rely on."""

from __future__ import annotations

import pytest
import torch

from lmforge.errors import ConfigError
from lmforge.models.bert import BERT, BertConfig
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.models.heads import (
    HEADS,
    CausalClassifier,
    SequenceClassifier,
    head_task,
)

TINY = dict(vocab_size=50, d_model=32, n_layers=1, n_heads=2, d_ff=64, max_seq_len=32, dropout=0.0)


def tiny_gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(**TINY)).eval()


def padded(rows: list[torch.Tensor], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (B, width) ids and their mask."""
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = row, True
    return ids, mask


def test_causal_head_reads_the_last_real_token_whatever_the_padding():
    model = CausalClassifier(tiny_gpt(), 3).eval()
    text = torch.randint(4, 50, (9,))
    ids, mask = padded([text], 14)
    alone = model(text[None], torch.ones(1, 9, dtype=torch.bool))
    torch.testing.assert_close(model(ids, mask), alone)


def test_a_long_text_is_read_as_windows_whose_states_are_averaged():
    lm = tiny_gpt()
    model = CausalClassifier(lm, 3, window=8).eval()
    text = torch.randint(4, 50, (21,))
    ids, mask = padded([text, text[:6]], 21)
    pooled = model._read(ids, mask)[0]
    windows = [text[:8], text[8:16], text[16:]]  # 8 + 8 + 5 tokens, read one by one
    expected = torch.stack([lm.hidden_states(w[None])[0][0, -1] for w in windows]).mean(0)
    torch.testing.assert_close(pooled[0], expected)
    torch.testing.assert_close(pooled[1], lm.hidden_states(text[None, :6])[0][0, -1])
    task, aux = model.losses(ids, mask, torch.tensor([0, 1]))
    assert torch.isfinite(task) and torch.isfinite(aux)


def test_mean_pooling_averages_every_real_tokens_state():
    lm = tiny_gpt()
    model = CausalClassifier(lm, 3, window=8, pooling="mean").eval()
    text = torch.randint(4, 50, (13,))
    ids, mask = padded([text, text[:5]], 13)
    pooled = model._read(ids, mask)[0]
    windows = [text[:8], text[8:]]  # each window's mean, then the windows' mean
    expected = torch.stack([lm.hidden_states(w[None])[0][0].mean(0) for w in windows]).mean(0)
    torch.testing.assert_close(pooled[0], expected)
    torch.testing.assert_close(pooled[1], lm.hidden_states(text[None, :5])[0][0].mean(0))
    last = CausalClassifier(lm, 3)._read(ids[1:], mask[1:])[0][0]
    assert not torch.allclose(pooled[1], last)


def test_heads_are_named_by_their_task_and_name_their_base():
    bert = BERT(BertConfig(**TINY))
    for task, head in HEADS.items():
        model = head(bert, 4)
        assert head_task(model) == task
        assert (model.base, model.config, model.n_labels) == (bert, bert.config, 4)
    gpt = tiny_gpt()
    causal = CausalClassifier(gpt, 2)
    assert head_task(causal) is None and head_task(bert) is None
    assert (causal.base, causal.n_labels) == (gpt, 2)
    with pytest.raises(ConfigError, match="n_labels must be >= 2"):
        SequenceClassifier(bert, 1)
    with pytest.raises(ConfigError, match="pooling"):
        CausalClassifier(gpt, 2, pooling="cls")
