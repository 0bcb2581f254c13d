"""Videos of the any-to-any model: moving digits, a per-frame VQ-VAE tokenizer, a judge.

Data: a scaled-down Moving MNIST (Srivastava, Mansimov and Salakhutdinov 2015): an 8x8 digit of
scikit-learn's digits set moves on a 16x16 black canvas for ``frames`` frames and bounces off
the walls (its position is reflected at the canvas edge and its velocity reversed). The digits
come from the same split as ``lmforge.omni.image.load_images``, so test videos show test
digits. Simplified from Moving MNIST: one digit, and motion along one axis in one of four
directions (left, right, up, down) at 2 or 4 pixels a frame, with every position and speed a
multiple of 2 pixels (half a code cell). The label ``direction`` is the INITIAL direction: the
start is drawn so that the first step never bounces, so frames 0 -> 1 always show it, even when
a later step bounces back. Each digit image gives ``per_digit`` videos (random start, direction,
speed), deterministic by seed: 4,320 train and 1,071 test videos by default.

Tokenizer: per-frame image codes (AnyGPT's video is frames of image tokens, here with a frame
separator the shared vocabulary inserts): the conv VQ-VAE of ``lmforge.omni.image`` with two
stride-2 stages, so each 16x16 frame is a 4x4 grid, 16 codes, and 4 frames are 64 tokens. The
quantisation math, network and training loop are imported from ``lmforge.omni.image``; the
tokenizer's folder and input checks are ``lmforge.omni.common``'s.

Judge (separate from the model under test): the digit by an RBF SVC on frames centred on their
centre of mass (MNIST's own normalisation), its decision values summed over the frames; the
direction by logistic regression on the centre-of-mass displacements between frames.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lmforge.errors import ConfigError, DataError
from lmforge.omni.common import (
    Tokenizer,
    VQConfig,
    check_codes,
    check_shape,
    need_sklearn,
)
from lmforge.omni.image import (
    DIGIT_NAMES,
    ConvVQ,
    digit_split,
    train_vq_tokenizer,
)
from lmforge.omni.items import Items

__all__ = [
    "DIRECTION_NAMES",
    "VideoJudge",
    "VideoTokenizer",
    "VideoTokenizerConfig",
    "centre_of_mass",
    "load_videos",
    "reconstruction_report",
    "train_video_judge",
    "train_video_tokenizer",
]

CANVAS = 16  # pixels per side of a frame
DIGIT = 8  # pixels per side of the moving digit
STEP = 2  # positions and speeds are multiples of this many pixels
SPEEDS = (2, 4)  # pixels per frame
DIRECTION_NAMES = ("left", "right", "up", "down")
_VELOCITY = {0: (0, -1), 1: (0, 1), 2: (-1, 0), 3: (1, 0)}  # direction -> (row, col) sign


# ----------------------------------------------------------------------------- data


def _bounce(position: int, velocity: int, top: int) -> tuple[int, int]:
    """One step on [0, top]: the position reflected at the walls, the velocity reversed."""
    position += velocity
    if position > top:
        position, velocity = 2 * top - position, -velocity
    elif position < 0:
        position, velocity = -position, -velocity
    return position, velocity


def _trajectory(rng: np.random.Generator, frames: int) -> tuple[int, list[tuple[int, int]]]:
    """A random (direction, [(row, col) of the digit's top-left corner per frame])."""
    top = CANVAS - DIGIT
    direction = int(rng.integers(len(DIRECTION_NAMES)))
    speed = int(rng.choice(SPEEDS))
    sign_row, sign_col = _VELOCITY[direction]
    lattice = np.arange(0, top + 1, STEP)
    fixed = int(rng.choice(lattice))  # the coordinate that does not move
    sign = sign_row + sign_col
    starts = [p for p in lattice if 0 <= p + sign * speed <= top]  # no bounce on step one
    position, velocity = int(rng.choice(starts)), sign * speed
    path = []
    for _ in range(frames):
        path.append((position, fixed) if sign_row else (fixed, position))
        position, velocity = _bounce(position, velocity, top)
    return direction, path


def load_videos(split: str, seed: int = 0, frames: int = 4, per_digit: int = 3) -> Items:
    """Moving digits of ``split``: x (N, frames, 16, 16) float32 in [0, 1], y the digit.

    Args:
        split: "train" or "test"; the digits come from that split of ``load_images``.
        seed: fixes the digit split and every video.
        frames: frames per video (>= 2, so that the motion shows).
        per_digit: videos made from each digit image.

    Returns:
        Items with labels "zero".."nine" and extra ``{"direction": (N,) int64}``, an index into
        ``DIRECTION_NAMES`` (kept out of ``extra``, which holds per-item fields only).
    """
    if frames < 2:
        raise ConfigError(f"frames must be >= 2 so that the motion shows, got {frames!r}")
    if per_digit < 1:
        raise ConfigError(f"per_digit must be >= 1, got {per_digit!r}")
    digits, labels = digit_split(split, seed)
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    n = len(digits) * per_digit
    x = torch.zeros(n, frames, CANVAS, CANVAS)
    directions = torch.zeros(n, dtype=torch.int64)
    for i in range(n):
        direction, path = _trajectory(rng, frames)
        directions[i] = direction
        for t, (row, col) in enumerate(path):
            x[i, t, row : row + DIGIT, col : col + DIGIT] = digits[i // per_digit]
    extra = {"direction": directions}
    return Items(x=x, y=labels.repeat_interleave(per_digit), labels=DIGIT_NAMES, extra=extra)


# ----------------------------------------------------------------------------- tokenizer


@dataclass(frozen=True)
class VideoTokenizerConfig(VQConfig):
    """The per-frame VQ-VAE (16x16 -> 4x4 codes) and its training (``VQConfig``'s settings).

    ``frames``: frames per video; tokens_per_item = frames * 16 (the decoder's budget is 64).
    """

    steps: int = 3000
    frames: int = 4

    def __post_init__(self) -> None:
        if not isinstance(self.frames, int) or self.frames < 1:
            raise ConfigError(f"frames must be an integer >= 1, got {self.frames!r}")
        super().__post_init__()


class VideoTokenizer(Tokenizer):
    """The frozen video tokenizer: (frames, 16, 16) <-> frames * 16 codes, frame by frame
    (each frame a 4x4 grid, row by row)."""

    kind = "omni-video-tokenizer"
    config_class = VideoTokenizerConfig
    size = CANVAS
    grid = 4  # codes per side of a frame

    def __init__(self, config: VideoTokenizerConfig) -> None:
        super().__init__(config)
        self.net = ConvVQ(2, config.channels, config.code_dim, config.codebook_size)

    @property
    def frames(self) -> int:
        return self.config.frames

    @property
    def tokens_per_frame(self) -> int:
        return self.grid * self.grid

    @property
    def tokens_per_item(self) -> int:
        return self.frames * self.tokens_per_frame

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Videos (B, frames, 16, 16) in [0, 1] -> codes (B, frames * 16): frame 0's 16 codes,
        then frame 1's, ..."""
        check_shape(x, (self.frames, self.size, self.size), "videos")
        codes = self.eval().net.codes(x.float().flatten(0, 1))  # (B * frames, 16)
        return codes.reshape(len(x), self.tokens_per_item)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, frames * 16) -> videos (B, frames, 16, 16) in [0, 1]."""
        check_codes(codes, self.tokens_per_item, self.codebook_size)
        per_frame = codes.long().reshape(-1, self.tokens_per_frame)  # (B * frames, 16)
        frames = self.eval().net.images(per_frame, self.grid)  # (B * frames, 16, 16)
        return frames.reshape(len(codes), self.frames, self.size, self.size)


def train_video_tokenizer(
    x: torch.Tensor, config: VideoTokenizerConfig, seed: int = 0, progress: bool = True
) -> VideoTokenizer:
    """Train the per-frame VQ-VAE on the frames of videos x (N, frames, 16, 16) in [0, 1]."""
    check_shape(x, (config.frames, CANVAS, CANVAS), "training videos")
    frames = x.float().flatten(0, 1)  # (N * frames, 16, 16); no shifts: the digits move already
    return train_vq_tokenizer(
        VideoTokenizer, config, frames, seed=seed, progress=progress, desc="video tokenizer"
    )


# ----------------------------------------------------------------------------- judge


def centre_of_mass(frames: torch.Tensor) -> torch.Tensor:
    """Frames (N, H, W) -> (N, 2) intensity-weighted (row, col); the centre for a blank one."""
    n, h, w = frames.shape
    mass = frames.sum((1, 2)).clamp_min(1e-6)  # (N,)
    rows = (frames.sum(2) * torch.arange(h)).sum(1) / mass
    cols = (frames.sum(1) * torch.arange(w)).sum(1) / mass
    centre = torch.stack([rows, cols], 1)  # (N, 2)
    blank = frames.sum((1, 2)) < 1e-6
    centre[blank] = torch.tensor([(h - 1) / 2, (w - 1) / 2])
    return centre


def _centred(frames: torch.Tensor) -> torch.Tensor:
    """Frames (N, S, S) moved by whole pixels so that the centre of mass is at the middle,
    zero filled: (N, S * S) features."""
    n, size, _ = frames.shape
    shift = ((size - 1) / 2 - centre_of_mass(frames)).round().long()  # (N, 2)
    padded = F.pad(frames, (size,) * 4)  # (N, 3S, 3S)
    rows = (size - shift[:, :1]) + torch.arange(size)  # (N, S)
    cols = (size - shift[:, 1:]) + torch.arange(size)
    batch = torch.arange(n)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]].reshape(n, -1)


def _motion(videos: torch.Tensor) -> torch.Tensor:
    """Videos (N, T, H, W) -> (N, 2 (T - 1)) centre-of-mass steps between frames."""
    com = centre_of_mass(videos.flatten(0, 1)).reshape(len(videos), -1, 2)  # (N, T, 2)
    return (com[:, 1:] - com[:, :-1]).flatten(1)


class VideoJudge:
    """Digit and direction of moving-digit videos (N, T, 16, 16), from two sklearn models."""

    def __init__(self, digit_svc, direction_model, frames: int) -> None:
        self.digit_svc = digit_svc
        self.direction_model = direction_model
        self.frames = frames

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Videos (N, T, 16, 16) -> (N,) int64 digits: SVC decision values summed over frames."""
        check_shape(x, (self.frames, CANVAS, CANVAS), "videos")
        feats = _centred(x.detach().float().flatten(0, 1)).numpy()  # (N * T, 256)
        scores = torch.as_tensor(self.digit_svc.decision_function(feats))  # (N * T, 10)
        return scores.reshape(len(x), self.frames, -1).sum(1).argmax(1)

    def predict_direction(self, x: torch.Tensor) -> torch.Tensor:
        """Videos (N, T, 16, 16) -> (N,) int64 index into DIRECTION_NAMES (the initial one)."""
        check_shape(x, (self.frames, CANVAS, CANVAS), "videos")
        pred = self.direction_model.predict(_motion(x.detach().float()).numpy())
        return torch.as_tensor(pred, dtype=torch.int64)


def train_video_judge(
    x: torch.Tensor, y: torch.Tensor, direction: torch.Tensor, seed: int = 0
) -> VideoJudge:
    """Fit the judge on videos x (N, T, 16, 16), digits y (N,) and directions (N,).

    The digit SVC (RBF, C=10) learns from every video's first frame, centred on its centre of
    mass; the direction model is a logistic regression on centre-of-mass steps. Deterministic.
    """
    frames = x.shape[1] if torch.is_tensor(x) and x.dim() == 4 else 4
    check_shape(x, (frames, CANVAS, CANVAS), "videos")
    if not len(x) == len(y) == len(direction):
        raise DataError(f"{len(x)} videos need as many digits and directions")
    need_sklearn("the omni video judge")
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    svc = SVC(kernel="rbf", C=10.0, gamma="scale", random_state=seed)
    svc.fit(_centred(x[:, 0].float()).numpy(), y.numpy())
    logistic = LogisticRegression(C=10.0, max_iter=2000, random_state=seed)
    logistic.fit(_motion(x.float()).numpy(), direction.numpy())
    return VideoJudge(svc, logistic, frames)


def reconstruction_report(tokenizer: VideoTokenizer, items: Items, judge: VideoJudge) -> dict:
    """MSE of encode -> decode and the judge's accuracy on real and reconstructed videos:
    ``judge_*`` counts a video right when both its digit and its direction are right;
    ``digit_*`` and ``direction_*`` count each alone."""
    t0 = time.perf_counter()
    recon = tokenizer.decode(tokenizer.encode(items.x))
    seconds = time.perf_counter() - t0
    direction = items.extra["direction"]
    report = {
        "mse": float(F.mse_loss(recon, items.x)),
        "mse_mean_video": float(F.mse_loss(items.x.mean(0).expand_as(items.x), items.x)),
    }
    for name, videos in (("real", items.x), ("reconstructed", recon)):
        digit_ok = judge.predict(videos) == items.y
        direction_ok = judge.predict_direction(videos) == direction
        report[f"judge_{name}"] = float((digit_ok & direction_ok).float().mean())
        report[f"digit_{name}"] = float(digit_ok.float().mean())
        report[f"direction_{name}"] = float(direction_ok.float().mean())
    report["seconds"] = seconds
    report["n"] = len(items)
    return report
