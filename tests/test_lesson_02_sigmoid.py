"""Lesson 02 (sigmoid): its grading checks, and graded submissions that make a known mistake.

The unit tests call the checks of course_lib.grading.sigmoid directly: the
reference and the notebook's own solutions pass every part for several grading
seeds, and each known mistake, written as a small wrong function, fails with a
message that names it. The submission tests grade whole notebooks with nbgrader
(a kernel each, a few seconds): the cells a mistake affects score 0, every other
autograded cell keeps full marks, and the failing cell's message names the mistake.
"""

from __future__ import annotations

import re

import nbformat
import numpy as np
import pytest
from lessons import LessonHarness, autograded_cells, grade, grade_id, make_submission, source_path

from course_lib import reference as R
from course_lib.grading import sigmoid as G

ASSIGNMENT = "02_sigmoid"


def check(name):
    return getattr(G, f"check_{name}")


class TestLesson(LessonHarness):
    """Every check passes the reference and the notebook's own solutions, part by part, for
    several grading seeds, refuses an unknown part, and says "not implemented yet" for an
    unanswered exercise (tests/lessons.py; the parts are the manifest's)."""

    LESSON = "sigmoid"


# ---------------------------------------------------------------------------
# each known mistake fails with a message that names it
# ---------------------------------------------------------------------------

def f64(z):
    return np.asarray(z, dtype=np.float64)


def naive_sigmoid(z):
    return 1 / (1 + np.exp(-f64(z)))


def where_both_branches_sigmoid(z):
    z = f64(z)
    return np.where(z >= 0, 1 / (1 + np.exp(-z)), np.exp(z) / (1 + np.exp(z)))


def mirrored_sigmoid_quiet(z):
    z = f64(z)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.exp(z) / (1 + np.exp(z))


def quotient_sigmoid_prime(z):
    z = f64(z)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.exp(-z) / (1 + np.exp(-z)) ** 2


def swapped_bce(y_hat, y):
    return -np.mean(y_hat * np.log(np.clip(y, 1e-300, 1))
                    + (1 - y_hat) * np.log(np.clip(1 - y, 1e-300, 1)))


def naive_bce(y_hat, y):
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.mean(y * np.log(y_hat) + (1 - y) * np.log(1 - y_hat))


def long_way_delta(z, y):
    y_hat = R.sigmoid(z)
    with np.errstate(divide="ignore", invalid="ignore"):
        dl_dyhat = (y_hat - y) / (y_hat * (1 - y_hat))
    return dl_dyhat * y_hat * (1 - y_hat) / np.shape(z)[0]


def n_of(z):
    return np.shape(z)[0]


