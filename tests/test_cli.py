"""The command line end to end: the n-gram contract, Chinese corpora, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import TINY_TEXT, shared_path

from lmforge.cli import COMMANDS, build_parser
from lmforge.data import load_corpus


@pytest.fixture
def tiny_file(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text("\n".join(TINY_TEXT * 3) + "\n", encoding="utf-8")
    return path


def test_train_eval_score_contract(run_cli, tiny_file, tmp_path):
    arpa = tmp_path / "tiny.arpa"
    code, out, err = run_cli(
        "ngram",
        "train",
        "--text",
        tiny_file,
        "--order",
        "3",
        "--arpa",
        arpa,
        "--discount-fallback",
    )
    assert code == 0, err
    assert arpa.read_text().startswith("\\data\\\nngram 1=")
    code, out, _ = run_cli("ngram", "eval", arpa, "--text", tiny_file, "--json")
    result = json.loads(out)
    assert {"perplexity", "perplexity_excluding_oov", "oov", "tokens"} <= result.keys()
    assert result["tokens"] == sum(len(line.split()) + 1 for line in TINY_TEXT) * 3
    assert result["oov"] == 0 and 1 < result["perplexity"] < 20
    code, out, _ = run_cli("ngram", "score", arpa, "the cat sat on the zebra")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[-1].startswith("Total: -") and lines[-2].startswith("</s>")
    assert lines[-3].startswith("zebra") and "(OOV)" in lines[-3]


def test_train_writes_model_folder_and_reports_splits(run_cli, tmp_path):
    corpus = tmp_path / "lines.txt"
    corpus.write_text("\n".join(TINY_TEXT * 10), encoding="utf-8")
    out_dir = tmp_path / "model"
    code, out, err = run_cli(
        "ngram",
        "train",
        "--corpus",
        corpus,
        "--order",
        "2",
        "--out",
        out_dir,
        "--tokenizer",
        "word",
        "--rare-threshold",
        "0",
        "--discount-fallback",
        "--quiet",
    )
    assert code == 0, err
    assert "valid perplexity" in out and "test perplexity" in out
    meta = json.loads((out_dir / "config.json").read_text())
    assert meta["family"] == "ngram" and meta["config"]["order"] == 2
    assert meta["tokenizer"] == "word" and (out_dir / "tokenizer.json").exists()
    code, out, _ = run_cli("ngram", "eval", out_dir, "--text", corpus, "--json")
    assert json.loads(out)["tokens"] == sum(len(line.split()) + 1 for line in TINY_TEXT) * 10


@pytest.mark.parametrize("tokenizer", ["char", "jieba"])
def test_tang_trains_and_evaluates_in_chinese(tokenizer, run_cli, tmp_path):
    tang = load_corpus("tang")
    train = tmp_path / "train.txt"
    test = tmp_path / "test.txt"
    train.write_text("\n".join(tang.train[:3000]), encoding="utf-8")
    test.write_text("\n".join(tang.test[:300]), encoding="utf-8")
    code, out, err = run_cli(
        "ngram",
        "train",
        "--text",
        train,
        "--order",
        "3",
        "--tokenizer",
        tokenizer,
        "--rare-threshold",
        "1",
        "--out",
        tmp_path / tokenizer,
        "--quiet",
    )
    assert code == 0, err
    code, out, err = run_cli("ngram", "eval", tmp_path / tokenizer, "--text", test, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["tokens"] > 300 * 20  # poems of tens of characters or words
    assert 10 < result["perplexity"] < 5000
    code, out, _ = run_cli("ngram", "score", tmp_path / tokenizer, "春眠不覺曉，處處聞啼鳥。")
    assert code == 0 and "Total: -" in out


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("missing.txt", None, "missing.txt: no such file"),
        ("empty.txt", b"", "empty.txt is empty"),
        ("latin.txt", b"caf\xe9 au lait\n", "latin.txt is not UTF-8"),
        ("bad.jsonl", b'{"text": "a b"}\n{"body": "c"}\n', "bad.jsonl line 2"),
    ],
)
def test_bad_input_gets_one_clear_line(name, content, expected, run_cli, tmp_path):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    code, out, err = run_cli("ngram", "train", "--text", path, "--arpa", tmp_path / "x.arpa")
    assert code == 2
    assert expected in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "x.arpa").exists()


def test_not_utf8_names_byte_offset(run_cli, tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes(b"hello world\ncaf\xe9\n")
    code, _, err = run_cli("ngram", "train", "--text", path)
    assert code == 2 and "offset 15" in err


def test_tiny_text_names_order_and_fallback(run_cli, tmp_path):
    path = tmp_path / "two.txt"
    path.write_text("a b\n")
    code, _, err = run_cli("ngram", "train", "--text", path, "--arpa", tmp_path / "x.arpa")
    assert code == 2 and "1-grams" in err and "--discount-fallback" in err


def test_corrupt_model_and_unknown_corpus(run_cli, tmp_path):
    (tmp_path / "bad.arpa").write_text("\\data\\\nngram 1=5\n\n\\1-grams:\n-1\t<s>\n")
    code, _, err = run_cli("ngram", "eval", tmp_path / "bad.arpa", "--text", tmp_path / "bad.arpa")
    assert code == 2 and "bad.arpa" in err
    code, _, err = run_cli("ngram", "train", "--corpus", "browm")
    assert code == 2 and "brown" in err


def test_unknown_config_key_lists_valid_ones(run_cli, tmp_path, tiny_file):
    config = tmp_path / "c.json"
    config.write_text('{"order": 3, "smoothing": "kn"}')
    code, _, err = run_cli("ngram", "train", "--text", tiny_file, "--config", config)
    assert code == 2 and "smoothing" in err and "order" in err


def test_python_dash_m_runs(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "lmforge", "list"], capture_output=True, text=True, check=True
    )
    assert "ngram" in done.stdout and "brown" in done.stdout


def test_version_and_ngram_commands_do_not_import_torch(tiny_file, tmp_path):
    # issue 17: each command in a fresh interpreter, as the installed script runs it
    arpa, folder = tmp_path / "tiny.arpa", tmp_path / "tiny"
    train = ["ngram", "train", "--text", tiny_file, "--order", "3", "--discount-fallback"]
    commands = [
        ["--version"],
        [*train, "--arpa", arpa, "--quiet"],
        [*train, "--tokenizer", "word", "--rare-threshold", "0", "--out", folder, "--quiet"],
        ["ngram", "eval", arpa, "--text", tiny_file, "--json"],
        ["ngram", "eval", folder, "--text", tiny_file],
        ["ngram", "score", folder, "the cat sat on the mat"],
        ["ngram", "binary", arpa, tmp_path / "tiny.lmb"],
        ["ngram", "eval", tmp_path / "tiny.lmb", "--text", tiny_file, "--json"],
    ]
    script = (
        "import sys\nfrom lmforge.cli import main\n"
        "try:\n    code = main(sys.argv[1:])\n"
        "finally:\n    print('torch' in sys.modules)\n"
        "sys.exit(code)\n"
    )
    for args in commands:
        done = subprocess.run(
            [sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[-1] == "False", args


def test_commands_lists_what_each_command_module_adds():
    # main imports only the module of the command it runs, found through COMMANDS
    for module, names in COMMANDS.items():
        (subcommands,) = [a for a in build_parser((module,))._actions if a.choices]
        assert set(subcommands.choices) == {"list", *names}, module


def test_brown_bengio_setting_matches_kenlm(run_cli, tmp_path):
    """KenLM on brown with train-frequency <= 3 words as one symbol: test 188.486 (BASELINES)."""
    baselines = shared_path("..", "BASELINES.md").read_text()
    expected = float(baselines.split("order 5 | test ")[1].split(",")[0])
    code, out, err = run_cli(
        "ngram",
        "train",
        "--corpus",
        "brown",
        "--order",
        "5",
        "--tokenizer",
        "word",
        "--out",
        tmp_path / "bengio",
        "--quiet",
    )
    assert code == 0, err
    test_ppl = json.loads((tmp_path / "bengio" / "config.json").read_text())["test_ppl"]
    assert test_ppl == pytest.approx(expected, rel=1e-4)


def test_neural_train_eval_generate(run_cli, tmp_path):
    corpus = tmp_path / "lines.txt"
    corpus.write_text("\n".join(TINY_TEXT * 20), encoding="utf-8")
    out = tmp_path / "gpt"
    code, stdout, err = run_cli(
        "train",
        "--model",
        "gpt",
        "--corpus",
        corpus,
        "--tokenizer",
        "char",
        "--out",
        out,
        "--set",
        "max_steps=30",
        "--set",
        "batch_size=4",
        "--set",
        "seq_len=32",
        "--set",
        "max_seq_len=32",
        "--set",
        "d_model=32",
        "--set",
        "n_layers=1",
        "--set",
        "eval_interval=15",
        "--quiet",
    )
    assert code == 0, err
    assert "test perplexity" in stdout and (out / "model.safetensors").exists()
    assert (out / "metrics.jsonl").read_text().count("valid_ppl") == 2
    code, _, err = run_cli(
        "train",
        "--model",
        "gpt",
        "--corpus",
        corpus,
        "--out",
        out,
        "--resume",
        "--set",
        "max_steps=40",
        "--quiet",
    )
    assert code == 0, err
    assert '"step": 40' in (out / "metrics.jsonl").read_text()
    code, stdout, err = run_cli("eval", out, "--corpus", corpus, "--json")
    result = json.loads(stdout)
    assert code == 0 and result["family"] == "gpt" and 1 < result["test_ppl"] < 40
    code, stdout, _ = run_cli(
        "generate", out, "--prompt", "the cat", "--max-new-tokens", "20", "--temperature", "0"
    )
    assert code == 0 and stdout.startswith("the cat") and len(stdout.strip()) > len("the cat")
    code, _, err = run_cli("generate", out, "--beam", "4", "--no-repeat-ngram", "1")
    assert code != 0 and "--beam, --no-repeat-ngram: for encoder-decoder models only" in err
    code, _, err = run_cli("train", "--model", "gpt", "--corpus", corpus, "--set", "n_layer=2")
    assert code == 2 and "n_layer" in err and "n_layers" in err
    code, _, err = run_cli("train", "--model", "gtp", "--corpus", corpus)
    assert code == 2 and "gpt" in err


def test_ladder_json_contract(run_cli, tmp_path):
    corpus = tmp_path / "lines.txt"
    corpus.write_text("\n".join(TINY_TEXT * 30), encoding="utf-8")
    report = tmp_path / "ladder.json"
    code, stdout, err = run_cli(
        "ladder",
        "--corpus",
        corpus,
        "--models",
        "ngram,nnlm,lstm,gpt",
        "--max-steps",
        "20",
        "--out",
        tmp_path / "ladder",
        "--json",
        report,
        "--quiet",
    )
    assert code == 0, err
    result = json.loads(report.read_text())
    assert result["corpus"] == "lines" and result["tokenizer"] == "char"
    assert [r["model"] for r in result["rungs"]] == ["ngram", "nnlm", "lstm", "gpt"]
    for rung in result["rungs"]:
        assert {
            "params",
            "train_seconds",
            "tokens_per_second",
            "valid_ppl",
            "test_ppl",
        } <= rung.keys()
        assert rung["params"] > 0 and 1 < rung["test_ppl"] < 100
    assert "mix_test_ppl" in result["rungs"][1]
    assert (tmp_path / "ladder" / "ladder.png").stat().st_size > 10_000
    assert "ngram" in stdout and "test ppl" in stdout
