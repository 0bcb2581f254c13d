"""Parts of the neural family protocol (``lmforge.models.family``) that read the same in several
families, written once.

A model class binds those it shares as class attributes, ``num_parameters = num_parameters``,
instead of inheriting them from a base class (composition over inheritance); a causal family
binds ``lmforge.nn.decoding.generate`` as its ``generate`` the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

import torch
from torch import nn

from lmforge.errors import ConfigError

__all__ = ["max_seq_len_context", "no_state", "num_parameters", "refusal"]


def num_parameters(model: nn.Module) -> int:
    """Number of parameters, each shared tensor (a tied embedding) counted once: ``parameters()``
    skips duplicates."""
    return sum(p.numel() for p in model.parameters())


def no_state(model: nn.Module, batch_size: int, device: torch.device | str | None = None) -> None:
    """``init_state`` of a model that carries nothing from batch to batch: None."""
    return None


@property
def max_seq_len_context(model: nn.Module) -> int:
    """``context_size`` of a model read in windows of ``config.max_seq_len`` tokens."""
    return model.config.max_seq_len


def refusal(message: str) -> Callable[..., NoReturn]:
    """A method for the protocol calls a family cannot answer (``log_probs`` and ``generate`` of
    a model that is not a causal LM): whatever it is given, it raises ConfigError(message)."""

    def refuse(model: nn.Module, *args: object, **kwargs: object) -> NoReturn:
        raise ConfigError(message)

    return refuse
