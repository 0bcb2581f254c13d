"""BERT: config checks, bidirectional attention with a padding mask, heads, pooling helpers,
the masked-LM refusal of causal methods, and a model folder round trip."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from lmforge.errors import ConfigError
from lmforge.folders import load_model, save_model
from lmforge.models import FAMILIES, get_family
from lmforge.models.bert import BERT, BertConfig, key_padding_mask, l2_normalize, mean_pool
from lmforge.nn.sampling import Sampler
from lmforge.tokenize import train_tokenizer

TINY = dict(vocab_size=40, d_model=16, n_layers=2, n_heads=2, d_ff=32, max_seq_len=12)


def tiny_bert(seed: int = 0, **overrides) -> BERT:
    torch.manual_seed(seed)
    model = BERT(BertConfig(**{**TINY, "dropout": 0.0, **overrides})).eval()
    with torch.no_grad():  # move LayerNorms and biases off their identity/zero initialisation
        for param in model.parameters():
            param.add_(0.1 * torch.randn_like(param))
    return model


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_heads", 3),  # 16 is not divisible by 3
        ("d_model", 0),
        ("dropout", 1.0),
        ("layer_norm_eps", 0.0),
        ("type_vocab_size", 0),
        ("max_seq_len", 2.5),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        BertConfig(**{**TINY, field: value})


def test_building_without_vocab_size_says_to_set_it():
    with pytest.raises(ConfigError, match="vocab_size"):
        BERT(BertConfig())


def test_forward_gives_every_output_shape():
    model = tiny_bert()
    out = model(torch.randint(0, 40, (3, 7)))
    assert out.hidden.shape == (3, 7, 16) and out.pooled.shape == (3, 16)
    assert out.mlm_logits.shape == (3, 7, 40) and out.nsp_logits.shape == (3, 2)
    assert model(torch.randint(0, 40, (3, 7)), mlm=False).mlm_logits is None


def test_later_tokens_change_earlier_vectors():
    # Bidirectional: unlike GPT, position 0 sees position 5.
    model = tiny_bert()
    ids = torch.randint(0, 40, (1, 6))
    changed = ids.clone()
    changed[0, 5] = (ids[0, 5] + 1) % 40
    assert not torch.allclose(model.encode(ids)[0, 0], model.encode(changed)[0, 0])


def test_padding_never_changes_the_real_tokens_vectors():
    model = tiny_bert()
    ids = torch.randint(0, 40, (1, 5))
    alone = model.encode(ids)
    padded = torch.cat([ids, torch.randint(0, 40, (1, 4))], dim=1)  # any ids in the padding
    mask = torch.tensor([[1] * 5 + [0] * 4])
    together = model.encode(padded, attention_mask=mask)
    assert torch.allclose(together[:, :5], alone, atol=1e-6)
    unmasked = model.encode(padded)
    assert not torch.allclose(unmasked[:, :5], alone, atol=1e-3)


def test_segment_ids_enter_the_embedding():
    model = tiny_bert()
    ids = torch.randint(0, 40, (1, 6))
    zeros, ones = torch.zeros_like(ids), torch.ones_like(ids)
    assert torch.equal(model.encode(ids), model.encode(ids, segment_ids=zeros))
    assert not torch.allclose(model.encode(ids), model.encode(ids, segment_ids=ones))


def test_heads_follow_the_paper_formulas():
    model = tiny_bert()
    ids = torch.randint(0, 40, (2, 6))
    out = model(ids)
    head = model.mlm_head
    transformed = head.ln(F.gelu(head.dense(out.hidden)))
    expected = transformed @ model.tok_emb.weight.T + head.bias  # decoder tied to E
    assert torch.allclose(out.mlm_logits, expected, atol=1e-5)
    assert torch.allclose(out.pooled, torch.tanh(model.pooler(out.hidden[:, 0])), atol=1e-6)
    assert torch.allclose(out.nsp_logits, model.nsp_head(out.pooled), atol=1e-6)


def test_parameter_count_has_no_separate_decoder_matrix():
    # embeddings (40 + 12 + 2) * 16 = 864, their LayerNorm 32;
    # per block: qkv 16*48+48 = 816, proj 272, LN 32, fc 16*32+32 = 544, proj 32*16+16 = 528,
    # LN 32 -> 2224, two blocks 4448; pooler 272; MLM head dense 272 + LN 32 + bias 40 = 344
    # (its decoder is tok_emb); NSP 16*2+2 = 34. Total 864+32+4448+272+344+34 = 5994.
    assert tiny_bert().num_parameters() == 5994


def test_too_long_input_is_refused():
    with pytest.raises(ConfigError, match="max_seq_len=12"):
        tiny_bert().encode(torch.zeros(1, 13, dtype=torch.long))


def test_mean_pool_averages_real_tokens_only():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    # (1 + 3) / 2 = 2, (2 + 4) / 2 = 3; the padded row is ignored.
    assert mean_pool(hidden, mask).tolist() == [[2.0, 3.0]]
    assert torch.allclose(l2_normalize(torch.tensor([[3.0, 4.0]])), torch.tensor([[0.6, 0.8]]))


def test_key_padding_mask_is_none_without_padding():
    assert key_padding_mask(None) is None and key_padding_mask(torch.ones(2, 3)) is None
    mask = key_padding_mask(torch.tensor([[1, 0]]))
    assert mask.shape == (1, 1, 1, 2) and mask.tolist() == [[[[True, False]]]]


def test_causal_methods_say_bert_is_a_masked_lm():
    model = tiny_bert()
    ids = torch.zeros(1, 3, dtype=torch.long)
    with pytest.raises(ConfigError, match="masked LM"):
        model.log_probs(ids, ids)
    with pytest.raises(ConfigError, match="masked LM"):
        model.generate(ids, 2, Sampler(temperature=0.0))


def test_registry_lists_bert_as_a_non_causal_trainer_family():
    family = get_family("bert")
    assert family.model_class is BERT and family.fitting == "trainer" and not family.causal
    assert FAMILIES["gpt"].causal  # the default: left-to-right LMs


def test_mlm_loss_falls_on_one_batch():
    # The model is trainable end to end: a few Adam steps on one masked batch.
    model = tiny_bert().train()
    torch.manual_seed(1)
    ids = torch.randint(5, 40, (4, 10))
    inputs = ids.clone()
    inputs[:, ::3] = 4  # a [MASK]-like id at every third position
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        logits = model(inputs).mlm_logits
        loss = F.cross_entropy(logits[:, ::3].reshape(-1, 40), ids[:, ::3].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


def test_model_folder_round_trip(tmp_path, tiny_lines):
    tokenizer = train_tokenizer("wordpiece", tiny_lines, vocab_size=60)
    model = tiny_bert(vocab_size=tokenizer.vocab_size)
    save_model(tmp_path, model, tokenizer)
    loaded, loaded_tokenizer, meta = load_model(tmp_path)
    assert meta["family"] == "bert" and loaded_tokenizer.vocab == tokenizer.vocab
    ids = torch.tensor([tokenizer.encode("the cat sat")])
    assert torch.equal(loaded(ids).mlm_logits, model(ids).mlm_logits)
