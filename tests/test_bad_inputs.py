"""Every bad input through the real command line gets one clear line: exit status 2, exactly one
stderr line (``lmforge: error: ...``, or ``lmforge <command>: error: ...`` for a bad flag) that
names the thing, no traceback, and no file written or changed.

The fixtures (a corpus, an n-gram folder, a tiny trained gpt run, an untrained bert, broken
copies of them) are made once per module in one folder; every case runs there and compares the
folder's files (bytes and mtimes) before and after.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_TEXT

from lmforge.cli import main
from lmforge.folders import save_model
from lmforge.models.ngram import NgramConfig
from lmforge.ngram import train_ngram
from lmforge.tokenize import train_tokenizer
from lmforge.workflows import build_model

ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0  # root writes into read-only folders
HAS_CUDA = torch.cuda.is_available()

TINY_GPT = ["d_model=16", "n_layers=1", "n_heads=2", "d_ff=32", "max_seq_len=16", "seq_len=16"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """The folder every case runs in, with good and broken inputs."""
    root = tmp_path_factory.mktemp("world")
    text = "\n".join(TINY_TEXT * 20) + "\n"
    (root / "tiny.txt").write_text(text, encoding="utf-8")
    _models(root)
    _broken_weights(root)
    _arpa_files(root)
    _data_files(root)
    _config_files(root)
    _broken_folders(root)
    (root / "readonly").mkdir()
    (root / "readonly").chmod(0o555)
    return root


def _models(root: Path) -> None:
    lines = [line for line in TINY_TEXT if line]
    model, _ = train_ngram(lines, NgramConfig(order=2, discount_fallback=(0.5, 1.0, 1.5)))
    save_model(root / "ng", model)
    model.save_arpa(root / "tiny.arpa")
    sets = [
        arg for setting in [*TINY_GPT, "batch_size=4", "max_steps=2"] for arg in ("--set", setting)
    ]
    code = main(
        ["train", "--model", "gpt", "--corpus", str(root / "tiny.txt"), "--tokenizer", "char"]
        + ["--out", str(root / "gpt"), "--quiet", *sets]
    )
    assert code == 0
    tokenizer = train_tokenizer("wordpiece", TINY_TEXT, vocab_size=60)
    settings = {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "max_seq_len": 32}
    bert, _ = build_model("bert", tokenizer.vocab_size, settings)
    save_model(root / "bert", bert, tokenizer)


def _broken_weights(root: Path) -> None:
    """Copies of gpt and bert whose model.safetensors is truncated, random, has a huge header
    length or is empty; and a copy of the gpt run whose checkpoint weights are truncated."""
    breakers = {
        "trunc": lambda data: data[: len(data) // 2],
        "random": lambda data: bytes(range(256)) * (len(data) // 256),
        "hugehdr": lambda data: (10**15).to_bytes(8, "little") + data[8:],
        "empty": lambda data: b"",
    }
    for base in ("gpt", "bert"):
        for name, breaker in breakers.items():
            folder = root / f"{base}-{name}"
            folder.mkdir()
            for file in ("config.json", "tokenizer.json"):
                shutil.copy(root / base / file, folder / file)
            weights = (root / base / "model.safetensors").read_bytes()
            (folder / "model.safetensors").write_bytes(breaker(weights))
    shutil.copytree(root / "gpt", root / "gpt-damaged", symlinks=True)
    state = root / "gpt-damaged" / "trainer_state" / "model.safetensors"
    state.write_bytes(state.read_bytes()[:100])


def _arpa_files(root: Path) -> None:
    good = (root / "tiny.arpa").read_text()
    first = good.split("\\1-grams:\n")[1].split("\t")[0]  # the first unigram's probability
    variants = {
        "nan": good.replace(first, "nan", 1),
        "inf": good.replace(first, "-inf", 1),
        "header-abc": good.replace("ngram 2=", "ngram 2=abc", 1),
        "header-order": good.replace("ngram 1=", "ngram 3=", 1),
        "truncated": good[: len(good) * 2 // 3],
        "unknown-word": good.replace("the cat", "the zebra", 1),
        "no-bos": good.replace("<s>", "<q>"),
        "twice": good.replace("\tcat\t", "\tdog\t", 1),
        "malformed": good.replace("\tdog\t", "\tdog dog dog\t", 1),
        "empty": "",
    }
    for name, text in variants.items():
        (root / f"{name}.arpa").write_text(text, encoding="utf-8")
    (root / "latin1.arpa").write_bytes(good.encode() + b"caf\xe9\n")


def _data_files(root: Path) -> None:
    (root / "empty.txt").write_text("")
    (root / "latin1.txt").write_bytes(b"the cat\ncaf\xe9\n")
    (root / "pairs-bad.jsonl").write_text('{"source": "a b"}\n', encoding="utf-8")
    (root / "pairs-json.jsonl").write_text('{"source": "a", "target": "b"}\n{oops\n')
    (root / "labels.jsonl").write_text(
        "".join(json.dumps({"text": t, "label": i % 2}) + "\n" for i, t in enumerate(TINY_TEXT))
    )
    (root / "labels-bad.jsonl").write_text('{"text": "a b", "label": 1}\n{"text": 3}\n')
    docs = "\n\n".join("\n".join(TINY_TEXT[i : i + 3]) for i in range(8))
    (root / "docs.txt").write_text(docs + "\n")


def _config_files(root: Path) -> None:
    files = {
        "syntax.json": '{"order": 3,',
        "list.json": "[1, 2]",
        "syntax.toml": "order = ",
        "type.json": '{"order": "3"}',
        "unknown.json": '{"order": 3, "smoothing": "kn"}',
        "steps.toml": "max_steps = 2.5\n",
    }
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    (root / "latin1.json").write_bytes(b'{"lr": "caf\xe9"}')


def _broken_folders(root: Path) -> None:
    (root / "no-config").mkdir()
    (root / "no-config" / "model.safetensors").write_bytes(b"")
    for name, text in {"bad-config": "{not json", "bad-family": '{"family": "gtp"}'}.items():
        shutil.copytree(root / "gpt", root / name, symlinks=True)
        (root / name / "config.json").write_text(text)
    shutil.copytree(root / "gpt", root / "bad-tokenizer", symlinks=True)
    (root / "bad-tokenizer" / "tokenizer.json").write_text('{"kind": "word", "vocab": 3}')


# -- the cases ------------------------------------------------------------------------------------


def case(expected: str, *argv: str, marks=()):
    return pytest.param(expected, argv, marks=marks, id=" ".join(argv)[:80])


READONLY = pytest.mark.skipif(ROOT_USER, reason="root writes into read-only folders")
NO_CUDA = pytest.mark.skipif(HAS_CUDA, reason="cuda is available here")
GPT = ("train", "--model", "gpt", "--corpus", "tiny.txt", "--tokenizer", "char")
EVAL = ("ngram", "eval")
TRAIN_NGRAM = ("ngram", "train", "--text", "tiny.txt", "--order", "2")
EMBED = ("embed", "bert", "--text", "tiny.txt", "--out")
FINETUNE = ("finetune", "bert", "--train", "labels.jsonl", "--out")

CASES = [
    # weights that are truncated, random, with a huge header length, or empty
    case("gpt-trunc/model.safetensors", "eval", "gpt-trunc", "--corpus", "tiny.txt"),
    case("gpt-random/model.safetensors", "eval", "gpt-random", "--corpus", "tiny.txt"),
    case("gpt-hugehdr/model.safetensors", "eval", "gpt-hugehdr", "--corpus", "tiny.txt"),
    case("gpt-empty/model.safetensors", "eval", "gpt-empty", "--corpus", "tiny.txt"),
    case("gpt-trunc/model.safetensors", "generate", "gpt-trunc", "--prompt", "the"),
    case("gpt-hugehdr/model.safetensors", "generate", "gpt-hugehdr"),
    case(
        "bert-trunc/model.safetensors",
        "embed",
        "bert-trunc",
        "--text",
        "tiny.txt",
        "--out",
        "v.npy",
    ),
    case(
        "bert-random/model.safetensors",
        "embed",
        "bert-random",
        "--text",
        "tiny.txt",
        "--out",
        "v.npy",
    ),
    case("gpt-trunc/model.safetensors", "export", "hf", "gpt-trunc", "--out", "hf"),
    case("gpt-empty/model.safetensors", "export", "hf", "gpt-empty", "--out", "hf"),
    case("bert-hugehdr/model.safetensors", "fill-mask", "bert-hugehdr", "a [MASK] b"),
    case("bert-empty/model.safetensors", *FINETUNE[:1], "bert-empty", *FINETUNE[2:], "ft"),
    case("gpt-random/model.safetensors", "vertical", "--task", "spam", "--base", "gpt-random"),
    # (the checkpoint is verified once training starts, after the run's settings are said)
    case("model.safetensors: 100 bytes", *GPT[:5], "--out", "gpt-damaged", "--resume", "--quiet"),
    # ARPA files: non-finite numbers, malformed headers and sections, not an ARPA file
    case("nan.arpa line 6", *EVAL, "nan.arpa", "--text", "tiny.txt"),
    case("inf.arpa line 6", "ngram", "score", "inf.arpa", "the cat"),
    case("header-abc.arpa line 3", *EVAL, "header-abc.arpa", "--text", "tiny.txt"),
    case("header-order.arpa line 2", "eval", "header-order.arpa", "--corpus", "tiny.txt"),
    case("truncated.arpa", *EVAL, "truncated.arpa", "--text", "tiny.txt"),
    case("unknown-word.arpa line", "generate", "unknown-word.arpa"),
    case("no <s> unigram", *EVAL, "no-bos.arpa", "--text", "tiny.txt"),
    case("listed twice", *EVAL, "twice.arpa", "--text", "tiny.txt"),
    case("malformed.arpa line", *EVAL, "malformed.arpa", "--text", "tiny.txt"),
    case("empty.arpa is not an ARPA file", *EVAL, "empty.arpa", "--text", "tiny.txt"),
    case("latin1.arpa is not UTF-8", *EVAL, "latin1.arpa", "--text", "tiny.txt"),
    case("tiny.txt is not an ARPA file", "generate", "tiny.txt"),
    # output paths: a file where a folder is wanted, a folder where a file is, under a file
    case("tiny.txt is a file", *TRAIN_NGRAM, "--out", "tiny.txt"),
    case("ng is a folder", *TRAIN_NGRAM, "--arpa", "ng"),
    case("tiny.txt is a file", *TRAIN_NGRAM, "--out", "tiny.txt/model"),
    case("tiny.txt is a file", *TRAIN_NGRAM, "--arpa", "tiny.txt/m.arpa"),
    case("File name too long", *TRAIN_NGRAM, "--out", "x" * 300),
    case("tiny.txt is a file", *GPT, "--out", "tiny.txt"),
    case("tiny.txt is a file", *GPT, "--out", "tiny.txt/gpt"),
    case("tiny.txt is a file", "pretrain", "--corpus", "docs.txt", "--out", "tiny.txt"),
    case("ng is a folder", *EMBED, "ng"),
    case("tiny.txt is a file", *EMBED, "tiny.txt/v.npy"),
    case("tiny.txt is a file", "export", "hf", "gpt", "--out", "tiny.txt"),
    case("tiny.txt is a file", "import", "hf", "bert", "--out", "tiny.txt"),
    case("tiny.txt is a file", *FINETUNE, "tiny.txt"),
    case("tiny.txt is a file", "vertical", "--task", "spam", "--out", "tiny.txt"),
    case("ng is a folder", "vertical", "--task", "spam", "--json", "ng"),
    case("readonly", *TRAIN_NGRAM, "--out", "readonly/model", marks=READONLY),
    case("readonly", *TRAIN_NGRAM, "--arpa", "readonly/m.arpa", marks=READONLY),
    case("readonly", *GPT, "--out", "readonly/gpt", marks=READONLY),
    case("readonly", *EMBED, "readonly/v.npy", marks=READONLY),
    case("readonly", "export", "hf", "gpt", "--out", "readonly/hf", marks=READONLY),
    # settings: every --set and config-file value against its field's type and range
    case("max_steps must be an integer, got 1.5", *GPT, "--set", "max_steps=1.5"),
    case("max_steps must be an integer, got 'abc'", *GPT, "--set", "max_steps=abc"),
    case("max_steps must be an integer, got True", *GPT, "--set", "max_steps=true"),
    case("lr must be a finite number, got nan", *GPT, "--set", "lr=NaN"),
    case("lr must be a finite number, got 'fast'", *GPT, "--set", "lr=fast"),
    case("d_model must be an integer, got 'abc'", *GPT, "--set", "d_model=abc"),
    case("dropout must be a number in [0, 1)", *GPT, "--set", "dropout=2"),
    case("compile must be true or false", *GPT, "--set", "compile=yes"),
    case("n_layer", *GPT, "--set", "n_layer=2"),
    case("--set needs KEY=VALUE", *GPT, "--set", "max_steps"),
    case("device 'cuda' is not available", *GPT, "--set", "device=cuda", marks=NO_CUDA),
    case("device 'tpu' is not a device name", *GPT, "--set", "device=tpu"),
    case("missing.json: no such config file", *GPT, "--config", "missing.json"),
    case("syntax.json: not valid json", *GPT, "--config", "syntax.json"),
    case("list.json: a config file must hold one object", *GPT, "--config", "list.json"),
    case("syntax.toml: not valid toml", *TRAIN_NGRAM, "--config", "syntax.toml"),
    case("latin1.json is not UTF-8", *GPT, "--config", "latin1.json"),
    case("order must be an integer, got '3'", *TRAIN_NGRAM, "--config", "type.json"),
    case("smoothing", *TRAIN_NGRAM, "--config", "unknown.json"),
    case("max_steps must be an integer, got 2.5", *GPT, "--config", "steps.toml"),
    case(
        "max_steps must be an integer, got 'abc'",
        "vertical",
        "--task",
        "spam",
        "--set",
        "max_steps=abc",
    ),
    case(
        "max_steps must be an integer, got 1.5",
        "vertical",
        "--task",
        "spam",
        "--set",
        "max_steps=1.5",
    ),
    case("pooling", "vertical", "--task", "spam", "--set", "pooling=3"),
    case("lr must be a finite number, got 'abc'", *FINETUNE, "ft", "--set", "lr=abc"),
    # resuming: model settings are the run's own; only a run of the same family resumes
    case("drop --set d_model=48", *GPT[:5], "--out", "gpt", "--resume", "--set", "d_model=48"),
    case(
        "gpt holds a gpt run",
        "train",
        "--model",
        "lstm",
        "--corpus",
        "tiny.txt",
        "--out",
        "gpt",
        "--resume",
    ),
    case("ng holds no training run", *GPT[:5], "--out", "ng", "--resume"),
    case("missing: no such model folder", *GPT[:5], "--out", "missing", "--resume"),
    # generation settings
    case(
        "max_new_tokens must be an integer >= 0, got -1", "generate", "ng", "--max-new-tokens", "-1"
    ),
    case(
        "max_new_tokens must be an integer >= 0, got -1",
        "generate",
        "gpt",
        "--max-new-tokens",
        "-1",
    ),
    case("temperature must be a number >= 0", "generate", "gpt", "--temperature", "-1"),
    case("top_p must be a number in (0, 1]", "generate", "gpt", "--top-p", "0"),
    case("--beam: for encoder-decoder models only", "generate", "gpt", "--beam", "4"),
    # flags
    case(
        "argument --order: invalid int value: 'abc'",
        "ngram",
        "train",
        "--text",
        "tiny.txt",
        "--order",
        "abc",
    ),
    case("lmforge ngram: error: the following arguments are required", "ngram"),
    case("one of the arguments --corpus --pairs is required", "train", "--model", "gpt"),
    case("invalid choice: 'none'", *GPT[:5], "--tokenizer", "none"),
    case("invalid choice: 'frobnicate'", "frobnicate"),
    case("unrecognized arguments: --bogus", "eval", "gpt", "--corpus", "tiny.txt", "--bogus"),
    # data
    case("missing.txt: no such file", "ngram", "train", "--text", "missing.txt"),
    case("empty.txt is empty", "ngram", "train", "--text", "empty.txt"),
    case("latin1.txt is not UTF-8", "ngram", "train", "--text", "latin1.txt"),
    case("pairs-bad.jsonl line 1", "train", "--model", "seq2seq", "--pairs", "pairs-bad.jsonl"),
    case("pairs-json.jsonl line 2", "train", "--model", "seq2seq", "--pairs", "pairs-json.jsonl"),
    case("--pairs", "train", "--model", "seq2seq", "--corpus", "tiny.txt"),
    case(
        "labels-bad.jsonl line 2", "finetune", "bert", "--train", "labels-bad.jsonl", "--out", "ft"
    ),
    case("brown", "eval", "gpt", "--corpus", "browm"),
    case("gtp", "train", "--model", "gtp", "--corpus", "tiny.txt"),
    # folders that hold no model, or the wrong one
    case("missing: no such model", "eval", "missing", "--corpus", "tiny.txt"),
    case("no-config holds no config.json", "generate", "no-config"),
    case("bad-config/config.json: corrupt", "eval", "bad-config", "--corpus", "tiny.txt"),
    case("gtp", "generate", "bad-family"),
    case("bad-tokenizer/tokenizer.json", "generate", "bad-tokenizer"),
    case("not an n-gram model", *EVAL, "gpt", "--text", "tiny.txt"),
    case("needs a bert", "fill-mask", "gpt", "a [MASK] b"),
    case("ng holds a ngram model", "vertical", "--task", "spam", "--base", "ng"),
]


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: a file's sha256 and mtime, a link's target, a folder."""
    entries = {}
    for path in root.rglob("*"):
        info = path.lstat()
        if path.is_symlink():
            entries[str(path)] = ("link", os.readlink(path), info.st_mtime_ns)
        elif path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            entries[str(path)] = (digest, info.st_mtime_ns)
        else:
            entries[str(path)] = ("folder",)
    return entries


