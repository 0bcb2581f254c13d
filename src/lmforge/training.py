"""What ``lmforge train`` (and ``lmforge pretrain``, its name for masked LMs) does, for every
trainable family, on one path: find the data of the family's task, its tokenizer and settings,
train with the one Trainer (``workflows.train_family``) and report the held-out figures.

A family's task (``Family.task``) says what data it reads: "lm" a corpus of lines, "pairs"
(source, target) pairs, "mlm" documents (a blank line between them, a sentence per line).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lmforge.config import build_config, config_to_dict, parse_sets, read_config_file
from lmforge.data import BUILTIN_CORPORA, DEFAULT_TOKENIZERS, load_corpus, read_texts
from lmforge.data.mlm import document_split
from lmforge.data.pairs import BUILTIN_PAIRS, bleu, load_pairs
from lmforge.errors import CheckpointError, ConfigError
from lmforge.evaluate import lines_perplexity
from lmforge.folders import TOKENIZER_FILE, read_record
from lmforge.models import FAMILIES, Family
from lmforge.preflight import check_device
from lmforge.tokenize import Tokenizer, load_tokenizer, train_tokenizer
from lmforge.train.config import TrainConfig, TrainResult
from lmforge.workflows import train_family, translate

__all__ = [
    "TrainingData",
    "default_tokenizer",
    "Run",
    "report",
    "resolve_settings",
    "training_data",
    "train_job",
]


@dataclass
class TrainingData:
    """The data of one run in the form its family's task reads: lines or (source, target) pairs.

    Attributes:
        name: the corpus or pairs file's name (the default folder is ``runs/<family>-<name>``).
        train, valid, test: the splits; valid None: nothing held out; test may be empty.
        texts: what a new tokenizer learns from.
        record: more ``config.json`` fields (such as the pairs' name).
    """

    name: str
    train: Sequence
    valid: Sequence | None
    test: Sequence
    texts: Sequence[str]
    record: dict = field(default_factory=dict)


def training_data(
    family: Family,
    corpus: str | None = None,
    pairs: str | None = None,
    valid: str | os.PathLike | None = None,
) -> TrainingData:
    """The data for ``family``'s task: a corpus (built-in or a path) for "lm" and "mlm"
    families, pairs (built-in or a .jsonl file) for "pairs" families; ``valid`` replaces the
    held-out text of an "mlm" run.

    Raises:
        ConfigError: the wrong kind of data for the family (named, with what to give).
    """
    if family.fitting != "trainer":
        raise ConfigError(f"{family.name} is fitted by counting: use `lmforge ngram train`")
    if family.task == "pairs":
        if not pairs:
            raise ConfigError(
                f"{family.name} is an encoder-decoder: give (source, target) pairs with --pairs "
                f"FILE.jsonl or --pairs {' / '.join(BUILTIN_PAIRS)}, not --corpus"
            )
        data = load_pairs(pairs)
        texts = [text for pair in data.train for text in pair]
        record = {"pairs": data.name}
        return TrainingData(data.name, data.train, data.valid, data.test, texts, record)
    if pairs:
        seq2seq = ", ".join(n for n, f in FAMILIES.items() if f.task == "pairs")
        raise ConfigError(
            f"{family.name} is a language model: train it with --corpus; --pairs trains the "
            f"encoder-decoders ({seq2seq})"
        )
    if family.task == "mlm" and corpus not in BUILTIN_CORPORA:
        train, held_out = document_split(read_texts(corpus))
        name, test = Path(corpus).stem, []
    else:
        data = load_corpus(corpus)
        name, train, held_out, test = data.name, data.train, data.valid, data.test
    if valid:
        held_out = read_texts(valid)
    return TrainingData(name, train, held_out, test, train)


def default_tokenizer(family: Family, data_name: str) -> str:
    """The tokenizer kind a run gets when none is asked for: the family's own (bert:
    wordpiece), else the corpus's (``DEFAULT_TOKENIZERS``), else whitespace words."""
    return family.tokenizer or DEFAULT_TOKENIZERS.get(data_name, "word")


def resolve_settings(
    family: Family, file_values: dict, sets: dict, resumed: dict | None = None
) -> tuple[dict, TrainConfig]:
    """Model settings and TrainConfig: the config file's values, then (when resuming) the run's
    own recorded settings, then ``--set`` values; an unknown key is an error listing the
    valid ones, and the model settings are checked here, before any work.

    Raises:
        ConfigError: an unknown key, a bad value, or a model setting that a resumed run does
            not share (its weights have their own shapes).
    """
    settings = dict(file_values)
    model_keys = {f.name for f in dataclasses.fields(family.config_class)} - {"vocab_size"}
    if resumed is not None:  # the run's own settings; --set may still change trainer ones
        settings = {**resumed["config"], **resumed["train_config"]}
        settings.pop("vocab_size", None)
        _check_resumed_model(resumed["config"], {k: sets[k] for k in sets if k in model_keys})
    settings.update(sets)
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(settings) - model_keys - train_keys)
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {', '.join(unknown)}; {family.name} takes "
            f"{', '.join(sorted(model_keys))}; the trainer takes {', '.join(sorted(train_keys))}"
        )
    model_settings = {k: v for k, v in settings.items() if k in model_keys}
    train_settings = {k: v for k, v in settings.items() if k in train_keys}
    build_config(family.config_class, {**model_settings, "vocab_size": 0}, {})  # checks them
    return model_settings, build_config(TrainConfig, train_settings, {})


