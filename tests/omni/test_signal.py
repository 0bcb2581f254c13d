"""Tests for lmforge.omni.signal: the MNIST-1D generator, the binning tokenizer, the CNN judge."""

import pytest
import torch

from lmforge.errors import CheckpointError, ConfigError, DataError
from lmforge.folders import save_part
from lmforge.omni.signal import (
    LABELS,
    SEQ_LEN,
    SignalTokenizer,
    SignalTokenizerConfig,
    baseline_logreg,
    load_signals,
    reconstruction_report,
    templates,
    train_signal_judge,
    train_signal_tokenizer,
)


@pytest.fixture(scope="module")
def train():
    return load_signals("train", n_train=1000)


@pytest.fixture(scope="module")
def test():
    return load_signals("test", n_test=300)


@pytest.fixture(scope="module")
def judge(train):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures start before the one-thread fixture
    yield train_signal_judge(train.x, train.y, steps=400)
    torch.set_num_threads(threads)


def test_templates_are_whitened_and_start_and_end_at_zero():
    bank = templates()
    assert bank.shape == (10, 12)
    assert abs(bank[:, 0]).max() == 0 and abs(bank[:, -1]).max() < 1e-12
    # whitened then divided by 6: each row's deviation is 1/6 (shifting keeps it)
    assert abs(bank.std(1) - 1 / 6).max() < 1e-9
    assert len({tuple(row.round(6)) for row in bank}) == 10  # ten different shapes


def test_load_signals_gives_balanced_labelled_rows(train):
    assert train.x.shape == (1000, SEQ_LEN) and train.x.dtype == torch.float32
    assert train.y.dtype == torch.int64 and train.labels == LABELS
    assert torch.bincount(train.y, minlength=10).tolist() == [100] * 10
    assert LABELS[0] == "zero" and LABELS[9] == "nine"


def test_standard_split_is_standardised():
    items = load_signals("train")  # 4,000, the paper's training split
    assert len(items) == 4000 and len(load_signals("test")) == 1000
    assert abs(float(items.x.mean())) < 0.05 and abs(float(items.x.std()) - 1) < 0.05


def test_load_signals_is_deterministic_by_seed(test):
    again = load_signals("test", n_test=300)
    assert torch.equal(test.x, again.x) and torch.equal(test.y, again.y)
    other = load_signals("test", seed=1, n_test=300)
    assert not torch.equal(test.x, other.x)


def test_test_split_does_not_depend_on_training_size(test):
    """More training data can be drawn without touching the held-out items."""
    assert torch.equal(load_signals("test", n_train=10, n_test=300).x, test.x)
    train = load_signals("train", n_train=300)
    assert not torch.equal(train.x, test.x)


def test_load_signals_rejects_bad_arguments():
    with pytest.raises(DataError, match="split 'valid'"):
        load_signals("valid")
    with pytest.raises(DataError, match="n_train"):
        load_signals("train", n_train=-1)


@pytest.mark.parametrize("companding", ["uniform", "mu-law"])
def test_round_trip_is_close_and_codes_in_range(train, test, companding):
    tokenizer = train_signal_tokenizer(train.x, SignalTokenizerConfig(companding=companding))
    codes = tokenizer.encode(test.x)
    assert codes.shape == (len(test), tokenizer.tokens_per_item) == (300, 40)
    assert codes.dtype == torch.int64 and tokenizer.codebook_size == 64
    assert int(codes.min()) >= 0 and int(codes.max()) < 64
    rebuilt = tokenizer.decode(codes)
    assert rebuilt.shape == test.x.shape
    mse = float(((rebuilt - test.x) ** 2).mean())
    mean_item = float(((test.x - train.x.mean(0)) ** 2).mean())
    assert mse < 0.01 * mean_item
    # bin centres encode to their own bin
    assert torch.equal(tokenizer.encode(rebuilt), codes)