MISTAKES = [
    # (check, part, wrong function, what the message must say)
    ("sigmoid", "values", lambda z: R.sigmoid(-f64(z)), "minus sign in e\\^\\{-z\\} is missing"),
    ("sigmoid", "values", lambda z: R.sigmoid_prime(z), "the derivative, instead of σ"),
    ("sigmoid", "values", lambda z: np.exp(-f64(z)), "you returned e\\^\\{-z\\}"),
    ("sigmoid", "edge", naive_sigmoid, "the sigmoid overflows"),
    ("sigmoid", "edge", where_both_branches_sigmoid, "np.where.*computes BOTH"),
    ("sigmoid", "edge", mirrored_sigmoid_quiet, "inf/inf = NaN"),
    ("sigmoid_prime", "values", R.sigmoid, "the sigmoid itself, instead of its derivative"),
    ("sigmoid_prime", "values", lambda z: f64(z) * (1 - f64(z)), "needs the activation a = σ"),
    ("sigmoid_prime", "values", lambda z: R.sigmoid_prime(R.sigmoid(z)),
     "applied σ' to the activation σ\\(z\\) instead of the pre-activation"),
    ("sigmoid_prime", "values", lambda z: 1 - R.sigmoid(z), "a factor σ\\(z\\) is missing"),
    ("sigmoid_prime", "values", lambda z: -R.sigmoid_prime(z), "wrong sign"),
    ("sigmoid_prime", "edge", quotient_sigmoid_prime, "inf/inf = NaN"),
    ("sigmoid_prime", "edge", R.sigmoid, "the sigmoid itself"),
    ("relu_prime", "edge", lambda z: (f64(z) >= 0).astype(float), "ReLU'\\(0\\) = 1"),
    ("relu_prime", "values", lambda z: f64(z) > 0, "astype\\(float\\)"),
    ("relu_prime", "values", lambda z: np.maximum(f64(z), 0.0), "ReLU\\(z\\) = max\\(0, z\\)"),
    ("relu_prime", "values", lambda z: (f64(z) < 0).astype(float), "wrong way round"),
    ("relu_prime", "values", lambda z: np.sign(f64(z)), "the sign of z"),
    ("tanh_prime", "values", lambda z: np.tanh(z), "tanh\\(z\\) instead of its derivative"),
    ("tanh_prime", "values", lambda z: 1 - np.tanh(z), "the square is missing"),
    ("tanh_prime", "values", lambda z: np.tanh(z) ** 2, "tanh\\(z\\)² \\(it is"),
    ("tanh_prime", "values", lambda z: 1 - f64(z) ** 2, "not 1 - z²"),
    ("tanh_prime", "values", lambda z: np.tanh(z) * (1 - np.tanh(z)), "sigmoid's formula"),
    ("bce", "values",
     lambda p, y: -np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)), "summed over the samples"),
    ("bce", "values",
     lambda p, y: np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)), "minus sign is missing"),
    ("bce", "values", swapped_bce, "swapped the roles"),
    ("bce", "values", lambda p, y: -np.mean(y * np.log(p)), "term is missing"),
    ("bce", "values",
     lambda p, y: -np.mean(y * np.log10(p) + (1 - y) * np.log10(1 - p)), "log base 10"),
    ("bce", "edge", naive_bce, "0·log 0"),
    ("bce_sigmoid_delta", "values", lambda z, y: R.sigmoid(z) - y,
     "the 1/N of the batch mean is missing"),
    ("bce_sigmoid_delta", "values", lambda z, y: (R.sigmoid(z) - y) / n_of(z) ** 2,
     "the 1/N is applied twice"),
    ("bce_sigmoid_delta", "values", lambda z, y: (y - R.sigmoid(z)) / n_of(z),
     "sign is flipped"),
    ("bce_sigmoid_delta", "values",
     lambda z, y: (R.sigmoid(z) - y) * R.sigmoid_prime(z) / n_of(z), "σ'\\(z\\) cancels"),
    ("bce_sigmoid_delta", "values", lambda z, y: R.sigmoid(z) / n_of(z), "y is not subtracted"),
    ("bce_sigmoid_delta", "values", lambda z, y: (z - y) / n_of(z), "you used z instead of ŷ"),
    ("bce_sigmoid_delta", "edge", long_way_delta, "the long way"),
    ("bce_sigmoid_delta", "edge", lambda z, y: R.sigmoid(z) - y, "1/N of the batch mean"),
]


@pytest.mark.parametrize(("name", "part", "wrong", "message"), MISTAKES,
                         ids=[f"{m[0]}-{m[1]}-{i}" for i, m in enumerate(MISTAKES)])
def test_known_mistake_is_named(name, part, wrong, message):
    with pytest.raises(AssertionError, match=message):
        check(name)(wrong, part=part)


@pytest.mark.parametrize(("name", "part", "wrong"), [
    ("sigmoid", "values", naive_sigmoid),                           # fine for moderate z
    ("relu_prime", "values", lambda z: (f64(z) >= 0).astype(float)),  # z is never exactly 0
    ("bce", "values", naive_bce),                                   # no exact 0/1 predictions
    ("bce_sigmoid_delta", "values", long_way_delta),                # no saturated z
])
def test_edge_mistakes_keep_the_values_part(name, part, wrong):
    """Partial credit: a mistake that only shows at the edge passes the values part."""
    check(name)(wrong, part=part)


