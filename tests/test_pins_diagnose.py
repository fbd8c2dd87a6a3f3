"""Pins of `diagnose`'s curve evidence and of what `diagnose()` reports, number by number.

The curves are what tunectl records per epoch (`epoch`, `train_loss`, `train_error`,
`dev_error`). Each rule of `curve_evidence` is checked just inside and just outside its limit
(the flat-loss share, the overfitting rise of twice the noise, the still-improving window),
and each evidence's epoch and text. A noise of 0 (a variance threshold of 0) makes the limits
exact ties, so `<` and `<=` are told apart on real inputs. In-process, no training: well under
a second.
"""

from __future__ import annotations

import math

import pytest

from tunectl import diagnose as D
from tunectl.diagnose import Thresholds, curve_evidence, diagnose
from tunectl.errors import TunectlError


def curve(train_loss, dev_error, train_error=None, first_epoch=1):
    """Per-epoch rows as tunectl records them; train error 0 unless given (so dev error is above it)."""
    train_error = train_error if train_error is not None else [0.0] * len(train_loss)
    return [{"epoch": first_epoch + i, "train_loss": tl, "train_error": te, "dev_error": de}
            for i, (tl, te, de) in enumerate(zip(train_loss, train_error, dev_error))]


def kinds(rows, noise=0.0):
    return {e["kind"]: e["epoch"] for e in curve_evidence(rows, noise)}


# ----------------------------------------------------------------------------- diverged


def test_diverged_names_the_first_non_finite_epoch_with_its_text():
    rows = curve([1.0, 0.9, math.nan, math.inf], [0.5, 0.4, 0.3, 0.3])
    assert curve_evidence(rows[:3], 0.0)[0] == {
        "kind": "diverged", "epoch": 3,
        "text": "the loss became NaN/inf at epoch 3: lr too high (or inputs unscaled)"}
    assert kinds(rows)["diverged"] == 3  # the first bad epoch, not the last


@pytest.mark.parametrize("bad", [
    {"train_loss": math.nan}, {"train_loss": math.inf}, {"train_loss": None},
    {"dev_error": math.nan}, {"dev_error": -math.inf}, {"dev_error": None},
])
def test_either_a_non_finite_loss_or_dev_error_is_divergence(bad):
    rows = curve([1.0, 0.9, 0.8], [0.5, 0.5, 0.5])
    rows[1].update(bad)
    assert kinds(rows) == {"diverged": 2}  # the two finite epochs left say nothing more


def test_a_non_finite_train_error_alone_is_not_divergence():
    rows = curve([1.0, 0.9, 0.8], [0.5, 0.5, 0.5], train_error=[0.1, math.nan, None])
    assert curve_evidence(rows, 0.0) == []


def test_non_finite_epochs_are_left_out_of_the_other_rules():
    # epoch 1 diverged; the finite epochs 2-4 are flat, and the flat loss is dated from epoch 2
    rows = curve([math.nan, 2.0, 2.0, 2.0], [0.9, 0.9, 0.9, 0.9])
    assert kinds(rows) == {"diverged": 1, "flat_loss": 2}
    # a dev error of NaN in the last epoch would otherwise hide the rise (and the fall) before it
    rows = curve([2.0, 1.0, 0.5, 0.3, 0.2], [0.5, 0.2, 0.3, 0.4, math.nan])
    assert kinds(rows) == {"diverged": 5, "overfitting": 2}


def test_one_finite_epoch_says_nothing_two_are_enough():
    assert curve_evidence([], 0.0) == []
    assert curve_evidence(curve([2.0], [0.5]), 0.0) == []
    assert curve_evidence(curve([2.0, 2.0], [0.5, 0.5]), 0.0)[0]["kind"] == "flat_loss"
    assert kinds(curve([2.0, 1.0], [0.5, 0.4])) == {"still_improving": 2}


# ----------------------------------------------------------------------------- flat loss


def test_flat_loss_text_and_epoch():
    rows = curve([2.3, 2.29, 2.28, 2.27], [0.9, 0.9, 0.9, 0.9], first_epoch=4)
    assert curve_evidence(rows, 0.0) == [{
        "kind": "flat_loss", "epoch": 4,
        "text": "training loss flat from the start (2.3 → 2.27): the learning rate (too small, or too large to "
                "settle) or the initialization"}]


def test_flat_loss_is_a_fall_of_less_than_two_percent_of_the_first_loss():
    assert D.FLAT_LOSS == 0.02
    near = lambda last: kinds(curve([50.0, last], [0.9, 0.9]))  # noqa: E731
    assert "flat_loss" in near(49.5)  # 1 %
    assert "flat_loss" not in near(49.0)  # exactly 2 % (1 / 50 == 0.02): not flat
    assert "flat_loss" in near(math.nextafter(49.0, 50))  # just under 2 %
    assert "flat_loss" not in near(48.5)  # 3 %
    assert "flat_loss" in near(51.0)  # rose: flat


