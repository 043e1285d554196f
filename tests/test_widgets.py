"""course_lib.widgets: every gradient an explorer shows is right, and the widgets work.

The explorers compute their gradients by complex step. Here each one is
checked against PyTorch autograd in float64 (the same computation rebuilt in
torch, rtol 1e-9) and against central finite differences (~1e-6), at several
slider settings; the widgets are built without a browser and driven through
their sliders and buttons; and importing the package must not load torch or
the answers.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from course_lib import nets  # noqa: E402
from course_lib.gradcheck import numerical_gradient  # noqa: E402
from course_lib.widgets import (  # noqa: E402
    GateExplorer,
    GateLogic,
    LearningRateExplorer,
    LearningRateLogic,
    NetworkExplorer,
    NetworkLogic,
    SigmoidExplorer,
    SigmoidLogic,
    SoftmaxExplorer,
    SoftmaxLogic,
    VanishingExplorer,
    VanishingLogic,
)
from course_lib.widgets import complex_step as cs  # noqa: E402
from course_lib.widgets.autograd import AutogradExplorer, AutogradLogic  # noqa: E402

RTOL = 1e-9
ATOL = 1e-12
FD_TOL = 1e-6
PKG = Path(__file__).resolve().parents[1] / "course_lib" / "widgets"


def t64(x, grad=False):
    return torch.tensor(np.asarray(x, dtype=np.float64), dtype=torch.float64, requires_grad=grad)


def close(a, b, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float),
                               rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------
# the complex-step helper
# ---------------------------------------------------------------------------

# complex_step holds only the differentiators (an activation there would be an
# exercise's answer, see its docstring): these complex-safe forward passes are the
# test's own, written the way the module's docstring says
def _sigmoid(z):
    z = np.asarray(z)
    e = np.exp(np.where(np.real(z) >= 0, -z, z))
    return np.where(np.real(z) >= 0, 1 / (1 + e), e / (1 + e))


def _relu(z):
    z = np.asarray(z)
    return np.where(np.real(z) > 0, z, 0 * z)


def _softplus(z):
    z = np.asarray(z)
    return _relu(z) + np.log1p(np.exp(np.where(np.real(z) >= 0, -z, z)))


def _softmax(z):
    e = np.exp(z - np.max(np.real(z)))
    return e / np.sum(e)


def _log_softmax(z):
    shifted = z - np.max(np.real(z))
    return shifted - np.log(np.sum(np.exp(shifted)))


_ACTS = {"sigmoid": _sigmoid, "tanh": np.tanh, "relu": _relu, "identity": np.asarray}


@pytest.mark.parametrize("name,tfn", [("sigmoid", torch.sigmoid), ("tanh", torch.tanh),
                                      ("relu", torch.relu), ("identity", lambda z: z)])
def test_elementwise_derivatives_match_torch(name, tfn):
    rng = np.random.default_rng(1)
    z = np.concatenate([rng.normal(0, 3, 50), [0.0, -30.0, 30.0, 700.0, -700.0]])
    zt = t64(z, grad=True)
    tfn(zt).sum().backward()
    close(cs.derivative(_ACTS[name], z), zt.grad.numpy())
    close(np.real(_ACTS[name](z)), tfn(t64(z)).numpy())


def test_relu_prime_at_zero_is_zero_and_max_tie_goes_to_first():
    assert cs.derivative(_relu, 0.0) == 0.0
    g = cs.gradient(lambda v: cs.maximum(v[0], v[1]), np.array([2.0, 2.0]))
    assert g.tolist() == [1.0, 0.0]


def _dense_relu_max_softmax(params, x, y, xp=np):
    """A scalar through dense, relu, max and softmax; numpy (complex) or torch."""
    w1, c1, w2 = params
    if xp is np:
        z = w2 @ _relu(w1 @ x + c1)
        return -np.sum(y * _log_softmax(z)) + cs.maximum(z[0], z[1]) * np.sum(_softmax(z) ** 2)
    z = w2 @ torch.relu(w1 @ t64(x) + c1)
    return (-(t64(y) * torch.log_softmax(z, 0)).sum()
            + torch.maximum(z[0], z[1]) * (torch.softmax(z, 0) ** 2).sum())


def test_gradient_through_dense_relu_max_softmax_matches_torch():
    rng = np.random.default_rng(2)
    for _ in range(5):
        params = [rng.normal(size=(4, 3)), rng.normal(size=4), rng.normal(size=(3, 4))]
        x, y = rng.normal(size=3), np.eye(3)[rng.integers(3)]
        tp = [t64(p, True) for p in params]
        _dense_relu_max_softmax(tp, x, y, xp=torch).backward()
        for k, arr in enumerate(params):
            def fk(a, k=k, params=params, x=x, y=y):
                ps = [p.astype(complex) for p in params]
                ps[k] = a
                return _dense_relu_max_softmax(ps, x, y)
            close(cs.gradient(fk, arr), tp[k].grad.numpy())


def test_jacobian_of_softmax_matches_torch():
    rng = np.random.default_rng(3)
    for n in (2, 3, 5):
        z = rng.normal(0, 4, n)
        J = torch.autograd.functional.jacobian(lambda v: torch.softmax(v, 0), t64(z))
        close(cs.jacobian(_softmax, z), J.numpy())


def test_complex_step_is_stable_and_exact_where_differences_are_not():
    z = np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = np.real(_sigmoid(z))
        d = cs.derivative(_sigmoid, z)
        sp = np.real(_softplus(z))
        sm = np.real(_softmax(np.array([1000.0, 999.0, -1000.0])))
    assert np.all(np.isfinite(s)) and np.all(np.isfinite(d)) and np.all(np.isfinite(sp))
    close(sm, torch.softmax(t64([1000.0, 999.0, -1000.0]), 0).numpy())
    close(sp, torch.nn.functional.softplus(t64(z)).numpy())
    # exp'(1) = e to the last bit: no subtractive cancellation
    assert cs.derivative(np.exp, 1.0) == np.exp(1.0)


def test_the_explorers_are_stable_far_out():
    """The explorers' own σ, softmax and BCE (inside their logic) never overflow."""
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        for z in (-1000.0, 1000.0):
            v = SigmoidLogic().update(z=z, depth=3)
            assert v["sigmoid(z)"] == (0.0 if z < 0 else 1.0) and v["dsigmoid/dz"] == 0.0
        lg = SoftmaxLogic(n=3, logits=(1000.0, 999.0, -1000.0))
        v = lg.values()
        J = torch.autograd.functional.jacobian(lambda u: torch.softmax(u, 0), t64(lg.z))
        close([v[f"s{i}"] for i in (1, 2, 3)], torch.softmax(t64(lg.z), 0).numpy())
        close(lg.jacobian(v), J.numpy())
        net = NetworkLogic(nets.seed001())
        v = net.update(**{"W2[0,0]": 900.0, "W2[0,1]": 900.0})  # the output saturates
    L, grads = torch_loss_and_grads(net)
    close(v["J"], L)
    close(v["dJ/dW2[0,0]"], grads[1][0][0, 0])


