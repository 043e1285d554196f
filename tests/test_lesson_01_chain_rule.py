"""Lesson 01 (the chain rule): its grading checks, its figures, and graded submissions.

Fast tests: every check passes the reference implementation and names each known
mistake; every rule the lesson states is graded by behaviour, by the parts its text
says; the visible test cells build their own inputs and explain every failure.
Slow tests: notebooks that make the lesson's common mistakes, or break its rules,
lose exactly the affected cells' points, and the failing cells' messages name the
mistake or the rule.
"""

from __future__ import annotations

import ast
import builtins

import nbformat
import numpy as np
import pytest
from lessons import LessonHarness, grade, lesson_parts, make_submission, source_path

import course_lib.reference as R
from course_lib import nets
from course_lib.grading import chain_rule as G

ASSIGNMENT = "01_chain_rule"
CHECKS = lesson_parts(ASSIGNMENT)  # {function: its parts}, from the manifest


class TestLesson(LessonHarness):
    """Every check passes the reference and the notebook's own solutions, part by part, for
    several grading seeds, refuses an unknown part, and says "not implemented yet" for an
    unanswered exercise (tests/lessons.py; the parts are the manifest's)."""

    LESSON = "chain_rule"


# ---------------------------------------------------------------------------
# known mistakes, one small wrong function each
# ---------------------------------------------------------------------------

def f64(*vs):
    return [np.asarray(v, dtype=float) for v in vs]


def add_local_only(dout):
    (d,) = f64(dout)
    return np.ones_like(d), np.ones_like(d)


def add_split(dout):
    (d,) = f64(dout)
    return d / 2, d / 2


def add_same_array(dout):
    (d,) = f64(dout)
    return d, d


def add_scalar(dout):
    return 1.0, 1.0


def mul_no_swap(x, y, dout):
    x, y, d = f64(x, y, dout)
    return x * d, y * d


def mul_no_dout(x, y, dout):
    x, y, _ = f64(x, y, dout)
    return y, x


def max_both(x, y, dout):
    _, _, d = f64(x, y, dout)
    return d.copy(), d.copy()


def max_smaller(x, y, dout):
    x, y, d = f64(x, y, dout)
    return np.where(x < y, d, 0.0), np.where(x < y, 0.0, d)


def max_mask_only(x, y, dout):
    x, y, _ = f64(x, y, dout)
    return (x >= y).astype(float), (x < y).astype(float)


def max_ties_to_y(x, y, dout):
    x, y, d = f64(x, y, dout)
    return np.where(x > y, d, 0.0), np.where(x > y, 0.0, d)


def max_ties_split(x, y, dout):
    x, y, d = f64(x, y, dout)
    half = np.where(x == y, d / 2, 0.0)
    return np.where(x > y, d, half), np.where(x < y, d, half)


def max_ties_both(x, y, dout):
    x, y, d = f64(x, y, dout)
    return np.where(x >= y, d, 0.0), np.where(x <= y, d, 0.0)


def fan_mul_only(x, y):
    x, y = f64(x, y)
    return x * y + np.maximum(x, y), y.copy(), x.copy()


def fan_max_only(x, y):
    x, y = f64(x, y)
    return x * y + np.maximum(x, y), (x >= y).astype(float), (x < y).astype(float)


def fan_no_max_in_f(x, y):
    f, dx, dy = R.fanout_forward_backward(x, y)
    x, y = f64(x, y)
    return x * y, dx, dy


def fan_ties_to_y(x, y):
    x, y = f64(x, y)
    return x * y + np.maximum(x, y), y + (x > y), x + (x <= y)


def _neuron_parts(w, x):
    w, x = f64(w, x)
    q = w[0] * x[0] + w[1] * x[1] + w[2]
    f = 1.0 / (1.0 + np.exp(-q))
    return w, x, q, f


def neuron_no_sigma_prime(w, x):
    w, x, q, f = _neuron_parts(w, x)
    return float(f), np.array([x[0], x[1], 1.0]), w[:2].copy()


