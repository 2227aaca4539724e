"""The variants of the vanilla LSTM (``PeepholeLSTMCell``) that Greff et al. 2015,
"LSTM: A Search Space Odyssey", compare, each one change to its equations:

    name   Greff et al.                      class
    -----  --------------------------------  ------------------------------
    nig    NIG, no input gate                NoInputGateLSTMCell
    nfg    NFG, no forget gate               NoForgetGateLSTMCell
    nog    NOG, no output gate               NoOutputGateLSTMCell
    niaf   NIAF, no input activation         NoInputActivationLSTMCell
    noaf   NOAF, no output activation        NoOutputActivationLSTMCell
    fgr    FGR, full gate recurrence         FullGateRecurrenceLSTMCell

and, in the same terms, ``peephole`` is V (vanilla), ``lstm`` is NP (no peepholes)
and ``cifg`` is CIFG (coupled input and forget gate). Each class only sets the
switches of ``PeepholeLSTMCell``, whose step they share; arguments are its own.
"""

import keras

from seqapps.layers.peephole_lstm import PeepholeLSTMCell


@keras.saving.register_keras_serializable(package="seqapps")
class NoInputGateLSTMCell(PeepholeLSTMCell):
    """Vanilla LSTM without input gate (NIG): ``i_t = 1``, so

        c_t = f_t * c_{t-1} + activation(x_t W_c + h_{t-1} U_c + b_c)

    Kernel blocks f, c, o; peepholes ``peephole_f``, ``peephole_o``.
    """

    blocks = "fco"


@keras.saving.register_keras_serializable(package="seqapps")
class NoForgetGateLSTMCell(PeepholeLSTMCell):
    """Vanilla LSTM without forget gate (NFG): ``f_t = 1``, so the cell state only
    accumulates:

        c_t = c_{t-1} + i_t * activation(x_t W_c + h_{t-1} U_c + b_c)

    Kernel blocks i, c, o; peepholes ``peephole_i``, ``peephole_o``;
    ``unit_forget_bias`` has no forget gate to act on.
    """

    blocks = "ico"


@keras.saving.register_keras_serializable(package="seqapps")
class NoOutputGateLSTMCell(PeepholeLSTMCell):
    """Vanilla LSTM without output gate (NOG): ``o_t = 1``, so

        h_t = activation(c_t)

    Kernel blocks i, f, c; peepholes ``peephole_i``, ``peephole_f``.
    """

    blocks = "ifc"


@keras.saving.register_keras_serializable(package="seqapps")
class NoInputActivationLSTMCell(PeepholeLSTMCell):
    """Vanilla LSTM without input activation function (NIAF): the candidate is linear,

        c_t = f_t * c_{t-1} + i_t * (x_t W_c + h_{t-1} U_c + b_c)

    Weights as ``PeepholeLSTMCell``.
    """

    input_activation = False


@keras.saving.register_keras_serializable(package="seqapps")
class NoOutputActivationLSTMCell(PeepholeLSTMCell):
    """Vanilla LSTM without output activation function (NOAF):

        h_t = o_t * c_t

    Weights as ``PeepholeLSTMCell``.
    """

    output_activation = False


@keras.saving.register_keras_serializable(package="seqapps")
class FullGateRecurrenceLSTMCell(PeepholeLSTMCell):
    """Vanilla LSTM with full gate recurrence (FGR): every gate also sees the three
    gates' activations of the previous step, through recurrent weights R:

        i_t = recurrent_activation(... + i_{t-1} R_ii + f_{t-1} R_fi + o_{t-1} R_oi)
        f_t = recurrent_activation(... + i_{t-1} R_if + f_{t-1} R_ff + o_{t-1} R_of)
        o_t = recurrent_activation(... + i_{t-1} R_io + f_{t-1} R_fo + o_{t-1} R_oo)

    (``...``: the vanilla terms). The weights add ``gate_recurrent_kernel``
    ``(3u, 3u)``, rows and columns in the order i, f, o, initialised like
    ``recurrent_kernel``; the state is ``[h, c, i, f, o]``, the gates starting at 0.
    """

    full_gate_recurrence = True
