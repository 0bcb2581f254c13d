"""Built-in vertical (domain) classification tasks, and labelled subsets of a given size.

A vertical task is a domain with lots of unlabelled text and a few labelled examples:

* ``spam``: the SpamAssassin public mail corpus, ham or spam (``builtin/spam``, made by
  ``tools/make_spam_task.py``; each text is subject + " | " + body cut to 1,000 characters).
  Labelled pool: the 4,838 training mails; evaluation: the 569 test mails; unlabelled domain
  text: the training mails' texts.
* ``brown-genre``: the 15 genres of the Brown corpus (press reportage ... humor). The 500 texts
  of the built-in ``brown`` corpus (in file order ca01 ... cr09, so a text's genre follows from
  its position and ``BROWN_GENRES``) are cut into passages of ``PASSAGE_WORDS`` words; within
  each genre every fifth text (the 5th, 10th, ...) goes to the evaluation split, so no text is
  in two splits. Unlabelled domain text: the training passages' texts.

Labelled examples are ``{"text": str, "label": str}`` (``lmforge.data.labelled.read_examples``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from lmforge.data.corpus import load_corpus, read_jsonl
from lmforge.errors import DataError

__all__ = [
    "BROWN_GENRES",
    "PASSAGE_WORDS",
    "TASKS",
    "VerticalData",
    "brown_genre_task",
    "brown_passages",
    "builtin_task",
    "sample_labeled",
    "spam_task",
]

BUILTIN = Path(__file__).parent / "builtin"
PASSAGE_WORDS = 100
# (genre, number of texts) in file order (the Brown corpus manual; ../shared/data/README.md).
BROWN_GENRES = (
    ("press-reportage", 44),
    ("press-editorial", 27),
    ("press-reviews", 17),
    ("religion", 17),
    ("skills-hobbies", 36),
    ("popular-lore", 48),
    ("belles-lettres", 75),
    ("miscellaneous-government", 30),
    ("learned", 80),
    ("fiction-general", 29),
    ("fiction-mystery", 24),
    ("fiction-science", 6),
    ("fiction-adventure", 29),
    ("fiction-romance", 29),
    ("humor", 9),
)
# Words that stand for each label in a few-shot prompt (a small LM knows these words).
_GENRE_WORDS = {
    "press-reportage": "news",
    "press-editorial": "opinion",
    "press-reviews": "review",
    "religion": "religion",
    "skills-hobbies": "hobbies",
    "popular-lore": "lore",
    "belles-lettres": "essay",
    "miscellaneous-government": "government",
    "learned": "science",
    "fiction-general": "fiction",
    "fiction-mystery": "mystery",
    "fiction-science": "science fiction",
    "fiction-adventure": "adventure",
    "fiction-romance": "romance",
    "humor": "humor",
}


@dataclass(frozen=True)
class VerticalData:
    """One vertical task.

    Attributes:
        name: the task's name.
        train: the labelled pool, ``{"text", "label"}`` records.
        test: the evaluation examples.
        unlabeled: the domain's unlabelled text, one item per text.
        description: the task description that opens a few-shot prompt.
        verbalizers: label -> the word(s) a language model scores for it in a prompt.
        settings: the ``lmforge.vertical.VerticalConfig`` settings measured best on this task,
            per base family (``{"gpt": {"pooling": "mean"}}``); ``lmforge vertical`` applies
            them under the user's ``--config`` and ``--set``.
    """

    name: str
    train: list[dict]
    test: list[dict]
    unlabeled: list[str]
    description: str
    verbalizers: dict
    settings: dict = field(default_factory=dict)


def _task(
    name: str,
    train: list[dict],
    test: list[dict],
    description: str,
    verbalizers: dict,
    settings: dict | None = None,
) -> VerticalData:
    """A task whose unlabelled domain text is the texts of its labelled pool."""
    unlabeled = [r["text"] for r in train]
    return VerticalData(name, train, test, unlabeled, description, verbalizers, settings or {})


def spam_task() -> VerticalData:
    """The built-in SpamAssassin ham/spam task."""
    folder = BUILTIN / "spam"
    train, test = (_read_records(folder / f"{split}.jsonl.xz") for split in ("train", "test"))
    return _task(
        "spam",
        train,
        test,
        "Is each e-mail a personal message or advertising?",
        {"ham": "personal", "spam": "advertising"},
        # Five draws at 64 labels: (c) 0.922 / 0.906 against TF-IDF's 0.913 / 0.894 with these,
        # below TF-IDF with GPT-1's last token and lr 3e-4 (benchmarks/RESULTS.md, seventh session).
        {"gpt": {"pooling": "mean", "dapt_lr": 1e-3}},
    )


@cache
def brown_passages(words: int = PASSAGE_WORDS) -> tuple[tuple[int, str, str], ...]:
    """(text number, genre, passage) of every passage of the built-in Brown corpus.

    Each text's words (its paragraphs joined) are cut into consecutive passages of ``words``
    words; a last piece shorter than half that joins the passage before it.
    """
    corpus = load_corpus("brown")
    texts, current = [], []
    for line in [*corpus.train, *corpus.valid, *corpus.test]:
        if line.strip():
            current.extend(line.split())
        elif current:  # an empty line ends a text
            texts.append(current)
            current = []
    if current:
        texts.append(current)
    genres = [genre for genre, count in BROWN_GENRES for _ in range(count)]
    if len(texts) != len(genres):
        raise DataError(f"the built-in brown corpus has {len(texts)} texts, expected 500")
    out = []
    for number, (text, genre) in enumerate(zip(texts, genres, strict=True)):
        pieces = [text[i : i + words] for i in range(0, len(text), words)]
        if len(pieces) > 1 and len(pieces[-1]) < words // 2:
            last = pieces.pop()
            pieces[-1] = pieces[-1] + last
        out.extend((number, genre, " ".join(piece)) for piece in pieces)
    return tuple(out)


def brown_genre_task() -> VerticalData:
    """The built-in Brown genre task (15 genres, passages, split by text)."""
    first_text, start = {}, 0
    for genre, count in BROWN_GENRES:
        first_text[genre] = start
        start += count
    train, test = [], []
    for number, genre, passage in brown_passages():
        held_out = (number - first_text[genre]) % 5 == 4  # every fifth text of its genre
        (test if held_out else train).append({"text": passage, "label": genre})
    # GPT-1's last-token pooling stays: mean pooling did worse here (benchmarks/RESULTS.md).
    description = "Which kind of writing is each passage from?"
    return _task("brown-genre", train, test, description, dict(_GENRE_WORDS))


TASKS = {"spam": spam_task, "brown-genre": brown_genre_task}


def builtin_task(name: str) -> VerticalData:
    """A built-in vertical task by name (``TASKS``)."""
    if name not in TASKS:
        raise DataError(f"unknown vertical task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]()


def sample_labeled(records: Sequence[dict], n: int | str, seed: int = 0) -> list[dict]:
    """``n`` labelled examples drawn class-balanced from ``records`` ("all": every one).

    Each label gets n // (number of labels) examples, the first labels (sorted) one more for the
    remainder; a label with too few examples gives all it has and the others fill the gap.
    The draw depends only on (records, n, seed), and a smaller draw is not a subset of a larger.
    """
    if n == "all":
        return list(records)
    if not isinstance(n, int) or n < 1:
        raise DataError(f"a label budget must be a positive integer or 'all', got {n!r}")
    rng = random.Random(seed * 7919 + n)
    by_label: dict = {}
    for record in records:
        by_label.setdefault(record["label"], []).append(record)
    pools = [rng.sample(by_label[k], len(by_label[k])) for k in sorted(by_label, key=str)]
    chosen: list[dict] = []
    while len(chosen) < min(n, len(records)):  # round robin over the labels
        for pool in pools:
            if pool and len(chosen) < n:
                chosen.append(pool.pop())
    rng.shuffle(chosen)
    return chosen


def _read_records(path: Path) -> list[dict]:
    return [{"text": r["text"], "label": r["label"]} for _, r in read_jsonl(path)]
