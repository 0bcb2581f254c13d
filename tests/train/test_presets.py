"""Every ladder preset's rung settings build a model and a Trainer config (a typo in a preset
would otherwise surface only after the rungs before it have trained for an hour)."""

from __future__ import annotations

import pytest

from lmforge.ladder import PRESETS
from lmforge.train.trainer import TrainConfig
from lmforge.workflows import build_model

RUNGS = [(p, name) for p, preset in PRESETS.items() for name in preset.rungs]


@pytest.mark.parametrize(("preset", "rung"), RUNGS)
def test_preset_rung_settings_build(preset, rung):
    settings = PRESETS[preset].rungs[rung]
    model, config = build_model(settings.family, 14_030, settings.model)
    assert model.num_parameters() > 0
    assert TrainConfig(**settings.train).max_steps > 0
    if preset == "paper" and rung == "gpt":  # adaptive input tied to the adaptive softmax
        assert config.tie_embeddings and config.adaptive_cutoffs == (2000, 6000)
        assert not any(name.startswith("tok_emb") for name in model.state_dict())
