"""Tests for lmforge.omni.speech: the shipped words, the log-mel units and their way back to
sound, the judge, the baseline and WAV files."""

import importlib.util
import json
import math
import shutil
import wave
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from lmforge.errors import CheckpointError, ConfigError, DataError
from lmforge.folders import save_part
from lmforge.omni import speech
from lmforge.omni.speech import (
    SAMPLE_RATE,
    TEST_VOICES,
    WAVE_LENGTH,
    WORDS,
    SpeechTokenizer,
    SpeechTokenizerConfig,
    baseline_mfcc_logreg,
    fit_length,
    frames_to_wave,
    hz_to_mel,
    load_speech,
    mel_filterbank,
    mel_to_hz,
    mulaw_decode,
    read_wav,
    reconstruction_report,
    train_speech_judge,
    train_speech_tokenizer,
    word_frames,
    word_lengths,
    write_wav,
)

pytest.importorskip("sklearn", reason="the omni speech tokenizer and judge need scikit-learn")

ROOT = Path(__file__).resolve().parents[2]
SMALL = SpeechTokenizerConfig(n_frames=12, codebook_size=64, kmeans_iters=50, griffin_lim_iters=16)


@pytest.fixture(scope="module")
def train():
    return load_speech("train")


@pytest.fixture(scope="module")
def valid():
    return load_speech("valid")


@pytest.fixture(scope="module")
def tokenizer(train):
    return train_speech_tokenizer(train.x[::3], SMALL, seed=0, progress=False)


@pytest.fixture(scope="module")
def judge(train):
    return train_speech_judge(train.x, train.y)


# ----------------------------------------------------------------------------- data


def test_splits_follow_the_voice_protocol(train, valid):
    test = load_speech("test")
    assert {v.split(":")[1] for v in test.extra["voice"]} == set(TEST_VOICES)
    assert set(test.extra["synth"]) == {"flite"}
    seen = set(train.extra["voice"]) | set(valid.extra["voice"])
    assert not seen & set(test.extra["voice"])  # no test voice in training
    assert {"espeak-ng", "flite"} == set(train.extra["synth"])
    ids = [set(s.extra["id"].tolist()) for s in (train, valid, test)]
    assert not ids[0] & ids[1] and not ids[0] & ids[2] and not ids[1] & ids[2]
    assert len(ids[0] | ids[1] | ids[2]) == len(train) + len(valid) + len(test)


def test_items_are_words_then_silence(train):
    assert train.labels == WORDS and len(WORDS) == 30 and WORDS[7] == "seven"
    assert train.x.dtype == torch.float32 and train.x.shape == (len(train), WAVE_LENGTH)
    assert train.x.abs().max() <= 1.0
    assert torch.allclose(
        train.x.abs().amax(1), torch.full((len(train),), 0.9), atol=0.03
    )  # mu-law steps
    assert set(train.y.tolist()) == set(range(len(WORDS)))
    lengths = word_lengths(train.x)
    assert (lengths > 0.05 * SAMPLE_RATE).all() and (lengths <= WAVE_LENGTH).all()
    after = torch.arange(WAVE_LENGTH) >= lengths[:, None]
    assert (train.x[after] == 0).all()


def test_valid_share_is_fixed_by_seed(valid):
    again, other = load_speech("valid", seed=0), load_speech("valid", seed=1)
    assert torch.equal(valid.extra["id"], again.extra["id"]) and torch.equal(valid.x, again.x)
    assert not torch.equal(valid.extra["id"], other.extra["id"])
    assert set(valid.y.tolist()) == set(range(len(WORDS)))  # every word held out


def test_unknown_split_is_refused():
    with pytest.raises(ConfigError, match="split"):
        load_speech("dev")


def test_mulaw_decode_spans_minus_one_to_one():
    out = mulaw_decode(np.array([0, 255, 127, 128], dtype=np.uint8))
    assert out[0] == pytest.approx(-1.0) and out[1] == pytest.approx(1.0)
    assert abs(out[2]) < 1e-3 and abs(out[3]) < 1e-3


