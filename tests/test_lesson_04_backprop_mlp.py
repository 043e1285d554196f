"""Lesson 04 (backprop through an MLP): its grading checks, and graded submissions with mistakes.

The unit tests call the checks of course_lib.grading.mlp directly: the reference
and the notebook's own solutions pass every part for several grading seeds, and
each known mistake, written as a small wrong function, fails with a message that
names it (and, for backprop, says which layer's which gradient is wrong first).
The submission tests grade whole notebooks with nbgrader (a kernel each, a few
seconds): the cells a mistake affects score 0, every other autograded cell keeps
full marks, and the failing cell's message names the mistake.
"""

from __future__ import annotations

import re

import nbformat
import numpy as np
import pytest
from lessons import LessonHarness, grade, lesson_parts, make_submission, source_path

from course_lib import nets
from course_lib import reference as R
from course_lib.grading import mlp as G

ASSIGNMENT = "04_backprop_mlp"
PARTS = lesson_parts(ASSIGNMENT)  # {function: its parts}, from the manifest


def check(name):
    return getattr(G, f"check_{name}")


class TestLesson(LessonHarness):
    """Every check passes the reference and the notebook's own solutions, part by part, for
    several grading seeds, refuses an unknown part, and says "not implemented yet" for an
    unanswered exercise (tests/lessons.py; the parts are the manifest's)."""

    LESSON = "mlp"


def test_the_variant_without_mistakes_is_the_reference():
    """The grader's mistake simulator, with no mistake switched on, is the reference."""
    rng = np.random.default_rng(0)
    for last, loss in [("identity", "mse"), ("softmax", "mse"), ("relu", "mse"),
                       ("sigmoid", "bce"), ("softmax", "cross_entropy"),
                       ("identity", "cross_entropy")]:
        for hidden in G._hidden_cycle():
            params, X, Y, acts = G._random_net(rng, last, loss, hidden, 5)
            assert G._match_all(G._variant(params, X, Y, acts, loss),
                                R.backprop(params, X, Y, acts, loss)[1])


# ---------------------------------------------------------------------------
# dense_forward, dense_backward, sgd_step: each known mistake is named
# ---------------------------------------------------------------------------

def dense_backward_loop_overwrites(dZ, A_prev, W):
    for n in range(dZ.shape[0]):  # `=` where `+=` was meant
        dW = np.outer(dZ[n], A_prev[n])
        db = dZ[n]
    return dZ @ W, dW, db


def sgd_with(update_W, update_b):
    """An sgd_step whose new W and b are update_W(W, dW, lr) and update_b(b, db, lr)."""
    def sgd_step(params, grads, lr):
        return [(update_W(W, dW, lr), update_b(b, db, lr))
                for (W, b), (dW, db) in zip(params, grads, strict=True)]
    return sgd_step


def sgd_in_place(params, grads, lr):
    for (W, b), (dW, db) in zip(params, grads, strict=True):
        W -= lr * dW
        b -= lr * db
    return params


