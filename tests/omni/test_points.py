"""Tests for lmforge.omni.points: the shapes, voxels, D2, the voxel VQ-VAE and the judge."""

import math

import numpy as np
import pytest
import torch

from lmforge.errors import CheckpointError, ConfigError, DataError
from lmforge.folders import save_part
from lmforge.omni.points import (
    JITTER,
    LABELS,
    PRIMITIVES,
    PointsTokenizer,
    PointsTokenizerConfig,
    baseline_d2_logreg,
    chamfer,
    d2_histogram,
    load_points,
    points_from_grid,
    primitive,
    reconstruction_report,
    train_points_judge,
    train_points_tokenizer,
    voxel_counts,
    voxelize,
)

pytest.importorskip("sklearn", reason="the 3-D data uses scikit-learn's digits")

TINY = PointsTokenizerConfig(grid=8, n_down=1, codebook_size=32, channels=16, steps=300)


@pytest.fixture(scope="module")
def shapes():
    """The test split (807 shapes): small enough to serve as training data here."""
    return load_points("test")


@pytest.fixture(scope="module")
def halves(shapes):
    return shapes.subset(slice(0, 500)), shapes.subset(slice(500, None))


@pytest.fixture(scope="module")
def tokenizer(halves):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures start before the one-thread fixture
    yield train_points_tokenizer(halves[0].x, TINY, progress=False)
    torch.set_num_threads(threads)


def test_load_points_shapes_labels_and_sources(shapes):
    from lmforge.omni.image import digit_split

    assert shapes.labels == LABELS and len(LABELS) == 15
    assert shapes.x.shape == (len(shapes), 512, 3) and shapes.x.dtype == torch.float32
    counts = torch.bincount(shapes.y, minlength=15)
    assert counts[:5].tolist() == [90] * 5  # the primitives
    images, digits = digit_split("test")
    assert counts[5:].tolist() == torch.bincount(digits, minlength=10).tolist()
    source = shapes.extra["digit"]
    assert (source[shapes.y < 5] == -1).all()
    is_digit = shapes.y >= 5
    assert torch.equal(digits[source[is_digit]] + 5, shapes.y[is_digit])
    # inside the unit sphere, up to the jitter
    assert float(shapes.x.norm(dim=-1).max()) < 1 + 5 * JITTER


def test_load_points_is_deterministic_by_seed(shapes):
    again = load_points("test")
    assert torch.equal(again.x, shapes.x) and torch.equal(again.y, shapes.y)
    assert not torch.equal(load_points("test", seed=1).x[:10], shapes.x[:10])


def test_load_points_rejects_bad_arguments():
    with pytest.raises(DataError, match="split 'valid'"):
        load_points("valid")
    with pytest.raises(DataError, match="n_points"):
        load_points("test", n_points=2)


@pytest.mark.parametrize("name", PRIMITIVES)
def test_primitives_are_centred_and_reach_the_unit_sphere(name):
    points = primitive(name, 2000, np.random.default_rng(0))
    assert points.shape == (2000, 3)
    assert np.abs(points.mean(0)).max() < 5 * JITTER
    assert abs(np.linalg.norm(points, axis=1).max() - 1) < 5 * JITTER


def test_surface_samplers_put_every_point_on_the_surface():
    from lmforge.omni.shapes import _cone, _cube, _cylinder, _sphere, _torus

    rng = np.random.default_rng(0)
    assert np.allclose(np.linalg.norm(_sphere(500, rng), axis=1), 1)
    assert np.allclose(np.abs(_cube(500, rng)).max(1), 1)  # on a face of [-1, 1]^3
    p = _cylinder(500, rng)
    radius = np.linalg.norm(p[:, :2], axis=1)
    assert np.all(np.isclose(radius, 1) | (np.isclose(np.abs(p[:, 2]), 1) & (radius <= 1)))
    p = _cone(500, rng)
    radius = np.linalg.norm(p[:, :2], axis=1)
    # the side: radius falls linearly from 1 at z = -1 to 0 at z = 1; or the base disk
    assert np.all(np.isclose(radius, (1 - p[:, 2]) / 2) | np.isclose(p[:, 2], -1))
    p = _torus(500, rng, tube=0.3)
    ring = np.linalg.norm(p[:, :2], axis=1)
    assert np.allclose(np.hypot(ring - 1, p[:, 2]), 0.3)  # distance to the ring's circle


def test_voxelize_golden_cells():
    points = torch.tensor([[[-1.0, -1.0, -1.0], [0.99, 0.0, -0.01], [0.99, 0.01, -0.2]]])
    # grid 2: cells split at 0; x 0.99 -> 1, y 0.0 -> 1, z -0.01 -> 0, twice
    counts = voxel_counts(points, 2)
    assert counts[0, 0, 0, 0] == 1 and counts[0, 1, 1, 0] == 2 and counts.sum() == 3
    assert torch.equal(voxelize(points, 2), (counts > 0).float())
    far = torch.tensor([[[5.0, -5.0, 0.0]]])  # outside: the nearest border cell
    assert voxelize(far, 4)[0, 3, 0, 2] == 1


