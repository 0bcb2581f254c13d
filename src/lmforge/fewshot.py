"""Zero- and few-shot in-context learning: classification by prompting, with no gradient update
(Brown et al. 2020, "Language Models are Few-Shot Learners", section 2).

A prompt is a task description, k labelled demonstrations and the query::

    {description}
    Text: {demo text} Answer: {demo label word}
    ...
    Text: {query text} Answer:

Each candidate label's word(s) (its *verbalizer*) is scored by the model's log-likelihood as the
continuation of the prompt; the best-scoring label is the prediction. With ``normalize`` the score
is the mean log-probability per token of the continuation (GPT-3's per-token normalisation), so
long label words are not penalised; with ``calibrate`` the score of each label after a
content-free query is subtracted (Zhao et al. 2021), which removes a small model's fixed
preference for one label word. Any family the registry marks ``promptable`` works: ``gpt``, the
recurrent families, ``nnlm`` and the n-gram model (which reads only its last order - 1 words of
the prompt). A prompt longer than
the model's context keeps its last tokens: the earliest demonstrations fall out of a small
model's window first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from lmforge.data.batching import pad_rows
from lmforge.errors import ConfigError, UnknownModelError
from lmforge.models import FAMILIES, Family, family_of
from lmforge.tokenize import Tokenizer

__all__ = [
    "build_channel_prompt",
    "build_prompt",
    "continuation_scores",
    "fewshot_accuracy",
    "option_scores",
    "predict_labels",
]

RECURRENT_CONTEXT = 512  # tokens of prompt a model without max_seq_len reads


def _cut(text: str, words: int) -> str:
    pieces = text.split()
    return " ".join(pieces[:words]) + (" ..." if len(pieces) > words else "")


def build_prompt(
    description: str, demos: Sequence[tuple[str, str]], text: str, words: int = 32
) -> str:
    """The prompt for ``text``: description, (text, label word) demonstrations, the query.

    Args:
        description: one sentence saying what the task is.
        demos: (text, label word) pairs, in order.
        text: the query.
        words: each text is cut to its first ``words`` words.
    """
    parts = [description.strip()]
    parts += [f"Text: {_cut(t, words)} Answer: {word}" for t, word in demos]
    parts.append(f"Text: {_cut(text, words)} Answer:")
    return "\n".join(parts)


def build_channel_prompt(description: str, texts: Sequence[str], word: str, words: int = 32) -> str:
    """The context of the *channel* direction for one label: the description, that label's
    demonstrations as "Answer: {word} Text: {text}" lines, and "Answer: {word} Text:"; the query
    text is the continuation scored (Min et al. 2022, "Noisy Channel Language Model Prompting
    for Few-Shot Text Classification": P(text | label) instead of P(label | text), steadier for
    small models, which cannot learn a label from a few examples but do continue a text in the
    manner of the texts before it)."""
    parts = [description.strip()]
    parts += [f"Answer: {word} Text: {_cut(t, words)}" for t in texts]
    parts.append(f"Answer: {word} Text:")
    return "\n".join(parts)


def option_scores(
    model,
    tokenizer: Tokenizer | None,
    prompts: Sequence[str],
    options: Sequence[str],
    normalize: bool = True,
) -> np.ndarray:
    """log P(option | prompt) for every prompt and option, (n_prompts, n_options).

    Args:
        model: a model of a ``promptable`` family (gpt, rnn/lstm/gru, nnlm, ngram).
        tokenizer: the model's tokenizer (None for an n-gram model without one: words).
        prompts: the contexts.
        options: each candidate continuation (a label's word or words).
        normalize: mean log-probability per option token instead of the sum.
    """
    if not options:
        raise ConfigError("few-shot scoring needs at least one candidate label")
    pairs = [(prompt, option) for prompt in prompts for option in options]
    return continuation_scores(model, tokenizer, pairs, normalize).reshape(len(prompts), -1)


@torch.no_grad()
def continuation_scores(
    model,
    tokenizer: Tokenizer | None,
    pairs: Sequence[tuple[str, str]],
    normalize: bool = True,
    batch_size: int = 32,
) -> np.ndarray:
    """log P(continuation | context) of each (context, continuation) pair, (n_pairs,)."""
    if _prompted_family(model).fitting == "counting":
        return _ngram_scores(model, tokenizer, pairs, normalize)
    model.eval()
    device = next(model.parameters()).device
    limit = getattr(model.config, "max_seq_len", None) or RECURRENT_CONTEXT
    contexts = tokenizer.encode_batch([c for c, _ in pairs], markers=False)
    endings = tokenizer.encode_batch([" " + e for _, e in pairs], markers=False)
    rows, spans = [], []  # every sequence, and where its continuation starts
    for context, ending in zip(contexts, endings, strict=True):
        ending = (ending or [tokenizer.unk_id])[:limit]
        seq = [tokenizer.bos_id, *context, *ending][-(limit + 1) :]
        rows.append(seq)
        spans.append(len(seq) - len(ending))
    scores = np.empty(len(rows))
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        inputs, _ = pad_rows([seq[:-1] for seq in chunk], tokenizer.pad_id)
        targets, _ = pad_rows([seq[1:] for seq in chunk], tokenizer.pad_id)
        state = model.init_state(len(chunk), device) if model.recurrent else None
        logp, _ = model.log_probs(inputs.to(device), targets.to(device), state)
        logp = logp.cpu()
        for i, seq in enumerate(chunk):
            first = spans[start + i] - 1  # target index of the continuation's first token
            total = logp[i, first : len(seq) - 1].sum().item()
            scores[start + i] = _pool(total, len(seq) - 1 - first, normalize)
    return scores


def _prompted_family(model) -> Family:
    """The registry entry of ``model``, a family that few-shot prompting can score."""
    try:
        family = family_of(model)
    except UnknownModelError:
        family = None
    if family is None or not family.promptable:
        names = ", ".join(name for name, f in FAMILIES.items() if f.promptable)
        raise ConfigError(
            f"{family.name if family else type(model).__name__} is not a left-to-right language "
            f"model; few-shot prompting needs one of {names}"
        )
    return family


def _pool(total: float, count: int, normalize: bool) -> float:
    return total / count if normalize else total


def _ngram_scores(model, tokenizer, pairs, normalize) -> np.ndarray:
    def words(text: str) -> list[str]:
        return tokenizer.tokens(text) if tokenizer is not None else text.split()

    sentences, counts = [], []
    for context, ending in pairs:
        tail = words(ending) or [ending]
        sentences.append([*words(context), *tail])
        counts.append(len(tail))
    logp, _ = model.token_log_probs(sentences)  # each sentence's tokens, then </s>
    scores, end = np.empty(len(sentences)), 0
    for i, sentence in enumerate(sentences):
        end += len(sentence) + 1
        ending = logp[end - 1 - counts[i] : end - 1]  # the continuation's tokens, before </s>
        scores[i] = _pool(float(ending.sum()), counts[i], normalize)
    return scores


def predict_labels(
    model,
    tokenizer: Tokenizer | None,
    description: str,
    demos: Sequence[dict],
    texts: Sequence[str],
    verbalizers: dict,
    normalize: bool = True,
    words: int = 32,
    calibrate: bool = False,
    channel: bool = False,
) -> list:
    """The label whose verbalizer the model finds likeliest after each text's prompt.

    Args:
        demos: labelled examples ``{"text", "label"}`` shown in every prompt, in order.
        verbalizers: label -> word(s); the candidates.
        calibrate: subtract each option's score after a content-free query ("N/A") with the
            same description and demonstrations (contextual calibration, Zhao et al. 2021), so
            that a label the model prefers whatever the text does not win every time.
        channel: score the text given each label instead (``build_channel_prompt``).
    """
    labels = list(verbalizers)
    if channel:
        prompts = {
            k: build_channel_prompt(
                description, [d["text"] for d in demos if d["label"] == k], verbalizers[k], words
            )
            for k in labels
        }
        pairs = [(prompts[k], _cut(text, words)) for text in texts for k in labels]
        scores = continuation_scores(model, tokenizer, pairs, normalize)
        return [labels[i] for i in scores.reshape(len(texts), -1).argmax(axis=1)]
    options = [verbalizers[k] for k in labels]
    shown = [(d["text"], verbalizers[d["label"]]) for d in demos]
    prompts = [build_prompt(description, shown, text, words) for text in texts]
    scores = option_scores(model, tokenizer, prompts, options, normalize)
    if calibrate:
        free = build_prompt(description, shown, "N/A", words)
        scores = scores - option_scores(model, tokenizer, [free], options, normalize)
    return [labels[i] for i in scores.argmax(axis=1)]


def fewshot_accuracy(model, tokenizer, description, demos, records, verbalizers, **kwargs) -> tuple:
    """(accuracy, predictions) of ``predict_labels`` on labelled ``records``."""
    predicted = predict_labels(
        model, tokenizer, description, demos, [r["text"] for r in records], verbalizers, **kwargs
    )
    hits = sum(p == r["label"] for p, r in zip(predicted, records, strict=True))
    return hits / len(records), predicted
