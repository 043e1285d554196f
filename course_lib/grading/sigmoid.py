"""Checks for lesson 02: sigmoid, its derivative, ReLU/tanh derivatives, BCE.

Each ``check_<function>(fn, part)`` compares the student's function with
``course_lib.reference`` on fresh random inputs (a scalar, a vector, a matrix
and a 3-D array for the elementwise functions; batches of 1, a few and many
samples for the losses). The parts match the lesson's graded cells:

    sigmoid            values, edge   (edge: no warning for any finite z)
    sigmoid_prime      values, edge   (edge: finite in the saturated tails, |z| up to 800)
    relu_prime         values, edge   (edge: ReLU'(0) = 0, also for -0.0)
    tanh_prime         values
    bce                values, edge   (edge: a prediction equal to its label costs 0, not NaN)
    bce_sigmoid_delta  values, edge   (edge: exact for saturated z = ±40, ±800, both labels)

Each edge part grades the rule the lesson states for that exercise, by a behaviour
observed deterministically (a warning raised, a NaN returned, a value at an input
where a naive formula breaks), and its messages start with the rule's name, as in
RULES below. ``call`` (``_core``) also grades the rule every exercise shares: no
argument changed in place.

Every check names the common mistakes of the lesson when an answer matches
one: σ(z) returned for σ'(z), σ' applied to the activation instead of the
pre-activation, ReLU'(0) = 1, the 1/N of the batch mean forgotten or applied
twice, and a sigmoid that overflows.
"""

from __future__ import annotations

import warnings

import numpy as np

from .. import reference as R
from ._core import call, describe_inputs, expect_close, fmt, known_mistake, rng_for, run_parts

# The rule each edge part grades, as the lesson states it; every edge message starts
# with "<function>(...) (rule: <rule>)", so that a lost point names its rule.
RULES = {
    "sigmoid": "no warning for any finite z",
    "sigmoid_prime": "finite in the saturated tails",
    "relu_prime": "ReLU'(0) = 0",
    "bce": "a prediction equal to its label costs 0, not NaN",
    "bce_sigmoid_delta": "exact for saturated z",
}


def _shapes(rng):
    """A scalar, a vector, a matrix and a 3-D array: elementwise means any shape."""
    return [(), (int(rng.integers(1, 8)),), tuple(int(n) for n in rng.integers(1, 6, size=2)),
            (2, 3, 4)]


def _elementwise(fn, fn_name, ref, rng, mistakes_for, scale=4.0):
    """Call fn on normal(0, scale) inputs of every shape and compare with ref."""
    for shape in _shapes(rng):
        z = rng.normal(0.0, scale, size=shape)
        arg = z if shape else float(z)  # a scalar arrives as a plain Python float
        out = call(fn, fn_name, {"z": arg})
        expect_close(f"{fn_name}(z)", out, ref(z), inputs={"z": z}, mistakes=mistakes_for(z))


