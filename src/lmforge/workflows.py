"""What the ``lmforge`` subcommands do, as plain Python functions.

Text becomes token sequences by one rule: a tokenizer from ``lmforge.tokenize`` (or, with none,
whitespace-separated words exactly as KenLM's lmplz reads them), then ``<s>`` ... ``</s>``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file

from lmforge import __version__
from lmforge.checkpoint import read_json, write_json
from lmforge.config import build_config, config_to_dict
from lmforge.data.batching import token_stream
from lmforge.data.pairs import PairsCorpus, PairsTask, source_batch
from lmforge.errors import CheckpointError, ConfigError, DataError
from lmforge.evaluate import lines_perplexity
from lmforge.models import FAMILIES, get_family
from lmforge.models.ngram import NgramConfig, NgramEvaluation, NgramLM
from lmforge.models.seq2seq import Blocking, beam_search, greedy_decode, mbr_decode
from lmforge.tokenize import Tokenizer, load_tokenizer, train_tokenizer
from lmforge.train.trainer import WEIGHTS, TrainConfig, Trainer, TrainResult

__all__ = [
    "split_words",
    "tokenize_lines",
    "train_ngram",
    "save_ngram",
    "load_ngram",
    "evaluate_ngram",
    "build_model",
    "train_model",
    "train_seq2seq",
    "write_model_meta",
    "translate",
    "load_model",
    "model_perplexity",
]

ARPA_NAME, CONFIG_NAME, TOKENIZER_NAME = "model.arpa", "config.json", "tokenizer.json"


def split_words(lines: Sequence[str]) -> list[list[str]]:
    """Whitespace-separated words of each line, as KenLM's lmplz and query read text."""
    return [line.split() for line in lines]


def tokenize_lines(lines: Sequence[str], tokenizer: Tokenizer | None) -> list[list[str]]:
    """Token strings of each line with ``tokenizer``, or whitespace words without one."""
    return split_words(lines) if tokenizer is None else tokenizer.tokens_batch(lines)


def train_ngram(
    lines: Sequence[str],
    config: NgramConfig,
    tokenizer_kind: str | None = None,
    vocab_size: int = 8000,
    rare_threshold: int = 3,
    progress: bool = False,
) -> tuple[NgramLM, Tokenizer | None]:
    """Train a tokenizer (unless ``tokenizer_kind`` is None) and an n-gram model on ``lines``."""
    if not lines:
        raise DataError("no training text; give a file or corpus with some lines")
    tokenizer = None
    if tokenizer_kind is not None:
        tokenizer = train_tokenizer(
            tokenizer_kind, lines, vocab_size=vocab_size, rare_threshold=rare_threshold
        )
    model = NgramLM.fit(tokenize_lines(lines, tokenizer), config, progress=progress)
    return model, tokenizer


def evaluate_ngram(
    model: NgramLM, tokenizer: Tokenizer | None, lines: Sequence[str]
) -> NgramEvaluation:
    """Perplexity of ``lines`` (with and without OOVs), tokenised as the model was trained."""
    return model.evaluate(tokenize_lines(lines, tokenizer))


def save_ngram(
    out_dir: str | os.PathLike,
    model: NgramLM,
    tokenizer: Tokenizer | None,
    info: dict | None = None,
) -> Path:
    """Write a model folder: ``model.arpa``, ``config.json`` and ``tokenizer.json`` if any."""
    folder = Path(out_dir)
    model.save_arpa(folder / ARPA_NAME)
    if tokenizer is not None:
        tokenizer.save(folder / TOKENIZER_NAME)
    else:
        (folder / TOKENIZER_NAME).unlink(missing_ok=True)
    write_json(
        folder / CONFIG_NAME,
        {
            "family": "ngram",
            "version": __version__,
            "config": config_to_dict(model.config),
            "tokenizer": tokenizer.kind if tokenizer else None,
            "vocab_size": model.vocab_size,
            "ngram_counts": model.ngram_counts,
            "discounts": [list(d) for d in model.discounts],
            **(info or {}),
        },
    )
    return folder


