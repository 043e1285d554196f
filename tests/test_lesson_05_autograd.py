"""Lesson 05 (autograd): its grading checks, and graded submissions that make a known mistake.

The unit tests call the checks of course_lib.grading.autograd directly: the
reference and the notebook's own solutions pass every part for several grading
seeds, and each known mistake, written as a small wrong function or class,
fails with a message that names it. The submission tests grade two whole
notebooks with nbgrader (a kernel each): the cells a mistake affects score 0,
every other autograded cell keeps full marks, and the failing cell's message
names the mistake.
"""

from __future__ import annotations

import re
from collections import deque

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lessons import (
    LessonHarness,
    grade,
    grade_id,
    make_submission,
    release_path,
    source_path,
)
from saved_tensors import (
    backward_from_attribute,
    backward_from_input_attribute,
    keep_input_attribute,
    save_as_attribute,
)

from course_lib import reference as R
from course_lib.grading import autograd as G

ASSIGNMENT = "05_autograd"
F64 = torch.float64


def check(name):
    return getattr(G, f"check_{name}")


class TestLesson(LessonHarness):
    """Every check passes the reference and the notebook's own solutions, part by part, for
    several grading seeds, refuses an unknown part, and says "not implemented yet" for an
    unanswered exercise (tests/lessons.py; the parts are the manifest's)."""

    LESSON = "autograd"


# ---------------------------------------------------------------------------
# torch_backprop: a student-like implementation with switchable mistakes
# ---------------------------------------------------------------------------

ACT = {"sigmoid": torch.sigmoid, "relu": torch.relu, "tanh": torch.tanh,
       "identity": lambda z: z, "softmax": lambda z: torch.softmax(z, dim=1)}


def student_backprop(dtype=F64, per_sample=True, half=True, mse_loss_mean=False,
                     ce_on_probabilities=False, cache=None, as_tensors=False,
                     key=lambda params: tuple(id(W) for W, _ in params)):
    """torch_backprop as a student might write it, with one mistake switched on."""
    cache_key = key

    def torch_backprop(params, X, Y, activations, loss):
        key = cache_key(params)
        if cache is not None and key in cache:
            leaves = cache[key][1]  # the mistake: leaves (and their .grad) kept from before
        else:
            leaves = [(torch.tensor(W, dtype=dtype, requires_grad=True),
                       torch.tensor(b, dtype=dtype, requires_grad=True)) for W, b in params]
            if cache is not None:
                cache[key] = (params, leaves)  # keep params alive so ids are not reused
        A = torch.tensor(X, dtype=dtype)
        for (W, b), name in zip(leaves, activations, strict=True):
            Z = A @ W.T + b
            A = ACT[name](Z)
        N = A.shape[0] if per_sample else 1
        if loss == "mse":
            Yt = torch.tensor(Y, dtype=dtype)
            if mse_loss_mean:
                J = F.mse_loss(A, Yt)
            else:
                J = (0.5 if half else 1.0) * ((A - Yt) ** 2).sum() / N
        elif loss == "bce":
            J = F.binary_cross_entropy_with_logits(Z, torch.tensor(Y, dtype=dtype),
                                                   reduction="sum") / N
        else:
            Y = np.asarray(Y)
            target = torch.tensor(Y) if Y.ndim == 1 else torch.tensor(Y, dtype=dtype)
            J = F.cross_entropy(A if ce_on_probabilities else Z, target, reduction="sum") / N
        J.backward()
        if as_tensors:
            return J.item(), [(W.grad, b.grad) for W, b in leaves]
        return J.item(), [(W.grad.numpy(), b.grad.numpy()) for W, b in leaves]

    return torch_backprop


def test_student_like_backprop_without_mistakes_passes():
    G.check_torch_backprop(student_backprop())


