"""Flags and output helpers that several subcommands share."""

from __future__ import annotations

import argparse
import sys

from lmforge.errors import ConfigError
from lmforge.tokenize import TOKENIZER_KINDS


def add_setting_flags(parser: argparse.ArgumentParser, what: str, example: str) -> None:
    """``--config FILE`` and repeatable ``--set KEY=VALUE`` (flags win over the file)."""
    parser.add_argument("--config", help=f"JSON or TOML file of {what} settings")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=example)


def add_tokenizer_flags(
    parser: argparse.ArgumentParser, default: str, kinds: tuple[str, ...] = TOKENIZER_KINDS
) -> None:
    """``--tokenizer`` (one of ``kinds``; its help names the command's ``default``), and the
    sizes of a new tokenizer."""
    parser.add_argument(
        "--tokenizer", choices=kinds, help=f"how lines become tokens (default: {default})"
    )
    parser.add_argument(
        "--rare-threshold", type=int, default=3, help="word/jieba: train frequency <= k -> <rare>"
    )
    parser.add_argument("--vocab-size", type=int, default=8000, help="bpe/bytebpe/wordpiece size")


def by_corpus(tokenizers: dict[str, str]) -> str:
    """``{"tang": "char", "couplets": "char"}`` as "char for tang, couplets", for ``--help``."""
    corpora: dict[str, list[str]] = {}
    for corpus, kind in tokenizers.items():
        corpora.setdefault(kind, []).append(corpus)
    return "; ".join(f"{kind} for {', '.join(names)}" for kind, names in corpora.items())


def whole_number(text: str, flag: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{flag}: {text!r} is not a whole number or 'all'") from None


def say(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text, file=sys.stderr)
