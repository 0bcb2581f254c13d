"""Tests for the speech perturbations (lmforge.omni.speech.augment_speech and the signal math
under it) and the tokenizer's per-word normalisation of its frames."""

import pytest
import torch

from lmforge.errors import ConfigError
from lmforge.omni.speech import (
    WAVE_LENGTH,
    SpeechTokenizer,
    SpeechTokenizerConfig,
    augment_speech,
    change_speed,
    load_speech,
    log_mel,
    train_speech_tokenizer,
    warp_spectrum,
    word_lengths,
)

pytest.importorskip("sklearn", reason="the omni speech tokenizer needs scikit-learn")

SMALL = SpeechTokenizerConfig(n_frames=12, codebook_size=64, kmeans_iters=50, griffin_lim_iters=8)


@pytest.fixture(scope="module")
def words():
    return load_speech("train").subset(slice(0, 1470, 49))  # 30 words, several voices


def test_copies_follow_the_originals_with_labels_and_voices(words):
    out = augment_speech(words, 2, seed=0)
    n = len(words)
    assert out.x.shape == (3 * n, WAVE_LENGTH) and out.x.dtype == torch.float32
    assert torch.equal(out.x[:n], words.x)
    assert torch.equal(out.y, words.y.repeat(3)) and out.labels == words.labels
    assert out.extra["voice"] == words.extra["voice"] * 3
    assert torch.equal(out.extra["id"], words.extra["id"].repeat(3))
    assert out.extra["augment"][:n] == [""] * n
    assert all(tag.startswith("formant") for tag in out.extra["augment"][n:])
    assert augment_speech(words, 0).x.shape == words.x.shape


def test_copies_differ_from_the_words_and_are_seeded(words):
    a, b = augment_speech(words, 1, seed=4), augment_speech(words, 1, seed=4)
    assert torch.equal(a.x, b.x) and a.extra["augment"] == b.extra["augment"]
    assert not torch.equal(a.x, augment_speech(words, 1, seed=5).x)
    copy, n = a.x[len(words) :], len(words)
    assert torch.isfinite(copy).all() and copy.abs().max() <= 1
    assert ((copy - words.x).pow(2).mean(1) > 1e-4).all()  # every wave changed
    assert (copy.abs().amax(1) - words.x.abs().amax(1)).abs().max() < 1e-4  # peak kept
    assert (word_lengths(copy) > 0.6 * word_lengths(words.x)).all() and n == len(words)


def test_warp_moves_the_spectrum_and_identity_keeps_it(words):
    x = words.x[:8]
    ones = torch.ones(8)
    same = warp_spectrum(x, ones, ones)
    assert (log_mel(same) - log_mel(x)).pow(2).mean() < 1e-3
    bins = torch.arange(129.0)

    def centroid(w):  # the mean frequency bin of the power spectrum
        power = torch.stft(w, 256, 64, window=torch.hann_window(256), return_complex=True)
        power = power.abs().pow(2).sum(-1)
        return ((power * bins).sum(1) / power.sum(1)).mean()

    assert centroid(warp_spectrum(x, 1.2 * ones, ones)) > 1.05 * centroid(x)
    assert centroid(warp_spectrum(x, 0.85 * ones, ones)) < 0.97 * centroid(x)
    faster = change_speed(x, 1.2 * ones)
    assert (word_lengths(faster) - word_lengths(x) / 1.2).abs().max() <= 2
    assert centroid(faster) > 1.05 * centroid(x)


def test_bad_augment_arguments_raise(words):
    with pytest.raises(ConfigError, match="copies"):
        augment_speech(words, -1)
    with pytest.raises(ConfigError, match="formant"):
        augment_speech(words, 1, formant=(1.2, 0.9))


def test_mean_removed_units_round_trip_and_reload(words, tmp_path):
    config = SpeechTokenizerConfig(**{**SMALL.__dict__, "normalise": "mean"})
    tokenizer = train_speech_tokenizer(words.x.repeat(3, 1), config, seed=0, progress=False)
    features, mean = tokenizer.features(words.x)
    assert features.mean(1).abs().max() < 1e-4  # each word's mean frame taken out
    assert torch.allclose(features + mean[:, None], tokenizer.frames(words.x), atol=1e-5)
    codes = tokenizer.encode(words.x)
    assert tokenizer.tokens_per_item == 14  # duration, mean frame, 12 units
    assert codes.shape == (len(words), 14) and 0 <= codes.min() and codes.max() < 64
    frames = tokenizer.frames(words.x)
    error = (tokenizer.decode_frames(codes) - frames).pow(2).mean()
    assert error < 0.5 * (frames.mean((0, 1)) - frames).pow(2).mean()  # log-mel frames come back
    no_mean = codes.clone()
    no_mean[:, 1] = codes[0, 1]  # every word given the first word's mean frame
    assert (tokenizer.decode_frames(no_mean) - frames).pow(2).mean() > error  # the mean matters
    waves = tokenizer.decode(codes[:4])
    assert waves.shape == (4, WAVE_LENGTH) and torch.isfinite(waves).all()
    assert waves.abs().amax(1).min() > 0.5
    tokenizer.save(tmp_path / "speech")
    again = SpeechTokenizer.load(tmp_path / "speech")
    assert again.config.normalise == "mean"
    assert torch.equal(again.encode(words.x), codes)


def test_unknown_normalisation_is_refused():
    with pytest.raises(ConfigError, match="normalise"):
        SpeechTokenizerConfig(normalise="cmvn")


def test_a_folder_saved_before_normalise_reads_as_none(words, tmp_path):
    import json

    config = SpeechTokenizerConfig(**{**SMALL.__dict__, "normalise": "none"})
    tokenizer = train_speech_tokenizer(words.x.repeat(3, 1), config, seed=0, progress=False)
    tokenizer.save(tmp_path / "old")
    record = json.loads((tmp_path / "old" / "config.json").read_text())
    del record["config"]["normalise"]  # as the first version wrote it
    (tmp_path / "old" / "config.json").write_text(json.dumps(record))
    again = SpeechTokenizer.load(tmp_path / "old")
    assert again.config.normalise == "none" and again.tokens_per_item == 13
    assert torch.equal(again.encode(words.x), tokenizer.encode(words.x))
