"""What the one Trainer trains on: the ``Task`` protocol and the task of every kind of model.

Each registry entry names its family's task (``Family.task``), and ``make_task`` builds it:

* ``"lm"``, ``LMTask``: next-token prediction on a token stream (the causal families);
* ``"mlm"``, ``MLMTask``: BERT's masked LM + next-sentence prediction;
* ``"pairs"``, ``PairsTask``: (source, target) pairs for the encoder-decoders.

``ClassificationTask`` fine-tunes a classifier on labelled examples (``lmforge.data.labelled``);
``ChatTask`` tunes a causal LM on dialogues (``lmforge.data.dialogues``), the loss on the
assistant's tokens only.
The data and their batches come from ``lmforge.data``; the losses from the families' files.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn
from torch.nn import functional as F

from lmforge.data.batching import EpochOrder, StreamBatches, WindowBatches, token_stream
from lmforge.data.dialogues import dialogue_batch, encode_dialogue, pack_dialogues
from lmforge.data.labelled import Labelled, padded_batch
from lmforge.data.mlm import (
    EVAL_SEED,
    IGNORE_INDEX,
    Documents,
    build_pairs,
    mask_tokens,
    special_ids,
)
from lmforge.data.pairs import Pair, encode_pairs, pair_batch
from lmforge.errors import ConfigError, DataError
from lmforge.evaluate import evaluate_model
from lmforge.metrics import macro_f1
from lmforge.models import family_of
from lmforge.models.bert import pretraining_loss
from lmforge.models.seq2seq import label_smoothed_nll, seq2seq_loss
from lmforge.tokenize import PAD_ID, ChatTemplate, Tokenizer
from lmforge.train.config import TrainConfig

__all__ = [
    "AuxLMClassificationTask",
    "ChatTask",
    "ClassificationTask",
    "LMTask",
    "MLMTask",
    "PairsTask",
    "Task",
    "batched_logits",
    "evaluating",
    "label_predictions",
    "lm_loss",
    "make_task",
]


class Task(Protocol):
    """What the Trainer trains on.

    A batch is a tuple of tensors whose first dimension is the example (the Trainer slices rows
    for data parallelism and gradient accumulation).
    """

    def batch(self, step: int) -> tuple[tuple[torch.Tensor, ...], bool]:
        """The batch of training step ``step`` (deterministic in step), and whether a carried
        recurrent state must restart there."""
        ...

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...], state=None):
        """(scalar loss to minimise, new carried state or None)."""
        ...

    def tokens(self, batch: tuple[torch.Tensor, ...]) -> int:
        """How many tokens the batch holds (for tokens/s)."""
        ...

    def evaluate(self, model: nn.Module, max_tokens: int = 0) -> dict[str, float] | None:
        """Validation metrics with a ``"valid_loss"`` (lower is better) to select and stop on;
        None when there is no validation data."""
        ...


@contextmanager
def evaluating(model: nn.Module) -> Iterator[torch.device]:
    """The ``with`` block runs ``model`` in eval mode without gradients (its mode is restored
    after); it yields the model's device."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield next(model.parameters()).device
    finally:
        model.train(was_training)


def make_task(
    model: nn.Module,
    tokenizer: Tokenizer,
    train_data: Sequence,
    valid_data: Sequence | None,
    config: TrainConfig,
) -> Task:
    """The task of ``model``'s family (``Family.task``) on its training and held-out data.

    Args:
        model: a model of a registered neural family.
        tokenizer: its tokenizer.
        train_data: lines of text ("lm"; "mlm": blank lines between documents), or
            (source, target) pairs ("pairs").
        valid_data: held-out data of the same kind, or None (no evaluation).
        config: the Trainer's settings (batch size and seed; "lm" also reads ``seq_len``).
    """
    task = family_of(model).task
    if task == "lm":
        train = token_stream(tokenizer, train_data)
        valid = token_stream(tokenizer, valid_data) if valid_data else None
        return LMTask(model, config, train, valid)
    if task == "mlm":
        limit, batch_size = model.config.max_seq_len, config.batch_size
        return MLMTask(tokenizer, train_data, valid_data, limit, batch_size, config.seed)
    if task == "pairs":
        return PairsTask(model, tokenizer, train_data, valid_data, config.batch_size, config.seed)
    raise ConfigError(f"unknown task {task!r}; known tasks: lm, mlm, pairs")


