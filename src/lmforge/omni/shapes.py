"""Procedural 3-D geometry under the points modality: shapes, voxels, D2 and shape features.

What ``lmforge.omni.points`` builds its data, tokenizer and judge on, with no model in it:
* shapes as (n, 3) point clouds, centred and scaled into the unit sphere: five primitives
  (``primitive``: sphere, cube, cylinder, cone, torus sampled uniformly on their surfaces,
  stretched per axis, turned by a uniformly random rotation (Shoemake 1992), jittered) and 8x8
  digit images extruded into slabs (``extrude_digit``);
* voxels: points per cell of a grid over [-1, 1]^3 (``voxel_counts``, ``voxelize``) and points
  drawn back from a grid's weights (``points_from_grid``);
* the D2 shape distribution (Osada et al. 2002, "Shape distributions", ``d2_histogram``);
* ``shape_features``: rotation-invariant statistics of the occupied voxels and the front view,
  the judge's inputs; ``degrade``: what a voxel tokenizer does to a shape;
* ``chamfer``: the symmetric Chamfer distance between point sets.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from lmforge.errors import DataError

__all__ = [
    "JITTER",
    "JUDGE_GRID",
    "PRIMITIVES",
    "chamfer",
    "check_points",
    "d2_histogram",
    "degrade",
    "extrude_digit",
    "points_from_grid",
    "primitive",
    "shape_features",
    "voxel_counts",
    "voxelize",
]

PRIMITIVES = ("sphere", "cube", "cylinder", "cone", "torus")
STRETCH = (0.7, 1.0)  # per-axis scale of a primitive
JITTER = 0.01  # Gaussian noise on every point, in unit-sphere units
INK = 0.25  # a pixel is ink from this value (pixel / 16) up
MAX_TILT = math.radians(10)  # largest rotation of a digit slab about each axis
JUDGE_GRID = 16  # voxels per side in shape_features and degrade


# ----------------------------------------------------------------------------- shapes


def _sphere(n: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal((n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _cube(n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform on the surface of [-1, 1]^3: a random face (all equal in area), a random spot."""
    p = rng.uniform(-1, 1, (n, 3))
    axis = rng.integers(0, 3, n)
    p[np.arange(n), axis] = rng.choice([-1.0, 1.0], n)
    return p


