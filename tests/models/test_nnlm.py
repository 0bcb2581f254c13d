"""The nnlm family (Bengio et al. 2003) and the "mix" of its Table 1."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lmforge.errors import ConfigError
from lmforge.metrics import mix_log_probs
from lmforge.models.nnlm import (
    FAMILY,
    NNLM,
    NNLMConfig,
    context_windows,
    context_windows_reference,
)
from lmforge.nn.sampling import Sampler
from lmforge.tokenize import BOS_ID

V = 30


def tiny(**changes) -> NNLM:
    torch.manual_seed(0)
    fields = dict(vocab_size=V, context=3, d_model=8, d_hidden=10)
    fields.update(changes)
    return NNLM(NNLMConfig(**fields)).eval()


def random_ids(batch: int = 2, length: int = 9, seed: int = 1) -> torch.Tensor:
    return torch.randint(5, V, (batch, length), generator=torch.Generator().manual_seed(seed))


def test_context_windows_equal_reference():
    ids = random_ids(3, 7)
    for context in (1, 2, 4, 9):
        assert torch.equal(context_windows(ids, context), context_windows_reference(ids, context))


def test_context_windows_pad_with_bos():
    ids = torch.tensor([[10, 11, 12]])
    # position 0 reads <s> <s> 10, position 2 reads 10 11 12
    assert context_windows(ids, 3).tolist() == [[[2, 2, 10], [2, 10, 11], [10, 11, 12]]]
    assert BOS_ID == 2


def test_nnlm_shapes():
    model = tiny()
    ids = random_ids()
    logits, state = model(ids)
    assert logits.shape == (2, 9, V) and state is None
    logp, state = model.log_probs(ids, ids.roll(-1, dims=1))
    assert logp.shape == (2, 9) and state is None
    assert model.recurrent is False and model.context_size == 3
    assert model.init_state(2, "cpu") is None


def test_log_probs_match_forward():
    model = tiny()
    ids, targets = random_ids(), random_ids(seed=2)
    logits, _ = model(ids)
    expected = logits.log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)
    logp, _ = model.log_probs(ids, targets)
    torch.testing.assert_close(logp, expected)


def test_prediction_depends_only_on_the_previous_context_tokens():
    model = tiny(context=3)
    ids = random_ids(1, 10)
    logits, _ = model(ids)
    t = 7  # reads ids[5], ids[6], ids[7]
    further_back = ids.clone()
    further_back[0, 4] = 5 if ids[0, 4] != 5 else 6
    inside = ids.clone()
    inside[0, 5] = 5 if ids[0, 5] != 5 else 6
    torch.testing.assert_close(model(further_back)[0][0, t], logits[0, t])
    assert not torch.allclose(model(inside)[0][0, t], logits[0, t])
    # and the future never matters
    future = ids.clone()
    future[0, t + 1] = 5 if ids[0, t + 1] != 5 else 6
    torch.testing.assert_close(model(future)[0][0, : t + 1], logits[0, : t + 1])


def test_equation_one_of_the_paper():
    model = tiny(context=2, d_model=4, d_hidden=3)
    ids = torch.tensor([[7, 9]])
    C, H, head = model.embed.weight, model.hidden, model.head.linear
    x = torch.cat([C[7], C[9]])  # oldest first
    U, W = head.weight[:, :3], head.weight[:, 3:]
    y = head.bias + W @ x + U @ torch.tanh(H.bias + H.weight @ x)
    torch.testing.assert_close(model(ids)[0][0, 1], y)


def test_nnlm_without_hidden_layer_is_direct_only():
    model = tiny(d_hidden=0, direct=True)
    assert model.hidden is None
    logits, _ = model(random_ids())
    assert logits.shape == (2, 9, V)
    assert model.num_parameters() == V * 8 + (3 * 8) * V + V  # C, W, b


def test_nnlm_without_direct_connections():
    model = tiny(direct=False)
    assert model.head.linear.in_features == 10
    assert model(random_ids())[0].shape == (2, 9, V)


def test_num_parameters_counts_every_matrix():
    model = tiny()
    # C: 30*8, H: 24*10 + 10, [U W]: (10 + 24)*30, b: 30
    assert model.num_parameters() == 240 + 250 + 34 * 30 + 30


def test_adaptive_softmax_log_probs_sum_to_one():
    model = tiny(adaptive_cutoffs=(10, 20))
    ids = random_ids()
    logits, _ = model(ids)
    torch.testing.assert_close(logits.exp().sum(-1), torch.ones(2, 9))
    logp, _ = model.log_probs(ids, ids)
    torch.testing.assert_close(logp, logits.gather(-1, ids[..., None]).squeeze(-1))


def test_nnlm_overfits_one_batch():
    torch.manual_seed(0)
    model = NNLM(NNLMConfig(vocab_size=V, context=3, d_model=16, d_hidden=32))
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
    assert first > math.log(V) - 0.5
    assert loss.item() < 0.3


def test_step_matches_forward():
    model = tiny()
    ids = random_ids(2, 6)
    logits, _ = model(ids)
    step_logits, cache = model.step(ids[:, :4])
    torch.testing.assert_close(step_logits, logits[:, 3])
    assert cache.shape == (2, 3)
    step_logits, cache = model.step(ids[:, 4:5], cache)
    torch.testing.assert_close(step_logits, logits[:, 4])
    short, _ = model.step(ids[:, :1])  # a prompt shorter than the context is padded with <s>
    torch.testing.assert_close(short, logits[:, 0])


def test_generate_returns_prompt_plus_new_tokens():
    model = tiny()
    prompt = random_ids(2, 4)
    out = model.generate(prompt, 5, Sampler(seed=0))
    assert out.shape == (2, 9)
    assert torch.equal(out[:, :4], prompt)
    again = model.generate(prompt, 5, Sampler(seed=0))
    assert torch.equal(out, again)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("vocab_size", -1),
        ("context", 0),
        ("d_model", 0),
        ("d_hidden", -1),
        ("direct", "yes"),
        ("dropout", 1.0),
        ("adaptive_cutoffs", (6000, 2000)),
    ],
)
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        NNLMConfig(**{field: value})


def test_no_hidden_layer_and_no_direct_connections_is_an_error():
    with pytest.raises(ConfigError, match="d_hidden"):
        NNLMConfig(d_hidden=0, direct=False)


def test_model_needs_a_vocab_size():
    with pytest.raises(ConfigError, match="vocab_size"):
        NNLM(NNLMConfig())


def test_cutoffs_from_json_or_flags_become_int_tuples():
    assert NNLMConfig(adaptive_cutoffs=[2000.0, 6000.0]).adaptive_cutoffs == (2000, 6000)


def test_family_entry():
    assert FAMILY.name == "nnlm" and FAMILY.fitting == "trainer"
    assert FAMILY.config_class is NNLMConfig and FAMILY.model_class is NNLM


# -- mix_log_probs (Bengio et al. 2003, Table 1 "mix") ---------------------------------------


def test_mix_of_identical_models_is_the_same():
    logp = np.log(np.array([0.1, 0.5, 0.9]))
    np.testing.assert_allclose(mix_log_probs(logp, logp, 0.3), logp)


def test_mix_with_weight_one_is_the_first_model():
    a, b = np.log(np.array([0.2, 0.4])), np.log(np.array([0.6, 0.1]))
    np.testing.assert_array_equal(mix_log_probs(a, b, 1.0), a)
    np.testing.assert_array_equal(mix_log_probs(a, b, 0.0), b)


def test_mix_hand_computed():
    # 0.25 * 0.2 + 0.75 * 0.6 = 0.05 + 0.45 = 0.5
    assert mix_log_probs(math.log(0.2), math.log(0.6), 0.25) == pytest.approx(math.log(0.5))
    mixed = mix_log_probs(torch.tensor([math.log(0.2)]), torch.tensor([math.log(0.6)]), 0.25)
    torch.testing.assert_close(mixed, torch.tensor([math.log(0.5)]))


def test_mix_is_stable_for_tiny_probabilities():
    # exp(-1000) underflows; the mixture of two equal values is that value
    assert mix_log_probs(-1000.0, -1000.0) == pytest.approx(-1000.0)
    # 0.5 e^-1000 + 0.5 e^-1001 = e^-1000 (1 + e^-1) / 2
    expected = -1000.0 + math.log((1 + math.exp(-1)) / 2)
    assert mix_log_probs(-1000.0, -1001.0) == pytest.approx(expected)


def test_mix_weight_out_of_range():
    with pytest.raises(ValueError, match="weight"):
        mix_log_probs(0.0, 0.0, 1.5)
