"""Statistical n-gram language model: interpolated modified Kneser-Ney, exactly as KenLM's lmplz.

Papers: Kneser & Ney (1995); Chen & Goodman, "An Empirical Study of Smoothing Techniques for
Language Modeling" (1998), modified Kneser-Ney with three discounts per order (their eq. 26);
Heafield et al., "Scalable Modified Kneser-Ney Language Model Estimation" (2013), the estimation
that ``lmplz`` performs, which this file reproduces stage by stage:

1. count: every line is a sentence ``<s> w1 ... wn </s>``; count the n-grams of every order.
2. adjust: the highest order keeps raw counts; a lower-order n-gram gets its continuation count,
   the number of distinct words seen to its left, except n-grams that begin with ``<s>`` (nothing
   can stand left of them), which keep their raw count. ``<s>`` and ``<unk>`` as unigrams get 0.
3. discount: D1, D2, D3+ per order from the counts-of-counts of adjusted counts (eq. 26).
4. interpolate: p(w | ctx) = (a(ctx w) - D(a)) / sum_x a(ctx x) + gamma(ctx) p(w | ctx'),
   down to the uniform distribution over the vocabulary (``<unk>`` included, ``<s>`` excluded),
   so that ``<unk>`` gets the interpolated unigram mass (lmplz's ``--interpolate_unigrams``).

Simplified compared with lmplz: no pruning, no vocabulary limiting, everything in memory (numpy
arrays proportional to the number of distinct n-grams; no disk-backed sort).

Storage: n-grams of order n are numbered by their position in a sorted int64 key array, where
``key = id(prefix (n-1)-gram) * vocab_size + id(last word)`` — the whole model is a few arrays per
order, and lookups are vectorised: ``np.searchsorted``, or the hash tables of a binary file.
Probabilities are natural logs inside; log10 appears only in ARPA files and KenLM-style reports.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from itertools import chain, count, islice, repeat

import numpy as np

from lmforge.arpa import find_keys, read_arpa, write_arpa
from lmforge.errors import ConfigError, DataError
from lmforge.lmb import find_slotted, read_binary, write_binary
from lmforge.metrics import perplexity
from lmforge.models.family import Family
from lmforge.progress import Stages

UNK, BOS, EOS = "<unk>", "<s>", "</s>"
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
LN10 = math.log(10.0)
KENLM_FALLBACK = (0.5, 1.0, 1.5)


@dataclass(frozen=True)
class NgramConfig:
    """Settings of an n-gram model.

    Args:
        order: the n of the n-gram, >= 1.
        discount_fallback: () to fail when Kneser-Ney discounts cannot be estimated (as lmplz),
            or (D1, D2, D3+) to use instead for such an order (lmplz's ``--discount_fallback``,
            whose values are 0.5, 1.0, 1.5).
    """

    order: int = 5
    discount_fallback: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.order, int) or self.order < 1:
            raise ConfigError(f"order must be an integer >= 1, got {self.order!r}")
        fallback = tuple(float(d) for d in self.discount_fallback)
        object.__setattr__(self, "discount_fallback", fallback)
        if fallback and (
            len(fallback) != 3 or not all(0 <= d <= i + 1 for i, d in enumerate(fallback))
        ):
            raise ConfigError(
                f"discount_fallback must be () or three discounts D1 <= 1, D2 <= 2, D3+ <= 3 "
                f"such as {KENLM_FALLBACK}, got {self.discount_fallback!r}"
            )


@dataclass(frozen=True)
class NgramEvaluation:
    """What KenLM's ``query -v summary`` reports, plus the total log10 probability."""

    perplexity: float
    perplexity_excluding_oov: float
    oov: int
    tokens: int
    log10_prob: float

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# The math: small pure functions.


