"""The recurrent layer that runs this package's cells, and `make_rnn`, which
builds one from a cell name."""

import contextlib

import keras
from keras import ops, tree

from seqapps.layers.coupled_lstm import CoupledLSTMCell
from seqapps.layers.gated_cell import GatedCell
from seqapps.layers.greff_variants import (
    FullGateRecurrenceLSTMCell,
    NoForgetGateLSTMCell,
    NoInputActivationLSTMCell,
    NoInputGateLSTMCell,
    NoOutputActivationLSTMCell,
    NoOutputGateLSTMCell,
)
from seqapps.layers.gru import GRUCell
from seqapps.layers.keras_internals import cudnn_ok, flatten_layers
from seqapps.layers.keras_internals import gru as backend_gru
from seqapps.layers.keras_internals import lstm as backend_lstm
from seqapps.layers.keras_internals import rnn as backend_rnn
from seqapps.layers.lstm import LSTMCell
from seqapps.layers.peephole_lstm import PeepholeLSTMCell

CELLS = {
    "lstm": LSTMCell,
    "peephole": PeepholeLSTMCell,
    "cifg": CoupledLSTMCell,
    "gru": GRUCell,
    # Greff et al.'s variants of the vanilla LSTM (peephole): layers/greff_variants.py
    "nig": NoInputGateLSTMCell,
    "nfg": NoForgetGateLSTMCell,
    "nog": NoOutputGateLSTMCell,
    "niaf": NoInputActivationLSTMCell,
    "noaf": NoOutputActivationLSTMCell,
    "fgr": FullGateRecurrenceLSTMCell,
}


@keras.saving.register_keras_serializable(package="seqapps")
class GatedRNN(keras.layers.RNN):
    """``keras.layers.RNN`` that runs this package's cells as fast as Keras runs its own.

    For a ``GatedCell`` it takes one of two paths, chosen once, when the layer is made:

    - the fused kernel (cuDNN) that ``keras.layers.LSTM``/``GRU`` use, for a cell whose
      math it computes exactly (``cell.cudnn_mode``: ``lstm``, ``cifg``, ``gru`` with
      ``reset_after=True``) with tanh/sigmoid activations, a bias and no recurrent
      dropout, not unrolled, on a backend and device that have it (a GPU). As in
      Keras, a call the backend's kernel cannot take (JAX and PyTorch take no mask)
      runs the generic loop instead, and at masked steps of ``return_sequences``
      the output is zero;
    - otherwise the generic loop, with ``x W + b`` computed for the whole sequence in
      one matmul before it, leaving only the recurrent half of the step
      (``cell.step``) inside: the same numbers as running ``cell.call`` step by step.

    Any other cell runs exactly as in ``keras.layers.RNN``. Arguments are those of
    ``keras.layers.RNN``, and ``use_cudnn`` as ``keras.layers.LSTM``: ``"auto"``,
    ``True`` (an error where the fused kernel cannot run) or ``False``.
    """

    def __init__(self, cell, use_cudnn="auto", **kwargs):
        super().__init__(cell, **kwargs)
        self.use_cudnn = use_cudnn

    @property
    def use_cudnn(self):
        return self._use_cudnn

    @use_cudnn.setter
    def use_cudnn(self, value):
        if value not in ("auto", True, False):
            raise ValueError(f"`use_cudnn` must be 'auto', True or False, got {value!r}.")
        self._use_cudnn = value
        cell = self.cell
        self.fused = (
            value is not False
            and isinstance(cell, GatedCell)
            and cell.cudnn_mode is not None
            and not cell.recurrent_dropout
            and cudnn_ok(cell.activation, cell.recurrent_activation, self.unroll, cell.use_bias)
        )
        # TensorFlow's cuDNN op does not compile with XLA; every other path does.
        self.supports_jit = not (self.fused and keras.backend.backend() == "tensorflow")

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not isinstance(self.cell, GatedCell):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        if tree.is_nested(mask):
            mask = mask[0]
        initial_state = list(initial_state) if tree.is_nested(initial_state) else [initial_state]
        if self.fused:
            try:
                return self.fused_loop(sequences, initial_state, mask, training)
            except NotImplementedError:
                pass
        if self.use_cudnn is True:
            raise ValueError(
                f"{self.name}: use_cudnn=True, but the fused kernel cannot run this call on this backend "
                "and device; pass use_cudnn='auto' to fall back to the generic loop."
            )
        return self.generic_loop(sequences, initial_state, mask, training)

    def fused_loop(self, sequences, initial_state, mask, training):
        """The loop of the backend's fused LSTM or GRU kernel (cuDNN); raises
        `NotImplementedError` where the backend cannot run it."""
        cell = self.cell
        if training and cell.dropout > 0:
            sequences = sequences * ops.expand_dims(cell.get_dropout_mask(sequences[:, 0]), 1)
        if mask is not None:
            # cuDNN refuses a sequence with no step at all, and inside a tf.function that
            # is an error at run time, not a fallback. Such a row runs its first step, and
            # then gets what the generic loop gives it: zero outputs, its initial state.
            mask = ops.cast(mask, "bool")
            empty = ops.logical_not(ops.any(mask, axis=1))
            first_step = ops.expand_dims(ops.arange(ops.shape(mask)[1]) == 0, 0)
            mask = ops.logical_or(mask, ops.logical_and(ops.expand_dims(empty, 1), first_step))
        kernel, recurrent_kernel, bias = cell.cudnn_weights()
        arguments = dict(
            mask=mask,
            kernel=kernel,
            recurrent_kernel=recurrent_kernel,
            bias=bias,
            activation=cell.activation,
            recurrent_activation=cell.recurrent_activation,
            return_sequences=self.return_sequences,
            go_backwards=self.go_backwards,
            unroll=self.unroll,
        )
        if cell.cudnn_mode == "lstm":
            last_output, outputs, states = backend_lstm(sequences, *initial_state, **arguments)
        else:
            last_output, outputs, states = backend_gru(sequences, initial_state[0], reset_after=True, **arguments)
        if mask is None:
            return last_output, outputs, states
        empty = ops.expand_dims(empty, -1)
        states = [ops.where(empty, initial, state) for initial, state in zip(initial_state, states, strict=True)]
        last_output = ops.where(empty, ops.zeros_like(last_output), last_output)
        if self.return_sequences:
            outputs = ops.where(ops.expand_dims(empty, 1), ops.zeros_like(outputs), outputs)
        return last_output, outputs, states

    def generic_loop(self, sequences, initial_state, mask, training):
        # Keep in step with keras.layers.RNN.inner_loop (see layers/keras_internals.py):
        # the same loop, given the projected sequence and `cell.step` in place of `cell`.
        # Time-major before projecting: the loop wants time-major input, and the
        # transpose is cheaper on x (d wide) than on x W (gates * units wide).
        projected = self.cell.input_projection(ops.transpose(sequences, (1, 0, 2)), training=training)
        if mask is not None:
            mask = ops.transpose(mask, (1, 0))

        def step(inputs, states):
            if keras.backend.backend() == "torch" and self.stateful:
                # As upstream: copies, so that torch's autograd sees no in-place update of the states.
                states = tree.map_structure(ops.copy, states)
            output, new_states = self.cell.step(inputs, states, training=training)
            return output, new_states if tree.is_nested(new_states) else [new_states]

        last_output, outputs, states = backend_rnn(
            step,
            projected,
            initial_state,
            go_backwards=self.go_backwards,
            mask=mask,
            unroll=self.unroll,
            input_length=sequences.shape[1],
            zero_output_for_mask=self.zero_output_for_mask,
            time_major=True,
            return_all_outputs=self.return_sequences,
        )
        return last_output, ops.transpose(outputs, (1, 0, 2)), states

    def get_config(self):
        return {**super().get_config(), "use_cudnn": self.use_cudnn}


