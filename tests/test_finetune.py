"""Fine-tuning a pretrained BERT with exactly one new output layer: the parameter count,
learning held-out topics and tags, metrics, the folder round trip, bad data, and the CLI."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from bert_topics import TOPICS, topic_documents, topic_examples, topic_words
from conftest import one_thread
from torch import nn

from lmforge.data.labelled import encode_examples, read_examples
from lmforge.errors import CheckpointError, DataError
from lmforge.finetune import finetune, finetune_config, load_classifier, predict
from lmforge.folders import save_model
from lmforge.metrics import macro_f1
from lmforge.models.bert import BERT, BertConfig
from lmforge.models.heads import SequenceClassifier, TokenClassifier
from lmforge.tokenize import train_tokenizer
from lmforge.train.config import TrainConfig
from lmforge.train.tasks import ClassificationTask
from lmforge.workflows import train_family

TINY = dict(d_model=64, n_layers=1, n_heads=4, d_ff=128, max_seq_len=32, dropout=0.0)
FAST = dict(batch_size=16, lr=3e-3, schedule="constant", seed=0)
NAMES = list(TOPICS)[:3]  # three topics: chance is 1/3


@pytest.fixture(scope="module")
def encoder():
    """(a BERT pretrained for 100 steps on topic documents, its tokenizer)."""
    train = topic_documents(36, 6, seed=1, n_topics=3)
    tokenizer = train_tokenizer("wordpiece", train, vocab_size=200)
    config = TrainConfig(batch_size=32, max_steps=100, lr=3e-3, schedule="constant", seed=0)
    torch.manual_seed(0)
    with one_thread():
        model, _, _ = train_family("bert", train, None, tokenizer, TINY, config, progress=False)
    return model, tokenizer


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_one_linear_layer_is_the_only_new_part():
    bert = BERT(BertConfig(vocab_size=50, **TINY))
    before = bert.num_parameters()
    for cls in (SequenceClassifier, TokenClassifier):
        model = cls(bert, 5)
        assert model.num_parameters() == before + 64 * 5 + 5  # W (n_labels x d_model) and b
        new = [m for name, m in model.named_modules() if not name.startswith("encoder")]
        assert sum(isinstance(m, nn.Linear) for m in new) == 1
        assert all(not list(m.parameters(recurse=False)) for m in new if m is not model.classifier)


def test_sequence_classifier_reads_the_pooled_cls_vector():
    torch.manual_seed(0)
    bert = BERT(BertConfig(vocab_size=50, **TINY)).eval()
    model = SequenceClassifier(bert, 3).eval()
    ids = torch.randint(5, 50, (2, 7))
    expected = model.classifier(bert(ids).pooled)
    torch.testing.assert_close(model(ids), expected)
    assert TokenClassifier(bert, 4).eval()(ids).shape == (2, 7, 4)


def test_finetuning_learns_held_out_topics_and_round_trips(encoder, tmp_path):
    bert, tokenizer = encoder
    train, held_out = topic_examples(60, seed=3, n_topics=3), topic_examples(60, 4, n_topics=3)
    config = TrainConfig(max_steps=40, eval_interval=20, **FAST)
    model, result, metrics = finetune(
        copy.deepcopy(bert),
        tokenizer,
        train,
        held_out,
        "sequence",
        config,
        out_dir=tmp_path / "tuned",
        base="tiny",
        progress=False,
    )
    # seeds 0-3 all reached accuracy 1.0 on the 60 held-out sentences by step 20
    assert metrics["valid_accuracy"] > 0.8 and metrics["valid_macro_f1"] > 0.8
    assert result.steps == 40
    trainable = {n.split(".")[1] for n, p in model.named_parameters() if p.requires_grad}
    assert "mlm_head" not in trainable and "nsp_head" not in trainable and "pooler" in trainable
    loaded, loaded_tokenizer, meta = load_classifier(tmp_path / "tuned")
    assert meta["task"] == "sequence" and meta["base"] == "tiny"
    assert meta["labels"] == sorted(NAMES) and meta["family"] == "bert"
    texts = [r["text"] for r in held_out[:12]]
    assert predict(loaded, loaded_tokenizer, meta["labels"], texts) == predict(
        model, tokenizer, meta["labels"], texts
    )
    assert predict(model, tokenizer, meta["labels"], texts) == [r["label"] for r in held_out[:12]]


def tagged(n, seed):
    """Token examples: every topic word is tagged with its topic, other words with "-"."""
    tags = {w: t for t in NAMES for part in topic_words(t) for w in part}
    return [
        {"tokens": r["text"].split(), "labels": [tags.get(w, "-") for w in r["text"].split()]}
        for r in topic_examples(n, seed, n_topics=3)
    ]


def test_token_classification_learns_tags(encoder):
    bert, tokenizer = encoder
    config = TrainConfig(max_steps=40, eval_interval=40, **FAST)
    model, _, metrics = finetune(
        copy.deepcopy(bert),
        tokenizer,
        tagged(60, 5),
        tagged(30, 6),
        "token",
        config,
        progress=False,
    )
    # 4 tags (3 topics and "-"); seeds 0, 1, 2 all reached accuracy 1.0
    assert metrics["valid_accuracy"] > 0.9 and metrics["valid_macro_f1"] > 0.8
    assert not any(p.requires_grad for p in model.encoder.pooler.parameters())  # unused


def test_a_frozen_encoder_stays_as_it_was(encoder):
    bert, tokenizer = encoder
    frozen = copy.deepcopy(bert)
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    config = TrainConfig(max_steps=3, eval_interval=3, **FAST)
    model, _, _ = finetune(
        frozen,
        tokenizer,
        topic_examples(20, 1, n_topics=3),
        None,
        "sequence",
        config,
        freeze_encoder=True,
        progress=False,
    )
    assert all(torch.equal(before[k], v) for k, v in frozen.state_dict().items())
    assert model.classifier.weight.abs().sum() > 0


def test_words_are_labelled_at_their_first_sub_token():
    lines = ["the cat sat", "two dogs sat", "a dog sat"]
    tokenizer = train_tokenizer("wordpiece", lines, vocab_size=60)
    records = [{"tokens": ["the", "cats", "sat"], "labels": ["x", "y", "x"]}]
    data = encode_examples(records, "token", tokenizer, ["x", "y"], 32)
    pieces = [tokenizer.encode(w, markers=False) for w in ("the", "cats", "sat")]
    assert len(pieces[1]) > 1  # "cats" is split into sub-tokens
    row = [tokenizer.bos_id, *pieces[0], *pieces[1], *pieces[2], tokenizer.eos_id]
    expected = [-100, 0, 1] + [-100] * (len(pieces[1]) - 1) + [0, -100]
    assert data.rows == [row] and data.targets == [expected]


def test_macro_f1_golden_values():
    gold, predicted = torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([0, 1, 1, 1, 2, 0])
    # F1 = 2tp / (2tp + fp + fn): class 0 2/4, class 1 4/5, class 2 2/3
    assert macro_f1(gold, predicted) == pytest.approx((2 / 4 + 4 / 5 + 2 / 3) / 3)
    # a class only predicted counts 0 (as scikit-learn's f1_score(average="macro"))
    assert macro_f1(torch.tensor([0, 0]), torch.tensor([0, 1])) == pytest.approx((2 / 3 + 0) / 2)
    assert macro_f1(torch.tensor([0, 0]), torch.tensor([0, 0])) == 1.0


def test_classification_batches_go_through_every_example_each_epoch():
    tokenizer = train_tokenizer("wordpiece", ["a b c d"], vocab_size=40)
    records = [{"text": "a " * (i + 1), "label": i % 2} for i in range(10)]
    data = encode_examples(records, "sequence", tokenizer, [0, 1], 32)
    task = ClassificationTask(data, None, tokenizer.pad_id, batch_size=5, seed=1)
    lengths = [int(n) for step in (0, 1) for n in task.batch(step)[0][1].sum(1)]
    assert sorted(lengths) == [n + 2 for n in range(1, 11)]  # each example once, with markers
    again = ClassificationTask(data, None, tokenizer.pad_id, batch_size=5, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(task.batch(3)[0], again.batch(3)[0], strict=True))


def test_default_schedule_is_three_epochs_with_warmup():
    config = finetune_config(100, {"batch_size": 16})
    assert config.max_steps == 3 * 7 and config.warmup_steps == 2 and config.lr == 5e-5
    assert finetune_config(100, {"max_steps": 5}).max_steps == 5


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"text": "a b"}', 'no field "label"'),
        ('{"label": "x"}', 'no string field "text"'),
        ('{"text": "a", "label": [1]}', "not a string or an integer"),
        ("{not json", "invalid JSON"),
    ],
)
def test_bad_examples_name_the_line(tmp_path, line, message):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "fine", "label": "x"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=f"line 2: .*{message}"):
        read_examples(path, "sequence")


def test_token_examples_need_one_label_per_token(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"tokens": ["a", "b"], "labels": ["x"]}])
    with pytest.raises(DataError, match="2 tokens but 1 labels"):
        read_examples(path, "token")


def test_an_evaluation_label_must_be_a_training_label():
    tokenizer = train_tokenizer("wordpiece", ["a b"], vocab_size=40)
    with pytest.raises(DataError, match='label "z" was not in the training data'):
        encode_examples([{"text": "a", "label": "z"}], "sequence", tokenizer, ["x", "y"], 16)


def test_loading_a_plain_model_folder_as_a_classifier_says_what_it_is(tmp_path):
    tokenizer = train_tokenizer("wordpiece", ["a b"], vocab_size=40)
    bert = BERT(BertConfig(vocab_size=tokenizer.vocab_size, **TINY))
    save_model(tmp_path / "bert", bert, tokenizer)
    with pytest.raises(CheckpointError, match="not a fine-tuned classifier"):
        load_classifier(tmp_path / "bert")


@pytest.fixture(scope="module")
def bert_folder(encoder, tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "bert"
    return save_model(folder, *encoder)


def test_cli_finetune_writes_a_folder(run_cli, bert_folder, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", topic_examples(24, 1, n_topics=3))
    held = write_jsonl(tmp_path / "eval.jsonl", topic_examples(12, 2, n_topics=3))
    out = tmp_path / "tuned"
    code, stdout, err = run_cli(
        "finetune", bert_folder, "--train", train, "--eval", held, "--out", out,
        "--set", "max_steps=3", "--set", "batch_size=8", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert "held-out accuracy" in stdout and "macro-F1" in stdout
    assert load_classifier(out)[2]["labels"] == sorted(NAMES)


def test_cli_finetune_bad_data_is_one_clear_error(run_cli, bert_folder, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"text": "a", "label": "x"}, {"text": "b"}])
    code, stdout, err = run_cli("finetune", bert_folder, "--train", train, "--out", tmp_path / "o")
    assert code == 2 and 'line 2: no field "label"' in err and len(err.strip().splitlines()) == 1
    good = write_jsonl(tmp_path / "good.jsonl", topic_examples(6, 1, n_topics=3))
    unknown = write_jsonl(tmp_path / "eval.jsonl", [{"text": "the cat", "label": "space"}])
    code, _, err = run_cli(
        "finetune", bert_folder, "--train", good, "--eval", unknown, "--out", tmp_path / "o"
    )
    assert code == 2 and '"space" was not in the training data' in err
    assert len(err.strip().splitlines()) == 1
