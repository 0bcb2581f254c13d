"""The recurrent families rnn (Elman), lstm (Zaremba et al. 2014) and gru (Cho et al. 2014)."""

from __future__ import annotations

import math
from dataclasses import asdict

import pytest
import torch

from lmforge.errors import ConfigError
from lmforge.models.rnn import (
    FAMILY_GRU,
    FAMILY_LSTM,
    FAMILY_RNN,
    INIT_RANGE,
    GRUConfig,
    LSTMConfig,
    RecurrentLM,
    RNNConfig,
    RNNLMConfig,
)
from lmforge.nn.sampling import Sampler

V = 30


FAMILIES = {"rnn": FAMILY_RNN, "lstm": FAMILY_LSTM, "gru": FAMILY_GRU}


def tiny(name: str = "lstm", **changes) -> RecurrentLM:
    torch.manual_seed(0)
    fields = dict(vocab_size=V, d_model=16, n_layers=2)
    fields.update(changes)
    return RecurrentLM(FAMILIES[name].config_class(**fields)).eval()


def random_ids(batch: int = 2, length: int = 9, seed: int = 1) -> torch.Tensor:
    return torch.randint(5, V, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", FAMILIES)
def test_shapes(name):
    model = tiny(name)
    ids = random_ids()
    logits, state = model(ids)
    assert logits.shape == (2, 9, V)
    logp, state = model.log_probs(ids, ids, state)
    assert logp.shape == (2, 9)
    states = state if name == "lstm" else (state,)
    assert all(s.shape == (2, 2, 16) for s in states)
    assert model.recurrent is True and model.context_size == 0


@pytest.mark.parametrize("name", FAMILIES)
def test_init_state_is_zeros(name):
    state = tiny(name).init_state(3, "cpu")
    states = state if name == "lstm" else (state,)
    assert len(states) == (2 if name == "lstm" else 1)
    assert all(s.shape == (2, 3, 16) and not s.any() for s in states)


@pytest.mark.parametrize("name", FAMILIES)
def test_state_carried_across_halves_equals_whole(name):
    model = tiny(name, dropout=0.3)  # eval mode: dropout off
    ids, targets = random_ids(2, 12), random_ids(2, 12, seed=2)
    whole, _ = model.log_probs(ids, targets)
    first, state = model.log_probs(ids[:, :5], targets[:, :5])
    second, _ = model.log_probs(ids[:, 5:], targets[:, 5:], state)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole)


def test_a_fresh_state_changes_the_result():
    model = tiny("lstm")
    ids = random_ids(2, 12)
    _, state = model(ids[:, :5])
    carried, _ = model(ids[:, 5:], state)
    fresh, _ = model(ids[:, 5:])
    assert not torch.allclose(carried, fresh)


def test_log_probs_match_forward():
    model = tiny("gru")
    ids, targets = random_ids(), random_ids(seed=2)
    logits, _ = model(ids)
    expected = logits.log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)
    torch.testing.assert_close(model.log_probs(ids, targets)[0], expected)


def final_loss_after_overfitting(name: str) -> tuple[float, float]:
    """First and last loss of 80 Adam steps on one small batch."""
    torch.manual_seed(0)
    model = RecurrentLM(FAMILIES[name].config_class(vocab_size=V, d_model=32, n_layers=1))
    ids = random_ids(4, 16)
    inputs, targets = ids[:, :-1], ids[:, 1:]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(80):
        loss = -model.log_probs(inputs, targets)[0].mean()
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return first, loss.item()


def test_rnn_overfits_one_batch():
    first, last = final_loss_after_overfitting("rnn")
    assert first > math.log(V) - 0.5 and last < 0.3


def test_lstm_overfits_one_batch():
    first, last = final_loss_after_overfitting("lstm")
    assert first > math.log(V) - 0.5 and last < 0.3


def test_gru_overfits_one_batch():
    first, last = final_loss_after_overfitting("gru")
    assert first > math.log(V) - 0.5 and last < 0.3


def test_tied_embeddings_share_one_tensor():
    model = tiny("lstm", tie_embeddings=True)
    assert model.head.linear.weight is model.embed.weight
    untied = tiny("lstm")
    assert model.num_parameters() == untied.num_parameters() - V * 16 - V  # no W_out, no bias


def test_weights_start_uniform_in_zaremba_range():
    model = tiny("lstm")
    assert all(p.abs().max() <= INIT_RANGE for p in model.parameters())


@pytest.mark.parametrize("name", FAMILIES)
def test_adaptive_softmax_log_probs_sum_to_one(name):
    model = tiny(name, adaptive_cutoffs=(10, 20))
    ids = random_ids()
    logits, _ = model(ids)
    torch.testing.assert_close(logits.exp().sum(-1), torch.ones(2, 9))
    logp, _ = model.log_probs(ids, ids)
    torch.testing.assert_close(logp, logits.gather(-1, ids[..., None]).squeeze(-1))


def test_dropout_only_in_training_mode():
    model = tiny("lstm", dropout=0.5)
    ids = random_ids()
    torch.testing.assert_close(model(ids)[0], model(ids)[0])
    model.train()
    assert not torch.allclose(model(ids)[0], model(ids)[0])


@pytest.mark.parametrize("name", FAMILIES)
def test_step_matches_forward(name):
    model = tiny(name)
    ids = random_ids(2, 6)
    logits, _ = model(ids)
    step_logits, cache = model.step(ids[:, :4])
    torch.testing.assert_close(step_logits, logits[:, 3])
    step_logits, _ = model.step(ids[:, 4:5], cache)
    torch.testing.assert_close(step_logits, logits[:, 4])


@pytest.mark.parametrize("name", FAMILIES)
def test_generate_returns_prompt_plus_new_tokens(name):
    model = tiny(name)
    prompt = random_ids(2, 3)
    out = model.generate(prompt, 6, Sampler(seed=0))
    assert out.shape == (2, 9)
    assert torch.equal(out[:, :3], prompt)
    assert torch.equal(out, model.generate(prompt, 6, Sampler(seed=0)))


def test_family_configs_default_to_their_cell():
    assert (RNNLMConfig().cell, LSTMConfig().cell, GRUConfig().cell) == ("rnn", "lstm", "gru")
    for name, family in FAMILIES.items():
        assert family.name == name and family.model_class is RecurrentLM
        assert family.fitting == "trainer"
        assert issubclass(family.config_class, RNNConfig)
        assert "family_cell" not in asdict(family.config_class())


def test_family_config_rejects_another_cell():
    with pytest.raises(ConfigError, match="cell"):
        LSTMConfig(cell="gru")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("vocab_size", -1),
        ("cell", "transformer"),
        ("d_model", 0),
        ("n_layers", 0),
        ("dropout", -0.1),
        ("tie_embeddings", 1),
        ("adaptive_cutoffs", (0, 10)),
    ],
)
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        RNNConfig(**{field: value})


def test_tied_embeddings_need_a_full_softmax():
    with pytest.raises(ConfigError, match="tie_embeddings"):
        RNNConfig(tie_embeddings=True, adaptive_cutoffs=(10,))


def test_model_needs_a_vocab_size():
    with pytest.raises(ConfigError, match="vocab_size"):
        RecurrentLM(LSTMConfig())
