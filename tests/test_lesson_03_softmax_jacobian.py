"""Lesson 03 (softmax and its Jacobian): the grading checks and graded submissions.

Unit tests: every check passes the reference and the notebook's own solutions
(for several grading seeds), and every known mistake fails with a message
that names it. Graded-submission tests: notebooks that make the lesson's
common mistakes lose exactly the affected cells, and the failing cells'
messages say what went wrong.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from lessons import grade, make_submission, notebook_answers

from course_lib import reference as R
from course_lib.grading import softmax as G

ASSIGNMENT = "03_softmax_jacobian"

PARTS = {
    "softmax": ("shape", "values", "stable"),
    "softmax_jacobian": ("shape", "values"),
    "softmax_backward": ("values", "batched", "no_matrix"),
    "cross_entropy": ("values", "labels", "stable"),
    "softmax_cross_entropy_grad": ("values", "labels"),
}


def check(name):
    return getattr(G, f"check_{name}")


def notebook_solutions() -> dict[str, object]:
    """The graded functions as the source notebook defines them (solutions included)."""
    return notebook_answers(ASSIGNMENT, PARTS, {"np": np})


# ---------------------------------------------------------------------------
# every check passes the reference and the notebook's solutions
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [None, "1", "987654"])
@pytest.mark.parametrize("name", list(PARTS))
def test_reference_and_solution_pass_every_part(name, seed, monkeypatch):
    if seed is not None:
        monkeypatch.setenv("COURSE_GRADING_SEED", seed)
    solutions = notebook_solutions()
    for part in PARTS[name]:
        check(name)(getattr(R, name), part=part)
        check(name)(solutions[name], part=part)
    check(name)(getattr(R, name))  # part="all"


def test_unknown_part_is_refused():
    with pytest.raises(ValueError, match="unknown value 'nope'"):
        G.check_softmax(R.softmax, part="nope")


def test_unanswered_exercise_stays_not_implemented():
    def stub(z):
        raise NotImplementedError()

    with pytest.raises(NotImplementedError, match="not implemented yet"):
        G.check_softmax(stub, part="values")


# ---------------------------------------------------------------------------
# known mistakes, one small wrong function each
# ---------------------------------------------------------------------------

def _exp_normalised(z, axis):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def softmax_naive(z):
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def softmax_global_max(z):
    e = np.exp(z - z.max())
    return e / e.sum(axis=-1, keepdims=True)


def softmax_whole_array(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def softmax_axis0(z):
    return _exp_normalised(z, 0)


def softmax_no_keepdims(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1)


def softmax_no_exp(z):
    return z / z.sum(axis=-1, keepdims=True)


def softmax_sigmoid(z):
    return 1 / (1 + np.exp(-z))


def softmax_reduced(z):
    return np.exp(z).sum(axis=-1)


def jac_no_diag(z):
    s = R.softmax(z)
    return -np.outer(s, s)


def jac_sign(z):
    s = R.softmax(z)
    return np.outer(s, s) - np.diag(s)


def jac_diag_only(z):
    s = R.softmax(z)
    return np.diag(s * (1 - s))


def jac_inner(z):
    s = R.softmax(z)
    return np.diag(s) - s.T @ s


def jac_elementwise(z):
    s = R.softmax(z)
    return np.diag(s) - s * s.T


def jac_logits(z):
    return np.diag(z) - np.outer(z, z)


def jac_no_si(z):
    s = R.softmax(z)
    return np.eye(len(s)) - s[None, :]


def jac_vector(z):
    s = R.softmax(z)
    return s * (1 - s)


def back_diag(z, dout):
    s = R.softmax(z)
    return dout * s * (1 - s)


def back_unweighted(z, dout):
    s = R.softmax(z)
    return s * (dout - dout.sum(axis=-1, keepdims=True))


def back_no_outer_s(z, dout):
    s = R.softmax(z)
    return dout - np.sum(dout * s, axis=-1, keepdims=True)


def back_s_times_dout(z, dout):
    return R.softmax(z) * dout


def back_sign(z, dout):
    return -R.softmax_backward(z, dout)


def back_batch_sum(z, dout):
    s = R.softmax(z)
    return s * (dout - np.sum(dout * s))


def back_no_keepdims(z, dout):
    s = R.softmax(z)
    return s * (dout - np.sum(dout * s, axis=-1))


# The grading kernel's address space is capped (nbgrader_config.py: Judge.kernel_memory_mb);
# this test process has no cap, and on a machine with enough RAM the no_matrix part's
# 60000×60000 matrix (29 GB) would really be allocated here. So the answer that builds J
# fails as numpy fails under the cap, before allocating anything; the same answer graded
# in the real kernel is test_submission_that_builds_the_jacobian_loses_only_no_matrix.
KERNEL_MEMORY_MB = 6144


def _under_the_kernel_cap(n):
    if n * n * 8 > KERNEL_MEMORY_MB * 2**20:
        raise MemoryError(f"Unable to allocate {n * n * 8 / 2**30:.1f} GiB for an array with "
                          f"shape ({n}, {n}) and data type float64")


def back_builds_j(z, dout):
    s = R.softmax(z)
    out = np.empty_like(s)
    for idx in np.ndindex(s.shape[:-1]):
        _under_the_kernel_cap(s.shape[-1])  # np.diag(s) below is n×n
        J = np.diag(s[idx]) - np.outer(s[idx], s[idx])
        out[idx] = J.T @ dout[idx]
    return out


def _onehot(Z, Y):
    Y = np.asarray(Y)
    return np.eye(Z.shape[1])[Y] if Y.ndim == 1 else Y


def ce_sum(Z, Y):
    return float(-(_onehot(Z, Y) * R.log_softmax(Z)).sum())


def ce_no_minus(Z, Y):
    return float((_onehot(Z, Y) * R.log_softmax(Z)).sum() / Z.shape[0])


def ce_mean_all(Z, Y):
    return float(-np.mean(_onehot(Z, Y) * R.log_softmax(Z)))


def ce_binary(Z, Y):
    Y, s = _onehot(Z, Y), R.softmax(Z)
    return float(-(Y * np.log(s) + (1 - Y) * np.log(1 - s)).sum(axis=1).mean())


def ce_logits(Z, Y):
    return float(-(_onehot(Z, Y) * Z).sum(axis=1).mean())


def ce_onehot_only(Z, Y):
    return float(-(Y * R.log_softmax(Z)).sum() / Z.shape[0])


def ce_log_of_softmax(Z, Y):
    return float(-(_onehot(Z, Y) * np.log(R.softmax(Z))).sum() / Z.shape[0])


def ce_clipped(Z, Y):
    s = np.clip(R.softmax(Z), 1e-12, 1.0)
    return float(-(_onehot(Z, Y) * np.log(s)).sum() / Z.shape[0])


def grad_no_n(Z, Y):
    return R.softmax(Z) - _onehot(Z, Y)


def grad_n_twice(Z, Y):
    return (R.softmax(Z) - _onehot(Z, Y)) / Z.shape[0] ** 2


def grad_sign(Z, Y):
    return (_onehot(Z, Y) - R.softmax(Z)) / Z.shape[0]


def grad_times_diag(Z, Y):
    s = R.softmax(Z)
    return s * (1 - s) * (s - _onehot(Z, Y)) / Z.shape[0]


def grad_over_c(Z, Y):
    return (R.softmax(Z) - _onehot(Z, Y)) / Z.shape[1]


def grad_onehot_only(Z, Y):
    return (R.softmax(Z) - Y) / Z.shape[0]


MISTAKES = [
    # (check, wrong function, part, the message must contain (regex))
    ("softmax", softmax_naive, "stable", r"not stabilised.*overflows to inf"),
    ("softmax", softmax_global_max, "stable", r"maximum of the whole array"),
    ("softmax", softmax_whole_array, "values", r"normalised over the whole array"),
    ("softmax", softmax_axis0, "values", r"over axis 0 instead of the last axis"),
    ("softmax", softmax_no_keepdims, "values", r"keepdims=True"),
    ("softmax", softmax_no_exp, "values", r"exponential e\^z is missing"),
    ("softmax", softmax_sigmoid, "values", r"sigmoid to each logit"),
    ("softmax", softmax_reduced, "shape", r"the result has the shape of z"),
    ("softmax_jacobian", jac_no_diag, "values", r"diagonal term diag\(s\) is missing"),
    ("softmax_jacobian", jac_sign, "values", r"sign is flipped"),
    ("softmax_jacobian", jac_diag_only, "values", r"kept only the diagonal"),
    ("softmax_jacobian", jac_inner, "values", r"inner product"),
    ("softmax_jacobian", jac_elementwise, "values", r"s \* s\.T is elementwise"),
    ("softmax_jacobian", jac_logits, "values", r"used the logits z"),
    ("softmax_jacobian", jac_no_si, "values", r"factor s_i is missing"),
    ("softmax_jacobian", jac_vector, "shape", r"only the diagonal s\(1 - s\) as a vector"),
    ("softmax_backward", back_diag, "values", r"only the diagonal of the Jacobian"),
    ("softmax_backward", back_unweighted, "values", r"missing its weights"),
    ("softmax_backward", back_no_outer_s, "values", r"outer factor s is missing"),
    ("softmax_backward", back_s_times_dout, "values", r"diag\(s\) part of J only"),
    ("softmax_backward", back_sign, "values", r"sign is flipped"),
    ("softmax_backward", back_batch_sum, "batched", r"for each sample separately"),
    ("softmax_backward", back_no_keepdims, "batched", r"keepdims=True"),
    ("softmax_backward", back_builds_j, "no_matrix", r"you built the Jacobian"),
    ("cross_entropy", ce_sum, "values", r"summed the loss over the samples"),
    ("cross_entropy", ce_no_minus, "values", r"minus sign is missing"),
    ("cross_entropy", ce_mean_all, "values", r"all N×C entries"),
    ("cross_entropy", ce_binary, "values", r"binary cross-entropy"),
    ("cross_entropy", ce_logits, "values", r"logits as log-probabilities"),
    ("cross_entropy", ce_onehot_only, "labels", r"integer labels are not handled"),
    ("cross_entropy", ce_log_of_softmax, "stable", r"log\(softmax\(Z\)\)"),
    ("cross_entropy", ce_clipped, "stable", r"clipped the probabilities"),
    ("softmax_cross_entropy_grad", grad_no_n, "values", r"1/N of the batch mean is missing"),
    ("softmax_cross_entropy_grad", grad_n_twice, "values", r"1/N is applied twice"),
    ("softmax_cross_entropy_grad", grad_sign, "values", r"sign is flipped"),
    ("softmax_cross_entropy_grad", grad_times_diag, "values", r"multiplied by s\(1 - s\)"),
    ("softmax_cross_entropy_grad", grad_over_c, "values", r"number of classes C"),
    ("softmax_cross_entropy_grad", grad_onehot_only, "labels", r"integer labels are not handled"),
]


@pytest.mark.parametrize("name, wrong, part, message", MISTAKES,
                         ids=[f"{m[0]}-{m[1].__name__}" for m in MISTAKES])
def test_known_mistake_is_named(name, wrong, part, message):
    with pytest.raises(AssertionError) as info:
        check(name)(wrong, part=part)
    text = str(info.value)
    assert re.search(message, text, flags=re.S), text
    assert "known mistake" in text, text


def test_building_the_jacobian_fails_only_where_it_cannot_fit():
    for part in ("values", "batched"):  # right values on small inputs
        G.check_softmax_backward(back_builds_j, part=part)
    with pytest.raises(AssertionError) as info:
        G.check_softmax_backward(back_builds_j, part="no_matrix")
    text = str(info.value)
    assert "shape (2, 60000) ran out of memory (MemoryError: Unable to allocate" in text, text
    assert "np.sum(dout * s, axis=-1, keepdims=True): O(n) memory" in text, text


def test_no_matrix_names_the_rule_when_the_large_input_fails_otherwise():
    def fails_on_large_n(z, dout):
        if z.shape[-1] > 10_000:
            raise ValueError("array is too big; `arr.size * arr.dtype.itemsize` is larger than "
                             "the maximum possible size")
        return R.softmax_backward(z, dout)

    with pytest.raises(AssertionError) as info:
        G.check_softmax_backward(fails_on_large_n, part="no_matrix")
    text = str(info.value)
    assert text.startswith("softmax_backward(z, dout) for z of shape (2, 60000) raised ValueError: "
                           "array is too big"), text
    assert "if your answer builds the Jacobian" in text and "O(n) memory" in text, text


def test_no_matrix_still_checks_the_values():
    with pytest.raises(AssertionError, match=r"for each sample separately"):
        G.check_softmax_backward(back_batch_sum, part="no_matrix")


def test_a_correct_but_different_formula_passes():
    def softmax_via_logsumexp(z):
        m = z.max(axis=-1, keepdims=True)
        return np.exp(z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True)))

    G.check_softmax(softmax_via_logsumexp)

    def backward_with_einsum(z, dout):
        s = R.softmax(z)
        return s * dout - s * np.einsum("...i,...i->...", dout, s)[..., None]

    G.check_softmax_backward(backward_with_einsum)

    def backward_with_python_loops(z, dout):  # O(n) per sample: fine, if slow-ish, at n = 60000
        s = R.softmax(z)
        dz = np.empty_like(s)
        for idx in np.ndindex(s.shape[:-1]):
            row, d = s[idx].tolist(), dout[idx].tolist()
            dot = sum(di * si for di, si in zip(d, row, strict=True))
            dz[idx] = [si * (di - dot) for di, si in zip(d, row, strict=True)]
        return dz

    G.check_softmax_backward(backward_with_python_loops)


# ---------------------------------------------------------------------------
# graded submissions that make the common mistakes
# ---------------------------------------------------------------------------

HEADER = "import numpy as np\n\n"

SUBMISSION_A = {  # unstable softmax, Jacobian without diag(s), 1/N forgotten, CE summed, ...
    "softmax_answer": HEADER + """
