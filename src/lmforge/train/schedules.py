"""Learning-rate schedules: pure functions of the step (and, for plateau, of its own state)."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["warmup_cosine", "Plateau"]


def warmup_cosine(step: int, lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> float:
    """Linear warmup to ``lr`` over ``warmup_steps``, then cosine decay to ``min_lr`` at
    ``max_steps`` (Loshchilov & Hutter 2017, as nanoGPT uses it)."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


@dataclass
class Plateau:
    """Divide the learning rate by ``factor`` whenever the validation loss stops improving
    (Mikolov et al. 2010; Zaremba et al. 2014 decay by a fixed factor per epoch after a while).

    The state (``scale``, ``best``) is saved with the trainer state so a resumed run continues it.
    """

    factor: float
    scale: float = 1.0
    best: float = math.inf

    def update(self, valid_loss: float) -> None:
        if valid_loss < self.best:
            self.best = valid_loss
        else:
            self.scale /= self.factor
