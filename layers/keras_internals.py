"""Every private Keras API that seqapps uses, in one place.

Tested with Keras 3.15 (setup.cfg allows keras>=3.5,<3.16). Keras 3 exports none of
these publicly; when Keras moves them, this module is the one to change, and
`GatedRNN.inner_loop` (layers/rnn.py) is to be compared with the upstream
`keras.src.layers.rnn.rnn.RNN.inner_loop` it overrides and with the fused path of
`keras.src.layers.rnn.lstm.LSTM.inner_loop`.

- `rnn`: the time loop `keras.layers.RNN` runs (`keras.src.backend.rnn`).
- `lstm`, `gru`, `cudnn_ok`: the fused kernels `keras.layers.LSTM` and `GRU` hand
  their loop to, on every backend (cuDNN on a GPU), and the backend's test of whether
  they can run; each raises `NotImplementedError` where it cannot.
- `flatten_layers`: a layer and every layer inside it, at any depth (`Layer._flatten_layers`).
- `DropoutRNNCell`: the mixin Keras' own cells use to draw one dropout mask per
  sequence and reuse it at every step; `keras.layers.RNN` prepares and resets it.
"""

from keras.src.backend import cudnn_ok, gru, lstm, rnn
from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell

__all__ = ["DropoutRNNCell", "cudnn_ok", "flatten_layers", "gru", "lstm", "rnn"]


def flatten_layers(layer):
    return list(layer._flatten_layers(include_self=True, recursive=True))
