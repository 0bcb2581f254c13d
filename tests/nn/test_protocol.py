"""Protocol parts that families bind as methods instead of inheriting them."""

from __future__ import annotations

import pytest
from torch import nn

from lmforge.errors import ConfigError
from lmforge.nn.protocol import max_seq_len_context, no_state, num_parameters, refusal


class Tiny(nn.Module):
    config = type("Config", (), {"max_seq_len": 7})()
    context_size = max_seq_len_context
    init_state = no_state
    num_parameters = num_parameters
    generate = refusal("Tiny cannot generate")

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(5, 3)
        self.out = nn.Linear(3, 5, bias=False)
        self.out.weight = self.embedding.weight  # tied: counted once


def test_bound_methods_answer_for_the_model():
    model = Tiny()
    assert model.context_size == 7 and model.init_state(4, "cpu") is None
    assert model.num_parameters() == 15
    with pytest.raises(ConfigError, match="Tiny cannot generate"):
        model.generate(None, 3, None)