def test_points_from_grid_stay_in_the_weighted_voxels():
    grid = torch.zeros(2, 8, 8, 8)
    grid[0, 1, 2, 3] = 1.0
    grid[1, 4:6, 4, 4] = 1.0
    points = points_from_grid(grid, 300, torch.Generator().manual_seed(0))
    assert points.shape == (2, 300, 3)
    assert torch.equal(voxelize(points, 8), grid)  # every point lands in its voxel
    again = points_from_grid(grid, 300, torch.Generator().manual_seed(0))
    assert torch.equal(points, again)


def test_d2_histogram_golden_and_normalised():
    # two points at distance 1: every pair is (a, a), (b, b) -> 0 or (a, b) -> bin 1 / 2 * 32
    points = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])
    hist = d2_histogram(points, bins=32, pairs=1000)
    assert hist.shape == (1, 32) and abs(float(hist.sum()) - 1) < 1e-6
    assert set(hist.nonzero()[:, 1].tolist()) == {0, 16}
    assert 0.4 < float(hist[0, 16]) < 0.6


def test_round_trip_shapes_range_and_quality(tokenizer, halves):
    held_out = halves[1]
    codes = tokenizer.encode(held_out.x)
    assert codes.shape == (len(held_out), 64) == (len(held_out), tokenizer.tokens_per_item)
    assert codes.dtype == torch.int64 and tokenizer.codebook_size == 32
    assert int(codes.min()) >= 0 and int(codes.max()) < 32
    rebuilt = tokenizer.decode(codes)
    assert rebuilt.shape == (len(held_out), 512, 3) and float(rebuilt.abs().max()) <= 1
    assert torch.equal(tokenizer.decode(codes), rebuilt)  # decoding is deterministic
    density = tokenizer.decode_grid(codes)
    assert torch.allclose(density.sum((1, 2, 3)), torch.ones(len(held_out)))
    # the decoded points lie near their shape: nearer than another shape's points are
    assert chamfer(held_out.x, rebuilt) < 0.7 * chamfer(held_out.x, halves[0].x[: len(held_out)])
    # and the decoded occupancy beats the mean occupancy grid
    expected = 1 - (1 - density) ** 512
    real = voxelize(held_out.x, 8)
    mse = float(((expected - real) ** 2).mean())
    assert mse < 0.8 * float(((real.mean(0) - real) ** 2).mean())


def test_save_load_gives_identical_codes(tmp_path, tokenizer, halves):
    tokenizer.save(tmp_path / "points")
    loaded = PointsTokenizer.load(tmp_path / "points")
    assert loaded.config == tokenizer.config
    assert torch.equal(loaded.encode(halves[1].x), tokenizer.encode(halves[1].x))
    assert torch.equal(
        loaded.decode_grid(tokenizer.encode(halves[1].x[:5])),
        tokenizer.decode_grid(tokenizer.encode(halves[1].x[:5])),
    )


def test_load_refuses_another_kind_and_a_missing_folder(tmp_path):
    save_part(tmp_path / "signal", "omni-signal-tokenizer", {}, {"low": torch.zeros(())})
    with pytest.raises(CheckpointError, match="omni-points-tokenizer"):
        PointsTokenizer.load(tmp_path / "signal")
    with pytest.raises(CheckpointError):
        PointsTokenizer.load(tmp_path / "nothing")


def test_bad_config_names_the_field():
    with pytest.raises(ConfigError, match="at most 64"):
        PointsTokenizerConfig(grid=32, n_down=2)  # 8^3 = 512 codes
    with pytest.raises(ConfigError, match="codebook_size"):
        PointsTokenizerConfig(codebook_size=300)
    with pytest.raises(ConfigError, match="n_down"):
        PointsTokenizerConfig(grid=12, n_down=3)
    with pytest.raises(ConfigError, match="temperature"):
        PointsTokenizerConfig(temperature=0)


def test_bad_input_is_a_data_error(tokenizer):
    with pytest.raises(DataError, match=r"\(B, P, 3\)"):
        tokenizer.encode(torch.zeros(2, 512, 2))
    with pytest.raises(DataError, match="NaN"):
        tokenizer.encode(torch.full((1, 4, 3), math.nan))
    with pytest.raises(DataError, match=r"\(B, 64\)"):
        tokenizer.decode(torch.zeros(1, 63, dtype=torch.long))
    with pytest.raises(DataError, match=r"\[0, 32\)"):
        tokenizer.decode(torch.full((1, 64), 32))


def test_judge_beats_chance_by_far_on_real_and_decoded_shapes(tokenizer, halves):
    train, held_out = halves
    judge = train_points_judge(train.x, train.y)
    predicted = judge.predict(held_out.x)
    assert predicted.shape == (len(held_out),) and predicted.dtype == torch.int64
    assert float((predicted == held_out.y).float().mean()) > 0.75  # chance is 1/15
    report = reconstruction_report(tokenizer, held_out, judge)
    assert set(report) >= {"mse", "judge_real", "judge_reconstructed", "n"}
    assert report["n"] == len(held_out) and report["judge_reconstructed"] > 0.2


def test_d2_baseline_is_above_chance(halves):
    accuracy = baseline_d2_logreg(*halves)
    assert 0.25 < accuracy < 0.95