def _disk(n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform on the unit disk, (n, 2): radius sqrt(u) makes the density even."""
    r, a = np.sqrt(rng.random(n)), rng.uniform(0, 2 * math.pi, n)
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


def _cylinder(n: int, rng: np.random.Generator) -> np.ndarray:
    """Radius 1, z in [-1, 1]: the side (area 4 pi) or a cap (2 pi in all)."""
    a, z = rng.uniform(0, 2 * math.pi, n), rng.uniform(-1, 1, n)
    side = np.stack([np.cos(a), np.sin(a), z], axis=1)
    cap = np.concatenate([_disk(n, rng), rng.choice([-1.0, 1.0], (n, 1))], axis=1)
    return np.where((rng.random(n) < 2 / 3)[:, None], side, cap)


def _cone(n: int, rng: np.random.Generator) -> np.ndarray:
    """Base radius 1 at z = -1, apex at z = 1: the side (area pi sqrt 5) or the base (pi)."""
    r, a = np.sqrt(rng.random(n)), rng.uniform(0, 2 * math.pi, n)  # side density grows with r
    side = np.stack([r * np.cos(a), r * np.sin(a), 1 - 2 * r], axis=1)
    base = np.concatenate([_disk(n, rng), -np.ones((n, 1))], axis=1)
    return np.where((rng.random(n) < math.sqrt(5) / (math.sqrt(5) + 1))[:, None], side, base)


def _torus(n: int, rng: np.random.Generator, tube: float = 0.35) -> np.ndarray:
    """Ring radius 1, tube radius ``tube``; the tube angle is drawn by rejection, since the
    surface density grows with the distance 1 + tube cos(t) from the axis."""
    t = rng.uniform(0, 2 * math.pi, 4 * n)
    keep = rng.random(4 * n) * (1 + tube) < 1 + tube * np.cos(t)
    t = t[keep][:n]  # about 3n are kept, so n are always there
    a = rng.uniform(0, 2 * math.pi, n)
    ring = 1 + tube * np.cos(t)
    return np.stack([ring * np.cos(a), ring * np.sin(a), tube * np.sin(t)], axis=1)


def _rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation, from a random unit quaternion (Shoemake 1992)."""
    q = rng.standard_normal(4)  # a Gaussian 4-vector's direction is uniform on S^3
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _tilt(rng: np.random.Generator) -> np.ndarray:
    """A small rotation: up to ``MAX_TILT`` about x, then y, then z."""
    out = np.eye(3)
    for axis in range(3):
        a = rng.uniform(-MAX_TILT, MAX_TILT)
        c, s = math.cos(a), math.sin(a)
        i, j = [k for k in range(3) if k != axis]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        out = r @ out
    return out


def _normalise(p: np.ndarray) -> np.ndarray:
    """Centred on the centroid and scaled so the farthest point is at distance 1."""
    p = p - p.mean(0)
    return p / max(np.linalg.norm(p, axis=1).max(), 1e-8)


_SAMPLERS = {"sphere": _sphere, "cube": _cube, "cylinder": _cylinder, "cone": _cone}


def primitive(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """One primitive ``name``: (n, 3) stretched, rotated, normalised and jittered."""
    if name == "torus":
        p = _torus(n, rng, tube=rng.uniform(0.25, 0.45))
    else:
        p = _SAMPLERS[name](n, rng)
    p = (p * rng.uniform(*STRETCH, 3)) @ _rotation(rng).T
    return _normalise(p) + JITTER * rng.standard_normal((n, 3))


def extrude_digit(image: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """An 8x8 digit (values in [0, 1]) as (n, 3) points: ink pixels become columns along z.

    Each point picks an ink pixel in proportion to its value, a spot inside it, and a depth in
    a slab 1.5..3 pixels thick; the slab is then tilted, normalised and jittered.
    """
    ink = np.where(image >= INK, image, 0.0).ravel()
    if ink.sum() == 0:  # an empty image (never in the shipped digits): use every pixel
        ink = np.ones(64)
    pick = rng.choice(64, n, p=ink / ink.sum())
    row, col = np.divmod(pick, 8)
    x = col + rng.random(n) - 4.0  # pixel spot, x to the right
    y = 4.0 - row - rng.random(n)  # rows count down, y up
    z = rng.uniform(-0.5, 0.5, n) * rng.uniform(1.5, 3.0)
    p = np.stack([x, y, z], axis=1) @ _tilt(rng).T
    return _normalise(p) + JITTER * rng.standard_normal((n, 3))


# ----------------------------------------------------------------------------- voxels


def check_points(x, what: str = "points") -> Tensor:
    """``x`` as (B, P, 3) float32, or a DataError naming the shape."""
    if not torch.is_tensor(x) or x.dim() != 3 or x.shape[2] != 3 or x.shape[1] == 0:
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise DataError(f"{what} must be a (B, P, 3) tensor with P >= 1, got {shape}")
    if not torch.isfinite(x).all():
        raise DataError(f"{what} contain NaN or infinite coordinates; give finite points")
    return x.float()


def voxel_counts(points: Tensor, grid: int) -> Tensor:
    """Points per cell of a grid^3 lattice over [-1, 1]^3: (B, P, 3) -> (B, G, G, G) float32.

    Cell (i, j, k) holds x in [-1 + 2i/G, -1 + 2(i+1)/G), and likewise y, z; points outside
    the cube fall in the nearest border cell.
    """
    points = check_points(points)
    cell = ((points + 1) / 2 * grid).floor().long().clamp(0, grid - 1)  # (B, P, 3)
    flat = (cell[..., 0] * grid + cell[..., 1]) * grid + cell[..., 2]  # (B, P)
    counts = torch.zeros(len(points), grid**3).scatter_add_(1, flat, torch.ones(flat.shape))
    return counts.reshape(-1, grid, grid, grid)


def voxelize(points: Tensor, grid: int) -> Tensor:
    """Occupancy of a grid^3 lattice over [-1, 1]^3 (cells as in ``voxel_counts``):
    (B, P, 3) -> (B, G, G, G) float32 in {0, 1}."""
    return (voxel_counts(points, grid) > 0).float()


def points_from_grid(weight: Tensor, n_points: int, generator: torch.Generator) -> Tensor:
    """Points drawn from the voxels in proportion to ``weight``, each jittered uniformly inside
    its voxel (the inverse of ``voxel_counts``, up to sampling).

    Args:
        weight: (B, G, G, G) non-negative: probabilities, counts or a 0/1 occupancy grid.
        n_points: points per shape.
        generator: the voxel draws and the jitter.

    Returns:
        (B, n_points, 3) float32 in [-1, 1].
    """
    batch, grid = weight.shape[0], weight.shape[1]
    flat_weight = weight.reshape(batch, -1).float().clamp_min(0)  # (B, G^3)
    flat_weight[flat_weight.sum(1) == 0] = 1.0  # an empty grid: anywhere
    flat = torch.multinomial(flat_weight, n_points, replacement=True, generator=generator)
    cell = torch.stack([flat // (grid * grid), (flat // grid) % grid, flat % grid], dim=-1)
    spot = torch.rand(cell.shape, generator=generator)
    return (cell.float() + spot) / grid * 2 - 1  # (B, P, 3)


# ----------------------------------------------------------------------------- D2, features


def d2_histogram(
    points: Tensor, bins: int = 32, pairs: int = 2048, seed: int = 0, weights: Tensor | None = None
) -> Tensor:
    """The D2 shape distribution (Osada et al. 2002, section 3): a normalised histogram of the
    distances between random pairs of points, over [0, 2] (the unit sphere's diameter).

    Args:
        points: (B, P, 3).
        bins: histogram bins.
        pairs: random pairs per shape.
        seed: which pairs (the same seed gives the same features).
        weights: optional (B, P) non-negative weights to draw the points by (uniform if None).

    Returns:
        (B, bins) float32, each row summing to 1.
    """
    batch, n = points.shape[:2]
    generator = torch.Generator().manual_seed(seed)
    if weights is None:
        pick = torch.randint(n, (batch, 2 * pairs), generator=generator)
    else:
        pick = torch.multinomial(weights.float(), 2 * pairs, replacement=True, generator=generator)
    chosen = torch.gather(points, 1, pick[..., None].expand(-1, -1, 3))  # (B, 2 pairs, 3)
    dist = (chosen[:, :pairs] - chosen[:, pairs:]).norm(dim=-1)  # (B, pairs)
    index = (dist / 2 * bins).long().clamp(0, bins - 1)
    hist = torch.zeros(batch, bins).scatter_add_(1, index, torch.ones_like(dist))
    return hist / pairs


def _voxel_statistics(occupancy: Tensor, seed: int) -> Tensor:
    """Rotation-invariant statistics of the occupied voxels of (B, G, G, G) grids.

    A D2 histogram (32 bins), distances to the centroid (16 bins), the covariance's
    eigenvalues over their sum (3), and the absolute coordinates in the principal-axes frame:
    per axis (3 x 8 bins) and jointly (4^3 bins).

    Returns:
        (B, 119) float32.
    """
    batch, grid = occupancy.shape[:2]
    axis = (torch.arange(grid) + 0.5) / grid * 2 - 1
    centres = torch.cartesian_prod(axis, axis, axis)  # (G^3, 3), the order of voxelize
    weight = occupancy.flatten(1)  # (B, G^3)
    mass = weight.sum(1, keepdim=True).clamp_min(1)  # (B, 1)

    def histogram(values: Tensor, bins: int) -> Tensor:  # values in [0, 1): (B, G^3)
        index = (values * bins).long().clamp(0, bins - 1)
        return torch.zeros(batch, bins).scatter_add_(1, index, weight) / mass

    d2 = d2_histogram(centres.expand(batch, -1, -1), seed=seed, weights=weight)
    offset = centres[None] - (weight @ centres / mass)[:, None]  # (B, G^3, 3)
    cov = torch.einsum("bn,bni,bnj->bij", weight, offset, offset) / mass[..., None]
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)  # ascending
    frame = torch.einsum("bni,bij->bnj", offset, eigenvectors).abs() / 2  # (B, G^3, 3)
    cube = (frame * 4).long().clamp(0, 3)
    return torch.cat(
        [
            d2,
            histogram(offset.norm(dim=-1) / 2, 16),
            eigenvalues / eigenvalues.sum(1, keepdim=True).clamp_min(1e-8),
            *(histogram(frame[..., a], 8) for a in range(3)),
            histogram((cube[..., 0] * 16 + cube[..., 1] * 4 + cube[..., 2]) / 64, 64),
        ],
        dim=1,
    )


def shape_features(points: Tensor, grid: int = JUDGE_GRID, seed: int = 0) -> Tensor:
    """The judge's features of each shape, all read from its voxel occupancy.

    The rotation-invariant ``_voxel_statistics`` (which tell the primitives apart), then the
    front view: occupancy projected along z (any voxel in the column) and pooled to
    (grid / 2)^2 (which reads the digits, extruded along z).

    Args:
        points: (B, P, 3) in [-1, 1].
        grid: voxels per side (even).
        seed: the D2 pairs.

    Returns:
        (B, 119 + (grid / 2)^2) float32.
    """
    occupancy = voxelize(points, grid)  # (B, G, G, G)
    view = F.avg_pool2d(occupancy.amax(3)[:, None], 2).flatten(1)  # (B, (G/2)^2)
    return torch.cat([_voxel_statistics(occupancy, seed), view], dim=1)


def degrade(points: Tensor, generator: torch.Generator, grid: int = JUDGE_GRID) -> Tensor:
    """What a voxel tokenizer does to shapes (B, P, 3): the points are redrawn from their
    voxels' counts, blurred by a random share (0..1) of a 3^3 box filter."""
    counts = voxel_counts(points, grid)  # (B, G, G, G)
    blurred = F.avg_pool3d(counts[:, None], 3, stride=1, padding=1)[:, 0]
    share = torch.rand(len(points), 1, 1, 1, generator=generator)
    return points_from_grid((1 - share) * counts + share * blurred, points.shape[1], generator)


def chamfer(a: Tensor, b: Tensor, chunk: int = 256) -> float:
    """Mean symmetric Chamfer distance (mean nearest-neighbour distance, both ways, halved)
    between point sets a (B, P, 3) and b (B, Q, 3)."""
    total = 0.0
    for start in range(0, len(a), chunk):
        dist = torch.cdist(a[start : start + chunk], b[start : start + chunk])  # (b, P, Q)
        total += float(dist.min(2).values.mean(1).sum() + dist.min(1).values.mean(1).sum()) / 2
    return total / max(len(a), 1)