def test_wrong_shape_is_reported():
    with pytest.raises(AssertionError, match=r"expected shape \(\d+, 1\), got \(\d+,\)"):
        G.check_bce_sigmoid_delta(lambda z, y: (R.sigmoid(z) - y).ravel() / len(z))


def test_in_place_modification_is_reported():
    def in_place(z):
        z = np.asarray(z)
        if z.ndim:
            z *= 0.0
        return R.sigmoid(z)

    with pytest.raises(AssertionError, match="modified its argument z in place"):
        G.check_sigmoid(in_place, part="values")


# ---------------------------------------------------------------------------
# graded submissions
# ---------------------------------------------------------------------------

AUTOGRADED = autograded_cells(ASSIGNMENT)


def assert_scores(result, failing: dict[str, str], also_zero=()):
    """`failing` cells score 0 and their message matches; `also_zero` score 0; the rest full."""
    assert result.status == "ok"
    scores = {c.grade_id: (c.score, c.max_score) for c in result.cells}
    for gid in AUTOGRADED:
        score, max_score = scores[gid]
        if gid in failing or gid in also_zero:
            assert score == 0, (gid, result.cell(gid).message)
        else:
            assert score == max_score > 0, (gid, result.cell(gid).message)
    for gid, pattern in failing.items():
        message = result.cell(gid).message
        assert message.startswith("AssertionError"), (gid, message)
        assert re.search(pattern, message), (gid, message)


def test_submission_unstable_sigmoid_sigma_for_derivative_relu_at_zero_missing_1_over_n(tmp_path):
    path = make_submission(ASSIGNMENT, {
        "sigmoid_answer": "def sigmoid(z):\n"
                          "    return 1 / (1 + np.exp(-np.asarray(z, dtype=float)))\n",
        "sigmoid_prime_answer": "def sigmoid_prime(z):\n    return sigmoid(z)\n",
        "relu_prime_answer": "def relu_prime(z):\n"
                             "    return (np.asarray(z, dtype=float) >= 0).astype(float)\n",
        "bce_sigmoid_delta_answer": "def bce_sigmoid_delta(z, y):\n    return sigmoid(z) - y\n",
    }, tmp_path)
    result = grade(path, ASSIGNMENT)
    assert_scores(result, failing={
        "sigmoid_edge": "overflow",
        "sigmoid_prime_values": "the sigmoid itself",
        "relu_prime_edge": r"rule broken, ReLU'\(0\) = 0",
        "bce_sigmoid_delta_values": r"the 1/N of the batch mean is missing",
    }, also_zero={"sigmoid_prime_edge", "bce_sigmoid_delta_edge"})


def test_submission_derivative_at_the_activation_and_1_over_n_twice(tmp_path):
    path = make_submission(ASSIGNMENT, {
        "sigmoid_prime_answer": "def sigmoid_prime(z):\n"
                                "    z = np.asarray(z, dtype=float)\n"
                                "    return z * (1 - z)\n",
        "bce_sigmoid_delta_answer": "def bce_sigmoid_delta(z, y):\n"
                                    "    return (sigmoid(z) - y) / len(z) ** 2\n",
        "bce_answer": "def bce(y_hat, y):\n"
                      "    return -np.sum(y * np.log(y_hat) + (1 - y) * np.log(1 - y_hat))\n",
    }, tmp_path)
    result = grade(path, ASSIGNMENT)
    assert_scores(result, failing={
        "sigmoid_prime_values": r"applied a\(1 - a\) to z instead of to the activation",
        "bce_sigmoid_delta_values": r"the 1/N is applied twice",
        "bce_values": "summed over the samples",
    }, also_zero={"sigmoid_prime_edge", "bce_sigmoid_delta_edge", "bce_edge"})


