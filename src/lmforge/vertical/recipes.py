"""Recipes: how each kind of base becomes a classifier, is trained, predicts, and is pretrained
further on the domain.

A family names its recipe in its registry entry (``Family.adaptation``, ``RECIPES``):

* ``"causal"`` (gpt; Radford et al. 2018, section 3.2): ``CausalClassifier``, one linear layer
  on the last token's (``</s>``) final state, or on the mean of the tokens' states (``pooling``),
  trained on the task loss plus ``aux_weight`` (0.5) times the language-modelling loss of the
  same texts (``AuxLMClassificationTask``).
* ``"encoder"`` (bert, also an imported MiniLM): ``SequenceClassifier``, one linear layer on
  the pooled ``[CLS]`` vector (as ``lmforge.finetune``).
* ``"features"`` (elmo; Peters et al. 2018): the frozen biLM's mean-pooled ELMo vectors as
  features of a logistic-regression classifier.

Domain-adaptive pretraining (Gururangan et al. 2020) continues the base's own objective (its
family's ``task``: causal LM, or masked LM with next-sentence prediction) on the domain's text.
Also here: LoRA adapters through ``peft`` (Hu et al. 2021) and self-training's pseudo-labels.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lmforge.data.labelled import encode_examples
from lmforge.errors import ConfigError, UnknownModelError
from lmforge.models import FAMILIES, family_of
from lmforge.models.heads import CausalClassifier, SequenceClassifier
from lmforge.tokenize import Tokenizer
from lmforge.train.config import TrainConfig
from lmforge.train.tasks import (
    AuxLMClassificationTask,
    ClassificationTask,
    batched_logits,
    make_task,
)
from lmforge.train.trainer import Trainer
from lmforge.vertical.config import VerticalConfig, require_extras

__all__ = [
    "RECIPES",
    "CausalRecipe",
    "EncoderRecipe",
    "FeatureRecipe",
    "Recipe",
    "base_families",
    "for_base",
    "load_adapter",
    "lora_model",
    "pseudo_label",
    "recipe_for",
    "save_adapter",
    "self_train",
    "trainable_share",
]

LORA_TARGETS = r".*blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(fc|proj))"


def for_base(cfg: VerticalConfig, base: nn.Module, tokenizer) -> VerticalConfig:
    """``cfg`` with a 0 ``lr``, ``max_len``, ``dapt_steps`` or ``dapt_lr`` replaced by the
    base's own: its family's fine-tuning lr (``Family.adaptation``) and domain pretraining
    (``Adaptation.dapt``), and as many tokens as it reads (its positions, or fewer where its
    tokenizer has a limit, as sentence-transformers checkpoints do)."""
    family = family_of(base)
    limit = getattr(base.config, "max_seq_len", 128)
    limit = min(limit, getattr(tokenizer, "max_length", None) or limit)
    steps, lr = family.adaptation.dapt
    return dataclasses.replace(
        cfg,
        lr=cfg.lr or family.adaptation.lr,
        max_len=cfg.max_len or limit,
        dapt_steps=cfg.dapt_steps or steps,
        dapt_lr=cfg.dapt_lr or lr,
    )


class Recipe:
    """Fine-tuning, prediction and domain pretraining on one base: what every recipe shares.

    Args:
        base: the pretrained base model.
        tokenizer: its tokenizer.
        labels: the classes, in order.
        cfg: the run's settings; a 0 lr, max_len or domain pretraining becomes the base's own.
    """

    windows = False  # a long text is read as up to ``cfg.windows`` windows
    frozen = False  # the base is used as frozen features (nothing for LoRA to adapt)

    def __init__(self, base: nn.Module, tokenizer: Tokenizer, labels: list, cfg: VerticalConfig):
        self.base, self.tokenizer, self.labels = base, tokenizer, labels
        self.family = family_of(base)
        self.cfg = cfg = for_base(cfg, base, tokenizer)
        self.window = min(cfg.max_len, getattr(base.config, "max_seq_len", cfg.max_len))
        self.max_len = self.window * (cfg.windows if self.windows else 1)

    def reseeded(self, seed: int) -> Recipe:
        """The same recipe with another seed (another label draw)."""
        cfg = dataclasses.replace(self.cfg, seed=seed)
        return type(self)(self.base, self.tokenizer, self.labels, cfg)

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

    def head(self, lm: nn.Module) -> nn.Module:
        """The classifier on ``lm``: its one new layer drawn from the current random state."""
        raise NotImplementedError

    def task(self, data) -> ClassificationTask:
        """The Trainer's task on encoded examples ``data``."""
        cfg = self.cfg
        return ClassificationTask(data, None, self.tokenizer.pad_id, cfg.batch_size, cfg.seed)

    def fit(self, lm: nn.Module, records: Sequence[dict], lr: float, lora: bool = False):
        """A classifier on ``lm`` (a copy; ``lm`` is left as it is) trained on ``records``."""
        lm = copy.deepcopy(lm)
        torch.manual_seed(self.cfg.seed)  # the new layer's start: not whatever ran before
        model = self.head(lm)
        if lora:
            model = lora_model(model, self.cfg.lora_r, self.cfg.lora_alpha)
        task = self.task(self.encode(records))
        Trainer(model, self._train_config(len(records), lr), task=task, progress=False).fit()
        model.eval()
        return model

    def predict_proba(self, model, records: Sequence[dict]) -> torch.Tensor:
        """(N, n_labels) class probabilities of ``records`` under a fitted classifier."""
        data = self.encode(records)
        logits = [part for part, _ in batched_logits(model, data, self.tokenizer.pad_id)]
        return torch.cat(logits).softmax(-1).cpu()

    def domain_text(self, lines: Sequence[str]) -> list[str]:
        """The domain's texts as the base's pretraining task reads them."""
        return list(lines)

    def domain_pretrain(self, lines: Sequence[str]) -> nn.Module:
        """A copy of the base trained further on its own objective over ``lines``. Heads that an
        import left random (``fresh_heads``) first train alone, the rest frozen."""
        lm = copy.deepcopy(self.base)
        cfg = self.cfg
        config = self._train_config(0, cfg.dapt_lr, cfg.dapt_steps)
        task = make_task(lm, self.tokenizer, self.domain_text(lines), None, config)
        fresh = getattr(lm, "fresh_heads", ())
        if fresh and cfg.dapt_head_steps:
            lm.requires_grad_(False)
            for name in fresh:
                getattr(lm, name).requires_grad_(True)
            warmup = self._train_config(0, cfg.dapt_head_lr, cfg.dapt_head_steps)
            Trainer(lm, warmup, task=task, progress=True).fit()
            lm.requires_grad_(True)
        Trainer(lm, config, task=task, progress=True).fit()
        lm.eval()
        return lm


