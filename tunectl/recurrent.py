"""Recurrent nets: torch's RNN, GRU or LSTM over sequences of vectors or tokens, read to their last step.

`model: rnn` is `Net(body, head)` like every tunectl model: the body (`Reader`) runs the
stacked recurrent layers and returns the last layer's final state (both directions' when
bidirectional), the head is a dropout and a linear layer on it. Two kinds of input:

- float sequences, N x T x F (an npz, or an image data set read with --as-sequence): every
  sequence has all T steps. Images (N x C x H x W) are read the same way, row by row (H steps
  of C * W features, `sequences.rows`), keeping their per-channel scaling and augmentation;
- token sequences, N x T integers with 0 as padding (an npz of token ids, or a CSV's text
  column read as characters): an embedding of size `embed` per token, and each sequence's
  own length (its last non-zero token) honoured with `pack_padded_sequence`, so the final
  state is the one after its last real token, not after the padding. The data keep one
  padded tensor; each batch is cut to its own longest sequence before the embedding.

The cells are torch's (`nn.RNN` with tanh, `nn.GRU`, `nn.LSTM`), with their own
initialization; `dropout` acts between stacked layers (torch's) and before the head.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from tunectl.config import TrainConfig
from tunectl.errors import ConfigError
from tunectl.sequences import rows

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


def lengths_of(tokens: torch.Tensor) -> torch.Tensor:
    """Each token sequence's length: the position of its last non-zero token (0 is padding), at least 1."""
    steps = torch.arange(1, tokens.shape[1] + 1, device=tokens.device)
    return ((tokens != 0) * steps).amax(dim=1).clamp(min=1)


class Reader(nn.Module):
    """Stacked recurrent layers; forward returns the final state of the last layer, N x hidden (x 2)."""

    def __init__(self, cfg: TrainConfig, n_features: int, vocab: int = 0, images: bool = False):
        super().__init__()
        self.images = images  # N x C x H x W inputs, read row by row
        self.embedding = nn.Embedding(vocab, cfg.embed, padding_idx=0) if vocab else None
        n_in = cfg.embed if vocab else n_features
        # torch warns that dropout needs num_layers > 1: with one layer it acts before the head only
        between = cfg.dropout if cfg.depth > 1 else 0.0
        self.rnn = CELLS[cfg.cell](n_in, cfg.hidden, num_layers=cfg.depth, batch_first=True, dropout=between,
                                   bidirectional=cfg.bidirectional)
        self.directions = 2 if cfg.bidirectional else 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rnn.flatten_parameters()  # cuDNN wants one weight block; a no-op on the CPU or when already flat
        if self.embedding is not None:
            lengths = lengths_of(x).cpu()  # pack_padded_sequence takes the lengths on the CPU
            x = self.embedding(x[:, : int(lengths.max())])  # this batch's own padding, not the data set's
            _, state = self.rnn(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
        else:
            _, state = self.rnn(rows(x) if self.images else x)
        h = state[0] if isinstance(state, tuple) else state  # an LSTM's state is (h, c)
        # h: (layers x directions, N, hidden); the last layer's forward state is its last step, the
        # backward one read the sequence from the end back to its first step
        return torch.cat(list(h[-self.directions:]), dim=1)


def body(cfg: TrainConfig, input_shape: tuple[int, ...], vocab: int = 0) -> tuple[nn.Module, int]:
    """The recurrent body for this data shape (T x F floats, or T tokens of a `vocab`-token vocabulary)."""
    if cfg.depth < 1:
        raise ConfigError(f"model=rnn: depth={cfg.depth}, but a recurrent net needs at least one layer; "
                          f"use depth=1 or more (stacked recurrent layers)")
    if vocab:
        if len(input_shape) != 1:
            raise ConfigError(f"model=rnn: token sequences are N x T integers; this data set has shape {input_shape}")
        return Reader(cfg, 0, vocab), cfg.hidden * (2 if cfg.bidirectional else 1)
    n = cfg.hidden * (2 if cfg.bidirectional else 1)
    if len(input_shape) == 3:  # an image: H steps of C * W features
        return Reader(cfg, input_shape[0] * input_shape[2], images=True), n
    if len(input_shape) != 2:
        raise ConfigError(f"model=rnn reads sequences (T steps x F features) or images; this data set has shape "
                          f"{tuple(input_shape)}: add --as-sequence to read each row as steps of one feature "
                          f"(npz integers: as tokens), or give x as N x T x F")
    return Reader(cfg, input_shape[1]), n


def build(cfg: TrainConfig, input_shape: tuple[int, ...], out_dim: int, vocab: int = 0) -> tuple[nn.Module, nn.Module]:
    """(body, head) of a fresh recurrent net: torch's own initialization for the cells, Xavier for the head."""
    reader, n = body(cfg, input_shape, vocab)
    linear = nn.Linear(n, out_dim)
    nn.init.xavier_normal_(linear.weight)
    nn.init.zeros_(linear.bias)
    return reader, nn.Sequential(nn.Dropout(cfg.dropout), linear)
