"""The judge's experiments (course_lib.judge.experiments) and the lesson-05 checks built on them.

Every experiment runs on the reference objects and returns only plain data
(what crosses the judge's boundary); the module loads without torch; and each
check of course_lib.grading.autograd reaches the same verdict, with the same
message, when the student's object sits behind a stand-in for the judge's
remote handle: an object that can only be called with plain data or asked to
run an experiment, whose inputs and outputs are copied and reduced to plain
data on the way, as they would be between the grading process and the kernel.
"""

from __future__ import annotations

import builtins
import copy
import re
import subprocess
import sys
from collections import deque

import numpy as np
import pytest
import torch
from saved_tensors import (
    backward_from_attribute,
    backward_from_input_attribute,
    keep_input_attribute,
    save_as_attribute,
)

from course_lib import reference as R
from course_lib.grading import autograd as G
from course_lib.judge.experiments import EXPERIMENTS, build_graph, run_experiment

F64 = torch.float64
PARTS = {
    "torch_backprop": ("shapes", "values", "repeat"),
    "MySigmoid": ("forward", "backward", "saved"),
    "MyLinear": ("forward", "backward", "autograd"),
    "grad_fn_chain": ("values", "edge"),
}


# ---------------------------------------------------------------------------
# plain data, and a stand-in for the boundary
# ---------------------------------------------------------------------------

def assert_plain(value, path="result"):
    """Only None, bool, int, float, str, numeric arrays and scalars, detached tensors, and
    tuples / lists / str-keyed dicts of those."""
    if value is None or type(value) in (bool, int, float, str):
        return
    if isinstance(value, np.ndarray | np.generic):
        assert value.dtype.kind in "biufc", f"{path}: array of dtype {value.dtype}"
        return
    if type(value) is torch.Tensor:
        assert value.grad_fn is None and value.grad is None, f"{path}: a tensor in a graph"
        return
    if type(value) in (tuple, list):
        for i, v in enumerate(value):
            assert_plain(v, f"{path}[{i}]")
        return
    if type(value) is dict:
        for k, v in value.items():
            assert type(k) is str, f"{path}: key {k!r} is not a str"
            assert_plain(v, f"{path}[{k!r}]")
        return
    raise AssertionError(f"{path}: {type(value).__name__} is not plain data ({value!r:.60})")


class Opaque:
    """What a value that is not plain data becomes across the boundary: a type name and a repr."""

    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return self.text


def across(value):
    """``value`` as the other side of the boundary receives it: copies, no graphs, no objects."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, np.ndarray | np.generic) and value.dtype.kind in "biufc":
        return copy.deepcopy(value)
    if isinstance(value, torch.Tensor):
        fresh = torch.tensor(value.detach().numpy().copy())
        return fresh.requires_grad_(value.requires_grad and fresh.is_floating_point())
    if type(value) is tuple:
        return tuple(across(v) for v in value)
    if type(value) is list:
        return [across(v) for v in value]
    if type(value) is dict and all(type(k) is str for k in value):
        return {k: across(v) for k, v in value.items()}
    name = type(value).__name__
    return type(name if name.isidentifier() else "Opaque", (Opaque,), {})(repr(value)[:200])


def same_exception(exc):
    """An exception of the same class name and message (the class itself does not cross)."""
    name = type(exc).__name__
    cls = getattr(builtins, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        cls = type(name, (Exception,), {})
    return cls(str(exc))


class Remote:
    """The judge's handle on an object in another process: call it or run an experiment."""

    judge_remote = True

    def __init__(self, obj):
        self._obj = obj

    def _cross(self, thunk):
        try:
            out = thunk()
        except Exception as exc:  # noqa: BLE001 - re-raised as the boundary would
            raise same_exception(exc) from None
        return across(out)

    def __call__(self, *args):
        args = across(copy.deepcopy(list(args)))
        return self._cross(lambda: self._obj(*args))

    def run_experiment(self, name, inputs):
        inputs = across(copy.deepcopy(inputs))
        return self._cross(lambda: run_experiment(self._obj, name, inputs))


def verdict(check, obj, part):
    """(exception class name, message), or None when the check passes.

    Addresses in printed objects (``<... object at 0x...>``) differ between any two
    graphs, so they are left out.
    """
    try:
        check(obj, part=part)
    except (AssertionError, NotImplementedError) as exc:
        return type(exc).__name__, re.sub(r"0x[0-9a-f]+", "0x...", str(exc))
    return None


# ---------------------------------------------------------------------------
# the experiments
# ---------------------------------------------------------------------------

def _rng():
    return np.random.default_rng(5)