# ---------------------------------------------------------------------------------------------
# Language modelling.


def lm_loss(model: nn.Module, inputs, targets, state=None):
    """Mean negative log-likelihood per target token, and the new state."""
    logp, state = model.log_probs(inputs, targets, state)
    return -logp.mean(), state


class LMTask:
    """Next-token prediction on a token stream: the default task of the Trainer.

    Batching comes from ``model.recurrent``: random windows, or parallel rows with a carried
    state for truncated BPTT (``lmforge.data.batching``); the loss is ``lm_loss``.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        train_stream: torch.Tensor,
        valid_stream: torch.Tensor | None = None,
    ) -> None:
        self.valid_stream = valid_stream
        if model.recurrent:
            self.batches = StreamBatches(train_stream, config.batch_size, config.seq_len)
        else:
            limit = getattr(model.config, "max_seq_len", None)
            if limit and config.seq_len != limit:
                raise ConfigError(
                    f"seq_len ({config.seq_len}) must equal the model's max_seq_len ({limit}): "
                    "positions beyond seq_len would never be trained"
                )
            self.batches = WindowBatches(
                train_stream, config.batch_size, config.seq_len, config.seed
            )

    def batch(self, step: int) -> tuple[tuple[torch.Tensor, ...], bool]:
        inputs, targets, reset = self.batches.batch(step)
        return (inputs, targets), reset

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...], state=None):
        inputs, targets = batch
        return lm_loss(model, inputs, targets, state)

    def tokens(self, batch: tuple[torch.Tensor, ...]) -> int:
        return batch[1].numel()

    def evaluate(self, model: nn.Module, max_tokens: int = 0) -> dict[str, float] | None:
        if self.valid_stream is None:
            return None
        nll, count = evaluate_model(model, self.valid_stream, max_tokens=max_tokens)
        return {"valid_loss": nll / count, "valid_ppl": math.exp(nll / count)}


# ---------------------------------------------------------------------------------------------
# BERT pretraining.


class MLMTask:
    """BERT pretraining (masked LM + next-sentence prediction, ``lmforge.data.mlm``).

    A batch is ``(ids, segment_ids, attention_mask, mlm_labels, nsp_labels)``: (B, T) x 4 and
    (B,). Training anchors (sentence A) are drawn with replacement; batch ``step`` depends only on
    (seed, step). The held-out examples are every validation sentence that has a next one, each
    paired and masked once with ``EVAL_SEED``.

    Args:
        tokenizer: the model's tokenizer.
        train_lines: training text (blank lines between documents).
        valid_lines: held-out text, or None for no evaluation.
        max_seq_len: the model's positions; longer pairs are truncated.
        batch_size: examples per step.
        seed: seed of the training batches.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        train_lines: Sequence[str],
        valid_lines: Sequence[str] | None,
        max_seq_len: int,
        batch_size: int,
        seed: int = 0,
    ) -> None:
        self.tokenizer = tokenizer
        self.max_seq_len, self.batch_size, self.seed = max_seq_len, batch_size, seed
        self.special = special_ids(tokenizer)
        self.train = Documents(tokenizer, train_lines, "training")
        self.eval_batches: list[tuple[torch.Tensor, ...]] = []
        if valid_lines is not None:
            valid = Documents(tokenizer, valid_lines, "validation")
            generator = torch.Generator().manual_seed(EVAL_SEED)
            for start in range(0, len(valid.anchors), 64):
                anchors = valid.anchors[start : start + 64]
                self.eval_batches.append(self._examples(valid, anchors, generator))

    def _examples(self, docs: Documents, anchors: torch.Tensor, generator: torch.Generator):
        first, second, nsp_labels = docs.pairs(anchors, generator)
        tok = self.tokenizer
        ids, segment_ids, attention_mask = build_pairs(
            docs.sentences, first, second, self.max_seq_len, tok.bos_id, tok.eos_id, tok.pad_id
        )
        inputs, mlm_labels = mask_tokens(
            ids,
            mask_id=tok.mask_id,
            special=self.special,
            vocab_size=tok.vocab_size,
            generator=generator,
        )
        return inputs, segment_ids, attention_mask, mlm_labels, nsp_labels

    def batch(self, step: int) -> tuple[tuple[torch.Tensor, ...], bool]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        pick = torch.randint(len(self.train.anchors), (self.batch_size,), generator=generator)
        return self._examples(self.train, self.train.anchors[pick], generator), False

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...], state=None):
        total, _, _ = pretraining_loss(model, *batch)
        return total, None

    def tokens(self, batch: tuple[torch.Tensor, ...]) -> int:
        return int(batch[2].sum())

    @torch.no_grad()
    def evaluate(self, model: nn.Module, max_tokens: int = 0) -> dict[str, float] | None:
        """valid_loss (MLM + NSP cross-entropy), MLM loss and accuracy over the masked tokens,
        NSP loss and accuracy; on the first ``max_tokens`` tokens' worth of examples (0 = all)."""
        if not self.eval_batches:
            return None
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        mlm_nll = mlm_right = mlm_count = nsp_nll = nsp_right = nsp_count = tokens = 0.0
        for batch in self.eval_batches:
            ids, segment_ids, attention_mask, mlm_labels, nsp_labels = (t.to(device) for t in batch)
            hidden = model.encode(ids, segment_ids, attention_mask)
            chosen = mlm_labels != IGNORE_INDEX
            logits = model.mlm_logits(hidden[chosen]).float()  # (M, V)
            targets = mlm_labels[chosen]
            mlm_nll += float(nn.functional.cross_entropy(logits, targets, reduction="sum"))
            mlm_right += float((logits.argmax(-1) == targets).sum())
            mlm_count += len(targets)
            nsp = model.nsp_head(model.pool(hidden)).float()  # (B, 2)
            nsp_nll += float(nn.functional.cross_entropy(nsp, nsp_labels, reduction="sum"))
            nsp_right += float((nsp.argmax(-1) == nsp_labels).sum())
            nsp_count += len(nsp_labels)
            tokens += float(attention_mask.sum())
            if max_tokens and tokens >= max_tokens:
                break
        model.train(was_training)
        mlm_loss, nsp_loss = mlm_nll / max(mlm_count, 1), nsp_nll / nsp_count
        return {
            "valid_loss": mlm_loss + nsp_loss,
            "valid_mlm_loss": mlm_loss,
            "valid_mlm_accuracy": mlm_right / max(mlm_count, 1),
            "valid_nsp_loss": nsp_loss,
            "valid_nsp_accuracy": nsp_right / nsp_count,
        }

    def unigram_accuracy(self) -> float:
        """MLM accuracy on the held-out targets of always predicting the training text's most
        frequent non-special token (the baseline a model must beat)."""
        every = torch.tensor([i for ids in self.train.sentences for i in ids], dtype=torch.long)
        counts = torch.bincount(every, minlength=self.tokenizer.vocab_size)
        counts[list(self.special)] = 0
        best = int(counts.argmax())
        targets = torch.cat([b[3][b[3] != IGNORE_INDEX] for b in self.eval_batches])
        return float((targets == best).float().mean())


