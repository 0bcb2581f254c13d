"""The GPT family: config checks, protocol shapes, causality, learning, KV-cache generation."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from lmforge.errors import ConfigError
from lmforge.models.gpt import FAMILY, GPT, GPTConfig
from lmforge.nn.sampling import Sampler

TINY = dict(vocab_size=23, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_seq_len=16)


def tiny_gpt(seed=0, **changes) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(**{**TINY, **changes}))


def random_ids(batch=3, length=16, vocab=23, seed=0):
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("vocab_size", -1),
        ("d_model", 0),
        ("n_layers", 0),
        ("n_heads", 0),
        ("n_heads", 3),  # does not divide d_model=32
        ("d_ff", 0),
        ("max_seq_len", 0),
        ("max_seq_len", 2.5),
        ("dropout", 1.0),
        ("dropout", -0.1),
        ("tie_embeddings", "yes"),
        ("bias", 1),
        ("copy_dim", -1),
        ("copy_dim", True),
        ("copy_skip", [3]),  # without a copy head
        ("copy_skip", "ab"),
    ],
)
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        GPTConfig(**{**TINY, field: value})


def test_building_without_vocab_size_says_to_set_it():
    with pytest.raises(ConfigError, match="vocab_size"):
        GPT(GPTConfig())


def test_head_dim_is_derived():
    assert GPTConfig(d_model=96, n_heads=3).head_dim == 32


def test_family_entry():
    assert FAMILY.name == "gpt" and FAMILY.fitting == "trainer"
    assert FAMILY.config_class is GPTConfig and FAMILY.model_class is GPT


def test_protocol_shapes():
    model = tiny_gpt()
    ids = random_ids()
    assert GPT.recurrent is False and model.context_size == 16
    assert model.init_state(3, "cpu") is None
    logits, state = model(ids)
    assert logits.shape == (3, 16, 23) and state is None
    targets = random_ids(seed=1)
    logp, state = model.log_probs(ids, targets)
    assert logp.shape == (3, 16) and state is None
    expected = F.log_softmax(logits, -1).gather(-1, targets[..., None]).squeeze(-1)
    assert torch.allclose(logp, expected, atol=1e-5)
    next_logits, cache = model.step(ids[:, :5])
    assert next_logits.shape == (3, 23)
    assert torch.allclose(next_logits, logits[:, 4], atol=1e-5)
    assert cache.length == 5


def test_reading_more_than_max_seq_len_tokens_is_an_error():
    with pytest.raises(ConfigError, match="max_seq_len"):
        tiny_gpt()(random_ids(length=17))


def test_future_tokens_do_not_change_past_logits():
    model = tiny_gpt().eval()
    ids = random_ids(batch=2)
    changed = ids.clone()
    changed[:, 9:] = (changed[:, 9:] + 1) % 23
    before, after = model(ids)[0], model(changed)[0]
    assert torch.allclose(before[:, :9], after[:, :9], atol=1e-6)
    assert not torch.allclose(before[:, 9:], after[:, 9:])


def test_gpt_overfits_one_batch():
    model = tiny_gpt(seed=1)
    data = random_ids(batch=4, length=17, seed=2)
    inputs, targets = data[:, :-1], data[:, 1:]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(50):
        loss = -model.log_probs(inputs, targets)[0].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(torch.log(torch.tensor(23.0)).item(), abs=0.3)  # ~uniform
    assert losses[-1] < 0.25 * losses[0]


def test_tied_embeddings_share_one_tensor_counted_once():
    tied, untied = tiny_gpt(), tiny_gpt(tie_embeddings=False)
    assert tied.head.linear.weight is tied.tok_emb.weight
    assert untied.num_parameters() - tied.num_parameters() == 23 * 32 + 23  # weight and bias
    assert tied.num_parameters() == sum(p.numel() for p in tied.state_dict().values()) - 23 * 32


def test_adaptive_input_reads_the_adaptive_softmax_weights():
    """tie_embeddings with adaptive_cutoffs: head tokens read their head row, tail tokens their
    cluster row projected back up; nothing is stored twice, and the tied model still learns."""
    model = tiny_gpt(tie_embeddings=True, adaptive_cutoffs=(8, 16))
    untied = tiny_gpt(tie_embeddings=False, adaptive_cutoffs=(8, 16))
    assert untied.num_parameters() - model.num_parameters() == 23 * 32  # no embedding matrix
    assert model.num_parameters() == sum(p.numel() for p in model.state_dict().values())
    adaptive = model.head.adaptive
    vectors = model.tok_emb(torch.tensor([[3, 10, 20]]))
    assert vectors.shape == (1, 3, 32)
    torch.testing.assert_close(vectors[0, 0], adaptive.head.weight[3])
    torch.testing.assert_close(
        vectors[0, 1], adaptive.tail[0][1].weight[2] @ adaptive.tail[0][0].weight
    )
    torch.testing.assert_close(
        vectors[0, 2], adaptive.tail[1][1].weight[4] @ adaptive.tail[1][0].weight
    )
    data = random_ids(batch=4, length=17, seed=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = -model.log_probs(data[:, :-1], data[:, 1:])[0].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert adaptive.tail[1][1].weight.grad.abs().sum() > 0  # rare-token rows get input gradients
    assert losses[-1] < 0.4 * losses[0]


def test_gpt2_initialisation_scales_residual_projections():
    model = tiny_gpt(d_model=256, d_ff=1024, n_layers=8)
    assert model.tok_emb.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.blocks[0].mlp.proj.weight.std().item() == pytest.approx(0.02 / 4, rel=0.05)
    assert model.blocks[0].attn.qkv.bias.abs().max().item() == 0.0


def greedy_without_cache(model: GPT, prompt: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """Recompute the whole (sliding) window for every token: the slow, obviously right path."""
    ids = prompt
    with torch.no_grad():
        for _ in range(new_tokens):
            logits, _ = model(ids[:, -model.context_size :])
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids


@pytest.mark.parametrize("copy_dim", [0, 8])
@pytest.mark.parametrize("prompt_length", [3, 20])  # within and beyond max_seq_len (16)
def test_kv_cache_generation_equals_recomputation(prompt_length, copy_dim):
    model = tiny_gpt(seed=3, copy_dim=copy_dim).eval()
    prompt = random_ids(batch=2, length=prompt_length, seed=4)
    cached = model.generate(prompt, 30, Sampler(temperature=0))
    assert cached.shape == (2, prompt_length + 30)
    assert torch.equal(cached, greedy_without_cache(model, prompt, 30))


@pytest.mark.parametrize("copy_dim", [0, 8])
def test_step_with_several_new_tokens_equals_one_call(copy_dim):
    model = tiny_gpt(copy_dim=copy_dim).eval()
    ids = random_ids(batch=2, length=12)
    with torch.no_grad():
        _, cache = model.step(ids[:, :5])
        logits, cache = model.step(ids[:, 5:12], cache)
        assert torch.allclose(logits, model(ids)[0][:, -1], atol=1e-5)
        assert cache.length == 12


def test_sampled_generation_is_reproducible_with_a_seed():
    model = tiny_gpt()
    prompt = random_ids(batch=2, length=4)
    sampler = Sampler(temperature=1.0, top_k=10, seed=5)
    first = model.generate(prompt, 10, sampler)
    assert torch.equal(first, model.generate(prompt, 10, sampler))
    assert torch.equal(first[:, :4], prompt)


def test_untied_model_without_biases_builds_and_learns_nothing_odd():
    model = tiny_gpt(tie_embeddings=False, bias=False, dropout=0.1)
    assert model.blocks[0].attn.qkv.bias is None
    logp, _ = model.log_probs(random_ids(), random_ids(seed=1))
    logp.mean().backward()
    assert model.tok_emb.weight.grad is not None


def test_same_logits_as_hugging_face_gpt2_with_the_same_weights():
    transformers = pytest.importorskip("transformers")
    model = tiny_gpt().eval()
    hf_config = transformers.GPT2Config(
        vocab_size=23, n_positions=16, n_embd=32, n_layer=2, n_head=4, n_inner=64,
        activation_function="gelu", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    hf = transformers.GPT2LMHeadModel(hf_config).eval()
    weights = {"transformer.wte.weight": model.tok_emb.weight}
    weights["transformer.wpe.weight"] = model.pos_emb.weight
    weights["transformer.ln_f.weight"], weights["transformer.ln_f.bias"] = model.ln_f.parameters()
    for i, block in enumerate(model.blocks):
        for hf_name, ours in [
            ("ln_1", block.ln_1),
            ("ln_2", block.ln_2),
            ("attn.c_attn", block.attn.qkv),
            ("attn.c_proj", block.attn.proj),
            ("mlp.c_fc", block.mlp.fc),
            ("mlp.c_proj", block.mlp.proj),
        ]:
            transpose = isinstance(ours, torch.nn.Linear)  # HF's Conv1D stores (in, out)
            weights[f"transformer.h.{i}.{hf_name}.weight"] = (
                ours.weight.T if transpose else ours.weight
            )
            weights[f"transformer.h.{i}.{hf_name}.bias"] = ours.bias
    hf.load_state_dict({k: v.detach().clone() for k, v in weights.items()}, strict=False)
    ids = random_ids()
    with torch.no_grad():
        assert torch.allclose(model(ids)[0], hf(input_ids=ids).logits, atol=1e-5)


@pytest.mark.parametrize("copy_dim", [0, 8])
def test_slots_decode_rows_of_different_lengths_as_step_does_alone(copy_dim):
    """Continuous batching: rows that joined at different times, stepped together, give each
    row's own ``step`` logits; a row moved to keep the active rows first keeps its state."""
    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=50, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_seq_len=20, copy_dim=copy_dim
    )
    model = GPT(config).eval()
    with torch.inference_mode():
        slots = model.new_slots(4)
        prompts = [torch.randint(0, 50, (n,)) for n in (3, 7, 1)]
        caches = []
        for row, prompt in enumerate(prompts):
            logits = model.prefill_slot(slots, row, prompt)
            alone, cache = model.step(prompt[None])
            caches.append(cache)
            torch.testing.assert_close(logits, alone[0])
        for _ in range(5):
            ids = torch.randint(0, 50, (3,))
            together = model.step_slots(slots, ids)
            for row in range(3):
                alone, caches[row] = model.step(ids[row : row + 1, None], caches[row])
                torch.testing.assert_close(together[row], alone[0], atol=1e-5, rtol=1e-5)
        model.move_slot(slots, 2, 0)  # row 0 finished: the last row takes its place
        ids = torch.randint(0, 50, (2,))
        together = model.step_slots(slots, ids)
        alone, _ = model.step(ids[:1, None], caches[2])
        torch.testing.assert_close(together[0], alone[0], atol=1e-5, rtol=1e-5)
        assert slots.lengths[:2].tolist() == [1 + 5 + 1, 7 + 5 + 1]
        slots.lengths[0] = 20
        with pytest.raises(ConfigError, match="full"):
            model.step_slots(slots, ids)


