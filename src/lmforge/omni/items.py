"""Items of one modality: the common form every ``lmforge.omni`` data loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["Items"]


@dataclass
class Items:
    """A labelled set of items of one modality.

    Attributes:
        x: (N, ...) float32, one row per item (an image, a waveform or its frames, a series, ...).
        y: (N,) int64, the class index of each item into ``labels``.
        labels: the class names, English words ("zero", ..., "nine").
        extra: optional per-item fields, e.g. ``{"voice": [...]}`` or ``{"direction": tensor}``.
    """

    x: torch.Tensor
    y: torch.Tensor
    labels: tuple[str, ...]
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index) -> Items:
        """The items at ``index`` (a slice, a LongTensor or a boolean mask); per-item
        ``extra`` fields (tensors or lists of length N) follow."""
        idx = torch.arange(len(self.y))[index]
        extra = {
            k: v[idx] if torch.is_tensor(v) else [v[i] for i in idx.tolist()]
            for k, v in self.extra.items()
        }
        return Items(self.x[idx], self.y[idx], self.labels, extra)
