"""Tests for lmforge.data.corpus: built-in corpora, file formats, splits and input errors."""

import gzip
import json
import lzma
from pathlib import Path

import pytest

import lmforge.data
from lmforge.data import BUILTIN_CORPORA, Corpus, load_corpus, read_texts
from lmforge.data.corpus import read_jsonl
from lmforge.errors import ConfigError, DataError

SHARED_DATA = Path(__file__).parents[2].parent / "shared" / "data"


def stream_items(lines: list[str]) -> int:
    """Words + markers, as in the Brown setup: a paragraph line is its words + 1, a text end 1."""
    return sum(len(line.split()) + 1 if line else 1 for line in lines)


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


@pytest.fixture(scope="module")
def brown() -> Corpus:
    return load_corpus("brown")


@pytest.fixture(scope="module")
def tang() -> Corpus:
    return load_corpus("tang")


# --- public API ---------------------------------------------------------------------------------


def test_all_lists_exactly_the_public_names():
    public = {name for name in vars(lmforge.data) if not name.startswith("_")}
    public = {n for n in public if type(getattr(lmforge.data, n)).__name__ != "module"}
    assert set(lmforge.data.__all__) == public
    assert BUILTIN_CORPORA == ("brown", "tang")


def test_split_returns_named_split_and_rejects_unknown_name():
    corpus = Corpus("c", ["a"], ["b"], ["c"])
    assert [corpus.split(name) for name in ("train", "valid", "test")] == [["a"], ["b"], ["c"]]
    with pytest.raises(ConfigError, match="train, valid, test"):
        corpus.split("dev")


def test_repr_shows_counts_not_text():
    assert repr(Corpus("c", ["a", "b"], [], ["c"])) == (
        "Corpus(name='c', train=2 items, valid=0 items, test=1 items)"
    )


# --- built-in corpora ---------------------------------------------------------------------------


def test_builtin_brown_splits_have_paper_sizes(brown):
    # Bengio et al. (2003): 800,000 train and 200,000 valid words+markers; this edition's test
    # has 179,489 (shared data README).
    assert brown.name == "brown"
    assert [stream_items(brown.split(s)) for s in ("train", "valid", "test")] == [
        800_000,
        200_000,
        179_489,
    ]
    assert sum(len(line.split()) for line in brown.train) == 788_094
    assert [len(brown.train), len(brown.valid), len(brown.test)] == [11_906, 3_068, 3_323]
    assert "" in brown.train  # text ends are empty lines, kept as items


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"shared data not found at {SHARED_DATA}")
@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_builtin_brown_equals_shared_files(brown, split):
    expected = (SHARED_DATA / "brown" / f"{split}.txt").read_text(encoding="utf-8")
    assert brown.split(split) == expected.split("\n")[:-1]


def test_builtin_tang_has_poems_in_chinese(tang):
    assert tang.name == "tang"
    assert [len(tang.train), len(tang.valid), len(tang.test)] == [30_000, 2_880, 2_880]
    assert tang.train[0].startswith("秦川雄帝宅，函谷壯皇居。")
    assert all("\t" not in poem for poem in tang.valid)
    han = sum(1 for char in "".join(tang.test) if "\u4e00" <= char <= "\u9fff")
    assert han > 100_000


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"shared data not found at {SHARED_DATA}")
def test_builtin_tang_is_body_column_of_shared_tsv(tang):
    rows = (SHARED_DATA / "tang" / "valid.tsv").read_text(encoding="utf-8").split("\n")[:-1]
    assert tang.valid == [row.split("\t")[2] for row in rows]


def test_builtin_ignores_a_local_path_of_the_same_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "brown", "not the brown corpus\n")
    assert len(load_corpus("brown").valid) == 3_068


def test_builtin_rejects_split_files(tmp_path):
    with pytest.raises(ConfigError, match="own valid and test"):
        load_corpus("brown", valid=write(tmp_path / "v.txt", "x\n"))


# --- reading text files -------------------------------------------------------------------------


def test_txt_keeps_empty_lines(tmp_path):
    path = write(tmp_path / "c.txt", "a b\n\nc\n\n")
    assert read_texts(path) == ["a b", "", "c", ""]


def test_txt_crlf_line_ends_are_stripped(tmp_path):
    path = write(tmp_path / "c.txt", "a b\r\n\r\nc\r\n")
    assert read_texts(path) == ["a b", "", "c"]


def test_txt_without_final_newline_keeps_last_line(tmp_path):
    assert read_texts(write(tmp_path / "c.txt", "a\nb")) == ["a", "b"]


def test_txt_only_newline_ends_a_line(tmp_path):
    # Form feed and U+2028 are text, not line ends (str.splitlines would split there).
    assert read_texts(write(tmp_path / "c.txt", "a\x0cb\u2028c\n")) == ["a\x0cb\u2028c"]