# log(ŷ) with no guard (0·log 0 is NaN), and δ the long way through ∂ℓ/∂ŷ (inf/inf when σ
# saturates): right on moderate inputs, wrong where the lesson's rules say they must not be
NAIVE_BCE = ("def bce(y_hat, y):\n"
             "    return -np.mean(y * np.log(y_hat) + (1 - y) * np.log(1 - y_hat))\n")
LONG_WAY_DELTA = ("def bce_sigmoid_delta(z, y):\n"
                  "    y_hat = sigmoid(z)\n"
                  "    dl_dyhat = -y / y_hat + (1 - y) / (1 - y_hat)\n"
                  "    return dl_dyhat * y_hat * (1 - y_hat) / len(z)\n")


def test_submission_sigma_prime_of_the_activation_and_edge_only_mistakes(tmp_path):
    path = make_submission(ASSIGNMENT, {
        "sigmoid_prime_answer": "def sigmoid_prime(z):\n"
                                "    a = sigmoid(z)\n"
                                "    return sigmoid(a) * (1 - sigmoid(a))\n",
        "bce_answer": NAIVE_BCE,
        "bce_sigmoid_delta_answer": LONG_WAY_DELTA,
    }, tmp_path)
    result = grade(path, ASSIGNMENT)
    assert_scores(result, failing={
        "sigmoid_prime_values": r"applied σ' to the activation",
        "bce_edge": r"0·log 0",
        "bce_sigmoid_delta_edge": "the long way",
    }, also_zero={"sigmoid_prime_edge"})


# ---------------------------------------------------------------------------
# every rule the lesson states is graded, and costs exactly its cell's points
# ---------------------------------------------------------------------------

def mirrored_delta(z, y):
    """Cancelled on paper, but with the mirrored σ: NaN at z = +800 only."""
    z = f64(z)
    with np.errstate(over="ignore", invalid="ignore"):
        return (np.exp(z) / (1 + np.exp(z)) - y) / np.shape(z)[0]


def clipped_in_place_bce(y_hat, y):
    y_hat = np.asarray(y_hat)
    np.clip(y_hat, 1e-12, 1 - 1e-12, out=y_hat)  # changes the caller's array
    return -np.mean(y * np.log(y_hat) + (1 - y) * np.log(1 - y_hat))


# (function, an answer that breaks only its rule): each fails the edge part, and only it
RULE_BREAKERS = [
    ("sigmoid", naive_sigmoid),
    ("sigmoid", mirrored_sigmoid_quiet),
    ("sigmoid_prime", quotient_sigmoid_prime),
    ("relu_prime", lambda z: (f64(z) >= 0).astype(float)),
    ("bce", naive_bce),
    ("bce_sigmoid_delta", long_way_delta),
    ("bce_sigmoid_delta", mirrored_delta),
]


@pytest.mark.parametrize(("name", "wrong"), RULE_BREAKERS,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(RULE_BREAKERS)])
def test_an_answer_breaking_a_rule_fails_the_edge_part_with_the_rule_named(name, wrong):
    with pytest.raises(AssertionError) as caught:
        check(name)(wrong, part="edge")
    assert str(caught.value).startswith(f"{name}("), str(caught.value)
    assert f"(rule: {G.RULES[name]})" in str(caught.value).splitlines()[0], str(caught.value)
    check(name)(wrong, part="values")  # the values part does not depend on the rule


