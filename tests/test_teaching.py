"""The teaching attention variants compute what the GPT's attention computes."""

import pytest
import torch

from scratchgpt.analysis import weights_from_input
from scratchgpt.model import explicit_attention, num_parameters, sdpa_attention
from scratchgpt.model.teaching import (
    CausalAttention,
    MultiHeadAttentionWrapper,
    SelfAttention,
    SelfAttentionNoWeights,
)


def _heads(x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(1)  # (B, T, d) -> (B, 1, T, d): one head, as the functions take it


def test_no_weights_attention_is_a_softmax_weighted_average():
    x = torch.randn(6, 3)
    att = SelfAttentionNoWeights()
    w = att.attention_weights(x)
    torch.testing.assert_close(w.sum(-1), torch.ones(6))
    assert (w > 0).all()
    torch.testing.assert_close(att(x), w @ x)
    # Order-blind: permuting the tokens permutes the outputs, nothing else (why positions
    # have to be added to the embeddings).
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    torch.testing.assert_close(att(x[perm]), att(x)[perm])
    assert list(att.parameters()) == []


def test_trainable_self_attention_is_scaled_dot_product_attention():
    att = SelfAttention(5, 8, qkv_bias=True)
    x = torch.randn(2, 7, 5)
    q, k, v = (_heads(lin(x)) for lin in (att.W_query, att.W_key, att.W_value))
    everything = torch.ones(7, 7, dtype=torch.bool)  # no mask: every token sees every token
    expected = explicit_attention(q, k, v, mask=everything, dropout_p=0.0).squeeze(1)
    torch.testing.assert_close(att(x), expected)
    torch.testing.assert_close(att.attention_weights(x).sum(-1), torch.ones(2, 7))


def test_textbook_causal_attention_equals_the_models_attention_functions():
    att = CausalAttention(6, 8, context_length=10, dropout=0.5, qkv_bias=False).eval()
    x = torch.randn(3, 10, 6)
    q, k, v = (_heads(lin(x)) for lin in (att.W_query, att.W_key, att.W_value))
    for attend in (explicit_attention, sdpa_attention):
        expected = attend(q, k, v, mask=None, dropout_p=0.0).squeeze(1)  # (B, 1, T, hs)
        torch.testing.assert_close(att(x), expected, atol=1e-6, rtol=1e-5)
    w = att.attention_weights(x[:, :4])  # shorter than the context: the mask is sliced
    assert torch.equal(w.triu(diagonal=1), torch.zeros(3, 4, 4))
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 4))
    # Dropout acts in training mode only.
    att.train()
    assert not torch.allclose(att(x), att.eval()(x))


@pytest.mark.parametrize("qkv_bias", [False, True])
@pytest.mark.parametrize("attn_impl", ["explicit", "sdpa"])
@pytest.mark.parametrize("num_heads", [1, 4])
def test_wrapper_of_heads_equals_split_heads_multi_head_attention(qkv_bias, attn_impl, num_heads):
    wrapper = MultiHeadAttentionWrapper(
        16, 16, num_heads=num_heads, context_length=12, dropout=0.1, qkv_bias=qkv_bias
    ).eval()
    mha = wrapper.to_multi_head_attention(attn_impl=attn_impl).eval()
    x = torch.randn(2, 12, 16)
    torch.testing.assert_close(mha(x), wrapper(x), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(mha(x[:, :5]), wrapper(x[:, :5]), atol=1e-6, rtol=1e-5)
    assert num_parameters(mha) == num_parameters(wrapper)
    # Same attention maps, head by head, as the analysis tools read them from the model.
    torch.testing.assert_close(weights_from_input(mha, x, mask=None), wrapper.attention_weights(x))


def test_wrapper_needs_a_square_map_for_the_split_heads_module():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttentionWrapper(8, 10, num_heads=4, context_length=4)
    wrapper = MultiHeadAttentionWrapper(8, 12, num_heads=4, context_length=4)
    assert wrapper(torch.randn(1, 4, 8)).shape == (1, 4, 12)
    with pytest.raises(ValueError, match="C -> C"):
        wrapper.to_multi_head_attention()
