"""``lmforge chat-eval``: a chat model against its base prompted few-shot, every assistant turn
of held-out dialogues scored by kind (``lmforge.chat_eval``)."""

from __future__ import annotations

import argparse
import dataclasses

from lmforge.chat_eval import CREATION, chat_eval, format_table
from lmforge.checkpoint import write_json
from lmforge.cli.chat import add_sampling_flags
from lmforge.data.tang_chat import BUILTIN_DIALOGUES
from lmforge.preflight import check_output_file


def add_commands(commands) -> None:
    scoring = commands.add_parser(
        "chat-eval",
        help="score a chat model and its base (prompted few-shot) on held-out dialogues, by kind",
    )
    scoring.add_argument("folder", help="chat model folder (made by lmforge chat-tune)")
    scoring.add_argument(
        "--dialogues",
        default="tang-chat",
        help=f"a built-in set ({', '.join(BUILTIN_DIALOGUES)}: its held-out dialogues) or a JSONL "
        'file whose lines carry "kinds" beside "messages" (default: tang-chat)',
    )
    scoring.add_argument(
        "--base", help="base model folder (default: the one the chat model was tuned from)"
    )
    scoring.add_argument(
        "--shots",
        help="JSONL training dialogues that prompt the base (default: the built-in set's)",
    )
    scoring.add_argument("--json", help='also write {"rows": [{kind, model, score, n}]} here')
    scoring.add_argument("--quiet", action="store_true", help="no progress bars")
    add_sampling_flags(
        scoring,
        "for the couplets and quatrains; turn i is seeded SEED + i (default 0); other turns are "
        "greedy",
        f"sampling temperature (default {CREATION.temperature}, as MT-Bench writes; 0: greedy)",
    )
    scoring.set_defaults(run=run_chat_eval)


def run_chat_eval(args: argparse.Namespace) -> int:
    if args.json:
        check_output_file(args.json, "JSON file")
    flags = {name: getattr(args, name) for name in ("temperature", "top_k", "top_p", "seed")}
    creation = dataclasses.replace(CREATION, **{k: v for k, v in flags.items() if v is not None})
    creation = creation if creation.temperature > 0 else None
    result = chat_eval(
        args.folder, args.dialogues, args.base, args.shots, quiet=args.quiet, creation=creation
    )
    print(format_table(result))
    print(f"couplets and quatrains: {result['creation']}")
    print(f"seconds: tuned {result['seconds']['tuned']}, base {result['seconds']['base']}")
    if args.json:
        write_json(args.json, result)
    return 0
