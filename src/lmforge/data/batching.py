"""Batches: one token stream cut into windows or parallel BPTT rows, and padded rows.

Every neural family reads a split as one stream: ``<s>``, then each line's tokens followed by
``</s>``. The targets are every token after the first, so a split of L lines and W tokens has
exactly W + L targets: the same tokens the n-gram model scores (each line's tokens and its
``</s>``, never ``<s>``). Neural models may read across line ends, as in Bengio et al. (2003) and
Mikolov/Zaremba's stream setting; the n-gram model starts afresh at each line, as KenLM does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lmforge.errors import DataError
from lmforge.tokenize import BOS, EOS, Tokenizer

__all__ = [
    "EpochOrder",
    "StreamBatches",
    "WindowBatches",
    "eval_rows",
    "eval_windows",
    "pad_rows",
    "token_stream",
]


def token_stream(tokenizer: Tokenizer, lines: Sequence[str]) -> torch.Tensor:
    """(N,) int64: ``<s>``, then each line's token ids and ``</s>``."""
    encoded = tokenizer.encode_batch(list(lines), markers=False)
    eos = tokenizer.token_to_id(EOS)
    sizes = np.fromiter((len(ids) + 1 for ids in encoded), np.int64, len(encoded))
    out = np.empty(1 + int(sizes.sum()), dtype=np.int64)
    out[0] = tokenizer.token_to_id(BOS)
    out[np.cumsum(sizes)] = eos
    body = np.ones(len(out), dtype=bool)
    body[0] = False
    body[np.cumsum(sizes)] = False
    out[body] = np.fromiter((i for ids in encoded for i in ids), np.int64, int(body.sum()))
    return torch.from_numpy(out)


@dataclass(frozen=True)
class WindowBatches:
    """Random windows of ``seq_len + 1`` tokens (nanoGPT's batches), reproducible per step.

    Batch ``step`` depends only on (seed, step), so a resumed run sees the same data.
    """

    stream: torch.Tensor
    batch_size: int
    seq_len: int
    seed: int

    def __post_init__(self) -> None:
        if len(self.stream) < self.seq_len + 2:
            raise DataError(
                f"the training text has {len(self.stream)} tokens, fewer than one window of "
                f"{self.seq_len + 1}; give more text or a smaller seq_len"
            )

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(inputs (B, T), targets (B, T), reset_state) for ``step``."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        starts = torch.randint(
            len(self.stream) - self.seq_len - 1, (self.batch_size,), generator=generator
        )
        index = starts[:, None] + torch.arange(self.seq_len + 1)  # (B, T+1)
        window = self.stream[index]
        return window[:, :-1], window[:, 1:], True


@dataclass(frozen=True)
class StreamBatches:
    """The stream cut into ``batch_size`` parallel rows, read ``seq_len`` tokens at a time
    (truncated BPTT, Zaremba et al. 2014); the state is reset at the start of each epoch."""

    stream: torch.Tensor
    batch_size: int
    seq_len: int

    def __post_init__(self) -> None:
        if self.chunks_per_epoch < 1:
            raise DataError(
                f"the training text has {len(self.stream)} tokens, too few for {self.batch_size} "
                f"rows of {self.seq_len + 1}; give more text or smaller batch_size/seq_len"
            )

    @property
    def row_length(self) -> int:
        return (len(self.stream) - 1) // self.batch_size

    @property
    def chunks_per_epoch(self) -> int:
        return self.row_length // self.seq_len

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        chunk = step % self.chunks_per_epoch
        rows = self.stream[: self.batch_size * self.row_length + 1]
        start = chunk * self.seq_len
        offsets = torch.arange(self.batch_size)[:, None] * self.row_length + start
        index = offsets + torch.arange(self.seq_len + 1)  # (B, T+1)
        window = rows[index]
        return window[:, :-1], window[:, 1:], chunk == 0


class EpochOrder:
    """Examples taken epoch after epoch, each epoch in a permutation drawn from (seed, epoch).

    Batch ``step`` holds the examples at positions ``step * B .. step * B + B - 1`` of the
    concatenated epoch orders, so it depends only on (seed, step) and a batch may straddle two
    epochs. The two latest epochs' orders are kept.
    """

    def __init__(self, n_examples: int, seed: int) -> None:
        self.n_examples, self.seed = n_examples, seed
        self._orders: dict[int, list[int]] = {}

    def _order(self, epoch: int) -> list[int]:
        if epoch not in self._orders:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(self.n_examples, generator=generator).tolist()
            self._orders = {e: o for e, o in self._orders.items() if e == epoch - 1}
            self._orders[epoch] = order
        return self._orders[epoch]

    def batch(self, step: int, batch_size: int) -> list[int]:
        """The example numbers of batch ``step``."""
        n = self.n_examples
        positions = range(step * batch_size, (step + 1) * batch_size)
        return [self._order(p // n)[p % n] for p in positions]


def eval_windows(
    stream: torch.Tensor, context_size: int, max_seq_len: int | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Overlapping windows that score every target once, each with as much context as fits.

    A model limited to ``max_seq_len`` positions (GPT) gets windows of that length scoring their
    second half; a fixed-context model (NNLM, ``context_size`` previous tokens) gets windows of
    256 + context_size tokens scoring the last 256.

    Yields:
        inputs (T,), targets (T,), score mask (T,) bool.
    """
    if max_seq_len:
        width, stride = max_seq_len, max(1, max_seq_len // 2)
    else:
        width, stride = 256 + context_size, 256
    n_targets = len(stream) - 1
    for start in range(0, n_targets, stride):
        end = min(start + stride, n_targets)
        first = max(0, end - width)
        mask = torch.arange(first, end) >= start
        yield stream[first:end], stream[first + 1 : end + 1], mask


def eval_rows(stream: torch.Tensor, rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The stream as ``rows`` contiguous rows for recurrent evaluation, right-padded.

    Returns:
        inputs (R, L), targets (R, L), mask (R, L) bool; the mask covers every target once.
    """
    n_targets = len(stream) - 1
    rows = max(1, min(rows, n_targets))
    length = -(-n_targets // rows)
    padded = torch.zeros(rows * length + 1, dtype=stream.dtype)
    padded[: len(stream)] = stream
    index = torch.arange(rows)[:, None] * length + torch.arange(length)  # (R, L)
    mask = index < n_targets
    return padded[index], padded[index + 1], mask


def pad_rows(
    rows: Sequence[Sequence[int] | torch.Tensor], pad_id: int, dtype: torch.dtype = torch.long
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of different lengths as one tensor, right-padded to the longest (width at least 1).

    Args:
        rows: lists of ids (or 1-D tensors; values of ``dtype``).
        pad_id: the value after each row's end.
        dtype: the values' dtype (``torch.bool`` for masks).

    Returns:
        values (B, T) of ``dtype``; mask (B, T) bool, True at the rows' own positions.
    """
    width = max([1, *map(len, rows)])
    values = torch.full((len(rows), width), pad_id, dtype=dtype)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, row in enumerate(rows):
        values[i, : len(row)] = torch.as_tensor(row, dtype=dtype)
        mask[i, : len(row)] = True
    return values, mask
