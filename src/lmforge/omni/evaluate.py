"""``lmforge omni eval``: every pair of modalities scored on held-out items.

- X -> text: exact match of the reply with the item's label.
- text -> X and the cross-modal pairs: the reply's item is decoded (pixels, sound, points) and
  the modality's judge, a classifier trained apart on real training items, must name the label
  asked for. Diversity is the mean pairwise distance between the generated items of a label,
  beside the same figure for real held-out items of that label (a collapsed generator scores
  far below the real one).
- cross-modal answers that name the label first ("seven", then the drawing): ``named`` is the
  share whose word is the label, beside the judged item's ``score``.
- chain: image -> its label -> a bigger drawing of it (more ink pixels than the image shown,
  and judged the same digit) or another image of it -> its spoken word, each turn on the
  model's own earlier answers; a chain counts when every turn is right. The row also gives the
  share of bigger drawings right (``bigger``, of ``n_bigger``).
- speech -> X: the score is the mean over the held-out voices of each voice's share right
  (``per_voice``), the issue's measure and the peer's; ``accuracy`` is the share of items right
  (the voices have unequal numbers of items).

The model reads each given digit and word also through its other views, as ``lmforge omni chat``
does: a digit turned, zoomed and slanted (``image.seeing_views``), a word with its formants and
speed moved (``speech.hearing_views``). ``baseline_views`` is the speech peer given the same
views (its probabilities averaged), and ``--no-views`` scores the items as they are.

Each tokenizer's reconstruction on the held-out items comes first (MSE, and the judge on real
and on encode -> decode items: ``tokenizers`` in the JSON). Each row's ``baseline`` is the peer
the issue names for it, measured here in the same run: the judge on real held-out items (SVC on
raw pixels for digits), MFCC + logistic regression for speech, an MLP for MNIST-1D, D2
histograms + logistic regression for 3D shapes.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import torch

from lmforge.checkpoint import write_json
from lmforge.nn.sampling import Sampler
from lmforge.omni.judges import baseline_of, judge_of
from lmforge.omni.modalities import MODALITIES
from lmforge.omni.model import Omni, item_samplers
from lmforge.omni.tasks import DIGITS, TASKS, chain_conversation, conversation, is_bigger
from lmforge.omni.train import banks_of, tasks_of
from lmforge.omni.vocab import Item

__all__ = ["evaluate_omni", "print_table", "voice_scores"]


def evaluate_omni(
    folder: str | os.PathLike,
    json_path: str | os.PathLike | None = None,
    grid_path: str | os.PathLike | None = None,
    limit: int = 0,
    say: Callable[[str], None] = print,
    temperature: float | None = None,
    views: bool = True,
) -> list[dict]:
    """Score the omni model in ``folder`` on every task; write the rows as JSON and a picture
    grid (the generated digits, a row per label) if asked. The held-out items are those of the
    seed the model was trained with (another seed would split the digits otherwise).

    Args:
        limit: score at most this many held-out items per task (0: all).
        temperature: the generated items' sampling temperature for every modality (default:
            each modality's own, ``Modality.temperature``).
        views: the model reads each held-out item it is given beside its modality's other
            views of it (``Modality.views``: images and speech), as ``lmforge omni chat``
            does; the speech peer is then also scored on those views (``baseline_views``).
    """
    sampler = item_samplers(temperature)  # a bad temperature stops here, before any work
    omni = Omni.load(folder)
    seed = omni.record.get("config", {}).get("seed", 0)
    names = list(omni.tokenizers)
    say(f"1/3 judges and baselines for {', '.join(names)}")
    train = {m: MODALITIES[m].load("train", seed=seed) for m in names}
    test = {m: MODALITIES[m].load("test", seed=seed) for m in names}
    judges = {m: judge_of(m, train[m], seed) for m in names}
    heard = {m: MODALITIES[m].views(test[m].x) for m in names} if views else {}
    banks = banks_of(omni.tokenizers, test, views=heard)
    tokenizers = {m: _report(omni, m, test[m], judges[m]) for m in names}
    for m, report in tokenizers.items():
        say(
            f"  {m} tokenizer, held-out items: MSE {report['mse']:.4g}, judge on real "
            f"{report['judge_real']:.3f}, on encode -> decode {report['judge_reconstructed']:.3f}"
        )
    rows, made = [], {}
    tasks = tasks_of(names)
    for i, task in enumerate(tasks, 1):
        say(f"2/3 task {i}/{len(tasks)}: {task}")
        if task == "chain":
            rows.append(_chains(omni, banks, judges, limit, seed, sampler))
            continue
        row, items, right, picks = _task(omni, task, banks, judges, limit, seed, sampler)
        real = test[TASKS[task][1]] if TASKS[task][1] != "text" else None
        row["baseline"], peer = baseline_of(task, train, test, judges, seed, heard.get("speech"))
        if TASKS[task][0] == "speech":  # held-out voices: each on its own, then their mean
            row.update(voice_scores(right, [test["speech"].extra["voice"][i] for i in picks]))
        row.update(peer)
        if items:
            row["diversity"], row["real_diversity"] = _diversity(items, real, judges)
            made[task] = items
        rows.append(row)
    say("3/3 writing")
    if json_path:
        write_json(
            Path(json_path),
            {
                "rows": rows,
                "item_temperature": {m: sampler[m].temperature for m in names},
                "tokenizers": tokenizers,
            },
        )
    if grid_path and "text->image" in made:
        _grid(made["text->image"], Path(grid_path))
    return rows


def _report(omni: Omni, modality: str, items, judge) -> dict:
    """The tokenizer's reconstruction report on held-out items (``Modality.report``)."""
    report = MODALITIES[modality].report(omni.tokenizers[modality], items, judge.judge)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in report.items()}


