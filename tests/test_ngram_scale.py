"""N-gram estimation out of core (``--memory``) and on Dask (``--cluster``): the same ARPA file as
the in-memory ``NgramLM.fit``, a clean temporary folder, and one-line errors."""

from __future__ import annotations

import re
import sys

import pytest
from conftest import shared_path

from lmforge.errors import ConfigError, DataError
from lmforge.models.ngram import KENLM_FALLBACK, NgramConfig, NgramLM
from lmforge.ngram_outofcore import fit_arpa_out_of_core, parse_memory
from lmforge.tokenize import split_words

BUDGET = 1 << 20  # the smallest budget: ~5,200 tokens a chunk, so small.train.txt spills 10 runs


def small_train() -> list[list[str]]:
    text = shared_path("kenlm-reference", "small.train.txt").read_text(encoding="utf-8")
    return split_words(text.removesuffix("\n").split("\n"))


def in_memory_arpa(sentences, config, path) -> str:
    NgramLM.fit(sentences, config).save_arpa(path)
    return path.read_text(encoding="utf-8")


def arpa_entries(text: str) -> dict[str, tuple[float, float]]:
    """Every n-gram of an ARPA text -> (log10 prob, log10 backoff)."""
    entries = {}
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) > 1 and not line.startswith("\\"):
            entries[fields[1]] = (float(fields[0]), float(fields[2]) if len(fields) > 2 else 0.0)
    return entries


@pytest.mark.parametrize("order", [3, 5])
def test_out_of_core_arpa_is_the_in_memory_arpa_byte_for_byte(order, tmp_path):
    sentences = small_train()
    config = NgramConfig(order=order)
    expected = in_memory_arpa(sentences, config, tmp_path / "memory.arpa")
    stats = fit_arpa_out_of_core(iter(sentences), config, tmp_path / "disk.arpa", BUDGET)
    assert stats.chunks > 1 and stats.runs == stats.chunks * (order - 1)  # one run a chunk
    assert stats.peak_temp_bytes > 0
    assert (tmp_path / "disk.arpa").read_text(encoding="utf-8") == expected


def test_out_of_core_arpa_equals_lmplz_output(tmp_path):
    reference = shared_path("kenlm-reference", "small.o5.arpa").read_text(encoding="utf-8")
    fit_arpa_out_of_core(iter(small_train()), NgramConfig(order=5), tmp_path / "o5.arpa", BUDGET)
    ours, theirs = (
        arpa_entries((tmp_path / "o5.arpa").read_text(encoding="utf-8")),
        arpa_entries(reference),
    )
    assert ours.keys() == theirs.keys()
    assert max(abs(ours[g][i] - theirs[g][i]) for g in theirs for i in (0, 1)) <= 1e-4


def test_tiny_text_with_fallback_discounts_matches(tiny_lines, tmp_path):
    sentences = split_words(tiny_lines)
    config = NgramConfig(order=4, discount_fallback=KENLM_FALLBACK)
    expected = in_memory_arpa(sentences, config, tmp_path / "memory.arpa")
    fit_arpa_out_of_core(sentences, config, tmp_path / "disk.arpa", BUDGET)
    assert (tmp_path / "disk.arpa").read_text(encoding="utf-8") == expected


def test_the_temporary_folder_is_removed_on_success_and_on_errors(tiny_lines, tmp_path):
    spill = tmp_path / "spill"
    spill.mkdir()
    config = NgramConfig(order=3, discount_fallback=KENLM_FALLBACK)
    fit_arpa_out_of_core(split_words(tiny_lines), config, tmp_path / "a.arpa", BUDGET, spill)
    assert list(spill.iterdir()) == []

    def failing(error):
        yield from split_words(tiny_lines)
        raise error

    for error in (RuntimeError("disk on fire"), KeyboardInterrupt()):
        with pytest.raises(type(error)):
            fit_arpa_out_of_core(failing(error), config, tmp_path / "b.arpa", BUDGET, spill)
        assert list(spill.iterdir()) == []
    with pytest.raises(DataError, match="contains <s> or </s>"):
        fit_arpa_out_of_core([["a", "<s>"]], config, tmp_path / "c.arpa", BUDGET, spill)
    assert list(spill.iterdir()) == [] and not (tmp_path / "c.arpa").exists()


def test_memory_sizes_parse_with_suffixes():
    assert parse_memory("64M") == 64 * 2**20
    assert parse_memory("1G") == 2**30
    assert parse_memory("512k") == 512 * 1024
    assert parse_memory("1.5G") == 3 * 2**29
    with pytest.raises(ConfigError, match="'64X' is not a size"):
        parse_memory("64X")


def test_a_sentence_longer_than_a_chunk_asks_for_more_memory(tmp_path):
    with pytest.raises(ConfigError, match=r"too small: a sentence of 7,000 tokens.*--memory 2M"):
        fit_arpa_out_of_core([["w"] * 7000], NgramConfig(order=2), tmp_path / "x.arpa", BUDGET)


