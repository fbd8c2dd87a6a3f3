"""Data sources, task inference, the train/dev/test split and its manifest, scaling without leakage."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import invoke
from tunectl import data as D
from tunectl import sources as S
from tunectl.sources import Dataset, DataSpec, load_dataset
from tunectl.data import DataSettings, load_splits, make_splits
from tunectl.errors import DataError, TunectlError

SHARED_MNIST = Path(os.environ.get("TUNECTL_MNIST_T10K", Path(__file__).resolve().parents[2] / "shared/data/mnist-t10k"))


def synthetic(n: int, k: int = 10, features: int = 2, seed: int = 0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    return Dataset(torch.randn(n, features, generator=g), torch.arange(n) % k, "multiclass", "synthetic",
                   [str(c) for c in range(k)])


# ----------------------------------------------------------------------------- embedded (scikit-learn)


def test_digits_are_1x8x8_images(digits_ds):
    ds = digits_ds
    assert ds.x.shape == (1797, 1, 8, 8) and ds.x.dtype == torch.float32
    assert ds.is_image and not ds.flips_ok  # a mirrored 2 is not a 2
    assert ds.task == "multiclass" and ds.classes == [str(c) for c in range(10)]
    assert ds.y.dtype == torch.int64 and sorted(ds.y.unique().tolist()) == list(range(10))
    assert ds.x.min() == 0.0 and ds.x.max() == 1.0  # pixels 0..16 scaled to 0..1


@pytest.mark.parametrize(
    "name, n, features, task, n_classes",
    [("breast_cancer", 569, 30, "binary", 2), ("wine", 178, 13, "multiclass", 3),
     ("iris", 150, 4, "multiclass", 3), ("diabetes", 442, 10, "regression", 0)],
)
def test_embedded_tabular(name, n, features, task, n_classes):
    ds = load_dataset(DataSpec(name))
    assert ds.x.shape == (n, features) and ds.x.dtype == torch.float32
    assert ds.task == task and ds.n_classes == n_classes and not ds.is_image
    if task == "regression":
        assert ds.y.dtype == torch.float32 and len(ds.y.unique()) > 100
    else:
        assert ds.y.dtype == torch.int64 and ds.y.unique().tolist() == list(range(n_classes))
    splits = make_splits(ds)
    assert splits.out_dim == (n_classes if task == "multiclass" else 1)
    assert splits.input_shape == (features,)


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(DataError, match="unknown data set 'nope'.*digits.*mnist.*csv:PATH.*tunectl datasets"):
        load_dataset(DataSpec("nope"))


def test_describe_lists_every_source():
    names = [n for n, _ in S.describe()]
    for name in ["digits", "breast_cancer", "wine", "iris", "diabetes", "mnist", "fashion_mnist", "cifar10",
                 "folder:DIR", "csv:PATH", "npz:PATH"]:
        assert name in names


# ----------------------------------------------------------------------------- torchvision sets on disk


@pytest.mark.parametrize("name, folder, flips", [("mnist", "MNIST", False), ("fashion_mnist", "FashionMNIST", True)])
def test_mnist_family_from_torchvision_layout(tmp_path, write_mnist, name, folder, flips):
    arrays = write_mnist(tmp_path / folder, n_train=30, n_test=10)  # ROOT/MNIST/raw/train-images-idx3-ubyte, ...
    ds = load_dataset(DataSpec(name, data_dir=str(tmp_path)))
    assert ds.x.shape == (40, 1, 28, 28) and ds.x.dtype == torch.float32
    # train then test, pixel for pixel, scaled to [0, 1]
    expected = np.concatenate([arrays["train"][0], arrays["test"][0]]).astype(np.float32) / 255.0
    assert torch.equal(ds.x[:, 0], torch.from_numpy(expected))
    assert ds.y.tolist() == [*arrays["train"][1].tolist(), *arrays["test"][1].tolist()]
    assert ds.task == "multiclass" and len(ds.classes) == 10 and ds.is_image and ds.flips_ok is flips
    if name == "fashion_mnist":
        assert ds.classes[0] == "T-shirt/top"
    else:
        assert ds.classes[3] == "3 - three"


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_flat_idx_layout(tmp_path, write_mnist, gz):
    """The raw idx files side by side, gzipped as the MNIST site ships them or not."""
    arrays = write_mnist(tmp_path / "flat", n_train=20, n_test=10, layout="flat", gz=gz)
    ds = load_dataset(DataSpec("mnist", data_dir=str(tmp_path / "flat")))
    assert ds.x.shape == (30, 1, 28, 28)
    assert torch.equal(ds.x[20:, 0], torch.from_numpy(arrays["test"][0].astype(np.float32) / 255.0))
    assert ds.y.tolist() == [*arrays["train"][1].tolist(), *arrays["test"][1].tolist()]


def test_mnist_flat_test_files_only(tmp_path, write_mnist):
    """Like ../shared/data/mnist-t10k: only the t10k pair, gzipped."""
    arrays = write_mnist(tmp_path, n_train=0, n_test=12, layout="flat", gz=True)
    ds = load_dataset(DataSpec("mnist", data_dir=str(tmp_path)))
    assert ds.x.shape == (12, 1, 28, 28) and ds.y.tolist() == arrays["test"][1].tolist()


def test_truncated_idx_file_is_a_data_error(tmp_path, write_mnist):
    write_mnist(tmp_path, n_train=0, n_test=12, layout="flat")
    images = tmp_path / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.*truncated"):
        load_dataset(DataSpec("mnist", data_dir=str(tmp_path)))


def test_real_mnist_test_set():
    if not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        import pg

        pg.require_or_skip(f"the shared MNIST test set is absent ({SHARED_MNIST}; set TUNECTL_MNIST_T10K)")
    ds = load_dataset(DataSpec("mnist", data_dir=str(SHARED_MNIST)))
    assert ds.x.shape == (10_000, 1, 28, 28)
    assert torch.bincount(ds.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_cifar10_pickle_batches(tmp_path, write_cifar):
    train_x, train_y, test_x, test_y = write_cifar(tmp_path, per_batch=4)
    ds = load_dataset(DataSpec("cifar10", data_dir=str(tmp_path)))
    assert ds.x.shape == (24, 3, 32, 32) and ds.x.dtype == torch.float32
    rows = np.concatenate([train_x, test_x]).reshape(-1, 3, 32, 32).astype(np.float32) / 255.0  # channel-major rows
    assert torch.equal(ds.x, torch.from_numpy(rows))
    assert ds.y.tolist() == train_y + test_y
    assert ds.classes[:3] == ["airplane", "automobile", "bird"] and ds.flips_ok and ds.task == "multiclass"


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_missing_files_name_the_folder_and_download(tmp_path, name):
    empty = tmp_path / "nothing-here"
    with pytest.raises(DataError) as err:
        load_dataset(DataSpec(name, data_dir=str(empty)))
    message = str(err.value)
    assert str(empty.resolve()) in message and "--download" in message and "\n" not in message


# ----------------------------------------------------------------------------- folder:DIR


def test_image_folder(tmp_path, write_image_folder):
    pixels = write_image_folder(tmp_path / "pets", {"cat": 3, "dog": 4}, size=(8, 6))
    ds = load_dataset(DataSpec(f"folder:{tmp_path / 'pets'}"))
    assert ds.x.shape == (7, 3, 8, 6) and ds.classes == ["cat", "dog"] and ds.task == "binary"
    assert ds.y.tolist() == [0, 0, 0, 1, 1, 1, 1] and ds.is_image
    first = pixels[tmp_path / "pets" / "cat" / "img00.png"]
    assert torch.allclose(ds.x[0], torch.from_numpy(first).permute(2, 0, 1).float() / 255.0)


def test_image_folder_three_classes_is_multiclass(tmp_path, write_image_folder):
    write_image_folder(tmp_path, {"a": 2, "b": 2, "c": 2})
    assert load_dataset(DataSpec(f"folder:{tmp_path}")).task == "multiclass"


def test_image_folder_mixed_sizes_need_image_size(tmp_path, write_image_folder):
    write_image_folder(tmp_path, {"a": 3, "b": 3}, sizes=[(8, 8), (12, 10)])
    with pytest.raises(DataError, match="mixed sizes.*--image-size"):
        load_dataset(DataSpec(f"folder:{tmp_path}"))
    ds = load_dataset(DataSpec(f"folder:{tmp_path}", image_size=6))
    assert ds.x.shape == (6, 3, 6, 6)


def test_image_folder_missing(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        load_dataset(DataSpec(f"folder:{tmp_path / 'absent'}"))


# ----------------------------------------------------------------------------- csv:PATH


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_csv_string_labels(tmp_path):
    rows = [[i, "yes" if i % 3 else "no", i * 0.5] for i in range(30)]  # target in the middle
    path = write_csv(tmp_path / "t.csv", ["a", "label", "b"], rows)
    ds = load_dataset(DataSpec(f"csv:{path}", target="label"))
    assert ds.task == "binary" and ds.classes == ["no", "yes"]
    # a table's features stay a table (tables.py) until the split is known: the target is not one of them
    assert ds.table.frame.shape == (30, 2) and ds.table.frame.iloc[4].tolist() == [4.0, 2.0]
    assert ds.y.tolist() == [1 if i % 3 else 0 for i in range(30)]


def test_csv_three_string_labels_is_multiclass(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["a", "y"], [[i, "abc"[i % 3]] for i in range(30)])
    ds = load_dataset(DataSpec(f"csv:{path}", target="y"))
    assert ds.task == "multiclass" and ds.classes == ["a", "b", "c"]


def test_csv_numeric_targets(tmp_path):
    rows = [[i, i % 2, i * 1.37] for i in range(50)]
    path = write_csv(tmp_path / "t.csv", ["x", "cls", "value"], rows)
    reg = load_dataset(DataSpec(f"csv:{path}", target="value"))
    assert reg.task == "regression" and reg.y.dtype == torch.float32
    assert torch.allclose(reg.y, torch.tensor([i * 1.37 for i in range(50)]))
    assert reg.table.frame.shape == (50, 2)
    cls = load_dataset(DataSpec(f"csv:{path}", target="cls"))
    assert cls.task == "binary" and cls.classes == ["0", "1"] and cls.y.tolist() == [i % 2 for i in range(50)]


def test_csv_errors(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["a", "b", "y"], [[1, 2, 0], [3, 4, 1]])
    with pytest.raises(DataError, match="no column 'label'; --target must be one of: a, b, y"):
        load_dataset(DataSpec(f"csv:{path}", target="label"))
    with pytest.raises(DataError, match="--target COLUMN"):
        load_dataset(DataSpec(f"csv:{path}"))
    with pytest.raises(DataError, match="no such file"):
        load_dataset(DataSpec(f"csv:{tmp_path / 'missing.csv'}", target="y"))
    text = write_csv(tmp_path / "s.csv", ["a", "y"], [["red", 0], ["blue", 1]])  # every value distinct: an id?
    with pytest.raises(DataError, match="column 'a' looks like an identifier .*--drop a"):
        load_dataset(DataSpec(f"csv:{text}", target="y"))


# ----------------------------------------------------------------------------- npz:PATH


def test_npz(tmp_path):
    x = np.arange(40, dtype=np.float64).reshape(10, 4)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0]))
    ds = load_dataset(DataSpec(f"npz:{tmp_path / 'd.npz'}"))
    assert ds.x.dtype == torch.float32 and torch.equal(ds.x, torch.from_numpy(x).float())
    assert ds.task == "multiclass" and ds.classes == ["0", "1", "2"] and not ds.is_image


def test_npz_images_and_regression(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.random((30, 1, 4, 4)), y=rng.normal(size=30))
    ds = load_dataset(DataSpec(f"npz:{tmp_path / 'd.npz'}"))
    assert ds.is_image and ds.x.shape == (30, 1, 4, 4) and ds.task == "regression"


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "noy.npz", x=np.zeros((4, 2)), labels=np.zeros(4))
    with pytest.raises(DataError, match="arrays named 'x' and 'y' \\(found: .*labels"):
        load_dataset(DataSpec(f"npz:{tmp_path / 'noy.npz'}"))
    np.savez(tmp_path / "len.npz", x=np.zeros((4, 2)), y=np.zeros(5))
    with pytest.raises(DataError, match="x has 4 rows but y has 5"):
        load_dataset(DataSpec(f"npz:{tmp_path / 'len.npz'}"))
    with pytest.raises(DataError, match="no such file"):
        load_dataset(DataSpec(f"npz:{tmp_path / 'absent.npz'}"))
    (tmp_path / "junk.npz").write_text("not an archive")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_dataset(DataSpec(f"npz:{tmp_path / 'junk.npz'}"))
    np.savez(tmp_path / "nan.npz", x=np.array([[1.0], [np.nan], [2.0], [3.0]]), y=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match="NaN"):
        load_dataset(DataSpec(f"npz:{tmp_path / 'nan.npz'}"))
    np.savez(tmp_path / "one.npz", x=np.zeros((6, 2)), y=np.ones(6, dtype=int))
    with pytest.raises(DataError, match="only one class"):
        load_dataset(DataSpec(f"npz:{tmp_path / 'one.npz'}"))


# ----------------------------------------------------------------------------- task inference and --task


@pytest.mark.parametrize(
    "y, task, classes",
    [
        (np.array([0, 1] * 20), "binary", ["0", "1"]),
        (np.array([3, 7] * 20), "binary", ["3", "7"]),  # labels, not values: indices 0/1
        (np.arange(40) % 5, "multiclass", ["0", "1", "2", "3", "4"]),
        (np.array([0.0, 1.0] * 20), "binary", ["0", "1"]),  # integral floats are labels
        (np.linspace(0, 1, 40), "regression", []),  # non-integral numbers
        (np.arange(40), "regression", []),  # integers with too many distinct values
        (np.array(["b", "a", "c"] * 10), "multiclass", ["a", "b", "c"]),
    ],
)
def test_task_inference(tmp_path, y, task, classes):
    np.savez(tmp_path / "d.npz", x=np.zeros((len(y), 2), dtype=np.float32), y=y)  # the targets as a user saves them
    ds = load_dataset(DataSpec(f"npz:{tmp_path / 'd.npz'}"))
    assert ds.task == task and ds.classes == classes
    if task == "regression":
        assert ds.y.dtype == torch.float32
    else:
        assert ds.y.dtype == torch.int64 and ds.y.max().item() == len(classes) - 1


def test_task_forcing():
    digits = load_dataset(DataSpec("digits", task="regression"))
    assert digits.task == "regression" and digits.y.dtype == torch.float32 and digits.y.max().item() == 9.0
    bc = load_dataset(DataSpec("breast_cancer", task="multiclass"))
    assert bc.task == "multiclass" and make_splits(bc).out_dim == 2
    diabetes = load_dataset(DataSpec("diabetes", task="multiclass"))  # each target value a class
    assert diabetes.task == "multiclass" and diabetes.y.dtype == torch.int64
    assert diabetes.n_classes == len(load_dataset(DataSpec("diabetes")).y.unique()) > 100
    assert make_splits(diabetes, ratios=(0.5, 0.25, 0.25)).out_dim == diabetes.n_classes
    assert diabetes.classes[:3] == ["25", "31", "37"]  # in numeric order
    with pytest.raises(DataError, match="--task binary: the targets have 3 classes"):
        load_dataset(DataSpec("wine", task="binary"))
    with pytest.raises(DataError, match="--task 'ranking'"):
        load_dataset(DataSpec("iris", task="ranking"))
    with pytest.raises(DataError, match="--task regression: the targets are class names"):
        load_dataset(DataSpec("iris", task="regression"))  # 'setosa' is not a number


def test_regression_targets_forced_to_binary(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.arange(20.0).reshape(10, 2), y=np.array([0.1, 0.9] * 5))
    assert load_dataset(DataSpec(f"npz:{tmp_path / 'd.npz'}")).task == "regression"
    ds = load_dataset(DataSpec(f"npz:{tmp_path / 'd.npz'}", task="binary"))
    assert ds.task == "binary" and ds.classes == ["0", "1"] and ds.y.tolist() == [0, 1] * 5


def test_npz_integer_targets_forced_to_regression(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.arange(20.0).reshape(10, 2), y=np.array([1, 5, 9, 1, 5, 9, 1, 5, 9, 1]))
    ds = load_dataset(DataSpec(f"npz:{tmp_path / 'd.npz'}", task="regression"))
    assert ds.y.tolist() == [1.0, 5.0, 9.0, 1.0, 5.0, 9.0, 1.0, 5.0, 9.0, 1.0]  # values, not class indices


# ----------------------------------------------------------------------------- the split


def test_default_split_is_60_20_20(digits):
    assert digits.manifest["sizes"] == {"train": 1079, "dev": 359, "test": 359}
    assert len(digits.x_train) == 1079 and len(digits.x_dev) == 359
    assert D.split_sizes(1000, None) == (600, 200, 200)


def test_dev_and_test_are_capped_at_10000():
    splits = make_splits(synthetic(60_000))
    assert splits.manifest["sizes"] == {"train": 40_000, "dev": 10_000, "test": 10_000}
    assert D.split_sizes(1_000_000, None) == (980_000, 10_000, 10_000)  # ~98/1/1


def test_a_million_examples_split_98_1_1():
    n = 1_000_000
    ds = Dataset(torch.zeros(n, 1), torch.arange(n) % 10, "multiclass", "million", [str(c) for c in range(10)])
    splits = make_splits(ds)
    assert splits.manifest["sizes"] == {"train": 980_000, "dev": 10_000, "test": 10_000}
    assert torch.bincount(splits.y_dev).tolist() == [1000] * 10  # stratified


def test_split_override():
    assert make_splits(synthetic(1000), ratios=(0.8, 0.1, 0.1)).manifest["sizes"] == {"train": 800, "dev": 100, "test": 100}
    # explicit ratios are taken as given, past the 10,000 cap
    assert make_splits(synthetic(60_000), ratios=(0.5, 0.3, 0.2)).manifest["sizes"] == {
        "train": 30_000, "dev": 18_000, "test": 12_000}
    assert D.parse_split("0.8,0.1,0.1") == (0.8, 0.1, 0.1)
    assert D.parse_split("0.7, 0.2, 0.1") == (0.7, 0.2, 0.1)


@pytest.mark.parametrize(
    "text, match",
    [("0.5,0.2,0.2", "sum to 0.9, not 1"), ("0.8,0.2", "three positive fractions"), ("a,b,c", "three positive"),
     ("0.8,0.2,0", "three positive"), ("1.2,-0.1,-0.1", "three positive")],
)
def test_bad_split(text, match):
    with pytest.raises(DataError, match=match):
        D.parse_split(text)


def test_too_few_examples():
    with pytest.raises(DataError, match="too few to split"):
        make_splits(synthetic(2, k=2))


def test_stratified_split_keeps_class_proportions(digits_ds):
    splits = make_splits(digits_ds, include_test=True)
    assert splits.manifest["stratified"] is True
    total = torch.bincount(digits_ds.y, minlength=10).double()
    for part, frac in ((splits.y_train, 0.6), (splits.y_dev, 0.2), (splits.test[1], 0.2)):
        counts = torch.bincount(part, minlength=10).double()
        assert (counts - frac * total).abs().max() <= 1.5, (counts, frac * total)


def test_rare_class_falls_back_to_an_unstratified_split():
    y = torch.tensor([0] * 50 + [1] * 49 + [2])
    ds = Dataset(torch.randn(100, 2), y, "multiclass", "rare", ["0", "1", "2"])
    splits = make_splits(ds)
    assert splits.manifest["stratified"] is False and splits.manifest["sizes"] == {"train": 60, "dev": 20, "test": 20}


def test_regression_split_is_not_stratified(diabetes):
    assert diabetes.manifest["stratified"] is False


def test_split_is_seeded_and_hashed(digits_ds):
    a, b = make_splits(digits_ds, seed=3), make_splits(digits_ds, seed=3)
    assert a.manifest == b.manifest and D.same_split(a.manifest, b.manifest)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_dev, b.y_dev)
    c = make_splits(digits_ds, seed=4)
    assert c.manifest["hashes"]["train"] != a.manifest["hashes"]["train"]
    assert c.manifest["hashes"]["dev"] != a.manifest["hashes"]["dev"]
    assert c.manifest["data_hash"] == a.manifest["data_hash"] and not D.same_split(a.manifest, c.manifest)
    m = a.manifest
    assert m["seed"] == 3 and m["dataset"] == "digits" and m["n_examples"] == 1797 and m["task"] == "multiclass"
    assert set(m["hashes"]) == {"train", "dev", "test"} and all(len(h) == 16 for h in m["hashes"].values())


def test_manifest_records_the_spec_and_is_written(tmp_path):
    splits = load_splits(DataSettings("iris", split="0.6,0.2,0.2", split_seed=1))
    assert splits.manifest["spec"]["name"] == "iris" and splits.manifest["ratios"] == [0.6, 0.2, 0.2]
    D.write_manifest(tmp_path / "split.json", splits.manifest)
    import json

    assert json.loads((tmp_path / "split.json").read_text()) == splits.manifest


def test_different_data_different_hash(digits_ds):
    other = Dataset(digits_ds.x.clone(), digits_ds.y.clone(), digits_ds.task, "digits", digits_ds.classes, True)
    other.x[0, 0, 0, 0] += 0.5
    a, b = make_splits(digits_ds), make_splits(other)
    assert a.manifest["hashes"] == b.manifest["hashes"] and a.manifest["data_hash"] != b.manifest["data_hash"]
    assert not D.same_split(a.manifest, b.manifest)


def test_test_split_is_sealed(digits, digits_ds):
    with pytest.raises(RuntimeError, match="sealed"):
        digits.test
    x_test, y_test = make_splits(digits_ds, include_test=True).test
    assert len(x_test) == len(y_test) == 359


# ----------------------------------------------------------------------------- scaling without leakage


def test_scaling_uses_training_statistics_only():
    """Change every dev and test example wildly: the training tensors do not move."""
    ds = synthetic(500, k=5, features=3)
    train_idx, dev_idx, test_idx, _ = D.split_indices(ds, None, 0)
    other_x = ds.x.clone()
    other_x[dev_idx] = other_x[dev_idx] * 100 + 50
    other_x[test_idx] = -1000.0
    a = make_splits(ds, include_test=True)
    b = make_splits(Dataset(other_x, ds.y, ds.task, ds.name, ds.classes), include_test=True)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert not torch.allclose(a.x_dev, b.x_dev)
    # dev is scaled with the training mean/std: its own change shows through, not normalized away
    assert torch.allclose(b.x_dev, (other_x[dev_idx] - ds.x[train_idx].mean(0)) / ds.x[train_idx].std(0), atol=1e-3)


def test_tabular_scaling_per_feature(breast_cancer):
    assert torch.allclose(breast_cancer.x_train.mean(0), torch.zeros(30), atol=1e-5)
    assert torch.allclose(breast_cancer.x_train.std(0), torch.ones(30), atol=1e-4)
    assert breast_cancer.x_dev.mean(0).abs().max() > 1e-3  # dev is not forced to mean 0
    assert breast_cancer.manifest["scaling"]["from"] == "train"


def test_image_scaling_per_channel(digits, digits_ds):
    assert abs(digits.x_train.mean().item()) < 1e-5 and abs(digits.x_train.std().item() - 1) < 1e-4
    train_idx, dev_idx, _, _ = D.split_indices(digits_ds, None, 0)
    raw_train = digits_ds.x[train_idx]
    expected_dev = (digits_ds.x[dev_idx] - raw_train.mean()) / raw_train.std()  # one channel: one mean, one std
    assert torch.allclose(digits.x_dev, expected_dev, atol=1e-5)
    assert digits.input_shape == (1, 8, 8) and digits.is_image


def test_image_scaling_has_one_statistic_per_channel():
    x = torch.rand(200, 3, 4, 4) * torch.tensor([1.0, 10.0, 100.0]).view(1, 3, 1, 1)
    splits = make_splits(Dataset(x, torch.arange(200) % 2, "binary", "rgb", ["0", "1"], is_image=True))
    assert torch.allclose(splits.x_train.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(splits.x_train.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-4)


def test_constant_feature_stays_finite():
    x = torch.randn(100, 3)
    x[:, 1] = 7.0
    splits = make_splits(Dataset(x, torch.arange(100) % 2, "binary", "const", ["0", "1"]))
    assert torch.isfinite(splits.x_train).all() and torch.equal(splits.x_train[:, 1], torch.zeros(60))


def test_regression_targets_standardized_with_training_statistics(diabetes):
    ds = load_dataset(DataSpec("diabetes"))
    train_idx, *_ = D.split_indices(ds, None, 0)
    y_train = ds.y[train_idx]
    assert math.isclose(diabetes.y_scale, y_train.std().item(), rel_tol=1e-6)
    assert math.isclose(diabetes.manifest["scaling"]["y_mean"], y_train.mean().item(), rel_tol=1e-6)
    assert abs(diabetes.y_train.mean().item()) < 1e-5 and abs(diabetes.y_train.std().item() - 1) < 1e-4
    assert diabetes.target_spread == diabetes.y_scale


# ----------------------------------------------------------------------------- --train-fraction


def test_train_fraction_keeps_dev_and_shrinks_train(digits_ds, digits):
    part = make_splits(digits_ds, train_fraction=0.25)
    assert len(part.x_train) == round(0.25 * 1079) == part.manifest["train_used"]
    assert part.manifest["train_fraction"] == 0.25
    assert part.manifest["hashes"] == digits.manifest["hashes"]  # the split itself is the same ...
    assert torch.equal(part.y_dev, digits.y_dev)  # ... so dev is the same examples
    assert torch.equal(make_splits(digits_ds, train_fraction=0.25).x_train, part.x_train)  # seeded
    # the subset's labels are drawn from the full training split, class mix roughly kept
    assert torch.bincount(part.y_train, minlength=10).min() > 10


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.5])
def test_bad_train_fraction(digits_ds, fraction):
    with pytest.raises(DataError, match="--train-fraction"):
        make_splits(digits_ds, train_fraction=fraction)


def test_data_errors_are_bad_input(tmp_path):
    """A DataError reaches the user as one line and exit code 2 (bad input), not a traceback."""
    result = invoke("train", "--dataset", "nope", "--out", tmp_path / "run")
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown data set 'nope'"), result.stderr
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- augmentation


def test_augmenter_draws_per_image_and_keeps_shape(digits):
    torch.manual_seed(0)
    batch = digits.x_train[:1].repeat(8, 1, 1, 1)
    for level in ("light", "strong"):
        out = D.augmenter(level, digits.input_shape, flips_ok=False)(batch)
        assert out.shape == batch.shape and out.dtype == batch.dtype
        assert not torch.equal(out, batch)
        assert len({tuple(img.flatten().tolist()) for img in out}) > 1  # not one shift for the whole batch
    assert torch.equal(batch, digits.x_train[:1].repeat(8, 1, 1, 1))  # input untouched
