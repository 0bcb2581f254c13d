"""``lmforge ngram``: estimate, evaluate and score the n-gram model, as KenLM's lmplz and query."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from lmforge.cli.common import add_tokenizer_flags, by_corpus, say
from lmforge.config import add_config_flags, build_config, config_to_dict, read_config_file
from lmforge.data import BUILTIN_CORPORA, DEFAULT_TOKENIZERS, load_corpus, read_texts
from lmforge.errors import ConfigError
from lmforge.folders import save_model
from lmforge.models.ngram import KENLM_FALLBACK, LN10, NgramConfig
from lmforge.ngram import evaluate_ngram, load_ngram, train_ngram
from lmforge.ngram_outofcore import fit_arpa_out_of_core, parse_memory, text_lines, tokenized
from lmforge.preflight import check_output_file, check_output_folder
from lmforge.tokenize import TOKENIZER_KINDS, tokenize_lines, train_tokenizer


def add_commands(commands) -> None:
    ngram = commands.add_parser("ngram", help="statistical n-gram LM (modified Kneser-Ney)")
    ngram_commands = ngram.add_subparsers(title="ngram commands", required=True)

    train = ngram_commands.add_parser(
        "train", help="estimate a model on a text file or corpus, write ARPA / a model folder"
    )
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="training text: every line is a sentence (as lmplz)")
    source.add_argument("--corpus", help=f"built-in ({', '.join(BUILTIN_CORPORA)}) or a path")
    train.add_argument("--arpa", help="write the model as this ARPA file")
    train.add_argument("--out", help="write a model folder (model.arpa, config.json, tokenizer)")
    train.add_argument("--config", help="JSON or TOML file with NgramConfig settings")
    add_config_flags(train, NgramConfig)
    add_tokenizer_flags(
        train,
        f"none = whitespace words as KenLM reads them; {by_corpus(DEFAULT_TOKENIZERS)}",
        ("none", *TOKENIZER_KINDS),
    )
    train.add_argument(
        "--memory",
        help="estimate out of core within this budget (64M, 1G), spilling sorted runs to disk; "
        "writes --arpa only",
    )
    train.add_argument(
        "--temp-dir", help="where --memory spills (default: the system's temporary folder)"
    )
    train.add_argument(
        "--cluster",
        help="estimate on Dask: local:N (N worker processes) or a scheduler address "
        "tcp://host:8786; writes --arpa only (needs pip install lmforge[dask])",
    )
    train.add_argument("--quiet", action="store_true", help="no progress lines")
    train.set_defaults(run=run_ngram_train)

    evaluate = ngram_commands.add_parser("eval", help="perplexity of a text, as KenLM's query")
    evaluate.add_argument("model", help="an .arpa file, a binary .lmb file or a model folder")
    target = evaluate.add_mutually_exclusive_group(required=True)
    target.add_argument("--text", help="text file: every line is a sentence")
    target.add_argument("--corpus", help="built-in corpus or path; see --split")
    evaluate.add_argument("--split", default="test", choices=("train", "valid", "test"))
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(run=run_ngram_eval)

    score = ngram_commands.add_parser("score", help="log10 probability of one sentence")
    score.add_argument("model", help="an .arpa file, a binary .lmb file or a model folder")
    score.add_argument("sentence", help="the sentence (</s> is scored too)")
    score.add_argument("--json", action="store_true", help="print one JSON object")
    score.set_defaults(run=run_ngram_score)

    binary = ngram_commands.add_parser(
        "binary", help="write the memory-mappable binary format: fast load and query"
    )
    binary.add_argument("model", help="an .arpa file (or a folder of a whitespace-word model)")
    binary.add_argument("out", help="the binary file to write (.lmb)")
    binary.set_defaults(run=run_ngram_binary)


def run_ngram_train(args: argparse.Namespace) -> int:
    file_values = read_config_file(args.config) if args.config else {}
    flags = vars(args).copy()
    if flags.get("discount_fallback") == []:  # the bare flag means KenLM's values
        flags["discount_fallback"] = KENLM_FALLBACK
    config = build_config(NgramConfig, file_values, flags)
    scaled = _scale_mode(args)
    corpus = load_corpus(args.corpus) if args.corpus else None
    name = corpus.name if corpus else Path(args.text).stem
    kind = args.tokenizer or DEFAULT_TOKENIZERS.get(name if corpus else "", "none")
    if scaled:  # a plain text file is read lazily, a line at a time
        lines = corpus.train if corpus else text_lines(args.text, lazy=kind == "none")
        return _train_scaled(args, config, lines, name, kind, scaled)
    lines = corpus.train if corpus else read_texts(args.text)
    out = args.out
    if not args.arpa and not out:
        out = f"runs/ngram-{name}-o{config.order}"
    if args.arpa:
        check_output_file(args.arpa, "ARPA file")
    if out:
        check_output_folder(out, "model folder")
    say(args, f"lmforge ngram train: {name}, tokenizer {kind}, {config_to_dict(config)}")
    start = time.perf_counter()
    model, tokenizer = train_ngram(
        lines,
        config,
        tokenizer_kind=None if kind == "none" else kind,
        vocab_size=args.vocab_size,
        rare_threshold=args.rare_threshold,
        progress=not args.quiet,
    )
    seconds = time.perf_counter() - start
    counts = ", ".join(f"{n}-grams {c:,}" for n, c in enumerate(model.ngram_counts, start=1))
    print(f"trained order {config.order} on {name} in {seconds:.1f}s: {counts}")
    info: dict = {"corpus": name, "train_seconds": round(seconds, 3)}
    if corpus:
        for split in ("valid", "test"):
            result = evaluate_ngram(model, tokenizer, corpus.split(split))
            info[f"{split}_ppl"] = result.perplexity
            print(_describe(f"{split} perplexity", result))
    if args.arpa:
        model.save_arpa(args.arpa)
        print(f"wrote {args.arpa}")
    if out:
        save_model(out, model, tokenizer, **info)
        print(f"wrote {out}/ (model.arpa, config.json{', tokenizer.json' if tokenizer else ''})")
    return 0


def _scale_mode(args: argparse.Namespace) -> str | None:
    """``memory``, ``cluster`` or None; checks the flags that go with them."""
    if args.memory and args.cluster:
        raise ConfigError(
            "give --memory or --cluster, not both: --memory bounds one process on one disk, "
            "Dask workers bound their own memory (dask worker --memory-limit)"
        )
    mode = "memory" if args.memory else "cluster" if args.cluster else None
    if mode and (not args.arpa or args.out):
        raise ConfigError(
            f"--{mode} writes an ARPA file only: give --arpa FILE (and no --out), then "
            "`lmforge ngram eval FILE` or `lmforge ngram binary FILE`"
        )
    if args.temp_dir and mode != "memory":
        raise ConfigError("--temp-dir goes with --memory; add --memory 1G or drop --temp-dir")
    return mode


def _train_scaled(args, config, lines, name: str, kind: str, mode: str) -> int:
    """``--memory`` / ``--cluster``: the ARPA file of the in-memory estimate, written in pieces."""
    check_output_file(args.arpa, "ARPA file")
    memory = parse_memory(args.memory) if mode == "memory" else 0
    where = f"--memory {args.memory}" if mode == "memory" else f"--cluster {args.cluster}"
    say(args, f"lmforge ngram train: {name}, tokenizer {kind}, {config_to_dict(config)}, {where}")
    tokenizer = None
    if kind != "none":
        tokenizer = train_tokenizer(
            kind, lines, vocab_size=args.vocab_size, rare_threshold=args.rare_threshold
        )
    sentences = tokenized(lines, tokenizer)
    start = time.perf_counter()
    if mode == "memory":
        stats = fit_arpa_out_of_core(
            sentences, config, args.arpa, memory, args.temp_dir, progress=not args.quiet
        )
    else:
        from lmforge.ngram_dask import fit_arpa_dask

        stats = fit_arpa_dask(sentences, config, args.arpa, args.cluster, progress=not args.quiet)
    seconds = time.perf_counter() - start
    counts = ", ".join(f"{n}-grams {c:,}" for n, c in enumerate(stats.ngram_counts, start=1))
    disk = (
        f"; temporary disk peak {stats.peak_temp_bytes / 2**20:,.1f} MiB, {stats.runs} runs"
        if mode == "memory"
        else ""
    )
    print(f"trained order {config.order} on {name} in {seconds:.1f}s: {counts}{disk}")
    print(f"wrote {args.arpa}")
    return 0


def run_ngram_eval(args: argparse.Namespace) -> int:
    model, tokenizer = load_ngram(args.model)
    lines = load_corpus(args.corpus).split(args.split) if args.corpus else read_texts(args.text)
    result = evaluate_ngram(model, tokenizer, lines)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(_describe("perplexity", result))
    return 0


def run_ngram_binary(args: argparse.Namespace) -> int:
    check_output_file(args.out, "binary file")
    start = time.perf_counter()
    model, tokenizer = load_ngram(args.model)
    if tokenizer is not None:
        raise ConfigError(
            f"{args.model} reads text with a {tokenizer.kind} tokenizer, which a binary file "
            "does not hold (it holds whitespace words, as KenLM's); serve or score the folder"
        )
    loaded = time.perf_counter() - start
    model.save_binary(args.out)
    size = Path(args.out).stat().st_size
    start = time.perf_counter()
    load_ngram(args.out)
    print(
        f"wrote {args.out}: order {model.order}, {sum(model.ngram_counts):,} n-grams, "
        f"{size / 2**20:.1f} MiB (read {args.model} in {loaded:.2f} s; the binary loads in "
        f"{time.perf_counter() - start:.3f} s)"
    )
    return 0


def run_ngram_score(args: argparse.Namespace) -> int:
    model, tokenizer = load_ngram(args.model)
    tokens = tokenize_lines([args.sentence], tokenizer)[0]
    logp, oov = model.token_log_probs([tokens])
    log10 = (logp / LN10).tolist()
    words = [*tokens, "</s>"]
    if args.json:
        print(
            json.dumps(
                {"tokens": words, "log10_probs": log10, "oov": oov.tolist(), "total": sum(log10)}
            )
        )
        return 0
    for word, lp, unknown in zip(words, log10, oov.tolist(), strict=True):
        print(f"{word}\t{lp:.6f}{'  (OOV)' if unknown else ''}")
    print(f"Total: {sum(log10):.6f}")
    return 0


def _describe(what: str, result) -> str:
    return (
        f"{what} {result.perplexity:.2f} (excluding OOVs {result.perplexity_excluding_oov:.2f}; "
        f"{result.oov:,} OOVs, {result.tokens:,} tokens with </s>)"
    )
