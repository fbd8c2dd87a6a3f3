"""Recurrent nets and sequence data (issue 16): each cell trains and is tuned; float, token and character
sequences; --as-sequence; packed lengths honoured; clip_norm bounds the step; the diagnosis names the
recurrent parameters; bad inputs are one line, exit 2, nothing written."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

from conftest import invoke, ok_json
from test_hardening import snapshot
from tunectl.config import TrainConfig
from tunectl.data import DataSettings, load_splits, make_splits
from tunectl.errors import ConfigError
from tunectl.models import build_model, load_checkpoint, model_from_checkpoint
from tunectl.recurrent import lengths_of
from tunectl.sequences import rows
from tunectl.train import evaluate, fit


def majority_error(splits) -> float:
    counts = torch.bincount(splits.y_dev)
    return 1 - counts.max().item() / len(splits.y_dev)


@pytest.fixture(scope="module")
def digits_rows():
    return load_splits(DataSettings(dataset="digits", as_sequence=True))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A DNA-like CSV (is the text GC-rich?), an npz of token ids (does token 7 occur?), an npz of
    float sequences (is the first feature's sum positive?)."""
    root = tmp_path_factory.mktemp("seq")
    rng = np.random.default_rng(0)
    with open(root / "dna.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "seq", "label"])
        for i in range(300):
            s = "".join(rng.choice(list("ACGT"), rng.integers(6, 25)))
            w.writerow([f"id{i}", s, "rich" if (s.count("G") + s.count("C")) / len(s) > 0.5 else "poor"])
    x = np.zeros((300, 12), dtype=np.int64)
    for i in range(300):
        n = rng.integers(3, 13)
        x[i, :n] = rng.integers(1, 20, n)
    np.savez(root / "tok.npz", x=x, y=(x == 7).any(1).astype(np.int64))
    xf = rng.normal(size=(300, 10, 3)).astype(np.float32)
    np.savez(root / "flt.npz", x=xf, y=(xf[:, :, 0].sum(1) > 0).astype(np.int64))
    return root


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_each_cell_learns_digits_read_row_by_row(digits_rows, cell):
    """8 steps of 8 features: every cell beats the majority class by far in a few epochs."""
    assert digits_rows.input_shape == (8, 8) and not digits_rows.is_image
    hist = fit(TrainConfig(model="rnn", cell=cell, hidden=32, depth=1, lr=1e-2, epochs=4, seed=0), digits_rows)
    assert hist.status == "complete"
    assert hist.dev_error < majority_error(digits_rows) / 3
    rnn = hist.model.body.rnn
    assert type(rnn).__name__ == {"rnn": "RNN", "gru": "GRU", "lstm": "LSTM"}[cell]  # torch's own cells


def test_as_sequence_is_the_images_rows_and_is_recorded(digits_rows, digits):
    """--as-sequence: step t is image row t; the split is digits' own (same hashes), recorded as sequences."""
    raw = load_splits(DataSettings(dataset="digits"))
    assert digits_rows.manifest["hashes"] == raw.manifest["hashes"]
    assert digits_rows.manifest["sequence"] == {"kind": "floats", "steps": 8}
    assert DataSettings(dataset="digits", as_sequence=True).to_dict()["as_sequence"] is True
    assert "as_sequence" not in DataSettings(dataset="digits").to_dict()
    img = torch.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    assert torch.equal(rows(img)[1, 2], torch.cat([img[1, c, 2] for c in range(3)]))


def test_an_image_is_read_row_by_row_by_the_rnn_itself(digits):
    """Without --as-sequence, model=rnn reads an image's rows (H steps of C*W features), as a GRU on them."""
    hist = fit(TrainConfig(model="rnn", hidden=32, depth=1, lr=1e-2, epochs=3), digits)
    assert hist.dev_error < majority_error(digits) / 3


def test_bidirectional_head_reads_both_final_states():
    """The head sees 2 x hidden features: the forward state at the last step, the backward one at the first."""
    cfg = TrainConfig(model="rnn", cell="gru", hidden=5, depth=2, bidirectional=True)
    net = build_model(cfg, (7, 3), 4)
    assert net.head[-1].in_features == 10
    x = torch.randn(2, 7, 3)
    out, h = net.body.rnn(x)
    expected = torch.cat([out[:, -1, :5], out[:, 0, 5:]], 1)  # what "the last time step, both ways" means
    assert torch.allclose(net.body(x), expected, atol=1e-6)


def test_packed_lengths_ignore_the_padding():
    """A token sequence's state is the one after its last real token: padding it further changes nothing."""
    cfg = TrainConfig(model="rnn", cell="lstm", hidden=6, depth=1, embed=4, bidirectional=True)
    net = build_model(cfg, (5,), 3, vocab=10).eval()
    short = torch.tensor([[3, 4, 5, 0, 0], [1, 2, 0, 0, 0]])
    longer = torch.cat([short, torch.zeros(2, 4, dtype=torch.int64)], 1)
    assert torch.equal(lengths_of(short), torch.tensor([3, 2]))
    assert torch.allclose(net(short), net(longer), atol=1e-6)
    alone = net(short[1:, :2])  # the second sequence without any padding at all
    assert torch.allclose(net(short)[1:], alone, atol=1e-6)


def test_character_sequences_vocabulary_from_the_training_split(files):
    s = load_splits(DataSettings(dataset=f"csv:{files / 'dna.csv'}", target="label", sequence="seq"),
                    include_test=True)
    seq = s.manifest["sequence"]
    assert seq["kind"] == "chars" and seq["vocabulary"] == "ACGT" and s.vocab == 6
    assert s.x_train.dtype == torch.int64 and int(s.x_train.max()) <= 5  # 0 pad, 1 unknown, 2-5 A C G T
    hist = fit(TrainConfig(model="rnn", cell="gru", hidden=32, depth=1, lr=1e-2, epochs=6), s)
    assert hist.dev_error < majority_error(s) / 2


def test_characters_unseen_in_training_become_the_unknown_token(tmp_path):
    """The vocabulary is the training split's: a character only dev or test hold is token 1."""
    from tunectl.sequences import encode_chars

    x = torch.tensor([[ord("a"), ord("b"), 0], [ord("z"), ord("a"), ord("q")]])
    tokens, vocab = encode_chars(x, np.array([0]))
    assert vocab == "ab" and tokens.tolist() == [[2, 3, 0], [1, 2, 1]]


def test_token_ids_and_float_sequences(files):
    tok = load_splits(DataSettings(dataset=f"npz:{files / 'tok.npz'}", as_sequence=True))
    assert tok.vocab == 20 and tok.manifest["sequence"]["kind"] == "tokens"
    assert torch.equal(tok.x_train, tok.x_train.round())  # never standardized
    hist = fit(TrainConfig(model="rnn", hidden=32, depth=1, lr=1e-2, epochs=6, embed=8), tok)
    assert hist.dev_error < majority_error(tok) / 2
    ckpt = hist.checkpoint()
    assert ckpt["vocab"] == 20
    model, _ = model_from_checkpoint(ckpt)  # the embedding's size comes back without the data
    assert evaluate(model, tok.x_dev, tok.y_dev, tok.task)["error"] == hist.dev_error

    flt = load_splits(DataSettings(dataset=f"npz:{files / 'flt.npz'}"))
    assert flt.input_shape == (10, 3) and flt.vocab == 0
    hist = fit(TrainConfig(model="rnn", cell="lstm", hidden=16, depth=1, lr=1e-2, epochs=6), flt)
    assert hist.dev_error < majority_error(flt) / 2


def test_clip_norm_bounds_the_step(digits_rows):
    """Plain SGD, one full-batch step: the weights move lr x the clipped gradient, so by at most lr x clip_norm."""
    def moved(clip: float) -> float:
        cfg = TrainConfig(model="rnn", cell="rnn", hidden=16, depth=1, optimizer="sgd", lr=1.0, batch_size=0,
                          epochs=1, clip_norm=clip, seed=3)
        torch.manual_seed(cfg.seed)
        before = build_model(cfg, digits_rows.input_shape, digits_rows.out_dim).state_dict()
        after = fit(cfg, digits_rows).model.state_dict()
        return math.sqrt(sum(((after[k] - before[k]) ** 2).sum().item() for k in before))

    free = moved(0.0)
    assert free > 0.05  # the unclipped gradient is larger than the bound below
    assert moved(0.01) == pytest.approx(0.01, rel=1e-3)
    assert moved(1e6) == pytest.approx(free, rel=1e-5)  # a bound above the norm changes nothing


def test_a_cell_or_model_that_cannot_read_the_data_is_refused(files):
    tok = load_splits(DataSettings(dataset=f"npz:{files / 'tok.npz'}", as_sequence=True))
    with pytest.raises(ConfigError, match="cannot read token sequences"):
        build_model(TrainConfig(model="mlp"), tok.input_shape, 1, tok.vocab)
    with pytest.raises(ConfigError, match="needs at least one layer"):
        build_model(TrainConfig(model="rnn", depth=0), (8, 8), 10)
    with pytest.raises(ConfigError, match="add --as-sequence"):
        build_model(TrainConfig(model="rnn"), (4,), 3)


def test_rnn_space_tunes_every_cell_and_diagnose_names_the_recurrent_parameters(tmp_path):
    space = tmp_path / "rnn.yaml"
    space.write_text("""\
model: rnn
dataset: digits
epochs: 2
params:
  cell: {type: categorical, choices: [rnn, gru, lstm]}
  bidirectional: {type: categorical, choices: [false, true]}
fixed:
  hidden: 8
  depth: 1
  lr: 0.01
""")
    out = ok_json(invoke("tune", "--space", space, "--sampler", "grid", "--trials", "6", "--pruner", "none",
                         "--root", tmp_path / "studies", "--study", "r", "--as-sequence", "--json"))
    trials = out["trials"] if "trials" in out else out["leaderboard"]
    seen = {(t["params"]["cell"], t["params"]["bidirectional"]) for t in trials}
    assert seen == {(c, b) for c in ("rnn", "gru", "lstm") for b in (False, True)}
    d = ok_json(invoke("diagnose", "r", "--root", tmp_path / "studies", "--json", "--human-error", "0",
                       "--next-space", tmp_path / "next.yaml"))
    params = {a.get("param") for a in d["actions"]}
    assert "hidden" in params and "depth" in params and "width" not in params
    assert "augment" not in params  # --as-sequence data are no longer images: augmentation would do nothing


def test_loss_spike_is_evidence_and_asks_for_clip_norm():
    from tunectl.diagnose import curve_evidence, diagnose

    rows = [{"epoch": i + 1, "train_loss": l, "train_error": 0.3, "dev_error": 0.3, "dev_loss": l}
            for i, l in enumerate([1.0, 0.6, 0.95, 0.5])]
    kinds = {e["kind"]: e["epoch"] for e in curve_evidence(rows, 0.0)}
    assert kinds.get("loss_spike") == 3  # 0.95 > 1.5 x 0.6
    assert "loss_spike" not in {e["kind"] for e in curve_evidence(rows[:2] + [{**rows[2], "train_loss": 0.89}], 0.0)}
    cfg = TrainConfig(model="rnn", cell="rnn").to_dict()
    d = diagnose(0.3, 0.3, 0.0, "multiclass", rows, config=cfg)
    clip = [a for a in d.actions if a["param"] == "clip_norm"]
    assert clip and clip[0]["change"]["spec"]["low"] == 0.5 and "exploding gradients" in clip[0]["text"]


def test_the_cli_trains_a_character_rnn_and_evaluates_it(files, tmp_path):
    out = ok_json(invoke("train", "-d", f"csv:{files / 'dna.csv'}", "--target", "label", "--sequence", "seq",
                         "-m", "rnn", "--set", "cell=lstm", "--set", "bidirectional=yes", "--set", "hidden=16",
                         "--epochs", "2", "--out", tmp_path / "run", "--json"))
    ckpt = load_checkpoint(tmp_path / "run" / "model.pt")
    assert ckpt["config"]["bidirectional"] is True and ckpt["vocab"] == 6
    assert out["dev_error"] == ckpt["dev_error"]
    assert "sequence: seq" in (tmp_path / "run" / "config.yaml").read_text()


@pytest.mark.parametrize("args,message", [
    (["-d", "digits", "--sequence", "seq"], "names a CSV's text column"),
    (["-d", "csv:FILES/dna.csv", "--target", "label", "--sequence", "nope"], "no column 'nope'; --sequence"),
    (["-d", "csv:FILES/dna.csv", "--target", "seq", "--sequence", "seq"], "both name 'seq'"),
    (["-d", "csv:FILES/empty.csv", "--target", "label", "--sequence", "seq"], "line 3: the sequence column"),
    (["-d", "npz:FILES/neg.npz", "--as-sequence", "-m", "rnn"], "token ids, which must be in"),
    (["-d", "npz:FILES/tok.npz", "--as-sequence", "-m", "mlp"], "cannot read token sequences"),
    (["-d", "npz:FILES/tok.npz", "--as-sequence", "-m", "rnn", "--set", "adv_eps=0.1"], "are token ids"),
    (["-d", "iris", "-m", "rnn"], "add --as-sequence"),
    (["-d", "digits", "-m", "rnn", "--set", "depth=0"], "at least one layer"),
    (["-d", "digits", "-m", "rnn", "--set", "cell=transformer"], "cell: 'transformer' is not one of rnn, gru, lstm"),
    (["-d", "digits", "-m", "rnn", "--set", "hidden=0"], "hidden=0: must be >= 1"),
    (["-d", "digits", "-m", "rnn", "--set", "hidden=1e9"], "hidden=1000000000: must be <= 65536"),
    (["-d", "digits", "-m", "rnn", "--set", "bidirectional=maybe"], "bidirectional: expected true or false"),
    (["-d", "digits", "-m", "rnn", "--set", "bidirectional=2"], "bidirectional: expected true or false"),
    (["-d", "digits", "-m", "rnn", "--set", "embed=0"], "embed=0: must be >= 1"),
    (["-d", "digits", "--set", "clip_norm=-1"], "clip_norm=-1.0: must be >= 0"),
    (["-d", "digits", "--set", "clip_norm=inf"], "clip_norm: must be a finite number"),
    (["-d", "digits", "--set", "clip_norm=x"], "clip_norm: expected float"),
])
def test_bad_sequence_inputs_are_one_line_exit_2_nothing_written(files, tmp_path, args, message):
    np.savez(files / "neg.npz", x=np.array([[1, -2], [3, 0]] * 10), y=np.arange(20) % 2)
    (files / "empty.csv").write_text("seq,label\nACGT,a\n,b\nAC,a\n")
    before = snapshot(tmp_path)
    result = invoke("train", *[a.replace("FILES", str(files)) for a in args], "--epochs", "1", "--out",
                    tmp_path / "run", cwd=tmp_path)
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert snapshot(tmp_path) == before


def test_a_bool_is_searched_as_a_categorical_only(tmp_path):
    from tunectl.errors import SpaceError
    from tunectl.space import parse_space

    with pytest.raises(SpaceError, match="bidirectional is true or false"):
        parse_space({"model": "rnn", "params": {"bidirectional": {"type": "int", "low": 0, "high": 1}}})
    sp = parse_space({"model": "rnn", "params": {"bidirectional": {"type": "categorical", "choices": [False, True]}}})
    assert sp.params["bidirectional"]["choices"] == [False, True]