@pytest.mark.parametrize("wrong, part, message", [
    (student_backprop(per_sample=False), "values", "the batch mean is missing"),
    (student_backprop(half=False), "values", r"the ½ of the course's MSE is missing"),
    (student_backprop(mse_loss_mean=True), "values", "F.mse_loss with its default reduction"),
    (student_backprop(ce_on_probabilities=True), "values", "softmax is applied twice"),
    (student_backprop(dtype=torch.float32), "shapes", "float32"),
    (student_backprop(dtype=torch.float32), "values", "float32"),
    (student_backprop(as_tensors=True), "shapes", "is a torch.Tensor; return numpy arrays"),
    (student_backprop(cache={}), "repeat", "gradients accumulated across calls"),
    (student_backprop(cache={}, key=lambda params: len(params)), "repeat",
     "(?s)called twice with equal arguments: the second call, compared with the first.*"
     "gradients accumulated across calls"),
])
def test_torch_backprop_mistakes_are_named(wrong, part, message):
    with pytest.raises(AssertionError, match=message):
        G.check_torch_backprop(wrong, part=part)


def test_float32_values_cast_to_float64_get_the_precision_hint():
    f32 = student_backprop(dtype=torch.float32)

    def cast(*args):
        J, grads = f32(*args)
        return J, [(dW.astype(np.float64), db.astype(np.float64)) for dW, db in grads]

    with pytest.raises(AssertionError, match="float32 precision"):
        G.check_torch_backprop(cast, part="values")


def updating_params_in_place(*args):
    """The right gradients, then a gradient step done in place on the caller's arrays."""
    J, grads = R.torch_backprop(*args)
    for (W, b), (dW, db) in zip(args[0], grads, strict=True):
        W -= 0.1 * dW
        b -= 0.1 * db
    return J, grads


def test_changing_params_in_place_costs_only_the_repeat_part():
    # The text's rule "leave the arguments alone" is graded by comparing params before and
    # after a call, in the repeat cell (1 point); the other parts give every call a copy.
    for part in ("shapes", "values"):
        G.check_torch_backprop(updating_params_in_place, part=part)
    with pytest.raises(AssertionError, match="it modified the arrays in params"):
        G.check_torch_backprop(updating_params_in_place, part="repeat")


def test_changing_X_in_place_costs_only_the_repeat_part():
    def scaling_X_in_place(params, X, Y, activations, loss):
        out = R.torch_backprop(params, X, Y, activations, loss)
        X *= 2.0  # the caller's array
        return out

    for part in ("shapes", "values"):
        G.check_torch_backprop(scaling_X_in_place, part=part)
    with pytest.raises(AssertionError, match="it modified its argument X in place: expected X "
                                             "unchanged"):
        G.check_torch_backprop(scaling_X_in_place, part="repeat")


def test_torch_backprop_loss_as_tensor_and_wrong_structure():
    def tensor_loss(*args):
        J, grads = R.torch_backprop(*args)
        return torch.tensor(J), grads

    def flat(*args):
        J, grads = R.torch_backprop(*args)
        return J, [g for pair in grads for g in pair]

    def transposed(*args):
        J, grads = R.torch_backprop(*args)
        return J, [(dW.T, db) for dW, db in grads]

    with pytest.raises(AssertionError, match="loss as a torch.Tensor"):
        G.check_torch_backprop(tensor_loss, part="shapes")
    with pytest.raises(AssertionError, match=r"list of \d \(dW, db\) pair"):
        G.check_torch_backprop(flat, part="shapes")
    with pytest.raises(AssertionError, match="the transpose"):
        G.check_torch_backprop(transposed, part="shapes")


# ---------------------------------------------------------------------------
# MySigmoid
# ---------------------------------------------------------------------------

def sigmoid_function(forward, backward):
    """A torch.autograd.Function subclass from two plain functions."""
    return type("WrongSigmoid", (torch.autograd.Function,),
                {"forward": staticmethod(forward), "backward": staticmethod(backward)})


def save_output(ctx, z):
    s = torch.sigmoid(z)
    ctx.save_for_backward(s)
    return s


def right_backward(ctx, g):
    (s,) = ctx.saved_tensors
    return g * s * (1 - s)


def save_input(ctx, z):
    ctx.save_for_backward(z)
    return torch.sigmoid(z)


def backward_from_input(ctx, g):
    (z,) = ctx.saved_tensors
    s = torch.sigmoid(z)
    return g * s * (1 - s)


def save_input_copy(ctx, z):
    ctx.save_for_backward(z.clone())
    return torch.sigmoid(z)


def missing_factor(ctx, g):
    (s,) = ctx.saved_tensors
    return g * s


def sigma_prime_of_s(ctx, g):
    (s,) = ctx.saved_tensors
    t = torch.sigmoid(s)
    return g * t * (1 - t)


