"""A tiny English text with clearly different topics, for BERT pretraining and fine-tuning tests.

Every topic has its own subjects, verbs and objects; a sentence is "the S V the O and the O .".
Documents keep to one topic, so a random second sentence (from another document) usually comes
from another topic: next-sentence prediction is learnable, and so is the topic of a sentence.
"""

from __future__ import annotations

import random

TOPICS = {  # subjects | verbs | objects
    "animals": "cat dog horse | chased watched licked | mouse ball bone",
    "kitchen": "chef cook baker | baked sliced boiled | bread onion soup",
    "sea": "captain sailor crew | steered anchored painted | ship boat mast",
    "music": "singer drummer pianist | played sang tuned | song piano drum",
    "school": "teacher pupil dean | graded read wrote | essay book test",
    "farm": "farmer tractor farmhand | ploughed planted harvested | field corn wheat",
}


def topic_words(topic: str) -> tuple[list[str], list[str], list[str]]:
    """(subjects, verbs, objects) of a topic."""
    subjects, verbs, objects = (part.split() for part in TOPICS[topic].split("|"))
    return subjects, verbs, objects


def topic_sentence(topic: str, rng: random.Random) -> str:
    """ "the S V the O and the O ." with words of one topic."""
    subjects, verbs, objects = topic_words(topic)
    first, second = rng.choice(objects), rng.choice(objects)
    return f"the {rng.choice(subjects)} {rng.choice(verbs)} the {first} and the {second} ."


def topic_documents(n_docs: int, sentences: int, seed: int, n_topics: int = 6) -> list[str]:
    """Lines of ``n_docs`` documents (the first ``n_topics`` topics in turn), a blank line after
    each."""
    rng = random.Random(seed)
    names = list(TOPICS)[:n_topics]
    lines: list[str] = []
    for d in range(n_docs):
        topic = names[d % len(names)]
        lines.extend(topic_sentence(topic, rng) for _ in range(sentences))
        lines.append("")
    return lines


def topic_examples(n: int, seed: int, n_topics: int = 6) -> list[dict]:
    """``{"text", "label"}`` records: a sentence and its topic (the first ``n_topics`` in turn)."""
    rng = random.Random(seed)
    names = list(TOPICS)[:n_topics]
    return [
        {"text": topic_sentence(topic, rng), "label": topic}
        for topic in (names[i % len(names)] for i in range(n))
    ]
