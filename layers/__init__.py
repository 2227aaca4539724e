"""Gated recurrent cells of the LSTM family as Keras 3 layers.

    from seqapps.layers import make_rnn
    rnn = make_rnn("peephole", 128, return_sequences=True, bidirectional=True)

`CELLS` names every cell: `lstm`, `peephole`, `cifg`, `gru`, and Greff et al.'s
variants of the vanilla LSTM, `nig`, `nfg`, `nog`, `niaf`, `noaf`, `fgr`.
"""

from seqapps.layers.attention import ATTENTIONS, BahdanauAttention, LuongAttention, make_attention
from seqapps.layers.coupled_lstm import CoupledLSTMCell
from seqapps.layers.gated_cell import ForgetGateCell, GatedCell
from seqapps.layers.greff_variants import (
    FullGateRecurrenceLSTMCell,
    NoForgetGateLSTMCell,
    NoInputActivationLSTMCell,
    NoInputGateLSTMCell,
    NoOutputActivationLSTMCell,
    NoOutputGateLSTMCell,
)
from seqapps.layers.gru import GRUCell
from seqapps.layers.lstm import LSTMCell
from seqapps.layers.peephole_lstm import PeepholeLSTMCell
from seqapps.layers.pooling import GlobalMeanMaxPooling1D
from seqapps.layers.rnn import CELLS, GatedRNN, make_rnn

__all__ = [
    "ATTENTIONS",
    "BahdanauAttention",
    "LuongAttention",
    "make_attention",
    "CELLS",
    "CoupledLSTMCell",
    "ForgetGateCell",
    "FullGateRecurrenceLSTMCell",
    "GRUCell",
    "GatedCell",
    "GatedRNN",
    "GlobalMeanMaxPooling1D",
    "LSTMCell",
    "NoForgetGateLSTMCell",
    "NoInputActivationLSTMCell",
    "NoInputGateLSTMCell",
    "NoOutputActivationLSTMCell",
    "NoOutputGateLSTMCell",
    "PeepholeLSTMCell",
    "make_rnn",
]