def test_flat_loss_looks_at_the_lowest_loss_after_the_first():
    # fell 10 % at epoch 2 then came back: not flat (the lowest of epochs 2..n counts, epoch 2 included)
    assert "flat_loss" not in kinds(curve([1.0, 0.9, 1.0, 1.0], [0.5, 0.5, 0.5, 0.5]))
    assert "flat_loss" not in kinds(curve([1.0, 1.0, 1.0, 0.9], [0.5, 0.5, 0.5, 0.5]))


def test_a_loss_of_zero_or_below_is_not_flat():
    assert "flat_loss" not in kinds(curve([0.0, 0.0, 0.0], [0.5, 0.5, 0.5]))  # no division by zero
    assert "flat_loss" not in kinds(curve([-1.0, -1.0, -1.0], [0.5, 0.5, 0.5]))
    assert "flat_loss" in kinds(curve([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]))  # a small first loss still counts
    assert "flat_loss" not in kinds(curve([0.0, 0.5, 0.5], [0.5, 0.5, 0.5]))  # the first loss decides


# ----------------------------------------------------------------------------- overfitting


OVERFIT_LOSS = [2.0, 1.0, 0.5, 0.3, 0.2]


def test_overfitting_text_and_epoch():
    rows = curve(OVERFIT_LOSS, [0.5, 0.1, 0.12, 0.14, 0.15])
    assert curve_evidence(rows, 0.002) == [{
        "kind": "overfitting", "epoch": 2,
        "text": "dev error rose from epoch 2 (0.1 → 0.15) while the training loss kept falling: overfitting "
                "from there; early stopping would end it"}]


def test_overfitting_needs_two_epochs_after_the_best():
    assert kinds(curve(OVERFIT_LOSS, [0.5, 0.4, 0.1, 0.2, 0.3])) == {"overfitting": 3}  # 2 after the best
    assert kinds(curve(OVERFIT_LOSS, [0.5, 0.4, 0.3, 0.1, 0.3])) == {}  # 1 after the best


def test_overfitting_dates_from_the_first_of_equal_best_epochs():
    assert kinds(curve(OVERFIT_LOSS + [0.1], [0.5, 0.1, 0.3, 0.1, 0.3, 0.4])) == {"overfitting": 2}


def test_overfitting_needs_a_rise_of_more_than_twice_the_noise():
    noise = 0.01  # the rise must exceed 0.02
    rise = lambda last: kinds(curve(OVERFIT_LOSS, [0.5, 0.1, 0.11, 0.11, last]), noise)  # noqa: E731
    assert rise(0.1 + 0.021) == {"overfitting": 2}
    assert rise(0.1 + 0.019) == {}
    assert rise(0.1 + 0.011) == {}  # more than the noise, not twice
    # noise 0: any rise counts, but an equal dev error is no rise
    assert kinds(curve(OVERFIT_LOSS, [0.5, 0.1, 0.1, 0.1, 0.1])) == {}
    assert kinds(curve(OVERFIT_LOSS, [0.5, 0.1, 0.1, 0.1, math.nextafter(0.1, 1)])) == {"overfitting": 2}


def test_overfitting_needs_the_training_loss_to_have_kept_falling():
    dev = [0.5, 0.1, 0.2, 0.3, 0.4]
    assert kinds(curve([2.0, 1.0, 0.9, 0.9, 1.0], dev)) == {}  # ends equal to the best epoch's loss
    assert kinds(curve([2.0, 1.0, 1.2, 1.3, 1.1], dev)) == {}  # ends above it
    assert kinds(curve([2.0, 1.0, 1.2, 1.3, 0.99], dev)) == {"overfitting": 2}  # ends below it


def test_overfitting_needs_dev_error_above_the_last_train_error():
    dev = [0.5, 0.1, 0.2, 0.3, 0.4]
    at = lambda train_last: kinds(curve(OVERFIT_LOSS, dev, [0.0] * 4 + [train_last]))  # noqa: E731
    assert at(0.39) == {"overfitting": 2}
    assert at(0.4) == {}  # dev error equal to train error: no gap
    assert at(0.5) == {}
    assert at(None) == {"overfitting": 2}  # no train error recorded: the rise alone
    assert at(math.nan) == {"overfitting": 2}


# ----------------------------------------------------------------------------- still improving


