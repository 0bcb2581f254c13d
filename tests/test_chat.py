"""Chat: role tokens, templates as transformers renders them, the assistant-only loss, chat
tuning that learns a follow-up, and `lmforge chat` end to end."""

import json
import random

import pytest
import torch

from lmforge.chat import Reply, chat_tune, grow_vocab, load_chat_model, reply
from lmforge.chat.tune import chat_settings
from lmforge.cli import main
from lmforge.errors import ConfigError, DataError
from lmforge.folders import load_model, save_model
from lmforge.hub import export_hf
from lmforge.tokenize import (
    BOS_ID,
    CHAT_TOKENS,
    DEFAULT_CHAT_TEMPLATE,
    TOKENIZER_KINDS,
    ChatTemplate,
    encode_text,
    train_tokenizer,
    with_role_tokens,
)
from lmforge.train.tasks import ChatTask
from lmforge.workflows import build_model, train_family

TINY = {"d_model": 32, "n_layers": 2, "n_heads": 2, "d_ff": 64, "max_seq_len": 32}
CONVERSATION = [
    {"role": "system", "content": "answer in one word"},
    {"role": "user", "content": "what color is item1 ?"},
    {"role": "assistant", "content": "red"},
    {"role": "user", "content": "and its shape ?"},
]


def facts_dialogues(n=12, seed=0):
    """Two-turn dialogues whose follow-up ("and its shape ?") needs the first turn's item."""
    rng = random.Random(seed)
    dialogues = []
    for i in range(n):
        color, shape = rng.choice(["red", "blue", "green"]), rng.choice(["round", "flat", "long"])
        dialogues.append(
            [
                {"role": "user", "content": f"what color is item{i} ?"},
                {"role": "assistant", "content": color},
                {"role": "user", "content": "and its shape ?"},
                {"role": "assistant", "content": shape},
            ]
        )
    return dialogues


def word_tokenizer(dialogues):
    return train_tokenizer("word", [m["content"] for d in dialogues for m in d], rare_threshold=0)


@pytest.fixture(scope="module")
def chat_folder(tmp_path_factory):
    """A tiny GPT chat-tuned on ``facts_dialogues()`` (a few seconds)."""
    return tuned(tmp_path_factory.mktemp("chat"), facts_dialogues())


def tuned(tmp_path, dialogues, steps=300, **sets):
    model, _ = build_model("gpt", word_tokenizer(dialogues).vocab_size, TINY)
    lora = sets.pop("lora", False)
    settings = {"max_steps": steps, "batch_size": 8, "lr": 3e-3, "warmup_steps": 20, **sets}
    train_config, tuning = chat_settings(settings, lora)
    chat_tune(
        model,
        word_tokenizer(dialogues),
        dialogues,
        train_config,
        tuning,
        tmp_path / "chat",
        progress=False,
    )
    return tmp_path / "chat"


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_role_tokens_are_single_ids_with_every_tokenizer_kind(kind):
    lines = ["the moon over the river", "床前明月光 疑是地上霜", "what color is it ?"] * 20
    base = train_tokenizer(kind, lines, vocab_size=300, rare_threshold=0)
    tokenizer = with_role_tokens(base)
    assert tokenizer.vocab[: base.vocab_size] == base.vocab  # old ids unchanged
    assert tokenizer.vocab[base.vocab_size :] == CHAT_TOKENS
    text = ChatTemplate().render(CONVERSATION, tokenizer, add_generation_prompt=True)
    ids = encode_text(tokenizer, text)
    roles = [tokenizer.id_to_token(i) for i in ids if tokenizer.id_to_token(i) in CHAT_TOKENS]
    turns = ["<|system|>", "<|user|>", "<|assistant|>", "<|user|>"]
    assert roles == [t for turn in turns for t in (turn, "<|end|>")] + ["<|assistant|>"]
    assert with_role_tokens(tokenizer) is tokenizer


def test_template_renders_as_transformers_does():
    render = pytest.importorskip("transformers.utils.chat_template_utils").render_jinja_template
    tokenizer = with_role_tokens(word_tokenizer([CONVERSATION]))
    for prompt in (False, True):
        ours = ChatTemplate().render(CONVERSATION, tokenizer, add_generation_prompt=prompt)
        theirs, _ = render(
            [CONVERSATION],
            chat_template=DEFAULT_CHAT_TEMPLATE,
            add_generation_prompt=prompt,
            bos_token="<s>",
        )
        assert ours == theirs[0]


