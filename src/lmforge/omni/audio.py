"""The audio layer under the speech modality: 8 kHz waves, their log-mel frames and the way back.

What ``lmforge.omni.speech`` builds its units, judge and files on, with no tokenizer in it:
* the item format: SAMPLE_RATE (8 kHz), WAVE_LENGTH samples (0.9 s), a word scaled to PEAK;
  ``mulaw_decode`` for the shipped mu-law bytes (ITU-T G.711's continuous curve);
* ``log_mel``: STFT (Hann window N_FFT, hop HOP), power, an HTK mel filterbank (``hz_to_mel``,
  ``mel_filterbank``), natural log with a floor; ``word_frames`` resamples each word's frames
  along time to a fixed count, so a word gives the same number of frames whatever its speed;
* the way back (``frames_to_wave``): mel power -> linear magnitude through the filterbank's
  pseudo-inverse, then Griffin-Lim (Griffin and Lim 1984) with the momentum of Perraudin et al.
  (2013, "A fast Griffin-Lim algorithm") through ``torch.stft`` / ``torch.istft``;
* ``mfcc`` (the orthonormal DCT-II of log-mel frames, ``dct_matrix``), ``trim_silence``;
* PCM WAV files: ``read_wav`` (any rate, resampled by scipy, imported when needed) and
  ``write_wav`` (16-bit mono, written atomically).
"""

from __future__ import annotations

import io
import math
import os
import wave as wavelib

import numpy as np
import torch
import torch.nn.functional as F

from lmforge.checkpoint import atomic_write_bytes
from lmforge.errors import DataError

__all__ = [
    "HOP",
    "N_FFT",
    "PEAK",
    "SAMPLE_RATE",
    "WAVE_LENGTH",
    "change_speed",
    "dct_matrix",
    "frames_to_wave",
    "griffin_lim",
    "hz_to_mel",
    "log_mel",
    "mel_filterbank",
    "mel_to_hz",
    "mfcc",
    "mulaw_decode",
    "read_wav",
    "trim_silence",
    "warp_spectrum",
    "word_frames",
    "word_lengths",
    "write_wav",
]

SAMPLE_RATE = 8000
WAVE_LENGTH = 7200  # 0.9 s; the longest shipped word is 0.84 s
PEAK = 0.9
MU = 255
N_FFT = 256  # 32 ms windows at 8 kHz
HOP = 64  # 8 ms
LOG_FLOOR = 1e-5
GRIFFIN_LIM_BATCH = 64


# ----------------------------------------------------------------------------- mu-law


def mulaw_decode(codes: np.ndarray) -> np.ndarray:
    """uint8 mu-law bytes -> float32 in [-1, 1]: the inverse of continuous mu-law companding
    (mu = 255, ITU-T G.711's curve), x = sign(y) ((1 + mu)^|y| - 1) / mu, y = 2 q / mu - 1."""
    y = codes.astype(np.float64) / MU * 2 - 1
    return (np.sign(y) * np.expm1(np.abs(y) * math.log1p(MU)) / MU).astype(np.float32)


# ----------------------------------------------------------------------------- signal math


def hz_to_mel(hz):
    """The HTK mel scale, m = 2595 log10(1 + f / 700) (Young et al., The HTK Book, section
    "Filterbank Analysis")."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel):
    """The inverse of ``hz_to_mel``: f = 700 (10^(m / 2595) - 1)."""
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(
    n_freqs: int, n_mels: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None
) -> torch.Tensor:
    """Triangular mel filters over the STFT bins, HTK style: ``n_mels`` triangles with centres
    equally spaced on the mel scale between f_min and f_max, each rising from the previous centre
    to 1 at its own and falling to 0 at the next, on a linear frequency axis.

    Returns:
        (n_mels, n_freqs) float32 weights; mel power = weights @ |STFT|^2.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))  # (M + 2,)
    freqs = np.linspace(0, sample_rate / 2, n_freqs)  # (F,)
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (M, 1) each
    rise = (freqs - low) / (centre - low)
    fall = (high - freqs) / (high - centre)
    return torch.tensor(np.clip(np.minimum(rise, fall), 0, None), dtype=torch.float32)


