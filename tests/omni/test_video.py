"""Tests for lmforge.omni.video: moving digits, the per-frame tokenizer and the judge."""

import json

import pytest
import torch
from conftest import one_thread

pytest.importorskip("sklearn", reason="the omni video data and judge need scikit-learn")

from lmforge.errors import CheckpointError, ConfigError, DataError  # noqa: E402
from lmforge.omni.image import ImageTokenizer, ImageTokenizerConfig, load_images  # noqa: E402
from lmforge.omni.video import (  # noqa: E402
    DIRECTION_NAMES,
    VideoTokenizer,
    VideoTokenizerConfig,
    centre_of_mass,
    cut_windows,
    ink_corner,
    load_videos,
    paste_windows,
    reconstruction_report,
    train_video_judge,
    train_video_tokenizer,
)

TINY = VideoTokenizerConfig(codebook_size=64, code_dim=16, channels=16, steps=400, lr=5e-3)


@pytest.fixture(scope="module")
def train():
    return load_videos("train", per_digit=1)


@pytest.fixture(scope="module")
def test():
    return load_videos("test", per_digit=1)


@pytest.fixture(scope="module")
def judge(train):
    return train_video_judge(train.x, train.y, train.extra["direction"])


@pytest.fixture(scope="module")
def tokenizer(train):
    with one_thread():
        return train_video_tokenizer(train.x, TINY, seed=0, progress=False)


# ----------------------------------------------------------------------------- data


def test_videos_show_one_whole_test_digit_in_every_frame(test):
    digits = load_images("test")
    assert test.x.shape == (357, 4, 16, 16) and test.x.dtype == torch.float32
    assert test.labels == digits.labels and torch.equal(test.y, digits.y)
    assert DIRECTION_NAMES == ("left", "right", "up", "down")
    assert set(test.extra) == {"direction"} and test.extra["direction"].shape == (357,)
    # the digit never leaves the canvas: every frame holds all of the digit's ink
    ink = test.x.sum((2, 3))  # (N, T)
    assert torch.allclose(ink, digits.x.sum((1, 2))[:, None].expand_as(ink), atol=1e-4)
    for i in range(0, 357, 50):  # and that ink is the digit's 8x8 image, somewhere
        frame = test.x[i, 2]
        assert any(
            torch.equal(frame[r : r + 8, c : c + 8], digits.x[i])
            for r in range(9)
            for c in range(9)
        )


def test_direction_is_the_first_step_and_walls_bounce(train):
    com = centre_of_mass(train.x.flatten(0, 1)).reshape(len(train), 4, 2)  # (N, T, (row, col))
    step = com[:, 1] - com[:, 0]
    # left, right, up, down: (row, col) steps of (0, -), (0, +), (-, 0), (+, 0)
    expected = torch.tensor([[0, -1], [0, 1], [-1, 0], [1, 0]])[train.extra["direction"]]
    assert torch.equal(step.round().sign().long(), expected)
    assert set(step.abs().max(1).values.round().long().tolist()) == {2, 4}
    # a bounce: the motion reverses along the way in some videos, never in the first step
    later = com[:, 2] - com[:, 1]
    reversed_ = (later * step).sum(1) < 0
    assert 0.2 < float(reversed_.float().mean()) < 0.8
    assert len(train.extra["direction"].unique()) == 4


def test_videos_are_fixed_by_seed_and_options():
    first = load_videos("test", seed=0, frames=3, per_digit=2)
    assert first.x.shape == (714, 3, 16, 16) and len(first.extra["direction"]) == 714
    again = load_videos("test", seed=0, frames=3, per_digit=2)
    assert torch.equal(first.x, again.x)
    assert torch.equal(first.extra["direction"], again.extra["direction"])
    assert not torch.equal(first.x, load_videos("test", seed=1, frames=3, per_digit=2).x)
    half = first.subset(slice(0, 10))
    assert len(half) == 10 and torch.equal(half.extra["direction"], first.extra["direction"][:10])


def test_bad_data_options_are_refused():
    with pytest.raises(ConfigError, match="frames"):
        load_videos("train", frames=1)
    with pytest.raises(ConfigError, match="split"):
        load_videos("dev")


