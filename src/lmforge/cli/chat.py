"""``lmforge chat-tune`` and ``lmforge chat``: turn a causal LM into an assistant on dialogues, and
talk to it (``lmforge.chat``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lmforge.cli.common import add_setting_flags, say
from lmforge.config import parse_sets, read_config_file
from lmforge.errors import ConfigError, DataError
from lmforge.preflight import check_output_folder


def add_commands(commands) -> None:
    tune = commands.add_parser(
        "chat-tune",
        help="tune a causal LM into a chat model on dialogues (the loss on the assistant's "
        "tokens only); with no BASE and no --dialogues: the default chat model",
    )
    tune.add_argument(
        "base",
        nargs="?",
        help="base model folder (a causal LM: gpt; rnn/lstm/gru work too); default: a small gpt "
        "pretrained on tang, trained once into runs/chat/base-gpt-tang-rope",
    )
    tune.add_argument(
        "--dialogues",
        help='JSONL file of {"messages": [{"role", "content"}, ...]} lines, or a built-in set: '
        "tang-chat (the default)",
    )
    tune.add_argument("--valid", help="held-out dialogues (JSONL): keep the best weights on them")
    tune.add_argument("--out", required=True, help="the chat model folder to write")
    tune.add_argument(
        "--lora",
        action="store_true",
        help="train LoRA adapters (and the token embeddings) instead of every weight; the "
        "adapters are merged into the saved folder",
    )
    add_setting_flags(
        tune, "trainer", "a trainer or tuning setting, e.g. --set max_steps=500 --set lora_r=8"
    )
    tune.add_argument("--overwrite", action="store_true", help="replace what --out holds")
    tune.add_argument("--quiet", action="store_true", help="no progress bar")
    tune.set_defaults(run=run_chat_tune)

    chat = commands.add_parser(
        "chat", help="talk to a chat model: interactive, or one reply with --message"
    )
    chat.add_argument("model", help="chat model folder (made by lmforge chat-tune)")
    chat.add_argument("--message", help="one-shot: reply to this user message and exit")
    chat.add_argument(
        "--history", help="one-shot: a JSON file of the conversation so far (a list of messages)"
    )
    chat.add_argument("--system", help="a system message to start the conversation with")
    chat.add_argument(
        "--json", action="store_true", help='one-shot: print {"reply", "tokens", "seconds"}'
    )
    chat.add_argument("--max-new-tokens", type=int, default=200)
    add_sampling_flags(chat, "(any sampling flag samples; none: greedy)")
    chat.set_defaults(run=run_chat)


def add_sampling_flags(parser, note: str, temperature: str = "default 1 when sampling") -> None:
    """``--temperature``, ``--top-k``, ``--top-p`` and ``--seed``, each help ending in ``note``."""
    parser.add_argument("--temperature", type=float, help=f"{temperature} {note}")
    parser.add_argument("--top-k", type=int, help=f"keep the k most likely tokens {note}")
    parser.add_argument("--top-p", type=float, help=f"nucleus mass {note}")
    parser.add_argument("--seed", type=int, help=f"seed of the samples {note}")


def run_chat_tune(args: argparse.Namespace) -> int:
    from lmforge.chat.tune import chat_settings, chat_tune, default_chat_model
    from lmforge.data.dialogues import load_dialogues, read_dialogues
    from lmforge.folders import load_model

    check_output_folder(args.out, "chat model folder")
    settings = read_config_file(args.config) if args.config else {}
    settings.update(parse_sets(args.set))
    progress = not args.quiet
    if args.base is None:
        dialogues = load_dialogues(args.dialogues) if args.dialogues else None
        say(args, "lmforge chat-tune: the default chat model")
        default_chat_model(
            args.out,
            settings,
            args.lora,
            lambda text: say(args, text),
            args.overwrite,
            progress,
            [d["messages"] for d in dialogues] if dialogues else None,
        )
    else:
        model, tokenizer, _ = load_model(args.base)
        dialogues = load_dialogues(args.dialogues or "tang-chat")
        valid = [d["messages"] for d in read_dialogues(args.valid)] if args.valid else None
        train_config, tuning = chat_settings(settings, args.lora)
        say(args, f"lmforge chat-tune: {args.base} on {len(dialogues):,} dialogues")
        chat_tune(
            model,
            tokenizer,
            [d["messages"] for d in dialogues],
            train_config,
            tuning,
            args.out,
            valid,
            {"base": str(args.base), "dialogues": str(args.dialogues)},
            args.overwrite,
            progress,
        )
    print(f"wrote {args.out}/ (talk to it: lmforge chat {args.out})")
    return 0


def run_chat(args: argparse.Namespace) -> int:
    from lmforge.chat import load_chat_model

    if (args.history or args.json) and args.message is None:
        raise ConfigError("--history and --json go with --message (one reply); drop them to chat")
    model, tokenizer = load_chat_model(args.model)
    messages = [{"role": "system", "content": args.system}] if args.system else []
    if args.message is not None:
        messages += _history(args.history) if args.history else []
        return _one_reply(args, model, tokenizer, messages)
    return _interactive(args, model, tokenizer, messages)


def _sampler(args: argparse.Namespace):
    """Greedy unless a sampling flag is given; then temperature 1 unless given."""
    from lmforge.chat.session import GREEDY
    from lmforge.nn.sampling import Sampler

    flags = (args.temperature, args.top_k, args.top_p, args.seed)
    if all(flag is None for flag in flags):
        return GREEDY
    return Sampler(
        temperature=1.0 if args.temperature is None else args.temperature,
        top_k=args.top_k or 0,
        top_p=1.0 if args.top_p is None else args.top_p,
        seed=args.seed,
    )


def _history(path: str) -> list[dict]:
    """The conversation of a JSON file: a list of messages (or ``{"messages": [...]}``)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"--history {path}: cannot read it as JSON ({err})") from None
    messages = data.get("messages") if isinstance(data, dict) else data
    if not isinstance(messages, list):
        raise DataError(f"--history {path}: give a JSON list of {{role, content}} messages")
    return messages