MISTAKES = [
    # (check, part, wrong function, what the message must say)
    ("dense_forward", "values", lambda A, W, b: A @ W.T, "the bias is missing"),
    ("dense_forward", "values", lambda A, W, b: A @ W.T - b, "the bias is subtracted"),
    ("dense_forward", "shape", lambda A, W, b: A @ W + b, "W is not transposed"),
    ("dense_forward", "values", lambda A, W, b: A @ W + b, "W is not transposed"),
    ("dense_forward", "shape", lambda A, W, b: W @ A.T + b[:, None], "you returned Zᵀ"),
    ("dense_backward", "shapes", lambda dZ, A, W: (dZ @ W, A.T @ dZ, dZ.sum(0)),
     "dW is transposed: A_prev.T @ dZ"),
    ("dense_backward", "single", lambda dZ, A, W: (dZ @ W, A.T @ dZ, dZ.sum(0)),
     "dW is transposed: A_prev.T @ dZ"),
    ("dense_backward", "batch", lambda dZ, A, W: (dZ @ W, A.T @ dZ, dZ.sum(0)),
     "dW is transposed"),
    ("dense_backward", "shapes", lambda dZ, A, W: (dZ @ W.T, dZ.T @ A, dZ.sum(0)),
     r"dA_prev = dZ @ W.T is the wrong product"),
    ("dense_backward", "batch", lambda dZ, A, W: (dZ @ W, dZ.T @ A / len(dZ), dZ.mean(0)),
     "the 1/N is applied twice"),
    ("dense_backward", "batch", dense_backward_loop_overwrites,
     "overwritten instead of accumulated"),
    ("dense_backward", "batch", lambda dZ, A, W: (dZ @ W, np.outer(dZ[0], A[0]), dZ[0]),
     "only the FIRST sample"),
    ("dense_backward", "single", lambda dZ, A, W: (dZ @ W / len(dZ) / 2, dZ.T @ A, dZ.sum(0)),
     r"W of shape \(\d+, \d+\): dA_prev: wrong values"),
    ("dense_backward", "shapes", lambda dZ, A, W: (dZ.T @ A, dZ.sum(0), dZ @ W),
     "the wrong order"),
    ("dense_backward", "shapes", lambda dZ, A, W: (dZ @ W, dZ.T @ A, dZ.sum(0, keepdims=True)),
     r"db has shape \(1, n_out\)"),
    ("dense_backward", "shapes", lambda dZ, A, W: (dZ @ W, dZ.T @ A, dZ.sum(1)),
     "summed over the wrong axis"),
    ("dense_backward", "shapes", lambda dZ, A, W: (dZ @ W, dZ.T @ A),
     r"must return 3 values \(dA_prev, dW, db\)"),
    ("sgd_step", "values", sgd_with(lambda x, d, lr: x + lr * d, lambda x, d, lr: x + lr * d),
     "you added the step"),
    ("sgd_step", "values", sgd_with(lambda x, d, lr: x - d, lambda x, d, lr: x - d),
     "the learning rate is missing"),
    ("sgd_step", "values", sgd_with(lambda x, d, lr: x - lr * d, lambda x, d, lr: x),
     "b was not updated"),
    ("sgd_step", "values", sgd_with(lambda x, d, lr: lr * d, lambda x, d, lr: lr * d),
     "you returned the step"),
    ("sgd_step", "inputs", sgd_in_place,
     r"(?s)changed its argument params in place, which the rules forbid.*layer 1's W, entry "
     r"\[0, 0\] changed: expected"),
]


@pytest.mark.parametrize(("name", "part", "wrong", "message"), MISTAKES,
                         ids=[f"{m[0]}-{m[1]}-{i}" for i, m in enumerate(MISTAKES)])
def test_known_mistake_is_named(name, part, wrong, message):
    with pytest.raises(AssertionError, match=message):
        check(name)(wrong, part=part)


@pytest.mark.parametrize(("name", "part", "wrong"), [
    ("dense_backward", "single", dense_backward_loop_overwrites),   # one sample: nothing lost
    ("dense_backward", "shapes", dense_backward_loop_overwrites),
    ("dense_backward", "single",
     lambda dZ, A, W: (dZ @ W, dZ.T @ A / len(dZ), dZ.mean(0))),    # N = 1: mean = sum
    ("dense_forward", "shape", lambda A, W, b: A @ W.T),             # right shape, no bias
    ("sgd_step", "values", sgd_in_place),                            # right values, in place
])
def test_partial_credit(name, part, wrong):
    """A mistake that shows only in some parts passes the others."""
    check(name)(wrong, part=part)


# ---------------------------------------------------------------------------
# backprop: a configurable implementation that makes one mistake at a time
# ---------------------------------------------------------------------------

