"""The vertical run: every method at every label budget, its rows and its table.

No held-out labels are used for choosing anything: every run trains for a fixed budget of steps
and is evaluated once. Every method but TF-IDF starts from one of three models: the base
("finetune"), the base's architecture with fresh weights ("scratch"), or the domain-adapted base
(the others), which is trained once per run, or loaded from ``adapted_dir`` when it holds one
from the same base, text and settings.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from lmforge.checkpoint import read_json, write_json
from lmforge.data.labelled import check_labels
from lmforge.data.vertical import sample_labeled
from lmforge.errors import DataError
from lmforge.fewshot import fewshot_accuracy
from lmforge.folders import load_model, save_model
from lmforge.metrics import macro_f1
from lmforge.tokenize import Tokenizer
from lmforge.vertical.baselines import tfidf_logreg
from lmforge.vertical.config import ADAPTED, VerticalConfig, VerticalResult, require_extras
from lmforge.vertical.recipes import Recipe, recipe_for, self_train, trainable_share

__all__ = ["DAPT_RECORD", "result_table", "run_vertical"]

DAPT_RECORD = "dapt.json"  # beside a kept domain-adapted base: the recipe it was trained with
START = {"scratch": "scratch", "finetune": "base"}  # the model a method starts from; else adapted
LEARNING_RATE = {"scratch": "scratch_lr", "lora": "lora_lr"}  # the setting; else ``lr``


@dataclass
class _Bench:
    """What every measurement of a run shares."""

    recipe: Recipe
    train: Sequence[dict]
    test: Sequence[dict]
    texts: list[str]  # the unlabelled domain texts
    starts: dict  # "base", "scratch", "adapted" -> the model a method starts from
    say: Callable[[str], None]


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
        base: the pretrained base model (a family with a classifier recipe; few-shot needs a
            promptable one).
        tokenizer: its tokenizer.
        train: the labelled pool; test: the evaluation examples.
        unlabeled: the domain's unlabelled text.
        description, verbalizers: the few-shot prompt's task description and label words
            (default: the labels themselves).
        adapted_dir: a folder for the domain-adapted base: reused when it holds one made from
            the same base, text and settings, else written there.

    Raises:
        DataError: an empty unlabelled set, fewer than two labels, or an evaluation label that
            is not a training label.
        ConfigError: a base of a family that cannot be fine-tuned.
    """
    labels = check_labels(train, test, "sequence")
    require_extras(cfg.methods)
    texts = [t for t in unlabeled if t.strip()]
    if not texts and (ADAPTED & set(cfg.methods)):
        raise DataError("the unlabelled domain text is empty; give a file with some text")
    recipe = recipe_for(base, tokenizer, labels, cfg)
    cfg = recipe.cfg  # with the base's own lr, max_len and domain pretraining where they were 0
    result = VerticalResult(task, base_name)
    methods = _runnable(recipe, result.notes)
    starts = {"base": base}
    if ADAPTED & set(methods):
        starts["adapted"] = _adapted_base(recipe, texts, adapted_dir, say)
    if "scratch" in methods:
        starts["scratch"] = type(base)(base.config).eval()  # the architecture, fresh weights
    bench = _Bench(recipe, train, test, texts, starts, say)
    for n in cfg.sizes:
        reuse: dict = {}  # draw -> (c)'s model and seconds, where self-training starts from
        for method in methods:
            if method != "fewshot":
                result.rows.append(_method_row(bench, method, n, reuse))
            elif n == cfg.sizes[0]:  # prompting learns nothing from more labels: once
                result.rows.append(_fewshot_row(bench, n, description, verbalizers, result))
    return result


def _runnable(recipe: Recipe, notes: list[str]) -> list[str]:
    """The methods of the run that the base allows; a note for each one left out."""
    methods, name = list(recipe.cfg.methods), recipe.family.name
    if recipe.frozen and "lora" in methods:
        methods.remove("lora")
        notes.append(f"lora skipped: a {name} base is used as frozen features")
    if not recipe.family.promptable and "fewshot" in methods:
        methods.remove("fewshot")
        notes.append(f"fewshot skipped: a {name} base is not a left-to-right LM")
    return methods


def _method_row(bench: _Bench, method: str, n, reuse: dict) -> dict:
    """The row of ``method`` at ``n`` labels, over ``cfg.draws`` label draws below "all"."""
    cfg = bench.recipe.cfg
    draws = 1 if n == "all" else cfg.draws
    bench.say(f"{method}, {n} labels" + (f", {draws} draws" if draws > 1 else "") + " ...")
    runs = []
    for draw in range(draws):  # each its own labelled sample and seed; one adapted base
        seed = cfg.seed + draw
        chosen = sample_labeled(bench.train, n, seed)
        if len({r["label"] for r in chosen}) < 2:
            raise DataError(f"{n} labelled examples hold fewer than two labels")
        runs.append(_measure(bench, bench.recipe.reseeded(seed), method, chosen, draw, reuse))
        if draws > 1:
            bench.say(
                f"  draw {draw + 1}/{draws} (seed {seed}): {runs[-1][0]:.3f} / {runs[-1][1]:.3f}"
            )
    row = _row(method, n, runs)
    spread = f" (sd {row['accuracy_sd']:.3f} over {draws} draws)" if draws > 1 else ""
    bench.say(
        f"  accuracy {row['accuracy']:.3f}{spread}, macro-F1 {row['macro_f1']:.3f} "
        f"({row['seconds']:.0f} s)"
    )
    return row


