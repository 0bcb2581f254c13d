"""Tests for lmforge.data.tang_chat: the shipped titles, authors and facts, and the dialogues."""

import json
import re
from collections import Counter
from importlib import resources

import pytest

from lmforge.data import load_corpus
from lmforge.data.dialogues import check_messages
from lmforge.data.tang_chat import (
    ANSWERS,
    ASIDE_SHARE,
    ASIDES,
    BUILTIN_DIALOGUES,
    KINDS,
    build_dialogues,
    compose,
    compose_requests,
    composed_wordings,
    load_facts,
    load_phrasings,
    load_poems,
    near_held_out,
    poem_lines,
)
from lmforge.errors import ConfigError
from tests.conftest import shared_path

FACTS = resources.files("lmforge.data").joinpath("builtin", "tang", "chat_facts.jsonl")


@pytest.fixture(scope="module")
def train():
    return build_dialogues("train")


@pytest.fixture(scope="module")
def held_out():
    return build_dialogues("eval")


@pytest.fixture(scope="module")
def openings() -> Counter:
    """How many shipped poems begin with each first line (up to the first 。)."""
    tang = load_corpus("tang")
    return Counter(
        body[: body.index("。") + 1]
        for s in ("train", "valid", "test")
        for body in tang.split(s)
        if "。" in body
    )


def template_pattern(templates) -> re.Pattern:
    """One regex that finds any of ``templates`` (``{field}`` matches any text) in a message."""
    parts = [".+?".join(map(re.escape, re.split(r"\{\w+\}", t))) for t in templates]
    return re.compile("|".join(f"(?:{p})" for p in parts))


def user_turns(dialogues):
    return [m["content"] for d in dialogues for m in d["messages"] if m["role"] == "user"]


def bare(question: str) -> str:
    """A training question without the aside said before or after it, if any."""
    for sides in ASIDES.values():
        lead = next((a for a in sides["lead"] if question.startswith(a)), "")
        tail = next((a for a in sides["tail"] if question.endswith(a)), "")
        question = question[len(lead) : len(question) - len(tail)]
    return question


def phrasings(split: str) -> list[str]:
    templates = load_phrasings().values()
    return [t for intent in templates for lang in intent[split].values() for t in lang]


# --- shipped files ------------------------------------------------------------------------------


def test_facts_file_has_exactly_the_three_keys_and_500_lines():
    lines = FACTS.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) >= 500
    assert all(list(r) == ["title", "author", "first_line"] for r in records)
    assert all(r["title"] and r["author"] for r in records)


def test_fact_first_lines_are_unique_and_quote_train_poems(openings):
    poems = {(p.title, p.author, p.body[: p.body.find("。") + 1]) for p in load_poems("train")}
    facts = load_facts()
    assert len({f.first_line for f in facts}) == len(facts)
    for fact in facts:
        assert re.fullmatch(r"[^，。]+，[^，。]+。", fact.first_line), fact
        assert openings[fact.first_line] == 1, fact  # no other shipped poem begins so
        assert (fact.title, fact.author, fact.first_line) in poems, fact


def test_titles_and_authors_stand_beside_the_unchanged_bodies():
    tang = load_corpus("tang")
    for split, size in (("train", 30_000), ("valid", 2_880), ("test", 2_880)):
        poems = load_poems(split)
        assert [p.body for p in poems] == tang.split(split) and len(poems) == size
    assert (poems[0].title, poems[0].author) == ("入潼關", "太宗皇帝")  # test.tsv line 1


def test_titles_and_authors_match_the_shared_source():
    rows = shared_path("tang", "test.tsv").read_text(encoding="utf-8").split("\n")[:-1]
    assert [(p.title, p.author, p.body) for p in load_poems("test")] == [
        tuple(row.split("\t")) for row in rows
    ]


# --- dialogues ----------------------------------------------------------------------------------


def test_dialogues_are_deterministic(held_out):
    assert build_dialogues("eval") == held_out


def test_unknown_split_is_a_config_error():
    with pytest.raises(ConfigError, match="train, eval"):
        build_dialogues("test")