def experiment_cases():
    """(experiment name, object, inputs): every registered experiment, on reference objects."""
    rng = _rng()
    X, W, b = rng.normal(size=(4, 3)), rng.normal(size=(2, 3)), rng.normal(size=2)
    z, g, dZ = rng.normal(size=(2, 3)), rng.normal(size=(2, 3)), rng.normal(size=(4, 2))
    params = [(rng.normal(size=(3, 2)), rng.normal(size=3)), (rng.normal(size=(1, 3)),
                                                                rng.normal(size=1))]
    net = {"W1": W, "b1": b, "W2": rng.normal(size=(3, 2)), "b2": rng.normal(size=3),
           "X": X, "Y": rng.normal(size=(4, 3))}
    graphs = {"sigmoid_affine": {"w": X[0], "b": 0.5, "x": X[1]},
              "two_layer_mse": net, "linear_mse_loss": net,
              "square_sum": {"a": X[0]}, "fan_out": {"M": W[:, :2], "v": b},
              "diamond": {"w": 0.3, "c": -1.2}, "custom_function": {"z": X[0]}}
    cases = [
        ("autograd_function_kind", R.MySigmoid, {}),
        ("autograd_function_kind", R.grad_fn_chain, {}),
        ("function_apply", R.MySigmoid, {"args": [z]}),
        ("function_apply", R.MyLinear, {"args": [X, W, b], "requires_grad": [True] * 3}),
        ("function_apply_many", R.MyLinear, {"args_list": [[X, W, b], [X, W + 1e-6, b]]}),
        ("function_grads_input_changed", R.MySigmoid,
         {"args": [z], "change": [g], "grad_out": g}),
        ("function_grads_input_changed", R.MyLinear,
         {"args": [X, W, b], "change": [None, None, b], "grad_out": dZ}),
        ("function_grads_saved_replaced", R.MySigmoid,
         {"args": [z], "saved": np.full(z.shape, 0.25), "grad_out": g}),
        ("function_backward", R.MyLinear, {"args": [X, W, b], "grad_out": dZ}),
        ("function_autograd_grads", R.MySigmoid,
         {"args": [z], "requires_grad": [True], "grad_out": g, "how": "backward"}),
        ("function_autograd_grads", R.MyLinear,
         {"args": [X, W, b], "requires_grad": [False, True, True], "grad_out": dZ,
          "how": "weighted_sum"}),
        ("call_twice", R.torch_backprop,
         {"args": (params, rng.normal(size=(5, 2)), rng.uniform(size=(5, 1)),
                   ("tanh", "sigmoid"), "mse")}),
    ]
    cases += [("walk_graph", R.grad_fn_chain, {"graph": name, "arrays": arrays})
              for name, arrays in graphs.items()]
    expression = [["leaf", 0.5], ["leaf", -1.5], ["mul", 0, 1], ["tanh", 2], ["radd", 3, 2.0],
                  ["pow", 4, 2.0], ["add", 5, 2]]  # lesson 05's engine (Value): a fan-out
    cases += [("value_backward", R.Value, {"nodes": expression}),
              ("value_topological_order", R.Value, {"nodes": expression})]
    return cases


def test_every_experiment_has_a_case():
    assert {name for name, _, _ in experiment_cases()} == set(EXPERIMENTS)


