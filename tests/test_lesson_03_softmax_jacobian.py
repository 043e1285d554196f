"""Lesson 03 (softmax and its Jacobian): the grading checks and graded submissions.

Unit tests: every check passes the reference and the notebook's own solutions
(for several grading seeds), and every known mistake fails with a message
that names it. Graded-submission tests: notebooks that make the lesson's
common mistakes lose exactly the affected cells, and the failing cells'
messages say what went wrong.
"""

from __future__ import annotations

import re

import nbformat
import numpy as np
import pytest
from lessons import (
    LessonHarness,
    grade,
    grade_id,
    lesson_parts,
    make_submission,
    source_path,
)

from course_lib import reference as R
from course_lib.grading import softmax as G

ASSIGNMENT = "03_softmax_jacobian"
PARTS = lesson_parts(ASSIGNMENT)  # {function: its parts}, from the manifest


def check(name):
    return getattr(G, f"check_{name}")


class TestLesson(LessonHarness):
    """Every check passes the reference and the notebook's own solutions, part by part, for
    several grading seeds, refuses an unknown part, and says "not implemented yet" for an
    unanswered exercise (tests/lessons.py; the parts are the manifest's)."""

    LESSON = "softmax"


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


# Answers that break a stated rule and are otherwise right (each loses exactly one part).

def softmax_in_place(z):  # the template's np.asarray does not copy: this shifts the caller's z
    z = np.asarray(z, dtype=float)
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def softmax_in_place_exp(z):
    z = np.asarray(z, dtype=float)
    z -= z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    return z / z.sum(axis=-1, keepdims=True)


def _jac_via(z):  # a right Jacobian from a softmax that shifts z in place
    s = softmax_in_place(z)
    return np.diag(s) - np.outer(s, s)


def back_in_place_dout(z, dout):
    s = R.softmax(z)
    dout -= np.sum(dout * s, axis=-1, keepdims=True)
    return s * dout


def ce_in_place(Z, Y):  # the template's copy removed, then a stable log-softmax in place
    Z = np.asarray(Z, dtype=float)
    Z -= Z.max(axis=1, keepdims=True)
    return float(-(_onehot(Z, Y) * (Z - np.log(np.exp(Z).sum(axis=1, keepdims=True)))).sum()
                 / Z.shape[0])


def grad_in_place(Z, Y):
    return (softmax_in_place(Z) - _onehot(Z, Y)) / Z.shape[0]


def ce_unshifted_logsumexp(Z, Y):
    Y = _onehot(Z, Y)
    return float((np.log(np.exp(Z).sum(axis=1)) - (Y * Z).sum(axis=1)).mean())


def _vjp(s, dout):  # the VJP as a student writes it (no check that dout is finite)
    return s * (dout - np.sum(dout * s, axis=-1, keepdims=True))


def grad_long_way(Z, Y):  # ∂ℓ/∂s = -Y/S, then through the softmax Jacobian
    S = R.softmax(Z)
    return _vjp(S, -_onehot(Z, Y) / S) / Z.shape[0]


def grad_long_way_with_jacobians(Z, Y):
    S, Y = R.softmax(Z), _onehot(Z, Y)
    return np.stack([R.softmax_jacobian(z).T @ (-y / s) for z, y, s in zip(Z, Y, S, strict=True)]
                    ) / Z.shape[0]


def grad_unstable_softmax(Z, Y):
    E = np.exp(Z)
    return (E / E.sum(axis=1, keepdims=True) - _onehot(Z, Y)) / Z.shape[0]


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


