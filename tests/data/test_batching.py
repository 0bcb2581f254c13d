"""Padding rows and walking through examples epoch after epoch."""

from __future__ import annotations

import torch

from lmforge.data.batching import EpochOrder, pad_rows


def test_pad_rows_pads_on_the_right_and_marks_the_real_positions():
    ids, mask = pad_rows([[5, 6, 7], [8], []], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0]]
    assert mask.tolist() == [[True, True, True], [True, False, False], [False] * 3]
    assert ids.dtype == torch.long and mask.dtype == torch.bool


def test_pad_rows_takes_tensors_and_other_dtypes():
    rows = [torch.tensor([True, False]), torch.tensor([True])]
    values, mask = pad_rows(rows, False, torch.bool)
    assert values.tolist() == [[True, False], [True, False]]
    assert mask.tolist() == [[True, True], [True, False]]
    assert pad_rows([], 0)[0].shape == (0, 1)  # width at least 1


def test_epoch_order_takes_every_example_once_per_epoch_in_a_seeded_order():
    order = EpochOrder(10, seed=3)
    seen = [i for step in range(5) for i in order.batch(step, 4)]  # 20 positions: two epochs
    assert sorted(seen[:10]) == sorted(seen[10:]) == list(range(10))
    assert seen[:10] != seen[10:]
    # each epoch is torch.randperm from (seed, epoch): batch 2 straddles epochs 0 and 1
    first, second = (
        torch.randperm(10, generator=torch.Generator().manual_seed(3 * 1_000_003 + e)).tolist()
        for e in (0, 1)
    )
    assert order.batch(2, 4) == first[8:] + second[:2]
    assert EpochOrder(10, seed=3).batch(2, 4) == order.batch(2, 4)  # depends only on the step
