"""Tang couplets: the encoder-decoder Transformer against an LSTM encoder-decoder and copying.

Task: ``lmforge.data.pairs.load_pairs("couplets")`` (the first half of a 5- or 7-character line
of regulated verse -> the second half, cut from the built-in ``tang`` corpus, its own splits), one
char tokenizer trained on the train pairs. Three systems, scored by corpus BLEU at character level
(sacrebleu, ``tokenize="zh"``) on the test pairs:

(a) copy: the hypothesis is the source itself;
(b) ``rnn_seq2seq``: bidirectional LSTM encoder, LSTM decoder with Luong "general" attention;
(c) ``seq2seq``: the encoder-decoder Transformer of Vaswani et al. 2017, pre-LN (``norm_first``).

(b) and (c) have about the same number of parameters and train on the same pairs with the same
Trainer settings, for the same time budget (``--seconds``, the default) or the same number of steps
(``--steps``), one after the other on ``--threads`` threads (or one per process with ``--models``),
from ``--seed`` (default 0); each keeps its best-validation weights (``--save DIR`` keeps the
models, ``--load DIR`` scores kept ones again). The table gives parameters, training seconds and
steps, the loss on the whole valid set (plain cross-entropy per target character, ``</s>``
included), and test BLEU with greedy decoding, beam search (beam 4, length penalty alpha 0.6), both
again with n-gram blocking (``--block N``, default 1: no character written twice or copied from the
source, as in 94% and 96% of the test references) and, with ``--mbr N``, minimum-Bayes-risk decoding
over N samples at ``--mbr-temperature``; also as BLEU-2 (1- and 2-grams only, as Chinese poetry
generation reports it: 4-gram matches are rare in 5-character lines); a paired bootstrap test of the
two models' BLEU (sacrebleu); then the share of distinct outputs, the Transformer's cross-attention
on the aligned source character, and a few test couplets.

    python benchmarks/couplets.py [--seconds 300 | --steps 3000] [--size small|base]
        [--models rnn_seq2seq,seq2seq] [--save DIR | --load DIR] [--block 1] [--mbr 32]
        [--model-set KEY=VALUE] [--train-set KEY=VALUE] [--seed 0] [--threads 1] [--device cpu]
        [--test-pairs 0] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lmforge.config import parse_sets
from lmforge.data.batching import pad_rows
from lmforge.data.pairs import bleu, load_pairs, source_batch
from lmforge.folders import load_model
from lmforge.tokenize import BOS_ID, PAD_ID, train_tokenizer
from lmforge.train.config import TrainConfig
from lmforge.train.tasks import PairsTask
from lmforge.workflows import train_family, translate

# Settings of about equal parameter counts (|V| = 7,597 characters: the tied embedding is
# 0.97 M parameters at width 128, 1.94 M at 256, 2.43 M at 320). The Transformer is pre-LN: the
# post-LN one (--model-set norm_first=false) did not learn to attend to the aligned source
# character in 45 CPU minutes (0.14 of its cross-attention there, 0.40 pre-LN; RESULTS.md).
SIZES = {
    "small": {  # ~2 M parameters: for a CPU
        "rnn_seq2seq": {"d_model": 160, "n_layers": 2},
        "seq2seq": {"d_model": 128, "n_layers": 2, "n_heads": 4, "d_ff": 512, "norm_first": True},
    },
    "base": {  # ~5.6 M parameters: for a GPU
        "rnn_seq2seq": {"d_model": 320, "n_layers": 2},
        "seq2seq": {"d_model": 256, "n_layers": 2, "n_heads": 4, "d_ff": 1024, "norm_first": True},
    },
}
COMMON = {"max_seq_len": 16, "dropout": 0.1, "label_smoothing": 0.1}
# lr 2e-3 -> 2e-4: better for both than 1e-3 -> 1e-4 (the LSTM's valid loss 0.17 nats lower, the
# Transformer's 0.05; RESULTS.md (7)); --train-set lr=1e-3 --train-set min_lr=1e-4: the old runs.
TRAIN = {
    "lr": 2e-3,
    "min_lr": 2e-4,
    "warmup_steps": 100,
    "weight_decay": 0.01,
    "grad_clip": 1.0,
    "eval_interval": 250,
    "eval_tokens": 20_000,
    "log_interval": 50,
}


def decodings(args) -> dict[str, dict]:
    """The decoding rules scored: column name -> ``translate`` keywords."""
    ways = {"greedy": {}, "beam 4": {"beam_size": 4}}
    if args.block:  # a couplet's second half repeats no character, its own or the source's
        block = {"no_repeat_ngram": args.block, "source_no_repeat_ngram": args.block}
        ways.update({"greedy+block": block, "beam 4+block": {"beam_size": 4, **block}})
    if args.mbr:
        how = {"mbr_samples": args.mbr, "temperature": args.mbr_temperature}
        ways[f"MBR {args.mbr} T {args.mbr_temperature:g}"] = how
    return ways


@torch.no_grad()
def aligned_attention(model, tokenizer, pairs) -> float:
    """Mean cross-attention weight, over heads, decoder layers and target positions, that the
    query predicting target character i puts on source character i, on 7-character pairs (8
    source keys with ``</s>``: 0.125 is uniform). Couplets are written position by position
    (each character answers the one above it), so a model that reads its source well looks there.
    """
    seven = [p for p in pairs if len(p[0]) == 7][:500]
    source = source_batch(tokenizer, [s for s, _ in seven])
    target_in, _ = pad_rows(
        [[BOS_ID, *tokenizer.encode(t, markers=False)] for _, t in seven], PAD_ID
    )
    seen = []
    for layer in model.decoder:  # keep each cross-attention's queries and keys
        attention = layer.cross_attn
        inner = attention._cross_qkv

        def keep(x, memory, cache, inner=inner):
            q, cache = inner(x, memory, cache)
            seen.append((q, cache.keys))
            return q, cache

        attention._cross_qkv = keep
    model(source, target_in)
    for layer in model.decoder:
        del layer.cross_attn._cross_qkv  # the class's method again
    masses = []
    for q, k in seen:
        weights = (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).softmax(-1)  # (B, H, T, S)
        masses += [weights[:, :, i, i].mean() for i in range(7)]
    return float(torch.stack(masses).mean())


def significance(rows: list[dict], references: list[str], ways: list[str]) -> str:
    """sacrebleu's paired bootstrap test (1,000 resamples of the test pairs) of the second
    system's BLEU against the first's, for each decoding rule: a BLEU gap as small as these
    can come from which couplets happen to be in the test set."""
    from sacrebleu.metrics import BLEU
    from sacrebleu.significance import PairedTest

    base, other = rows
    lines = ["paired bootstrap test of test BLEU (sacrebleu; BLEU ± 95% CI, p of the gap):"]
    for way in ways:
        test = PairedTest(
            [(base["model"], base[way]), (other["model"], other[way])],
            {"BLEU": BLEU(tokenize="zh")},
            [references],
            test_type="bs",
            n_samples=1000,
        )
        first, second = test()[1]["BLEU"]
        lines.append(
            f"  {way}: {base['model']} {first.score:.2f} ± {first.ci:.2f}, {other['model']} "
            f"{second.score:.2f} ± {second.ci:.2f}, p = {second.p_value:.3f}"
        )
    return "\n".join(lines)


def train_one(name: str, settings: dict, pairs, tokenizer, args) -> dict:
    """Train one family on the train pairs (or load it from ``--load``); its row of the table."""
    row = {"model": name}
    if args.load:
        folder = Path(args.load) / name
        model, tokenizer, meta = load_model(folder)
        row.update(json.loads((folder / "run.json").read_text(encoding="utf-8")))
    else:
        config = TrainConfig(
            batch_size=args.batch_size,
            max_steps=args.steps or 1_000_000,
            max_seconds=0.0 if args.steps else args.seconds,
            threads=args.threads,
            device=args.device,
            seed=TrainConfig.seed + args.seed,  # --seed 0: the runs in RESULTS.md
            **{**TRAIN, **parse_sets(args.train_set)},
        )
        torch.manual_seed(args.seed)
        out_dir = Path(args.save) / name if args.save else None
        model, result, _ = train_family(
            name,
            pairs.train,
            pairs.valid,
            tokenizer,
            {**settings, **COMMON, **parse_sets(args.model_set)},
            config,
            out_dir,
            progress=not args.quiet,
            record={"pairs": pairs.name},
        )
        row.update(steps=result.steps, train_seconds=result.train_seconds)
        if out_dir:
            (out_dir / "run.json").write_text(json.dumps(row), encoding="utf-8")
    model.eval()
    task = PairsTask(model, tokenizer, pairs.train[:1], pairs.valid, args.batch_size)
    row["params"] = model.num_parameters()
    row["valid_loss"] = task.evaluate(model)["valid_loss"]  # the whole valid set
    if name == "seq2seq":
        row["aligned_attention"] = aligned_attention(model, tokenizer, pairs.valid)
    test = pairs.test[: args.test_pairs or None]
    sources, references = [s for s, _ in test], [t for _, t in test]
    for way, how in decodings(args).items():
        started = time.perf_counter()
        row[way] = translate(model, tokenizer, sources, **how)
        row[f"seconds_{way}"] = time.perf_counter() - started
        row[f"bleu_{way}"] = bleu(row[way], references)
        row[f"bleu2_{way}"] = bleu(row[way], references, max_order=2)
        row[f"distinct_{way}"] = len(set(row[way])) / max(1, len(row[way]))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--seconds", type=float, default=300.0, help="training seconds per model")
    budget.add_argument("--steps", type=int, default=0, help="training steps per model instead")
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="training seed (0: RESULTS.md's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--test-pairs", type=int, default=0, help="score the first N (0 = all)")
    parser.add_argument(
        "--mbr", type=int, default=0, help="samples per source for MBR decoding (0 = none)"
    )
    parser.add_argument(
        "--mbr-temperature", type=float, default=0.5, help="sampling temperature for MBR"
    )
    parser.add_argument(
        "--block",
        type=int,
        default=1,
        metavar="N",
        help="also decode never repeating an N-gram of the output or the source (0 = not)",
    )
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument(
        "--model-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a model setting for every family, e.g. norm_first=false (repeatable)",
    )
    parser.add_argument(
        "--train-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Trainer setting for every family, e.g. lr=1e-3 (repeatable)",
    )
    parser.add_argument("--models", default=",".join(SIZES["small"]), help="families to run")
    parser.add_argument("--save", help="keep each trained model in DIR/FAMILY")
    parser.add_argument("--load", help="score the models kept in DIR/FAMILY by --save instead")
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
    names = args.models.split(",")
    rows = [
        train_one(n, s, pairs, tokenizer, args) for n, s in SIZES[args.size].items() if n in names
    ]

    print(f"\ntest BLEU on {len(test):,} couplets (sacrebleu, tokenize=zh: a token per character)")
    ways = list(decodings(args))
    columns = [f"BLEU {w}" for w in ways] + [f"BLEU-2 {w}" for w in ways]
    print("| system | params | train s | steps | valid loss | " + " | ".join(columns) + " |")
    print("|---" * (5 + len(columns)) + "|")
    copied = [f"{copy_bleu:.2f}"] * len(ways) + [f"{copy_bleu2:.2f}"] * len(ways)
    print("| copy the source | 0 | 0 | 0 | | " + " | ".join(copied) + " |")
    for row in rows:
        cells = [f"{row[f'bleu_{w}']:.2f}" for w in ways] + [
            f"{row[f'bleu2_{w}']:.2f}" for w in ways
        ]
        print(
            f"| {row['model']} | {row['params']:,} | {row['train_seconds']:.0f} | "
            f"{row['steps']:,} | {row['valid_loss']:.3f} | " + " | ".join(cells) + " |"
        )
    for row in rows:
        distinct = ", ".join(f"{w} {row[f'distinct_{w}']:.0%}" for w in ways)
        seconds = ", ".join(f"{w} {row[f'seconds_{w}']:.0f} s" for w in ways)
        print(f"{row['model']}: distinct hypotheses {distinct}; decoding {seconds}")
        if "aligned_attention" in row:
            print(
                f"  cross-attention on the aligned source character: {row['aligned_attention']:.2f}"
            )
    if len(rows) == 2:
        print(significance(rows, references, ways))
    last = ways[-1]
    print("\nexamples (source | reference | " + " | ".join(r["model"] for r in rows) + f", {last})")
    for i in range(0, len(test), max(1, len(test) // 6))[:6]:
        print(" | ".join([test[i][0], test[i][1], *(row[last][i] for row in rows)]))
    if args.json:
        figures = {"copy_bleu": copy_bleu, "copy_bleu2": copy_bleu2, "args": vars(args)}
        with open(args.json, "w", encoding="utf-8") as handle:  # with every hypothesis
            json.dump({**figures, "rows": rows}, handle, ensure_ascii=False)


if __name__ == "__main__":
    main()