@contextlib.contextmanager
def generic_loops(model: keras.layers.Layer):
    """Within this context every ``GatedRNN`` in ``model`` runs the generic loop.

    For what is traced to run elsewhere: a SavedModel traced on the fused path holds
    ``CudnnRNNV3``, which has no CPU kernel (keras-team/keras#18504).
    """
    layers = [layer for layer in flatten_layers(model) if isinstance(layer, GatedRNN)]
    before = [layer.use_cudnn for layer in layers]
    for layer in layers:
        layer.use_cudnn = False
    try:
        yield
    finally:
        for layer, use_cudnn in zip(layers, before, strict=True):
            layer.use_cudnn = use_cudnn


def make_rnn(
    cell: str,
    units: int,
    *,
    return_sequences: bool = False,
    return_state: bool = False,
    bidirectional: bool = False,
    merge_mode: str | None = "concat",
    stateful: bool = False,
    go_backwards: bool = False,
    use_cudnn: str | bool = "auto",
    name: str | None = None,
    dtype=None,
    **cell_kwargs,
) -> keras.layers.Layer:
    """A ready recurrent layer from a cell name.

    Args:
        cell: A name in ``CELLS``: ``"lstm"``, ``"peephole"``, ``"cifg"``, ``"gru"``,
            or one of Greff et al.'s variants ``"nig"``, ``"nfg"``, ``"nog"``,
            ``"niaf"``, ``"noaf"``, ``"fgr"``.
        units: Units of the cell.
        return_sequences, return_state, stateful, go_backwards: as ``keras.layers.RNN``.
        use_cudnn: as ``keras.layers.LSTM``: the fused kernel where the cell allows it
            (``"auto"``), always (``True``) or never (``False``); see ``GatedRNN``.
        bidirectional: Wrap the layer in ``keras.layers.Bidirectional``.
        merge_mode: ``Bidirectional``'s merge mode.
        name: Name of the returned layer.
        dtype: dtype or dtype policy of the cell and the layers around it.
        **cell_kwargs: Passed to the cell (``dropout``, ``recurrent_dropout``,
            ``seed``, initializers, ``reset_after``, ...).

    Returns:
        A ``GatedRNN``, or a ``Bidirectional`` around one.
    """
    if cell not in CELLS:
        raise ValueError(f"Unknown cell {cell!r}; valid names: {', '.join(CELLS)}.")
    layer = GatedRNN(
        CELLS[cell](units, dtype=dtype, **cell_kwargs),
        return_sequences=return_sequences,
        return_state=return_state,
        stateful=stateful,
        go_backwards=go_backwards,
        use_cudnn=use_cudnn,
        name=None if bidirectional else name,
        dtype=dtype,
    )
    if bidirectional:
        return keras.layers.Bidirectional(layer, merge_mode=merge_mode, name=name, dtype=dtype)
    return layer
