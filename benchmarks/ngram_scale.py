"""Order-5 n-gram at scale: in memory, ``--memory 1G`` (out of core) and ``--cluster local:2``.

For each corpus size it runs ``lmforge ngram train --text F --order 5 --arpa OUT`` three ways,
each in a child process, and prints wall time, peak memory (resident set of the command and of
every process it starts, Dask workers included, sampled every 0.1 s), the temporary folder's peak
(``--memory``), and whether the ARPA files are byte for byte equal.

The corpus is not brown repeated (that would add no new n-grams): sentences are sampled from a
maximum-likelihood trigram chain fitted on brown's training text, backing off to the bigram chain
with probability 0.1 and to the unigram distribution with 0.02, so trigrams, 4-grams and 5-grams
keep appearing as the corpus grows (the vocabulary stays brown's 46 K words). Sampling is
vectorised over 100,000 sentences at a time, seeded; files are cached in runs/ngram-scale/.
Every run passes ``--discount-fallback``: at 50 M sampled tokens the bigrams' n4 exceeds n3 and
D3 cannot be estimated (checked independently); the fallback changes nothing where it can.

    python benchmarks/ngram_scale.py --tokens 1e6,1e7 [--modes memory,disk,cluster]
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

CACHE = Path(__file__).resolve().parents[1] / "runs" / "ngram-scale"
BACKOFF_BIGRAM, BACKOFF_UNIGRAM = 0.1, 0.02


def brown_chain():
    """Vocabulary, and per order 1..3 sorted keys with cumulative counts, from brown train."""
    from lmforge.data import load_corpus
    from lmforge.models.ngram import BOS, BOS_ID, EOS, UNK, UNK_ID, _stream, count_ngrams
    from lmforge.tokenize import split_words

    word_ids = {UNK: 0, BOS: 1, EOS: 2}
    stream = _stream(split_words(load_corpus("brown").train), word_ids, grow=True)
    levels = count_ngrams(stream, 3, len(word_ids))
    raw1 = levels[0].raw.copy()
    raw1[[UNK_ID, BOS_ID]] = 0
    tables = [(levels[0].keys, np.cumsum(raw1))]
    tables += [(level.keys, np.cumsum(level.raw)) for level in levels[1:]]
    return list(word_ids), tables


def draw(tables, n: int, context: np.ndarray, V: int, rng) -> np.ndarray:
    """One word per context from the order-n table (order 1: ``context`` is ignored)."""
    keys, cum = tables[n - 1]
    if n == 1:
        u = rng.random(len(context)) * cum[-1]
        return np.searchsorted(cum, u, side="right")
    lo = np.searchsorted(keys, context * V)
    hi = np.searchsorted(keys, (context + 1) * V)
    before = np.where(lo > 0, cum[np.maximum(lo - 1, 0)], 0)
    u = before + rng.random(len(context)) * (cum[hi - 1] - before)
    return keys[np.searchsorted(cum, u, side="right")] % V


def sample_corpus(path: Path, tokens: int, seed: int = 0, parallel: int = 100_000) -> None:
    """Write sentences sampled from the brown chain until ``tokens`` words (markers excluded)."""
    from lmforge.arpa import find_keys
    from lmforge.models.ngram import BOS_ID, EOS_ID

    vocab, tables = brown_chain()
    V, rng = len(vocab), np.random.default_rng(seed)
    words = np.array(vocab, dtype=object)
    written = 0
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        while written < tokens:
            prev = np.full(parallel, BOS_ID)  # last word
            pair = np.full(parallel, -1)  # type of the last two words, -1: none
            rows, alive = [], np.ones(parallel, dtype=bool)
            while alive.any() and len(rows) < 200:
                prev, pair = np.where(alive, prev, BOS_ID), np.where(alive, pair, -1)
                r = rng.random(parallel)
                word = draw(tables, 2, prev, V, rng)
                tri = (r >= BACKOFF_BIGRAM) & (pair >= 0)
                word[tri] = draw(tables, 3, pair[tri], V, rng)
                uni = r < BACKOFF_UNIGRAM
                word[uni] = draw(tables, 1, prev[uni], V, rng)
                word[~alive] = EOS_ID
                rows.append(word)
                pair = find_keys(tables[1][0], prev * V + word)
                prev = word
                alive &= word != EOS_ID
            grid = np.stack(rows, axis=1)  # (parallel, steps)
            for row in grid:
                end = int(np.argmax(row == EOS_ID)) if (row == EOS_ID).any() else len(row)
                out.write(" ".join(words[row[:end]]) + "\n")
                written += end
                if written >= tokens:
                    break
    tmp.replace(path)


def corpus(tokens: int) -> Path:
    path = CACHE / f"brown-chain3-{tokens}.txt"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        sample_corpus(path, tokens)
        print(f"sampled {path} in {time.perf_counter() - start:.0f} s", flush=True)
    return path


def run(text: Path, arpa: Path, flags: list[str]) -> dict:
    """Run the CLI in a child process; wall time, peak memory of its process tree, disk peak.
    ``flags`` ["lmplz", ...] runs KenLM's lmplz with the rest of them instead."""
    args = [sys.executable, "-m", "lmforge", "ngram", "train", "--text", str(text)]
    args += ["--order", "5", "--arpa", str(arpa), "--quiet", "--discount-fallback", *flags]
    if flags[:1] == ["lmplz"]:
        args = [shutil.which("lmplz"), "-o", "5", "--text", str(text), "--arpa", str(arpa)]
        args += ["--discount_fallback", *flags[1:]]
    start = time.perf_counter()
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    parent, peak = psutil.Process(child.pid), 0
    while child.poll() is None:
        try:
            tree = [parent, *parent.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.1)
    out, err = child.communicate()
    if child.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{err}")
    disk = re.search(r"temporary disk peak ([\d,.]+) MiB", out)
    return {
        "seconds": time.perf_counter() - start,
        "peak_mib": peak / 2**20,
        "disk_mib": float(disk[1].replace(",", "")) if disk else None,
    }


