"""Fine-tuning a pretrained BERT with exactly one new output layer (Devlin et al. 2019, section 4).

* ``SequenceClassifier``: the encoder's pooled [CLS] vector, tanh(W_p h_L[:, 0]) (BERT's pooler),
  then dropout and one ``nn.Linear(d_model, n_labels)`` (section 4.1: "The only new parameters
  introduced during fine-tuning are classification layer weights W").
* ``TokenClassifier``: each token's last hidden vector, dropout, one ``nn.Linear``; a word is
  labelled at its first sub-token, the others are not scored (section 5.3).

Every other parameter is the pretrained encoder's and is fine-tuned with it (or frozen with
``freeze_encoder``: only the new layer learns). Training is the one Trainer on a
``ClassificationTask``; the defaults follow appendix A.3 (batch 32, lr 5e-5, 3 epochs) and the
released code's 10% linear warmup (``warmup_proportion=0.1``).

Data, one JSON object per line: ``{"text": ..., "label": ...}`` for sequences,
``{"tokens": [...], "labels": [...]}`` for tokens; a label is a string or an integer. The labels
are those of the training file, sorted; an evaluation label outside them is an error.

A fine-tuned folder holds ``config.json`` (``family`` "bert", the encoder ``config``, ``task``
"sequence" or "token", ``labels``, ``base``), ``model.safetensors`` (``encoder.*`` and
``classifier.*``) and ``tokenizer.json``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn
from torch.nn import functional as F

from lmforge import __version__
from lmforge.checkpoint import atomic_write_bytes, read_json, write_json
from lmforge.config import build_config, config_to_dict
from lmforge.data.mlm import IGNORE_INDEX
from lmforge.errors import CheckpointError, ConfigError, DataError
from lmforge.models.bert import BERT, BertConfig
from lmforge.tokenize import Tokenizer, load_tokenizer
from lmforge.train.trainer import TrainConfig, Trainer, TrainResult

__all__ = [
    "FINETUNE_DEFAULTS",
    "TASKS",
    "ClassificationTask",
    "Labelled",
    "SequenceClassifier",
    "TokenClassifier",
    "batched_logits",
    "check_labels",
    "encode_examples",
    "finetune",
    "finetune_config",
    "label_set",
    "load_classifier",
    "macro_f1",
    "padded_batch",
    "predict",
    "read_examples",
    "save_classifier",
]

TASKS = ("sequence", "token")
# Devlin et al. 2019, appendix A.3; the epochs set max_steps when it is not given.
FINETUNE_DEFAULTS = {"batch_size": 32, "lr": 5e-5, "min_lr": 0.0, "weight_decay": 0.01}
FINETUNE_EPOCHS, WARMUP_SHARE = 3, 0.1
WEIGHTS, CONFIG, TOKENIZER = "model.safetensors", "config.json", "tokenizer.json"


# ---------------------------------------------------------------------------------------------
# Models: the encoder and one linear layer.


class _Classifier(nn.Module):
    """A pretrained BERT plus dropout and one linear layer (BERT's initialisation)."""

    recurrent = False

    def __init__(self, encoder: BERT, n_labels: int) -> None:
        super().__init__()
        if n_labels < 2:
            raise ConfigError(f"n_labels must be >= 2 for a classifier, got {n_labels}")
        self.encoder = encoder
        self.dropout = nn.Dropout(encoder.config.dropout)
        self.classifier = nn.Linear(encoder.config.d_model, n_labels)
        nn.init.normal_(self.classifier.weight, mean=0.0, std=0.02)
        nn.init.zeros_(self.classifier.bias)

    @property
    def config(self) -> BertConfig:
        return self.encoder.config

    @property
    def n_labels(self) -> int:
        return self.classifier.out_features

    def init_state(self, batch_size: int, device=None) -> None:
        return None

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class SequenceClassifier(_Classifier):
    """Sentence classification: pooled [CLS] vector -> dropout -> Linear(d_model, n_labels).

    Args:
        encoder: a pretrained BERT (its MLM and NSP heads stay unused).
        n_labels: number of classes, >= 2.
    """

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        """(B, T) ids and mask -> (B, n_labels) logits."""
        pooled = self.encoder.pool(self.encoder.encode(ids, attention_mask=attention_mask))
        return self.classifier(self.dropout(pooled))


class TokenClassifier(_Classifier):
    """Token tagging: each last hidden vector -> dropout -> Linear(d_model, n_labels).

    Args:
        encoder: a pretrained BERT (its MLM and NSP heads stay unused).
        n_labels: number of tags, >= 2.
    """

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        """(B, T) ids and mask -> (B, T, n_labels) logits."""
        hidden = self.encoder.encode(ids, attention_mask=attention_mask)  # (B, T, d_model)
        return self.classifier(self.dropout(hidden))


_MODELS = {"sequence": SequenceClassifier, "token": TokenClassifier}


# ---------------------------------------------------------------------------------------------
# Data.


def read_examples(path: str | os.PathLike, task: str) -> list[dict]:
    """Labelled examples from a JSONL file, checked.

    Args:
        path: one JSON object per non-blank line.
        task: "sequence" (``{"text": str, "label": str | int}``) or "token"
            (``{"tokens": [str, ...], "labels": [str | int, ...]}``, as many labels as tokens).

    Raises:
        DataError: a missing or empty file, invalid JSON, or a line without the right fields,
            naming the file and line.
    """
    _check_task(task)
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{file}: no such file; give a JSONL file of labelled examples") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {file} ({err}); give a UTF-8 JSONL file") from None
    records = []
    # only \n ends a line: JSON strings may hold other line separators (U+2028)
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(
                f"{file} line {number}: invalid JSON ({err.msg}); give one JSON object per line"
            ) from None
        problem = _example_problem(record, task)
        if problem:
            raise DataError(f"{file} line {number}: {problem}")
        records.append(record)
    if not records:
        raise DataError(f"{file} holds no examples; give one JSON object per line")
    return records