# ----------------------------------------------------------------------------- tokenizer


def test_round_trip_shapes_code_range_and_beats_the_mean_video(tokenizer, test):
    assert (tokenizer.frames, tokenizer.tokens_per_frame, tokenizer.tokens_per_item) == (4, 18, 72)
    codes = tokenizer.encode(test.x)
    assert codes.shape == (357, 72) and codes.dtype == torch.int64
    # 64 window codes, then 31 rows and 31 columns (-15..15) of a corner or a move
    assert 0 <= int(codes.min()) and int(codes.max()) < tokenizer.codebook_size == 64 + 62
    recon = tokenizer.decode(codes)
    assert recon.shape == test.x.shape and 0 <= float(recon.min()) and float(recon.max()) <= 1
    report = reconstruction_report(tokenizer, test, _Oracle(test))
    assert report["mse"] < 0.4 * report["mse_mean_video"]
    assert torch.equal(tokenizer.encode(test.x), codes)  # deterministic


class _Oracle:
    """A stand-in judge that knows the answers (the report's arithmetic is tested here)."""

    def __init__(self, items):
        self.items = items

    def predict(self, x):
        return self.items.y

    def predict_direction(self, x):
        return self.items.extra["direction"]


def test_codes_run_frame_by_frame_with_the_moves_between_them(tokenizer, test):
    videos = test.x[:5]
    frames = tokenizer.encode(videos).reshape(5, 4, 18)
    assert frames[:, :, :2].min() >= 64 and frames[:, :, 2:].max() < 64  # where, then the window
    # the digit is the same in every frame, and so is its window: the same 16 codes
    assert torch.equal(frames[:, :, 2:], frames[:, :1, 2:].expand(5, 4, 16))
    # a frame held still: the first frame's corner, then moves of zero (codes 64 + 15, 64 + 46)
    still = tokenizer.encode(videos[:, 2:3].expand(5, 4, 16, 16)).reshape(5, 4, 18)
    assert torch.equal(still[:, :, 2:], frames[:, :, 2:])
    assert (still[:, 1:, 0] == 64 + 15).all() and (still[:, 1:, 1] == 64 + 46).all()
    corner = ink_corner(videos[:, 2])
    assert torch.equal(still[:, 0, :2], corner + torch.tensor([64 + 15, 64 + 46]))
    # the moves add up to where the digit goes: decoding puts it back there
    back = tokenizer.decode(frames.reshape(5, 72))
    gap = centre_of_mass(back.flatten(0, 1)) - centre_of_mass(videos.flatten(0, 1))
    assert float(gap.abs().max()) < 1.0
    step = frames[:, 1, :2] - torch.tensor([64 + 15, 64 + 46])  # (drow, dcol) of frame 1
    expected = torch.tensor([[0, -1], [0, 1], [-1, 0], [1, 0]])[test.extra["direction"][:5]]
    assert torch.equal(step.sign(), expected)


def test_windows_hold_all_the_ink_and_their_corners_move_with_the_digit(train):
    frames = train.x.flatten(0, 1)  # (N * 4, 16, 16)
    corner = ink_corner(frames)
    assert torch.equal(paste_windows(cut_windows(frames, corner), corner), frames)
    step = corner.reshape(len(train), 4, 2)[:, 1] - corner.reshape(len(train), 4, 2)[:, 0]
    expected = torch.tensor([[0, -1], [0, 1], [-1, 0], [1, 0]])[train.extra["direction"]]
    assert torch.equal(step.sign(), expected)
    blank = ink_corner(torch.zeros(1, 16, 16))
    assert blank.tolist() == [[4, 4]]


