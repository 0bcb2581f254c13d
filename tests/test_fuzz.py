"""Fuzzing the readers of what users hand lmforge: random and mutated ARPA files, corpora, JSON
Lines, tokenizer files and config values are either read or refused with an ``LMForgeError``,
never another exception. Deterministic (``derandomize``) and bounded, a few seconds in all."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest
from conftest import TINY_TEXT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmforge.config import build_config, parse_sets, read_config_file
from lmforge.data import load_corpus, read_texts
from lmforge.data.corpus import read_jsonl
from lmforge.data.labelled import read_examples
from lmforge.data.pairs import read_pairs
from lmforge.errors import LMForgeError
from lmforge.models import FAMILIES
from lmforge.models.ngram import NgramConfig, NgramLM
from lmforge.tokenize import load_tokenizer, train_tokenizer
from lmforge.train.config import TrainConfig
from lmforge.vertical.config import VerticalConfig

FUZZ = settings(
    derandomize=True,
    database=None,
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# Pieces that readers trip on: bad numbers, markers in the wrong place, separators, nesting.
NASTY = st.sampled_from(
    [
        "nan",
        "-inf",
        "1e999",
        "abc",
        "",
        "\t",
        " ",
        "\u2028",
        "\r",
        "\x00",
        "<s>",
        "</s>",
        "\\data\\",
        "\\1-grams:",
        "\\2-grams:",
        "\\end\\",
        "ngram 2=abc",
        "ngram 1=999999999999",
        "-1\tthe cat\t0",
        "[" * 5000,
        '{"text": ',
        "\udcff",
    ]
)
# A mutation: (what, where, with what); where is taken modulo the length of the input.
MUTATIONS = st.lists(
    st.tuples(
        st.sampled_from(["delete", "duplicate", "insert", "replace", "field", "truncate"]),
        st.integers(min_value=0, max_value=10**6),
        NASTY,
    ),
    min_size=1,
    max_size=4,
)


def mutate(text: str, mutations) -> str:
    """``text`` with line-level ``mutations`` applied in turn."""
    lines = text.split("\n")
    for what, where, piece in mutations:
        i = where % len(lines)
        if what == "delete" and len(lines) > 1:
            del lines[i]
        elif what == "duplicate":
            lines.insert(i, lines[i])
        elif what == "insert":
            lines.insert(i, piece)
        elif what == "replace":
            lines[i] = piece
        elif what == "field":  # one whitespace field of the line
            fields = lines[i].split("\t")
            fields[where % len(fields)] = piece
            lines[i] = "\t".join(fields)
        else:
            lines = lines[: i + 1]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    if isinstance(content, str):
        content = content.encode("utf-8", "surrogatepass")
    path.write_bytes(content)
    return path


def refused_cleanly(read, *args) -> None:
    """Call ``read``; a result or an LMForgeError pass, any other exception fails the test."""
    try:
        read(*args)
    except LMForgeError as err:
        assert str(err)  # a message that says something


# -- ARPA files -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def arpa_text(folder) -> str:
    lines = [line for line in TINY_TEXT if line]
    config = NgramConfig(order=3, discount_fallback=(0.5, 1.0, 1.5))
    model = NgramLM.fit([line.split() for line in lines], config)
    model.save_arpa(folder / "tiny.arpa")
    return (folder / "tiny.arpa").read_text()


@FUZZ
@given(mutations=MUTATIONS)
def test_mutated_arpa_files_are_read_or_refused(folder, arpa_text, mutations):
    refused_cleanly(NgramLM.load_arpa, write(folder, "m.arpa", mutate(arpa_text, mutations)))


@FUZZ
@given(data=st.binary(max_size=300) | st.text(max_size=300))
def test_random_arpa_files_are_refused(folder, data):
    refused_cleanly(NgramLM.load_arpa, write(folder, "r.arpa", data))


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6))
def test_arpa_files_with_flipped_bytes_are_read_or_refused(folder, arpa_text, flips):
    data = bytearray(arpa_text.encode())
    for where, byte in flips:
        data[where % len(data)] = byte
    refused_cleanly(NgramLM.load_arpa, write(folder, "f.arpa", bytes(data)))


# -- corpora and JSON Lines -----------------------------------------------------------------------


@FUZZ
@given(
    data=st.binary(max_size=200) | st.text(max_size=200),
    suffix=st.sampled_from([".txt", ".txt.xz", ".txt.gz", ".jsonl", ".jsonl.gz"]),
)
def test_random_corpora_are_read_or_refused(folder, data, suffix):
    path = write(folder, f"corpus{suffix}", data)
    refused_cleanly(read_texts, path)
    refused_cleanly(load_corpus, str(path))


JSONL_LINE = (
    JSON_VALUES.map(json.dumps)
    | st.fixed_dictionaries({"text": JSON_VALUES | st.text(max_size=10), "label": JSON_VALUES}).map(
        json.dumps
    )
    | st.fixed_dictionaries({"tokens": JSON_VALUES, "labels": JSON_VALUES}).map(json.dumps)
    | st.fixed_dictionaries({"source": JSON_VALUES, "target": st.text(max_size=10)}).map(json.dumps)
    | NASTY
)


@FUZZ
@given(lines=st.lists(JSONL_LINE, max_size=6))
def test_random_jsonl_files_are_read_or_refused(folder, lines):
    path = write(folder, "records.jsonl", "\n".join(lines))
    refused_cleanly(read_jsonl, path)
    refused_cleanly(read_pairs, path)
    refused_cleanly(read_examples, path, "sequence")
    refused_cleanly(read_examples, path, "token")


# -- tokenizer files ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer_files(folder) -> dict[str, dict]:
    files = {}
    for kind in ("word", "char", "bpe", "wordpiece"):
        tokenizer = train_tokenizer(kind, TINY_TEXT, vocab_size=60, rare_threshold=1)
        files[kind] = tokenizer.to_dict()
    return files


@FUZZ
@given(
    kind=st.sampled_from(["word", "char", "bpe", "wordpiece"]),
    path=st.lists(st.integers(0, 10**6), min_size=1, max_size=4),
    value=JSON_VALUES,
    remove=st.booleans(),
)
def test_mutated_tokenizer_files_are_read_or_refused(
    folder, tokenizer_files, kind, path, value, remove
):
    document = json.loads(json.dumps(tokenizer_files[kind]))
    parent, key = _place(document, path)
    if remove:
        del parent[key]
    else:
        parent[key] = value
    refused_cleanly(load_tokenizer, write(folder, "tokenizer.json", json.dumps(document)))


@FUZZ
@given(data=st.binary(max_size=200) | JSON_VALUES.map(json.dumps))
def test_random_tokenizer_files_are_refused(folder, data):
    refused_cleanly(load_tokenizer, write(folder, "random.json", data))


def _place(document: dict, path: list[int]):
    """(container, key or index) of a place in ``document``: ``path`` picks a key or an index
    (modulo what is there) at each level, down from the top."""
    node, place = document, (document, "kind")
    for step in path:
        keys = sorted(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        place = (node, keys[step % len(keys)])
        node = node[place[1]]
        if not isinstance(node, dict | list):
            break
    return place


# -- config files, --set and build_config ----------------------------------------------------------

CONFIG_CLASSES = [
    NgramConfig,
    TrainConfig,
    VerticalConfig,
    *(family.config_class for family in FAMILIES.values()),
]


@FUZZ
@given(
    cls=st.sampled_from(CONFIG_CLASSES),
    values=st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=3),
    known=st.data(),
)
def test_random_config_values_are_built_or_refused(cls, values, known):
    names = sorted(f for f in cls.__dataclass_fields__ if not f.startswith("_"))
    chosen = known.draw(st.dictionaries(st.sampled_from(names), JSON_VALUES, max_size=4))
    refused_cleanly(build_config, cls, chosen, {})
    refused_cleanly(build_config, cls, values, {})


@FUZZ
@given(pairs=st.lists(st.text(max_size=20), max_size=4), cls=st.sampled_from(CONFIG_CLASSES))
def test_random_set_flags_are_parsed_or_refused(pairs, cls):
    try:
        values = parse_sets(pairs)
    except LMForgeError:
        return
    names = set(cls.__dataclass_fields__)
    refused_cleanly(build_config, cls, {k: v for k, v in values.items() if k in names}, {})


@FUZZ
@given(
    data=st.binary(max_size=200) | JSON_VALUES.map(json.dumps) | st.text(max_size=200),
    suffix=st.sampled_from([".json", ".toml"]),
)
def test_random_config_files_are_read_or_refused(folder, data, suffix):
    refused_cleanly(read_config_file, write(folder, f"settings{suffix}", data))


def test_floats_in_config_values_must_be_finite():
    for bad in (math.nan, math.inf):
        with pytest.raises(LMForgeError, match="lr must be a finite number"):
            build_config(TrainConfig, {"lr": bad}, {})
