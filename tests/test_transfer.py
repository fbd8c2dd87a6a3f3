"""Transfer learning: body kept, head replaced, freezing, body_lr_scale, torchvision bodies with
local weights, refusal of files that are not checkpoints, and a measured transfer effect."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import invoke, ok_json, Planted
from tunectl.config import TrainConfig
from tunectl.data import DataSettings, load_splits
from tunectl.errors import ConfigError
from tunectl.models import build_model, load_checkpoint, model_from_checkpoint, param_groups, save_checkpoint
from tunectl.train import evaluate, fit


def write_digits(path: Path, classes, per_class: int | None = None) -> Path:
    """An npz of scikit-learn digits (x: N x 1 x 8 x 8 in [0, 1], y) holding only `classes`."""
    from sklearn.datasets import load_digits

    d = load_digits()
    keep = np.flatnonzero(np.isin(d.target, classes))
    if per_class:
        keep = np.concatenate([keep[d.target[keep] == c][:per_class] for c in classes])
    np.savez(path, x=(d.images[keep, None] / 16.0).astype(np.float32), y=d.target[keep])
    return path


def body_state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.body.state_dict().items()}


@pytest.fixture(scope="module")
def source(tmp_path_factory, digits):
    """A small MLP trained on digits, saved as a tunectl checkpoint."""
    path = tmp_path_factory.mktemp("source") / "model.pt"
    hist = fit(TrainConfig(depth=2, width=32, epochs=2), digits, device="cpu")
    save_checkpoint(path, hist.checkpoint())
    return path, hist


# ----------------------------------------------------------------------------- body kept, head replaced


def test_transfer_keeps_the_body_and_replaces_the_head(source, digits):
    path, hist = source
    net = build_model(TrainConfig(model="transfer", init_from=str(path)), (1, 8, 8), 3)
    src = body_state(hist.model)
    assert all(torch.equal(v, src[k]) for k, v in net.body.state_dict().items())
    assert net.head[-1].out_features == 3  # the new task's head, freshly initialised


@pytest.mark.parametrize("freeze, trained", [("body", []), ("all_but_last_1", ["3"]), ("none", ["1", "3"])])
def test_freeze_really_freezes(source, digits, freeze, trained):
    path, hist = source
    cfg = TrainConfig(model="transfer", init_from=str(path), freeze=freeze, epochs=2, lr=1e-2)
    after = fit(cfg, digits, device="cpu").model
    before = body_state(hist.model)
    # the MLP body is Flatten, Linear(1), ReLU, Linear(3), ReLU: index 1 and 3 hold weights
    changed = sorted({k.split(".")[0] for k, v in after.body.state_dict().items() if not torch.equal(v, before[k])})
    assert changed == trained
    assert all(p.requires_grad == (n.split(".")[0] in trained) for n, p in after.body.named_parameters())


def test_body_lr_scale_gives_the_body_its_own_learning_rate(source):
    path, _ = source
    cfg = TrainConfig(model="transfer", init_from=str(path), lr=1e-2, body_lr_scale=0.1, freeze="all_but_last_1")
    net = build_model(cfg, (1, 8, 8), 10)
    head, body = param_groups(net, cfg)
    assert "lr" not in head and body["lr"] == pytest.approx(1e-3)
    assert [p.shape for p in body["params"]] == [torch.Size([32, 32]), torch.Size([32])]  # only the last layer
    assert {id(p) for p in head["params"]} == {id(p) for p in net.head.parameters()}


def test_a_transferred_checkpoint_rebuilds_without_its_source(tmp_path, source, digits):
    path, _ = source
    copy = tmp_path / "src.pt"
    copy.write_bytes(path.read_bytes())
    hist = fit(TrainConfig(model="transfer", init_from=str(copy), epochs=1), digits, device="cpu")
    save_checkpoint(tmp_path / "t.pt", hist.checkpoint())
    # ... and a transferred model transfers again (its body is the original source's)
    again = build_model(TrainConfig(model="transfer", init_from=str(tmp_path / "t.pt")), (1, 8, 8), 2)
    assert all(torch.equal(v, hist.model.body.state_dict()[k]) for k, v in again.body.state_dict().items())
    copy.unlink()  # the source is gone: the structure comes from the recorded source_config
    model, cfg = model_from_checkpoint(load_checkpoint(tmp_path / "t.pt"))
    assert cfg.model == "transfer"
    assert evaluate(model, digits.x_dev, digits.y_dev, "multiclass")["error"] == hist.dev_error


def test_transfer_refuses_other_inputs_and_a_forgotten_model(source):
    path, _ = source
    with pytest.raises(ConfigError, match=r"shape \(1, 8, 8\).*same kind of input"):
        build_model(TrainConfig(model="transfer", init_from=str(path)), (4,), 3)
    with pytest.raises(ConfigError, match="add --model transfer"):
        build_model(TrainConfig(model="mlp", init_from=str(path)), (1, 8, 8), 10)
    with pytest.raises(ConfigError, match="--init-from"):
        build_model(TrainConfig(model="transfer"), (1, 8, 8), 10)


# ----------------------------------------------------------------------------- torchvision bodies, local weights


@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory):
    """A local resnet18 state dict (random weights: nothing is downloaded)."""
    from torchvision.models import resnet18

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(resnet18(weights=None).state_dict(), path)
    return path


@pytest.mark.slow
def test_resnet18_body_with_local_weights_trains_on_digits(tmp_path, resnet_weights):
    data = write_digits(tmp_path / "d.npz", list(range(10)), per_class=10)
    out = tmp_path / "run"
    doc = ok_json(invoke("train", "--dataset", f"npz:{data}", "--model", "transfer", "--set", "arch=resnet18",
                         "--weights", resnet_weights, "--set", "freeze=body", "--set", "batch_size=16", "--epochs", "1",
                         "--device", "cpu", "--json", "--out", out))
    assert 0 <= doc["dev_error"] <= 1 and len(doc["history"]) == 1
    # frozen means frozen: weights *and* BatchNorm running statistics are the file's
    model, cfg = model_from_checkpoint(load_checkpoint(out / "model.pt"))
    assert cfg.arch == "resnet18"
    weights = torch.load(resnet_weights, weights_only=True)
    body = model.body.state_dict()
    assert all(torch.equal(body[k], v) for k, v in weights.items() if not k.startswith("fc."))
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)  # 1 channel -> 3, 8x8 -> 32x32 inside the model


def test_mobilenet_body_and_weights_of_the_wrong_network(tmp_path, resnet_weights):
    from torchvision.models import mobilenet_v3_small

    path = tmp_path / "mobilenet.pth"
    torch.save(mobilenet_v3_small(weights=None).state_dict(), path)
    net = build_model(TrainConfig(model="transfer", arch="mobilenet_v3_small", init_from=str(path)), (3, 16, 16), 4)
    assert net.eval()(torch.randn(2, 3, 16, 16)).shape == (2, 4)
    with pytest.raises(ConfigError, match="does not fit mobilenet_v3_small"):
        build_model(TrainConfig(model="transfer", arch="mobilenet_v3_small", init_from=str(resnet_weights)), (1, 8, 8), 4)
    with pytest.raises(ConfigError, match="needs images with 1 or 3 channels"):
        build_model(TrainConfig(model="transfer", arch="resnet18", init_from=str(resnet_weights)), (30,), 2)


# ----------------------------------------------------------------------------- files that are not checkpoints


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # the planted file's, refused anyway
@pytest.mark.parametrize("writer", ["torch.save", "pickle.dumps"])
def test_a_planted_pickle_is_refused_without_unpickling(tmp_path, writer):
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(Planted(proof)))  # the payload is live: plain unpickling runs it
    assert proof.exists()
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pt"
    if writer == "torch.save":
        torch.save({"format": "tunectl-checkpoint", "payload": Planted(marker)}, evil)
    else:
        evil.write_bytes(pickle.dumps(Planted(marker)))
    result = invoke("train", "--model", "transfer", "--init-from", evil, "--epochs", "1", "--device", "cpu",
                    "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert "not a tunectl checkpoint, refused without unpickling" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "run").exists()


def test_torchvision_weights_refused_the_same_way(tmp_path):
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pth"
    torch.save(Planted(marker), evil)
    with pytest.raises(ConfigError, match="refused without unpickling"):
        build_model(TrainConfig(model="transfer", arch="resnet18", init_from=str(evil)), (1, 8, 8), 10)
    assert not marker.exists()


# ----------------------------------------------------------------------------- the transfer effect, measured

SOURCE = ["--model", "cnn", "--set", "filters=16", "--set", "depth=1", "--set", "width=128", "--set", "dropout=0.3"]
FEW = (0.02, 0.49, 0.49)  # a stratified 2% train split: 3-4 examples per class; ~440 dev examples to measure on


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A ConvNet trained on digits 0-4 with `tunectl train`, and an npz of digits 5-9."""
    tmp = tmp_path_factory.mktemp("transfer")
    low, high = write_digits(tmp / "low.npz", [0, 1, 2, 3, 4]), write_digits(tmp / "high.npz", [5, 6, 7, 8, 9])
    doc = ok_json(invoke("train", "--dataset", f"npz:{low}", *SOURCE, "--set", "lr=1e-3", "--epochs", "12",
                         "--device", "cpu", "--json", "--out", tmp / "low-run"))
    assert doc["dev_error"] < 0.05
    return tmp / "low-run" / "model.pt", high


