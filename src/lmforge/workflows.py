"""What the ``lmforge`` subcommands do for the neural families, as plain Python functions (the
n-gram model's, which need no torch: ``lmforge.ngram``).

Text becomes token sequences by one rule: a tokenizer from ``lmforge.tokenize`` (or, with none,
whitespace-separated words exactly as KenLM's lmplz reads them), then ``<s>`` ... ``</s>``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from lmforge.checkpoint import has_checkpoint, new_run_id, start_run
from lmforge.config import build_config, check_int, config_to_dict
from lmforge.data.pairs import source_batch
from lmforge.errors import ConfigError
from lmforge.folders import read_record, write_record
from lmforge.lock import folder_lock
from lmforge.models import family_of, get_family
from lmforge.nn.decoding import Blocking, beam_search, greedy_decode, mbr_decode
from lmforge.nn.sampling import Sampler
from lmforge.tokenize import BOS, RARE, Tokenizer, tokenize_lines
from lmforge.train.config import TrainConfig, TrainResult
from lmforge.train.tasks import Task, make_task
from lmforge.train.trainer import Trainer

__all__ = [
    "build_model",
    "train_family",
    "translate",
    "Decoding",
    "generate_text",
]


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


def train_family(
    family_name: str,
    train_data: Sequence,
    valid_data: Sequence | None,
    tokenizer: Tokenizer,
    model_overrides: dict,
    train_config: TrainConfig,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    record: dict | None = None,
    overwrite: bool = False,
) -> tuple[torch.nn.Module, TrainResult, Task]:
    """Train a new model of a neural family on its own task (``Family.task``, built by
    ``lmforge.train.tasks.make_task``) with the one Trainer; write a model folder if asked,
    holding its lock (``lmforge.lock``) for the whole job.

    The run is seeded from ``train_config.seed`` from the start (initial weights, data order,
    dropout): the same call gives bitwise the same weights in any process, on the CPU.

    Args:
        train_data, valid_data: lines of text, or (source, target) pairs for "pairs" families;
            valid_data None: no evaluation.
        out_dir: the model folder, or None.
        resume: continue the run in ``out_dir`` from its current checkpoint (from its start
            when it stopped before its first one).
        record: more ``config.json`` fields of the folder (``lmforge.folders.write_record``).
        overwrite: a new run may replace the run or model that ``out_dir`` holds.

    Returns:
        (the model, TrainResult, the task: its ``evaluate`` gives the held-out figures).

    Raises:
        CheckpointError: ``out_dir`` holds another run (and not ``overwrite``), another process
            writes it, or its checkpoint belongs to another run or is damaged.
    """
    torch.manual_seed(train_config.seed)  # the initial weights come from the run's seed too
    model, config = build_model(family_name, tokenizer.vocab_size, model_overrides)
    task = make_task(model, tokenizer, train_data, valid_data, train_config)
    with folder_lock(out_dir) if out_dir else nullcontext():
        run_id = None
        if out_dir and resume:
            run_id = read_record(out_dir).get("run_id")
            resume = has_checkpoint(out_dir) or run_id is None  # else: restart the same run
        elif out_dir:
            start_run(out_dir, overwrite)
            run_id = new_run_id()
            settings = config_to_dict(train_config)
            write_record(
                out_dir,
                family_name,
                config,
                tokenizer,
                train_config=settings,
                run_id=run_id,
                **(record or {}),
            )
        trainer = Trainer(
            model, train_config, out_dir=out_dir, progress=progress, task=task, run_id=run_id
        )
        result = trainer.fit(resume=resume)
    return trainer.model, result, task


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
    (``lmforge.nn.decoding``). ``no_repeat_ngram`` n > 0 bans repeating an n-gram of the
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


@dataclass(frozen=True)
class Decoding:
    """How an encoder-decoder decodes (``translate``): ``beam`` size (1: greedy), minimum-Bayes-
    risk decoding over ``mbr`` samples (0: off), and never repeating an n-gram of the output
    (``no_repeat_ngram``) or copying one of the source (``source_no_repeat_ngram``); 0: off."""

    beam: int = 1
    mbr: int = 0
    no_repeat_ngram: int = 0
    source_no_repeat_ngram: int = 0

    def flags(self) -> list[str]:
        """The command-line flags of the settings that differ from the defaults."""
        given = {
            "--beam": self.beam != 1,
            "--mbr": self.mbr,
            "--no-repeat-ngram": self.no_repeat_ngram,
            "--source-no-repeat-ngram": self.source_no_repeat_ngram,
        }
        return [flag for flag, value in given.items() if value]


def generate_text(
    model,
    tokenizer: Tokenizer | None,
    prompt: str,
    max_new_tokens: int,
    sampler: Sampler,
    decoding: Decoding = Decoding(),
) -> str:
    """Text from a model of any generating family: an encoder-decoder decodes ``prompt`` as its
    source (``decoding``); a causal LM continues it, sampled by ``sampler``. Pieces of the
    prompt outside the model's vocabulary are named in a warning.

    Raises:
        ConfigError: a negative ``max_new_tokens``, or encoder-decoder settings for a causal
            model.
    """
    check_int("max_new_tokens", max_new_tokens, 0)
    family = family_of(model)
    _warn_unknown(prompt, tokenizer, model)
    if family.seq2seq:
        return translate(
            model,
            tokenizer,
            [prompt],
            decoding.beam,
            max_new_tokens,
            mbr_samples=decoding.mbr,
            seed=sampler.seed or 0,
            temperature=sampler.temperature or 1.0,  # of the MBR samples
            no_repeat_ngram=decoding.no_repeat_ngram,
            source_no_repeat_ngram=decoding.source_no_repeat_ngram,
        )[0]
    if decoding.flags():
        raise ConfigError(
            f"{', '.join(decoding.flags())}: for encoder-decoder models only; this is a "
            f"{family.name} model (sample it with --temperature, --top-k, --top-p)"
        )
    if family.fitting == "counting":
        context = tokenize_lines([prompt], tokenizer)[0]
        words = model.generate(
            context, max_new_tokens, sampler.temperature, sampler.top_k, sampler.top_p, sampler.seed
        )
        return " ".join([*context, *words])
    ids = tokenizer.encode(prompt, markers=False)
    out = model.generate(
        torch.tensor([[tokenizer.token_to_id(BOS), *ids]]), max_new_tokens, sampler
    )
    return tokenizer.decode(out[0].tolist())


def _warn_unknown(prompt: str, tokenizer: Tokenizer | None, model) -> None:
    """Warn, naming them, about the prompt's pieces that the model reads as an unknown token:
    whitespace words for a model over words (no tokenizer, or a word or jieba one), else
    characters (subword and char tokenizers lack only characters)."""
    if tokenizer is None:
        known = model.word_ids
        unknown = [word for word in dict.fromkeys(prompt.split()) if word not in known]
    else:
        unknown_ids = {tokenizer.unk_id}
        if RARE in tokenizer.vocab:
            unknown_ids.add(tokenizer.token_to_id(RARE))
        by_words = tokenizer.kind in ("word", "jieba")
        pieces = dict.fromkeys(prompt.split() if by_words else "".join(prompt.split()))
        unknown = [
            piece
            for piece in pieces
            if not unknown_ids.isdisjoint(tokenizer.encode(piece, markers=False))
        ]
    if unknown:
        warnings.warn(
            f"the prompt holds {', '.join(map(repr, unknown))}, outside the model's vocabulary; "
            "the model reads them as an unknown token",
            stacklevel=3,
        )