def test_builtin_name_builds_the_set(held_out):
    assert BUILTIN_DIALOGUES["tang-chat"]("eval") == held_out


def test_dialogues_are_well_formed_with_one_kind_per_assistant_turn(train, held_out):
    for dialogue in [*train, *held_out]:
        assert check_messages(dialogue["messages"]) is None, dialogue
        answers = [m for m in dialogue["messages"] if m["role"] == "assistant"]
        assert len(dialogue["kinds"]) == len(answers) and set(dialogue["kinds"]) <= set(KINDS)


def test_every_intent_is_in_both_sets(train, held_out):
    for dialogues in (train, held_out):
        kinds = Counter(k for d in dialogues for k in d["kinds"])
        assert set(kinds) == set(KINDS)
        assert max(kinds.values()) <= 600 or dialogues is train  # eval scores in minutes
    assert sum(1 for d in held_out if re.search("[A-Za-z]", d["messages"][0]["content"])) > 20


def test_every_fact_is_asked_once_in_eval_and_several_times_in_training(train, held_out):
    facts = load_facts()
    asked = "\n".join(user_turns(held_out))
    assert [asked.count(f"「{f.first_line}」") for f in facts] == [1] * len(facts)
    assert Counter(k for d in held_out for k in d["kinds"])["knowledge"] == len(facts)
    asked = "\n".join(user_turns(train))
    assert min(asked.count(f"「{f.first_line}」") for f in facts) >= 8


def test_held_out_phrasings_never_appear_in_training(train, held_out):
    assert not set(phrasings("train")) & set(phrasings("eval"))
    unseen, seen = template_pattern(phrasings("eval")), template_pattern(phrasings("train"))
    assert not [text for text in user_turns(train) if unseen.search(text)]
    assert not [text for text in user_turns(held_out) if seen.search(text)]


def test_compose_says_every_frame_with_every_fitting_ask():
    frames = {
        "line": ["「{line}」"],
        "poem": ["以「{line}」開頭的詩"],
        "lead": ["有首詩，"],
        "verb": ["告訴我"],
        "object": ["「{line}」這首詩"],
    }
    asks = {
        "any": ["是誰寫的？"],
        "line": ["出自何人？"],
        "alone": ["作者是誰？"],
        "noun": ["作者"],
        "first": ["誰是作者？"],
    }
    assert sorted(compose(frames, asks)) == sorted(
        [
            "「{line}」是誰寫的？",
            "「{line}」出自何人？",
            "以「{line}」開頭的詩是誰寫的？",
            "「{line}」，作者是誰？",
            "以「{line}」開頭的詩，作者是誰？",
            "有首詩，作者是誰？",
            "告訴我「{line}」這首詩的作者。",
            "誰是作者？「{line}」",
            "誰是作者？以「{line}」開頭的詩",
        ]
    )


def test_compose_requests_says_the_title_before_and_after_the_request():
    parts = {
        "lead": ["以《{title}》為題，"],
        "request": ["寫一首{form}。", "來一首{form}。"],
        "ask": ["作一首{form}"],
        "tail": ["題為《{title}》。"],
    }
    assert sorted(compose_requests(parts)) == sorted(
        [
            "以《{title}》為題，寫一首{form}。",
            "以《{title}》為題，來一首{form}。",
            "作一首{form}，題為《{title}》。",
        ]
    )


def test_near_held_out_compares_wordings_without_their_fields():
    held_out = ["「{line}」是誰寫的呀？", "試以《{title}》作{form}一首。"]
    assert near_held_out("「{line}」是誰寫的？", held_out)
    assert near_held_out("試以《{title}》作{form}。", held_out)
    assert not near_held_out("以「{line}」開頭的詩，作者是誰？", held_out)
    assert not near_held_out("題為《{title}》，寫一首{form}。", held_out)