def _call_no_warnings(label, fn, fn_name, args, overflow_advice):
    """Call fn with every warning turned into an error; explain a warning it raises.

    The message starts with ``label`` (the rule), then what the call raised."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return call(fn, fn_name, args)
        except AssertionError as exc:
            text = str(exc)
            if "Warning" not in text:
                raise
            first_line = text.splitlines()[0]
            advice = overflow_advice if "overflow" in text else (
                f"{fn_name} must not produce any warning for finite inputs: each warning marks "
                "an inf or NaN computed along the way.")
            raise AssertionError(f"{label}: {first_line}\n  for {describe_inputs(args)}.\n"
                                 f"  {advice}") from None


def _expect_finite(label, out, inputs, advice):
    """Fail with a specific explanation when the result holds NaN or inf."""
    try:
        bad = ~np.isfinite(np.asarray(out, dtype=np.float64))
    except (TypeError, ValueError):
        return  # not numbers at all: expect_close explains that
    if not np.any(bad):
        return
    problem = f"{int(bad.sum())} NaN/inf value(s) where every expected value is finite"
    if bad.ndim and all(np.shape(v) == bad.shape for v in inputs.values()):
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        at = ", ".join(f"{k} = {fmt(np.asarray(v)[where])}" for k, v in inputs.items())
        problem += f" (first at {list(where)}, where {at})"
    elif not bad.ndim:
        problem = "NaN or inf where the expected value is finite"
    raise AssertionError(f"{label} for {describe_inputs(inputs)}: the result contains "
                         f"{problem}.\n  {advice}")


# ---------------------------------------------------------------------------
# sigmoid
# ---------------------------------------------------------------------------

_OVERFLOW_ADVICE = (
    "This matches a known mistake: the sigmoid overflows. np.exp(-z) is inf for z < -709 "
    "(and np.exp(z) for z > 709), which numpy reports with an overflow RuntimeWarning. Compute "
    "e = np.exp(-np.abs(z)), which lies in (0, 1] for every z, and use σ(z) = 1/(1 + e) for "
    "z >= 0 and e/(1 + e) for z < 0. Beware: np.where(cond, A, B) computes BOTH A and B for "
    "every entry before choosing, so both must be safe everywhere.")


def check_sigmoid(sigmoid, part="all"):
    """sigmoid(z): values on random z of any shape; no overflow warning for huge |z|."""
    rng = rng_for("sigmoid")

    def values():
        _elementwise(sigmoid, "sigmoid", R.sigmoid, rng, lambda z: {
            "you computed 1/(1 + e^{z}) = σ(-z): the minus sign in e^{-z} is missing":
                R.sigmoid(-z),
            "you returned σ(z)(1 - σ(z)), the derivative, instead of σ(z)": R.sigmoid_prime(z),
            "you returned e^{-z}, not 1/(1 + e^{-z})": np.exp(-z),
        })

    def edge():
        label = f"sigmoid(z) (rule: {RULES['sigmoid']})"
        for z in (np.array([-1e4, -800.0, -710.0, -40.0, 0.0, 40.0, 710.0, 800.0, 1e4]),
                  np.array([[-1000.0], [1000.0]]), -1000.0):
            out = _call_no_warnings(label, sigmoid, "sigmoid", {"z": z}, _OVERFLOW_ADVICE)
            _expect_finite(label, out, {"z": z},
                           "A common cause: e^{z}/(1 + e^{z}) is inf/inf = NaN for z > 709, and "
                           "e^{-z}/(1 + e^{-z}) for z < -709 (with the warnings silenced): take "
                           "the exponential of -|z| only.")
            expect_close(label, out, R.sigmoid(z), inputs={"z": np.asarray(z)})

    run_parts(part, {"values": values, "edge": edge})


# ---------------------------------------------------------------------------
# sigmoid_prime
# ---------------------------------------------------------------------------

def _sigmoid_prime_mistakes(z):
    return {
        known_mistake("sigmoid-for-prime"): R.sigmoid(z),
        "you applied a(1 - a) to z itself: that formula needs the activation a = σ(z), "
        "so σ'(z) = σ(z)(1 - σ(z)), not z(1 - z) (the activation and the pre-activation are "
        "mixed up)": z * (1 - z),
        known_mistake("prime-of-activation"): R.sigmoid_prime(R.sigmoid(z)),
        "you returned 1 - σ(z) (a factor σ(z) is missing)": 1 - R.sigmoid(z),
        "you returned σ(z)² - σ(z), which has the wrong sign": -R.sigmoid_prime(z),
    }


def check_sigmoid_prime(sigmoid_prime, part="all"):
    """sigmoid_prime(z) = σ(z)(1 - σ(z)) at the pre-activation z."""
    rng = rng_for("sigmoid_prime")

    def values():
        _elementwise(sigmoid_prime, "sigmoid_prime", R.sigmoid_prime, rng,
                     _sigmoid_prime_mistakes)

    def edge():
        label = f"sigmoid_prime(z) (rule: {RULES['sigmoid_prime']})"
        for z in (np.array([-800.0, -50.0, -20.0, 0.0, 20.0, 50.0, 800.0]), 800.0):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the sigmoid check is where warnings count
                out = call(sigmoid_prime, "sigmoid_prime", {"z": z})
            _expect_finite(label, out, {"z": z},
                           "σ'(z) is tiny there but finite. A common cause: the quotient "
                           "e^{-z}/(1 + e^{-z})², which is inf/inf = NaN when e^{-z} overflows "
                           "(z < -709). Write σ'(z) = σ(z)(1 - σ(z)) with a stable σ: far out "
                           "in either tail σ'(z) is tiny but finite (exactly 0 in float64 "
                           "beyond |z| ≈ 745).")
            zz = np.asarray(z)
            expect_close(label, out, R.sigmoid_prime(zz), inputs={"z": zz},
                         mistakes=_sigmoid_prime_mistakes(zz))

    run_parts(part, {"values": values, "edge": edge})


# ---------------------------------------------------------------------------
# relu_prime
# ---------------------------------------------------------------------------

def _relu_prime_mistakes(z):
    return {
        known_mistake("relu-prime-zero"): (z >= 0).astype(float),
        "you returned ReLU(z) = max(0, z) instead of its derivative": np.maximum(z, 0.0),
        "you returned 1 for z < 0 and 0 for z > 0: the comparison is the wrong way round":
            (z < 0).astype(float),
        "you returned the sign of z, sign(z) (-1 for z < 0), where ReLU'(z) is 0 for z < 0":
            np.sign(z),
    }


def _expect_float_result(label, out, z):
    raw = np.asarray(out)
    if raw.dtype == bool or np.issubdtype(raw.dtype, np.integer):
        raise AssertionError(f"{label} for {describe_inputs({'z': np.asarray(z)})}: expected "
                             f"floating-point 0.0 and 1.0, got dtype {raw.dtype}. A comparison "
                             "such as z > 0 gives booleans: convert them, e.g. "
                             "(z > 0).astype(float).")


def check_relu_prime(relu_prime, part="all"):
    """relu_prime(z): 1 for z > 0, else 0, and ReLU'(0) = 0."""
    rng = rng_for("relu_prime")

    def values():
        for shape in _shapes(rng):
            z = rng.normal(0.0, 2.0, size=shape)
            out = call(relu_prime, "relu_prime", {"z": z if shape else float(z)})
            _expect_float_result("relu_prime(z)", out, z)
            expect_close("relu_prime(z)", out, R.relu_prime(z), inputs={"z": z},
                         mistakes=_relu_prime_mistakes(z))

    def edge():
        label = f"relu_prime(z) (rule: {RULES['relu_prime']})"
        for z in (np.array([-2.0, -0.0, 0.0, 1e-300, -1e-300, 3.0]),
                  np.array([[0.0, 1.0], [-1.0, 0.0]]), 0.0):
            out = call(relu_prime, "relu_prime", {"z": z})
            zz = np.asarray(z, dtype=float)
            _expect_float_result(label, out, zz)
            expect_close(label, out, R.relu_prime(zz), inputs={"z": zz},
                         mistakes=_relu_prime_mistakes(zz))

    run_parts(part, {"values": values, "edge": edge})


