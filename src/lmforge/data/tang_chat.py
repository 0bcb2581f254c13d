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
  how many characters each line has: the answer is in the conversation. The line after a quoted
  one, and the next line as a follow-up, are answered by quoting the poem from the named line on:
  "原詩寫道「X，Y」，所以下一句是「Y」。" (the copy head then copies on where the poem has X;
  a wrong first step was what failed most).
* follow-up: a question that needs the earlier turns: the next or previous line after a line was
  named; after a knowledge answer, the title or author not yet given, "他還寫過什麼？" (the
  author's first other title in the fact list) and "還有誰寫過「月」？" (the first fact by another
  author whose title holds that character; topics ``TOPICS``).
* couplet: the first half of a couplet of a regular poem; the answer is its second half. A share
  of the training requests (``AFTER_AS_COUPLET``) use the wordings of "the line after 「X」" with
  no poem given, so that the poem in the conversation, not the wording, tells reading from a
  couplet (held-out couplet wordings were read as "the line after", and quoted no poem).
* quatrain: a five- or seven-character quatrain on a title; the answer is the real quatrain of
  that title and form. Training asks for the two forms equally often, as the held-out set does
  (the train split has about three seven-character quatrains to one five-character one). Its
  answers are also the first or last four lines of the eight-line regular poems (a 絕句 read as
  a 截句, half of a regulated poem), so that few answers repeat and the model writes a poem of
  the form asked for rather than recites one it knows. A larger share of the training quatrain
  requests are in English, with more wordings (``QUATRAIN_ENGLISH_SHARE``): the form word is
  spelt letter by letter.
* refusal: a knowledge question about a first line that begins no shipped poem (the first half
  of one poem's first line joined to the second half of another's); the answer says it knows no
  such poem.

Each intent has several question phrasings (shipped in ``chat_phrasings.json``), in Chinese and a
few in English (a dialogue is in English with probability ``ENGLISH_SHARE``); answers are one
fixed Chinese sentence per intent (``ANSWERS``). A share of the training questions
(``ASIDE_SHARE``) come with an aside before or after them that does not change what they ask
("請問，", "謝謝。", ``ASIDES``), so that the words that ask, not the whole template, carry the
question. For the same reason most Chinese training knowledge questions and quatrain requests
are composed from the parts in ``chat_composed.json``: a frame that quotes the line
("以「X」開頭的詩") times a phrase that asks ("的作者是誰？"), also as a request ("告訴我") or with
the question first, 249 to 279 more wordings an intent (``compose``); a title clause before or
after a request ("以《T》為題，" + "寫一首{form}。"), 80 more quatrain wordings
(``compose_requests``). None is within a ``difflib`` ratio of ``COMPOSED_CLOSEST`` of a held-out
wording (``near_held_out``). The phrasings are split in two: ``build_dialogues("train")`` uses
only the training ones, ``build_dialogues("eval")`` only the held-out ones.

