"""The any-to-any model's conversations, made from templates because every item's label is known.

Each task is one exchange in AnyGPT's conversation form (Zhan et al. 2024, section 4): the user
gives an item and a question, or a request; the assistant answers with text or with an item.
``TASKS`` names them as ``lmforge omni eval`` reports them (``image->text``, ``text->image``,
...). A chain is several turns that lean on the earlier ones: "what digit is this?" ->
"seven" -> "draw a bigger one" (or "draw another one") -> an image -> "say it" -> speech.

Answers in text are the bare label ("seven", "torus", "seven moving left"), so scoring is an
exact match. Which phrasing a conversation uses is drawn from the seeded generator.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from lmforge.omni.items import Items
from lmforge.omni.vocab import Item

__all__ = [
    "ASK",
    "CHAIN",
    "MAKE",
    "TASKS",
    "Bank",
    "chain_conversation",
    "conversation",
    "is_bigger",
    "item_names",
    "template_texts",
]

# What the user asks to be told about an item (modality -> phrasings).
ASK = {
    "image": [
        "What digit is this?",
        "Which digit is shown?",
        "Read this digit.",
        "What number is this?",
    ],
    "speech": [
        "What word is said?",
        "What do you hear?",
        "Which word is this?",
        "Write down the word.",
    ],
    "signal": [
        "Which class is this signal?",
        "Classify this signal.",
        "What digit does this signal encode?",
    ],
    "points": ["What shape is this?", "Name this 3D shape.", "Which object is this?"],
    "video": [
        "Which digit moves, and which way?",
        "Describe the motion.",
        "What moves in this video?",
    ],
}
# What the user asks to be made ({} is the label).
MAKE = {
    "image": ["Draw a {}.", "Draw the digit {}.", "Show me a {}.", "Write the number {}."],
    "speech": ["Say {}.", "Say the word {}.", "Pronounce {}.", "How does {} sound?"],
    "signal": ["Make a signal of class {}.", "Generate a {} signal."],
    "points": ["Make a 3D {}.", "Build a {} in 3D.", "Sculpt a {}."],
}
CROSS = {
    ("speech", "image"): ["Draw the digit you hear.", "Draw this number."],
    ("image", "speech"): ["Say this digit.", "Read this digit aloud."],
}
CHAIN = {
    "again": ["Draw another one.", "Draw it again."],
    "bigger": ["Draw a bigger one.", "Make it bigger."],
    "say": ["Say it.", "Now say it."],
}

# task -> (modality given, modality answered); "text" is the assistant's or user's text.
TASKS = {
    "image->text": ("image", "text"),
    "text->image": ("text", "image"),
    "speech->text": ("speech", "text"),
    "text->speech": ("text", "speech"),
    "signal->text": ("signal", "text"),
    "text->signal": ("text", "signal"),
    "3d->text": ("points", "text"),
    "text->3d": ("text", "points"),
    "video->text": ("video", "text"),
    "speech->image": ("speech", "image"),
    "image->speech": ("image", "speech"),
}
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def item_names(modality: str, items: Items) -> list[str]:
    """Each item's label as the assistant says it ("seven"; a video: "seven moving left")."""
    names = [items.labels[int(y)] for y in items.y]
    if modality == "video":
        from lmforge.omni.video import DIRECTION_NAMES as directions

        moves = items.extra["direction"].tolist()
        names = [f"{n} moving {directions[d]}" for n, d in zip(names, moves, strict=False)]
    return names


