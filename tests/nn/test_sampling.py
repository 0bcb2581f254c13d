"""Sampling: greedy, top-k, top-p and temperature (the loops are in test_decoding.py)."""

from __future__ import annotations

import pytest
import torch

from lmforge.errors import ConfigError
from lmforge.nn.sampling import Sampler, sample_next


def random_logits(batch=4, vocab=50, seed=0):
    return torch.randn(batch, vocab, generator=torch.Generator().manual_seed(seed)) * 3


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def test_temperature_zero_is_argmax():
    logits = random_logits()
    assert torch.equal(sample_next(logits, temperature=0.0), logits.argmax(-1))


def test_top_k_one_is_greedy():
    logits = random_logits()
    for seed in range(5):
        assert torch.equal(sample_next(logits, top_k=1, generator=seeded(seed)), logits.argmax(-1))


def test_tiny_top_p_is_greedy():
    logits = random_logits()
    for seed in range(5):
        picked = sample_next(logits, top_p=1e-6, generator=seeded(seed))
        assert torch.equal(picked, logits.argmax(-1))


def test_sampling_is_reproducible_with_a_seeded_generator():
    logits = random_logits(batch=64)
    first = sample_next(logits, temperature=1.3, generator=seeded(7))
    assert torch.equal(first, sample_next(logits, temperature=1.3, generator=seeded(7)))
    assert not torch.equal(first, sample_next(logits, temperature=1.3, generator=seeded(8)))


def test_top_k_only_picks_the_k_most_likely():
    logits = random_logits(batch=1).expand(2000, -1)
    picked = sample_next(logits, temperature=2.0, top_k=5, generator=seeded())
    allowed = set(logits[0].topk(5).indices.tolist())
    assert set(picked.tolist()) == allowed  # all five show up in 2000 draws at temperature 2


def test_top_p_only_picks_inside_the_nucleus():
    logits = random_logits(batch=1, vocab=30, seed=3)
    probs = logits[0].softmax(-1)
    order = probs.argsort(descending=True)
    cumulative = probs[order].cumsum(0)
    size = int((cumulative < 0.8).sum()) + 1  # smallest prefix with mass >= 0.8
    nucleus = set(order[:size].tolist())
    assert 1 < size < 30
    picked = sample_next(logits.expand(3000, -1), top_p=0.8, generator=seeded())
    assert set(picked.tolist()) == nucleus


def test_top_k_and_top_p_together_keep_the_smaller_set():
    logits = random_logits(batch=1, vocab=40, seed=5).expand(1000, -1)
    picked = sample_next(logits, top_k=3, top_p=0.999, generator=seeded())
    assert set(picked.tolist()) <= set(logits[0].topk(3).indices.tolist())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", -0.5),
        ("temperature", float("nan")),
        ("top_k", -1),
        ("top_k", 2.5),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("seed", -3),
    ],
)
def test_sampler_validation_names_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        Sampler(**{field: value})


def test_sampler_calls_sample_next():
    logits = random_logits()
    assert torch.equal(Sampler(temperature=0)(logits, None), logits.argmax(-1))


def test_draws_follow_the_probabilities():
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    picked = sample_next(probs.log().expand(20000, -1), generator=seeded())
    share = torch.bincount(picked, minlength=4) / 20000
    torch.testing.assert_close(share, probs[0], atol=0.01, rtol=0)


def test_a_token_of_probability_zero_is_never_drawn(monkeypatch):
    # u = 0 (a uniform draw of exactly 0) must not pick a leading token that top-k removed.
    logits = torch.tensor([[-5.0, 1.0, 2.0, -5.0]])
    monkeypatch.setattr(torch, "rand", lambda *shape, **kw: torch.zeros(*shape))
    assert sample_next(logits, top_k=2).tolist() == [1]
    monkeypatch.setattr(torch, "rand", lambda *shape, **kw: torch.full(shape, 1 - 2**-24))
    assert sample_next(logits, top_k=2).tolist() == [2]
