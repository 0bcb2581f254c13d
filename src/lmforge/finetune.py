"""Fine-tuning a pretrained BERT with exactly one new output layer (Devlin et al. 2019, section 4).

* ``SequenceClassifier`` (``lmforge.models.heads``): the encoder's pooled [CLS] vector, dropout
  and one ``nn.Linear(d_model, n_labels)`` (section 4.1).
* ``TokenClassifier``: each token's last hidden vector, dropout, one ``nn.Linear``; a word is
  labelled at its first sub-token, the others are not scored (section 5.3).

Every other parameter is the pretrained encoder's and is fine-tuned with it (or frozen with
``freeze_encoder``: only the new layer learns). Training is the one Trainer on a
``ClassificationTask`` (``lmforge.train.tasks``); the defaults follow appendix A.3 (batch 32,
lr 5e-5, 3 epochs) and the released code's 10% linear warmup (``warmup_proportion=0.1``).

The data are labelled examples (``lmforge.data.labelled``): ``{"text": ..., "label": ...}`` for
sequences, ``{"tokens": [...], "labels": [...]}`` for tokens; the labels are those of the
training file, sorted; an evaluation label outside them is an error.

A fine-tuned folder holds ``config.json`` (``family`` "bert", the encoder ``config``, ``task``
"sequence" or "token", ``labels``, ``base``), ``model.safetensors`` (``encoder.*`` and
``classifier.*``) and ``tokenizer.json``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch

from lmforge.config import build_config
from lmforge.data.labelled import check_labels, encode_examples
from lmforge.errors import CheckpointError
from lmforge.folders import load_model, write_record
from lmforge.models import family_of
from lmforge.models.bert import BERT
from lmforge.models.heads import HEADS, EncoderClassifier, SequenceClassifier, head_task
from lmforge.tokenize import Tokenizer
from lmforge.train.config import TrainConfig, TrainResult
from lmforge.train.tasks import ClassificationTask, label_predictions
from lmforge.train.trainer import Trainer

__all__ = [
    "FINETUNE_DEFAULTS",
    "finetune",
    "finetune_config",
    "load_classifier",
    "predict",
]

# Devlin et al. 2019, appendix A.3; the epochs set max_steps when it is not given.
FINETUNE_DEFAULTS = {"batch_size": 32, "lr": 5e-5, "min_lr": 0.0, "weight_decay": 0.01}
FINETUNE_EPOCHS, WARMUP_SHARE = 3, 0.1


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


def load_classifier(folder: str | os.PathLike) -> tuple[EncoderClassifier, Tokenizer, dict]:
    """A fine-tuned folder's classifier (in eval mode), tokenizer and record
    (``record["labels"]`` names the classes).

    Raises:
        CheckpointError: no such folder, not a fine-tuned folder, or broken weights.
    """
    model, tokenizer, record = load_model(folder)
    if head_task(model) is None:
        raise CheckpointError(
            f"{folder} is not a fine-tuned classifier folder (config.json has no task and "
            "labels); make one with `lmforge finetune`"
        )
    return model, tokenizer, record


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
) -> tuple[EncoderClassifier, TrainResult, dict | None]:
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
    model = HEADS[task](encoder, len(labels))
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
        family = family_of(encoder).name
        write_record(
            out_dir, family, encoder.config, tokenizer, task=task, labels=list(labels), base=base
        )
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
    _, predicted, _ = label_predictions(model, data, tokenizer.pad_id)
    return [labels[i] for i in predicted.tolist()]