def no_factor_s(ctx, g):
    (s,) = ctx.saved_tensors
    return g * (1 - s)


def minus_sign_forward(ctx, z):
    s = torch.sigmoid(-z)
    ctx.save_for_backward(s)
    return s


def float32_forward(ctx, z):
    s = torch.sigmoid(z).float()
    ctx.save_for_backward(s)
    return s


def overflowing_forward(ctx, z):
    s = torch.exp(z) / (1 + torch.exp(z))  # inf / inf = nan once e^z overflows
    ctx.save_for_backward(s)
    return s


def unchanged_backward(ctx, g):
    return g


def test_sigmoid_built_from_parts_passes():
    G.check_MySigmoid(sigmoid_function(save_output, right_backward))


@pytest.mark.parametrize("wrong, part, message", [
    (sigmoid_function(save_output, missing_factor), "backward", r"the factor \(1 - s\)"),
    (sigmoid_function(save_output, sigma_prime_of_s), "backward", r"σ'\(σ\(z\)\)"),
    (sigmoid_function(save_output, no_factor_s), "backward", "the factor s of"),
    (sigmoid_function(minus_sign_forward, right_backward), "forward", "minus sign"),
    (sigmoid_function(float32_forward, right_backward), "forward", "float32"),
    (sigmoid_function(save_input, backward_from_input), "saved", "saved its input z"),
    (sigmoid_function(save_as_attribute, backward_from_attribute), "saved",
     "saved nothing with ctx.save_for_backward"),
    (sigmoid_function(keep_input_attribute, backward_from_input_attribute), "saved",
     "kept its input z .* backward used the new values"),
    (sigmoid_function(save_input_copy, backward_from_input), "saved", "saved its input z"),
])
def test_sigmoid_mistakes_are_named(wrong, part, message):
    with pytest.raises(AssertionError, match=message):
        G.check_MySigmoid(wrong, part=part)


def test_an_overflowing_forward_costs_only_the_forward_part():
    # The rule "σ(z) for any finite z" is graded on saturated inputs (z = ±800), in the
    # forward cell only: backward and saved see moderate z.
    wrong = sigmoid_function(overflowing_forward, right_backward)
    with pytest.raises(AssertionError) as info:
        G.check_MySigmoid(wrong, part="forward")
    assert "must be right for any finite z" in str(info.value), info.value
    assert "overflows for large |z|" in str(info.value), info.value
    assert re.search(r"expected \[.*\], got \[.*nan", str(info.value)), info.value
    G.check_MySigmoid(wrong, part="backward")
    G.check_MySigmoid(wrong, part="saved")


def test_backward_returning_grad_out_unchanged_is_named():
    wrong = sigmoid_function(save_output, unchanged_backward)
    G.check_MySigmoid(wrong, part="forward")
    with pytest.raises(AssertionError) as info:
        G.check_MySigmoid(wrong, part="backward")
    assert ("This matches a known mistake: backward returned grad_out unchanged: the local "
            "derivative σ'(z) = s(1 - s) is missing") in str(info.value), info.value
    # Such a backward uses nothing that forward saved: the saved part has no evidence to award
    # its point on, and says so (the text states it).
    with pytest.raises(AssertionError) as info:
        G.check_MySigmoid(wrong, part="saved")
    assert "got grad_out itself" in str(info.value), info.value
    assert "graded once backward computes from the saved s" in str(info.value), info.value


def test_saving_the_input_still_gives_right_gradients():
    # Only the "saved" part asks for the output to be saved.
    wrong = sigmoid_function(save_input, backward_from_input)
    G.check_MySigmoid(wrong, part="forward")
    G.check_MySigmoid(wrong, part="backward")


def test_saving_the_input_shows_in_the_gradients_when_z_changes_in_place():
    # The "saved" part judges gradients, not ctx.saved_tensors: autograd refuses a saved z
    # that changed after forward, and a kept z gives σ'(z + Δ) where σ'(z) was due.
    with pytest.raises(AssertionError) as info:
        G.check_MySigmoid(sigmoid_function(save_input, backward_from_input), part="saved")
    assert "raised RuntimeError: one of the variables needed for gradient computation has " \
           "been modified by an inplace operation" in str(info.value)
    with pytest.raises(AssertionError) as info:
        G.check_MySigmoid(sigmoid_function(keep_input_attribute, backward_from_input_attribute),
                          part="saved")
    assert re.search(r"z changes in place between forward and backward .*: wrong values: "
                     r"12 of 12 entries differ", str(info.value)), info.value


