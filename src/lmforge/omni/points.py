"""3-D point clouds: procedural shapes, a voxel VQ-VAE tokenizer, and a voxel-feature judge.

Data: 15 classes of point clouds, P = 512 points each, centred and scaled into the unit sphere.
Five primitives (sphere, cube, cylinder, cone, torus) are sampled uniformly on their surfaces,
stretched by a random factor in [0.7, 1] per axis, turned by a uniformly random rotation and
jittered. The ten digits are scikit-learn's 8x8 images extruded into 3-D: each point falls in an
ink pixel (chosen in proportion to its ink) and at a random depth, so an ink pixel becomes a
column of points along z; the slab gets a random depth, a small random tilt (up to 10 degrees
about each axis) and jitter. Digits come from ``lmforge.omni.image.digit_split``, so a test
shape is made from a test image.

The geometry (the primitives, the extruded digits, voxels, D2, the judge's shape features,
Chamfer) lives in ``lmforge.omni.shapes``; its public names are importable from here too.

Peer baseline: the D2 shape distribution (Osada et al. 2002, "Shape distributions": the
histogram of distances between random pairs of surface points) fed to logistic regression.

Tokenizer: voxel occupancy on a 16^3 grid and a 3-D conv VQ-VAE (van den Oord et al. 2017)
whose encoder halves the grid twice, so a shape is 4^3 = 64 codes. The VQ math (nearest code,
straight-through estimator, codebook and commitment losses, dead-code restart) and the training
loop are ``lmforge.omni.image``'s; the code vectors are l2-normalised (Yu et al. 2022), without
which this codebook collapsed to one code. The decoder predicts the shape's point density over
the voxels (a softmax, trained by cross-entropy against the empirical one), and decoding draws
the P points from it, each jittered uniformly inside its voxel (seeded: deterministic).
Simplified: the grid bounds the detail at 1/8 of the unit sphere's radius, and the points'
layout inside a voxel is lost.

Judge: hand-made features of the voxelised shape (rotation-invariant statistics of the occupied
voxels, which tell the primitives apart, and the front view, which reads the digits) and an RBF
SVC, trained on voxel-resampled, partly blurred copies of the shapes so that it judges decoded
shapes as it judges real ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lmforge.errors import ConfigError, DataError
from lmforge.omni.common import (
    Tokenizer,
    VQConfig,
    accuracy,
    check_codes,
    need_sklearn,
    one_blas_thread,
)
from lmforge.omni.image import (
    DIGIT_NAMES,
    digit_split,
    quantize,
    straight_through,
    train_vq_tokenizer,
    vq_losses,
)
from lmforge.omni.items import Items
from lmforge.omni.shapes import (
    JITTER,
    JUDGE_GRID,
    PRIMITIVES,
    chamfer,
    check_points,
    d2_histogram,
    degrade,
    extrude_digit,
    points_from_grid,
    primitive,
    shape_features,
    voxel_counts,
    voxelize,
)

__all__ = [
    "JITTER",
    "LABELS",
    "N_POINTS",
    "PRIMITIVES",
    "PointsJudge",
    "PointsTokenizer",
    "PointsTokenizerConfig",
    "VoxelVQ",
    "baseline_d2_logreg",
    "chamfer",
    "d2_histogram",
    "degrade",
    "extrude_digit",
    "load_points",
    "points_from_grid",
    "primitive",
    "reconstruction_report",
    "shape_features",
    "train_points_judge",
    "train_points_tokenizer",
    "voxel_counts",
    "voxelize",
]

LABELS = PRIMITIVES + DIGIT_NAMES
N_POINTS = 512
PRIMITIVES_PER_CLASS = {"train": 270, "test": 90}
DIGIT_COPIES = {"train": 2, "test": 1}  # shapes made from each digit image
SKLEARN_USERS = "the 3-D judge and baseline"


# ----------------------------------------------------------------------------- data


def load_points(split: str, seed: int = 0, n_points: int = N_POINTS) -> Items:
    """Procedural point clouds of the 15 classes (deterministic in ``seed`` and ``split``).

    "train": 270 shapes per primitive and 2 shapes per training digit image (about 4,200);
    "test": 90 per primitive and 1 per test digit image (about 810).

    Returns:
        Items with x (N, n_points, 3) float32 inside the unit sphere, y (N,) int64 into
        ``LABELS``, and extra {"digit": (N,) int64, the index into ``digit_split(split)``'s
        images, -1 for a primitive}.

    Raises:
        DataError: an unknown split or n_points < 8.
    """
    if split not in PRIMITIVES_PER_CLASS:
        raise DataError(f"points split {split!r} is unknown; use 'train' or 'test'")
    if n_points < 8:
        raise DataError(f"n_points must be >= 8, got {n_points}")
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    images, digits = digit_split(split, seed)
    shapes, labels, source = [], [], []
    for label, name in enumerate(PRIMITIVES):
        for _ in range(PRIMITIVES_PER_CLASS[split]):
            shapes.append(primitive(name, n_points, rng))
            labels.append(label)
            source.append(-1)
    for index in np.repeat(np.arange(len(digits)), DIGIT_COPIES[split]):
        shapes.append(extrude_digit(images[index].numpy(), n_points, rng))
        labels.append(len(PRIMITIVES) + int(digits[index]))
        source.append(int(index))
    order = rng.permutation(len(labels))
    x = torch.from_numpy(np.stack(shapes)[order]).float()
    y = torch.tensor(labels)[order]
    return Items(x, y, LABELS, {"digit": torch.tensor(source)[order]})


# ----------------------------------------------------------------------------- tokenizer


@dataclass(frozen=True)
class PointsTokenizerConfig(VQConfig):
    """The voxel VQ-VAE and its training (``VQConfig``'s settings, with its own defaults).

    ``grid``: voxels per side; the encoder halves it ``n_down`` times, so a shape has
    (grid / 2^n_down)^3 codes (at most 64). ``restart_after``: steps a code may go unused
    before it restarts at an encoder output (0: never). ``temperature``: decoding draws points
    from the predicted density raised to 1 / temperature (below 1 sharpens it).
    """

    codebook_size: int = 256
    batch_size: int = 32
    lr: float = 2e-3
    # and the 3-D VQ-VAE's own settings
    grid: int = 16
    n_down: int = 2
    temperature: float = 1.0
    n_points: int = N_POINTS

    def __post_init__(self) -> None:
        for name in ("grid", "n_points"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if self.n_down not in (1, 2, 3) or self.grid % (2**self.n_down):
            raise ConfigError(
                f"n_down must be 1, 2 or 3 and divide grid by 2^n_down; got n_down={self.n_down}"
                f", grid={self.grid}"
            )
        if self.tokens_per_item > 64:
            raise ConfigError(
                f"grid={self.grid}, n_down={self.n_down} give {self.tokens_per_item} codes per "
                "shape; at most 64 fit the decoder (raise n_down or lower grid)"
            )
        super().__post_init__()
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature!r}")

    @property
    def tokens_per_item(self) -> int:
        return (self.grid // 2**self.n_down) ** 3


class VoxelVQ(nn.Module):
    """A 3-D conv VQ-VAE: occupancy grid -> codes -> logits of the shape's point density.

    Both ends work on non-overlapping 2^3 blocks (stride-2 kernels of size 2), which keeps
    the 16^3 grid cheap on a CPU; the 3^3 convolutions at the code grid carry the context.

    Args:
        n_down: stride-2 stages; a G^3 grid gets (G / 2^n_down)^3 codes.
        channels: conv width at the code grid (half of it at the finer stages).
        code_dim: size D of each code vector.
        codebook_size: number K of codes.
    """

    def __init__(self, n_down: int, channels: int, code_dim: int, codebook_size: int) -> None:
        super().__init__()
        widths = [1] + [max(channels // 2 ** (n_down - 1 - i), 4) for i in range(n_down)]
        enc: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            enc += [nn.Conv3d(c_in, c_out, 2, stride=2), nn.ReLU()]  # (B, C, G/2, ...)
        c = widths[-1]
        enc += [nn.Conv3d(c, c, 3, padding=1), nn.ReLU(), nn.Conv3d(c, c, 3, padding=1), nn.ReLU()]
        enc += [nn.Conv3d(c, code_dim, 1)]
        self.encoder = nn.Sequential(*enc)
        self.codebook = nn.Parameter(torch.randn(codebook_size, code_dim) / math.sqrt(code_dim))
        dec: list[nn.Module] = [nn.Conv3d(code_dim, c, 3, padding=1), nn.ReLU()]
        dec += [nn.Conv3d(c, c, 3, padding=1), nn.ReLU()]
        for c_in, c_out in zip(widths[:0:-1], widths[-2::-1], strict=True):
            dec += [nn.ConvTranspose3d(c_in, c_out, 2, stride=2), nn.ReLU()]
        self.decoder = nn.Sequential(*dec[:-1])  # the last stage gives logits, no ReLU

    def encode_vectors(self, grid: Tensor) -> Tensor:
        """Occupancy (B, G, G, G) -> z_e (B, g, g, g, D), channels last, unit length."""
        return F.normalize(self.encoder(grid[:, None]).permute(0, 2, 3, 4, 1), dim=-1)

    def codes(self) -> Tensor:
        """The codebook (K, D), each entry scaled to unit length (l2-normalised codes, Yu et
        al. 2022: the nearest code is the one of largest cosine, and neither side can run
        away in scale, which collapsed this codebook to one code without it)."""
        return F.normalize(self.codebook, dim=-1)

    def decode_vectors(self, z_q: Tensor) -> Tensor:
        """z_q (B, g, g, g, D) -> density logits (B, G, G, G), a softmax over all voxels."""
        return self.decoder(z_q.permute(0, 4, 1, 2, 3))[:, 0]

    def forward(self, counts: Tensor, beta: float):
        """Points per voxel (B, G, G, G) -> (loss, codes (B, g, g, g), z_e (B, g, g, g, D)).

        The reconstruction term is the cross-entropy of the shape's empirical point
        distribution (counts / P) under the decoded density: which voxels a finite sample of
        surface points happens to hit is noise, the density behind it is the shape.
        """
        z = self.encode_vectors((counts > 0).float())
        codes, z_q = quantize(z, self.codes())
        logits = self.decode_vectors(straight_through(z, z_q)).flatten(1)  # (B, G^3)
        target = counts.flatten(1) / counts.flatten(1).sum(1, keepdim=True)
        recon = -(target * F.log_softmax(logits, dim=1)).sum(1).mean()
        codebook_loss, commitment = vq_losses(z, z_q, beta)
        return recon + codebook_loss + commitment, codes, z


class PointsTokenizer(Tokenizer):
    """The frozen 3-D tokenizer: points (P, 3) -> occupancy grid -> 64 codes (x, then y, then
    z order of the 4^3 code grid) -> point density on the grid -> P points drawn from it."""

    kind = "omni-points-tokenizer"
    config_class = PointsTokenizerConfig

    def __init__(self, config: PointsTokenizerConfig) -> None:
        super().__init__(config)
        self.net = VoxelVQ(config.n_down, config.channels, config.code_dim, config.codebook_size)

    @property
    def tokens_per_item(self) -> int:
        return self.config.tokens_per_item

    @property
    def code_grid(self) -> int:
        return self.config.grid // 2**self.config.n_down

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Points (B, P, 3) in [-1, 1] -> codes (B, tokens_per_item) int64."""
        grid = voxelize(x, self.config.grid)
        codes, _ = quantize(self.eval().net.encode_vectors(grid), self.net.codes())
        return codes.flatten(1)

    @torch.no_grad()
    def decode_grid(self, codes: Tensor) -> Tensor:
        """Codes (B, tokens_per_item) -> the point density (B, G, G, G), each summing to 1
        (sharpened by ``config.temperature``)."""
        check_codes(codes, self.tokens_per_item, self.codebook_size)
        g = self.code_grid
        z_q = self.net.codes()[codes.long()].reshape(len(codes), g, g, g, -1)
        logits = self.eval().net.decode_vectors(z_q) / self.config.temperature
        return torch.softmax(logits.flatten(1), dim=1).reshape(logits.shape)

    @torch.no_grad()
    def decode(self, codes: Tensor) -> Tensor:
        """Codes (B, tokens_per_item) -> points (B, n_points, 3) drawn from the decoded density,
        jittered inside their voxels (seeded: the same codes give the same points)."""
        generator = torch.Generator().manual_seed(0)
        return points_from_grid(self.decode_grid(codes), self.config.n_points, generator)


def train_points_tokenizer(
    x: Tensor, config: PointsTokenizerConfig, seed: int = 0, progress: bool = True
) -> PointsTokenizer:
    """Train the voxel VQ-VAE on point clouds x (N, P, 3); deterministic by ``seed``.

    Adam with a cosine learning rate; the codebook starts at encoder outputs of the first
    batch, and codes idle for ``restart_after`` steps restart until the last 10% of the steps.
    """
    grids = voxel_counts(check_points(x, "training points"), config.grid)  # (N, G, G, G)
    return train_vq_tokenizer(
        PointsTokenizer, config, grids, seed=seed, progress=progress, desc="3-D tokenizer"
    )


# ----------------------------------------------------------------------------- judge, baseline


def baseline_d2_logreg(train: Items, test: Items) -> float:
    """The issue's peer: D2 histograms of the points + logistic regression, test accuracy."""
    need_sklearn(SKLEARN_USERS)
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = [d2_histogram(check_points(s.x)).numpy() for s in (train, test)]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    with one_blas_thread():
        model.fit(features[0], train.y.numpy())
        return float(model.score(features[1], test.y.numpy()))


PROJECTION_WEIGHT = 0.5  # the view's share against the rotation-invariant statistics


class PointsJudge:
    """Standardised ``shape_features`` (the view's columns weighted by
    ``PROJECTION_WEIGHT``) -> RBF SVC -> class index."""

    def __init__(self, svc, mean: Tensor, scale: Tensor, grid: int = JUDGE_GRID) -> None:
        self.svc = svc
        self.mean = mean
        self.scale = scale
        self.grid = grid

    def features(self, x: Tensor) -> np.ndarray:
        """Points (B, P, 3) -> the SVC's inputs (B, F)."""
        return ((shape_features(check_points(x), self.grid) - self.mean) * self.scale).numpy()

    def predict(self, x: Tensor) -> Tensor:
        """Points (B, P, 3) -> (B,) int64 class indices into ``LABELS``."""
        features = self.features(x)
        with one_blas_thread():
            return torch.as_tensor(self.svc.predict(features), dtype=torch.int64)


def train_points_judge(x: Tensor, y: Tensor, seed: int = 0) -> PointsJudge:
    """Fit the judge on point clouds x (N, P, 3) and classes y (N,).

    It learns from ``degrade``d copies of the shapes, so that it judges a decoded shape (drawn
    from a voxel density) as it judges a real one; then standardisation and an SVC (RBF,
    C = 10). Deterministic: the copies and the D2 pairs come from ``seed``.
    """
    x = check_points(x, "training points")
    if y.shape != (len(x),) or len(x) == 0:
        raise DataError(f"need N > 0 shapes and N labels; got {len(x)} shapes, {tuple(y.shape)}")
    need_sklearn(SKLEARN_USERS)
    from sklearn.svm import SVC

    copies = degrade(x, torch.Generator().manual_seed(seed))
    features = shape_features(copies, JUDGE_GRID, seed)
    mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    weight = torch.ones(features.shape[1])
    weight[-((JUDGE_GRID // 2) ** 2) :] = PROJECTION_WEIGHT
    judge = PointsJudge(SVC(kernel="rbf", C=10.0, gamma="scale"), mean, weight / std)
    with one_blas_thread():
        judge.svc.fit(judge.features(copies), y.numpy())
    return judge


def reconstruction_report(tokenizer: PointsTokenizer, items: Items, judge: PointsJudge) -> dict:
    """How well the codes keep a shape.

    Returns:
        {"mse": between each real occupancy grid (the tokenizer's grid, 0/1) and the decoded
        shape's expected occupancy (the chance that a voxel gets at least one of the P points
        drawn from the decoded density), "mse_mean_item": the same for the items' mean
        occupancy grid (a trivial baseline), "chamfer": mean symmetric nearest-point distance
        between the real and the decoded points, "judge_real", "judge_reconstructed",
        "codes_used", "n"}.
    """
    x = check_points(items.x, "items")
    codes = tokenizer.encode(x)
    density = tokenizer.decode_grid(codes)  # (B, G, G, G), sums to 1
    rebuilt = tokenizer.decode(codes)
    real = voxelize(x, tokenizer.config.grid)
    expected = 1 - (1 - density) ** x.shape[1]
    return {
        "mse": float(F.mse_loss(expected, real)),
        "mse_mean_item": float(F.mse_loss(real.mean(0).expand_as(real), real)),
        "chamfer": chamfer(x, rebuilt),
        "judge_real": accuracy(judge.predict(x), items.y),
        "judge_reconstructed": accuracy(judge.predict(rebuilt), items.y),
        "codes_used": int(codes.unique().numel()),
        "n": len(items),
    }
