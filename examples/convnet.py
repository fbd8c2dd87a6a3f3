"""A small ConvNet, written the way you would write one in a notebook, ready for tunectl.

tunectl calls `build` once per trial with the shape of one example and the number of outputs
it needs, plus the hyperparameters the search space names for this model:

    tunectl train --model examples/convnet.py:build --set channels=32 --set kernel_size=5
    tunectl tune --space examples/convnet.yaml

`build` returns an ordinary `nn.Module` whose forward gives raw scores (logits): tunectl adds
the loss that fits the task (softmax + cross-entropy here) and trains it with its own loop.
Initialisation is this file's own business: tunectl's He/Xavier rule applies only to its
built-in models, so here PyTorch's default initialisation is used, as in any tutorial.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvNet(nn.Module):
    """Two blocks of conv -> ReLU -> 2x2 max-pool, then dropout and one linear layer.

    The second block has twice the channels of the first (the usual pattern: the image gets
    smaller, the features more numerous). 'Same' padding keeps the image's size through each
    convolution, so only the pooling shrinks it: 8x8 digits become 2x2, 28x28 MNIST 7x7.
    """

    def __init__(self, in_channels: int, height: int, width: int, out_dim: int,
                 channels: int = 16, kernel_size: int = 3, dropout: float = 0.0):
        super().__init__()
        pad = kernel_size // 2  # an odd kernel with this padding keeps H x W
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, channels, kernel_size, padding=pad),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(channels, 2 * channels, kernel_size, padding=pad),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        # How many numbers come out of the conv blocks? Ask them, with one blank image,
        # instead of working it out by hand for every input size.
        with torch.no_grad():
            n_features = self.features(torch.zeros(1, in_channels, height, width)).numel()
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),  # dropout=0.0 is a no-op; raise it when dev error lags train error
            nn.Linear(n_features, out_dim),  # raw scores: no softmax here, tunectl's loss applies it
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def build(input_shape: tuple[int, ...], out_dim: int, channels: int = 16, kernel_size: int = 3,
          dropout: float = 0.0) -> nn.Module:
    """tunectl's entry point: one example's shape (C, H, W) and the outputs the task needs.

    channels     filters of the first block (the second has twice as many): the capacity knob
    kernel_size  odd (3, 5, ...), so that 'same' padding keeps the image's size
    dropout      before the linear layer: the regularization knob
    """
    if len(input_shape) != 3:
        raise ValueError(f"this ConvNet needs images (C x H x W), got examples of shape {tuple(input_shape)}")
    c, h, w = input_shape
    if min(h, w) < 4:
        raise ValueError(f"images of {h}x{w} are too small for two 2x2 poolings; use at least 4x4")
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd (3, 5, ...), got {kernel_size}")
    return ConvNet(c, h, w, out_dim, channels=channels, kernel_size=kernel_size, dropout=dropout)
