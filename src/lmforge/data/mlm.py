"""BERT pretraining data: masked tokens and next-sentence pairs.

Devlin et al. (2019), section 3.1 and appendix A.1:

* **Masked LM**: 15% of the tokens that are not special ([CLS], [SEP], padding, [MASK], unknown)
  are chosen as targets; of those, 80% become [MASK], 10% a random token, 10% stay unchanged.
  Every other position has the label ``IGNORE_INDEX`` and is not scored. Each token is chosen
  independently with probability 0.15 (as Hugging Face's data collator does; the original code
  picks exactly round(0.15 n) per sequence).
* **Next sentence prediction**: each example is ``[CLS] A [SEP] B [SEP]`` with segment ids 0 for
  ``[CLS] A [SEP]`` and 1 for ``B [SEP]``; 50% of the time B is the sentence after A in the same
  document (label ``IS_NEXT`` = 0), 50% a random sentence of another document (``NOT_NEXT`` =
  1). A pair longer than ``max_seq_len`` loses tokens from the end of its longer sentence.

What a document and a sentence are: the lines of a text, with **blank lines between documents**;
every non-empty line is one "sentence" (one segment). For the built-in ``brown`` corpus a line is
a paragraph and a blank line ends each of its 500 texts, so a document is a Brown text and a
pair is two paragraphs. Simplified from BERT: a segment is one line rather than a span packed up
to 512 tokens, truncation always cuts the end, and the random sentence is drawn uniformly from
all sentences of the other documents.

Everything random here is drawn from an explicit ``torch.Generator``: the batch of training step
``s`` depends only on (seed, s), and the held-out pairs are drawn once with a fixed seed. The
Trainer's task built from these is ``lmforge.train.tasks.MLMTask``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lmforge.data.batching import pad_rows
from lmforge.errors import DataError
from lmforge.tokenize import Tokenizer

__all__ = [
    "IGNORE_INDEX",
    "IS_NEXT",
    "NOT_NEXT",
    "Documents",
    "build_pairs",
    "document_split",
    "mask_tokens",
    "sample_pairs",
    "special_ids",
    "split_documents",
    "truncate_pair",
]

IGNORE_INDEX = -100  # label of positions that are not scored (torch's cross_entropy default)
IS_NEXT, NOT_NEXT = 0, 1  # NSP labels as in BERT: index 0 means B follows A
MASK_PROB, MASK_TOKEN_SHARE, RANDOM_TOKEN_SHARE = 0.15, 0.8, 0.1
EVAL_SEED = 0  # the held-out pairs and masks are the same for every run


# ---------------------------------------------------------------------------------------------
# Pure functions.


def special_ids(tokenizer: Tokenizer) -> tuple[int, ...]:
    """Ids never chosen as MLM targets nor drawn as random replacements: pad, unk, [CLS],
    [SEP] and [MASK] (the tokenizer's own role ids)."""
    return tuple(
        sorted(
            {
                tokenizer.pad_id,
                tokenizer.unk_id,
                tokenizer.bos_id,
                tokenizer.eos_id,
                tokenizer.mask_id,
            }
        )
    )


def mask_tokens(
    ids: torch.Tensor,
    *,
    mask_id: int,
    special: Sequence[int],
    vocab_size: int,
    generator: torch.Generator,
    mask_prob: float = MASK_PROB,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masked-LM corruption (Devlin et al. 2019, section 3.1, "Task #1: Masked LM").

    Args:
        ids: (B, T) token ids, markers and padding included.
        mask_id: the [MASK] id.
        special: ids never chosen (markers, padding, [MASK], unknown) nor used as replacements.
        vocab_size: replacements are drawn uniformly from ``0 .. vocab_size - 1`` minus special.
        generator: the source of randomness.
        mask_prob: probability that a non-special token is chosen (0.15).

    Returns:
        inputs (B, T): ``ids`` where 80% of the chosen tokens are ``mask_id``, 10% a random
        token and 10% unchanged; labels (B, T): the original id at chosen positions, else
        ``IGNORE_INDEX``.
    """
    excluded = torch.tensor(list(special), dtype=ids.dtype)
    eligible = ~torch.isin(ids, excluded)  # (B, T)
    chosen = eligible & (torch.rand(ids.shape, generator=generator) < mask_prob)
    labels = torch.where(chosen, ids, IGNORE_INDEX)
    roll = torch.rand(ids.shape, generator=generator)
    to_mask = chosen & (roll < MASK_TOKEN_SHARE)
    to_random = chosen & (roll >= MASK_TOKEN_SHARE) & (roll < MASK_TOKEN_SHARE + RANDOM_TOKEN_SHARE)
    allowed = torch.ones(vocab_size, dtype=torch.bool)
    allowed[excluded[excluded < vocab_size]] = False
    pool = allowed.nonzero().squeeze(1)  # (V - specials,)
    random_ids = pool[torch.randint(len(pool), ids.shape, generator=generator)].to(ids.dtype)
    inputs = torch.where(to_mask, mask_id, ids)
    inputs = torch.where(to_random, random_ids, inputs)
    return inputs, labels


def split_documents(lines: Sequence[str]) -> list[list[str]]:
    """Documents of a text: blank (or whitespace-only) lines separate them; every other line is
    one sentence. Empty documents are dropped."""
    documents: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            documents[-1].append(line)
        elif documents[-1]:
            documents.append([])
    return [doc for doc in documents if doc]


def sample_pairs(
    anchors: torch.Tensor,
    doc_start: torch.Tensor,
    doc_length: torch.Tensor,
    n_sentences: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Second sentences for next-sentence prediction (Devlin et al. 2019, section 3.1, "Task #2").

    Sentences are numbered document after document, so document d holds sentences
    ``doc_start[d] .. doc_start[d] + doc_length[d] - 1``.

    Args:
        anchors: (N,) first sentences A; each has a next sentence in its document.
        doc_start: (N,) first sentence of each anchor's document.
        doc_length: (N,) number of sentences of each anchor's document.
        n_sentences: sentences in all documents.
        generator: the source of randomness.

    Returns:
        first (N,) = anchors; second (N,): ``anchor + 1`` where the label is IS_NEXT, else a
        sentence drawn uniformly from the other documents; labels (N,) IS_NEXT or NOT_NEXT.
    """
    labels = (torch.rand(anchors.shape, generator=generator) < 0.5).long()  # NOT_NEXT = 1
    outside = n_sentences - doc_length  # sentences in the other documents
    draw = (torch.rand(anchors.shape, generator=generator) * outside).long().clamp(max=outside - 1)
    other = torch.where(draw < doc_start, draw, draw + doc_length)  # skip the anchor's document
    second = torch.where(labels == IS_NEXT, anchors + 1, other)
    return anchors, second, labels


def truncate_pair(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """Lengths of A and B after removing tokens from the longer one until they fit ``budget``
    (BERT's ``truncate_seq_pair``, always cutting the end)."""
    if len_a + len_b <= budget:
        return len_a, len_b
    short = min(len_a, len_b)
    if 2 * short <= budget:
        return (budget - short, short) if len_a > len_b else (short, budget - short)
    return (budget + 1) // 2, budget // 2


def build_pairs(
    sentences: Sequence[Sequence[int]],
    first: Sequence[int],
    second: Sequence[int],
    max_seq_len: int,
    cls_id: int,
    sep_id: int,
    pad_id: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[CLS] A [SEP] B [SEP]`` rows, right-padded to the longest.

    Args:
        sentences: token ids of every sentence, without markers.
        first, second: sentence numbers of A and B of each row.
        max_seq_len: the longest row; longer pairs are cut with ``truncate_pair``.
        cls_id, sep_id, pad_id: the marker and padding ids.

    Returns:
        ids (B, T); segment_ids (B, T): 1 for ``B [SEP]``, 0 elsewhere (padding included);
        attention_mask (B, T) bool, True at real tokens.
    """
    rows, segments = [], []
    for a, b in zip(first, second, strict=True):
        ids_a, ids_b = sentences[int(a)], sentences[int(b)]
        len_a, len_b = truncate_pair(len(ids_a), len(ids_b), max_seq_len - 3)
        rows.append([cls_id, *ids_a[:len_a], sep_id, *ids_b[:len_b], sep_id])
        segments.append([0] * (len_a + 2) + [1] * (len_b + 1))
    ids, mask = pad_rows(rows, pad_id)
    segment_ids, _ = pad_rows(segments, 0)
    return ids, segment_ids, mask


# ---------------------------------------------------------------------------------------------
# Tokenised documents.


class Documents:
    """The sentences of a text, tokenised once, with their documents (see the module docstring).

    Args:
        tokenizer: the model's tokenizer (its role ids give the markers).
        lines: the text; blank lines separate documents.
        what: the text's name for error messages ("training", "validation").

    Raises:
        DataError: fewer than two documents, or no document with two sentences.
    """

    def __init__(self, tokenizer: Tokenizer, lines: Sequence[str], what: str) -> None:
        documents = split_documents(lines)
        flat = [line for doc in documents for line in doc]
        self.sentences = tokenizer.encode_batch(flat, markers=False) if flat else []
        length = torch.tensor([len(doc) for doc in documents], dtype=torch.long)
        start = torch.cumsum(length, 0) - length
        doc_of = torch.repeat_interleave(torch.arange(len(documents)), length)  # (S,)
        self.doc_start, self.doc_length = start[doc_of], length[doc_of]  # per sentence, (S,)
        position = torch.arange(len(flat))
        self.anchors = position[position + 1 < self.doc_start + self.doc_length]  # (N,)
        if len(documents) < 2 or not len(self.anchors):
            raise DataError(
                f"the {what} text has {len(documents)} document(s) and {len(self.anchors)} "
                "sentence(s) followed by another in their document; next-sentence prediction "
                "needs at least two documents separated by a blank line, with a sentence per line"
            )

    def pairs(self, anchors: torch.Tensor, generator: torch.Generator) -> tuple:
        """NSP pairs of ``anchors`` (sentence numbers): (first, second, nsp_labels), each (N,)."""
        return sample_pairs(
            anchors,
            self.doc_start[anchors],
            self.doc_length[anchors],
            len(self.sentences),
            generator,
        )


def document_split(
    lines: Sequence[str], valid_ratio: float = 0.05, seed: int = 0
) -> tuple[list[str], list[str] | None]:
    """Hold out whole documents (a line-level split would tear sentences from their neighbours).

    ``round(n * valid_ratio)`` of the n documents, at least 2, are drawn with a seeded
    permutation and keep their order; with fewer than 4 documents nothing is held out.

    Returns:
        (training lines, held-out lines or None), a blank line after each document.
    """
    documents = split_documents(lines)
    n_valid = max(2, round(len(documents) * valid_ratio))
    if len(documents) < 4:
        return list(lines), None
    order = torch.randperm(len(documents), generator=torch.Generator().manual_seed(seed))
    held = set(order[:n_valid].tolist())

    def join(keep: bool) -> list[str]:
        picked = [doc for i, doc in enumerate(documents) if (i in held) == keep]
        return [line for doc in picked for line in (*doc, "")]

    return join(False), join(True)
