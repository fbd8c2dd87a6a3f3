"""Does FGSM adversarial training (adv_eps) make a model harder to fool? Measured side by side on digits.

For each seed, the same MLP (2 x 128 ReLU, Adam lr 1e-3, batches of 64, 20 epochs, the best dev
epoch kept) is trained on digits twice through `tunectl.train.fit`: with adv_eps = 0 and with
adv_eps = EPS (half of each mini-batch's loss on its FGSM points, Goodfellow et al. 2015). Both
are then attacked on the test split with FGSM at eps = EPS (standardized inputs: EPS standard
deviations per pixel, the images kept in the training pixels' range), and with PGD (10 steps)
as a check that the gain is not FGSM's alone. Target: the adv_eps model's FGSM test error is
lower than the plain model's, for the mean over seeds and for each seed.

    python bench/adversarial.py [--seeds 0,1,2] [--eps 0.1] [--threads 1] [--json]

Small on purpose (digits: 1,078 training images of 8 x 8): about a minute on 2 shared cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tunectl import attacks  # noqa: E402
from tunectl.config import TrainConfig  # noqa: E402
from tunectl.data import DataSettings, load_splits  # noqa: E402
from tunectl.train import evaluate, fit, pick_device  # noqa: E402


def errors(model, splits, eps: float) -> dict[str, float]:
    x, y = splits.test
    bounds = attacks.image_bounds(splits.x_train, splits.is_image)
    out = {"clean": evaluate(model, x, y, splits.task)["error"]}
    for attack, steps in (("fgsm", None), ("pgd", 10)):
        x_adv = attacks.perturb(model, x, y, splits.task, attack, eps, steps, bounds)
        out[attack] = evaluate(model, x_adv, y, splits.task)["error"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    seeds = [int(s) for s in args.seeds.split(",")]
    splits = load_splits(DataSettings(dataset="digits"), include_test=True)  # a benchmark, not a tuning study
    base = TrainConfig(model="mlp", depth=2, width=128, lr=1e-3, batch_size=64, epochs=20)
    rows = []
    for seed in seeds:
        row = {"seed": seed}
        for name, adv in (("plain", 0.0), ("adv", args.eps)):
            model = fit(base.replace(seed=seed, adv_eps=adv), splits, device=device).model
            row[name] = errors(model, splits, args.eps)
        rows.append(row)
    mean = {name: {k: statistics.mean(r[name][k] for r in rows) for k in ("clean", "fgsm", "pgd")}
            for name in ("plain", "adv")}
    ok = mean["adv"]["fgsm"] < mean["plain"]["fgsm"] and all(r["adv"]["fgsm"] < r["plain"]["fgsm"] for r in rows)
    if args.json:
        print(json.dumps({"eps": args.eps, "seeds": seeds, "rows": rows, "mean": mean, "ok": ok,
                          "test_examples": len(splits.test[1]), "device": str(device)}, indent=2))
    else:
        print(f"digits test split ({len(splits.test[1])} images), FGSM and PGD-10 at eps {args.eps} "
              f"(standardized), {device}, {args.threads} thread(s)")
        print(f"{'seed':>4}  {'adv_eps':>7}  {'clean':>7}  {'FGSM':>7}  {'PGD':>7}")
        for r in rows:
            for name, adv in (("plain", 0.0), ("adv", args.eps)):
                e = r[name]
                print(f"{r['seed']:>4}  {adv:>7g}  {e['clean']:>7.4f}  {e['fgsm']:>7.4f}  {e['pgd']:>7.4f}")
        for name, adv in (("plain", 0.0), ("adv", args.eps)):
            e = mean[name]
            print(f"mean  {adv:>7g}  {e['clean']:>7.4f}  {e['fgsm']:>7.4f}  {e['pgd']:>7.4f}")
        print(f"FGSM test error, adv_eps {args.eps} vs 0: {mean['adv']['fgsm']:.4f} vs {mean['plain']['fgsm']:.4f} "
              f"(ratio {mean['adv']['fgsm'] / mean['plain']['fgsm']:.3f}); lower for every seed: "
              f"{'ok' if ok else 'MISSED'}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
