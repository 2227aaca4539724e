import keras
from keras import ops

from seqapps.layers.gated_cell import ForgetGateCell


@keras.saving.register_keras_serializable(package="seqapps")
class CoupledLSTMCell(ForgetGateCell):
    """LSTM cell with coupled input and forget gates, "CIFG" (Greff et al. 2015,
    "LSTM: A Search Space Odyssey").

    The forget gate is not learned: it is the complement of the input gate, so
    the cell writes exactly as much as it forgets. Gate blocks i, c, o:

        i_t = recurrent_activation(x_t W_i + h_{t-1} U_i + b_i)
        f_t = 1 - i_t
        c_t = f_t * c_{t-1} + i_t * activation(x_t W_c + h_{t-1} U_c + b_c)
        o_t = recurrent_activation(x_t W_o + h_{t-1} U_o + b_o)
        h_t = o_t * activation(c_t)

    Weights: ``kernel (d, 3u)``, ``recurrent_kernel (u, 3u)``, ``bias (3u,)``;
    a quarter fewer parameters than ``LSTMCell``.

    Args:
        units, ...: as ``LSTMCell``.
        unit_forget_bias: If ``True``, start the forget gate as ``LSTMCell`` does
            with its forget bias at 1: since ``1 - sigmoid(a) = sigmoid(-a)``, that
            is an input-gate bias of -1 (with the default sigmoid).
    """

    gates = 3
    cudnn_mode = "lstm"
    forget_bias_block = 0
    forget_bias_shift = -1.0

    def cudnn_weights(self):
        # An LSTM whose forget-gate block is minus the input-gate block computes this
        # cell: f = sigmoid(-z_i) = 1 - sigmoid(z_i).
        def as_lstm(weight):
            w_i, w_c, w_o = ops.split(weight, 3, axis=-1)
            return ops.concatenate([w_i, -w_i, w_c, w_o], axis=-1)

        return as_lstm(self.kernel), as_lstm(self.recurrent_kernel), as_lstm(self.bias)

    def step(self, projected, states, training=False):
        h_tm1, c_tm1 = states
        z = projected + ops.matmul(self.recurrent_input(h_tm1, training), self.recurrent_kernel)
        z_i, z_c, z_o = ops.split(z, 3, axis=-1)
        i = self.recurrent_activation(z_i)
        c = (1.0 - i) * c_tm1 + i * self.activation(z_c)
        o = self.recurrent_activation(z_o)
        h = o * self.activation(c)
        return h, [h, c]