def neuron_f_not_f1mf(w, x):
    w, x, q, f = _neuron_parts(w, x)
    return float(f), f * np.array([x[0], x[1], 1.0]), f * w[:2]


def neuron_no_swap(w, x):
    w, x, q, f = _neuron_parts(w, x)
    dq = f * (1 - f)
    return float(f), dq * np.array([w[0], w[1], 1.0]), dq * x


def neuron_bias_zero(w, x):
    w, x, q, f = _neuron_parts(w, x)
    dq = f * (1 - f)
    return float(f), dq * np.array([x[0], x[1], 0.0]), dq * w[:2]


def neuron_no_sigmoid(w, x):
    _, dw, dx = R.neuron_forward_backward(w, x)
    w, x, q, f = _neuron_parts(w, x)
    return float(q), dw, dx


def neuron_vector_f(w, x):
    f, dw, dx = R.neuron_forward_backward(w, x)
    return np.array([f]), dw, dx


def matmul_transposed(W, x):
    f, dW, dx = R.matmul_l2_forward_backward(W, x)
    return f, dW.T, dx


def matmul_no_two(W, x):
    W, x = f64(W, x)
    q = W @ x
    return float(q @ q), np.outer(q, x), W.T @ q


def matmul_W_not_WT(W, x):
    f, dW, _ = R.matmul_l2_forward_backward(W, x)
    W, x = f64(W, x)
    if W.shape[0] != W.shape[1]:
        return R.matmul_l2_forward_backward(W, x)
    return f, dW, W @ (2 * W @ x)


def matmul_norm(W, x):
    _, dW, dx = R.matmul_l2_forward_backward(W, x)
    W, x = f64(W, x)
    return float(np.linalg.norm(W @ x)), dW, dx


def _ssr_parts(x, y, params):
    fwd = nets.ssr_forward(x, params)
    r = np.asarray(y, dtype=float) - fwd["y_green"]
    return fwd, r


def ssr_minus_two_ssr(x, y, params):
    fwd, r = _ssr_parts(x, y, params)
    d = -2.0 * float(r @ r)
    return {"b3": d, "w3": float(-2 * r @ fwd["y_blue"]), "w4": float(-2 * r @ fwd["y_orange"])}


def ssr_seed_forward(x, y, params):
    return R.ssr_output_grads(x, y, dict(params, w2=params["w1"], b2=params["b1"]))


def ssr_sign(x, y, params):
    return {k: -v for k, v in R.ssr_output_grads(x, y, params).items()}


def ssr_mean(x, y, params):
    return {k: v / len(x) for k, v in R.ssr_output_grads(x, y, params).items()}


def ssr_swapped(x, y, params):
    g = R.ssr_output_grads(x, y, params)
    return {"b3": g["b3"], "w3": g["w4"], "w4": g["w3"]}


def ssr_per_sample(x, y, params):
    fwd, r = _ssr_parts(x, y, params)
    return {"b3": -2 * r, "w3": -2 * r * fwd["y_blue"], "w4": -2 * r * fwd["y_orange"]}


def ssr_updates_params(x, y, params):
    g = R.ssr_output_grads(x, y, params)
    params["b3"] -= 0.01 * g["b3"]
    return g


def ssr_tuple(x, y, params):
    g = R.ssr_output_grads(x, y, params)
    return g["b3"], g["w3"], g["w4"]


