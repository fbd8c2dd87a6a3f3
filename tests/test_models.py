"""Models: MLP and CNN shapes, task heads, initialization by activation, checkpoints."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tunectl.config import TrainConfig
from tunectl.errors import ConfigError
from tunectl.models import build_model, checkpoint, load_checkpoint, model_from_checkpoint, save_checkpoint


def layers(model: nn.Module, kind: type) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, kind)]


@pytest.mark.parametrize("depth, width, dropout", [(0, 32, 0.0), (1, 16, 0.0), (3, 64, 0.25)])
def test_mlp_depth_width_dropout(depth, width, dropout):
    model = build_model(TrainConfig(depth=depth, width=width, dropout=dropout), (1, 8, 8), 10)
    dense = layers(model, nn.Linear)
    assert len(dense) == depth + 1  # hidden layers + the head
    assert [m.in_features for m in dense] == [64] + [width] * depth  # the image is flattened
    assert [m.out_features for m in dense] == [width] * depth + [10]
    assert len(layers(model, nn.ReLU)) == depth
    drops = layers(model, nn.Dropout)
    assert len(drops) == (depth if dropout > 0 else 0) and all(d.p == dropout for d in drops)
    assert model(torch.randn(5, 1, 8, 8)).shape == (5, 10)


@pytest.mark.parametrize("activation, kind", [("relu", nn.ReLU), ("leaky_relu", nn.LeakyReLU), ("tanh", nn.Tanh),
                                              ("sigmoid", nn.Sigmoid)])
def test_activation_layers(activation, kind):
    model = build_model(TrainConfig(depth=2, activation=activation), (4,), 3)
    assert len(layers(model, kind)) == 2


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
def test_cnn_same_padding_and_shapes(kernel_size):
    cfg = TrainConfig(model="cnn", conv_layers=2, filters=4, kernel_size=kernel_size, depth=1, width=16)
    model = build_model(cfg, (3, 16, 12), 10)
    convs = layers(model, nn.Conv2d)
    assert [c.out_channels for c in convs] == [4, 8]  # filters double in each block
    assert [c.in_channels for c in convs] == [3, 4]
    assert len(layers(model, nn.MaxPool2d)) == 2
    seen = []
    hooks = [c.register_forward_hook(lambda m, i, o: seen.append((i[0].shape[-2:], o.shape[-2:]))) for c in convs]
    out = model(torch.randn(2, 3, 16, 12))
    for h in hooks:
        h.remove()
    assert out.shape == (2, 10)
    assert all(tuple(i) == tuple(o) for i, o in seen), seen  # 'same': a conv never shrinks the image
    assert [tuple(i) for i, _ in seen] == [(16, 12), (8, 6)]  # only pooling halves it
    assert layers(model, nn.Linear)[0].in_features == 8 * 4 * 3


def test_cnn_deeper_than_the_image_stops_pooling():
    model = build_model(TrainConfig(model="cnn", conv_layers=4, filters=2), (1, 8, 8), 10)
    assert len(layers(model, nn.MaxPool2d)) == 3  # 8 -> 4 -> 2 -> 1, then no more pooling
    assert model(torch.randn(3, 1, 8, 8)).shape == (3, 10)


def test_cnn_needs_images():
    with pytest.raises(ConfigError, match="model=cnn needs image data.*use model=mlp"):
        build_model(TrainConfig(model="cnn"), (30,), 1)


@pytest.mark.parametrize("fixture, out_dim", [("breast_cancer", 1), ("wine", 3), ("iris", 3), ("diabetes", 1),
                                              ("digits", 10)])
def test_head_matches_the_task(request, fixture, out_dim):
    splits = request.getfixturevalue(fixture)
    assert splits.out_dim == out_dim
    model = build_model(TrainConfig(width=8), splits.input_shape, splits.out_dim)
    assert model.head.out_features == out_dim
    assert model(splits.x_dev[:7]).shape == (7, out_dim)


def relu_std(fan_in: int, slope: float = 0.0) -> float:
    return math.sqrt(2.0 / ((1 + slope**2) * fan_in))  # He (Kaiming) normal, fan_in mode


def xavier_std(fan_in: int, fan_out: int, gain: float) -> float:
    return gain * math.sqrt(2.0 / (fan_in + fan_out))


@pytest.mark.parametrize(
    "activation, expected",
    [
        ("relu", relu_std(2000)),
        ("leaky_relu", relu_std(2000, 0.01)),
        ("tanh", xavier_std(2000, 500, 5 / 3)),
        ("sigmoid", xavier_std(2000, 500, 1.0)),
    ],
)
def test_init_by_activation(activation, expected):
    """He init keeps ReLU activations' variance; Xavier (with the activation's gain) for tanh/sigmoid.

    A wide 2000 -> 500 layer has a million weights, so the sample std is within ~0.2% of the
    theoretical one, and the He (0.0316) and Xavier (0.0471 tanh, 0.0283 sigmoid) values are far apart.
    """
    torch.manual_seed(0)
    model = build_model(TrainConfig(depth=1, width=500, activation=activation), (2000,), 1)
    hidden = layers(model, nn.Linear)[0]
    assert hidden.weight.shape == (500, 2000)
    assert hidden.weight.std().item() == pytest.approx(expected, rel=0.01)
    assert abs(hidden.weight.mean().item()) < 1e-3 * 5
    assert torch.count_nonzero(hidden.bias) == 0
    head = model.head  # linear head: Xavier with gain 1
    assert head.weight.std().item() == pytest.approx(xavier_std(500, 1, 1.0), rel=0.2)
    assert torch.count_nonzero(head.bias) == 0


def test_cnn_init_is_he_for_relu():
    torch.manual_seed(0)
    model = build_model(TrainConfig(model="cnn", conv_layers=1, filters=256, kernel_size=5), (64, 8, 8), 2)
    conv = layers(model, nn.Conv2d)[0]
    assert conv.weight.std().item() == pytest.approx(relu_std(64 * 5 * 5), rel=0.01)


def test_seeded_build_is_reproducible():
    torch.manual_seed(1)
    a = build_model(TrainConfig(), (10,), 3)
    torch.manual_seed(1)
    b = build_model(TrainConfig(), (10,), 3)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_checkpoint_round_trip(tmp_path):
    cfg = TrainConfig(model="cnn", conv_layers=1, filters=3, depth=1, width=8)
    model = build_model(cfg, (1, 8, 8), 10)
    save_checkpoint(tmp_path / "m" / "model.pt", checkpoint(model, cfg, (1, 8, 8), 10, "multiclass"))
    assert not list((tmp_path / "m").glob(".*.tmp"))  # written via a temporary file and a rename
    again, cfg2 = model_from_checkpoint(load_checkpoint(tmp_path / "m" / "model.pt"))
    assert cfg2 == cfg
    x = torch.randn(4, 1, 8, 8)
    model.eval(), again.eval()
    assert torch.equal(model(x), again(x))


def test_load_checkpoint_refuses_foreign_files(tmp_path):
    with pytest.raises(ConfigError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "absent.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="not a tunectl checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"this is no zip or pickle")
    with pytest.raises(ConfigError, match="not a tunectl checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