@pytest.mark.parametrize("expected, argv", CASES)
def test_bad_input_gets_one_line_and_changes_nothing(expected, argv, world, run_cli, monkeypatch):
    monkeypatch.chdir(world)
    before = snapshot(world)
    code, _, err = run_cli(*argv)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("lmforge") and ": error: " in lines[0], err
    assert expected in lines[0], err
    assert snapshot(world) == before


def test_enough_kinds_of_bad_input_are_tried():
    assert len(CASES) >= 60


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["eval", "gpt-trunc", "--corpus", "tiny.txt"], "gpt-trunc/model.safetensors"),
        (["ngram", "eval", "nan.arpa", "--text", "tiny.txt"], "nan.arpa line 6"),
        (["ngram", "train", "--text", "tiny.txt", "--order", "x"], "invalid int value"),
    ],
)
def test_no_traceback_reaches_the_terminal(argv, expected, world):
    done = subprocess.run(
        [sys.executable, "-m", "lmforge", *argv], cwd=world, capture_output=True, text=True
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and expected in done.stderr


def test_no_command_prints_the_usage_and_fails(run_cli):
    code, out, err = run_cli()
    assert code == 2 and out == "" and err.startswith("usage: lmforge")


def test_help_gives_each_command_its_own_tokenizer_default(run_cli):
    _, train_help, _ = run_cli("train", "--help")
    _, ngram_help, _ = run_cli("ngram", "train", "--help")
    assert "(default: wordpiece for bert; char for tang, couplets; else word)" in " ".join(
        train_help.split()
    )
    assert "{word,char," in train_help and "none" not in train_help.split("--tokenizer")[1][:40]
    assert "(default: none = whitespace words" in " ".join(ngram_help.split())


def test_an_interrupted_run_says_so_on_its_own_line_with_how_to_resume(world, run_cli, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.chdir(world)
    monkeypatch.setattr("lmforge.cli.train.train_job", interrupted)
    code, _, err = run_cli(*GPT, "--out", "interrupted")
    assert code == 130 and err.startswith("\nlmforge: interrupted") and "--resume" in err
    monkeypatch.setattr("lmforge.cli.hub.finetune", interrupted)
    code, _, err = run_cli(*FINETUNE, "interrupted", "--quiet")
    assert code == 130 and err.strip() == "lmforge: interrupted"


def test_unknown_prompt_pieces_are_named_in_a_note(world, run_cli, monkeypatch):
    monkeypatch.chdir(world)
    code, out, err = run_cli("generate", "gpt", "--prompt", "the cat \u2603", "--seed", "0")
    assert code == 0 and out.startswith("the cat")
    assert err.strip() == (
        "lmforge: note: the prompt holds '\u2603', outside the model's vocabulary; the model "
        "reads them as an unknown token"
    )
    code, _, err = run_cli("generate", "ng", "--prompt", "the zebra cat", "--max-new-tokens", "2")
    assert code == 0 and "'zebra'" in err and "'cat'" not in err


def test_every_file_lmforge_writes_gets_the_same_mode(world):
    umask = os.umask(0)
    os.umask(umask)
    files = ["gpt/model.safetensors", "gpt/config.json", "gpt/tokenizer.json", "ng/model.arpa"]
    modes = {name: (world / name).stat().st_mode & 0o777 for name in files}
    assert set(modes.values()) == {0o666 & ~umask}, modes
