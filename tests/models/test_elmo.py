"""The elmo family (Peters et al. 2018): the two directions, the scalar mix, contextual vectors."""

from __future__ import annotations

import itertools
import json
import math
import random

import pytest
import torch
from conftest import TINY_TEXT
from torch.nn import functional as F

from lmforge.data.batching import token_stream
from lmforge.errors import ConfigError
from lmforge.folders import load_model
from lmforge.models import get_family
from lmforge.models.elmo import (
    ELMo,
    ElmoConfig,
    ScalarMix,
    direction_perplexities,
    scalar_mix,
)
from lmforge.tokenize import train_tokenizer
from lmforge.train.config import TrainConfig
from lmforge.workflows import train_family

V = 30


def tiny(**changes) -> ELMo:
    torch.manual_seed(0)
    fields = dict(vocab_size=V, d_model=8, n_layers=2, max_seq_len=12, dropout=0.0)
    fields.update(changes)
    return ELMo(ElmoConfig(**fields)).eval()


def random_ids(batch: int = 2, length: int = 9, seed: int = 1) -> torch.Tensor:
    return torch.randint(5, V, (batch, length), generator=torch.Generator().manual_seed(seed))


# -- config ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"d_model": 0}, "d_model"),
        ({"n_layers": 0}, "n_layers"),
        ({"max_seq_len": 0}, "max_seq_len"),
        ({"dropout": 1.0}, "dropout"),
        ({"residual": "yes"}, "residual"),
        ({"tie_embeddings": True, "adaptive_cutoffs": (10,)}, "tie_embeddings"),
        ({"adaptive_cutoffs": (10, 5)}, "adaptive_cutoffs"),
    ],
)
def test_config_errors_name_the_field(changes, field):
    with pytest.raises(ConfigError, match=field):
        ElmoConfig(vocab_size=V, **changes)


def test_building_needs_the_vocab_size():
    with pytest.raises(ConfigError, match="vocab_size"):
        ELMo(ElmoConfig())


def test_registered_as_a_non_recurrent_trainer_family():
    family = get_family("elmo")
    assert family.model_class is ELMo and family.fitting == "trainer"
    model = tiny()
    assert model.recurrent is False and model.context_size == 12
    assert model.init_state(2, "cpu") is None


# -- the scalar mix --------------------------------------------------------------------------------


def test_scalar_mix_is_gamma_times_a_softmax_weighted_sum():
    layers = torch.tensor([1.0, 2.0, 4.0])[:, None, None].expand(3, 2, 3)  # (J=3, 2, 3)
    weights = torch.tensor([0.0, math.log(2.0), math.log(3.0)])  # softmax: 1/6, 2/6, 3/6
    mixed = scalar_mix(layers, weights, torch.tensor(2.0))
    # 2 * (1 * 1/6 + 2 * 2/6 + 4 * 3/6) = 2 * 17/6 = 17/3
    torch.testing.assert_close(mixed, torch.full((2, 3), 17.0 / 3.0))


def test_scalar_mix_module_starts_as_the_mean_of_the_layers():
    layers = torch.randn(3, 2, 5, 4, generator=torch.Generator().manual_seed(0))
    mix = ScalarMix(3)
    torch.testing.assert_close(mix(layers), layers.mean(dim=0))
    with torch.no_grad():
        mix.weights.copy_(torch.tensor([5.0, -1.0, 0.5]))
        mix.gamma.fill_(0.3)
    by_hand = 0.3 * sum(s * layer for s, layer in zip(mix.weights.softmax(0), layers, strict=True))
    torch.testing.assert_close(mix(layers), by_hand)


def test_the_mix_is_saved_but_not_trained_by_the_lm_objective():
    model = tiny()
    assert {"mix.weights", "mix.gamma"} <= set(model.state_dict())
    assert not any(p.requires_grad for p in model.mix.parameters())
    logp, _ = model.log_probs(random_ids(), random_ids(seed=2))
    (-logp.mean()).backward()
    assert all(p.grad is None for p in model.mix.parameters())
    assert model.tok_emb.weight.grad is not None