def _measure(bench: _Bench, runner: Recipe, method: str, chosen: list, draw: int, reuse: dict):
    """(accuracy, macro-F1, seconds, extras) of ``method`` trained on the labelled ``chosen``."""
    labels, start, extra = runner.labels, time.perf_counter(), {}
    if method == "tfidf-logreg":
        predicted = tfidf_logreg(chosen, bench.test, runner.cfg.seed)
    else:
        if method == "dapt+finetune+selftrain" and draw in reuse:
            model, seconds = reuse[draw]  # self-training starts from (c)'s model
            start -= seconds
        else:
            lm = bench.starts[START.get(method, "adapted")]
            lr = getattr(runner.cfg, LEARNING_RATE.get(method, "lr"))
            model = runner.fit(lm, chosen, lr, lora=method == "lora")
        if method == "dapt+finetune":
            reuse[draw] = (model, time.perf_counter() - start)
        if method == "lora":
            extra["trainable_share"] = round(trainable_share(model), 4)
        if method == "dapt+finetune+selftrain":
            seen = {r["text"] for r in chosen}
            pool = [t for t in bench.texts if t not in seen]
            model, added = self_train(runner, model, bench.starts["adapted"], chosen, pool)
            extra["pseudo_labels"] = added
        probs = runner.predict_proba(model, bench.test)
        predicted = [labels[i] for i in probs.argmax(1).tolist()]
    accuracy, f1 = _scores([r["label"] for r in bench.test], predicted, labels)
    return accuracy, f1, time.perf_counter() - start, extra


def _scores(gold: Sequence, predicted: Sequence, labels: Sequence) -> tuple[float, float]:
    """(accuracy, macro-F1) of ``predicted`` labels against ``gold``."""
    index = {label: i for i, label in enumerate(labels)}
    g = np.array([index[x] for x in gold])
    p = np.array([index.get(x, -1) for x in predicted])
    return float((g == p).mean()), macro_f1(g, p)


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


def _adapted_base(recipe: Recipe, lines: list[str], folder, say) -> nn.Module:
    """The base after domain-adaptive pretraining on ``lines``, from ``folder`` when it holds
    one with the same recipe (base weights, text, settings), else trained (and saved there)."""
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
    stamp = Path(folder) / DAPT_RECORD if folder else None
    if stamp is not None and stamp.exists() and read_json(stamp, "dapt record") == key:
        say(f"domain-adapted base: {folder} (already trained)")
        return load_model(folder)[0]
    say(f"domain-adaptive pretraining: {cfg.dapt_steps} steps on {len(lines):,} texts")
    adapted = recipe.domain_pretrain(lines)
    if stamp is not None:
        save_model(folder, adapted, recipe.tokenizer)
        write_json(stamp, key)
    return adapted


# ---------------------------------------------------------------------------------------------
# Few-shot prompting of the base.


def _fewshot_row(bench: _Bench, n, description: str, verbalizers, result) -> dict:
    """The few-shot curve into ``result.fewshot`` (demonstrations from ``n`` labels) and the row
    of its first scoring's largest k."""
    cfg = bench.recipe.cfg
    bench.say(f"fewshot, demonstrations from {n} labels ...")
    start = time.perf_counter()
    chosen = sample_labeled(bench.train, n, cfg.seed)
    _fewshot_curve(bench, chosen, description, verbalizers, result)
    last = result.fewshot[len(cfg.fewshot_k) - 1]  # first scoring's largest k
    point = {k: last[k] for k in ("k", "examples", "scoring")}
    return _row(
        "fewshot", n, [(last["accuracy"], last["macro_f1"], time.perf_counter() - start, point)]
    )


def _fewshot_curve(bench: _Bench, chosen, description, verbalizers, result) -> None:
    """Few-shot accuracy of the base at every k of ``fewshot_k`` (demos drawn class-balanced
    from ``chosen``) on ``fewshot_eval`` test examples (a seeded draw), for each scoring of
    ``fewshot_scorings`` ("direct": the label given the text; "channel": the text given the
    label), into ``result.fewshot``."""
    recipe, test = bench.recipe, bench.test
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
            bench.say(
                f"  few-shot ({scoring}) k={k}: accuracy {accuracy:.3f} on {len(subset)} examples"
            )


# ---------------------------------------------------------------------------------------------
# The table.


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
