"""BERT pretraining: the MLM + NSP loss, a tiny model that learns both, fill-mask, and
pseudo-perplexity (Salazar et al. 2020)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from bert_topics import topic_documents, topic_words
from conftest import one_thread
from torch.nn import functional as F

from lmforge.data.mlm import IGNORE_INDEX
from lmforge.errors import ConfigError, DataError
from lmforge.folders import save_model
from lmforge.models.bert import BERT, BertConfig, pretraining_loss, pseudo_log_likelihood
from lmforge.pretrain import fill_mask, pseudo_perplexity
from lmforge.tokenize import train_tokenizer
from lmforge.train.config import TrainConfig
from lmforge.workflows import train_family

# Wide enough to learn next-sentence prediction (a comparison of A's and B's topics) in 300 steps.
TINY = dict(d_model=64, n_layers=1, n_heads=8, d_ff=256, max_seq_len=32, dropout=0.0)
TOPICS = 3


@pytest.fixture(scope="module")
def pretrained():
    """(model, tokenizer, task, held-out lines) after 300 steps on 60 topic documents."""
    train = topic_documents(60, 6, seed=1, n_topics=TOPICS)
    valid = topic_documents(30, 6, seed=2, n_topics=TOPICS)
    tokenizer = train_tokenizer("wordpiece", train, vocab_size=200)
    config = TrainConfig(
        batch_size=32, max_steps=300, lr=5e-3, schedule="constant", eval_interval=300, seed=1
    )
    torch.manual_seed(1)
    with one_thread():
        model, _, task = train_family("bert", train, valid, tokenizer, TINY, config, progress=False)
    return model, tokenizer, task, valid


def test_pretraining_beats_the_frequency_baseline_and_chance(pretrained):
    # Seeds 0, 1, 2 gave MLM accuracy 0.65-0.68 against a baseline of 0.33 (always "the"), and NSP
    # accuracy 0.82-0.87 on 150 held-out pairs (chance 0.5, standard deviation 0.04).
    model, _, task, _ = pretrained
    metrics = task.evaluate(model)
    baseline = task.unigram_accuracy()
    assert 0.25 < baseline < 0.4
    assert metrics["valid_mlm_accuracy"] > baseline + 0.15
    assert metrics["valid_nsp_accuracy"] > 0.65
    assert math.isclose(
        metrics["valid_loss"], metrics["valid_mlm_loss"] + metrics["valid_nsp_loss"]
    )


def test_fill_mask_prefers_the_topic_of_the_sentence(pretrained):
    model, tokenizer, _, _ = pretrained
    subjects, verbs, objects = topic_words("kitchen")
    text = f"the {subjects[0]} {verbs[0]} the [MASK] and the <mask> ."
    candidates = fill_mask(model, tokenizer, text, top_k=5)
    assert len(candidates) == 2 and all(len(mask) == 5 for mask in candidates)
    for mask in candidates:
        probabilities = [p for _, p in mask]
        assert probabilities == sorted(probabilities, reverse=True)
        assert sum(probabilities) <= 1 + 1e-6
        assert mask[0][0] in objects  # a kitchen object, not a word of another topic


def test_fill_mask_needs_a_mask_and_a_positive_top_k(pretrained):
    model, tokenizer, _, _ = pretrained
    with pytest.raises(DataError, match=r"\[MASK\]"):
        fill_mask(model, tokenizer, "the cook baked the bread .")
    with pytest.raises(ConfigError, match="top_k"):
        fill_mask(model, tokenizer, "the cook baked the [MASK] .", top_k=0)


def test_pseudo_perplexity_falls_with_pretraining(pretrained):
    model, tokenizer, _, valid = pretrained
    torch.manual_seed(0)
    untrained = BERT(model.config).eval()
    lines = [line for line in valid if line][:12]
    trained_pppl = pseudo_perplexity(model, tokenizer, lines)
    untrained_pppl = pseudo_perplexity(untrained, tokenizer, lines)
    assert 1 < trained_pppl < untrained_pppl / 5  # untrained: about the vocabulary size
    assert untrained_pppl > tokenizer.vocab_size / 3


def tiny_bert(seed=0):
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30, d_model=16, n_layers=2, n_heads=2, d_ff=32, max_seq_len=10)
    return BERT(config).eval()


def test_pretraining_loss_is_masked_lm_plus_next_sentence_cross_entropy():
    model = tiny_bert()
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 30, (3, 8), generator=generator)
    segment_ids = (torch.arange(8) >= 4).long().expand(3, 8)
    mask = torch.ones(3, 8, dtype=torch.bool)
    mask[2, 6:] = False
    labels = torch.full((3, 8), IGNORE_INDEX)
    labels[0, 2], labels[1, 5], labels[2, 1] = 7, 9, 11
    nsp_labels = torch.tensor([0, 1, 1])
    total, mlm, nsp = pretraining_loss(model, ids, segment_ids, mask, labels, nsp_labels)
    out = model(ids, segment_ids, mask)  # every position's logits, then the chosen ones
    chosen = labels != IGNORE_INDEX
    expected_mlm = F.cross_entropy(out.mlm_logits[chosen], labels[chosen])
    expected_nsp = F.cross_entropy(out.nsp_logits, nsp_labels)
    torch.testing.assert_close(mlm, expected_mlm)
    torch.testing.assert_close(nsp, expected_nsp)
    torch.testing.assert_close(total, expected_mlm + expected_nsp)


def test_pseudo_log_likelihood_masks_one_token_at_a_time():
    model = tiny_bert(1)
    ids = torch.tensor([2, 10, 11, 12, 13, 14, 3])
    positions = torch.arange(1, 6)
    batched = pseudo_log_likelihood(model, ids, positions, mask_id=4, batch_size=2)
    for value, t in zip(batched, positions.tolist(), strict=True):  # the plain loop
        masked = ids.clone()
        masked[t] = 4
        logits = model(masked[None]).mlm_logits[0, t]
        torch.testing.assert_close(value, logits.log_softmax(-1)[ids[t]])


@pytest.fixture
def topic_file(tmp_path):
    path = tmp_path / "topics.txt"
    path.write_text("\n".join(topic_documents(24, 4, seed=0, n_topics=3)) + "\n", encoding="utf-8")
    return path


def test_cli_pretrain_then_fill_mask(run_cli, topic_file, tmp_path):
    out = tmp_path / "bert"
    sizes = ["--set", "d_model=16", "--set", "n_layers=1", "--set", "n_heads=2"]
    code, stdout, err = run_cli(
        "pretrain", "--model", "bert", "--corpus", topic_file, "--tokenizer", "wordpiece",
        "--vocab-size", "200", *sizes, "--set", "d_ff=32", "--set", "max_seq_len=32",
        "--set", "max_steps=5", "--set", "batch_size=8", "--out", out, "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert "masked-LM accuracy" in stdout and "next-sentence accuracy" in stdout
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    code, stdout, err = run_cli("fill-mask", out, "the cook [MASK] the bread .", "--top-k", "3")
    assert code == 0, err
    rows = [line.split() for line in stdout.strip().splitlines()]
    assert len(rows) == 3 and all(0 <= float(p) <= 1 for p, _ in rows)
    code, stdout, _ = run_cli("fill-mask", out, "<mask> cook [MASK] the bread .", "--json")
    result = json.loads(stdout)
    assert len(result["masks"]) == 2 and len(result["masks"][0]) == 5


def test_cli_masked_lm_errors_are_one_line(run_cli, topic_file, tmp_path):
    code, _, err = run_cli("pretrain", "--model", "gpt", "--corpus", topic_file, "--out", tmp_path)
    assert code == 2 and "not a masked LM" in err and len(err.strip().splitlines()) == 1
    one_document = tmp_path / "one.txt"
    one_document.write_text("the cat sat .\nthe dog sat .\n", encoding="utf-8")
    code, _, err = run_cli("pretrain", "--corpus", one_document, "--out", tmp_path / "b", "--quiet")
    assert code == 2 and "blank line" in err and len(err.strip().splitlines()) == 1
    tokenizer = train_tokenizer("wordpiece", ["the cook baked the bread ."], vocab_size=60)
    config = BertConfig(vocab_size=tokenizer.vocab_size, d_model=16, n_layers=1, n_heads=2)
    folder = save_model(tmp_path / "m", BERT(config), tokenizer)
    code, _, err = run_cli("fill-mask", folder, "the cook baked the bread .")
    assert code == 2 and "no mask token" in err and len(err.strip().splitlines()) == 1