# -- the two directions ----------------------------------------------------------------------------


def test_layer_states_are_the_embedding_twice_then_both_directions():
    model = tiny()
    ids = random_ids(2, 7)
    layers = model.layer_states(ids)
    assert layers.shape == (3, 2, 7, 16)
    embedded = model.tok_emb(ids)
    torch.testing.assert_close(layers[0], torch.cat([embedded, embedded], dim=-1))
    assert model.embed(ids).shape == (2, 7, 16)


def test_forward_half_reads_the_past_and_backward_half_the_future():
    model = tiny()
    ids = random_ids(1, 9)
    changed = ids.clone()
    changed[0, 4] = 3  # position k = 4
    before, after = model.layer_states(ids), model.layer_states(changed)
    forward, backward = slice(0, 8), slice(8, 16)
    for j in (1, 2):
        torch.testing.assert_close(after[j, 0, :4, forward], before[j, 0, :4, forward])
        torch.testing.assert_close(after[j, 0, 5:, backward], before[j, 0, 5:, backward])
        assert not torch.allclose(after[j, 0, 4:, forward], before[j, 0, 4:, forward])
        assert not torch.allclose(after[j, 0, :5, backward], before[j, 0, :5, backward])


@pytest.mark.parametrize("cutoffs", [(), (12,)])
@torch.no_grad()
def test_each_direction_is_a_distribution_over_its_target(cutoffs):
    # Window x_0..x_6: forward scores x_{t+1} from x_0..x_t, backward x_t from x_{t+1}..x_6.
    # Vary the scored token over the whole vocabulary: its probabilities must sum to one, which
    # also shows that neither direction reads the token it predicts.
    model = tiny(adaptive_cutoffs=cutoffs)
    window = random_ids(1, 7)
    t = 3
    forward_mass = backward_mass = 0.0
    for v in range(V):
        x = window.clone()
        x[0, t + 1] = v  # the forward target at position t
        forward, _ = model.direction_log_probs(x[:, :-1], x[:, 1:])
        forward_mass += float(forward[0, t].exp())
        x = window.clone()
        x[0, t] = v  # the backward target at position t
        _, backward = model.direction_log_probs(x[:, :-1], x[:, 1:])
        backward_mass += float(backward[0, t].exp())
    assert forward_mass == pytest.approx(1.0, abs=1e-5)
    assert backward_mass == pytest.approx(1.0, abs=1e-5)


def test_log_probs_average_the_two_directions():
    model = tiny()
    inputs, targets = random_ids(2, 9), random_ids(2, 9, seed=2)
    forward, backward = model.direction_log_probs(inputs, targets)
    logp, state = model.log_probs(inputs, targets)
    assert state is None and logp.shape == (2, 9)
    torch.testing.assert_close(logp, (forward + backward) / 2)
    logits, _ = model(inputs)  # forward() is the forward LM
    torch.testing.assert_close(
        forward, logits.log_softmax(-1).gather(-1, targets[..., None])[..., 0]
    )


@torch.no_grad()
def test_direction_perplexities_score_every_target_once():
    model = tiny()
    stream = random_ids(1, 2 * 12 + 6)[0]  # two full windows and one of 5 targets
    nll = torch.zeros(2)
    for start, end in [(0, 12), (12, 24), (24, 29)]:
        pair = model.direction_log_probs(stream[None, start:end], stream[None, start + 1 : end + 1])
        nll -= torch.stack([logp.sum() for logp in pair])
    forward, backward = direction_perplexities(model, stream, batch_size=1)
    assert forward == pytest.approx(math.exp(nll[0] / 29), rel=1e-5)
    assert backward == pytest.approx(math.exp(nll[1] / 29), rel=1e-5)


def test_step_with_a_cache_equals_the_forward_lm():
    model = tiny()
    ids = random_ids(2, 8)
    full, _ = model(ids)
    logits, cache = model.step(ids[:, :3])
    torch.testing.assert_close(logits, full[:, 2])
    for t in range(3, 8):
        logits, cache = model.step(ids[:, t : t + 1], cache)
        torch.testing.assert_close(logits, full[:, t])


