"""Tests for course_lib.data (generated 2-D classification sets)."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.data import blobs, one_hot, spirals, train_test_split, two_moons, xor

GENERATORS = {
    "spirals": (spirals, {"n_per_class": 50, "n_classes": 3}, 150, 3),
    "xor": (xor, {"n": 120}, 120, 2),
    "two_moons": (two_moons, {"n": 90}, 90, 2),
    "blobs": (blobs, {"n_per_class": 40, "n_classes": 4}, 160, 4),
}


@pytest.mark.parametrize("name", GENERATORS)
def test_shapes_dtypes_labels(name):
    make, kw, n, c = GENERATORS[name]
    X, y = make(**kw)
    assert X.shape == (n, 2) and X.dtype == np.float64
    assert y.shape == (n,) and y.dtype == np.int64
    assert set(np.unique(y)) == set(range(c))
    assert np.all(np.isfinite(X))


@pytest.mark.parametrize("name", GENERATORS)
def test_balanced_classes(name):
    make, kw, n, c = GENERATORS[name]
    _, y = make(**kw)
    assert np.bincount(y).tolist() == [n // c] * c


@pytest.mark.parametrize("name", GENERATORS)
def test_defaults(name):
    make = GENERATORS[name][0]
    X, y = make()
    expected_n = {"spirals": 300, "xor": 200, "two_moons": 200, "blobs": 200}[name]
    assert X.shape == (expected_n, 2) and y.shape == (expected_n,)


@pytest.mark.parametrize("name", GENERATORS)
def test_deterministic_by_seed(name):
    make, kw, _, _ = GENERATORS[name]
    X1, y1 = make(**kw, seed=7)
    X2, y2 = make(**kw, seed=7)
    X3, y3 = make(**kw, seed=8)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.allclose(X1, X3)
    np.testing.assert_array_equal(y1, y3)  # the seed moves points, not labels


def test_default_seed_is_zero():
    np.testing.assert_array_equal(spirals()[0], spirals(seed=0)[0])


def test_generators_do_not_touch_global_random_state():
    # The legacy global generator is what a student's own np.random calls use;
    # drawing from it would make their results depend on how often data was made.
    np.random.seed(3)  # noqa: NPY002
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    spirals(), xor(), two_moons(), blobs()
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # noqa: NPY002


def test_spirals_geometry():
    n = 25
    X, y = spirals(n_per_class=n, n_classes=3, noise=0.2, seed=1)
    # Only the angle is noisy: each arm's radii are exactly linspace(0, 1, n).
    for k in range(3):
        r = np.hypot(X[y == k, 0], X[y == k, 1])
        np.testing.assert_allclose(r, np.linspace(0, 1, n), rtol=1e-12, atol=1e-15)
    # Without noise, arm k's last point is at radius 1 and angle 4(k + 1).
    X0, y0 = spirals(n_per_class=n, n_classes=3, noise=0.0)
    for k in range(3):
        t = 4.0 * (k + 1)
        np.testing.assert_allclose(X0[y0 == k][-1], [np.sin(t), np.cos(t)], rtol=1e-12)
    assert np.all(y == np.repeat([0, 1, 2], n))


def test_xor_labels_are_the_sign_product():
    X, y = xor(n=400, noise=0.1, seed=2)
    # With noise 0.1 every point stays in its corner's quadrant (10 standard deviations).
    assert np.all(np.abs(X) > 0)
    np.testing.assert_array_equal(y, (X[:, 0] * X[:, 1] < 0).astype(np.int64))
    X0, y0 = xor(n=8, noise=0.0)
    np.testing.assert_array_equal(np.abs(X0), np.ones((8, 2)))
    np.testing.assert_array_equal(y0, [0, 1, 0, 1, 0, 1, 0, 1])


def test_xor_odd_sizes_are_balanced_within_one():
    for n in (1, 5, 7, 202):
        counts = np.bincount(xor(n=n)[1], minlength=2)
        assert counts.sum() == n and abs(counts[0] - counts[1]) <= 1


def test_two_moons_geometry():
    X, y = two_moons(n=41, noise=0.0)
    assert np.bincount(y).tolist() == [20, 21]
    upper, lower = X[y == 0], X[y == 1]
    np.testing.assert_allclose(np.hypot(*upper.T), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.hypot(lower[:, 0] - 1, lower[:, 1] - 0.5), 1.0, rtol=1e-12)
    assert np.all(upper[:, 1] >= -1e-12) and np.all(lower[:, 1] <= 0.5 + 1e-12)
    np.testing.assert_allclose(upper[[0, -1]], [[1, 0], [-1, 0]], atol=1e-12)


def test_two_moons_noise_scales_the_deviation():
    Xc, _ = two_moons(n=2000, noise=0.0)
    Xn, _ = two_moons(n=2000, noise=0.1, seed=4)
    assert np.std(Xn - Xc) == pytest.approx(0.1, rel=0.05)


def test_blobs_centres_on_circle():
    X, y = blobs(n_per_class=3, n_classes=4, spread=0.0)
    expected = np.array([[2, 0], [0, 2], [-2, 0], [0, -2]], dtype=float)
    np.testing.assert_allclose(X, np.repeat(expected, 3, axis=0), atol=1e-12)
    Xs, ys = blobs(n_per_class=500, n_classes=3, spread=0.3, seed=5)
    for k in range(3):
        a = 2 * np.pi * k / 3
        np.testing.assert_allclose(Xs[ys == k].mean(0), 2 * np.array([np.cos(a), np.sin(a)]),
                                   atol=0.05)
        np.testing.assert_allclose(np.std(Xs[ys == k], axis=0), [0.3, 0.3], rtol=0.1)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: spirals(n_per_class=0), r"n_per_class: expected a finite value > 0, got 0"),
    (lambda: spirals(n_per_class=10.0), r"n_per_class: expected an integer, got 10\.0"),
    (lambda: spirals(n_classes=-1), r"n_classes: expected a finite value > 0"),
    (lambda: spirals(noise=-0.1), r"noise: expected a finite value >= 0, got -0\.1"),
    (lambda: spirals(noise=float("nan")), r"noise: expected a finite value >= 0"),
    (lambda: spirals(seed=-1), r"seed: expected a finite value >= 0, got -1"),
    (lambda: spirals(seed=1.5), r"seed: expected an integer"),
    (lambda: xor(n=0), r"n: expected a finite value > 0"),
    (lambda: xor(n=True), r"n: expected an integer, got True"),
    (lambda: xor(noise="lots"), r"noise: expected a number, got 'lots'"),
    (lambda: two_moons(n=-5), r"n: expected a finite value > 0"),
    (lambda: two_moons(noise=-1), r"noise: expected a finite value >= 0"),
    (lambda: blobs(n_classes=0), r"n_classes: expected a finite value > 0"),
    (lambda: blobs(spread=-0.5), r"spread: expected a finite value >= 0"),
    (lambda: blobs(seed=None), r"seed: expected an integer, got None"),
])
def test_generator_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_numpy_integers_are_accepted():
    X, y = blobs(n_per_class=np.int64(3), n_classes=np.int32(2), seed=np.int64(1))
    assert X.shape == (6, 2)


# --------------------------------------------------------------------------- one_hot

def test_one_hot_values():
    Y = one_hot([2, 0, 1, 2])
    assert Y.dtype == np.float64
    np.testing.assert_array_equal(Y, [[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    np.testing.assert_array_equal(one_hot(np.array([1, 0], dtype=np.uint8), n_classes=4),
                                  [[0, 1, 0, 0], [1, 0, 0, 0]])
    np.testing.assert_array_equal(one_hot([0.0, 1.0]), [[1, 0], [0, 1]])  # whole floats ok
    assert one_hot(np.array([], dtype=np.int64)).shape == (0, 0)
    assert one_hot(np.array([], dtype=np.int64), n_classes=3).shape == (0, 3)


@pytest.mark.parametrize("name", GENERATORS)
def test_one_hot_round_trip(name):
    make, kw, n, c = GENERATORS[name]
    _, y = make(**kw)
    Y = one_hot(y)
    assert Y.shape == (n, c)
    np.testing.assert_array_equal(Y.sum(axis=1), np.ones(n))
    np.testing.assert_array_equal(Y.argmax(axis=1), y)


@pytest.mark.parametrize(("y", "kw", "message"), [
    ([0, -1, 2], {}, r"y: expected labels >= 0, got -1"),
    ([0, 1.5], {}, r"y: expected integer class labels, got 1\.5"),
    ([0, 3], {"n_classes": 3}, r"y: expected labels in 0\.\.2 \(n_classes=3\), got label 3"),
    ([0, 1], {"n_classes": 0}, r"n_classes: expected a finite value > 0"),
    ([0, 1], {"n_classes": 2.0}, r"n_classes: expected an integer"),
    ([[0, 1]], {}, r"y: expected shape \(N,\), got \(1, 2\)"),
    (3, {}, r"y: expected shape \(N,\), got \(\)"),
    (["a", "b"], {}, r"y: expected integer class labels, got dtype <U1"),
    (np.array([True, False]), {}, r"y: expected integer class labels, got booleans"),
    ([0.0, np.nan], {}, r"y: contains NaN"),
])
def test_one_hot_bad_inputs(y, kw, message):
    with pytest.raises(ValueError, match=message):
        one_hot(y, **kw)


# ------------------------------------------------------------------ train_test_split

def test_split_sizes_disjoint_and_complete():
    X, y = spirals(n_per_class=40, n_classes=3)
    X[:, 0] += np.arange(120) * 10.0  # make every row unique so rows identify samples
    X_tr, y_tr, X_te, y_te = train_test_split(X, y, test_fraction=0.25, seed=3)
    assert X_tr.shape == (90, 2) and y_tr.shape == (90,)
    assert X_te.shape == (30, 2) and y_te.shape == (30,)
    assert y_tr.dtype == np.int64 and X_tr.dtype == np.float64
    tr_rows = {tuple(r) for r in X_tr}
    te_rows = {tuple(r) for r in X_te}
    assert not tr_rows & te_rows
    assert tr_rows | te_rows == {tuple(r) for r in X}
    # Labels travel with their rows.
    lookup = {tuple(r): label for r, label in zip(X, y, strict=True)}
    assert all(lookup[tuple(r)] == label for r, label in zip(X_tr, y_tr, strict=True))
    assert all(lookup[tuple(r)] == label for r, label in zip(X_te, y_te, strict=True))


def test_split_shuffles_deterministically_and_copies():
    X, y = xor(n=40)
    a = train_test_split(X, y, seed=1)
    b = train_test_split(X, y, seed=1)
    c = train_test_split(X, y, seed=2)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[2], c[2])
    assert not np.array_equal(a[0], X[:30])  # shuffled, not just cut
    a[0][:] = 0.0
    assert np.all(X != 0.0)  # results are copies, the inputs are untouched


@pytest.mark.parametrize(("n", "fraction", "n_test"), [
    (200, 0.25, 50), (10, 0.5, 5), (10, 0.01, 1), (10, 0.99, 9), (2, 0.5, 1), (7, 0.3, 2),
])
def test_split_rounding(n, fraction, n_test):
    X = np.arange(2.0 * n).reshape(n, 2)
    _, y_tr, _, y_te = train_test_split(X, np.arange(n), test_fraction=fraction)
    assert (y_tr.size, y_te.size) == (n - n_test, n_test)


def test_split_accepts_one_hot_targets():
    X, y = blobs(n_per_class=10, n_classes=3)
    X_tr, Y_tr, X_te, Y_te = train_test_split(X, one_hot(y))
    assert Y_tr.shape == (22, 3) and Y_te.shape == (8, 3)


@pytest.mark.parametrize(("X", "y", "kw", "message"), [
    (np.zeros((4, 2)), np.zeros(5), {}, r"y: expected shape \(N=4,\), got \(5,\)"),
    (np.zeros(4), np.zeros(4), {}, r"X: expected a 2-D array, got shape \(4,\)"),
    (np.zeros((1, 2)), np.zeros(1), {}, r"X: expected at least 2 samples to split, got 1"),
    (np.zeros((4, 2)), np.zeros(4), {"test_fraction": 0.0}, r"test_fraction: expected a finite"),
    (np.zeros((4, 2)), np.zeros(4), {"test_fraction": 1.0},
     r"test_fraction: expected a value between 0 and 1, got 1\.0"),
    (np.zeros((4, 2)), np.zeros(4), {"seed": -2}, r"seed: expected a finite value >= 0"),
    ([[1.0, np.inf]] * 4, np.zeros(4), {}, r"X: contains inf"),
])
def test_split_bad_inputs(X, y, kw, message):
    with pytest.raises(ValueError, match=message):
        train_test_split(X, y, **kw)
