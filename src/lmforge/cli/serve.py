"""``lmforge serve``: the OpenAI API, lmforge's extras and a web page over model folders
(``lmforge.serve``; FastAPI + uvicorn, the ``serve`` extra)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path

from lmforge.errors import ConfigError, DataError


def add_commands(commands) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve model folders over the OpenAI API, with a chat page and the catalogue",
        description="Serve model folders over the OpenAI API (/v1/models, /v1/completions, "
        "/v1/chat/completions, /v1/embeddings) with lmforge's extras (/v1/fill-mask, "
        "/tokenize, /detokenize, /v1/catalogue, /health) and a web page at /.",
    )
    serve.add_argument(
        "folders",
        nargs="*",
        metavar="FOLDER",
        help="model folders or .arpa files; NAME=FOLDER serves one under another id",
    )
    serve.add_argument("--models-dir", help="also serve every model folder directly under DIR")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on the API")
    serve.add_argument("--api-key-file", help="read the API key from this file's first line")
    serve.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name the Host header may carry (besides localhost and IP "
        "addresses); repeatable",
    )
    serve.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let browsers call the API from ORIGIN (default: CORS off)",
    )
    serve.add_argument(
        "--max-body",
        type=int,
        default=1 << 20,
        help="largest request body in bytes (default 1 MiB)",
    )
    serve.add_argument(
        "--max-prompt-tokens",
        type=int,
        default=4096,
        help="longest prompt in tokens (default 4096)",
    )
    serve.add_argument(
        "--max-tokens",
        type=int,
        default=1024,
        help="most tokens a request may ask to write (default 1024)",
    )
    serve.add_argument("--max-n", type=int, default=8, help="most choices a request (default 8)")
    serve.add_argument(
        "--max-batch", type=int, default=32, help="requests a model decodes at once (default 32)"
    )
    serve.add_argument(
        "--max-waiting",
        type=int,
        default=256,
        help="requests that may wait per model; more get 503 (default 256)",
    )
    serve.add_argument(
        "--threads",
        type=int,
        default=max(1, (os.cpu_count() or 2) // 2),
        help="torch threads for decoding (default: half the cores; the rest serve HTTP)",
    )
    serve.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from lmforge.serve.app import ServeSettings, create_app
        from lmforge.serve.models import ModelSet, parse_model_args
    except ImportError as err:
        raise ConfigError(
            f"lmforge serve needs FastAPI and uvicorn ({err.name} is missing): "
            'pip install -e ".[serve]"'
        ) from None
    for name in (
        "threads",
        "max_body",
        "max_prompt_tokens",
        "max_tokens",
        "max_n",
        "max_batch",
        "max_waiting",
    ):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1")
    key = args.api_key
    if args.api_key_file:
        try:
            key = Path(args.api_key_file).read_text(encoding="utf-8").splitlines()[0].strip()
        except (OSError, UnicodeDecodeError, IndexError) as err:
            raise DataError(
                f"--api-key-file {args.api_key_file}: cannot read a key ({err})"
            ) from None
    if key is not None and len(key) < 8:
        raise ConfigError("the API key must have at least 8 characters")
    if not _loopback(args.host):
        print(
            f"lmforge: warning: binding {args.host}: other machines can reach this server"
            f"{'' if key else ' and it has no API key (--api-key)'}",
            file=sys.stderr,
        )
    pairs = parse_model_args(args.folders, args.models_dir)
    import torch

    torch.set_num_threads(args.threads)
    for name, path in pairs:
        print(f"loading {name} from {path}", file=sys.stderr)
    models = ModelSet(pairs, args.max_batch, args.max_waiting)
    settings = ServeSettings(
        api_key=key,
        allow_hosts=tuple(args.allow_host),
        cors_origins=tuple(args.cors_origin),
        max_body=args.max_body,
        max_prompt_tokens=args.max_prompt_tokens,
        max_tokens=args.max_tokens,
        max_n=args.max_n,
    )
    app = create_app(models, settings)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"serving {', '.join(models.models)} at http://{shown}:{args.port}/v1 "
        f"(the page: http://{shown}:{args.port}/); Ctrl-C stops",
        file=sys.stderr,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