def test_a_function_that_drops_the_imaginary_part_is_refused():
    with pytest.raises(ValueError, match="imaginary part"):
        cs.gradient(lambda v: float(np.real(np.sum(v * v))), np.ones(3))


# ---------------------------------------------------------------------------
# lesson 01: gates
# ---------------------------------------------------------------------------

_TORCH_OPS = {
    "add": lambda a, b, c: a + b,
    "mul": lambda a, b, c: a * b,
    "max": lambda a, b, c: torch.where(a >= b, a, b),  # the course's tie rule
    "sigmoid": lambda a, c: torch.sigmoid(a),
    "exp": lambda a, c: torch.exp(a),
    "inv": lambda a, c: 1.0 / a,
    "mul_const": lambda a, c: a * c,
    "add_const": lambda a, c: a + c,
}


def torch_graph(lg: GateLogic):
    """Forward the graph in torch; returns every node's tensor (gradients kept)."""
    vals = {}
    for node in lg.nodes:
        if node.op == "input":
            vals[node.name] = t64(lg.state[node.name], grad=True)
        else:
            vals[node.name] = _TORCH_OPS[node.op](*(vals[i] for i in node.inputs), node.const)
            vals[node.name].retain_grad()
    vals[lg.output].backward()
    return vals


def check_gate_values(lg: GateLogic, v: dict):
    tv = torch_graph(lg)
    close(v["f"], tv[lg.output].item())
    for node in lg.nodes[:-1]:
        close(v[f"df/d{node.name}"], tv[node.name].grad.item())
    for node in lg.nodes:
        for pos, u in enumerate(node.inputs):
            key = f"{u}->{node.name}"
            args = [t64(tv[i].item(), grad=True) for i in node.inputs]
            out = _TORCH_OPS[node.op](*args, node.const)
            (local,) = torch.autograd.grad(out, args[pos])
            close(v[f"{key} value"], tv[u].item())
            close(v[f"{key} local"], local.item())
            close(v[f"{key} upstream"], 1.0 if node.name == lg.output else
                  tv[node.name].grad.item())
            close(v[f"{key} product"], local.item() * (1.0 if node.name == lg.output else
                                                       tv[node.name].grad.item()))
    x = np.array([lg.state[n] for n in lg.input_names])
    fd = numerical_gradient(lambda a: lg.f_of(dict(zip(lg.input_names, a, strict=True))), x)
    for n, g in zip(lg.input_names, fd, strict=True):
        close(v[f"df/d{n}"], g, rtol=FD_TOL, atol=1e-8)
        close(v[f"df/d{n} (finite diff)"], g, rtol=1e-12, atol=1e-12)


def test_cs231n_neuron_numbers():
    v = GateLogic("neuron").values()
    close(v["f"], 0.7310585786300049)
    close([v["df/dw0"], v["df/dw1"], v["df/dw2"]], [-0.19661193, -0.39322387, 0.19661193],
          rtol=1e-7)
    close([v["df/dx0"], v["df/dx1"]], [0.39322387, -0.5898358], rtol=1e-7)
    w = GateLogic("gates").values()
    assert (w["f"], w["df/dx"], w["df/dy"], w["df/dz"], w["df/dw"]) == (-20, -8, 6, 2, 0)


@pytest.mark.parametrize("graph", ["neuron", "neuron_expanded", "gates", "fanout"])
def test_gate_gradients_match_torch_and_finite_differences(graph):
    lg = GateLogic(graph)
    rng = np.random.default_rng(10)
    check_gate_values(lg, lg.values())
    for _ in range(4):
        name = lg.input_names[rng.integers(len(lg.input_names))]
        v = lg.set(name, float(np.round(rng.uniform(-3, 3), 3)))
        check_gate_values(lg, v)
    v = lg.update(**{n: float(rng.uniform(-2, 2)) for n in lg.input_names})
    check_gate_values(lg, v)


def test_gate_fanout_gradient_is_the_sum_of_its_edges():
    v = GateLogic("fanout").values()  # f = x·y + max(x, y) at (3, 2)
    assert v["df/dx"] == pytest.approx(v["x->p product"] + v["x->m product"], rel=1e-12)
    assert (v["df/dx"], v["df/dy"]) == (3.0, 3.0)


