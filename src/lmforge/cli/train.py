"""``lmforge train`` / ``pretrain``, ``eval``, ``generate`` and ``ladder``: neural models on one
Trainer, scored by one perplexity path."""

from __future__ import annotations

import argparse
import json

from lmforge.checkpoint import write_json
from lmforge.cli.common import add_setting_flags, add_tokenizer_flags, by_corpus, say
from lmforge.data import BUILTIN_CORPORA, DEFAULT_TOKENIZERS, load_corpus
from lmforge.data.pairs import BUILTIN_PAIRS
from lmforge.errors import ConfigError
from lmforge.evaluate import lines_perplexity
from lmforge.folders import load_model
from lmforge.ladder import DEFAULT_MODELS, PRESETS, ladder_table, run_ladder
from lmforge.models import FAMILIES, get_family
from lmforge.nn.sampling import Sampler
from lmforge.preflight import check_device, check_output_file, check_output_folder
from lmforge.tokenize import TOKENIZER_KINDS
from lmforge.training import report, train_job, training_data
from lmforge.vertical import about_minutes
from lmforge.workflows import Decoding, generate_text


def add_commands(commands) -> None:
    train = commands.add_parser("train", help="train a neural family with the one Trainer")
    train.add_argument("--model", required=True, help="family: " + ", ".join(FAMILIES))
    data = train.add_mutually_exclusive_group(required=True)
    data.add_argument("--corpus", help=f"built-in ({', '.join(BUILTIN_CORPORA)}) or a path")
    data.add_argument(
        "--pairs",
        help=f"encoder-decoders: built-in ({', '.join(BUILTIN_PAIRS)}) or a .jsonl file of "
        '{"source": ..., "target": ...} lines',
    )
    train.add_argument("--valid", help="held-out text instead of the corpus's own split")
    _add_run_flags(train, "e.g. --set n_layers=4 --set lr=3e-4")
    train.set_defaults(run=run_train)

    evaluate = commands.add_parser("eval", help="valid/test perplexity of a model folder")
    evaluate.add_argument("model", help="a model folder (any family) or an .arpa file")
    evaluate.add_argument("--corpus", required=True, help="built-in corpus or a path")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(run=run_eval)

    generate = commands.add_parser("generate", help="sample text from a model folder")
    generate.add_argument("model", help="a model folder (any family) or an .arpa file")
    generate.add_argument("--prompt", default="", help="text to continue")
    generate.add_argument("--max-new-tokens", type=int, default=100)
    generate.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    generate.add_argument("--top-k", type=int, default=0)
    generate.add_argument("--top-p", type=float, default=1.0)
    generate.add_argument("--seed", type=int, default=None)
    generate.add_argument(
        "--beam", type=int, default=1, help="encoder-decoders: beam size (1 = greedy)"
    )
    generate.add_argument(
        "--mbr",
        type=int,
        default=0,
        help="encoder-decoders: minimum-Bayes-risk decoding over this many samples (0 = off)",
    )
    generate.add_argument(
        "--no-repeat-ngram",
        type=int,
        default=0,
        metavar="N",
        help="encoder-decoders: never repeat an N-gram of the output (1 = any token; 0 = off)",
    )
    generate.add_argument(
        "--source-no-repeat-ngram",
        type=int,
        default=0,
        metavar="N",
        help="encoder-decoders: never copy an N-gram of the source (1 = any token; 0 = off)",
    )
    generate.set_defaults(run=run_generate)

    ladder = commands.add_parser("ladder", help="train every rung on one corpus; one table")
    ladder.add_argument("--preset", default="quick", choices=sorted(PRESETS))
    ladder.add_argument(
        "--models", help="comma-separated rungs (default: " + ",".join(DEFAULT_MODELS) + ")"
    )
    ladder.add_argument("--corpus", help="built-in corpus or a path (default: the preset's)")
    ladder.add_argument("--tokenizer", choices=TOKENIZER_KINDS, help="default: the preset's")
    ladder.add_argument("--device", default="cpu", help="cpu or cuda")
    ladder.add_argument("--out", help="folder for models, ladder.json, ladder.png")
    ladder.add_argument("--json", help="also write the results as JSON to this file")
    ladder.add_argument("--max-steps", type=int, help="cap every neural rung's steps (a smoke run)")
    ladder.add_argument(
        "--jobs", type=int, help="rungs trained at once (default: one per CPU core); 1: in turn"
    )
    ladder.add_argument("--quiet", action="store_true")
    ladder.set_defaults(run=run_ladder_command)

    pretraining = commands.add_parser(
        "pretrain", help="pretrain a masked LM (bert: masked LM + next sentence prediction)"
    )
    pretraining.add_argument("--model", default="bert", help="a masked-LM family (bert)")
    pretraining.add_argument(
        "--corpus",
        required=True,
        help="built-in (brown) or a path: a blank line between documents, a sentence per line",
    )
    pretraining.add_argument("--valid", help="held-out text (default: 5%% of the documents)")
    _add_run_flags(pretraining, "e.g. --set n_layers=2 --set max_steps=2000")
    pretraining.set_defaults(run=run_pretrain)


