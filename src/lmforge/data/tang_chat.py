"""tang-chat: multi-turn dialogues about the built-in Tang poems, made by rule, deterministic.

Sources, all shipped in ``lmforge/data/builtin/tang/``: the poem bodies of ``load_corpus("tang")``,
their titles and authors (``<split>.meta.tsv.xz``, line for line beside the bodies) and the fact
list ``chat_facts.jsonl``: 500 train-split poems, ``{"title", "author", "first_line"}``, whose
first line begins no other poem (``tools/make_tang_chat.py`` says how they were chosen).

Every dialogue is ``{"messages": [...], "kinds": [...]}``: the user and assistant turns in the
OpenAI messages form, and one kind per assistant turn: ``knowledge``, ``reading``, ``follow-up``,
``couplet``, ``quatrain`` or ``refusal``. The intents:

* knowledge: the user quotes a fact's first line and asks who wrote it, its title, or both.
* reading: the first user turn gives a regular poem (4 or 8 lines of 5 or 7 ideographs, "，" and
  "。" alternating) and asks its N-th line, the line after a quoted one, how many lines it has or
  how many characters each line has: the answer is in the conversation.
* follow-up: a question that needs the earlier turns: the next or previous line after a line was
  named; after a knowledge answer, the title or author not yet given, "他還寫過什麼？" (the
  author's first other title in the fact list) and "還有誰寫過「月」？" (the first fact by another
  author whose title holds that character; topics ``TOPICS``).
* couplet: the first half of a couplet of a regular poem; the answer is its second half.
* quatrain: a five- or seven-character quatrain on a title; the answer is the real quatrain of
  that title and form.
* refusal: a knowledge question about a first line that begins no shipped poem (the first half
  of one poem's first line joined to the second half of another's); the answer says it knows no
  such poem.

Each intent has several question phrasings, in Chinese and a few in English (a dialogue is in
English with probability ``ENGLISH_SHARE``); answers are one fixed Chinese sentence per intent.
The phrasings are split in two: ``build_dialogues("train")`` uses only the training ones,
``build_dialogues("eval")`` only the held-out ones.

* ``"train"``: train-split poems; every fact opens ``FACT_ROUNDS`` dialogues (a single question,
  a chain of up to three follow-ups, a pair of facts, or a fact beside a refusal), then
  reading, couplet, quatrain and refusal dialogues; shuffled with ``random.Random(1)``.
* ``"eval"``, fixed (``random.Random(2)``): every fact asked once, 60 of them in 4-turn chains
  (question, the other half of the fact, the author's other poem, a topic) and 120 in 4-turn pairs
  (two facts, then two follow-ups on the second); 100 test-split poems read in 4-turn chains;
  200 couplets and 100 quatrains (50 of each form) from the test split; 150 refusals.
"""

from __future__ import annotations

import json
import lzma
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from lmforge.data.corpus import load_corpus
from lmforge.errors import ConfigError

__all__ = [
    "BUILTIN_DIALOGUES",
    "DIALOGUE_SPLITS",
    "KINDS",
    "Fact",
    "Poem",
    "build_dialogues",
    "load_facts",
    "load_poems",
    "poem_lines",
]

KINDS = ("knowledge", "reading", "follow-up", "couplet", "quatrain", "refusal")
DIALOGUE_SPLITS = ("train", "eval")
FACTS_FILE = "chat_facts.jsonl"
TOPICS = "月春秋山江夜花"  # title characters the "who else wrote about ..." follow-up asks about
ENGLISH_SHARE = 0.1
FACT_ROUNDS = 8
TRAIN_SIZES = {"reading": 2400, "couplet": 1600, "quatrain": 1200, "refusal": 1000}
EVAL_SIZES = {
    "chains": 60,
    "pairs": 60,
    "reading": 100,
    "couplet": 200,
    "quatrain": 50,
    "refusal": 150,
}  # quatrain: per form
_SEEDS = {"train": 1, "eval": 2}
_HAN = re.compile(r"[\u4e00-\u9fff]+")
_END = re.compile(r"[。！？；]")
_PIECE = re.compile(r"[^，。！？；]+[，。！？；]")
_NUMERALS = "一二三四五六七八"
_FORMS = {5: ("五言絕句", "five-character"), 7: ("七言絕句", "seven-character")}

