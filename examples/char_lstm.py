"""A character LSTM for Shakespeare-style next-character prediction, for
`fl train --model torch:examples/char_lstm.py:CharLSTM` on a partition of token sequences
(`fl partition leaf:PATH --text chars`). Needs flcli[torch].

The model of LEAF's Shakespeare benchmark (Caldas et al. 2018, after McMahan et al. 2017): an
8-dimensional character embedding, two LSTM layers of 256 units, and a linear output over the
classes from the last position's state. The LSTM's gates are written out (Hochreiter & Schmidhuber
1997, with a forget gate), i_t, f_t, o_t = sigmoid(W [x_t; h_{t-1}] + b), g_t = tanh(...),
c_t = f_t c_{t-1} + i_t g_t, h_t = o_t tanh(c_t), because torch.func.vmap has no batching rule for
nn.LSTM's fused kernel and would train one client at a time.
"""

import torch
from torch import nn


class LSTMLayer(nn.Module):
    def __init__(self, inputs: int, units: int):
        super().__init__()
        self.units = units
        self.gates = nn.Linear(inputs + units, 4 * units)

    def forward(self, x):  # [N, T, inputs] -> [N, T, units]
        h = x.new_zeros(x.shape[0], self.units)
        c = x.new_zeros(x.shape[0], self.units)
        states = []
        for t in range(x.shape[1]):
            i, f, g, o = self.gates(torch.cat([x[:, t], h], dim=1)).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            states.append(h)
        return torch.stack(states, dim=1)


class CharLSTM(nn.Module):
    default_lr = 0.5

    def __init__(self, num_classes: int, vocabulary_size: int, embedding=8, hidden=256, layers=2):
        super().__init__()
        self.embed = nn.Embedding(vocabulary_size, embedding)
        sizes = [embedding] + [hidden] * layers
        pairs = zip(sizes[:-1], sizes[1:], strict=True)
        self.layers = nn.Sequential(*(LSTMLayer(inputs, units) for inputs, units in pairs))
        self.output = nn.Linear(hidden, num_classes)

    def forward(self, tokens):  # [N, T] token ids -> [N, num_classes]
        return self.output(self.layers(self.embed(tokens))[:, -1])