def _task(omni: Omni, task: str, banks, judges, limit: int, seed: int, sampler: dict[str, Sampler]):
    """One task on the held-out bank: (row, {label: [decoded items]} or None, whether each
    reply is right, the index of each item asked about)."""
    given, answered = TASKS[task]
    rng = random.Random(seed)
    source = banks[answered if given == "text" else given]
    count = len(source.names) if not limit else min(limit, len(source.names))
    if given != "text" and answered != "text":  # cross-modal: the items of shared labels
        pool = source.among(banks[answered].by_name)
        picks = pool[:count] if not limit else rng.sample(pool, min(count, len(pool)))
    else:
        picks = list(range(len(source.names)))
        picks = picks if not limit else rng.sample(picks, count)
    conversations, golds = [], []
    for index in picks:
        messages, gold = conversation(task, banks, rng, index)
        conversations.append(messages[:-1])
        golds.append(gold)
    replies = omni.reply(conversations, items=sampler, seed=seed)
    if answered == "text":
        right = _said(replies, golds)
        return {"task": task, "score": _mean(right), "n": len(right)}, None, right, picks
    right, made = _judged(omni, replies, golds, answered, judges[answered])
    row = {"task": task, "score": _mean(right), "n": len(right)}
    if given != "text" and any(_text(reply).strip() for reply in replies):
        # a named cross-modal answer (``OmniConfig.named_cross``): the word it wrote first
        row["named"] = _mean(_said(replies, golds))
    return row, made, right, picks


def _judged(omni: Omni, replies, golds, modality: str, judge):
    """Whether each reply's item is judged to be its gold label; the decoded items by label."""
    decoded, where = [], []
    for i, reply in enumerate(replies):
        item = next((p for p in reply if isinstance(p, Item) and p.modality == modality), None)
        if item is not None:
            decoded.append(omni.decode(item))
            where.append(i)
    right = [False] * len(replies)
    made: dict[str, list[torch.Tensor]] = {}
    if decoded:
        x = torch.stack(decoded)
        for i, name, item in zip(where, judge.names(x), decoded, strict=False):
            right[i] = name == golds[i]
            made.setdefault(golds[i], []).append(item)
    return right, made


def _chains(omni: Omni, banks, judges, limit: int, seed: int, sampler: dict[str, Sampler]) -> dict:
    rng = random.Random(seed)
    pool = banks["image"].among(banks["speech"].by_name)
    picks = pool if not limit else rng.sample(pool, min(limit, len(pool)))
    chains = [chain_conversation(banks, rng, i) for i in picks]
    history = [[m[0]] for m, _ in chains]
    golds = [gold for _, gold in chains]
    ok = [True] * len(chains)
    bigger = [is_bigger(messages) for messages, _ in chains]
    for turn, check in ((1, "text"), (3, "image"), (5, "speech")):
        replies = omni.reply(history, items=sampler, seed=seed)
        if check == "text":
            right = _said(replies, golds)
        else:
            right, _ = _judged(omni, replies, golds, check, judges[check])
        if check == "image":  # "draw a bigger one": more ink than the digit shown
            right = [
                r and (not b or _bigger(omni, reply, messages[0]))
                for r, b, reply, (messages, _) in zip(right, bigger, replies, chains, strict=True)
            ]
            bigger_right = [r for r, b in zip(right, bigger, strict=True) if b]
        for i, (messages, _) in enumerate(chains):
            ok[i] = ok[i] and right[i]
            history[i] += [{"role": "assistant", "content": replies[i]}]
            if turn < 5:
                history[i].append(messages[turn + 1])
    return {
        "task": "chain",
        "score": _mean(ok),
        "n": len(ok),
        "baseline": None,
        "bigger": _mean(bigger_right),
        "n_bigger": len(bigger_right),
    }


