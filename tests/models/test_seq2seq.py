"""The encoder-decoder families (seq2seq, rnn_seq2seq): math, caches, decoding, training, I/O."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
from torch.nn import functional as F

from lmforge.data.batching import pad_rows
from lmforge.data.pairs import PairsCorpus, source_batch
from lmforge.errors import ConfigError
from lmforge.folders import load_model
from lmforge.models import FAMILIES, get_family
from lmforge.models.seq2seq import Seq2SeqConfig, label_smoothed_nll, sinusoidal_positions
from lmforge.nn.decoding import beam_search, greedy_decode
from lmforge.tokenize import BOS_ID, EOS_ID, PAD_ID, train_tokenizer
from lmforge.train.config import TrainConfig
from lmforge.train.tasks import PairsTask
from lmforge.train.trainer import Trainer
from lmforge.training import training_data
from lmforge.workflows import build_model, train_family, translate

SEQ2SEQ = [name for name, family in FAMILIES.items() if family.seq2seq]
TINY = {
    "seq2seq": {"d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 64, "max_seq_len": 8},
    "rnn_seq2seq": {"d_model": 32, "n_layers": 1, "max_seq_len": 8},
}
QUIET = {"dropout": 0.0, "label_smoothing": 0.0}
VARIANTS = [("seq2seq", {}), ("seq2seq", {"norm_first": True}), ("rnn_seq2seq", {})]


def digit_pairs(count: int, reverse: bool = True, seed: int = 0) -> list[tuple[str, str]]:
    """Strings of 2-4 digits 0-5 and their reversal (or a copy)."""
    rng = random.Random(seed)
    sources = ["".join(rng.choices("012345", k=rng.randint(2, 4))) for _ in range(count)]
    return [(s, s[::-1] if reverse else s) for s in sources]


def tiny_model(family: str, vocab_size: int = 20, **overrides):
    torch.manual_seed(0)
    model, _ = build_model(family, vocab_size, {**TINY[family], **QUIET, **overrides})
    return model.eval()


def test_every_seq2seq_family_has_a_tiny_config():
    assert set(SEQ2SEQ) == set(TINY) and not any(FAMILIES[n].causal for n in SEQ2SEQ)


def test_sinusoidal_positions_follow_the_formula():
    d_model = 6
    table = sinusoidal_positions(5, d_model)
    assert table.shape == (5, d_model)
    for pos in range(5):
        for i in range(d_model // 2):
            angle = pos / 10000 ** (2 * i / d_model)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    assert table[0].tolist() == [0.0, 1.0] * 3  # sin 0, cos 0


def test_label_smoothing_with_zero_epsilon_is_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 7)
    targets = torch.randint(1, 7, (3, 4))
    targets[0, 2:] = PAD_ID
    expected = F.cross_entropy(logits.view(-1, 7), targets.view(-1), ignore_index=PAD_ID)
    assert label_smoothed_nll(logits, targets, 0.0).item() == pytest.approx(expected.item(), 1e-6)


def test_label_smoothing_matches_torch_reference():
    torch.manual_seed(1)
    logits, targets = torch.randn(5, 9), torch.tensor([1, 2, 0, 8, 4])
    ours = label_smoothed_nll(logits, targets, 0.1)
    reference = F.cross_entropy(logits, targets, ignore_index=PAD_ID, label_smoothing=0.1)
    assert ours.item() == pytest.approx(reference.item(), 1e-6)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="d_model"):
        Seq2SeqConfig(d_model=30, n_heads=4)
    with pytest.raises(ConfigError, match="label_smoothing"):
        Seq2SeqConfig(label_smoothing=1.0)
    with pytest.raises(ConfigError, match="n_layers"):
        Seq2SeqConfig(n_layers=0)
    with pytest.raises(ConfigError, match="vocab_size must be >= 1"):
        build_model("seq2seq", 0, {})


@pytest.mark.parametrize(("family", "extra"), VARIANTS)
def test_shapes_padding_and_causality(family, extra):
    model = tiny_model(family, **extra)
    source = torch.tensor([[5, 6, 7, EOS_ID], [8, 9, EOS_ID, PAD_ID]])
    target_in = torch.tensor([[BOS_ID, 10, 11], [BOS_ID, 12, 13]])
    logits = model(source, target_in)
    assert logits.shape == (2, 3, 20)
    # More padding after a source changes nothing: padded keys are masked.
    padded = torch.cat([source, torch.zeros(2, 2, dtype=torch.long)], dim=1)
    torch.testing.assert_close(model(padded, target_in), logits, atol=1e-5, rtol=1e-5)
    # A later target token does not change the logits at earlier positions.
    changed = target_in.clone()
    changed[:, 2] = 14
    torch.testing.assert_close(model(source, changed)[:, :2], logits[:, :2], atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="not a causal LM"):
        model.log_probs(target_in, target_in)


@pytest.mark.parametrize(("family", "extra"), VARIANTS)
def test_decoding_with_the_cache_equals_the_full_forward(family, extra):
    model = tiny_model(family, **extra)
    source = torch.tensor([[5, 6, 7, EOS_ID], [8, 9, EOS_ID, PAD_ID]])
    prefix = torch.tensor([[BOS_ID, 10, 11, 12, 13], [BOS_ID, 14, 15, 16, 17]])
    full = F.log_softmax(model(source, prefix), dim=-1)  # (B, T, V), no cache
    state = model.start_decoding(source)
    for t in range(prefix.shape[1]):
        step_logp, state = model.decode_step(prefix[:, t], state)
        torch.testing.assert_close(step_logp, full[:, t], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", SEQ2SEQ)
def test_beam_search_of_width_one_is_greedy(family):
    model = tiny_model(family)
    source = torch.randint(5, 20, (6, 4))
    source[:, -1] = EOS_ID
    assert beam_search(model, source, beam_size=1) == greedy_decode(model, source)


@pytest.mark.parametrize("family", SEQ2SEQ)
def test_tiny_model_learns_to_copy_digit_strings(family):
    pairs = digit_pairs(300, reverse=False)
    tok = train_tokenizer("char", [text for pair in pairs for text in pair])
    model = tiny_model(family, tok.vocab_size).train()
    task = PairsTask(model, tok, pairs, pairs[:40], batch_size=32, seed=0)
    config = TrainConfig(
        max_steps=120, lr=1e-2, warmup_steps=10, weight_decay=0.0, eval_interval=60, log_interval=20
    )
    result = Trainer(model, config, task=task, progress=False).fit()
    losses = [h["loss"] for h in result.history if "loss" in h]
    assert losses[-1] < 0.2 * losses[0]
    sample = pairs[:8]
    got = translate(model, tok, [s for s, _ in sample])
    assert got == [t for _, t in sample]
    assert translate(model, tok, [s for s, _ in sample], beam_size=4) == got
    # MBR over samples: the trained model is sure enough that the consensus is mostly right.
    mbr = translate(model, tok, [s for s, _ in sample], mbr_samples=32)
    assert sum(m == g for m, g in zip(mbr, got, strict=True)) >= 6, mbr


def test_train_seq2seq_saves_a_folder_that_loads_back(tmp_path):
    pairs = digit_pairs(40)
    corpus = PairsCorpus("rev", pairs[:30], pairs[30:35], pairs[35:])
    tok = train_tokenizer("char", [text for pair in corpus.train for text in pair])
    config = TrainConfig(batch_size=8, max_steps=20, lr=1e-2, warmup_steps=2, eval_interval=10)
    model, result, _ = train_family(
        "seq2seq",
        corpus.train,
        corpus.valid,
        tok,
        {**TINY["seq2seq"]},
        config,
        out_dir=tmp_path,
        progress=False,
        record={"pairs": corpus.name},
    )
    assert math.isfinite(result.best_valid_loss)
    loaded, loaded_tok, meta = load_model(tmp_path)
    assert meta["family"] == "seq2seq" and meta["pairs"] == "rev"
    assert loaded_tok.vocab == tok.vocab
    model.eval()
    source = source_batch(tok, [s for s, _ in corpus.test])
    target_in, _ = pad_rows(
        [[BOS_ID, *tok.encode(t, markers=False)] for _, t in corpus.test], PAD_ID
    )
    torch.testing.assert_close(loaded(source, target_in), model(source, target_in))
    assert greedy_decode(loaded, source) == greedy_decode(model, source)


def test_resume_after_a_kill_gives_the_same_weights(tmp_path):
    pairs = digit_pairs(40)
    tok = train_tokenizer("char", [text for pair in pairs for text in pair])
    config = TrainConfig(batch_size=8, max_steps=12, lr=1e-2, warmup_steps=2, eval_interval=5)

    def trainer(folder):
        model = tiny_model("seq2seq", tok.vocab_size, dropout=0.1).train()  # dropout: RNG too
        task = PairsTask(model, tok, pairs[:30], pairs[30:], batch_size=8, seed=1)
        return Trainer(model, config, task=task, out_dir=tmp_path / folder, progress=False)

    whole = trainer("whole")
    whole.fit()
    trainer("killed").fit(stop_at=7)  # dies after step 7; its last checkpoint is step 5
    resumed = trainer("killed")
    assert resumed.fit(resume=True).steps == 12
    for name, tensor in whole.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name


def test_pairs_are_refused_for_a_language_model_and_needed_by_an_encoder_decoder():
    with pytest.raises(ConfigError, match="gpt is a language model: train it with --corpus"):
        training_data(get_family("gpt"), pairs="couplets")
    with pytest.raises(ConfigError, match="seq2seq is an encoder-decoder: give"):
        training_data(get_family("seq2seq"), corpus="tang")


def test_cli_trains_a_seq2seq_on_a_pairs_file_and_decodes(tmp_path, run_cli):
    pairs_file = tmp_path / "tiny.jsonl"
    lines = [json.dumps({"source": s, "target": t}) for s, t in digit_pairs(30)]
    pairs_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "model"
    sizes = ["d_model=16", "n_heads=2", "d_ff=32", "n_layers=1", "max_seq_len=8"]
    flags = [x for size in sizes for x in ("--set", size)]
    code, stdout, stderr = run_cli(
        "train", "--model", "seq2seq", "--pairs", pairs_file, "--tokenizer", "char",
        "--set", "max_steps=5", *flags, "--out", out, "--quiet",
    )  # fmt: skip
    assert code == 0, stderr
    assert "test BLEU (greedy)" in stdout and (out / "model.safetensors").exists()
    for how in (("--beam", "1"), ("--beam", "3"), ("--mbr", "8", "--seed", "1")):
        code, stdout, stderr = run_cli("generate", out, "--prompt", "123", *how)
        assert code == 0, stderr
        assert set(stdout.strip()) <= set("0123456789")  # a target in the training alphabet
    blocked = ("--no-repeat-ngram", "1", "--source-no-repeat-ngram", "1")
    for how in (("--beam", "1"), ("--beam", "3"), ("--mbr", "8")):
        code, stdout, stderr = run_cli("generate", out, "--prompt", "123", *how, *blocked)
        assert code == 0, stderr
        text = stdout.strip()
        assert len(set(text)) == len(text) and not set(text) & set("123"), text
    code, _, stderr = run_cli("generate", out, "--prompt", "1", "--no-repeat-ngram", "-1")
    assert code != 0 and "no_repeat_ngram must be an integer >= 0" in stderr
    code, _, stderr = run_cli("train", "--model", "seq2seq", "--corpus", "tang", "--quiet")
    assert code == 2 and "--pairs" in stderr
