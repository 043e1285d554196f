"""Small data sets: generated 2-D classification sets, and the 8x8 digits.

The generated sets are drawn from ``np.random.default_rng(seed)``, so the same seed
gives the same points on every machine and nothing is downloaded. Two input
features mean a decision boundary can be drawn; the sets are chosen so that a
linear classifier fails on most of them and a small MLP succeeds, which is the
point of training one.

Every generator returns ``(X, y)``: ``X`` float64 of shape ``(N, 2)`` (rows are
samples) and ``y`` int64 of shape ``(N,)`` with class labels ``0 .. C-1``.

``digits()`` is real data: scikit-learn's 8x8 handwritten digits (1,797 images,
the test part of the UCI "optdigits" set), read from the file the installed
scikit-learn ships (never downloaded). About a sixth of its images are the
judge's **held-out** samples, which no function here returns: grading measures a
trained network on them, outside the sandbox, and inside the sandbox the file is
a copy without them (``write_digits_without_held_out``).
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import threading
import zlib
from pathlib import Path

import numpy as np

from ._validate import Dims, as_float, check_positive

__all__ = ["spirals", "xor", "two_moons", "blobs", "one_hot", "train_test_split",
           "digits", "digits_split"]


def _rng(seed) -> np.random.Generator:
    check_positive("seed", seed, integer=True, allow_zero=True)
    return np.random.default_rng(seed)


def spirals(n_per_class: int = 100, n_classes: int = 3, noise: float = 0.2,
            seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Interleaved spiral arms, one per class (the CS231n spiral data set).

    Point ``i`` of arm ``k`` sits at radius ``i / (n_per_class - 1)`` (0 to 1) and
    angle ``4k + 4 i / (n_per_class - 1)`` radians plus Gaussian noise of
    standard deviation ``noise``: only the angle is noisy, so every radius is exact.

    Args:
        n_per_class: points per class, a positive integer.
        n_classes: number of arms C, a positive integer.
        noise: standard deviation of the angular noise in radians, >= 0.
        seed: non-negative integer.

    Returns:
        ``X`` of shape ``(n_per_class * C, 2)``, ``y`` of shape ``(n_per_class * C,)``,
        ordered by class (all of class 0 first).
    """
    check_positive("n_per_class", n_per_class, integer=True)
    check_positive("n_classes", n_classes, integer=True)
    check_positive("noise", noise, allow_zero=True)
    rng = _rng(seed)

    r = np.linspace(0.0, 1.0, n_per_class)
    X, y = [], []
    for k in range(n_classes):
        # Each arm turns through 4 radians, starting where the previous one began
        # plus 4: the arms wind around each other instead of lying side by side.
        t = np.linspace(4.0 * k, 4.0 * (k + 1), n_per_class)
        t = t + noise * rng.standard_normal(n_per_class)
        X.append(np.column_stack([r * np.sin(t), r * np.cos(t)]))
        y.append(np.full(n_per_class, k, dtype=np.int64))
    return np.concatenate(X), np.concatenate(y)


def xor(n: int = 200, noise: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four Gaussian clusters at (±1, ±1): the XOR problem.

    The label is 1 where the two coordinates of the centre have different signs
    (sign product -1) and 0 where they agree (sign product +1). No straight line
    separates the classes, but one hidden layer of two units does.

    Args:
        n: number of points, a positive integer. Points go to the corners in turn,
            (1, 1), (1, -1), (-1, -1), (-1, 1), so the labels alternate 0, 1, 0, 1
            and the classes are balanced to within one point.
        noise: standard deviation of the Gaussian around each corner, >= 0.
        seed: non-negative integer.

    Returns:
        ``X`` of shape ``(n, 2)``, ``y`` of shape ``(n,)``.
    """
    check_positive("n", n, integer=True)
    check_positive("noise", noise, allow_zero=True)
    rng = _rng(seed)

    corners = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0], [-1.0, 1.0]])
    centre = corners[np.arange(n) % 4]
    X = centre + noise * rng.standard_normal((n, 2))
    y = (centre[:, 0] * centre[:, 1] < 0).astype(np.int64)
    return X, y


def two_moons(n: int = 200, noise: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles.

    Class 0 lies on the upper half of the unit circle, class 1 on the lower half
    of a unit circle centred at (1, 0.5); each point then gets Gaussian noise.

    Args:
        n: number of points, a positive integer; class 0 gets ``n // 2`` of them
            and class 1 the rest.
        noise: standard deviation of the Gaussian noise, >= 0.
        seed: non-negative integer.

    Returns:
        ``X`` of shape ``(n, 2)``, ``y`` of shape ``(n,)``, ordered by class.
    """
    check_positive("n", n, integer=True)
    check_positive("noise", noise, allow_zero=True)
    rng = _rng(seed)

    n0 = n // 2
    n1 = n - n0
    t0 = np.linspace(0.0, np.pi, n0)
    t1 = np.linspace(0.0, np.pi, n1)
    upper = np.column_stack([np.cos(t0), np.sin(t0)])
    lower = np.column_stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)])
    X = np.concatenate([upper, lower]) + noise * rng.standard_normal((n, 2))
    y = np.concatenate([np.zeros(n0, dtype=np.int64), np.ones(n1, dtype=np.int64)])
    return X, y


