"""A library model as a tunectl builder: torchvision's ResNet, untrained (weights=None).

Any constructor that returns an `nn.Module` fits: here torchvision's ResNet is adapted to
small images with C channels (tunectl passes the data's shape) and to the number of outputs
the task needs:

    tunectl train --model examples/resnet_tiny.py:build --dataset digits --epochs 5
    tunectl train --model examples/resnet_tiny.py:build --set blocks=2 --dataset mnist --data-dir data

ResNet was designed for 224x224 photos: its stem (a 7x7 convolution with stride 2, then a
max-pool) shrinks the image 4x before the first residual block, which would leave nothing of
an 8x8 digit. The usual fix for small images (as for CIFAR) is a 3x3 stride-1 stem and no
max-pool; the residual stages and the classifier are torchvision's own.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet18
from torchvision.models.resnet import BasicBlock, ResNet


def build(input_shape: tuple[int, ...], out_dim: int, blocks: int = 1) -> nn.Module:
    """blocks: residual blocks per stage. 2 is torchvision's resnet18 itself (11M weights);
    1 is the same design at about half the depth and cost (a 'ResNet-10'), cheap enough for
    a CPU."""
    if len(input_shape) != 3:
        raise ValueError(f"ResNet needs images (C x H x W), got examples of shape {tuple(input_shape)}")
    if blocks == 2:
        net = resnet18(weights=None, num_classes=out_dim)  # the library's constructor, no download
    elif blocks >= 1:
        net = ResNet(BasicBlock, [blocks] * 4, num_classes=out_dim)
    else:
        raise ValueError(f"blocks must be >= 1, got {blocks}")
    # a stem for small images with any number of channels: 3x3, stride 1, no max-pool
    net.conv1 = nn.Conv2d(input_shape[0], 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")  # as torchvision does
    net.maxpool = nn.Identity()
    return net  # its forward ends in a linear layer: raw scores, one per output
