"""The registry of the any-to-any model's modalities: one explicit table, one file per modality.

Each entry names the module and its parts: the data loader (``load(split, seed) -> Items``),
the frozen tokenizer's class and config, the function that trains it, and where a modality has
one, the augmentation that multiplies the decoder's training items and the views through which
the model also reads an item it is given (``seeing_views``, ``hearing_views``). Each module also
holds ``train_<name>_judge`` (``lmforge.omni.judges``) and ``reconstruction_report``. A module
is imported only when its modality is used.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from lmforge.errors import UnknownModelError

__all__ = ["MODALITIES", "Modality", "get_modality"]


@dataclass(frozen=True)
class Modality:
    """Where one modality's parts live: names in the module ``lmforge.omni.<name>``."""

    name: str
    loader: str
    tokenizer: str
    config: str
    trainer: str
    augmenter: str | None = None
    base: str | None = None  # a modality whose tokenizer this one's is built on
    # other views of an item given to the model, read beside it (``Omni.encode``)
    viewer: str | None = None
    # the sampling temperature of generated items (``Omni.reply``; RESULTS.md has the sweeps):
    # images at 0.7 keep the variety of real digits; speech and 3-D are judged right more
    # often near greedy
    temperature: float = 0.5

    def part(self, attr: str):
        return getattr(importlib.import_module(f"lmforge.omni.{self.name}"), attr)

    def load(self, split: str, seed: int = 0):
        return self.part(self.loader)(split, seed=seed)

    def tokenizer_class(self):
        return self.part(self.tokenizer)

    def config_class(self):
        return self.part(self.config)

    def train_tokenizer(self, x, config=None, seed: int = 0, progress: bool = True, base=None):
        """The tokenizer trained on items x; ``base``: the tokenizer of ``self.base``."""
        config = config if config is not None else self.config_class()()
        given = {self.base: base} if self.base and base is not None else {}
        return self.part(self.trainer)(x, config, seed=seed, progress=progress, **given)

    def augment(self, items, copies: int, seed: int = 0):
        """``items`` and ``copies`` perturbed copies of each, or ``items`` alone where the
        modality has no augmentation (or ``copies`` is 0)."""
        if not copies or self.augmenter is None:
            return items
        return self.part(self.augmenter)(items, copies, seed=seed)

    def views(self, x) -> list:
        """Other views of the items ``x``, each shaped as ``x``; none where the modality has
        no viewer."""
        return [] if self.viewer is None else self.part(self.viewer)(x)

    def report(self, tokenizer, items, judge) -> dict:
        return self.part("reconstruction_report")(tokenizer, items, judge)


MODALITIES = {
    "image": Modality(
        "image",
        "load_images",
        "ImageTokenizer",
        "ImageTokenizerConfig",
        "train_image_tokenizer",
        "augment_images",
        temperature=0.7,
        viewer="seeing_views",
    ),
    "speech": Modality(
        "speech",
        "load_speech",
        "SpeechTokenizer",
        "SpeechTokenizerConfig",
        "train_speech_tokenizer",
        "augment_speech",
        temperature=0.1,
        viewer="hearing_views",
    ),
    "signal": Modality(
        "signal",
        "load_signals",
        "SignalTokenizer",
        "SignalTokenizerConfig",
        "train_signal_tokenizer",
    ),
    "points": Modality(
        "points",
        "load_points",
        "PointsTokenizer",
        "PointsTokenizerConfig",
        "train_points_tokenizer",
        temperature=0.1,
    ),
    "video": Modality(
        "video",
        "load_videos",
        "VideoTokenizer",
        "VideoTokenizerConfig",
        "train_video_tokenizer",
        base="image",  # a frame's window is coded by the image tokenizer
    ),
}


def get_modality(name: str) -> Modality:
    """Raises UnknownModelError naming the known modalities."""
    if name not in MODALITIES:
        raise UnknownModelError(f"unknown modality {name!r}; known: {', '.join(MODALITIES)}")
    return MODALITIES[name]
