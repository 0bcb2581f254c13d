"""The ``lmforge`` command line: thin subcommands over the library.

Every subcommand parses its flags, calls library functions and prints. A new command goes into
the module of its group (``ngram``, ``train``, ``hub``, ``vertical``), or a new module here with
an ``add_commands(commands)`` that ``COMMANDS`` lists. An ``LMForgeError`` is printed as one line
on stderr with exit status 2; a library warning as one ``lmforge: note:`` line.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from lmforge._version import __version__
from lmforge.cli import hub, ngram, train, vertical
from lmforge.data import BUILTIN_CORPORA
from lmforge.errors import LMForgeError
from lmforge.models import FAMILIES
from lmforge.tokenize import TOKENIZER_KINDS

__all__ = ["build_parser", "main"]

COMMANDS = (ngram, train, hub, vertical)  # each adds its subcommands to the parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 0
    try:
        with warnings.catch_warnings():  # a library warning is one note line on stderr
            warnings.simplefilter("always")
            warnings.showwarning = _show_note
            return args.run(args) or 0
    except LMForgeError as err:
        print(f"lmforge: error: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lmforge: interrupted", file=sys.stderr)
        return 130


def _show_note(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"lmforge: note: {message}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lmforge", description="Every generation of language model, on your own text."
    )
    parser.add_argument("--version", action="version", version=f"lmforge {__version__}")
    commands = parser.add_subparsers(title="commands")
    listing = commands.add_parser("list", help="list model families, built-in corpora, tokenizers")
    listing.set_defaults(run=run_list)
    for module in COMMANDS:
        module.add_commands(commands)
    return parser


def run_list(args: argparse.Namespace) -> int:
    print("model families:")
    for name, family in FAMILIES.items():
        print(f"  {name:10s} {family.summary}")
    print("built-in corpora: " + ", ".join(BUILTIN_CORPORA))
    print("tokenizers: none, " + ", ".join(TOKENIZER_KINDS))
    return 0