def _bigger(omni: Omni, reply, shown: dict) -> bool:
    """Whether the reply's image has more ink pixels than the image the chain began with."""
    from lmforge.omni.image import ink

    drawn = next(p for p in reply if isinstance(p, Item) and p.modality == "image")
    first = next(p for p in shown["content"] if isinstance(p, Item))
    return bool(ink(omni.decode(drawn)[None]) > ink(omni.decode(first)[None]))


def _diversity(made: dict, real, judges) -> tuple[float, float | None]:
    """Mean pairwise distance within a label: generated items, and real held-out ones."""

    def spread(groups) -> float:
        values = []
        for items in groups:
            if len(items) > 1:
                flat = torch.stack(list(items)).flatten(1).float()
                d = torch.cdist(flat, flat)
                values.append(float(d.sum() / (len(flat) * (len(flat) - 1))))
        return sum(values) / len(values) if values else 0.0

    real_spread = None
    if real is not None:
        groups = {}
        for x, y in zip(real.x, real.y.tolist(), strict=False):
            groups.setdefault(y, []).append(x)
        real_spread = round(spread(groups.values()), 4)
    return round(spread(made.values()), 4), real_spread


def _grid(made: dict, path: Path) -> None:
    from lmforge.omni.image import image_grid, save_png

    labels = sorted(made, key=lambda label: (DIGITS.index(label) if label in DIGITS else 99, label))
    columns = min(len(v) for v in made.values())
    columns = max(1, min(columns, 10))
    images = [made[label][c] for label in labels for c in range(columns)]
    save_png(path, image_grid(torch.stack(images), columns), scale=4)


def voice_scores(right: list[bool], voices: list[str]) -> dict:
    """The scores of a task given held-out voices: ``per_voice`` (each voice's share right),
    ``score`` (their mean: every voice counts the same, the issue's measure and the peer's,
    though slt has three times the items of rms) and ``accuracy`` (the share of items right)."""
    groups: dict[str, list[bool]] = {}
    for flag, voice in zip(right, voices, strict=True):
        groups.setdefault(voice, []).append(flag)
    per_voice = {voice: _mean(flags) for voice, flags in sorted(groups.items())}
    return {"score": _mean(per_voice.values()), "accuracy": _mean(right), "per_voice": per_voice}


def _text(parts) -> str:
    return "".join(p for p in parts if isinstance(p, str))


def _said(replies, golds) -> list[bool]:
    """Whether each reply's text is exactly its gold label."""
    return [_text(reply).strip() == gold for reply, gold in zip(replies, golds, strict=True)]


def _mean(flags) -> float:
    return round(sum(flags) / len(flags), 4) if flags else 0.0


def print_table(rows: list[dict], say: Callable[[str], None] = print) -> None:
    say(f"{'task':<15} {'score':>7} {'n':>6} {'baseline':>9}  diversity (real)")
    for row in rows:
        base = "" if row.get("baseline") is None else f"{row['baseline']:.3f}"
        div = ""
        if "diversity" in row:
            div = f"{row['diversity']:.3f} ({row['real_diversity']})"
        say(f"{row['task']:<15} {row['score']:>7.3f} {row['n']:>6} {base:>9}  {div}")
        for voice, score in row.get("per_voice", {}).items():
            peer = row.get("baseline_per_voice", {}).get(voice)
            peer = "" if peer is None else f"{peer:.3f}"
            say(f"  voice {voice:<9} {score:>7.3f} {'':>6} {peer:>9}")
        if "accuracy" in row:
            say(f"  {'all items':<15} {row['accuracy']:>7.3f}  (the score is the voices' mean)")
        if "named" in row:
            say(f"  {'word named':<15} {row['named']:>7.3f}  (the label it wrote before the item)")
        if "baseline_views" in row:
            say(f"  {'peer on views':<15} {'':>7} {'':>6} {row['baseline_views']:>9.3f}")