_SHAPES = {
    "sequence": '{"text": "...", "label": "..."}',
    "token": '{"tokens": ["...", ...], "labels": ["...", ...]}',
}


def _example_problem(record: object, task: str) -> str | None:
    """What is wrong with one example, or None."""
    shape = f"give every line as {_SHAPES[task]}"
    if not isinstance(record, dict):
        return f"not a JSON object; {shape}"
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
    width = max(len(data.rows[i]) for i in chosen)
    ids = torch.full((len(chosen), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(chosen), width), dtype=torch.bool)
    token_level = isinstance(data.targets[0], list)
    labels = torch.full((len(chosen), width) if token_level else (len(chosen),), IGNORE_INDEX)
    for r, i in enumerate(chosen):
        row = data.rows[i]
        ids[r, : len(row)] = torch.tensor(row)
        mask[r, : len(row)] = True
        if token_level:
            labels[r, : len(row)] = torch.tensor(data.targets[i])
        else:
            labels[r] = data.targets[i]
    return ids, mask, labels


def macro_f1(gold: torch.Tensor, predicted: torch.Tensor) -> float:
    """Unweighted mean over classes of F1 = 2PR / (P + R), over the classes that occur in
    ``gold`` or ``predicted`` (a class with P = R = 0 counts 0), as scikit-learn's
    ``f1_score(average="macro")``.

    Args:
        gold, predicted: (N,) class indices.
    """
    scores = []
    for label in torch.unique(torch.cat([gold, predicted])).tolist():
        tp = float(((predicted == label) & (gold == label)).sum())
        fp = float(((predicted == label) & (gold != label)).sum())
        fn = float(((predicted != label) & (gold == label)).sum())
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores) if scores else 0.0


