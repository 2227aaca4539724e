"""Attention of a decoder over encoder outputs: additive (Bahdanau et al. 2015) and
multiplicative (Luong et al. 2015, `dot` and `general`).

Each layer takes `query` (batch, target_steps, query_dim), e.g. all decoder states at
once under teacher forcing, and `values` (batch, source_steps, value_dim), the encoder
outputs, with an optional boolean `mask` (batch, source_steps) that hides padding.
It returns the context vectors (batch, target_steps, value_dim) and the attention
weights (batch, target_steps, source_steps), each row summing to 1 over the unmasked
source steps.
"""

import keras
from keras import ops


class ScoredAttention(keras.layers.Layer):
    """Softmax of `score(query, values)` over source steps, and the weighted sum of
    `values`. Subclasses implement `score`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def compute_mask(self, query, values, mask=None):
        return None  # the mask is the source's; the outputs follow the query's steps

    def call(self, query, values, mask=None):
        scores = self.score(query, values)  # (batch, target_steps, source_steps)
        if mask is not None:
            visible = ops.expand_dims(ops.cast(mask, "bool"), 1)
            # Large but finite in float16 too, so a fully masked row stays a uniform softmax, not NaN.
            hidden = -3e4 if keras.backend.standardize_dtype(scores.dtype) == "float16" else -1e9
            scores = ops.where(visible, scores, ops.full_like(scores, hidden))
        weights = ops.softmax(scores, axis=-1)
        return ops.matmul(weights, values), weights

    def compute_output_shape(self, query_shape, values_shape):
        return (query_shape[0], query_shape[1], values_shape[2]), (query_shape[0], query_shape[1], values_shape[1])


@keras.saving.register_keras_serializable(package="seqapps")
class BahdanauAttention(ScoredAttention):
    """Additive attention: ``score(q_t, v_s) = w^T tanh(q_t W_q + v_s W_v)``.

    Args:
        units: Size of the hidden layer of the score.
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.query_dense = keras.layers.Dense(units, use_bias=False, name="query_dense")
        self.values_dense = keras.layers.Dense(units, use_bias=False, name="values_dense")
        self.score_dense = keras.layers.Dense(1, use_bias=False, name="score_dense")

    def build(self, query_shape, values_shape):
        self.query_dense.build(query_shape)
        self.values_dense.build(values_shape)
        self.score_dense.build((None, None, None, self.units))

    def score(self, query, values):
        q = ops.expand_dims(self.query_dense(query), 2)  # (batch, target, 1, units)
        v = ops.expand_dims(self.values_dense(values), 1)  # (batch, 1, source, units)
        return ops.squeeze(self.score_dense(ops.tanh(q + v)), -1)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="seqapps")
class LuongAttention(ScoredAttention):
    """Multiplicative attention: ``score(q_t, v_s) = q_t . v_s`` (``"dot"``, equal
    sizes) or ``q_t W v_s^T`` (``"general"``).

    Args:
        score: ``"dot"`` or ``"general"``.
    """

    def __init__(self, score="general", **kwargs):
        super().__init__(**kwargs)
        if score not in ("dot", "general"):
            raise ValueError(f"LuongAttention: unknown score {score!r}; valid: dot, general.")
        self.score_name = score

    def build(self, query_shape, values_shape):
        if self.score_name == "dot" and query_shape[-1] != values_shape[-1]:
            raise ValueError(
                f"LuongAttention(score='dot') needs queries and values of one size, got {query_shape[-1]} and "
                f"{values_shape[-1]}; use score='general'."
            )
        if self.score_name == "general":
            self.kernel = self.add_weight(
                shape=(query_shape[-1], values_shape[-1]), name="kernel", initializer="glorot_uniform"
            )

    def score(self, query, values):
        if self.score_name == "general":
            query = ops.matmul(query, self.kernel)
        return ops.matmul(query, ops.transpose(values, (0, 2, 1)))

    def get_config(self):
        return {**super().get_config(), "score": self.score_name}


ATTENTIONS = {
    "additive": lambda units: BahdanauAttention(units),
    "dot": lambda units: LuongAttention("dot"),
    "general": lambda units: LuongAttention("general"),
}


def make_attention(name: str, units: int) -> keras.layers.Layer:
    """An attention layer from its name: ``additive``, ``dot`` or ``general``."""
    if name not in ATTENTIONS:
        raise ValueError(f"Unknown attention {name!r}; valid names: {', '.join(ATTENTIONS)}.")
    return ATTENTIONS[name](units)
