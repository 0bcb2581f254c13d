"""Decoding: the one token-by-token loop, causal generation on a toy model, and the
encoder-decoders' greedy, beam, sampled and MBR decoding and n-gram blocking on a toy chain."""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lmforge.errors import ConfigError
from lmforge.nn.decoding import (
    Blocking,
    banned_tokens,
    beam_search,
    decode_tokens,
    generate,
    greedy_decode,
    length_penalty,
    mbr_select,
    sample_decode,
    sentence_bleu,
)
from lmforge.nn.sampling import Sampler
from lmforge.tokenize import BOS_ID, EOS_ID

# ---------------------------------------------------------------------------------------------
# The loop and causal generation.


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


def test_decode_tokens_passes_what_was_written_and_stops_after_eos():
    seen = []

    def step(inputs, state):  # scores favour (newest input + 1)
        scores = torch.zeros(inputs.shape[0], 10)
        scores[torch.arange(inputs.shape[0]), (inputs[:, -1] + 1) % 10] = 1.0
        return scores, state + 1

    def choose(scores, written):
        seen.append(written.tolist())
        return scores.argmax(dim=-1)

    out = decode_tokens(step, torch.tensor([[5, 6], [2, 7]]), 0, 6, choose, eos_id=9)
    assert out.tolist() == [[7, 8, 9], [8, 9, 9]]  # row 2 ended first, then padded
    assert seen == [[[], []], [[7], [8]], [[7, 8], [8, 9]]]


# ---------------------------------------------------------------------------------------------
# Encoder-decoders on a toy chain.


@dataclass
class _ChainState:
    last: torch.Tensor  # (B,) the newest token


class _ChainModel:
    """A decoder whose next-token distribution depends on the last token only (ids: A=5, B=6,
    C=7): after <s> A .6 / B .4; after A: C .5, </s> .3, B .2; after B or C: </s>."""

    config = SimpleNamespace(max_seq_len=6)  # the longest output
    table = {BOS_ID: {5: 0.6, 6: 0.4}, 5: {7: 0.5, EOS_ID: 0.3, 6: 0.2}, 6: {EOS_ID: 1.0}}

    def start_decoding(self, source):
        return _ChainState(torch.full((source.shape[0],), BOS_ID))

    def decode_step(self, tokens, state):
        probs = torch.full((len(tokens), 8), 1e-9)
        for row, token in enumerate(tokens.tolist()):
            for nxt, p in self.table.get(token, {EOS_ID: 1.0}).items():
                probs[row, nxt] = p
        return probs.log(), _ChainState(tokens)

    def reorder_state(self, state, index):
        return _ChainState(state.last[index])


def test_beam_search_finds_the_more_likely_target_that_greedy_misses():
    model, source = _ChainModel(), torch.tensor([[5, EOS_ID]])
    # greedy: A (.6), C (.5), </s> (1) -> p = .3; beam 2 also keeps B (.4), then </s> -> p = .4
    # (with alpha 0.6: log .4 / (7/6)^.6 = -0.835 beats log .3 / (8/6)^.6 = -1.013).
    assert greedy_decode(model, source) == [[5, 7]]
    assert beam_search(model, source, beam_size=2) == [[6]]
    assert beam_search(model, source, beam_size=2, alpha=0.0) == [[6]]


def test_banned_tokens_by_hand():
    assert banned_tokens([5, 6, 5], 1) == {5, 6}  # every token seen
    assert banned_tokens([5, 6, 5], 2) == {6}  # "5 6" was written: after 5, not 6 again
    assert banned_tokens([5, 6, 5, 9], 3) == set() and banned_tokens([5, 6], 3) == set()
    assert banned_tokens([5, 6, 5], 3) == set() and banned_tokens([5, 6, 7, 5, 6], 3) == {7}
    assert banned_tokens([3, 5], 2, within=[7, 8, 5, 9]) == {9}  # the source's "5 9"
    assert banned_tokens([], 1, within=[7, 8]) == {7, 8}
    assert banned_tokens([4], 1, within=[EOS_ID, 4]) == {4}  # </s> is never banned
    assert banned_tokens([4, 4], 0) == set()
    with pytest.raises(ConfigError, match="no_repeat_ngram"):
        Blocking(no_repeat_ngram=-1)