def test_figures_and_explorer_share_one_graph_engine():
    """figures.chain_rule draws GateLogic's graphs with GateLogic's numbers, at slider
    positions only (two decimals)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from course_lib.figures import chain_rule as figs
    from course_lib.widgets.chain_rule import GRAPHS

    g = figs.neuron_graph((2.0, -3.0, -3.0), (-1.0, -2.0))
    assert g.graph is GRAPHS["neuron_expanded"]
    lg = GateLogic("neuron_expanded")
    assert g.values == lg.values()
    tv = torch_graph(lg)
    assert g.nodes["h"].value == pytest.approx(tv["h"].item(), rel=1e-12)
    assert g.nodes["h"].grad == pytest.approx(tv["h"].grad.item(), rel=1e-12)
    assert g.edge_grads[("e", "h")] == pytest.approx(tv["e"].grad.item(), rel=1e-12)
    # an input between two slider positions is moved to the nearest one
    assert figs.neuron_graph((2.004, -3.0, -3.0), (-1.0, -2.0)).values == g.values
    fig = figs.draw_graph(g, show=False)
    shown = {t.get_text() for t in fig.axes[0].texts}
    for number in ("1.37", "-0.53", "0.73", "-0.20", "0.39"):  # CS231n's figure
        assert number in shown, sorted(shown)
    plt.close(fig)


def _torch_neuron(w, x):
    wt, xt = t64(w, True), t64(x, True)
    f = torch.sigmoid(wt[0] * xt[0] + wt[1] * xt[1] + wt[2])
    f.backward()
    return f.item(), wt.grad.numpy(), xt.grad.numpy()


def test_gate_student_function_is_compared_or_silently_skipped():
    v = GateLogic("neuron", student_neuron=_torch_neuron).set("x1", 0.7)
    for n in ("w0", "w1", "w2", "x0", "x1"):
        close(v[f"df/d{n} (yours)"], v[f"df/d{n}"])

    def todo(w, x):
        raise NotImplementedError

    lg = GateLogic("neuron", student_neuron=todo)
    assert not any("yours" in k for k in lg.values()) and lg.student_error is None

    def broken(w, x):
        return 1.0, np.zeros(2), np.zeros(2)

    lg = GateLogic("neuron", student_neuron=broken)
    lg.values()
    assert "shape (3,)" in lg.student_error
    with pytest.raises(ValueError, match="graph"):
        GateLogic("nope")
    with pytest.raises(ValueError, match="unknown slider"):
        GateLogic().set("w9", 1.0)


# ---------------------------------------------------------------------------
# lesson 02: sigmoid
# ---------------------------------------------------------------------------

_TORCH_ACT = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}


def check_sigmoid_values(lg: SigmoidLogic, v: dict):
    z, L, w, b = (lg.state[k] for k in ("z", "depth", "w", "b"))
    zt = t64(z, True)
    s = torch.sigmoid(zt)
    s.backward()
    close(v["sigmoid(z)"], s.item())
    close(v["dsigmoid/dz"], zt.grad.item())
    close(v["dsigmoid/dz (finite diff)"], zt.grad.item(), rtol=FD_TOL, atol=1e-9)
    for name, act in _TORCH_ACT.items():
        zs = [t64(z, True)]
        a = None
        for k in range(L):
            a = act(zs[k])
            if k < L - 1:
                zk = w * a + b
                zk.retain_grad()
                zs.append(zk)
        a.backward()
        for k in range(L):
            close(v[f"da_L/dz_{k + 1} ({name})"], zs[k].grad.item())
            zk = t64(zs[k].item(), True)
            (d,) = torch.autograd.grad(act(zk), zk)
            close(v[f"{name}'(z_{k + 1})"], d.item())
        close(v[f"a_L ({name})"], a.item())
        close(v[f"product of factors ({name})"], zs[0].grad.item(), rtol=1e-9, atol=1e-300)
        if name != "relu" or not lg.relu_kinks():  # finite differences see ReLU's kink
            close(v[f"da_L/dz_1 ({name}) (finite diff)"], zs[0].grad.item(), rtol=FD_TOL,
                  atol=1e-8)


def test_sigmoid_explorer_matches_torch():
    lg = SigmoidLogic()
    check_sigmoid_values(lg, lg.values())
    for z, depth, w, b in [(0.0, 1, 1.0, 0.0), (2.5, 8, 1.0, 0.3), (-1.3, 12, 2.5, -0.4),
                           (6.0, 20, -1.5, 0.7), (0.37, 5, 3.9, 0.05)]:
        check_sigmoid_values(lg, lg.update(z=z, depth=depth, w=w, b=b))
    v = lg.set("z", 9.5)
    assert v["dsigmoid/dz"] < 1e-4  # saturated
    lg.update(z=0.0, depth=3)
    assert lg.relu_kinks() == [1]


# ---------------------------------------------------------------------------
# lesson 03: softmax
# ---------------------------------------------------------------------------

def check_softmax_values(lg: SoftmaxLogic, v: dict):
    z = t64(lg.z)
    n = lg.n
    J = torch.autograd.functional.jacobian(lambda u: torch.softmax(u, 0), z).numpy()
    zt = t64(lg.z, True)
    loss = torch.nn.functional.cross_entropy(zt[None], torch.tensor([lg.target]))
    loss.backward()
    close([v[f"s{i + 1}"] for i in range(n)], torch.softmax(z, 0).numpy())
    close(lg.jacobian(v), J)
    close(lg.jacobian(v, "finite diff"), J, rtol=FD_TOL, atol=1e-9)
    close(v["L"], loss.item())
    close([v[f"dL/dz{j + 1}"] for j in range(n)], zt.grad.numpy())
    close([v[f"dL/dz{j + 1} (finite diff)"] for j in range(n)], zt.grad.numpy(),
          rtol=FD_TOL, atol=1e-9)


@pytest.mark.parametrize("n", [3, 4, 5])
def test_softmax_explorer_matches_torch(n):
    lg = SoftmaxLogic(n=n)
    rng = np.random.default_rng(n)
    check_softmax_values(lg, lg.values())
    for k in range(4):
        lg.set_target(int(rng.integers(n)))
        v = lg.set(f"z{k % n + 1}", float(rng.uniform(-6, 6)))
        check_softmax_values(lg, v)
    check_softmax_values(lg, lg.update(**{f"z{j + 1}": 6.0 - j * 0.05 for j in range(n)}))


def test_softmax_student_jacobian():
    def mine(z):
        return torch.autograd.functional.jacobian(lambda u: torch.softmax(u, 0), t64(z))

    v = SoftmaxLogic(student_jacobian=mine).set("z2", -0.4)
    lg = SoftmaxLogic()
    close(np.array([[v[f"ds{i}/dz{j} (yours)"] for j in (1, 2, 3)] for i in (1, 2, 3)]),
          lg.jacobian(v))

    def wrong_shape(z):
        return np.zeros(3)

    lg = SoftmaxLogic(student_jacobian=wrong_shape)
    lg.values()
    assert "(3, 3)" in lg.student_error
    with pytest.raises(ValueError, match="target"):
        SoftmaxLogic().set_target(3)
    with pytest.raises(ValueError, match="from 2 to 6"):
        SoftmaxLogic(n=9)


def test_softmax_shift_changes_nothing_and_the_readout_says_why():
    lg = SoftmaxLogic(n=4, logits=(1.5, 0.5, 0.0, -0.5), shift=True)
    v0 = lg.values()
    for c in (1000.0, -1000.0, 370.0):
        v = lg.set("c", c)
        assert v["c"] == c and lg.z == pytest.approx(np.array([1.5, 0.5, 0.0, -0.5]) + c)
        check_softmax_values(lg, v)
        for key in [f"s{i}" for i in range(1, 5)] + [f"dL/dz{j}" for j in range(1, 5)]:
            assert v[key] == pytest.approx(v0[key], rel=1e-12, abs=1e-15)
        J = torch.autograd.functional.jacobian(lambda u: torch.softmax(u, 0), t64(lg.z))
        close([v[f"eigenvalue {k}"] for k in range(1, 5)],
              np.linalg.eigvalsh(J.numpy()), atol=1e-12)
        close([v[f"row sum {i}"] for i in range(1, 5)], J.numpy().sum(axis=1), atol=1e-15)
        assert abs(v["eigenvalue 1"]) < 1e-12 and v["eigenvalue 2"] > 1e-3
    assert "c" not in SoftmaxLogic(n=4).controls


# ---------------------------------------------------------------------------
# lesson 04: the network
# ---------------------------------------------------------------------------

_TORCH_ACTS = {"sigmoid": torch.sigmoid, "relu": torch.relu, "tanh": torch.tanh,
               "identity": lambda z: z, "softmax": lambda z: torch.softmax(z, 1)}


def torch_loss_and_grads(lg: NetworkLogic):
    params = [(t64(W, True), t64(b, True)) for W, b in lg.params]
    A = t64(lg.X)
    Y = t64(lg.Y)
    Z = None
    for (W, b), act in zip(params, lg.activations, strict=True):
        Z = A @ W.T + b
        A = _TORCH_ACTS[act](Z)
    N = Y.shape[0]
    if lg.loss == "mse":
        loss = 0.5 * ((A - Y) ** 2).sum() / N
    elif lg.loss == "bce":
        loss = torch.nn.functional.binary_cross_entropy_with_logits(Z, Y, reduction="sum") / N
    else:
        loss = -(Y * torch.log_softmax(Z, 1)).sum() / N
    loss.backward()
    return loss.item(), [(W.grad.numpy(), b.grad.numpy()) for W, b in params]


def check_network_values(lg: NetworkLogic, v: dict, fd: bool = True):
    L, grads = torch_loss_and_grads(lg)
    close(v["J"], L)
    for layer, (dW, db) in enumerate(grads, start=1):
        for kind, g in (("W", dW), ("b", db)):
            for ix in np.ndindex(g.shape):
                name = f"{kind}{layer}[{','.join(map(str, ix))}]"
                close(v[f"dJ/d{name}"], g[ix])
                if fd:
                    close(v[f"dJ/d{name} (finite diff)"], g[ix], rtol=FD_TOL, atol=1e-9)


def test_network_reproduces_seed000():
    v = NetworkLogic().values()
    close(v["J"], 0.2343997, rtol=1e-6)
    close([v["dJ/db2[0]"], v["dJ/db2[1]"]], [-0.241831, 0.241831], rtol=1e-5)
    close([v[f"dJ/db1[{j}]"] for j in range(4)], [-0.029322, 0.036886, 0.011221, -0.035471],
          rtol=1e-4)
    close([v[f"a1[{j}]"] for j in range(4)], [0.413382, 0.679179, 0.365864, 0.425557],
          rtol=1e-5)


@pytest.mark.parametrize("seed", ["seed000", "seed001", "seed004"])
def test_network_gradients_match_torch(seed):
    lg = NetworkLogic(getattr(nets, seed)())
    # seed 004 starts on a ReLU kink (Z2[0,0] = 0): torch and complex step agree
    # there (ReLU'(0) = 0), central differences do not, and the readout says so
    check_network_values(lg, lg.values(), fd=not lg.relu_kinks())
    assert bool(lg.relu_kinks()) == (seed == "seed004")
    rng = np.random.default_rng(4)
    names = [p.name for p in lg.plist]
    for _ in range(4):
        name = names[rng.integers(len(names))]
        v = lg.set(name, float(rng.uniform(-2, 2)))
        check_network_values(lg, v, fd=not lg.relu_kinks())


def test_network_sgd_step_and_reset():
    lg = NetworkLogic(lr=0.5)
    v0 = lg.values()
    W1 = lg.params[0][0].copy()
    v1 = lg.sgd_step()
    close(lg.params[0][0], W1 - 0.5 * np.array([[v0[f"dJ/dW1[{j},{k}]"] for k in range(3)]
                                               for j in range(4)]), rtol=1e-12)
    assert v1["J"] < v0["J"]
    lg.sgd_step(9)
    assert len(lg.history) == 11 and lg.history[-1] < lg.history[0]
    assert lg.reset()["J"] == v0["J"] and lg.history == []
    with pytest.raises(ValueError, match="lr"):
        lg.set("lr", -1)


def test_network_student_backprop():
    def mine(params, X, Y, activations, loss):
        lg = NetworkLogic(nets.seed000())
        lg.params = [(np.array(W), np.array(b)) for W, b in params]
        return torch_loss_and_grads(lg)

    lg = NetworkLogic(student_backprop=mine)
    v = lg.set("W2[1,3]", 0.8)
    assert v["J (yours)"] == pytest.approx(v["J"], rel=1e-12)
    for p in lg.plist:
        close(v[f"dJ/d{p.name} (yours)"], v[f"dJ/d{p.name}"])

    def todo(*args):
        raise NotImplementedError

    lg = NetworkLogic(student_backprop=todo)
    assert not any("yours" in k for k in lg.values()) and lg.student_error is None


def torch_backprop(params, X, y, activations, loss):
    """A backprop for the tests, by torch autograd (the mean cross-entropy)."""
    assert loss == "cross_entropy" and tuple(activations) == ("tanh", "softmax")
    tp = [(t64(W, True), t64(b, True)) for W, b in params]
    A = t64(X)
    for i, (W, b) in enumerate(tp):
        Z = A @ W.T + b
        A = torch.tanh(Z) if i == 0 else Z
    J = torch.nn.functional.cross_entropy(A, torch.as_tensor(np.asarray(y), dtype=torch.long))
    J.backward()
    return J.item(), [(W.grad.numpy(), b.grad.numpy()) for W, b in tp]


def plain_sgd(params, grads, lr):
    return [(W - lr * dW, b - lr * db) for (W, b), (dW, db) in zip(params, grads, strict=True)]


def test_network_numbers_are_recomputed_when_a_parameter_moves_not_the_learning_rate():
    calls = []

    def mine(params, X, Y, activations, loss):
        calls.append(1)
        lg = NetworkLogic(nets.seed000())
        lg.params = [(np.array(W), np.array(b)) for W, b in params]
        return torch_loss_and_grads(lg)

    lg = NetworkLogic(student_backprop=mine)
    v0 = lg.values()
    assert lg.set("lr", 0.1) == v0 and len(calls) == 1  # the numbers do not depend on lr
    v1 = lg.set("W1[0,0]", 0.3)
    assert len(calls) == 2 and v1["W1[0,0]"] == 0.3 and v1["J"] != v0["J"]
    check_network_values(lg, v1)
    v2 = lg.sgd_step()  # moves every parameter in place
    assert len(calls) == 3 and v2["J"] < v1["J"]
    check_network_values(lg, v2)
    assert lg.reset() == v0


def test_learning_rate_runs_are_trained_once_and_match_torch():
    from course_lib import data

    calls = []

    def counted(*args):
        calls.append(1)
        return torch_backprop(*args)

    X, y = data.two_moons(n=400, noise=0.15, seed=1)
    lg = LearningRateLogic(counted, plain_sgd, X, y, steps=30)
    lg.precompute()
    assert len(lg._runs) == 9 * 2 * 3  # 9 learning rates, mean and sum, 3 batch sizes
    trained = len(calls)
    for lr in lg.positions():
        lg.set("log10_lr", lr)
        for r in ("sum", "mean"):
            lg.set_reduction(r)
            lg.values()
    assert len(calls) == trained  # a move only reads what was trained
    # N = 25 at lr = 1: the same run by hand in torch
    lg.set("log10_lr", 0.0)
    lg.set_reduction("sum")
    idx = lg.order[:25]
    params = [(W.copy(), b.copy()) for W, b in lg.start]
    expected = []
    for _ in range(30):
        J, grads = torch_backprop(params, X[idx], y[idx], ("tanh", "softmax"), "cross_entropy")
        if not np.isfinite(J) or J > 1e3:
            expected.append(np.nan)
            break
        expected.append(J)
        params = plain_sgd(params, [(25 * dW, 25 * db) for dW, db in grads], 1.0)
    close(lg.curves()[25], expected, rtol=1e-12)
    v = lg.values()
    assert v["steps (N=25)"] == np.isfinite(expected).sum()
    assert v["diverged (N=25)"] == float(np.isnan(expected[-1]))
    lg.set("log10_lr", 1.0)
    assert lg.values()["diverged (N=400)"] == 1.0  # lr = 10 with a sum over 400 points
    lg.set_reduction("mean")
    lg.set("log10_lr", -3.0)
    v = lg.values()
    assert v["diverged (N=400)"] == 0.0 and v["steps (N=400)"] == 30
    assert LearningRateLogic().values()["lr"] == 1.0  # no backprop: no curves, no error
    with pytest.raises(ValueError, match="reduction"):
        lg.set_reduction("max")


def test_vanishing_numbers_are_the_same_computed_ahead_or_when_first_needed():
    """The explorer computes every weight scale's forward pass before it shows its sliders;
    the grading kernel, which shows nothing, computes only the scale it needs."""
    ahead, lazy = VanishingLogic(), VanishingLogic()
    ahead.precompute()
    assert len(ahead._forwards) == 17 and lazy._forwards == {}
    for depth, e in ((20, 0.0), (7, -2.0), (50, 1.25)):
        assert ahead.update(depth=depth, log2_scale=e) == lazy.update(depth=depth, log2_scale=e)
    assert sorted(lazy._forwards) == [-2.0, 0.0, 1.25]


def test_vanishing_gradients_match_torch():
    from course_lib.widgets.sigmoid import STACK_ACTIVATIONS, delta_norms_by_layer

    lg = VanishingLogic()
    for depth, e in ((20, 0.0), (7, -2.0), (12, 2.0), (2, 0.75)):
        v = lg.update(depth=depth, log2_scale=e)
        for act, scale in (("sigmoid", "xavier"), ("tanh", "xavier"), ("relu", "he")):
            params = nets.init_params([64] * (depth + 1), seed=0, scale=scale)
            rng = np.random.default_rng([0, 1])
            A = t64(rng.standard_normal((32, 64)), grad=True)
            dA = t64(rng.standard_normal((32, 64)) / 32)
            zs = []
            for W, _ in params:
                Z = A @ t64(W * 2.0 ** e).T
                Z.retain_grad()
                zs.append(Z)
                A = _TORCH_ACT[act](Z)
            (A * dA).sum().backward()
            norms = np.array([z.grad.norm().item() for z in zs])
            close([v[f"ratio_{k} ({act})"] for k in range(1, depth + 1)], norms / norms[-1],
                  rtol=1e-10)
            # one deep stack serves every depth: the same as a fresh network of this depth
            close(delta_norms_by_layer(act, depth, weight_scale=2.0 ** e)["ratio"],
                  norms / norms[-1], rtol=1e-10)
    assert f"ratio_{depth + 1} (sigmoid)" not in v
    # the deepest network at both ends of the scale (ratios from 1e-60 to 1e30: there
    # float64 rounding, numpy's or torch's, is amplified 50 times over, so the explorer
    # is held to delta_norms_by_layer, whose forward pass it repeats), and a position
    # visited again after others (its numbers are kept, not recomputed)
    for depth, e in ((50, 2.0), (50, -1.25), (33, 0.25), (20, 0.0)):
        v = lg.update(depth=depth, log2_scale=e)
        for act in STACK_ACTIVATIONS:
            ref = delta_norms_by_layer(act, depth, weight_scale=2.0 ** e)
            close([v[f"ratio_{k} ({act})"] for k in range(1, depth + 1)], ref["ratio"],
                  rtol=1e-12)
            assert v[f"saturated ({act})"] == pytest.approx(100 * ref["saturated"].mean())
    with pytest.raises(ValueError, match="activation"):
        lg.set_activation("softplus")


# ---------------------------------------------------------------------------
# lesson 05: autograd
# ---------------------------------------------------------------------------

def torch_expression(a, b, c):
    at, bt, ct = t64(a, True), t64(b, True), t64(c, True)
    f = (at * bt + torch.maximum(at, ct)) * torch.sigmoid(bt)
    f.backward()
    return f.item(), at.grad.item(), bt.grad.item(), ct.grad.item()


def test_autograd_explorer_matches_torch_and_complex_step():
    lg = AutogradLogic()
    rng = np.random.default_rng(5)
    for _ in range(5):
        v = lg.update(a=float(rng.uniform(-4, 4)), b=float(rng.uniform(-4, 4)),
                      c=float(rng.uniform(-4, 4)))
        f, ga, gb, gc = torch_expression(*(lg.state[n] for n in "abc"))
        close(v["f"], f)
        close([v["a.grad"], v["b.grad"], v["c.grad"]], [ga, gb, gc])
        close([v["df/da"], v["df/db"], v["df/dc"]], [ga, gb, gc])
        close([v[f"df/d{n} (finite diff)"] for n in "abc"], [ga, gb, gc], rtol=FD_TOL,
              atol=1e-9)
        for n in ("p", "m", "s", "g"):
            close(v[f"df/d{n} (torch)"], v[f"df/d{n}"])
    names = {type(fn).__name__ for fn in lg.graph_nodes}
    assert names == {"MulBackward0", "AddBackward0", "MaximumBackward0", "SigmoidBackward0",
                     "AccumulateGrad"}


def test_autograd_grad_accumulates_until_zero_grad():
    lg = AutogradLogic()
    g1 = lg.values()["a.grad"]
    assert lg.backward_again()["a.grad"] == pytest.approx(2 * g1, rel=1e-14)
    assert lg.backward_again()["a.grad"] == pytest.approx(3 * g1, rel=1e-14)
    v = lg.zero_grad()
    assert v["a.grad"] == 0.0 and v["backward calls"] == 0
    lg.zero_before_backward = False
    v1 = lg.set("c", 0.25)
    v2 = lg.set("c", 0.5)
    assert v2["b.grad"] == pytest.approx(v1["df/db"] + v2["df/db"], rel=1e-12)


def test_autograd_tie_is_reported():
    lg = AutogradLogic()
    v = lg.update(a=1.0, c=1.0)
    assert lg.ties() == ["m = max(a, c)"]
    # torch splits the tie's gradient; the course's max gate sends it to a
    assert v["df/dm (torch)"] == pytest.approx(v["df/dm"], rel=1e-12)
    assert v["df/dc"] == 0.0 and v["c.grad"] == pytest.approx(0.5 * v["df/dm"], rel=1e-12)


# ---------------------------------------------------------------------------
# the widgets (ipywidgets objects, no browser)
# ---------------------------------------------------------------------------

def spans(html: str) -> dict[str, str]:
    """data-name -> displayed text of every number in a readout."""
    return dict(re.findall(r'data-name="([^"]+)">([^<]*)<', html))


def test_gate_widget_slider_updates_the_readout_and_figure():
    e = GateExplorer()
    assert e.widget is not None and hasattr(e, "_ipython_display_")
    assert all(s.description for s in e.sliders.values())
    png = e.image.value
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "df/dw0 = -0.1966" in e.readout.value
    e.sliders["w0"].value = 1.0
    v = e.logic.values()
    assert f"df/dw0 = {v['df/dw0']:.4g}" in e.readout.value
    assert f"df/dx0 = {v['df/dx0']:.4g}" in e.readout.value
    assert e.image.value != png and e.status.value == ""
    assert "cl-readout" in e.readout._dom_classes


def test_sigmoid_widget():
    e = SigmoidExplorer()
    e.sliders["z"].value = -2.0
    e.sliders["depth"].value = 9
    v = e.logic.values()
    assert f"dsigmoid/dz = {v['dsigmoid/dz']:.4g}" in e.readout.value
    shown = spans(e.readout.value)
    assert shown["da_L/dz_9 (tanh)"] == f"{v['da_L/dz_9 (tanh)']:.3g}"
    assert "da_L/dz_10 (tanh)" not in shown


def test_softmax_widget():
    e = SoftmaxExplorer(n=4)
    e.sliders["z3"].value = 3.0
    e.target_dropdown.value = 2
    v = e.logic.values()
    assert e.logic.target == 2
    assert f"ds3/dz3 = {v['ds3/dz3']:.4g}" in e.readout.value
    assert f"dL/dz3 = {v['dL/dz3']:.4g}" in e.readout.value


def test_network_widget_slider_dropdown_and_buttons():
    e = NetworkExplorer()
    e.dropdown.value = "W2[0,1]"
    assert e.value_slider.value == pytest.approx(-0.6)
    e.value_slider.value = 0.25
    assert e.logic.params[1][0][0, 1] == 0.25
    v = e.logic.values()
    assert f"dJ/dW2[0,1] = {v['dJ/dW2[0,1]']:.4g}" in e.readout.value
    assert "dJ/dW2[0,1] (finite diff) = " in e.readout.value
    e.step_button.click()
    e.step10_button.click()
    assert len(e.logic.history) == 12
    assert e.value_slider.value == pytest.approx(e.logic.params[1][0][0, 1])
    e.reset_button.click()
    assert e.logic.history == [] and e.status.value == ""
    e4 = NetworkExplorer(nets.seed004())
    assert "ReLU input sits at its kink" in e4.readout.value


def _every_explorer():
    from course_lib import data

    X, y = data.two_moons(n=400, noise=0.15, seed=1)
    return ([GateExplorer(g) for g in ("neuron", "neuron_expanded", "gates", "fanout", "example")]
            + [SigmoidExplorer(), VanishingExplorer(), SoftmaxExplorer(n=4, shift=True),
               NetworkExplorer(), AutogradExplorer(),
               LearningRateExplorer(torch_backprop, plain_sgd, X, y, steps=20)])


def test_every_slider_s_observer_updates_the_readout_and_the_figure():
    """Each slider of each explorer, moved as a student moves it (its .value set):
    the logic holds the new position, the readout shows the logic's numbers there, and
    the readout or the figure (both, for every slider but the learning rate of SGD
    steps not yet taken) changed."""
    for e in _every_explorer():
        for name, s in e.sliders.items():
            before = (e.readout.value, e.image.value)
            # to 30% of its range, or 70% if it is there already (the ends can saturate
            # everything: then nothing drawn moves)
            log = hasattr(s, "base")  # FloatLogSlider: min and max are exponents
            at = np.log(s.value) / np.log(s.base) if log else s.value
            t = 0.7 if abs(at - (s.min + 0.3 * (s.max - s.min))) < s.step else 0.3
            new = s.min + round(t * (s.max - s.min) / s.step) * s.step  # on its grid
            new = s.base ** new if log else (round(new) if isinstance(s.value, int) else new)
            s.value = new
            where = f"{type(e).__name__}.sliders[{name!r}]"
            assert e.status.value == "", (where, e.status.value)
            logic_name = "lr" if name == "lr" else (e.logic.selected if name == "value"
                                                     else name)
            assert e.logic.state[logic_name] == pytest.approx(s.value), where
            assert e.readout.value == e._readout(e.logic.values()), where
            changed = (e.readout.value != before[0], e.image.value != before[1])
            assert changed == (True, True) or (name == "lr" and changed[1]), (where, changed)


def test_learning_rate_explorer_says_when_backprop_is_not_written():
    def todo(*args):
        raise NotImplementedError

    with pytest.raises(NotImplementedError):
        LearningRateExplorer(todo, plain_sgd)


def test_autograd_widget_buttons():
    e = AutogradExplorer()
    g = e.logic.values()["a.grad"]
    e.again_button.click()
    assert f"a.grad = {2 * g:.4g}" in e.readout.value
    e.zero_button.click()
    assert "a.grad = 0<" in e.readout.value
    e.sliders["a"].value = 0.5
    v = e.logic.values()
    assert f"a.grad = {v['a.grad']:.4g}" in e.readout.value and v["backward calls"] == 1


# ---------------------------------------------------------------------------
# what the package loads, and what it must never contain
# ---------------------------------------------------------------------------

def modules_after(code: str) -> set[str]:
    script = code + "\nimport sys\nprint(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout
    return set(out.split())


def test_import_loads_no_torch_no_answers_no_drawing():
    loaded = modules_after("import course_lib.widgets as w\n"
                           "w.GateLogic().values(); w.SoftmaxLogic().values()\n"
                           "w.NetworkLogic().values(); w.SigmoidLogic().values()")
    for banned in ("torch", "matplotlib", "ipywidgets"):
        assert banned not in loaded
    assert not any(m.startswith(("course_lib.reference", "course_lib.grading")) for m in loaded)


def test_building_a_widget_loads_no_torch_and_no_answers():
    loaded = modules_after("from course_lib.widgets import NetworkExplorer, GateExplorer\n"
                           "NetworkExplorer(); GateExplorer()")
    assert "torch" not in loaded and "matplotlib" in loaded
    assert not any(m.startswith(("course_lib.reference", "course_lib.grading")) for m in loaded)


def test_no_module_imports_the_answers():
    for path in PKG.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [a.name for a in node.names]
            for name in names:
                assert "reference" not in name and "grading" not in name, (path.name, name)


# ---------------------------------------------------------------------------
# drawing: what a move sends is the frame, with each number where it belongs
# ---------------------------------------------------------------------------

def test_the_png_a_move_sends_decodes_to_the_frame_pixel_for_pixel():
    """A move's PNG (zlib in two halves on two threads for a figure this big, one
    call for a small one) decodes to exactly the canvas's pixels."""
    import io
    import zlib

    from PIL import Image

    from course_lib.widgets._render import _adler32_combine, encode_png

    def decode(png):
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))

    e = NetworkExplorer()
    e.value_slider.value = 1.25
    frame = e.fig.rgb()
    assert np.array_equal(decode(e.image.value), frame)
    small = np.ascontiguousarray(frame[:40, :50])
    assert np.array_equal(decode(encode_png(small)), small)
    rgba = np.dstack([frame, np.full(frame.shape[:2], 255, np.uint8)])
    assert encode_png(rgba) == encode_png(frame)
    rng = np.random.default_rng(0)
    for n in (1, 65521, 65522, 300_001):
        a, b = (rng.integers(0, 256, k, dtype=np.uint8).tobytes() for k in (n, n // 3 + 5))
        assert _adler32_combine(zlib.adler32(a), zlib.adler32(b), len(b)) == zlib.adler32(a + b)


def test_a_label_is_drawn_in_its_colour_at_its_anchor_and_redrawn_when_it_changes():
    from course_lib.widgets._render import BlitFigure

    bf = BlitFigure((3, 2))  # 300 × 200 pixels
    ax = bf.fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 3)
    ax.set_ylim(0, 2)
    ax.set_axis_off()
    lab = bf.label(ax, 1.0, 0.5, "0.25", size=12, bold=True, color="#ff0000")
    bf.label(ax, 2.0, 1.5, "-7", ha="left", va="bottom", size=10, color="#0000ff",
             background="#00ff00")

    def pixels(img, rgb):
        d = np.abs(img.astype(int) - np.array(rgb)).sum(axis=2)
        ys, xs = np.nonzero(d < 60)
        return xs, ys

    img = bf.rgb()
    xs, ys = pixels(img, (255, 0, 0))
    # centred on data (1.0, 0.5): pixel (100, 150) from the top left
    assert len(xs) > 50
    assert abs((xs.min() + xs.max()) / 2 - 100) <= 2 and abs((ys.min() + ys.max()) / 2 - 150) <= 2
    wide = xs.max() - xs.min()
    # a box (green) whose left edge and bottom are at data (2.0, 1.5), pixel (200, 50),
    # with the blue text inside it
    gx, gy = pixels(img, (0, 255, 0))
    bx, by = pixels(img, (0, 0, 255))
    assert abs(gx.min() - 198) <= 1 and abs(gy.max() - 51) <= 1 and len(bx) > 10
    assert gx.min() < bx.min() and bx.max() < gx.max() and gy.min() < by.min()
    lab.text = "9"
    xs, ys = pixels(bf.rgb(), (255, 0, 0))
    assert 0 < xs.max() - xs.min() < wide / 2 and abs((xs.min() + xs.max()) / 2 - 100) <= 2


# Every explorer as a lesson builds it (the lessons' own cells, answers from the reference).
EXPLORERS_AS_THE_LESSONS_BUILD_THEM = {
    "GateExplorer": "from course_lib.widgets import GateExplorer as E\n"
                    "from course_lib.reference import neuron_forward_backward as f\n"
                    "E('neuron_expanded'); E(student_neuron=f)",
    "SigmoidExplorer": "from course_lib.widgets import SigmoidExplorer as E\n"
                       "from course_lib.reference import sigmoid_prime as f\n"
                       "E(student_sigmoid_prime=f)",
    "VanishingExplorer": "from course_lib.widgets import VanishingExplorer as E\nE()",
    "SoftmaxExplorer": "from course_lib.widgets import SoftmaxExplorer as E\n"
                       "from course_lib.reference import softmax_jacobian as f\n"
                       "E(n=4, logits=(1.5, 0.5, 0.0, -0.5), shift=True); E(student_jacobian=f)",
    "NetworkExplorer": "from course_lib.widgets import NetworkExplorer as E\n"
                       "from course_lib.reference import backprop as f\nE(student_backprop=f)",
    "LearningRateExplorer": "from course_lib.widgets import LearningRateExplorer as E\n"
                            "from course_lib import data\n"
                            "from course_lib.reference import backprop, sgd_step\n"
                            "E(backprop, sgd_step, *data.two_moons(n=400, noise=0.15, seed=1))",
    "EngineExplorer": "from course_lib.widgets.autograd import EngineExplorer as E\n"
                      "from course_lib.reference.autograd import Value\nE(Value)",
    "AutogradExplorer": "from course_lib.widgets.autograd import AutogradExplorer as E\nE()",
}


@pytest.mark.parametrize("explorer", sorted(EXPLORERS_AS_THE_LESSONS_BUILD_THEM))
def test_in_grading_mode_no_explorer_imports_ipywidgets(explorer):
    """The grading kernel shows no widget, so building an explorer there must not pay for
    ipywidgets (about 0.1 s of every graded notebook that builds one)."""
    probe = (EXPLORERS_AS_THE_LESSONS_BUILD_THEM[explorer]
             + "\nimport sys\nprint(sorted(m for m in sys.modules if m.split('.')[0] in "
               "('ipywidgets', 'matplotlib')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env={**__import__("os").environ, "COURSE_GRADING": "1"}, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def test_grading_mode_draws_nothing_and_keeps_the_numbers():
    """COURSE_GRADING=1 (the grading kernel): no pyplot, no figure, the logic still works."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from course_lib.figures import sigmoid as fs, chain_rule as fc\n"
        "from course_lib.widgets import GateExplorer\n"
        "assert fs.plot_sigmoid_and_derivative() is None and fc.draw_neuron() is None\n"
        "ex = GateExplorer('neuron')\n"
        "values = ex.refresh()\n"
        "assert ex.widget is None and values and all(isinstance(v, float) for v in "
        "values.values()), values\n"
        "print('pyplot loaded:', 'matplotlib.pyplot' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env={**__import__("os").environ, "COURSE_GRADING": "1"}, check=True)
    assert out.stdout.strip() == "pyplot loaded: False", out.stdout + out.stderr