def test_embed_sentences_drops_the_markers():
    tok = train_tokenizer("word", TINY_TEXT, rare_threshold=0)
    model = ELMo(ElmoConfig(vocab_size=tok.vocab_size, d_model=8, max_seq_len=8)).eval()
    sentences = ["the cat sat", "a dog saw the mat"]
    vectors = model.embed(sentences, tok)
    assert [v.shape for v in vectors] == [(3, 16), (5, 16)]
    ids = torch.tensor([tok.encode(sentences[1], markers=True)])
    torch.testing.assert_close(vectors[1], model.embed(ids)[0, 1:-1])
    with pytest.raises(ConfigError, match="tokenizer"):
        model.embed(sentences)
    with pytest.raises(ConfigError, match="list of sentences"):
        model.embed("the cat sat", tok)


# -- the seed of the idea: one word, several senses, told apart by context ----------------------

PEOPLE = ["she", "he", "my uncle", "the farmer", "our teacher", "my sister", "a boy", "the old man"]
# word -> sense -> (words before the word, words after it); each sense's cues on both sides.
SENSES = {
    "bank": {
        "money": (
            ["paid the", "robbed the", "phoned the", "trusted the"],
            ["for a loan", "with her cash", "to save money", "about the account"],
        ),
        "river": (
            ["sat on the", "fished from the", "climbed the", "walked along the"],
            ["of the river", "near the water", "by the stream", "with the ducks"],
        ),
    },
    "bat": {
        "animal": (
            ["fed the", "heard the", "watched the", "rescued the"],
            ["in the dark cave", "hanging in the barn", "flying at night", "eating insects"],
        ),
        "sport": (
            ["swung the", "gripped the", "dropped the", "painted the"],
            ["at the ball", "in the game", "before the pitch", "for the team"],
        ),
    },
    "play": {
        "music": (
            ["likes to", "learned to", "wants to", "will"],
            ["the piano", "the guitar", "a song", "the violin"],
        ),
        "theatre": (
            ["watched a", "wrote a", "loved the", "directed the"],
            ["at the theatre", "about a king", "on the stage", "with the actors"],
        ),
    },
}
SEED = 0  # checked with seeds 0-9 (see the test's docstring)


def sense_sentences() -> list[tuple[str, str, str]]:
    """(word, sense, sentence) for every person x left cue x right cue: 768 in all."""
    return [
        (word, sense, f"{person} {before} {word} {after}")
        for word, senses in SENSES.items()
        for sense, (befores, afters) in senses.items()
        for person, before, after in itertools.product(PEOPLE, befores, afters)
    ]


def sense_split(seed: int) -> tuple[list[str], list[tuple[str, str, str]]]:
    """200 training sentences and the held-out rest, shuffled with ``seed``."""
    pool = sense_sentences()
    random.Random(seed).shuffle(pool)
    return [sentence for _, _, sentence in pool[:200]], pool[200:]


def train_sense_model(seed: int, out_dir=None):
    """A tiny ELMo trained by the one Trainer on the sense sentences (~4 s on one thread)."""
    train_lines, held_out = sense_split(seed)
    tok = train_tokenizer("word", train_lines, rare_threshold=0)
    config = TrainConfig(
        batch_size=16,
        seq_len=16,
        max_steps=600,
        lr=1e-2,
        warmup_steps=10,
        eval_interval=600,
        log_interval=100,
        seed=seed,
    )
    overrides = {"d_model": 32, "n_layers": 2, "max_seq_len": 16, "dropout": 0.0}
    torch.manual_seed(seed)
    model, _, _ = train_family(
        "elmo", train_lines, None, tok, overrides, config, out_dir=out_dir, progress=False
    )
    return model.eval(), tok, held_out


