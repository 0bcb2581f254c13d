"""Decoding: the one token-by-token loop, greedy, sampling, beam search, MBR and n-gram blocking.

Every decoder picks its tokens with ``lmforge.nn.sampling.sample_next`` (temperature 0: greedy)
inside ``decode_tokens``, the one token-by-token loop; beam search alone keeps several hypotheses
per row and has its own loop. Two kinds of model are decoded:

- causal LMs (``generate``): ``model.step(ids, cache) -> (logits (B, V), cache)``, ids (B, t)
  the prompt when cache is None, else the newest token (``lmforge.models.family``);
- encoder-decoders (``greedy_decode``, ``sample_decode``, ``mbr_decode``, ``beam_search``;
  families with ``seq2seq=True``): ``start_decoding(source) -> state``,
  ``decode_step(tokens, state) -> (log_probs, state)`` with tokens (B,) and log-probs (B, V),
  ``reorder_state(state, index)`` for beam search, and ``config.max_seq_len``, the longest
  output. Their outputs start after ``<s>`` and end before ``</s>``; ``Blocking`` bans repeated
  n-grams of the output or of the source.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from lmforge.config import check_int
from lmforge.errors import ConfigError
from lmforge.nn.sampling import Sampler, sample_next
from lmforge.tokenize import BOS_ID, EOS_ID, PAD_ID

__all__ = [
    "Blocking",
    "banned_tokens",
    "beam_search",
    "decode_tokens",
    "generate",
    "greedy_decode",
    "length_penalty",
    "mbr_decode",
    "mbr_select",
    "sample_decode",
    "sentence_bleu",
    "source_tokens",
]

# step(inputs (B, t), state) -> (scores (B, V), state); choose(scores, written (B, i)) -> (B,)
Step = Callable[[torch.Tensor, object], tuple[torch.Tensor, object]]
Choose = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def decode_tokens(
    step: Step,
    inputs: torch.Tensor,
    state: object,
    max_steps: int,
    choose: Choose,
    eos_id: int | None = None,
) -> torch.Tensor:
    """The one token-by-token loop: ``max_steps`` times, ``step`` reads the inputs (first
    ``inputs``, then the newest tokens as (B, 1)) and ``choose`` maps its (B, V) scores and the
    (B, i) tokens written so far to the (B,) next tokens. Once a row has produced ``eos_id`` it
    is padded with ``eos_id``; the loop stops early when every row has. No step follows the last
    token.

    Returns:
        (B, n) the chosen tokens, n = max_steps unless every row ended early.
    """
    batch = inputs.shape[0]
    out = torch.empty(batch, max_steps, dtype=torch.long, device=inputs.device)
    finished = None if eos_id is None else torch.zeros(batch, dtype=torch.bool, device=out.device)
    for i in range(max_steps):
        scores, state = step(inputs, state)
        tokens = choose(scores, out[:, :i])  # (B,)
        if finished is not None:
            tokens = tokens.masked_fill(finished, eos_id)
            finished |= tokens == eos_id
        out[:, i] = tokens
        if finished is not None and bool(finished.all()):
            return out[:, : i + 1]
        inputs = out[:, i : i + 1]
    return out


# ---------------------------------------------------------------------------------------------
# Causal LMs.


def generate(
    model: nn.Module,
    prompt_ids: torch.Tensor,
    max_new_tokens: int,
    sampler: Sampler,
    eos_id: int | None = None,
) -> torch.Tensor:
    """Extend each prompt by up to ``max_new_tokens`` tokens, one ``model.step`` per token.

    The first step reads the whole prompt (cache None); each later step reads only the newest
    token and the model's cache. Once a row has produced ``eos_id`` it is padded with ``eos_id``;
    the loop stops early when every row has. Families bind it as their ``generate`` method.

    Args:
        model: a causal neural family's model (``step(ids, cache) -> (logits (B, V), cache)``).
        prompt_ids: (B, t) int64 prompt, t >= 1.
        max_new_tokens: how many tokens to add, >= 0.
        sampler: how to pick each token; its seed makes the result reproducible.
        eos_id: the end-of-sequence id, or None to always produce max_new_tokens.

    Returns:
        (B, t + n) int64 ids, n = max_new_tokens unless every row ended early.
    """
    if prompt_ids.dim() != 2 or prompt_ids.shape[1] == 0:
        raise ConfigError(f"prompt_ids must be (batch, length >= 1), got {tuple(prompt_ids.shape)}")
    if max_new_tokens < 0:
        raise ConfigError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    generator = None
    if sampler.seed is not None:
        generator = torch.Generator(device=prompt_ids.device).manual_seed(sampler.seed)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            new = decode_tokens(
                model.step,
                prompt_ids,
                None,
                max_new_tokens,
                lambda logits, _: sampler(logits, generator),
                eos_id,
            )
            out = torch.cat([prompt_ids, new], dim=1)
    finally:
        model.train(was_training)
    return out.clone()  # a normal tensor, usable outside inference mode (e.g. to train on)


# ---------------------------------------------------------------------------------------------
# Encoder-decoders: n-gram blocking.


def banned_tokens(prefix: Sequence[int], n: int, within: Sequence[int] | None = None) -> set[int]:
    """Tokens that, appended to ``prefix``, would repeat an n-gram of ``within`` (by default of
    the prefix itself): the n-gram blocking of Hugging Face's ``no_repeat_ngram_size`` (and,
    with ``within`` the source, ``encoder_no_repeat_ngram_size``). n = 1 bans every token seen;
    n = 0 bans nothing. ``</s>`` is never banned, so a hypothesis can always end."""
    if n < 1 or len(prefix) < n - 1:
        return set()
    seen = list(prefix if within is None else within)
    tail = list(prefix[len(prefix) - n + 1 :])  # the last n - 1 tokens ([] for n = 1)
    out = {seen[i + n - 1] for i in range(len(seen) - n + 1) if seen[i : i + n - 1] == tail}
    out.discard(EOS_ID)
    return out


@dataclass(frozen=True)
class Blocking:
    """Repeats a decoder may not write (``banned_tokens``): ``no_repeat_ngram`` n-grams of its
    own output, ``source_no_repeat_ngram`` n-grams of the source (0 = allowed)."""

    no_repeat_ngram: int = 0
    source_no_repeat_ngram: int = 0

    def __post_init__(self) -> None:
        check_int("no_repeat_ngram", self.no_repeat_ngram, 0)
        check_int("source_no_repeat_ngram", self.source_no_repeat_ngram, 0)

    def __bool__(self) -> bool:
        return bool(self.no_repeat_ngram or self.source_no_repeat_ngram)

    def apply(
        self, logp: torch.Tensor, prefixes: Sequence[Sequence[int]], sources: Sequence[list[int]]
    ) -> torch.Tensor:
        """(rows, V) log-probabilities with -inf at each row's banned next tokens (row r has
        written ``prefixes[r]`` for source ``sources[r]``)."""
        if not self:
            return logp
        rows, cols = [], []
        for r, prefix in enumerate(prefixes):
            banned = banned_tokens(prefix, self.no_repeat_ngram)
            banned |= banned_tokens(prefix, self.source_no_repeat_ngram, sources[r])
            rows += [r] * len(banned)
            cols += sorted(banned)
        if not rows:
            return logp
        index = (torch.tensor(rows, device=logp.device), torch.tensor(cols, device=logp.device))
        return logp.index_put(index, torch.tensor(-math.inf, device=logp.device))


def source_tokens(source: torch.Tensor) -> list[list[int]]:
    """(B, S) padded source ids -> per row its tokens without padding and markers."""
    return [[t for t in row if t not in (PAD_ID, BOS_ID, EOS_ID)] for row in source.tolist()]


# ---------------------------------------------------------------------------------------------
# Encoder-decoders: one target per row (greedy, sampled).


@torch.no_grad()
def greedy_decode(
    model: nn.Module,
    source: torch.Tensor,
    max_len: int | None = None,
    blocking: Blocking = Blocking(),
) -> list[list[int]]:
    """The most likely next token at every step (of those ``blocking`` allows), for (B, S)
    padded sources.

    Returns:
        per source, the target ids without ``<s>`` and ``</s>``, after at most ``max_len`` steps
        (and at most the model's ``max_seq_len``).
    """
    return _decode_rows(model, source, max_len, 0.0, None, blocking)


@torch.no_grad()
def sample_decode(
    model: nn.Module,
    source: torch.Tensor,
    num_samples: int,
    max_len: int | None = None,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    blocking: Blocking = Blocking(),
) -> list[list[list[int]]]:
    """``num_samples`` ancestral samples of a target for each of (B, S) padded sources: every
    token drawn from the model's next-token distribution (its log-probabilities / temperature),
    renormalised over the tokens ``blocking`` allows.

    Returns:
        per source, ``num_samples`` lists of target ids without ``<s>`` and ``</s>``.
    """
    if num_samples < 1 or temperature <= 0:
        raise ConfigError(
            f"sampling needs num_samples >= 1 and temperature > 0, got {num_samples!r} and "
            f"{temperature!r}"
        )
    many = source.repeat_interleave(num_samples, dim=0)
    rows = _decode_rows(model, many, max_len, temperature, generator, blocking)
    return [rows[b * num_samples : (b + 1) * num_samples] for b in range(source.shape[0])]


def _decode_rows(
    model: nn.Module,
    source: torch.Tensor,
    max_len: int | None,
    temperature: float,
    generator: torch.Generator | None,
    blocking: Blocking,
) -> list[list[int]]:
    """One target per row of (B, S) sources through ``decode_tokens``: each token picked by
    ``sample_next`` at ``temperature`` (0: greedy) among those ``blocking`` allows. Returns per
    row the ids without ``<s>`` and ``</s>``, after at most ``max_len`` (and ``max_seq_len``)
    steps."""
    sources = source_tokens(source) if blocking else []

    def choose(logp: torch.Tensor, written: torch.Tensor) -> torch.Tensor:
        prefixes = written.tolist() if blocking else []  # (a row that ended is given </s>)
        logp = blocking.apply(logp, prefixes, sources)
        return sample_next(logp, temperature, generator=generator)

    def step(tokens: torch.Tensor, state: object) -> tuple[torch.Tensor, object]:
        return model.decode_step(tokens[:, -1], state)

    steps = min(max_len or math.inf, model.config.max_seq_len)  # positions it can read
    first = torch.full((source.shape[0], 1), BOS_ID, dtype=torch.long, device=source.device)
    out = decode_tokens(step, first, model.start_decoding(source), steps, choose, EOS_ID)
    return [row[: row.index(EOS_ID)] if EOS_ID in row else row for row in out.tolist()]


# ---------------------------------------------------------------------------------------------
# Encoder-decoders: beam search.


def length_penalty(length: int, alpha: float) -> float:
    """lp(Y) = ((5 + |Y|) / 6)^alpha, Wu et al. 2016 (GNMT), eq. 14; 1 when alpha = 0."""
    return ((5.0 + length) / 6.0) ** alpha


@torch.no_grad()
def beam_search(
    model: nn.Module,
    source: torch.Tensor,
    beam_size: int = 4,
    max_len: int | None = None,
    alpha: float = 0.6,
    blocking: Blocking = Blocking(),
) -> list[list[int]]:
    """Beam search (Sutskever et al. 2014; Wu et al. 2016's length penalty) for (B, S) sources.

    Every source keeps ``beam_size`` live hypotheses; at each step the best ``2 * beam_size``
    extensions are ranked, an extension by ``</s>`` among the first ``beam_size`` finishes a
    hypothesis, scored log p(Y) / lp(|Y|) (``length_penalty``, |Y| counting ``</s>``), and the best
    non-final ones live on. A source is done when ``beam_size`` hypotheses have finished (or at
    ``max_len``, when the live ones are scored as they are). With beam_size 1 this is greedy.
    Extensions ``blocking`` bans are never taken.

    Returns:
        per source, the best target's ids without ``<s>`` and ``</s>``.
    """
    if beam_size < 1:
        raise ConfigError(f"beam_size must be an integer >= 1, got {beam_size!r}")
    max_len = min(max_len or math.inf, model.config.max_seq_len)  # positions it can read
    batch, k = source.shape[0], beam_size
    state = model.start_decoding(source.repeat_interleave(k, dim=0))  # rows b * k + j
    tokens = torch.full((batch * k,), BOS_ID, dtype=torch.long, device=source.device)
    scores = torch.full((batch, k), -math.inf, device=source.device)
    scores[:, 0] = 0.0  # the k beams start identical: expand only the first
    prefixes: list[list[list[int]]] = [[[] for _ in range(k)] for _ in range(batch)]
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    sources = [row for row in source_tokens(source) for _ in range(k)] if blocking else []
    for step in range(max_len):
        logp, state = model.decode_step(tokens, state)  # (B * k, V)
        logp = blocking.apply(logp, [p for beams in prefixes for p in beams], sources)
        vocab = logp.shape[-1]
        total = (scores.reshape(-1, 1) + logp.float()).view(batch, k * vocab)
        top_scores, top_index = total.topk(min(2 * k, k * vocab), dim=1)  # (B, 2k)
        top_scores, top_index = top_scores.tolist(), top_index.tolist()
        rows, next_tokens, next_scores = [], [], []
        for b in range(batch):
            ranked = zip(top_scores[b], top_index[b], strict=True)
            alive = _extend(ranked, vocab, k, prefixes[b], finished[b], step + 1, alpha)
            prefixes[b] = [prefixes[b][beam] + [token] for beam, token, _ in alive]
            rows += [b * k + beam for beam, _, _ in alive]
            next_tokens += [token for _, token, _ in alive]
            next_scores.append([score for _, _, score in alive])
        if all(len(f) >= k for f in finished):
            break
        index = torch.tensor(rows, device=source.device)
        state = model.reorder_state(state, index)
        tokens = torch.tensor(next_tokens, device=source.device)
        scores = torch.tensor(next_scores, device=source.device)
    return [_best_hypothesis(finished[b], prefixes[b], scores[b], k, alpha) for b in range(batch)]


def _extend(ranked, vocab, k, prefixes, finished, length, alpha) -> list[tuple[int, int, float]]:
    """One source's step of beam search: from its ranked (score, beam * vocab + token)
    extensions, the k (beam, token, score) that live on, padded with idle rows once the source
    is done. An extension by ``</s>`` among the first k finishes a hypothesis of ``length``
    tokens: (score / lp(length), its prefix) joins ``finished``."""
    alive: list[tuple[int, int, float]] = []
    if len(finished) < k:
        for rank, (score, flat) in enumerate(ranked):
            beam, token = divmod(flat, vocab)
            if score == -math.inf or len(alive) == k:
                break
            if token == EOS_ID:
                if rank < k:
                    finished.append((score / length_penalty(length, alpha), prefixes[beam]))
            else:
                alive.append((beam, token, score))
    return alive + [(0, PAD_ID, -math.inf)] * (k - len(alive))


def _best_hypothesis(finished, live_prefixes, live_scores, k, alpha) -> list[int]:
    """The best of a source's finished hypotheses; when fewer than k finished (the steps ran
    out), the live hypotheses compete as they are."""
    candidates = list(finished)
    if len(candidates) < k:
        candidates += [
            (s / length_penalty(len(p), alpha), p)
            for s, p in zip(live_scores.tolist(), live_prefixes, strict=True)
            if s > -math.inf
        ]
    return max(candidates, key=lambda c: c[0])[1] if candidates else []


# ---------------------------------------------------------------------------------------------
# Encoder-decoders: minimum-Bayes-risk decoding.


def _ngram_counts(ids: Sequence[int], max_order: int) -> Counter:
    """Counts of the 1- to max_order-grams of ``ids`` (tuples)."""
    return Counter(
        tuple(ids[i : i + n]) for n in range(1, max_order + 1) for i in range(len(ids) - n + 1)
    )


def sentence_bleu(hypothesis: Sequence[int], reference: Sequence[int], max_order: int = 4) -> float:
    """BLEU of one hypothesis against one reference, in [0, 1], with add-one smoothing of the
    2- to max_order-gram precisions ("BLEU+1", Lin & Och 2004) so that a short sentence without
    a 4-gram match still scores above 0:

        BLEU = BP * exp(mean_n log p_n),  p_1 = m_1 / h_1,  p_n = (m_n + 1) / (h_n + 1) for n > 1,
        BP = min(1, exp(1 - |ref| / |hyp|)),

    m_n: n-grams of the hypothesis also in the reference (clipped), h_n: its n-grams.
    """
    return _bleu_of_counts(
        _ngram_counts(hypothesis, max_order),
        len(hypothesis),
        _ngram_counts(reference, max_order),
        len(reference),
        max_order,
    )


def _bleu_of_counts(hyp: Counter, hyp_len: int, ref: Counter, ref_len: int, max_order: int):
    if hyp_len == 0:
        return 0.0
    matches, totals = [0] * max_order, [0] * max_order
    for gram, count in hyp.items():
        n = len(gram) - 1
        totals[n] += count
        matches[n] += min(count, ref.get(gram, 0))
    if matches[0] == 0:
        return 0.0
    log_p = math.log(matches[0] / totals[0])
    log_p += sum(math.log((matches[n] + 1) / (totals[n] + 1)) for n in range(1, max_order))
    brevity = min(0.0, 1.0 - ref_len / hyp_len)
    return math.exp(brevity + log_p / max_order)


def mbr_select(samples: Sequence[Sequence[int]], max_order: int = 4) -> list[int]:
    """Minimum-Bayes-risk choice among samples of a model (Kumar & Byrne 2004; Eikema & Aziz
    2020): the sample with the highest expected ``sentence_bleu`` when the reference is drawn
    from the model, estimated with the samples themselves as pseudo-references:

        y* = argmax_{h in samples} (1 / N) sum_j BLEU(h, s_j).

    Unlike the mode (beam search), this favours what the samples agree on, so a model whose
    distribution is right but flat is not pushed to its most generic output. Ties go to the
    first sample.
    """
    if not samples:
        return []
    unique = Counter(tuple(s) for s in samples)  # duplicates: one candidate, counted as weight
    counts = {h: _ngram_counts(h, max_order) for h in unique}
    best, best_score = None, -1.0
    for h in unique:
        score = sum(
            weight * _bleu_of_counts(counts[h], len(h), counts[r], len(r), max_order)
            for r, weight in unique.items()
        )
        if score > best_score:
            best, best_score = h, score
    return list(best)


def mbr_decode(
    model: nn.Module,
    source: torch.Tensor,
    num_samples: int = 32,
    max_len: int | None = None,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
    blocking: Blocking = Blocking(),
) -> list[list[int]]:
    """Sampling-based minimum-Bayes-risk decoding: ``num_samples`` samples per source
    (``sample_decode`` at ``temperature``, with ``blocking``), the one with the highest expected
    BLEU against the others (``mbr_select``). Returns per source the chosen target's ids."""
    samples = sample_decode(model, source, num_samples, max_len, temperature, generator, blocking)
    return [mbr_select(per_source) for per_source in samples]
