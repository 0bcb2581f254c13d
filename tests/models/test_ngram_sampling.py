"""Next-word distributions of the n-gram model and sampling text from it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import shared_path

from lmforge.errors import DataError
from lmforge.models.ngram import KENLM_FALLBACK, NgramConfig, NgramLM
from lmforge.tokenize import split_words

HISTORIES = (
    [],
    ["the"],
    ["the", "cat"],
    ["a", "dog", "sat"],
    ["the", "cat", "saw", "the", "dog", "on"],  # longer than any order
    ["zebra"],  # out of vocabulary
    ["the", "zebra", "sat"],
)


def fit(lines: list[str], order: int) -> NgramLM:
    config = NgramConfig(order=order, discount_fallback=KENLM_FALLBACK)
    return NgramLM.fit(split_words(lines), config)


def log_probs_one_by_one(model: NgramLM, history: list[str]) -> np.ndarray:
    """p(w | <s> history) for every w through token_log_probs (the reference path)."""
    expected = np.full(model.vocab_size, -np.inf)
    for index, word in enumerate(model.vocab):
        if word == "</s>":
            logp, _ = model.token_log_probs([history])
            expected[index] = logp[-1]
        elif word != "<s>":
            logp, _ = model.token_log_probs([[*history, word]])
            expected[index] = logp[len(history)]
    return expected


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_next_log_probs_agree_with_token_log_probs(tiny_lines, order):
    model = fit(tiny_lines, order)
    for history in HISTORIES:
        got = model.next_log_probs(history)
        np.testing.assert_allclose(got, log_probs_one_by_one(model, history), rtol=0, atol=1e-12)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_next_log_probs_sum_to_one(tiny_lines, order):
    model = fit(tiny_lines, order)
    for history in HISTORIES:
        logp = model.next_log_probs(history)
        assert logp.shape == (model.vocab_size,)
        assert logp[model.word_ids["<s>"]] == -np.inf
        assert np.exp(logp).sum() == pytest.approx(1.0, abs=1e-9), history


def test_next_log_probs_of_a_kenlm_arpa_sum_to_one():
    model = NgramLM.load_arpa(shared_path("kenlm-reference", "small.o3.arpa"))
    for history in ([], ["the"], ["of", "the"]):
        # ARPA files keep 7 significant digits, so the sum is 1 only to about 1e-5
        assert np.exp(model.next_log_probs(history)).sum() == pytest.approx(1.0, abs=1e-4)


def test_next_log_probs_refuse_sentence_markers(tiny_lines):
    model = fit(tiny_lines, 2)
    with pytest.raises(DataError, match="<s>"):
        model.next_log_probs(["the", "</s>"])


def test_generate_returns_vocabulary_words_until_the_end(tiny_lines):
    model = fit(tiny_lines, 3)
    for seed in range(5):
        words = model.generate(["the"], 20, seed=seed)
        assert len(words) <= 20
        assert all(w in model.word_ids and w not in ("<s>", "</s>") for w in words)


def test_generate_is_reproducible_with_a_seed(tiny_lines):
    model = fit(tiny_lines, 3)
    runs = [model.generate([], 15, temperature=1.5, seed=7) for _ in range(2)]
    assert runs[0] == runs[1]


def test_greedy_generation_follows_the_argmax(tiny_lines):
    model = fit(tiny_lines, 3)
    words = model.generate(["the"], 8, temperature=0.0)
    history = ["the"]
    for word in words:
        assert model.vocab[int(np.argmax(model.next_log_probs(history)))] == word
        history.append(word)
    assert model.generate(["the"], 8, top_k=1, seed=3) == words


def test_generate_stops_at_the_end_of_sentence(tiny_lines):
    model = fit(tiny_lines, 2)
    lengths = [len(model.generate([], 200, seed=seed)) for seed in range(10)]
    assert max(lengths) < 200  # every sample ended with </s> long before the limit
    assert model.generate(["the"], 0) == []


def test_hand_computed_unigram_distribution():
    # order 1 on "a a b": adjusted unigram counts are raw counts (highest order):
    # a 2, b 1, </s> 1 (<unk>, <s> get 0); D = fallback (0.5, 1.0, 1.5);
    # denominator 4, gamma = (1.0 + 0.5 + 0.5) / 4 = 0.5, uniform 1/4 over <unk> a b </s>:
    # p(a) = (2 - 1)/4 + 0.5/4 = 0.375, p(b) = p(</s>) = 0.5/4 + 0.5/4 = 0.25, p(<unk>) = 0.125
    model = NgramLM.fit([["a", "a", "b"]], NgramConfig(order=1, discount_fallback=KENLM_FALLBACK))
    probs = dict(zip(model.vocab, np.exp(model.next_log_probs(["b"])), strict=True))
    expected = {"<unk>": 0.125, "<s>": 0.0, "</s>": 0.25, "a": 0.375, "b": 0.25}
    assert probs == pytest.approx(expected)
    assert math.isinf(model.next_log_probs([])[model.word_ids["<s>"]])
