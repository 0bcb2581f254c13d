"""One writer per output folder: a second writer fails at once, naming the holder; a stale lock
is taken over; two ``lmforge train`` runs on one folder leave the first's model intact."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from lmforge.errors import CheckpointError
from lmforge.folders import load_model, save_model
from lmforge.lock import LOCK_FILE, folder_lock
from lmforge.models.nnlm import NNLM, NNLMConfig
from lmforge.tokenize import train_tokenizer


def test_a_second_writer_fails_at_once_naming_the_holder(tmp_path):
    with folder_lock(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())
        with pytest.raises(CheckpointError, match=f"pid {os.getpid()}") as err:
            with folder_lock(tmp_path):
                pass
        assert "another lmforge process" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / LOCK_FILE).exists()
    with folder_lock(tmp_path):  # free again
        pass


def test_a_stale_lock_is_taken_over(tmp_path):
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    (tmp_path / LOCK_FILE).write_text(gone.stdout)  # its process has ended
    with folder_lock(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())


def test_a_folder_the_lock_created_is_removed_when_left_empty(tmp_path):
    with folder_lock(tmp_path / "new"):
        assert (tmp_path / "new").is_dir()
    assert not (tmp_path / "new").exists()


def test_save_model_holds_the_lock(tmp_path):
    tokenizer = train_tokenizer("char", ["abc"])
    model = NNLM(NNLMConfig(vocab_size=tokenizer.vocab_size, context=2, d_model=4, d_hidden=8))
    with folder_lock(tmp_path), pytest.raises(CheckpointError, match="pid"):
        save_model(tmp_path, model, tokenizer)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    save_model(tmp_path, model, tokenizer)
    torch.testing.assert_close(load_model(tmp_path)[0].state_dict(), model.state_dict())


def test_two_runs_on_one_folder_the_second_fails_and_the_first_loads(run_cli, tmp_path):
    corpus = tmp_path / "lines.txt"
    corpus.write_text("\n".join(["the cat sat on the mat", "a dog ran far"] * 50), encoding="utf-8")
    out = tmp_path / "run"
    train = ["train", "--model", "nnlm", "--corpus", str(corpus), "--out", str(out), "--quiet"]
    sets = ["--set", "batch_size=4", "--set", "eval_interval=500", "--set", "threads=1"]
    first = subprocess.Popen(
        [sys.executable, "-m", "lmforge", *train, *sets, "--set", "max_steps=3000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / "config.json").exists() and first.poll() is None:
            assert time.monotonic() < deadline, "the first run did not start"
            time.sleep(0.05)
        code, _, err = run_cli(*train, *sets, "--set", "max_steps=5", "--overwrite")
        still_running = first.poll() is None
    finally:
        stdout, stderr = first.communicate(timeout=300)
    assert still_running, "the first run ended before the second started; give it more steps"
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"pid {first.pid}" in err and "Traceback" not in err
    assert first.returncode == 0, stderr
    model, _, record = load_model(out)
    assert record["train_config"]["max_steps"] == 3000
    assert not (out / LOCK_FILE).exists()
