"""Lesson 01 (the chain rule): its grading checks, its figures, and graded submissions.

Fast tests: every check passes the reference implementation and names each known
mistake. Slow tests: notebooks that make the lesson's common mistakes lose exactly
the affected cells' points, and the failing cells' messages name the mistake.
"""

from __future__ import annotations

import numpy as np
import pytest
from lessons import grade, make_submission

import course_lib.reference as R
from course_lib import nets
from course_lib.grading import chain_rule as G

ASSIGNMENT = "01_chain_rule"

CHECKS = {
    "add_gate_backward": ("shape", "values", "copies"),
    "mul_gate_backward": ("shape", "values"),
    "max_gate_backward": ("values", "ties"),
    "fanout_forward_backward": ("values", "ties"),
    "neuron_forward_backward": ("shape", "values"),
    "matmul_l2_forward_backward": ("shape", "values"),
    "ssr_output_grads": ("keys", "values"),
}


@pytest.mark.parametrize("fn, part", [(f, p) for f, parts in CHECKS.items()
                                      for p in ("all", *parts)])
def test_reference_passes_every_part(fn, part):
    getattr(G, f"check_{fn}")(getattr(R, fn), part=part)


@pytest.mark.parametrize("seed", ["1", "77", "123456"])
def test_reference_passes_for_other_grading_seeds(seed, monkeypatch):
    monkeypatch.setenv("COURSE_GRADING_SEED", seed)
    for fn in CHECKS:
        getattr(G, f"check_{fn}")(getattr(R, fn))


def test_unknown_part_is_refused():
    with pytest.raises(ValueError, match="unknown value 'edge'"):
        G.check_add_gate_backward(R.add_gate_backward, part="edge")


def test_unanswered_exercise_stays_not_implemented():
    def stub(dout):
        raise NotImplementedError()

    with pytest.raises(NotImplementedError, match="not implemented yet"):
        G.check_add_gate_backward(stub)


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
    ("ssr_output_grads", ssr_minus_two_ssr, "values", "-2·SSR, the seed's mistake"),
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
    assert figs.neuron_explorer() is not None


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
        "ssr_output_grads_values": "-2·SSR, the seed's mistake",
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