def test_cli_memory_writes_the_same_arpa_as_the_cli_in_memory(tmp_path, run_cli):
    text = shared_path("kenlm-reference", "small.train.txt")
    code, _, _ = run_cli(
        "ngram",
        "train",
        "--text",
        text,
        "--order",
        "3",
        "--arpa",
        tmp_path / "memory.arpa",
        "--quiet",
    )
    assert code == 0
    code, out, err = run_cli(
        "ngram",
        "train",
        "--text",
        text,
        "--order",
        "3",
        "--arpa",
        tmp_path / "disk.arpa",
        "--memory",
        "1M",
        "--temp-dir",
        tmp_path,
    )
    assert code == 0 and "temporary disk peak" in out and "sorted runs" in err
    assert (tmp_path / "disk.arpa").read_bytes() == (tmp_path / "memory.arpa").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk.arpa", "memory.arpa"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--memory", "64X"], r"ConfigError: --memory '64X' is not a size; .* 64M or 1G"),
        (["--memory", "1K"], r"ConfigError: --memory 1,024 bytes is too small .* at least 1M"),
        (["--memory", "1G", "--cluster", "local:2"], r"give --memory or --cluster, not both"),
        (["--cluster", "local:zero"], r"give local:N with N >= 1"),
        (["--cluster", "somewhere"], r"neither local:N nor a scheduler address"),
    ],
)
def test_cli_refuses_bad_scale_flags_in_one_line(flags, message, tiny_lines, tmp_path, run_cli):
    text = tmp_path / "tiny.txt"
    text.write_text("\n".join(tiny_lines) + "\n", encoding="utf-8")
    code, _, err = run_cli("ngram", "train", "--text", text, "--arpa", tmp_path / "x.arpa", *flags)
    assert code == 2 and "Traceback" not in err
    assert re.search(message, err.strip().splitlines()[-1].removeprefix("lmforge: error: "))


def test_cli_memory_needs_an_arpa_target(tiny_lines, tmp_path, run_cli):
    text = tmp_path / "tiny.txt"
    text.write_text("\n".join(tiny_lines), encoding="utf-8")
    code, _, err = run_cli("ngram", "train", "--text", text, "--memory", "1G")
    assert code == 2 and "--memory writes an ARPA file only: give --arpa FILE" in err


def test_cluster_without_dask_names_the_extra(monkeypatch, tiny_lines, tmp_path, run_cli):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # import fails as if absent
    text = tmp_path / "tiny.txt"
    text.write_text("\n".join(tiny_lines), encoding="utf-8")
    code, _, err = run_cli(
        "ngram", "train", "--text", text, "--arpa", tmp_path / "x.arpa", "--cluster", "local:2"
    )
    assert code == 2 and "pip install lmforge[dask]" in err


def test_an_unreachable_scheduler_is_named(monkeypatch, tiny_lines, tmp_path, run_cli):
    pytest.importorskip("distributed", reason="dask[distributed] is not installed")
    from lmforge import ngram_dask

    monkeypatch.setattr(ngram_dask, "CONNECT_TIMEOUT_S", 1)
    text = tmp_path / "tiny.txt"
    text.write_text("\n".join(tiny_lines), encoding="utf-8")
    code, _, err = run_cli(
        "ngram",
        "train",
        "--text",
        text,
        "--arpa",
        tmp_path / "x.arpa",
        "--cluster",
        "tcp://127.0.0.1:9",
    )
    assert code == 2 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in err


def test_dask_arpa_is_the_in_memory_arpa(tmp_path):
    pytest.importorskip("distributed", reason="dask[distributed] is not installed")
    from lmforge.ngram_dask import fit_arpa_dask

    sentences = small_train()
    config = NgramConfig(order=5)
    expected = in_memory_arpa(sentences, config, tmp_path / "memory.arpa")
    stats = fit_arpa_dask(
        iter(sentences),
        config,
        tmp_path / "dask.arpa",
        "local:2",
        partitions=3,
        shard_tokens=10_000,
    )
    assert stats.chunks > 1 and stats.ngram_counts == NgramLM.fit(sentences, config).ngram_counts
    assert (tmp_path / "dask.arpa").read_text(encoding="utf-8") == expected


def test_cli_cluster_writes_the_same_arpa_as_the_cli_in_memory(tiny_lines, tmp_path, run_cli):
    pytest.importorskip("distributed", reason="dask[distributed] is not installed")
    text = tmp_path / "tiny.txt"
    text.write_text("\n".join(tiny_lines), encoding="utf-8")
    flags = ("--order", "4", "--discount-fallback", "--quiet")
    assert run_cli("ngram", "train", "--text", text, "--arpa", tmp_path / "m.arpa", *flags)[0] == 0
    code, out, _ = run_cli(
        "ngram",
        "train",
        "--text",
        text,
        "--arpa",
        tmp_path / "d.arpa",
        "--cluster",
        "local:2",
        *flags,
    )
    assert code == 0 and "trained order 4" in out
    assert (tmp_path / "d.arpa").read_bytes() == (tmp_path / "m.arpa").read_bytes()