# Question phrasings: intent -> split -> language -> templates. The answers are in ANSWERS.
PHRASINGS = {
    "author": {
        "train": {
            "zh": (
                "「{line}」是誰寫的？",
                "「{line}」這首詩的作者是誰？",
                "以「{line}」開頭的詩是誰的作品？",
                "請問「{line}」出自何人之手？",
                "「{line}」，作者是誰？",
                "誰是「{line}」的作者？",
            ),
            "en": (
                "Who wrote the poem that begins 「{line}」?",
                "Who is the author of 「{line}」?",
            ),
        },
        "eval": {
            "zh": ("有首詩開頭是「{line}」，作者為誰？", "寫下「{line}」的詩人是誰？"),
            "en": ("Which poet wrote 「{line}」?",),
        },
    },
    "title": {
        "train": {
            "zh": (
                "「{line}」這首詩的題目是什麼？",
                "以「{line}」開頭的詩叫什麼？",
                "「{line}」出自何詩？",
                "請問「{line}」的詩題是什麼？",
                "「{line}」，題目是什麼？",
            ),
            "en": (
                "What is the title of the poem that begins 「{line}」?",
                "What is 「{line}」 called?",
            ),
        },
        "eval": {
            "zh": ("開頭為「{line}」的詩，題目叫什麼？", "「{line}」是何詩的首句？"),
            "en": ("Name the poem that opens with 「{line}」.",),
        },
    },
    "both": {
        "train": {
            "zh": (
                "「{line}」是誰的什麼詩？",
                "以「{line}」開頭的詩，作者和題目是什麼？",
                "請說出「{line}」的作者和詩題。",
            ),
            "en": ("Who wrote 「{line}」, and what is the poem called?",),
        },
        "eval": {
            "zh": ("「{line}」這首詩是誰寫的，叫什麼？", "告訴我「{line}」的詩題與作者。"),
            "en": ("Title and author of 「{line}」, please.",),
        },
    },
    "follow-title": {
        "train": {
            "zh": ("那題目是什麼？", "它叫什麼？", "這首詩叫什麼名字？"),
            "en": ("And what is it called?",),
        },
        "eval": {"zh": ("詩題又是什麼？", "這首詩的名字是？"), "en": ("What's its title, then?",)},
    },
    "follow-author": {
        "train": {
            "zh": ("那作者是誰？", "是誰寫的？", "它的作者是？"),
            "en": ("And who wrote it?",),
        },
        "eval": {"zh": ("寫這首詩的是誰？", "作者又是何人？"), "en": ("Who is its poet?",)},
    },
    "other-work": {
        "train": {
            "zh": ("他還寫過什麼？", "他還有什麼詩？", "這位詩人還寫過何詩？"),
            "en": ("What else did this poet write?",),
        },
        "eval": {
            "zh": ("他還有別的作品？", "同一位詩人還寫了什麼？"),
            "en": ("Any other poem by the same poet?",),
        },
    },
    "topic": {
        "train": {
            "zh": (
                "還有誰寫過「{topic}」？",
                "還有何人的詩題裡有「{topic}」？",
                "別的詩人也寫過「{topic}」？",
            ),
            "en": ("Who else wrote about 「{topic}」?",),
        },
        "eval": {
            "zh": ("寫「{topic}」的詩人還有誰？", "除他之外，誰也寫過「{topic}」？"),
            "en": ("Any other poet who wrote on 「{topic}」?",),
        },
    },
    "intro": {
        "train": {
            "zh": ("讀這首詩：「{poem}」", "請看這首詩：「{poem}」", "有這樣一首詩：「{poem}」"),
            "en": ("Here is a poem: 「{poem}」 ",),
        },
        "eval": {"zh": ("詩如下：「{poem}」",), "en": ("Read this poem: 「{poem}」 ",)},
    },
    "nth": {
        "train": {
            "zh": ("第{n}句是什麼？", "它的第{n}句是？", "請說出第{n}句。"),
            "en": ("What is line {k}?",),
        },
        "eval": {"zh": ("第{n}句寫的是什麼？", "詩中第{n}句為何？"), "en": ("Tell me line {k}.",)},
    },
    "after": {
        "train": {
            "zh": (
                "「{line}」的下一句是什麼？",
                "「{line}」後面是什麼？",
                "「{line}」之後接什麼？",
            ),
            "en": ("What comes after 「{line}」?",),
        },
        "eval": {
            "zh": ("緊接「{line}」的是什麼？", "「{line}」的後一句是？"),
            "en": ("Which line follows 「{line}」?",),
        },
    },
    "count": {
        "train": {
            "zh": ("這首詩有幾句？", "這首詩一共多少句？", "全詩共有幾句？"),
            "en": ("How many lines does it have?",),
        },
        "eval": {"zh": ("數一數，這首詩共幾句？", "詩中有多少句？"), "en": ("Count its lines.",)},
    },
    "width": {
        "train": {
            "zh": ("每句幾個字？", "這首詩每句有多少字？", "一句有幾個字？"),
            "en": ("How many characters per line?",),
        },
        "eval": {
            "zh": ("每一句的字數是多少？", "詩的每句各有幾字？"),
            "en": ("How long is each line, in characters?",),
        },
    },
    "next": {
        "train": {
            "zh": ("下一句？", "再下一句是什麼？", "那下一句是？", "接下來是什麼？"),
            "en": ("And the next line?",),
        },
        "eval": {"zh": ("然後是什麼？", "後面一句是？"), "en": ("And after that?",)},
    },
    "previous": {
        "train": {"zh": ("上一句是什麼？", "那前一句是？"), "en": ("And the line before?",)},
        "eval": {"zh": ("它前面一句是？",), "en": ("What came just before it?",)},
    },
    "couplet": {
        "train": {
            "zh": (
                "請為上句「{half}」對出下句。",
                "出句是「{half}」，請對一句。",
                "以「{half}」為上句，對一個下句。",
            ),
            "en": ("Complete the couplet: 「{half}」",),
        },
        "eval": {
            "zh": ("上句「{half}」，下句如何對？", "給「{half}」接一個下句。"),
            "en": ("Write a second half for 「{half}」.",),
        },
    },
    "quatrain": {
        "train": {
            "zh": (
                "以《{title}》為題，寫一首{form}。",
                "請寫一首{form}，題目是《{title}》。",
                "題為《{title}》，作一首{form}。",
            ),
            "en": ("Write a {form_en} quatrain titled 《{title}》.",),
        },
        "eval": {
            "zh": ("試以《{title}》作{form}一首。", "我想要一首{form}，詩題《{title}》。"),
            "en": ("Compose a {form_en} quatrain on 《{title}》.",),
        },
    },
}

