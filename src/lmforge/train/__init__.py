"""The one Trainer for every neural family, its schedules, and the tasks it trains on."""

from lmforge.train.trainer import TrainConfig, Trainer, TrainResult

__all__ = ["TrainConfig", "Trainer", "TrainResult"]