@pytest.mark.parametrize("kind", ["char", "word", "bpe", "bytebpe"])
def test_exported_folder_gives_the_same_ids_in_transformers(tmp_path, kind):
    transformers = pytest.importorskip("transformers")
    lines = ["what color is item1 ?", "answer in one word", "red", "and its shape ?"] * 10
    tokenizer = with_role_tokens(train_tokenizer(kind, lines, vocab_size=300, rare_threshold=0))
    tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    model, _ = build_model("gpt", tokenizer.vocab_size, {**TINY, "max_seq_len": 128})
    export_hf(model, tokenizer, tmp_path / "hf")
    theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    for prompt in (False, True):
        text = ChatTemplate().render(CONVERSATION, tokenizer, add_generation_prompt=prompt)
        ours = encode_text(tokenizer, text)
        out = theirs.apply_chat_template(CONVERSATION, tokenize=True, add_generation_prompt=prompt)
        assert list(out["input_ids"] if hasattr(out, "keys") else out) == ours
    _, imported, _ = load_model(tmp_path / "hf")
    assert imported.chat_template == DEFAULT_CHAT_TEMPLATE


def test_user_and_system_tokens_carry_no_loss():
    dialogues = [CONVERSATION + [{"role": "assistant", "content": "round"}]]
    tokenizer = with_role_tokens(word_tokenizer(dialogues))
    model, _ = build_model("gpt", tokenizer.vocab_size, TINY)
    task = ChatTask(model, tokenizer, ChatTemplate(), dialogues, None, batch_size=2)
    (inputs, targets, weights), _ = task.batch(0)
    scored = [
        tokenizer.id_to_token(int(t)) for t, w in zip(targets[0], weights[0], strict=True) if w
    ]
    assert scored == ["red", "<|end|>", "round", "<|end|>"]
    # Changing what the user's tokens are predicted to be does not change the loss.
    loss = task.loss(model, (inputs, targets, weights))[0]
    other = targets.masked_fill(weights == 0, 7)
    assert torch.equal(loss, task.loss(model, (inputs, other, weights))[0])
    # The GPT's output layer reads the scored positions only: the same loss as over all.
    logp, _ = model.log_probs(inputs, targets)
    full = -(logp * weights).sum() / weights.sum()
    torch.testing.assert_close(loss, full)


def test_grown_vocabulary_keeps_old_logits_and_starts_new_rows_at_the_mean():
    torch.manual_seed(0)
    model, _ = build_model("gpt", 20, TINY)
    grown = grow_vocab(model, 24)
    ids = torch.tensor([[1, 5, 7, 3]])
    old, _ = model.eval()(ids)
    new, _ = grown.eval()(ids)
    assert torch.allclose(new[..., :20], old, atol=1e-6)
    mean = model.tok_emb.weight.mean(0)
    assert torch.allclose(grown.tok_emb.weight[20:], mean.expand(4, -1))


def test_chat_tuning_can_give_a_gpt_a_copy_head_that_its_folder_keeps(tmp_path):
    dialogues = facts_dialogues(4)
    torch.manual_seed(0)
    base, _ = build_model("gpt", 20, TINY)
    grown = grow_vocab(base, 24, copy_dim=8)
    assert grown.config.copy_dim == 8 and grown.copy is not None
    assert torch.equal(grown.blocks[0].attn.qkv.weight, base.blocks[0].attn.qkv.weight)
    assert grow_vocab(grown, 24, copy_dim=8) is grown
    with pytest.raises(ConfigError, match="has one of 8"):
        grow_vocab(grown, 24, copy_dim=16)
    rnn, _ = build_model("lstm", 20, {"d_model": 16, "n_layers": 1})
    with pytest.raises(ConfigError, match="only a gpt has one"):
        grow_vocab(rnn, 24, copy_dim=8)
    for lora in (False, True):
        (tmp_path / str(lora)).mkdir()
        folder = tuned(
            tmp_path / str(lora),
            dialogues,
            steps=10,
            lora=lora,
            lora_r=4,
            copy_dim=8,
            copy_skip="?",
        )
        model, tokenizer = load_chat_model(folder)
        assert model.copy is not None and load_model(folder)[2]["chat_tuning"]["copy_dim"] == 8
        assert model.config.copy_skip == (tokenizer.token_to_id("?"),)  # kept in the folder
        assert float(model.copy.sentinel.bias) != model.copy.start_bias  # the head was trained
        assert isinstance(reply(model, tokenizer, dialogues[0][:1], max_new_tokens=3), Reply)
    (tmp_path / "unknown").mkdir()
    with pytest.raises(ConfigError, match="copy_skip: '§' not in this tokenizer's vocabulary"):
        tuned(tmp_path / "unknown", dialogues, steps=1, copy_dim=8, copy_skip="§")