ANSWERS = {
    "author": "作者是{author}。",
    "title": "題目是《{title}》。",
    "both": "這是{author}的《{title}》。",
    "refusal": "我不知道有這樣開頭的詩。",
    "other-work": "{author}還寫過《{title}》。",
    "topic": "還有{author}的《{title}》。",
    "nth": "第{n}句是「{line}」。",
    "next": "下一句是「{line}」。",
    "previous": "上一句是「{line}」。",
    "last": "這已經是最後一句了。",
    "first": "這已經是第一句了。",
    "count": "這首詩共有{n}句。",
    "width": "每句{n}個字。",
}


@dataclass(frozen=True)
class Poem:
    """A shipped Tang poem: its title, author and body (punctuation kept)."""

    title: str
    author: str
    body: str


@dataclass(frozen=True)
class Fact:
    """A poem whose title and author the chat model learns: ``chat_facts.jsonl``, one line."""

    title: str
    author: str
    first_line: str


def load_poems(split: str) -> list[Poem]:
    """The poems of one split of the built-in tang corpus, with their titles and authors."""
    bodies = load_corpus("tang").split(split)
    meta = lzma.decompress(_builtin(f"{split}.meta.tsv.xz").read_bytes()).decode("utf-8")
    rows = [line.split("\t") for line in meta.split("\n")[:-1]]
    assert len(rows) == len(bodies), f"{split}.meta.tsv.xz is out of step with the bodies"
    return [Poem(title, author, body) for (title, author), body in zip(rows, bodies, strict=True)]


def load_facts() -> list[Fact]:
    """The fact poems of ``chat_facts.jsonl``, in file (corpus) order."""
    text = _builtin(FACTS_FILE).read_text(encoding="utf-8")
    return [Fact(**json.loads(line)) for line in text.splitlines() if line]