def make_backprop(mistake=None):
    """A self-contained numpy backprop; ``mistake`` switches on one known error."""

    def act(name, Z):
        if name == "sigmoid":
            return R.sigmoid(Z)
        if name == "relu":
            return np.maximum(Z, 0.0)
        if name == "tanh":
            return np.tanh(Z)
        if name == "softmax":
            return R.softmax(Z)
        return Z

    def act_back(name, Z, A, dA):
        if name == "sigmoid":
            if mistake == "sigma_prime_of_A":
                return dA * R.sigmoid(A) * (1 - R.sigmoid(A))
            return dA * A * (1 - A)
        if name == "relu":
            return dA * ((Z >= 0) if mistake == "relu_one_at_zero" else (Z > 0))
        if name == "tanh":
            return dA * ((1 - A) if mistake == "tanh_prime_1_minus_A" else (1 - A ** 2))
        if name == "softmax":
            if mistake == "softmax_elementwise":
                return dA * A * (1 - A)
            return A * (dA - np.sum(dA * A, axis=1, keepdims=True))
        return dA

    def backprop(params, X, Y, activations, loss):
        N = X.shape[0]
        cache, A = [], X
        for (W, b), name in zip(params, activations, strict=True):
            Z = A @ W.T + b
            cache.append((A, Z))
            A = act(name, Z)
        if loss == "cross_entropy":
            Y = np.asarray(Y)
            if Y.ndim == 1:
                if mistake == "no_integer_labels":
                    raise ValueError("operands could not be broadcast together")
                Y = np.eye(Z.shape[1])[Y]
            logits = A if mistake == "ce_on_A" else Z
            if mistake == "naive_ce":      # log of a (shifted) softmax: log(0) when saturated
                J = -np.sum(Y * np.log(R.softmax(logits))) / N
            else:
                J = R.cross_entropy(logits, Y)
            dZ = (R.softmax(logits) - Y) / N
            if mistake == "ce_on_A":
                dZ = R.softmax_backward(Z, dZ)
        elif loss == "bce":
            if mistake == "naive_bce":     # log(sigmoid): log(0) when saturated
                J = -np.sum(Y * np.log(A) + (1 - Y) * np.log(1 - A)) / N
            elif mistake == "clipped_bce":
                Ac = np.clip(A, 1e-12, 1 - 1e-12)
                J = -np.sum(Y * np.log(Ac) + (1 - Y) * np.log(1 - Ac)) / N
            else:
                J = np.sum(np.logaddexp(0.0, Z) - Y * Z) / N
            dZ = (A - Y) / N
            if mistake == "bce_extra_prime":
                dZ = dZ * A * (1 - A)
        else:
            J = 0.5 * np.sum((A - Y) ** 2) / N
            dZ = act_back(activations[-1], Z, A, (A - Y) / N)
        if mistake == "forget_1_over_n":
            dZ = dZ * N
        if mistake == "half_output_error":
            dZ = dZ / 2
        if mistake == "sign":
            dZ = -dZ
        if mistake == "loss_sum":
            J = J * N
        grads = []
        for k in range(len(params) - 1, -1, -1):
            A_prev, _ = cache[k]
            W = params[k][0]
            if mistake == "overwrite":
                for n in range(N):  # `=` where `+=` was meant
                    dW = np.outer(dZ[n], A_prev[n])
                    db = dZ[n]
            elif mistake == "twice_1_over_n":
                dW, db = dZ.T @ A_prev / N, dZ.mean(axis=0)
            elif mistake == "transposed_dW":
                dW, db = A_prev.T @ dZ, dZ.sum(axis=0)
            else:
                dW, db = dZ.T @ A_prev, dZ.sum(axis=0)
            grads.append((dW, db))
            if k > 0:
                dA = dZ @ W
                dZ = dA if mistake == "no_hidden_prime" else \
                    act_back(activations[k - 1], cache[k - 1][1], A_prev, dA)
        if mistake == "in_place":
            params[0][1][...] += 1.0
        if mistake != "backward_order":
            grads = grads[::-1]
        return float(J), grads

    return backprop


def test_the_configurable_backprop_is_right_without_a_mistake():
    for part in PARTS["backprop"]:
        G.check_backprop(make_backprop(), part=part)


BACKPROP_MISTAKES = [
    # (mistake, part, what the message must say)
    ("forget_1_over_n", "mse", "the 1/N of the batch mean is missing"),
    ("forget_1_over_n", "classification", "the 1/N of the batch mean is missing"),
    ("twice_1_over_n", "mse", "the 1/N is applied twice"),
    ("twice_1_over_n", "classification", "the 1/N is applied twice"),
    ("sigma_prime_of_A", "mse", "evaluated at the activation A instead of the pre-activation Z"),
    ("overwrite", "mse", "overwritten instead of accumulated"),
    ("overwrite", "classification", "overwritten instead of accumulated"),
    ("transposed_dW", "shapes", "dW is transposed"),
    ("transposed_dW", "mse", "dW is transposed"),
    ("no_hidden_prime", "mse", "the hidden layers' activation derivative is missing"),
    ("softmax_elementwise", "mse", "softmax was treated as an elementwise function"),
    ("bce_extra_prime", "classification", "multiplied it by σ'"),
    ("ce_on_A", "classification", "applied it to A = softmax"),
    ("sign", "mse", "wrong sign"),
    ("relu_one_at_zero", "edge", r"ReLU'\(0\) must be 0"),
    ("no_integer_labels", "edge", "integer class labels"),
    ("backward_order", "shapes", "backward order"),
    ("backward_order", "mse", "backward order"),
    ("loss_sum", "mse", "summed the losses over the samples"),
    ("in_place", "shapes", "changed its argument params in place, which the rules forbid"),
    ("naive_bce", "saturated", r"(?s)the loss value: expected [\d.]+, got nan.*This cell "
                               "grades the rule for losses: they must not overflow"),
    ("naive_ce", "saturated",
     r"(?s)the loss value: expected [\d.]+, got (nan|inf).*must not overflow"),
    ("clipped_bce", "saturated", r"you clipped the probabilities to \[1e-12, 1 - 1e-12\]"),
]