@pytest.mark.parametrize("backward", [missing_factor, sigma_prime_of_s, no_factor_s])
def test_a_wrong_formula_in_backward_costs_only_the_backward_part(backward):
    # The "saved" part accepts the known wrong formulas of the "backward" part when they are
    # computed from the saved output, so that one mistake does not cost two parts.
    wrong = sigmoid_function(save_output, backward)
    G.check_MySigmoid(wrong, part="saved")
    with pytest.raises(AssertionError, match="known mistake"):
        G.check_MySigmoid(wrong, part="backward")


def test_a_wrong_formula_does_not_hide_what_was_saved():
    def missing_factor_from_attribute(ctx, g):
        return g * ctx.s

    with pytest.raises(AssertionError, match="saved nothing with ctx.save_for_backward"):
        G.check_MySigmoid(sigmoid_function(save_as_attribute, missing_factor_from_attribute),
                          part="saved")


def test_backward_must_use_what_forward_saved():
    # What forward saved reads back as another tensor u: backward gives grad_out · u (1 - u).
    with pytest.raises(AssertionError) as info:
        G.check_MySigmoid(sigmoid_function(save_as_attribute, backward_from_attribute),
                          part="saved")
    assert re.search(r"reads back in backward as another tensor u .*: wrong values: "
                     r"12 of 12 entries differ", str(info.value)), info.value


def test_a_plain_class_is_not_a_function():
    class NotAFunction:
        @staticmethod
        def apply(z):
            return torch.sigmoid(z)

    with pytest.raises(AssertionError, match="subclasses torch.autograd.Function"):
        G.check_MySigmoid(NotAFunction, part="forward")


# ---------------------------------------------------------------------------
# MyLinear
# ---------------------------------------------------------------------------

def linear_function(forward=None, backward=None):
    def right_forward(ctx, X, W, b):
        ctx.save_for_backward(X, W)
        return X @ W.T + b

    def right_backward(ctx, dZ):
        X, W = ctx.saved_tensors
        return dZ @ W, dZ.T @ X, dZ.sum(0)

    return type("WrongLinear", (torch.autograd.Function,),
                {"forward": staticmethod(forward or right_forward),
                 "backward": staticmethod(backward or right_backward)})


def dw_transposed(ctx, dZ):
    X, W = ctx.saved_tensors
    return dZ @ W, X.T @ dZ, dZ.sum(0)


def db_not_summed(ctx, dZ):
    X, W = ctx.saved_tensors
    return dZ @ W, dZ.T @ X, dZ


def db_mean(ctx, dZ):
    X, W = ctx.saved_tensors
    return dZ @ W, dZ.T @ X, dZ.mean(0)


def dx_with_transpose(ctx, dZ):
    X, W = ctx.saved_tensors
    return dZ @ W.T, dZ.T @ X, dZ.sum(0)


def forward_without_transpose(ctx, X, W, b):
    ctx.save_for_backward(X, W)
    return X @ W + b


def forward_without_bias(ctx, X, W, b):
    ctx.save_for_backward(X, W)
    return X @ W.T


def test_linear_built_from_parts_passes():
    G.check_MyLinear(linear_function())


@pytest.mark.parametrize("wrong, part, message", [
    (linear_function(backward=dw_transposed), "backward", "dW is transposed|the transpose"),
    (linear_function(backward=db_not_summed), "backward", "db was not summed over the batch"),
    (linear_function(backward=db_mean), "backward", "it is the sum"),
    (linear_function(backward=dx_with_transpose), "backward",
     "without a transpose|raised RuntimeError"),
    (linear_function(forward=forward_without_transpose), "forward",
     "W is not transposed|raised RuntimeError"),
    (linear_function(forward=forward_without_bias), "forward", "the bias b is missing"),
    (linear_function(forward=forward_without_bias), "autograd",
     r"gradcheck\(MyLinear.apply, \(X, W, b\)\) .* b.grad is not 0.*forward ignores b"),
])
def test_linear_mistakes_are_named(wrong, part, message):
    with pytest.raises(AssertionError, match=message):
        G.check_MyLinear(wrong, part=part)