def word_vectors(model, tok, sentences: list[str], word: str, layer: int | None = None):
    """(n, 2 d_model) unit vectors of ``word`` in each sentence: the ELMo mix, or one layer."""
    with torch.no_grad():
        if layer is None:
            rows = model.embed(sentences, tok)
        else:
            ids = [torch.tensor([tok.encode(s)]) for s in sentences]
            rows = [model.layer_states(row)[layer, 0, 1:-1] for row in ids]
    picked = [row[s.split().index(word)] for s, row in zip(sentences, rows, strict=True)]
    return F.normalize(torch.stack(picked), dim=-1)


def sense_similarities(model, tok, held_out, word: str, layer: int | None = None):
    """Mean cosine of ``word``'s vectors within a sense and across the two senses, over 8
    held-out sentences per sense."""
    first, second = [
        [s for w, sn, s in held_out if w == word and sn == sense][:8] for sense in SENSES[word]
    ]
    a, b = (word_vectors(model, tok, group, word, layer) for group in (first, second))

    def mean_off_diagonal(m: torch.Tensor) -> float:
        return float((m.sum() - m.diagonal().sum()) / (m.numel() - len(m)))

    same = (mean_off_diagonal(a @ a.T) + mean_off_diagonal(b @ b.T)) / 2
    return same, float((a @ b.T).mean())


@pytest.fixture(scope="module")
def sense_model(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("elmo-senses")
    try:
        yield (*train_sense_model(SEED, folder), folder)
    finally:
        torch.set_num_threads(threads)


def test_context_tells_word_senses_apart(sense_model):
    """Peters et al.'s point in miniature: 'bank', 'bat' and 'play', each in two senses whose
    cues sit on both sides (paid the bank for a loan / sat on the bank of the river). On held-out
    sentences, a word's static layer-0 vector is the same in every context, while its ELMo vectors
    differ (mean cosine across senses < 0.95) and are closer within a sense than across senses.
    Seeds 0-9 gave a within-minus-across gap of 0.065 to 0.26 and across-sense means of 0.69 to
    0.91; before training the gap is below 0.003 (every vector near-identical)."""
    model, tok, held_out, _ = sense_model
    torch.manual_seed(SEED)
    untrained = ELMo(model.config).eval()
    for word in SENSES:
        static = word_vectors(model, tok, [s for w, _, s in held_out if w == word][:16], word, 0)
        torch.testing.assert_close(static @ static.T, torch.ones(16, 16))
        same, across = sense_similarities(model, tok, held_out, word)
        assert across < 0.95, word
        assert same - across > 0.04, word
        same_before, across_before = sense_similarities(untrained, tok, held_out, word)
        assert same_before - across_before < 0.02, word


def test_model_folder_round_trip_gives_identical_embeddings(sense_model):
    model, tok, held_out, folder = sense_model
    loaded, loaded_tok, meta = load_model(folder)
    assert meta["family"] == "elmo" and loaded_tok.vocab == tok.vocab
    sentences = [s for _, _, s in held_out[:10]]
    for original, reloaded in zip(
        model.embed(sentences, tok), loaded.embed(sentences, loaded_tok), strict=True
    ):
        assert torch.equal(original, reloaded)
    stream = token_stream(tok, sentences)
    assert direction_perplexities(loaded, stream) == direction_perplexities(model, stream)


def test_cli_trains_an_elmo(run_cli, tmp_path):
    corpus = tmp_path / "lines.txt"
    corpus.write_text("\n".join(TINY_TEXT * 20), encoding="utf-8")
    out_dir = tmp_path / "elmo"
    code, out, err = run_cli(
        "train",
        "--model",
        "elmo",
        "--corpus",
        corpus,
        "--out",
        out_dir,
        "--tokenizer",
        "word",
        "--set",
        "max_steps=20",
        "--set",
        "d_model=16",
        "--set",
        "max_seq_len=16",
        "--set",
        "seq_len=16",
        "--set",
        "batch_size=8",
        "--quiet",
    )
    assert code == 0, err
    assert "test perplexity" in out
    meta = json.loads((out_dir / "config.json").read_text())
    assert meta["family"] == "elmo" and meta["config"]["max_seq_len"] == 16