MISTAKES = [
    # (function, wrong implementation, part, words the message must contain)
    ("add_gate_backward", add_local_only, "values", "without multiplying it by the upstream"),
    ("add_gate_backward", add_split, "values", "split dout in half"),
    ("add_gate_backward", add_same_array, "copies", "same array in memory"),
    ("add_gate_backward", add_scalar, "shape", "expected an array of shape"),
    ("mul_gate_backward", mul_no_swap, "values", "did not swap"),
    ("mul_gate_backward", mul_no_dout, "values", "without multiplying it by the upstream"),
    ("max_gate_backward", max_both, "values", "sent the gradient to BOTH inputs"),
    ("max_gate_backward", max_smaller, "values", "SMALLER input"),
    ("max_gate_backward", max_mask_only, "values", "the 0/1 mask"),
    ("max_gate_backward", max_ties_to_y, "ties", r"on a tie \(x == y\) dx got 0"),
    ("max_gate_backward", max_ties_split, "ties", "split the gradient in half"),
    ("max_gate_backward", max_ties_both, "ties", "dy got dout too"),
    ("fanout_forward_backward", fan_mul_only, "values",
     "only the path through the mul gate.*instead of adding"),
    ("fanout_forward_backward", fan_max_only, "values",
     "only the path through the max gate.*instead of adding"),
    ("fanout_forward_backward", fan_no_max_in_f, "values", "missing the max term"),
    ("fanout_forward_backward", fan_ties_to_y, "ties", "share went to y"),
    ("neuron_forward_backward", neuron_no_sigma_prime, "values", "f\\(1 - f\\) is missing"),
    ("neuron_forward_backward", neuron_f_not_f1mf, "values", "instead of σ'\\(q\\)"),
    ("neuron_forward_backward", neuron_no_swap, "values", "mul gates did not swap"),
    ("neuron_forward_backward", neuron_bias_zero, "values", "the bias w2"),
    ("neuron_forward_backward", neuron_no_sigmoid, "values", "the sigmoid is missing"),
    ("neuron_forward_backward", neuron_vector_f, "shape", "expected one number"),
    ("matmul_l2_forward_backward", matmul_transposed, "shape", "That is the transpose"),
    ("matmul_l2_forward_backward", matmul_transposed, "values", "dW is transposed"),
    ("matmul_l2_forward_backward", matmul_no_two, "values", "factor 2 is missing"),
    ("matmul_l2_forward_backward", matmul_W_not_WT, "values", "instead of its transpose"),
    ("matmul_l2_forward_backward", matmul_norm, "values", "the length"),
    ("ssr_output_grads", ssr_minus_two_ssr, "values",
     "-2·SSR, the mistake of the worked example in section 7"),
    ("ssr_output_grads", ssr_seed_forward, "values", "y_orange computed with w1, b1"),
    ("ssr_output_grads", ssr_sign, "values", "sign is flipped"),
    ("ssr_output_grads", ssr_mean, "values", "you divided by n"),
    ("ssr_output_grads", ssr_swapped, "values", "where y_blue belongs"),
    ("ssr_output_grads", ssr_per_sample, "keys", "one entry per data point"),
    ("ssr_output_grads", ssr_updates_params, "values", "changed the dict params"),
    ("ssr_output_grads", ssr_tuple, "keys", "must return a dict"),
]


@pytest.mark.parametrize("fn, wrong, part, words", MISTAKES,
                         ids=[f"{m[0]}-{m[1].__name__}" for m in MISTAKES])
def test_known_mistake_is_named(fn, wrong, part, words):
    check = getattr(G, f"check_{fn}")
    with pytest.raises(AssertionError, match=words):
        check(wrong, part=part)
    with pytest.raises(AssertionError):  # and the whole check fails (maybe in an earlier part)
        check(wrong)


def test_ties_mistakes_do_not_fail_the_tie_free_part():
    # the values part has no ties, so a wrong tie rule must not cost its points
    for wrong in (max_ties_to_y, max_ties_split, max_ties_both):
        G.check_max_gate_backward(wrong, part="values")
    G.check_fanout_forward_backward(fan_ties_to_y, part="values")


def test_check_reports_the_students_exception():
    def broken(w, x):
        return w @ x  # (3,) @ (2,): a shape error

    with pytest.raises(AssertionError, match="raised ValueError"):
        G.check_neuron_forward_backward(broken)


# ---------------------------------------------------------------------------
# the rules the lesson states, graded by behaviour, by the parts it says
# ---------------------------------------------------------------------------

def changes_an_argument(fn):
    """The reference answer of ``fn``, which then adds 1 to its first array argument."""
    right = getattr(R, fn)

    def wrong(*args):
        out = right(*args)
        for a in args:
            if isinstance(a, np.ndarray):
                a += 1.0
                break
        return out

    return wrong


