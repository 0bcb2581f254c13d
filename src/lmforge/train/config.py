"""The settings of a training run and what a run did: plain dataclasses, below the Trainer and
its tasks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from lmforge.errors import ConfigError

__all__ = ["TrainConfig", "TrainResult"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything about training that is not the model.

    ``seq_len`` is the window length for non-recurrent models and the BPTT length for recurrent
    ones. ``max_seconds`` > 0 stops early on a time budget (such a stop is not reproducible).
    ``schedule``: "cosine" (warmup then cosine to ``min_lr``), "plateau" (divide by
    ``plateau_factor`` when validation stops improving) or "constant". ``threads`` > 0 sets
    torch's CPU threads when training starts (1 is often fastest for small models on a busy
    2-core machine); 0 keeps torch's default.
    """

    batch_size: int = 32
    seq_len: int = 64
    max_steps: int = 1000
    max_seconds: float = 0.0
    optimizer: str = "adamw"
    lr: float = 1e-3
    min_lr: float = 1e-4
    schedule: str = "cosine"
    warmup_steps: int = 100
    plateau_factor: float = 2.0
    weight_decay: float = 0.1
    beta2: float = 0.99
    momentum: float = 0.0
    grad_clip: float = 1.0
    grad_accum: int = 1
    eval_interval: int = 200
    eval_tokens: int = 0
    patience: int = 0
    log_interval: int = 10
    seed: int = 1337
    device: str = "cpu"
    dtype: str = "float32"
    compile: bool = False
    threads: int = 0

    def __post_init__(self) -> None:
        choices = {
            "optimizer": ("adamw", "sgd"),
            "schedule": ("cosine", "plateau", "constant"),
            "dtype": ("float32", "bfloat16"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        for name in (
            "batch_size",
            "seq_len",
            "max_steps",
            "grad_accum",
            "eval_interval",
            "log_interval",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.batch_size % self.grad_accum:
            raise ConfigError(f"batch_size ({self.batch_size}) must be a multiple of grad_accum")
        if self.lr <= 0 or self.min_lr < 0:
            raise ConfigError("lr must be > 0 and min_lr >= 0")


@dataclass
class TrainResult:
    """What a run did: steps, time, speed and its best validation loss (nats per token)."""

    steps: int
    train_seconds: float
    tokens_per_second: float
    best_valid_loss: float
    history: list[dict] = field(default_factory=list)

    @property
    def best_valid_ppl(self) -> float:
        return math.exp(self.best_valid_loss)
