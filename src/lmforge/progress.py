"""Numbered stages of long work, printed to stderr (``2/4 counting n-grams``)."""

from __future__ import annotations

import sys
import time

__all__ = ["Stages"]


class Stages:
    """Prints ``i/n what`` as each stage starts and the elapsed time when all are done.

    Args:
        total: number of stages.
        enabled: print nothing when False (library calls default to quiet).
    """

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total = total
        self.enabled = enabled
        self.current = 0
        self.start = time.perf_counter()

    def next(self, what: str) -> None:
        self.current += 1
        if self.enabled:
            elapsed = time.perf_counter() - self.start
            print(
                f"[{elapsed:6.1f}s] {self.current}/{self.total} {what}", file=sys.stderr, flush=True
            )

    def done(self) -> None:
        if self.enabled:
            elapsed = time.perf_counter() - self.start
            print(f"[{elapsed:6.1f}s] done", file=sys.stderr, flush=True)