@pytest.mark.skipif(not shutil.which("flite"), reason="flite is not installed")
def test_shipped_waves_match_the_tool(tmp_path):
    spec = importlib.util.spec_from_file_location("make", ROOT / "tools" / "make_omni_speech.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    data = speech._read_data()
    i = int(np.flatnonzero(data["synth"] == "flite")[0])
    argv = str(data["command"][i]).split()
    made = tool.prepare(*tool.synthesise(argv, str(tmp_path)))
    assert np.array_equal(made, data["mulaw"][data["offsets"][i] : data["offsets"][i + 1]])


# ----------------------------------------------------------------------------- signal math


def test_htk_mel_scale_and_filterbank():
    # 2595 log10(1 + 1000 / 700) = 999.99: the HTK scale puts 1 kHz near 1000 mel
    assert hz_to_mel(1000.0) == pytest.approx(1000.0, abs=0.1)
    assert mel_to_hz(hz_to_mel(3210.0)) == pytest.approx(3210.0)
    bank = mel_filterbank(129, 40, SAMPLE_RATE)
    assert bank.shape == (40, 129) and (bank >= 0).all() and (bank.sum(1) > 0).all()
    assert bank.amax(1).min() > 0.5  # every triangle reaches near its peak on some bin
    assert (bank.argmax(1).diff() >= 0).all()  # centres rise with the index


def test_griffin_lim_rebuilds_closer_than_noise(valid):
    words = valid.x[:24]
    frames = word_frames(words, 16)
    rebuilt = frames_to_wave(frames, word_lengths(words), n_iter=16)
    noise = torch.randn(words.shape, generator=torch.Generator().manual_seed(0))
    noise = 0.9 * noise / noise.abs().amax(1, keepdim=True) * (words != 0)
    error = (word_frames(rebuilt, 16) - frames).pow(2).mean()
    assert error < 0.25 * (word_frames(noise, 16) - frames).pow(2).mean()
    assert rebuilt.shape == words.shape and rebuilt.abs().max() <= 0.9 + 1e-5


# ----------------------------------------------------------------------------- tokenizer


def test_round_trip_shapes_range_and_quality(tokenizer, valid):
    codes = tokenizer.encode(valid.x)
    assert codes.shape == (len(valid), 14) and codes.dtype == torch.int64  # duration, mean, units
    assert tokenizer.tokens_per_item == 14 and tokenizer.codebook_size == 64
    assert codes.min() >= 0 and codes.max() < 64
    assert torch.equal(codes, tokenizer.encode(valid.x))
    frames = tokenizer.frames(valid.x)
    error = (tokenizer.decode_frames(codes) - frames).pow(2).mean()
    assert error < 0.25 * (frames.mean((0, 1)) - frames).pow(2).mean()
    durations = codes[:, 0] * SMALL.duration_step
    assert (durations - word_lengths(valid.x)).abs().max() <= SMALL.duration_step // 2
    waves = tokenizer.decode(codes[:8])
    assert waves.shape == (8, WAVE_LENGTH) and torch.isfinite(waves).all()


def test_default_config_respects_the_token_budget():
    config = SpeechTokenizerConfig()
    assert SpeechTokenizer(config).tokens_per_item <= 24 and config.codebook_size <= 256


def test_save_load_gives_identical_codes(tokenizer, valid, tmp_path):
    tokenizer.save(tmp_path / "speech")
    again = SpeechTokenizer.load(tmp_path / "speech")
    assert again.config == tokenizer.config
    assert torch.equal(again.encode(valid.x[:20]), tokenizer.encode(valid.x[:20]))


def test_folder_of_another_kind_is_refused(tmp_path):
    save_part(tmp_path / "img", "omni-image-tokenizer", {}, {"w": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="omni-speech-tokenizer"):
        SpeechTokenizer.load(tmp_path / "img")


def test_bad_inputs_raise_clear_errors(tokenizer):
    with pytest.raises(DataError, match="shape"):
        tokenizer.encode(torch.zeros(2, 100))
    with pytest.raises(DataError, match=r"\[0, 64\)"):
        tokenizer.decode(torch.full((1, 14), 64))
    with pytest.raises(ConfigError, match="codebook_size"):
        SpeechTokenizerConfig(codebook_size=300)
    with pytest.raises(ConfigError, match="duration_step"):
        SpeechTokenizerConfig(codebook_size=16)
    with pytest.raises(ConfigError, match="units"):
        SpeechTokenizerConfig(units="wave")
    with pytest.raises(ConfigError, match="n_mfcc"):
        SpeechTokenizerConfig(n_mfcc=1)


def test_cepstral_units_decode_to_the_mean_of_their_frames(tokenizer, train):
    assert tokenizer.config.units == "mfcc"  # the default
    frames, _ = tokenizer.features(train.x[::3])
    units = tokenizer.encode(train.x[::3])[:, -SMALL.n_frames :]
    assert torch.equal(units, tokenizer.units(frames))
    # the unit is the nearest cepstral centroid, not the nearest log-mel frame
    by_log_mel = speech.quantize(frames, tokenizer.centroids)[0]
    assert (by_log_mel != units).float().mean() > 0.05
    # each unit's log-mel frame is the mean of the training frames it holds (k-means' last
    # assignment, in float64 there: allow the odd tie)
    close = [
        torch.allclose(tokenizer.centroids[k], frames[units == k].mean(0), atol=1e-3)
        for k in units.unique().tolist()
    ]
    assert sum(close) >= 0.95 * len(close)
    # a unit that holds no frame decodes to the log-mel frame its cepstrum gives
    labels = torch.zeros(len(frames.reshape(-1, SMALL.n_mels)), dtype=torch.long)
    rebuilt = speech.unit_frames(frames.reshape(-1, SMALL.n_mels), labels, tokenizer)
    cepstrum = speech.mfcc(rebuilt[1:], SMALL.n_mfcc) / tokenizer.unit_scale
    assert torch.allclose(cepstrum, tokenizer.unit_centroids[1:], atol=1e-4)


def test_folder_from_before_cepstral_units_loads_as_log_mel(train, valid, tmp_path):
    old = train_speech_tokenizer(train.x[:300], replace(SMALL, units="log-mel"), progress=False)
    old.save(tmp_path / "speech")
    path = tmp_path / "speech" / "config.json"
    saved = json.loads(path.read_text())
    del saved["config"]["units"], saved["config"]["n_mfcc"]  # as folders before them were
    path.write_text(json.dumps(saved))
    again = SpeechTokenizer.load(tmp_path / "speech")
    assert again.config.units == "log-mel" and not hasattr(again, "unit_centroids")
    assert torch.equal(again.encode(valid.x[:20]), old.encode(valid.x[:20]))


def test_tokenizer_training_is_seeded(train):
    a = train_speech_tokenizer(train.x[:200], SMALL, seed=3, progress=False)
    b = train_speech_tokenizer(train.x[:200], SMALL, seed=3, progress=False)
    assert torch.equal(a.centroids, b.centroids)


# ----------------------------------------------------------------------------- judge, baseline


def test_judge_recognises_real_and_rebuilt_words(judge, tokenizer, valid):
    report = reconstruction_report(tokenizer, valid.subset(slice(0, 150, 2)), judge)
    assert report["judge_real"] > 0.9  # chance is 1 / 30
    assert report["judge_reconstructed"] > 0.6
    assert report["mse"] < 0.25 * report["mse_mean_frame"]
    assert report["n"] == 75 and "espeak-ng" in report["judge_real_voices"]


def test_baseline_reports_each_held_out_voice(train):
    test = load_speech("test")
    result = baseline_mfcc_logreg(train.subset(slice(0, None, 2)), test)
    assert set(result["voices"]) == {f"flite:{v}" for v in TEST_VOICES}
    assert min(result["voices"].values()) <= result["mean"] <= max(result["voices"].values())
    assert result["mean"] > 3 / len(WORDS) and result["n"] == len(test)


def test_hearing_views_move_the_formants_and_the_speed_of_every_word(valid):
    x = valid.x[:4]
    views = speech.hearing_views(x, views=((0.8, 1.0), (1.0, 1.1)))
    assert [v.shape for v in views] == [x.shape] * 2
    lower, faster = views
    assert not torch.allclose(lower, x) and not torch.allclose(faster, x)
    assert (word_lengths(faster) < word_lengths(x)).all()  # faster: shorter words
    assert torch.allclose(lower.abs().amax(1), x.abs().amax(1), atol=1e-4)  # same peak
    assert len(speech.hearing_views(x)) == len(speech.HEARING_VIEWS)


def test_baseline_averages_its_probabilities_over_views(train):
    test = load_speech("test").subset(slice(0, None, 6))
    few = train.subset(slice(0, None, 2))
    alone = baseline_mfcc_logreg(few, test)
    assert baseline_mfcc_logreg(few, test, views=[test.x, test.x]) == alone
    silent = baseline_mfcc_logreg(few, test, views=[torch.zeros_like(test.x)] * 20)
    assert silent["accuracy"] < alone["accuracy"]  # the views do count


# ----------------------------------------------------------------------------- WAV files


def test_wav_round_trip(valid, tmp_path):
    path = tmp_path / "word.wav"
    write_wav(path, valid.x[0])
    back = read_wav(path)
    assert back.shape == (WAVE_LENGTH,)
    assert (back - valid.x[0]).abs().max() < 1e-4  # 16-bit steps
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_read_wav_resamples_8_bit_stereo(tmp_path):
    rate, seconds = 16000, 0.5
    t = np.arange(int(rate * seconds)) / rate
    tone = 0.5 * np.sin(2 * math.pi * 440 * t)
    pcm = np.round(tone * 127 + 128).astype(np.uint8)
    with wave.open(str(tmp_path / "tone.wav"), "wb") as f:
        f.setnchannels(2)
        f.setsampwidth(1)
        f.setframerate(rate)
        f.writeframes(np.repeat(pcm, 2).tobytes())
    back = read_wav(tmp_path / "tone.wav")
    assert back.shape == (int(SAMPLE_RATE * seconds),)
    assert back.abs().max() == pytest.approx(0.5, abs=0.03)


def test_bad_wav_files_raise_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_wav(tmp_path / "missing.wav")
    (tmp_path / "junk.wav").write_bytes(b"not a wave file at all")
    with pytest.raises(DataError, match="junk.wav"):
        read_wav(tmp_path / "junk.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty.wav: not a PCM WAV file \(the file is empty"):
        read_wav(tmp_path / "empty.wav")
    with pytest.raises(DataError, match="wave to write"):
        write_wav(tmp_path / "two.wav", torch.zeros(2, 100))


def test_fit_length_trims_silence_and_pads(tokenizer):
    word = 0.3 * torch.sin(torch.arange(2000) * 0.3)
    recording = torch.cat([torch.zeros(3000), word, torch.zeros(9000)])
    item = fit_length(recording, tokenizer)
    assert item.shape == (WAVE_LENGTH,) and item.abs().max() == pytest.approx(0.9)
    assert abs(int(word_lengths(item[None])[0]) - 2000) <= 2 * SAMPLE_RATE // 100
    with pytest.raises(DataError, match="silent"):
        fit_length(torch.zeros(500))