@pytest.mark.parametrize("fn, part", [(f, p) for f, parts in CHECKS.items() for p in parts])
def test_changing_an_argument_in_place_fails_every_part_of_its_exercise(fn, part):
    # the text: "a function that changes an argument in place fails every graded cell of
    # its exercise, with a message that names the argument"
    check = getattr(G, f"check_{fn}")
    with pytest.raises(AssertionError, match=r"modified its argument \w+ in place"):
        check(changes_an_argument(fn), part=part)


def ssr_updates_b3(x, y, params):
    g = R.ssr_output_grads(x, y, params)
    params["b3"] = params["b3"] - 0.01 * g["b3"]
    return g


@pytest.mark.parametrize("part", CHECKS["ssr_output_grads"])
def test_changing_params_fails_both_cells_of_exercise_7_naming_the_key(part):
    with pytest.raises(AssertionError, match=r"changed the dict params it was given: expected "
                                             r"it unchanged, got params\['b3'\] = "):
        G.check_ssr_output_grads(ssr_updates_b3, part=part)


def add_dout_itself(dout):
    (d,) = f64(dout)
    return d, d.copy()


@pytest.mark.parametrize("wrong, words", [
    (add_same_array, "expected two independent arrays, got the same array in memory"),
    (add_dout_itself, "expected dx to be a new array, got the array dout itself"),
])
def test_add_gate_that_shares_memory_loses_only_the_copies_point(wrong, words):
    G.check_add_gate_backward(wrong, part="shape")
    G.check_add_gate_backward(wrong, part="values")
    with pytest.raises(AssertionError, match=words):
        G.check_add_gate_backward(wrong, part="copies")


def matmul_square_only(W, x):
    W, x = f64(W, x)
    q = W @ x
    n = len(x)  # the transpose built with n rows and n columns: right for a square W only
    WT = np.array([[W[j, i] for j in range(n)] for i in range(n)])
    return float(q @ q), np.outer(2 * q, x), WT @ (2 * q)


def test_matmul_that_works_for_square_W_only_fails_both_cells():
    # the text: "must work for any (m, n) ... both graded cells use non-square W too"
    for part in CHECKS["matmul_l2_forward_backward"]:
        with pytest.raises(AssertionError,
                           match=r"raised \w+Error(.|\n)*inputs: W of shape \(\d, \d\)"):
            G.check_matmul_l2_forward_backward(matmul_square_only, part=part)
    right_for_square = R.matmul_l2_forward_backward(np.eye(3) + 1.0, np.ones(3))
    np.testing.assert_allclose(matmul_square_only(np.eye(3) + 1.0, np.ones(3))[2],
                               right_for_square[2])


def test_each_hidden_test_grades_its_own_function_alone():
    # a check is handed one function, the one its cell's exercise asks for, and calls it
    # on its own inputs: a mistake elsewhere cannot change its verdict
    import re

    for cell in filter(_is_test_cell, _cells()):
        gid = cell.metadata["nbgrader"]["grade_id"]
        hidden = cell.source.split("### BEGIN HIDDEN TESTS")[1]
        calls = re.findall(r"grading\.check_(\w+)\((.*?)\)", hidden)
        assert calls, gid
        for fn, args in calls:
            assert gid.startswith(fn + "_") and args.split(",")[0] == fn, (gid, fn, args)


# ---------------------------------------------------------------------------
# the visible test cells: their own inputs, and a message for every failure
# ---------------------------------------------------------------------------

def _cells():
    return nbformat.read(str(source_path(ASSIGNMENT)), as_version=4).cells


def _is_test_cell(cell) -> bool:
    meta = cell.metadata.get("nbgrader", {})
    return cell.cell_type == "code" and meta.get("grade") and not meta.get("solution")


def _visible(source: str) -> str:
    return source.split("### BEGIN HIDDEN TESTS")[0]


def _bound_and_read(tree) -> tuple[set[str], set[str]]:
    """Names a piece of code binds (anywhere in it) and names it reads."""
    bound, read = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
    return bound, read


# what a visible test may take from the cells above it: modules, the course's helpers
# and the student's graded functions, never a value (an array a wrong function could
# have changed in place)
SHARED_NAMES = {"np", "nets", "assert_gradient", "numerical_gradient", *CHECKS}


