"""Models a practitioner reaches for: dense nets, ConvNets, recurrent nets, and transfer from a checkpoint.

Every model is `Net(body, head)`: the body turns inputs into features, the head maps
features to the task's outputs (1 logit for binary, k logits for k classes, 1 value
for regression; the loss in `train.py` supplies sigmoid/softmax). Keeping the two
apart is what makes transfer learning a matter of swapping the head.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from tunectl import builders, recurrent
from tunectl.builders import is_reference
from tunectl.config import TrainConfig, from_dict
from tunectl.errors import ConfigError

CHECKPOINT_FORMAT = "tunectl-checkpoint"
CHECKPOINT_VERSION = 1


class Net(nn.Module):
    def __init__(self, body: nn.Module, head: nn.Module, adapt: nn.Module | None = None):
        super().__init__()
        self.adapt = adapt or nn.Identity()
        self.body = body
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.adapt(x)))

    def train(self, mode: bool = True) -> "Net":
        super().train(mode)
        # a frozen BatchNorm keeps its pretrained running statistics too, not only its weights
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None and not m.weight.requires_grad:
                m.eval()
        return self


def _activation(name: str) -> nn.Module:
    return {"relu": nn.ReLU(), "leaky_relu": nn.LeakyReLU(0.01), "tanh": nn.Tanh(), "sigmoid": nn.Sigmoid()}[name]


def init_weights(module: nn.Module, activation: str) -> None:
    """He init for ReLU-family layers (keeps activations' variance at depth), Xavier for tanh/sigmoid."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            if activation in ("relu", "leaky_relu"):
                nn.init.kaiming_normal_(m.weight, a=0.01 if activation == "leaky_relu" else 0.0, nonlinearity=activation)
            else:
                nn.init.xavier_normal_(m.weight, gain=nn.init.calculate_gain(activation))
            nn.init.zeros_(m.bias)


def _dense(n_in: int, cfg: TrainConfig) -> tuple[list[nn.Module], int]:
    layers: list[nn.Module] = []
    for _ in range(cfg.depth):
        layers += [nn.Linear(n_in, cfg.width), _activation(cfg.activation)]
        if cfg.dropout > 0:
            layers.append(nn.Dropout(cfg.dropout))
        n_in = cfg.width
    return layers, n_in


def _mlp_body(cfg: TrainConfig, input_shape: tuple[int, ...]) -> tuple[nn.Module, int]:
    layers, n_out = _dense(math.prod(input_shape), cfg)
    return nn.Sequential(nn.Flatten(), *layers), n_out


def _cnn_body(cfg: TrainConfig, input_shape: tuple[int, ...]) -> tuple[nn.Module, int]:
    if len(input_shape) != 3:
        raise ConfigError(f"model=cnn needs image data (C x H x W); this data set has shape {input_shape}: use model=mlp")
    c, h, w = input_shape
    layers: list[nn.Module] = []
    for i in range(cfg.conv_layers):
        out = cfg.filters * 2**i
        # 'same' padding keeps H x W, so only the pooling shrinks the image
        layers += [nn.Conv2d(c, out, cfg.kernel_size, padding=cfg.kernel_size // 2), _activation(cfg.activation)]
        if min(h, w) >= 2:
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        c = out
    dense, n_out = _dense(c * h * w, cfg)
    return nn.Sequential(*layers, nn.Flatten(), *dense), n_out


def build_model(cfg: TrainConfig, input_shape: tuple[int, ...], out_dim: int, vocab: int = 0) -> Net:
    """A fresh, initialised model for this config and data shape (`vocab`: token sequences' vocabulary size).

    Your own builder (model: FILE.py:FUNCTION) makes the body and keeps its own initialisation;
    its raw outputs meet the same losses (and so the same heads) as tunectl's own models."""
    if is_reference(cfg.model):
        return Net(builders.build(cfg.model, cfg.model_sha256 or None, input_shape, out_dim, cfg.model_params),
                   nn.Identity())
    if cfg.model == "transfer":
        return _transfer(cfg, input_shape, out_dim)
    if cfg.init_from:  # silently training from scratch would hide the mistake
        raise ConfigError(f"init_from={cfg.init_from!r} is set but model={cfg.model}: add --model transfer to start "
                          f"from that checkpoint, or drop --init-from")
    if cfg.model == "rnn":
        net = Net(*recurrent.build(cfg, input_shape, out_dim, vocab))
        net.vocab = vocab  # saved by checkpoint(): the embedding's size without the data
        return net
    if vocab:
        raise ConfigError(f"model={cfg.model} cannot read token sequences (integers with 0 as padding); "
                          f"use --model rnn, which embeds them")
    body, n_features = (_cnn_body if cfg.model == "cnn" else _mlp_body)(cfg, input_shape)
    head = nn.Linear(n_features, out_dim)
    net = Net(body, head)
    init_weights(body, cfg.activation)
    nn.init.xavier_normal_(head.weight)  # the head is linear: Xavier with gain 1
    nn.init.zeros_(head.bias)
    return net


def config_for(values: dict[str, Any], allow_changed: bool = False) -> TrainConfig:
    """Hyperparameter values (--set, a params file, --model) -> TrainConfig. With your own builder,
    the names it takes go to it (builders.route) and its file's SHA-256 is recorded; a recorded
    hash the file no longer has is refused unless `allow_changed` (--allow-changed-model)."""
    from tunectl.config import FIELD_NAMES

    model = values.get("model")
    if not is_reference(model):
        return from_dict(values)
    recorded = values.get("model_sha256") or None
    fn = builders.function(model, None if allow_changed else recorded)
    values = {**values, "model_sha256": builders.sha256(model)}
    names, any_ok = builders.signature(fn)
    return from_dict(builders.route(values, model, FIELD_NAMES, names, any_ok))


# ----------------------------------------------------------------------------- checkpoints


def checkpoint(model: Net, cfg: TrainConfig, input_shape: tuple[int, ...], out_dim: int, task: str,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything needed to rebuild the model, as plain data that `weights_only` loading accepts."""
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": cfg.to_dict(),
        "input_shape": list(input_shape),
        "out_dim": out_dim,
        "task": task,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        # a transferred model's body is shaped by the model it came from
        **({"source_config": model.source_config} if getattr(model, "source_config", None) else {}),
        **({"vocab": model.vocab} if getattr(model, "vocab", 0) else {}),
        **(extra or {}),
    }


def save_checkpoint(path: Path, ckpt: dict[str, Any]) -> None:
    """Write to a temporary file and rename: a kill mid-write never leaves a truncated model.pt."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(ckpt, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Load a tunectl checkpoint safely: `weights_only=True` never runs pickled code."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such checkpoint; give the model.pt of a tunectl run or export")
    ckpt = _safe_load(path, "not a tunectl checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"{path}: not a tunectl checkpoint (no '{CHECKPOINT_FORMAT}' marker); use a model.pt written by tunectl")
    return ckpt


def _safe_load(path: Path | str, what: str, hint: str = "") -> Any:
    """torch.load with weights_only=True: never runs pickled code; any refusal is one line."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling refusal means "not what we expect"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{path}: {what}, refused without unpickling ({first[:120]}){hint}") from None


def model_from_checkpoint(ckpt: dict[str, Any], allow_changed: bool = False) -> tuple[Net, TrainConfig]:
    """Rebuild a saved model (structure from its config, weights from its state dict). A user
    model is rebuilt by its builder, whose file must still have the recorded SHA-256 unless
    `allow_changed` (--allow-changed-model)."""
    cfg = from_dict(ckpt["config"])
    if allow_changed and is_reference(cfg.model):
        cfg = cfg.replace(model_sha256=builders.sha256(cfg.model))
    shape, out_dim = tuple(ckpt["input_shape"]), int(ckpt["out_dim"])
    if cfg.model == "transfer":  # the structure comes from the recorded source, never from init_from's file
        if cfg.arch == "tunectl" and not ckpt.get("source_config"):
            raise ConfigError("this transfer checkpoint does not record its source model; re-train it with this tunectl")
        model = _transfer_shell(cfg, shape, out_dim, ckpt.get("source_config"))
    else:
        model = build_model(cfg, shape, out_dim, int(ckpt.get("vocab") or 0))
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise ConfigError(f"checkpoint weights do not fit its own config ({str(e).splitlines()[0][:120]}); "
                          f"the file was changed or written by another version") from None
    return model, cfg


# ----------------------------------------------------------------------------- transfer learning
#
# A transferred model is Net(adapt, body, head) with the body taken from a source and a new
# head for the new task. The source is a tunectl checkpoint (arch=tunectl: its body; a
# source that was itself transferred hands on the body it got) or a torchvision network
# with a local weights file (arch=resnet18 | mobilenet_v3_small). The transferred model's
# checkpoint records the source's config as `source_config`, so evaluation and export
# rebuild it without the source file.

TORCHVISION_SIZE = 32  # torchvision bodies halve the image 5 times: smaller inputs are resized to 32 x 32
NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


class _Adapt(nn.Module):
    """Make images fit a torchvision body: 1 channel -> 3 (repeated), small images -> size x size."""

    def __init__(self, size: int = TORCHVISION_SIZE):
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if min(x.shape[-2:]) < self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return x


def _torchvision_body(arch: str, input_shape: tuple[int, ...]) -> tuple[nn.Module, int, nn.Module]:
    from torchvision import models as tvm

    if len(input_shape) != 3 or input_shape[0] not in (1, 3):
        raise ConfigError(f"arch={arch} needs images with 1 or 3 channels; this data set has shape {input_shape}: "
                          f"use arch=tunectl with a tunectl checkpoint")
    if arch == "resnet18":
        net = tvm.resnet18(weights=None)  # structure only: the weights come from the local file
        n = net.fc.in_features
        net.fc = nn.Identity()
    else:
        net = tvm.mobilenet_v3_small(weights=None)
        n = net.classifier[0].in_features
        net.classifier = nn.Identity()
    return net, n, _Adapt()


def _source_body(source_config: dict[str, Any], input_shape: tuple[int, ...]) -> tuple[nn.Module, int, nn.Module | None]:
    source_config = dict(source_config)
    out_dim = source_config.pop("out_dim", None)  # a user model's: its builder needs it to build
    vocab = int(source_config.pop("vocab", 0) or 0)  # a recurrent net on tokens: its embedding's size
    src = from_dict(source_config)
    if is_reference(src.model):  # your own model: all of it is the body, its raw outputs the features
        return builders.build(src.model, src.model_sha256 or None, input_shape, int(out_dim or 1), src.model_params), \
            int(out_dim or 1), None
    if src.model == "transfer":  # a torchvision-bodied transfer (a tunectl-bodied one records its own source)
        return _torchvision_body(src.arch, input_shape)
    if src.model == "rnn":
        body, n = recurrent.body(src, input_shape, vocab)
        return body, n, None
    body, n = (_cnn_body if src.model == "cnn" else _mlp_body)(src, input_shape)
    return body, n, None


def _transfer_shell(cfg: TrainConfig, input_shape: tuple[int, ...], out_dim: int,
                    source_config: dict[str, Any] | None) -> Net:
    """The transfer model's structure (no pretrained weights yet): the source's body, a new head."""
    if cfg.arch == "tunectl":
        body, n_features, adapt = _source_body(source_config or {}, input_shape)
    else:
        body, n_features, adapt = _torchvision_body(cfg.arch, input_shape)
    net = Net(body, nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(n_features, out_dim)), adapt)
    if cfg.arch == "tunectl":
        net.source_config = source_config  # saved by checkpoint(): the body's shape without the source file
    return net


def _transfer(cfg: TrainConfig, input_shape: tuple[int, ...], out_dim: int) -> Net:
    if not cfg.init_from:
        raise ConfigError("model=transfer needs a checkpoint: --init-from PATH (a tunectl model.pt), or "
                          "--set arch=resnet18 --weights PATH (a local torchvision state dict)")
    if cfg.arch == "tunectl":
        net = _from_tunectl(cfg, input_shape, out_dim)
    else:
        net = _transfer_shell(cfg, input_shape, out_dim, None)
        _load_torchvision_weights(net, cfg)
    head = net.head[-1]
    nn.init.xavier_normal_(head.weight)
    nn.init.zeros_(head.bias)
    _freeze(net, cfg.freeze)
    return net


def _from_tunectl(cfg: TrainConfig, input_shape: tuple[int, ...], out_dim: int) -> Net:
    try:
        src = load_checkpoint(cfg.init_from)
    except ConfigError as e:
        raise ConfigError(f"{e} (torchvision weights? add --set arch=resnet18 or arch=mobilenet_v3_small)") from None
    if tuple(src["input_shape"]) != tuple(input_shape):
        raise ConfigError(
            f"{cfg.init_from}: trained on inputs of shape {tuple(src['input_shape'])}, this data set has "
            f"{tuple(input_shape)}; transfer needs the same kind of input"
        )
    source = src.get("source_config") or src["config"]
    if is_reference(source.get("model")):  # your own model as the source: its builder needs its out_dim
        source = {**source, "out_dim": src["out_dim"]}
    if src.get("vocab"):  # a recurrent net on tokens: its embedding's size
        source = {**source, "vocab": src["vocab"]}
    net = _transfer_shell(cfg, input_shape, out_dim, source)
    body = {k.removeprefix("body."): v for k, v in src["state_dict"].items() if k.startswith("body.")}
    try:
        net.body.load_state_dict(body)
    except RuntimeError as e:
        raise ConfigError(f"{cfg.init_from}: its weights do not fit its config ({str(e).splitlines()[0][:120]})") from None
    return net


def _load_torchvision_weights(net: Net, cfg: TrainConfig) -> None:
    path, arch = cfg.init_from, cfg.arch
    hint = f"save one with torch.save(torchvision.models.{arch}(weights=...).state_dict(), PATH)"
    if not Path(path).is_file():
        raise ConfigError(f"{path}: no such weights file; {hint}")
    state = _safe_load(path, f"not a {arch} state dict", f"; {hint}")
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
        raise ConfigError(f"{path} is a tunectl checkpoint: start from it with arch=tunectl (the default)")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{path}: not a state dict of tensors; {hint}")
    state = {k: v for k, v in state.items() if not k.startswith(("fc.", "classifier."))}  # the old head goes
    try:
        missing, unexpected = net.body.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shapes differ: weights of another network
        raise ConfigError(f"{path}: does not fit {arch} ({str(e).splitlines()[-1].strip()[:120]}); {hint}") from None
    if missing or unexpected:
        raise ConfigError(f"{path}: does not fit {arch} (missing {missing[:1]}, unexpected {unexpected[:1]}); {hint}")


def _freeze(net: Net, freeze: str) -> None:
    """Fix pretrained parameters: the whole body, or all but its last N layers.

    A layer is a Linear or Conv2d together with the norm layers after it (a BatchNorm
    goes with its conv), counted in the order the body runs them.
    """
    if freeze == "none":
        return
    layers: list[list[nn.Module]] = []
    for m in net.body.modules():
        if not any(True for _ in m.parameters(recurse=False)):
            continue
        if isinstance(m, NORMS) and layers:
            layers[-1].append(m)
        else:
            layers.append([m])
    keep = 0 if freeze == "body" else int(freeze.removeprefix("all_but_last_"))
    for layer in layers[: max(0, len(layers) - keep)]:
        for m in layer:
            for p in m.parameters(recurse=False):
                p.requires_grad_(False)


def param_groups(net: Net, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Optimizer parameter groups: a transferred body may learn at `lr * body_lr_scale`."""
    trainable = lambda ps: [p for p in ps if p.requires_grad]  # noqa: E731
    if cfg.model != "transfer":
        return [{"params": trainable(net.parameters())}]
    groups = [{"params": trainable([*net.head.parameters(), *net.adapt.parameters()])}]
    body = trainable(net.body.parameters())
    if body:
        groups.append({"params": body, "lr": cfg.lr * cfg.body_lr_scale})
    return groups