* ``"train"``: train-split poems; every fact opens ``FACT_ROUNDS`` dialogues (a single question,
  a chain of up to three follow-ups, a pair of facts, or a fact beside a refusal), then
  reading, couplet, quatrain and refusal dialogues; shuffled with ``random.Random(1)``. The
  poems read are recombined: 4 or 8 lines of one width drawn from all the train split's regular
  poems, so that no answer can come from a poem the model knows by heart, only from the poem in
  the conversation (on real poems a model learnt to recite the train poems it had memorised,
  and read none of the test split's). The line after a quoted one, the hardest question, is
  asked twice as often as each other reading question.
* ``"eval"``, fixed (``random.Random(2)``): every fact asked once, 50 of them in 4-turn chains
  (question, the other half of the fact, the author's other poem, a topic) and 100 in 4-turn pairs
  (two facts, then two follow-ups on the second); 120 test-split poems read in 4-turn chains;
  200 couplets and 100 quatrains (50 of each form) from the test split; 150 refusals.
"""

from __future__ import annotations

import difflib
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
    "fixed_texts",
    "load_facts",
    "load_phrasings",
    "load_poems",
    "poem_lines",
]

KINDS = ("knowledge", "reading", "follow-up", "couplet", "quatrain", "refusal")
DIALOGUE_SPLITS = ("train", "eval")
FACTS_FILE = "chat_facts.jsonl"
PHRASINGS_FILE = "chat_phrasings.json"  # intent -> split -> language -> question templates
COMPOSED_FILE = "chat_composed.json"  # the parts of knowledge questions and quatrain requests
COMPOSED_CLOSEST = 0.75
TOPICS = "月春秋山江夜花"  # title characters the "who else wrote about ..." follow-up asks about
ENGLISH_SHARE = 0.1
# English quatrain requests in training, with 16 wordings: the form word is spelt letter by
# letter ("five-" or "seven-character"); with 0.1 and 6 wordings a request with a verb not seen
# in training was answered in seven characters whatever it asked
QUATRAIN_ENGLISH_SHARE = 0.3
AFTER_AS_COUPLET = 0.3  # share of training couplet requests worded as "the line after"
FACT_ROUNDS = 13
# quatrain: 3,600 (2,400 before) wrote a held-out quatrain of the right form more often on every
# seed (RESULTS.md, 2026-12-07): a line one character short or long was what failed
TRAIN_SIZES = {"reading": 3500, "couplet": 1000, "quatrain": 3600, "refusal": 1000}
ASIDE_SHARE = 0.3  # share of training questions said with an aside before or after them
# Words around a question that do not change what it asks: a model that has seen questions only
# as bare templates reads the template, not the words that ask.
ASIDES = {
    "zh": {
        "lead": ["請問，", "我想問一下：", "再問一個問題：", "好，", "對了，", "那麼，"],
        "tail": ["謝謝。", "請回答。", "請直接說。", "請簡短回答。", "麻煩了。", "我很想知道。"],
    },
    "en": {
        "lead": ["Well, ", "A question: ", "Hmm, ", "And now: "],
        "tail": [" Answer briefly, please.", " Cheers.", " A short answer, please."],
    },
}
EVAL_SIZES = {  # quatrain: per form
    "chains": 50,
    "pairs": 50,
    "reading": 120,
    "couplet": 200,
    "quatrain": 50,
    "refusal": 150,
}
_SEEDS = {"train": 1, "eval": 2}
_HAN = re.compile(r"[\u4e00-\u9fff]+")
_END = re.compile(r"[。！？；]")
_PIECE = re.compile(r"[^，。！？；]+[，。！？；]")
_NUMERALS = "一二三四五六七八"
_FORMS = {5: ("五言絕句", "five-character"), 7: ("七言絕句", "seven-character")}

ANSWERS = {
    "author": "作者是{author}。",
    "title": "題目是《{title}》。",
    "both": "這是{author}的《{title}》。",
    "refusal": "我不知道有這樣開頭的詩。",
    "other-work": "{author}還寫過《{title}》。",
    "topic": "還有{author}的《{title}》。",
    "nth": "第{n}句是「{line}」。",
    # the line asked about, then the poem as written on from it: the answer reads the line
    # where the poem has it and copies on, as a copy head does best (see ``read``)
    "after": "原詩寫道「{before}{mark}{line}」，所以下一句是「{line}」。",
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


def load_phrasings() -> dict[str, dict[str, dict[str, list[str]]]]:
    """The question templates of ``chat_phrasings.json``: intent -> ``"train"`` or ``"eval"`` ->
    ``"zh"`` or ``"en"`` -> templates with ``{fields}``. Their answers are ``ANSWERS``.

    The Chinese training knowledge questions and quatrain requests also have the ones
    ``compose`` and ``compose_requests`` make from ``chat_composed.json``, less those too like a
    held-out wording (``near_held_out``)."""
    phrasings = json.loads(_builtin(PHRASINGS_FILE).read_text(encoding="utf-8"))
    parts = json.loads(_builtin(COMPOSED_FILE).read_text(encoding="utf-8"))
    held_out = [t for intent in phrasings.values() for t in intent["eval"]["zh"]]
    for intent, wordings in composed_wordings(parts).items():
        train = phrasings[intent]["train"]["zh"]
        train += [t for t in wordings if t not in train and not near_held_out(t, held_out)]
    return phrasings


def composed_wordings(parts: dict) -> dict[str, list[str]]:
    """Intent -> the wordings made from ``parts`` (``chat_composed.json``) before the held-out
    filter: the knowledge intents' by ``compose``, ``"quatrain"``'s by ``compose_requests``."""
    made = {intent: compose(parts["frames"], asks) for intent, asks in parts["asks"].items()}
    return made | {"quatrain": compose_requests(parts["quatrain"])}


def compose(frames: dict[str, list[str]], asks: dict[str, list[str]]) -> list[str]:
    """Knowledge questions made as a frame that quotes the line times a phrase that asks.

    ``frames``: ``"line"`` (the line itself), ``"poem"`` (the poem it begins) and ``"lead"``
    (a clause the question follows), ``"verb"`` and ``"object"`` (a request: "告訴我" and what
    it names); ``asks``: ``"any"`` (said after a line or a poem), ``"line"`` (after a line only),
    ``"alone"`` (a question of its own, after a comma), ``"noun"`` (what a request asks for) and
    ``"first"`` (a question put before the line or poem).
    With some 20 hand-written wordings an intent, a model matched whole wordings: one unseen
    word (詩人, 首句) sent a held-out question to another intent. Composed, the frame words are
    said with every intent, so the asking words carry it."""
    made = [f + a for f in frames["line"] for a in asks["any"] + asks["line"]]
    made += [f + a for f in frames["poem"] for a in asks["any"]]
    made += [f + "，" + a for f in frames["line"] + frames["poem"] for a in asks["alone"]]
    made += [f + a for f in frames["lead"] for a in asks["alone"]]
    made += [
        v + f + "的" + n + "。"
        for v in frames["verb"]
        for f in frames["object"]
        for n in asks["noun"]
    ]
    return made + [a + f for a in asks["first"] for f in frames["line"] + frames["poem"]]


def compose_requests(parts: dict[str, list[str]]) -> list[str]:
    """Quatrain requests made as the title then the request ("以《T》為題，" + "寫一首{form}。"), or
    the request then the title ("寫一首{form}" + "，" + "題為《T》。"). With 16 hand-written
    wordings, composed knowledge questions pulled held-out requests that shared a word with
    them (詩題, 作) to the other form's width or to a knowledge answer."""
    made = [lead + request for lead in parts["lead"] for request in parts["request"]]
    return made + [ask + "，" + tail for ask in parts["ask"] for tail in parts["tail"]]


def near_held_out(wording: str, held_out: list[str]) -> bool:
    """Whether ``wording`` is too like a held-out one: a ``difflib`` ratio of
    ``COMPOSED_CLOSEST`` or more, with the ``{fields}`` left out."""
    bare = re.sub(r"\{\w+\}", "", wording)
    return any(
        difflib.SequenceMatcher(None, bare, re.sub(r"\{\w+\}", "", h)).ratio() >= COMPOSED_CLOSEST
        for h in held_out
    )


def fixed_texts(split: str = "train") -> list[str]:
    """The words every dialogue of ``split`` is made of besides the poems: its question
    templates and answer sentences with their ``{fields}`` left out."""
    templates = [
        *(q for intent in load_phrasings().values() for qs in intent[split].values() for q in qs),
        *ANSWERS.values(),
        *(aside for sides in ASIDES.values() for asides in sides.values() for aside in asides),
    ]
    return [re.sub(r"\{\w+\}", "", template) for template in templates]


def poem_lines(body: str) -> list[str] | None:
    """The lines of a regular poem, punctuation dropped, or None for any other body.

    Regular: 4 or 8 lines of 5 or 7 ideographs each, ending "，" and "。" in turn.
    """
    pieces = _PIECE.findall(body)
    if "".join(pieces) != body or len(pieces) not in (4, 8):
        return None
    if any(piece[-1] != _end_mark(i) for i, piece in enumerate(pieces)):
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
    return maker.training() if split == "train" else maker.evaluation()


BUILTIN_DIALOGUES: dict[str, Callable[[str], list[dict]]] = {"tang-chat": build_dialogues}
"""Dialogue sets accepted by name wherever a dialogue file is: name -> ``build(split)``."""


def _builtin(name: str):
    return resources.files("lmforge.data").joinpath("builtin", "tang", name)


class _Conversation:
    """A dialogue being written: messages, kinds, and its language."""

    def __init__(self, maker: _Maker, english: float = ENGLISH_SHARE) -> None:
        self.maker = maker
        self.lang = "en" if maker.rng.random() < english else "zh"
        self.messages: list[dict] = []
        self.kinds: list[str] = []

    def ask(self, intent: str, answer: str, kind: str, prefix: str = "", **fields) -> None:
        """Add one exchange: a phrasing of ``intent`` filled with ``fields``, and ``answer``."""
        question = self.aside(self.phrase(intent, **fields))
        self.messages.append({"role": "user", "content": prefix + question})
        self.messages.append({"role": "assistant", "content": answer})
        self.kinds.append(kind)

    def phrase(self, intent: str, **fields) -> str:
        choices = self.maker.phrasings[intent][self.maker.split][self.lang]
        return self.maker.rng.choice(choices).format(**fields)

    def aside(self, question: str) -> str:
        """A training question, said with an aside before or after it ``ASIDE_SHARE`` of the
        time; a held-out one as it is."""
        rng = self.maker.rng
        if self.maker.split != "train" or rng.random() >= ASIDE_SHARE:
            return question
        where = rng.choice(("lead", "tail"))
        aside = rng.choice(ASIDES[self.lang][where])
        return aside + question if where == "lead" else question + aside

    def done(self) -> dict:
        return {"messages": self.messages, "kinds": self.kinds}


class _Maker:
    """Draws the dialogues of one split from the facts and the poems of one corpus split."""

    def __init__(
        self, rng: random.Random, split: str, facts: list[Fact], poems: list[Poem], openings
    ):
        self.rng, self.split, self.facts, self.openings = rng, split, facts, openings
        self.phrasings = load_phrasings()
        self.regular = [(p, lines) for p in poems if (lines := poem_lines(p.body))]
        self.lines = {width: [] for width in _FORMS}  # width -> every line of that width
        for _, lines in self.regular:
            self.lines[len(lines[0])] += lines
        # width -> the quatrains, and the halves of the eight-line poems (截句, training's
        # quatrain answers too), of that width with a clean title
        self.quatrain_forms = {width: [] for width in _FORMS}
        self.halves = {width: [] for width in _FORMS}
        for p, lines in self.regular:
            if not _clean_title(p.title):
                continue
            if len(lines) == 4:
                self.quatrain_forms[len(lines[0])].append((p, lines))
            else:
                self.halves[len(lines[0])] += [(p, lines[:4]), (p, lines[4:])]
        self.by_author: dict[str, list[Fact]] = {}
        for fact in facts:
            self.by_author.setdefault(fact.author, []).append(fact)
        # The topic characters of each fact's title that another author's fact title shares.
        self.topics = {
            fact: [t for t in TOPICS if t in fact.title and self.topic_answer(fact, t)]
            for fact in facts
        }

    # -- the two splits ------------------------------------------------------------------------

    def training(self) -> list[dict]:
        shapes = (self.single, self.chain, self.pair, self.beside_refusal)
        dialogues = []
        for _ in range(FACT_ROUNDS):
            for fact in self.rng.sample(self.facts, len(self.facts)):
                shape = self.rng.choices(shapes, weights=(3, 4, 2, 1))[0]
                dialogues.append(shape(fact))
        for _ in range(TRAIN_SIZES["reading"]):
            dialogues.append(self.reading(self.recombined(), self.rng.randint(1, 4)))
        for _ in range(TRAIN_SIZES["couplet"]):
            dialogues.append(self.couplets(self.rng.choice(self.regular), self.rng.randint(1, 2)))
        cut = {width: self.quatrain_forms[width] + self.halves[width] for width in _FORMS}
        dialogues += [  # the forms asked equally often (train has 3 seven-character to 1 five)
            self.quatrain(
                self.rng.choice(cut[self.rng.choice(tuple(_FORMS))]), QUATRAIN_ENGLISH_SHARE
            )
            for _ in range(TRAIN_SIZES["quatrain"])
        ]
        dialogues += [self.refusal() for _ in range(TRAIN_SIZES["refusal"])]
        self.rng.shuffle(dialogues)
        return dialogues

    def evaluation(self) -> list[dict]:
        facts = self.rng.sample(self.facts, len(self.facts))
        chained = [f for f in facts if self.topics[f]][: EVAL_SIZES["chains"]]
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
        for form in self.quatrain_forms.values():
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
        steps = [self.complement, self.other_work, self.topic][: 3 if self.topics[fact] else 2]
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
        topic = self.topics[fact][0]
        other = self.topic_answer(fact, topic)
        answer = ANSWERS["topic"].format(author=other.author, title=other.title)
        talk.ask("topic", answer, "follow-up", topic=topic)

    def topic_answer(self, fact: Fact, topic: str) -> Fact | None:
        """The first fact by another author whose title holds ``topic``."""
        return next((f for f in self.facts if topic in f.title and f.author != fact.author), None)

    def fake_opening(self) -> str:
        """A first line that begins no shipped poem: two halves of different poems' openings."""
        while True:
            (_, first), (_, second) = self.rng.sample(self.regular, 2)
            fake = f"{first[0]}，{second[1]}。"
            if len(first[0]) == len(second[1]) and fake not in self.openings:
                return fake

    # -- reading and creation ------------------------------------------------------------------

    def recombined(self) -> tuple[Poem, list[str]]:
        """A regular poem of lines drawn at random from the poems of one width (4 or 8 lines,
        "，" and "。" in turn)."""
        width = self.rng.choice(tuple(_FORMS))
        lines = self.rng.sample(self.lines[width], self.rng.choice((4, 8)))
        return Poem("", "", _regular_body(lines)), lines

    def reading(self, chosen: tuple[Poem, list[str]], turns: int) -> dict:
        """A regular poem in the first user turn and ``turns`` questions about it; in eval the
        first names a line and the second is a follow-up."""
        poem, lines = chosen
        talk = _Conversation(self)
        prefix = talk.phrase("intro", poem=poem.body)
        at = None  # index of the line named last
        for turn in range(turns):
            intents = ["nth", "after", "count", "width"]
            if self.split == "train":
                intents.append("after")
            if turn < 2 and self.split == "eval":
                intents = [["nth", "after"], ["next", "previous"]][turn]
            elif at is not None:
                intents += ["next", "previous"] * (2 if self.split == "train" else 1)
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
            talk.ask("after", _after_answer(lines, i), "reading", prefix, line=lines[i])
            return i + 1
        if intent in ("count", "width"):
            n = _NUMERALS[(size if intent == "count" else len(lines[0])) - 1]
            talk.ask(intent, ANSWERS[intent].format(n=n), "reading", prefix)
            return at
        step = 1 if intent == "next" else -1
        i = at + step
        if 0 <= i < size and intent == "next":
            answer = _after_answer(lines, at)
        elif 0 <= i < size:
            answer = ANSWERS[intent].format(line=lines[i])
        else:
            answer, i = ANSWERS["last" if step == 1 else "first"], at
        talk.ask(intent, answer, "follow-up")
        return i

    def couplets(self, chosen: tuple[Poem, list[str]], turns: int) -> dict:
        _, lines = chosen
        talk = _Conversation(self)
        for k in self.rng.sample(range(len(lines) // 2), turns):
            if self.split == "train" and self.rng.random() < AFTER_AS_COUPLET:
                # "the line after X" with no poem given: what comes next is the couplet's half
                talk.ask("after", lines[2 * k + 1] + "。", "couplet", line=lines[2 * k])
            else:
                talk.ask("couplet", lines[2 * k + 1] + "。", "couplet", half=lines[2 * k])
        return talk.done()

    def quatrain(self, chosen: tuple[Poem, list[str]], english: float = ENGLISH_SHARE) -> dict:
        poem, lines = chosen
        form, form_en = _FORMS[len(lines[0])]
        talk = _Conversation(self, english)
        talk.ask(
            "quatrain",
            _regular_body(lines),
            "quatrain",
            title=poem.title,
            form=form,
            form_en=form_en,
        )
        return talk.done()


def _end_mark(i: int) -> str:
    """The mark a regular poem ends its line ``i`` (from 0) with: "，" and "。" in turn."""
    return "，。"[i % 2]


def _regular_body(lines: list[str]) -> str:
    """The lines as a regular poem's body."""
    return "".join(line + _end_mark(i) for i, line in enumerate(lines))


def _after_answer(lines: list[str], i: int) -> str:
    """The answer naming the line after ``lines[i]``: the poem quoted from line i on, with the
    mark a regular poem ends line i with, then the line."""
    return ANSWERS["after"].format(before=lines[i], mark=_end_mark(i), line=lines[i + 1])


def _first_line(body: str) -> str:
    """The body up to and including its first sentence end (as ``chat_facts.jsonl`` quotes)."""
    end = _END.search(body)
    return body[: end.end()] if end else body


def _clean_title(title: str) -> bool:
    return 2 <= len(title) <= 8 and _HAN.fullmatch(title) is not None
