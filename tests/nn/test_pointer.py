"""The copy head: the pointer sentinel mixture against a readable reference, and what it is for (a
tiny GPT with one copies a string it has just read; without one, in the same steps, it does not)."""

from __future__ import annotations

import math

import torch

from lmforge.models.gpt import GPT, GPTConfig
from lmforge.nn.pointer import CopyHead, copy_mixture, copy_target_mixture
from lmforge.nn.sampling import Sampler


def reference_mixture(vocab_probs, weights, candidates):
    """p(v) = a_sentinel p_vocab(v) + sum_s a_s [candidate_s = v], one position, in plain loops."""
    probs = [weights[0] * p for p in vocab_probs]
    for weight, token in zip(weights[1:], candidates, strict=True):
        probs[token] += weight
    return probs


def test_copy_mixture_is_the_sentinel_weighted_softmax_plus_the_copied_weights():
    torch.manual_seed(0)
    vocab, span = 7, 5
    vocab_log_probs = torch.randn(2, 3, vocab).log_softmax(-1)
    log_weights = torch.randn(2, 3, 1 + span).log_softmax(-1)
    candidates = torch.randint(0, vocab, (2, 1, span))  # one row of candidates per sequence
    mixed = copy_mixture(vocab_log_probs, log_weights, candidates)
    torch.testing.assert_close(mixed.exp().sum(-1), torch.ones(2, 3))
    for b in range(2):
        for t in range(3):
            expected = reference_mixture(
                vocab_log_probs[b, t].exp().tolist(),
                log_weights[b, t].exp().tolist(),
                candidates[b, 0].tolist(),
            )
            torch.testing.assert_close(mixed[b, t].exp(), torch.tensor(expected))
    targets = torch.randint(0, vocab, (2, 3))
    at_targets = copy_target_mixture(
        vocab_log_probs.gather(-1, targets[..., None])[..., 0], log_weights, candidates, targets
    )
    torch.testing.assert_close(at_targets, mixed.gather(-1, targets[..., None])[..., 0])


def test_the_head_points_at_earlier_positions_only_and_starts_on_the_softmax():
    torch.manual_seed(0)
    head = CopyHead(d_model=8, copy_dim=4, max_seq_len=16)
    for linear in (head.query, head.key, head.sentinel):  # as GPT initialises it
        torch.nn.init.normal_(linear.weight, std=0.02)
    head.reset_sentinel()
    hidden = torch.randn(1, 16, 8)
    allowed = torch.ones(16, 15).tril(-1).bool()[None]  # position t may point at s < t
    weights = head.log_weights(hidden, head.key(hidden[:, :-1]), allowed).exp()  # (1, 16, 16)
    assert weights[0, 0, 1:].sum() == 0 and weights[0, 0, 0] == 1  # nothing to point at yet
    assert torch.all(weights[0, 5, 6:] == 0)  # never at itself or later
    # a new head leaves about e^2 / (e^2 + 1) of the weight on the softmax at a full context
    assert weights[0, -1, 0] > math.exp(2) / (math.exp(2) + 1) - 0.05


def copy_batch(generator, rows=32, length=8, vocab=20):
    """Rows of a start token 1, ``length`` random tokens (2 .. vocab - 1), the separator 0 and
    the same tokens again."""
    first = torch.randint(2, vocab, (rows, length), generator=generator)
    start, separator = torch.ones(rows, 1, dtype=torch.long), torch.zeros(rows, 1, dtype=torch.long)
    return torch.cat([start, first, separator, first], dim=1)


def test_a_trained_copy_head_is_what_writes_the_copy():
    """Trained on strings written twice, the model copies the second, and the copy head's weight
    on positions that hold the right token carries nearly all of its probability there."""
    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=20, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_seq_len=18,
        positions="rotary", copy_dim=16,
    )  # fmt: skip
    model = GPT(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(1)
    second = torch.zeros(17, dtype=torch.bool)
    second[9:] = True  # the loss on the copy only: predicting tokens 10 .. 17 from 0 .. 16
    for _ in range(150):
        ids = copy_batch(generator)
        loss = -model.selected_log_probs(ids[:, :-1], ids[:, 1:], second.expand(32, 17)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    ids = copy_batch(torch.Generator().manual_seed(2), rows=64)
    written = model.generate(ids[:, :10], 8, Sampler(temperature=0.0))[:, 10:]
    assert float((written == ids[:, 10:]).float().mean()) > 0.9
    with torch.no_grad():
        hidden, _ = model.hidden_states(ids[:, :-1])
        log_weights, candidates = model._copy_window(hidden, ids[:, :-1])
    hits = candidates == ids[:, 1:, None]  # (B, T, T - 1): positions that copy the target
    pointed = (log_weights[..., 1:].exp() * hits).sum(-1)  # (B, T)
    assert float(pointed[:, 9:].mean()) > 0.8


def test_the_copy_head_copies_no_skipped_token():
    """With ``copy_skip``, the copy head puts no weight on the positions followed by a skipped
    token, a skipped token's probability is the sentinel's share of the softmax's, and
    generation step by step reads the same mixture as a window read at once."""
    torch.manual_seed(0)
    sizes = dict(vocab_size=20, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_seq_len=18)
    model = GPT(GPTConfig(**sizes, positions="rotary", copy_dim=16, copy_skip=[3, 4])).eval()
    ids = copy_batch(torch.Generator().manual_seed(2), rows=4)
    ids[:, 2], ids[:, 5], ids[:, 11], ids[:, 14] = 3, 4, 3, 4  # skipped tokens in the context
    with torch.no_grad():
        hidden, _ = model.hidden_states(ids)
        log_weights, candidates = model._copy_window(hidden, ids)
        mixture, _ = model(ids)
        vocab = model.head.logits(hidden).log_softmax(-1)
        stepped, _ = model.step(ids)
    skipped = torch.isin(candidates, torch.tensor([3, 4])).expand_as(log_weights[..., 1:])
    assert skipped.any() and float(log_weights[..., 1:].exp()[skipped].sum()) == 0.0
    assert torch.allclose(log_weights.exp().sum(-1), torch.ones(4, 18))
    for token in (3, 4):
        alone = log_weights[..., 0] + vocab[..., token]
        torch.testing.assert_close(mixture[..., token], alone)
    assert float(log_weights[..., 1:].exp()[~skipped].sum()) > 1.0  # the rest is still copied
    torch.testing.assert_close(stepped, mixture[:, -1], atol=1e-5, rtol=1e-5)