NO_CHANGE = "Rule: a graded function must not change its arguments"
OVERFLOW = "overflow-safe for any finite input"
RULE_BREAKERS = [
    # (check, an answer right in every way but one rule, the one part it fails, the rule's
    #  words and the diagnosis its message must contain (regex))
    ("softmax", softmax_in_place, "values", NO_CHANGE, r"z minus each row's maximum"),
    ("softmax", softmax_in_place_exp, "values", NO_CHANGE, r"exp\(z - max\)"),
    ("softmax_jacobian", _jac_via, "values", NO_CHANGE,
     r"If softmax_jacobian passes z to your softmax, the change happens there"),
    ("softmax_backward", back_in_place_dout, "values", NO_CHANGE, r"argument dout in place"),
    ("cross_entropy", ce_in_place, "values", NO_CHANGE, r"Z minus each row's maximum"),
    ("softmax_cross_entropy_grad", grad_in_place, "values", NO_CHANGE,
     r"Z minus each row's maximum"),
    ("softmax", softmax_naive, "stable", OVERFLOW, r"not stabilised"),
    ("softmax", softmax_global_max, "stable", OVERFLOW, r"maximum of the whole array"),
    ("softmax_backward", back_builds_j, "no_matrix", "must not build an n×n matrix",
     r"you built the Jacobian.*O\(n\) memory"),
    ("cross_entropy", ce_log_of_softmax, "stable", OVERFLOW, r"you took log\(softmax\(Z\)\)"),
    ("cross_entropy", ce_unshifted_logsumexp, "stable", OVERFLOW,
     r"log Σ_k e\^\{z_k\} without shifting"),
    ("cross_entropy", ce_clipped, "stable", OVERFLOW, r"clipped the probabilities"),
    ("softmax_cross_entropy_grad", grad_long_way, "stable", OVERFLOW,
     r"This matches a known mistake: you went the long way, through ∂ℓ/∂s = -Y/S"),
    ("softmax_cross_entropy_grad", grad_long_way_with_jacobians, "stable", OVERFLOW,
     r"you went the long way"),
    ("softmax_cross_entropy_grad", grad_unstable_softmax, "stable", OVERFLOW,
     r"This matches a known mistake: the softmax is not stabilised"),
]


@pytest.mark.parametrize("name, wrong, part, rule, diagnosis", RULE_BREAKERS,
                         ids=[f"{m[0]}-{m[1].__name__}" for m in RULE_BREAKERS])
def test_an_answer_that_breaks_one_rule_loses_only_that_rules_part(name, wrong, part, rule,
                                                                   diagnosis):
    """The lesson states each rule with the one cell that grades it: an answer that breaks
    only that rule passes every other part, and the failing part's message names the rule
    and says what was expected and what came back."""
    for other in PARTS[name]:
        if other != part:
            check(name)(wrong, part=other)
    with pytest.raises(AssertionError) as info:
        check(name)(wrong, part=part)
    text = str(info.value)
    assert rule in text, text
    assert re.search(diagnosis, text, flags=re.S), text
    assert re.search(r"expected .* got ", text, flags=re.S), text