def load_ngram(path: str | os.PathLike) -> tuple[NgramLM, Tokenizer | None]:
    """Load an ARPA file, or a model folder written by ``save_ngram``.

    Raises:
        CheckpointError: missing path, a folder of another family, or a corrupt file.
    """
    target = Path(path)
    if target.is_file():
        return NgramLM.load_arpa(target), None
    if not target.is_dir():
        raise CheckpointError(
            f"{target}: no such model; give an .arpa file or an n-gram model folder"
        )
    meta = read_json(target / CONFIG_NAME, "model config")
    if meta.get("family") != "ngram":
        raise CheckpointError(
            f"{target} holds a {meta.get('family')!r} model, not an n-gram model; "
            "use the command for that family"
        )
    model = NgramLM.load_arpa(target / ARPA_NAME)
    tokenizer_file = target / TOKENIZER_NAME
    tokenizer = load_tokenizer(tokenizer_file) if tokenizer_file.exists() else None
    return model, tokenizer


# -- neural families -------------------------------------------------------------------------------


def build_model(family_name: str, vocab_size: int, overrides: dict | None = None):
    """A fresh model of a neural family: its config from defaults + ``overrides``.

    Returns:
        (model, config).
    """
    family = get_family(family_name)
    if family.fitting != "trainer":
        raise ConfigError(f"{family_name} is fitted by counting; use `lmforge ngram train`")
    config = build_config(family.config_class, {**(overrides or {}), "vocab_size": vocab_size}, {})
    return family.model_class(config), config


def write_model_meta(
    out_dir: str | os.PathLike,
    family_name: str,
    config,
    train_config: TrainConfig,
    tokenizer: Tokenizer,
    extra: dict | None = None,
) -> None:
    """Write a model folder's ``tokenizer.json`` and ``config.json`` (family, version, model and
    trainer settings, tokenizer kind, and ``extra``) before training fills in the weights."""
    folder = Path(out_dir)
    tokenizer.save(folder / TOKENIZER_NAME)
    meta = {
        "family": family_name,
        "version": __version__,
        "config": config_to_dict(config),
        "train_config": config_to_dict(train_config),
        "tokenizer": tokenizer.kind,
    }
    write_json(folder / CONFIG_NAME, {**meta, **(extra or {})})


def train_model(
    family_name: str,
    train_lines: Sequence[str],
    valid_lines: Sequence[str] | None,
    tokenizer: Tokenizer,
    model_overrides: dict,
    train_config: TrainConfig,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
) -> tuple[torch.nn.Module, TrainResult]:
    """Train a neural family on lines with the one Trainer; write a model folder if asked."""
    family = get_family(family_name)
    if family.fitting == "trainer" and not family.causal:
        how = (
            "train it on pairs (--pairs FILE.jsonl)" if family.seq2seq else "use `lmforge pretrain`"
        )
        raise ConfigError(f"{family_name} is not a left-to-right language model; {how}")
    model, config = build_model(family_name, tokenizer.vocab_size, model_overrides)
    if out_dir and not resume:
        write_model_meta(out_dir, family_name, config, train_config, tokenizer)
    train = token_stream(tokenizer, train_lines)
    valid = token_stream(tokenizer, valid_lines) if valid_lines else None
    trainer = Trainer(model, train_config, train, valid, out_dir=out_dir, progress=progress)
    result = trainer.fit(resume=resume)
    return trainer.model, result