@pytest.mark.parametrize(("mistake", "part", "message"), BACKPROP_MISTAKES,
                         ids=[f"{m[0]}-{m[1]}" for m in BACKPROP_MISTAKES])
def test_backprop_mistake_is_named(mistake, part, message):
    with pytest.raises(AssertionError, match=message):
        G.check_backprop(make_backprop(mistake), part=part)


@pytest.mark.parametrize(("mistake", "part"), [
    ("forget_1_over_n", "shapes"),
    ("overwrite", "shapes"),
    ("relu_one_at_zero", "mse"),               # random inputs never hit Z = 0 exactly
    ("no_integer_labels", "classification"),   # one-hot targets there
    ("no_integer_labels", "mse"),
    ("bce_extra_prime", "mse"),
])
def test_backprop_partial_credit(mistake, part):
    G.check_backprop(make_backprop(mistake), part=part)


@pytest.mark.parametrize(("mistake", "its_part"), [
    ("naive_bce", "saturated"),      # the rule: losses must not overflow
    ("naive_ce", "saturated"),
    ("clipped_bce", "saturated"),
    ("in_place", "shapes"),          # the rule: backprop leaves params unchanged
])
def test_a_broken_rule_costs_only_its_own_part(mistake, its_part):
    """The text says which cell grades each rule; every other part still passes."""
    with pytest.raises(AssertionError):
        G.check_backprop(make_backprop(mistake), part=its_part)
    for part in PARTS["backprop"]:
        if part != its_part:
            G.check_backprop(make_backprop(mistake), part=part)


def dense_forward_in_place(A_prev, W, b):
    A_prev *= 2.0          # changes the caller's array
    return A_prev / 2.0 @ W.T + b


def dense_backward_in_place(dZ, A_prev, W):
    out = (dZ @ W, dZ.T @ A_prev, dZ.sum(axis=0))
    dZ[...] = 0.0          # right results, but the caller's dZ is gone
    return out


@pytest.mark.parametrize(("name", "wrong", "arg"), [
    ("dense_forward", dense_forward_in_place, "A_prev"),
    ("dense_backward", dense_backward_in_place, "dZ"),
])
def test_dense_in_place_costs_every_cell_of_its_exercise(name, wrong, arg):
    """The text of Exercises 1 and 2: every check of the exercise compares the arguments
    before and after the call, so an in-place change fails each of its parts."""
    for part in PARTS[name]:
        with pytest.raises(AssertionError, match=f"modified its argument {arg} in place"):
            check(name)(wrong, part=part)


@pytest.mark.parametrize("mistake", ["tanh_prime_1_minus_A", "sigma_prime_of_A",
                                     "no_hidden_prime", "half_output_error"])
def test_saturated_part_grades_only_the_overflow_rule(mistake):
    """A gradient mistake unrelated to overflow is charged elsewhere, not in "saturated"."""
    with pytest.raises(AssertionError):
        G.check_backprop(make_backprop(mistake), part="mse")
    G.check_backprop(make_backprop(mistake), part="saturated")


def test_saturated_networks_overflow_a_naive_loss():
    """Each saturated case has a finite exact loss that log(sigmoid) or log(softmax) loses."""
    rng = np.random.default_rng(0)
    for last, loss in (("sigmoid", "bce"), ("softmax", "cross_entropy"),
                       ("identity", "cross_entropy")):
        params, X, Y, acts = G._saturated_net(rng, last, loss, 5)
        J, grads = R.backprop(params, X, Y, acts, loss)
        assert np.isfinite(J) and J > 30, (loss, J)
        assert all(np.all(np.isfinite(g)) for pair in grads for g in pair)
        with np.errstate(all="ignore"):
            assert not np.isfinite(make_backprop(f"naive_{loss[:3].replace('cro', 'ce')}")(
                params, X, Y, acts, loss)[0])