@pytest.mark.slow
def test_fine_tuning_beats_training_from_scratch_on_few_examples(pretrained):
    source, high = pretrained
    scratch, transfer = [], []
    for seed in range(4):  # four splits and seeds: one lucky draw must not decide it
        splits = load_splits(DataSettings(f"npz:{high}", split=",".join(map(str, FEW)), split_seed=seed))
        assert np.bincount(splits.y_train.numpy()).min() >= 3
        budget = dict(epochs=10, lr=1e-2, batch_size=8, seed=seed)
        cnn = TrainConfig(model="cnn", filters=16, depth=1, width=128, dropout=0.3, **budget)
        scratch.append(fit(cnn, splits, device="cpu").dev_error)
        transfer.append(fit(TrainConfig(model="transfer", init_from=str(source), **budget), splits, device="cpu").dev_error)
    print(f"dev error on digits 5-9, 3-4 examples per class: scratch {np.mean(scratch):.3f} {np.round(scratch, 3)}, "
          f"fine-tuned {np.mean(transfer):.3f} {np.round(transfer, 3)}")
    assert np.mean(transfer) < np.mean(scratch) - 0.03  # measured: 0.133 vs 0.207


@pytest.mark.slow
def test_transfer_search_space_tunes_from_the_checkpoint(pretrained, tmp_path):
    source, high = pretrained
    doc = ok_json(invoke("tune", "--space", Path(__file__).parents[1] / "searchspaces" / "transfer.yaml",
                         "--dataset", f"npz:{high}", "--split", "0.05,0.475,0.475", "--init-from", source,
                         "--trials", "2", "--epochs", "2", "--pruner", "none", "--root", tmp_path, "--study", "tx",
                         "--device", "cpu", "--json"))
    assert doc["states"]["COMPLETE"] == 2
    assert {"lr", "freeze", "dropout"} <= set(doc["best"]["params"])
    refused = invoke("tune", "--space", Path(__file__).parents[1] / "searchspaces" / "transfer.yaml",
                     "--dataset", f"npz:{high}", "--trials", "1", "--root", tmp_path, "--study", "tx-none")
    assert refused.exit_code == 2 and "--init-from" in refused.stderr