def train_seq2seq(
    family_name: str,
    pairs: PairsCorpus,
    tokenizer: Tokenizer,
    model_overrides: dict,
    train_config: TrainConfig,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
) -> tuple[torch.nn.Module, TrainResult]:
    """Train an encoder-decoder family (``Family.seq2seq``) on (source, target) pairs with the
    one Trainer (``PairsTask``); write a model folder, as ``train_model`` does, if asked."""
    if not get_family(family_name).seq2seq:
        raise ConfigError(
            f"{family_name} is not an encoder-decoder; pairs train "
            f"{', '.join(n for n, f in FAMILIES.items() if f.seq2seq)}"
        )
    model, config = build_model(family_name, tokenizer.vocab_size, model_overrides)
    if out_dir and not resume:
        write_model_meta(
            out_dir, family_name, config, train_config, tokenizer, {"pairs": pairs.name}
        )
    task = PairsTask(
        model, tokenizer, pairs.train, pairs.valid, train_config.batch_size, train_config.seed
    )
    trainer = Trainer(model, train_config, out_dir=out_dir, progress=progress, task=task)
    result = trainer.fit(resume=resume)
    return trainer.model, result


def translate(
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    sources: Sequence[str],
    beam_size: int = 1,
    max_len: int | None = None,
    batch_size: int = 256,
    mbr_samples: int = 0,
    seed: int = 0,
    temperature: float = 1.0,
    no_repeat_ngram: int = 0,
    source_no_repeat_ngram: int = 0,
) -> list[str]:
    """Decode a target for every source text with an encoder-decoder model: greedy when
    ``beam_size`` is 1, else beam search; with ``mbr_samples`` > 0, minimum-Bayes-risk decoding
    over that many samples per source drawn from ``seed`` at ``temperature``
    (``lmforge.models.seq2seq``). ``no_repeat_ngram`` n > 0 bans repeating an n-gram of the
    output, ``source_no_repeat_ngram`` copying one of the source (1: any single token)."""
    blocking = Blocking(no_repeat_ngram, source_no_repeat_ngram)
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device).manual_seed(seed) if mbr_samples else None
    if mbr_samples:  # about 1,024 rows a step: (rows, vocabulary) tensors stay small
        batch_size = max(1, min(batch_size, 1024 // mbr_samples))
    out: list[str] = []
    for start in range(0, len(sources), batch_size):
        source = source_batch(tokenizer, sources[start : start + batch_size]).to(device)
        if mbr_samples:
            ids = mbr_decode(model, source, mbr_samples, max_len, generator, temperature, blocking)
        elif beam_size == 1:
            ids = greedy_decode(model, source, max_len, blocking)
        else:
            ids = beam_search(model, source, beam_size, max_len, blocking=blocking)
        out += [tokenizer.decode(row) for row in ids]
    return out


def load_model(path: str | os.PathLike):
    """Load any model folder (or an ARPA file).

    Returns:
        (model, tokenizer or None, metadata dict).

    Raises:
        CheckpointError: a missing folder, unknown family or corrupt file, naming it.
    """
    target = Path(path)
    if target.is_file() or (target / ARPA_NAME).exists():
        model, tokenizer = load_ngram(target)
        return model, tokenizer, {"family": "ngram"}
    if not target.is_dir():
        raise CheckpointError(f"{target}: no such model folder")
    meta = read_json(target / CONFIG_NAME, "model config")
    family = get_family(meta.get("family", "?"))
    config = build_config(family.config_class, meta.get("config", {}), {})
    model = family.model_class(config)
    try:
        model.load_state_dict(load_file(str(target / WEIGHTS)))
    except (OSError, RuntimeError, ValueError) as err:
        first = str(err).splitlines()[0][:200]
        raise CheckpointError(
            f"{target / WEIGHTS}: cannot load the weights ({first}); retrain"
        ) from None
    model.eval()
    return model, load_tokenizer(target / TOKENIZER_NAME), meta


def model_perplexity(model, tokenizer: Tokenizer | None, lines: Sequence[str]) -> float:
    """Perplexity of ``lines`` under any family: the same tokens (each line's and its </s>)."""
    return lines_perplexity(model, tokenizer, lines)
