"""Checks for lesson 02: sigmoid, its derivative, ReLU/tanh derivatives, BCE."""

from __future__ import annotations

import warnings

import numpy as np

from .. import reference as R
from ._core import call, expect_close, rng_for, run_parts


def _shapes(rng):
    """A scalar, a vector, a matrix and a 3-D array: elementwise means any shape."""
    return [(), (int(rng.integers(1, 8)),), tuple(rng.integers(1, 6, size=2)), (2, 3, 4)]


def _elementwise(fn, fn_name, ref, rng, mistakes_for, scale=4.0):
    for shape in _shapes(rng):
        z = rng.normal(0.0, scale, size=shape)
        z = z if shape else float(z)
        out = call(fn, fn_name, {"z": np.asarray(z) if shape else z})
        expect_close(f"{fn_name}(z)", out, ref(z), inputs={"z": np.asarray(z)},
                     mistakes=mistakes_for(np.asarray(z)))


def check_sigmoid(sigmoid, part="all"):
    """sigmoid(z): values on random z of any shape; no overflow warning for huge |z|."""
    rng = rng_for("sigmoid")

    def values():
        _elementwise(sigmoid, "sigmoid", R.sigmoid, rng, lambda z: {
            "you computed 1/(1 + e^{z}) = σ(-z): the minus sign in e^{-z} is missing":
                R.sigmoid(-z)})

    def edge():
        z = np.array([-1e4, -800.0, -710.0, -40.0, 0.0, 40.0, 710.0, 800.0, 1e4])
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an overflow warning fails the check
            try:
                out = call(sigmoid, "sigmoid", {"z": z})
            except AssertionError as exc:
                if "RuntimeWarning" in str(exc):
                    raise AssertionError(
                        "sigmoid(z) for z = [-1e4, ..., 1e4] raised an overflow warning: "
                        "np.exp(-z) overflows for z < -709. Use e^{-|z|}, which never exceeds 1 "
                        "(σ(z) = 1/(1+e^{-z}) for z >= 0 and e^{z}/(1+e^{z}) for z < 0).") \
                        from None
                raise
        expect_close("sigmoid(z) for very large |z|", out, R.sigmoid(z), inputs={"z": z})

    run_parts(part, {"values": values, "edge": edge})


def check_sigmoid_prime(sigmoid_prime, part="all"):
    """sigmoid_prime(z) = σ(z)(1 - σ(z)) at the pre-activation z."""
    rng = rng_for("sigmoid_prime")

    def mistakes(z):
        return {
            "you returned σ(z), the sigmoid itself, instead of its derivative σ'(z)":
                R.sigmoid(z),
            "you applied a(1 - a) to z itself: that formula needs the activation a = σ(z), "
            "so it is σ(z)(1 - σ(z)), not z(1 - z)": z * (1 - z),
            "you applied σ' to the activation σ(z) instead of the pre-activation z":
                R.sigmoid_prime(R.sigmoid(z)),
            "you returned 1 - σ(z) (a factor σ(z) is missing)": 1 - R.sigmoid(z),
        }

    def values():
        _elementwise(sigmoid_prime, "sigmoid_prime", R.sigmoid_prime, rng, mistakes)

    def edge():
        z = np.array([-800.0, -50.0, 0.0, 50.0, 800.0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the sigmoid check is where warnings count
            out = call(sigmoid_prime, "sigmoid_prime", {"z": z})
        expect_close("sigmoid_prime(z) in the saturated regions", out, R.sigmoid_prime(z),
                     inputs={"z": z}, mistakes=mistakes(z))

    run_parts(part, {"values": values, "edge": edge})


def check_relu_prime(relu_prime, part="all"):
    """relu_prime(z): 1 for z > 0, else 0, and ReLU'(0) = 0."""
    rng = rng_for("relu_prime")

    def mistakes(z):
        return {
            "ReLU'(0) must be 0 (the course convention, and PyTorch's); you returned 1 at z = 0":
                (z >= 0).astype(float),
            "you returned ReLU(z) = max(0, z) instead of its derivative": np.maximum(z, 0.0),
        }

    def values():
        _elementwise(relu_prime, "relu_prime", R.relu_prime, rng, mistakes)

    def edge():
        z = np.array([-2.0, -0.0, 0.0, 1e-300, 3.0])
        out = call(relu_prime, "relu_prime", {"z": z})
        expect_close("relu_prime(z) at and around 0", out, R.relu_prime(z), inputs={"z": z},
                     mistakes=mistakes(z))

    run_parts(part, {"values": values, "edge": edge})


def check_tanh_prime(tanh_prime, part="all"):
    """tanh_prime(z) = 1 - tanh(z)²."""
    rng = rng_for("tanh_prime")

    def mistakes(z):
        t = np.tanh(z)
        return {"you returned tanh(z) instead of its derivative": t,
                "you returned 1 - tanh(z) (the square is missing)": 1 - t,
                "you returned tanh(z)² (it is 1 - tanh(z)²)": t * t}

    run_parts(part, {"values": lambda: _elementwise(tanh_prime, "tanh_prime", R.tanh_prime,
                                                    rng, mistakes, scale=2.0)})


def check_bce(bce, part="all"):
    """bce(y_hat, y): mean binary cross-entropy over samples."""
    rng = rng_for("bce")

    def values():
        for N in (1, int(rng.integers(2, 9)), 50):
            for shape in ((N,), (N, 1)):
                y_hat = rng.uniform(0.02, 0.98, size=shape)
                y = rng.integers(0, 2, size=shape).astype(float)
                out = call(bce, "bce", {"y_hat": y_hat, "y": y})
                per = -(y * np.log(y_hat) + (1 - y) * np.log(1 - y_hat))
                expect_close("bce(y_hat, y)", out, R.bce(y_hat, y),
                             inputs={"y_hat": y_hat, "y": y}, check_dtype=False, mistakes={
                    "you summed over the samples instead of taking the mean": per.sum(),
                    "the minus sign is missing": -per.mean(),
                    "you swapped the roles of y and y_hat":
                        -(y_hat * np.log(np.clip(y, 1e-300, 1))
                          + (1 - y_hat) * np.log(np.clip(1 - y, 1e-300, 1))).mean(),
                })

    run_parts(part, {"values": values})


def check_bce_sigmoid_delta(bce_sigmoid_delta, part="all"):
    """bce_sigmoid_delta(z, y) = (σ(z) - y) / N: the 1/N of the batch mean is in δ."""
    rng = rng_for("bce_sigmoid_delta")

    def values():
        for N in (1, int(rng.integers(2, 9)), 32):
            z = rng.normal(0, 3, size=(N, 1))
            y = rng.integers(0, 2, size=(N, 1)).astype(float)
            out = call(bce_sigmoid_delta, "bce_sigmoid_delta", {"z": z, "y": y})
            s = R.sigmoid(z)
            expect_close("bce_sigmoid_delta(z, y)", out, R.bce_sigmoid_delta(z, y),
                         inputs={"z": z, "y": y}, mistakes={
                "the 1/N of the batch mean is missing: the loss is a mean over the N samples, "
                "so δ = (ŷ - y)/N": s - y,
                "the 1/N is applied twice": (s - y) / N**2,
                "the sign is flipped: δ = ŷ - y, not y - ŷ": (y - s) / N,
                "you multiplied by σ'(z) again: with BCE it cancels": (s - y) * s * (1 - s) / N,
            })

    run_parts(part, {"values": values})
