import keras
from keras import ops

from seqapps.layers.gated_cell import ForgetGateCell


@keras.saving.register_keras_serializable(package="seqapps")
class LSTMCell(ForgetGateCell):
    """Long Short-Term Memory cell with forget gate (Hochreiter & Schmidhuber 1997;
    Gers, Schmidhuber & Cummins 2000), the reference of this package.

    With ``W`` the kernel, ``U`` the recurrent kernel and ``b`` the bias, split into
    the gate blocks i, f, c, o (Keras' order):

        i_t = recurrent_activation(x_t W_i + h_{t-1} U_i + b_i)
        f_t = recurrent_activation(x_t W_f + h_{t-1} U_f + b_f)
        c_t = f_t * c_{t-1} + i_t * activation(x_t W_c + h_{t-1} U_c + b_c)
        o_t = recurrent_activation(x_t W_o + h_{t-1} U_o + b_o)
        h_t = o_t * activation(c_t)

    Its weights have the layout of ``keras.layers.LSTMCell`` (``kernel (d, 4u)``,
    ``recurrent_kernel (u, 4u)``, ``bias (4u,)``), so the weights of a
    ``keras.layers.LSTM`` load into ``keras.layers.RNN(LSTMCell(u))`` unchanged.

    Args:
        units: Positive integer, dimensionality of the output space.
        activation: Activation of the candidate and of the output (``tanh``).
        recurrent_activation: Activation of the gates (``sigmoid``).
        use_bias: Whether the cell uses a bias vector.
        kernel_initializer: Initializer of ``kernel`` (``glorot_uniform``).
        recurrent_initializer: Initializer of ``recurrent_kernel`` (``orthogonal``).
        bias_initializer: Initializer of ``bias`` (``zeros``).
        unit_forget_bias: If ``True``, add 1 to the forget-gate bias at
            initialization (Jozefowicz et al. 2015).
        kernel_regularizer, recurrent_regularizer, bias_regularizer: Regularizers
            of the three weights.
        kernel_constraint, recurrent_constraint, bias_constraint: Constraints of
            the three weights.
        dropout: Fraction of the input units to drop, one mask per sequence.
        recurrent_dropout: Fraction of the recurrent units to drop, one mask per
            sequence.
        seed: Random seed for dropout.

    Call arguments:
        inputs: A 2D tensor ``(batch, features)``.
        states: ``[h_{t-1}, c_{t-1}]``, each ``(batch, units)``.
        training: Whether dropout is active.
    """

    gates = 4
    cudnn_mode = "lstm"
    forget_bias_block = 1
    forget_bias_shift = 1.0

    def step(self, projected, states, training=False):
        h_tm1, c_tm1 = states
        z = projected + ops.matmul(self.recurrent_input(h_tm1, training), self.recurrent_kernel)
        z_i, z_f, z_c, z_o = ops.split(z, 4, axis=-1)
        i = self.recurrent_activation(z_i)
        f = self.recurrent_activation(z_f)
        c = f * c_tm1 + i * self.activation(z_c)
        o = self.recurrent_activation(z_o)
        h = o * self.activation(c)
        return h, [h, c]
