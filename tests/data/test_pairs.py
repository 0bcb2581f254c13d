"""Pairs files, the couplet cut, pair batches and BLEU."""

from __future__ import annotations

import json

import pytest

from lmforge.data.pairs import (
    bleu,
    couplet_pairs,
    encode_pairs,
    load_pairs,
    pair_batch,
    read_pairs,
)
from lmforge.errors import DataError
from lmforge.tokenize import BOS_ID, EOS_ID, PAD_ID, train_tokenizer


def write_lines(path, lines: list[str]):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_read_pairs_reads_every_object_and_skips_blank_lines(tmp_path):
    path = write_lines(
        tmp_path / "p.jsonl",
        ['{"source": "a b", "target": "b a"}', "", '{"source": "c", "target": "", "id": 3}'],
    )
    assert read_pairs(path) == [("a b", "b a"), ("c", "")]


def test_a_line_separator_inside_a_string_does_not_end_the_record(tmp_path):
    path = tmp_path / "p.jsonl"
    records = [{"source": "a\u2028b", "target": "c\u2029d"}, {"source": "e", "target": "f"}]
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert "\u2028" in path.read_text(encoding="utf-8")  # written raw, not escaped
    assert read_pairs(path) == [("a\u2028b", "c\u2029d"), ("e", "f")]


def test_a_missing_key_names_the_line_and_the_key(tmp_path):
    path = write_lines(
        tmp_path / "p.jsonl", ['{"source": "a", "target": "b"}', "", '{"source": "c"}']
    )
    with pytest.raises(DataError, match=r"p\.jsonl line 3 has no string field 'target'"):
        read_pairs(path)


def test_bad_json_names_the_line(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", ['{"source": "a", "target": "b"}', "{oops"])
    with pytest.raises(DataError, match="line 2: invalid JSON"):
        read_pairs(path)


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_an_empty_pairs_file_is_one_clear_error(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match="empty.jsonl is empty"):
        read_pairs(path)


def test_a_missing_pairs_file_says_what_to_give(tmp_path):
    with pytest.raises(DataError, match="no such pairs file.*couplets"):
        load_pairs(tmp_path / "nope.jsonl")


def test_couplet_cut_keeps_equal_halves_of_five_or_seven_ideographs():
    poems = [
        "秦川雄帝宅，函谷壯皇居。綺殿千尋起，離宮百雉餘！",  # two 5 + 5 lines
        "何如肆轍跡？萬里賞瑤池。",  # halves split by ？, not ，: no pair
        "浮雲不繫名居易，造化無爲字樂天。",  # 7 + 7
        "童子解吟長恨曲，胡兒能唱琵琶。",  # 7 + 6: unequal
        "□□雄帝宅，函谷壯皇居。",  # a lacuna
        "一二三四，五六七八。",  # 4 + 4: not regulated verse
        "甲乙丙丁戊，己庚辛壬癸，子丑寅卯辰。",  # three halves
    ]
    assert couplet_pairs(poems) == [
        ("秦川雄帝宅", "函谷壯皇居"),
        ("綺殿千尋起", "離宮百雉餘"),
        ("浮雲不繫名居易", "造化無爲字樂天"),
    ]


def test_the_couplets_task_keeps_the_tang_splits():
    corpus = load_pairs("couplets")
    assert corpus.name == "couplets"
    assert len(corpus.train) > 100_000 and len(corpus.valid) > 10_000 and len(corpus.test) > 10_000
    assert corpus.train[0] == ("秦川雄帝宅", "函谷壯皇居")  # the first line of tang's train split
    assert all(len(s) == len(t) and len(s) in (5, 7) for s, t in corpus.test)


def test_a_pairs_file_is_split_by_ratio_and_seed(tmp_path):
    lines = [json.dumps({"source": str(i), "target": str(-i)}) for i in range(20)]
    path = write_lines(tmp_path / "num.jsonl", lines)
    corpus = load_pairs(path, valid_ratio=0.1, test_ratio=0.2, seed=3)
    assert corpus.name == "num"
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (14, 2, 4)
    assert sorted(corpus.train + corpus.valid + corpus.test) == sorted(read_pairs(path))
    assert load_pairs(path, valid_ratio=0.1, test_ratio=0.2, seed=3) == corpus
    small = write_lines(tmp_path / "two.jsonl", lines[:2])
    with pytest.raises(DataError, match="too few"):
        load_pairs(small)


def test_pair_batches_are_padded_with_markers():
    source, target_in, target_out = pair_batch([([5, 6, EOS_ID], [7, 8, 9]), ([5, EOS_ID], [7])])
    assert source.tolist() == [[5, 6, EOS_ID], [5, EOS_ID, PAD_ID]]
    assert target_in.tolist() == [[BOS_ID, 7, 8, 9], [BOS_ID, 7, PAD_ID, PAD_ID]]
    assert target_out.tolist() == [[7, 8, 9, EOS_ID], [7, EOS_ID, PAD_ID, PAD_ID]]


def test_a_pair_longer_than_the_model_is_a_data_error():
    tok = train_tokenizer("char", ["abcdefgh"])
    with pytest.raises(DataError, match="pair 2 has 9 tokens.*max_seq_len=8"):
        encode_pairs(tok, [("ab", "cd"), ("abcdefgh", "a")], max_seq_len=8)


def test_bleu_at_character_level_for_chinese():
    pytest.importorskip("sacrebleu")
    # 1-4-gram precisions 4/5, 3/4, 2/3, 1/2; no brevity penalty: (0.2)^(1/4) = 0.6687.
    assert bleu(["明月照高樓"], ["明月照高臺"]) == pytest.approx(66.87, abs=0.01)
    assert bleu(["明月照高樓"], ["明月照高臺"], tokenize="char") == pytest.approx(66.87, abs=0.01)
    assert bleu(["秦川雄帝宅"], ["秦川雄帝宅"]) == pytest.approx(100.0)
    # BLEU-2: (4/5 * 3/4)^(1/2) = 0.7746.
    assert bleu(["明月照高樓"], ["明月照高臺"], max_order=2) == pytest.approx(77.46, abs=0.01)
