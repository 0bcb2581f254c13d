"""One battery over every registered neural family at a tiny config: builds, shapes, loss falls
under the one Trainer, save/load round trip, generation."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_TEXT

from lmforge.models import FAMILIES
from lmforge.nn.sampling import Sampler
from lmforge.tokenize import train_tokenizer
from lmforge.train.trainer import TrainConfig
from lmforge.workflows import build_model, load_model, model_perplexity, train_model

# The causal LMs: masked LMs (bert) have no log_probs/generate and their own tests.
NEURAL = [name for name, f in FAMILIES.items() if f.fitting == "trainer" and f.causal]
TINY = {
    "nnlm": {"context": 3, "d_model": 8, "d_hidden": 16},
    "rnn": {"d_model": 16, "n_layers": 1},
    "lstm": {"d_model": 32, "n_layers": 2},
    "gru": {"d_model": 16, "n_layers": 1},
    "gpt": {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "max_seq_len": 16},
    "elmo": {"d_model": 16, "n_layers": 2, "max_seq_len": 16, "dropout": 0.0},
}
LINES = TINY_TEXT * 20


def test_every_neural_family_has_a_tiny_config():
    assert set(NEURAL) == set(TINY)


@pytest.mark.parametrize("family", NEURAL)
def test_family_builds_and_gives_shapes(family):
    torch.manual_seed(0)
    model, _ = build_model(family, 30, TINY[family])
    ids = torch.randint(0, 30, (2, 7))
    state = model.init_state(2, "cpu")
    logits, _ = model(ids, state)
    assert logits.shape == (2, 7, 30)
    logp, _ = model.log_probs(ids, ids, model.init_state(2, "cpu"))
    assert logp.shape == (2, 7) and bool((logp <= 0).all())


@pytest.mark.parametrize("family", NEURAL)
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
    model, result = train_model(
        family, LINES, LINES[:30], tok, TINY[family], config, out_dir=tmp_path, progress=False
    )
    losses = [h["loss"] for h in result.history if "loss" in h]
    assert losses[-1] < 0.7 * losses[0]
    before = model_perplexity(model, tok, LINES[:30])
    loaded, loaded_tok, meta = load_model(tmp_path)
    assert meta["family"] == family and loaded_tok.vocab == tok.vocab
    assert model_perplexity(loaded, loaded_tok, LINES[:30]) == pytest.approx(before, rel=1e-6)
    prompt = torch.tensor([tok.encode("the cat", markers=True)[:-1]])
    out = loaded.generate(prompt, 5, Sampler(temperature=0.0))
    assert out.shape == (1, prompt.shape[1] + 5) and torch.equal(out[:, : prompt.shape[1]], prompt)