def test_visible_tests_build_their_own_inputs():
    for cell in filter(_is_test_cell, _cells()):
        bound, read = _bound_and_read(ast.parse(_visible(cell.source)))
        outside = read - bound - set(dir(builtins))
        assert outside <= SHARED_NAMES, (cell.metadata["nbgrader"]["grade_id"], outside)


def test_no_cell_reads_a_value_that_a_test_cell_made():
    made_by_test = set()
    for cell in _cells():
        if cell.cell_type != "code":
            continue
        bound, read = _bound_and_read(ast.parse(_visible(cell.source)))
        if _is_test_cell(cell):
            made_by_test |= bound - SHARED_NAMES
        else:
            assert not (read - bound) & made_by_test, (cell.source[:80], read & made_by_test)
            made_by_test -= bound


def _text_of(node) -> tuple[str, bool]:
    """The literal text of a message and whether it interpolates a value."""
    if isinstance(node, ast.Constant):
        return str(node.value), False
    if isinstance(node, ast.JoinedStr):
        parts = [_text_of(v) if not isinstance(v, ast.FormattedValue) else ("{}", True)
                 for v in node.values]
        return "".join(t for t, _ in parts), any(i for _, i in parts)
    if isinstance(node, ast.BinOp):
        (a, ia), (b, ib) = _text_of(node.left), _text_of(node.right)
        return a + b, ia or ib
    return "", False


def test_every_visible_assert_says_what_was_expected_and_what_came_back():
    for cell in filter(_is_test_cell, _cells()):
        gid = cell.metadata["nbgrader"]["grade_id"]
        for node in ast.walk(ast.parse(_visible(cell.source))):
            if isinstance(node, ast.Assert):
                assert node.msg is not None, (gid, ast.unparse(node))
                text, interpolates = _text_of(node.msg)
                if isinstance(node.test, ast.UnaryOp) and isinstance(node.test.op, ast.Not):
                    assert len(text) > 30, (gid, ast.unparse(node))  # names the mistake
                else:
                    assert "expected" in text and interpolates, (gid, ast.unparse(node))
            elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "assert_gradient":
                assert any(k.arg == "name" for k in node.keywords), (gid, ast.unparse(node))


def test_markdown_names_no_seed_document():
    import re

    for cell in _cells():
        if cell.cell_type == "markdown":
            assert not re.search(r"seed \d{3}|the seed\b", cell.source), cell.source[:200]
    assert _cells()[-1].source.startswith("## References")


# ---------------------------------------------------------------------------
# figures: numbers from course_lib, the seed's values reproduced
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def figs():
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    from course_lib.figures import chain_rule

    return chain_rule


def test_neuron_graph_reproduces_cs231n_numbers(figs):
    g = figs.neuron_graph((2.0, -3.0, -3.0), (-1.0, -2.0))
    assert g.nodes["h"].value == pytest.approx(1.3678794, rel=1e-6)  # the "1.37"
    assert g.nodes["h"].grad == pytest.approx(-0.5344466, rel=1e-6)  # the "-0.53"
    f, dw, dx = R.neuron_forward_backward((2.0, -3.0, -3.0), (-1.0, -2.0))
    grads = g.grads()
    assert g.value == pytest.approx(f, rel=1e-12)
    np.testing.assert_allclose([grads[k] for k in ("w0", "w1", "w2")], dw, rtol=1e-12)
    np.testing.assert_allclose([grads[k] for k in ("x0", "x1")], dx, rtol=1e-12)
    grouped = figs.neuron_graph((2.0, -3.0, -3.0), (-1.0, -2.0), grouped=True).grads()
    assert grouped == pytest.approx(grads, rel=1e-12)


