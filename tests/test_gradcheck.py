"""Tests for course_lib.gradcheck (finite-difference gradient checks)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib.gradcheck import (
    GradCheckResult,
    assert_gradient,
    check_gradient,
    numerical_gradient,
    numerical_gradient_array,
    rel_error,
)

RTOL, ATOL = 1e-7, 1e-10  # COURSE.md defaults


def sum_of_squares(x):
    return float(np.sum(x**2))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def bits(a: np.ndarray) -> bytes:
    """The exact bytes of an array, so that -0.0 != 0.0 and last-bit changes show."""
    return np.ascontiguousarray(a).tobytes()


# --------------------------------------------------------------------------- rel_error

@pytest.mark.parametrize(("x", "y", "expected"), [
    (1.0, 1.0, 0.0),
    (1.0, 3.0, 0.5),                       # |1-3| / (1+3)
    (-1.0, 1.0, 1.0),                      # opposite signs: the maximum possible
    (0.0, 0.0, 0.0),                       # floor 1e-8 avoids 0/0
    (0.0, 1e-12, 1e-4),                    # 1e-12 / max(1e-8, 1e-12)
    ([1.0, 2.0, 4.0], [1.0, 2.0, 5.0], 1.0 / 9.0),  # the worst entry, not the mean
    ([[0.0, 10.0]], [[3e-9, 11.0]], 0.3),  # 3e-9 / 1e-8 beats 1/21
])
def test_rel_error_hand_computed(x, y, expected):
    assert rel_error(x, y) == pytest.approx(expected, rel=1e-12, abs=0)
    assert rel_error(y, x) == pytest.approx(expected, rel=1e-12, abs=0)
    assert isinstance(rel_error(x, y), float)


def test_rel_error_empty_and_nan():
    assert rel_error(np.zeros((0, 3)), np.zeros((0, 3))) == 0.0
    assert np.isnan(rel_error([1.0, np.nan], [1.0, 2.0]))


def test_rel_error_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError,
                       match=r"y: expected the same shape as x, \(2, 3\), got \(3, 2\)"):
        rel_error(np.zeros((2, 3)), np.zeros((3, 2)))


def test_rel_error_rejects_non_numbers():
    with pytest.raises(ValueError, match="x: expected an array of numbers"):
        rel_error("abc", 1.0)


# ----------------------------------------------------------------- numerical_gradient

def test_numerical_gradient_sum_of_squares(rng):
    x = rng.standard_normal((3, 4))
    grad = numerical_gradient(sum_of_squares, x)
    assert grad.shape == (3, 4) and grad.dtype == np.float64
    # f is quadratic, so the central difference is exact up to rounding.
    np.testing.assert_allclose(grad, 2 * x, rtol=RTOL, atol=1e-9)


def test_numerical_gradient_matrix_quadratic(rng):
    # f(W) = ||W v||^2 / 2 + a^T W v  has  df/dW = (W v + a) v^T.
    W = rng.standard_normal((3, 2))
    v = rng.standard_normal(2)
    a = rng.standard_normal(3)

    def f(W):
        return 0.5 * np.sum((W @ v) ** 2) + a @ W @ v

    expected = np.outer(W @ v + a, v)
    np.testing.assert_allclose(numerical_gradient(f, W), expected, rtol=RTOL, atol=1e-9)


def test_numerical_gradient_scalar_input():
    x = np.array(0.3)
    grad = numerical_gradient(lambda t: np.sin(t), x)
    assert grad.shape == ()
    assert grad == pytest.approx(np.cos(0.3), rel=1e-9)


def test_numerical_gradient_accepts_0d_outputs():
    x = np.array([1.0, 2.0])
    for f in (lambda x: np.sum(x), lambda x: np.array(np.sum(x)), lambda x: int(round(x.sum()))):
        grad = numerical_gradient(f, x)
        assert grad.shape == (2,)
    np.testing.assert_allclose(numerical_gradient(lambda x: np.sum(x), x), [1.0, 1.0], rtol=RTOL)


def test_numerical_gradient_matches_torch_autograd(rng):
    torch = pytest.importorskip("torch")
    W = rng.standard_normal((4, 3))
    b = rng.standard_normal(4)
    X = rng.standard_normal((5, 3))

    def f(W):  # a small softplus layer with a mean-squared output
        return np.mean(np.log1p(np.exp(X @ W.T + b)) ** 2)

    Wt = torch.tensor(W, dtype=torch.float64, requires_grad=True)
    loss = (torch.nn.functional.softplus(torch.tensor(X) @ Wt.T + torch.tensor(b)) ** 2).mean()
    loss.backward()
    assert loss.item() == pytest.approx(f(W), rel=1e-12)
    np.testing.assert_allclose(numerical_gradient(f, W), Wt.grad.numpy(), rtol=1e-7, atol=1e-9)
    # f may also return a 0-d tensor (e.g. a torch loss), without torch being required.
    grad = numerical_gradient(lambda v: (torch.from_numpy(v) ** 3).sum(), b)
    np.testing.assert_allclose(grad, 3 * b**2, rtol=1e-7, atol=1e-9)


def test_numerical_gradient_perturbs_x_itself_in_place(rng):
    x = rng.standard_normal(3)
    seen = []

    def f(arg):
        seen.append(arg is x)
        return np.sum(arg)

    numerical_gradient(f, x)
    assert seen == [True] * 6  # two evaluations per entry, always on the caller's array


# Values where (v + h) - h != v in float64, so an "undo the step" restore changes them.
TRICKY = np.array([[0.1, 1.0 / 3.0, -0.7], [1e-300, -0.0, 123.456789]])


def test_tricky_values_really_are_tricky():
    h = 1e-5
    undone = (TRICKY + h) - h
    assert bits(undone) != bits(TRICKY)  # otherwise the restore tests below prove nothing


def test_numerical_gradient_restores_x_bitwise():
    x = TRICKY.copy()
    numerical_gradient(sum_of_squares, x)
    assert bits(x) == bits(TRICKY)


def test_numerical_gradient_restores_x_when_f_raises():
    x = TRICKY.copy()
    calls = []

    def f(arg):
        calls.append(1)
        if len(calls) == 4:  # the second evaluation of entry (0, 1): x[0, 1] is at v - h
            assert arg[0, 1] != TRICKY[0, 1]
            raise RuntimeError("boom")
        return np.sum(arg)

    with pytest.raises(RuntimeError, match="boom"):
        numerical_gradient(f, x)
    assert bits(x) == bits(TRICKY)


def test_numerical_gradient_on_a_view_changes_the_base(rng):
    # A slice of a weight matrix is a view: perturbing it must reach the base array.
    W = rng.standard_normal((3, 4))
    row = W[1]

    def f(_):
        return np.sum(W**2)

    grad = numerical_gradient(f, row)
    np.testing.assert_allclose(grad, 2 * W[1], rtol=RTOL, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_numerical_gradient_quadratic_form_property(n, seed):
    # f(x) = x^T A x  has gradient (A + A^T) x for any A.
    r = np.random.default_rng(seed)
    A = r.standard_normal((n, n))
    x = r.standard_normal(n)
    before = bits(x)
    grad = numerical_gradient(lambda v: v @ A @ v, x)
    np.testing.assert_allclose(grad, (A + A.T) @ x, rtol=1e-7, atol=1e-8)
    assert bits(x) == before


@pytest.mark.parametrize(("x", "got"), [
    ([1.0, 2.0], "got list"),
    (np.array([1, 2]), "got a int64 array"),
    (np.array([1.0, 2.0], dtype=np.float32), "got a float32 array"),
    (3.0, "got float"),
])
def test_numerical_gradient_requires_float64_array(x, got):
    with pytest.raises(ValueError, match=rf"x: expected a float64 numpy array, {got}.*"
                                         r"modified in place.*np\.asarray\(x, dtype=float\)"):
        numerical_gradient(sum_of_squares, x)


def test_numerical_gradient_rejects_read_only_and_non_finite_x():
    x = np.ones(3)
    x.flags.writeable = False
    with pytest.raises(ValueError, match="x: expected a writeable array"):
        numerical_gradient(sum_of_squares, x)
    with pytest.raises(ValueError, match="x: contains NaN"):
        numerical_gradient(sum_of_squares, np.array([1.0, np.nan]))


@pytest.mark.parametrize(("output", "got"), [
    (lambda x: x**2, r"got ndarray of shape \(3,\)"),
    (lambda x: np.sum(x, keepdims=True), r"got ndarray of shape \(1,\)"),
    (lambda x: None, "got None"),
    (lambda x: "1.0", "got str '1.0'"),
])
def test_numerical_gradient_requires_scalar_f(output, got):
    x = np.ones(3)
    with pytest.raises(ValueError, match=rf"f: expected f\(x\) to return a scalar.*{got}"):
        numerical_gradient(output, x)
    assert bits(x) == bits(np.ones(3))


def test_numerical_gradient_bad_f_and_h():
    with pytest.raises(ValueError, match="f: expected a function of x, got ndarray"):
        numerical_gradient(np.ones(3), np.ones(3))
    for h in (0.0, -1e-5):
        with pytest.raises(ValueError, match=r"h: expected a finite value > 0"):
            numerical_gradient(sum_of_squares, np.ones(3), h=h)
    with pytest.raises(ValueError, match="h: expected a number"):
        numerical_gradient(sum_of_squares, np.ones(3), h="small")


# ----------------------------------------------------------- numerical_gradient_array

def test_numerical_gradient_array_tanh(rng):
    x = rng.standard_normal((2, 3))
    dout = rng.standard_normal((2, 3))
    # d tanh = 1 - tanh^2, applied entrywise to the upstream gradient.
    expected = dout * (1 - np.tanh(x) ** 2)
    got = numerical_gradient_array(np.tanh, x, dout)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=1e-9)


def test_numerical_gradient_array_matmul(rng):
    # Z = X @ W.T: dX = dZ @ W and dW = dZ.T @ X (COURSE.md's dense layer).
    X = rng.standard_normal((5, 3))
    W = rng.standard_normal((4, 3))
    dZ = rng.standard_normal((5, 4))
    dX = numerical_gradient_array(lambda X_: X_ @ W.T, X, dZ)
    dW = numerical_gradient_array(lambda W_: X @ W_.T, W, dZ)
    np.testing.assert_allclose(dX, dZ @ W, rtol=RTOL, atol=1e-9)
    np.testing.assert_allclose(dW, dZ.T @ X, rtol=RTOL, atol=1e-9)
    assert dX.shape == X.shape and dW.shape == W.shape


def test_numerical_gradient_array_copies_views_returned_by_f(rng):
    # f returns a view of x; without a copy the "plus" output would change when
    # x is moved to x - h, and every difference would come out as 0.
    x = rng.standard_normal((2, 3))
    dout = rng.standard_normal((3, 2))
    np.testing.assert_allclose(numerical_gradient_array(lambda v: v.T, x, dout), dout.T,
                               rtol=RTOL, atol=1e-9)


def test_numerical_gradient_array_matches_torch_vjp(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((3, 4))
    dout = rng.standard_normal((3, 4))

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    xt = torch.tensor(x, requires_grad=True)
    torch.softmax(xt, dim=1).backward(torch.tensor(dout))
    np.testing.assert_allclose(numerical_gradient_array(softmax, x, dout), xt.grad.numpy(),
                               rtol=1e-7, atol=1e-9)


def test_numerical_gradient_array_restores_x_bitwise():
    x = TRICKY.copy()
    numerical_gradient_array(np.sin, x, np.ones_like(x))
    assert bits(x) == bits(TRICKY)

    calls = []

    def f(arg):
        calls.append(1)
        if len(calls) == 3:
            raise KeyError("boom")
        return np.sin(arg)

    with pytest.raises(KeyError):
        numerical_gradient_array(f, x, np.ones_like(x))
    assert bits(x) == bits(TRICKY)


def test_numerical_gradient_array_bad_dout():
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match=r"dout: expected the same shape as f\(x\), "
                                         r"\(3, 2\), got \(2, 3\)"):
        numerical_gradient_array(lambda v: v.T, x, np.ones((2, 3)))
    with pytest.raises(ValueError, match="dout: contains NaN"):
        numerical_gradient_array(np.tanh, x, np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="x: expected a float64 numpy array"):
        numerical_gradient_array(np.tanh, [[1.0]], [[1.0]])
    with pytest.raises(ValueError, match="f: expected f\\(x\\) to return an array of real numbers"):
        numerical_gradient_array(lambda v: "x", x, np.ones(()))


def test_numerical_gradient_array_output_shape_must_not_change():
    x = np.array([1.0, 2.0])
    first = []

    def f(v):  # returns a different shape once x has been perturbed
        first.append(1)
        return v if len(first) == 1 else v[:1]

    with pytest.raises(ValueError, match=r"f: returned shape \(1,\) after perturbing x"):
        numerical_gradient_array(f, x, np.ones(2))


# ---------------------------------------------------------------------- check_gradient

def test_check_gradient_passes_for_right_gradient(rng):
    x = rng.standard_normal((2, 3))
    result = check_gradient(sum_of_squares, x, 2 * x)
    assert isinstance(result, GradCheckResult)
    assert result.ok is True and bool(result) is True
    assert result.max_rel_error < 1e-8
    np.testing.assert_allclose(result.numeric, 2 * x, rtol=RTOL, atol=1e-9)
    assert str(result).startswith("gradient check passed: max relative error ")
    assert "\n" not in str(result)


def test_check_gradient_fails_at_the_wrong_entry(rng):
    x = rng.standard_normal((2, 3))
    analytic = 2 * x
    analytic[1, 2] = -analytic[1, 2]  # a sign error in one entry
    result = check_gradient(sum_of_squares, x, analytic)
    assert result.ok is False and not result
    assert result.worst_index == (1, 2)
    assert result.analytic_value == analytic[1, 2]
    assert result.numeric_value == pytest.approx(2 * x[1, 2], rel=1e-9)
    assert result.max_rel_error == pytest.approx(1.0, rel=1e-9)
    text = str(result)
    assert text.startswith("gradient check FAILED at index (1, 2): ")
    assert f"got analytic {analytic[1, 2]:.10g}" in text and "expected " in text
    assert "1 of 6 entries differ" in text


def test_check_gradient_worst_index_is_the_largest_failing_error():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    analytic = 2 * x
    analytic[1] *= 1.01   # relative error ~ 0.005
    analytic[3] *= 1.5    # relative error 0.2: the worst
    result = check_gradient(sum_of_squares, x, analytic)
    assert result.worst_index == (3,)
    assert result.analytic_value == 12.0
    assert result.numeric_value == pytest.approx(8.0, rel=1e-9)
    assert result.max_rel_error == pytest.approx(0.2, rel=1e-8)
    assert "2 of 4 entries differ" in str(result)


def test_check_gradient_points_at_a_failing_entry_not_a_tiny_one():
    # Entry 0: both ~1e-9 with opposite signs: relative error 2e-9 / 1e-8 = 0.2, but
    # within atol. Entry 1: a real mistake with a smaller relative error, 0.2 / 4.2.
    # The report must show entry 1, while max_rel_error is still the overall maximum.
    x = np.array([0.0, 1.0])

    def f(v):
        return 1e-9 * v[0] + v[1] ** 2

    result = check_gradient(f, x, [-1e-9, 2.2])
    assert not result.ok
    assert result.worst_index == (1,)
    assert result.analytic_value == 2.2
    assert f"relative error {0.2 / 4.2:.2g}" in str(result)
    assert "1 of 2 entries differ" in str(result)
    assert result.max_rel_error == pytest.approx(0.2, rel=0.05)


def test_check_gradient_tolerances():
    x = np.array([1.0])
    off = np.array([2.0 * (1 + 1e-4)])  # 1e-4 relative error
    assert not check_gradient(sum_of_squares, x, off)
    assert check_gradient(sum_of_squares, x, off, rtol=1e-3)
    with pytest.raises(ValueError, match="rtol: expected a finite value >= 0"):
        check_gradient(sum_of_squares, x, off, rtol=-1.0)
    with pytest.raises(ValueError, match="atol: expected a number"):
        check_gradient(sum_of_squares, x, off, atol=None)


def test_check_gradient_wrong_shape_is_a_failure_not_a_crash(rng):
    x = rng.standard_normal((2, 3))
    result = check_gradient(sum_of_squares, x, (2 * x).T)
    assert not result.ok
    assert result.max_rel_error == float("inf")
    assert "wrong shape" in str(result)
    assert "expected (2, 3)" in str(result) and "got (3, 2)" in str(result)
    np.testing.assert_allclose(result.numeric, 2 * x, rtol=RTOL, atol=1e-9)


def test_check_gradient_nan_in_analytic_is_the_worst_entry():
    x = np.array([1.0, 2.0, 3.0])
    analytic = np.array([2.0, 4.0 * 1.5, np.nan])
    result = check_gradient(sum_of_squares, x, analytic)
    assert not result.ok
    assert result.worst_index == (2,)
    assert np.isnan(result.analytic_value)
    assert "analytic nan" in str(result)


def test_check_gradient_hints_when_f_ignores_x(rng):
    x = rng.standard_normal(3)
    frozen = x.copy()  # the classic bug: f closes over a copy, so the numeric gradient is 0
    result = check_gradient(lambda _: np.sum(frozen**2), x, 2 * x)
    assert not result.ok
    assert "numerical gradient is exactly zero" in str(result)
    assert len(str(result).splitlines()) == 2


def test_check_gradient_accepts_lists_and_rejects_non_numbers():
    x = np.array([1.0, -2.0])
    assert check_gradient(sum_of_squares, x, [2.0, -4.0])
    with pytest.raises(ValueError, match="analytic: expected an array of numbers, got None"):
        check_gradient(sum_of_squares, x, None)


def test_check_gradient_empty_x_and_nan_numeric():
    assert check_gradient(sum_of_squares, np.zeros((0, 3)), np.zeros((0, 3))).ok
    # f is NaN away from x itself: the numerical gradient is NaN and the check must fail.
    with np.errstate(invalid="ignore"):  # sqrt of a negative number, on purpose
        result = check_gradient(lambda v: np.sqrt(v[0] - 1.0) + v[1], np.array([1.0, 5.0]),
                                [0.0, 1.0])
    assert not result.ok and result.worst_index == (0,) and np.isnan(result.numeric_value)


def test_result_is_frozen(rng):
    result = check_gradient(sum_of_squares, np.ones(2), 2 * np.ones(2))
    with pytest.raises(AttributeError):
        result.ok = False


# --------------------------------------------------------------------- assert_gradient

def test_assert_gradient_returns_result_when_right(rng):
    x = rng.standard_normal(4)
    result = assert_gradient(sum_of_squares, x, 2 * x)
    assert result.ok


def test_assert_gradient_raises_with_report(rng):
    x = rng.standard_normal(4)
    wrong = x.copy()  # forgot the factor 2
    with pytest.raises(AssertionError, match=r"gradient check FAILED at index \(\d,\)"):
        assert_gradient(sum_of_squares, x, wrong)
    with pytest.raises(AssertionError, match=r"expected \(4,\).*got \(4, 1\)"):
        assert_gradient(sum_of_squares, x, (2 * x)[:, None])


def test_assert_gradient_passes_tolerances_through():
    x = np.array([1.0])
    off = np.array([2.0 * (1 + 1e-4)])
    with pytest.raises(AssertionError):
        assert_gradient(sum_of_squares, x, off)
    assert assert_gradient(sum_of_squares, x, off, rtol=1e-3).ok


def test_a_named_check_says_which_gradient_failed(rng):
    x = rng.standard_normal(3)
    with pytest.raises(AssertionError, match=r"^gradient check of layer 2 dW FAILED at index"):
        assert_gradient(sum_of_squares, x, -2 * x, name="layer 2 dW")
    assert str(check_gradient(sum_of_squares, x, 2 * x, name="db")).startswith(
        "gradient check of db passed")