# ---------------------------------------------------------------------------------------------
# Sequence-to-sequence pairs.


class PairsTask:
    """Sequence-to-sequence pairs (``lmforge.data.pairs``): the task of encoder-decoder families.

    Training batches walk through the train pairs in a fresh seeded order every epoch
    (``EpochOrder``), so batch ``step`` depends only on (seed, step). The loss is the model's
    label-smoothed cross-entropy; validation reports the plain cross-entropy per target token
    (``</s>`` included) and its perplexity.

    Args:
        model: an encoder-decoder model (its ``config.max_seq_len`` bounds the pairs).
        tokenizer: the one tokenizer of sources and targets.
        train_pairs: pairs to train on.
        valid_pairs: held-out pairs for ``evaluate``, or None.
        batch_size: pairs per batch.
        seed: seed of the epoch orders.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Tokenizer,
        train_pairs: Sequence[Pair],
        valid_pairs: Sequence[Pair] | None,
        batch_size: int,
        seed: int = 0,
    ) -> None:
        if not train_pairs:
            raise DataError("no training pairs; give a pairs file with some lines")
        limit = model.config.max_seq_len
        self.train = encode_pairs(tokenizer, train_pairs, limit)
        self.valid = encode_pairs(tokenizer, valid_pairs, limit) if valid_pairs else None
        self.batch_size = batch_size
        self.order = EpochOrder(len(self.train), seed)

    def batch(self, step: int) -> tuple[tuple[torch.Tensor, ...], bool]:
        chosen = [self.train[i] for i in self.order.batch(step, self.batch_size)]
        return pair_batch(chosen), True

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...], state=None):
        source, target_in, target_out = batch
        return seq2seq_loss(model, source, target_in, target_out), None

    def tokens(self, batch: tuple[torch.Tensor, ...]) -> int:
        return int((batch[2] != PAD_ID).sum())

    def evaluate(self, model: nn.Module, max_tokens: int = 0) -> dict[str, float] | None:
        if not self.valid:
            return None
        total, count = 0.0, 0
        with evaluating(model) as device:
            for start in range(0, len(self.valid), 128):
                source, target_in, target_out = pair_batch(self.valid[start : start + 128])
                logits = model(source.to(device), target_in.to(device))
                n = int((target_out != PAD_ID).sum())
                total += float(label_smoothed_nll(logits, target_out.to(device), 0.0)) * n
                count += n
                if max_tokens and count >= max_tokens:
                    break
        return {"valid_loss": total / count, "valid_ppl": math.exp(total / count)}


# ---------------------------------------------------------------------------------------------
# Classification fine-tuning.


@dataclass(eq=False)
class ClassificationTask:
    """Sequence or token classification of labelled examples (``lmforge.data.labelled``).

    Batches go through the training examples epoch after epoch (``EpochOrder``), so batch
    ``step`` depends only on (seed, step).

    Args:
        train: encoded training examples.
        valid: encoded held-out examples, or None.
        pad_id: the padding id.
        batch_size: examples per step.
        seed: seed of the epoch permutations.
    """

    train: Labelled
    valid: Labelled | None
    pad_id: int
    batch_size: int
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.train.rows:
            raise DataError("no training examples; give a JSONL file with some lines")
        self.order = EpochOrder(len(self.train.rows), self.seed)

    def batch(self, step: int) -> tuple[tuple[torch.Tensor, ...], bool]:
        chosen = self.order.batch(step, self.batch_size)
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
        gold, predicted, loss = label_predictions(model, self.valid, self.pad_id)
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


def label_predictions(model: nn.Module, data: Labelled, pad_id: int, batch_size: int = 64):
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


@dataclass(eq=False)
class AuxLMClassificationTask(ClassificationTask):
    """Sequence classification whose loss adds ``aux_weight`` x the language-modelling loss of
    the same texts (Radford et al. 2018, eq. 3: L3 = L2 + λ L1, λ = 0.5); the model is a
    ``lmforge.models.heads.CausalClassifier``, which gives both losses in one forward."""

    aux_weight: float = 0.5

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...], state=None):
        ids, mask, labels = batch
        task, lm = model.losses(ids, mask, labels)
        return task + self.aux_weight * lm, None


# ---------------------------------------------------------------------------------------------
# Chat tuning.


class ChatTask:
    """Supervised chat tuning: next-token prediction on rendered conversations where only the
    assistant's tokens (each turn's content and its end-of-turn token) carry loss; system and
    user turns are context (``lmforge.data.dialogues.encode_dialogue``).

    A batch is ``(inputs, targets, weights)``, (B, T) each, padded (``dialogue_batch``); rows
    come epoch after epoch in seeded orders (``EpochOrder``). A model with ``max_seq_len``
    positions reads rows of conversations packed in a seeded order up to its length
    (``pack_dialogues``); a recurrent one reads one conversation per row. The loss is the mean
    negative log-likelihood per assistant token of the batch. A conversation longer than the
    model's positions is left out (with a warning).

    Args:
        model: a causal LM (its ``config.max_seq_len``, if any, bounds a conversation).
        tokenizer: its tokenizer, with the role tokens.
        template: the chat template.
        train: training conversations (``messages`` lists).
        valid: held-out conversations, or None.
        batch_size: rows per step.
        seed: seed of the packing and epoch orders.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Tokenizer,
        template: ChatTemplate,
        train: Sequence[Sequence[dict]],
        valid: Sequence[Sequence[dict]] | None,
        batch_size: int,
        seed: int = 0,
    ) -> None:
        limit = getattr(model.config, "max_seq_len", None)
        rows = [encode_dialogue(tokenizer, template, messages) for messages in train]
        valid_rows = [encode_dialogue(tokenizer, template, m) for m in valid] if valid else None
        self._setup(limit, rows, valid_rows, tokenizer.pad_id, batch_size, seed)

    @classmethod
    def from_rows(
        cls,
        model: nn.Module,
        rows: Sequence[tuple[list[int], list[bool]]],
        valid_rows: Sequence[tuple[list[int], list[bool]]] | None,
        pad_id: int,
        batch_size: int,
        seed: int = 0,
    ) -> ChatTask:
        """The task on conversations already encoded as (ids, assistant mask) rows (the
        any-to-any model's, ``lmforge.omni.vocab.encode_conversation``)."""
        task = cls.__new__(cls)
        limit = getattr(model.config, "max_seq_len", None)
        task._setup(limit, rows, valid_rows, pad_id, batch_size, seed)
        return task

    def _setup(self, limit, rows, valid_rows, pad_id: int, batch_size: int, seed: int) -> None:
        self.pad_id, self.batch_size = pad_id, batch_size
        self.train = _fitting(rows, limit, "training")
        if limit:
            order = torch.randperm(len(self.train), generator=torch.Generator().manual_seed(seed))
            self.train = pack_dialogues([self.train[i] for i in order.tolist()], limit + 1)
        self.valid = _fitting(valid_rows, limit, "held-out") if valid_rows else None
        self.order = EpochOrder(len(self.train), seed)

    def batch(self, step: int) -> tuple[tuple[torch.Tensor, ...], bool]:
        chosen = [self.train[i] for i in self.order.batch(step, self.batch_size)]
        return dialogue_batch(chosen, self.pad_id), True  # every row starts a conversation

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...], state=None):
        inputs, targets, weights = batch
        select = getattr(model, "selected_log_probs", None)
        if select is not None:  # the output layer reads the scored positions only
            keep = weights > 0
            logp, weights = select(inputs, targets, keep), weights[keep]  # (N,) each
        else:
            logp, state = model.log_probs(inputs, targets, state)  # (B, T)
        return -(logp * weights).sum() / weights.sum().clamp(min=1.0), state

    def tokens(self, batch: tuple[torch.Tensor, ...]) -> int:
        return int((batch[1] != self.pad_id).sum())

    def evaluate(self, model: nn.Module, max_tokens: int = 0) -> dict[str, float] | None:
        """valid_loss: nats per assistant token of the held-out conversations."""
        if not self.valid:
            return None
        total, count = 0.0, 0.0
        with evaluating(model) as device:
            for start in range(0, len(self.valid), 64):
                batch = dialogue_batch(self.valid[start : start + 64], self.pad_id)
                inputs, targets, weights = (t.to(device) for t in batch)
                state = model.init_state(inputs.shape[0], device)
                logp, _ = model.log_probs(inputs, targets, state)
                total -= float((logp * weights).sum())
                count += float(weights.sum())
                if max_tokens and count >= max_tokens:
                    break
        return {"valid_loss": total / count, "valid_ppl": math.exp(total / count)}


def _fitting(rows, limit, what: str) -> list:
    """The (ids, mask) rows that fit in ``limit`` positions (None: any length).

    Raises:
        DataError: none fits.
    """
    kept = [row for row in rows if limit is None or len(row[0]) - 1 <= limit]
    if not kept:
        raise DataError(
            f"no {what} conversation fits in the model's {limit} positions; give shorter "
            "conversations or a model with a larger max_seq_len"
        )
    if len(kept) < len(rows):
        warnings.warn(
            f"{len(rows) - len(kept)} of {len(rows)} {what} conversations are longer than the "
            f"model's {limit} positions and were left out",
            stacklevel=4,
        )
    return kept
