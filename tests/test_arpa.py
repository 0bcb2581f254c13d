"""ARPA files: the vectorised writer against the readable one, and its number format."""

import numpy as np
import pytest
from conftest import TINY_TEXT, shared_path

from lmforge.arpa import arpa_piece, arpa_text_reference, format_g7, vocab_tables, write_arpa
from lmforge.models.ngram import KENLM_FALLBACK, LN10, NgramConfig, NgramLM
from lmforge.tokenize import tokenize_lines

EDGES = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    -99.0,
    1234567.0,
    -9999999.4,  # the last fixed-point value with 7 digits
    9999999.5,  # rounds to 1e7: exponent notation
    999999.95,  # rounds up to 1000000
    0.99999995,  # rounds up to 1
    1e-4,
    -1e-4,
    9.9999995e-5,  # rounds up to 0.0001: fixed point again
    9.99999949e-5,  # stays below: exponent notation
    1e-5,
    0.5,
    -0.1,
    0.125,
    -2.5e-7,
    1e300,
    5e-324,
    float("nan"),
    float("inf"),
    float("-inf"),
]


def written(model: NgramLM, path) -> bytes:
    model.save_arpa(path)
    return path.read_bytes()


def reference(model: NgramLM) -> bytes:
    log10_prob = [p / LN10 for p in model.log_prob]
    log10_backoff = [b / LN10 for b in model.log_backoff]
    return arpa_text_reference(model.vocab, model.keys, log10_prob, log10_backoff).encode()


def test_format_g7_equals_python_format():
    rng = np.random.default_rng(0)
    values = np.concatenate(
        [
            EDGES,
            -rng.exponential(2.0, 20000),  # log10 probabilities
            rng.normal(0.0, 1e-3, 5000),  # backoffs near 0
            10.0 ** rng.uniform(-7, 9, 20000) * rng.choice([-1, 1], 20000),  # every exponent
            np.round(rng.normal(0.0, 3.0, 5000), 6),  # ties on the 7th digit
        ]
    )
    assert format_g7(values) == [f"{v:.7g}" for v in values.tolist()]


def test_vectorised_arpa_is_the_reference_text_byte_for_byte(tmp_path):
    lines = [*TINY_TEXT, "naïve café 春眠 不覺曉", "the café was on the mat"]
    for order in (1, 2, 4):
        config = NgramConfig(order=order, discount_fallback=KENLM_FALLBACK)
        model = NgramLM.fit(tokenize_lines(lines, None), config)
        assert written(model, tmp_path / f"o{order}.arpa") == reference(model), order


@pytest.mark.parametrize("piece", [1, 7, 1000])
def test_pieces_written_from_the_orders_below_are_the_whole_file(piece, tmp_path):
    # the out-of-core and Dask writers hold no order whole: each piece rebuilds its contexts
    lines = [*TINY_TEXT, "naïve café 春眠 不覺曉", "the café was on the mat"]
    model = NgramLM.fit(
        tokenize_lines(lines, None), NgramConfig(order=4, discount_fallback=KENLM_FALLBACK)
    )
    log10_prob = [p / LN10 for p in model.log_prob]
    log10_backoff = [*(b / LN10 for b in model.log_backoff), None]
    tables = vocab_tables(model.vocab)
    body = b"".join(
        arpa_piece(
            tables,
            model.keys,
            n,
            begin,
            begin + piece,
            log10_prob[n - 1][begin : begin + piece],
            None if n == 4 else log10_backoff[n - 1][begin : begin + piece],
        )
        for n in range(1, 5)
        for begin in range(0, len(model.keys[n - 1]), piece)
    )
    whole = written(model, tmp_path / "whole.arpa")
    lines_only = b"".join(line + b"\n" for line in whole.split(b"\n") if b"\t" in line)
    assert body == lines_only and len(body) > 1000


@pytest.mark.parametrize("order", [3, 5])
def test_kenlm_arpa_rewritten_is_the_reference_text(order, tmp_path):
    # lmplz's own values (read back from its file) go through both writers alike
    model = NgramLM.load_arpa(shared_path("kenlm-reference", f"small.o{order}.arpa"))
    assert written(model, tmp_path / "again.arpa") == reference(model)


def test_an_order_without_ngrams_is_written_as_the_reference(tmp_path):
    vocab = ["<unk>", "<s>", "</s>", "a"]
    keys = [np.arange(4), np.array([1 * 4 + 3]), np.zeros(0, np.int64), np.zeros(0, np.int64)]
    probs = [np.array([-1.5, 0.0, -0.25, -0.75]), np.array([-0.5]), np.zeros(0), np.zeros(0)]
    backoffs = [np.array([0.0, -0.3, 0.0, 0.0]), np.array([-0.1]), np.zeros(0)]
    write_arpa(tmp_path / "gap.arpa", vocab, keys, probs, backoffs)
    expected = arpa_text_reference(vocab, keys, probs, backoffs).encode()
    assert (tmp_path / "gap.arpa").read_bytes() == expected


def test_a_word_with_nul_takes_the_readable_path(tmp_path):
    vocab = ["<unk>", "<s>", "</s>", "a\0b"]
    keys = [np.arange(4, dtype=np.int64)]
    probs = [np.array([-1.5, 0.0, -0.25, -0.75])]
    write_arpa(tmp_path / "nul.arpa", vocab, keys, probs, [])
    expected = arpa_text_reference(vocab, keys, probs, []).encode()
    assert (tmp_path / "nul.arpa").read_bytes() == expected