@pytest.mark.parametrize("name, obj, inputs", experiment_cases(),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_experiment_on_the_reference_returns_plain_data(name, obj, inputs):
    assert_plain(run_experiment(obj, name, inputs))


def test_experiment_results():
    """A few results read back: the experiments report the student's object faithfully."""
    rng = _rng()
    X, W, b = rng.normal(size=(4, 3)), rng.normal(size=(2, 3)), rng.normal(size=2)
    dZ = rng.normal(size=(4, 2))
    assert run_experiment(R.MyLinear, "autograd_function_kind", {})["is_function_class"]
    assert not run_experiment(R.grad_fn_chain, "autograd_function_kind", {})["is_function_class"]
    applied = run_experiment(R.MyLinear, "function_apply",
                             {"args": [X, W, b], "requires_grad": [True] * 3})
    assert applied["has_grad_fn"] and applied["out"].dtype == F64
    np.testing.assert_allclose(applied["out"].numpy(), X @ W.T + b)
    assert not run_experiment(R.MyLinear, "function_apply", {"args": [X, W, b]})["has_grad_fn"]
    # Several argument lists in one request: each output, in order, from its own inputs.
    many = run_experiment(R.MyLinear, "function_apply_many",
                          {"args_list": [[X, W, b], [X, 2 * W, b], [X[:1], W, -b]]})
    assert [tuple(out.shape) for out in many] == [(4, 2), (4, 2), (1, 2)]
    assert not any(out.requires_grad for out in many)
    for out, (x, w, bias) in zip(many, [(X, W, b), (X, 2 * W, b), (X[:1], W, -b)], strict=True):
        np.testing.assert_allclose(out.numpy(), x @ w.T + bias)
    # MySigmoid saves its output: z changing in place after forward leaves σ'(z) as it was,
    # and a saved s read back as u gives grad_out · u (1 - u).
    z, g, u = X[:2], dZ[:2, :1] * np.ones((1, 3)), rng.uniform(0.1, 0.9, size=(2, 3))
    s = 1 / (1 + np.exp(-z))
    (dz,) = run_experiment(R.MySigmoid, "function_grads_input_changed",
                           {"args": [z], "change": [np.ones_like(z)], "grad_out": g})
    np.testing.assert_allclose(dz.numpy(), g * s * (1 - s))
    (dz,) = run_experiment(R.MySigmoid, "function_grads_saved_replaced",
                           {"args": [z], "saved": u, "grad_out": g})
    np.testing.assert_allclose(dz.numpy(), g * u * (1 - u))
    # MyLinear saves its inputs X and W: a change to b after forward does not matter, a
    # change to W makes autograd refuse the saved W.
    grads = run_experiment(R.MyLinear, "function_grads_input_changed",
                           {"args": [X, W, b], "change": [None, None, np.ones(2)],
                            "grad_out": dZ})
    np.testing.assert_allclose(grads[1].numpy(), dZ.T @ X)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        run_experiment(R.MyLinear, "function_grads_input_changed",
                       {"args": [X, W, b], "change": [None, np.ones_like(W), None],
                        "grad_out": dZ})
    dX, dW, db = run_experiment(R.MyLinear, "function_backward",
                                {"args": [X, W, b], "grad_out": dZ})
    np.testing.assert_allclose(db.numpy(), dZ.sum(0))
    grads = run_experiment(R.MyLinear, "function_autograd_grads",
                           {"args": [X, W, b], "requires_grad": [False, True, True],
                            "grad_out": dZ, "how": "weighted_sum"})
    assert grads[0] is None
    np.testing.assert_allclose(grads[1].numpy(), dZ.T @ X)
    walked = run_experiment(R.grad_fn_chain, "walk_graph",
                            {"graph": "custom_function", "arrays": {"z": X[0]}})
    assert walked["sequence"] and walked["items"][1] == ["str", "str", "CubeBackward"]
    with pytest.raises(KeyError, match="no experiment named"):
        run_experiment(R.MyLinear, "nope", {})


def test_call_twice_sees_state_kept_between_calls():
    kept = {}

    def cached(params, X):  # returns the same array, updated in place, on every call
        out = kept.setdefault(id(params), np.zeros(2))
        out += 1.0
        return out

    runs = run_experiment(cached, "call_twice", {"args": ([np.ones(2)], np.ones(2))})
    assert runs["first"].tolist() == [1.0, 1.0]
    assert runs["first_later"].tolist() == runs["second"].tolist() == [2.0, 2.0]


def test_the_custom_graph_function_is_no_answer():
    t = build_graph("custom_function", {"z": np.arange(3.0)})
    assert "MySigmoidBackward" not in R.grad_fn_chain(t)
    assert R.grad_fn_chain(t)[:2] == ["SumBackward0", "CubeBackward"]


def test_experiments_import_without_torch():
    code = ("import sys, course_lib.judge.experiments as E; "
            "assert E.EXPERIMENTS; assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------
# the checks, through the stand-in boundary
# ---------------------------------------------------------------------------

def test_the_stand_in_hides_the_object():
    handle = Remote(R.MySigmoid)
    assert not hasattr(handle, "apply") and not isinstance(handle, type)
    with pytest.raises(AssertionError, match="must be a class"):
        G._function_class(Remote(R.grad_fn_chain), "MySigmoid")


@pytest.mark.parametrize("name", PARTS)
def test_reference_passes_every_part_through_the_boundary(name):
    for part in PARTS[name]:
        getattr(G, f"check_{name}")(Remote(getattr(R, name)), part=part)


def _function(name, forward, backward):
    return type(name, (torch.autograd.Function,),
                {"forward": staticmethod(forward), "backward": staticmethod(backward)})


def _save_output(ctx, z):
    s = torch.sigmoid(z)
    ctx.save_for_backward(s)
    return s


def _save_input(ctx, z):
    ctx.save_for_backward(z)
    return torch.sigmoid(z)


def _missing_factor(ctx, g):
    (s,) = ctx.saved_tensors
    return g * s


def _from_input(ctx, g):
    (z,) = ctx.saved_tensors
    return g * torch.sigmoid(z) * (1 - torch.sigmoid(z))


def _linear_forward(ctx, X, W, b):
    ctx.save_for_backward(X, W)
    return X @ W.T + b


def _db_not_summed(ctx, dZ):
    X, W = ctx.saved_tensors
    return dZ @ W, dZ.T @ X, dZ


def _linear_backward(ctx, dZ):
    X, W = ctx.saved_tensors
    return dZ @ W, dZ.T @ X, dZ.sum(0)


def _linear_no_bias(ctx, X, W, b):
    ctx.save_for_backward(X, W)
    return X @ W.T


def _walk(leaves=True, raw=False, dedup=True, name=lambda node: type(node).__name__):
    def grad_fn_chain(t):
        todo, out, seen = deque([t.grad_fn]), [], set()
        while todo:
            node = todo.popleft()
            if node is None or (dedup and node in seen):
                continue
            seen.add(node)
            if leaves or type(node).__name__ != "AccumulateGrad":
                out.append(node if raw else name(node))
            todo.extend(c for c, _ in node.next_functions)
        return out

    return grad_fn_chain


def _cached_backprop():
    cache = {}

    def torch_backprop(params, X, Y, activations, loss):
        key = tuple(id(W) for W, _ in params)
        if key not in cache:  # the mistake: leaves (and their .grad) kept from the first call
            cache[key] = (params, [(torch.tensor(W, requires_grad=True),
                                    torch.tensor(b, requires_grad=True)) for W, b in params])
        leaves = cache[key][1]
        A = torch.tensor(X)
        for W, b in leaves:
            Z = A @ W.T + b
            A = torch.sigmoid(Z)
        J = torch.nn.functional.binary_cross_entropy_with_logits(
            Z, torch.tensor(Y), reduction="sum") / A.shape[0]
        J.backward()
        return J.item(), [(W.grad.numpy(), b.grad.numpy()) for W, b in leaves]

    return torch_backprop


def _as_tensors(*args):
    J, grads = R.torch_backprop(*args)
    return J, [(torch.tensor(dW), torch.tensor(db)) for dW, db in grads]


def _linear_float32(ctx, X, W, b):
    ctx.save_for_backward(X, W)
    return (X @ W.T + b).float()


class Oops(Exception):
    """A student's own exception class: only its name and message cross the boundary."""


def _oops(ctx, *args):
    raise Oops("forward failed")


def _stub(*args):
    raise NotImplementedError()


class _NotAFunction:
    @staticmethod
    def apply(z):
        return torch.sigmoid(z)


WRONG = [
    # (check, part, wrong object, what the message names)
    ("MySigmoid", "backward", _function("S", _save_output, _missing_factor), "the factor (1 - s)"),
    ("MySigmoid", "saved", _function("S", _save_input, _from_input), "saved its input z"),
    ("MySigmoid", "saved", _function("S", save_as_attribute, backward_from_attribute),
     "saved nothing with ctx.save_for_backward"),
    ("MySigmoid", "saved", _function("S", keep_input_attribute, backward_from_input_attribute),
     "kept its input z"),
    ("MySigmoid", "forward", _NotAFunction, "subclasses torch.autograd.Function"),
    ("MySigmoid", "forward", _function("S", _stub, _stub), "not implemented yet"),
    ("MyLinear", "backward", _function("L", _linear_forward, _db_not_summed),
     "db was not summed"),
    ("MyLinear", "forward", _function("L", _linear_float32, _db_not_summed), "torch.float32"),
    ("MyLinear", "autograd", _function("L", _oops, _db_not_summed), "raised Oops: forward failed"),
    ("MyLinear", "autograd", _function("L", _linear_no_bias, _linear_backward),
     "forward ignores b"),
    ("grad_fn_chain", "values", _walk(leaves=False), "the leaves are missing"),
    ("grad_fn_chain", "values", _walk(raw=True), "not their names"),
    ("grad_fn_chain", "values", _walk(name=str), "printed form of the nodes"),
    ("grad_fn_chain", "edge", _walk(dedup=False), "listed more than once"),
    ("grad_fn_chain", "values", _stub, "not implemented yet"),
    ("torch_backprop", "repeat", _cached_backprop(), "gradients accumulated across calls"),
    ("torch_backprop", "shapes", _as_tensors, "is a torch.Tensor; return numpy arrays"),
]


@pytest.mark.parametrize("name, part, wrong, names", WRONG, ids=lambda v: v
                         if isinstance(v, str) and " " not in v else "")
def test_wrong_answers_get_the_same_verdict_through_the_boundary(name, part, wrong, names):
    check = getattr(G, f"check_{name}")
    here = verdict(check, wrong, part)
    assert here is not None and names in here[1], here
    assert verdict(check, Remote(wrong), part) == here


def test_a_right_answer_that_autograd_forgives_passes_both_ways():
    # An unsummed db passes the autograd part (torch sums it), locally and remotely.
    wrong = _function("L", _linear_forward, _db_not_summed)
    assert verdict(G.check_MyLinear, wrong, "autograd") is None
    assert verdict(G.check_MyLinear, Remote(wrong), "autograd") is None


# ---------------------------------------------------------------------------
# a kernel that forges what it reports about itself earns nothing by it
# ---------------------------------------------------------------------------

class Forging(Remote):
    """A kernel whose experiments lie wherever lying needs no right answer.

    It says every object is a Function class, and it runs "call_twice" as one call
    reported twice, with the arguments untouched. The experiments that compute values
    (outputs, gradients, names) it leaves honest: forging those means answering.
    """

    def run_experiment(self, name, inputs):
        if name == "autograd_function_kind":
            return {"is_function_class": True, "repr": "<class 'MySigmoid'>"}
        if name == "call_twice":
            args = inputs["args"]
            once = self._cross(lambda: self._obj(*copy.deepcopy(args)))
            return {"first": once, "first_later": copy.deepcopy(once),
                    "second": copy.deepcopy(once), "args_after": across(list(args))}
        return super().run_experiment(name, inputs)


def _shape_keyed_backprop():
    """torch_backprop that reuses its leaves for every params of the same shapes."""
    cache = {}

    def torch_backprop(params, X, Y, activations, loss):
        key = tuple(W.shape for W, _ in params)
        if key not in cache:
            cache[key] = [(torch.tensor(W, requires_grad=True), torch.tensor(b, requires_grad=True))
                          for W, b in params]
        leaves = cache[key]
        A = torch.tensor(X)
        for W, b in leaves:
            Z = A @ W.T + b
            A = torch.sigmoid(Z)
        J = torch.nn.functional.binary_cross_entropy_with_logits(
            Z, torch.tensor(Y), reduction="sum") / A.shape[0]
        J.backward()
        return J.item(), [(W.grad.numpy().copy(), b.grad.numpy().copy()) for W, b in leaves]

    return torch_backprop


@pytest.mark.parametrize("name, part, wrong, names", [
    ("MySigmoid", "saved", _function("S", _save_input, _from_input), "saved its input z"),
    ("MySigmoid", "saved", _function("S", save_as_attribute, backward_from_attribute),
     "saved nothing with ctx.save_for_backward"),
    ("MyLinear", "autograd", _function("L", _linear_no_bias, _linear_backward),
     "forward ignores b"),
    ("torch_backprop", "repeat", _shape_keyed_backprop(),
     "called twice with equal arguments: the second call"),
], ids=["saved-input", "saved-attribute", "gradcheck", "repeat"])
def test_forged_reports_about_the_kernel_earn_nothing(name, part, wrong, names):
    got = verdict(getattr(G, f"check_{name}"), Forging(wrong), part)
    assert got is not None and names in got[1], got


def test_forged_identity_report_is_all_the_repeat_part_trusts_the_kernel_with():
    # An id-keyed cache is visible only to calls on the very same objects: the honest
    # experiment finds it; a forged one hides it, and the point then rests on the two
    # ordinary calls, which such a cache passes.
    cached = _cached_backprop()
    assert "gradients accumulated across calls" in verdict(G.check_torch_backprop,
                                                           Remote(cached), "repeat")[1]
    assert verdict(G.check_torch_backprop, Forging(_cached_backprop()), "repeat") is None


def test_the_probes_work_after_a_notebook_imported_the_torch_stub(monkeypatch):
    """While a lesson of manual gradients is graded, `import torch` gives a stub whose
    every attribute raises ImportError; a notebook that imported it (a scratch cell)
    must not break the probes that grade its numpy answers."""
    import types

    from course_lib.judge import experiments
    from course_lib.judge.sandbox import NO_TORCH

    stub = types.ModuleType("torch")
    exec(compile(NO_TORCH, "torch/__init__.py", "exec"), stub.__dict__)
    monkeypatch.setitem(sys.modules, "torch", stub)
    value = np.array([1.0, 2.0])
    copy = experiments._snapshot((value, [value]))
    assert np.array_equal(copy[0], value) and copy[0] is not value and copy[1][0] is not value