def test_uniform_error_is_at_most_half_a_bin(train):
    tokenizer = train_signal_tokenizer(train.x, SignalTokenizerConfig(companding="uniform"))
    low, high = float(tokenizer.low), float(tokenizer.high)
    inside = torch.linspace(low, high, 400).reshape(10, 40)
    error = (tokenizer.decode(tokenizer.encode(inside)) - inside).abs().max()
    assert float(error) <= (high - low) / 64 / 2 + 1e-5


def test_mu_law_bins_are_finer_in_the_middle(train):
    tokenizer = train_signal_tokenizer(train.x, SignalTokenizerConfig(companding="mu-law"))
    centres = tokenizer.decode(torch.arange(24, 64).reshape(1, 40))[0]
    steps = centres.diff()
    assert (steps > 0).all()
    assert float(steps[0]) < 0.5 * float(steps[-1])  # bins 24..25 versus 62..63


def test_save_load_gives_identical_codes(tmp_path, train, test):
    tokenizer = train_signal_tokenizer(train.x, SignalTokenizerConfig(levels=32))
    tokenizer.save(tmp_path / "signal")
    loaded = SignalTokenizer.load(tmp_path / "signal")
    assert loaded.config == tokenizer.config
    assert torch.equal(loaded.encode(test.x), tokenizer.encode(test.x))


def test_load_refuses_another_kind_and_a_missing_folder(tmp_path):
    save_part(tmp_path / "image", "omni-image-tokenizer", {}, {"w": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="omni-signal-tokenizer"):
        SignalTokenizer.load(tmp_path / "image")
    with pytest.raises(CheckpointError):
        SignalTokenizer.load(tmp_path / "nothing")


def test_bad_config_names_the_field():
    with pytest.raises(ConfigError, match="levels"):
        SignalTokenizerConfig(levels=65)
    with pytest.raises(ConfigError, match="companding"):
        SignalTokenizerConfig(companding="a-law")
    with pytest.raises(ConfigError, match="clip_quantile"):
        SignalTokenizerConfig(clip_quantile=0.5)


def test_bad_input_is_a_data_error(train):
    tokenizer = train_signal_tokenizer(train.x, SignalTokenizerConfig())
    with pytest.raises(DataError, match=r"\(B, 40\)"):
        tokenizer.encode(torch.zeros(2, 39))
    with pytest.raises(DataError, match="NaN"):
        tokenizer.encode(torch.full((1, 40), float("nan")))
    with pytest.raises(DataError, match=r"\[0, 64\)"):
        tokenizer.decode(torch.full((1, 40), 64))
    with pytest.raises(DataError, match="integer"):
        tokenizer.decode(torch.zeros(1, 40))
    with pytest.raises(DataError, match="no training signals"):
        train_signal_tokenizer(torch.zeros(0, 40), SignalTokenizerConfig())


def test_judge_beats_chance_by_far(test, judge):
    predicted = judge.predict(test.x)
    assert predicted.shape == (300,) and predicted.dtype == torch.int64
    assert float((predicted == test.y).float().mean()) > 0.6  # chance is 0.1


def test_judge_is_deterministic_by_seed(train, test):
    first, again = (train_signal_judge(train.x, train.y, steps=50) for _ in range(2))
    assert torch.equal(first.net[1].weight, again.net[1].weight)
    assert torch.equal(first.predict(test.x), again.predict(test.x))
    other = train_signal_judge(train.x, train.y, seed=1, steps=50)
    assert not torch.equal(first.net[1].weight, other.net[1].weight)


def test_reconstruction_report_keeps_the_judges_verdict(train, test, judge):
    tokenizer = train_signal_tokenizer(train.x, SignalTokenizerConfig())
    report = reconstruction_report(tokenizer, test, judge)
    assert report["n"] == 300
    assert report["mse"] < 0.01 * report["mse_mean_item"]
    assert abs(report["judge_real"] - report["judge_reconstructed"]) < 0.05


def test_logistic_regression_baseline_is_weak_but_above_chance(train, test):
    pytest.importorskip("sklearn")
    accuracy = baseline_logreg(train, test)
    assert 0.15 < accuracy < 0.6  # the paper: 32% on the standard split