def header(arpa: Path) -> list[str]:
    """The ``ngram N=count`` lines of an ARPA file."""
    lines = []
    with open(arpa, encoding="utf-8") as f:
        for line in f:
            if line.startswith("ngram "):
                lines.append(line.strip())
            elif lines and not line.strip():
                return lines
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", default="1e6,1e7", help="corpus sizes, comma-separated")
    parser.add_argument("--memory", default="1G")
    parser.add_argument("--cluster", default="local:2")
    parser.add_argument(
        "--modes",
        default="memory,disk,cluster,lmplz",
        help="in memory, --memory, --cluster, and KenLM's lmplz -S (where it is on PATH)",
    )
    parser.add_argument(
        "--skip-memory-above",
        type=float,
        default=2e7,
        help="no in-memory run above this many tokens (it needs ~0.5 KiB a token)",
    )
    args = parser.parse_args()
    for size in (int(float(t)) for t in args.tokens.split(",")):
        text = corpus(size)
        with tempfile.TemporaryDirectory() as work:
            arpas, results = {}, {}
            wanted = args.modes.split(",")
            if size > args.skip_memory_above and "memory" in wanted:
                wanted.remove("memory")
            modes = {
                "in memory": [],
                f"--memory {args.memory}": ["--memory", args.memory],
                f"--cluster {args.cluster}": ["--cluster", args.cluster],
                f"lmplz -S {args.memory}": ["lmplz", "-S", args.memory],
            }
            if not shutil.which("lmplz") and "lmplz" in wanted:
                print("lmplz is not on PATH: its row is left out")
                wanted.remove("lmplz")
            modes = {
                m: f
                for m, f, w in zip(
                    modes, modes.values(), ("memory", "disk", "cluster", "lmplz"), strict=True
                )
                if w in wanted
            }
            for i, (mode, flags) in enumerate(modes.items()):
                arpas[mode] = Path(work) / f"{i}.arpa"
                results[mode] = run(text, arpas[mode], flags)
            first = next(iter(arpas.values()))
            size_mib = first.stat().st_size / 2**20
            print(f"\n{size:,} tokens ({text.name}), order 5, ARPA {size_mib:,.0f} MiB")
            for mode, r in results.items():
                disk = f", temp disk peak {r['disk_mib']:,.0f} MiB" if r["disk_mib"] else ""
                if mode.startswith("lmplz"):  # its own number format: compare the counts
                    same = "same n-gram counts as the first: " + str(
                        header(arpas[mode]) == header(first)
                    )
                else:
                    equal = filecmp.cmp(first, arpas[mode], shallow=False)
                    same = f"ARPA identical to the first: {equal}"
                print(
                    f"  {mode:18s} {r['seconds']:7.1f} s, peak RSS {r['peak_mib']:7,.0f} MiB"
                    f"{disk}; {same}"
                )


if __name__ == "__main__":
    main()
