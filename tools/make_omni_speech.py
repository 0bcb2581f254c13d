"""Build the spoken-word data of the any-to-any model (issue 20) with espeak-ng and flite.

    apt-get install -y espeak-ng flite          # Debian 12: espeak-ng 1.51, flite 2.2
    python tools/make_omni_speech.py src/lmforge/data/builtin/omni

Each of the 30 WORDS (the ten digits, ten Speech-Commands words, ten colours) is spoken by
* espeak-ng (formant synthesis): ESPEAK_PER_WORD draws of (voice, variant, speed, pitch) from the
  grid below, seeded, `espeak-ng -v VOICE+VARIANT -s SPEED -p PITCH -w OUT.wav WORD`;
* flite 2.2 at its five general voices (`flite -lv`; `awb_time` speaks only times and is left
  out) at three speeds and three pitches, `flite -voice V --setf duration_stretch=S
  --setf PITCH_FEATURE=P -t WORD -o OUT.wav` (kal/kal16 read `int_f0_target_mean` in Hz, the
  clustergen voices awb/slt read `f0_shift`, a factor; rms ignores both, so its repeats are
  dropped as exact duplicates).

Every recording is mixed to mono, resampled to 8 kHz (`scipy.signal.resample_poly`), trimmed of
leading and trailing silence (frames 40 dB under the loudest 10 ms frame, 10 ms margin kept),
cut to MAX_SECONDS, scaled to a peak of 0.9 and stored as 8-bit mu-law (mu = 255, the
continuous form of ITU-T G.711's companding, telephone quality at 8 kHz) to keep the package
small. Output: `speech.npz` (`np.savez_compressed`, no pickled objects): `mulaw` (uint8, all
words end to end), `offsets` (N + 1), `word`, `voice`, `synth`, `command` (one string per
item), `meta` (JSON: tool versions, sample rate, encoding); and `LICENSE-speech`, the note on
the tools, their licences and the file's sha256.
"""

import hashlib
import io
import itertools
import json
import random
import re
import subprocess
import sys
import tempfile
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

RATE = 8000
MAX_SECONDS = 1.0
PEAK = 0.9
MU = 255
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
COLOURS = ("red", "green", "blue", "yellow", "black", "white", "orange", "purple", "pink", "brown")
WORDS = DIGITS + COMMANDS + COLOURS

ESPEAK_PER_WORD = 27
ESPEAK_VOICES = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-029",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-us-nyc",
)
ESPEAK_VARIANTS = (
    "",
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "klatt",
    "klatt2",
    "klatt3",
    "croak",
)
ESPEAK_SPEEDS = (120, 145, 170, 200, 230)
ESPEAK_PITCHES = (25, 40, 50, 60, 75)

FLITE_STRETCH = (0.85, 1.0, 1.2)
FLITE_PITCH = {
    "kal": ("int_f0_target_mean", (85, 105, 130)),
    "kal16": ("int_f0_target_mean", (85, 105, 130)),
    "awb": ("f0_shift", (0.85, 1.0, 1.15)),
    "rms": ("f0_shift", (1.0,)),
    "slt": ("f0_shift", (0.85, 1.0, 1.15)),
}


def espeak_commands(seed: int = 0) -> list[tuple[str, str, str, list[str]]]:
    """(word, voice, synth, argv) for every espeak-ng recording; OUT stands for the file."""
    rng = random.Random(seed)
    grid = list(itertools.product(ESPEAK_VOICES, ESPEAK_VARIANTS, ESPEAK_SPEEDS, ESPEAK_PITCHES))
    jobs = []
    for word in WORDS:
        for voice, variant, speed, pitch in rng.sample(grid, ESPEAK_PER_WORD):
            name = voice + (f"+{variant}" if variant else "")
            argv = ["espeak-ng", "-v", name, "-s", str(speed), "-p", str(pitch), "-w", "OUT", word]
            jobs.append((word, name, "espeak-ng", argv))
    return jobs


def flite_commands() -> list[tuple[str, str, str, list[str]]]:
    """(word, voice, synth, argv) for every flite recording."""
    jobs = []
    for word, (voice, (feature, pitches)) in itertools.product(WORDS, FLITE_PITCH.items()):
        for stretch, pitch in itertools.product(FLITE_STRETCH, pitches):
            argv = [
                "flite",
                "-voice",
                voice,
                "--setf",
                f"duration_stretch={stretch}",
                "--setf",
                f"{feature}={pitch}",
                "-t",
                word,
                "-o",
                "OUT",
            ]
            jobs.append((word, voice, "flite", argv))
    return jobs


def synthesise(argv: list[str], folder: str) -> np.ndarray:
    """Run one command; its wave as float64 mono at its own rate, and the rate."""
    out = str(Path(folder) / (hashlib.sha1(" ".join(argv).encode()).hexdigest() + ".wav"))
    subprocess.run([out if a == "OUT" else a for a in argv], check=True, capture_output=True)
    with wave.open(out) as w:
        assert w.getsampwidth() == 2, argv
        rate, channels = w.getframerate(), w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64) / 32768
    Path(out).unlink()
    return data.reshape(-1, channels).mean(axis=1), rate


