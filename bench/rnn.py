"""Recurrent nets through tunectl: how good (GRU on sequential digits) and how costly (an LSTM epoch in fit).

1. accuracy: a GRU (hidden 64, one layer, Adam lr 1e-2, batches of 32, up to 30 epochs, patience 8)
   on `digits --as-sequence` (each 8x8 image read as 8 steps of 8 features), through `fit` as
   `tunectl train` runs it. Target: dev error <= 0.05.
2. cost: one epoch (training plus the dev evaluation) of an LSTM (hidden 64, one layer, head on the
   last state) through `tunectl.train.fit` next to a hand-written loop with the same network, the
   same optimizer, the same batches and one host sync per epoch. They run interleaved (rounds in
   alternating order, the same thread count) so drift in a shared machine's speed hits both alike.
   Target: fit / hand-written <= 1.1.

    python bench/rnn.py [--rounds 5] [--epochs 2] [--threads 1] [--data digits] [--device cpu]

Small on purpose: digits has 1,078 training examples, so this runs in about a minute on 2 shared
cores. `--data mnist --data-dir DIR` reads sequential MNIST (28 steps of 28) instead for the cost part.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tunectl.config import TrainConfig  # noqa: E402
from tunectl.data import DataSettings, load_splits  # noqa: E402
from tunectl.train import fit, pick_device  # noqa: E402

HIDDEN, BATCH, LR = 64, 64, 1e-3
TARGET_DEV, TARGET_RATIO = 0.05, 1.1


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class HandLSTM(nn.Module):
    """The same network as tunectl's model: rnn with cell lstm: nn.LSTM, a linear head on the last state."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.rnn = nn.LSTM(n_in, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, n_out)

    def forward(self, x):
        _, (h, _) = self.rnn(x)
        return self.head(h[-1])


def run_fit(splits, epochs: int, seed: int, device) -> list[float]:
    cfg = TrainConfig(model="rnn", cell="lstm", hidden=HIDDEN, depth=1, optimizer="adam", lr=LR, batch_size=BATCH,
                      epochs=epochs, seed=seed)
    return [row["seconds"] for row in fit(cfg, splits, device=device).curve]


def run_hand(splits, epochs: int, seed: int, device) -> list[float]:
    torch.manual_seed(seed)
    model = HandLSTM(splits.input_shape[1], splits.out_dim).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    x, y = splits.x_train.to(device), splits.y_train.to(device)
    x_dev, y_dev = splits.x_dev.to(device), splits.y_dev.to(device)
    gen = torch.Generator().manual_seed(seed)
    n, times = len(x), []
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=gen).to(device)
        total = torch.zeros((), device=device)
        for i in range(0, n, BATCH):
            idx = perm[i:i + BATCH]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)
        model.eval()
        with torch.inference_mode():
            wrong = (model(x_dev).argmax(1) != y_dev).sum()
        torch.stack([total, wrong.to(total.dtype)]).tolist()  # the one host sync of the epoch
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", default="digits")
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--device", default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)

    digits = load_splits(DataSettings(dataset="digits", as_sequence=True))
    cfg = TrainConfig(model="rnn", cell="gru", hidden=64, depth=1, lr=1e-2, batch_size=32, epochs=30, patience=8,
                      seed=0)
    hist = fit(cfg, digits, device=device)
    accuracy = {"dev_error": hist.dev_error, "train_error": hist.train_error, "best_epoch": hist.best_epoch,
                "epochs": hist.epochs_run, "seconds": hist.seconds, "target": TARGET_DEV,
                "ok": hist.dev_error <= TARGET_DEV}

    splits = digits if args.data == "digits" else load_splits(
        DataSettings(dataset=args.data, data_dir=args.data_dir, as_sequence=True))
    times = {"fit": [], "hand": []}
    for r in range(args.rounds):
        order = ["fit", "hand"] if r % 2 == 0 else ["hand", "fit"]
        for name in order:
            run = run_fit if name == "fit" else run_hand
            times[name] += run(splits, args.epochs, r, device)[1:] if args.epochs > 1 else run(splits, 1, r, device)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["fit"] / med["hand"]
    cost = {"data": args.data, "steps x features": list(splits.input_shape), "train examples": len(splits.x_train),
            "median_epoch_seconds": med, "ratio fit/hand": ratio, "target": TARGET_RATIO, "ok": ratio <= TARGET_RATIO,
            "epochs timed": {k: len(v) for k, v in times.items()}, "threads": args.threads, "device": str(device)}
    out = {"gru_digits_as_sequence": accuracy, "lstm_epoch_cost": cost}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"GRU on digits --as-sequence: dev error {accuracy['dev_error']:.4f} (train {accuracy['train_error']:.4f}, "
          f"best epoch {accuracy['best_epoch']} of {accuracy['epochs']}, {accuracy['seconds']:.1f} s); "
          f"target <= {TARGET_DEV}: {'ok' if accuracy['ok'] else 'MISSED'}")
    print(f"LSTM epoch on {args.data} ({len(splits.x_train)} examples, {splits.input_shape[0]} steps x "
          f"{splits.input_shape[1]}): fit {med['fit'] * 1000:.1f} ms, hand-written {med['hand'] * 1000:.1f} ms "
          f"(median of {len(times['fit'])} epochs each, {args.threads} thread(s), {device}); ratio {ratio:.3f}, "
          f"target <= {TARGET_RATIO}: {'ok' if cost['ok'] else 'MISSED'}")
    if not (accuracy["ok"] and cost["ok"]) or not math.isfinite(ratio):
        sys.exit(1)


if __name__ == "__main__":
    main()