def _resumed_run(folder: Path, family: Family) -> dict:
    """The record of the training run of ``family`` that ``folder`` holds, to resume.

    Raises:
        CheckpointError: the folder holds no run, or one of another family.
    """
    record = read_record(folder)
    if "train_config" not in record or "config" not in record:
        raise CheckpointError(
            f"{folder} holds no training run to resume (its config.json has no train_config); "
            "drop --resume and give another --out"
        )
    if record.get("family") != family.name:
        raise CheckpointError(
            f"{folder} holds a {record.get('family')} run; resume it with --model "
            f"{record.get('family')}, or train {family.name} into another --out"
        )
    return record


def _check_resumed_model(recorded: dict, changes: dict) -> None:
    """Raise ConfigError when ``changes`` (``--set`` model settings) differ from the resumed
    run's ``recorded`` model config."""
    changed = {k: v for k, v in changes.items() if recorded.get(k) != v}
    if changed:
        given = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        kept = ", ".join(f"{k}={recorded.get(k)!r}" for k in changed)
        raise ConfigError(
            f"--resume keeps the run's model ({kept}); drop --set {given}, or start a new run "
            "with --overwrite or another --out"
        )


def train_job(
    family: Family,
    data: TrainingData,
    out: str | os.PathLike,
    tokenizer_kind: str | None = None,
    vocab_size: int = 8000,
    rare_threshold: int = 3,
    config_file: str | None = None,
    sets: Sequence[str] = (),
    resume: bool = False,
    progress: bool = True,
    say: Callable[[str], None] = print,
    overwrite: bool = False,
):
    """Train a model of ``family`` on ``data`` into the folder ``out`` (``resume``: continue
    the run there; ``overwrite``: a new run may replace the one there).

    Returns:
        the finished ``Run``.
    """
    out = Path(out)
    resumed = _resumed_run(out, family) if resume else None
    file_values = read_config_file(config_file) if config_file else {}
    model_settings, train_config = resolve_settings(family, file_values, parse_sets(sets), resumed)
    check_device(train_config.device)
    kind = tokenizer_kind or default_tokenizer(family, data.name)
    if kind == "none":
        raise ConfigError("neural models need a tokenizer; choose one with --tokenizer")
    if resume:
        tokenizer = load_tokenizer(out / TOKENIZER_FILE)
    else:
        tokenizer = train_tokenizer(
            kind, data.texts, vocab_size=vocab_size, rare_threshold=rare_threshold
        )
    say(
        f"lmforge train: {family.name} on {data.name} ({family.task} task), tokenizer "
        f"{tokenizer.kind} "
        f"({tokenizer.vocab_size:,} symbols)"
    )
    say(f"model settings {model_settings}; trainer {config_to_dict(train_config)}")
    model, result, task = train_family(
        family.name,
        data.train,
        data.valid,
        tokenizer,
        model_settings,
        train_config,
        out_dir=out,
        resume=resume,
        progress=progress,
        record=data.record,
        overwrite=overwrite,
    )
    return Run(family, model, tokenizer, train_config, result, task)


@dataclass
class Run:
    """A finished training run."""

    family: Family
    model: object
    tokenizer: Tokenizer
    train_config: TrainConfig
    result: TrainResult
    task: object


def report(run: Run, data: TrainingData) -> list[str]:
    """The lines that end a run: its speed, then the held-out figures of its task."""
    unit = "target tokens" if run.family.task == "pairs" else "tokens"
    result = run.result
    lines = [
        f"trained {result.steps} steps in {result.train_seconds:.0f}s "
        f"({result.tokens_per_second:,.0f} {unit}/s)"
    ]
    return lines + REPORTS[run.family.task](run, data)


def _lm_report(run: Run, data: TrainingData) -> list[str]:
    test_ppl = lines_perplexity(run.model, run.tokenizer, data.test)
    valid_ppl = run.result.best_valid_ppl
    return [f"best valid perplexity {valid_ppl:.2f}, test perplexity {test_ppl:.2f}"]


def _pairs_report(run: Run, data: TrainingData) -> list[str]:
    lines = [f"best valid loss {run.result.best_valid_loss:.4f} nats per target token"]
    sources, references = [s for s, _ in data.test], [t for _, t in data.test]
    hypotheses = translate(run.model, run.tokenizer, sources)
    try:
        score = bleu(hypotheses, references)
        lines.append(f"test BLEU (greedy) {score:.2f} on {len(sources):,} pairs")
    except ConfigError as err:
        warnings.warn(f"no BLEU: {err}", stacklevel=2)
    lines += [f"  {s} -> {h}" for s, h in list(zip(sources, hypotheses, strict=True))[:3]]
    return lines


def _mlm_report(run: Run, data: TrainingData) -> list[str]:
    task = run.task
    metrics = task.evaluate(run.model, run.train_config.eval_tokens)
    if metrics is None:
        return ["no held-out documents (fewer than 4 documents): give --valid to evaluate"]
    return [
        f"held-out: masked-LM accuracy {metrics['valid_mlm_accuracy']:.3f} (most frequent "
        f"token {task.unigram_accuracy():.3f}), masked-LM loss {metrics['valid_mlm_loss']:.3f}, "
        f"next-sentence accuracy {metrics['valid_nsp_accuracy']:.3f}"
    ]


REPORTS = {"lm": _lm_report, "pairs": _pairs_report, "mlm": _mlm_report}
