"""Attention layers against their published score functions, written out in NumPy."""

import keras
import numpy as np
import pytest

from seqapps.layers import BahdanauAttention, LuongAttention, make_attention


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


rng = np.random.default_rng(0)
QUERY = rng.normal(size=(2, 3, 4)).astype("float32")
VALUES = rng.normal(size=(2, 5, 4)).astype("float32")


def expected(scores, values=VALUES):
    weights = softmax(scores)
    return weights @ values, weights


def test_bahdanau_matches_its_equation():
    layer = BahdanauAttention(6)
    layer(QUERY, VALUES)
    w_q, w_v, w = (rng.normal(size=v.shape).astype("float32") for v in layer.weights)
    layer.set_weights([w_q, w_v, w])
    scores = np.tanh((QUERY @ w_q)[:, :, None, :] + (VALUES @ w_v)[:, None, :, :]) @ w
    for got, want in zip(layer(QUERY, VALUES), expected(scores[..., 0]), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("score", ["dot", "general"])
def test_luong_matches_its_equation(score):
    layer = LuongAttention(score)
    layer(QUERY, VALUES)
    kernel = np.eye(4, dtype="float32")
    if score == "general":
        kernel = rng.normal(size=(4, 4)).astype("float32")
        layer.set_weights([kernel])
    scores = QUERY @ kernel @ VALUES.transpose(0, 2, 1)
    for got, want in zip(layer(QUERY, VALUES), expected(scores), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("name", ["additive", "dot", "general"])
def test_masked_source_steps_get_no_weight(name):
    mask = np.array([[True] * 5, [True, True, False, False, False]])
    _, weights = make_attention(name, 6)(QUERY, VALUES, mask=mask)
    weights = np.asarray(weights)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
    assert np.all(weights[1, :, 2:] == 0)


def test_masking_equals_cutting_the_padding_off():
    mask = np.array([[True] * 5, [True, True, False, False, False]])
    context, _ = LuongAttention("dot")(QUERY, VALUES, mask=mask)
    cut, _ = LuongAttention("dot")(QUERY[1:], VALUES[1:, :2])
    np.testing.assert_allclose(context[1], cut[0], atol=1e-5)


def test_attention_inside_a_saved_model(tmp_path):
    query, values = keras.Input((None, 4)), keras.Input((None, 4))
    outputs = [make_attention(name, 6)(query, values)[0] for name in ("additive", "dot", "general")]
    model = keras.Model([query, values], outputs)
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    for got, want in zip(restored([QUERY, VALUES]), model([QUERY, VALUES]), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_bad_names_and_sizes():
    with pytest.raises(ValueError, match="Unknown attention 'cosine'; valid names: additive, dot, general"):
        make_attention("cosine", 4)
    with pytest.raises(ValueError, match="use score='general'"):
        LuongAttention("dot")(QUERY, VALUES[:, :, :3])
