"""Load on ``lmforge serve``: concurrent streaming clients against one served model.

Starts ``lmforge serve FOLDER`` in its own process on a free loopback port, then, for each
concurrency level C (default 1, 4, 16, 64), runs ``--requests`` streaming chat (or completion)
requests with C clients at a time (httpx, one asyncio loop), every request asking for
``--max-tokens`` tokens at ``--temperature`` from prompts drawn in turn from a fixed list. It
reports per level: errors, time to first token (p50 and p99, from sending the request to its
first content chunk), aggregate completion tokens/s (all tokens / wall time of the level), and
the server's resident memory. Then a soak of ``--soak`` requests at 16 clients checks that the
server's memory does not grow: RSS after each quarter.

The ratio that matters: aggregate tokens/s at 16 clients over 1 client (continuous batching:
the 16 decode together; one request at a time would give 1x). The clients run on the same
machine as the server and take their share of its cores. ``--engine`` measures the batching
engine alone, in this process, with no HTTP: the same levels, requests submitted straight to
``lmforge.serve.engine.Engine`` (one torch thread), tokens counted as they are emitted.

    python benchmarks/serve_load.py runs/chat/default [--levels 1,4,16,64] [--requests 64]
        [--max-tokens 64] [--soak 2000] [--mode chat|completions] [--engine] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time

import httpx

PROMPTS = [
    "床前明月光的下一句是什么？",
    "《静夜思》是谁写的？",
    "写一首五言绝句，题目是《秋夜》。",
    "Who wrote the poem that begins 白日依山尽?",
    "对下联：春风吹柳绿",
    "《登鹳雀楼》一共几句？",
    "写一首七言绝句，题目是《江上》。",
    "What is the title of the poem that begins 春眠不觉晓?",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def one_request(http: httpx.AsyncClient, model: str, k: int, args) -> tuple[float, int]:
    """(seconds to the first content, tokens written) of one streaming request."""
    prompt = PROMPTS[k % len(PROMPTS)]
    if args.mode == "chat":
        url, body = "/v1/chat/completions", {"messages": [{"role": "user", "content": prompt}]}
    else:
        url, body = "/v1/completions", {"prompt": prompt}
    body.update(
        model=model,
        stream=True,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        seed=k,
        stream_options={"include_usage": True},
    )
    started = time.perf_counter()
    first, tokens = None, 0
    async with http.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {(await response.aread())[:200]!r}")
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
            for choice in event.get("choices", []):
                text = choice.get("text") or (choice.get("delta") or {}).get("content")
                if text and first is None:
                    first = time.perf_counter() - started
    return (first if first is not None else time.perf_counter() - started), tokens


async def level(base: str, model: str, clients: int, requests: int, args, pid: int) -> dict:
    """``requests`` requests, ``clients`` at a time."""
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    queue = list(range(requests))
    ttfts, tokens, errors = [], 0, 0
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as http:

        async def client() -> None:
            nonlocal tokens, errors
            while queue:
                k = queue.pop()
                try:
                    first, n = await one_request(http, model, k, args)
                    ttfts.append(first)
                    tokens += n
                except Exception as err:  # counted, and the first few shown
                    errors += 1
                    if errors <= 3:
                        print(f"  error: {err}", file=sys.stderr)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.perf_counter() - started
    ttfts.sort()
    return {
        "clients": clients,
        "requests": requests,
        "errors": errors,
        "ttft_p50_ms": 1000 * statistics.median(ttfts) if ttfts else None,
        "ttft_p99_ms": 1000 * ttfts[min(len(ttfts) - 1, int(0.99 * len(ttfts)))] if ttfts else None,
        "tokens": tokens,
        "seconds": wall,
        "tokens_per_second": tokens / wall,
        "rss_mb": rss_mb(pid),
    }


def engine_levels(folder: str, levels: list[int], requests: int, max_tokens: int) -> None:
    """Aggregate tokens/s of the engine alone: ``requests`` at each level, ``clients`` at once."""
    import threading

    import torch

    from lmforge.folders import load_model
    from lmforge.models import family_of
    from lmforge.nn.sampling import Sampler
    from lmforge.serve.engine import Engine, GenRequest, decoder_for

    torch.set_num_threads(1)
    model, tokenizer, _ = load_model(folder)
    engine = Engine(decoder_for(model, family_of(model), max(levels)), max(levels), 4096)
    prompt = [tokenizer.bos_id, *tokenizer.encode(PROMPTS[0], markers=False)]
    one = None
    for clients in levels:
        engine.max_batch = clients
        done, count = threading.Semaphore(0), [0]

        def emit(event, count=count, done=done):
            if event.finish:
                done.release()
            else:
                count[0] += 1

        started = time.perf_counter()
        for k in range(max(requests, clients)):
            engine.submit(GenRequest(prompt, max_tokens, Sampler(0.8, seed=k), frozenset(), emit))
        for _ in range(max(requests, clients)):
            done.acquire()
        rate = count[0] / (time.perf_counter() - started)
        one = one or rate
        print(f"engine, {clients:>3} at once: {rate:.0f} tokens/s ({rate / one:.1f}x one)")
    engine.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="the model folder to serve")
    parser.add_argument("--levels", default="1,4,16,64")
    parser.add_argument("--requests", type=int, default=64, help="requests per level")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument(
        "--soak", type=int, default=2000, help="requests of the memory soak (0: none)"
    )
    parser.add_argument("--mode", choices=("chat", "completions"), default="chat")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--engine", action="store_true", help="the engine alone, no HTTP")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    if args.engine:
        levels = [int(c) for c in args.levels.split(",")]
        engine_levels(args.folder, levels, args.requests, args.max_tokens)
        return 0
    port = free_port()
    model = os.path.basename(os.path.normpath(args.folder))
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lmforge",
            "serve",
            args.folder,
            "--port",
            str(port),
            "--max-batch",
            str(args.max_batch),
            "--max-waiting",
            "1024",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start: {server.stderr.read()}")
            time.sleep(0.2)
        print(
            f"serving {args.folder} (pid {server.pid}), {args.mode}, {args.max_tokens} tokens a "
            f"request, temperature {args.temperature}; server RSS {rss_mb(server.pid):.0f} MB"
        )
        rows = []
        asyncio.run(level(base, model, 4, 8, args, server.pid))  # warm-up
        for clients in (int(c) for c in args.levels.split(",")):
            row = asyncio.run(
                level(base, model, clients, max(args.requests, clients), args, server.pid)
            )
            rows.append(row)
            print(
                f"{clients:>3} clients: {row['errors']} errors, TTFT p50 "
                f"{row['ttft_p50_ms']:.0f} ms p99 {row['ttft_p99_ms']:.0f} ms, "
                f"{row['tokens_per_second']:.0f} tokens/s ({row['tokens']} in "
                f"{row['seconds']:.1f} s), RSS {row['rss_mb']:.0f} MB",
                flush=True,
            )
        one = next((r for r in rows if r["clients"] == 1), None)
        sixteen = next((r for r in rows if r["clients"] == 16), None)
        if one and sixteen:
            print(
                "16 clients / 1 client: "
                f"{sixteen['tokens_per_second'] / one['tokens_per_second']:.1f}x "
                "aggregate tokens/s"
            )
        soak = []
        if args.soak:
            quarter = args.soak // 4
            for q in range(4):
                row = asyncio.run(level(base, model, 16, quarter, args, server.pid))
                soak.append(row)
                print(
                    f"soak {(q + 1) * quarter:>5} requests: {row['errors']} errors, RSS "
                    f"{row['rss_mb']:.0f} MB, {row['tokens_per_second']:.0f} tokens/s",
                    flush=True,
                )
            growth = soak[-1]["rss_mb"] - soak[0]["rss_mb"]
            print(
                f"soak: {sum(r['errors'] for r in soak)} errors over {4 * quarter} requests; RSS "
                f"{soak[0]['rss_mb']:.0f} -> {soak[-1]['rss_mb']:.0f} MB ({growth:+.0f} MB "
                "after the first quarter)"
            )
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"folder": args.folder, "levels": rows, "soak": soak}, f, indent=2)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
