"""Perplexity and the mixture of two models: pure functions of log-probabilities.

Perplexity is exp(mean negative log-likelihood per token), over the same tokens for every family:
each sentence's tokens and its ``</s>``, never ``<s>`` (the rule of ``lmforge.tokenize``).
Two models' probabilities of the same tokens are mixed with ``mix_log_probs``. Classifiers are
scored by ``macro_f1``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["macro_f1", "mix_log_probs", "perplexity"]


def perplexity(total_nll: float, n_tokens: int) -> float:
    """exp(total_nll / n_tokens), with total_nll the summed negative natural-log likelihood.

    Raises:
        ValueError: no tokens.
    """
    if n_tokens <= 0:
        raise ValueError("perplexity needs at least one token")
    return math.exp(total_nll / n_tokens)


def mix_log_probs(logp_a, logp_b, weight: float = 0.5):
    """log(weight p_a + (1 - weight) p_b): the linear mixture of two models, in log space.

    Bengio et al. (2003), Table 1, "mix": the neural LM's probabilities averaged with an
    interpolated trigram's. Computed as logaddexp(log w + a, log(1 - w) + b), which neither
    underflows nor overflows.

    Args:
        logp_a: natural-log probabilities of model a: a float, numpy array or torch tensor.
        logp_b: the same tokens under model b, same type and shape.
        weight: w, the weight of model a, in [0, 1].

    Raises:
        ValueError: weight outside [0, 1].
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight!r}")
    if weight == 1.0:
        return logp_a
    if weight == 0.0:
        return logp_b
    a = logp_a + math.log(weight)
    b = logp_b + math.log1p(-weight)
    if hasattr(a, "logaddexp"):  # a torch tensor
        return a.logaddexp(b)
    mixed = np.logaddexp(a, b)
    return float(mixed) if np.ndim(mixed) == 0 else mixed


def macro_f1(gold, predicted) -> float:
    """Unweighted mean over classes of F1 = 2PR / (P + R), over the classes that occur in
    ``gold`` or ``predicted`` (a class with P = R = 0 counts 0), as scikit-learn's
    ``f1_score(average="macro")``.

    Args:
        gold, predicted: (N,) class indices (numpy arrays or CPU tensors).
    """
    gold, predicted = np.asarray(gold), np.asarray(predicted)
    scores = []
    for label in np.union1d(gold, predicted):
        tp = float(np.sum((predicted == label) & (gold == label)))
        fp = float(np.sum((predicted == label) & (gold != label)))
        fn = float(np.sum((predicted != label) & (gold == label)))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores) if scores else 0.0
