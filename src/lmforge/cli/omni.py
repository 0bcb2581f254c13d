"""``lmforge omni train | eval | chat``: the any-to-any model (``lmforge.omni``)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from lmforge.cli.common import add_setting_flags, say
from lmforge.config import parse_sets, read_config_file

TEMPERATURE_HELP = (
    "sampling temperature of every generated item (default: each modality's own: "
    "image 0.7, signal and video 0.5, speech and 3-D 0.1)"
)


def add_commands(commands) -> None:
    omni = commands.add_parser(
        "omni", help="the any-to-any model: text, image, speech, signal, 3D and video in one GPT"
    )
    group = omni.add_subparsers(title="omni commands", required=True)
    train = group.add_parser(
        "train",
        help="train the modality tokenizers (those --out does not keep), then the decoder",
    )
    train.add_argument("--out", required=True, help="the omni model folder to write")
    add_setting_flags(
        train, "omni", "a setting, e.g. --set steps=500 --set modalities='[\"image\"]'"
    )
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(run=run_train)

    evaluate = group.add_parser("eval", help="score every pair of modalities on held-out items")
    evaluate.add_argument("model", help="omni model folder")
    evaluate.add_argument("--json", help='write {"rows": [{"task", "score", "n", "baseline"}]}')
    evaluate.add_argument(
        "--grid",
        help="write the generated digits as a PNG grid here "
        "(default: beside --json, or omni-grid.png)",
    )
    evaluate.add_argument("--limit", type=int, default=0, help="at most this many items a task")
    evaluate.add_argument("--temperature", type=float, help=TEMPERATURE_HELP)
    evaluate.add_argument(
        "--no-views",
        dest="views",
        action="store_false",
        help="read given digits and words as they are, not also through their views",
    )
    evaluate.add_argument("--quiet", action="store_true", help="no stage lines")
    evaluate.set_defaults(run=run_eval)

    chat = group.add_parser("chat", help="talk to the model: one turn with --message, or a session")
    chat.add_argument("model", help="omni model folder")
    chat.add_argument("--message", help="one turn: this text (with --image / --audio) and exit")
    chat.add_argument("--image", help="a PNG of any size, light ink on a dark ground")
    chat.add_argument("--audio", help="a WAV file of one spoken word")
    chat.add_argument("--out-dir", default="omni-out", help="where reply images and sounds go")
    chat.add_argument("--seed", type=int, default=0, help="seed of the sampled items")
    chat.add_argument("--temperature", type=float, help=TEMPERATURE_HELP)
    chat.add_argument("--json", action="store_true", help='print {"reply", "images", "audio"}')
    chat.set_defaults(run=run_chat)


def run_train(args: argparse.Namespace) -> int:
    from lmforge.omni.train import settings, train_omni

    sets = (
        {**read_config_file(args.config), **parse_sets(args.set)}
        if args.config
        else parse_sets(args.set)
    )
    train_omni(args.out, settings(sets), say=lambda text: say(args, text), progress=not args.quiet)
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lmforge.omni.evaluate import evaluate_omni, print_table

    grid = args.grid or (str(Path(args.json).with_suffix(".png")) if args.json else "omni-grid.png")
    quiet = (lambda text: None) if args.quiet else (lambda text: print(text, file=sys.stderr))
    rows = evaluate_omni(
        args.model,
        args.json,
        grid,
        args.limit,
        say=quiet,
        temperature=args.temperature,
        views=args.views,
    )
    print_table(rows)
    print(f"picture grid: {grid}")
    return 0


def run_chat(args: argparse.Namespace) -> int:
    from lmforge.omni.chat import user_turn, write_reply
    from lmforge.omni.model import Omni

    omni = Omni.load(args.model)
    if args.message is not None or args.image or args.audio:
        start = time.time()
        turn = user_turn(omni, args.message or "", args.image, args.audio)
        reply = omni.reply([[turn]], items=_sampler(args), seed=args.seed)[0]
        result = write_reply(omni, reply, args.out_dir)
        if args.json:
            print(
                json.dumps({**result, "seconds": round(time.time() - start, 3)}, ensure_ascii=False)
            )
        else:
            print(result["reply"])
        return 0
    return _session(omni, args)


def _session(omni, args: argparse.Namespace) -> int:
    """An interactive chat: each line is a turn; "/image PATH" and "/audio PATH" attach a file
    to the next turn, "/reset" forgets the conversation, an empty line or EOF ends it."""
    from lmforge.errors import LMForgeError
    from lmforge.omni.chat import user_turn, write_reply

    print(
        "omni chat: type a message; /image PNG or /audio WAV attaches a file to the next "
        "one; /reset starts over; an empty line ends."
    )
    history, image, audio, n = [], None, None, 0
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            return 0
        if not line:
            return 0
        if line == "/reset":
            history, image, audio = [], None, None
            continue
        if line.startswith(("/image ", "/audio ")):
            kind, path = line.split(maxsplit=1)
            image, audio = (path, audio) if kind == "/image" else (image, path)
            continue
        try:
            turn = user_turn(omni, line, image, audio)
        except LMForgeError as err:  # the file is dropped: the next turn starts clean
            print(f"lmforge: error: {err}", file=sys.stderr)
            image = audio = None
            continue
        image = audio = None
        history.append(turn)
        reply = omni.reply([history], items=_sampler(args), seed=args.seed + n)[0]
        history.append({"role": "assistant", "content": reply})
        n += 1
        print("omni>", write_reply(omni, reply, args.out_dir, stem=f"turn{n}")["reply"])


def _sampler(args: argparse.Namespace):
    """The items' samplers (``--temperature``; ConfigError names a bad value)."""
    from lmforge.omni.model import item_samplers

    return item_samplers(args.temperature)