def trim(x: np.ndarray, floor_db: float = 40.0) -> np.ndarray:
    """Drop the leading and trailing 10 ms frames under (loudest frame - floor_db)."""
    hop = RATE // 100
    frames = x[: len(x) // hop * hop].reshape(-1, hop)
    rms = np.sqrt((frames**2).mean(axis=1) + 1e-12)
    loud = np.flatnonzero(20 * np.log10(rms / rms.max()) > -floor_db)
    start, stop = max(loud[0] - 1, 0) * hop, min(loud[-1] + 2, len(frames)) * hop
    return x[start:stop]


def to_mulaw(x: np.ndarray) -> np.ndarray:
    """Continuous mu-law companding of x in [-1, 1] to uint8 (mu = 255)."""
    y = np.sign(x) * np.log1p(MU * np.abs(x)) / np.log1p(MU)
    return np.round((y + 1) / 2 * MU).astype(np.uint8)


def prepare(data: np.ndarray, rate: int) -> np.ndarray:
    """Resample to RATE, trim, cut to MAX_SECONDS, scale to PEAK; mu-law bytes."""
    g = np.gcd(rate, RATE)
    x = resample_poly(data, RATE // g, rate // g) if rate != RATE else data
    x = trim(x)[: int(MAX_SECONDS * RATE)]
    return to_mulaw(PEAK * x / np.abs(x).max())


NOTE = """Spoken words of lmforge.omni.speech (speech.npz)

Made by tools/make_omni_speech.py on Debian 12 with
  espeak-ng: {espeak}   (Debian package espeak-ng 1.51+dfsg-10+deb12u2)
  flite:     {flite}   (Debian package flite 2.2-5)
Every item's exact command line is stored beside it (the `command` array of speech.npz; OUT
stands for a temporary file), e.g.
  {example_espeak}
  {example_flite}
then resampled to 8 kHz, trimmed, scaled to a peak of 0.9 and stored as 8-bit mu-law.
Items: {items}; file: speech.npz, {size:,} bytes, sha256 {sha}.

What the audio is. Synthesised speech: the output of the two programs run on single English
words we chose. No recording of a person is included, and no part of either program or of its
data files is shipped here.

The tools' licences.
* eSpeak NG (https://github.com/espeak-ng/espeak-ng): GNU GPL version 3 or later. The GPL covers
  the program, not what it produces from the user's input: the FSF's GPL FAQ ("Is there some way
  that I can GPL the output people get from use of my program?") says the output of a program
  is not covered unless it copies part of the program into it. A formant synthesiser computes
  its sound from rules and parameters; we read that as this output carrying no GPL terms.
* Flite (http://cmuflite.org), Carnegie Mellon University, and its voices kal, kal16 (CMU
  diphone voice), awb, rms, slt (built from the CMU ARCTIC databases): a BSD-like free licence
  ("Permission is hereby granted, free of charge, to use and distribute this software ...
  without restriction", keeping the copyright notice, marking modifications, not using the
  authors' names to endorse). The voices awb, rms and slt are statistical models of real
  speakers' recordings released under that licence; their synthesised output is shipped here
  with this notice, Copyright (c) 1999-2016 Carnegie Mellon University for the programs and
  voices.

This is our reading, not legal advice. lmforge ships the audio under its own licence with this
note; anyone may re-create it bit for bit with the tool above and the same package versions.
"""


def version(argv: list[str]) -> str:
    """The first dotted version number a tool prints ("1.51", "2.2-current")."""
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    found = re.search(r"\d+\.\d+[\w.+-]*", out)
    return found.group(0) if found else "unknown"


def main(out: str) -> None:
    jobs = espeak_commands() + flite_commands()
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(4) as pool:
        waves = list(pool.map(lambda job: prepare(*synthesise(job[3], tmp)), jobs))
    seen, keep = set(), []
    for job, w in zip(jobs, waves, strict=True):
        key = (job[0], job[1], w.tobytes())
        if key not in seen:
            seen.add(key)
            keep.append((job, w))
    print(f"{len(jobs)} recordings, {len(jobs) - len(keep)} exact duplicates dropped")
    lengths = np.array([len(w) for _, w in keep])
    meta = {
        "sample_rate": RATE,
        "encoding": f"mu-law {MU}, uint8",
        "peak": PEAK,
        "espeak-ng": version(["espeak-ng", "--version"]),
        "flite": version(["flite", "--version"]),
        "max_seconds": MAX_SECONDS,
    }
    dst = Path(out)
    dst.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        mulaw=np.concatenate([w for _, w in keep]),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        word=np.array([j[0] for j, _ in keep]),
        voice=np.array([j[1] for j, _ in keep]),
        synth=np.array([j[2] for j, _ in keep]),
        command=np.array([" ".join(j[3]) for j, _ in keep]),
        meta=np.array(json.dumps(meta)),
    )
    (dst / "speech.npz").write_bytes(buffer.getvalue())
    sha = hashlib.sha256(buffer.getvalue()).hexdigest()
    example = {j[2]: " ".join(j[3]) for j, _ in reversed(keep)}  # the first of each synth
    note = NOTE.format(
        espeak=meta["espeak-ng"],
        flite=meta["flite"],
        items=len(keep),
        size=len(buffer.getvalue()),
        sha=sha,
        example_espeak=example["espeak-ng"],
        example_flite=example["flite"],
    )
    (dst / "LICENSE-speech").write_text(note, encoding="utf-8")
    seconds = lengths / RATE
    print(f"{len(keep)} items, {seconds.sum():.0f} s, median {np.median(seconds):.2f} s,")
    print(f"max {seconds.max():.2f} s, {len(buffer.getvalue()):,} bytes")


if __name__ == "__main__":
    main(sys.argv[1])
