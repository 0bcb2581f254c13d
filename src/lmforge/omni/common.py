"""What every modality module of ``lmforge.omni`` shares, written once.

* ``Tokenizer``: the base of each frozen tokenizer, an ``nn.Module`` holding its config, with
  ``codebook_size`` and the part folder it saves to and loads from (``lmforge.folders``);
* input checks that raise a DataError naming the shape: ``check_shape``, ``check_codes``;
* ``VQConfig``: the settings (and their checks) that the VQ-VAE tokenizers' configs (image,
  video, points) extend;
* the judges' and baselines' small helpers: ``accuracy``, ``need_sklearn`` (scikit-learn is an
  optional extra) and ``one_blas_thread``;
* ``progress_bar``: tqdm for the tokenizers' training, disabled on request.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import ClassVar, Self

import torch
from torch import nn

from lmforge.errors import CheckpointError, ConfigError, DataError
from lmforge.folders import load_part, save_part

__all__ = [
    "Tokenizer",
    "accuracy",
    "check_codes",
    "check_shape",
    "VQConfig",
    "need_sklearn",
    "one_blas_thread",
    "progress_bar",
]


class Tokenizer(nn.Module):
    """A frozen tokenizer of one modality: an item <-> ``tokens_per_item`` codes in
    [0, ``codebook_size``).

    A subclass sets ``kind`` (its part folder's kind) and ``config_class`` (a frozen dataclass
    of plain values), defines ``tokens_per_item``, ``encode`` and ``decode``, and keeps what it
    learned in parameters and buffers: ``save`` writes them with the config, ``load`` reads both.
    ``legacy``: the values of settings added later, which a folder written before them lacks
    (it was trained with those values).
    """

    kind: ClassVar[str]
    config_class: ClassVar[type]
    legacy: ClassVar[dict] = {}

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def save(self, folder: str | os.PathLike) -> None:
        """Write the tokenizer folder (``config.json`` and ``model.safetensors``)."""
        save_part(folder, self.kind, asdict(self.config), self.state_dict())

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Self:
        """Read a folder written by ``save``; the tokenizer comes back in eval mode.

        Raises:
            CheckpointError: no such folder, another kind, or a broken one.
        """
        config, tensors = load_part(folder, cls.kind)
        try:
            tokenizer = cls(cls.config_class(**{**cls.legacy, **config}))
            tokenizer.load_state_dict(tensors)
        except (TypeError, ConfigError, RuntimeError) as err:
            first = str(err).splitlines()[0][:200]
            message = f"{folder}: not a valid {cls.kind} ({first}); re-create it"
            raise CheckpointError(message) from None
        return tokenizer.eval()


def check_shape(x, tail: tuple[int, ...], what: str) -> None:
    """A DataError naming the shape unless ``x`` is a tensor of shape (B, *tail)."""
    if not torch.is_tensor(x) or x.dim() != len(tail) + 1 or tuple(x.shape[1:]) != tail:
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        want = ", ".join(["B", *map(str, tail)])
        raise DataError(f"{what} must be a tensor of shape ({want}), got {shape}")


def check_codes(codes, length: int, codebook_size: int) -> None:
    """A DataError unless ``codes`` is (B, length) of integers in [0, codebook_size)."""
    check_shape(codes, (length,), "codes")
    if codes.is_floating_point():
        raise DataError(f"codes must be integers in [0, {codebook_size}), got {codes.dtype}")
    if codes.numel() and (codes.min() < 0 or codes.max() >= codebook_size):
        raise DataError(
            f"codes must lie in [0, {codebook_size}), got [{int(codes.min())}, {int(codes.max())}]"
        )


@dataclass(frozen=True)
class VQConfig:
    """What every VQ-VAE tokenizer's config holds (image, video and 3-D extend it), checked.

    ``restart_after``: steps a code may go unused before it restarts (0: never).
    """

    codebook_size: int = 128
    code_dim: int = 32
    channels: int = 32
    beta: float = 0.25
    steps: int = 2000
    batch_size: int = 64
    lr: float = 3e-3
    restart_after: int = 50

    def __post_init__(self) -> None:
        if not 2 <= self.codebook_size <= 256:
            raise ConfigError(f"codebook_size must be in 2..256, got {self.codebook_size!r}")
        for name in ("code_dim", "channels", "steps", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if not self.beta >= 0:
            raise ConfigError(f"beta must be >= 0, got {self.beta!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr!r}")
        if self.restart_after < 0:
            raise ConfigError(f"restart_after must be >= 0 (0: never), got {self.restart_after!r}")


def accuracy(predicted: torch.Tensor, y: torch.Tensor) -> float:
    """The share of ``predicted`` (N,) equal to ``y`` (N,); 0.0 when N = 0."""
    return float((predicted == y).float().mean()) if len(y) else 0.0


def need_sklearn(users: str) -> None:
    """A ConfigError with the install hint unless scikit-learn imports; ``users`` names what
    needs it ("the 3-D judge and baseline")."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise ConfigError(f"{users} need scikit-learn: pip install scikit-learn") from None


def one_blas_thread():
    """A context with scikit-learn's BLAS on one thread: its small fits slow down many times
    when two threads share two busy cores."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def progress_bar(total: int, enabled: bool, desc: str):
    """A tqdm bar of ``total`` steps that leaves no line behind; a silent one unless
    ``enabled``."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, disable=not enabled)
