"""The n-gram family: Kneser-Ney math, counting, exactness against KenLM, ARPA I/O."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from conftest import shared_path

from lmforge.errors import CheckpointError, ConfigError, DataError
from lmforge.models.ngram import (
    KENLM_FALLBACK,
    NgramConfig,
    NgramLM,
    _radix_argsort,
    _stream,
    count_ngrams,
    count_ngrams_reference,
    kn_discounts,
)
from lmforge.tokenize import split_words

FALLBACK = NgramConfig(order=3, discount_fallback=KENLM_FALLBACK)


def read_sentences(path) -> list[list[str]]:
    text = path.read_text(encoding="utf-8")
    return split_words(text[:-1].split("\n") if text.endswith("\n") else text.split("\n"))


def arpa_entries(path) -> dict[str, tuple[float, float]]:
    """Every n-gram of an ARPA file -> (log10 prob, log10 backoff), parsed independently."""
    entries, in_section = {}, False
    for line in path.read_text(encoding="utf-8").splitlines():
        if re.fullmatch(r"\\\d+-grams:", line):
            in_section = True
        elif line.startswith("\\"):
            in_section = False
        elif in_section and line:
            fields = line.split("\t")
            entries[fields[1]] = (float(fields[0]), float(fields[2]) if len(fields) > 2 else 0.0)
    return entries


def kenlm_readme_perplexities() -> dict[str, tuple[float, float]]:
    """The perplexities that KenLM's query printed, from the reference folder's README."""
    text = shared_path("kenlm-reference", "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"\| (small\.o\d\.arpa) \| ([\d.]+) \| ([\d.]+) \|", text)
    return {name: (float(a), float(b)) for name, a, b in rows}


# -- math ----------------------------------------------------------------------------------------


def test_kn_discounts_follow_chen_goodman_eq26():
    # n1..n4 = 10, 5, 3, 2: Y = 10 / (10 + 2*5) = 0.5
    # D1 = 1 - 2*0.5*5/10 = 0.5; D2 = 2 - 3*0.5*3/5 = 1.1; D3+ = 3 - 4*0.5*2/3 = 1.6667
    assert kn_discounts(10, 5, 3, 2) == pytest.approx((0.5, 1.1, 3 - 4 / 3))


def test_kn_discounts_refuse_missing_counts():
    with pytest.raises(ValueError, match="adjusted count 2"):
        kn_discounts(10, 0, 3, 2)


def test_vectorised_counts_equal_plain_python_counts(tiny_lines):
    sentences = split_words(tiny_lines)
    word_ids = {"<unk>": 0, "<s>": 1, "</s>": 2}
    stream = _stream(sentences, word_ids, grow=True)
    vocab = list(word_ids)
    levels = count_ngrams(stream, 4, len(vocab))
    expected = count_ngrams_reference(sentences, 4)
    texts = [(w,) for w in vocab]
    for n, level in enumerate(levels, start=1):
        if n > 1:
            texts = [texts[k // len(vocab)] + (vocab[k % len(vocab)],) for k in level.keys]
        got = {t: int(c) for t, c in zip(texts, level.raw, strict=True) if c > 0}
        assert got == expected[n - 1]


def test_radix_argsort_equals_numpy_stable_argsort():
    rng = np.random.default_rng(0)
    for keys in (
        rng.integers(0, 50, 1000),  # many ties: stability shows
        rng.integers(0, 2**40, 5000),
        rng.integers(0, 2**62, 100),
        np.array([7], dtype=np.int64),
        np.zeros(0, dtype=np.int64),
    ):
        assert np.array_equal(_radix_argsort(keys), np.argsort(keys, kind="stable"))


def test_kn_probabilities_sum_to_one(tiny_lines):
    model = NgramLM.fit(split_words(tiny_lines), FALLBACK)
    words = [w for w in model.vocab if w not in ("<s>", "</s>")]
    for history in ([], ["the"], ["the", "cat"], ["a", "dog"], ["mat", "the"], ["zebra", "cat"]):
        end_logp, _ = model.token_log_probs([history])
        total = math.exp(end_logp[-1])  # p(</s> | <s> history)
        for word in words:
            logp, _ = model.token_log_probs([[*history, word]])
            total += math.exp(logp[len(history)])  # p(word | <s> history)
        assert total == pytest.approx(1.0, abs=1e-9), history


def test_oov_gets_unk_probability_plus_context_backoffs(tiny_lines):
    model = NgramLM.fit(split_words(tiny_lines), FALLBACK)
    logp, oov = model.token_log_probs([["the", "zebra"]])
    assert oov.tolist() == [False, True, False]
    the = model.word_ids["the"]
    unk = model.log_prob[0][0]
    backoffs = (
        model.log_backoff[0][the]
        + model.log_backoff[1][np.flatnonzero(model.keys[1] == 1 * model.vocab_size + the)[0]]
    )
    assert logp[1] == pytest.approx(unk + backoffs)


def test_discount_error_names_order_and_fix():
    with pytest.raises(DataError, match=r"1-grams.*--discount-fallback"):
        NgramLM.fit([["a", "b"]], NgramConfig(order=2))
    model = NgramLM.fit([["a", "b"]], NgramConfig(order=2, discount_fallback=KENLM_FALLBACK))
    assert model.discounts == [KENLM_FALLBACK, KENLM_FALLBACK]


def test_config_validates_fields():
    with pytest.raises(ConfigError, match="order"):
        NgramConfig(order=0)
    with pytest.raises(ConfigError, match="discount_fallback"):
        NgramConfig(discount_fallback=(0.5, 1.0))


def test_markers_inside_text_are_refused():
    with pytest.raises(DataError, match="<s>"):
        NgramLM.fit([["a", "<s>", "b"]], FALLBACK)


# -- ARPA ----------------------------------------------------------------------------------------


def test_arpa_round_trip_keeps_every_probability(tiny_lines, tmp_path):
    sentences = split_words(tiny_lines)
    model = NgramLM.fit(sentences, FALLBACK)
    model.save_arpa(tmp_path / "m.arpa")
    loaded = NgramLM.load_arpa(tmp_path / "m.arpa")
    test = [["the", "cat", "sat", "on", "a", "log"], ["zebra"], []]
    np.testing.assert_allclose(
        loaded.token_log_probs(test)[0], model.token_log_probs(test)[0], atol=1e-6
    )
    assert loaded.ngram_counts == model.ngram_counts


def test_arpa_errors_name_the_file(tmp_path, tiny_lines):
    with pytest.raises(CheckpointError, match="missing.arpa"):
        NgramLM.load_arpa(tmp_path / "missing.arpa")
    (tmp_path / "junk.arpa").write_text("hello\n")
    with pytest.raises(CheckpointError, match="junk.arpa.*not an ARPA"):
        NgramLM.load_arpa(tmp_path / "junk.arpa")
    NgramLM.fit(split_words(tiny_lines), FALLBACK).save_arpa(tmp_path / "m.arpa")
    lines = (tmp_path / "m.arpa").read_text().splitlines()
    (tmp_path / "cut.arpa").write_text("\n".join(lines[: len(lines) // 2]))
    with pytest.raises(CheckpointError, match="cut.arpa.*truncated"):
        NgramLM.load_arpa(tmp_path / "cut.arpa")


@pytest.mark.parametrize("order", [3, 5])
def test_arpa_equals_lmplz_output(order, tmp_path):
    reference = shared_path("kenlm-reference", f"small.o{order}.arpa")
    train = read_sentences(shared_path("kenlm-reference", "small.train.txt"))
    NgramLM.fit(train, NgramConfig(order=order)).save_arpa(tmp_path / "ours.arpa")
    ours, theirs = arpa_entries(tmp_path / "ours.arpa"), arpa_entries(reference)
    assert ours.keys() == theirs.keys()
    prob_gap = max(abs(ours[g][0] - theirs[g][0]) for g in theirs)
    backoff_gap = max(abs(ours[g][1] - theirs[g][1]) for g in theirs)
    assert prob_gap <= 1e-4 and backoff_gap <= 1e-4


@pytest.mark.parametrize("order", [3, 5])
def test_perplexity_equals_kenlm_query(order):
    train = read_sentences(shared_path("kenlm-reference", "small.train.txt"))
    test = read_sentences(shared_path("kenlm-reference", "small.test.txt"))
    with_oov, without_oov = kenlm_readme_perplexities()[f"small.o{order}.arpa"]
    result = NgramLM.fit(train, NgramConfig(order=order)).evaluate(test)
    assert result.tokens == 37810 and result.oov == 6481
    assert result.perplexity == pytest.approx(with_oov, rel=1e-4)
    assert result.perplexity_excluding_oov == pytest.approx(without_oov, rel=1e-4)
    # lmplz's own ARPA, read by lmforge, scores the same.
    loaded = NgramLM.load_arpa(shared_path("kenlm-reference", f"small.o{order}.arpa"))
    assert loaded.evaluate(test).perplexity == pytest.approx(with_oov, rel=1e-4)


def test_pip_kenlm_scores_our_arpa_like_lmforge(tmp_path):
    kenlm = pytest.importorskip("kenlm", reason="the pip kenlm module is not installed")
    train = read_sentences(shared_path("kenlm-reference", "small.train.txt"))
    test = read_sentences(shared_path("kenlm-reference", "small.test.txt"))[:200]
    model = NgramLM.fit(train, NgramConfig(order=4))
    model.save_arpa(tmp_path / "ours.arpa")
    peer = kenlm.Model(str(tmp_path / "ours.arpa"))
    test.append(["an", "unseen", "qwertyuiop", "word"])
    for sentence in test:
        theirs = [prob for prob, _, _ in peer.full_scores(" ".join(sentence))]
        ours, _ = model.token_log_probs([sentence])
        np.testing.assert_allclose(ours / math.log(10), theirs, rtol=0, atol=1e-4)
        # KenLM sums a sentence in float32: equal up to that rounding.
        peer_total = peer.score(" ".join(sentence), bos=True, eos=True)
        assert model.score(sentence) == pytest.approx(peer_total, rel=1e-6, abs=1e-4)
