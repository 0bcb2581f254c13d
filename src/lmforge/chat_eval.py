"""Score a chat model turn by turn on held-out dialogues, against its base model prompted
few-shot: ``lmforge chat-eval``.

Every assistant turn of the evaluation dialogues is answered given the gold history (the
conversation up to that turn as the set writes it, not the model's own earlier answers), in at
most the reference's length + ``ROOM`` tokens, and scored by its kind. Questions with one right
answer are decoded greedily; the creation turns (``CREATION_KINDS``) are sampled by ``creation``
(default ``CREATION``: temperature 0.7), turn ``i`` with seed ``creation.seed + i``, for both
models. That is MT-Bench's split (greedy for extraction and reasoning, 0.7 for writing): greedy
free text falls into loops and copies (Holtzman et al. 2020).

* knowledge, reading, follow-up, refusal: exact match. Only whitespace is normalised (runs
  become one space, the ends are stripped) and final punctuation dropped (``FINAL``).
* couplet: corpus BLEU-2 on characters (sacrebleu through ``lmforge.data.pairs.bleu``; BLEU-2,
  as Zhang & Lapata 2014 report for Chinese poetry, where 4-gram matches in 5- or 7-character
  halves are rare), on 0..1, the answers and references normalised as above.
* quatrain: format accuracy: exactly 4 lines split at punctuation, each of the reference's
  number of characters, ideographs only, and none of them a line of tang's train split.
* discipline: over every turn, the share that ends with the end-of-turn token and holds no role
  marker (the model did not go on to write the user's next turn).

The base model has no role tokens: it reads plain text, every message one line of its own
(``<s>問：...</s>``, ``<s>答：...</s>``), after ``FEW_SHOT`` training dialogues that hold the
turn's kind (in-context, no tuning), and answers on a line opened with ``答：``; its end of turn
is ``</s>``, and writing ``問：`` is writing the user's turn.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from lmforge.chat import Reply, load_chat_model, reply
from lmforge.chat.session import GREEDY
from lmforge.data import load_corpus
from lmforge.data.dialogues import read_dialogues
from lmforge.data.pairs import bleu
from lmforge.data.tang_chat import BUILTIN_DIALOGUES, KINDS
from lmforge.errors import ConfigError, DataError
from lmforge.folders import load_model, read_record
from lmforge.nn.sampling import Sampler
from lmforge.tokenize import CHAT_TOKENS, Tokenizer

__all__ = [
    "CREATION_KINDS",
    "SCORED_KINDS",
    "Turn",
    "base_reply",
    "chat_eval",
    "couplet_bleu",
    "eval_turns",
    "exact_match",
    "format_table",
    "normalize",
    "quatrain_ok",
    "score_replies",
    "stops_cleanly",
]

SCORED_KINDS = (*KINDS, "discipline")
EXACT_KINDS = ("knowledge", "reading", "follow-up", "refusal")
CREATION_KINDS = ("couplet", "quatrain")
FINAL = "。．.！!？?，,；;：:、"  # final punctuation that exact match ignores
FEW_SHOT = 2  # training dialogues in the base's prompt, those that hold the turn's kind
ROOM = 16  # tokens a reply may write beyond its reference's length before it is cut off
BASE_ROLES = {"system": "說明", "user": "問", "assistant": "答"}
# How the creation turns are written by default: sampled at 0.7, as MT-Bench (Zheng et al. 2023,
# FastChat's llm_judge) samples its writing and roleplay questions and decodes its extraction,
# math and reasoning ones greedily.
CREATION = Sampler(temperature=0.7, top_k=0, top_p=1.0, seed=0)
_HAN = re.compile(r"[\u4e00-\u9fff]+")
_BREAK = re.compile(r"[，。！？；,.!?;]")


@dataclass(frozen=True)
class Turn:
    """One assistant turn to answer: the conversation before it, its reference, its kind."""

    history: list[dict]
    gold: str
    kind: str


def eval_turns(dialogues: Sequence[dict]) -> list[Turn]:
    """Every assistant turn of ``dialogues`` (``{"messages", "kinds"}``) with its gold history.

    Raises:
        DataError: a dialogue whose ``kinds`` do not name one kind of ``KINDS`` per assistant
            turn.
    """
    turns = []
    for number, dialogue in enumerate(dialogues, start=1):
        messages, kinds = dialogue["messages"], dialogue.get("kinds")
        answers = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        if not isinstance(kinds, list) or len(kinds) != len(answers) or set(kinds) - set(KINDS):
            raise DataError(
                f"dialogue {number} needs a 'kinds' list, one of {', '.join(KINDS)} per assistant "
                f"turn ({len(answers)}); got {kinds!r}"
            )
        pairs = zip(answers, kinds, strict=True)
        turns += [Turn(messages[:i], messages[i]["content"], kind) for i, kind in pairs]
    return turns


def normalize(text: str) -> str:
    """Whitespace runs as one space, ends stripped, final punctuation dropped."""
    return " ".join(text.split()).rstrip(FINAL).rstrip()


def exact_match(answer: str, gold: str) -> bool:
    return normalize(answer) == normalize(gold)


def written_lines(text: str) -> list[str]:
    """The lines of a poem as written: the text split at punctuation, a final empty piece
    dropped (an empty line inside stays, and fails any format)."""
    pieces = _BREAK.split(text.strip())
    return pieces[:-1] if pieces and not pieces[-1] else pieces


def quatrain_ok(text: str, width: int, training_lines: set[str]) -> bool:
    """Whether ``text`` is a quatrain of ``width``-character lines of ideographs, no line of
    which is in ``training_lines``."""
    lines = written_lines(text)
    return len(lines) == 4 and all(
        len(line) == width and _HAN.fullmatch(line) and line not in training_lines for line in lines
    )


def couplet_bleu(answers: Sequence[str], golds: Sequence[str]) -> float:
    """Corpus BLEU-2 on characters, 0..1, of normalised answers against their references."""
    return bleu([normalize(a) for a in answers], [normalize(g) for g in golds], "zh", 2) / 100


def stops_cleanly(answer: Reply, markers: Sequence[str]) -> bool:
    """The reply ended with the end-of-turn token and wrote none of the role ``markers``."""
    return answer.stopped and not any(marker in answer.text for marker in markers)


def score_replies(
    turns: Sequence[Turn], replies: Sequence[Reply], markers: Sequence[str], training_lines
) -> dict[str, tuple[float, int]]:
    """kind -> (score, number of turns) for every kind present, and ``discipline``."""
    by_kind: dict[str, list[tuple[Turn, Reply]]] = {}
    for turn, answer in zip(turns, replies, strict=True):
        by_kind.setdefault(turn.kind, []).append((turn, answer))
    scores = {}
    for kind, pairs in by_kind.items():
        if kind in EXACT_KINDS:
            hits = [exact_match(a.text, t.gold) for t, a in pairs]
        elif kind == "quatrain":
            hits = [
                quatrain_ok(a.text, len(written_lines(t.gold)[0]), training_lines) for t, a in pairs
            ]
        else:
            scores[kind] = (
                couplet_bleu([a.text for _, a in pairs], [t.gold for t, _ in pairs]),
                len(pairs),
            )
            continue
        scores[kind] = (sum(hits) / len(hits), len(hits))
    clean = [stops_cleanly(a, markers) for a in replies]
    scores["discipline"] = (sum(clean) / max(len(clean), 1), len(clean))
    return scores


def base_reply(
    model,
    tokenizer: Tokenizer,
    shots: Sequence[dict],
    history: Sequence[dict],
    max_new_tokens: int,
    sampler: Sampler = GREEDY,
) -> Reply:
    """The base LM's answer to ``history``, prompted with the ``shots`` dialogues as plain text
    (one line per message); the oldest shots are left out, then the prompt cut on the left,
    when the model cannot read it and write ``max_new_tokens`` (at most half its positions)."""
    limit = getattr(model.config, "max_seq_len", None)
    room = max_new_tokens if limit is None else min(max_new_tokens, limit // 2)
    opening = [tokenizer.bos_id, *tokenizer.encode(BASE_ROLES["assistant"] + "：", markers=False)]
    for start in range(len(shots) + 1):
        messages = [m for shot in shots[start:] for m in shot["messages"]] + list(history)
        lines = [f"{BASE_ROLES[m['role']]}：{m['content']}" for m in messages]
        ids = [i for row in tokenizer.encode_batch(lines) for i in row] + opening
        if limit is None or len(ids) + room <= limit:
            break
    if limit is not None:
        ids = ids[max(len(ids) + room - limit, 0) :]
    steps = max_new_tokens if limit is None else min(max_new_tokens, limit - len(ids))
    started = time.perf_counter()
    prompt = torch.tensor([ids], dtype=torch.long, device=next(model.parameters()).device)
    new = model.generate(prompt, steps, sampler, eos_id=tokenizer.eos_id)[0, len(ids) :].tolist()
    stopped = bool(new) and new[-1] == tokenizer.eos_id
    new = new[:-1] if stopped else new
    return Reply(tokenizer.decode(new), len(new), time.perf_counter() - started, stopped)


def chat_eval(
    folder: str | os.PathLike,
    dialogues: str | os.PathLike = "tang-chat",
    base: str | os.PathLike | None = None,
    shots: str | os.PathLike | None = None,
    quiet: bool = True,
    creation: Sampler | None = CREATION,
) -> dict:
    """Score a chat model and its base (prompted few-shot) on evaluation dialogues.

    Args:
        folder: the chat model (``lmforge chat-tune``'s output).
        dialogues: a built-in set (``tang-chat``: its ``eval`` split) or a JSONL file whose lines
            carry ``"kinds"`` beside ``"messages"``.
        base: the base model folder; default: the ``base`` of the chat model's record.
        shots: a JSONL file of training dialogues for the base's prompt; default: the built-in
            set's ``train`` split (none for a file).
        quiet: no progress bars.
        creation: how both models write the creation turns (``CREATION_KINDS``); its seed
            (None: 0) plus the turn's index seeds each; None: greedily, as every other turn.

    Returns:
        ``{"rows": [{"kind", "model", "score", "n"}, ...], "creation": ..., ...}``: model
        ``base`` and ``tuned``; ``creation`` the sampler's settings, or ``"greedy"``.
    """
    base = base if base is not None else read_record(folder).get("base")
    if not base:
        raise ConfigError(f"{folder} does not record its base model; give it with --base DIR")
    turns = eval_turns(_dialogues(dialogues, "eval"))
    builtin = str(dialogues) in BUILTIN_DIALOGUES
    examples = _dialogues(shots or dialogues, "train") if shots or builtin else []
    shots_by_kind = {kind: _shots(examples, kind) for kind in KINDS}
    if creation is not None and creation.seed is None:
        creation = dataclasses.replace(creation, seed=0)
    samplers = [_sampler(creation, i, t.kind) for i, t in enumerate(turns)]
    started = time.perf_counter()
    model, tokenizer = load_chat_model(folder)
    tuned = [
        reply(model, tokenizer, t.history, _room(tokenizer, t.gold), sampler)
        for t, sampler in zip(_bar(turns, "tuned", quiet), samplers, strict=True)
    ]
    seconds = {"tuned": time.perf_counter() - started}
    started = time.perf_counter()
    model, tokenizer, _ = load_model(base)
    prompted = [
        base_reply(
            model, tokenizer, shots_by_kind[t.kind], t.history, _room(tokenizer, t.gold), sampler
        )
        for t, sampler in zip(_bar(turns, "base", quiet), samplers, strict=True)
    ]
    seconds["base"] = time.perf_counter() - started
    return {
        "rows": _rows(turns, {"base": prompted, "tuned": tuned}),
        "dialogues": str(dialogues),
        "tuned": str(folder),
        "base": str(base),
        "creation": dataclasses.asdict(creation) if creation else "greedy",
        "seconds": {name: round(value, 1) for name, value in seconds.items()},
    }


def _rows(turns: Sequence[Turn], replies: dict[str, list[Reply]]) -> list[dict]:
    """The score rows of each model's replies (``base`` marks a role turn as plain text)."""
    training_lines = {line for body in load_corpus("tang").train for line in written_lines(body)}
    rows = []
    for name, answers in replies.items():
        markers = ("問：",) if name == "base" else CHAT_TOKENS
        scores = score_replies(turns, answers, markers, training_lines)
        rows += [
            {"kind": kind, "model": name, "score": round(scores[kind][0], 4), "n": scores[kind][1]}
            for kind in SCORED_KINDS
            if kind in scores
        ]
    return rows


def format_table(result: dict) -> str:
    """The rows as one table: a line per kind, a column per model."""
    table = {(row["kind"], row["model"]): row for row in result["rows"]}
    kinds = [k for k in SCORED_KINDS if (k, "tuned") in table or (k, "base") in table]
    lines = [f"{'kind':12s} {'base':>7s} {'tuned':>7s} {'n':>6s}  measure"]
    for kind in kinds:
        base, tuned = table.get((kind, "base")), table.get((kind, "tuned"))
        n = (tuned or base)["n"]
        cells = [f"{row['score']:7.3f}" if row else f"{'-':>7s}" for row in (base, tuned)]
        lines.append(f"{kind:12s} {cells[0]} {cells[1]} {n:6d}  {_MEASURES[kind]}")
    return "\n".join(lines)


_MEASURES = {
    "knowledge": "exact match",
    "reading": "exact match",
    "follow-up": "exact match",
    "refusal": "exact match",
    "couplet": "BLEU-2 (characters)",
    "quatrain": "format accuracy",
    "discipline": "clean end of turn",
}


def _dialogues(source: str | os.PathLike, split: str) -> list[dict]:
    """A built-in set's split, or the dialogues of a file."""
    if str(source) in BUILTIN_DIALOGUES:
        return BUILTIN_DIALOGUES[str(source)](split)
    if not Path(source).exists():
        names = ", ".join(BUILTIN_DIALOGUES)
        raise DataError(f"{source}: no such file; give a dialogue JSONL file or one of: {names}")
    return read_dialogues(source)


def _shots(dialogues: Sequence[dict], kind: str) -> list[dict]:
    """The first ``FEW_SHOT`` dialogues that hold a turn of ``kind``."""
    return [d for d in dialogues if kind in d.get("kinds", ())][:FEW_SHOT]


def _sampler(creation: Sampler | None, index: int, kind: str) -> Sampler:
    """How turn ``index`` of ``kind`` is written: ``creation`` seeded for it, or greedy."""
    if creation is None or kind not in CREATION_KINDS:
        return GREEDY
    return dataclasses.replace(creation, seed=creation.seed + index)


def _room(tokenizer: Tokenizer, gold: str) -> int:
    return len(tokenizer.encode(gold, markers=False)) + ROOM


def _bar(turns: Sequence[Turn], name: str, quiet: bool):
    return tqdm(turns, desc=f"answering ({name})", unit="turn", disable=quiet, leave=False)
