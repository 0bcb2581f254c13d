"""Kills a tiny ``lmforge train`` with SIGKILL at every file operation and at a few steps, resumes
it, and compares its files with a run that was never killed; run by test_checkpoint.py.

The parent imports lmforge once and forks a child per run (no torch work happens in the parent).
A child that is to die counts the file operations of ``os`` (write, mkdir, rename, replace,
symlink, link, unlink, rmdir) and kills itself with SIGKILL on the N-th, before it happens; N runs
from 1 until a run ends on its own. After each kill the folder must keep the invariant of
``lmforge.checkpoint`` (a current checkpoint that matches its manifest, the weights beside it its
own), and the current step may only grow with N. Prints one JSON object; exits 1 when a killed
folder breaks the invariant or a resumed run's files differ from the reference's.

Usage: python checkpoint_kills.py WORKDIR
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path

os.environ["TOKENIZERS_PARALLELISM"] = "false"

import torch._dynamo  # noqa: E402, F401  (the optimizers import it lazily: once, here)

from lmforge.checkpoint import read_checkpoint  # noqa: E402
from lmforge.cli import main  # noqa: E402
from lmforge.errors import CheckpointError  # noqa: E402
from lmforge.train.trainer import Trainer  # noqa: E402

OPS = ("write", "mkdir", "rename", "replace", "symlink", "link", "unlink", "rmdir")
STEP_KILLS = (1, 2, 4, 5)  # after these steps (checkpoints at 3 and 6)
COMPARED = (
    "model.safetensors",
    "trainer_state/last.safetensors",
    "trainer_state/best.safetensors",
    "trainer_state/optimizer.safetensors",
)


def command(corpus: Path, out: Path) -> list[str]:
    settings = {
        "max_steps": 6,
        "eval_interval": 3,
        "log_interval": 1,
        "warmup_steps": 2,
        "batch_size": 4,
        "seq_len": 16,
        "max_seq_len": 16,
        "d_model": 16,
        "n_layers": 1,
        "n_heads": 2,
        "d_ff": 32,
        "dropout": 0.1,  # the resumed run needs the random state too
        "threads": 1,
    }
    sets = [item for key, value in settings.items() for item in ("--set", f"{key}={value}")]
    return ["train", "--model", "gpt", "--corpus", str(corpus), "--tokenizer", "char"] + [
        "--out",
        str(out),
        "--quiet",
        *sets,
    ]


def kill_at_op(n: int) -> None:
    """Die with SIGKILL just before the n-th file operation from now."""
    count = [0]
    for name in OPS:
        real = getattr(os, name)

        def counted(*args, _real=real, **kwargs):
            count[0] += 1
            if count[0] == n:
                os.kill(os.getpid(), signal.SIGKILL)
            return _real(*args, **kwargs)

        setattr(os, name, counted)


def kill_after_step(k: int) -> None:
    """Die with SIGKILL once step ``k`` is done."""
    real = Trainer._train_step

    def step(self):
        if self.step == k:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self)

    Trainer._train_step = step


def in_child(argv: list[str], arm=None) -> str:
    """Run the CLI in a forked child: "killed", or "exit <code>"."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            sys.stdout = sys.stderr = open(os.devnull, "w")
            if arm is not None:
                arm()
            code = main(argv)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        return "killed"
    return f"exit {os.waitstatus_to_exitcode(status)}"


def steps_logged(folder: Path) -> list[tuple]:
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r.get("loss"), r.get("valid_loss")) for r in records]


def differences(reference: Path, folder: Path) -> list[str]:
    """What differs from the reference run: weights, checkpoint files, log, leftovers."""
    wrong = [
        name for name in COMPARED if (reference / name).read_bytes() != (folder / name).read_bytes()
    ]
    if steps_logged(reference) != steps_logged(folder):
        wrong.append("metrics.jsonl")
    if (folder / "model.safetensors").is_symlink():
        wrong.append("model.safetensors is still a symlink")
    left = (
        sorted(p.name for p in folder.rglob(".*.tmp"))
        + sorted(p.name for p in (folder / "checkpoints").iterdir())[1:]
    )
    return wrong + [f"leftover {name}" for name in left]


def current_step(folder: Path) -> tuple[int, list[str]]:
    """The step of the killed run's current checkpoint (0: none yet), and what breaks the
    invariant of ``lmforge.checkpoint``: a damaged current checkpoint, or weights beside it that
    are not its own."""
    if not os.path.lexists(folder / "trainer_state"):
        weights = folder / "model.safetensors"
        return 0, ["weights without a checkpoint"] if weights.exists() else []
    try:
        path, manifest = read_checkpoint(folder)
    except CheckpointError as err:
        return 0, [str(err)]
    own = (path / "model.safetensors").read_bytes()
    if (folder / "model.safetensors").read_bytes() != own:
        return manifest["step"], ["model.safetensors is not the current checkpoint's"]
    return manifest["step"], []


def trial(corpus: Path, reference: Path, folder: Path, arm) -> tuple[str, int, list[str]]:
    """Kill a run as ``arm`` says, check the folder, then finish the run (resume, or start
    over if it had not begun) and compare it with the reference.

    Returns:
        (how the first run ended, its current checkpoint's step, what went wrong).
    """
    argv = command(corpus, folder)
    first = in_child(argv, arm)
    if first != "killed":
        return first, 0, []
    step, wrong = current_step(folder)
    again = argv + ["--resume"] if (folder / "config.json").exists() else argv
    finished = in_child(again)
    if finished != "exit 0":
        return "killed", step, [*wrong, f"the resumed run ended with {finished}"]
    wrong += differences(reference, folder)
    shutil.rmtree(folder)
    return "killed", step, wrong


def run(work: Path) -> dict:
    corpus = work / "corpus.txt"
    words = "the cat sat on a mat and the dog ran to the red house".split()
    lines = [
        " ".join(words[(i * 7 + j) % len(words)] for j in range(3 + i % 6)) for i in range(200)
    ]
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    reference = work / "reference"
    assert in_child(command(corpus, reference)) == "exit 0"
    failures, points, steps = {}, 0, []
    for k in STEP_KILLS:
        outcome, _, wrong = trial(
            corpus, reference, work / f"step{k}", lambda k=k: kill_after_step(k)
        )
        points += outcome == "killed"
        if outcome != "killed" or wrong:
            failures[f"after step {k}"] = [outcome, *wrong]
    while True:
        n = len(steps) + 1
        outcome, step, wrong = trial(corpus, reference, work / f"op{n}", lambda n=n: kill_at_op(n))
        if outcome != "killed":
            break
        points += 1
        steps.append(step)
        if wrong:
            failures[f"file operation {n}"] = wrong
    if steps != sorted(steps) or set(steps) != {0, 3, 6}:  # progress is never lost
        failures["checkpoint steps by kill point"] = steps
    return {
        "kill_points": points,
        "file_operations": len(steps),
        "final": outcome,
        "failures": failures,
    }


if __name__ == "__main__":
    result = run(Path(sys.argv[1]))
    print(json.dumps(result))
    sys.exit(1 if result["failures"] or result["final"] != "exit 0" else 0)