def test_integer_label_note_only_when_labels_are_the_problem():
    """A tanh' mistake in the edge part's label networks gets no note about labels."""
    with pytest.raises(AssertionError) as info:
        G.check_backprop(make_backprop("tanh_prime_1_minus_A"), part="edge")
    assert "act = 'tanh'" in str(info.value)
    assert "integer class labels" not in str(info.value)
    assert "one-hot" not in str(info.value)
    with pytest.raises(AssertionError, match=r"(?s)With one-hot rows .* the same network gives the "
                                             r"right result; here Y holds integer class labels"):
        G.check_backprop(make_backprop("no_integer_labels"), part="edge")


def test_sgd_step_that_changes_grads_is_told_the_rule():
    def sgd_eats_grads(params, grads, lr):
        new = [(W - lr * dW, b - lr * db) for (W, b), (dW, db) in zip(params, grads, strict=True)]
        grads[0][1][...] = 0.0
        return new

    with pytest.raises(AssertionError, match=r"(?s)changed its argument grads in place, which the "
                                             r"rules forbid.*layer 1's db, entry \[0\] changed: "
                                             r"expected -?[\d.]+ \(its value before the call\), "
                                             r"got 0"):
        G.check_sgd_step(sgd_eats_grads, part="inputs")
    G.check_sgd_step(sgd_eats_grads, part="values")


def test_backprop_message_says_which_layer_and_where_to_look():
    """A mistake outside the catalogue is located: which layer, and which equation."""
    # tanh' = 1 - A in a hidden layer (BP2): the layers after it stay right.
    with pytest.raises(AssertionError) as info:
        G.check_backprop(make_backprop("tanh_prime_1_minus_A"), part="mse")
    text = str(info.value)
    assert re.search(r"layer \d: dW = grads\[\d\]\[0\]", text)
    assert "(the output layer)" not in text.split("\n")[1]
    assert re.search(r"layer \d is right, so the mistake is in moving the error back from "
                     r"layer \d to layer \d \(BP2\).*act = 'tanh'", text)
    # A wrong output error points at BP1.
    with pytest.raises(AssertionError, match=r"start with its error dZ\^L \(BP1\)"):
        G.check_backprop(make_backprop("half_output_error"), part="mse")


def test_named_mistake_replaces_the_location_hint():
    with pytest.raises(AssertionError) as info:
        G.check_backprop(make_backprop("no_hidden_prime"), part="mse")
    assert "All your gradients match a known mistake" in str(info.value)
    assert "Where to look" not in str(info.value)


def test_backprop_message_names_the_network():
    with pytest.raises(AssertionError,
                       match=r"backprop on a \d-layer network of sizes [\d-]+ with activations"):
        G.check_backprop(make_backprop("forget_1_over_n"), part="classification")


def test_backprop_seed004_relu_kink_in_edge_part():
    """Seed 004's Z2[0, 0] = 0 is part of the edge check (ReLU'(0) = 0)."""
    net = nets.seed004()
    assert R.mlp_forward(net.params, net.X, net.activations)[2][0][0, 0] == 0.0
    with pytest.raises(AssertionError, match="sizes 2-3-2-1"):
        G.check_backprop(make_backprop("relu_one_at_zero"), part="edge")


def test_backprop_wrong_structure_is_reported():
    def one_pair(params, X, Y, activations, loss):
        return R.backprop(params, X, Y, activations, loss)[1]

    def loss_array(params, X, Y, activations, loss):
        J, grads = R.backprop(params, X, Y, activations, loss)
        return np.array([J]), grads

    with pytest.raises(AssertionError, match=r"must return 2 values \(loss_value, grads\)"):
        G.check_backprop(one_pair, part="shapes")
    with pytest.raises(AssertionError, match="the loss value must be a single number"):
        G.check_backprop(loss_array, part="shapes")


# ---------------------------------------------------------------------------
# graded submissions
# ---------------------------------------------------------------------------

AUTOGRADED = [f"{name}_{part}" for name, parts in PARTS.items() for part in parts]
BACKPROP_CELLS = {f"backprop_{part}" for part in PARTS["backprop"]}
# The capstone's cells that use the student's sgd_step (sgd_epoch calls it; train_digits
# trains with sgd_epoch): a mistake in sgd_step reaches them.
CAPSTONE_SGD = {"sgd_epoch_values", "train_digits_validation", "train_digits_heldout"}


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