def test_chat_tuning_learns_a_follow_up_that_plain_text_training_cannot(chat_folder):
    dialogues = facts_dialogues()
    model, tokenizer = load_chat_model(chat_folder)
    answers = [reply(model, tokenizer, d[:3], max_new_tokens=4) for d in dialogues]
    assert all(a.stopped for a in answers)
    right = sum(a.text == d[3]["content"] for a, d in zip(answers, dialogues, strict=True))
    assert right == len(dialogues)
    # The same text without turn structure: the messages as lines of a plain language model,
    # in a shuffled order (no line knows which conversation it came from).
    lines = [m["content"] for d in dialogues for m in d]
    random.Random(1).shuffle(lines)
    plain_tokenizer = word_tokenizer(dialogues)
    cfg, _ = chat_settings({"max_steps": 300, "batch_size": 8, "lr": 3e-3, "seq_len": 32})
    plain, _, _ = train_family("gpt", lines, None, plain_tokenizer, TINY, cfg, progress=False)
    shapes = sorted({d[3]["content"] for d in dialogues})
    shape_ids = [plain_tokenizer.token_to_id(shape) for shape in shapes]
    plain_right = 0
    for d in dialogues:  # its most likely shape as the line after the first three
        ids = [i for m in d[:3] for i in plain_tokenizer.encode(m["content"])] + [BOS_ID]
        logits, _ = plain.eval()(torch.tensor([ids]))
        guess = shapes[int(logits[0, -1, shape_ids].argmax())]
        plain_right += guess == d[3]["content"]
    assert plain_right <= len(dialogues) * 2 // 3


def test_reply_streams_its_text_and_reports_tokens(chat_folder):
    dialogues = facts_dialogues()
    model, tokenizer = load_chat_model(chat_folder)
    pieces = []
    answer = reply(model, tokenizer, dialogues[0][:1], max_new_tokens=6, on_text=pieces.append)
    assert isinstance(answer, Reply) and "".join(pieces) == answer.text
    assert answer.tokens == len(tokenizer.encode(answer.text, markers=False))
    cut = reply(model, tokenizer, dialogues[0][:1], max_new_tokens=0)
    assert (cut.text, cut.tokens, cut.stopped) == ("", 0, False)
    with pytest.raises(DataError, match="user"):
        reply(model, tokenizer, dialogues[0][:2])


def test_lora_tuning_saves_a_plain_chat_folder(tmp_path):
    dialogues = facts_dialogues(4)
    folder = tuned(tmp_path, dialogues, steps=20, lora=True, lora_r=4)
    model, tokenizer, record = load_model(folder)
    assert record["chat_tuning"]["lora"] is True and record["chat_template"]
    assert not any("lora" in name for name in model.state_dict())