def test_still_improving_text_and_epoch_one_epoch_back():
    rows = curve([2.0, 1.0, 0.5], [0.5, 0.3, 0.2], first_epoch=3)
    assert curve_evidence(rows, 0.0) == [{
        "kind": "still_improving", "epoch": 5,
        "text": "dev error still falling at the last epoch (0.3 → 0.2 over the last 1 epoch): training longer "
                "would help"}]


def test_still_improving_looks_back_a_quarter_of_the_epochs():
    dev = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]  # 8 epochs: back 2
    (e,) = curve_evidence(curve([1.0 - 0.1 * i for i in range(8)], dev), 0.0)
    assert e["epoch"] == 8 and "(0.4 → 0.2 over the last 2 epochs)" in e["text"]
    dev = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]  # 7 epochs: back 1
    (e,) = curve_evidence(curve([1.0 - 0.1 * i for i in range(7)], dev), 0.0)
    assert "(0.4 → 0.3 over the last 1 epoch)" in e["text"]
    # 8 epochs, flat over the last one but down over the last two: still improving
    assert kinds(curve([1.0 - 0.1 * i for i in range(8)], dev[:6] + [0.3, 0.3])) == {"still_improving": 8}


def test_still_improving_needs_a_fall_of_more_than_the_noise():
    noise = 0.01
    fall = lambda last: kinds(curve([2.0, 1.0, 0.8], [0.5, 0.3, last]), noise)  # noqa: E731
    assert fall(0.3 - 0.011) == {"still_improving": 3}
    assert fall(0.3 - 0.009) == {}
    assert kinds(curve([2.0, 1.0, 0.8], [0.5, 0.3, 0.3])) == {}  # noise 0: no fall, no evidence


def test_still_improving_needs_the_last_epoch_near_the_best():
    noise = 0.01
    loss = [2.0, 1.5, 1.6, 1.6]  # above the best epoch's loss at the end: no overfitting either way
    near = lambda last: kinds(curve(loss, [0.5, 0.1, 0.4, last]), noise)  # noqa: E731
    assert near(0.1 + 0.009) == {"still_improving": 4}  # within the noise of the best
    assert near(0.1 + 0.011) == {}
    # noise 0: the last epoch must be the best itself (a tie counts)
    assert kinds(curve(loss, [0.5, 0.1, 0.4, 0.1])) == {"still_improving": 4}
    assert kinds(curve(loss, [0.5, 0.1, 0.4, 0.1 + 1e-9])) == {}


def test_evidence_comes_in_a_fixed_order():
    rows = curve([math.nan, 2.0, 2.0, 2.0], [0.9, 0.9, 0.8, 0.7])
    assert [e["kind"] for e in curve_evidence(rows, 0.0)] == ["diverged", "flat_loss", "still_improving"]


# ----------------------------------------------------------------------------- diagnose(): what it reports


def test_diagnose_defaults_are_multiclass_with_no_human_error():
    d = diagnose(0.1, 0.3)
    assert (d.task, d.human_error, d.avoidable_bias) == ("multiclass", 0.0, 0.1)
    assert d.thresholds == {"bias": 0.02, "variance": 0.02, "unit": "error rate"}
    assert (d.curve, d.evidence, d.data_curve, d.data_verdict) == ([], [], None, None)
    assert diagnose(1.0, 1.5, task="regression").thresholds == {"bias": 0.1, "variance": 0.1,
                                                                 "unit": "target units"}


def test_diagnose_copies_the_curve_four_columns_per_epoch():
    rows = curve([2.0, 1.0], [0.5, 0.4], train_error=[0.3, 0.2], first_epoch=7)
    rows[0]["seconds"] = 1.5  # other columns are left out
    del rows[1]["train_error"]  # a missing column is None
    assert diagnose(0.2, 0.4, curve=rows).curve == [
        {"epoch": 7, "train_error": 0.3, "dev_error": 0.5, "train_loss": 2.0},
        {"epoch": 8, "train_error": None, "dev_error": 0.4, "train_loss": 1.0}]


def test_diagnose_curve_noise_is_a_tenth_of_the_variance_threshold():
    assert D.NOISE == 0.1
    # variance threshold 0.1 -> noise 0.01; the last fall 0.011 is more than the noise, 0.009 is not
    falling = lambda last: curve([2.0, 1.0, 0.8], [0.5, 0.3, last])  # noqa: E731
    t = Thresholds(variance=0.1)
    assert [e["kind"] for e in diagnose(0.0, 0.289, curve=falling(0.289), thresholds=t).evidence] == \
        ["still_improving"]
    assert diagnose(0.0, 0.291, curve=falling(0.291), thresholds=t).evidence == []
    # regression: the threshold is relative to the spread (0.1 * 10 = 1 -> noise 0.1)
    assert diagnose(0.0, 2.89, task="regression", target_spread=10.0, curve=falling(2.89)).evidence == []
    assert [e["kind"] for e in diagnose(0.0, 2.88, task="regression", target_spread=10.0,
                                        curve=curve([20.0, 10.0, 8.0], [5.0, 3.0, 2.88])).evidence] == \
        ["still_improving"]


