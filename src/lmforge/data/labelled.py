"""Labelled examples for classification: reading, checking, encoding and padding them.

Data, one JSON object per line: ``{"text": ..., "label": ...}`` for sequences ("sequence"),
``{"tokens": [...], "labels": [...]}`` for tokens ("token"); a label is a string or an integer.
The labels are those of the training examples, sorted; an evaluation label outside them is an
error. A sequence row is ``[CLS] tokens [SEP]``; a token row labels each word at its first
sub-token, the other positions are not scored (``IGNORE_INDEX``). The Trainer's task on them is
``lmforge.train.tasks.ClassificationTask``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lmforge.data.batching import pad_rows
from lmforge.data.corpus import read_jsonl
from lmforge.data.mlm import IGNORE_INDEX
from lmforge.errors import ConfigError, DataError
from lmforge.tokenize import Tokenizer

__all__ = [
    "TASKS",
    "Labelled",
    "check_labels",
    "encode_examples",
    "label_set",
    "padded_batch",
    "read_examples",
]

TASKS = ("sequence", "token")


def read_examples(path: str | os.PathLike, task: str) -> list[dict]:
    """Labelled examples from a JSONL file (``read_jsonl``), checked.

    Args:
        path: one JSON object per non-blank line.
        task: "sequence" (``{"text": str, "label": str | int}``) or "token"
            (``{"tokens": [str, ...], "labels": [str | int, ...]}``, as many labels as tokens).

    Raises:
        DataError: a missing or empty file, invalid JSON, or a line without the right fields,
            naming the file and line.
    """
    _check_task(task)
    records = []
    for number, record in read_jsonl(path, _SHAPES[task]):
        problem = _example_problem(record, task)
        if problem:
            raise DataError(f"{path} line {number}: {problem}")
        records.append(record)
    return records


_SHAPES = {
    "sequence": '{"text": "...", "label": "..."}',
    "token": '{"tokens": ["...", ...], "labels": ["...", ...]}',
}


def _example_problem(record: dict, task: str) -> str | None:
    """What is wrong with one example, or None."""
    shape = f"give every line as {_SHAPES[task]}"
    if task == "sequence":
        if not isinstance(record.get("text"), str):
            return f'no string field "text"; {shape}'
        if "label" not in record:
            return f'no field "label"; {shape}'
        return _label_problem(record["label"])
    tokens, labels = record.get("tokens"), record.get("labels")
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens) or not tokens:
        return f'no non-empty list of strings "tokens"; {shape}'
    if not isinstance(labels, list):
        return f'no list "labels"; {shape}'
    if len(labels) != len(tokens):
        return f"{len(tokens)} tokens but {len(labels)} labels; give one label per token"
    return next((p for p in map(_label_problem, labels) if p), None)


def _label_problem(label: object) -> str | None:
    if isinstance(label, bool) or not isinstance(label, str | int):
        return f"label {label!r} is not a string or an integer"
    return None


def check_labels(
    train_records: Sequence[dict], eval_records: Sequence[dict] | None, task: str
) -> list:
    """The labels of the training examples (``label_set``), checked: at least two, and every
    evaluation label among them.

    Raises:
        DataError: fewer than two labels, or an evaluation label not in the training data.
    """
    _check_task(task)
    labels = label_set(train_records, task)
    if len(labels) < 2:
        raise DataError(
            f"the training examples have {len(labels)} label(s) ({labels}); a classifier needs "
            "examples of at least two labels"
        )
    known = set(labels)
    for number, record in enumerate(eval_records or (), start=1):
        values = [record["label"]] if task == "sequence" else record["labels"]
        unknown = next((v for v in values if v not in known), None)
        if unknown is not None:
            raise DataError(_unknown_label(unknown, labels, f"evaluation data example {number}"))
    return labels


def _unknown_label(value: object, labels: Sequence, where: str) -> str:
    known = ", ".join(json.dumps(v) for v in labels)
    return (
        f"{where}: label {json.dumps(value)} was not in the training data (labels: {known}); "
        "remove it or add training examples with it"
    )


def label_set(records: Sequence[dict], task: str) -> list:
    """The sorted labels of the examples (integers first, then strings)."""
    if task == "sequence":
        values = {r["label"] for r in records}
    else:
        values = {label for r in records for label in r["labels"]}
    return sorted(values, key=lambda v: (isinstance(v, str), v))


@dataclass(frozen=True)
class Labelled:
    """Encoded examples: id rows ([CLS] ... [SEP]) and, per row, a label index (sequence) or a
    label index per position (token; IGNORE_INDEX where not scored)."""

    rows: list[list[int]]
    targets: list


def encode_examples(
    records: Sequence[dict],
    task: str,
    tokenizer: Tokenizer,
    labels: Sequence,
    max_len: int,
    where: str = "the data",
) -> Labelled:
    """Token ids and label indices of examples, cut to ``max_len`` tokens with the markers
    (token task: the words that do not fit are dropped and not scored).

    Raises:
        DataError: a label not in ``labels``, naming ``where`` and the known labels.
    """
    index = {label: i for i, label in enumerate(labels)}

    def label_index(value: object, number: int) -> int:
        if value not in index:
            raise DataError(_unknown_label(value, labels, f"{where} example {number}"))
        return index[value]

    bos, eos = tokenizer.bos_id, tokenizer.eos_id
    if task == "sequence":
        targets = [label_index(r["label"], n) for n, r in enumerate(records, start=1)]
        rows = [
            row if len(row) <= max_len else [*row[: max_len - 1], eos]
            for row in tokenizer.encode_batch([r["text"] for r in records])
        ]
        return Labelled(rows, targets)
    rows, targets = [], []
    for number, record in enumerate(records, start=1):
        pieces = tokenizer.encode_batch(record["tokens"], markers=False)
        row, tags = [bos], [IGNORE_INDEX]
        for word, label in zip(pieces, record["labels"], strict=True):
            word = word or [tokenizer.unk_id]
            tag = label_index(label, number)
            if len(row) + len(word) > max_len - 1:
                break
            row.extend(word)
            tags.extend([tag] + [IGNORE_INDEX] * (len(word) - 1))
        rows.append([*row, eos])
        targets.append([*tags, IGNORE_INDEX])
    return Labelled(rows, targets)


def padded_batch(data: Labelled, chosen: Sequence[int], pad_id: int):
    """(ids (B, T), attention_mask (B, T), labels (B,) or (B, T)) of rows ``chosen``."""
    ids, mask = pad_rows([data.rows[i] for i in chosen], pad_id)
    if isinstance(data.targets[0], list):  # a label per position, IGNORE_INDEX at the padding
        labels, _ = pad_rows([data.targets[i] for i in chosen], IGNORE_INDEX)
    else:
        labels = torch.tensor([data.targets[i] for i in chosen], dtype=torch.long)
    return ids, mask, labels


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
