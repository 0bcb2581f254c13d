"""One perplexity path for every family: lines in, log-probabilities of their tokens out.

Every family is scored on the same tokens: each line's tokens and its ``</s>``, never ``<s>``
(the rule of ``lmforge.tokenize``). A counted family (the n-gram model) starts afresh at every
line, as KenLM does; a neural family reads the lines as one stream (``token_stream``) and may use
the previous lines as context. ``lmforge eval``, the ladder and every rung score through
``line_log_probs``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from lmforge.data.batching import eval_rows, eval_windows, pad_rows, token_stream
from lmforge.metrics import mix_log_probs, perplexity
from lmforge.models import family_of
from lmforge.tokenize import Tokenizer, tokenize_lines

__all__ = [
    "evaluate_model",
    "line_log_probs",
    "lines_perplexity",
    "mix_log_probs",
    "perplexity",
    "stream_log_probs",
]


def line_log_probs(model, tokenizer: Tokenizer | None, lines: Sequence[str]) -> np.ndarray:
    """Natural-log probability of every scored token of ``lines`` (each line's tokens and its
    ``</s>``), in order, under a model of any causal family.

    Returns:
        (N,) float array; perplexity is ``exp(-mean)``.
    """
    if family_of(model).fitting == "counting":
        return model.token_log_probs(tokenize_lines(lines, tokenizer))[0]
    return stream_log_probs(model, token_stream(tokenizer, lines)).double().numpy()


def lines_perplexity(model, tokenizer: Tokenizer | None, lines: Sequence[str]) -> float:
    """Perplexity of ``lines`` under any causal family: the same tokens for every family."""
    logp = line_log_probs(model, tokenizer, lines)
    return perplexity(-float(logp.sum()), len(logp))


@torch.no_grad()
def stream_log_probs(model: nn.Module, stream: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """(N-1,) log p of every target of ``stream`` (each token after the first), in order.

    Recurrent models read ``batch_size`` contiguous rows with a carried state; others read
    overlapping windows (``lmforge.data.batching.eval_windows``), so every target is scored once
    with as much context as the model can take.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = torch.empty(len(stream) - 1)
    if model.recurrent:
        inputs, targets, mask = eval_rows(stream, batch_size)
        index = torch.arange(mask.numel()).view(mask.shape)  # target number of each cell
        state = model.init_state(inputs.shape[0], device)
        for start in range(0, inputs.shape[1], 256):
            part = slice(start, start + 256)
            x, y = inputs[:, part].to(device), targets[:, part].to(device)
            logp, state = model.log_probs(x, y, state)
            keep = mask[:, part]
            out[index[:, part][keep]] = logp.cpu()[keep]
    else:
        limit = getattr(model.config, "max_seq_len", None)
        windows = list(eval_windows(stream, model.context_size, limit))
        done = 0
        for first in range(0, len(windows), batch_size):
            group = windows[first : first + batch_size]
            inputs, _ = pad_rows([x for x, _, _ in group], 0)
            targets, _ = pad_rows([y for _, y, _ in group], 0)
            mask, _ = pad_rows([m for _, _, m in group], False, torch.bool)
            logp, _ = model.log_probs(inputs.to(device), targets.to(device))
            scored = logp.cpu()[mask]  # row by row, in stream order
            out[done : done + len(scored)] = scored
            done += len(scored)
    model.train(was_training)
    return out


def evaluate_model(
    model: nn.Module, stream: torch.Tensor, batch_size: int = 16, max_tokens: int = 0
) -> tuple[float, int]:
    """Summed negative log-likelihood (nats) and number of targets of ``stream``."""
    if max_tokens:
        stream = stream[: max_tokens + 1]
    logp = stream_log_probs(model, stream, batch_size)
    return -float(logp.sum()), len(logp)