def test_autograd_hides_an_unsummed_bias_gradient():
    # PyTorch sums a (N, n_out) gradient for b of shape (n_out,) by itself: the autograd
    # part passes, and only the direct call of backward sees the mistake.
    wrong = linear_function(backward=db_not_summed)
    G.check_MyLinear(wrong, part="autograd")
    with pytest.raises(AssertionError, match="db was not summed over the batch"):
        G.check_MyLinear(wrong, part="backward")


# ---------------------------------------------------------------------------
# grad_fn_chain
# ---------------------------------------------------------------------------

def walk(name=lambda node: type(node).__name__, leaves=True, dedup=True, dfs=False,
         root=True, reverse=False, raw=False):
    """grad_fn_chain with one mistake switched on."""
    def grad_fn_chain(t):
        todo = deque([t.grad_fn] if root else [c for c, _ in t.grad_fn.next_functions])
        out, seen = [], set()
        while todo:
            node = todo.pop() if dfs else todo.popleft()
            if node is None or (dedup and node in seen):
                continue
            seen.add(node)
            if leaves or type(node).__name__ != "AccumulateGrad":
                out.append(node if raw else name(node))
            children = [c for c, _ in node.next_functions]
            todo.extend(reversed(children) if dfs else children)
        return out[::-1] if reverse else out

    return grad_fn_chain


def test_walk_without_mistakes_passes():
    G.check_grad_fn_chain(walk())


@pytest.mark.parametrize("wrong, part, message", [
    (walk(leaves=False), "values", "the leaves are missing"),
    (walk(root=False), "values", "the root is missing"),
    (walk(dedup=False), "edge", "listed more than once"),
    (walk(dfs=True), "values", "the order is depth-first"),
    (walk(name=lambda n: n.name()), "values", r"node.name\(\)"),
    (walk(reverse=True), "values", "from the leaves to t"),
    (walk(name=str), "values", "printed form of the nodes"),
    (walk(raw=True), "values", "not their names"),
])
def test_grad_fn_chain_mistakes_are_named(wrong, part, message):
    with pytest.raises(AssertionError, match=message):
        G.check_grad_fn_chain(wrong, part=part)


def test_grad_fn_chain_returning_tensors():
    def tensors(t):
        return [t]

    with pytest.raises(AssertionError, match="returned tensors"):
        G.check_grad_fn_chain(tensors, part="values")


# ---------------------------------------------------------------------------
# graded submissions: two notebooks, four mistakes each
# ---------------------------------------------------------------------------

BACKPROP_TEMPLATE = '''
def torch_backprop(params, X, Y, activations, loss):
    act = {"sigmoid": torch.sigmoid, "relu": torch.relu, "tanh": torch.tanh,
           "identity": lambda z: z, "softmax": lambda z: torch.softmax(z, dim=1)}
    LEAVES
    A = torch.tensor(X)
    for (W, b), name in zip(leaves, activations):
        Z = A @ W.T + b
        A = act[name](Z)
    N = DIVISOR
    if loss == "mse":
        J = 0.5 * ((A - torch.tensor(Y)) ** 2).sum() / N
    elif loss == "bce":
        J = F.binary_cross_entropy_with_logits(Z, torch.tensor(Y), reduction="sum") / N
    else:
        Y = np.asarray(Y)
        target = torch.tensor(Y) if Y.ndim == 1 else torch.tensor(Y, dtype=torch.float64)
        J = F.cross_entropy(Z, target, reduction="sum") / N
    J.backward()
    return J.item(), [(W.grad.numpy(), b.grad.numpy()) for W, b in leaves]
'''
FRESH_LEAVES = ("leaves = [(torch.tensor(W, requires_grad=True), torch.tensor(b, requires_grad="
                "True)) for W, b in params]")
# Built once per params list and kept: the .grad of these leaves adds up across calls.
CACHED_LEAVES = """key = tuple(id(W) for W, _ in params)
    if key not in _LEAVES:
        _LEAVES[key] = (params, [(torch.tensor(W, requires_grad=True),
                                  torch.tensor(b, requires_grad=True)) for W, b in params])
    leaves = _LEAVES[key][1]"""


