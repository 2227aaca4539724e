import keras
from keras import constraints, initializers, ops, regularizers

from seqapps.layers.lstm import LSTMCell


@keras.saving.register_keras_serializable(package="seqapps")
class PeepholeLSTMCell(LSTMCell):
    """LSTM cell with peephole connections (Gers & Schmidhuber 2000).

    The input and forget gates look at the previous cell state c_{t-1}, the output
    gate at the new cell state c_t, each through a diagonal (per-unit) weight
    vector p_i, p_f, p_o:

        i_t = recurrent_activation(x_t W_i + h_{t-1} U_i + p_i * c_{t-1} + b_i)
        f_t = recurrent_activation(x_t W_f + h_{t-1} U_f + p_f * c_{t-1} + b_f)
        c_t = f_t * c_{t-1} + i_t * activation(x_t W_c + h_{t-1} U_c + b_c)
        o_t = recurrent_activation(x_t W_o + h_{t-1} U_o + p_o * c_t + b_o)
        h_t = o_t * activation(c_t)

    Weights: those of ``LSTMCell`` plus ``peephole_i``, ``peephole_f`` and
    ``peephole_o``, each ``(units,)``. With the peepholes at zero it computes
    exactly what ``LSTMCell`` computes.

    Args:
        units, ...: as ``LSTMCell``.
        peephole_initializer: Initializer of the three peephole vectors
            (``glorot_uniform``, as TensorFlow's former ``PeepholeLSTMCell``).
        peephole_regularizer: Regularizer of the peephole vectors.
        peephole_constraint: Constraint of the peephole vectors.
    """

    def __init__(
        self,
        units,
        peephole_initializer="glorot_uniform",
        peephole_regularizer=None,
        peephole_constraint=None,
        **kwargs,
    ):
        super().__init__(units, **kwargs)
        self.peephole_initializer = initializers.get(peephole_initializer)
        self.peephole_regularizer = regularizers.get(peephole_regularizer)
        self.peephole_constraint = constraints.get(peephole_constraint)

    def build(self, input_shape):
        super().build(input_shape)
        self.peephole_i, self.peephole_f, self.peephole_o = (
            self.add_weight(
                shape=(self.units,),
                name=name,
                initializer=self.peephole_initializer,
                regularizer=self.peephole_regularizer,
                constraint=self.peephole_constraint,
            )
            for name in ("peephole_i", "peephole_f", "peephole_o")
        )

    def step(self, projected, states, training=False):
        h_tm1, c_tm1 = states
        z = projected + ops.matmul(self.recurrent_input(h_tm1, training), self.recurrent_kernel)
        z_i, z_f, z_c, z_o = ops.split(z, 4, axis=-1)
        i = self.recurrent_activation(z_i + self.peephole_i * c_tm1)
        f = self.recurrent_activation(z_f + self.peephole_f * c_tm1)
        c = f * c_tm1 + i * self.activation(z_c)
        o = self.recurrent_activation(z_o + self.peephole_o * c)
        h = o * self.activation(c)
        return h, [h, c]

    def get_config(self):
        return {
            **super().get_config(),
            "peephole_initializer": initializers.serialize(self.peephole_initializer),
            "peephole_regularizer": regularizers.serialize(self.peephole_regularizer),
            "peephole_constraint": constraints.serialize(self.peephole_constraint),
        }
