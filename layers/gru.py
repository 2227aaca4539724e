import keras
from keras import ops

from seqapps.layers.gated_cell import GatedCell


@keras.saving.register_keras_serializable(package="seqapps")
class GRUCell(GatedCell):
    """Gated Recurrent Unit (Cho et al. 2014). Gate blocks z (update), r (reset),
    h (candidate), Keras' order:

        z_t = recurrent_activation(x_t W_z + h_{t-1} U_z + b_z)
        r_t = recurrent_activation(x_t W_r + h_{t-1} U_r + b_r)
        reset_after=False (the paper):
            h~_t = activation(x_t W_h + (r_t * h_{t-1}) U_h + b_h)
        reset_after=True (cuDNN's form, Keras' default):
            h~_t = activation(x_t W_h + b_h + r_t * (h_{t-1} U_h + b'_h))
        h_t = z_t * h_{t-1} + (1 - z_t) * h~_t

    Weights: those of ``keras.layers.GRUCell``: ``kernel (d, 3u)``,
    ``recurrent_kernel (u, 3u)`` and ``bias (3u,)``, or ``(2, 3u)`` with
    ``reset_after=True`` (row 0 added to ``x W``, row 1 to ``h U``). The weights of
    a ``keras.layers.GRU`` with the same ``reset_after`` load unchanged.

    Args:
        units, ...: as ``LSTMCell`` (without ``unit_forget_bias``).
        reset_after: Apply the reset gate after the recurrent matmul (``True``,
            Keras' default) or before it (``False``, the paper's form).

    Call arguments:
        inputs: A 2D tensor ``(batch, features)``.
        states: ``h_{t-1}`` ``(batch, units)``, or a list holding it.
        training: Whether dropout is active.
    """

    gates = 3

    def __init__(self, units, reset_after=True, **kwargs):
        super().__init__(units, **kwargs)
        self.reset_after = reset_after

    @property
    def cudnn_mode(self):
        return "gru" if self.reset_after else None  # cuDNN's GRU resets after the matmul

    def bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def input_bias(self):
        return self.bias[0] if self.reset_after else self.bias

    def step(self, projected, states, training=False):
        nested = isinstance(states, (list, tuple))
        h_tm1 = states[0] if nested else states
        u = self.units
        h_rec = self.recurrent_input(h_tm1, training)
        x_z, x_r, x_h = ops.split(projected, 3, axis=-1)
        if self.reset_after:
            recurrent = ops.matmul(h_rec, self.recurrent_kernel)
            if self.use_bias:
                recurrent = recurrent + self.bias[1]
            rec_z, rec_r, rec_h = ops.split(recurrent, 3, axis=-1)
            z = self.recurrent_activation(x_z + rec_z)
            r = self.recurrent_activation(x_r + rec_r)
            candidate = self.activation(x_h + r * rec_h)
        else:
            rec_zr = ops.matmul(h_rec, self.recurrent_kernel[:, : 2 * u])
            z = self.recurrent_activation(x_z + rec_zr[:, :u])
            r = self.recurrent_activation(x_r + rec_zr[:, u:])
            candidate = self.activation(x_h + ops.matmul(r * h_rec, self.recurrent_kernel[:, 2 * u :]))
        h = z * h_tm1 + (1.0 - z) * candidate
        return h, ([h] if nested else h)

    def get_config(self):
        return {**super().get_config(), "reset_after": self.reset_after}
