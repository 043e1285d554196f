"""Lesson 05, part A: the scalar autograd engine (Value), its training loop, their checks
and the engine-graph explorer.

* The reference engine agrees with torch.autograd, node for node, on 1,000 random
  expressions (hypothesis) and trains the seed-000 network exactly as the numpy
  backprop of lesson 04 does (and as the lecture notes' numbers say).
* Each known mistake, written as an edit of the notebook's own solution (those of the
  manifest, and more), fails its check with a message that names it; the other parts
  are not affected where the text says so.
* The judge's probes build the same expression from plain data in the student's class,
  in torch and in the reference engine.
* The explorer's logic draws the student's numbers next to PyTorch's, and says when
  their class fails.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lessons import notebook_answers

from course_lib import manifest, nets
from course_lib import reference as R
from course_lib.grading import autograd as G
from course_lib.judge.experiments import build_expression, run_experiment

ASSIGNMENT = "05_autograd"
F64 = torch.float64
VALUE_PARTS = ("arithmetic", "functions", "topo", "accumulate", "torch")


def torch_graph(nodes):
    """(values, gradients) of every node of ``nodes`` by torch.autograd, float64."""
    built = build_expression(lambda x: torch.tensor(x, dtype=F64, requires_grad=True), nodes)
    for t in built:
        if not t.is_leaf:
            t.retain_grad()
    built[-1].backward()
    return [t.item() for t in built], [0.0 if t.grad is None else t.grad.item() for t in built]


def engine_graph(cls, nodes):
    built = build_expression(cls, nodes)
    built[-1].backward()
    return [v.data for v in built], [v.grad for v in built]


# ---------------------------------------------------------------------------
# the reference engine
# ---------------------------------------------------------------------------

OPS = ("add", "mul", "sub", "div", "neg", "pow", "add_const", "mul_const", "radd", "rmul",
       "exp", "tanh", "sigmoid", "relu")


@st.composite
def expressions(draw):
    """A random expression over every operation, with fan-outs, in its safe domain.

    Operands are drawn among all earlier nodes (so nodes are reused: fan-outs, a * a);
    an operation outside its domain (a fractional power of a negative number, a
    division by almost 0, an overflowing exp) becomes tanh; every loose end is added
    into the output so that every node reaches it.
    """
    n_leaves = draw(st.integers(1, 4))
    leaf = st.floats(-3.0, 3.0, allow_nan=False).filter(lambda x: abs(x) > 1e-3)
    nodes = [["leaf", draw(leaf)] for _ in range(n_leaves)]
    vals = [n[1] for n in nodes]
    for _ in range(draw(st.integers(1, 12))):
        op = draw(st.sampled_from(OPS))
        i = draw(st.integers(0, len(nodes) - 1))
        j = draw(st.integers(0, len(nodes) - 1))
        a, b = vals[i], vals[j]
        if op == "pow":
            k = draw(st.sampled_from((2.0, 3.0, -1.0, 0.5, 1.5, -2.0)))
            ok = abs(a) < 5 and (k == int(k) or a > 0.1) and (k > 0 or abs(a) > 0.3)
            node, value = ["pow", i, k], (a ** k if ok else None)
        elif op in ("add_const", "mul_const", "radd", "rmul"):
            c = draw(st.floats(-2.0, 2.0, allow_nan=False))
            node = [op, i, c]
            value = a + c if op in ("add_const", "radd") else a * c
        elif op in ("add", "mul", "sub", "div"):
            node = [op, i, j]
            value = (a + b if op == "add" else a * b if op == "mul" else a - b if op == "sub"
                     else a / b if abs(b) > 0.3 else None)
        else:
            node = [op, i]
            value = (-a if op == "neg" else math.tanh(a) if op == "tanh"
                     else max(a, 0.0) if op == "relu" and a != 0
                     else math.exp(a) if op == "exp" and a < 4
                     else 1 / (1 + math.exp(-a)) if op == "sigmoid" else None)
        if value is None or abs(value) > 100:
            node, value = ["tanh", i], math.tanh(a)
        nodes.append(node)
        vals.append(value)
    used = set()
    for node in nodes:
        if node[0] != "leaf":
            n_nodes = 2 if node[0] in ("add", "mul", "sub", "div") else 1
            used.update(node[1:1 + n_nodes])
    loose = [i for i in range(len(nodes)) if i not in used]
    out = loose[0]
    for i in loose[1:]:
        nodes.append(["add", out, i])
        out = len(nodes) - 1
    return nodes


@pytest.mark.slow  # 1,000 expressions through torch: seconds
@settings(max_examples=1000)
@given(expressions())
def test_reference_engine_agrees_with_torch_on_random_expressions(nodes):
    values, grads = engine_graph(R.Value, nodes)
    t_values, t_grads = torch_graph(nodes)
    np.testing.assert_allclose(values, t_values, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grads, t_grads, rtol=1e-9, atol=1e-12)


def test_a_fan_out_adds_its_paths():
    # f = u·v with u = a·b, v = a + b at a = 2, b = -3: ∂f/∂a = v·b + u = 3 - 6 (section A.1)
    a, b = R.Value(2.0), R.Value(-3.0)
    f = (a * b) * (a + b)
    f.backward()
    assert (f.data, a.grad, b.grad) == (6.0, -3.0, -8.0)
    a = R.Value(3.0)
    (a * a).backward()
    assert a.grad == 6.0


def test_topological_order_lists_every_node_once_after_its_inputs():
    a, b = R.Value(0.5), R.Value(-1.5)
    u = a * b
    out = u.exp() * u + u.tanh()
    order = out.topological_order()
    assert len(order) == len({id(v) for v in order}) == 7
    where = {id(v): k for k, v in enumerate(order)}
    assert all(where[id(c)] < where[id(v)] for v in order for c in v._prev)
    assert order[-1] is out


def test_a_deep_graph_does_not_reach_the_recursion_limit():
    x = R.Value(0.3)
    y = x
    for _ in range(5000):
        y = y * 1.0001 + 0.0
    y.backward()
    assert math.isclose(x.grad, 1.0001 ** 5000, rel_tol=1e-12)


def test_backward_on_a_new_graph_adds_into_the_leaves_grad():
    w = R.Value(3.0)
    (w * 2.0 + w ** 2).backward()
    (w * 2.0 + w ** 2).backward()  # a new graph on the same leaf: .grad adds up, as in PyTorch
    assert w.grad == 2 * (2.0 + 6.0)


def test_sigmoid_is_stable_and_relu_prime_of_zero_is_zero():
    assert R.Value(-800.0).sigmoid().data == 0.0 and R.Value(800.0).sigmoid().data == 1.0
    x = R.Value(0.0)
    x.relu().backward()
    assert x.grad == 0.0


def test_engine_train_reproduces_the_lecture_notes_step():
    net = nets.seed000()
    losses, new = R.engine_train(net.params, net.X, net.Y, 0.1, 1)
    assert round(losses[0], 7) == 0.2343997
    assert round(new[1][0][0, 0], 6) == 0.309997  # w²_11 = 0.3 - 0.1·(-0.099969)
    assert round(new[0][1][0], 6) == 0.102932     # b¹_1 = 0.1 - 0.1·(-0.029322)
    assert np.array_equal(net.params[0][0], nets.seed000().params[0][0])  # params untouched


@pytest.mark.parametrize("sizes, N, lr, steps", [((3, 4, 2), 1, 0.5, 5), ((2, 5, 3), 6, 1.0, 4),
                                                  ((3, 4, 3, 2), 3, 0.8, 3)])
def test_engine_train_is_gradient_descent_by_backprop(sizes, N, lr, steps):
    rng = np.random.default_rng(sum(sizes) + N)
    params = nets.init_params(sizes, seed=N)
    X, Y = rng.normal(size=(N, sizes[0])), np.eye(sizes[-1])[rng.integers(0, sizes[-1], N)]
    losses, new = R.engine_train(params, X, Y, lr, steps)
    acts = ["sigmoid"] * (len(sizes) - 2) + ["softmax"]
    p, expected = params, []
    for _ in range(steps):
        J, grads = R.backprop(p, X, Y, acts, "mse")
        expected.append(J)
        p = R.sgd_step(p, grads, lr)
    np.testing.assert_allclose(losses, expected, rtol=1e-12)
    for (W, b), (W_r, b_r) in zip(new, p, strict=True):
        np.testing.assert_allclose(W, W_r, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(b, b_r, rtol=1e-12, atol=1e-15)
    assert losses[-1] < losses[0]


def test_bad_arguments_name_what_was_expected():
    net = nets.seed000()
    with pytest.raises(ValueError, match=r"Y: expected shape \(N=1, n_2=2\)"):
        R.engine_train(net.params, net.X, np.ones((1, 3)), 0.1, 1)
    with pytest.raises(ValueError, match="steps: expected an integer"):
        R.engine_train(net.params, net.X, net.Y, 0.1, 1.5)
    with pytest.raises(ValueError, match="k .*: expected a number, got Value"):
        R.Value(2.0) ** R.Value(2.0)


# ---------------------------------------------------------------------------
# the judge's probes: plain data in, plain numbers out
# ---------------------------------------------------------------------------

def test_the_probes_build_the_expression_the_judge_describes():
    nodes = [["leaf", 2.0], ["leaf", -1.5], ["mul", 0, 1], ["exp", 2], ["add", 3, 0],
             ["radd", 4, 1.5], ["pow", 5, 2.0]]
    got = run_experiment(R.Value, "value_backward", {"nodes": nodes})
    values, grads = torch_graph(nodes)
    np.testing.assert_allclose(got["data"], values, rtol=1e-13)
    np.testing.assert_allclose(got["grad"], grads, rtol=1e-13)
    assert G.expression_text(nodes) == ("a = 2, b = -1.5; v1 = a · b; v2 = v1.exp(); "
                                        "v3 = v2 + a; v4 = 1.5 + v3; out = v4 ** 2")
    topo = run_experiment(R.Value, "value_topological_order", {"nodes": nodes})
    # every node once; -1: the number 1.5, which the reference wraps into a Value of its own
    assert topo["sequence"] and topo["items"].count(-1) == 1
    assert sorted(i for i in topo["items"] if i != -1) == list(range(len(nodes)))


def test_probes_describe_what_is_not_a_number():
    class NoGrad(R.Value):
        def __init__(self, data, _children=(), _op=""):
            super().__init__(data, _children, _op)
            self.grad = None

    got = run_experiment(NoGrad, "value_backward", {"nodes": [["leaf", 1.0]], "backward": False})
    assert got["grad"] == [{"type": "NoneType", "repr": "None"}]

    class Words:
        """An engine whose grad is a word."""

        def __init__(self, data):
            self.data, self.grad = float(data), "zero"

        def __mul__(self, other):
            return Words(self.data * other.data)

        def backward(self):
            pass

    with pytest.raises(AssertionError, match=r"a\.grad must be a finite number \(a Python "
                                             r"float\); got a str \('zero'\)"):
        G.check_Value(Words, part="arithmetic")


def test_random_expressions_reach_the_output_and_stay_in_their_domain():
    rng = np.random.default_rng(3)
    for _ in range(200):
        nodes = G.random_expression(rng, int(rng.integers(1, 5)), int(rng.integers(1, 15)))
        values, grads = torch_graph(nodes)
        assert all(math.isfinite(v) and abs(v) <= 100 for v in values)
        users = {i for node in nodes[1:] for i in G._operands(node)[0]}
        assert users == set(range(len(nodes) - 1))  # every node but the output has a user


# ---------------------------------------------------------------------------
# the right answers pass; unanswered stays NotImplementedError
# ---------------------------------------------------------------------------

def solutions(edit=None):
    return notebook_answers(ASSIGNMENT, ["Value", "engine_train"], edit=edit)


@pytest.mark.parametrize("seed", ("20261125", "1", "987654321"))
def test_reference_and_notebook_solution_pass_every_part(seed, monkeypatch):
    monkeypatch.setenv("COURSE_GRADING_SEED", seed)
    answers = solutions()
    for part in VALUE_PARTS:
        G.check_Value(R.Value, part=part)
        G.check_Value(answers["Value"], part=part)
    G.check_engine_train(R.engine_train)
    G.check_engine_train(answers["engine_train"])


def test_the_manifest_lists_the_parts_the_checks_run():
    assert tuple(p.name for p in manifest.exercise("Value").parts) == VALUE_PARTS
    assert [p.grade_id for p in manifest.exercise("engine_train").parts] == ["engine_train_values"]


# ---------------------------------------------------------------------------
# known mistakes are named
# ---------------------------------------------------------------------------

def value_with(old, new):
    return solutions(edit=("Value_answer", old, new))["Value"]


def train_with(old, new):
    return solutions(edit=("engine_train_answer", old, new))["engine_train"]


@pytest.mark.parametrize("mistake", [m for e in ("Value", "engine_train")
                                     for m in manifest.exercise(e).mistakes],
                         ids=lambda m: m.id)
def test_each_manifest_mistake_is_named_in_its_part(mistake):
    wrong = (value_with if mistake.function == "Value" else train_with)(mistake.old, mistake.new)
    check = getattr(G, f"check_{mistake.function}")
    with pytest.raises(AssertionError) as info:
        check(wrong, part=mistake.part)
    assert f"This matches a known mistake: {mistake.diagnostic}." in str(info.value), info.value


MUL = "self.grad += other.data * out.grad\n            other.grad += self.data * out.grad"
VALUE_MISTAKES = [
    # (old, new, part, what the message names)
    (MUL, "self.grad += other.data\n            other.grad += self.data", "arithmetic",
     "the upstream gradient is missing"),
    (MUL, "self.grad += self.data * out.grad\n            other.grad += other.data * out.grad",
     "arithmetic", "the OTHER input's value"),
    ("self.grad += k * self.data ** (k - 1) * out.grad",
     "self.grad += k * self.data ** k * out.grad", "arithmetic", r"k · x\^k"),
    ("return self + (-other)", "return self + other", "arithmetic",
     r"a - b computed a \+ b"),
    ("return self * -1.0", "return self * 1.0", "arithmetic", "-x returned x"),
    ("other.grad += out.grad", "other.grad -= out.grad", "arithmetic",
     "a contribution arrived with the wrong sign"),
    ("self.grad += out.data * out.grad", "self.grad += self.data * out.grad", "functions",
     r"∂e\^x/∂x = e\^x"),
    ("self.grad += (1 - t ** 2) * out.grad", "self.grad += (1 - self.data ** 2) * out.grad",
     "functions", "the backward of tanh used the input"),
    ("self.grad += s * (1 - s) * out.grad", "self.grad += s * out.grad", "functions",
     r"the factor \(1 - s\)"),
    ("(1.0 if self.data > 0 else 0.0)", "(1.0 if self.data >= 0 else 0.0)", "functions",
     r"ReLU'\(0\) = 0"),
    ("order.append(node)  # after all its inputs: post-order",
     "order.insert(0, node)", "topo", "the order runs from the output to the leaves"),
    ("            for child in node._prev:\n                visit(child)\n"
     "            order.append(node)  # after all its inputs: post-order",
     "            order.append(node)\n            for child in node._prev:\n"
     "                visit(child)", "topo", "a node is listed before one of its inputs"),
    ("visit(self)\n        return order", "visit(self)\n        return order[:-1]", "topo",
     "the output itself is missing"),
    ("self.grad = 1.0", "self.grad += 0.0", "arithmetic", r"∂out/∂out = 1"),
    ("self.grad += out.grad\n            other.grad += out.grad",
     "self.grad = out.grad\n            other.grad = out.grad", "accumulate",
     "overwritten instead of accumulated"),
    ("            if node in visited:\n                return\n            visited.add(node)",
     "            visited.add(node)", "accumulate", "a node's backward ran twice"),
]


@pytest.mark.parametrize("old, new, part, message", VALUE_MISTAKES,
                         ids=[m[3][:40] for m in VALUE_MISTAKES])
def test_value_mistakes_are_named(old, new, part, message):
    wrong = value_with(old, new)
    with pytest.raises(AssertionError) as info:
        G.check_Value(wrong, part=part)
    assert re.search(r"This matches a known mistake: .*" + message, str(info.value)), info.value


def test_a_wrong_local_derivative_is_traced_to_its_operation():
    wrong = value_with("self.grad += (1 - t ** 2) * out.grad",
                       "self.grad += (1 - t) * out.grad")
    with pytest.raises(AssertionError) as info:
        G.check_Value(wrong, part="torch")
    text = str(info.value)
    assert "differ from torch.autograd's" in text
    assert re.search(r"the first wrong one, from the output down, is \w+\.grad: the gradients "
                     r"of the nodes that use it \(.*tanh\(\).*\) imply", text, re.I), text
    assert "the square is missing" in text


def test_forgetting_to_accumulate_costs_the_fan_out_parts_only():
    wrong = value_with(MUL, MUL.replace("+=", "="))
    for part in ("arithmetic", "functions", "topo"):
        G.check_Value(wrong, part=part)
    for part in ("accumulate", "torch"):
        with pytest.raises(AssertionError, match="overwritten instead of accumulated"):
            G.check_Value(wrong, part=part)


TRAIN_MISTAKES = [
    ("J.backward()", "pass", "the parameters never moved"),
    ("losses.append(J.data)", "losses.append(network_loss(layers, X, Y).data)",
     "the losses are those after each update"),
]


@pytest.mark.parametrize("old, new, message", TRAIN_MISTAKES,
                         ids=[m[2][:30] for m in TRAIN_MISTAKES])
def test_engine_train_mistakes_are_named(old, new, message):
    with pytest.raises(AssertionError, match="This matches a known mistake: " + message):
        G.check_engine_train(train_with(old, new))


def test_engine_train_that_changes_params_in_place_is_refused():
    right = solutions()["engine_train"]

    def in_place(params, X, Y, lr, steps):
        losses, new = right(params, X, Y, lr, steps)
        for (W, b), (W1, b1) in zip(params, new, strict=True):
            W[...], b[...] = W1, b1
        return losses, new

    with pytest.raises(AssertionError, match="it modified the arrays in params"):
        G.check_engine_train(in_place)


def test_unanswered_engine_is_not_implemented():
    from lessons import unanswered

    stub = unanswered(ASSIGNMENT, "Value")
    for part in VALUE_PARTS:
        with pytest.raises(NotImplementedError, match="not implemented yet"):
            G.check_Value(stub, part=part)
    with pytest.raises(NotImplementedError, match="not implemented yet"):
        G.check_engine_train(unanswered(ASSIGNMENT, "engine_train"))


# ---------------------------------------------------------------------------
# the engine-graph explorer
# ---------------------------------------------------------------------------

def test_engine_explorer_shows_the_students_numbers_beside_torch():
    from course_lib.widgets.autograd import EngineLogic

    lg = EngineLogic(solutions()["Value"])
    v = lg.set("w1", 1.234)  # a slider position: 1.25
    assert lg.state["w1"] == 1.25 and lg.error is None
    assert all(lg.agrees(v, name) for name in lg.node_names)
    w1, x1, w2, x2, b = (lg.state[n] for n in ("w1", "x1", "w2", "x2", "b"))
    t = math.tanh(w1 * x1 + w2 * x2 + b)
    assert math.isclose(v["f = ·w1"], t * w1, rel_tol=1e-12)
    # w1 is used twice: its gradient is the sum of its two paths
    assert math.isclose(v["w1.grad"], (1 - t * t) * x1 * w1 + t, rel_tol=1e-12)


def test_engine_explorer_marks_what_a_wrong_engine_computes():
    from course_lib.widgets.autograd import EngineLogic

    wrong = value_with("self.grad += (1 - t ** 2) * out.grad", "self.grad += (1 - t) * out.grad")
    lg = EngineLogic(wrong)
    v = lg.values()
    bad = [name for name in lg.node_names if not lg.agrees(v, name)]
    # the tanh node itself is right; everything below it gets a wrong gradient
    assert "tanh" not in bad and {"+ b", "w1·x1", "x1", "b"} <= set(bad)


def test_engine_explorer_without_a_working_class_shows_no_numbers_of_theirs():
    from lessons import unanswered

    from course_lib.widgets.autograd import EngineLogic

    lg = EngineLogic(unanswered(ASSIGNMENT, "Value"), "diamond")
    v = lg.values()
    assert lg.error is None and math.isnan(v["f = +"]) and not math.isnan(v["f = + (torch)"])

    class Broken:
        def __init__(self, data):
            raise RuntimeError("no Values today")

    lg = EngineLogic(Broken)
    lg.values()
    assert lg.error == "RuntimeError: no Values today"


def test_engine_explorer_widget_moves_and_draws(monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    from course_lib.widgets.autograd import EngineExplorer

    explorer = EngineExplorer(R.Value, "diamond")
    explorer.sliders["a"].value = -1.5
    assert explorer.status.value == ""
    assert explorer.logic.state["a"] == -1.5
    assert 'data-name="u = a·b.grad"' in explorer.readout.value
    assert "✗" not in explorer.readout.value
    assert explorer.image.value[:8] == b"\x89PNG\r\n\x1a\n"