def test_gate_graphs_match_the_reference_gates(figs):
    g = figs.gates_graph(3.0, -4.0, 2.0, -1.0).grads()
    assert g == pytest.approx({"x": -8.0, "y": 6.0, "z": 2.0, "w": 0.0})
    for x, y in ((3.0, 2.0), (1.5, 1.5), (-1.0, 2.0)):
        f, dx, dy = R.fanout_forward_backward(x, y)
        g = figs.fanout_graph(x, y)
        assert (g.value, g.grads()["x"], g.grads()["y"]) == pytest.approx((f, dx, dy))
    e = figs.example_graph().grads()
    assert e == pytest.approx({"x": -4.0, "y": -4.0, "z": 3.0})


def test_figures_draw_without_error(figs):
    import matplotlib.pyplot as plt

    for make in (figs.example_graph, figs.gates_graph, figs.fanout_graph, figs.neuron_graph):
        plt.close(figs.draw_graph(make(), show=False))
    plt.close(figs.draw_neuron(show=False))
    plt.close(figs.plot_seed003(show=False))


# ---------------------------------------------------------------------------
# graded submissions that make the lesson's common mistakes
# ---------------------------------------------------------------------------

MAX_BOTH = '''
def max_gate_backward(x, y, dout):
    dout = np.asarray(dout, dtype=float)
    return dout.copy(), dout.copy()      # sends the gradient to both inputs
'''

FANOUT_MUL_ONLY = '''
def fanout_forward_backward(x, y):
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    f = x * y + np.maximum(x, y)
    dx = y * 1.0                         # mul path ...
    dy = x * 1.0
    dx = np.where(x >= y, 1.0, 0.0)      # ... overwritten by the max path
    dy = np.where(x >= y, 0.0, 1.0)
    dx = y * 1.0                         # ... and overwritten again: only the mul path is left
    dy = x * 1.0
    return f, dx, dy
'''

MUL_NO_SWAP = '''
def mul_gate_backward(x, y, dout):
    x, y, dout = (np.asarray(v, dtype=float) for v in (x, y, dout))
    return x * dout, y * dout
'''

MATMUL_TRANSPOSED = '''
def matmul_l2_forward_backward(W, x):
    q = W @ x
    return float(q @ q), np.outer(x, 2 * q), W.T @ (2 * q)
'''

SSR_MINUS_TWO_SSR = '''
def ssr_output_grads(x, y, params):
    fwd = nets.ssr_forward(x, params)
    r = y - fwd["y_green"]
    return {"b3": float(-2 * np.sum(r ** 2)), "w3": float(np.sum(-2 * r * fwd["y_blue"])),
            "w4": float(np.sum(-2 * r * fwd["y_orange"]))}
'''

MAX_TIES_TO_Y = '''
def max_gate_backward(x, y, dout):
    x, y, dout = (np.asarray(v, dtype=float) for v in (x, y, dout))
    return np.where(x > y, dout, 0.0), np.where(x > y, 0.0, dout)
'''

FANOUT_MAX_ONLY = '''
def fanout_forward_backward(x, y):
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    f = x * y + np.maximum(x, y)
    dx, dy = y, x                        # mul path ...
    dx = (x >= y).astype(float)          # ... overwritten by the max path
    dy = (x < y).astype(float)
    return f, dx, dy
'''

MATMUL_NO_TWO = '''
def matmul_l2_forward_backward(W, x):
    q = W @ x
    return float(q @ q), np.outer(q, x), W.T @ q
'''

ADD_SAME_ARRAY = '''
def add_gate_backward(dout):
    dout = np.asarray(dout, dtype=float)
    return dout, dout
'''

NEURON_NO_SIGMA_PRIME = '''
def neuron_forward_backward(w, x):
    q = w[0] * x[0] + w[1] * x[1] + w[2]
    f = 1.0 / (1.0 + np.exp(-q))
    return float(f), np.array([x[0], x[1], 1.0]), np.array(w[:2], dtype=float)
'''


def _assert_scores(result, zero: set[str], contains: dict[str, str]):
    for cell in result.cells:
        if cell.grade_id.startswith("written_"):
            continue  # graded by hand
        if cell.grade_id in zero:
            assert cell.score == 0.0, f"{cell.grade_id} should lose its points: {cell}"
        else:
            assert cell.score == cell.max_score, f"{cell.grade_id} should keep its points: {cell}"
    for gid, words in contains.items():
        assert words in result.cell(gid).message, (gid, result.cell(gid).message)


