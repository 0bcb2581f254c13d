"""The judges and peers of ``lmforge omni eval``: one separately trained classifier per modality
(never the model under test), answering in label names as the assistant does, and the baseline
the issue names for each task, measured in the same run."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lmforge.omni.items import Items
from lmforge.omni.modalities import MODALITIES
from lmforge.omni.tasks import TASKS, item_names

__all__ = ["NamedJudge", "baseline_of", "judge_of"]


@dataclass
class NamedJudge:
    """A modality's classifier, naming what it sees ("seven"; a video: "seven moving left")."""

    modality: str
    judge: object
    labels: tuple[str, ...]
    directions: tuple[str, ...] = ()

    def names(self, x: torch.Tensor) -> list[str]:
        if self.modality == "video":
            digits, moves = self.judge.predict(x), self.judge.predict_direction(x)
            return [
                f"{self.labels[d]} moving {self.directions[m]}"
                for d, m in zip(digits.tolist(), moves.tolist(), strict=False)
            ]
        return [self.labels[i] for i in self.judge.predict(x).tolist()]

    def accuracy(self, items: Items, gold: list[str]) -> float:
        said = self.names(items.x)
        return round(sum(a == b for a, b in zip(said, gold, strict=False)) / len(gold), 4)


def judge_of(modality: str, train: Items, seed: int = 0) -> NamedJudge:
    """The judge of ``modality`` trained on its real training items."""
    part = MODALITIES[modality].part
    if modality == "video":
        judge = part("train_video_judge")(train.x, train.y, train.extra["direction"], seed=seed)
        return NamedJudge(modality, judge, train.labels, part("DIRECTION_NAMES"))
    judge = part(f"train_{modality}_judge")(train.x, train.y, seed=seed)
    return NamedJudge(modality, judge, train.labels)


def baseline_of(task: str, train: dict, test: dict, judges: dict, seed: int = 0, views=()):
    """The peer figure of ``task`` on the held-out items (see the module docstring of
    ``lmforge.omni.evaluate``), and the row's other peer fields: for speech -> text its figure
    per held-out voice (``baseline_per_voice``) and, given ``views`` of the test words, the
    same peer on them (``baseline_views``); else none.
    """
    given, answered = TASKS[task]
    if task == "speech->text":
        speech = MODALITIES["speech"].part
        model = speech("fit_mfcc_logreg")(train["speech"])
        peer = speech("peer_scores")(model, test["speech"])
        extra = {"baseline_per_voice": {v: round(x, 4) for v, x in peer["voices"].items()}}
        if views:
            heard = speech("peer_scores")(model, test["speech"], views)
            extra["baseline_views"] = round(heard["mean"], 4)
        return round(float(peer["mean"]), 4), extra
    if task == "signal->text":
        return _peer("signal", "baseline_mlp", train["signal"], test["signal"]), {}
    if task == "3d->text":
        return _peer("points", "baseline_d2_logreg", train["points"], test["points"]), {}
    modality = given if answered == "text" else answered
    real = test[modality]
    if answered == "speech":  # a generated word imitates the training voices: judge those
        real = MODALITIES["speech"].load("valid", seed=seed)
    return judges[modality].accuracy(real, item_names(modality, real)), {}


def _peer(modality: str, name: str, train: Items, test: Items) -> float:
    return round(float(MODALITIES[modality].part(name)(train, test)), 4)
