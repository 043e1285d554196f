"""Checks for lesson 03: softmax, its Jacobian, the vector-Jacobian product, cross-entropy.

Every check compares the student's function with ``course_lib.reference`` on
fresh random logits (a single vector, batches of 1 and of many samples, more
than one leading axis) and names the common mistakes: a Jacobian without its
diagonal term or with the sign flipped, a softmax that overflows, a
backward pass that keeps only the diagonal of J, the 1/N of the batch mean
forgotten or applied twice, integer labels not handled, and more.

The rules the lesson states, each graded by a behaviour observed here, in one
part only (so one broken rule costs one cell's points, the number the lesson
gives):

* "a graded function must not change its arguments": the ``values`` part of
  every check keeps a copy of the arguments and compares them after the call
  (``_call(..., watch=True)``); every other part hands the function copies and
  does not look at them afterwards, so an in-place change costs only ``values``.
* "overflow-safe for any finite input": the ``stable`` parts of softmax,
  cross_entropy and softmax_cross_entropy_grad use logits about ±1000, for
  which the right answer is finite (and exact) and the naive formulas give
  inf or nan.
* "no n×n matrix" (softmax_backward): the ``no_matrix`` part uses n = 60000
  logits per sample, a Jacobian the grading kernel's memory cannot hold.
"""

from __future__ import annotations

import re
import warnings

import numpy as np

from .. import reference as R
from ._core import (
    call,
    describe_inputs,
    expect_close,
    fmt,
    known_mistake,
    rng_for,
    run_parts,
    shape_str,
)

__all__ = ["check_softmax", "check_softmax_jacobian", "check_softmax_backward",
           "check_cross_entropy", "check_softmax_cross_entropy_grad"]


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

KEEPDIMS = ("a sum or max over axis=-1 drops that axis, so its result no longer lines up with "
            "the rows; keep the axis with keepdims=True (shape (N, 1)), which broadcasts along "
            "each row")
NO_CHANGE_RULE = ("Rule: a graded function must not change its arguments (the caller still "
                  "needs them). Compute new arrays: `z = z - m`, not `z -= m`")
OVERFLOW_RULE = "overflow-safe for any finite input"


def _copy(v):
    return v.copy() if isinstance(v, np.ndarray) else v


def _call(fn, fn_name, args, quiet=False, watch=False):
    """Call ``fn`` on copies of ``args``; explain a failed broadcast; with ``watch``, grade the
    rule "a graded function must not change its arguments".

    ``_core.call`` would fail every part on an in-place change; here only the parts that
    ``watch`` (each check's ``values``) look, so that mistake costs one cell. The function
    gets copies either way: a change never reaches the judge's own inputs.
    """
    given = {k: _copy(v) for k, v in args.items()}

    def on_the_copies(*_):  # _core.call's own copies go unused: it sees no change
        return fn(*given.values())

    try:
        if quiet:  # numpy's overflow warnings silenced: the values are checked instead
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                out = call(on_the_copies, fn_name, args)
        else:
            out = call(on_the_copies, fn_name, args)
    except AssertionError as exc:
        if "could not be broadcast" in str(exc):
            raise AssertionError(f"{exc}\n  This matches a known mistake: {KEEPDIMS}.") from None
        raise
    if watch:
        for k, v in args.items():
            if isinstance(v, np.ndarray) and not np.array_equal(given[k], v, equal_nan=True):
                raise AssertionError(_changed_message(fn_name, args, k, given[k]))
    return out