# A backprop that does not call the student's dense_* functions, so that their
# mistakes do not reach it; `{mistake}` marks the one line that differs.
SELF_CONTAINED_BACKPROP = '''
def backprop(params, X, Y, activations, loss):
    def act(name, Z):
        if name == "sigmoid":
            return 1 / (1 + np.exp(-Z))
        if name == "relu":
            return np.maximum(Z, 0)
        if name == "tanh":
            return np.tanh(Z)
        if name == "softmax":
            E = np.exp(Z - Z.max(axis=1, keepdims=True))
            return E / E.sum(axis=1, keepdims=True)
        return Z

    def act_back(name, Z, A, dA):
        if name == "sigmoid":
            {sigmoid_back}
        if name == "relu":
            return dA * (Z > 0)
        if name == "tanh":
            return dA * (1 - A ** 2)
        if name == "softmax":
            return A * (dA - np.sum(dA * A, axis=1, keepdims=True))
        return dA

    N = X.shape[0]
    cache, A = [], X
    for (W, b), name in zip(params, activations):
        Z = A @ W.T + b
        cache.append((A, Z))
        A = act(name, Z)
    if loss == "cross_entropy":
        Y = np.asarray(Y)
        if Y.ndim == 1:
            Y = np.eye(Z.shape[1])[Y]
        S = act("softmax", Z)
        Zs = Z - Z.max(axis=1, keepdims=True)
        J = {ce_loss}
        dZ = {out_error_ce}
    elif loss == "bce":
        J = np.sum(np.logaddexp(0, Z) - Y * Z) / N
        dZ = {out_error_bce}
    else:
        J = 0.5 * np.sum((A - Y) ** 2) / N
        dZ = act_back(activations[-1], Z, A, {out_error_mse})
    grads = [None] * len(params)
    for k in range(len(params) - 1, -1, -1):
        A_prev = cache[k][0]
        grads[k] = (dZ.T @ A_prev, dZ.sum(axis=0))
        if k > 0:
            dZ = act_back(activations[k - 1], cache[k - 1][1], A_prev, dZ @ params[k][0])
    {after}
    return J, grads
'''


def self_contained_backprop(**mistake):
    parts = {"sigmoid_back": "return dA * A * (1 - A)", "out_error_ce": "(S - Y) / N",
             "out_error_bce": "(A - Y) / N", "out_error_mse": "(A - Y) / N",
             "ce_loss": "-np.sum(Y * (Zs - np.log(np.exp(Zs).sum(axis=1, keepdims=True)))) / N",
             "after": "pass"}
    parts.update(mistake)
    return SELF_CONTAINED_BACKPROP.format(**parts)


def test_self_contained_backprop_template_is_right():
    namespace = {"np": np}
    exec(self_contained_backprop(), namespace)  # noqa: S102 - test code
    for part in PARTS["backprop"]:
        G.check_backprop(namespace["backprop"], part=part)


def test_submission_transposed_dW_and_plus_in_the_update(tmp_path):
    path = make_submission(ASSIGNMENT, {
        "dense_backward_answer": "def dense_backward(dZ, A_prev, W):\n"
                                 "    return dZ @ W, A_prev.T @ dZ, dZ.sum(axis=0)\n",
        "sgd_step_answer": "def sgd_step(params, grads, lr):\n"
                           "    return [(W + lr * dW, b + lr * db)\n"
                           "            for (W, b), (dW, db) in zip(params, grads)]\n",
    }, tmp_path)
    assert_scores(grade(path, ASSIGNMENT), failing={
        "dense_backward_shapes": "dW is transposed: A_prev.T @ dZ",
        "dense_backward_single": r"A_prev.T @ dZ is its transpose",
        "dense_backward_batch": r"dW = dZ.T @ A_prev",
        "sgd_step_values": "you added the step",
    }, also_zero=BACKPROP_CELLS | CAPSTONE_SGD)  # backprop calls dense_backward