def test_diagnose_evidence_is_curve_evidence_then_the_data_curve():
    rows = curve([2.0, 1.0, 0.5], [0.5, 0.3, 0.2])
    points = [{"fraction": 0.5, "n_train": 50, "train_error": 0.0, "dev_error": 0.3},
              {"fraction": 1.0, "n_train": 100, "train_error": 0.0, "dev_error": 0.2}]
    d = diagnose(0.0, 0.2, curve=rows, data_curve=points)
    assert [e["kind"] for e in d.evidence] == ["still_improving", "more_data_helps"]
    assert d.evidence[1] == {"kind": "more_data_helps", "text": D.data_curve_verdict(points, 0.02)[1]}
    assert d.data_curve == points and d.data_verdict == "more_data_helps"
    assert diagnose(0.0, 0.2, data_curve=[]).data_curve is None  # an empty curve is no curve


def test_diagnose_actions_use_the_config_the_space_and_image_data():
    d = diagnose(0.3, 0.31, config={"width": 16, "depth": 1})
    assert any("width 16" in a["text"] for a in d.actions)
    plain = diagnose(0.3, 0.31)
    assert any("width 128" in a["text"] for a in plain.actions)  # the defaults without a config
    assert any(a["kind"] == "architecture" for a in diagnose(0.3, 0.31, image=True).actions)
    assert not any(a["kind"] == "architecture" for a in plain.actions)
    space = {"params": {"width": {"type": "int", "low": 8, "high": 32}}, "epochs": 40}
    with_space = diagnose(0.3, 0.31, space=space)
    assert [a["text"] for a in with_space.actions] != [a["text"] for a in plain.actions]
    assert any(a["text"].endswith("(searched 8–32)") for a in with_space.actions)
    assert any("epochs 40 → 80" in a["text"] for a in with_space.actions)


def test_diagnose_actions_read_the_evidence():
    flat = curve([2.3, 2.3, 2.3], [0.9, 0.9, 0.9])
    assert diagnose(0.9, 0.9, curve=flat).actions[0]["param"] == "lr"
    assert diagnose(0.9, 0.9).actions[0]["param"] != "lr"


@pytest.mark.parametrize("train, dev, message", [
    (math.nan, 0.1, "train error is nan: the model has no finite error (it diverged?); diagnose another trial"),
    (None, 0.1, "train error is None: the model has no finite error"),
    (0.1, math.inf, "dev error is inf: the model has no finite error"),
    (0.1, None, "dev error is None: the model has no finite error"),
])
def test_diagnose_refuses_a_non_finite_error_by_name(train, dev, message):
    with pytest.raises(TunectlError) as e:
        diagnose(train, dev)
    assert str(e.value).startswith(message)


def test_diagnose_checks_human_error_for_its_task():
    with pytest.raises(TunectlError, match="an error rate must be below 1"):
        diagnose(0.1, 0.2, human_error=1.5)  # multiclass by default
    with pytest.raises(TunectlError, match="an error rate must be below 1"):
        diagnose(0.1, 0.2, human_error=1.0, task="binary")
    assert diagnose(2.0, 2.5, human_error=1.5, task="regression").avoidable_bias == pytest.approx(0.5)


# ----------------------------------------------------------------------------- Thresholds: what is refused, and how it is shown


@pytest.mark.parametrize("flag, kwargs", [("--bias-threshold", "bias"), ("--variance-threshold", "variance")])
@pytest.mark.parametrize("bad", [True, False, "0.1", [0.1]])
def test_a_threshold_must_be_a_real_number_not_a_bool_or_text(flag, kwargs, bad):
    """True is an int to Python, but `Thresholds(bias=True)` is a mistake, not a limit of 1."""
    with pytest.raises(TunectlError) as e:
        Thresholds(**{kwargs: bad})
    assert str(e.value) == f"{flag} {bad!r}: must be a finite number >= 0, e.g. 0.02"


def test_a_refused_threshold_is_shown_as_given():
    for kwargs, text in [({"variance": -0.5}, "--variance-threshold -0.5"), ({"bias": math.inf}, "--bias-threshold inf"),
                         ({"bias": 0.1, "variance": math.nan}, "--variance-threshold nan")]:
        with pytest.raises(TunectlError) as e:
            Thresholds(**kwargs)
        assert str(e.value) == f"{text}: must be a finite number >= 0, e.g. 0.02"