def _one_reply(args: argparse.Namespace, model, tokenizer, messages: list[dict]) -> int:
    from lmforge.chat import reply

    messages = [*messages, {"role": "user", "content": args.message}]
    answer = reply(model, tokenizer, messages, args.max_new_tokens, _sampler(args))
    if args.json:
        result = {"reply": answer.text, "tokens": answer.tokens, "seconds": answer.seconds}
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(answer.text)
    return 0


def _interactive(args: argparse.Namespace, model, tokenizer, messages: list[dict]) -> int:
    """The terminal chat: the history is kept; /reset, /system TEXT, /quit (or Ctrl-D)."""
    from lmforge.chat import reply

    sampler = _sampler(args)
    print(
        f"chatting with {args.model}: /reset clears the history, /system TEXT sets the system "
        "message, /quit (or Ctrl-D) leaves",
        file=sys.stderr,
    )
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            print(file=sys.stderr)
            return 0
        if line in ("/quit", "/exit"):
            return 0
        if line == "/reset" or line.startswith("/system"):
            messages = _command(line, messages)
            continue
        if not line:
            continue
        messages.append({"role": "user", "content": line})
        print("bot> ", end="", flush=True)
        answer = reply(
            model,
            tokenizer,
            messages,
            args.max_new_tokens,
            sampler,
            lambda text: print(text, end="", flush=True),
        )
        print("" if answer.stopped else f" [cut at {answer.tokens} tokens]")
        if answer.text.strip():
            messages.append({"role": "assistant", "content": answer.text})
        else:
            messages.pop()  # no reply: the question leaves the history too


def _command(line: str, messages: list[dict]) -> list[dict]:
    """The history after ``/reset`` (the system message stays) or ``/system TEXT`` (replaced;
    no TEXT: removed)."""
    system = [m for m in messages[:1] if m["role"] == "system"]
    turns = messages[len(system) :]
    if line == "/reset":
        print("(history cleared)", file=sys.stderr)
        return system
    text = line.removeprefix("/system").strip()
    print("(system message set)" if text else "(system message removed)", file=sys.stderr)
    return [{"role": "system", "content": text}] * bool(text) + turns