@pytest.mark.slow
def test_submission_with_max_both_fanout_overwritten_and_others(tmp_path):
    path = make_submission(ASSIGNMENT, {
        "max_gate_backward_answer": MAX_BOTH,
        "fanout_forward_backward_answer": FANOUT_MUL_ONLY,
        "mul_gate_backward_answer": MUL_NO_SWAP,
        "matmul_l2_forward_backward_answer": MATMUL_TRANSPOSED,
        "ssr_output_grads_answer": SSR_MINUS_TWO_SSR,
    }, tmp_path)
    result = grade(path, ASSIGNMENT)
    _assert_scores(result, zero={
        "max_gate_backward_values", "max_gate_backward_ties",
        "fanout_forward_backward_values", "fanout_forward_backward_ties",
        "mul_gate_backward_values",
        "matmul_l2_forward_backward_shape", "matmul_l2_forward_backward_values",
        "ssr_output_grads_values",
    }, contains={
        "max_gate_backward_values": "BOTH inputs",
        "fanout_forward_backward_values": "the max gate's share is lost",
        "mul_gate_backward_values": "must swap",
        "matmul_l2_forward_backward_shape": "the transpose of W's",
        "matmul_l2_forward_backward_values": "transposed",
        "ssr_output_grads_values": "-2·SSR, the worked example's mistake",
    })
    assert "SUM of both paths" in result.cell("fanout_forward_backward_values").message


@pytest.mark.slow
def test_submission_with_tie_to_y_max_path_only_and_others(tmp_path):
    path = make_submission(ASSIGNMENT, {
        "max_gate_backward_answer": MAX_TIES_TO_Y,
        "fanout_forward_backward_answer": FANOUT_MAX_ONLY,
        "matmul_l2_forward_backward_answer": MATMUL_NO_TWO,
        "add_gate_backward_answer": ADD_SAME_ARRAY,
        "neuron_forward_backward_answer": NEURON_NO_SIGMA_PRIME,
    }, tmp_path)
    result = grade(path, ASSIGNMENT)
    _assert_scores(result, zero={
        "max_gate_backward_ties",
        "fanout_forward_backward_values", "fanout_forward_backward_ties",
        "matmul_l2_forward_backward_values",
        "add_gate_backward_copies",
        "neuron_forward_backward_values",
    }, contains={
        "max_gate_backward_ties": "goes to the first argument x",
        "fanout_forward_backward_values": "the mul gate's share is lost",
        "matmul_l2_forward_backward_values": "factor 2",
        "add_gate_backward_copies": "independent copies",
        "neuron_forward_backward_values": "f(1 - f) is missing",
    })


# the rules of the lesson's "Before the exercises" cell, each broken by one answer
MUL_CHANGES_DOUT = '''
def mul_gate_backward(x, y, dout):
    x, y, dout = (np.asarray(v, dtype=float) for v in (x, y, dout))
    dx, dy = y * dout, x * dout          # the right values ...
    dout *= 0.0                          # ... but the caller's dout is cleared
    return dx, dy
'''

ADD_DOUT_ITSELF = '''
def add_gate_backward(dout):
    dout = np.asarray(dout, dtype=float)
    return dout, dout.copy()             # dx is the caller's dout itself
'''

NEURON_WITH_TORCH = '''
def neuron_forward_backward(w, x):
    import torch
    wt = torch.tensor(np.asarray(w, dtype=float), requires_grad=True)
    xt = torch.tensor(np.asarray(x, dtype=float), requires_grad=True)
    f = torch.sigmoid(wt[0] * xt[0] + wt[1] * xt[1] + wt[2])
    f.backward()
    return float(f), wt.grad.numpy(), xt.grad.numpy()
'''

SSR_UPDATES_PARAMS = '''
def ssr_output_grads(x, y, params):
    fwd = nets.ssr_forward(x, params)
    d = -2.0 * (y - fwd["y_green"])
    g = {"b3": float(d.sum()), "w3": float(d @ fwd["y_blue"]), "w4": float(d @ fwd["y_orange"])}
    params["b3"] -= 0.01 * g["b3"]       # the update belongs to the caller
    return g
'''

