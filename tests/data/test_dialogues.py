"""Dialogues: the reader's errors name file and line; encoding marks the assistant's tokens."""

import json

import pytest

from lmforge.data.dialogues import (
    check_messages,
    dialogue_batch,
    encode_dialogue,
    load_dialogues,
    pack_dialogues,
    read_dialogues,
)
from lmforge.errors import ConfigError, DataError
from lmforge.tokenize import ChatTemplate, train_tokenizer, with_role_tokens

GOOD = {
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi there"},
        {"role": "assistant", "content": "hello"},
    ],
    "kinds": ["greeting"],
}


def write_lines(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_reader_keeps_conversations_and_their_extra_keys(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [GOOD, {"messages": GOOD["messages"][1:]}])
    dialogues = read_dialogues(path)
    assert [len(d["messages"]) for d in dialogues] == [3, 2]
    assert dialogues[0]["kinds"] == ["greeting"]


@pytest.mark.parametrize(
    "messages, words",
    [
        ([{"role": "bot", "content": "x"}], "role 'bot'"),
        ([{"role": "user", "content": " "}, {"role": "assistant", "content": "y"}], "no content"),
        ([{"role": "user", "content": "x"}], "must end with the assistant's turn"),
        (
            [
                {"role": "user", "content": "x"},
                {"role": "system", "content": "late"},
                {"role": "assistant", "content": "y"},
            ],
            "system turn",
        ),
        ([{"role": "assistant", "content": "y"}], "where the user's turn belongs"),
        ([], "non-empty list"),
    ],
)
def test_bad_dialogues_raise_one_error_naming_file_and_line(tmp_path, messages, words):
    path = write_lines(tmp_path / "bad.jsonl", [GOOD, {"messages": messages}])
    with pytest.raises(DataError, match=f"bad.jsonl line 2: .*{words}"):
        read_dialogues(path)


def test_a_line_that_is_not_json_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(GOOD) + "\n{oops\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 2: invalid JSON"):
        read_dialogues(path)


def test_a_prompt_ends_with_the_user():
    assert check_messages(GOOD["messages"][:2], ends_with="user") is None
    assert "user" in check_messages(GOOD["messages"], ends_with="user")


def test_builtin_set_loads_by_name():
    dialogues = load_dialogues("tang-chat")
    assert dialogues and all(check_messages(d["messages"]) is None for d in dialogues[:100])


def test_the_mask_covers_assistant_turns_and_their_end_of_turn_only():
    messages = [
        *GOOD["messages"],
        {"role": "user", "content": "and you"},
        {"role": "assistant", "content": "fine thanks"},
    ]
    tokenizer = with_role_tokens(
        train_tokenizer("word", [m["content"] for m in messages], rare_threshold=0)
    )
    ids, mask = encode_dialogue(tokenizer, ChatTemplate(), messages)
    marked = [tokenizer.id_to_token(i) for i, m in zip(ids, mask, strict=True) if m]
    assert marked == ["hello", "<|end|>", "fine", "thanks", "<|end|>"]
    assert tokenizer.id_to_token(ids[0]) == "<s>"


def test_a_template_that_does_not_render_turn_by_turn_is_refused():
    tokenizer = with_role_tokens(train_tokenizer("word", ["hi there hello"], rare_threshold=0))
    reversed_turns = (
        "{% for m in messages | reverse %}<|{{ m.role }}|>{{ m.content }}<|end|>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    with pytest.raises(ConfigError, match="turn by turn"):
        encode_dialogue(tokenizer, ChatTemplate(reversed_turns), GOOD["messages"])


def test_packing_fills_rows_in_order_and_batches_shift_by_one():
    rows = [([1, 2, 3], [False, True, True]), ([4, 5], [False, True]), ([6, 7, 8, 9], [False] * 4)]
    packed = pack_dialogues(rows, 5)
    assert [ids for ids, _ in packed] == [[1, 2, 3, 4, 5], [6, 7, 8, 9]]
    inputs, targets, weights = dialogue_batch(packed, 0)
    assert inputs.tolist() == [[1, 2, 3, 4], [6, 7, 8, 0]]
    assert targets.tolist() == [[2, 3, 4, 5], [7, 8, 9, 0]]
    assert weights.tolist() == [[1, 1, 0, 1], [0, 0, 0, 0]]