def test_submission_gradients_overwritten_and_update_in_place(tmp_path):
    path = make_submission(ASSIGNMENT, {
        "dense_backward_answer": "def dense_backward(dZ, A_prev, W):\n"
                                 "    for n in range(dZ.shape[0]):\n"
                                 "        dW = np.outer(dZ[n], A_prev[n])\n"
                                 "        db = dZ[n]\n"
                                 "    return dZ @ W, dW, db\n",
        "sgd_step_answer": "def sgd_step(params, grads, lr):\n"
                           "    for (W, b), (dW, db) in zip(params, grads):\n"
                           "        W -= lr * dW\n"
                           "        b -= lr * db\n"
                           "    return params\n",
    }, tmp_path)
    assert_scores(grade(path, ASSIGNMENT), failing={
        "dense_backward_batch": "overwritten instead of accumulated",
        "backprop_classification": "overwritten instead of accumulated",
        "backprop_edge": "overwritten instead of accumulated",
        "sgd_step_inputs": "changed params in place",
        "sgd_epoch_values": "sgd_epoch changed params in place",  # through sgd_step
    }, also_zero={"backprop_mse"})  # its batch gradient check fails first


def test_submission_missing_1_over_n_and_wrong_product_for_dA_prev(tmp_path):
    path = make_submission(ASSIGNMENT, {
        "backprop_answer": self_contained_backprop(out_error_ce="S - Y", out_error_bce="A - Y",
                                                   out_error_mse="A - Y"),
        "dense_backward_answer": "def dense_backward(dZ, A_prev, W):\n"
                                 "    return dZ @ W.T, dZ.T @ A_prev, dZ.sum(axis=0)\n",
    }, tmp_path)
    assert_scores(grade(path, ASSIGNMENT), failing={
        "backprop_classification": "the 1/N of the batch mean is missing",
        "backprop_edge": "the 1/N of the batch mean is missing",
        "dense_backward_shapes": r"dA_prev = dZ @ W.T is the wrong product",
    }, also_zero={"backprop_mse", "dense_backward_single", "dense_backward_batch"})


def test_submission_sigma_prime_of_the_activation_1_over_n_twice_and_no_bias(tmp_path):
    path = make_submission(ASSIGNMENT, {
        "backprop_answer": self_contained_backprop(
            sigmoid_back="return dA * (1 / (1 + np.exp(-A))) * (1 - 1 / (1 + np.exp(-A)))"),
        "dense_backward_answer": "def dense_backward(dZ, A_prev, W):\n"
                                 "    return dZ @ W, dZ.T @ A_prev / len(dZ), dZ.mean(axis=0)\n",
        "dense_forward_answer": "def dense_forward(A_prev, W, b):\n"
                                "    return A_prev @ W.T\n",
    }, tmp_path)
    assert_scores(grade(path, ASSIGNMENT), failing={
        "backprop_mse": r"σ'\(A\)",
        "dense_backward_batch": "the 1/N twice",
        "dense_forward_values": "the bias is missing",
    }, also_zero={"backprop_classification"})  # seed 001's sigmoid hidden layer


def test_submission_each_broken_rule_costs_exactly_its_own_cell(tmp_path):
    """The two rules of Exercise 3, as its text states them: a loss that overflows on
    saturated logits costs `backprop_saturated` (1 point) and an in-place change of params
    costs `backprop_shapes` (1 point); nothing else is lost, and each message names its rule."""
    path = make_submission(ASSIGNMENT, {
        "backprop_answer": self_contained_backprop(ce_loss="-np.sum(Y * np.log(S)) / N",
                                                   after="params[0][1][...] += 0.0 * J + 1.0"),
    }, tmp_path)
    result = grade(path, ASSIGNMENT)
    assert_scores(result, failing={
        "backprop_saturated": r"the rule: the loss must not overflow\): expected 1000.0, "
                              r"got (inf|nan)",
        "backprop_shapes": r"(?s)backprop changed params in place.*expected W = .* as before "
                           r"the call",
    })
    points = {c.grade_id: c.max_score for c in result.cells}
    assert points["backprop_saturated"] == 1 and points["backprop_shapes"] == 1


# ---------------------------------------------------------------------------
# the lesson's text
# ---------------------------------------------------------------------------

def lesson_text():
    return nbformat.read(str(source_path(ASSIGNMENT)), as_version=4)