# ---------------------------------------------------------------------------
# tanh_prime
# ---------------------------------------------------------------------------

def check_tanh_prime(tanh_prime, part="all"):
    """tanh_prime(z) = 1 - tanh(z)²."""
    rng = rng_for("tanh_prime")

    def mistakes(z):
        t = np.tanh(z)
        return {"you returned tanh(z) instead of its derivative": t,
                "you returned 1 - tanh(z) (the square is missing)": 1 - t,
                "you returned tanh(z)² (it is 1 - tanh(z)²)": t * t,
                "you applied 1 - a² to z itself: that formula needs the activation "
                "a = tanh(z), so tanh'(z) = 1 - tanh(z)², not 1 - z²": 1 - z * z,
                "you copied the sigmoid's formula, tanh(z)(1 - tanh(z)); for tanh it is "
                "1 - tanh(z)²": t * (1 - t)}

    run_parts(part, {"values": lambda: _elementwise(tanh_prime, "tanh_prime", R.tanh_prime,
                                                    rng, mistakes, scale=2.0)})


# ---------------------------------------------------------------------------
# bce
# ---------------------------------------------------------------------------

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
                    "you summed over the samples instead of taking the mean (the batch loss "
                    "is the mean over the N samples)": per.sum(),
                    "the minus sign is missing": -per.mean(),
                    "you swapped the roles of y and y_hat":
                        -(y_hat * np.log(np.clip(y, 1e-300, 1))
                          + (1 - y_hat) * np.log(np.clip(1 - y, 1e-300, 1))).mean(),
                    "you kept only the y log ŷ term; the (1 - y) log(1 - ŷ) term is missing":
                        -(y * np.log(y_hat)).mean(),
                    "you used log base 10; the cross-entropy uses the natural log (np.log)":
                        per.mean() / np.log(10),
                })

    def edge():
        # The rule: a prediction equal to its label costs 0 (0·log 0 is 0, its limit), for
        # the exact 0.0 and 1.0 a saturated sigmoid returns: σ(±800) and σ(40) in float64.
        # Tolerance atol=1e-6: clipping ŷ into [ε, 1 - ε] with ε <= 1e-6 is accepted too.
        label = f"bce(y_hat, y) (rule: {RULES['bce']})"
        saturated = R.sigmoid(np.array([800.0, -800.0, 40.0, -40.0, 0.0]))  # 1, 0, 1, ~0, 1/2
        cases = [(saturated, np.array([1.0, 0.0, 1.0, 0.0, 1.0])),
                 (np.array([1.0, 0.0, 0.3, 1.0, 0.0]), np.array([1.0, 0.0, 1.0, 1.0, 0.0])),
                 (np.array([[1.0], [0.0]]), np.array([[1.0], [0.0]]))]
        for y_hat, y in cases:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # log(0) warnings are fine if the value is
                out = call(bce, "bce", {"y_hat": y_hat, "y": y})
            _expect_finite(label, out, {"y_hat": y_hat, "y": y},
                           "A prediction ŷ = y = 1 (or ŷ = y = 0) must cost 0: the term that "
                           "does not apply is 0·log 0, which is 0 by its limit, but numpy "
                           "computes 0 * np.log(0) = 0 * (-inf) = NaN. Compute only the term "
                           "that applies, e.g. np.where(y == 1, np.log(y_hat), "
                           "np.log(1 - y_hat)) for 0/1 labels.")
            expect_close(label, out, R.bce(y_hat, y), inputs={"y_hat": y_hat, "y": y},
                         check_dtype=False, rtol=1e-6, atol=1e-6)

    run_parts(part, {"values": values, "edge": edge})


