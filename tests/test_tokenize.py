"""Tests of lmforge.tokenize: the sentence rule, every kind's vocabulary, files and errors."""

import json
import pickle
import sys
from pathlib import Path

import pytest

from lmforge.errors import CheckpointError, ConfigError, DataError
from lmforge.tokenize import (
    BOS,
    BOS_ID,
    EOS,
    EOS_ID,
    RARE,
    SPECIAL_TOKENS,
    TOKENIZER_KINDS,
    UNK,
    WHITESPACE,
    load_tokenizer,
    sentence_tokens,
    train_tokenizer,
)

SHARED = Path(__file__).parents[1].parent / "shared"
BROWN_TRAIN = SHARED / "data" / "brown" / "train.txt"

# English and Chinese, with a tab, a no-break space and an ideographic space mixed in.
MIXED = [
    "The cat sat on the mat .",
    "The dog sat on the log .",
    "A cat and a dog\tmet on the mat .",
    "我爱北京天安门。",
    "北京的猫坐在垫子上\u3000很开心。",
    "Tokens\u00a0never hold whitespace , 中文 and English .",
    "",
]
HF_VOCAB_SIZE = 300  # bytebpe needs 5 specials + 256 bytes


@pytest.fixture(scope="module")
def trained():
    """One tokenizer of every kind, trained on MIXED repeated (so word counts pass k=3)."""
    lines = MIXED * 4
    return {
        kind: train_tokenizer(kind, lines, vocab_size=HF_VOCAB_SIZE) for kind in TOKENIZER_KINDS
    }


def test_sentence_tokens_wraps_in_markers():
    assert sentence_tokens(["a", "b"]) == [BOS, "a", "b", EOS]
    assert sentence_tokens([]) == [BOS, EOS]


def test_whitespace_constant_is_every_isspace_character():
    computed = "".join(chr(i) for i in range(sys.maxunicode + 1) if chr(i).isspace())
    assert WHITESPACE == computed


# ---------------------------------------------------------------------------------- word


@pytest.mark.skipif(not BROWN_TRAIN.exists(), reason=f"Brown corpus not found at {BROWN_TRAIN}")
def test_brown_word_vocabulary_has_14024_words_plus_rare():
    lines = BROWN_TRAIN.read_text(encoding="utf-8").split("\n")
    tok = train_tokenizer("word", lines, rare_threshold=3)
    # Bengio et al. 2003 merge words of frequency <= 3: 14,024 kept + <rare> = 14,025 (+ markers).
    assert tok.vocab[len(SPECIAL_TOKENS)] == RARE
    assert tok.vocab_size - len(SPECIAL_TOKENS) == 14_025
    assert tok.vocab[len(SPECIAL_TOKENS) + 1] == "the"  # the most frequent word


def test_word_rare_words_and_unseen_words_become_rare():
    # counts: a=4, b=4, c=3 (== k), d=1 -> kept: a, b; c and d merge into <rare>
    lines = ["a b c d", "a b c", "a b c", "a b"]
    tok = train_tokenizer("word", lines, rare_threshold=3)
    assert tok.vocab == (*SPECIAL_TOKENS, RARE, "a", "b")
    assert tok.tokens("a c d zebra b") == ["a", RARE, RARE, RARE, "b"]
    assert tok.encode("a zebra") == [BOS_ID, 6, 5, EOS_ID]


def test_word_threshold_zero_keeps_every_word_and_unseen_is_unk():
    tok = train_tokenizer("word", ["a b c d", "a b"], rare_threshold=0)
    assert tok.vocab == (*SPECIAL_TOKENS, "a", "b", "c", "d")
    assert RARE not in tok.vocab
    assert tok.tokens("d zebra") == ["d", UNK]


def test_word_vocabulary_is_ordered_by_count_then_first_appearance():
    # counts: y=2, x=2, z=2, w=3 -> w first, then y, x, z in order of first appearance
    tok = train_tokenizer("word", ["y x w", "z w y", "x z w"], rare_threshold=1)
    assert tok.vocab[len(SPECIAL_TOKENS) + 1 :] == ("w", "y", "x", "z")


def test_word_keeps_case_and_punctuation():
    tok = train_tokenizer("word", ["The the THE , ``"], rare_threshold=0)
    assert tok.tokens("The the THE , ``") == ["The", "the", "THE", ",", "``"]


