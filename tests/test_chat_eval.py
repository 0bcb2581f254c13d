"""Tests for lmforge.chat_eval: the scorers on hand-made strings, the prompted base, the CLI."""

import json

import pytest
import torch

import lmforge.chat_eval as chat_eval_module
from lmforge.chat import Reply, chat_tune
from lmforge.chat_eval import (
    SCORED_KINDS,
    Turn,
    base_reply,
    chat_eval,
    couplet_bleu,
    eval_turns,
    exact_match,
    normalize,
    quatrain_ok,
    score_replies,
    stops_cleanly,
)
from lmforge.data.dialogues import read_dialogues
from lmforge.errors import DataError
from lmforge.folders import save_model
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.nn.sampling import Sampler
from lmforge.tokenize import train_tokenizer
from lmforge.train import TrainConfig

TRAINING = {"白日依山盡", "黃河入海流"}
NEW_QUATRAIN = "山中秋水綠，江上夜雲深。獨坐聽風雨，閒吟到古今。"


def said(text: str, stopped: bool = True) -> Reply:
    return Reply(text, len(text), 0.0, stopped)


def dialogue(*pairs: tuple[str, str, str]) -> dict:
    """A dialogue of (question, answer, kind) exchanges."""
    messages = [
        {"role": role, "content": text}
        for q, a, _ in pairs
        for role, text in (("user", q), ("assistant", a))
    ]
    return {"messages": messages, "kinds": [kind for _, _, kind in pairs]}


# --- scorers ------------------------------------------------------------------------------------


def test_exact_match_normalises_only_whitespace_and_final_punctuation():
    assert normalize("  作者是  李白。 ") == "作者是 李白"
    assert exact_match("作者是李白", "作者是李白。")
    assert exact_match("作者是李白。\n", "作者是李白！")
    assert not exact_match("作者是杜甫。", "作者是李白。")
    assert not exact_match("這是李白的靜夜思。", "這是李白的《靜夜思》。")  # inner marks count
    assert not exact_match("作者是李 白", "作者是李白")  # a space inside is a difference


def test_quatrain_format_wants_four_lines_of_the_width_in_ideographs_none_from_training():
    assert quatrain_ok(NEW_QUATRAIN, 5, TRAINING)
    assert quatrain_ok(NEW_QUATRAIN.rstrip("。"), 5, TRAINING)  # no final mark needed
    assert not quatrain_ok(NEW_QUATRAIN, 7, TRAINING)  # asked for seven characters
    assert not quatrain_ok("山中秋水綠，江上夜雲深。獨坐聽風雨。", 5, TRAINING)  # three lines
    assert not quatrain_ok("山中秋水綠，黃河入海流。獨坐聽風雨，閒吟到古今。", 5, TRAINING)
    assert not quatrain_ok("山中秋水a，江上夜雲深。獨坐聽風雨，閒吟到古今。", 5, TRAINING)
    assert not quatrain_ok("山中秋水綠，，江上夜雲深。獨坐聽風雨，閒吟到古今。", 5, TRAINING)
    assert not quatrain_ok(NEW_QUATRAIN + "<|user|>", 5, TRAINING)


def test_couplet_bleu_is_one_for_the_reference_and_zero_for_no_shared_character():
    assert couplet_bleu(["黃河入海流。"], ["黃河入海流。"]) == pytest.approx(1.0)
    assert couplet_bleu(["春風又綠江"], ["黃河入海流"]) == 0.0
    partial = couplet_bleu(["黃河入山流"], ["黃河入海流"])
    # unigrams 4/5, bigrams 2/4 (黃河, 河入): BLEU-2 = sqrt(0.8 * 0.5) = 0.632
    assert partial == pytest.approx(0.6325, abs=1e-3)


def test_discipline_needs_the_end_of_turn_and_no_role_marker():
    assert stops_cleanly(said("作者是李白。"), ("<|user|>",))
    assert not stops_cleanly(said("作者是李白。作者是", stopped=False), ("<|user|>",))
    assert not stops_cleanly(said("作者是李白。<|user|>他還寫過"), ("<|user|>",))


def test_eval_turns_keep_the_gold_history():
    turns = eval_turns([dialogue(("q1", "a1", "knowledge"), ("q2", "a2", "follow-up"))])
    assert [t.kind for t in turns] == ["knowledge", "follow-up"]
    assert turns[1].gold == "a2"
    assert [m["content"] for m in turns[1].history] == ["q1", "a1", "q2"]


def test_eval_turns_want_one_kind_per_assistant_turn():
    bad = dialogue(("q1", "a1", "knowledge"), ("q2", "a2", "follow-up"))
    bad["kinds"] = ["knowledge"]
    with pytest.raises(DataError, match="dialogue 1 needs a 'kinds' list"):
        eval_turns([bad])
    with pytest.raises(DataError, match="knowledge, reading"):
        eval_turns([dialogue(("q", "a", "trivia"))])


def test_scores_by_kind_on_hand_made_replies():
    turns = [
        Turn([], "作者是李白。", "knowledge"),
        Turn([], "作者是杜甫。", "knowledge"),
        Turn([], "黃河入海流。", "couplet"),
        Turn([], "白日依山盡，黃河入海流。欲窮千里目，更上一層樓。", "quatrain"),
        Turn([], "我不知道有這樣開頭的詩。", "refusal"),
    ]
    replies = [
        said("作者是李白"),
        said("作者是李白。", stopped=False),
        said("黃河入海流。"),
        said(NEW_QUATRAIN),
        said("作者是王維。<|user|>"),
    ]
    scores = score_replies(turns, replies, ("<|user|>",), TRAINING)
    assert scores == {
        "knowledge": (0.5, 2),
        "couplet": (pytest.approx(1.0), 1),
        "quatrain": (1.0, 1),
        "refusal": (0.0, 1),
        "discipline": (0.6, 5),
    }