def test_rotary_positions_cache_slots_and_relative_attention():
    """RoPE: the cached step and the slots give the full forward's logits, there is no position
    table among the weights, and a query's score with a key depends on their distance only."""
    model = tiny_gpt(positions="rotary").eval()
    assert not any("pos_emb" in name for name in model.state_dict())
    ids = random_ids(batch=2, length=12)
    with torch.no_grad():
        full, _ = model(ids)
        logits, cache = model.step(ids[:, :5])
        torch.testing.assert_close(logits, full[:, 4], atol=1e-5, rtol=1e-5)
        for t in range(5, 12):
            logits, cache = model.step(ids[:, t : t + 1], cache)
            torch.testing.assert_close(logits, full[:, t], atol=1e-5, rtol=1e-5)
        slots = model.new_slots(2)
        model.prefill_slot(slots, 0, ids[0, :3])
        model.prefill_slot(slots, 1, ids[1, :7])
        together = model.step_slots(slots, torch.stack([ids[0, 3], ids[1, 7]]))
        torch.testing.assert_close(together[0], full[0, 3], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(together[1], full[1, 7], atol=1e-5, rtol=1e-5)
    from lmforge.nn.attention import apply_rotary, rotary_angles

    cos, sin = rotary_angles(8, 20)
    q, k = torch.randn(8), torch.randn(8)
    score = lambda i, j: float(apply_rotary(q, cos[i], sin[i]) @ apply_rotary(k, cos[j], sin[j]))  # noqa: E731
    assert abs(score(3, 1) - score(15, 13)) < 1e-4 and abs(score(3, 1) - score(3, 2)) > 1e-3
    with pytest.raises(ConfigError, match="positions must be"):
        GPTConfig(positions="absolute")
