"""One battery over every registered family at a tiny config: builds, shapes, save through the
folder module and load back with the same outputs (log-probs, embeddings or decoded text,
whichever the family answers); the causal neural families also train and generate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_TEXT

from lmforge.evaluate import line_log_probs, lines_perplexity
from lmforge.folders import load_model, save_model
from lmforge.models import FAMILIES, family_of
from lmforge.models.ngram import NgramConfig
from lmforge.nn.sampling import Sampler
from lmforge.tokenize import train_tokenizer
from lmforge.train.config import TrainConfig
from lmforge.workflows import build_model, train_family, translate

TINY = {
    "nnlm": {"context": 3, "d_model": 8, "d_hidden": 16},
    "rnn": {"d_model": 16, "n_layers": 1},
    "lstm": {"d_model": 32, "n_layers": 2},
    "gru": {"d_model": 16, "n_layers": 1},
    "gpt": {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "max_seq_len": 16},
    "elmo": {"d_model": 16, "n_layers": 2, "max_seq_len": 16, "dropout": 0.0},
    "bert": {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "max_seq_len": 16},
    "seq2seq": {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "max_seq_len": 16},
    "rnn_seq2seq": {"d_model": 16, "n_layers": 1, "max_seq_len": 16},
}
LINES = TINY_TEXT * 20
CAUSAL = [name for name, f in FAMILIES.items() if f.fitting == "trainer" and f.causal]


def tiny_model(name: str, tok):
    """A tiny model of family ``name``: an n-gram counted on LINES, else fresh random weights."""
    family = FAMILIES[name]
    if family.fitting == "counting":
        return family.model_class.fit(
            tok.tokens_batch(LINES), NgramConfig(order=3, discount_fallback=(0.5, 1.0, 1.5))
        )
    torch.manual_seed(0)
    return build_model(name, tok.vocab_size, TINY[name])[0].eval()


def answers(model, tok) -> np.ndarray:
    """What the model answers, as an array: log-probs of lines for LMs, decoded ids for
    encoder-decoders, last hidden states for masked LMs."""
    family = family_of(model)
    if family.seq2seq:
        texts = translate(model, tok, ["the cat sat", "a dog"], max_len=6)
        return np.array([tok.encode(t) for t in texts], dtype=object)
    if family.fitting == "counting" or family.causal:
        return line_log_probs(model, tok, LINES[:12])
    ids = torch.tensor([tok.encode("the cat sat on the mat")])
    with torch.no_grad():
        return model.encode(ids).numpy()


def test_the_battery_covers_every_family():
    assert set(FAMILIES) == {*TINY, "ngram"}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_saves_and_loads_with_the_same_outputs(name, tmp_path):
    tok = train_tokenizer("word", LINES, rare_threshold=0)
    model = tiny_model(name, tok)
    assert family_of(model).name == name
    before = answers(model, tok)
    save_model(tmp_path / name, model, tok, corpus="tiny")
    loaded, loaded_tok, record = load_model(tmp_path / name)
    assert record["family"] == name and record["corpus"] == "tiny" and "version" in record
    assert type(loaded) is type(model) and loaded_tok.vocab == tok.vocab
    after = answers(loaded, loaded_tok)
    if before.dtype == object:
        assert before.tolist() == after.tolist()
    else:  # bit for bit; an ARPA file keeps 7 significant digits
        counted = FAMILIES[name].fitting == "counting"
        np.testing.assert_allclose(after, before, rtol=1e-6 if counted else 0, atol=0)


@pytest.mark.parametrize("family", CAUSAL)
def test_family_builds_and_gives_shapes(family):
    torch.manual_seed(0)
    model, _ = build_model(family, 30, TINY[family])
    ids = torch.randint(0, 30, (2, 7))
    logits, _ = model(ids, model.init_state(2, "cpu"))
    assert logits.shape == (2, 7, 30)
    logp, _ = model.log_probs(ids, ids, model.init_state(2, "cpu"))
    assert logp.shape == (2, 7) and bool((logp <= 0).all())


@pytest.mark.parametrize("family", CAUSAL)
def test_family_trains_saves_loads_and_generates(family, tmp_path):
    torch.manual_seed(0)
    tok = train_tokenizer("word", LINES, rare_threshold=0)
    config = TrainConfig(
        batch_size=4,
        seq_len=16,
        max_steps=150,
        lr=1e-2,
        warmup_steps=5,
        eval_interval=75,
        log_interval=10,
    )
    model, result, _ = train_family(
        family, LINES, LINES[:30], tok, TINY[family], config, out_dir=tmp_path, progress=False
    )
    losses = [h["loss"] for h in result.history if "loss" in h]
    assert losses[-1] < 0.7 * losses[0]
    before = lines_perplexity(model, tok, LINES[:30])
    loaded, loaded_tok, meta = load_model(tmp_path)
    assert meta["family"] == family and loaded_tok.vocab == tok.vocab
    assert lines_perplexity(loaded, loaded_tok, LINES[:30]) == pytest.approx(before, rel=1e-6)
    prompt = torch.tensor([tok.encode("the cat", markers=True)[:-1]])
    out = loaded.generate(prompt, 5, Sampler(temperature=0.0))
    assert out.shape == (1, prompt.shape[1] + 5) and torch.equal(out[:, : prompt.shape[1]], prompt)
