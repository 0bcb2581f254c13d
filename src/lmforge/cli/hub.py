"""Model folders in and out and what an encoder does: ``embed``, ``export hf``, ``import hf``,
``fill-mask`` and ``finetune``."""

from __future__ import annotations

import argparse
import json

from lmforge.cli.common import add_setting_flags, say
from lmforge.config import config_to_dict, parse_sets, read_config_file
from lmforge.data import read_texts
from lmforge.data.labelled import TASKS, check_labels, read_examples
from lmforge.errors import ConfigError
from lmforge.finetune import finetune, finetune_config
from lmforge.folders import load_model, save_model
from lmforge.hub import export_hf, import_hf
from lmforge.hub.embed import embed, load_encoder, save_embeddings
from lmforge.models import family_of
from lmforge.models.bert import BERT
from lmforge.preflight import check_device, check_output_file, check_output_folder
from lmforge.pretrain import MASK_MARKERS, fill_mask
from lmforge.tokenize import Tokenizer


def add_commands(commands) -> None:
    embedding = commands.add_parser(
        "embed", help="sentence embeddings (mean-pooled, L2-normalised) from a BERT encoder"
    )
    embedding.add_argument("model", help="an lmforge bert folder or a Hugging Face BERT folder")
    embedding.add_argument("--text", required=True, help="one sentence per line (every line)")
    embedding.add_argument("--out", required=True, help="the .npy file to write (lines x hidden)")
    embedding.add_argument("--batch-size", type=int, default=32)
    embedding.set_defaults(run=run_embed)

    for name, help_text, fmt, source, out, run in (
        (
            "export",
            "write a model folder in another library's format",
            "Hugging Face: gpt as GPT2LMHeadModel, bert as BertForMaskedLM",
            ("model", "an lmforge gpt or bert model folder"),
            "the Hugging Face folder to write",
            run_export_hf,
        ),
        (
            "import",
            "read another library's model folder",
            "a local Hugging Face folder: BERT-architecture (bert) or exported GPT-2 (gpt)",
            ("folder", "the Hugging Face model folder"),
            "the lmforge model folder to write",
            run_import_hf,
        ),
    ):
        formats = commands.add_parser(name, help=help_text).add_subparsers(
            title="formats", required=True
        )
        hf = formats.add_parser("hf", help=fmt)
        hf.add_argument(source[0], help=source[1])
        hf.add_argument("--out", required=True, help=out)
        hf.set_defaults(run=run)

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
    add_setting_flags(
        tuning,
        "trainer",
        "a trainer setting (default batch_size=32 lr=5e-5, 3 epochs), e.g. --set lr=3e-5",
    )
    tuning.add_argument(
        "--freeze-encoder", action="store_true", help="train the new output layer only"
    )
    tuning.add_argument("--quiet", action="store_true", help="no progress bar")
    tuning.set_defaults(run=run_finetune)


def run_embed(args: argparse.Namespace) -> int:
    check_output_file(args.out, ".npy file")
    model, tokenizer = load_encoder(args.model)
    sentences = read_texts(args.text)
    vectors = embed(model, tokenizer, sentences, batch_size=args.batch_size)
    save_embeddings(args.out, vectors)
    print(f"wrote {args.out} ({vectors.shape[0]} x {vectors.shape[1]} float32)")
    return 0


def run_export_hf(args: argparse.Namespace) -> int:
    check_output_folder(args.out, "Hugging Face folder")
    model, tokenizer, meta = load_model(args.model)
    out = export_hf(model, tokenizer, args.out)
    print(f"wrote {out}/ ({meta['family']} in Hugging Face format)")
    return 0


def run_import_hf(args: argparse.Namespace) -> int:
    check_output_folder(args.out, "model folder")
    model, tokenizer = import_hf(args.folder)
    out = save_model(args.out, model, tokenizer)
    print(
        f"wrote {out}/ ({type(model).__name__}, {model.num_parameters():,} parameters, "
        f"{tokenizer.kind} tokenizer of {tokenizer.vocab_size:,} tokens)"
    )
    return 0


def _load_bert(path: str) -> tuple[BERT, Tokenizer]:
    """A pretrained masked LM (with its MLM head) and its tokenizer: an lmforge bert folder or a
    Hugging Face one."""
    model, tokenizer, record = load_model(path)
    if "task" in record:
        raise ConfigError(
            f"{path} is a fine-tuned classifier; give the pretrained bert folder it came from"
        )
    if family_of(model).task != "mlm":
        raise ConfigError(
            f"{path} holds a {type(model).__name__}; this command needs a bert (masked LM)"
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
    settings.update(parse_sets(args.set))
    train_config = finetune_config(len(train_records), settings)
    check_device(train_config.device)
    check_output_folder(args.out, "fine-tuned folder")
    check_labels(train_records, eval_records, args.task)
    encoder, tokenizer = _load_bert(args.model)
    say(
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
