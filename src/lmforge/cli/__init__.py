"""The ``lmforge`` command line: thin subcommands over the library.

Every subcommand parses its flags, calls library functions and prints. A new command goes into
the module of its group (``ngram``, ``train``, ``hub``, ``vertical``), or a new module here with
an ``add_commands(commands)`` that ``COMMANDS`` lists. An ``LMForgeError`` is printed as one line
on stderr with exit status 2; a library warning as one ``lmforge: note:`` line.

``main`` imports only the module of the command it runs (none for ``--version`` and ``list``),
so that ``lmforge ngram ...`` never imports torch; help and a mistyped command import them all.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence

from lmforge._version import __version__
from lmforge.errors import LMForgeError

__all__ = ["build_parser", "main"]

COMMANDS = {  # module of lmforge.cli -> the commands its add_commands adds to the parser
    "ngram": ("ngram",),
    "train": ("train", "eval", "generate", "ladder", "pretrain"),
    "hub": ("embed", "export", "import", "fill-mask", "finetune"),
    "vertical": ("vertical",),
    "chat_eval": ("chat-eval",),
    "chat": ("chat-tune", "chat"),
    "catalogue": ("catalogue",),
    "serve": ("serve",),
    "omni": ("omni",),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_modules_for(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or a bad flag (one line, status 2)
        return done.code
    if not hasattr(args, "run"):
        parser.print_usage(sys.stderr)
        return 2
    try:
        with warnings.catch_warnings():  # a library warning is one note line on stderr
            warnings.simplefilter("always")
            warnings.showwarning = _show_note
            return args.run(args) or 0
    except LMForgeError as err:
        print(f"lmforge: error: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # what no check can foresee (a full disk): still one line
        where = f"{err.filename}: " if err.filename else ""
        print(f"lmforge: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = "; run the same command with --resume to continue" if "resume" in args else ""
        print(f"\nlmforge: interrupted{hint}", file=sys.stderr)  # below a progress bar
        return 130


def _show_note(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"lmforge: note: {message}", file=sys.stderr)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (and the hint of ``--help``), status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _modules_for(argv: Sequence[str]) -> tuple[str, ...]:
    """The command modules to import for ``argv``: the one that adds its command; none for
    ``--version`` or ``list``; every one for help, no command or a mistyped one."""
    first = argv[0] if argv else None
    if first in ("--version", "list"):
        return ()
    return tuple(name for name, names in COMMANDS.items() if first in names) or tuple(COMMANDS)


def build_parser(modules: Sequence[str] = tuple(COMMANDS)) -> argparse.ArgumentParser:
    """The ``lmforge`` parser with ``list`` and the commands of ``modules`` (names in
    ``COMMANDS``)."""
    parser = _Parser(
        prog="lmforge", description="Every generation of language model, on your own text."
    )
    parser.add_argument("--version", action="version", version=f"lmforge {__version__}")
    commands = parser.add_subparsers(title="commands")
    listing = commands.add_parser("list", help="list model families, built-in corpora, tokenizers")
    listing.set_defaults(run=run_list)
    for name in modules:
        importlib.import_module(f"lmforge.cli.{name}").add_commands(commands)
    return parser


def run_list(args: argparse.Namespace) -> int:
    from lmforge.data import BUILTIN_CORPORA
    from lmforge.models import FAMILIES
    from lmforge.tokenize import TOKENIZER_KINDS

    print("model families:")
    for name, family in FAMILIES.items():
        print(f"  {name:10s} {family.summary}")
    print("built-in corpora: " + ", ".join(BUILTIN_CORPORA))
    print("tokenizers: none, " + ", ".join(TOKENIZER_KINDS))
    return 0