def _add_run_flags(parser: argparse.ArgumentParser, example: str) -> None:
    """The flags of a training run: settings, output folder, resume, tokenizer, quiet."""
    add_setting_flags(parser, "model and trainer", f"a model or trainer setting, {example}")
    parser.add_argument("--out", help="model folder (default runs/<family>-<corpus>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the run or model that --out holds"
    )
    add_tokenizer_flags(parser, _default_tokenizers())
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _default_tokenizers() -> str:
    """What ``training.default_tokenizer`` picks, in words, for ``--help``."""
    own = [f"{f.tokenizer} for {name}" for name, f in FAMILIES.items() if f.tokenizer]
    return "; ".join([*own, by_corpus(DEFAULT_TOKENIZERS), "else word"])


def run_train(args: argparse.Namespace) -> int:
    """One path for every trainable family: its task says which data it reads."""
    family = get_family(args.model)
    data = training_data(family, args.corpus, getattr(args, "pairs", None), args.valid)
    out = check_output_folder(args.out or f"runs/{args.model}-{data.name}", "model folder")
    run = train_job(
        family,
        data,
        out,
        args.tokenizer,
        args.vocab_size,
        args.rare_threshold,
        args.config,
        args.set,
        args.resume,
        progress=not args.quiet,
        say=lambda text: say(args, text),
        overwrite=args.overwrite,
    )
    for line in report(run, data):
        print(line)
    print(f"wrote {out}/")
    return 0


def run_pretrain(args: argparse.Namespace) -> int:
    """``lmforge train`` for a masked LM, under the name BERT's paper gives it."""
    family = get_family(args.model)
    if family.task != "mlm":
        raise ConfigError(
            f"{args.model} is not a masked LM: train it with `lmforge train --model "
            f"{args.model}`; pretrain takes bert"
        )
    return run_train(args)


def run_eval(args: argparse.Namespace) -> int:
    model, tokenizer, meta = load_model(args.model)
    corpus = load_corpus(args.corpus)
    result = {"model": str(args.model), "family": meta["family"], "corpus": corpus.name}
    for split in ("valid", "test"):
        result[f"{split}_ppl"] = lines_perplexity(model, tokenizer, corpus.split(split))
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{corpus.name}: valid perplexity {result['valid_ppl']:.2f}, "
            f"test perplexity {result['test_ppl']:.2f}"
        )
    return 0


def run_generate(args: argparse.Namespace) -> int:
    model, tokenizer, _ = load_model(args.model)
    text = generate_text(
        model,
        tokenizer,
        args.prompt,
        args.max_new_tokens,
        Sampler(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed),
        Decoding(args.beam, args.mbr, args.no_repeat_ngram, args.source_no_repeat_ngram),
    )
    print(text)
    return 0


def run_ladder_command(args: argparse.Namespace) -> int:
    preset = PRESETS[args.preset]
    check_device(args.device)  # before any work: the device and the output places
    out = check_output_folder(args.out or f"runs/ladder-{preset.name}", "ladder folder")
    if args.json:
        check_output_file(args.json, "--json file")
    models = tuple(m.strip() for m in args.models.split(",")) if args.models else DEFAULT_MODELS
    print(f"ladder preset {preset.name}: {preset.summary}")
    print(
        f"rungs: {', '.join(models)}; expected {about_minutes(preset.minutes)} on a 2-core CPU "
        f"for the default rungs"
    )
    result = run_ladder(
        preset,
        models,
        corpus=args.corpus,
        tokenizer=args.tokenizer,
        device=args.device,
        out_dir=out,
        progress=not args.quiet,
        max_steps=args.max_steps,
        jobs=args.jobs,
    )
    print(
        f"\n{result.corpus}, {result.tokenizer} tokenizer (perplexity counts every token and </s>)"
    )
    print(ladder_table(result))
    if args.json:
        write_json(args.json, result.to_dict())
        print(f"wrote {args.json}")
    print(f"wrote {out}/ladder.json and the plot {out}/ladder.png")
    return 0