def _changed_message(fn_name, args, k, after):
    """The message for an argument changed in place: where, expected and got, and the rule."""
    before = args[k]
    where = f"{fn_name}({', '.join(args)})"
    if after.shape != before.shape:
        got = f"an array of shape {shape_str(after.shape)}"
        msg = (f"{where} changed its argument {k} in place: expected {k} unchanged (shape "
               f"{shape_str(before.shape)}) after the call, got {got}.")
    else:
        differ = ~np.isclose(after, before, rtol=0.0, atol=0.0, equal_nan=True)
        idx = np.unravel_index(int(np.argmax(differ)), before.shape)
        at = "" if before.ndim == 0 else str(list(map(int, idx)))
        msg = (f"{where} changed its argument {k} in place ({int(differ.sum())} of "
               f"{before.size} entries): expected {k}{at} to stay {before[idx]:.6g} after the "
               f"call, got {after[idx]:.6g}.")
    msg += f"\n  {NO_CHANGE_RULE}."
    if k in ("z", "Z") and after.shape == before.shape and before.ndim >= 1:
        shifted = before - before.max(axis=-1, keepdims=True)
        catalogue = {
            f"{k} now holds {k} minus each row's maximum: the shift of a stable softmax done in "
            f"place (`z -= z.max(axis=-1, keepdims=True)`)": shifted,
            f"{k} now holds exp({k} - max): the exponential of a stable softmax done in place "
            f"(`np.exp(z, out=z)` or `z -= ...` then `np.exp(z, out=z)`)": np.exp(shifted),
            f"{k} now holds softmax({k}): a softmax computed in place in its argument":
                R.softmax(before),
        }
        for description, value in catalogue.items():
            if np.allclose(after, value, rtol=1e-9, atol=1e-300):
                msg += f"\n  This matches a known mistake: {description}."
                if fn_name != "softmax":
                    msg += (f" If {fn_name} passes {k} to your softmax, the change happens "
                            f"there: start with `{k} = np.array({k}, dtype=float)` (a copy), "
                            f"as the template does, and fix softmax")
                break
    return msg


def _rule_applies(rule, out, compare, breaking=()):
    """Run ``compare``; when it fails because ``rule`` is broken, the message ends with the rule.

    The rule is named only when it is what failed: the result has inf or NaN where
    every expected value is finite, or the message names one of the ``breaking``
    mistakes (clipping the probabilities to keep a log finite). A wrong formula that
    gives finite wrong values fails with its own message and no rule attached.
    """
    try:
        compare()
    except AssertionError as exc:
        text = str(exc)
        try:
            finite = bool(np.all(np.isfinite(np.asarray(out, dtype=np.float64))))
        except (TypeError, ValueError):
            finite = True  # not numbers: expect_close said so
        if not finite or any(b in text for b in breaking):
            raise AssertionError(f"{text}\n  Rule: {rule}.") from None
        raise