def test_every_rule_is_stated_in_the_lesson_text():
    nb = nbformat.read(str(source_path(ASSIGNMENT)), as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for name, rule in G.RULES.items():
        assert f"**{rule}**" in text.replace("$z$", "z"), \
            f"expected the rule of {name}, {rule!r}, in bold in the lesson's text; it is not there"


def test_saturated_inputs_reach_the_bce_and_delta_rules():
    """σ(±800) is exactly 0 or 1: the delta's edge wants ±1/N there, with both labels, so
    an answer right wherever |z| < 709 (the mirrored σ) still loses it."""
    with pytest.raises(AssertionError, match=r"rule: exact for saturated z.*NaN"):
        G.check_bce_sigmoid_delta(mirrored_delta, part="edge")
    with pytest.raises(AssertionError, match=r"rule: a prediction equal to its label costs 0"):
        G.check_bce(naive_bce, part="edge")


def test_changing_an_argument_in_place_is_reported():
    with pytest.raises(AssertionError, match="modified its argument y_hat in place"):
        G.check_bce(clipped_in_place_bce, part="edge")
    G.check_bce(clipped_in_place_bce, part="values")  # nothing to clip in (0.02, 0.98)


def test_points_table_lists_every_graded_cell_with_its_points():
    nb = nbformat.read(str(source_path(ASSIGNMENT)), as_version=4)
    points = {grade_id(c): c.metadata["nbgrader"]["points"] for c in nb.cells
              if c.metadata.get("nbgrader", {}).get("grade")}
    table = next(c.source for c in nb.cells if "| exercise | graded cells (points) |" in c.source)
    listed = {g: float(p) for g, p in re.findall(r"`(\w+)` \((\d+(?:\.\d+)?)\)", table)}
    assert listed == points, f"expected the metadata's points {points}, got {listed}"
    total = re.search(r"\*\*total\*\*.*\*\*(\d+)\*\*", table)
    assert total and int(total.group(1)) == sum(points.values()), \
        f"expected a total of {sum(points.values())}, got {total and total.group(1)}"
    first_exercise = next(i for i, c in enumerate(nb.cells)
                          if (grade_id(c) or "").endswith("_answer"))
    rules_at = next(i for i, c in enumerate(nb.cells) if "What you may use" in c.source)
    assert rules_at < first_exercise, "the rules must come before the first exercise"


NAIVE_EDGES = {
    "sigmoid_answer": "def sigmoid(z):\n"
                      "    return 1 / (1 + np.exp(-np.asarray(z, dtype=float)))\n",
    "sigmoid_prime_answer": "def sigmoid_prime(z):\n"
                            "    e = np.exp(-np.asarray(z, dtype=float))\n"
                            "    return e / (1 + e) ** 2\n",
    "relu_prime_answer": "def relu_prime(z):\n"
                         "    return (np.asarray(z, dtype=float) >= 0).astype(float)\n",
    "bce_answer": NAIVE_BCE,
    "bce_sigmoid_delta_answer": LONG_WAY_DELTA,
}


def test_submission_naive_answers_lose_exactly_the_points_of_their_rules(tmp_path):
    """Naive formulas, right for moderate inputs: each loses its edge cell, nothing else."""
    result = grade(make_submission(ASSIGNMENT, NAIVE_EDGES, tmp_path), ASSIGNMENT)
    edges = {f"{name}_edge": G.RULES[name] for name in G.RULES}
    assert_scores(result, failing={gid: re.escape(rule) for gid, rule in edges.items()})
    lost = sum(c.max_score - c.score for c in result.cells if c.autograded)
    expected_loss = sum(result.cell(gid).max_score for gid in edges)
    assert lost == expected_loss == 6, f"expected to lose 6 points (the edge cells), lost {lost}"


def test_submission_in_place_clip_loses_only_the_bce_edge_cell(tmp_path):
    result = grade(make_submission(ASSIGNMENT, {
        "bce_answer": "def bce(y_hat, y):\n"
                      "    y_hat = np.asarray(y_hat)\n"
                      "    np.clip(y_hat, 1e-12, 1 - 1e-12, out=y_hat)\n"
                      "    return -np.mean(y * np.log(y_hat) + (1 - y) * np.log(1 - y_hat))\n",
    }, tmp_path), ASSIGNMENT)
    assert_scores(result, failing={"bce_edge": "no argument changed in place|in place"})