def test_training_questions_are_mostly_composed_and_none_near_held_out(train):
    parts = json.loads(FACTS.parent.joinpath("chat_composed.json").read_text(encoding="utf-8"))
    written = json.loads(FACTS.parent.joinpath("chat_phrasings.json").read_text(encoding="utf-8"))
    held_out = phrasings("eval")
    made = composed_wordings(parts)
    loaded = load_phrasings()
    dropped = {}
    for intent, wordings in made.items():
        kept = [t for t in wordings if not near_held_out(t, held_out)]
        training = loaded[intent]["train"]["zh"]
        assert len(kept) >= 60 and set(kept) <= set(training)
        added = set(training) - set(written[intent]["train"]["zh"])
        assert added and not any(near_held_out(t, held_out) for t in added)
        dropped[intent] = len(wordings) - len(kept)
    assert dropped["both"] > 0  # e.g. 告訴我「X」的作者和題目。, near 告訴我「X」的詩題與作者。
    for intent, least in (("author", 1000), ("quatrain", 1500)):
        composed = template_pattern(made[intent])
        assert sum(1 for text in user_turns(train) if composed.fullmatch(bare(text))) > least


def test_eval_has_chains_at_least_four_turns_deep(held_out):
    chains = [d for d in held_out if len(d["kinds"]) >= 4]
    assert len(chains) >= 100
    assert {"knowledge", "reading"} <= {d["kinds"][0] for d in chains}
    assert all("follow-up" in d["kinds"] for d in chains)


def test_reading_and_creation_in_eval_use_test_split_poems(held_out):
    test = load_corpus("tang").test
    bodies, halves = set(test), {line for body in test for line in re.split("[，。]", body)}
    for dialogue in held_out:
        first, answer = dialogue["messages"][0]["content"], dialogue["messages"][1]["content"]
        if dialogue["kinds"][0] == "reading":
            assert re.search("「(.+?)」", first)[1] in bodies
        elif dialogue["kinds"][0] == "quatrain":
            assert answer in bodies and len(poem_lines(answer)) == 4
        elif dialogue["kinds"][0] == "couplet":
            assert answer.rstrip("。") in halves


def test_refusals_ask_about_poems_that_do_not_exist(held_out, openings):
    asked = [
        re.search("「(.+?)」", d["messages"][2 * i]["content"])[1]
        for d in held_out
        for i, kind in enumerate(d["kinds"])
        if kind == "refusal"
    ]
    assert len(asked) >= 100 and not [line for line in asked if openings[line]]


def test_answers_are_written_in_characters_of_the_tang_vocabulary():
    characters = {ch for body in load_corpus("tang").train for ch in body}
    fixed = "".join(re.sub(r"\{\w+\}", "", answer) for answer in ANSWERS.values())
    assert set(fixed) <= characters


def test_poem_lines_reads_only_regular_poems():
    assert poem_lines("白日依山盡，黃河入海流。欲窮千里目，更上一層樓。") == [
        "白日依山盡",
        "黃河入海流",
        "欲窮千里目",
        "更上一層樓",
    ]
    assert poem_lines("白日依山盡，黃河入海流。") is None  # two lines
    assert poem_lines("白日依山盡，黃河入海流。欲窮千里目，更上一層。") is None  # widths differ
    assert poem_lines("白日依山盡。黃河入海流，欲窮千里目，更上一層樓。") is None  # punctuation


def test_training_reading_poems_are_recombined_train_lines(train):
    """Training reads poems made of train-split lines drawn at random, so an answer can only
    come from the poem in the conversation, not from one the model knows by heart."""
    tang = load_corpus("tang")
    lines = {line for body in tang.train if (found := poem_lines(body)) for line in found}
    real = set(tang.train)
    read = [
        re.search("「(.+?)」", d["messages"][0]["content"])[1]
        for d in train
        if d["kinds"][0] == "reading"
    ]
    assert len(read) >= 1000
    for body in read:
        found = poem_lines(body)
        assert found and set(found) <= lines, body
    assert sum(body in real for body in read) < len(read) // 100