def blobs(n_per_class: int = 100, n_classes: int = 2, spread: float = 0.5,
          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters whose centres are evenly spaced on a circle of radius 2.

    Centre ``k`` is ``2 * (cos(2 pi k / C), sin(2 pi k / C))``. With a small
    ``spread`` the classes are linearly separable: a sanity check before the
    harder sets.

    Args:
        n_per_class: points per class, a positive integer.
        n_classes: number of clusters C, a positive integer.
        spread: standard deviation of each cluster, >= 0.
        seed: non-negative integer.

    Returns:
        ``X`` of shape ``(n_per_class * C, 2)``, ``y`` of shape ``(n_per_class * C,)``,
        ordered by class.
    """
    check_positive("n_per_class", n_per_class, integer=True)
    check_positive("n_classes", n_classes, integer=True)
    check_positive("spread", spread, allow_zero=True)
    rng = _rng(seed)

    angle = 2.0 * np.pi * np.arange(n_classes) / n_classes
    centres = 2.0 * np.column_stack([np.cos(angle), np.sin(angle)])
    y = np.repeat(np.arange(n_classes, dtype=np.int64), n_per_class)
    X = centres[y] + spread * rng.standard_normal((y.size, 2))
    return X, y


def one_hot(y, n_classes: int | None = None) -> np.ndarray:
    """Integer class labels to one-hot rows.

    Args:
        y: shape ``(N,)``, integer labels >= 0 (a float array of whole numbers
            is accepted too).
        n_classes: C; default ``max(y) + 1``. Every label must be < C.

    Returns:
        float64 array of shape ``(N, C)`` with ``Y[i, y[i]] = 1`` and zeros elsewhere.
    """
    labels = _labels(y)
    if n_classes is None:
        n_classes = int(labels.max()) + 1 if labels.size else 0
    else:
        check_positive("n_classes", n_classes, integer=True)
        if labels.size and labels.max() >= n_classes:
            raise ValueError(f"y: expected labels in 0..{n_classes - 1} "
                             f"(n_classes={n_classes}), got label {labels.max().item()}")
    Y = np.zeros((labels.size, n_classes))
    Y[np.arange(labels.size), labels] = 1.0
    return Y


def _labels(y) -> np.ndarray:
    """``y`` as a 1-D int64 array of non-negative labels, or a ValueError."""
    arr = np.asarray(y)
    if arr.dtype.kind == "b":
        raise ValueError("y: expected integer class labels, got booleans; "
                         "convert them first, e.g. y.astype(int)")
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"y: expected integer class labels, got dtype {arr.dtype}")
    Dims().check("y", arr, ("N",))
    if arr.dtype.kind == "f":
        # Labels stored as floats (0.0, 1.0, ...) are fine; 0.5 is not a class.
        as_float("y", arr)
        if not np.all(arr == np.round(arr)):
            bad = arr[arr != np.round(arr)][0]
            raise ValueError(f"y: expected integer class labels, got {bad.item()!r}")
    if arr.size and arr.min() < 0:
        raise ValueError(f"y: expected labels >= 0, got {arr.min().item()!r}")
    return arr.astype(np.int64)


def train_test_split(X, y, test_fraction: float = 0.25, seed: int = 0):
    """Shuffle the samples and split them into a training and a test set.

    Args:
        X: shape ``(N, D)``.
        y: shape ``(N,)`` (labels) or ``(N, C)`` (e.g. one-hot); its dtype is kept.
        test_fraction: share of samples in the test set, strictly between 0 and 1.
            The test set gets ``round(test_fraction * N)`` samples, but at least one
            sample goes to each side.
        seed: non-negative integer.

    Returns:
        ``(X_train, y_train, X_test, y_test)``: new arrays (never views of the
        inputs) with ``N - n_test`` and ``n_test`` rows, together holding every
        sample exactly once.
    """
    d = Dims()
    X = d.check("X", as_float("X", X, ndim=2), ("N", "D"))
    y = np.asarray(y)
    d.check("y", y, ("N",) if y.ndim == 1 else ("N", "C"))
    check_positive("test_fraction", test_fraction)
    if not test_fraction < 1:
        raise ValueError(f"test_fraction: expected a value between 0 and 1, "
                         f"got {test_fraction!r}")
    n = X.shape[0]
    if n < 2:
        raise ValueError(f"X: expected at least 2 samples to split, got {n}")
    rng = _rng(seed)

    n_test = min(max(round(test_fraction * n), 1), n - 1)
    order = rng.permutation(n)
    test, train = order[:n_test], order[n_test:]
    return X[train], y[train], X[test], y[test]


# ----------------------------------------------------------------------------
# scikit-learn's 8x8 digits
# ----------------------------------------------------------------------------

#: where the digits live inside the installed scikit-learn
DIGITS_FILE = ("datasets", "data", "digits.csv.gz")
#: a line of the file: the 64 pixel values of an image, then its label
DIGITS_COLUMNS = 65
#: 1 in HELD_OUT_EVERY images is held out (by a hash of its pixels and label)
HELD_OUT_EVERY = 6


def digits_path() -> Path:
    """The real path of scikit-learn's ``digits.csv.gz`` (scikit-learn is not imported:
    that would cost a second, and only the file is needed)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the digits come with scikit-learn, which is not installed "
                                  "(pip install -r requirements.txt)")
    return Path(os.path.realpath(Path(spec.submodule_search_locations[0]).joinpath(*DIGITS_FILE)))


