"""The recurrent layer that runs this package's cells, and `make_rnn`, which
builds one from a cell name."""

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
    """``keras.layers.RNN`` that projects the inputs of all time steps at once.

    For a ``GatedCell`` it computes ``x W + b`` for the whole sequence in one
    matmul before the time loop, and the loop runs only the recurrent half of the
    step (``cell.step``). This is the lever behind the speed of cuDNN's LSTM, and
    it gives the same numbers as running ``cell.call`` step by step. Any other cell
    runs exactly as in ``keras.layers.RNN``. Arguments are those of
    ``keras.layers.RNN``.
    """

    def inner_loop(self, sequences, initial_state, mask, training=False):
        # Keep in step with keras.layers.RNN.inner_loop (see layers/keras_internals.py):
        # the same loop, given the projected sequence and `cell.step` in place of `cell`.
        if not isinstance(self.cell, GatedCell):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        if tree.is_nested(mask):
            mask = mask[0]
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
            list(initial_state) if tree.is_nested(initial_state) else [initial_state],
            go_backwards=self.go_backwards,
            mask=mask,
            unroll=self.unroll,
            input_length=sequences.shape[1],
            zero_output_for_mask=self.zero_output_for_mask,
            time_major=True,
            return_all_outputs=self.return_sequences,
        )
        return last_output, ops.transpose(outputs, (1, 0, 2)), states


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
        name=None if bidirectional else name,
        dtype=dtype,
    )
    if bidirectional:
        return keras.layers.Bidirectional(layer, merge_mode=merge_mode, name=name, dtype=dtype)
    return layer
