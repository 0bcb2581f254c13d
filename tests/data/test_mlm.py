"""BERT pretraining data: the 15% / 80-10-10 masking and next-sentence pairs."""

from __future__ import annotations

import pytest
import torch

from lmforge.data.mlm import (
    IGNORE_INDEX,
    IS_NEXT,
    NOT_NEXT,
    Documents,
    build_pairs,
    mask_tokens,
    split_documents,
    truncate_pair,
)
from lmforge.errors import DataError
from lmforge.tokenize import train_tokenizer

SPECIAL = (0, 1, 2, 3, 4)  # pad, unk, [CLS], [SEP], [MASK] of an lmforge tokenizer
MASK = 4


def random_ids(shape, seed=0):
    """Token ids 0..99 where about a third are special ids (0..4 drawn often)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 100, shape, generator=generator)
    special = torch.randint(0, 5, shape, generator=generator)
    return torch.where(torch.rand(shape, generator=generator) < 0.3, special, ids)


def test_mask_tokens_chooses_15_percent_then_80_10_10():
    ids = random_ids((400, 500))
    generator = torch.Generator().manual_seed(1)
    inputs, labels = mask_tokens(
        ids, mask_id=MASK, special=SPECIAL, vocab_size=100, generator=generator
    )
    eligible = ids >= 5
    chosen = labels != IGNORE_INDEX
    share = chosen.sum() / eligible.sum()
    assert abs(share - 0.15) < 0.003  # ~140,000 eligible tokens: the standard error is 0.001
    n = chosen.sum()
    masked = (inputs[chosen] == MASK).sum() / n
    kept = (inputs[chosen] == ids[chosen]).sum() / n
    replaced = 1 - masked - kept
    # a random replacement equals the original 1 time in 95 (95 non-special ids): ~0.1% of "kept"
    assert abs(masked - 0.8) < 0.01 and abs(kept - 0.1 - 0.1 / 95) < 0.01
    assert abs(replaced - 0.1) < 0.01
    assert bool((labels[chosen] == ids[chosen]).all())
    assert bool((inputs[~chosen] == ids[~chosen]).all())  # nothing else is touched


def test_mask_tokens_never_chooses_special_tokens_nor_draws_them():
    ids = random_ids((200, 300), seed=3)
    inputs, labels = mask_tokens(
        ids,
        mask_id=MASK,
        special=SPECIAL,
        vocab_size=100,
        generator=torch.Generator().manual_seed(2),
    )
    special = ids < 5
    assert bool((labels[special] == IGNORE_INDEX).all())
    assert bool((inputs[special] == ids[special]).all())
    replaced = (labels != IGNORE_INDEX) & (inputs != MASK) & (inputs != ids)
    assert replaced.any() and bool((inputs[replaced] >= 5).all())


def test_mask_tokens_is_reproducible_from_the_generator():
    ids = random_ids((8, 50))

    def run(seed):
        generator = torch.Generator().manual_seed(seed)
        return mask_tokens(ids, mask_id=MASK, special=SPECIAL, vocab_size=100, generator=generator)

    assert all(torch.equal(a, b) for a, b in zip(run(5), run(5), strict=True))
    assert not torch.equal(run(5)[1], run(6)[1])


def test_blank_lines_separate_documents():
    lines = ["", "a b", "c d", "", "", "e f", "   ", "g", ""]
    assert split_documents(lines) == [["a b", "c d"], ["e f"], ["g"]]


@pytest.mark.parametrize(
    ("len_a", "len_b", "budget", "expected"),
    [
        (3, 4, 10, (3, 4)),
        (2, 20, 10, (2, 8)),
        (20, 2, 10, (8, 2)),
        (9, 8, 10, (5, 5)),
        (9, 9, 7, (4, 3)),
    ],
)
def test_truncate_pair_cuts_the_longer_sentence(len_a, len_b, budget, expected):
    assert truncate_pair(len_a, len_b, budget) == expected


def numbered_text(n_docs=40, per_doc=5):
    """Documents whose sentences say where they are: "dK sJ" (document K, sentence J)."""
    lines = []
    for d in range(n_docs):
        lines += [f"d{d} s{j}" for j in range(per_doc)] + [""]
    return lines


def test_nsp_pairs_are_half_true_next_sentences_of_one_document():
    lines = numbered_text()
    tokenizer = train_tokenizer("word", lines, rare_threshold=0)
    docs = Documents(tokenizer, lines, "training")
    anchors = docs.anchors[torch.randint(len(docs.anchors), (4000,))]
    first, second, labels = docs.pairs(anchors, torch.Generator().manual_seed(0))
    assert abs(float((labels == IS_NEXT).float().mean()) - 0.5) < 0.03
    for a, b, label in zip(first.tolist(), second.tolist(), labels.tolist(), strict=True):
        doc_a, sent_a = (tokenizer.decode(docs.sentences[a])).split()
        doc_b, sent_b = (tokenizer.decode(docs.sentences[b])).split()
        if label == IS_NEXT:
            assert doc_a == doc_b and int(sent_b[1:]) == int(sent_a[1:]) + 1
        else:
            assert label == NOT_NEXT and doc_a != doc_b


def test_pairs_have_markers_segments_and_padding():
    sentences = [[10, 11, 12], [20, 21], [30, 31, 32, 33, 34, 35]]
    ids, segments, mask = build_pairs(sentences, [0, 1], [1, 2], 9, cls_id=2, sep_id=3, pad_id=0)
    assert ids.tolist() == [[2, 10, 11, 12, 3, 20, 21, 3, 0], [2, 20, 21, 3, 30, 31, 32, 33, 3]]
    assert segments.tolist() == [[0, 0, 0, 0, 0, 1, 1, 1, 0], [0, 0, 0, 0, 1, 1, 1, 1, 1]]
    assert mask.tolist() == [[True] * 8 + [False], [True] * 9]


def test_one_document_is_not_enough_for_next_sentence_prediction():
    lines = ["a b", "c d", "e f"]
    tokenizer = train_tokenizer("word", lines, rare_threshold=0)
    with pytest.raises(DataError, match="blank line"):
        Documents(tokenizer, lines, "training")
