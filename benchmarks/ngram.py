"""Order-5 n-gram on built-in brown: lmforge against KenLM, in one run.

Prints build time (estimation, then ARPA writing), peak memory, test perplexity, and the pip
``kenlm`` module's score of the same ARPA next to lmforge's (values, and query speed through
lmforge's binary format, with its load time against the ARPA's). KenLM's
``lmplz`` is timed too when it is on PATH; otherwise its figure from ../shared/BASELINES.md
(measured on this machine) is the yardstick.

    python benchmarks/ngram.py [--order 5] [--tokenizer none|word] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LMPLZ_BASELINE_SECONDS = {5: 2.87, 3: 1.48}  # ../shared/BASELINES.md, `lmplz -o N -S 1G`


def build(order: int, tokenizer: str, arpa: str) -> dict:
    """Train on brown train and write the ARPA; runs in a child process to measure its memory."""
    from lmforge.data import load_corpus
    from lmforge.models.ngram import NgramConfig
    from lmforge.ngram import evaluate_ngram, train_ngram

    corpus = load_corpus("brown")
    start = time.perf_counter()
    model, tok = train_ngram(
        corpus.train, NgramConfig(order=order), None if tokenizer == "none" else tokenizer
    )
    fitted = time.perf_counter()
    model.save_arpa(arpa)
    written = time.perf_counter()
    result = evaluate_ngram(model, tok, corpus.test)
    return {
        "fit_seconds": fitted - start,
        "arpa_seconds": written - fitted,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "test_ppl": result.perplexity,
        "test_ppl_excluding_oov": result.perplexity_excluding_oov,
        "ngrams": model.ngram_counts,
    }


def run_child(order: int, tokenizer: str, arpa: str) -> dict:
    args = [sys.executable, __file__, "--child", "--order", str(order)]
    args += ["--tokenizer", tokenizer, "--arpa", arpa]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def time_lmplz(order: int, text: str, workdir: str) -> float | None:
    lmplz = shutil.which("lmplz")
    if lmplz is None:
        return None
    start = time.perf_counter()
    subprocess.run(
        [lmplz, "-o", str(order), "-S", "1G", "--text", text, "--arpa", f"{workdir}/kenlm.arpa"],
        capture_output=True,
        check=True,
    )
    return time.perf_counter() - start


def compare_with_kenlm_module(arpa: str, tokenizer: str) -> None:
    try:
        import kenlm
    except ImportError:
        print("pip kenlm module not installed (pip install kenlm): skipping the score check")
        return
    from lmforge.data import load_corpus
    from lmforge.models.ngram import NgramLM
    from lmforge.tokenize import split_words

    if tokenizer != "none":
        print("score check runs with --tokenizer none only")
        return
    test = split_words(load_corpus("brown").test)
    start = time.perf_counter()
    NgramLM.load_arpa(arpa)
    arpa_load = time.perf_counter() - start
    binary = str(Path(arpa).with_suffix(".lmb"))
    NgramLM.load_arpa(arpa).save_binary(binary)
    loads = []
    for _ in range(5):
        start = time.perf_counter()
        ours = NgramLM.load_binary(binary)
        loads.append(time.perf_counter() - start)
    print(
        f"loading the model: ARPA {arpa_load:.2f} s, binary {min(loads):.3f} s (best of 5; "
        f"{Path(binary).stat().st_size / 2**20:.0f} MiB, `lmforge ngram binary`)"
    )
    start = time.perf_counter()
    peer = kenlm.Model(arpa)
    print(f"  kenlm.Model(ARPA) {time.perf_counter() - start:.2f} s")
    start = time.perf_counter()
    theirs = [peer.score(" ".join(s), bos=True, eos=True) for s in test]
    peer_seconds = time.perf_counter() - start
    start = time.perf_counter()
    logp, _ = ours.token_log_probs(test)
    our_seconds = time.perf_counter() - start
    tokens = len(logp)
    peer_tokens = [p for s in test for p, _, _ in peer.full_scores(" ".join(s))]
    gap = max(abs(a / math.log(10) - b) for a, b in zip(logp.tolist(), peer_tokens, strict=True))
    total_ours, total_theirs = float(logp.sum()) / math.log(10), sum(theirs)
    print(f"kenlm module vs lmforge, log10 P(test): {total_theirs:.4f} vs {total_ours:.4f}")
    print(f"  max per-token |log10 difference| over all {tokens:,} test tokens: {gap:.2e}")
    print(
        f"  query speed: kenlm Model.score {tokens / peer_seconds:,.0f} tokens/s, lmforge "
        f"token_log_probs on the binary {tokens / our_seconds:,.0f} tokens/s "
        f"(ratio {peer_seconds / our_seconds:.2f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--order", type=int, default=5)
    parser.add_argument("--tokenizer", default="none", help="none (raw words, as lmplz) or word")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--arpa", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(build(args.order, args.tokenizer, args.arpa)))
        return
    with tempfile.TemporaryDirectory() as workdir:
        arpa = f"{workdir}/lmforge.arpa"
        runs, lmplz_runs = [], []
        brown_train = Path(workdir) / "train.txt"
        from lmforge.data import load_corpus

        brown_train.write_text("\n".join(load_corpus("brown").train) + "\n", encoding="utf-8")
        for _ in range(args.repeats):  # alternate with lmplz when it is here
            runs.append(run_child(args.order, args.tokenizer, arpa))
            seconds = time_lmplz(args.order, str(brown_train), workdir)
            if seconds is not None:
                lmplz_runs.append(seconds)
        best = min(runs, key=lambda r: r["fit_seconds"] + r["arpa_seconds"])
        total = best["fit_seconds"] + best["arpa_seconds"]
        what = f"order {args.order} on brown train, tokenizer {args.tokenizer}"
        print(f"{what}, best of {args.repeats}")
        print(f"  n-grams per order: {best['ngrams']}")
        print(
            f"  lmforge build {total:.2f}s (estimate {best['fit_seconds']:.2f}s + "
            f"write ARPA {best['arpa_seconds']:.2f}s), peak memory {best['peak_mib']:.0f} MiB"
        )
        if lmplz_runs:
            peer, source = min(lmplz_runs), "measured in this run"
        else:
            peer, source = LMPLZ_BASELINE_SECONDS.get(args.order), "BASELINES.md, this machine"
        if peer:
            print(f"  lmplz {peer:.2f}s ({source}): lmforge/lmplz time ratio {total / peer:.2f}")
        print(
            f"  test perplexity {best['test_ppl']:.2f} "
            f"(excluding OOVs {best['test_ppl_excluding_oov']:.2f})"
        )
        compare_with_kenlm_module(arpa, args.tokenizer)


if __name__ == "__main__":
    main()
