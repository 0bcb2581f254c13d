"""``lmforge catalogue``: the model catalogue (``lmforge.serve.catalogue``), industrial large
models and the generations lmforge implements, as a table or as JSON. Imports no torch."""

from __future__ import annotations

import argparse
import json

from lmforge.serve.catalogue import catalogue_rows, format_catalogue


def add_commands(commands) -> None:
    listing = commands.add_parser(
        "catalogue",
        help="the model catalogue: industrial large models and the generations lmforge "
        "implements, each with its size, date and source",
    )
    listing.add_argument(
        "--json",
        action="store_true",
        help='print {"rows": [...]}: every fact, source, note and lmforge command',
    )
    listing.set_defaults(run=run_catalogue)


def run_catalogue(args: argparse.Namespace) -> int:
    rows = catalogue_rows()
    if args.json:
        print(json.dumps({"rows": rows}, ensure_ascii=False, indent=2))
    else:
        print(format_catalogue(rows))
    return 0