# ---------------------------------------------------------------------------------- every kind


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_special_tokens_take_ids_0_to_4(trained, kind):
    tok = trained[kind]
    assert tok.vocab[: len(SPECIAL_TOKENS)] == SPECIAL_TOKENS
    for i, token in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(token) == i
        assert tok.id_to_token(i) == token


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_encode_adds_markers_only_when_asked(trained, kind):
    tok = trained[kind]
    bare = tok.encode(MIXED[0], markers=False)
    assert bare and BOS_ID not in bare and EOS_ID not in bare
    assert tok.encode(MIXED[0]) == [BOS_ID, *bare, EOS_ID]
    assert [tok.token_to_id(t) for t in tok.tokens(MIXED[0])] == bare


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_batch_paths_equal_one_line_paths(trained, kind):
    tok = trained[kind]
    assert tok.tokens_batch(MIXED) == [tok.tokens(line) for line in MIXED]
    assert tok.encode_batch(MIXED) == [tok.encode(line) for line in MIXED]
    assert tok.encode_batch(MIXED, markers=False) == [tok.encode(s, markers=False) for s in MIXED]


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_no_token_string_is_empty_or_holds_whitespace(trained, kind):
    tok = trained[kind]
    sample = [*MIXED, "unseen\x0bwords\u2028and 字符 \x1c here"]
    for tokens in tok.tokens_batch(sample):
        assert all(t and not any(ch.isspace() for ch in t) for t in tokens), tokens
    assert all(t and not any(ch.isspace() for ch in t) for t in tok.vocab)


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_save_then_load_gives_identical_ids(trained, kind, tmp_path):
    tok = trained[kind]
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    loaded = load_tokenizer(path)
    assert loaded.kind == kind
    assert loaded.vocab == tok.vocab
    sample = [*MIXED, "unseen words 没见过"]
    assert loaded.encode_batch(sample) == tok.encode_batch(sample)
    assert json.loads(path.read_text(encoding="utf-8"))["kind"] == kind
    assert [p.name for p in tmp_path.iterdir()] == ["tokenizer.json"]  # no temp file left


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_tokenizer_survives_pickling(trained, kind):
    tok = trained[kind]
    tok.tokens(MIXED[3])  # jieba's segmenter is loaded now and must not be pickled
    clone = pickle.loads(pickle.dumps(tok))
    assert clone.encode_batch(MIXED) == tok.encode_batch(MIXED)


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_decode_skips_special_tokens(trained, kind):
    tok = trained[kind]
    ids = tok.encode("cat")
    assert tok.decode([0, *ids, 0]) == tok.decode(ids[1:-1])


# ---------------------------------------------------------------------------------- per kind


def test_char_decode_inverts_encode_for_english_and_chinese(trained):
    tok = trained["char"]
    for line in ["The cat sat on the mat .", "A dog  met the cat", "我爱北京天安门。"]:
        assert tok.decode(tok.encode(line)) == line
    assert tok.tokens("a cat") == ["a", "\u2581", "c", "a", "t"]


def test_char_keeps_every_character_and_unseen_is_unk():
    tok = train_tokenizer("char", ["ab", "x"], rare_threshold=3)
    assert tok.tokens("abxz") == ["a", "b", "x", UNK]


@pytest.mark.parametrize("kind", ["bpe", "bytebpe"])
def test_bpe_decode_inverts_encode(trained, kind):
    tok = trained[kind]
    for line in ["The cat sat on the mat .", "A dog  met the log .", "我爱北京天安门。"]:
        assert tok.decode(tok.encode(line)) == line


def test_bytebpe_decodes_text_it_never_saw(trained):
    tok = trained["bytebpe"]
    line = "Zebras über 骆驼 !"
    assert UNK not in tok.tokens(line)
    assert tok.decode(tok.encode(line)) == line


def test_wordpiece_marks_continuations(trained):
    tok = trained["wordpiece"]
    assert any(t.startswith("##") for t in tok.vocab)


def test_jieba_segments_chinese_into_words():
    tok = train_tokenizer("jieba", ["我爱北京天安门"], rare_threshold=0)
    tokens = tok.tokens("我爱北京天安门")
    assert 1 < len(tokens) < 7
    assert "".join(tokens) == "我爱北京天安门"