def kn_discounts(n1: int, n2: int, n3: int, n4: int) -> tuple[float, float, float]:
    """Modified Kneser-Ney discounts D1, D2, D3+ (Chen & Goodman 1998, eq. 26).

    Y = n1 / (n1 + 2 n2) and D_k = k - (k + 1) Y n_{k+1} / n_k, where n_k is the number of n-grams
    whose adjusted count is exactly k.

    Raises:
        ValueError: some n_k (k = 1..3) is zero, or a discount falls outside [0, k].
    """
    n = (n1, n2, n3, n4)
    for k in (1, 2, 3):
        if n[k - 1] == 0:
            raise ValueError(f"no n-grams have adjusted count {k}, so D{k} cannot be estimated")
    y = n1 / (n1 + 2.0 * n2)
    discounts = tuple(k - (k + 1) * y * n[k] / n[k - 1] for k in (1, 2, 3))
    for k, d in enumerate(discounts, start=1):
        if not 0.0 <= d <= k:
            raise ValueError(f"discount D{k} = {d:.4f} is outside [0, {k}]")
    return discounts


def counts_of_counts(adjusted: np.ndarray) -> tuple[int, int, int, int]:
    """n_1..n_4: how many n-grams have adjusted count exactly 1, 2, 3, 4."""
    hist = np.bincount(np.minimum(adjusted, 5), minlength=6)
    return tuple(int(h) for h in hist[1:5])


