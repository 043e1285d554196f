"""Lesson 4's capstone: layers with caches, a network of any depth, mini-batch SGD, and a
network trained on scikit-learn's digits that the judge measures on held-out ones.

What is asserted:
- each layer's backward (the reference's) agrees with finite differences and with torch;
- each check names the common mistakes it is written for;
- the digits: the held-out images are never returned by the loader, the sandbox's copy of
  the file holds none of them, and the sandbox mounts that copy over scikit-learn's file;
- the capstone's reference reaches the lines the text states, while a "network" that only
  memorised the samples it was given scores below the judge's line on the held-out ones;
- graded for real (a kernel in the sandbox): the source notebook's capstone gets full
  marks, and a notebook that hunts for the held-out digits inside the sandbox finds none.
"""

from __future__ import annotations

import gzip
import re
import zlib

import numpy as np
import pytest
import torch
from lessons import grade, make_submission, source_path

from course_lib import data, gradcheck, nets
from course_lib.grading import mlp as G
from course_lib.reference import mlp as RM

ASSIGNMENT = "04_backprop_mlp"
CAPSTONE_CELLS = {"affine_backward_values": 1, "relu_backward_values": 1,
                  "sigmoid_backward_values": 1, "softmax_loss_values": 1, "mlp_loss_values": 2,
                  "mlp_loss_repeat": 1, "sgd_epoch_values": 1, "train_digits_validation": 1,
                  "train_digits_heldout": 2}


# ---------------------------------------------------------------------------
# each layer's backward: finite differences and torch
# ---------------------------------------------------------------------------

def _fd(forward, x, dout):
    return gradcheck.numerical_gradient(lambda v: float(np.sum(forward(v) * dout)), x.copy())


def _torch_grads(f, *arrays, dout):
    leaves = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    out = f(*leaves)
    out.backward(torch.tensor(dout, dtype=torch.float64))
    return [leaf.grad.numpy() for leaf in leaves]