def test_txt_utf8_bom_is_dropped(tmp_path):
    assert read_texts(write(tmp_path / "c.txt", b"\xef\xbb\xbfcaf\xc3\xa9\n")) == ["café"]


def test_compressed_txt_reads_like_plain(tmp_path):
    text = b"a\n\nb\n"
    write(tmp_path / "c.txt.xz", lzma.compress(text))
    write(tmp_path / "c.txt.gz", gzip.compress(text))
    assert read_texts(tmp_path / "c.txt.xz") == read_texts(tmp_path / "c.txt.gz") == ["a", "", "b"]


def test_folder_concatenates_txt_files_sorted_by_name(tmp_path):
    write(tmp_path / "b.txt", "b1\nb2\n")
    write(tmp_path / "a.txt", "a1\n\n")
    write(tmp_path / "notes.md", "ignored\n")
    assert read_texts(tmp_path) == ["a1", "", "b1", "b2"]


def test_jsonl_reads_text_field_and_skips_blank_lines(tmp_path):
    lines = [json.dumps({"text": "a b", "id": 1}), "", json.dumps({"text": "", "id": 2})]
    path = write(tmp_path / "c.jsonl", "\n".join(lines) + "\n")
    assert read_texts(path) == ["a b", ""]


def test_jsonl_custom_text_field(tmp_path):
    path = write(tmp_path / "c.jsonl", '{"body": "x"}\n{"body": "y"}\n')
    assert read_texts(path, text_field="body") == ["x", "y"]


# --- user corpora and splits --------------------------------------------------------------------


def numbered_file(tmp_path: Path, n: int) -> Path:
    return write(tmp_path / "numbers.txt", "".join(f"line {i}\n" for i in range(n)))


def test_separate_valid_and_test_files_are_used_whole(tmp_path):
    train = write(tmp_path / "train.txt", "t1\nt2\n")
    valid = write(tmp_path / "valid.txt", "v1\n")
    test = write(tmp_path / "test.jsonl", '{"text": "x1"}\n')
    corpus = load_corpus(train, valid=valid, test=test)
    assert corpus == Corpus("train", ["t1", "t2"], ["v1"], ["x1"])


def test_only_test_file_given_draws_valid_from_source(tmp_path):
    source = numbered_file(tmp_path, 100)
    corpus = load_corpus(source, test=write(tmp_path / "t.txt", "x\n"), valid_ratio=0.1)
    assert corpus.test == ["x"]
    assert (len(corpus.train), len(corpus.valid)) == (90, 10)


def test_ratio_split_is_disjoint_complete_and_ordered(tmp_path):
    source = numbered_file(tmp_path, 1000)
    corpus = load_corpus(source, valid_ratio=0.1, test_ratio=0.05, seed=3)
    assert corpus.name == "numbers"
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (850, 100, 50)
    everything = corpus.train + corpus.valid + corpus.test
    assert sorted(everything) == sorted(read_texts(source))
    for split in (corpus.train, corpus.valid, corpus.test):
        numbers = [int(line.split()[1]) for line in split]
        assert numbers == sorted(numbers)


def test_ratio_split_depends_only_on_seed(tmp_path):
    source = numbered_file(tmp_path, 1000)
    first = load_corpus(source, seed=7)
    assert load_corpus(source, seed=7) == first
    assert load_corpus(source, seed=8).test != first.test


def test_zero_ratio_gives_empty_split(tmp_path):
    corpus = load_corpus(write(tmp_path / "c.txt", "a\nb\n"), valid_ratio=0, test_ratio=0)
    assert corpus == Corpus("c", ["a", "b"], [], [])