def softmax(z):
    z = np.asarray(z, dtype=float)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
""",
    "softmax_jacobian_answer": HEADER + """
def softmax_jacobian(z):
    s = softmax(np.asarray(z, dtype=float))
    return -np.outer(s, s)
""",
    "softmax_backward_answer": HEADER + """
def softmax_backward(z, dout):
    s = softmax(np.asarray(z, dtype=float))
    return s * (dout - np.sum(dout * s))          # one dot product for the whole batch
""",
    "cross_entropy_answer": HEADER + """
def cross_entropy(Z, Y):
    Z, Y = np.asarray(Z, dtype=float), np.asarray(Y)
    if Y.ndim == 1:
        Y = np.eye(Z.shape[1])[Y]
    shifted = Z - Z.max(axis=1, keepdims=True)
    log_s = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-(Y * log_s).sum())              # summed, not averaged
""",
    "softmax_cross_entropy_grad_answer": HEADER + """
def softmax_cross_entropy_grad(Z, Y):
    Z, Y = np.asarray(Z, dtype=float), np.asarray(Y)
    if Y.ndim == 1:
        Y = np.eye(Z.shape[1])[Y]
    return softmax(Z) - Y                         # the 1/N is missing
""",
}

SUBMISSION_B = {  # Jacobian sign flipped, 1/N twice, only J's diagonal, integer labels ignored
    "softmax_jacobian_answer": HEADER + """