def test_the_rules_are_stated_with_the_cell_and_points_that_grade_them():
    """Each graded rule is stated in the lesson, next to the name of the cell that grades
    it and that cell's points as the nbgrader metadata gives them."""
    nb = nbformat.read(str(source_path(ASSIGNMENT)), as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    points = {grade_id(c): c.metadata["nbgrader"]["points"] for c in nb.cells
              if c.metadata.get("nbgrader", {}).get("grade")}
    for cell, rule in [("softmax_values", "no change to the argument"),
                       ("softmax_stable", "overflow-safe for any finite input"),
                       ("softmax_jacobian_values", "unchanged after the call"),
                       ("softmax_backward_values", "No change to the arguments"),
                       ("softmax_backward_no_matrix", "No $n \\times n$ matrix"),
                       ("cross_entropy_values", "no change to the arguments"),
                       ("cross_entropy_stable", "overflow-safe for any finite input"),
                       ("softmax_cross_entropy_grad_values", "no change to the arguments"),
                       ("softmax_cross_entropy_grad_stable", "overflow-safe for any finite input")]:
        p = points[cell]
        stated = f"`{cell}` ({p:g} point{'s' if p != 1 else ''})"
        assert stated in text, f"expected the lesson to state {stated!r} (rule: {rule})"
        assert rule in text, f"expected the lesson to state the rule {rule!r}"
    assert "must not change its arguments" in text and "ImportError" in text


def test_the_points_table_matches_the_metadata():
    """The table at the top lists every graded cell with the points nbgrader gives it."""
    nb = nbformat.read(str(source_path(ASSIGNMENT)), as_version=4)
    table = nb.cells[0].source
    points = {grade_id(c): c.metadata["nbgrader"]["points"] for c in nb.cells
              if c.metadata.get("nbgrader", {}).get("grade")}
    for name in PARTS:
        row = next(line for line in table.splitlines() if line.startswith("| ")
                   and f"`{name}(" in line)
        listed = dict(re.findall(r"`(\w+)` \((\d+)\)", row))
        assert {f"{name}_{p}": float(v) for p, v in listed.items()} == \
            {f"{name}_{p}": points[f"{name}_{p}"] for p in PARTS[name]}, row
        total = sum(points[f"{name}_{p}"] for p in PARTS[name])
        assert row.rstrip().endswith(f"| {total:g} |"), (row, total)
    autograded = sum(p for g, p in points.items() if not g.startswith("written_"))
    assert f"**autograded total** | | | **{autograded:g}**" in table, autograded
    assert f"**total** | | | **{sum(points.values()):g}**" in table


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


def autograded_max(result) -> float:
    """The points of the autograded cells (the written answers are graded by hand)."""
    return sum(c.max_score for c in result.cells if not c.grade_id.startswith("written_"))


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
        # its own softmax gives nan for logits 1000 apart
        "softmax_cross_entropy_grad_stable": r"overflow-safe for any finite input",
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
        "softmax_cross_entropy_grad_stable": r"expected\s+\[\[ 0\.5 .*got\s+\[\[ 0\.25",
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


SOFTMAX_IN_PLACE = {  # right values; the template's np.asarray does not copy, so -= shifts z
    "softmax_answer": HEADER + """
def softmax(z):
    z = np.asarray(z, dtype=float)
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
""",
}

SOFTMAX_IN_PLACE_FOR_BATCHES = {  # the same, for batches only: the visible test (a vector) passes
    "softmax_answer": HEADER + """
def softmax(z):
    z = np.asarray(z, dtype=float)
    if z.ndim > 1:
        z -= z.max(axis=-1, keepdims=True)
    else:
        z = z - z.max()
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
""",
}


def test_submission_whose_only_mistake_is_an_in_place_softmax_loses_only_softmax_values(
        tmp_path):
    # The rule "a graded function must not change its arguments" is graded in softmax_values
    # (1 point, as the lesson states). The later exercises call this softmax too, but their
    # templates copy their arguments and their tests build their own inputs: they keep
    # every point.
    result = grade(make_submission(ASSIGNMENT, SOFTMAX_IN_PLACE, tmp_path), ASSIGNMENT)
    assert_graded(result, {
        "softmax_values": r"softmax changed its argument in place: expected z to stay \[1\. 2\. "
                          r"3\.\], got \[-2\. -1\.  0\.\]\. Rule: a graded function must not "
                          r"change its arguments",
    })
    assert result.score == autograded_max(result) - 1


def test_in_place_change_that_only_the_hidden_check_sees_costs_only_softmax_values(tmp_path):
    # The judge's call copies the kernel's changes back (judge.server), and the check of
    # softmax's values compares them: the message names the rule and the shift.
    result = grade(make_submission(ASSIGNMENT, SOFTMAX_IN_PLACE_FOR_BATCHES, tmp_path),
                   ASSIGNMENT)
    assert_graded(result, {
        "softmax_values": r"softmax\(z\) changed its argument z in place .*expected z\[.*\] to "
                          r"stay .* got .*Rule: a graded function must not change its "
                          r"arguments.*z minus each row's maximum",
    })
    assert result.score == autograded_max(result) - 1


NAIVE_LOSSES = {  # right for ordinary logits; inf or nan for logits about ±1000
    "cross_entropy_answer": HEADER + """
def cross_entropy(Z, Y):
    Z, Y = np.array(Z, dtype=float), np.asarray(Y)
    if Y.ndim == 1:
        Y = np.eye(Z.shape[1])[Y]
    return float(-np.sum(Y * np.log(softmax(Z))) / Z.shape[0])    # log of the probabilities
""",
    "softmax_cross_entropy_grad_answer": HEADER + """
def softmax_cross_entropy_grad(Z, Y):
    Z, Y = np.array(Z, dtype=float), np.asarray(Y)
    if Y.ndim == 1:
        Y = np.eye(Z.shape[1])[Y]
    S = softmax(Z)
    return softmax_backward(Z, -Y / S) / Z.shape[0]              # the long way, through -Y/S
""",
}


def test_submission_with_naive_losses_loses_exactly_the_two_stable_cells(tmp_path):
    # "Overflow-safe for any finite input" is graded by cross_entropy_stable and
    # softmax_cross_entropy_grad_stable (1 point each, as the lesson states); everything
    # else of these answers is right.
    result = grade(make_submission(ASSIGNMENT, NAIVE_LOSSES, tmp_path), ASSIGNMENT)
    assert_graded(result, {
        "cross_entropy_stable": r"expected the finite loss 1000, got inf.*"
                                r"overflow-safe for any finite input",
        "softmax_cross_entropy_grad_stable": r"expected the finite gradient.*got.*nan.*"
                                             r"overflow-safe for any finite input",
    })
    assert result.score == autograded_max(result) - 2


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
    assert len(drawn) == 2
    # the Jacobian heatmaps on the fixed scale (the explorer is course_lib.widgets'
    # SoftmaxExplorer, tested in test_widgets.py)
    image = drawn[0].axes[2].images[0]
    assert image.get_clim() == (-0.25, 0.25)
    plt.close("all")
    with pytest.raises(ValueError, match="one per logit vector"):
        figs.plot_jacobians([[1.0, 2.0]], titles=["a", "b"])
