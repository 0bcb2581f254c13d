"""A real ``lmforge serve`` on a free loopback port, over tiny model folders of every kind."""

from __future__ import annotations

import random
import socket
import threading
import time

import pytest
import torch

pytest.importorskip("fastapi", reason="the serve extra is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="the serve extra is not installed")

from lmforge.chat import chat_tune  # noqa: E402
from lmforge.chat.tune import chat_settings  # noqa: E402
from lmforge.folders import save_model  # noqa: E402
from lmforge.models.ngram import NgramConfig, NgramLM  # noqa: E402
from lmforge.serve.app import ServeSettings, create_app  # noqa: E402
from lmforge.serve.models import ModelSet  # noqa: E402
from lmforge.tokenize import tokenize_lines, train_tokenizer  # noqa: E402
from lmforge.workflows import build_model  # noqa: E402

TEXT = [
    "the cat sat on the mat",
    "the dog sat on the log",
    "a cat and a dog",
    "the cat saw the dog on the mat",
    "a dog sat",
    "the mat was on the log",
    "a cat saw a dog and the dog saw a cat",
] * 3
GPT = {"d_model": 32, "n_layers": 2, "n_heads": 2, "d_ff": 64, "max_seq_len": 64}


def greetings(n=40, seed=0):
    """Dialogues where the assistant answers a colour question in one word."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        colour = rng.choice(["red", "blue"])
        out.append(
            [
                {"role": "user", "content": f"item{i % 8} colour ?"},
                {"role": "assistant", "content": colour},
            ]
        )
    return out


@pytest.fixture(scope="session")
def folders(tmp_path_factory):
    """{id: path} of an n-gram ARPA file, a gpt, a chat-tuned gpt and a bert folder."""
    root = tmp_path_factory.mktemp("served")
    torch.manual_seed(0)  # the same random weights every run: the tests read what they write
    ngram = NgramLM.fit(tokenize_lines(TEXT, None), NgramConfig(3, discount_fallback=(0.5, 1, 1.5)))
    ngram.save_arpa(root / "tri.arpa")
    chars = train_tokenizer("char", TEXT)
    gpt, _ = build_model("gpt", chars.vocab_size, GPT)
    save_model(root / "gpt-char", gpt, chars, corpus="tiny")
    dialogues = greetings()
    words = train_tokenizer("word", [m["content"] for d in dialogues for m in d], rare_threshold=0)
    base, _ = build_model("gpt", words.vocab_size, GPT)
    cfg, tuning = chat_settings({"max_steps": 120, "batch_size": 8, "lr": 3e-3, "warmup_steps": 10})
    chat_tune(base, words, dialogues, cfg, tuning, root / "chat", progress=False)
    bert, _ = build_model(
        "bert", words.vocab_size, {"d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 32}
    )
    save_model(root / "bert", bert, words)
    return {
        "tri": root / "tri.arpa",
        "gpt-char": root / "gpt-char",
        "chat": root / "chat",
        "bert": root / "bert",
    }


class Running:
    """A uvicorn server on a thread; ``url`` is its base."""

    def __init__(self, app) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


def serve(folders: dict, **settings) -> Running:
    models = ModelSet(
        list(folders.items()),
        max_batch=settings.pop("max_batch", 8),
        max_waiting=settings.pop("max_waiting", 64),
    )
    running = Running(create_app(models, ServeSettings(**settings)))
    running.models = models
    return running


@pytest.fixture(scope="session")
def start_server():
    """``serve(folders, **settings)``: a server of its own, to stop when done."""
    return serve


@pytest.fixture(scope="session")
def server(folders):
    running = serve(folders)
    yield running
    running.stop()