def test_windows_coded_by_the_image_tokenizer(train, test):
    image = ImageTokenizer(ImageTokenizerConfig(codebook_size=32, code_dim=8, channels=8, steps=1))
    video = train_video_tokenizer(train.x[:4], VideoTokenizerConfig(), image=image)
    assert video.config.image_codes and video.shared == ("image", 32)
    assert video.codebook_size == 32 + 62
    frames = test.x[:6].flatten(0, 1)
    windows = cut_windows(frames, ink_corner(frames))
    codes = video.encode(test.x[:6]).reshape(24, 18)
    assert torch.equal(codes[:, 2:], image.encode(windows))  # the image's own codes
    # a window holds all of the digit's ink, centred, and most often the digit's image itself
    digits = load_images("test").x[:100]
    canvas = torch.zeros(100, 16, 16)
    canvas[:, 4:12, 3:11] = digits
    windows = cut_windows(canvas, ink_corner(canvas))
    assert torch.allclose(windows.sum((1, 2)), digits.sum((1, 2)))
    same = sum(torch.equal(w, d) for w, d in zip(windows, digits, strict=True))
    assert 30 < same < 100
    with pytest.raises(ConfigError, match="image_codes needs window"):
        VideoTokenizerConfig(window=False, image_codes=True)


def test_whole_frame_tokenizer_and_folders_written_before_windows(tmp_path, test):
    config = VideoTokenizerConfig(codebook_size=32, code_dim=8, channels=8, steps=1, window=False)
    whole = VideoTokenizer(config)
    assert (whole.tokens_per_frame, whole.codebook_size) == (16, 32)
    assert whole.encode(test.x[:3]).shape == (3, 64)
    assert whole.decode(whole.encode(test.x[:3])).shape == (3, 4, 16, 16)
    whole.save(tmp_path / "old")
    record = json.loads((tmp_path / "old" / "config.json").read_text())
    del record["config"]["window"], record["config"]["image_codes"]  # as the first version's
    (tmp_path / "old" / "config.json").write_text(json.dumps(record))
    loaded = VideoTokenizer.load(tmp_path / "old")
    assert loaded.config.window is False and loaded.tokens_per_item == 64
    assert torch.equal(loaded.encode(test.x[:3]), whole.encode(test.x[:3]))
    with pytest.raises(ConfigError, match="window"):
        VideoTokenizerConfig(window="yes")


def test_save_load_gives_identical_codes_and_kind_is_checked(tokenizer, test, tmp_path):
    tokenizer.save(tmp_path / "video")
    loaded = VideoTokenizer.load(tmp_path / "video")
    assert loaded.config == tokenizer.config
    assert torch.equal(loaded.encode(test.x[:20]), tokenizer.encode(test.x[:20]))
    with pytest.raises(CheckpointError, match="omni-image-tokenizer"):
        ImageTokenizer.load(tmp_path / "video")
    ImageTokenizer(ImageTokenizerConfig(steps=1)).save(tmp_path / "image")
    with pytest.raises(CheckpointError, match="omni-video-tokenizer"):
        VideoTokenizer.load(tmp_path / "image")


def test_bad_shapes_and_config_are_refused(tokenizer):
    with pytest.raises(DataError, match=r"\(B, 4, 16, 16\)"):
        tokenizer.encode(torch.rand(2, 3, 16, 16))
    with pytest.raises(DataError, match="codes"):
        tokenizer.decode(torch.zeros(2, 48, dtype=torch.long))
    with pytest.raises(ConfigError, match="frames"):
        VideoTokenizerConfig(frames=0)
    with pytest.raises(ConfigError, match="codebook_size"):
        VideoTokenizerConfig(codebook_size=1024)


# ----------------------------------------------------------------------------- judge


def test_judge_knows_digit_and_direction_far_above_chance(judge, test):
    report = reconstruction_report(_Identity(), test, judge)
    # chance: 10% for the digit, 25% for the direction, 2.5% for both
    assert report["digit_real"] > 0.95 and report["direction_real"] > 0.98
    assert report["judge_real"] > 0.93
    assert report["mse"] == 0 and report["judge_reconstructed"] == report["judge_real"]


def test_judge_recognises_reconstructions(tokenizer, judge, test):
    report = reconstruction_report(tokenizer, test, judge)
    # this tiny tokenizer keeps the motion and most digits (chance is 0.1); the default one
    # keeps about 0.98 of the digits (the module's report)
    assert report["direction_reconstructed"] > 0.98
    assert report["digit_reconstructed"] > 0.8


class _Identity:
    """A tokenizer whose reconstruction is the video itself."""

    def encode(self, x):
        return x

    def decode(self, codes):
        return codes
