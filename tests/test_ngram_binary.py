"""The binary n-gram format: the same model as its ARPA file, loaded without parsing."""

import json

import numpy as np
import pytest
from conftest import TINY_TEXT, shared_path

from lmforge.arpa import find_keys
from lmforge.errors import CheckpointError
from lmforge.folders import load_model
from lmforge.lmb import find_slotted, is_binary, read_binary, slot_table
from lmforge.models.ngram import NgramConfig, NgramLM
from lmforge.tokenize import tokenize_lines


def same_model(a: NgramLM, b: NgramLM, sentences) -> None:
    assert a.vocab == b.vocab and a.order == b.order
    for n in range(a.order):
        assert np.array_equal(a.keys[n], b.keys[n])
        assert np.array_equal(a.log_prob[n], b.log_prob[n])
    for n in range(a.order - 1):
        assert np.array_equal(a.log_backoff[n], b.log_backoff[n])
    assert np.array_equal(a.token_log_probs(sentences)[0], b.token_log_probs(sentences)[0])


def test_a_fitted_model_round_trips_exactly(tmp_path):
    sentences = tokenize_lines(TINY_TEXT, None)
    model = NgramLM.fit(sentences, NgramConfig(4, discount_fallback=(0.5, 1.0, 1.5)))
    model.save_binary(tmp_path / "m.lmb")
    assert is_binary(tmp_path / "m.lmb") and not is_binary(tmp_path / "nothing")
    loaded = NgramLM.load_binary(tmp_path / "m.lmb")
    same_model(model, loaded, sentences + [["a", "zebra", "sat"]])
    assert not loaded.keys[0].flags.writeable  # views of the mapped file, not copies
    loaded.slots[1] = None  # an order without a hash table (too wide) is searched instead
    same_model(model, loaded, sentences + [["a", "zebra", "sat"]])


def test_the_kenlm_reference_arpa_scores_the_same_through_the_binary(tmp_path, run_cli):
    arpa = shared_path("kenlm-reference", "small.o5.arpa")
    text = shared_path("kenlm-reference", "small.test.txt")
    code, out, _ = run_cli("ngram", "binary", arpa, tmp_path / "small.lmb")
    assert code == 0 and "wrote" in out
    sentences = tokenize_lines(text.read_text().splitlines(), None)
    same_model(NgramLM.load_arpa(arpa), NgramLM.load_binary(tmp_path / "small.lmb"), sentences)
    results = []
    for model in (arpa, tmp_path / "small.lmb"):
        code, out, _ = run_cli("ngram", "eval", model, "--text", text, "--json")
        results.append(json.loads(out))
    assert code == 0 and results[0] == results[1]
    model, tokenizer, record = load_model(tmp_path / "small.lmb")
    assert record["family"] == "ngram" and tokenizer is None and model.order == 5


def test_damaged_or_foreign_files_are_refused_by_name(tmp_path, run_cli):
    model = NgramLM.fit(
        tokenize_lines(TINY_TEXT, None), NgramConfig(2, discount_fallback=(0.5, 1, 1.5))
    )
    model.save_binary(tmp_path / "m.lmb")
    data = (tmp_path / "m.lmb").read_bytes()
    (tmp_path / "cut.lmb").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.lmb: a damaged binary model"):
        read_binary(tmp_path / "cut.lmb")
    (tmp_path / "other.lmb").write_bytes(b"not a model at all")
    with pytest.raises(CheckpointError, match="not an lmforge binary"):
        read_binary(tmp_path / "other.lmb")
    code, _, err = run_cli("ngram", "eval", tmp_path / "cut.lmb", "--text", tmp_path / "m.lmb")
    assert code == 2 and "damaged" in err and "Traceback" not in err


def test_a_folder_with_a_tokenizer_is_refused(tmp_path, run_cli):
    tiny_file = tmp_path / "tiny.txt"
    tiny_file.write_text("\n".join(TINY_TEXT * 3) + "\n", encoding="utf-8")
    folder = tmp_path / "chars"
    code, _, _ = run_cli(
        "ngram",
        "train",
        "--text",
        tiny_file,
        "--order",
        "2",
        "--tokenizer",
        "char",
        "--discount-fallback",
        "--out",
        folder,
        "--quiet",
    )
    assert code == 0
    code, _, err = run_cli("ngram", "binary", folder, tmp_path / "x.lmb")
    assert code == 2 and "char tokenizer" in err and not (tmp_path / "x.lmb").exists()


def test_hash_table_lookups_equal_the_binary_search():
    rng = np.random.default_rng(0)
    for count in (0, 1, 7, 5000):
        keys = np.unique(rng.integers(0, 10**9, count))
        queries = np.concatenate([keys, rng.integers(0, 10**9, 3000), keys[::3] + 1])
        rng.shuffle(queries)
        table = slot_table(keys)
        assert np.array_equal(find_slotted(keys, table, queries), find_keys(keys, queries))
    # keys and indices that do not fit in 63 bits together get no table (a binary search)
    assert slot_table(np.array([1, 2**61, 2**62])) is None
