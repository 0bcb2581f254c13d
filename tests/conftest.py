"""Shared fixtures: where ../shared is, a tiny corpus, and a CLI runner."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch

from lmforge.cli import main

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SHARED_DATA = SHARED / "data"

TINY_TEXT = [
    "the cat sat on the mat",
    "the dog sat on the log",
    "a cat and a dog",
    "",
    "the cat saw the dog on the mat",
    "a dog sat",
    "the mat was on the log",
    "the cat sat",
    "a cat saw a dog and the dog saw a cat",
    "the log was on the mat",
]


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test when that folder is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (it ships beside the project in CI, not in a clone)")
    return path


@contextlib.contextmanager
def one_thread():
    """One torch thread for a ``with`` block: module fixtures run before the autouse fixture."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread; two oversubscribe a busy 2-core machine."""
    with one_thread():
        yield


@pytest.fixture
def tiny_lines() -> list[str]:
    return list(TINY_TEXT)


@pytest.fixture
def run_cli(capsys):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run
