"""The ladder: every preset's rung settings build (a typo in a preset would otherwise surface
only after the rungs before it have trained for an hour), rungs side by side give the figures of
rungs in turn, a smoke run says so, a failing rung surfaces as one error naming it, and worker
lines stay readable."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
from conftest import TINY_TEXT

from lmforge.errors import ConfigError
from lmforge.ladder import PRESETS, Rung, _RungLines, ladder_table, run_ladder
from lmforge.train.config import TrainConfig
from lmforge.workflows import build_model

RUNGS = [(p, name) for p, preset in PRESETS.items() for name in preset.rungs]
TINY_TRAIN = {"batch_size": 8, "seq_len": 16, "max_steps": 30, "eval_interval": 10, "lr": 3e-3}


@pytest.mark.parametrize(("preset", "rung"), RUNGS)
def test_preset_rung_settings_build(preset, rung):
    settings = PRESETS[preset].rungs[rung]
    model, config = build_model(settings.family, 14_030, settings.model)
    assert model.num_parameters() > 0
    assert TrainConfig(**settings.train).max_steps > 0
    if preset == "paper" and rung == "gpt":  # adaptive input tied to the adaptive softmax
        assert config.tie_embeddings and config.adaptive_cutoffs == (2000, 6000)
        assert not any(name.startswith("tok_emb") for name in model.state_dict())


def test_quick_is_standard_on_shorter_budgets():
    quick, standard = PRESETS["quick"], PRESETS["standard"]
    assert (quick.corpus, quick.train_lines, quick.eval_lines, quick.ngram_order) == (
        standard.corpus,
        standard.train_lines,
        standard.eval_lines,
        standard.ngram_order,
    )
    for name, rung in quick.rungs.items():
        assert rung.model == standard.rungs[name].model
        assert rung.train["max_steps"] < standard.rungs[name].train["max_steps"]


@pytest.fixture
def tiny_preset(tmp_path):
    corpus = tmp_path / "lines.txt"
    corpus.write_text("\n".join(TINY_TEXT * 30), encoding="utf-8")
    rungs = {
        "nnlm": Rung("nnlm", {"context": 4, "d_model": 8, "d_hidden": 32}, TINY_TRAIN, 1.0),
        "lstm": Rung("lstm", {"d_model": 16}, TINY_TRAIN, 2.0),
    }
    return replace(PRESETS["quick"], corpus=str(corpus), train_lines=0, eval_lines=0, rungs=rungs)


def _figures(result) -> list[tuple]:
    return [
        (r.model, r.valid_ppl, r.test_ppl, r.extra.get("mix_test_ppl", 0)) for r in result.rungs
    ]


def test_two_jobs_give_the_perplexities_of_one(tiny_preset):
    models = ("ngram", "nnlm", "lstm")
    in_turn = run_ladder(tiny_preset, models, progress=False, jobs=1)
    side_by_side = run_ladder(tiny_preset, models, progress=False, jobs=2)
    assert [r.model for r in side_by_side.rungs] == list(models)
    for one, two in zip(_figures(in_turn), _figures(side_by_side), strict=True):
        assert one[0] == two[0] and one[1:] == pytest.approx(two[1:], rel=1e-5)
    assert in_turn.rungs[1].extra["mix_test_ppl"] > 1


def test_smoke_run_scores_a_slice_and_says_so(tiny_preset):
    result = run_ladder(tiny_preset, ("ngram", "lstm"), progress=False, max_steps=5, jobs=1)
    assert result.max_steps == 5 and result.to_dict()["max_steps"] == 5
    assert "smoke run" in ladder_table(result)


def test_failing_rung_is_one_error_naming_it(tiny_preset):
    bad = Rung("gpt", {"d_model": 16, "n_layers": 1, "n_heads": 2, "max_seq_len": 8}, TINY_TRAIN)
    preset = replace(tiny_preset, rungs={**tiny_preset.rungs, "gpt": bad})  # seq_len 16 != 8
    with pytest.raises(ConfigError, match="ladder rung gpt: seq_len"):
        run_ladder(preset, ("lstm", "gpt"), progress=False, jobs=2)


def test_worker_lines_are_prefixed_and_bars_dropped():
    target = io.StringIO()
    stream = _RungLines("gpt", target)
    stream.write("\r 10%|#   | 1/10")
    stream.write("\r100%|####| 10/10\n")
    stream.write("step 10: valid loss 1.2, ppl 3.3\nhalf")
    stream.write(" a line\n")
    assert target.getvalue() == "gpt: step 10: valid loss 1.2, ppl 3.3\ngpt: half a line\n"
