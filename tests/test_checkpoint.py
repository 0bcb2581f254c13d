"""Checkpoints written as a whole: one current checkpoint, checked against its manifest; a run
refuses another run's folder; a kill at any file operation, then a resume, changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lmforge.checkpoint import (
    clean_leftovers,
    read_checkpoint,
    start_run,
    write_checkpoint,
)
from lmforge.errors import CheckpointError
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.train.config import TrainConfig
from lmforge.train.trainer import Trainer

STREAM = (torch.arange(2000) * 7919 % 23).long()
WEIGHTS = "model.safetensors"


def checkpoint(folder: Path, step: int, run_id: str = "run-a", finished: bool = False) -> None:
    with write_checkpoint(folder, step, run_id, finished) as add:
        add("last.safetensors", b"last %d" % step)
        add("model.safetensors", b"weights %d" % step)


def test_a_checkpoint_is_made_current_whole_and_the_older_one_removed(tmp_path):
    checkpoint(tmp_path, 1)
    checkpoint(tmp_path, 2)
    path, manifest = read_checkpoint(tmp_path, "run-a")
    assert manifest["step"] == 2 and set(manifest["files"]) == {"last.safetensors", WEIGHTS}
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == [path.name]
    assert (tmp_path / "trainer_state").resolve() == path.resolve()
    assert (tmp_path / WEIGHTS).is_symlink() and (tmp_path / WEIGHTS).read_bytes() == b"weights 2"


def test_a_finished_run_keeps_its_weights_as_a_plain_file(tmp_path):
    checkpoint(tmp_path, 5, finished=True)
    weights = tmp_path / WEIGHTS
    assert not weights.is_symlink() and weights.read_bytes() == b"weights 5"
    checkpoint(tmp_path, 6)  # a resumed run: the folder's weights follow the checkpoint again
    assert weights.is_symlink() and weights.read_bytes() == b"weights 6"


def test_an_error_while_writing_leaves_the_current_checkpoint(tmp_path):
    checkpoint(tmp_path, 1)
    with pytest.raises(RuntimeError), write_checkpoint(tmp_path, 2, "run-a") as add:
        add("last.safetensors", b"half")
        raise RuntimeError("disk full")
    assert read_checkpoint(tmp_path)[1]["step"] == 1
    assert len(list((tmp_path / "checkpoints").iterdir())) == 1


@pytest.mark.parametrize(
    "damage, named",
    [
        (lambda path: path.write_bytes(b"last 1, longer"), "bytes, but its manifest says"),
        (lambda path: path.write_bytes(b"LAST 1"), "sha256 does not match"),
        (lambda path: path.unlink(), "missing from its checkpoint"),
    ],
)
def test_a_damaged_checkpoint_names_the_file_that_does_not_match(tmp_path, damage, named):
    checkpoint(tmp_path, 1)
    damage(tmp_path / "trainer_state" / "last.safetensors")
    with pytest.raises(CheckpointError, match=named) as err:
        read_checkpoint(tmp_path)
    assert "last.safetensors" in str(err.value) and "--overwrite" in str(err.value)
    assert "\n" not in str(err.value)


def test_only_a_checkpoint_of_the_same_run_is_resumed(tmp_path):
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        read_checkpoint(tmp_path, "run-a")
    checkpoint(tmp_path, 1, run_id="run-a")
    with pytest.raises(CheckpointError, match="belongs to run run-a, not to the run run-b"):
        read_checkpoint(tmp_path, "run-b")


def test_leftovers_of_a_killed_write_are_cleaned(tmp_path):
    checkpoint(tmp_path, 1)
    (tmp_path / ".config.json.0badf00d.tmp").write_text("{")
    (tmp_path / "checkpoints" / ".step-00000002.abcdef.0badf00d.tmp").mkdir()
    (tmp_path / "checkpoints" / "step-00000002.abcdef").mkdir()  # renamed, never made current
    clean_leftovers(tmp_path)
    assert not list(tmp_path.glob(".*.tmp"))
    assert len(list((tmp_path / "checkpoints").iterdir())) == 1
    assert read_checkpoint(tmp_path)[1]["step"] == 1


def test_a_new_run_refuses_a_folder_with_a_run_unless_told_to_overwrite(tmp_path):
    checkpoint(tmp_path, 1)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="already holds a run or model"):
        start_run(tmp_path)
    start_run(tmp_path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # only the run's files go


def test_what_a_run_killed_before_its_record_left_is_removed(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{}")
    start_run(tmp_path)
    assert not (tmp_path / "tokenizer.json").exists()


def tiny_trainer(folder: Path, max_steps: int = 8, d_model: int = 16) -> Trainer:
    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=23, d_model=d_model, n_layers=1, n_heads=2, d_ff=32, max_seq_len=8
    )
    model = GPT(config)
    config = TrainConfig(
        batch_size=4,
        seq_len=8,
        max_steps=max_steps,
        warmup_steps=2,
        eval_interval=4,
        log_interval=1,
    )
    return Trainer(model, config, STREAM, STREAM[:200], out_dir=folder, progress=False)


def test_a_resumed_run_cuts_its_log_back_to_the_checkpoint(tmp_path):
    tiny_trainer(tmp_path).fit(stop_at=6)  # killed after step 6; its checkpoint is step 4
    result = tiny_trainer(tmp_path).fit(resume=True)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in records if "loss" in r]
    assert train_steps == list(range(1, 9))  # no step logged twice
    assert result.history == records


def test_a_resumed_run_with_nothing_left_to_do_keeps_its_files(tmp_path):
    tiny_trainer(tmp_path).fit()
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert tiny_trainer(tmp_path).fit(resume=True).steps == 8
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_resuming_with_other_model_sizes_is_one_clear_line(tmp_path):
    tiny_trainer(tmp_path).fit(stop_at=4)
    with pytest.raises(CheckpointError, match="size mismatch for .*own model settings") as err:
        tiny_trainer(tmp_path, d_model=24).fit(resume=True)
    assert "\n" not in str(err.value)


def test_the_cli_refuses_to_start_a_new_run_over_another(run_cli, tmp_path):
    corpus = tmp_path / "lines.txt"
    corpus.write_text("\n".join(["the cat sat on the mat", "a dog ran"] * 40), encoding="utf-8")
    out = tmp_path / "run"
    train = ["train", "--model", "nnlm", "--corpus", corpus, "--out", out, "--quiet"]
    train += ["--set", "max_steps=4", "--set", "eval_interval=2", "--set", "batch_size=4"]
    assert run_cli(*train)[0] == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, _, err = run_cli(*train, "--set", "lr=0.01")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "already holds a run" in err and "--overwrite" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    code, _, err = run_cli(*train, "--set", "lr=0.01", "--overwrite")
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["train_config"]["lr"] == 0.01


@pytest.mark.slow
def test_a_kill_at_any_file_operation_then_a_resume_gives_the_same_files(tmp_path):
    script = Path(__file__).with_name("checkpoint_kills.py")
    done = subprocess.run(
        [sys.executable, script, tmp_path], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["file_operations"] > 40 and result["kill_points"] > 40
