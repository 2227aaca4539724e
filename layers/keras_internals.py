"""Every private Keras API that seqapps uses, in one place.

Tested with Keras 3.15 (setup.cfg allows keras>=3.5,<3.16). Keras 3 exports neither
of these publicly; when Keras moves them, this module is the one to change, and
`GatedRNN.inner_loop` (layers/rnn.py) is to be compared with the upstream
`keras.src.layers.rnn.rnn.RNN.inner_loop` it overrides.

- `rnn`: the time loop `keras.layers.RNN` runs (`keras.src.backend.rnn`).
- `DropoutRNNCell`: the mixin Keras' own cells use to draw one dropout mask per
  sequence and reuse it at every step; `keras.layers.RNN` prepares and resets it.
"""

from keras.src.backend import rnn
from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell

__all__ = ["DropoutRNNCell", "rnn"]
