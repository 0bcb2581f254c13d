"""Attention: the paper's reference path equals the fused fast path; a KV cache changes nothing."""

from __future__ import annotations

import pytest
import torch

from lmforge.nn.attention import (
    KVCache,
    MultiHeadAttention,
    attention,
    attention_reference,
    cached_causal_mask,
    causal_mask,
)


def qkv(batch=2, heads=3, t_q=7, t_k=7, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, t_q, dim, generator=g)
    k = torch.randn(batch, heads, t_k, dim, generator=g)
    v = torch.randn(batch, heads, t_k, dim, generator=g)
    return q, k, v


def test_causal_mask_lets_position_t_see_only_positions_up_to_t():
    mask = causal_mask(4)
    assert mask.dtype == torch.bool and mask.shape == (4, 4)
    assert mask.tolist() == [
        [True, False, False, False],
        [True, True, False, False],
        [True, True, True, False],
        [True, True, True, True],
    ]


def test_cached_causal_mask_sees_all_past_and_the_causal_part_of_the_new():
    # 2 new queries after 3 cached positions: keys 0..2 always, new key 3 for query 0, 3..4 for 1
    assert cached_causal_mask(2, 3).tolist() == [
        [True, True, True, True, False],
        [True, True, True, True, True],
    ]
    assert torch.equal(cached_causal_mask(5, 0), causal_mask(5))


def test_reference_equals_fast_path_without_mask():
    q, k, v = qkv(t_q=5, t_k=9)
    assert torch.allclose(attention_reference(q, k, v), attention(q, k, v), atol=1e-5)


def test_reference_equals_fast_path_with_causal_mask():
    q, k, v = qkv()
    expected = attention_reference(q, k, v, mask=causal_mask(7))
    assert torch.allclose(attention(q, k, v, mask=causal_mask(7)), expected, atol=1e-5)
    assert torch.allclose(attention(q, k, v, is_causal=True), expected, atol=1e-5)


def test_reference_equals_fast_path_with_random_boolean_mask():
    q, k, v = qkv(t_q=6, t_k=10)
    g = torch.Generator().manual_seed(1)
    mask = torch.rand(2, 3, 6, 10, generator=g) < 0.5
    mask[..., 0] = True  # every query sees at least one key (else softmax of all -inf is NaN)
    assert torch.allclose(attention_reference(q, k, v, mask), attention(q, k, v, mask), atol=1e-5)


def test_reference_path_is_a_weighted_mean_of_values():
    q, k, v = qkv()
    v = torch.ones_like(v)
    assert torch.allclose(attention_reference(q, k, v, mask=causal_mask(7)), v, atol=1e-6)


def mha(causal=True, seed=0):
    torch.manual_seed(seed)
    return MultiHeadAttention(d_model=16, n_heads=4, dropout=0.0, causal=causal).eval()


def test_multi_head_attention_with_cache_equals_without():
    layer = mha()
    x = torch.randn(2, 10, 16)
    full, whole = layer(x)
    assert full.shape == (2, 10, 16) and whole.keys.shape == whole.values.shape == (2, 4, 10, 4)
    # the prompt, then a chunk of 3 new tokens, then one token at a time
    pieces, cache = [], None
    for lo, hi in [(0, 4), (4, 7), (7, 8), (8, 9), (9, 10)]:
        y, cache = layer(x[:, lo:hi], cache)
        pieces.append(y)
    assert torch.allclose(torch.cat(pieces, dim=1), full, atol=1e-5)
    assert torch.allclose(cache.keys, whole.keys, atol=1e-6)
    assert torch.allclose(cache.values, whole.values, atol=1e-6)


def test_decoding_into_a_preallocated_cache_equals_growing_one():
    layer = mha()
    x = torch.randn(2, 9, 16)
    full, _ = layer(x)
    cache = KVCache.empty(2, 4, 4, capacity=9, like=x)
    buffer = cache.key_buffer
    pieces = []
    for t in range(9):
        y, cache = layer(x[:, t : t + 1], cache)
        pieces.append(y)
    assert cache.key_buffer is buffer  # written in place, never reallocated
    assert torch.allclose(torch.cat(pieces, dim=1), full, atol=1e-5)


def test_kv_cache_grows_past_its_capacity_and_follows_the_dtype():
    k = torch.randn(1, 2, 3, 4)
    cache = KVCache.empty(1, 2, 4, capacity=2, like=k).append(k, -k)
    assert cache.length == 3 and cache.key_buffer.shape[2] == 4  # max(needed 3, 2 * 2)
    assert torch.equal(cache.keys, k) and torch.equal(cache.values, -k)
    more = cache.append(k[:, :, :1].double(), k[:, :, :1].double())
    assert more.length == 4 and more.keys.dtype == torch.float64
    assert torch.equal(more.keys[:, :, :3], k.double())


def test_causal_self_attention_ignores_the_future():
    layer = mha()
    x = torch.randn(1, 8, 16)
    changed = x.clone()
    changed[:, 5:] = torch.randn(1, 3, 16)
    assert torch.allclose(layer(x)[0][:, :5], layer(changed)[0][:, :5], atol=1e-6)
    assert not torch.allclose(layer(x)[0][:, 5:], layer(changed)[0][:, 5:])


def test_bidirectional_self_attention_sees_the_future():
    layer = mha(causal=False)
    x = torch.randn(1, 8, 16)
    changed = x.clone()
    changed[:, -1] += 1.0
    assert not torch.allclose(layer(x)[0][:, 0], layer(changed)[0][:, 0])


def test_cross_attention_equals_the_reference_computation():
    layer = mha(causal=False)
    x, memory = torch.randn(2, 3, 16), torch.randn(2, 5, 16)
    y, memory_kv = layer(x, memory=memory)
    assert torch.equal(layer(x, cache=memory_kv, memory=memory)[0], y)  # cached memory k, v

    w, b = layer.qkv.weight, layer.qkv.bias
    q = x @ w[:16].T + b[:16]
    k = memory @ w[16:32].T + b[16:32]
    v = memory @ w[32:].T + b[32:]
    heads = [t.view(2, -1, 4, 4).transpose(1, 2) for t in (q, k, v)]
    expected = attention_reference(*heads).transpose(1, 2).reshape(2, 3, 16) @ layer.proj.weight.T
    assert torch.allclose(y, expected + layer.proj.bias, atol=1e-5)


@pytest.mark.parametrize("causal", [True, False])
def test_padding_mask_is_respected(causal):
    layer = mha(causal=causal)
    x = torch.randn(1, 6, 16)
    mask = torch.ones(6, 6, dtype=torch.bool)
    if causal:
        mask = causal_mask(6)
    mask[:, 4:] = False  # the last two positions are padding
    mask[4:, 4:] = torch.eye(2, dtype=torch.bool)  # padding rows attend themselves (no NaN)
    changed = x.clone()
    changed[:, 4:] = torch.randn(1, 2, 16)
    assert torch.allclose(layer(x, mask=mask)[0][:, :4], layer(changed, mask=mask)[0][:, :4])