class ClassificationTask:
    """Sequence or token classification as a task of the one Trainer.

    Batches go through the training examples epoch after epoch, each epoch in the order of a
    permutation drawn from (seed, epoch), so batch ``step`` depends only on (seed, step).

    Args:
        train: encoded training examples.
        valid: encoded held-out examples, or None.
        pad_id: the padding id.
        batch_size: examples per step.
        seed: seed of the epoch permutations.
    """

    def __init__(
        self,
        train: Labelled,
        valid: Labelled | None,
        pad_id: int,
        batch_size: int,
        seed: int = 0,
    ) -> None:
        if not train.rows:
            raise DataError("no training examples; give a JSONL file with some lines")
        self.train, self.valid = train, valid
        self.pad_id, self.batch_size, self.seed = pad_id, batch_size, seed

    def _order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.train.rows), generator=generator)

    def batch(self, step: int) -> tuple[tuple[torch.Tensor, ...], bool]:
        n = len(self.train.rows)
        chosen, orders = [], {}
        for k in range(step * self.batch_size, (step + 1) * self.batch_size):
            epoch, i = divmod(k, n)
            if epoch not in orders:
                orders[epoch] = self._order(epoch)
            chosen.append(int(orders[epoch][i]))
        return padded_batch(self.train, chosen, self.pad_id), False

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...], state=None):
        ids, mask, labels = batch
        logits = model(ids, mask)  # (B, n_labels) or (B, T, n_labels)
        flat = logits.reshape(-1, logits.shape[-1]).float()
        return F.cross_entropy(flat, labels.reshape(-1), ignore_index=IGNORE_INDEX), None

    def tokens(self, batch: tuple[torch.Tensor, ...]) -> int:
        return int(batch[1].sum())

    @torch.no_grad()
    def evaluate(self, model: nn.Module, max_tokens: int = 0) -> dict[str, float] | None:
        """valid_loss (mean cross-entropy), accuracy and macro-F1 over the held-out labels."""
        if self.valid is None:
            return None
        gold, predicted, loss = _predictions(model, self.valid, self.pad_id)
        return {
            "valid_loss": loss,
            "valid_accuracy": float((gold == predicted).float().mean()),
            "valid_macro_f1": macro_f1(gold, predicted),
        }