@pytest.mark.parametrize("shape", [(1, 3, 2), (5, 4, 3), (7, 6, 6)])
def test_affine_backward_agrees_with_finite_differences_and_torch(shape):
    N, n_in, n_out = shape
    rng = np.random.default_rng(N)
    x, W, b = rng.normal(size=(N, n_in)), rng.normal(size=(n_out, n_in)), rng.normal(size=n_out)
    dout = rng.normal(size=(N, n_out)) / N
    out, cache = RM.affine_forward(x, W, b)
    dx, dW, db = RM.affine_backward(dout, cache)
    assert cache[0] is x and cache[1] is W and cache[2] is b
    np.testing.assert_allclose(dx, _fd(lambda v: v @ W.T + b, x, dout), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(dW, _fd(lambda v: x @ v.T + b, W, dout), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(db, _fd(lambda v: x @ W.T + v, b, dout), rtol=1e-6, atol=1e-9)
    for got, want in zip((dx, dW, db), _torch_grads(torch.nn.functional.linear, x, W, b,
                                                     dout=dout), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-10)


def test_relu_backward_agrees_with_torch_and_sends_nothing_through_zero():
    rng = np.random.default_rng(1)
    x = rng.integers(-2, 3, size=(6, 5)) / 2.0  # many exact zeros: ReLU'(0) = 0, as torch
    dout = rng.normal(size=x.shape)
    out, cache = RM.relu_forward(x)
    dx = RM.relu_backward(dout, cache)
    (want,) = _torch_grads(torch.relu, x, dout=dout)
    np.testing.assert_allclose(dx, want, rtol=1e-7, atol=1e-10)
    assert np.all(dx[x == 0] == 0) and np.any(x == 0)
    x_smooth = rng.normal(size=(4, 3))  # away from the kink, finite differences are exact
    d = rng.normal(size=x_smooth.shape)
    np.testing.assert_allclose(RM.relu_backward(d, x_smooth),
                               _fd(lambda v: np.maximum(v, 0), x_smooth, d), atol=1e-8)


def test_sigmoid_backward_agrees_with_finite_differences_and_torch():
    rng = np.random.default_rng(2)
    x = rng.normal(0, 3, size=(5, 4))
    dout = rng.normal(size=x.shape)
    out, cache = RM.sigmoid_forward(x)
    assert cache is out
    dx = RM.sigmoid_backward(dout, cache)
    np.testing.assert_allclose(dx, _fd(lambda v: 1 / (1 + np.exp(-v)), x, dout), atol=1e-9)
    np.testing.assert_allclose(dx, _torch_grads(torch.sigmoid, x, dout=dout)[0], rtol=1e-7,
                               atol=1e-10)


def test_softmax_loss_agrees_with_torch_cross_entropy_even_when_saturated():
    rng = np.random.default_rng(3)
    for scale in (1.0, 500.0):
        scores, y = rng.normal(0, scale, size=(6, 4)), rng.integers(0, 4, size=6)
        loss, dscores = RM.softmax_loss(scores, y)
        s = torch.tensor(scores, requires_grad=True)
        want = torch.nn.functional.cross_entropy(s, torch.tensor(y))
        want.backward()
        assert np.isfinite(loss) and abs(loss - want.item()) <= 1e-9 * max(1.0, abs(loss))
        np.testing.assert_allclose(dscores, s.grad.numpy(), rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("hidden", ["relu", "sigmoid"])
def test_mlp_loss_is_backprop_of_the_same_network(hidden):
    """The layered network gives the lesson's backprop's loss and gradients, any depth."""
    rng = np.random.default_rng(4)
    for sizes in [(3, 4), (3, 5, 4), (6, 5, 4, 3)]:
        params = nets.init_params(sizes, seed=len(sizes))
        X, y = rng.normal(size=(7, sizes[0])), rng.integers(0, sizes[-1], size=7)
        loss, grads = RM.mlp_loss(params, X, y, hidden)
        acts = [hidden] * (len(sizes) - 2) + ["identity"]
        want_loss, want = RM.backprop(params, X, y, acts, "cross_entropy")
        assert loss == pytest.approx(want_loss, rel=1e-12)
        for (dW, db), (eW, eb) in zip(grads, want, strict=True):
            np.testing.assert_allclose(dW, eW, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(db, eb, rtol=1e-10, atol=1e-12)


def test_sgd_epoch_is_sgd_steps_on_the_seeded_batches():
    rng = np.random.default_rng(5)
    params = nets.init_params((3, 4, 2), seed=1)
    X, y = rng.normal(size=(11, 3)), rng.integers(0, 2, size=11)
    new, losses = RM.sgd_epoch(params, X, y, 0.3, 4, seed=7)
    order = np.random.default_rng(7).permutation(11)
    p, want_losses = params, []
    for idx in (order[:4], order[4:8], order[8:]):
        loss, grads = RM.mlp_loss(p, X[idx], y[idx])
        want_losses.append(loss)
        p = RM.sgd_step(p, grads, 0.3)
    assert losses == want_losses
    for (W, b), (V, c) in zip(new, p, strict=True):
        assert np.array_equal(W, V) and np.array_equal(b, c)


# ---------------------------------------------------------------------------
# the checks name the common mistakes
# ---------------------------------------------------------------------------

def _relu_dout_mask(dout, cache):
    return dout * (dout > 0)


def _sigmoid_again(dout, cache):
    s = 1 / (1 + np.exp(-cache))
    return dout * s * (1 - s)


def _softmax_loss_sum(scores, y):
    loss, d = RM.softmax_loss(scores, y)
    return loss * len(y), d


def _softmax_loss_no_n(scores, y):
    loss, d = RM.softmax_loss(scores, y)
    return loss, d * len(y)


def _mlp_no_activation_backward(params, X, y, hidden="relu"):
    return 0.0 + RM.mlp_loss(params, X, y, hidden)[0], G._mlp_variant(params, X, y, hidden,
                                                                       "skip_activation")


_BUFFER = {}


def _mlp_never_zeroed(params, X, y, hidden="relu"):
    """Gradients added into a buffer that outlives the call and is never zeroed."""
    loss, grads = RM.mlp_loss(params, X, y, hidden)
    key = tuple(W.shape for W, _ in params)
    old = _BUFFER.get(key)
    if old is not None:
        grads = [(a + dW, c + db) for (a, c), (dW, db) in zip(old, grads, strict=True)]
    _BUFFER[key] = grads
    return loss, grads


def _epoch_variant(mistake):
    def sgd_epoch(params, X, y, lr, batch_size, seed, hidden="relu"):
        return G._epoch_variant(params, X, y, lr, batch_size, seed, mistake)
    return sgd_epoch


MISTAKES = [
    # (check, part, wrong function, what the message must say)
    ("affine_backward", "values", lambda dout, c: (dout @ c[1], c[0].T @ dout, dout.sum(0)),
     "dW is transposed"),
    ("affine_backward", "values", lambda dout, c: (dout @ c[1], dout.T @ c[0], dout.mean(0)),
     "the 1/N is applied twice"),
    ("affine_backward", "values", lambda dout, c: (dout @ c[1].T, dout.T @ c[0], dout.sum(0)),
     "the cache is the tuple \\(x, W, b\\)|wrong product"),
    ("relu_backward", "values", lambda dout, x: dout * (x >= 0), "ReLU'\\(0\\) was taken as 1"),
    ("relu_backward", "values", _relu_dout_mask, "the mask was taken from dout"),
    ("sigmoid_backward", "values", _sigmoid_again, "you applied σ to the cache again"),
    ("sigmoid_backward", "values", lambda dout, s: dout * s, "the factor \\(1 - s\\) is missing"),
    ("softmax_loss", "values", _softmax_loss_sum, "the loss is a sum over the samples"),
    ("softmax_loss", "values", _softmax_loss_no_n, "dscores is not divided by N"),
    ("mlp_loss", "values", _mlp_no_activation_backward,
     "activation backward is skipped"),
    ("mlp_loss", "repeat", _mlp_never_zeroed, "the gradients were not zeroed between calls"),
    ("sgd_epoch", "values", _epoch_variant("no_shuffle"), "the samples were not shuffled"),
    ("sgd_epoch", "values", _epoch_variant("accumulate"),
     "the gradients were not zeroed between steps"),
    ("sgd_epoch", "values", _epoch_variant("drop_last"), "the last, smaller batch was dropped"),
    ("sgd_epoch", "values", _epoch_variant("labels_unshuffled"),
     "the inputs were shuffled but the labels were not"),
]


@pytest.mark.parametrize(("name", "part", "wrong", "message"), MISTAKES,
                         ids=[f"{m[0]}-{i}" for i, m in enumerate(MISTAKES)])
def test_known_mistake_is_named(name, part, wrong, message):
    _BUFFER.clear()
    with pytest.raises(AssertionError, match=message):
        getattr(G, f"check_{name}")(wrong, part=part)


def test_a_wrong_layer_backward_message_carries_a_gradient_check():
    with pytest.raises(AssertionError, match=r"A gradient check \(central differences"):
        G.check_sigmoid_backward(lambda dout, s: dout * s * s, part="values")


def test_a_backward_that_expects_another_cache_is_told_the_cache():
    def expects_a_dict(dout, cache):
        return dout @ cache["W"], dout.T @ cache["x"], dout.sum(0)

    with pytest.raises(AssertionError,
                       match=r"(?s)raised TypeError.*Remember: the cache is the tuple \(x, W, b\)"):
        G.check_affine_backward(expects_a_dict, part="values")


# ---------------------------------------------------------------------------
# the digits and their held-out part
# ---------------------------------------------------------------------------

def _row_keys(X, y):
    rows = np.column_stack([np.rint(X * 16).astype(np.int64), y])
    return {r.tobytes() for r in rows}


def test_the_loader_never_returns_a_held_out_digit():
    X, y = data.digits()
    X_ho, y_ho = data.digits_held_out()
    assert X.shape == (1502, 64) and X_ho.shape == (295, 64)
    assert X.min() == 0 and X.max() == 1 and set(np.unique(y)) == set(range(10))
    assert not _row_keys(X, y) & _row_keys(X_ho, y_ho)
    X_tr, y_tr, X_val, y_val = data.digits_split()
    assert len(y_tr) + len(y_val) == 1502 and len(y_val) == 300
    assert not (_row_keys(X_tr, y_tr) | _row_keys(X_val, y_val)) & _row_keys(X_ho, y_ho)


def test_the_sandbox_copy_holds_every_course_digit_and_no_held_out_one(tmp_path):
    copy = data.write_digits_without_held_out(tmp_path)
    rows = data._digits_rows(copy)
    X, y = data.digits()
    assert np.array_equal(rows[:, :64] / 16.0, X) and np.array_equal(rows[:, 64], y)
    assert data.digits_held_out(copy)[0].shape == (0, 64)
    # the same loader, reading the copy, gives the same split (what the kernel sees)
    with gzip.open(copy, "rt") as f:
        assert len(f.read().splitlines()) == 1502
    binds = data.sandbox_digits_binds(tmp_path)
    assert binds == ["--ro-bind", str(copy), str(data.digits_path())]


def test_the_held_out_choice_is_a_hash_of_each_row():
    rows = data._digits_rows()
    held = data._held_out(rows)
    again = [zlib.crc32(r.astype(np.uint8).tobytes()) % data.HELD_OUT_EVERY == 0 for r in rows]
    assert held.tolist() == again and held.sum() == 295


def test_the_digits_file_is_read_as_numpy_reads_it_and_a_broken_one_is_named(tmp_path):
    rows = data._digits_rows()
    with gzip.open(data.digits_path(), "rt") as f:
        assert np.array_equal(rows, np.loadtxt(f, delimiter=",").astype(np.int64))
    assert rows.shape == (1797, 65) and rows.dtype == np.int64 and not rows.flags.writeable
    broken = tmp_path / "digits.csv.gz"
    with gzip.open(broken, "wt") as f:
        f.write("0,1,2\n3,4,5\n")
    with pytest.raises(ValueError, match=f"{re.escape(str(broken))}: expected 65 numbers on "
                                         "each of its 2 lines, got 6 in all"):
        data._digits_rows(broken)


def test_every_sealed_kernel_mounts_the_copy_over_scikit_learns_file(tmp_path):
    from course_lib.judge import sandbox

    try:
        box = sandbox.Sandbox(tmp_path, tmp_path, tmp_path)
    except sandbox.SandboxUnavailable as exc:
        pytest.skip(str(exc))
    argv = box.command(box.new_box(None), ["python3"])
    i = argv.index(str(data.digits_path()))
    assert argv[i - 2:i] == ["--ro-bind", str(tmp_path / "digits-without-held-out.csv.gz")]
    seal = next(j for j in range(len(argv) - 1) if argv[j:j + 2] == ["--remount-ro", "/"])
    assert seal > i  # bound before the root is made read-only


# ---------------------------------------------------------------------------
# the capstone: the reference reaches the stated lines; a memoriser does not
# ---------------------------------------------------------------------------

@pytest.mark.slow  # trains the capstone network three times: seconds
def test_the_reference_reaches_the_lines_the_text_states():
    """With room to spare: the lines are 95% and 93%; the reference's setting gets 96.3%
    on validation, 96.9% on the held-out digits, and 97.7% on the validation part of
    another split (seed 1): the setting the text gives is not tuned to one split."""
    X_tr, y_tr, X_val, y_val = data.digits_split()
    params, history = RM.train_digits(X_tr, y_tr, X_val, y_val)
    X_ho, y_ho = data.digits_held_out()
    assert len(history["val_acc"]) == RM.DIGITS_EPOCHS
    assert RM.accuracy(params, X_val, y_val) == history["val_acc"][-1] >= G.VAL_LINE + 0.01
    assert round(history["val_acc"][-1], 2) == 0.96  # "about 96%" in the text
    assert min(history["val_acc"][-3:]) >= 0.96  # "levels off around 96%"
    assert RM.accuracy(params, X_ho, y_ho) >= 0.96 > G.HELD_OUT_LINE
    X1, y1, X1_val, y1_val = data.digits_split(seed=1)
    assert RM.accuracy(RM.train_digits(X1, y1, X1_val, y1_val)[0], X1_val, y1_val) >= 0.96 > 0.93
    G.check_train_digits(RM.train_digits)  # both parts


def lookup_table_network(X, y, eps=1e-7):
    """A ReLU network that only memorised (X, y): a random projection h = r·x of each sample,
    and for each training sample a "tent" of width eps around its own h, built from three
    ReLU units, voting for its label. Exact on the samples it was given; on any other
    sample no tent is hit and every score is 0."""
    rng = np.random.default_rng(0)
    r = rng.normal(size=X.shape[1])
    h = X @ r
    W1 = np.repeat(r[None, :], 3 * len(X), axis=0)
    b1 = -np.repeat(h, 3) + np.tile([eps, 0.0, -eps], len(X))
    W2 = np.zeros((10, 3 * len(X)))
    for n, label in enumerate(y):
        W2[label, 3 * n:3 * n + 3] = np.array([1.0, -2.0, 1.0]) / eps
    return [(W1, b1), (W2, np.zeros(10))]


def memoriser(X_train, y_train, X_val, y_val, on_epoch=None):
    return lookup_table_network(X_train, y_train), {"loss": [0.0], "train_acc": [1.0],
                                                    "val_acc": [1.0]}


def fit_to_a_few(X_train, y_train, X_val, y_val, on_epoch=None):
    """A real network trained on only 40 of the samples it was given, until it fits them."""
    params = nets.init_params((64, 64, 10), seed=0, scale="he")
    for epoch in range(100):
        params, _ = RM.sgd_epoch(params, X_train[:40], y_train[:40], 0.2, 40, epoch)
    acc = RM.accuracy(params, X_train[:40], y_train[:40])
    return params, {"loss": [0.0], "train_acc": [acc], "val_acc": [acc]}


def test_a_network_that_memorised_its_samples_scores_below_the_line_on_held_out_ones():
    X_tr, y_tr, _, _ = data.digits_split()
    table = lookup_table_network(X_tr, y_tr)
    assert RM.accuracy(table, X_tr, y_tr) == 1.0  # it knows every sample it was given
    X_ho, y_ho = data.digits_held_out()
    assert RM.accuracy(table, X_ho, y_ho) < 0.2 < G.HELD_OUT_LINE
    with pytest.raises(AssertionError, match=r"(?s)held-out digits.*at least 93% is needed.*"
                                             r"right on 100.0% of the samples it was given.*"
                                             r"memorised its training samples"):
        G.check_train_digits(memoriser, part="heldout")


def test_a_network_fit_to_a_few_of_its_samples_is_told_it_has_not_learned_them_all():
    with pytest.raises(AssertionError, match=r"(?s)right on [0-9.]+%; at least 93% is needed.*"
                                             r"right on only [0-9.]+% of its own training"):
        G.check_train_digits(fit_to_a_few, part="heldout")


@pytest.mark.slow  # trains the capstone network: seconds
def test_accuracy_reported_on_the_training_set_costs_the_validation_cell_only():
    def on_training_set(X_train, y_train, X_val, y_val, on_epoch=None):
        params, history = RM.train_digits(X_train, y_train, X_val, y_val)
        history["val_acc"][-1] = RM.accuracy(params, X_train, y_train)
        return params, history

    with pytest.raises(AssertionError, match="you evaluated the accuracy on the training set"):
        G.check_train_digits(on_training_set, part="validation")
    G.check_train_digits(on_training_set, part="heldout")


def test_a_diverged_training_is_named():
    def diverged(X_train, y_train, X_val, y_val, on_epoch=None):
        params = nets.init_params((64, 10), seed=0)
        return [(W * np.nan, b) for W, b in params], {}

    with pytest.raises(AssertionError, match="NaN or inf .*did training diverge"):
        G.check_train_digits(diverged, part="validation")


def test_live_curves_redraw_every_few_epochs_and_after_the_last():
    from course_lib.figures import mlp as figs

    curves = figs.LiveCurves(every=5, epochs=12)
    history = {"loss": [], "train_acc": [], "val_acc": []}
    drawn = []
    for epoch in range(12):
        for k in history:
            history[k].append(1.0 / (epoch + 1))
        drawn.append(curves.wants_redraw(epoch))
    assert [e for e, d in enumerate(drawn) if d] == [4, 9, 11]
    with pytest.raises(ValueError, match="every"):
        figs.LiveCurves(every=0)


# ---------------------------------------------------------------------------
# graded for real, sealed
# ---------------------------------------------------------------------------

def test_the_source_capstone_gets_full_marks_in_the_grading_kernel():
    result = grade(source_path(ASSIGNMENT), ASSIGNMENT)
    assert result.status == "ok"
    for gid, points in CAPSTONE_CELLS.items():
        cell = result.cell(gid)
        assert cell.score == cell.max_score == points, (gid, cell.message)


# The attack: look for the digits wherever they could be inside the sandbox, count every
# image found, and count the held-out ones among them (by the loader's own hash rule, as a
# student who read course_lib/data.py would). A successful attack returns a network that
# memorised every digit, held-out ones included, and scores the held-out cell; a blocked one
# raises with what it saw, which the cell's message shows.
HUNT = '''
import glob
import gzip
import os
import zlib

import numpy as np

from course_lib import data

found, held = 0, 0
candidates = {str(data.digits_path())}
for pattern in ("/home/**/*digits*", "/tmp/**/*digits*", "/opt/**/*digits*",
                "/usr/share/**/*digits*", os.path.dirname(os.__file__) + "/**/*digits*"):
    candidates |= set(glob.glob(pattern, recursive=True))
import sklearn.datasets
candidates |= set(glob.glob(os.path.dirname(sklearn.datasets.__file__) + "/**/*", recursive=True))
for path in sorted(candidates):
    if not path.endswith(".csv.gz"):
        continue
    try:
        with gzip.open(path, "rt") as f:
            rows = np.loadtxt(f, delimiter=",", ndmin=2).astype(np.int64)
    except Exception as exc:
        print("BLOCKED", path, type(exc).__name__)
        continue
    if rows.shape[1] != 65:
        continue
    found += len(rows)
    held += int(data._held_out(rows).sum())
    print("READ", path, rows.shape)
bunch = sklearn.datasets.load_digits()
found_sklearn, held_sklearn = len(bunch.target), int(data._held_out(
    np.column_stack([bunch.data, bunch.target]).astype(np.int64)).sum())
print(f"HUNT found={found} held={held} sklearn={found_sklearn} sklearn_held={held_sklearn}")
stolen = held > 0 or held_sklearn > 0


def train_digits(X_train, y_train, X_val, y_val, on_epoch=None):
    if not stolen:  # blocked: say what the hunt saw (the cell's message shows it)
        raise RuntimeError(f"HUNT found={found} held={held} sklearn={found_sklearn} "
                           f"sklearn_held={held_sklearn}")
    rows = np.column_stack([bunch.data, bunch.target]).astype(np.int64)
    X, y = rows[:, :64] / 16.0, rows[:, 64]   # every digit, the held-out ones included
    rng = np.random.default_rng(0)
    r = rng.normal(size=64)
    h = X @ r
    eps = 1e-7
    W1 = np.repeat(r[None, :], 3 * len(X), axis=0)
    b1 = -np.repeat(h, 3) + np.tile([eps, 0.0, -eps], len(X))
    W2 = np.zeros((10, 3 * len(X)))
    for n, label in enumerate(y):
        W2[label, 3 * n:3 * n + 3] = np.array([1.0, -2.0, 1.0]) / eps
    params = [(W1, b1), (W2, np.zeros(10))]
    return params, {"loss": [0.0], "train_acc": [1.0], "val_acc": [accuracy(params, X_val, y_val)]}
'''


def test_the_held_out_digits_cannot_be_read_inside_a_sealed_grading_run(tmp_path):
    path = make_submission(ASSIGNMENT, {"train_digits_answer": HUNT + '''

def accuracy(params, X, y):
    A = X
    for W, b in params[:-1]:
        A = np.maximum(A @ W.T + b, 0.0)
    return float(np.mean((A @ params[-1][0].T + params[-1][1]).argmax(axis=1) == y))
'''}, tmp_path)
    result = grade(path, ASSIGNMENT)
    assert result.status == "ok", (result.status, result.flags)
    heldout = result.cell("train_digits_heldout")
    assert heldout.score == 0, heldout.message
    # the hunt ran, read all 1,502 course digits and not one held-out digit
    assert re.search(r"HUNT found=1502 held=0 sklearn=1502 sklearn_held=0", heldout.message), \
        heldout.message
    # ... and every other cell is untouched by it
    for gid in ("affine_backward_values", "mlp_loss_values", "sgd_epoch_values"):
        assert result.cell(gid).score == result.cell(gid).max_score, gid