# The file's rows, read once per process and version of the file: a lesson reads the
# digits two or three times, and grading reads them for every notebook (reading costs a
# few hundredths of a second). Only the file is cached, never anything computed from it.
_ROWS: dict[str, tuple[tuple, np.ndarray]] = {}


def _digits_rows(path=None) -> np.ndarray:
    """Every row of the digits file: 64 pixel values (0-16) and the label, as int64
    (read-only: every caller makes its own arrays from it)."""
    path = os.fspath(path or digits_path())
    st = os.stat(path)
    version = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    cached = _ROWS.get(path)
    if cached is not None and cached[0] == version:
        return cached[1]
    with gzip.open(path, "rb") as f:
        lines = f.read().split()
    # every field of every line at once: less than half of np.loadtxt's time (8 ms against
    # 18), which each grading kernel of lesson 4 pays
    fields = b",".join(lines).split(b",")
    if len(fields) != len(lines) * DIGITS_COLUMNS:
        raise ValueError(f"{path}: expected {DIGITS_COLUMNS} numbers on each of its "
                         f"{len(lines)} lines, got {len(fields)} in all")
    rows = np.array(fields, dtype=np.int64).reshape(len(lines), DIGITS_COLUMNS)
    rows.flags.writeable = False
    _ROWS[path] = (version, rows)
    return rows


def _held_out(rows: np.ndarray) -> np.ndarray:
    """True for the rows the judge keeps: chosen by a hash of the row's own numbers, so a
    file that lacks them (the sandbox's copy) gives the same remaining rows in the same
    order, and no list of indices is needed."""
    return np.array([zlib.crc32(r.astype(np.uint8).tobytes()) % HELD_OUT_EVERY == 0
                     for r in rows], dtype=bool)


def digits() -> tuple[np.ndarray, np.ndarray]:
    """The 8x8 digits the course trains on: every image but the judge's held-out ones.

    Returns:
        ``X`` float64 of shape ``(N, 64)``: each row one 8x8 image, row by row, its
        pixels scaled from 0..16 to [0, 1]; ``y`` int64 of shape ``(N,)``, the digit
        0-9. N = 1,502 (of scikit-learn's 1,797; 295 are held out), in the file's order.
    """
    rows = _digits_rows()
    rows = rows[~_held_out(rows)]
    return rows[:, :64] / 16.0, rows[:, 64].copy()


def digits_split(val_fraction: float = 0.2, seed: int = 0):
    """The digits of ``digits()`` shuffled and split into training and validation sets.

    Args:
        val_fraction: share of the images in the validation set (0 < share < 1).
        seed: non-negative integer for the shuffle.

    Returns:
        ``(X_train, y_train, X_val, y_val)`` (``train_test_split`` of ``digits()``).
    """
    X, y = digits()
    return train_test_split(X, y, test_fraction=val_fraction, seed=seed)


def digits_held_out(path=None) -> tuple[np.ndarray, np.ndarray]:
    """The judge's held-out digits (same scaling as ``digits()``). Grading runs this
    outside the sandbox; inside it, the file holds none of them (an empty result)."""
    rows = _digits_rows(path)
    rows = rows[_held_out(rows)]
    return rows[:, :64] / 16.0, rows[:, 64].copy()


def write_digits_without_held_out(folder) -> Path:
    """A copy of the digits file without the held-out rows, in ``folder`` (written once).

    The grading sandbox mounts it over scikit-learn's own file (judge.sandbox), so
    the held-out images never exist where a student's code runs.
    """
    target = Path(folder) / "digits-without-held-out.csv.gz"
    if not target.is_file():
        rows = _digits_rows()
        rows = rows[~_held_out(rows)]
        # a name of this process's own: two gradings that write the same cached copy at
        # once must not write into one file, which the first to finish then renames
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with gzip.open(tmp, "wt", encoding="utf-8") as f:
            np.savetxt(f, rows, fmt="%d", delimiter=",")
        tmp.replace(target)
    return target


def sandbox_digits_binds(folder) -> list[str]:
    """bwrap arguments that mount the held-out-free copy over scikit-learn's digits file
    (nothing where scikit-learn is not installed)."""
    try:
        original = digits_path()
    except ModuleNotFoundError:
        return []
    if not original.is_file():
        return []
    return ["--ro-bind", str(write_digits_without_held_out(folder)), str(original)]
