"""The one Trainer for every neural family, its schedules, and the tasks it trains on."""

from lmforge.train.config import TrainConfig, TrainResult
from lmforge.train.trainer import Trainer

__all__ = ["TrainConfig", "Trainer", "TrainResult"]