def poem_lines(body: str) -> list[str] | None:
    """The lines of a regular poem, punctuation dropped, or None for any other body.

    Regular: 4 or 8 lines of 5 or 7 ideographs each, ending "，" and "。" in turn.
    """
    pieces = _PIECE.findall(body)
    if "".join(pieces) != body or len(pieces) not in (4, 8):
        return None
    if any(piece[-1] != "，。"[i % 2] for i, piece in enumerate(pieces)):
        return None
    lines = [piece[:-1] for piece in pieces]
    if len(lines[0]) not in _FORMS or any(len(line) != len(lines[0]) for line in lines):
        return None
    return lines if all(_HAN.fullmatch(line) for line in lines) else None


def build_dialogues(split: str) -> list[dict]:
    """The tang-chat dialogues of ``split`` (see the module docstring for how they are made).

    Args:
        split: ``"train"`` (training phrasings, train-split poems) or ``"eval"`` (held-out
            phrasings, test-split poems, the same facts).

    Returns:
        ``{"messages": [{"role", "content"}, ...], "kinds": [one kind per assistant turn]}``
        dicts, in a fixed order.

    Raises:
        ConfigError: an unknown split.
    """
    if split not in DIALOGUE_SPLITS:
        raise ConfigError(f"tang-chat has the splits {', '.join(DIALOGUE_SPLITS)}, not {split!r}")
    corpus = "train" if split == "train" else "test"
    tang = load_corpus("tang")
    openings = {
        _first_line(body) for name in ("train", "valid", "test") for body in tang.split(name)
    }
    maker = _Maker(random.Random(_SEEDS[split]), split, load_facts(), load_poems(corpus), openings)
    return maker.train() if split == "train" else maker.eval()


BUILTIN_DIALOGUES: dict[str, Callable[[str], list[dict]]] = {"tang-chat": build_dialogues}
"""Dialogue sets accepted by name wherever a dialogue file is: name -> ``build(split)``."""


def _builtin(name: str):
    return resources.files("lmforge.data").joinpath("builtin", "tang", name)


class _Conversation:
    """A dialogue being written: messages, kinds, and its language."""

    def __init__(self, maker: _Maker) -> None:
        self.maker = maker
        self.lang = "en" if maker.rng.random() < ENGLISH_SHARE else "zh"
        self.messages: list[dict] = []
        self.kinds: list[str] = []

    def ask(self, intent: str, answer: str, kind: str, prefix: str = "", **fields) -> None:
        """Add one exchange: a phrasing of ``intent`` filled with ``fields``, and ``answer``."""
        question = self.phrase(intent, **fields)
        self.messages.append({"role": "user", "content": prefix + question})
        self.messages.append({"role": "assistant", "content": answer})
        self.kinds.append(kind)

    def phrase(self, intent: str, **fields) -> str:
        choices = PHRASINGS[intent][self.maker.split][self.lang]
        return self.maker.rng.choice(choices).format(**fields)

    def done(self) -> dict:
        return {"messages": self.messages, "kinds": self.kinds}


