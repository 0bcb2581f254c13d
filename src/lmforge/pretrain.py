"""BERT as a masked LM, as plain Python functions: pretraining, fill-mask, pseudo-perplexity.

``pretrain`` trains a ``bert`` on lines of text with the one Trainer and its MLM + NSP task
(``lmforge.data.mlm``). ``fill_mask`` ranks the tokens for each [MASK] of a text.
``pseudo_perplexity`` is the score of a masked LM (Salazar et al. 2020): each token is masked in
turn and predicted from both sides, which is not a probability of the text, so it is never
called perplexity nor compared with the causal families' perplexity.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence

import torch

from lmforge.data.mlm import MLMTask
from lmforge.errors import ConfigError, DataError
from lmforge.models.bert import BERT, pseudo_log_likelihood
from lmforge.tokenize import Tokenizer
from lmforge.train.trainer import TrainConfig, Trainer, TrainResult
from lmforge.workflows import build_model, write_model_meta

__all__ = ["MASK_MARKERS", "pretrain", "fill_mask", "pseudo_perplexity"]

MASK_MARKERS = ("[MASK]", "<mask>")  # how a text marks the tokens to fill
_MASK_PATTERN = re.compile("|".join(re.escape(marker) for marker in MASK_MARKERS))


def pretrain(
    train_lines: Sequence[str],
    valid_lines: Sequence[str] | None,
    tokenizer: Tokenizer,
    model_overrides: dict,
    train_config: TrainConfig,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
) -> tuple[BERT, TrainResult, MLMTask]:
    """Pretrain a ``bert`` (masked LM + next sentence prediction) with the one Trainer.

    Args:
        train_lines: training text; blank lines separate documents, every other line is a
            sentence (``lmforge.data.mlm``).
        valid_lines: held-out text of the same form, or None.
        tokenizer: the tokenizer (``vocab_size`` and the role ids come from it).
        model_overrides: BertConfig settings (not ``vocab_size``).
        train_config: the Trainer's settings; ``seq_len`` is not used (pairs are up to the
            model's ``max_seq_len`` tokens).
        out_dir: model folder to write (``config.json``, ``tokenizer.json``,
            ``model.safetensors``), or None.
        resume: continue the run in ``out_dir``.
        progress: show a progress bar.

    Returns:
        (model, TrainResult, the task: its ``evaluate`` gives the held-out MLM/NSP figures).
    """
    model, config = build_model("bert", tokenizer.vocab_size, model_overrides)
    task = MLMTask(
        tokenizer,
        train_lines,
        valid_lines,
        config.max_seq_len,
        train_config.batch_size,
        train_config.seed,
    )
    if out_dir and not resume:
        write_model_meta(out_dir, "bert", config, train_config, tokenizer, {"objective": "mlm+nsp"})
    trainer = Trainer(model, train_config, task=task, out_dir=out_dir, progress=progress)
    result = trainer.fit(resume=resume)
    trainer.model.eval()
    return trainer.model, result, task


def _masked_ids(tokenizer: Tokenizer, text: str, limit: int) -> tuple[list[int], list[int]]:
    """[CLS] text [SEP] ids with each mask marker as the mask id, and the masks' positions."""
    pieces = _MASK_PATTERN.split(text)
    if len(pieces) == 1:
        raise DataError(
            f"the text {text!r} has no mask token; write [MASK] (or <mask>) where a token "
            "should be filled in, e.g. 'the cat sat on the [MASK]'"
        )
    encoded = tokenizer.encode_batch(pieces, markers=False)
    ids = [tokenizer.bos_id]
    positions = []
    for i, piece in enumerate(encoded):
        if i:
            positions.append(len(ids))
            ids.append(tokenizer.mask_id)
        ids.extend(piece)
    ids.append(tokenizer.eos_id)
    if len(ids) > limit:
        raise DataError(
            f"the text is {len(ids)} tokens with its markers, but the model reads at most {limit}; "
            "give a shorter text"
        )
    return ids, positions


@torch.no_grad()
def fill_mask(
    model: BERT, tokenizer: Tokenizer, text: str, top_k: int = 5
) -> list[list[tuple[str, float]]]:
    """The most probable tokens for each mask of ``text`` (written ``[MASK]`` or ``<mask>``).

    Every mask is predicted in one pass, all masks present (as BERT sees them in pretraining).

    Returns:
        for each mask, left to right, ``top_k`` pairs (token string, probability), best first;
        the probabilities are the model's softmax over the whole vocabulary.

    Raises:
        DataError: the text has no mask, or is longer than the model's ``max_seq_len``.
        ConfigError: ``top_k`` < 1.
    """
    if top_k < 1:
        raise ConfigError(f"top_k must be >= 1, got {top_k}")
    ids, positions = _masked_ids(tokenizer, text, model.config.max_seq_len)
    device = model.tok_emb.weight.device
    training = model.training
    model.eval()
    try:
        hidden = model.encode(torch.tensor([ids], device=device))[0, positions]  # (M, d_model)
        probs = model.mlm_logits(hidden).float().softmax(-1)  # (M, V)
    finally:
        model.train(training)
    best = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
    return [
        [(tokenizer.id_to_token(int(i)), float(p)) for p, i in zip(values, index, strict=True)]
        for values, index in zip(best.values.cpu(), best.indices.cpu(), strict=True)
    ]


@torch.no_grad()
def pseudo_perplexity(
    model: BERT, tokenizer: Tokenizer, lines: Sequence[str], batch_size: int = 64
) -> float:
    """exp(-sum of pseudo-log-likelihoods / number of scored tokens) (Salazar et al. 2020).

    Every non-empty line is ``[CLS] tokens [SEP]`` (cut to the model's ``max_seq_len``, keeping
    [SEP]); each of its tokens, not the markers, is masked in turn and scored.

    Raises:
        DataError: no line has a token to score.
    """
    limit = model.config.max_seq_len
    device = model.tok_emb.weight.device
    training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for row in tokenizer.encode_batch([line for line in lines if line.strip()]):
            row = row if len(row) <= limit else [*row[: limit - 1], row[-1]]
            ids = torch.tensor(row, device=device)
            positions = torch.arange(1, len(row) - 1, device=device)
            logp = pseudo_log_likelihood(model, ids, positions, tokenizer.mask_id, batch_size)
            total += float(logp.sum())
            count += len(positions)
    finally:
        model.train(training)
    if not count:
        raise DataError("no tokens to score; give lines with some text")
    return math.exp(-total / count)
