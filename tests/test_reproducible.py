"""A run is reproducible: the same ``lmforge train`` command in two processes (each with its own
hash seed) writes byte-identical weights."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SETTINGS = {
    "max_steps": 6,
    "eval_interval": 3,
    "batch_size": 4,
    "seq_len": 16,
    "max_seq_len": 16,
    "d_model": 16,
    "n_layers": 1,
    "n_heads": 2,
    "d_ff": 32,
    "dropout": 0.1,
    "threads": 1,
}


# wordpiece too: Hugging Face's WordPiece trainer numbers its vocabulary differently in every
# process, so lmforge renumbers it in a fixed order (``tokenize.subword._renumber_wordpiece``).
@pytest.mark.slow
@pytest.mark.parametrize("tokenizer", ["char", "bpe", "wordpiece"])
def test_the_same_train_command_in_two_processes_writes_the_same_weights(tokenizer, tmp_path):
    corpus = tmp_path / "lines.txt"
    words = "the cat sat on a mat and the dog ran to the red house".split()
    lines = [
        " ".join(words[(i * 5 + j) % len(words)] for j in range(2 + i % 7)) for i in range(300)
    ]
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    sets = [item for key, value in SETTINGS.items() for item in ("--set", f"{key}={value}")]
    runs = []
    for hash_seed in ("1", "2"):
        command = [sys.executable, "-m", "lmforge", "train", "--model", "gpt", "--corpus", corpus]
        command += ["--tokenizer", tokenizer, "--vocab-size", "60", "--quiet", *sets]
        command += ["--out", tmp_path / f"run{hash_seed}"]
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        runs.append(subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True))
    for run in runs:
        assert run.wait(timeout=300) == 0, run.stderr.read()
        run.stderr.close()
    one, two = (tmp_path / f"run{s}" / "model.safetensors" for s in ("1", "2"))
    assert one.read_bytes() == two.read_bytes()