@dataclass
class Bank:
    """One modality's encoded items: codes (N, tokens_per_item), label names, and by label;
    for images, ``bigger`` holds each digit's codes drawn larger (``image.bigger_images``).

    ``real``: the first ``real`` items are real, the rest perturbed copies of them
    (``Modality.augment``; None: all real). Any item may be given to the model; only real ones
    (and the bigger drawing of a digit shown) are its answers, so that it learns to read
    perturbed items and to write real-looking ones.
    """

    modality: str
    codes: torch.Tensor
    names: list[str]
    bigger: torch.Tensor | None = None
    real: int | None = None
    views: tuple[torch.Tensor, ...] = ()  # the codes of other views of every item, (N, ...) each

    def __post_init__(self) -> None:
        self.by_name: dict[str, list[int]] = {}
        for i, name in enumerate(self.names[: self.real]):
            self.by_name.setdefault(name, []).append(i)
        self._among: dict[frozenset, list[int]] = {}

    def item(self, i: int) -> Item:
        copy = self.real is not None and i >= self.real
        views = tuple(tuple(v[i].tolist()) for v in self.views)
        return Item(self.modality, tuple(self.codes[i].tolist()), copy, views)

    def one_of(self, name: str, rng: random.Random) -> int:
        return rng.choice(self.by_name[name])

    def among(self, names) -> list[int]:
        """The indices of the items whose label is one of ``names`` (kept once asked)."""
        key = frozenset(names)
        if key not in self._among:
            self._among[key] = [i for i, n in enumerate(self.names) if n in key]
        return self._among[key]


def _user(*parts) -> dict:
    return {"role": "user", "content": list(parts)}


def _assistant(*parts) -> dict:
    return {"role": "assistant", "content": list(parts)}


def conversation(
    task: str,
    banks: dict[str, Bank],
    rng: random.Random,
    index: int | None = None,
    named: bool = True,
):
    """One conversation of ``task`` and what its answer is: (messages, gold).

    gold is the label the answer must have (text answers, and items the judge checks). The
    item given (or, for generation, the label asked for) is ``index``-th of its bank, or drawn.
    ``named``: a cross-modal answer first names the label it heard or read, then makes the item
    ("seven", then a drawing of a seven); otherwise it is the item alone.
    """
    given, answered = TASKS[task]
    if given == "text":  # generation: the label of item ``index`` is asked for
        bank = banks[answered]
        name = bank.names[index if index is not None else rng.randrange(len(bank.names))]
        request = rng.choice(MAKE[answered]).format(name)
        return [_user(request), _assistant(bank.item(bank.one_of(name, rng)))], name
    bank = banks[given]
    if answered == "text":
        i = index if index is not None else rng.randrange(len(bank.names))
        name = bank.names[i]
        return [_user(bank.item(i), rng.choice(ASK[given])), _assistant(name)], name
    target = banks[answered]  # cross-modal: only labels both banks hold (the digits)
    i = index if index is not None else rng.choice(bank.among(target.by_name))
    name = bank.names[i]
    ask = rng.choice(CROSS[(given, answered)])
    made = target.item(target.one_of(name, rng))
    return [_user(bank.item(i), ask), _assistant(*([name] if named else []), made)], name


def chain_conversation(banks: dict[str, Bank], rng: random.Random, index: int | None = None):
    """image -> "seven" -> a bigger drawing of that digit, or another image of it -> its spoken
    word: (messages, gold). Half the chains ask for a bigger one (``is_bigger`` tells which)."""
    images, speech = banks["image"], banks["speech"]
    i = index if index is not None else rng.choice(images.among(speech.by_name))
    name = images.names[i]
    bigger = images.bigger is not None and rng.random() < 0.5
    drawn = Item("image", tuple(images.bigger[i].tolist())) if bigger else None
    messages = [
        _user(images.item(i), rng.choice(ASK["image"])),
        _assistant(name),
        _user(rng.choice(CHAIN["bigger" if bigger else "again"])),
        _assistant(drawn or images.item(images.one_of(name, rng))),
        _user(rng.choice(CHAIN["say"])),
        _assistant(speech.item(speech.one_of(name, rng))),
    ]
    return messages, name


def is_bigger(messages: list[dict]) -> bool:
    """Whether a chain's third turn asks for a bigger drawing."""
    return messages[2]["content"][0] in CHAIN["bigger"]


def template_texts() -> list[str]:
    """Every text the conversations can hold: the char tokenizer learns its characters here."""
    texts = [
        t
        for group in (*ASK.values(), *MAKE.values(), *CROSS.values(), *CHAIN.values())
        for t in group
    ]
    return [
        *texts,
        *DIGITS,
        "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,?!'-",
    ]