def softmax_jacobian(z):
    s = softmax(np.asarray(z, dtype=float))
    return np.outer(s, s) - np.diag(s)
""",
    "softmax_backward_answer": HEADER + """
def softmax_backward(z, dout):
    s = softmax(np.asarray(z, dtype=float))
    return dout * s * (1 - s)
""",
    "cross_entropy_answer": HEADER + """
def cross_entropy(Z, Y):
    Z = np.asarray(Z, dtype=float)
    shifted = Z - Z.max(axis=1, keepdims=True)
    log_s = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-(Y * log_s).sum() / Z.shape[0])
""",
    "softmax_cross_entropy_grad_answer": HEADER + """
def softmax_cross_entropy_grad(Z, Y):
    Z, Y = np.asarray(Z, dtype=float), np.asarray(Y)
    if Y.ndim == 1:
        Y = np.eye(Z.shape[1])[Y]
    N = Z.shape[0]
    return (softmax(Z) - Y) / N / N
""",
}


def assert_graded(result, failing: dict[str, str]):
    """Cells in ``failing`` score 0 with a message matching its regex; all others full marks."""
    assert result.status == "ok"
    for cell in result.cells:
        if cell.grade_id.startswith("written_"):
            continue
        if cell.grade_id in failing:
            assert cell.score == 0.0, (cell.grade_id, cell.score)
            assert re.search(failing[cell.grade_id], cell.message, flags=re.S), \
                (cell.grade_id, cell.message)
        else:
            assert cell.score == cell.max_score, (cell.grade_id, cell.score, cell.message)
    assert not set(failing) - {c.grade_id for c in result.cells}


def test_submission_unstable_softmax_jacobian_without_diagonal_and_forgotten_1_over_n(tmp_path):
    result = grade(make_submission(ASSIGNMENT, SUBMISSION_A, tmp_path), ASSIGNMENT)
    assert_graded(result, {
        "softmax_stable": r"overflows to inf.*Subtract the maximum",
        "softmax_jacobian_values": r"diag\(s\) term missing",
        "softmax_backward_batched": r"for each sample",
        "softmax_backward_no_matrix": r"for each sample separately",
        "cross_entropy_values": r"mean over the samples, not the sum",
        "cross_entropy_labels": r"summed the loss over the samples",
        "cross_entropy_stable": r"summed the loss over the samples",
        "softmax_cross_entropy_grad_values": r"1/N missing",
        "softmax_cross_entropy_grad_labels": r"1/N of the batch mean is missing",
    })
    assert result.score == 1 + 1 + 1 + 2  # softmax shape and values, Jacobian shape, VJP values


def test_submission_flipped_jacobian_diagonal_only_vjp_1_over_n_twice_integer_labels(tmp_path):
    result = grade(make_submission(ASSIGNMENT, SUBMISSION_B, tmp_path), ASSIGNMENT)
    assert_graded(result, {
        "softmax_jacobian_values": r"sign of diag\(s\) - s sᵀ flipped",
        "softmax_backward_values": r"only the\s+diagonal of J",
        "softmax_backward_batched": r"only the diagonal of J",
        "softmax_backward_no_matrix": r"only the diagonal of J",
        "cross_entropy_labels": r"integer labels of shape \(N,\) are not handled",
        "softmax_cross_entropy_grad_values": r"applied twice",
        "softmax_cross_entropy_grad_labels": r"1/N is applied twice",
    })


SUBMISSION_C = {  # right values, but the VJP goes through each sample's (n, n) Jacobian
    "softmax_backward_answer": HEADER + """
