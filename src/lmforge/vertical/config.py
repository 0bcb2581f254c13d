"""The settings of a vertical run and its result."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from lmforge.errors import ConfigError
from lmforge.models.heads import check_pooling

__all__ = [
    "ADAPTED",
    "METHODS",
    "SIZES",
    "VerticalConfig",
    "VerticalResult",
    "require_extras",
]

METHODS = (
    "scratch",
    "finetune",
    "dapt+finetune",
    "dapt+finetune+selftrain",
    "lora",
    "fewshot",
    "tfidf-logreg",
)
SIZES = (16, 64, 256, "all")
ADAPTED = {"dapt+finetune", "dapt+finetune+selftrain", "lora"}  # methods on the adapted base
SCORINGS = ("direct", "channel")  # few-shot: the label given the text, or the text given it


@dataclass(frozen=True)
class VerticalConfig:
    """Settings of a vertical run (defaults: a small base on a 2-core CPU).

    Fine-tuning runs ``epochs`` passes over the labelled examples, at least ``min_steps`` and at
    most ``max_steps`` steps of ``batch_size`` texts of at most ``max_len`` tokens, at ``lr``.
    0 for either means the base's own (``lmforge.vertical.recipes.for_base``): ``max_len`` as
    many tokens as it reads (the default gpt's 128 positions, MiniLM's 256, its
    sentence-transformers limit), ``lr`` its family's ``finetune_lr`` in the registry (2e-4 for
    gpt and elmo, 5e-5 for bert). A GPT base reads up to ``windows`` consecutive windows of
    ``max_len`` tokens of each text, and its classifier reads the last token's state
    (``pooling`` "last", GPT-1's) or the mean of all its tokens' states ("mean").

    Domain pretraining runs ``dapt_steps`` steps at ``dapt_lr``; 0 means the base family's own
    (``Adaptation.dapt``: 1,000 steps at 3e-4 for gpt and elmo, 300 at 1e-4 for bert). A base
    imported without its pretraining heads (MiniLM has no MLM or NSP head) first trains only
    those heads, encoder frozen, for ``dapt_head_steps`` steps at ``dapt_head_lr``, so that the
    random heads' first gradients do not scramble the encoder (linear probing before
    fine-tuning, Kumar et al. 2022).

    ``draws`` > 1 repeats every budget below "all" with other labelled samples and training
    seeds (``seed``, ``seed + 1``, ...) and reports the means and standard deviations.
    """

    sizes: tuple = SIZES
    methods: tuple = METHODS
    max_len: int = 0
    windows: int = 1
    pooling: str = "last"
    batch_size: int = 16
    lr: float = 0.0
    scratch_lr: float = 1e-3
    epochs: int = 3
    min_steps: int = 100
    max_steps: int = 300
    aux_weight: float = 0.5
    dapt_steps: int = 0
    dapt_lr: float = 0.0
    dapt_head_steps: int = 100
    dapt_head_lr: float = 1e-3
    rounds: int = 2
    threshold: float = 0.9
    pool: int = 1000
    lora_r: int = 8
    lora_alpha: int = 16
    lora_lr: float = 1e-3
    fewshot_k: tuple = (0, 1, 4, 16)
    fewshot_eval: int = 300
    fewshot_scorings: tuple = SCORINGS
    demo_words: int = 16
    normalize: bool = True
    seed: int = 0
    draws: int = 1
    threads: int = 0

    def steps_for(self, n_examples: int) -> int:
        """Fine-tuning steps for ``n_examples`` labelled examples."""
        epochs = self.epochs * math.ceil(n_examples / self.batch_size)
        return min(self.max_steps, max(self.min_steps, epochs))

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ConfigError(f"unknown method(s) {unknown}; choose among {', '.join(METHODS)}")
        check_pooling(self.pooling)
        scorings = [s for s in self.fewshot_scorings if s not in SCORINGS]
        if scorings:
            raise ConfigError(f"unknown few-shot scoring(s) {scorings}; use direct and/or channel")
        for name in ("windows", "draws"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        for n in self.sizes:
            if n != "all" and (not isinstance(n, int) or n < 2):
                raise ConfigError(f"label budgets are integers >= 2 or 'all', got {n!r}")


@dataclass
class VerticalResult:
    """Rows ``{"method", "labels", "accuracy", "macro_f1", "seconds", ...}`` and the few-shot
    curve ``{"k", "accuracy", "macro_f1", "seconds"}``."""

    task: str
    base: str
    rows: list[dict] = field(default_factory=list)
    fewshot: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


EXTRAS = {"lora": "peft", "tfidf-logreg": "sklearn"}  # method -> the optional package it needs


def require_extras(methods: Sequence[str]) -> None:
    """Raise a clear ConfigError when a method's optional package is not installed."""
    missing = sorted(
        {EXTRAS[m] for m in methods if m in EXTRAS and not importlib.util.find_spec(EXTRAS[m])}
    )
    if missing:
        raise ConfigError(
            f"{', '.join(missing)} is not installed; install the extra: "
            "pip install 'lmforge[vertical]'"
        )