class _RepeatingChain(_ChainModel):
    """After A, A again is most likely (.7; C .2, </s> .1): greedy writes A A A A A A."""

    table = {BOS_ID: {5: 0.6, 6: 0.4}, 5: {5: 0.7, 7: 0.2, EOS_ID: 0.1}, 6: {EOS_ID: 1.0}}


def test_blocking_stops_repeats_in_every_decoder():
    model, source = _RepeatingChain(), torch.tensor([[6, EOS_ID]])
    assert greedy_decode(model, source) == [[5] * 6]  # to max_seq_len
    own, both = Blocking(no_repeat_ngram=1), Blocking(1, source_no_repeat_ngram=1)
    assert greedy_decode(model, source, blocking=own) == [[5, 7]]
    assert greedy_decode(model, torch.tensor([[5, EOS_ID]]), blocking=both) == [[6]]
    # beam 2: [6] would be best (.4) but copies the source; then A C (.12) beats A (.06)
    assert beam_search(model, source, beam_size=2) == [[6]]
    assert beam_search(model, source, beam_size=2, blocking=both) == [[5, 7]]
    # samples: after A, A is banned and the rest renormalised: C 2/3, </s> 1/3
    draw = torch.Generator().manual_seed(0)
    samples = sample_decode(model, source, 3000, generator=draw, blocking=own)[0]
    assert all(len(set(s)) == len(s) for s in samples)
    for key, p in {(5, 7): 0.6 * 2 / 3, (5,): 0.6 / 3, (6,): 0.4}.items():
        assert samples.count(list(key)) / 3000 == pytest.approx(p, abs=0.03)


def test_sentence_bleu_by_hand():
    assert sentence_bleu([1, 2, 3, 4], [1, 2, 3, 4]) == pytest.approx(1.0)
    assert sentence_bleu([1, 2], [3, 4]) == 0.0 and sentence_bleu([], [3]) == 0.0
    # p1 = 3/4; 2-grams 2 of 3 -> 3/4; 3-grams 1 of 2 -> 2/3; 4-grams 0 of 1 -> 1/2 (add one).
    want = math.exp((math.log(3 / 4) + math.log(3 / 4) + math.log(2 / 3) + math.log(1 / 2)) / 4)
    assert sentence_bleu([1, 2, 3, 4], [1, 2, 3, 5]) == pytest.approx(want)
    # A shorter hypothesis pays the brevity penalty exp(1 - 4/2); matches are clipped.
    short = math.exp(1 - 4 / 2) * math.exp((0 + math.log(2 / 2) + 0 + 0) / 4)
    assert sentence_bleu([1, 2], [1, 2, 3, 4]) == pytest.approx(short)
    assert sentence_bleu([7, 7, 7], [7, 8, 9], max_order=1) == pytest.approx(1 / 3)


def test_mbr_picks_what_the_samples_agree_on_not_the_mode():
    # The most frequent sample is [1, 2, 3, 4] (twice), but three others share a 4-gram: the
    # expected BLEU against all the samples is highest for one of them.
    samples = [[1, 2, 3, 4], [1, 2, 3, 4], [5, 6, 7, 8, 9], [5, 6, 7, 8, 10], [5, 6, 7, 8, 11]]
    assert mbr_select(samples) == [5, 6, 7, 8, 9]  # ties: the first
    assert mbr_select([[4, 5], [4, 5], [6]]) == [4, 5]
    assert mbr_select([]) == []


def test_sampling_follows_the_model_and_its_seed():
    model, source = _ChainModel(), torch.tensor([[5, EOS_ID]])
    draw = torch.Generator().manual_seed(0)
    samples = sample_decode(model, source, 4000, generator=draw)[0]
    assert len(samples) == 4000
    share = {key: samples.count(list(key)) / 4000 for key in [(5, 7), (5,), (5, 6), (6,)]}
    # p(A C) = .6 * .5, p(A) = .6 * .3, p(A B) = .6 * .2, p(B) = .4
    for key, p in {(5, 7): 0.3, (5,): 0.18, (5, 6): 0.12, (6,): 0.4}.items():
        assert share[key] == pytest.approx(p, abs=0.03)
    again = sample_decode(model, source, 4000, generator=torch.Generator().manual_seed(0))[0]
    assert again == samples
    with pytest.raises(ConfigError, match="num_samples"):
        sample_decode(model, source, 0)


def test_length_penalty_is_gnmt_eq_14():
    assert length_penalty(7, 0.6) == pytest.approx(2**0.6)  # ((5 + 7) / 6)^0.6
    assert length_penalty(3, 0.0) == 1.0
