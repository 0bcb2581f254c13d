"""N-gram estimation sharded on Dask (``--cluster local:N`` or ``--cluster tcp://host:8786``).

The result is the ARPA file of ``NgramLM.fit``, byte for byte: every step below is a step of
``ngram_outofcore`` (the same pure functions), run on workers instead of on disk.

Design (exactness first, then parallelism):

1. The client reads the text once, numbers the words in first-seen order (as ``NgramLM.fit``) and
   scatters shards of whole sentences to the workers, where they stay.
2. Order by order (an n-gram key holds the global type of its (n-1)-gram prefix, so order n waits
   for order n-1): each shard task looks its (n-1)-gram types up in the broadcast keys of order
   n-1 (keeping them on its worker for order n+1), counts its n-grams into one sorted run and cuts
   it into P partitions by CONTEXT RANGE: partition j holds the n-grams whose first n-1 words have
   a type in [j G/P, (j+1) G/P). A context's n-grams are thus all in one partition, and the
   partitions laid end to end are the global sorted order. One task per partition merges its runs.
3. Adjusted counts: the continuation counts of order n are the summed ``bincount`` of the suffix
   types of every partition of order n+1 (a worker task); each partition of order n then adjusts
   its slice and returns its counts-of-counts, which the client sums to compute the discounts once.
4. Interpolation, order by order, lowest first: the client broadcasts the probabilities of order
   n-1 (smaller than order n); each partition interpolates its contexts (``interpolate_order``
   needs nothing outside them) and returns probabilities and its contexts' gammas.
5. The client writes the ARPA file piece by piece (``write_arpa_streaming``).

The client holds the keys and probabilities of every order (as ``NgramLM.fit`` does, without the
per-token arrays); counting, merging, adjusting and interpolating run on the workers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from functools import reduce

import numpy as np

from lmforge.errors import ConfigError, DataError
from lmforge.models.ngram import BOS, BOS_ID, EOS, EOS_ID, UNK, UNK_ID, NgramConfig
from lmforge.ngram_outofcore import (
    BYTES_PER_TOKEN,
    ScaleStats,
    adjusted_piece,
    count_run,
    discounts_of,
    histogram,
    interpolate_block,
    merge_runs,
    ngram_types,
    read_chunks,
    start_block,
    tokens_left,
    unigram_probs,
    write_arpa_streaming,
)
from lmforge.progress import Stages

__all__ = ["connect", "fit_arpa_dask"]

INSTALL_HINT = "--cluster needs Dask: pip install lmforge[dask]"
CONNECT_TIMEOUT_S = 10
SHARD_TOKENS = 1_000_000


@contextmanager
def connect(cluster: str):
    """A ``dask.distributed.Client`` for ``local:N`` (a new local cluster of N worker processes)
    or a scheduler address (``tcp://host:8786``); closed on exit.

    Raises:
        ConfigError: Dask is absent, the spec is malformed, or the scheduler cannot be reached.
    """
    workers = cluster.removeprefix("local:") if cluster.startswith("local:") else None
    if workers is not None and (not workers.isdigit() or int(workers) < 1):
        raise ConfigError(
            f"--cluster {cluster!r}: give local:N with N >= 1 worker processes, such as "
            "local:4, or a scheduler address such as tcp://host:8786"
        )
    if workers is None and "://" not in cluster:
        raise ConfigError(
            f"--cluster {cluster!r} is neither local:N nor a scheduler address such as "
            "tcp://host:8786"
        )
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    local = None
    if workers is not None:
        local = LocalCluster(
            n_workers=int(workers),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=40,  # logging.ERROR: progress lines are lmforge's
        )
    address = cluster if local is None else local
    try:
        client = Client(address, timeout=f"{CONNECT_TIMEOUT_S}s")
    except (OSError, TimeoutError) as err:
        if local is not None:
            local.close()
        raise ConfigError(
            f"cannot reach the Dask scheduler at {cluster} within {CONNECT_TIMEOUT_S}s ({err}); "
            "start one with `dask scheduler` (and workers with `dask worker ADDRESS`), "
            "or use --cluster local:N"
        ) from None
    try:
        yield client
    finally:
        client.close()
        if local is not None:
            local.close()


# -- worker tasks: module-level functions of numpy arrays --------------------------------------


def _unigram_counts(ids: np.ndarray, vocab_size: int) -> np.ndarray:
    return np.bincount(ids, minlength=vocab_size)


def _types(ids, prev_types, keys, n, vocab_size) -> np.ndarray:
    """The type of the n-gram at each position of a shard (see ``ngram_types``)."""
    prev = ids if prev_types is None else prev_types
    return ngram_types(prev, ids, tokens_left(ids), n, keys, vocab_size)


def _partitioned_run(ids, types, n, vocab_size, bounds) -> list[tuple]:
    """A shard's sorted run of n-grams, cut at the key bounds of the partitions."""
    keys, counts, suffix = count_run(types, ids, tokens_left(ids), n, vocab_size)
    cuts = [0, *np.searchsorted(keys, bounds).tolist(), len(keys)]
    return [(keys[a:b], counts[a:b], suffix[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def _pick(runs: list, j: int):
    return runs[j]


def _merge(*runs):
    return merge_runs(runs)


def _part(merged: tuple, i: int) -> np.ndarray:
    return merged[i]


def _suffix_counts(merged: tuple, length: int) -> np.ndarray:
    return np.bincount(merged[2], minlength=length)


def _sum(*arrays):
    return reduce(np.add, arrays)  # one array at a time, not a (P, G) stack


def _adjust(merged, continuation, begin, block, n, order) -> np.ndarray:
    end = begin + len(merged[0])
    cont = None if continuation is None else continuation[begin:end]
    return adjusted_piece(merged[1], cont, begin, block, n, order)


def _interpolate(merged, adjusted, lower, discounts, vocab_size):
    return interpolate_block(merged[0], adjusted, merged[2], lower, discounts, vocab_size)


# -- the driver ----------------------------------------------------------------------------------


def fit_arpa_dask(
    sentences: Iterable[Sequence[str]],
    config: NgramConfig,
    arpa_path: str | os.PathLike,
    cluster: str,
    partitions: int = 0,
    shard_tokens: int = SHARD_TOKENS,
    progress: bool = False,
) -> ScaleStats:
    """Estimate as ``NgramLM.fit`` on a Dask cluster and write the ARPA file.

    Args:
        cluster: ``local:N`` or a scheduler address (``tcp://host:8786``).
        partitions: context-range partitions per order (0: two per worker).
        shard_tokens: tokens per shard of the text.

    Raises:
        ConfigError: no Dask or no cluster; DataError: no text, or discounts that cannot be
            estimated.
    """
    with connect(cluster) as client:
        return _estimate(client, sentences, config, arpa_path, partitions, shard_tokens, progress)


def _estimate(client, sentences, config, arpa_path, partitions, shard_tokens, progress):
    order = config.order
    workers = len(client.scheduler_info()["workers"])
    parts = partitions or max(1, 2 * workers)
    stages = Stages(4 + order, enabled=progress)
    stages.next(
        f"reading tokens into shards on {workers} Dask workers ({client.scheduler.address})"
    )
    word_ids = {UNK: UNK_ID, BOS: BOS_ID, EOS: EOS_ID}
    shards, tokens = [], 0
    for ids in read_chunks(sentences, word_ids, shard_tokens, shard_tokens * BYTES_PER_TOKEN):
        shards.append(client.scatter(ids))
        tokens += len(ids)
    if not shards:
        raise DataError("no sentences to train the n-gram model on; give some text")
    vocab, V = list(word_ids), len(word_ids)
    stats = ScaleStats(tokens=tokens, chunks=len(shards))
    stages.next(f"counting unigrams ({tokens:,} tokens, {len(shards)} shards, {parts} partitions)")
    raw1 = np.sum(client.gather(client.map(_unigram_counts, shards, vocab_size=V)), axis=0)
    keys = [np.arange(V, dtype=np.int64)]
    merged = [None, None]  # [n]: futures of the partitions of order n (1: on the client)
    sizes = [None, None]  # [n]: the n-grams in each partition of order n
    types = [None] * len(shards)
    for n in range(2, order + 1):
        stages.next(f"counting {n}-grams")
        keys_prev = client.scatter(keys[-1], broadcast=True)
        if n > 2:
            types = [
                client.submit(_types, s, t, keys_prev, n - 1, V)
                for s, t in zip(shards, types, strict=True)
            ]
        else:
            types = shards
        contexts = np.linspace(0, len(keys[-1]), parts + 1).astype(np.int64)[1:-1]
        runs = [
            client.submit(_partitioned_run, s, t, n, V, contexts * V)
            for s, t in zip(shards, types, strict=True)
        ]
        order_parts = [
            client.submit(_merge, *[client.submit(_pick, r, j) for r in runs]) for j in range(parts)
        ]
        merged.append(order_parts)
        part_keys = client.gather([client.submit(_part, m, 0) for m in order_parts])
        sizes.append([len(k) for k in part_keys])
        keys.append(np.concatenate(part_keys))
        stats.runs += len(runs)
    stages.next("adjusting counts and estimating discounts")
    adjusted, stats.discounts = _adjust_all(client, merged, sizes, keys, raw1, config, V)
    stages.next("interpolating probabilities")
    prob, gamma = _interpolate_all(client, merged, sizes, adjusted, keys, stats.discounts, V)
    stages.next(f"writing {arpa_path}")
    write_arpa_streaming(arpa_path, vocab, keys, prob, gamma, 1 << 16)
    stats.ngram_counts = [len(k) for k in keys]
    stages.done()
    return stats


def _adjust_all(client, merged, sizes, keys, raw1, config, V):
    """Adjusted counts (futures per partition; order 1 on the client) and the discounts."""
    order = config.order
    adjusted, discounts = [None] * (order + 1), []
    block = (BOS_ID, BOS_ID + 1)
    for n in range(1, order + 1):
        if n > 1:
            block = start_block(keys[n - 1], block, V)
        continuation = None
        if n < order:
            counts = [client.submit(_suffix_counts, m, len(keys[n - 1])) for m in merged[n + 1]]
            continuation = client.submit(_sum, *counts)
        if n == 1:
            cont = None if continuation is None else continuation.result()
            a = adjusted_piece(raw1, cont, 0, block, 1, order)
            adjusted[1], hist = a, histogram(a)
        else:
            begins = np.cumsum([0, *sizes[n]])
            adjusted[n] = [
                client.submit(_adjust, m, continuation, int(b), block, n, order)
                for m, b in zip(merged[n], begins[:-1], strict=True)
            ]
            hist = np.sum(client.gather(client.map(histogram, adjusted[n])), axis=0)
        discounts.append(discounts_of(n, hist, config))
    return adjusted, discounts


def _interpolate_all(client, merged, sizes, adjusted, keys, discounts, V):
    """Probabilities of every order and gammas of every order below the highest (client)."""
    prob = [unigram_probs(adjusted[1], discounts[0], V)]
    gamma = []
    for n in range(2, len(keys) + 1):
        lower = client.scatter(prob[-1], broadcast=True)
        jobs = [
            client.submit(_interpolate, m, a, lower, discounts[n - 1], V)
            for m, a, size in zip(merged[n], adjusted[n], sizes[n], strict=True)
            if size
        ]
        g = np.ones(len(keys[n - 2]))
        pieces = []
        for p, first, local in client.gather(jobs):
            pieces.append(p)
            g[first : first + len(local)] = local
        prob.append(np.concatenate(pieces) if pieces else np.zeros(0))
        gamma.append(g)
    return prob, gamma
