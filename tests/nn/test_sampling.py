"""Sampling: greedy, top-k, top-p and temperature; the decoding loop on a toy model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lmforge.errors import ConfigError
from lmforge.nn.sampling import Sampler, generate, sample_next


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


class Counter(nn.Module):
    """Toy model: the next token is always (last token + 1) mod V; records its step calls."""

    vocab = 10

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, object]] = []

    def step(self, ids, cache=None):
        self.calls.append((ids.shape[1], cache))
        assert not self.training
        logits = torch.full((ids.shape[0], self.vocab), -10.0)
        logits[torch.arange(ids.shape[0]), (ids[:, -1] + 1) % self.vocab] = 10.0
        return logits, (0 if cache is None else cache) + ids.shape[1]


def test_generate_reads_the_prompt_once_then_one_token_per_step():
    model = Counter().train()
    out = generate(model, torch.tensor([[3, 4], [7, 8]]), 5, Sampler(temperature=0))
    assert out.tolist() == [[3, 4, 5, 6, 7, 8, 9], [7, 8, 9, 0, 1, 2, 3]]
    assert model.calls == [(2, None), (1, 2), (1, 3), (1, 4), (1, 5)]  # no step after the last
    assert model.training  # the mode is restored
    assert not out.is_inference()


def test_generate_stops_when_every_row_has_produced_eos():
    out = generate(Counter(), torch.tensor([[5], [7]]), 20, Sampler(temperature=0), eos_id=9)
    # row 2 reaches 9 after two tokens, then is padded with eos; row 1 reaches 9 after four
    assert out.tolist() == [[5, 6, 7, 8, 9], [7, 8, 9, 9, 9]]


def test_generate_zero_new_tokens_returns_the_prompt():
    prompt = torch.tensor([[1, 2, 3]])
    assert torch.equal(generate(Counter(), prompt, 0, Sampler()), prompt)


def test_generate_is_reproducible_with_a_seed():
    class Uniform(Counter):
        def step(self, ids, cache=None):
            return torch.zeros(ids.shape[0], 1000), None

    prompt = torch.zeros(2, 1, dtype=torch.long)
    a = generate(Uniform(), prompt, 10, Sampler(seed=3))
    assert torch.equal(a, generate(Uniform(), prompt, 10, Sampler(seed=3)))
    assert not torch.equal(a, generate(Uniform(), prompt, 10, Sampler(seed=4)))
