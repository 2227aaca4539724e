"""What every gated recurrent cell of this package shares.

A gated cell computes each gate as ``act(x_t W + h_{t-1} U + b)``. The ``x_t W + b``
half does not depend on the recurrence, so every cell here splits its step in two:

- ``input_projection(inputs)``: ``x W + b`` for one step ``(batch, d)`` or for a
  whole time-major sequence ``(time, batch, d)`` at once;
- ``step(projected, states)``: the recurrence, given the projected input.

``call(inputs, states)`` is the two chained, so the cells work in a plain
``keras.layers.RNN`` like any Keras cell. ``seqapps.layers.GatedRNN`` projects the whole
sequence in one matmul before the loop, leaving only ``h U`` inside it.
"""

import keras
from keras import activations, constraints, initializers, ops, regularizers
from keras.layers import Layer

from seqapps.layers.keras_internals import DropoutRNNCell


class GatedCell(Layer, DropoutRNNCell):
    """Base class: arguments, weights, dropout and config shared by the cells.

    Subclasses set ``gates`` (how many ``units``-wide blocks the kernels hold),
    implement ``step``, and extend ``build``/``get_config`` with what is theirs.
    The arguments are those of ``keras.layers.LSTMCell``; see the subclasses.
    """

    gates = None
    # The fused kernel (cuDNN's, as keras.layers.LSTM/GRU use it) whose math is exactly
    # this cell's: "lstm", "gru" (reset_after) or None. `GatedRNN` hands the cell to it on
    # a GPU, with the weights of `cudnn_weights`.
    cudnn_mode = None

    def __init__(
        self,
        units,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        **kwargs,
    ):
        if not isinstance(units, int) or units <= 0:
            raise ValueError(f"{type(self).__name__}: `units` must be a positive integer, got {units!r}.")
        for name, rate in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"{type(self).__name__}: `{name}` must be in [0, 1), got {rate!r}.")
        super().__init__(**kwargs)
        self.units = units
        self.activation = activations.get(activation)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.recurrent_constraint = constraints.get(recurrent_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.dropout = float(dropout)
        self.recurrent_dropout = float(recurrent_dropout)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed=seed)
        self.state_size = self.units
        self.output_size = self.units

    # -- weights ---------------------------------------------------------------

    def build(self, input_shape):
        super().build(input_shape)
        width = self.gates * self.units
        self.kernel = self.add_weight(
            shape=(input_shape[-1], width),
            name="kernel",
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, width),
            name="recurrent_kernel",
            initializer=self.recurrent_initializer,
            regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                shape=self.bias_shape(),
                name="bias",
                initializer=self.bias_initial_value,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        else:
            self.bias = None

    def bias_shape(self):
        return (self.gates * self.units,)

    def cudnn_weights(self):
        """``(kernel, recurrent_kernel, bias)`` in the layout of the built-in layer whose
        fused kernel is ``cudnn_mode``; computed from this cell's own weights, so that
        gradients flow back to them."""
        return self.kernel, self.recurrent_kernel, self.bias

    def bias_initial_value(self, shape, dtype=None):
        """Initializer of `bias`; cells override it to set gate biases (e.g. forget bias 1)."""
        return self.bias_initializer(shape, dtype=dtype)

    def input_bias(self):
        """The part of `bias` added to ``x W`` (all of it, except in GRU reset_after)."""
        return self.bias

    # -- the step ----------------------------------------------------------------

    def input_projection(self, inputs, training=False):
        """``x W + b`` for one step ``(batch, d)`` or a time-major sequence ``(time, batch, d)``.

        Input dropout uses one mask per sequence, the same at every time step
        (Gal & Ghahramani 2016), as in Keras' cells; a ``(batch, d)`` mask
        broadcasts over the time axis of a time-major sequence.
        """
        if training and self.dropout > 0:
            first_step = inputs if len(inputs.shape) == 2 else inputs[0]
            inputs = inputs * self.get_dropout_mask(first_step)
        projected = ops.matmul(inputs, self.kernel)
        if self.use_bias:
            projected = projected + self.input_bias()
        return projected

    def recurrent_input(self, h_tm1, training=False):
        """``h_{t-1}`` as the recurrent kernel sees it (after recurrent dropout)."""
        if training and self.recurrent_dropout > 0:
            return h_tm1 * self.get_recurrent_dropout_mask(h_tm1)
        return h_tm1

    def step(self, projected, states, training=False):
        """One time step given ``projected = input_projection(x_t)``; returns (h_t, new_states)."""
        raise NotImplementedError

    def call(self, inputs, states, training=False):
        return self.step(self.input_projection(inputs, training), states, training)

    def get_initial_state(self, batch_size=None):
        sizes = self.state_size if isinstance(self.state_size, (list, tuple)) else [self.state_size]
        return [ops.zeros((batch_size, size), dtype=self.compute_dtype) for size in sizes]

    # -- config ------------------------------------------------------------------

    def get_config(self):
        config = {
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "recurrent_activation": activations.serialize(self.recurrent_activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": initializers.serialize(self.recurrent_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "recurrent_regularizer": regularizers.serialize(self.recurrent_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "recurrent_constraint": constraints.serialize(self.recurrent_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
        }
        return {**super().get_config(), **config}


class ForgetGateCell(GatedCell):
    """Base class of the LSTM family: state ``[h, c]``, and a forget gate whose bias
    ``unit_forget_bias=True`` starts at +1 (Jozefowicz et al. 2015).

    Subclasses say where that bias lives: ``forget_bias_block`` (which ``units``-wide
    block of ``bias``) and ``forget_bias_shift`` (what to add there).
    """

    forget_bias_block = None
    forget_bias_shift = None

    def __init__(self, units, unit_forget_bias=True, **kwargs):
        super().__init__(units, **kwargs)
        self.unit_forget_bias = unit_forget_bias
        self.state_size = [self.units, self.units]

    def bias_initial_value(self, shape, dtype=None):
        bias = self.bias_initializer(shape, dtype=dtype)
        if not self.unit_forget_bias or self.forget_bias_block is None:  # None: a cell with no forget gate
            return bias
        start, end = self.forget_bias_block * self.units, (self.forget_bias_block + 1) * self.units
        return ops.concatenate([bias[:start], bias[start:end] + self.forget_bias_shift, bias[end:]])

    def get_config(self):
        return {**super().get_config(), "unit_forget_bias": self.unit_forget_bias}