def backprop_code(leaves=FRESH_LEAVES, divisor="A.shape[0]"):
    code = BACKPROP_TEMPLATE.replace("LEAVES", leaves).replace("DIVISOR", divisor)
    return ("_LEAVES = {}\n" if "_LEAVES" in leaves else "") + code.strip("\n")


def sigmoid_code(backward_line):
    return f'''
class MySigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z):
        s = torch.sigmoid(z)
        ctx.save_for_backward(s)
        return s

    @staticmethod
    def backward(ctx, grad_out):
        (s,) = ctx.saved_tensors
        {backward_line}
'''.strip("\n")


def linear_code(return_line):
    return f'''
class MyLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, X, W, b):
        ctx.save_for_backward(X, W)
        return X @ W.T + b

    @staticmethod
    def backward(ctx, dZ):
        X, W = ctx.saved_tensors
        {return_line}
'''.strip("\n")


def chain_code(leaf_test):
    return f'''
def grad_fn_chain(t):
    names, seen, queue = [], set(), deque([t.grad_fn])
    while queue:
        node = queue.popleft()
        if node is None or node in seen:
            continue
        seen.add(node)
        {leaf_test}
        queue.extend(child for child, _ in node.next_functions)
    return names
'''.strip("\n")


IN_PLACE_STEP = """
_right_torch_backprop = torch_backprop


def torch_backprop(params, X, Y, activations, loss):
    J, grads = _right_torch_backprop(params, X, Y, activations, loss)
    for (W, b), (dW, db) in zip(params, grads):  # a gradient step on the caller's arrays
        W -= 0.1 * dW
        b -= 0.1 * db
    return J, grads"""
OVERFLOWING_SIGMOID = """
class MySigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z):
        s = torch.exp(z) / (1 + torch.exp(z))
        ctx.save_for_backward(s)
        return s

    @staticmethod
    def backward(ctx, grad_out):
        (s,) = ctx.saved_tensors
        return grad_out * s * (1 - s)"""

def edited(answer_id, old, new):
    """The source notebook's answer cell ``answer_id`` with ``old`` replaced by ``new``."""
    nb = nbformat.read(str(source_path(ASSIGNMENT)), as_version=4)
    source = next(c.source for c in nb.cells if grade_id(c) == answer_id)
    assert old in source, old
    return source.replace(old, new)


ENGINE_MUL = "self.grad += other.data * out.grad\n            other.grad += self.data * out.grad"