class _Maker:
    """Draws the dialogues of one split from the facts and the poems of one corpus split."""

    def __init__(self, rng, split: str, facts: list[Fact], poems: list[Poem], openings: set[str]):
        self.rng, self.split, self.facts, self.openings = rng, split, facts, openings
        self.regular = [(p, lines) for p in poems if (lines := poem_lines(p.body))]
        self.quatrains = [
            (p, lines) for p, lines in self.regular if len(lines) == 4 and _clean_title(p.title)
        ]
        self.by_author: dict[str, list[Fact]] = {}
        for fact in facts:
            self.by_author.setdefault(fact.author, []).append(fact)

    # -- the two splits ------------------------------------------------------------------------

    def train(self) -> list[dict]:
        shapes = (self.single, self.chain, self.pair, self.beside_refusal)
        dialogues = []
        for _ in range(FACT_ROUNDS):
            for fact in self.rng.sample(self.facts, len(self.facts)):
                shape = self.rng.choices(shapes, weights=(3, 4, 2, 1))[0]
                dialogues.append(shape(fact))
        for _ in range(TRAIN_SIZES["reading"]):
            dialogues.append(self.reading(self.rng.choice(self.regular), self.rng.randint(1, 4)))
        for _ in range(TRAIN_SIZES["couplet"]):
            dialogues.append(self.couplets(self.rng.choice(self.regular), self.rng.randint(1, 2)))
        dialogues += [
            self.quatrain(self.rng.choice(self.quatrains)) for _ in range(TRAIN_SIZES["quatrain"])
        ]
        dialogues += [self.refusal() for _ in range(TRAIN_SIZES["refusal"])]
        self.rng.shuffle(dialogues)
        return dialogues

    def eval(self) -> list[dict]:
        facts = self.rng.sample(self.facts, len(self.facts))
        chained = [f for f in facts if self.topics(f)][: EVAL_SIZES["chains"]]
        rest = [f for f in facts if f not in chained]
        paired, single = rest[: 2 * EVAL_SIZES["pairs"]], rest[2 * EVAL_SIZES["pairs"] :]
        dialogues = [self.chain(fact, full=True) for fact in chained]
        dialogues += [self.pair(a, b) for a, b in zip(paired[::2], paired[1::2], strict=True)]
        dialogues += [self.single(fact) for fact in single]
        dialogues += [
            self.reading(p, 4) for p in self.rng.sample(self.regular, EVAL_SIZES["reading"])
        ]
        dialogues += [
            self.couplets(p, 1) for p in self.rng.sample(self.regular, EVAL_SIZES["couplet"])
        ]
        for width in _FORMS:
            form = [q for q in self.quatrains if len(q[1][0]) == width]
            dialogues += [self.quatrain(q) for q in self.rng.sample(form, EVAL_SIZES["quatrain"])]
        dialogues += [self.refusal() for _ in range(EVAL_SIZES["refusal"])]
        return dialogues

    # -- facts ---------------------------------------------------------------------------------

    def single(self, fact: Fact) -> dict:
        talk = _Conversation(self)
        self.know(talk, fact, self.rng.choice(("author", "title", "both")))
        return talk.done()

    def chain(self, fact: Fact, full: bool = False) -> dict:
        """A fact question, then the other half of the fact, the author's other poem and a
        topic, in that order (``full``: all three; else the first 0 to 3 of them)."""
        talk = _Conversation(self)
        asked = self.know(talk, fact, self.rng.choice(("author", "title")))
        steps = [self.complement, self.other_work, self.topic][: 3 if self.topics(fact) else 2]
        if not full:
            steps = steps[: self.rng.randint(0, len(steps))]
        for step in steps:
            step(talk, fact, asked)
        return talk.done()

    def pair(self, fact: Fact, second: Fact | None = None) -> dict:
        """Two fact questions, then follow-ups on the second (in eval both: the other half of
        the fact, then the author's other poem; in training the first or both)."""
        while second is None or second == fact:
            second = self.rng.choice(self.facts)
        talk = _Conversation(self)
        self.know(talk, fact, self.rng.choice(("author", "title", "both")))
        asked = self.know(talk, second, self.rng.choice(("author", "title")))
        steps = [self.complement, self.other_work]
        if self.split == "train":
            steps = steps[: self.rng.randint(1, 2)]
        for step in steps:
            step(talk, second, asked)
        return talk.done()

    def beside_refusal(self, fact: Fact) -> dict:
        talk = _Conversation(self)
        turns = [
            lambda: self.know(talk, fact, self.rng.choice(("author", "title", "both"))),
            lambda: self.refuse(talk),
        ]
        self.rng.shuffle(turns)
        for turn in turns:
            turn()
        return talk.done()

    def refusal(self) -> dict:
        talk = _Conversation(self)
        self.refuse(talk)
        return talk.done()

    def know(self, talk: _Conversation, fact: Fact, intent: str) -> str:
        answer = ANSWERS[intent].format(author=fact.author, title=fact.title)
        talk.ask(intent, answer, "knowledge", line=fact.first_line)
        return intent

    def refuse(self, talk: _Conversation) -> None:
        intent = self.rng.choice(("author", "title", "both"))
        talk.ask(intent, ANSWERS["refusal"], "refusal", line=self.fake_opening())

    def complement(self, talk: _Conversation, fact: Fact, asked: str) -> None:
        intent = "title" if asked == "author" else "author"
        answer = ANSWERS[intent].format(author=fact.author, title=fact.title)
        talk.ask(f"follow-{intent}", answer, "follow-up")

    def other_work(self, talk: _Conversation, fact: Fact, asked: str) -> None:
        other = next(f for f in self.by_author[fact.author] if f != fact)
        answer = ANSWERS["other-work"].format(author=fact.author, title=other.title)
        talk.ask("other-work", answer, "follow-up")

    def topic(self, talk: _Conversation, fact: Fact, asked: str) -> None:
        topic = self.topics(fact)[0]
        other = next(f for f in self.facts if topic in f.title and f.author != fact.author)
        answer = ANSWERS["topic"].format(author=other.author, title=other.title)
        talk.ask("topic", answer, "follow-up", topic=topic)

    def topics(self, fact: Fact) -> list[str]:
        """The topic characters of a fact's title that another author's fact title shares."""
        return [
            t
            for t in TOPICS
            if t in fact.title and any(t in f.title and f.author != fact.author for f in self.facts)
        ]

    def fake_opening(self) -> str:
        """A first line that begins no shipped poem: two halves of different poems' openings."""
        while True:
            (_, first), (_, second) = self.rng.sample(self.regular, 2)
            fake = f"{first[0]}，{second[1]}。"
            if len(first[0]) == len(second[1]) and fake not in self.openings:
                return fake

    # -- reading and creation ------------------------------------------------------------------

    def reading(self, chosen: tuple[Poem, list[str]], turns: int) -> dict:
        """A regular poem in the first user turn and ``turns`` questions about it; in eval the
        first names a line and the second is a follow-up."""
        poem, lines = chosen
        talk = _Conversation(self)
        prefix = talk.phrase("intro", poem=poem.body)
        at = None  # index of the line named last
        for turn in range(turns):
            intents = ["nth", "after", "count", "width"]
            if turn < 2 and self.split == "eval":
                intents = [["nth", "after"], ["next", "previous"]][turn]
            elif at is not None:
                intents += ["next", "previous"] * 2
            at = self.read(talk, lines, self.rng.choice(intents), at, prefix if turn == 0 else "")
        return talk.done()

    def read(self, talk: _Conversation, lines: list[str], intent: str, at, prefix: str):
        """Ask one reading question; returns the index of the line named last."""
        size = len(lines)
        if intent == "nth":
            i = self.rng.randrange(size)
            answer = ANSWERS["nth"].format(n=_NUMERALS[i], line=lines[i])
            talk.ask("nth", answer, "reading", prefix, n=_NUMERALS[i], k=i + 1)
            return i
        if intent == "after":
            i = self.rng.randrange(size - 1)
            answer = ANSWERS["next"].format(line=lines[i + 1])
            talk.ask("after", answer, "reading", prefix, line=lines[i])
            return i + 1
        if intent in ("count", "width"):
            n = _NUMERALS[(size if intent == "count" else len(lines[0])) - 1]
            talk.ask(intent, ANSWERS[intent].format(n=n), "reading", prefix)
            return at
        step = 1 if intent == "next" else -1
        i = at + step
        if 0 <= i < size:
            answer = ANSWERS[intent].format(line=lines[i])
        else:
            answer, i = ANSWERS["last" if step == 1 else "first"], at
        talk.ask(intent, answer, "follow-up")
        return i

    def couplets(self, chosen: tuple[Poem, list[str]], turns: int) -> dict:
        _, lines = chosen
        talk = _Conversation(self)
        for k in self.rng.sample(range(len(lines) // 2), turns):
            talk.ask("couplet", lines[2 * k + 1] + "。", "couplet", half=lines[2 * k])
        return talk.done()

    def quatrain(self, chosen: tuple[Poem, list[str]]) -> dict:
        poem, lines = chosen
        form, form_en = _FORMS[len(lines[0])]
        talk = _Conversation(self)
        talk.ask("quatrain", poem.body, "quatrain", title=poem.title, form=form, form_en=form_en)
        return talk.done()


def _first_line(body: str) -> str:
    """The body up to and including its first sentence end (as ``chat_facts.jsonl`` quotes)."""
    end = _END.search(body)
    return body[: end.end()] if end else body


def _clean_title(title: str) -> bool:
    return 2 <= len(title) <= 8 and _HAN.fullmatch(title) is not None