def test_points_table_matches_the_cells_metadata():
    nb = lesson_text()
    graded = {c.metadata["nbgrader"]["grade_id"]: c.metadata["nbgrader"]["points"]
              for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")}
    intro = nb.cells[0].source
    for gid, points in graded.items():
        assert f"`{gid}` ({points:g})" in intro, (gid, points)
    auto = sum(p for g, p in graded.items() if not g.startswith("written_"))
    manual = sum(p for g, p in graded.items() if g.startswith("written_"))
    assert (f"| **total** | {auto:g} graded automatically, {manual:g} by hand | "
            f"**{auto + manual:g}** |") in intro


def test_text_cites_references_not_seeds():
    """Students never see the seed documents: the text cites [1]-[4] and ends with them."""
    nb = lesson_text()
    for cell in nb.cells:  # the code names nets.seed000() ... stay
        assert not re.search(r"(?i)\bseeds? 0\d\d\b|\bthe seed('s)?\b", cell.source), \
            cell.get("id")
    assert nb.cells[-1].source.startswith("## References")
    for n in range(1, 5):
        assert f"\n{n}. " in nb.cells[-1].source
        assert any(f"[{n}]" in c.source for c in nb.cells[:-1] if c.cell_type == "markdown"), n


def test_the_loss_is_J_and_L_counts_layers():
    """One meaning per symbol: J (and ℓ per sample) is the loss, L the number of layers."""
    nb = lesson_text()
    for cell in nb.cells:
        assert "\\partial L" not in cell.source and "∂L" not in cell.source, cell.get("id")
        assert "dL_d" not in cell.source, cell.get("id")


def test_training_numbers_in_the_text():
    """Section 10's numbers, recomputed with the lesson's own training loop."""
    from course_lib import data

    X, y = data.spirals(n_per_class=100, n_classes=3, noise=0.2, seed=0)

    def train(hidden, lr, steps=400):
        P = nets.init_params((2, hidden, 3), seed=0, scale="he")
        losses, dead = [], []
        for _ in range(steps):
            J, grads = R.backprop(P, X, y, ("relu", "softmax"), "cross_entropy")
            losses.append(J)
            dead.append(int(np.all(X @ P[0][0].T + P[0][1] <= 0, axis=0).sum()))
            P = R.sgd_step(P, grads, lr)
        return np.array(losses), dead

    losses, _ = train(32, 1.0)
    assert (round(losses[0], 2), round(losses[-1], 2)) == (1.09, 0.10)
    losses, _ = train(4, 1.0)
    assert round(losses[-1], 2) == 0.43
    losses, dead = train(32, 20.0)
    assert round(losses[1], 1) == 10.2 and round(losses.max(), 1) == 26.1
    assert int(np.argmax(losses)) == 5 and dead[5] < 32 and dead[6] == 32
    assert round(losses[-1], 2) == 6.65 and np.ptp(losses[-50:]) < 0.01
    text = next(c.source for c in lesson_text().cells if c.get("id") == "cell-48")
    for number in ("1.09", "0.10", "0.43", "10.2", "26.1", "6.65", "all 32 ReLU units"):
        assert number in text, number


# ---------------------------------------------------------------------------
# the capstone's cells (sections 13-15; their checks: tests/test_capstone.py)
# ---------------------------------------------------------------------------

CAPSTONE = {"affine_backward": ("values",), "relu_backward": ("values",),
            "sigmoid_backward": ("values",), "softmax_loss": ("values",),
            "mlp_loss": ("values", "repeat"), "sgd_epoch": ("values",),
            "train_digits": ("validation", "heldout")}
CAPSTONE_CELLS = [f"{name}_{part}" for name, parts in CAPSTONE.items() for part in parts]


def test_the_unanswered_capstone_scores_zero_and_the_solved_one_full_marks():
    from lessons import release_path

    unanswered = grade(release_path(ASSIGNMENT), ASSIGNMENT)
    for gid in CAPSTONE_CELLS:
        cell = unanswered.cell(gid)
        assert cell.score == 0 < cell.max_score, (gid, cell.message)
        assert "NotImplementedError" in cell.message, (gid, cell.message)
    solved = grade(source_path(ASSIGNMENT), ASSIGNMENT)
    for gid in CAPSTONE_CELLS:
        cell = solved.cell(gid)
        assert cell.score == cell.max_score > 0, (gid, cell.message)


def test_the_capstone_s_numbers_in_the_text():
    """Section 15 states the setting, the validation line and the judge's held-out line."""
    from course_lib.reference import mlp as RM

    text = "\n".join(c.source for c in lesson_text().cells if c.cell_type == "markdown")
    assert RM.DIGITS_SIZES == (64, 64, 10) and "64-64-10" in text
    assert (RM.DIGITS_EPOCHS, RM.DIGITS_BATCH, RM.DIGITS_LR) == (12, 32, 0.8)
    assert "12 epochs of batches of 32 with learning rate 0.8" in text
    assert f"at least {G.VAL_LINE:.0%} on the validation set" in text
    assert f"at least **{G.HELD_OUT_LINE:.0%}**" in text