def batched_logits(model: nn.Module, data: Labelled, pad_id: int, batch_size: int = 64):
    """Yield (logits, labels) of ``data`` in order, ``batch_size`` rows at a time, the model in
    eval mode and without gradients (its train/eval mode is restored at the end)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            for start in range(0, len(data.rows), batch_size):
                chosen = range(start, min(start + batch_size, len(data.rows)))
                ids, mask, labels = (t.to(device) for t in padded_batch(data, chosen, pad_id))
                yield model(ids, mask).float(), labels
    finally:
        model.train(was_training)


def _predictions(model: nn.Module, data: Labelled, pad_id: int, batch_size: int = 64):
    """(gold (N,), predicted (N,), mean cross-entropy) over every scored label of ``data``."""
    golds, preds, nll = [], [], 0.0
    for logits, labels in batched_logits(model, data, pad_id, batch_size):
        flat, gold = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
        scored = gold != IGNORE_INDEX
        nll += float(F.cross_entropy(flat[scored], gold[scored], reduction="sum"))
        golds.append(gold[scored].cpu())
        preds.append(flat[scored].argmax(-1).cpu())
    gold, predicted = torch.cat(golds), torch.cat(preds)
    return gold, predicted, nll / max(len(gold), 1)


# ---------------------------------------------------------------------------------------------
# Training, folders, prediction.


def finetune_config(n_examples: int, settings: dict | None = None) -> TrainConfig:
    """The Trainer settings of a fine-tuning run: ``FINETUNE_DEFAULTS`` < ``settings``; unless
    given, ``max_steps`` is 3 epochs, ``warmup_steps`` 10% of them and ``eval_interval`` one
    epoch (Devlin et al. 2019, appendix A.3; the warmup share is the released code's)."""
    values = {**FINETUNE_DEFAULTS, **(settings or {})}
    batch_size = values["batch_size"]
    per_epoch = max(1, math.ceil(n_examples / batch_size)) if isinstance(batch_size, int) else 1
    values.setdefault("max_steps", FINETUNE_EPOCHS * per_epoch)
    if isinstance(values["max_steps"], int):
        values.setdefault("warmup_steps", int(WARMUP_SHARE * values["max_steps"]))
    values.setdefault("eval_interval", per_epoch)
    return build_config(TrainConfig, values, {})


def _write_meta(
    folder: Path, model: _Classifier, tokenizer: Tokenizer, labels: Sequence, base: str | None
) -> None:
    tokenizer.save(folder / TOKENIZER)
    task = next(name for name, cls in _MODELS.items() if isinstance(model, cls))
    write_json(
        folder / CONFIG,
        {
            "family": "bert",
            "version": __version__,
            "config": config_to_dict(model.config),
            "tokenizer": tokenizer.kind,
            "task": task,
            "labels": list(labels),
            "base": base,
        },
    )


def save_classifier(
    folder: str | os.PathLike,
    model: _Classifier,
    tokenizer: Tokenizer,
    labels: Sequence,
    base: str | None = None,
) -> Path:
    """Write a fine-tuned folder (``config.json``, ``model.safetensors``, ``tokenizer.json``),
    each file atomically; ``load_classifier`` reads it back."""
    out = Path(folder)
    if len(labels) != model.n_labels:
        raise ConfigError(f"{len(labels)} labels given for a model of {model.n_labels} classes")
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    atomic_write_bytes(out / WEIGHTS, safetensors_bytes(state))
    _write_meta(out, model, tokenizer, labels, base)
    return out


def load_classifier(folder: str | os.PathLike) -> tuple[_Classifier, Tokenizer, dict]:
    """A fine-tuned folder's classifier (in eval mode), tokenizer and metadata
    (``meta["labels"]`` names the classes).

    Raises:
        CheckpointError: no such folder, not a fine-tuned folder, or broken weights.
    """
    path = Path(folder)
    meta = read_json(path / CONFIG, "model config")
    if meta.get("task") not in TASKS or not isinstance(meta.get("labels"), list):
        raise CheckpointError(
            f"{path} is not a fine-tuned classifier folder (config.json has no task and labels); "
            "make one with `lmforge finetune`"
        )
    config = build_config(BertConfig, meta.get("config", {}), {})
    model = _MODELS[meta["task"]](BERT(config), len(meta["labels"]))
    try:
        model.load_state_dict(load_file(str(path / WEIGHTS)))
    except (OSError, RuntimeError, ValueError) as err:
        first = str(err).splitlines()[0][:200]
        raise CheckpointError(f"{path / WEIGHTS}: cannot load the weights ({first})") from None
    model.eval()
    return model, load_tokenizer(path / TOKENIZER), meta


def finetune(
    encoder: BERT,
    tokenizer: Tokenizer,
    train_records: Sequence[dict],
    eval_records: Sequence[dict] | None,
    task: str,
    train_config: TrainConfig,
    out_dir: str | os.PathLike | None = None,
    freeze_encoder: bool = False,
    base: str | None = None,
    progress: bool = True,
) -> tuple[_Classifier, TrainResult, dict | None]:
    """Fine-tune ``encoder`` plus one new linear layer on labelled examples (``read_examples``).

    Args:
        encoder: the pretrained BERT (trained in place unless ``freeze_encoder``).
        tokenizer: its tokenizer.
        train_records, eval_records: examples; the labels are the training examples' (sorted).
        task: "sequence" or "token".
        train_config: the Trainer's settings (``finetune_config`` gives BERT's defaults).
        out_dir: the fine-tuned folder to write, or None.
        freeze_encoder: train the new layer only (the encoder's parameters stay as they are).
        base: where the encoder came from, recorded in ``config.json``.
        progress: show a progress bar.

    Returns:
        (the classifier in eval mode, TrainResult, the held-out metrics or None).

    Raises:
        DataError: fewer than two training labels, or an evaluation label not among them.
    """
    labels = check_labels(train_records, eval_records, task)
    limit = encoder.config.max_seq_len
    train = encode_examples(train_records, task, tokenizer, labels, limit, "training data")
    valid = None
    if eval_records is not None:
        valid = encode_examples(eval_records, task, tokenizer, labels, limit, "evaluation data")
    model = _MODELS[task](encoder, len(labels))
    encoder.requires_grad_(not freeze_encoder)
    # The parts the new head does not read get no gradient: frozen, so that AdamW and DDP
    # (which wants a gradient for every trainable parameter) leave them alone.
    unused = [encoder.mlm_head, encoder.nsp_head, *([encoder.pooler] if task == "token" else [])]
    for module in unused:
        module.requires_grad_(False)
    job = ClassificationTask(
        train, valid, tokenizer.pad_id, train_config.batch_size, train_config.seed
    )
    if out_dir:
        _write_meta(Path(out_dir), model, tokenizer, labels, base)
    trainer = Trainer(model, train_config, task=job, out_dir=out_dir, progress=progress)
    result = trainer.fit()
    model.eval()
    return model, result, job.evaluate(model)


@torch.no_grad()
def predict(
    model: SequenceClassifier, tokenizer: Tokenizer, labels: Sequence, texts: Sequence[str]
) -> list:
    """The most probable label of each text under a sequence classifier."""
    records = [{"text": text, "label": labels[0]} for text in texts]  # placeholder labels
    data = encode_examples(records, "sequence", tokenizer, labels, model.config.max_seq_len)
    _, predicted, _ = _predictions(model, data, tokenizer.pad_id)
    return [labels[i] for i in predicted.tolist()]


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
