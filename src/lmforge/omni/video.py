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

Tokenizer: per-frame image codes, as AnyGPT's video is frames of image tokens (here with a frame
separator the shared vocabulary inserts). Each frame is split into what and where, as in Attend,
Infer, Repeat (Eslami et al. 2016):
- what: the 8x8 window centred on the frame's ink (its bounding box), coded by the image
  tokenizer of ``lmforge.omni.image`` (``VideoTokenizer.from_image``; ``image_codes``), 16
  codes. A digit gives the same codes in every frame, and they are the codes the model reads
  and writes for images: the shared vocabulary writes them with the image's ids.
- where: two more codes, in the first frame the window's corner (row, column), in each later
  frame its move from the frame before, as a video codec's motion vectors, so that a direction
  is one code and not a comparison of two.
So a frame is 18 codes and 4 frames are 72 tokens. A window tokenizer can also train a VQ-VAE of
its own on the windows (``train_video_tokenizer`` without an image tokenizer, as the tests do).

``window=False`` codes the whole 16x16 frame with a VQ-VAE of two stride-2 stages, 16 codes a
frame, as the first version did: its decoder had to find the digit in codes that change with
its position, and named neither the digit nor the direction, 0.06 where chance is 0.025. Measured
on the way (image and video tasks, 600 steps): corners and a VQ-VAE of the video's own, 0.57
of the digits and no direction; moves instead of corners, 0.59 and every direction.

