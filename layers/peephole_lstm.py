import keras
from keras import constraints, initializers, ops, regularizers

from seqapps.layers.lstm import LSTMCell


@keras.saving.register_keras_serializable(package="seqapps")
class PeepholeLSTMCell(LSTMCell):
    """LSTM cell with peephole connections (Gers & Schmidhuber 2000), the "vanilla"
    LSTM (V) of Greff et al. 2015, "LSTM: A Search Space Odyssey".

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

    Greff et al.'s variants of this cell (``layers/greff_variants.py``) are
    subclasses that switch one part of these equations off or on, through the
    class attributes below; the step is written once, here.

    Args:
        units, ...: as ``LSTMCell``.
        peephole_initializer: Initializer of the peephole vectors
            (``glorot_uniform``, as TensorFlow's former ``PeepholeLSTMCell``).
        peephole_regularizer: Regularizer of the peephole vectors.
        peephole_constraint: Constraint of the peephole vectors.
    """

    # The units-wide blocks of the kernels, in Keras' order: gates i, f, candidate c, gate o.
    # A variant without a gate leaves its block (and peephole) out; the gate is 1.
    blocks = "ifco"
    cudnn_mode = None  # cuDNN has no peepholes
    input_activation = True  # False: the candidate is linear (NIAF)
    output_activation = True  # False: h_t = o_t * c_t (NOAF)
    full_gate_recurrence = False  # True: the gates also see all gates of t-1 (FGR)

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
        if self.full_gate_recurrence:  # the gate activations of t-1 join the state
            self.state_size = [self.units] * (2 + len(self.gate_names))

    @property
    def gates(self):
        return len(self.blocks)

    @property
    def forget_bias_block(self):
        return self.blocks.index("f") if "f" in self.blocks else None

    @property
    def gate_names(self):
        return [block for block in self.blocks if block != "c"]

    def build(self, input_shape):
        super().build(input_shape)
        self.peepholes = {
            gate: self.add_weight(
                shape=(self.units,),
                name=f"peephole_{gate}",
                initializer=self.peephole_initializer,
                regularizer=self.peephole_regularizer,
                constraint=self.peephole_constraint,
            )
            for gate in self.gate_names
        }
        if self.full_gate_recurrence:
            gates = len(self.gate_names) * self.units
            self.gate_recurrent_kernel = self.add_weight(
                shape=(gates, gates),
                name="gate_recurrent_kernel",
                initializer=self.recurrent_initializer,
                regularizer=self.recurrent_regularizer,
                constraint=self.recurrent_constraint,
            )

    def step(self, projected, states, training=False):
        h_tm1, c_tm1, *gates_tm1 = states
        z = projected + ops.matmul(self.recurrent_input(h_tm1, training), self.recurrent_kernel)
        z = dict(zip(self.blocks, ops.split(z, self.gates, axis=-1), strict=True))
        if self.full_gate_recurrence:
            recurrence = ops.matmul(ops.concatenate(gates_tm1, axis=-1), self.gate_recurrent_kernel)
            for gate, extra in zip(self.gate_names, ops.split(recurrence, len(gates_tm1), axis=-1), strict=True):
                z[gate] = z[gate] + extra

        def gate(name, c):
            if name not in z:
                return ops.ones_like(c)
            return self.recurrent_activation(z[name] + self.peepholes[name] * c)

        i, f = gate("i", c_tm1), gate("f", c_tm1)
        c = f * c_tm1 + i * (self.activation(z["c"]) if self.input_activation else z["c"])
        o = gate("o", c)
        h = o * (self.activation(c) if self.output_activation else c)
        gates = {"i": i, "f": f, "o": o}
        return h, [h, c] + ([gates[name] for name in self.gate_names] if self.full_gate_recurrence else [])

    def get_config(self):
        return {
            **super().get_config(),
            "peephole_initializer": initializers.serialize(self.peephole_initializer),
            "peephole_regularizer": regularizers.serialize(self.peephole_regularizer),
            "peephole_constraint": constraints.serialize(self.peephole_constraint),
        }
