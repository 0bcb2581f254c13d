"""Tang couplets: the encoder-decoder Transformer against an LSTM encoder-decoder and copying.

Task: ``lmforge.data.pairs.load_pairs("couplets")`` (the first half of a 5- or 7-character line
of regulated verse -> the second half, cut from the built-in ``tang`` corpus, its own splits), one
char tokenizer trained on the train pairs. Three systems, scored by corpus BLEU at character level
(sacrebleu, ``tokenize="zh"``) on the test pairs:

(a) copy: the hypothesis is the source itself;
(b) ``rnn_seq2seq``: bidirectional LSTM encoder, LSTM decoder with Luong "general" attention;
(c) ``seq2seq``: the post-LN encoder-decoder Transformer of Vaswani et al. 2017.

(b) and (c) have about the same number of parameters and train on the same pairs with the same
Trainer settings, for the same time budget (``--seconds``, the default) or the same number of
steps (``--steps``), one after the other on ``--threads`` threads; each keeps its best-validation
weights. The table gives parameters, training seconds and steps, the loss on the whole valid set
(plain cross-entropy per target character, ``</s>`` included), and test BLEU with greedy decoding
and beam search (beam 4, length penalty alpha 0.6), also as BLEU-2 (1- and 2-grams only, as
Chinese poetry generation reports it: 4-gram matches are rare in 5-character lines); then a few
test couplets.

    python benchmarks/couplets.py [--seconds 300 | --steps 3000] [--size small|base]
        [--threads 1] [--device cpu] [--test-pairs 0] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from lmforge.data.pairs import PairsTask, bleu, load_pairs
from lmforge.tokenize import train_tokenizer
from lmforge.train.trainer import TrainConfig, Trainer
from lmforge.workflows import build_model, translate

# Settings of about equal parameter counts (|V| = 7,597 characters: the tied embedding is
# 0.97 M parameters at width 128, 1.94 M at 256, 2.43 M at 320).
SIZES = {
    "small": {  # ~2 M parameters: for a CPU
        "rnn_seq2seq": {"d_model": 160, "n_layers": 2},
        "seq2seq": {"d_model": 128, "n_layers": 2, "n_heads": 4, "d_ff": 512},
    },
    "base": {  # ~5.6 M parameters: for a GPU
        "rnn_seq2seq": {"d_model": 320, "n_layers": 2},
        "seq2seq": {"d_model": 256, "n_layers": 2, "n_heads": 4, "d_ff": 1024},
    },
}
COMMON = {"max_seq_len": 16, "dropout": 0.1, "label_smoothing": 0.1}
TRAIN = {
    "lr": 1e-3,
    "min_lr": 1e-4,
    "warmup_steps": 100,
    "weight_decay": 0.01,
    "grad_clip": 1.0,
    "eval_interval": 250,
    "eval_tokens": 20_000,
    "log_interval": 50,
}


def train_one(name: str, settings: dict, pairs, tokenizer, args) -> dict:
    """Train one family on the train pairs; its row of the table (and the model)."""
    torch.manual_seed(0)
    model, _ = build_model(name, tokenizer.vocab_size, {**settings, **COMMON})
    config = TrainConfig(
        batch_size=args.batch_size,
        max_steps=args.steps or 1_000_000,
        max_seconds=0.0 if args.steps else args.seconds,
        threads=args.threads,
        device=args.device,
        **TRAIN,
    )
    task = PairsTask(model, tokenizer, pairs.train, pairs.valid, args.batch_size, seed=0)
    result = Trainer(model, config, task=task, progress=not args.quiet).fit()
    model.eval()
    valid = task.evaluate(model)["valid_loss"]  # the whole valid set
    test = pairs.test[: args.test_pairs or None]
    sources, references = [s for s, _ in test], [t for _, t in test]
    row = {"model": name, "params": model.num_parameters(), "steps": result.steps}
    row["train_seconds"] = result.train_seconds
    row["valid_loss"] = valid
    started = time.perf_counter()
    row["greedy"] = translate(model, tokenizer, sources)
    row["beam4"] = translate(model, tokenizer, sources, beam_size=4)
    row["decode_seconds"] = time.perf_counter() - started
    for way in ("greedy", "beam4"):
        row[f"bleu_{way}"] = bleu(row[way], references)
        row[f"bleu2_{way}"] = bleu(row[way], references, max_order=2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--seconds", type=float, default=300.0, help="training seconds per model")
    budget.add_argument("--steps", type=int, default=0, help="training steps per model instead")
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--test-pairs", type=int, default=0, help="score the first N (0 = all)")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    pairs = load_pairs("couplets")
    tokenizer = train_tokenizer("char", [text for pair in pairs.train for text in pair])
    test = pairs.test[: args.test_pairs or None]
    references = [t for _, t in test]
    budget_text = f"{args.steps} steps" if args.steps else f"{args.seconds:.0f} s"
    print(
        f"{pairs!r}; char vocabulary {tokenizer.vocab_size:,}; size {args.size}; batch "
        f"{args.batch_size}; {budget_text} per model; {args.threads} thread(s) on {args.device}"
    )
    copies = [s for s, _ in test]
    copy_bleu, copy_bleu2 = bleu(copies, references), bleu(copies, references, max_order=2)
    rows = [train_one(name, s, pairs, tokenizer, args) for name, s in SIZES[args.size].items()]

    print(f"\ntest BLEU on {len(test):,} couplets (sacrebleu, tokenize=zh: a token per character)")
    print(
        "| system | params | train s | steps | valid loss | BLEU greedy | BLEU beam 4 | "
        "BLEU-2 greedy | BLEU-2 beam 4 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| copy the source | 0 | 0 | 0 | | {copy_bleu:.2f} | {copy_bleu:.2f} | "
        f"{copy_bleu2:.2f} | {copy_bleu2:.2f} |"
    )
    for row in rows:
        print(
            f"| {row['model']} | {row['params']:,} | {row['train_seconds']:.0f} | "
            f"{row['steps']:,} | {row['valid_loss']:.3f} | {row['bleu_greedy']:.2f} | "
            f"{row['bleu_beam4']:.2f} | {row['bleu2_greedy']:.2f} | {row['bleu2_beam4']:.2f} |"
        )
    print("\nexamples (source | reference | " + " | ".join(r["model"] for r in rows) + ", beam 4)")
    for i in range(0, len(test), max(1, len(test) // 6))[:6]:
        print(" | ".join([test[i][0], test[i][1], *(row["beam4"][i] for row in rows)]))
    if args.json:
        figures = {"copy_bleu": copy_bleu, "copy_bleu2": copy_bleu2, "args": vars(args)}
        with open(args.json, "w", encoding="utf-8") as handle:  # with every hypothesis
            json.dump({**figures, "rows": rows}, handle, ensure_ascii=False)


if __name__ == "__main__":
    main()