def test_a_long_refused_threshold_is_cut_to_forty_characters():
    value = "9" * 100
    with pytest.raises(TunectlError) as e:
        Thresholds(bias=value)
    shown = str(e.value).removeprefix("--bias-threshold ").split(": must be")[0]
    assert len(shown) == 40 and shown.startswith("'999") and "..." in shown and shown.endswith("999'")


# ----------------------------------------------------------------------------- data_curve_verdict: ties and texts


def _two(dev_half, dev_whole):
    return [{"fraction": 0.5, "n_train": 40, "train_error": 0.0, "dev_error": dev_half},
            {"fraction": 1.0, "n_train": 80, "train_error": 0.0, "dev_error": dev_whole}]


def test_a_fall_of_exactly_a_quarter_of_the_threshold_is_flat():
    # binary fractions, so the fall 0.5 - 0.375 is exactly 0.125 = 0.5 / 4
    assert D.data_curve_verdict(_two(0.5, 0.375), 0.5)[0] == "flat"
    assert D.data_curve_verdict(_two(0.5, 0.375 - 2 ** -20), 0.5)[0] == "more_data_helps"
    # --variance-threshold 0: an unchanged dev error is not "still falling", any fall is
    assert D.data_curve_verdict(_two(0.25, 0.25), 0.0)[0] == "flat"
    assert D.data_curve_verdict(_two(0.25, 0.25 - 2 ** -20), 0.0)[0] == "more_data_helps"


def test_data_curve_verdict_texts_in_full():
    assert D.data_curve_verdict(_two(0.25, 0.125), 0.02) == (
        "more_data_helps",
        "dev error still falling from 50% → 100% of the training split (40 → 80 examples): 0.25 → 0.125; "
        "more data would help")
    assert D.data_curve_verdict(_two(0.25, 0.25), 0.02) == (
        "flat",
        "dev error flat from 50% → 100% of the training split (40 → 80 examples): 0.25 → 0.25; "
        "more of the same data would not help much")


# ----------------------------------------------------------------------------- data_curve: real retraining on shares of the split


def test_data_curve_retrains_on_shares_of_the_studys_own_split(monkeypatch):
    """Each point is a real run of the config on a share of *this* split (its ratios, seed and
    --classes), equal to the run computed here by hand; a batch above the share is the full batch."""
    from tunectl.config import from_dict
    from tunectl.data import DataSettings, make_splits, read_dataset
    from tunectl.train import fit

    data = DataSettings(dataset="iris", split="0.5,0.25,0.25", split_seed=3, classes="0,2")
    config = {"epochs": 2, "batch_size": 16, "width": 8, "depth": 1, "lr": 0.05, "seed": 1}
    seen = []
    # --device beats TUNECTL_DEVICE, for the check and for every retraining
    monkeypatch.setenv("TUNECTL_DEVICE", "no-such-device")
    points = D.data_curve(config, data, fractions=(0.25, 1.0), device="cpu", on_point=seen.append)
    assert seen == points and len(points) == 2

    ds, _ = read_dataset(data)
    assert len(ds.y) == 100  # two of iris's three classes
    for f, point in zip((0.25, 1.0), points):
        splits = make_splits(ds, (0.5, 0.25, 0.25), 3, f)
        n = len(splits.x_train)
        cfg = from_dict(config)
        hist = fit(cfg if cfg.batch_size <= n else cfg.replace(batch_size=0), splits, device="cpu")
        assert point == {"fraction": f, "n_train": n, "train_error": hist.train_error, "dev_error": hist.dev_error,
                         "best_epoch": hist.best_epoch, "epochs": 2, "seconds": point["seconds"]}
        assert point["seconds"] > 0
    assert [p["n_train"] for p in points] == [12, 50]  # 25 % and all of the 50 training examples
    # the mini-batch of 16 is kept where it fits (50), and the full batch where it does not (12)
    full = make_splits(ds, (0.5, 0.25, 0.25), 3, 1.0)
    assert points[1]["train_error"] != fit(from_dict(config).replace(batch_size=0), full, device="cpu").train_error


def test_data_curve_checks_the_device_before_reading_the_data(tmp_path):
    from tunectl.data import DataSettings

    missing = DataSettings(dataset=f"csv:{tmp_path / 'absent.csv'}", target="y")
    with pytest.raises(TunectlError, match="--device no-such-device: unknown device"):
        D.data_curve({"epochs": 1}, missing, device="no-such-device")
