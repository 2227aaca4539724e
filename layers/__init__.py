"""Gated recurrent cells of the LSTM family as Keras 3 layers.

from layers import make_rnn
rnn = make_rnn("peephole", 128, return_sequences=True, bidirectional=True)
"""

from layers.attention import ATTENTIONS, BahdanauAttention, LuongAttention, make_attention
from layers.coupled_lstm import CoupledLSTMCell
from layers.gated_cell import ForgetGateCell, GatedCell
from layers.gru import GRUCell
from layers.lstm import LSTMCell
from layers.peephole_lstm import PeepholeLSTMCell
from layers.pooling import GlobalMeanMaxPooling1D
from layers.rnn import CELLS, GatedRNN, make_rnn

__all__ = [
    "ATTENTIONS",
    "BahdanauAttention",
    "LuongAttention",
    "make_attention",
    "CELLS",
    "CoupledLSTMCell",
    "ForgetGateCell",
    "GRUCell",
    "GatedCell",
    "GatedRNN",
    "GlobalMeanMaxPooling1D",
    "LSTMCell",
    "PeepholeLSTMCell",
    "make_rnn",
]