def test_corpus_name_is_stem_of_compressed_file_and_folder(tmp_path):
    write(tmp_path / "wiki.txt.xz", lzma.compress(b"a\n"))
    assert load_corpus(tmp_path / "wiki.txt.xz", valid_ratio=0, test_ratio=0).name == "wiki"
    (tmp_path / "books").mkdir()
    write(tmp_path / "books" / "a.txt", "a\n")
    assert load_corpus(tmp_path / "books", valid_ratio=0, test_ratio=0).name == "books"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"valid_ratio": 1.5}, "valid_ratio"),
        ({"test_ratio": -0.1}, "test_ratio"),
        ({"valid_ratio": 0.5, "test_ratio": 0.5}, "valid_ratio \\+ test_ratio"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_split_settings_raise_config_error_naming_field(tmp_path, kwargs, field):
    with pytest.raises(ConfigError, match=field):
        load_corpus(numbered_file(tmp_path, 10), **kwargs)


def test_too_small_corpus_for_ratio_names_file_and_fix(tmp_path):
    with pytest.raises(
        DataError,
        match=r"tiny\.txt has 3 lines, too few for a non-empty test split.*--valid/--test",
    ):
        load_corpus(write(tmp_path / "tiny.txt", "a\nb\nc\n"))


# --- input errors -------------------------------------------------------------------------------


def test_missing_path_lists_inputs_and_builtins(tmp_path):
    with pytest.raises(DataError) as info:
        load_corpus(tmp_path / "corpus.txt")
    message = str(info.value)
    assert "corpus.txt: no such file or folder" in message
    assert ".jsonl" in message and "brown, tang" in message


def test_unknown_name_lists_builtins_and_suggests_close_one():
    with pytest.raises(DataError, match=r"brwon.*did you mean 'brown'.*brown, tang"):
        load_corpus("brwon")


@pytest.mark.parametrize("content", [b"", b"  \n\n\t\n"])
def test_empty_file_names_file(tmp_path, content):
    with pytest.raises(DataError, match=r"corpus\.txt is empty; give a file with some text"):
        read_texts(write(tmp_path / "corpus.txt", content))


def test_folder_without_txt_names_folder(tmp_path):
    write(tmp_path / "a.md", "text\n")
    with pytest.raises(DataError, match=f"{tmp_path.name} has no .txt files"):
        read_texts(tmp_path)


def test_folder_of_empty_txt_files_is_empty(tmp_path):
    write(tmp_path / "a.txt", "\n")
    with pytest.raises(DataError, match="is empty"):
        read_texts(tmp_path)


def test_not_utf8_names_file_offset_byte_and_fix(tmp_path):
    path = write(tmp_path / "latin.txt", b"ok\ncaf\xe9\n")
    with pytest.raises(DataError) as info:
        read_texts(path)
    message = str(info.value)
    assert "latin.txt is not UTF-8" in message
    assert "byte 0xe9 at byte offset 6" in message and "line 2" in message
    assert "iconv -f latin1 -t utf-8" in message


def test_not_utf8_offset_counts_the_bom(tmp_path):
    with pytest.raises(DataError, match="byte 0xff at byte offset 4"):
        read_texts(write(tmp_path / "c.txt", b"\xef\xbb\xbfa\xff\n"))


def test_corrupt_xz_names_file(tmp_path):
    with pytest.raises(DataError, match=r"c\.txt\.xz is not a valid \.xz file"):
        read_texts(write(tmp_path / "c.txt.xz", b"not xz at all"))


def test_jsonl_invalid_json_names_file_and_line(tmp_path):
    path = write(tmp_path / "c.jsonl", '{"text": "a"}\n\n{"text": \n')
    with pytest.raises(DataError, match=r"c\.jsonl line 3: invalid JSON"):
        read_texts(path)


@pytest.mark.parametrize("line", ['{"body": "a"}', '{"text": 3}'])
def test_jsonl_missing_text_field_names_file_line_and_field(tmp_path, line):
    path = write(tmp_path / "c.jsonl", '{"text": "a"}\n' + line + "\n")
    with pytest.raises(DataError, match=r"c\.jsonl line 2 has no string field 'text'"):
        read_texts(path)


def test_a_jsonl_line_that_is_not_an_object_names_file_and_line(tmp_path):
    path = write(tmp_path / "c.jsonl", '{"text": "a"}\n["text"]\n')
    with pytest.raises(DataError, match=r"c\.jsonl line 2: expected a JSON object"):
        read_texts(path)


def test_read_jsonl_numbers_records_by_line_and_splits_only_at_newlines(tmp_path):
    text = '{"a": 1}\r\n\n  \n{"a": "x\u2028y"}\n'  # U+2028 raw inside a string
    path = tmp_path / "r.jsonl.xz"
    path.write_bytes(lzma.compress(text.encode("utf-8")))
    assert read_jsonl(path) == [(1, {"a": 1}), (4, {"a": "x\u2028y"})]


@pytest.mark.parametrize("content", ["", "\n \n"])
def test_read_jsonl_of_no_record_is_empty(tmp_path, content):
    with pytest.raises(DataError, match=r"e\.jsonl is empty; give one JSON object per line"):
        read_jsonl(write(tmp_path / "e.jsonl", content))


def test_read_jsonl_of_a_missing_file_names_it(tmp_path):
    with pytest.raises(DataError, match=r"nope\.jsonl: no such file"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_missing_valid_file_names_it(tmp_path):
    source = numbered_file(tmp_path, 1)  # too small to split: the missing file is found first
    with pytest.raises(DataError, match=r"dev\.txt: no such file or folder"):
        load_corpus(source, valid=tmp_path / "dev.txt")