TORCH_SCRATCH = '''
import torch                             # a scratch cell comparing with autograd
t = torch.tensor([2.0], requires_grad=True)
print(t * 3)
'''


@pytest.mark.slow
def test_submission_breaking_each_stated_rule_loses_exactly_the_stated_cells(tmp_path):
    path = make_submission(ASSIGNMENT, {
        "mul_gate_backward_answer": MUL_CHANGES_DOUT,
        "add_gate_backward_answer": ADD_DOUT_ITSELF,
        "neuron_forward_backward_answer": NEURON_WITH_TORCH,
        "ssr_output_grads_answer": SSR_UPDATES_PARAMS,
    }, tmp_path)
    nb = nbformat.read(str(path), as_version=4)
    at = next(i for i, c in enumerate(nb.cells)
              if c.metadata.get("nbgrader", {}).get("grade_id") == "add_gate_backward_answer")
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(TORCH_SCRATCH.strip()))  # costs nothing
    nbformat.write(nb, str(path))
    result = grade(path, ASSIGNMENT)
    _assert_scores(result, zero={
        "mul_gate_backward_shape", "mul_gate_backward_values",      # every cell of exercise 2
        "add_gate_backward_copies",                                 # the copies point only
        "neuron_forward_backward_shape", "neuron_forward_backward_values",
        "ssr_output_grads_keys", "ssr_output_grads_values",
    }, contains={
        "mul_gate_backward_shape": "modified its argument dout in place",
        "mul_gate_backward_values": "changed its argument dout in place",
        "add_gate_backward_copies": "changed the caller's dout",
        "neuron_forward_backward_shape": "torch is not available while this lesson is graded",
        "ssr_output_grads_keys": "changed the dict params: expected it unchanged",
        "ssr_output_grads_values": "changed the dict params",
    })


class _ElsewhereFunction:
    """The student's function as a sealed grading run sees it: each call crosses a boundary.

    Arguments go over as plain data (judge.wire), and what the function changed in them
    (arrays, lists, dicts) comes back to the caller's objects (judge.server._copy_back).
    """

    judge_remote = True

    def __init__(self, fn):
        self.fn, self.__name__ = fn, fn.__name__

    def __call__(self, *args):
        from course_lib.judge import wire
        from course_lib.judge.server import _copy_back

        theirs = wire.decode(wire.encode(args))
        out = self.fn(*theirs)
        _copy_back(args, wire.decode(wire.encode(theirs)))
        return wire.decode(wire.encode(out, theirs), args)

    def run_experiment(self, name, inputs):
        from course_lib.judge import wire
        from course_lib.judge.experiments import run_experiment

        return wire.decode(wire.encode(run_experiment(self.fn, name,
                                                      wire.decode(wire.encode(inputs)))))


def test_changed_params_reads_the_same_when_the_function_runs_elsewhere():
    # sealed, the dict crosses to the kernel and back: the change is seen as it is here
    wrong = _ElsewhereFunction(ssr_updates_b3)
    for part in CHECKS["ssr_output_grads"]:
        with pytest.raises(AssertionError, match=r"changed the dict params it was given: "
                                                 r"expected it unchanged, got params\['b3'\]"):
            G.check_ssr_output_grads(wrong, part=part)
    G.check_ssr_output_grads(_ElsewhereFunction(R.ssr_output_grads))


def test_one_array_returned_twice_is_seen_when_the_function_runs_elsewhere():
    # sealed, the arrays cross the wire: `return d, d` must still arrive as one array
    with pytest.raises(AssertionError, match="same array in memory"):
        G.check_add_gate_backward(_ElsewhereFunction(add_same_array), part="copies")
    G.check_add_gate_backward(_ElsewhereFunction(R.add_gate_backward), part="copies")


def test_copies_point_grades_memory_not_values():
    # a wrong value is the values cell's business: the copies part looks only at memory
    for wrong in (add_local_only, add_split):
        G.check_add_gate_backward(wrong, part="copies")
