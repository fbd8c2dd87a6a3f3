"""Does your own model train as fast as tunectl's? The epoch cost of a builder vs the same built-in net.

`tunectl train --model FILE.py:FUNCTION` (issue 11) trains a user's network with tunectl's own
loop. This benchmark times one epoch (training plus the dev evaluation, as `fit` measures it) of

  tunectl   --model cnn: tunectl's ConvNet (models._cnn_body + a linear head)
  builder   --model THIS_FILE.py:tunectl_cnn: the identical network written as a user's builder
            (the function below: same layers in the same order, same He/Xavier initialisation)

through the real command (`tunectl train --json`, in this process, one after the other), so
everything a user's model goes through is in the run: the builder's import and parameters, the
loss tunectl adds for the task, the checkpoint (only the epochs' own seconds are compared). The
two runs of a round use the same seed; the rounds alternate the order so that drift in a shared
machine's speed hits both alike. The script checks that the two networks are the same (the same
weight shapes in the saved checkpoints, and whether, after one epoch from the same seed, the same
weights) and prints both dev errors: with the same seed they should match too, since the builder
makes its layers in tunectl's order and initialises them the same way (if tunectl calls the
builder right after seeding, as it does for its own models).

Target: builder/tunectl within noise (<= 1.05).

    python bench/user_model_cost.py [--dataset digits] [--epochs 3] [--rounds 5] [--data-dir DIR]
                                    [--threads N] [--device cpu] [--json]

The default data set, digits, is embedded (no download, nothing outside the repository);
--dataset mnist reads tunectl's default data folder (data/) or --data-dir.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tunectl.config import TrainConfig  # noqa: E402

DEFAULTS = TrainConfig()  # tunectl's cnn with its defaults: 2 blocks of 16 and 32 filters, 2 x 128 dense
TARGET = 1.05


# ----------------------------------------------------------------------------- the builder


def tunectl_cnn(input_shape: tuple[int, ...], out_dim: int, channels: int = DEFAULTS.filters,
                blocks: int = DEFAULTS.conv_layers, kernel: int = DEFAULTS.kernel_size,
                hidden: int = DEFAULTS.depth, units: int = DEFAULTS.width) -> nn.Module:
    """tunectl's `cnn` (models._cnn_body, then build_model's linear head), written as a user would.

    The names differ from TrainConfig's (channels = filters, blocks = conv_layers, kernel =
    kernel_size, hidden = depth, units = width) so that they are plainly the builder's own.
    Layers are made in the order tunectl makes them and initialised as it does (He for the
    body's convolutions and dense layers, Xavier for the head, zero biases), so that with the
    same seed the two start from the same weights.
    """
    c, h, w = input_shape
    layers: list[nn.Module] = []
    for i in range(blocks):
        out = channels * 2**i
        layers += [nn.Conv2d(c, out, kernel, padding=kernel // 2), nn.ReLU()]
        if min(h, w) >= 2:
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        c = out
    layers.append(nn.Flatten())
    n = c * h * w
    for _ in range(hidden):
        layers += [nn.Linear(n, units), nn.ReLU()]
        n = units
    head = nn.Linear(n, out_dim)
    body = nn.Sequential(*layers)
    for m in body.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, a=0.0, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    nn.init.xavier_normal_(head.weight)
    nn.init.zeros_(head.bias)
    return nn.Sequential(*layers, head)


# ----------------------------------------------------------------------------- the runs


def _train(args: argparse.Namespace, model: str, arch: dict[str, int], epochs: int, seed: int,
           out: Path) -> dict:
    from typer.testing import CliRunner

    from tunectl.cli import app

    argv = ["train", "--model", model, "--dataset", args.dataset, "--epochs", str(epochs), "--seed", str(seed),
            "--set", f"lr={args.lr}", "--set", f"batch_size={args.batch_size}", "--set", "optimizer=adam",
            *[a for k, v in arch.items() for a in ("--set", f"{k}={v}")],
            "--out", str(out), "--json"]
    if args.data_dir:
        argv += ["--data-dir", args.data_dir]
    if args.device:
        argv += ["--device", args.device]
    result = CliRunner().invoke(app, argv)
    if result.exit_code != 0:
        raise SystemExit(f"error: tunectl {' '.join(argv)} failed ({result.exit_code}): "
                         f"{(result.stderr or '').strip() or result.exception}")
    return json.loads(result.stdout)


def _weights(out: Path) -> list[torch.Tensor]:
    """The checkpoint's tensors in order (key names differ: tunectl's Net has body./head. prefixes)."""
    ckpt = torch.load(out / "model.pt", map_location="cpu", weights_only=True)
    return list(ckpt["state_dict"].values())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="digits", help="an image data set (default digits, embedded)")
    p.add_argument("--data-dir", default=None, help="for mnist, fashion_mnist, cifar10 (default: tunectl's, data/)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per model per round (default 3)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--filters", type=int, default=DEFAULTS.filters)
    p.add_argument("--conv-layers", type=int, default=DEFAULTS.conv_layers)
    p.add_argument("--kernel-size", type=int, default=DEFAULTS.kernel_size)
    p.add_argument("--depth", type=int, default=DEFAULTS.depth)
    p.add_argument("--width", type=int, default=DEFAULTS.width)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads, the same for both")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: what tunectl picks)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.rounds < 1:
        p.error("--epochs and --rounds must be at least 1")

    torch.set_num_threads(args.threads)
    models = {
        "tunectl": ("cnn", {"filters": args.filters, "conv_layers": args.conv_layers, "kernel_size": args.kernel_size,
                            "depth": args.depth, "width": args.width}),
        "builder": (f"{Path(__file__).resolve()}:tunectl_cnn",
                    {"channels": args.filters, "blocks": args.conv_layers, "kernel": args.kernel_size,
                     "hidden": args.depth, "units": args.width}),
    }
    times: dict[str, list[float]] = {name: [] for name in models}
    dev: dict[str, list[float | None]] = {name: [] for name in models}
    with tempfile.TemporaryDirectory(prefix="tunectl-bench-") as tmp:
        runs = Path(tmp)
        # warm-up: imports, the data set's first load, allocator and kernels; and the identity check
        for name, (model, arch) in models.items():
            _train(args, model, arch, 1, 0, runs / f"warm-{name}")
        ours, theirs = _weights(runs / "warm-tunectl"), _weights(runs / "warm-builder")
        shapes = [tuple(t.shape) for t in ours]
        if [tuple(t.shape) for t in theirs] != shapes:
            print("error: the builder's network is not tunectl's cnn (their weights' shapes differ); fix tunectl_cnn",
                  file=sys.stderr)
            return 1
        same = all(torch.equal(a, b) for a, b in zip(ours, theirs))  # after one epoch from the same seed
        order = list(models)
        for r in range(args.rounds):
            for name in order if r % 2 == 0 else order[::-1]:
                model, arch = models[name]
                doc = _train(args, model, arch, args.epochs, r, runs / f"{name}-{r}")
                times[name] += [row["seconds"] for row in doc["history"]]
                dev[name].append(doc["dev_error"])
    med = {name: statistics.median(t) for name, t in times.items()}
    ratio = med["builder"] / med["tunectl"]
    same_dev = sum(a == b for a, b in zip(dev["tunectl"], dev["builder"]))
    n_weights = sum(math.prod(s) for s in shapes)

    result = {
        "dataset": args.dataset, "device": args.device or "tunectl's choice", "threads": args.threads,
        "torch": torch.__version__, "rounds": args.rounds, "epochs_per_round": args.epochs,
        "network": {"filters": args.filters, "conv_layers": args.conv_layers, "kernel_size": args.kernel_size,
                    "depth": args.depth, "width": args.width, "weights": n_weights},
        "median_seconds_per_epoch": med, "min_seconds_per_epoch": {k: min(v) for k, v in times.items()},
        "ratio": {"builder/tunectl": ratio}, "target": {"builder/tunectl": TARGET},
        "same_weights_after_one_epoch": same, "dev_errors": dev, "rounds_with_equal_dev_error": same_dev,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.dataset}: tunectl's cnn ({args.conv_layers} conv blocks from {args.filters} filters, kernel "
          f"{args.kernel_size}, {args.depth}x{args.width} dense; {n_weights:,} weights) against the same network "
          f"from a builder; Adam, batch {args.batch_size}")
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.rounds} rounds x {args.epochs} epochs per "
          f"model, interleaved")
    print(f"{'model':<10}{'median s/epoch':>16}{'min s/epoch':>14}   dev error per round")
    for name in models:
        devs = " ".join("-" if d is None else f"{d:.4f}" for d in dev[name])
        print(f"{name:<10}{med[name]:>16.4f}{min(times[name]):>14.4f}   {devs}")
    print(f"builder/tunectl {ratio:6.3f}   (target <= {TARGET}: {'ok' if ratio <= TARGET else 'MISSED'})")
    print(f"same network: {'yes, the same weights after one epoch from the same seed' if same else 'same shapes, other weights after one epoch (another initialisation order?)'}; "
          f"equal dev error in {same_dev} of {args.rounds} rounds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