def test_models_that_cannot_chat_are_refused_with_the_reason(tmp_path):
    tokenizer = word_tokenizer(facts_dialogues(2))
    cfg, tuning = chat_settings({"max_steps": 1})
    bert, _ = build_model(
        "bert", tokenizer.vocab_size, {"d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 32}
    )
    with pytest.raises(ConfigError, match="bert model is not a left-to-right LM"):
        chat_tune(bert, tokenizer, facts_dialogues(2), cfg, tuning)
    from lmforge.evaluate import tokenize_lines
    from lmforge.models.ngram import NgramConfig, NgramLM

    lines = ["a b c", "a b d"] * 5
    ngram = NgramLM.fit(
        tokenize_lines(lines, None), NgramConfig(2, discount_fallback=(0.5, 1, 1.5))
    )
    with pytest.raises(ConfigError, match="ngram models are counted"):
        chat_tune(ngram, tokenizer, facts_dialogues(2), cfg, tuning)
    plain, _ = build_model("gpt", tokenizer.vocab_size, TINY)
    save_model(tmp_path / "plain", plain, tokenizer)
    with pytest.raises(ConfigError, match="chat-tune"):
        load_chat_model(tmp_path / "plain")


def test_chat_message_json_end_to_end(chat_folder, tmp_path, capsys):
    dialogues, folder = facts_dialogues(), chat_folder
    history = tmp_path / "history.json"
    history.write_text(json.dumps(dialogues[1][:2]), encoding="utf-8")
    code = main(
        ["chat", str(folder), "--message", "and its shape ?", "--history", str(history), "--json"]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"reply", "tokens", "seconds"}
    assert out["reply"] == dialogues[1][3]["content"] and out["tokens"] == 1
    assert main(["chat", str(folder), "--json"]) == 2
    assert "--message" in capsys.readouterr().err


def test_chat_tune_command_writes_a_chat_folder(tmp_path, capsys):
    dialogues = facts_dialogues(4)
    base, _ = build_model("gpt", word_tokenizer(dialogues).vocab_size, TINY)
    save_model(tmp_path / "base", base, word_tokenizer(dialogues))
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"messages": d}) + "\n" for d in dialogues), "utf-8")
    out = tmp_path / "chat"
    args = ["chat-tune", str(tmp_path / "base"), "--dialogues", str(data), "--out", str(out)]
    assert main([*args, "--set", "max_steps=3", "--set", "batch_size=2", "--quiet"]) == 0
    assert load_chat_model(out)[1].chat_template == DEFAULT_CHAT_TEMPLATE
    assert main([*args, "--set", "max_stepz=3"]) == 2
    assert "max_stepz" in capsys.readouterr().err


def test_a_conversation_longer_than_the_context_keeps_its_latest_turns(chat_folder):
    from lmforge.chat.session import _prompt_ids

    model, tokenizer = load_chat_model(chat_folder)
    dialogues = facts_dialogues()
    long = [m for d in dialogues[:3] for m in d] + dialogues[5][:3]  # ~75 tokens, 32 positions
    ids = _prompt_ids(tokenizer, ChatTemplate(), long, 32, 50)
    text = " ".join(tokenizer.id_to_token(i) for i in ids)
    assert len(ids) + 2 <= 32 and text.startswith("<s> <|user|>")
    assert text.endswith("<|user|> and its shape ? <|end|> <|assistant|>")
    assert "item5" in text and "item0" not in text
    answer = reply(model, tokenizer, long, max_new_tokens=50)
    assert answer.tokens <= 32 - len(ids)


@pytest.mark.parametrize("family", ["lstm", "gru"])
def test_recurrent_models_chat_tune_too(family):
    dialogues = facts_dialogues(4)
    tokenizer = word_tokenizer(dialogues)
    model, _ = build_model(family, tokenizer.vocab_size, {"d_model": 16, "n_layers": 1})
    train_config, tuning = chat_settings({"max_steps": 5, "batch_size": 2})
    model, tokenizer, result = chat_tune(model, tokenizer, dialogues, train_config, tuning)
    assert result.steps == 5
    assert reply(model, tokenizer, dialogues[0][:1], max_new_tokens=3).tokens <= 3


def test_a_kept_default_base_must_know_every_character_of_the_training_phrasings(tmp_path):
    """A base made before tang-chat's phrasings changed is made again, not reused with the new
    questions' characters unknown to its tokenizer."""
    from lmforge.chat.tune import DEFAULT_CHAT, _kept_base
    from lmforge.data.tang_chat import fixed_texts

    texts = fixed_texts("train")
    assert "作者是。" in texts  # an answer's {fields} are not its words
    assert not any("{" in t or "}" in t for t in texts)
    for name, known, kept in (
        ("all", texts, True),
        ("older", [t for t in texts if "幾" not in t], False),  # a phrasing's character unknown
    ):
        tokenizer = train_tokenizer("char", known)
        model, _ = build_model("gpt", tokenizer.vocab_size, DEFAULT_CHAT["model"])
        save_model(tmp_path / name, model, tokenizer)
        assert _kept_base(tmp_path / name) is kept
    tokenizer = train_tokenizer("char", texts)
    model, _ = build_model("gpt", tokenizer.vocab_size, {**DEFAULT_CHAT["model"], "n_layers": 2})
    save_model(tmp_path / "other", model, tokenizer)
    assert not _kept_base(tmp_path / "other")  # another recipe
    assert not _kept_base(tmp_path / "none")