def softmax_backward(z, dout):
    z, dout = np.asarray(z, dtype=float), np.asarray(dout, dtype=float)
    dz = np.empty_like(z)
    for idx in np.ndindex(z.shape[:-1]):
        dz[idx] = softmax_jacobian(z[idx]).T @ dout[idx]
    return dz
""",
}


def test_submission_that_builds_the_jacobian_loses_only_no_matrix(tmp_path):
    # Graded in the real kernel, under its memory cap: numpy's own MemoryError, which crosses
    # to the judge as the error of the student's call (no 29 GB matrix in this process).
    result = grade(make_submission(ASSIGNMENT, SUBMISSION_C, tmp_path), ASSIGNMENT)
    assert_graded(result, {
        "softmax_backward_no_matrix": r"shape \(2, 60000\) ran out of memory \(\w*MemoryError: "
                                      r"Unable to allocate.*you built the Jacobian",
    })


# ---------------------------------------------------------------------------
# the lesson's figures and explorer run (headless)
# ---------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:.*non-interactive.*:UserWarning")
def test_figures_and_explorer_draw(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from course_lib.figures import softmax as figs

    drawn = []
    monkeypatch.setattr(plt, "show", lambda: drawn.append(plt.gcf()))
    figs.plot_jacobians([[0.1, 0.0, -0.1], [5.0, 0.0, 0.0, 0.0]], titles=["a", "b"])
    figs.plot_loss_gradients()
    figs.softmax_explorer(3)
    assert len(drawn) == 3
    # the explorer's first frame: bars of s and the Jacobian heatmap on the fixed scale
    image = drawn[2].axes[1].images[0]
    assert image.get_clim() == (-0.25, 0.25)
    plt.close("all")
    with pytest.raises(ValueError, match="one per logit vector"):
        figs.plot_jacobians([[1.0, 2.0]], titles=["a", "b"])
    with pytest.raises(ValueError, match="from 2 to 6"):
        figs.softmax_explorer(9)
