"""What does an epoch of tunectl.train.fit cost, next to the loops people write by hand?

On the real MNIST test set (10,000 images, split 6,000 / 2,000 / 2,000), a 2x256 ReLU MLP
trained with Adam on mini-batches of 64, this times one epoch (training plus a dev
evaluation) of:

  fit         tunectl.train.fit, as `tunectl train` and every tuning trial call it: each epoch also
              measures the train error in eval mode on a dev-sized sample of the training split
              (2,000 examples here), the learning curve that compares with dev error
  fit-fast    the same with --fast-curves (fast_curves=True): the running average, no extra pass
  minimal     the least a careful hand-written loop does: tensors in memory, randperm,
              slice, forward, loss, backward, step, running loss summed on the device,
              dev evaluated every epoch, one host sync per epoch
  dataloader  PyTorch's MNIST example: TensorDataset + DataLoader(shuffle=True,
              batch_size=64), loss.item() every batch, test loop over a DataLoader

The methods run interleaved (rounds, alternating order) with the same thread count, so
that drift in the machine's speed hits them alike. Targets: fit-fast/minimal <= 1.05 (the same
work as the hand-written loop), fit/dataloader <= 0.6. fit/fit-fast is what the eval-mode train
curve costs per epoch (about one more dev-sized forward pass: no target, reported).

    python bench/epoch_cost.py [DATA_DIR] [--rounds 5] [--epochs 2] [--threads N] [--device cpu]

DATA_DIR (or $TUNECTL_BENCH_DATA) is required: a folder with the real MNIST test set's
t10k-images-idx3-ubyte(.gz) and t10k-labels-idx1-ubyte(.gz) (from any of torchvision's MNIST
mirrors, e.g. https://ossci-datasets.s3.amazonaws.com/mnist/), or one where torchvision keeps MNIST.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tunectl.config import TrainConfig  # noqa: E402
from tunectl.sources import DataSpec, load_dataset  # noqa: E402
from tunectl.data import make_splits  # noqa: E402
from tunectl.train import evaluate, fit, pick_device, train_sample  # noqa: E402

BATCH, WIDTH, LR = 64, 256, 1e-3
TARGETS = {"fit-fast/minimal": 1.05, "fit/dataloader": 0.6}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain_mlp(n_in: int, n_out: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(n_in, WIDTH), nn.ReLU(), nn.Linear(WIDTH, WIDTH), nn.ReLU(),
                         nn.Linear(WIDTH, n_out))


def run_fit(splits, epochs: int, seed: int, device: torch.device, fast_curves: bool = False) -> list[float]:
    cfg = TrainConfig(model="mlp", depth=2, width=WIDTH, activation="relu", optimizer="adam", lr=LR,
                      batch_size=BATCH, epochs=epochs, seed=seed, fast_curves=fast_curves)
    hist = fit(cfg, splits, device=device)
    # fit times each epoch itself: training, the dev evaluation and keeping the best weights
    # (its one host sync per epoch makes the number complete on a GPU too)
    return [row["seconds"] for row in hist.curve]


def run_minimal(splits, epochs: int, seed: int, device: torch.device) -> list[float]:
    torch.manual_seed(seed)
    model = plain_mlp(splits.x_train[0].numel(), splits.out_dim).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    x, y = splits.x_train.to(device), splits.y_train.to(device)
    x_dev, y_dev = splits.x_dev.to(device), splits.y_dev.to(device)
    n, times = len(x), []
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n, device=device)
        loss_sum = torch.zeros((), device=device)
        for i in range(0, n, BATCH):
            idx = perm[i:i + BATCH]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * len(idx)
        model.eval()
        with torch.inference_mode():
            out = model(x_dev)
            dev_loss, dev_wrong = F.cross_entropy(out, y_dev), (out.argmax(1) != y_dev).sum()
        torch.stack([loss_sum / n, dev_loss, dev_wrong.float()]).tolist()  # the epoch's one host sync
        times.append(time.perf_counter() - t0)
    return times


def run_dataloader(splits, epochs: int, seed: int, device: torch.device) -> list[float]:
    torch.manual_seed(seed)
    model = plain_mlp(splits.x_train[0].numel(), splits.out_dim).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    train_loader = DataLoader(TensorDataset(splits.x_train, splits.y_train), batch_size=BATCH, shuffle=True)
    dev_loader = DataLoader(TensorDataset(splits.x_dev, splits.y_dev), batch_size=1000)  # the example's test batch
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        running = 0.0
        for data, target in train_loader:
            data, target = data.to(device), target.to(device)
            opt.zero_grad()
            loss = F.cross_entropy(model(data), target)
            loss.backward()
            opt.step()
            running += loss.item()  # the example logs loss.item() from inside the batch loop
        model.eval()
        test_loss, correct = 0.0, 0
        with torch.no_grad():
            for data, target in dev_loader:
                data, target = data.to(device), target.to(device)
                output = model(data)
                test_loss += F.cross_entropy(output, target, reduction="sum").item()
                correct += output.argmax(1).eq(target).sum().item()
        times.append(time.perf_counter() - t0)
    return times


def run_fit_fast(splits, epochs: int, seed: int, device: torch.device) -> list[float]:
    return run_fit(splits, epochs, seed, device, fast_curves=True)


METHODS = {"fit": run_fit, "fit-fast": run_fit_fast, "minimal": run_minimal, "dataloader": run_dataloader}
RATIOS = ("fit/fit-fast", "fit/minimal", "fit-fast/minimal", "fit/dataloader", "fit-fast/dataloader")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_dir", nargs="?", default=os.environ.get("TUNECTL_BENCH_DATA"),
                   help="the MNIST test set's folder (required; or $TUNECTL_BENCH_DATA)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per method per round (default 2)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads, the same for all")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: what tunectl picks)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)

    if not args.data_dir:
        print("error: give DATA_DIR, the folder with the MNIST test set's t10k-*-ubyte(.gz) files "
              "(or set TUNECTL_BENCH_DATA); see the top of bench/epoch_cost.py", file=sys.stderr)
        return 2
    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        print(f"error: no MNIST files in {data_dir}; pass DATA_DIR or set TUNECTL_BENCH_DATA", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    ds = load_dataset(DataSpec("mnist", data_dir=str(data_dir)))
    splits = make_splits(ds, ratios=(0.6, 0.2, 0.2), seed=0)
    sizes = splits.manifest["sizes"]

    for run in METHODS.values():  # warm-up: allocator, kernels, lazy imports
        run(splits, 1, 0, device)
        sync(device)
    times: dict[str, list[float]] = {name: [] for name in METHODS}
    cpu: dict[str, list[float]] = {name: [] for name in METHODS}  # CPU seconds of this process per epoch
    order = list(METHODS)
    for r in range(args.rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            c0 = time.process_time()
            times[name] += METHODS[name](splits, args.epochs, r, device)
            sync(device)
            cpu[name].append((time.process_time() - c0) / args.epochs)
    med = {name: statistics.median(t) for name, t in times.items()}
    med_cpu = {name: statistics.median(t) for name, t in cpu.items()}
    ratios = {r: med[r.split("/")[0]] / med[r.split("/")[1]] for r in RATIOS}
    # on a machine shared with other jobs, wall time waits for the cores; the CPU time a method used does not
    cpu_ratios = {r: med_cpu[r.split("/")[0]] / med_cpu[r.split("/")[1]] for r in RATIOS}

    # the extra pass alone, timed many times (CPU seconds: robust on a shared machine): the eval-mode
    # train error on the sample, next to the dev evaluation every epoch already makes
    model = plain_mlp(splits.x_train[0].numel(), splits.out_dim).to(device)
    x, y, rows = splits.x_train.to(device), splits.y_train.to(device), train_sample(splits).to(device)
    passes: dict[str, list[float]] = {"train sample": [], "dev": []}
    for _ in range(20):
        for name, args_ in (("train sample", (x, y, rows)), ("dev", (splits.x_dev.to(device), splits.y_dev.to(device), None))):
            c0 = time.process_time()
            evaluate(model, args_[0], args_[1], splits.task, 1.0, device, args_[2])
            sync(device)
            passes[name].append(time.process_time() - c0)
    pass_cpu = {k: statistics.median(v) for k, v in passes.items()}

    result = {
        "device": str(device), "threads": args.threads, "torch": torch.__version__,
        "sizes": sizes, "batch_size": BATCH, "rounds": args.rounds, "epochs_per_round": args.epochs,
        "median_seconds_per_epoch": med, "min_seconds_per_epoch": {k: min(v) for k, v in times.items()},
        "ratios": ratios,
        "median_cpu_seconds_per_epoch": med_cpu,
        "cpu_ratios": cpu_ratios,
        "pass_cpu_seconds": pass_cpu,
        "pass_share_of_fast_epoch_cpu": pass_cpu["train sample"] / med_cpu["fit-fast"],
        "targets": dict(TARGETS),
        "train_sample": min(sizes["dev"], sizes["train"], 10_000),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"MNIST t10k from {data_dir}: train/dev/test = {sizes['train']}/{sizes['dev']}/{sizes['test']}; "
          f"2x{WIDTH} ReLU MLP, Adam, batch {BATCH}")
    print(f"device {device}, torch {torch.__version__}, {args.threads} thread(s), "
          f"{args.rounds} rounds x {args.epochs} epochs per method, interleaved")
    load = result["load_average"]
    if load:
        print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (the ratios are side by side)")
    print(f"{'method':<12}{'median s/epoch':>16}{'min s/epoch':>14}{'/ minimal':>11}{'/ fit-fast':>12}"
          f"{'CPU s/epoch':>13}{'CPU / fit-fast':>16}")
    for name in METHODS:
        print(f"{name:<12}{med[name]:>16.4f}{min(times[name]):>14.4f}{med[name] / med['minimal']:>11.3f}"
              f"{med[name] / med['fit-fast']:>12.3f}{med_cpu[name]:>13.4f}{med_cpu[name] / med_cpu['fit-fast']:>16.3f}")
    print(f"{'ratio':<20} {'wall':>6} {'CPU':>6}")
    for name in RATIOS:
        target = TARGETS.get(name)
        verdict = f"   (target <= {target}: {'ok' if ratios[name] <= target else 'MISSED'})" if target else ""
        print(f"{name:<20} {ratios[name]:6.3f} {cpu_ratios[name]:6.3f}{verdict}")
    print(f"the eval-mode train curve (a pass over {result['train_sample']:,} training examples) costs "
          f"{ratios['fit/fit-fast'] - 1:+.1%} per epoch over --fast-curves in wall time, "
          f"{cpu_ratios['fit/fit-fast'] - 1:+.1%} in CPU time")
    print(f"the pass alone: {pass_cpu['train sample']:.4f} CPU s (the dev evaluation: {pass_cpu['dev']:.4f}), "
          f"{result['pass_share_of_fast_epoch_cpu']:.1%} of a --fast-curves epoch's CPU time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