def test_jieba_drops_whitespace_and_applies_rare_threshold():
    lines = ["我 爱 北京", "我爱北京", "我爱北京", "北京 天安门 北京"]
    tok = train_tokenizer("jieba", lines, rare_threshold=3)
    assert tok.tokens("北京  天安门") == ["北京", RARE]


def test_jieba_loads_quietly(capfd):
    train_tokenizer("jieba", ["我爱北京天安门"])
    assert "prefix dict" not in capfd.readouterr().err


# ---------------------------------------------------------------------------------- errors


def test_unknown_kind_is_a_config_error_listing_kinds():
    with pytest.raises(ConfigError, match="wordpeice") as info:
        train_tokenizer("wordpeice", MIXED)
    assert all(kind in str(info.value) for kind in TOKENIZER_KINDS)


@pytest.mark.parametrize("kind", ["bpe", "bytebpe", "wordpiece"])
def test_too_small_vocab_size_is_a_config_error(kind):
    with pytest.raises(ConfigError, match="vocab_size=10"):
        train_tokenizer(kind, MIXED, vocab_size=10)


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
@pytest.mark.parametrize("lines", [[], ["", "   ", "\t"]])
def test_training_on_no_text_is_a_data_error(kind, lines):
    with pytest.raises(DataError, match=f"no text to train the {kind} tokenizer on"):
        train_tokenizer(kind, lines)


def test_negative_rare_threshold_is_a_config_error():
    with pytest.raises(ConfigError, match="rare_threshold"):
        train_tokenizer("word", MIXED, rare_threshold=-1)


def test_out_of_range_id_and_unknown_token_are_data_errors(trained):
    tok = trained["word"]
    with pytest.raises(DataError, match="out of range"):
        tok.decode([tok.vocab_size])
    with pytest.raises(DataError, match="not in the vocabulary"):
        tok.token_to_id("zebra")


def test_loading_a_missing_file_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "nowhere.json"
    with pytest.raises(CheckpointError, match="nowhere.json.*does not exist"):
        load_tokenizer(path)


def test_loading_corrupt_json_is_a_checkpoint_error_naming_the_file(trained, tmp_path):
    path = tmp_path / "tokenizer.json"
    trained["bpe"].save(path)
    path.write_text(path.read_text(encoding="utf-8")[:100], encoding="utf-8")  # truncated
    with pytest.raises(CheckpointError, match="tokenizer.json is not valid JSON"):
        load_tokenizer(path)


@pytest.mark.parametrize(
    "document, problem",
    [
        ({"kind": "sentencepiece", "format_version": 1}, "not one of"),
        ({"kind": "word", "format_version": 99}, "format_version"),
        ({"kind": "word", "format_version": 1, "rare_threshold": 0, "vocab": ["a"]}, "start with"),
        ({"kind": "bpe", "format_version": 1, "hf": {"model": 3}}, "valid bpe tokenizer"),
        ([1, 2], "JSON object"),
    ],
)
def test_loading_a_wrong_document_is_a_checkpoint_error(tmp_path, document, problem):
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(CheckpointError, match=problem) as info:
        load_tokenizer(path)
    assert str(path) in str(info.value)


WORDPIECE_IN_A_PROCESS = """
import json, sys
from lmforge.tokenize import train_tokenizer
words = ("the cat sat on a mat and the dog ran to the red house while quick brown foxes jumped "
         "over lazy dogs").split()
lines = [" ".join(words[(i * 7 + j * 3) % len(words)] + ("s" if (i + j) % 3 == 0 else "")
                  for j in range(3 + i % 9)) for i in range(400)]
tokenizer = train_tokenizer("wordpiece", lines, vocab_size=120)
print(json.dumps([list(tokenizer.vocab), tokenizer.encode_batch(lines[:20])]))
"""


def test_wordpiece_gives_the_same_ids_in_every_process():
    """Hugging Face's WordPiece trainer numbers the same vocabulary differently in each process
    (on this text, without lmforge's renumbering, the two vocabularies differ)."""
    import os
    import subprocess
    import sys

    outputs = [
        subprocess.run(
            [sys.executable, "-c", WORDPIECE_IN_A_PROCESS],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    ]
    assert outputs[0] == outputs[1]