def interpolate_order(
    adjusted: np.ndarray,
    context: np.ndarray,
    n_contexts: int,
    lower_prob: np.ndarray,
    discounts: tuple[float, float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Interpolated modified Kneser-Ney probabilities of one order (Chen & Goodman, eq. 17-19).

    p(w | c) = (a(c w) - D(a(c w))) / sum_x a(c x) + gamma(c) * lower_prob,
    gamma(c) = (D1 N1(c .) + D2 N2(c .) + D3 N3+(c .)) / sum_x a(c x).

    Args:
        adjusted: (G,) adjusted counts of the n-grams of this order.
        context: (G,) index of each n-gram's context (its first n-1 words), in [0, n_contexts).
        n_contexts: number of possible contexts.
        lower_prob: (G,) probability of each n-gram's word given the shorter context.
        discounts: (D1, D2, D3+) of this order.

    Returns:
        (G,) probabilities and (n_contexts,) gamma per context (1.0 where c is never a context).
    """
    d = np.array((0.0, *discounts))
    denominator = np.bincount(context, weights=adjusted, minlength=n_contexts)
    capped = np.minimum(adjusted, 3)
    mass = np.bincount(context, weights=d[capped], minlength=n_contexts)  # sum_k D_k N_k(c .)
    is_context = denominator > 0
    gamma = np.ones(n_contexts)
    gamma[is_context] = mass[is_context] / denominator[is_context]
    prob = (adjusted - d[capped]) / denominator[context] + gamma[context] * lower_prob
    return prob, gamma


# ---------------------------------------------------------------------------------------------
# Counting: sentences -> token ids -> n-gram types of every order, vectorised.


@dataclass
class _Stream:
    """Token ids of sentences laid end to end, each ``<s> ... </s>``."""

    ids: np.ndarray  # (L,) int64
    pos: np.ndarray  # (L,) position of each token in its sentence (0 for <s>)
    left: np.ndarray  # (L,) tokens from here to the end of the sentence, this one included


def _stream(sentences: Iterable[Sequence[str]], word_ids: dict[str, int], grow: bool) -> _Stream:
    """Map sentences to ids with markers; with ``grow`` new words join ``word_ids``."""
    ids, sizes = _marked_ids(sentences, word_ids, grow)
    starts = np.cumsum(sizes) - sizes
    pos = np.arange(len(ids)) - np.repeat(starts, sizes)
    left = np.repeat(sizes, sizes) - pos
    return _Stream(ids, pos, left)


def _marked_ids(sentences, word_ids: dict[str, int], grow: bool) -> tuple[np.ndarray, np.ndarray]:
    """(L,) the ids of ``<s>`` + each sentence + ``</s>`` laid end to end, and (S,) their sizes."""
    if not isinstance(sentences, list | tuple):
        sentences = list(sentences)
    lengths = np.fromiter(map(len, sentences), np.int64, len(sentences))
    flat, total = chain.from_iterable(sentences), int(lengths.sum())
    if grow:  # a new word takes the next id, in C: defaultdict calls count's __next__
        grown = defaultdict(count(len(word_ids)).__next__, word_ids)
        words = np.fromiter(map(grown.__getitem__, flat), np.int64, total)
        word_ids.update(islice(grown.items(), len(word_ids), None))
    else:
        words = np.fromiter(map(word_ids.get, flat, repeat(UNK_ID)), np.int64, total)
    if np.any((words == BOS_ID) | (words == EOS_ID)):
        raise DataError("the text contains <s> or </s> as a word; remove them, lmforge adds them")
    sizes = lengths + 2
    ends = np.cumsum(sizes)
    ids = np.empty(int(ends[-1]) if len(ends) else 0, dtype=np.int64)
    is_word = np.ones(len(ids), dtype=bool)
    is_word[ends - sizes] = False
    is_word[ends - 1] = False
    ids[ends - sizes] = BOS_ID
    ids[ends - 1] = EOS_ID
    ids[is_word] = words
    return ids, sizes


@dataclass
class _Counts:
    """N-gram types of one order: sorted keys, and per type its counts and relatives."""

    keys: np.ndarray  # (G,) sorted; key = prefix_type * V + word (order 1: the word id)
    raw: np.ndarray  # (G,) raw counts
    at_start: np.ndarray  # (G,) bool: the n-gram begins with <s>
    suffix: np.ndarray  # (G,) type of the last n-1 words (order 1: 0)
    occurrence: np.ndarray  # (L,) type of the n-gram starting at each position, -1 if none


def count_ngrams(stream: _Stream, order: int, vocab_size: int) -> list[_Counts]:
    """Count the n-grams of orders 1..order; memory is proportional to the distinct n-grams.

    The n-grams of order n are sorted starting from the order of their first n-1 words, known
    from order n-1: the keys then come in runs of one prefix each, which a stable sort (timsort)
    merges in a few passes; ``np.unique`` would sort them from scratch.
    """
    ids = stream.ids
    unigrams = _Counts(
        keys=np.arange(vocab_size, dtype=np.int64),
        raw=np.bincount(ids, minlength=vocab_size),
        at_start=np.arange(vocab_size) == BOS_ID,
        suffix=np.zeros(vocab_size, dtype=np.int64),
        occurrence=ids,
    )
    levels = [unigrams]
    by_type = _radix_argsort(ids)  # positions in the order of the n-gram starting there
    for n in range(2, order + 1):
        prev = levels[-1]
        if len(prev.keys) * vocab_size >= 2**62:
            raise DataError(f"too many distinct {n - 1}-grams to index; use a lower order")
        starts = by_type[stream.left[by_type] >= n]  # where an n-gram fits, by its n-1 words
        keys = prev.occurrence[starts] * vocab_size + ids[starts + n - 1]
        by_key = np.argsort(keys, kind="stable")
        by_type, ordered = starts[by_key], keys[by_key]
        first = np.ones(len(ordered), dtype=bool)  # the first occurrence of each n-gram
        np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
        firsts = np.flatnonzero(first)
        types = np.cumsum(first) - 1  # the n-gram of each position of by_type
        occurrence = np.full(len(ids), -1, dtype=np.int64)
        occurrence[by_type] = types
        suffix = prev.occurrence[by_type[firsts] + 1]
        at_start = np.zeros(len(firsts), dtype=bool)
        at_start[types[stream.pos[by_type] == 0]] = True
        raw = np.diff(firsts, append=len(ordered))
        levels.append(_Counts(ordered[firsts], raw, at_start, suffix, occurrence))
    return levels


def _radix_argsort(keys: np.ndarray) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` for non-negative int64 keys, as a radix sort: numpy's
    stable sort of 16-bit digits is a counting sort, so a few passes of it beat timsort."""
    order = np.arange(len(keys))
    top = int(keys.max()).bit_length() if len(keys) else 0
    for shift in range(0, top, 16):  # least significant digit first; each pass stable
        digit = (keys[order] >> shift).astype(np.uint16)  # the low 16 bits of what is left
        order = order[np.argsort(digit, kind="stable")]
    return order


def count_ngrams_reference(sentences: Iterable[Sequence[str]], order: int) -> list[dict]:
    """Plain-Python n-gram counts (the readable reference for ``count_ngrams``).

    Returns:
        One dict per order mapping a tuple of words to its raw count.
    """
    counts: list[dict] = [{} for _ in range(order)]
    for sentence in sentences:
        words = [BOS, *sentence, EOS]
        for n in range(1, order + 1):
            for i in range(len(words) - n + 1):
                gram = tuple(words[i : i + n])
                counts[n - 1][gram] = counts[n - 1].get(gram, 0) + 1
    return counts


def adjust_counts(levels: list[_Counts]) -> list[np.ndarray]:
    """Kneser-Ney adjusted counts per order (see the module docstring, stage 2)."""
    adjusted = []
    for n, level in enumerate(levels, start=1):
        if n == len(levels):
            a = level.raw.copy()
        else:
            continuation = np.bincount(levels[n].suffix, minlength=len(level.keys))
            a = np.where(level.at_start, level.raw, continuation)
        if n == 1:
            a[[UNK_ID, BOS_ID]] = 0
        adjusted.append(a)
    return adjusted


# ---------------------------------------------------------------------------------------------
# The model.


class NgramLM:
    """An n-gram language model with backoff tables (as in an ARPA file).

    Build one with ``NgramLM.fit`` (modified Kneser-Ney) or ``NgramLM.load_arpa``.
    """

    def __init__(
        self,
        config: NgramConfig,
        vocab: list[str],
        keys: list[np.ndarray],
        log_prob: list[np.ndarray],
        log_backoff: list[np.ndarray],
        discounts: list[tuple[float, float, float]] | None = None,
        slots: list[np.ndarray | None] | None = None,
    ) -> None:
        self.config = config
        self.vocab = vocab
        self.word_ids = {w: i for i, w in enumerate(vocab)}
        self.keys = keys  # per order, sorted int64
        self.log_prob = log_prob  # per order, natural log
        self.log_backoff = log_backoff  # per order below the highest, natural log
        self.discounts = discounts or []
        self.slots = slots or []  # per order from 2: hash tables of the keys (lmforge.lmb)

    @property
    def order(self) -> int:
        return self.config.order

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def ngram_counts(self) -> list[int]:
        return [len(k) for k in self.keys]

    # -- estimation ---------------------------------------------------------------------------

    @classmethod
    def fit(
        cls, sentences: Iterable[Sequence[str]], config: NgramConfig, progress: bool = False
    ) -> NgramLM:
        """Estimate interpolated modified Kneser-Ney from tokenised sentences, as lmplz does.

        Args:
            sentences: each a sequence of token strings, without ``<s>``/``</s>``.
            config: order and discount fallback.
            progress: print numbered stages to stderr.

        Raises:
            DataError: no text, or discounts that cannot be estimated without a fallback.
        """
        stages = Stages(4, enabled=progress)
        stages.next("reading tokens")
        word_ids = {UNK: UNK_ID, BOS: BOS_ID, EOS: EOS_ID}
        stream = _stream(sentences, word_ids, grow=True)
        if len(stream.ids) == 0:
            raise DataError("no sentences to train the n-gram model on; give some text")
        vocab = list(word_ids)
        stages.next(f"counting n-grams up to order {config.order} ({len(stream.ids):,} tokens)")
        levels = count_ngrams(stream, config.order, len(vocab))
        stages.next("adjusting counts and estimating discounts")
        adjusted = adjust_counts(levels)
        discounts = [_discounts_of(n, a, config) for n, a in enumerate(adjusted, start=1)]
        stages.next("interpolating probabilities")
        log_prob, log_backoff = _interpolate(levels, adjusted, discounts, len(vocab))
        stages.done()
        keys = [level.keys for level in levels]
        return cls(config, vocab, keys, log_prob, log_backoff, discounts)

    # -- querying -----------------------------------------------------------------------------

    def token_log_probs(self, sentences: Iterable[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        """Natural-log probability of every token after ``<s>``, with backoff, as KenLM's query.

        The longest n-gram ending at a token that the model holds gives its probability; the
        backoffs of the longer contexts (the n-grams ending just before it) are added. The
        n-grams ending at each position are found order by order: an (n+1)-gram can only end at
        a position after one where an n-gram ended.

        Returns:
            (L,) log probabilities of the tokens in order (each sentence's words, then ``</s>``),
            and (L,) bool flags of out-of-vocabulary tokens (scored as ``<unk>``).
        """
        ids, _ = _marked_ids(sentences, self.word_ids, grow=False)
        # take and compress throughout: numpy's fastest gather and filter
        logp = self.log_prob[0].take(ids)  # (L,) the unigram's, replaced by longer n-grams'
        best = np.ones(len(ids), dtype=np.int32)  # order of the n-gram that gave logp
        at, types = np.arange(len(ids)), ids  # where an n-gram ends, and which one
        contexts = []  # per order: (the position after each n-gram, the n-gram), within sentences
        for n in range(2, self.order + 1):
            inside = ids.take(at) != EOS_ID  # </s> ends the sentence: no n-gram goes on from it
            at, types = at.compress(inside) + 1, types.compress(inside)
            contexts.append((at, types))
            found = self._find(n, types * self.vocab_size + ids.take(at))
            hit = found >= 0
            at, types = at.compress(hit), found.compress(hit)
            logp[at] = self.log_prob[n - 1].take(types)
            best[at] = n
        for m, (after, types) in enumerate(contexts, start=1):
            backs_off = best.take(after) <= m  # the m-gram context was not extended by the token
            back = self.log_backoff[m - 1].take(types.compress(backs_off))
            logp[after.compress(backs_off)] += back
        target = ids != BOS_ID  # every token after <s> (words are never <s>)
        return logp[target], ids[target] == UNK_ID

    def _find(self, n: int, keys: np.ndarray) -> np.ndarray:
        """Index of each n-gram key among the model's n-grams, -1 where absent: through the
        hash table where the model has one (a binary file), else a binary search."""
        if self.slots and self.slots[n - 2] is not None:
            return find_slotted(self.keys[n - 1], self.slots[n - 2], keys)
        return find_keys(self.keys[n - 1], keys)

    def evaluate(self, sentences: Iterable[Sequence[str]]) -> NgramEvaluation:
        """Perplexity with and without OOVs, exactly as KenLM's ``query`` reports them."""
        logp, oov = self.token_log_probs(sentences)
        if len(logp) == 0:
            raise DataError("no sentences to evaluate; give some text")
        total = float(logp.sum())
        in_vocab = float(logp[~oov].sum())
        n_oov = int(oov.sum())
        return NgramEvaluation(
            perplexity=perplexity(-total, len(logp)),
            perplexity_excluding_oov=perplexity(-in_vocab, len(logp) - n_oov),
            oov=n_oov,
            tokens=len(logp),
            log10_prob=total / LN10,
        )

    def score(self, sentence: Sequence[str]) -> float:
        """log10 probability of one sentence, ``</s>`` included (KenLM's ``Model.score``)."""
        logp, _ = self.token_log_probs([sentence])
        return float(logp.sum()) / LN10

    # -- sampling -----------------------------------------------------------------------------

    def next_log_probs(self, context: Sequence[str]) -> np.ndarray:
        """Natural-log probability of every vocabulary word after ``<s> + context``.

        The same backoff rule as ``token_log_probs``, for all V words in one lookup pass per
        order: the longest n-gram (history suffix + word) that exists, plus the backoffs of the
        longer history suffixes that exist.

        Args:
            context: the words so far, without ``<s>``; unknown words are read as ``<unk>``.

        Returns:
            (V,) log probabilities indexed like ``vocab``; ``<s>`` gets -inf, ``</s>`` its own.

        Raises:
            DataError: the context contains ``<s>`` or ``</s>``.
        """
        history = [BOS_ID, *(self.word_ids.get(w, UNK_ID) for w in context)]
        if BOS_ID in history[1:] or EOS_ID in history[1:]:
            raise DataError("the context contains <s> or </s> as a word; remove them")
        suffixes = self._suffix_types(history)  # suffixes[m-1]: the last m words' type or -1
        V = self.vocab_size
        words = np.arange(V, dtype=np.int64)
        found = [words]  # found[n-1][w]: type of the n-gram (suffix + w), -1 if absent
        best = np.ones(V, dtype=np.int64)
        for n in range(2, self.order + 1):
            ctx = suffixes[n - 2] if n - 1 <= len(suffixes) else -1
            hit = find_keys(self.keys[n - 1], ctx * V + words) if ctx >= 0 else np.full(V, -1)
            found.append(hit)
            best[hit >= 0] = n
        logp = np.empty(V)
        for n in range(1, self.order + 1):
            sel = best == n
            logp[sel] = self.log_prob[n - 1][found[n - 1][sel]]
        for m, ctx in enumerate(suffixes[: self.order - 1], start=1):
            if ctx >= 0:
                logp[best <= m] += self.log_backoff[m - 1][ctx]
        logp[BOS_ID] = -np.inf
        return logp

    def _suffix_types(self, history: list[int]) -> list[int]:
        """Types of the n-grams formed by the last 1, 2, ... order-1 ids of history (-1: none)."""
        tail = np.asarray(history[-(self.order - 1) :] if self.order > 1 else [], np.int64)
        ending = tail.copy()  # ending[i]: type of the m-gram ending at tail[i], -1 if absent
        suffixes = []
        for m in range(1, len(tail) + 1):
            if m > 1:
                prev = np.concatenate([[-1], ending[:-1]])
                ok = prev >= 0
                ending = np.full(len(tail), -1, dtype=np.int64)
                ending[ok] = find_keys(self.keys[m - 1], prev[ok] * self.vocab_size + tail[ok])
            suffixes.append(int(ending[-1]))
        return suffixes

    def generate(
        self,
        context: Sequence[str],
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> list[str]:
        """Sample up to ``max_new_tokens`` words after ``<s> + context``, stopping at ``</s>``.

        Each word is drawn from ``next_log_probs`` by ``lmforge.nn.sampling.sample_next``
        (temperature 0 is greedy) in the neural families' loop, ``lmforge.nn.decoding``'s
        ``decode_tokens``. ``<unk>`` can be drawn: it holds the unigram mass of the unseen words.

        Returns:
            The new words, without ``</s>``.
        """
        import torch

        from lmforge.nn.decoding import decode_tokens
        from lmforge.nn.sampling import sample_next

        generator = None if seed is None else torch.Generator().manual_seed(seed)

        def step(ids: torch.Tensor, words: list[str]) -> tuple[torch.Tensor, list[str]]:
            words = [*words, *(self.vocab[i] for i in ids[0].tolist())]  # the newest word, if any
            return torch.from_numpy(self.next_log_probs(words))[None], words  # (1, V)

        def choose(logp: torch.Tensor, written: torch.Tensor) -> torch.Tensor:
            return sample_next(logp, temperature, top_k, top_p, generator)

        start = torch.empty(1, 0, dtype=torch.long)  # nothing new yet: the context is in words
        ids = decode_tokens(step, start, list(context), max_new_tokens, choose, EOS_ID)
        return [self.vocab[i] for i in ids[0].tolist() if i != EOS_ID]

    # -- ARPA ---------------------------------------------------------------------------------

    def save_arpa(self, path: str | os.PathLike) -> None:
        """Write an ARPA file (log10 values), readable by KenLM, SRILM and IRSTLM."""
        log10_prob = [p / LN10 for p in self.log_prob]
        log10_backoff = [b / LN10 for b in self.log_backoff]
        write_arpa(path, self.vocab, self.keys, log10_prob, log10_backoff)

    def save_binary(self, path: str | os.PathLike) -> None:
        """Write the memory-mappable binary format (``lmforge.lmb``): loads without parsing
        and scores exactly as this model does."""
        write_binary(path, self.vocab, self.keys, self.log_prob, self.log_backoff)

    @classmethod
    def load_binary(cls, path: str | os.PathLike) -> NgramLM:
        """Map a binary file (``save_binary``, ``lmforge ngram binary``).

        Raises:
            CheckpointError: missing, damaged or foreign file.
        """
        vocab, keys, log_prob, log_backoff, slots = read_binary(path)
        return cls(NgramConfig(order=len(keys)), vocab, keys, log_prob, log_backoff, slots=slots)

    @classmethod
    def load_arpa(cls, path: str | os.PathLike) -> NgramLM:
        """Read an ARPA file (from lmforge, KenLM, SRILM or IRSTLM).

        Raises:
            CheckpointError: missing or malformed file.
        """
        vocab, keys, log10_prob, log10_backoff = read_arpa(path)
        log_prob = [p * LN10 for p in log10_prob]
        log_backoff = [b * LN10 for b in log10_backoff]
        return cls(NgramConfig(order=len(keys)), vocab, keys, log_prob, log_backoff)


def _discounts_of(n: int, adjusted: np.ndarray, config: NgramConfig) -> tuple[float, float, float]:
    return discounts_of(n, counts_of_counts(adjusted), config)


def discounts_of(n: int, counts: Sequence[int], config: NgramConfig) -> tuple[float, float, float]:
    """``kn_discounts`` of the n-grams' counts-of-counts (n1..n4), or ``config``'s fallback when
    they cannot be estimated.

    Raises:
        DataError: they cannot, and there is no fallback.
    """
    try:
        return kn_discounts(*(int(c) for c in counts))
    except ValueError as err:
        if config.discount_fallback:
            return tuple(config.discount_fallback)
        raise DataError(
            f"could not estimate Kneser-Ney discounts for {n}-grams: {err}; the text is too small "
            f"or artificial. Give more text, lower the order, or pass --discount-fallback "
            f"(uses {' '.join(map(str, KENLM_FALLBACK))} as KenLM does)"
        ) from None


def _interpolate(levels, adjusted, discounts, vocab_size):
    """Probabilities of every order, lowest first, and the backoffs (gammas) of contexts."""
    log_prob, log_backoff = [], []
    uniform = 1.0 / (vocab_size - 1)  # <unk> included, <s> excluded, as lmplz
    lower = np.full(vocab_size, uniform)
    gammas = []
    for n, (level, a) in enumerate(zip(levels, adjusted, strict=True), start=1):
        if n == 1:
            context, n_contexts = np.zeros(len(a), dtype=np.int64), 1
        else:
            context, n_contexts = level.keys // vocab_size, len(levels[n - 2].keys)
        prob, gamma = interpolate_order(
            a, context, n_contexts, lower[level.suffix], discounts[n - 1]
        )
        if n == 1:
            prob[BOS_ID] = 1.0  # <s> is never predicted; lmplz writes log10 p = 0
        else:
            gammas.append(gamma)
        log_prob.append(np.log(prob))
        lower = prob
    log_backoff = [np.log(g) for g in gammas]
    return log_prob, log_backoff


FAMILY = Family(
    name="ngram",
    config_class=NgramConfig,
    model_class=NgramLM,
    summary="statistical n-gram LM, interpolated modified Kneser-Ney (KenLM lmplz exact)",
    fitting="counting",
)