Judge (separate from the model under test): the digit by an RBF SVC on frames centred on their
centre of mass (MNIST's own normalisation), its decision values summed over the frames; the
direction by logistic regression on the centre-of-mass displacements between frames.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields

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
    "cut_windows",
    "ink_corner",
    "paste_windows",
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
INK = 0.05  # a pixel brighter than this is ink (digits' grey levels are multiples of 1/16)
_MOVES = 2 * CANVAS - 1  # a corner's coordinate or its move, -15..15
_WHERE = torch.tensor([CANVAS - 1, CANVAS - 1 + _MOVES])  # value -> code offset: row, column
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
    """The per-frame VQ-VAE and its training (``VQConfig``'s settings).

    ``frames``: frames per video. ``window``: code each frame as the 8x8 window on its ink and
    where that window is (18 codes), rather than the whole frame (16 codes). ``image_codes``:
    the window's codes are the image tokenizer's (``VideoTokenizer.from_image``).
    """

    steps: int = 3000
    frames: int = 4
    window: bool = True
    image_codes: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.frames, int) or self.frames < 1:
            raise ConfigError(f"frames must be an integer >= 1, got {self.frames!r}")
        for name in ("window", "image_codes"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.image_codes and not self.window:
            raise ConfigError("image_codes needs window: image codes are of 8x8 windows")
        super().__post_init__()


class VideoTokenizer(Tokenizer):
    """The frozen video tokenizer: (frames, 16, 16) <-> frames x tokens_per_frame codes, frame by
    frame. A windowed frame is [row, column, its window's 4x4 grid row by row]: the grid's codes
    are [0, K) (K the VQ codebook); row and column are the window's corner in the first frame
    and its move since the frame before in the others, a value v in -15..15 coded K + 15 + v
    (row) and K + 46 + v (column). An unwindowed frame is the 4x4 grid of the whole frame."""

    kind = "omni-video-tokenizer"
    config_class = VideoTokenizerConfig
    legacy = {"window": False, "image_codes": False}  # folders written before windows
    size = CANVAS
    grid = 4  # codes per side of a frame (or of its window)

    def __init__(self, config: VideoTokenizerConfig) -> None:
        super().__init__(config)
        stages = 1 if config.window else 2  # 8x8 window or 16x16 frame -> 4x4 codes
        self.net = ConvVQ(stages, config.channels, config.code_dim, config.codebook_size)

    @classmethod
    def from_image(cls, image, frames: int = 4) -> VideoTokenizer:
        """A window tokenizer whose windows are coded by the image tokenizer ``image`` (a copy
        of its VQ-VAE: the folder stands alone)."""
        vq = {f.name: getattr(image.config, f.name) for f in fields(VQConfig)}
        tokenizer = cls(VideoTokenizerConfig(**vq, frames=frames, window=True, image_codes=True))
        tokenizer.net.load_state_dict(image.net.state_dict())
        return tokenizer.eval()

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size + (2 * _MOVES if self.config.window else 0)

    @property
    def shared(self) -> tuple[str, int] | None:
        """("image", K) when the first K codes are the image tokenizer's, else None."""
        return ("image", self.config.codebook_size) if self.config.image_codes else None

    @property
    def frames(self) -> int:
        return self.config.frames

    @property
    def tokens_per_frame(self) -> int:
        return self.grid * self.grid + (2 if self.config.window else 0)

    @property
    def tokens_per_item(self) -> int:
        return self.frames * self.tokens_per_frame

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Videos (B, frames, 16, 16) in [0, 1] -> codes (B, frames * tokens_per_frame): frame
        0's codes, then frame 1's, ..."""
        check_shape(x, (self.frames, self.size, self.size), "videos")
        frames = x.float().flatten(0, 1)  # (B * frames, 16, 16)
        if not self.config.window:
            return self.eval().net.codes(frames).reshape(len(x), self.tokens_per_item)
        corner = ink_corner(frames)  # (B * frames, 2)
        grid = self.eval().net.codes(cut_windows(frames, corner))  # (B * frames, 16)
        corner = corner.reshape(len(x), self.frames, 2)
        moves = corner.diff(dim=1, prepend=torch.zeros_like(corner[:, :1]))
        moves = moves.flatten(0, 1).clamp(1 - CANVAS, CANVAS - 1)  # a frame gone blank: <= 15
        where = moves + _WHERE + self.config.codebook_size
        return torch.cat([where, grid], 1).reshape(len(x), self.tokens_per_item)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, frames * tokens_per_frame) -> videos (B, frames, 16, 16) in [0, 1]. Where a
        generated code is out of its place (a grid code for a move, or the other way), the
        nearest valid one is read."""
        check_codes(codes, self.tokens_per_item, self.codebook_size)
        per_frame = codes.long().reshape(-1, self.tokens_per_frame)  # (B * frames, codes)
        if not self.config.window:
            frames = self.eval().net.images(per_frame, self.grid)
        else:
            k = self.config.codebook_size
            moves = (per_frame[:, :2] - k - _WHERE).clamp(1 - CANVAS, CANVAS - 1)
            corner = moves.reshape(len(codes), self.frames, 2).cumsum(1).flatten(0, 1)
            windows = self.eval().net.images(per_frame[:, 2:].clamp(max=k - 1), self.grid)
            frames = paste_windows(windows, corner)
        return frames.reshape(len(codes), self.frames, self.size, self.size)


def ink_corner(frames: torch.Tensor) -> torch.Tensor:
    """Frames (N, 16, 16) -> (N, 2) int64 (row, col) of the corner of the 8x8 window centred on
    the bounding box of their ink (pixels above ``INK``), in -3..12; a blank frame's window is
    the canvas's centre."""
    ink = frames > INK
    corners = []
    for lines in (ink.any(2), ink.any(1)):  # (N, 16) rows, then columns, that hold ink
        first = lines.int().argmax(1)
        last = CANVAS - 1 - lines.flip(1).int().argmax(1)
        corners.append(first - (DIGIT - (last - first + 1)).div(2, rounding_mode="floor"))
    corner = torch.stack(corners, 1)
    corner[~ink.flatten(1).any(1)] = (CANVAS - DIGIT) // 2
    return corner


def cut_windows(frames: torch.Tensor, corner: torch.Tensor) -> torch.Tensor:
    """The 8x8 windows of frames (N, 16, 16) at ``corner`` (N, 2), zero past the edges."""
    padded = F.pad(frames, (DIGIT,) * 4)  # (N, 32, 32)
    rows, cols = _window_index(corner)
    return padded[torch.arange(len(frames))[:, None, None], rows, cols]


def paste_windows(windows: torch.Tensor, corner: torch.Tensor) -> torch.Tensor:
    """Black 16x16 frames with the 8x8 ``windows`` (N, 8, 8) at ``corner`` (N, 2), cut at the
    edges: the inverse of ``cut_windows`` for frames whose ink fits in their window."""
    padded = torch.zeros(len(windows), CANVAS + 2 * DIGIT, CANVAS + 2 * DIGIT)
    rows, cols = _window_index(corner)
    padded[torch.arange(len(windows))[:, None, None], rows, cols] = windows
    return padded[:, DIGIT:-DIGIT, DIGIT:-DIGIT]


def _window_index(corner: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row (N, 8, 1) and column (N, 1, 8) indices of windows in a frame padded by 8."""
    steps = torch.arange(DIGIT) + DIGIT
    corner = corner.clamp(-DIGIT, CANVAS)
    return (corner[:, :1] + steps)[:, :, None], (corner[:, 1:] + steps)[:, None, :]


def train_video_tokenizer(
    x: torch.Tensor,
    config: VideoTokenizerConfig,
    seed: int = 0,
    progress: bool = True,
    image=None,
) -> VideoTokenizer:
    """The video tokenizer for videos x (N, frames, 16, 16) in [0, 1]: with ``image`` (an
    ``ImageTokenizer``) and ``config.window``, one that codes its windows with it (nothing to
    train); otherwise a VQ-VAE trained on the frames (on their windows when ``config.window``).
    """
    check_shape(x, (config.frames, CANVAS, CANVAS), "training videos")
    if config.window and image is not None:
        return VideoTokenizer.from_image(image, config.frames)
    frames = x.float().flatten(0, 1)  # (N * frames, 16, 16); no shifts: the digits move already
    if config.window:
        frames = cut_windows(frames, ink_corner(frames)).unique(dim=0)  # a video's repeat
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
