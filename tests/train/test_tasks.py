"""The Trainer's tasks: what each builds as batches, its losses and metrics, and the choice of a
family's task from the registry."""

from __future__ import annotations

import math

import pytest
import torch

from lmforge.data.batching import WindowBatches
from lmforge.models import FAMILIES
from lmforge.models.bert import BERT, BertConfig
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.models.seq2seq import Seq2Seq, Seq2SeqConfig
from lmforge.tokenize import BOS_ID, EOS_ID, PAD_ID, train_tokenizer
from lmforge.train.config import TrainConfig
from lmforge.train.tasks import LMTask, MLMTask, PairsTask, make_task


def numbered_text(n_docs=40, per_doc=5):
    """Documents whose sentences say where they are: "dK sJ" (document K, sentence J)."""
    lines = []
    for d in range(n_docs):
        lines += [f"d{d} s{j}" for j in range(per_doc)] + [""]
    return lines


def test_every_neural_family_names_its_task():
    tasks = {name: f.task for name, f in FAMILIES.items() if f.fitting == "trainer"}
    assert tasks["bert"] == "mlm"
    assert tasks["seq2seq"] == tasks["rnn_seq2seq"] == "pairs"
    assert {tasks[n] for n in ("nnlm", "rnn", "lstm", "gru", "gpt", "elmo")} == {"lm"}


def test_make_task_builds_the_task_of_the_model_family():
    lines = numbered_text()
    tok = train_tokenizer("word", lines, rare_threshold=0)
    config = TrainConfig(batch_size=4, seq_len=8, seed=2)
    gpt = GPT(GPTConfig(tok.vocab_size, d_model=8, n_layers=1, n_heads=2, d_ff=16, max_seq_len=8))
    task = make_task(gpt, tok, lines, None, config)
    assert isinstance(task, LMTask) and isinstance(task.batches, WindowBatches)
    assert task.valid_stream is None  # no held-out lines: no evaluation
    bert = BERT(
        BertConfig(tok.vocab_size, d_model=8, n_layers=1, n_heads=2, d_ff=16, max_seq_len=12)
    )
    task = make_task(bert, tok, lines, lines, config)
    assert isinstance(task, MLMTask) and task.max_seq_len == 12 and task.eval_batches
    pairs = [("d1 s1", "d1 s2"), ("d2 s1", "d2 s2")]
    s2s = Seq2Seq(Seq2SeqConfig(tok.vocab_size, d_model=8, n_layers=1, n_heads=2, max_seq_len=8))
    task = make_task(s2s, tok, pairs, pairs, config)
    assert isinstance(task, PairsTask) and len(task.batch(0)[0][0]) == 4


def test_mlm_task_batches_depend_only_on_the_step():
    lines = numbered_text()
    tokenizer = train_tokenizer("word", lines, rare_threshold=0)
    task = MLMTask(tokenizer, lines, lines, max_seq_len=12, batch_size=6, seed=3)
    again = MLMTask(tokenizer, lines, lines, max_seq_len=12, batch_size=6, seed=3)
    (batch, _), (same, _) = task.batch(7), again.batch(7)
    assert all(torch.equal(a, b) for a, b in zip(batch, same, strict=True))
    assert not torch.equal(task.batch(8)[0][0], batch[0])
    ids, segment_ids, attention_mask, mlm_labels, nsp_labels = batch
    assert ids.shape == segment_ids.shape == attention_mask.shape == mlm_labels.shape
    assert nsp_labels.shape == (6,) and task.tokens(batch) == int(attention_mask.sum())
    assert bool((ids[:, 0] == tokenizer.bos_id).all())
    # the held-out pairs are drawn once, whatever the training seed
    other = MLMTask(tokenizer, lines, lines, max_seq_len=12, batch_size=6, seed=4)
    assert all(
        torch.equal(a, b) for a, b in zip(task.eval_batches[0], other.eval_batches[0], strict=True)
    )


def _task(pairs, batch_size=4):
    tok = train_tokenizer("char", [text for pair in pairs for text in pair])
    config = Seq2SeqConfig(tok.vocab_size, d_model=8, n_layers=1, n_heads=2, d_ff=16, max_seq_len=8)
    return PairsTask(Seq2Seq(config), tok, pairs, pairs[:2], batch_size, seed=5), tok


def test_batches_are_padded_with_markers():
    task, tok = _task([("ab", "xyz"), ("abcd", "y")], batch_size=2)
    (source, target_in, target_out), reset = task.batch(0)
    rows = {tok.decode(row.tolist()): i for i, row in enumerate(source)}
    i = rows["ab"]
    assert source[i].tolist()[2:] == [EOS_ID, PAD_ID, PAD_ID]  # "abcd</s>" sets the width
    assert target_in[i].tolist()[0] == BOS_ID and tok.decode(target_in[i].tolist()) == "xyz"
    assert target_out[i].tolist() == [*tok.encode("xyz", markers=False), EOS_ID]
    j = 1 - i
    assert target_out[j].tolist() == [*tok.encode("y", markers=False), EOS_ID, PAD_ID, PAD_ID]
    assert task.tokens((source, target_in, target_out)) == 4 + 2  # xyz</s> and y</s>
    assert reset


def test_batches_are_deterministic_in_step_and_cover_every_pair_once_per_epoch():
    pairs = [(str(i), str(i)) for i in range(10)]
    task, tok = _task(pairs, batch_size=4)
    seen = []
    for step in range(5):  # 20 positions: two epochs of 10
        source = task.batch(step)[0][0]
        seen += [tok.decode(row.tolist()) for row in source]
    assert sorted(seen[:10]) == sorted(seen[10:]) == [str(i) for i in range(10)]
    assert seen[:10] != seen[10:]  # a fresh order each epoch
    again, _ = _task(pairs, batch_size=4)
    for step in (3, 1):
        assert all(
            torch.equal(a, b)
            for a, b in zip(again.batch(step)[0], task.batch(step)[0], strict=True)
        )


def test_evaluate_reports_the_plain_cross_entropy():
    pairs = [("ab", "ba"), ("ba", "ab"), ("aa", "bb")]
    task, tok = _task(pairs)
    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(tok.vocab_size, d_model=8, n_heads=2, max_seq_len=8))
    assert model.training
    metrics = task.evaluate(model)  # the first two pairs: 3 targets each ("ba</s>", "ab</s>")
    assert model.training  # evaluate restores the mode
    total = 0.0
    model.eval()
    for source, target in pairs[:2]:
        ids = tok.encode(target, markers=False)
        logits = model(torch.tensor([[*tok.encode(source, markers=False), EOS_ID]]),
                       torch.tensor([[BOS_ID, *ids]]))  # fmt: skip
        logp = torch.log_softmax(logits[0], dim=-1)
        total -= sum(logp[t, i].item() for t, i in enumerate([*ids, EOS_ID]))
    assert metrics["valid_loss"] == pytest.approx(total / 6, rel=1e-5)
    assert metrics["valid_ppl"] == pytest.approx(math.exp(total / 6), rel=1e-5)