class CausalRecipe(Recipe):
    """A GPT base: ``CausalClassifier`` trained with the auxiliary LM loss (GPT-1)."""

    windows = True

    def head(self, lm: nn.Module) -> nn.Module:
        return CausalClassifier(lm, len(self.labels), self.window, self.cfg.pooling)

    def task(self, data) -> ClassificationTask:
        cfg = self.cfg
        pad = self.tokenizer.pad_id
        return AuxLMClassificationTask(
            data, None, pad, cfg.batch_size, cfg.seed, aux_weight=cfg.aux_weight
        )


class EncoderRecipe(Recipe):
    """A BERT base: ``SequenceClassifier`` on the pooled [CLS]; masked-LM domain pretraining."""

    def head(self, lm: nn.Module) -> nn.Module:
        model = SequenceClassifier(lm, len(self.labels))
        for module in (lm.mlm_head, lm.nsp_head):  # unused by the classifier
            module.requires_grad_(False)
        return model

    def domain_text(self, lines: Sequence[str]) -> list[str]:
        """Each text as a document of its sentences, a blank line after it (masked LM + NSP)."""
        return [x for line in lines for x in (*_sentences(line), "")]


class FeatureRecipe(Recipe):
    """An ELMo base: its frozen mean-pooled vectors as features of a logistic regression; a
    fitted "model" is the pair (biLM, regression)."""

    frozen = True

    def fit(self, lm: nn.Module, records: Sequence[dict], lr: float, lora: bool = False):
        from sklearn.linear_model import LogisticRegression

        lm = copy.deepcopy(lm)
        classifier = LogisticRegression(max_iter=2000, random_state=self.cfg.seed)
        classifier.fit(
            self._features(lm, records), [self.labels.index(r["label"]) for r in records]
        )
        return (lm, classifier)

    def predict_proba(self, model, records: Sequence[dict]) -> torch.Tensor:
        elmo, classifier = model
        return torch.from_numpy(classifier.predict_proba(self._features(elmo, records)))

    def _features(self, elmo: nn.Module, records: Sequence[dict]) -> np.ndarray:
        elmo.eval()
        with torch.no_grad():
            vectors = elmo.embed([r["text"] for r in records], self.tokenizer)
        return torch.stack(
            [v.mean(0) if len(v) else torch.zeros(2 * elmo.config.d_model) for v in vectors]
        ).numpy()


RECIPES = {"causal": CausalRecipe, "encoder": EncoderRecipe, "features": FeatureRecipe}


def base_families() -> list[str]:
    """The families that can be a vertical base: those with a classifier recipe."""
    return [name for name, family in FAMILIES.items() if family.adaptation]


def recipe_for(base: nn.Module, tokenizer: Tokenizer, labels: list, cfg: VerticalConfig) -> Recipe:
    """The recipe that ``base``'s family names (``Family.adaptation``).

    Raises:
        ConfigError: a base of a family with no classifier recipe.
    """
    try:
        adaptation = family_of(base).adaptation
        name = adaptation.recipe if adaptation else None
    except UnknownModelError:
        name = None
    if name is None:
        raise ConfigError(
            f"a {type(base).__name__} base cannot be fine-tuned for classification; give a "
            f"base of family {', '.join(base_families())}"
        )
    return RECIPES[name](base, tokenizer, labels, cfg)


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


def trainable_share(model: nn.Module) -> float:
    """The share of ``model``'s parameters that train."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad) / total


# ---------------------------------------------------------------------------------------------
# Self-training.


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


def self_train(recipe: Recipe, model, adapted: nn.Module, chosen: list, pool: list[str]):
    """``cfg.rounds`` rounds of pseudo-labelling (at most ``cfg.pool`` texts of the pool) and
    retraining from the adapted base; returns the last model and how many texts it added."""
    cfg = recipe.cfg
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