# ---------------------------------------------------------------------------
# bce_sigmoid_delta
# ---------------------------------------------------------------------------

def _delta_mistakes(z, y):
    s, N = R.sigmoid(z), (1 if np.ndim(z) == 0 else np.shape(z)[0])
    return {
        known_mistake("bce-delta-no-mean"): s - y,
        "the 1/N is applied twice: δ = (ŷ - y)/N, divided by N once": (s - y) / N**2,
        "the sign is flipped: δ = (ŷ - y)/N, not (y - ŷ)/N": (y - s) / N,
        "you multiplied by σ'(z) again: with BCE the σ'(z) cancels, δ = (ŷ - y)/N":
            (s - y) * s * (1 - s) / N,
        "you returned ŷ/N: y is not subtracted": s / N,
        "you used z instead of ŷ = σ(z): δ = (σ(z) - y)/N": (z - y) / N,
    }


def check_bce_sigmoid_delta(bce_sigmoid_delta, part="all"):
    """bce_sigmoid_delta(z, y) = (σ(z) - y) / N: the 1/N of the batch mean is in δ."""
    rng = rng_for("bce_sigmoid_delta")

    def values():
        for N in (1, int(rng.integers(2, 9)), 32):
            for shape in ((N, 1), (N,)):
                z = rng.normal(0, 3, size=shape)
                y = rng.integers(0, 2, size=shape).astype(float)
                out = call(bce_sigmoid_delta, "bce_sigmoid_delta", {"z": z, "y": y})
                expect_close("bce_sigmoid_delta(z, y)", out, R.bce_sigmoid_delta(z, y),
                             inputs={"z": z, "y": y}, mistakes=_delta_mistakes(z, y))

    def edge():
        # The rule: exact for saturated z. σ(40) and σ(800) are exactly 1.0 in float64,
        # σ(-800) exactly 0.0 (σ(-40) is 4.2e-18), so δ is ±1/N or (almost) 0 there, with
        # both labels; the long way, (ŷ - y)/(ŷ(1 - ŷ)) · ŷ(1 - ŷ), is 0/0 or inf·0 = NaN
        # wherever ŷ is exactly 0 or 1.
        label = f"bce_sigmoid_delta(z, y) (rule: {RULES['bce_sigmoid_delta']})"
        z = np.array([-800.0, -40.0, 40.0, 800.0, -40.0, 40.0, 800.0, -800.0])
        y = np.array([0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0])
        for zz, yy in ((z[:, None], y[:, None]), (z, y), (z[[6, 7]][:, None], y[[6, 7]][:, None])):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = call(bce_sigmoid_delta, "bce_sigmoid_delta", {"z": zz, "y": yy})
            _expect_finite(label, out, {"z": zz, "y": yy},
                           "Did you compute δ the long way, (∂ℓ/∂ŷ)·σ'(z) = (ŷ - y)/(ŷ(1 - ŷ)) · "
                           "ŷ(1 - ŷ)? At z = 40, ŷ rounds to exactly 1.0, 1 - ŷ = 0, and it gives "
                           "NaN. Cancel the ŷ(1 - ŷ) on paper first: δ = (σ(z) - y)/N, with a "
                           "stable σ.")
            expect_close(label, out, R.bce_sigmoid_delta(zz, yy), inputs={"z": zz, "y": yy},
                         mistakes=_delta_mistakes(zz, yy))

    run_parts(part, {"values": values, "edge": edge})
