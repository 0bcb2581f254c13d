"""Shared blocks: the feed-forward network and the initialisations."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from lmforge.nn.layers import FeedForward, init_normal, init_uniform


def test_feed_forward_is_w2_act_w1_with_the_names_folders_use():
    torch.manual_seed(0)
    ffn = FeedForward(6, 10, dropout=0.5, activation=F.relu).eval()
    assert list(ffn.state_dict()) == ["fc.weight", "fc.bias", "proj.weight", "proj.bias"]
    x = torch.randn(2, 3, 6)
    expected = F.relu(x @ ffn.fc.weight.T + ffn.fc.bias) @ ffn.proj.weight.T + ffn.proj.bias
    torch.testing.assert_close(ffn(x), expected)  # eval: no dropout
    assert FeedForward(6, 10, 0.0, bias=False).state_dict().keys() == {"fc.weight", "proj.weight"}


def test_init_normal_zeroes_biases_and_init_uniform_stays_in_bounds():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(50, 40), nn.Linear(40, 300), nn.LayerNorm(300))
    model.requires_grad_(False)
    init_normal(model, std=0.02)
    assert not model[1].bias.any()
    assert 0.018 < float(model[1].weight.std()) < 0.022
    assert torch.equal(model[2].weight, torch.ones(300))  # LayerNorms untouched
    init_uniform(model, 0.1)
    assert all(float(p.abs().max()) <= 0.1 for p in model.parameters())