def test_training_asks_for_the_line_after_a_quoted_one_twice_as_often(train):
    """The answer "原詩寫道「…」，所以下一句是「…」" follows a quoted line ("after") or a named one
    ("next"); the N-th line question is asked half as often as "after" in every turn."""
    asked = Counter()
    for dialogue in train:
        for message, kind in zip(dialogue["messages"][1::2], dialogue["kinds"], strict=True):
            if kind == "reading" and message["content"].startswith(("第", "原詩寫道")):
                asked["nth" if message["content"].startswith("第") else "after"] += 1
    assert 1.8 < asked["after"] / asked["nth"] < 2.2, asked


def test_a_line_after_with_no_poem_given_is_a_couplet_to_finish(train):
    """Some training couplet requests use the reading wordings of "the line after 「X」", with no
    poem in the conversation: then the answer is the couplet's second half, not a quote."""
    wordings = load_phrasings()["after"]["train"].values()
    after = template_pattern([wording for language in wordings for wording in language])
    couplets = [d for d in train if d["kinds"][0] == "couplet"]
    worded = [d for d in couplets if after.fullmatch(bare(d["messages"][0]["content"]))]
    assert 0.2 < len(worded) / len(couplets) < 0.4
    for dialogue in worded:
        question, answer = (m["content"] for m in dialogue["messages"][:2])
        assert bare(question).count("「") == 1 and "「" not in answer and answer.endswith("。")


def test_a_share_of_training_questions_have_an_aside_and_held_out_ones_none(train, held_out):
    """Words such as "請問，" or "謝謝。" before or after a training question, which do not change
    what it asks; the held-out questions are the bare wordings."""
    asides = [a for sides in ASIDES.values() for where in sides.values() for a in where]
    said = [q for d in train for q in user_turns([d])[1:]]  # later turns: no poem before them
    with_aside = [q for q in said if bare(q) != q]
    assert abs(len(with_aside) / len(said) - ASIDE_SHARE) < 0.03
    starts, ends = Counter(), Counter()
    for q in with_aside:
        starts.update(a for a in asides if q.startswith(a))
        ends.update(a for a in asides if q.endswith(a))
    assert set(starts) | set(ends) == set(asides)  # every aside is used
    seen = template_pattern(phrasings("train"))
    assert all(seen.fullmatch(bare(q)) for q in with_aside)
    assert not [q for q in user_turns(held_out) if bare(q) != q]


def test_training_asks_for_both_quatrain_forms_equally_often(train, held_out):
    """The train split has about three seven-character quatrains to one five; the requests
    are drawn by form first, half and half, as the held-out ones are."""
    for dialogues, low, high in ((train, 0.45, 0.55), (held_out, 0.5, 0.5)):
        widths = [
            len(poem_lines(d["messages"][1]["content"])[0])
            for d in dialogues
            if d["kinds"] == ["quatrain"]
        ]
        assert low <= widths.count(5) / len(widths) <= high, Counter(widths)


def test_training_quatrains_are_real_quatrains_or_halves_of_eight_line_poems(train):
    """A training quatrain answers with a quatrain of the title asked for, or with the first or
    last four lines of an eight-line poem of that title (the 截句 reading of 絕句); the
    English requests are a larger share than elsewhere, as the form word is spelt out."""
    whole, halves = set(), set()
    for poem in load_poems("train"):
        lines = poem_lines(poem.body)
        if lines and len(lines) == 4:
            whole.add((poem.title, poem.body))
        elif lines:
            for half in (lines[:4], lines[4:]):
                halves.add((poem.title, "{}，{}。{}，{}。".format(*half)))
    sources = Counter()
    quatrains = [d for d in train if d["kinds"] == ["quatrain"]]
    for d in quatrains:
        question, answer = (m["content"] for m in d["messages"])
        title = re.search("《(.+?)》", question)[1]
        sources[
            "whole" if (title, answer) in whole else "half" if (title, answer) in halves else "?"
        ] += 1
    assert sources["?"] == 0 and sources["whole"] > 500 and sources["half"] > 500, sources
    english = [d["messages"][0]["content"][0].isascii() for d in quatrains]
    assert 0.25 < sum(english) / len(english) < 0.35
    others = [d["messages"][0]["content"][0].isascii() for d in train if d["kinds"][0] == "reading"]
    assert 0.07 < sum(others) / len(others) < 0.13