SUBMISSIONS = {
    # name: ({answer cell: code}, {graded cell that must score 0: what its message names})
    # The engine of part A: `=` instead of `+=` in the backward of *. Each use of a node
    # alone is right (the arithmetic and functions cells); fan-outs are not, and a network
    # is full of them, so the training cell built on this engine loses its points too.
    "engine_overwrites_gradients": (
        {"Value_answer": edited("Value_answer", ENGINE_MUL, ENGINE_MUL.replace("+=", "="))},
        {"Value_accumulate": "overwritten instead of accumulated",
         "Value_torch": None,
         "engine_train_values": None}),
    "engine_train_without_zero_grad": (
        {"engine_train_answer": edited("engine_train_answer", "p.grad = 0.0", "pass")},
        {"engine_train_values": "the gradients were not zeroed between steps"}),
    "mean_factor_sum_leaves": (
        {"torch_backprop_answer": backprop_code(divisor="1"),
         "MySigmoid_answer": sigmoid_code("return grad_out * s"),
         "MyLinear_answer": linear_code("return dZ @ W, dZ.T @ X, dZ"),
         "grad_fn_chain_answer": chain_code(
             'if type(node).__name__ != "AccumulateGrad":\n            '
             'names.append(type(node).__name__)')},
        {"torch_backprop_values": "the batch mean is missing",
         "MySigmoid_backward": r"the factor \(1 - s\)",
         "MyLinear_backward": "db was not summed over the batch",
         "grad_fn_chain_values": "the leaves are missing",
         "grad_fn_chain_edge": None}),
    "reused_leaves_sigma_twice_transpose_names": (
        {"torch_backprop_answer": backprop_code(leaves=CACHED_LEAVES),
         "MySigmoid_answer": sigmoid_code(
             "return grad_out * torch.sigmoid(s) * (1 - torch.sigmoid(s))"),
         "MyLinear_answer": linear_code("return dZ @ W, X.T @ dZ, dZ.sum(0)"),
         "grad_fn_chain_answer": chain_code("names.append(str(node))")},
        # Leaves kept between calls cost the repeat cell only: the values cell gives every call
        # fresh copies of the arrays (its finite differences too), so no leaf is reused there.
        {"torch_backprop_repeat": "gradients accumulated across calls",
         "MySigmoid_backward": r"σ'\(σ\(z\)\)",
         "MyLinear_backward": "transpose",
         "MyLinear_autograd": None,  # autograd refuses a gradient of the wrong shape
         "grad_fn_chain_values": "printed form",
         "grad_fn_chain_edge": None}),
    # Two rules the text states, each broken alone: each costs only its own cell.
    "params_changed_in_place_sigmoid_overflows": (
        {"torch_backprop_answer": backprop_code() + "\n" + IN_PLACE_STEP,
         "MySigmoid_answer": OVERFLOWING_SIGMOID.strip("\n")},
        {"torch_backprop_repeat": "modified its argument params in place",
         "MySigmoid_forward": r"σ\(±800\).*your formula overflows"}),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", SUBMISSIONS)
def test_graded_submission_loses_exactly_the_affected_cells(name, tmp_path):
    answers, failing = SUBMISSIONS[name]
    result = grade(make_submission(ASSIGNMENT, answers, tmp_path), ASSIGNMENT)
    assert result.status == "ok"
    for cell in result.cells:
        if cell.grade_id.startswith("written_"):
            continue
        if cell.grade_id in failing:
            assert cell.score == 0, (cell.grade_id, cell.score, cell.message)
            if failing[cell.grade_id]:
                assert re.search(failing[cell.grade_id], cell.message), (
                    cell.grade_id, cell.message)
        else:
            assert cell.score == cell.max_score, (cell.grade_id, cell.message)


@pytest.mark.slow
def test_the_release_with_nothing_answered_scores_zero_on_the_engine_cells(tmp_path):
    # The notebook students start from: every exercise unanswered. The engine's cells
    # (part A) score 0 like every other autograded cell, and the notebook still runs
    # through (the demonstration cells that use Value fail or show nothing).
    path = tmp_path / "submission.ipynb"
    path.write_bytes(release_path(ASSIGNMENT).read_bytes())
    result = grade(path, ASSIGNMENT)
    assert result.status in ("ok", "awaiting_hand_grading"), (result.status, result.flags)
    engine = [c.grade_id for c in result.cells if c.grade_id.startswith(("Value_", "engine_"))]
    assert engine == ["Value_arithmetic", "Value_functions", "Value_topo", "Value_accumulate",
                      "Value_torch", "engine_train_values"]
    for cell in result.cells:
        if not cell.grade_id.startswith("written_"):
            assert cell.score == 0, (cell.grade_id, cell.score)


# ---------------------------------------------------------------------------
# the figure helper
# ---------------------------------------------------------------------------

def test_grad_fn_graph_layers_and_drawing():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from course_lib.figures.autograd import draw_grad_fn_graph, graph_layers

    w = torch.tensor(2.0, dtype=F64, requires_grad=True)
    b = torch.tensor(0.5, dtype=F64, requires_grad=True)
    f = torch.sigmoid(w * 3.0 + b) + w * w
    layers, edges = graph_layers(f)
    names = [[type(n).__name__ for n in layer] for layer in layers]
    assert names[0] == ["AddBackward0"]
    assert sum(map(len, layers)) == len(R.grad_fn_chain(f))  # every node once
    assert max(edges.values()) == 2  # w * w: two entries of next_functions, one edge
    for parent, child in edges:  # every arrow points down
        row = {n: i for i, layer in enumerate(layers) for n in layer}
        assert row[parent] < row[child]
    bottom, _ = graph_layers(f, leaves_at_bottom=True)
    assert {type(n).__name__ for n in bottom[-1]} == {"AccumulateGrad"}
    ax = draw_grad_fn_graph(f, names={"w": w, "b": b})
    labels = [t.get_text() for t in ax.texts]
    assert "AccumulateGrad\nw (scalar)" in labels and "×2" in labels
    plt.close("all")
    with pytest.raises(ValueError, match="has no grad_fn"):
        graph_layers(w)
