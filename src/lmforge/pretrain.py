"""BERT as a masked LM, as plain Python functions: fill-mask and pseudo-perplexity.

(Pretraining is ``lmforge train`` / ``workflows.train_family`` on the family's task,
``lmforge.train.tasks.MLMTask``.) ``fill_mask`` ranks the tokens for each [MASK] of a text.
``pseudo_perplexity`` is the score of a masked LM (Salazar et al. 2020): each token is masked in
turn and predicted from both sides, which is not a probability of the text, so it is never
called perplexity nor compared with the causal families' perplexity.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch

from lmforge.errors import ConfigError, DataError
from lmforge.models.bert import BERT, pseudo_log_likelihood
from lmforge.tokenize import Tokenizer

__all__ = ["MASK_MARKERS", "fill_mask", "pseudo_perplexity"]

MASK_MARKERS = ("[MASK]", "<mask>")  # how a text marks the tokens to fill
_MASK_PATTERN = re.compile("|".join(re.escape(marker) for marker in MASK_MARKERS))


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