def _window(n_fft: int) -> torch.Tensor:
    return torch.hann_window(n_fft, dtype=torch.float32)


def log_mel(wave: torch.Tensor, n_mels: int = 40) -> torch.Tensor:
    """The log-mel spectrogram: STFT (Hann window N_FFT, hop HOP, centred), power, mel
    filterbank, natural log with a floor.

    Args:
        wave: (L,) or (B, L) float waves at SAMPLE_RATE.

    Returns:
        (T, n_mels) or (B, T, n_mels), T = L // HOP + 1.
    """
    spec = torch.stft(wave.float(), N_FFT, HOP, window=_window(N_FFT), return_complex=True)
    power = spec.abs().pow(2)  # (B, F, T)
    mel = mel_filterbank(N_FFT // 2 + 1, n_mels, SAMPLE_RATE) @ power  # (B, M, T)
    return torch.log(mel + LOG_FLOOR).transpose(-1, -2)


def word_lengths(x: torch.Tensor) -> torch.Tensor:
    """(B, L) waves, each a word then exact zeros -> (B,) int64 samples up to its last nonzero
    sample (at least one STFT window)."""
    nonzero = x != 0
    last = torch.where(nonzero.any(1), x.shape[1] - nonzero.flip(1).int().argmax(1), 0)
    return last.clamp(min=N_FFT).long()


def _resample_time(frames: torch.Tensor, length: int) -> torch.Tensor:
    """(T, M) frames -> (length, M) by linear interpolation along time, ends kept."""
    if len(frames) == 1:
        return frames.expand(length, -1)
    out = F.interpolate(frames.t()[None], size=length, mode="linear", align_corners=True)
    return out[0].t()


def word_frames(x: torch.Tensor, n_frames: int, n_mels: int = 40) -> torch.Tensor:
    """The log-mel frames of each word (up to its length), resampled along time to ``n_frames``.

    Args:
        x: (B, L) waves, each a word then zeros.

    Returns:
        (B, n_frames, n_mels).
    """
    mels = log_mel(x, n_mels)  # (B, T, M)
    counts = (word_lengths(x) // HOP + 1).tolist()
    return torch.stack([_resample_time(m[:c], n_frames) for m, c in zip(mels, counts, strict=True)])


def griffin_lim(
    magnitude: torch.Tensor,
    length: int,
    n_iter: int,
    momentum: float = 0.99,
    phase: torch.Tensor | None = None,
):
    """A waveform whose STFT magnitude approaches ``magnitude`` (Griffin and Lim 1984, eq. 6:
    alternate projections, keep the phase, impose the magnitude), with the fast variant's
    momentum (Perraudin, Balazs and Sondergaard 2013, alpha = 0.99). Starts from zero phase, or
    from ``phase``, so it is deterministic.

    Args:
        magnitude: (B, N_FFT // 2 + 1, T) linear STFT magnitudes.
        length: samples of the output.
        phase: optional (B, N_FFT // 2 + 1, T) starting phases in radians (zero if None).

    Returns:
        (B, length) float32.
    """
    window = _window(N_FFT)
    spec = magnitude.to(torch.complex64)
    if phase is not None:
        spec = torch.polar(magnitude.float(), phase.float())
    previous = torch.zeros_like(spec)
    for _ in range(n_iter):
        wave = torch.istft(spec, N_FFT, HOP, window=window, length=length)
        rebuilt = torch.stft(wave, N_FFT, HOP, window=window, return_complex=True)
        accelerated = torch.add(rebuilt, rebuilt - previous, alpha=momentum)
        previous = rebuilt
        spec = accelerated * (magnitude / accelerated.abs().clamp(min=1e-8))
    return torch.istft(spec, N_FFT, HOP, window=window, length=length)


def frames_to_wave(
    frames: torch.Tensor, lengths: torch.Tensor, n_iter: int = 32, wave_length: int = WAVE_LENGTH
) -> torch.Tensor:
    """Log-mel word frames back to sound: each word's frames resampled to its duration's frame
    count, mel power -> linear power through the filterbank's pseudo-inverse (negatives set to
    0), Griffin-Lim, zeros after the word, scaled to a peak of PEAK.

    Args:
        frames: (B, n_frames, n_mels) log-mel frames as ``word_frames`` gives them.
        lengths: (B,) samples of each word.

    Returns:
        (B, wave_length) float32 waves.
    """
    lengths = lengths.long().clamp(N_FFT, wave_length)
    out = torch.zeros(len(frames), wave_length)
    order = lengths.argsort()
    for chunk in order.split(GRIFFIN_LIM_BATCH):  # words of like length: less padding to invert
        span = min(int(lengths[chunk].max()) + N_FFT, wave_length)
        out[chunk, :span] = _invert_words(frames[chunk], lengths[chunk], span, n_iter)
    return out


def _invert_words(frames: torch.Tensor, lengths: torch.Tensor, span: int, n_iter: int):
    """``frames_to_wave`` for words of at most ``span`` samples: (B, span) waves."""
    n_mels = frames.shape[-1]
    full = torch.full((len(frames), span // HOP + 1, n_mels), math.log(LOG_FLOOR))  # (B, T, M)
    for row, (f, n) in enumerate(zip(frames, lengths.tolist(), strict=True)):
        full[row, : n // HOP + 1] = _resample_time(f, n // HOP + 1)
    inverse = torch.linalg.pinv(mel_filterbank(N_FFT // 2 + 1, n_mels, SAMPLE_RATE))  # (F, M)
    power = (inverse @ (full.exp() - LOG_FLOOR).clamp(min=0).transpose(1, 2)).clamp(min=0)
    wave = griffin_lim(power.sqrt(), span, n_iter)  # (B, span)
    wave = wave * (torch.arange(span) < lengths[:, None])
    return PEAK * wave / wave.abs().amax(1, keepdim=True).clamp(min=1e-8)


# ----------------------------------------------------------------------------- perturbations


def _warp_bins(values: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """(B, F, T) values along a linear frequency axis -> the same moved up by ``factor`` (B,):
    out[f] = values[f / factor], linearly interpolated, the top bin repeated past the edge."""
    n_freqs = values.shape[1]
    source = (torch.arange(n_freqs) / factor[:, None]).clamp(max=n_freqs - 1)  # (B, F)
    low = source.floor().long()
    high = (low + 1).clamp(max=n_freqs - 1)
    weight = (source - low)[:, :, None]
    pick = lambda i: values.gather(1, i[:, :, None].expand(-1, -1, values.shape[2]))  # noqa: E731
    return pick(low) * (1 - weight) + pick(high) * weight


def warp_spectrum(
    x: torch.Tensor,
    formant: torch.Tensor,
    pitch: torch.Tensor,
    n_iter: int = 16,
    lifter: int = 20,
) -> torch.Tensor:
    """Move each wave's formants and pitch apart, keeping its duration: a source-filter split
    of the STFT magnitude, each part warped on its own, Griffin-Lim back to sound.

    The log magnitude of each frame splits into a smooth envelope (the vocal tract: cepstral
    liftering, quefrencies below ``lifter`` samples, Oppenheim and Schafer's homomorphic
    smoothing) and the rest (the harmonics of the pitch). The envelope's frequency axis is
    scaled by ``formant`` (the vocal-tract-length perturbation of Jaitly and Hinton 2013, "VTLP",
    here on the wave: > 1 reads as a shorter tract, a female or child voice), the rest by
    ``pitch``. Griffin-Lim (starting from the wave's own phase) finds a wave with that
    magnitude. Words shorter than the item keep zeros after them.

    Args:
        x: (B, L) waves, each a word then zeros.
        formant, pitch: (B,) frequency scale factors (1: unchanged).

    Returns:
        (B, L) float32 waves, each scaled to the peak of its input.
    """
    if len(x) > GRIFFIN_LIM_BATCH:  # in chunks: less memory, and faster
        parts = (t.split(GRIFFIN_LIM_BATCH) for t in (x, formant, pitch))
        chunks = zip(*parts, strict=True)
        return torch.cat([warp_spectrum(*c, n_iter=n_iter, lifter=lifter) for c in chunks])
    window = _window(N_FFT)
    spec = torch.stft(x.float(), N_FFT, HOP, window=window, return_complex=True)  # (B, F, T)
    log_mag = torch.log(spec.abs() + LOG_FLOOR)
    cepstrum = torch.fft.irfft(log_mag, n=N_FFT, dim=1)  # (B, N_FFT, T), real and even
    keep = torch.zeros(N_FFT)
    keep[:lifter] = 1
    keep[N_FFT - lifter + 1 :] = 1
    envelope = torch.fft.rfft(cepstrum * keep[:, None], dim=1).real  # (B, F, T)
    fine = log_mag - envelope
    warped = _warp_bins(envelope, formant.float()) + _warp_bins(fine, pitch.float())
    magnitude = (warped.exp() - LOG_FLOOR).clamp(min=0)
    out = griffin_lim(magnitude, x.shape[1], n_iter, phase=spec.angle())
    out = out * (torch.arange(x.shape[1]) < word_lengths(x)[:, None])
    peak = x.abs().amax(1, keepdim=True)
    return out * peak / out.abs().amax(1, keepdim=True).clamp(min=1e-8)


def change_speed(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Speed perturbation (Ko, Peddinti, Povey and Khudanpur 2015, "Audio augmentation for
    speech recognition"): each word played ``factor`` times faster, so shorter by that factor
    and with pitch and formants higher by it. Band-limited resampling (the word's spectrum cut
    or zero-padded, ``torch.fft``); a slowed word is cut at the item's length.

    Args:
        x: (B, L) waves, each a word then zeros.
        factor: (B,) speed factors (> 1 faster).

    Returns:
        (B, L) float32 waves, each word scaled to the peak of its input, zeros after it.
    """
    out = torch.zeros(x.shape, dtype=torch.float32)
    rows = zip(x, word_lengths(x).tolist(), factor.tolist(), strict=True)
    for row, (wave, n, f) in enumerate(rows):
        m = max(round(n / f), 2)
        spectrum = torch.fft.rfft(wave[:n].double())
        bins = min(len(spectrum), m // 2 + 1)
        word = torch.fft.irfft(spectrum[:bins], n=m)[: x.shape[1]].float()
        out[row, : len(word)] = word * wave.abs().max() / word.abs().max().clamp(min=1e-8)
    return out


def trim_silence(wave: torch.Tensor, floor_db: float = 40.0) -> torch.Tensor:
    """(L,) -> the part from the first to the last 10 ms frame within ``floor_db`` of the
    loudest one, one frame of margin each side (as the data tool trims)."""
    hop = SAMPLE_RATE // 100
    if len(wave) < hop:
        return wave
    frames = wave[: len(wave) // hop * hop].reshape(-1, hop)
    rms = frames.pow(2).mean(1).add(1e-12).sqrt()
    loud = torch.nonzero(20 * torch.log10(rms / rms.max()) > -floor_db).flatten()
    start, stop = max(int(loud[0]) - 1, 0) * hop, min(int(loud[-1]) + 2, len(frames)) * hop
    return wave[start:stop]


# ----------------------------------------------------------------------------- cepstra


def dct_matrix(n_out: int, n_in: int) -> torch.Tensor:
    """The orthonormal DCT-II, (n_out, n_in): row k = sqrt(2 / n) cos(pi k (i + 1/2) / n), row 0
    scaled by 1 / sqrt(2)."""
    k = torch.arange(n_out, dtype=torch.float64)[:, None]
    i = torch.arange(n_in, dtype=torch.float64)[None, :]
    basis = math.sqrt(2.0 / n_in) * torch.cos(math.pi * k * (i + 0.5) / n_in)
    basis[0] /= math.sqrt(2.0)
    return basis.float()


def mfcc(frames: torch.Tensor, n_mfcc: int = 13) -> torch.Tensor:
    """Mel-frequency cepstral coefficients (Davis and Mermelstein 1980): the DCT-II of log-mel
    frames (..., n_mels) -> (..., n_mfcc)."""
    return frames @ dct_matrix(n_mfcc, frames.shape[-1]).t()


# ----------------------------------------------------------------------------- WAV I/O


def read_wav(path: str | os.PathLike) -> torch.Tensor:
    """A PCM WAV file (8, 16, 24 or 32-bit integer samples, any rate, channels averaged) as an
    (L,) float32 wave in [-1, 1] at SAMPLE_RATE (``scipy.signal.resample_poly``).

    Raises:
        DataError: a missing file, or one the ``wave`` module cannot decode.
    """
    try:
        with wavelib.open(str(path), "rb") as f:
            width, channels, rate = f.getsampwidth(), f.getnchannels(), f.getframerate()
            raw = f.readframes(f.getnframes())
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; give a WAV file") from None
    except (wavelib.Error, EOFError, OSError) as err:
        why = str(err) or "the file is empty or cut short"
        raise DataError(f"{path}: not a PCM WAV file ({why}); give 8/16-bit PCM WAV") from None
    if width not in (1, 2, 3, 4):  # the wave module has refused 0 channels and 0 bytes
        raise DataError(f"{path}: {width}-byte samples cannot be read; give 8/16-bit PCM WAV")
    samples = _pcm_to_float(raw, width).reshape(-1, channels).mean(axis=1)
    if len(samples) == 0:
        raise DataError(f"{path}: the WAV file holds no samples; give a recording")
    if rate != SAMPLE_RATE:
        from scipy.signal import resample_poly

        g = math.gcd(rate, SAMPLE_RATE)
        samples = resample_poly(samples, SAMPLE_RATE // g, rate // g)
    return torch.from_numpy(np.clip(samples, -1, 1).astype(np.float32))


def _pcm_to_float(raw: bytes, width: int) -> np.ndarray:
    """Little-endian PCM bytes -> float64 in [-1, 1); 8-bit WAV samples are unsigned."""
    if width == 1:
        return (np.frombuffer(raw, np.uint8).astype(np.float64) - 128) / 128
    if width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        return np.where(value >= 1 << 23, value - (1 << 24), value) / float(1 << 23)
    dtype = {2: "<i2", 4: "<i4"}[width]
    return np.frombuffer(raw, dtype).astype(np.float64) / float(1 << (8 * width - 1))


def write_wav(path: str | os.PathLike, wave: torch.Tensor) -> None:
    """Write an (L,) or (1, L) wave in [-1, 1] as a 16-bit mono WAV at SAMPLE_RATE, atomically.

    Raises:
        DataError: not one wave.
    """
    if not torch.is_tensor(wave) or wave.dim() not in (1, 2) or wave.dim() == 2 and len(wave) != 1:
        shape = tuple(wave.shape) if torch.is_tensor(wave) else type(wave).__name__
        raise DataError(f"a wave to write must be a tensor (L,) or (1, L), got {shape}")
    pcm = (wave.detach().float().flatten().clamp(-1, 1) * 32767).round().short().numpy()
    buffer = io.BytesIO()
    with wavelib.open(buffer, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(SAMPLE_RATE)
        f.writeframes(pcm.astype("<i2").tobytes())
    atomic_write_bytes(path, buffer.getvalue())
