"""Order-5 n-gram on built-in brown: lmforge against KenLM, in one run.

Prints the whole command's wall time, ``lmforge ngram train --text train.txt --arpa X`` in a
fresh process on the text file lmplz reads (brown's training split, a sentence a line; start-up,
reading, estimation, ARPA writing), next to lmplz's (``lmplz -o N -S 1G``, alternated with it),
and its start-up alone (``lmforge ngram train --help``); then, in a child
process, estimation and ARPA writing (the vectorised writer against the readable reference
writer), peak memory, test perplexity; and the pip ``kenlm`` module's score of the same ARPA next
to lmforge's (values, and query speed through lmforge's binary format, with its load time
against the ARPA's). KenLM's ``lmplz`` is timed too when it is on PATH; otherwise its figure
from ../shared/BASELINES.md (measured on this machine) is the yardstick.

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
    from lmforge.arpa import arpa_text_reference
    from lmforge.checkpoint import atomic_write_text
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
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the reference
    log10 = (
        [p / math.log(10) for p in model.log_prob],
        [b / math.log(10) for b in model.log_backoff],
    )
    text = arpa_text_reference(model.vocab, model.keys, *log10)
    atomic_write_text(f"{arpa}.reference", text)
    reference = time.perf_counter() - written
    if Path(f"{arpa}.reference").read_bytes() != Path(arpa).read_bytes():
        raise SystemExit("the vectorised ARPA differs from the reference writer's")
    result = evaluate_ngram(model, tok, corpus.test)
    return {
        "fit_seconds": fitted - start,
        "arpa_seconds": written - fitted,
        "reference_arpa_seconds": reference,
        "peak_mib": peak,
        "test_ppl": result.perplexity,
        "test_ppl_excluding_oov": result.perplexity_excluding_oov,
        "ngrams": model.ngram_counts,
    }


def run_child(order: int, tokenizer: str, arpa: str) -> dict:
    args = [sys.executable, __file__, "--child", "--order", str(order)]
    args += ["--tokenizer", tokenizer, "--arpa", arpa]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def time_command(order: int, tokenizer: str, arpa: str, text: str) -> tuple[float, float]:
    """Wall seconds of the whole ``lmforge ngram train`` command on the text file lmplz reads
    (brown's training split), and of its start-up alone."""
    lmforge = [sys.executable, "-m", "lmforge", "ngram", "train"]
    start = time.perf_counter()
    subprocess.run([*lmforge, "--help"], capture_output=True, check=True)
    startup = time.perf_counter() - start
    flags = ["--text", text, "--order", str(order), "--tokenizer", tokenizer, "--quiet"]
    start = time.perf_counter()
    subprocess.run([*lmforge, *flags, "--arpa", arpa], capture_output=True, check=True)
    return time.perf_counter() - start, startup


def spread(values: list[float], unit: str = "s", digits: int = 2) -> str:
    """Best of the runs, with the range: '1.23 s (1.20-1.31)'."""
    return f"{min(values):.{digits}f} {unit} ({min(values):.{digits}f}-{max(values):.{digits}f})"


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


def compare_with_kenlm_module(arpa: str, tokenizer: str, repeats: int) -> None:
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
    searched = NgramLM(ours.config, ours.vocab, ours.keys, ours.log_prob, ours.log_backoff)
    peer_runs, our_runs, search_runs = [], [], []
    for _ in range(repeats):  # alternating: the machine's load hits both alike
        start = time.perf_counter()
        theirs = [peer.score(" ".join(s), bos=True, eos=True) for s in test]
        peer_runs.append(time.perf_counter() - start)
        start = time.perf_counter()
        logp, _ = ours.token_log_probs(test)
        our_runs.append(time.perf_counter() - start)
        start = time.perf_counter()
        searched.token_log_probs(test)  # the same tables without the hash tables
        search_runs.append(time.perf_counter() - start)
    tokens = len(logp)
    peer_tokens = [p for s in test for p, _, _ in peer.full_scores(" ".join(s))]
    gap = max(abs(a / math.log(10) - b) for a, b in zip(logp.tolist(), peer_tokens, strict=True))
    total_ours, total_theirs = float(logp.sum()) / math.log(10), sum(theirs)
    print(f"kenlm module vs lmforge, log10 P(test): {total_theirs:.4f} vs {total_ours:.4f}")
    print(f"  max per-token |log10 difference| over all {tokens:,} test tokens: {gap:.2e}")
    ratios = [p / o for p, o in zip(peer_runs, our_runs, strict=True)]
    print(
        f"  query speed (best of {repeats}): kenlm Model.score "
        f"{tokens / min(peer_runs) / 1e6:.2f} M tokens/s, lmforge token_log_probs on the binary "
        f"{tokens / min(our_runs) / 1e6:.2f} M tokens/s; lmforge/kenlm speed ratio per run "
        f"{', '.join(f'{r:.2f}x' for r in ratios)}"
    )
    print(
        f"  without the hash tables (binary search): {tokens / min(search_runs) / 1e6:.2f} M "
        f"tokens/s"
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
        runs, lmplz_runs, commands, startups = [], [], [], []
        brown_train = Path(workdir) / "train.txt"
        from lmforge.data import load_corpus

        brown_train.write_text("\n".join(load_corpus("brown").train) + "\n", encoding="utf-8")
        for _ in range(args.repeats):  # alternate with lmplz when it is here
            command, startup = time_command(
                args.order, args.tokenizer, f"{workdir}/cli.arpa", str(brown_train)
            )
            commands.append(command)
            startups.append(startup)
            runs.append(run_child(args.order, args.tokenizer, arpa))
            seconds = time_lmplz(args.order, str(brown_train), workdir)
            if seconds is not None:
                lmplz_runs.append(seconds)
        best = min(runs, key=lambda r: r["fit_seconds"] + r["arpa_seconds"])
        what = f"order {args.order} on brown train, tokenizer {args.tokenizer}"
        print(f"{what}; best of {args.repeats} runs (range in brackets)")
        print(f"  n-grams per order: {best['ngrams']}")
        command = "lmforge ngram train --text train.txt --arpa X"
        print(f"  whole command `{command}`: {spread(commands)}")
        if lmplz_runs:  # each lmforge run against the lmplz run beside it
            ratios = ", ".join(f"{c / p:.2f}" for c, p in zip(commands, lmplz_runs, strict=True))
            print(
                f"    lmplz {spread(lmplz_runs)} (measured in this run, alternated): "
                f"lmforge/lmplz time ratio per pair of runs {ratios}"
            )
        elif peer := LMPLZ_BASELINE_SECONDS.get(args.order):
            ratios = ", ".join(f"{c / peer:.2f}" for c in commands)
            print(
                f"    lmplz {peer:.2f} s (BASELINES.md): lmforge/lmplz time ratio per run, {ratios}"
            )
        print(f"  start-up alone (`lmforge ngram train --help`): {spread(startups, digits=3)}")
        fits = [r["fit_seconds"] for r in runs]
        writes = [r["arpa_seconds"] for r in runs]
        references = [r["reference_arpa_seconds"] for r in runs]
        print(f"  estimation {spread(fits)}; ARPA writing {spread(writes)}")
        print(
            f"    the readable reference writer {spread(references)} (same bytes): "
            f"{min(references) / min(writes):.1f}x slower; peak memory (estimation and writing) "
            f"{best['peak_mib']:.0f} MiB"
        )
        print(
            f"  test perplexity {best['test_ppl']:.2f} "
            f"(excluding OOVs {best['test_ppl_excluding_oov']:.2f})"
        )
        compare_with_kenlm_module(arpa, args.tokenizer, 3 * args.repeats)


if __name__ == "__main__":
    main()
