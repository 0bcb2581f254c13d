"""The one Trainer for every neural family, and its schedules."""

from lmforge.train.trainer import TrainConfig, Trainer, TrainResult

__all__ = ["TrainConfig", "Trainer", "TrainResult"]
