"""Base model + vertical model: how much each way of adapting a base model to a domain buys,
label budget by label budget.

Methods (the rows of ``lmforge vertical``):

* ``scratch``: the base's architecture, randomly initialised, trained on the labels only.
* ``finetune``: the base model plus one new output layer, every weight fine-tuned, by the
  recipe its family names (``recipes``: GPT-1's last-token classifier with the auxiliary LM
  loss for ``gpt``, ``[CLS]`` for ``bert`` and an imported MiniLM, frozen features and logistic
  regression for ``elmo``).
* ``dapt+finetune`` (Gururangan et al. 2020): the base's own pretraining objective (causal LM,
  or masked LM for ``bert``) continued on the domain's unlabelled text, then fine-tuned.
* ``dapt+finetune+selftrain``: the fine-tuned model labels the unlabelled pool (the domain texts
  that are not labelled examples); predictions with probability >= ``threshold`` join the
  labelled set and the model is trained again from the adapted base; ``rounds`` times.
* ``lora`` (Hu et al. 2021, through ``peft``): the adapted base frozen, rank-``lora_r`` adapters
  on every attention and MLP projection plus the new output layer trained (saved and loaded
  apart from the base with ``save_adapter``/``load_adapter``).
* ``fewshot``: the base (a promptable family) prompted with k demonstrations, no gradient update
  (``lmforge.fewshot``); reported at k = ``fewshot_k``, once, at the first label budget (its row
  is the largest k, demonstrations drawn from that budget's examples).
* ``tfidf-logreg``: TF-IDF of words and word bigrams + logistic regression (scikit-learn).

Label budgets: 16, 64, 256 and all labelled examples, drawn class-balanced
(``lmforge.data.vertical.sample_labeled``).

Modules: ``config`` (settings, result), ``recipes`` (per kind of base: classifier, training,
prediction, domain pretraining; LoRA; self-training), ``baselines`` (TF-IDF), ``run`` (the run,
its rows and table), ``plot``, ``job`` (what ``lmforge vertical`` does: the default base,
loading a base, the task's settings, the estimate, the files written).
"""

from lmforge.vertical.baselines import tfidf_logreg
from lmforge.vertical.config import METHODS, SIZES, VerticalConfig, VerticalResult
from lmforge.vertical.job import (
    DEFAULT_BASE,
    TOKENS_PER_SECOND,
    about_minutes,
    default_base,
    estimate_minutes,
    file_task,
    load_base,
    task_config,
    tokens_per_second,
    vertical_job,
)
from lmforge.vertical.plot import plot_result
from lmforge.vertical.recipes import (
    RECIPES,
    for_base,
    load_adapter,
    lora_model,
    pseudo_label,
    recipe_for,
    save_adapter,
)
from lmforge.vertical.run import result_table, run_vertical

__all__ = [
    "DEFAULT_BASE",
    "METHODS",
    "RECIPES",
    "SIZES",
    "TOKENS_PER_SECOND",
    "VerticalConfig",
    "VerticalResult",
    "about_minutes",
    "default_base",
    "estimate_minutes",
    "file_task",
    "for_base",
    "load_adapter",
    "load_base",
    "lora_model",
    "plot_result",
    "pseudo_label",
    "recipe_for",
    "result_table",
    "run_vertical",
    "save_adapter",
    "task_config",
    "tfidf_logreg",
    "tokens_per_second",
    "vertical_job",
]