# --- the prompted base and the command ----------------------------------------------------------

LINES = ["白日依山盡，黃河入海流。", "問：誰寫的？", "答：作者是李白。"]


@pytest.fixture
def tiny_base():
    torch.manual_seed(0)
    tokenizer = train_tokenizer("char", LINES + ["欲窮千里目，更上一層樓。我不知道有這樣開頭的詩"])
    config = GPTConfig(
        vocab_size=tokenizer.vocab_size,
        d_model=16,
        n_layers=1,
        n_heads=2,
        d_ff=32,
        max_seq_len=48,
        dropout=0.0,
    )
    return GPT(config).eval(), tokenizer


def test_base_reply_leaves_out_old_shots_to_fit_its_context(tiny_base):
    model, tokenizer = tiny_base
    shots = [dialogue(("誰寫的？" * 3, "作者是李白。", "knowledge"))] * 3
    history = dialogue(("誰寫的？", "作者是李白。", "knowledge"))["messages"][:1]
    answer = base_reply(model, tokenizer, shots, history, max_new_tokens=10)
    assert isinstance(answer, Reply) and answer.tokens <= 10
    assert answer.stopped == (answer.tokens < 10)


def tuned_and_dialogues(tiny_base, tmp_path):
    """A tiny chat model tuned on a few dialogues of every kind, and those dialogues' file."""
    model, tokenizer = tiny_base
    save_model(tmp_path / "base", model, tokenizer)
    sets = [
        dialogue(
            ("白日依山盡", "黃河入海流。", "couplet"), ("誰寫的？", "作者是李白。", "follow-up")
        ),
        dialogue(("誰寫的？", "作者是李白。", "knowledge")),
        dialogue(("問", "我不知道有這樣開頭的詩。", "refusal")),
        dialogue(("讀", "第一句是「白日依山盡」。", "reading")),
        dialogue(("寫", "白日依山盡，黃河入海流。欲窮千里目，更上一層樓。", "quatrain")),
    ]
    chat_tune(
        model,
        tokenizer,
        [d["messages"] for d in sets],
        TrainConfig(batch_size=2, max_steps=2, warmup_steps=1, eval_interval=10),
        out_dir=tmp_path / "tuned",
        record={"base": str(tmp_path / "base")},
        progress=False,
    )
    file = tmp_path / "eval.jsonl"
    file.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in sets), "utf-8")
    return tmp_path / "tuned", file


def test_chat_eval_command_scores_base_and_tuned_by_kind(tiny_base, tmp_path, run_cli):
    tuned, file = tuned_and_dialogues(tiny_base, tmp_path)
    code, out, err = run_cli(
        "chat-eval",
        tuned,
        "--dialogues",
        file,
        "--shots",
        file,
        "--json",
        tmp_path / "rows.json",
        "--quiet",
    )
    assert code == 0, err
    rows = json.loads((tmp_path / "rows.json").read_text())["rows"]
    assert [(r["kind"], r["model"]) for r in rows] == [
        (kind, model) for model in ("base", "tuned") for kind in SCORED_KINDS
    ]
    assert all(0 <= r["score"] <= 1 for r in rows)
    assert {r["kind"]: r["n"] for r in rows} == {
        "knowledge": 1,
        "reading": 1,
        "follow-up": 1,
        "couplet": 1,
        "quatrain": 1,
        "refusal": 1,
        "discipline": 6,
    }
    assert "discipline" in out and "format accuracy" in out
    assert json.loads((tmp_path / "rows.json").read_text())["creation"] == {
        "temperature": 0.7,
        "top_k": 0,
        "top_p": 1.0,
        "seed": 0,
    }
    code, out, err = run_cli(
        "chat-eval", tuned, "--dialogues", file, "--shots", file, "--temperature", "0", "--quiet"
    )
    assert code == 0, err
    assert "couplets and quatrains: greedy" in out
    code, out, err = run_cli("chat-eval", tuned, "--dialogues", file, "--temperature", "-1")
    assert code != 0 and "temperature" in err and "Traceback" not in err


def test_chat_eval_samples_only_the_creation_turns_each_with_its_own_seed(
    tiny_base, tmp_path, monkeypatch
):
    tuned, file = tuned_and_dialogues(tiny_base, tmp_path)
    seen = {"tuned": [], "base": []}

    def recording(name, answer):
        def wrapped(*args):
            seen[name].append(args[-1])
            return answer(*args)

        return wrapped

    monkeypatch.setattr(chat_eval_module, "reply", recording("tuned", chat_eval_module.reply))
    monkeypatch.setattr(chat_eval_module, "base_reply", recording("base", base_reply))
    creation = Sampler(temperature=0.7, top_p=0.9, seed=5)
    result = chat_eval(tuned, file, shots=file, creation=creation)
    kinds = [t.kind for t in eval_turns(read_dialogues(file))]
    for name in ("tuned", "base"):
        assert len(seen[name]) == len(kinds)
        for i, (kind, sampler) in enumerate(zip(kinds, seen[name], strict=True)):
            if kind in ("couplet", "quatrain"):
                assert (sampler.temperature, sampler.top_p, sampler.seed) == (0.7, 0.9, 5 + i)
            else:
                assert sampler.temperature == 0
    assert result["creation"] == {"temperature": 0.7, "top_k": 0, "top_p": 0.9, "seed": 5}
    again = chat_eval(tuned, file, shots=file, creation=creation)
    assert again["rows"] == result["rows"]  # each turn's seed makes the samples repeatable
    unseeded = chat_eval(tuned, file, shots=file, creation=Sampler(temperature=0.7))
    assert unseeded["creation"]["seed"] == 0