def _quietly(compute):
    """Evaluate a known mistake's value; it may overflow (that is the point) or not broadcast."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            return np.asarray(compute(), dtype=np.float64)
        except (ValueError, IndexError):  # that mistake would raise on these inputs instead
            return None


def _mistakes(**candidates):
    """{description: value} without the candidates that could not be computed."""
    return {k: v for k, v in candidates.items() if v is not None}


def _fail_if_not_finite(label, out, inputs, mistakes, advice, expected=None):
    """A NaN or inf where every expected value is finite: say which mistake gives that pattern.

    ``expect_close`` would report the NaN too, but it cannot name a mistake
    whose value is itself NaN; here NaN matches NaN at the same positions.
    """
    try:
        arr = np.asarray(out, dtype=np.float64)
    except (TypeError, ValueError):
        return  # expect_close explains non-numbers
    if np.all(np.isfinite(arr)):
        return
    msg = (f"{label} for {describe_inputs(inputs)}: the result contains "
           f"{int(np.isnan(arr).sum())} NaN and {int(np.isinf(arr).sum())} inf value(s) where "
           f"every expected value is finite")
    if expected is not None:
        msg += f": expected {fmt(expected)}, got {fmt(arr)}"
    msg += "."
    matching = [description for description, value in mistakes.items()
                if value is not None and value.shape == arr.shape
                and np.allclose(arr, value, rtol=1e-6, atol=1e-10, equal_nan=True)]
    if len(matching) == 1:
        msg += f"\n  This matches a known mistake: {matching[0]}."
    elif matching:  # e.g. a single loss value: nan is what several mistakes give
        msg += "\n  This matches each of these known mistakes (one of them is yours):"
        msg += "".join(f"\n  - {description}." for description in matching)
    else:
        msg += f"\n  {advice}"
    raise AssertionError(msg)


# ---------------------------------------------------------------------------
# softmax
# ---------------------------------------------------------------------------

OVERFLOW = known_mistake("unstable-softmax")  # its wording is the manifest's


def _softmax_mistakes(z):
    def exp_over(axis):
        e = np.exp(z - z.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)

    def no_keepdims():
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1)

    return _mistakes(**{
        "you normalised over the whole array (np.sum(e) of every entry) instead of over each "
        "sample's last axis: each row must sum to 1 on its own":
            _quietly(lambda: np.exp(z - z.max()) / np.exp(z - z.max()).sum()),
        "you normalised over axis 0 instead of the last axis (rows are samples: "
        "use axis=-1)": _quietly(lambda: exp_over(0)) if z.ndim > 1 else None,
        "e.sum(axis=-1) without keepdims=True has one entry per row, and dividing by it "
        "broadcasts across the columns instead of the rows: use keepdims=True":
            _quietly(no_keepdims) if z.ndim > 1 else None,
        "you divided the logits by their sum: the exponential e^z is missing":
            _quietly(lambda: z / z.sum(axis=-1, keepdims=True)),
        "you returned e^z without dividing by the sum Σ_k e^{z_k}": _quietly(lambda: np.exp(z)),
        "you applied the sigmoid to each logit on its own: softmax couples them through "
        "the sum in the denominator": _quietly(lambda: 1 / (1 + np.exp(-z))),
    })


def _softmax_shapes(rng):
    n = int(rng.integers(2, 7))
    return [(n,), (1, n), (int(rng.integers(2, 9)), n), (n, n), (2, 3, n)]


def check_softmax(softmax, part="all"):
    """softmax(z) along the last axis, for any leading shape, stable for huge logits."""
    rng = rng_for("softmax")

    def shape():
        for shp in _softmax_shapes(rng) + [(1,)]:
            z = rng.normal(0.0, 2.0, size=shp)
            out = _call(softmax, "softmax", {"z": z})
            got = np.shape(out)
            if got != z.shape:
                what = "a scalar" if got == () else f"shape {shape_str(got)}"
                msg = (f"softmax(z) for z of shape {shape_str(z.shape)}: expected shape "
                       f"{shape_str(z.shape)}, got {what}. Softmax gives one probability per "
                       f"logit, so the result has the shape of z.")
                if got == z.shape[:-1]:
                    msg += ("\n  This matches a known mistake: the last axis was reduced away "
                            "(a sum or max over axis=-1 without keepdims=True, or a missing "
                            "division e / e.sum(...)).")
                raise AssertionError(msg)

    def values():
        for shp in _softmax_shapes(rng):
            z = rng.normal(0.0, 2.0, size=shp)
            out = _call(softmax, "softmax", {"z": z}, watch=True)
            expect_close("softmax(z)", out, R.softmax(z), inputs={"z": z},
                         mistakes=_softmax_mistakes(z))

    def stable():
        big = rng.normal(0.0, 1.0, size=(4, 5))
        big += np.array([[1000.0], [-1000.0], [750.0], [-800.0]])
        cases = [np.array([1000.0, 999.0, 998.0]),
                 np.array([-1000.0, -1001.0, -1002.0]),
                 np.array([[1000.0, 999.0, 990.0], [-1000.0, -999.0, -1005.0],
                           [0.5, -0.5, 0.0]]),
                 big]
        for z in cases:
            out = _call(softmax, "softmax", {"z": z}, quiet=True)
            mistakes = {
                OVERFLOW: _quietly(lambda z=z: np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)),
                "you subtracted the maximum of the whole array, np.max(z), instead of each "
                "row's maximum (z.max(axis=-1, keepdims=True)): a row far below the overall "
                "maximum then underflows to 0/0 = nan":
                    _quietly(lambda z=z: np.exp(z - z.max())
                             / np.exp(z - z.max()).sum(axis=-1, keepdims=True)),
            }
            def compare(z=z, out=out, m=mistakes):
                _fail_if_not_finite("softmax(z)", out, {"z": z}, m, expected=R.softmax(z),
                                    advice="Probably an overflow: " + OVERFLOW + ".")
                expect_close("softmax(z) with very large or very small logits", out,
                             R.softmax(z), inputs={"z": z}, mistakes=_softmax_mistakes(z))

            _rule_applies(f"softmax must be {OVERFLOW_RULE}", out, compare)

    run_parts(part, {"shape": shape, "values": values, "stable": stable})


# ---------------------------------------------------------------------------
# softmax_jacobian
# ---------------------------------------------------------------------------

def _jacobian_mistakes(z):
    s = R.softmax(z)
    n = s.size
    return _mistakes(**{
        known_mistake("jacobian-no-diagonal"): -np.outer(s, s),
        known_mistake("jacobian-sign"): np.outer(s, s) - np.diag(s),
        "you kept only the diagonal, diag(s(1 - s)): the off-diagonal entries -s_i s_j "
        "(i ≠ j) are missing; softmax is not elementwise": np.diag(s * (1 - s)),
        "you used s.T @ s, which for a 1-D array is the inner product (one number), instead "
        "of the outer product np.outer(s, s)": np.diag(s) - s @ s,
        "s * s.T is elementwise for a 1-D array (s.T is s itself), so you subtracted s_j² "
        "from every row; the outer product is np.outer(s, s)": np.diag(s) - (s * s)[None, :],
        "you used the logits z in place of the probabilities s = softmax(z)":
            np.diag(z) - np.outer(z, z),
        "the factor s_i is missing: you returned δ_ij - s_j instead of s_i(δ_ij - s_j)":
            np.eye(n) - s[None, :],
    })


def check_softmax_jacobian(softmax_jacobian, part="all"):
    """softmax_jacobian(z) = diag(s) - s sᵀ, shape (n, n), for z of shape (n,)."""
    rng = rng_for("softmax_jacobian")

    def shape():
        for n in (int(rng.integers(3, 8)), 2, 1):
            z = rng.normal(0.0, 2.0, size=n)
            out = _call(softmax_jacobian, "softmax_jacobian", {"z": z})
            if np.shape(out) != (n, n):
                s = R.softmax(z)
                expect_close("softmax_jacobian(z)", out, R.softmax_jacobian(z), inputs={"z": z},
                             mistakes={
                    "you returned only the diagonal s(1 - s) as a vector; the Jacobian is an "
                    "(n, n) matrix with J[i, j] = ∂s_i/∂z_j": s * (1 - s),
                    "you returned softmax(z) itself, not its Jacobian": s,
                })

    def values():
        zs = [rng.normal(0.0, 2.0, size=n) for n in (3, 2, int(rng.integers(4, 9)), 10, 1)]
        dominant = rng.normal(0.0, 0.5, size=5)
        dominant[int(rng.integers(0, 5))] += 6.0
        zs += [dominant, rng.normal(0.0, 1.0, size=4) + 50.0]
        for z in zs:
            out = _call(softmax_jacobian, "softmax_jacobian", {"z": z}, watch=True)
            expect_close("softmax_jacobian(z)", out, R.softmax_jacobian(z), inputs={"z": z},
                         mistakes=_jacobian_mistakes(z))

    run_parts(part, {"shape": shape, "values": values})


# ---------------------------------------------------------------------------
# softmax_backward
# ---------------------------------------------------------------------------

def _backward_mistakes(z, dout):
    s = R.softmax(z)
    dot = np.sum(dout * s, axis=-1, keepdims=True)
    right = s * (dout - dot)
    return _mistakes(**{
        "you used only the diagonal of the Jacobian, dout * s * (1 - s); the off-diagonal "
        "terms -s_i s_j add -s_j (dout·s) to each entry: dz = s * (dout - dout·s)":
            dout * s * (1 - s),
        "the weighted sum is missing its weights: you subtracted Σ_i dout_i instead of "
        "Σ_i dout_i s_i": s * (dout - dout.sum(axis=-1, keepdims=True)),
        "the outer factor s is missing: dz = s * (dout - dout·s), not dout - dout·s": dout - dot,
        "you returned s * dout, the diag(s) part of J only: the -s sᵀ part is missing": s * dout,
        "the sign is flipped: dz = s * (dout - dout·s)": -right,
        "you used the logits z where the probabilities s = softmax(z) belong":
            z * (dout - np.sum(dout * z, axis=-1, keepdims=True)),
        "the dot product dout·s must be taken for each sample separately "
        "(np.sum(dout * s, axis=-1, keepdims=True)), not over the whole batch":
            s * (dout - np.sum(dout * s)) if s.ndim > 1 else None,
        "np.sum(dout * s, axis=-1) without keepdims=True has one entry per row and broadcasts "
        "across the columns instead of the rows: use keepdims=True":
            _quietly(lambda: s * (dout - np.sum(dout * s, axis=-1))) if s.ndim > 1 else None,
    })


NO_MATRIX_N = 60_000  # logits per sample in the "no_matrix" part: one n×n matrix is 29 GB
VJP_RULE = ("The vector-Jacobian product needs no matrix: dz = s * (dout - Σ_i dout_i s_i) for "
            "each row, with the dot product np.sum(dout * s, axis=-1, keepdims=True): O(n) "
            "memory and time per sample")


NO_MATRIX_RULE = "Rule: softmax_backward must not build an n×n matrix"


def _no_matrix_failure(where: str, error: str, n: int, shape) -> str:
    """The message for an answer that raised on n logits per sample (``error``: call's text)."""
    size = f"one {n}×{n} matrix of float64 takes {n * n * 8 / 1e9:.0f} GB"
    raised = error.split("\n")[0].split(" raised ", 1)[-1]
    expected = (f"expected dz of shape {shape_str(shape)}, which needs a few vectors of "
                f"{n * 8 / 1e3:.0f} kB, got this error")
    if re.match(r"\w*MemoryError\b", raised) or "Unable to allocate" in raised:
        return (f"{where} ran out of memory ({raised}): {expected}.\n  This matches a known "
                f"mistake: you built the Jacobian (or the outer product s sᵀ, or np.eye(n)): "
                f"{size}, more than a graded notebook may use. {VJP_RULE}.\n  {NO_MATRIX_RULE}.")
    return (f"{where} raised {raised}: {expected}.\n  With {n} logits per sample, {size}, more "
            f"than a graded notebook may use: if your answer builds the Jacobian (or s sᵀ, or "
            f"np.eye(n)), that is why it fails here and not on small inputs. {VJP_RULE}.\n  "
            f"{NO_MATRIX_RULE}.")


def _compare_backward(fn, z, dout, watch=False):
    out = _call(fn, "softmax_backward", {"z": z, "dout": dout}, watch=watch)
    expect_close("softmax_backward(z, dout)", out, R.softmax_backward(z, dout),
                 inputs={"z": z, "dout": dout}, mistakes=_backward_mistakes(z, dout))
    return out


def check_softmax_backward(softmax_backward, part="all"):
    """softmax_backward(z, dout) = Jᵀ dout per sample, batched, without an (n, n) matrix."""
    rng = rng_for("softmax_backward")

    def values():
        for n in (3, 2, int(rng.integers(4, 9)), 1):
            z = rng.normal(0.0, 2.0, size=n)
            _compare_backward(softmax_backward, z, rng.normal(0.0, 1.0, size=n), watch=True)
        # the softmax + MSE pattern of the 3-4-2 network (nets.seed000): dout = s - y
        z = rng.normal(0.0, 1.0, size=4)
        y = np.eye(4)[int(rng.integers(0, 4))]
        _compare_backward(softmax_backward, z, R.softmax(z) - y, watch=True)

    def batched():
        n = int(rng.integers(3, 7))
        for shp in [(1, n), (int(rng.integers(2, 9)), n), (n, n), (2, 3, n)]:
            z = rng.normal(0.0, 2.0, size=shp)
            _compare_backward(softmax_backward, z, rng.normal(0.0, 1.0, size=shp))

    def no_matrix():
        # Behaviour, not a measurement: the grading kernel's address space is capped at a few
        # GB, and one n×n matrix of float64 for this n takes 29 GB, so an answer that builds
        # the Jacobian (or s sᵀ, or np.eye(n)) fails to allocate it, while the VJP needs a few
        # vectors of 480 kB and answers in milliseconds. The grade rests only on the values
        # returned for these inputs.
        n = NO_MATRIX_N
        z = rng.normal(0.0, 2.0, size=(2, n))
        dout = rng.normal(0.0, 1.0, size=(2, n))
        where = f"softmax_backward(z, dout) for z of shape (2, {n})"
        try:
            out = _call(softmax_backward, "softmax_backward", {"z": z, "dout": dout})
        except AssertionError as exc:
            if " raised " not in str(exc).split("\n")[0]:
                raise  # not an error of the student's code (e.g. an argument modified in place)
            raise AssertionError(_no_matrix_failure(where, str(exc), n, z.shape)) from None
        # a wrong value here is a wrong formula, not a broken rule: no rule line
        expect_close("softmax_backward(z, dout)", out, R.softmax_backward(z, dout),
                     inputs={"z": z, "dout": dout},
                     mistakes=lambda: _backward_mistakes(z, dout))  # 2 x 60,000: if needed

    run_parts(part, {"values": values, "batched": batched, "no_matrix": no_matrix})


# ---------------------------------------------------------------------------
# cross_entropy and softmax_cross_entropy_grad
# ---------------------------------------------------------------------------

ONE_HOT = "turn them into one-hot rows first, np.eye(C)[Y]"
LABEL_HINTS = {
    "cross_entropy": ONE_HOT + ", or pick each row's log-probability with logp[np.arange(N), Y]",
    "softmax_cross_entropy_grad": ONE_HOT,
}


def _batch(rng, N, C, scale=2.0):
    Z = rng.normal(0.0, scale, size=(N, C))
    labels = rng.integers(0, C, size=N)
    return Z, labels, np.eye(C)[labels]


def _labels_call(fn, fn_name, Z, labels):
    """Call with integer labels; if that raises, say that integer labels must be handled.

    The diagnosis is attached only when it is the cause: the same call with the
    same labels as one-hot rows runs.
    """
    try:
        return _call(fn, fn_name, {"Z": Z, "Y": labels})
    except AssertionError as exc:
        if " raised " not in str(exc).split("\n")[0]:
            raise  # not an error of the student's code
        try:
            _call(fn, fn_name, {"Z": Z, "Y": np.eye(Z.shape[1])[labels]}, quiet=True)
        except (AssertionError, NotImplementedError):
            raise exc from None  # fails with one-hot rows too: something else is wrong
        raise AssertionError(f"{exc}\n  This matches a known mistake: integer labels are not "
                             f"handled (the same labels as one-hot rows work). Y may be integer "
                             f"class labels of shape (N,): {LABEL_HINTS[fn_name]}.") from None


def _ce_mistakes(Z, Y):
    N, C = Z.shape
    logp = R.log_softmax(Z)
    per = -(Y * logp).sum(axis=1)
    s = R.softmax(Z)
    return _mistakes(**{
        "you summed the loss over the samples instead of taking the mean (divide by N)":
            per.sum(),
        "the minus sign is missing: cross-entropy is -Σ y log s, which is >= 0": -per.mean(),
        "you averaged over all N×C entries (np.mean of Y * log s); average over the N samples "
        "only, after summing over the classes": per.mean() / C,
        "you used the binary cross-entropy of each class (the (1 - y) log(1 - s) terms do not "
        "belong to the categorical cross-entropy)":
            _quietly(lambda: -(Y * logp + (1 - Y) * np.log1p(-s)).sum(axis=1).mean()),
        "you used the logits as log-probabilities (-Σ y z): apply log-softmax first":
            -(Y * Z).sum(axis=1).mean(),
    })


def _compare_ce(fn, Z, Y, labels=None, mistakes=None, watch=False):
    out = (_labels_call(fn, "cross_entropy", Z, labels) if labels is not None
           else _call(fn, "cross_entropy", {"Z": Z, "Y": Y}, watch=watch))
    expect_close("cross_entropy(Z, Y)", out, R.cross_entropy(Z, Y),
                 inputs={"Z": Z, "Y": Y if labels is None else labels}, check_dtype=False,
                 mistakes=_ce_mistakes(Z, Y) | (mistakes or {}))


def _saturated():
    """Logits about ±1000, one-hot targets: the right losses and gradients are finite and exact.

    Row 0 (true class 1, 1000 behind) and row 1 (true class 0, 800 behind): the true
    class's probability underflows to exactly 0, so log(softmax) is -inf and -Y/S is
    -inf, while the loss is exactly 1000 (800) and dZ exactly (S - Y)/N. Rows 2 and 3:
    e^z overflows (underflows) without the shift. Row 4: ordinary logits.
    """
    Z = np.array([[1000.0, 0.0, -1000.0], [0.0, 800.0, 0.0], [1000.0, 1000.5, 999.0],
                  [-1000.0, -1001.0, -999.0], [0.2, -0.1, 0.4]])
    return Z, np.eye(3)[[1, 0, 2, 1, 0]]


def _naive_softmax(Z):
    return np.exp(Z) / np.exp(Z).sum(axis=-1, keepdims=True)


def check_cross_entropy(cross_entropy, part="all"):
    """cross_entropy(Z, Y): mean over samples of -Σ_c Y log softmax(Z), finite for huge logits."""
    rng = rng_for("cross_entropy")

    def values():
        for N, C in [(1, 3), (int(rng.integers(2, 9)), int(rng.integers(2, 6))), (50, 4)]:
            Z, _, Y = _batch(rng, N, C)
            _compare_ce(cross_entropy, Z, Y, watch=True)

    def labels():
        for N, C in [(1, 3), (int(rng.integers(5, 9)), 4), (4, 4)]:
            Z, lab, Y = _batch(rng, N, C)
            logp = R.log_softmax(Z)
            _compare_ce(cross_entropy, Z, Y, labels=lab, mistakes=_mistakes(**{
                "integer labels are not handled: with Y of shape (N,), Y * log s broadcasts "
                "the label values across the columns; " + LABEL_HINTS["cross_entropy"]:
                    _quietly(lambda logp=logp, lab=lab: -(lab * logp).sum(axis=1).mean()),
            }))

    def stable():
        Z, Y = _saturated()
        inputs = {"Z": Z, "Y": Y}
        out = _call(cross_entropy, "cross_entropy", inputs, quiet=True)
        s = R.softmax(Z)
        naive = {
            "you took log(softmax(Z)): a wrong class that leads by 1000 makes the true class's "
            "probability underflow to exactly 0, and log 0 = -inf (0 · log 0 = nan for the "
            "other classes). Compute log-softmax from the logits: "
            "log s_i = (z_i - m) - log Σ_k e^{z_k - m} with m = max(z)":
                _quietly(lambda: -(Y * np.log(s)).sum(axis=1).mean()),
            "you computed log Σ_k e^{z_k} without shifting: e^1000 overflows to inf (and "
            "e^-1000 underflows to 0, log 0 = -inf). Subtract each row's maximum m first: "
            "log Σ e^z = m + log Σ e^{z - m}":
                _quietly(lambda: (np.log(np.exp(Z).sum(axis=1)) - (Y * Z).sum(axis=1)).mean()),
            "you took the log of the unshifted softmax, np.log(np.exp(Z) / np.exp(Z).sum(...)): "
            "e^1000 overflows. Compute log-softmax from the shifted logits":
                _quietly(lambda: -(Y * np.log(_naive_softmax(Z))).sum(axis=1).mean()),
        }
        clipped = {f"you clipped the probabilities (or added ε = {eps:g}) before the log, which "
                   f"caps each sample's loss near -log ε = {-np.log(eps):.1f}; compute "
                   f"log-softmax directly from the logits instead":
                       -(Y * np.log(np.clip(s, eps, 1.0))).sum(axis=1).mean()
                   for eps in (1e-7, 1e-8, 1e-9, 1e-10, 1e-12, 1e-15, 1e-16, 1e-300)}
        clipped |= {f"you added ε = {eps:g} to the probabilities before the log, which caps "
                    f"each sample's loss near -log ε; compute log-softmax directly from the "
                    f"logits instead": -(Y * np.log(s + eps)).sum(axis=1).mean()
                    for eps in (1e-7, 1e-8, 1e-9, 1e-10, 1e-12, 1e-15, 1e-16)}

        def compare():
            _fail_if_not_finite("cross_entropy(Z, Y)", out, inputs, naive,
                                expected=R.cross_entropy(Z, Y), advice=(
                "Somewhere e^z overflowed or a probability underflowed to 0 before a log. "
                "Compute log-softmax from the logits: log s_i = (z_i - m) - log Σ_k e^{z_k - m} "
                "with m = max(z)."))
            expect_close("cross_entropy(Z, Y) with logits about ±1000", out,
                         R.cross_entropy(Z, Y), inputs=inputs, check_dtype=False,
                         mistakes=_ce_mistakes(Z, Y) | clipped)

        _rule_applies(f"cross_entropy must be {OVERFLOW_RULE}", out, compare,
                      breaking=("clipped the probabilities", "added ε"))

    run_parts(part, {"values": values, "labels": labels, "stable": stable})


def _grad_mistakes(Z, Y):
    N = Z.shape[0]
    s = R.softmax(Z)
    return _mistakes(**{
        "the 1/N of the batch mean is missing: the loss is a mean over the N samples, so "
        "dZ = (softmax(Z) - Y) / N": s - Y,
        known_mistake("ce-grad-mean-twice"): (s - Y) / N**2,
        "the sign is flipped: dZ = (softmax(Z) - Y) / N, not (Y - softmax(Z)) / N":
            (Y - s) / N,
        "you multiplied by s(1 - s), the diagonal of the softmax Jacobian: with cross-entropy "
        "the whole Jacobian has already collapsed into softmax(Z) - Y": s * (1 - s) * (s - Y) / N,
        "only softmax(Z) was divided by N: dZ = (softmax(Z) - Y) / N": s / N - Y,
        "you returned softmax(Z) / N: the - Y is missing": s / N,
        "you divided by the number of classes C instead of the number of samples N":
            (s - Y) / Z.shape[1],
    })


LONG_WAY = ("you went the long way, through ∂ℓ/∂s = -Y/S and the softmax Jacobian: S "
            "underflows to exactly 0 for a class 1000 behind, -Y/0 = -inf, and the Jacobian's "
            "0 · inf = nan. The fused formula never divides: dZ = (softmax(Z) - Y) / N")


def check_softmax_cross_entropy_grad(softmax_cross_entropy_grad, part="all"):
    """softmax_cross_entropy_grad(Z, Y) = (softmax(Z) - Y) / N, one-hot or integer Y."""
    rng = rng_for("softmax_cross_entropy_grad")
    name = "softmax_cross_entropy_grad"

    def compare(Z, Y, labels=None, mistakes=None, watch=False):
        out = (_labels_call(softmax_cross_entropy_grad, name, Z, labels)
               if labels is not None else
               _call(softmax_cross_entropy_grad, name, {"Z": Z, "Y": Y}, watch=watch))
        expect_close("softmax_cross_entropy_grad(Z, Y)", out, R.softmax_cross_entropy_grad(Z, Y),
                     inputs={"Z": Z, "Y": Y if labels is None else labels},
                     mistakes=_grad_mistakes(Z, Y) | (mistakes or {}))

    def values():
        for N, C in [(1, 3), (int(rng.integers(2, 9)), int(rng.integers(2, 6))), (32, 5)]:
            Z, _, Y = _batch(rng, N, C)
            compare(Z, Y, watch=True)

    def labels():
        for N, C in [(1, 4), (int(rng.integers(5, 9)), 3), (4, 4)]:
            Z, lab, Y = _batch(rng, N, C)
            s = R.softmax(Z)
            compare(Z, Y, labels=lab, mistakes=_mistakes(**{
                "integer labels are not handled: with Y of shape (N,), softmax(Z) - Y "
                "broadcasts the label values across the columns; "
                + LABEL_HINTS["softmax_cross_entropy_grad"]:
                    _quietly(lambda s=s, lab=lab: (s - lab) / len(lab)),
            }))

    def stable():
        Z, Y = _saturated()
        N = Z.shape[0]
        inputs = {"Z": Z, "Y": Y}
        out = _call(softmax_cross_entropy_grad, name, inputs, quiet=True)
        S = R.softmax(Z)

        def through_jacobians():
            dout = -Y / S
            rows = zip(S, dout, strict=True)
            return np.stack([(np.diag(s) - np.outer(s, s)).T @ d for s, d in rows]) / N

        # the VJP written out: R.softmax_backward refuses a dout that is not finite
        vjp = _quietly(lambda: S * (-Y / S - np.sum(-Y / S * S, axis=-1, keepdims=True)) / N)
        built = _quietly(through_jacobians)
        naive = {LONG_WAY: vjp, OVERFLOW: _quietly(lambda: (_naive_softmax(Z) - Y) / N)}
        if built is not None and not np.allclose(built, vjp, equal_nan=True):
            naive[LONG_WAY + " (here with each sample's Jacobian built)"] = built

        def compare_stable():
            _fail_if_not_finite("softmax_cross_entropy_grad(Z, Y)", out, inputs, naive,
                                expected=R.softmax_cross_entropy_grad(Z, Y), advice=(
                "Somewhere e^z overflowed, or a probability that underflowed to 0 was divided "
                "by. dZ = (softmax(Z) - Y) / N with the stable softmax needs neither."))
            expect_close("softmax_cross_entropy_grad(Z, Y) with logits about ±1000", out,
                         R.softmax_cross_entropy_grad(Z, Y), inputs=inputs,
                         mistakes=_grad_mistakes(Z, Y))

        _rule_applies(f"softmax_cross_entropy_grad must be {OVERFLOW_RULE}", out,
                      compare_stable)

    run_parts(part, {"values": values, "labels": labels, "stable": stable})
