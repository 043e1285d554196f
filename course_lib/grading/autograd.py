"""Checks for lesson 05: autograd reproduces the manual gradients.

``torch_backprop`` is compared with the reference on random networks of every
loss; ``MySigmoid`` and ``MyLinear`` (``torch.autograd.Function`` subclasses)
are run forward, backward through autograd, and backward called directly (so
that a bias gradient of the wrong shape, which autograd would silently sum,
is still seen); ``grad_fn_chain`` is compared on graphs built from the same
arrays on both sides.

The student's objects may live in another process (the grading kernel), so
these checks never touch them directly: a function is called with plain
arguments and returns plain data, and a class or a graph walker is run by a
named experiment of ``course_lib.judge.experiments`` (apply, back-propagate,
walk a graph), which sends back plain data: arrays, detached tensors,
booleans, names. The random inputs are drawn here and sent as numpy arrays;
every expected value is computed here.

A verdict earns points only from values the student's code computed for these
inputs, never from what the kernel says about itself (which a notebook can
forge): that MySigmoid saves its output is judged by the gradients it gives
when z changes in place after forward and when what it saved reads back as
another tensor, not by reading ctx.saved_tensors; gradcheck of MyLinear is
done here, with finite differences of the outputs of its forward, not run in
the kernel. Reports about the kernel itself (that an object is a Function
class; that a function called twice with the same objects carries state over)
can only take points away.

This module imports torch; ``course_lib.grading`` loads it only when one of
its checks is used.
"""

from __future__ import annotations

import copy
import functools
from collections import deque
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from .. import reference as R
from ..judge.experiments import build_graph
from ._core import (
    ATOL,
    RTOL,
    expect_close,
    expect_tuple,
    experiment,
    fmt,
    known_mistake,
    rng_for,
    run_parts,
)

F64 = torch.float64

__all__ = ["check_torch_backprop", "check_MySigmoid", "check_MyLinear", "check_grad_fn_chain"]


# ----------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------

def _short(exc: BaseException, limit: int = 400) -> str:
    text = str(exc).strip().replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + " ..."


def _attempt(where: str, thunk):
    """Run the student's code; an exception becomes a readable AssertionError.

    NotImplementedError stays what it is: an unanswered exercise, not a wrong answer.
    """
    try:
        return thunk()
    except NotImplementedError:
        raise NotImplementedError(f"{where} is not implemented yet. Replace the "
                                  "`raise NotImplementedError()` line with your code.") from None
    except AssertionError:
        raise
    except Exception as exc:  # noqa: BLE001 - report the student's error, not our frames
        raise AssertionError(f"{where} raised {type(exc).__name__}: {_short(exc)}") from None


def _t(a, requires_grad: bool = False) -> torch.Tensor:
    return torch.tensor(np.asarray(a, dtype=np.float64), dtype=F64, requires_grad=requires_grad)


def _is_f32(x) -> bool:
    if isinstance(x, torch.Tensor):
        return x.dtype in (torch.float32, torch.float16, torch.bfloat16)
    return isinstance(x, np.ndarray | np.floating) and np.asarray(x).dtype in (np.float32,
                                                                             np.float16)


FLOAT32_FIX = ("compute in float64: torch.tensor(W) keeps a numpy array's float64, while "
               "torch.tensor(W, dtype=torch.float32), .float() or a float32 default dtype do "
               "not (float32 is only good to about 1e-7)")
FLOAT32_HINT = ("your numbers agree with the expected ones to about 6 or 7 significant digits "
                "and no further: that is float32 precision (machine epsilon 1.2e-7); "
                + FLOAT32_FIX)


def _close(label, got, expected, mistakes=None, check_shape=True, rtol=RTOL, atol=ATOL):
    """expect_close, plus a hint when the values agree only to float32 precision."""
    try:
        expect_close(label, got, expected, mistakes=mistakes, check_shape=check_shape,
                     rtol=rtol, atol=atol)
    except AssertionError as exc:
        msg = str(exc)
        if "known mistake" not in msg and "shape" not in msg:
            arr = np.asarray(got.detach().cpu().numpy() if hasattr(got, "detach") else got,
                             dtype=np.float64)
            exp = np.asarray(expected, dtype=np.float64)
            if arr.shape == exp.shape and np.allclose(arr, exp, rtol=1e-4, atol=1e-6):
                msg += f"\n  Hint: {FLOAT32_HINT}."
        raise AssertionError(msg) from None


def _function_class(cls, name: str):
    """The student's ``cls`` (or the judge's handle on it), once it is known to be a Function."""
    kind = experiment(cls, "autograd_function_kind")
    if not kind["is_function_class"]:
        raise AssertionError(f"{name} must be a class that subclasses torch.autograd.Function "
                             f"(class {name}(torch.autograd.Function): ...), got "
                             f"{kind['repr']:.80}.")
    return cls


def _tensor_out(where: str, out, shape) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise AssertionError(f"{where} must return a torch.Tensor, got {type(out).__name__}.")
    if _is_f32(out):
        raise AssertionError(f"{where} returned dtype {out.dtype} for float64 inputs: "
                             "keep float64 (do not call .float() or use dtype=torch.float32).")
    if tuple(out.shape) != tuple(shape):
        raise AssertionError(f"{where} returned shape {tuple(out.shape)}, expected "
                             f"{tuple(shape)}.")
    return out


@contextmanager
def _one_thread():
    """torch on one intra-op thread while a check runs, then as it was.

    A check's tensors are tiny, so a second thread cannot speed them up, and while
    a class is graded the cores run the grading kernels (on one thread each:
    judge.sealed). With torch's default, a thread per core, a small op (softmax,
    cross_entropy, a backward) wakes the other thread and leaves it spin-waiting:
    on the 2-core grading machine, a forward and backward of a 3 x 4 network in a
    thread took 0.4-0.5 ms on average with two threads and 0.2 ms with one, and
    22-30 ms against 0.2-0.5 ms while the machine was busy (load average 4).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _on_one_thread(check):
    """The check, run with torch on one thread (_one_thread says why)."""
    @functools.wraps(check)
    def run(*args, **kwargs):
        with _one_thread():
            return check(*args, **kwargs)
    return run


# ----------------------------------------------------------------------------
# torch_backprop
# ----------------------------------------------------------------------------

def _random_case(rng, loss: str, N: int, labels: bool = False):
    """A random network, inputs and targets for ``loss``: (params, X, Y, acts, description)."""
    n_layers = int(rng.integers(1, 4))
    hidden = [str(rng.choice(["sigmoid", "tanh", "relu"])) for _ in range(n_layers - 1)]
    if loss == "mse":
        n_out = int(rng.choice([1, 3, 4]))  # not 2: there F.mse_loss's mean would coincide
        last = str(rng.choice(["sigmoid", "identity", "tanh", "softmax"]))
    elif loss == "bce":
        n_out, last = int(rng.choice([1, 1, 3])), "sigmoid"
    else:
        n_out = int(rng.integers(2, 6))
        last = "softmax" if labels or rng.random() < 0.6 else "identity"
    sizes = [int(rng.integers(1, 6)) for _ in range(n_layers)] + [n_out]
    params = [(rng.normal(0.0, 1.5 / np.sqrt(n_in), size=(n_o, n_in)), rng.normal(0.0, 0.5, n_o))
              for n_in, n_o in zip(sizes[:-1], sizes[1:], strict=True)]
    X = rng.normal(0.0, 1.0, size=(N, sizes[0]))
    if loss == "mse":
        Y = rng.uniform(0.0, 1.0, size=(N, n_out))
    elif loss == "bce":
        Y = rng.integers(0, 2, size=(N, n_out)).astype(float)
    elif labels:
        Y = rng.integers(0, n_out, size=N)
    else:
        Y = np.eye(n_out)[rng.integers(0, n_out, size=N)]
    acts = (*hidden, last)
    what = (f"a {'-'.join(map(str, sizes))} network ({', '.join(acts)}), loss {loss!r}, "
            f"N = {N}" + (", Y as integer labels" if labels else ""))
    return params, X, Y, acts, what


def _softmax_twice(params, X, Y, acts):
    """Loss and grads when cross_entropy is applied to softmax(Z) instead of the logits Z."""
    leaves = [(_t(W, True), _t(b, True)) for W, b in params]
    A = _t(X)
    for (W, b), act in zip(leaves, acts, strict=True):
        Z = A @ W.T + b
        A = {"sigmoid": torch.sigmoid, "relu": torch.relu, "tanh": torch.tanh,
             "softmax": lambda z: torch.softmax(z, dim=-1), "identity": lambda z: z}[act](Z)
    Y = np.asarray(Y)
    target = torch.as_tensor(Y) if Y.ndim == 1 else _t(Y)
    J = F.cross_entropy(A, target)
    J.backward()
    return J.item(), [(W.grad.numpy().copy(), b.grad.numpy().copy()) for W, b in leaves]


def _mistakes_for(loss, acts, params, X, Y, N, n_out, J, grads):
    """{description: (J, grads)} that known wrong answers would return."""
    def scaled(c):
        return (J * c, [(dW * c, db * c) for dW, db in grads])

    out = {}
    if N > 1:
        out["the batch mean is missing: you summed the loss over the N samples instead of "
            "averaging it (divide by N, or use a reduction that averages over samples)"] = scaled(N)
    if loss == "mse":
        out["the ½ of the course's MSE is missing: J = (1/N) Σ_n ½ Σ_j (a_nj - y_nj)²"] = \
            scaled(2.0)
        out["you used F.mse_loss with its default reduction='mean', which averages over all "
            "N·n_out entries and has no ½; the course's MSE is (1/N) Σ_n ½ Σ_j (a_nj - y_nj)²"] = \
            scaled(2.0 / n_out)
    if loss == "cross_entropy" and acts[-1] == "softmax":
        out["softmax is applied twice: the cross-entropy takes the logits Z of the last layer, "
            "not its softmax output A (F.cross_entropy applies log-softmax itself)"] = \
            _softmax_twice(params, X, Y, acts)
    return out


def _as_result(out, where, n_layers):
    """Validate the (loss, grads) structure; return (loss float, [(dW, db)])."""
    loss_value, grads = expect_tuple(out, where, ("loss_value", "grads"))
    if isinstance(loss_value, torch.Tensor):
        raise AssertionError(f"{where} returned the loss as a torch.Tensor; return a Python "
                             "float: float(J) or J.item().")
    if not isinstance(loss_value, float | np.floating) or np.ndim(loss_value) != 0:
        raise AssertionError(f"{where} must return the loss as a float, got "
                             f"{type(loss_value).__name__}.")
    if _is_f32(loss_value):
        raise AssertionError(f"{where} returned the loss as a float32 number: {FLOAT32_FIX}.")
    if not isinstance(grads, list | tuple) or len(grads) != n_layers or not all(
            isinstance(g, list | tuple) and len(g) == 2 for g in grads):
        raise AssertionError(f"{where} must return grads as a list of {n_layers} (dW, db) "
                             f"pair(s), one per layer; got {type(grads).__name__}"
                             + (f" of length {len(grads)}" if hasattr(grads, "__len__") else "")
                             + ".")
    for layer, pair in enumerate(grads):
        for name, g in zip(("dW", "db"), pair, strict=True):
            label = f"grads[{layer}] {name}"
            if isinstance(g, torch.Tensor):
                raise AssertionError(f"{where}: {label} is a torch.Tensor; return numpy arrays "
                                     "(W.grad.numpy(), or .detach().numpy() for a tensor in a "
                                     "graph).")
            if not isinstance(g, np.ndarray):
                raise AssertionError(f"{where}: {label} must be a numpy array, got "
                                     f"{type(g).__name__}.")
            if g.dtype != np.float64:
                hint = f": {FLOAT32_FIX}" if _is_f32(g) else ""
                raise AssertionError(f"{where}: {label} has dtype {g.dtype}, expected "
                                     f"float64{hint}.")
    return float(loss_value), [(pair[0], pair[1]) for pair in grads]


def _compare_backprop(got, expected, where, mistakes):
    (J, grads), (J_ref, g_ref) = got, expected
    _close(f"{where}: the loss", J, J_ref,
           mistakes={k: v[0] for k, v in mistakes.items()}, check_shape=False)
    for layer, ((dW, db), (dW_r, db_r)) in enumerate(zip(grads, g_ref, strict=True)):
        for name, g, g_r, idx in (("dW", dW, dW_r, 0), ("db", db, db_r, 1)):
            _close(f"{where}: grads[{layer}] {name} (layer {layer + 1})", g, g_r,
                   mistakes={k: v[1][layer][idx] for k, v in mistakes.items()})


@_on_one_thread
def check_torch_backprop(torch_backprop, part="all"):
    """torch_backprop(params, X, Y, activations, loss) against the reference, every loss."""
    rng = rng_for("torch_backprop")

    def run(params, X, Y, acts, loss, what):
        where = f"torch_backprop for {what}"
        out = _attempt(where, lambda: torch_backprop(copy.deepcopy(params), X.copy(),
                                                     np.array(Y, copy=True), acts, loss))
        return where, _as_result(out, where, len(params))

    def shapes():
        from .. import nets
        net = nets.seed004()
        run(net.params, net.X, net.Y, net.activations, net.loss, "seed004")
        for loss in ("cross_entropy", "mse"):
            params, X, Y, acts, what = _random_case(rng, loss, 5)
            where, (_, grads) = run(params, X, Y, acts, loss, what)
            for layer, ((dW, db), (W, b)) in enumerate(zip(grads, params, strict=True)):
                for label, g, p in (("dW", dW, W), ("db", db, b)):
                    if g.shape != p.shape:
                        transposed = " (the transpose)" if g.shape == p.T.shape != p.shape else ""
                        raise AssertionError(
                            f"{where}: grads[{layer}] {label} has shape {g.shape}{transposed}, "
                            f"expected {p.shape}: a gradient has the shape of its parameter.")

    def values():
        for loss in ("mse", "bce", "cross_entropy"):
            for N, labels in ((int(rng.integers(2, 9)), False), (1, False), (32, False),
                              (int(rng.integers(2, 9)), True)):
                if labels and loss != "cross_entropy":
                    continue
                params, X, Y, acts, what = _random_case(rng, loss, N, labels)
                where, got = run(params, X, Y, acts, loss, what)
                J_ref, g_ref = R.torch_backprop(params, X, Y, acts, loss)
                try:
                    _compare_backprop(got, (J_ref, g_ref), where, {})
                except AssertionError:  # the catalogue of mistakes, only for a wrong answer
                    _compare_backprop(got, (J_ref, g_ref), where, _mistakes_for(
                        loss, acts, params, X, Y, N, params[-1][0].shape[0], J_ref, g_ref))
                    raise

    def repeat():
        params, X, Y, acts, what = _random_case(rng, "bce", 6)
        accumulated = ("gradients accumulated across calls: the second call returned the first "
                       "call's gradients plus its own, so .grad was not reset. Create fresh leaf "
                       "tensors inside torch_backprop on every call (or set p.grad = None before "
                       "backward)")

        def same_as_first(second, first, where):
            # Compared with (a copy of) the first call, not with the reference, so that this
            # part judges only what carries over between calls.
            _compare_backprop(second, first, f"{where}: the second call, compared with the "
                              "first", {accumulated: (first[0], [(dW * 2, db * 2)
                                                                 for dW, db in first[1]])})

        # The point rests on values: two calls with equal arguments, each an ordinary call of
        # the student's function, must return the same loss and gradients.
        where, first = run(params, X, Y, acts, "bce", what)
        first = copy.deepcopy(first)
        _, second = run(params, X, Y, acts, "bce", what)
        same_as_first(second, first, f"{where}, called twice with equal arguments")

        # A function that keeps leaves per params list (or returns arrays sharing memory with
        # them) shows it only when called twice with the very same objects, which only an
        # experiment where the function lives can do. That report comes from the kernel, so it
        # may only take this point away: forged, it gives no more than the calls above.
        where = f"torch_backprop for {what}, called twice with the same params"
        # Copies of each result come back, taken when it was returned ("first", "second") and
        # the first one's arrays again after the second call.
        runs = _attempt(where, lambda: experiment(
            torch_backprop, "call_twice", args=(copy.deepcopy(params), X.copy(), Y.copy(), acts,
                                                "bce")))
        first = _as_result(runs["first"], where, len(params))
        saved = copy.deepcopy(first)
        second = _as_result(runs["second"], where, len(params))
        after = runs["args_after"][0]
        if not isinstance(after, list | tuple) or len(after) != len(params):
            after = [(None, None)] * len(params)  # params lost or gained items: modified
        for (W, b), (W0, b0) in zip(after, params, strict=True):
            if not (np.array_equal(W, W0) and np.array_equal(b, b0)):
                raise AssertionError(f"{where}: it modified the arrays in params. Copy them into "
                                     "new tensors (torch.tensor(W) copies; torch.from_numpy(W) "
                                     "shares the memory) and do not update them in place.")
        for label, got, original in (("X", runs["args_after"][1], X),
                                     ("Y", runs["args_after"][2], Y)):
            if not np.array_equal(np.asarray(got), np.asarray(original)):
                raise AssertionError(f"{where}: it modified its argument {label} in place: "
                                     f"expected {label} unchanged ({fmt(original)}), got "
                                     f"{fmt(got)} after the calls. Compute new arrays or tensors "
                                     "instead (torch.tensor copies; torch.from_numpy shares "
                                     "the memory).")
        same_as_first(second, saved, where)
        _, first_later = _as_result(runs["first_later"], where, len(params))
        for (dW, db), (dW0, db0) in zip(first_later, saved[1], strict=True):
            if not (np.array_equal(dW, dW0) and np.array_equal(db, db0)):
                raise AssertionError(
                    f"{where}: the arrays returned by the first call changed during the second "
                    "call: they share memory with .grad tensors that the second backward() "
                    "accumulated into (gradients accumulated across calls). Use fresh leaves "
                    "on every call, or return copies (W.grad.numpy().copy()).")

    run_parts(part, {"shapes": shapes, "values": values, "repeat": repeat})


# ----------------------------------------------------------------------------
# MySigmoid
# ----------------------------------------------------------------------------

def _shapes(rng):
    return [(), (int(rng.integers(1, 8)),), tuple(int(n) for n in rng.integers(1, 6, size=2)),
            (2, 3, 4)]


SIGMOID_MISSING = ("backward returned grad_out * s: the factor (1 - s) of σ'(z) = s (1 - s) "
                   "is missing")
SIGMOID_TWICE = ("backward applied σ' to the saved output s = σ(z), computing σ'(σ(z)) = "
                 "σ(s)(1 - σ(s)); the saved s already is σ(z), so σ'(z) = s (1 - s)")
SIGMOID_NO_S = ("backward returned grad_out * (1 - s): the factor s of σ'(z) = s (1 - s) is "
                "missing")
SIGMOID_SIGN = "the sign is flipped: ∂L/∂z = + grad_out · s (1 - s)"
SIGMOID_UNCHANGED = ("backward returned grad_out unchanged: the local derivative σ'(z) = s(1 - s) "
                     "is missing")


SAVED_INPUT = ("MySigmoid.forward saved its input z instead of its output s = σ(z) "
               "(ctx.save_for_backward(z)). Save s: it does not change when z does, and backward "
               "then needs no exp at all, since σ'(z) = s (1 - s)")
KEPT_INPUT = ("MySigmoid.forward kept its input z (as an attribute such as ctx.z) instead of "
              "saving its output s = σ(z): z changed in place after forward and backward used "
              "the new values. Save s with ctx.save_for_backward(s); autograd then also checks "
              "that it was not modified in between")
SAVED_NOTHING = ("MySigmoid.forward saved nothing with ctx.save_for_backward (backward did not "
                 "use what it read back from ctx.saved_tensors): save the output, "
                 "ctx.save_for_backward(s), and read it back in backward with (s,) = "
                 "ctx.saved_tensors; keeping tensors as attributes such as ctx.s bypasses "
                 "autograd's checks")


def _sigmoid_backward_formulas():
    """What a backward computes from the saved s and grad_out g: the right formula first, then
    the known wrong ones of the "backward" part that still use s."""
    def sig(x):
        return torch.sigmoid(_t(x)).numpy()

    return {
        "right": lambda s, g: g * s * (1 - s),
        SIGMOID_MISSING: lambda s, g: g * s,
        SIGMOID_TWICE: lambda s, g: g * sig(s) * (1 - sig(s)),
        SIGMOID_NO_S: lambda s, g: g * (1 - s),
        SIGMOID_SIGN: lambda s, g: -g * s * (1 - s),
    }


def _numbers(got):
    """``got`` (a tensor or array) as a float64 array, or None when it holds no numbers."""
    try:
        return np.asarray(got.detach().numpy() if isinstance(got, torch.Tensor) else got,
                          dtype=np.float64)
    except (TypeError, ValueError):
        return None


def _first_match(got, candidates):
    """The first name in ``candidates`` whose value ``got`` equals (course tolerances), or None."""
    arr = _numbers(got)
    if arr is None:
        return None
    return next((name for name, value in candidates.items()
                 if arr.shape == value.shape and np.allclose(arr, value, rtol=RTOL, atol=ATOL)),
                None)


@_on_one_thread
def check_MySigmoid(MySigmoid, part="all"):
    """MySigmoid.apply(z) = σ(z); backward = grad_out · s (1 - s); saves its output."""
    rng = rng_for("MySigmoid")

    def apply(cls, where, z, requires_grad=False):
        """The experiment's {"out": detached output, "has_grad_fn": bool} for cls.apply(z)."""
        return _attempt(where, lambda: experiment(cls, "function_apply", args=[z],
                                                  requires_grad=[requires_grad]))

    def forward():
        cls = _function_class(MySigmoid, "MySigmoid")
        for shape in _shapes(rng):
            z = _t(rng.normal(0.0, 4.0, size=shape))
            where = f"MySigmoid.apply(z) for z of shape {tuple(shape)}"
            s = _tensor_out(where, apply(cls, where, z.numpy())["out"], shape)
            _close(where, s, torch.sigmoid(z).numpy(), mistakes={
                "you computed 1/(1 + e^{z}) = σ(-z): the minus sign in e^{-z} is missing":
                    torch.sigmoid(-z).numpy()})
        # Saturated inputs: the rule "σ(z) for any finite z" is seen where e^{±z} overflows.
        z = _t([-800.0, -40.0, 0.0, 40.0, 800.0])
        s = _tensor_out("MySigmoid.apply(z) for large |z|",
                        apply(cls, "MySigmoid.apply(z)", z.numpy())["out"], z.shape)
        where = (f"MySigmoid.apply(z) for z = {fmt(z.numpy())} (σ(z) must be right for any finite "
                 "z, also where e^z overflows)")
        got = _numbers(s)
        if got is not None and not np.all(np.isfinite(got)):
            raise AssertionError(
                f"{where}: expected {fmt(torch.sigmoid(z).numpy())}, got {fmt(got)}. Your formula "
                "overflows for large |z| (e.g. e^z / (1 + e^z) = inf / inf = nan); use "
                "torch.sigmoid(z), which is numerically stable.")
        _close(where, s, torch.sigmoid(z).numpy())

    def backward():
        cls = _function_class(MySigmoid, "MySigmoid")
        for shape in _shapes(rng):
            z = _t(rng.normal(0.0, 2.5, size=shape), requires_grad=True)
            g = _t(rng.normal(0.0, 1.0, size=shape))
            where = (f"the gradient of MySigmoid for z of shape {tuple(shape)} and upstream "
                     "gradient grad_out")
            # cls.apply(z).backward(g), then z.grad, where the class lives.
            (dz,) = _attempt(where, lambda z=z, g=g: experiment(
                cls, "function_autograd_grads", args=[z.detach().numpy()], requires_grad=[True],
                grad_out=g.numpy(), how="backward"))
            if dz is None:
                raise AssertionError(f"{where}: z.grad is None after backward(); does "
                                     "MySigmoid.backward return the gradient?")
            s, gn = torch.sigmoid(z.detach()), g.numpy()
            s_n = s.numpy()
            ss = torch.sigmoid(s).numpy()
            _close(where, dz, (g * s * (1 - s)).numpy(), mistakes={
                SIGMOID_MISSING: gn * s_n,
                SIGMOID_TWICE: gn * ss * (1 - ss),
                SIGMOID_NO_S: gn * (1 - s_n),
                SIGMOID_UNCHANGED: gn,
                "backward applied a(1 - a) to the input z instead of the output s = σ(z)":
                    gn * z.detach().numpy() * (1 - z.detach().numpy()),
                SIGMOID_SIGN: -gn * s_n * (1 - s_n),
            })

    def saved():
        # Behaviour, not ctx.saved_tensors as the kernel would report it: what forward saved
        # decides the gradients in two situations, and only the gradients come back. Each is
        # compared with what the right backward, or one of the known wrong formulas of the
        # "backward" part (that part takes their points), computes from the saved s = σ(z):
        # values the grader computes, which a forged experiment could only send by answering.
        cls = _function_class(MySigmoid, "MySigmoid")
        shape = (3, 4)
        z, g = rng.normal(0.0, 2.0, size=shape), rng.normal(0.0, 1.0, size=shape)
        delta = rng.normal(0.0, 1.5, size=shape)
        u = rng.uniform(0.1, 0.9, size=shape)
        s, s_changed, s_of_u = (torch.sigmoid(_t(a)).numpy() for a in (z, z + delta, u))
        formulas = _sigmoid_backward_formulas()

        # 1. z changes in place after forward (a buffer reused before backward runs): the
        #    saved output s does not change with it, a saved input does.
        where = ("the gradient of MySigmoid when z changes in place between forward and "
                 f"backward (s = MySigmoid.apply(z); z += Δ; s.backward(grad_out)), z of shape "
                 f"{shape}; expected grad_out · σ'(z) for z before the change")
        try:
            (dz,) = _attempt(where, lambda: experiment(
                cls, "function_grads_input_changed", args=[z], change=[delta], grad_out=g))
        except AssertionError as exc:
            if "modified by an inplace operation" not in str(exc):
                raise
            raise AssertionError(
                f"{exc}\n  Autograd refuses to hand backward a saved tensor that changed after "
                f"forward. This matches a known mistake: {SAVED_INPUT}.") from None
        if dz is None:
            raise AssertionError(f"{where}: z.grad is None after backward(); does "
                                 "MySigmoid.backward return the gradient?")
        if _first_match(dz, {SIGMOID_UNCHANGED: g}) is not None:
            # Nothing of what forward saved reaches such a gradient, so this part has no
            # evidence to award its point on; the backward part names the mistake.
            raise AssertionError(
                f"{where}: got grad_out itself. {SIGMOID_UNCHANGED}, so the gradients show nothing "
                "of what forward saved: this part is graded once backward computes from the saved "
                "s (see the backward part).")
        formula = _first_match(dz, {name: f(s, g) for name, f in formulas.items()})
        if formula is None:
            kept = _first_match(dz, {name: f(s_changed, g) for name, f in formulas.items()})
            _close(where, dz, g * s * (1 - s), mistakes={} if kept is None else {
                KEPT_INPUT: formulas[kept](s_changed, g)})
        f = formulas[formula or "right"]

        # 2. What forward saved reads back in backward as another tensor u: a backward that
        #    computes from the saved s gives for u what its formula gives for s = u.
        where = ("the gradient of MySigmoid when the tensor that forward saved with "
                 "ctx.save_for_backward reads back in backward as another tensor u (the grader "
                 "swaps it to see that backward computes from the saved s = σ(z), so that it "
                 f"gives grad_out · u (1 - u)), z of shape {shape}")
        (dz,) = _attempt(where, lambda: experiment(
            cls, "function_grads_saved_replaced", args=[z], saved=u, grad_out=g))
        if dz is None:
            raise AssertionError(f"{where}: z.grad is None after backward(); does "
                                 "MySigmoid.backward return the gradient?")
        _close(where, dz, f(u, g), mistakes={
            SAVED_NOTHING: f(s, g),
            SAVED_INPUT: f(s_of_u, g),
        })

    run_parts(part, {"forward": forward, "backward": backward, "saved": saved})


# ----------------------------------------------------------------------------
# MyLinear
# ----------------------------------------------------------------------------

def _linear_inputs(rng, N, n_in, n_out):
    """Random X (N, n_in), W (n_out, n_in), b (n_out,) as numpy arrays, for an experiment."""
    return rng.normal(size=(N, n_in)), rng.normal(size=(n_out, n_in)), rng.normal(size=n_out)


def _dims(rng, square=False):
    sizes = [(int(rng.integers(2, 7)), int(rng.integers(1, 5)), int(rng.integers(1, 5))),
             (1, int(rng.integers(1, 5)), int(rng.integers(2, 5))),
             (16, 5, 3)]
    if square:
        n = int(rng.integers(2, 5))
        sizes.insert(1, (int(rng.integers(2, 6)), n, n))
    return sizes


GRADCHECK_EPS, GRADCHECK_RTOL, GRADCHECK_ATOL = 1e-6, 1e-3, 1e-5  # torch's gradcheck defaults


def _finite_differences(cls, args, G, where):
    """∂(Σ G * cls.apply(*args)) / ∂args by central differences of the student's forward.

    Every moved input is sent in one request (function_apply_many): one round trip
    to the kernel, not two for each entry of each input.
    """
    moves = [(i, idx, sign) for i, a in enumerate(args) for idx in np.ndindex(a.shape)
             for sign in (1.0, -1.0)]
    inputs = []
    for i, idx, sign in moves:
        moved = [x.copy() for x in args]
        moved[i][idx] += sign * GRADCHECK_EPS
        inputs.append(moved)
    outs = _attempt(where, lambda: experiment(cls, "function_apply_many", args_list=inputs))
    if not isinstance(outs, list) or len(outs) != len(moves):
        raise AssertionError(f"{where}: expected {len(moves)} outputs of forward, got "
                             f"{fmt(outs)}.")
    grads = [np.zeros_like(a) for a in args]
    for k in range(0, len(moves), 2):  # (+ε, -ε) pairs
        i, idx, _ = moves[k]
        plus, minus = (float(np.sum(G * _tensor_out(where, out, G.shape).detach().numpy()))
                       for out in outs[k:k + 2])
        grads[i][idx] = (plus - minus) / (2 * GRADCHECK_EPS)
    return grads


# Their wording is the manifest's (course_lib/manifest/autograd.toml).
LINEAR_DW_T = known_mistake("linear-dw-transposed")
LINEAR_DB_SUM = known_mistake("linear-db-not-summed")


@_on_one_thread
def check_MyLinear(MyLinear, part="all"):
    """MyLinear.apply(X, W, b) = X @ W.T + b with backward (dZ @ W, dZᵀ @ X, dZ.sum(0))."""
    rng = rng_for("MyLinear")

    def forward():
        cls = _function_class(MyLinear, "MyLinear")
        for N, n_in, n_out in _dims(rng, square=True):
            Xn, Wn, bn = _linear_inputs(rng, N, n_in, n_out)
            where = f"MyLinear.apply(X, W, b) for X {Xn.shape}, W {Wn.shape}"
            applied = _attempt(where, lambda X=Xn, W=Wn, b=bn: experiment(
                cls, "function_apply", args=[X, W, b]))
            Z = _tensor_out(where, applied["out"], (N, n_out))
            mistakes = {"the bias b is missing": Xn @ Wn.T}
            if n_in == n_out:
                mistakes["W is not transposed: Z = X @ W.T + b, not X @ W + b"] = Xn @ Wn + bn
            _close(where, Z, Xn @ Wn.T + bn, mistakes=mistakes)

    def backward():
        cls = _function_class(MyLinear, "MyLinear")
        for N, n_in, n_out in _dims(rng, square=True):
            Xn, Wn, bn = _linear_inputs(rng, N, n_in, n_out)
            dZn = rng.normal(size=(N, n_out))
            where = (f"MyLinear.backward(ctx, dZ) for X {Xn.shape}, W {Wn.shape}, "
                     f"b {bn.shape}")
            applied = _attempt("MyLinear.apply(X, W, b)", lambda X=Xn, W=Wn, b=bn: experiment(
                cls, "function_apply", args=[X, W, b], requires_grad=[True, True, True]))
            if not isinstance(applied["out"], torch.Tensor) or not applied["has_grad_fn"]:
                got = ("a tensor without grad_fn" if isinstance(applied["out"], torch.Tensor)
                       else type(applied["out"]).__name__)
                raise AssertionError("MyLinear.apply(X, W, b) for inputs that require grad: "
                                     f"expected a tensor with a grad_fn, got {got}.")
            # Z.grad_fn is the ctx that forward filled: the experiment calls backward on it
            # directly, so that we see exactly what it returns (autograd would sum a
            # (N, n_out) db).
            out = _attempt(where, lambda X=Xn, W=Wn, b=bn, dZ=dZn: experiment(
                cls, "function_backward", args=[X, W, b], grad_out=dZ))
            dX, dW, db = expect_tuple(out, "MyLinear.backward", ("dX", "dW", "db"))
            for label, got, exp, mistakes in (
                ("dX", dX, dZn @ Wn, {} if n_in != n_out else {
                    "dX = dZ @ W, without a transpose (you used W.T)": dZn @ Wn.T}),
                ("dW", dW, dZn.T @ Xn, {LINEAR_DW_T: Xn.T @ dZn,
                                        "dW has an extra 1/N: the mean is already in dZ":
                                            dZn.T @ Xn / N}),
                ("db", db, dZn.sum(0), {LINEAR_DB_SUM: dZn,
                                        "db is the mean of dZ over the batch; it is the sum "
                                        "(the 1/N of the loss is already in dZ)": dZn.mean(0)}),
            ):
                if got is None:
                    raise AssertionError(f"{where}: {label} is None although that input "
                                         "requires grad (ctx.needs_input_grad is True for it).")
                _close(f"{where}: {label}", got, exp, mistakes=mistakes)

    def through_autograd():
        cls = _function_class(MyLinear, "MyLinear")
        for N, n_in, n_out in _dims(rng):
            for grad in ((True, True, True), (False, True, True)):
                Xn, Wn, bn = _linear_inputs(rng, N, n_in, n_out)
                G = rng.normal(size=(N, n_out))
                where = (f"autograd through MyLinear for X {Xn.shape}"
                         f"{'' if grad[0] else ' (X does not require grad)'}, "
                         f"W {Wn.shape}: after (MyLinear.apply(X, W, b) * G).sum()"
                         ".backward(),")
                # The same backward() call where the class lives; the leaves' .grad come back.
                dX, dW, db = _attempt(where, lambda X=Xn, W=Wn, b=bn, G=G, grad=grad: experiment(
                    cls, "function_autograd_grads", args=[X, W, b], requires_grad=list(grad),
                    grad_out=G, how="weighted_sum"))
                pairs = [("W.grad", dW, G.T @ Xn), ("b.grad", db, G.sum(0))]
                if grad[0]:
                    pairs.insert(0, ("X.grad", dX, G @ Wn))
                for label, got, exp in pairs:
                    if got is None:
                        raise AssertionError(f"{where} {label} is None.")
                    _close(f"{where} {label}", got, exp)
        # What torch.autograd.gradcheck checks, done here: the gradients backward gives for
        # these inputs against finite differences of the outputs forward gives for nearby
        # inputs, both computed by the student's class (a bool from a gradcheck run in the
        # kernel would be a report, not evidence).
        args = list(_linear_inputs(rng, 3, 2, 2))
        G = rng.normal(size=(3, 2))
        where = ("torch.autograd.gradcheck(MyLinear.apply, (X, W, b)) for float64 X (3, 2), "
                 "W (2, 2), b (2,), done by the grader: after MyLinear.apply(X, W, b)"
                 ".backward(G),")
        grads = _attempt(where, lambda: experiment(
            cls, "function_autograd_grads", args=args, requires_grad=[True] * 3, grad_out=G,
            how="backward"))
        numeric = _finite_differences(cls, args, G, "MyLinear.apply(X, W, b) near X, W, b")
        for label, got, exp in zip(("X.grad", "W.grad", "b.grad"), grads, numeric, strict=True):
            if got is None:
                raise AssertionError(f"{where} {label} is None.")
            arr = _numbers(got)
            if not np.any(exp) and arr is not None and arr.shape == exp.shape and np.any(arr):
                raise AssertionError(f"{where} {label} is not 0, but your forward's output does "
                                     f"not change at all when {label[0]} does: forward ignores "
                                     f"{label[0]} (Z = X @ W.T + b), or backward invents a "
                                     "gradient for it.")
            _close(f"{where} {label}, compared with finite differences of your forward "
                   "(backward must give the derivatives of what forward computes)", got, exp,
                   rtol=GRADCHECK_RTOL, atol=GRADCHECK_ATOL)

    run_parts(part, {"forward": forward, "backward": backward,
                     "autograd": through_autograd})


# ----------------------------------------------------------------------------
# grad_fn_chain
# ----------------------------------------------------------------------------

def _traverse(t, *, dedup=True, depth_first=False, skip_leaves=False, skip_root=False,
              name=lambda node: type(node).__name__):
    """Variants of the breadth-first walk, for the catalogue of mistakes."""
    start = [c for c, _ in t.grad_fn.next_functions] if skip_root else [t.grad_fn]
    names, seen, todo = [], set(), deque(start)
    while todo:
        node = todo.pop() if depth_first else todo.popleft()
        if node is None or (dedup and node in seen):
            continue
        seen.add(node)
        if not (skip_leaves and type(node).__name__ == "AccumulateGrad"):
            names.append(name(node))
        children = [c for c, _ in node.next_functions]
        todo.extend(reversed(children) if depth_first else children)
    return names


def _chain_mistakes(t):
    return {
        "the leaves are missing: a leaf tensor that requires grad is reached through an "
        "AccumulateGrad node (the node that adds into its .grad); list it as \"AccumulateGrad\"":
            _traverse(t, skip_leaves=True),
        "the root is missing: the list starts with t.grad_fn itself, then its next_functions":
            _traverse(t, skip_root=True),
        "a node reached along several paths (a fan-out) is listed more than once; keep a set "
        "of the nodes already seen": _traverse(t, dedup=False),
        "the order is depth-first; the chain is breadth first (a queue: take from the front, "
        "append the next_functions at the back)": _traverse(t, depth_first=True),
        "you used node.name(), which gives 'torch::autograd::AccumulateGrad' for leaves; use "
        "the class name, type(node).__name__": _traverse(t, name=lambda n: n.name()),
        "the list runs from the leaves to t; it starts at t.grad_fn": _traverse(t)[::-1],
    }


def _expect_names(where, got, expected, mistakes):
    """Judge the walk_graph experiment's description of what grad_fn_chain returned."""
    if not got["sequence"]:
        raise AssertionError(f"{where} must return a list of str, got {got['type']}.")
    names = []
    for kind, type_name, text in got["items"]:
        if kind == "node":
            raise AssertionError(f"{where} returned grad_fn nodes, not their names: append "
                                 "type(node).__name__ (e.g. 'MulBackward0') instead of node.")
        if kind == "tensor":
            raise AssertionError(f"{where} returned tensors, not the names of the grad_fn "
                                 "nodes: walk t.grad_fn and its next_functions and append "
                                 "type(node).__name__.")
        if kind != "str":
            raise AssertionError(f"{where} must return a list of str (class names such as "
                                 f"'MulBackward0'); it contains a {type_name}: "
                                 f"{text:.60}.")
        if " object at 0x" in text or text.startswith("<"):
            raise AssertionError(f"{where} returned the printed form of the nodes ({text!r:.60}),"
                                 " not their class names: use type(node).__name__.")
        names.append(text)
    got = names
    if got == expected:
        return
    diff = next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
                min(len(got), len(expected)))
    msg = (f"{where}: wrong list of names.\n  expected ({len(expected)} names): {expected}\n"
           f"  got      ({len(got)} names): {got}\n  first difference at position {diff}")
    for description, value in mistakes.items():
        if got == value and value != expected:
            msg += f"\n  This matches a known mistake: {description}."
            break
    raise AssertionError(msg)


def _expressions(rng, edge: bool):
    """Graphs to walk: (description, graph name, arrays) for judge.experiments.build_graph."""
    out = []
    if not edge:
        k = int(rng.integers(2, 5))
        w, b, x = rng.normal(size=k), rng.normal(), rng.normal(size=k)
        out.append(("f = sigmoid(w @ x + b) (x does not require grad)", "sigmoid_affine",
                    {"w": w, "b": b, "x": x}))
        sizes = [int(n) for n in rng.integers(1, 5, size=3)]
        W1, b1 = rng.normal(size=(sizes[1], sizes[0])), rng.normal(size=sizes[1])
        W2, b2 = rng.normal(size=(sizes[2], sizes[1])), rng.normal(size=sizes[2])
        X, Y = rng.normal(size=(3, sizes[0])), rng.normal(size=(3, sizes[2]))
        net = {"W1": W1, "b1": b1, "W2": W2, "b2": b2, "X": X, "Y": Y}
        out.append(("the MSE of a two-layer network, 0.5 * ((A2 - Y) ** 2).sum() / N",
                    "two_layer_mse", net))
        out.append(("a network built with F.linear and F.mse_loss", "linear_mse_loss", net))
    else:
        out.append(("(a * a).sum(): the leaf a is used twice", "square_sum",
                    {"a": rng.normal(size=3)}))
        out.append(("torch.tanh(u) * torch.exp(u) + u: u fans out to three uses", "fan_out",
                    {"M": rng.normal(size=(2, 2)), "v": rng.normal(size=2)}))
        w, c = rng.normal(), rng.normal()
        out.append(("(h + h * w).exp() with h = w * c: diamonds and a reused leaf", "diamond",
                    {"w": w, "c": c}))
        # A custom Function that is no exercise's answer (z ↦ z³), so that the graph
        # sent to the kernel carries no reference solution.
        out.append(("Cube.apply(z).sum(): a custom autograd Function", "custom_function",
                    {"z": rng.normal(size=4)}))
    return out


@_on_one_thread
def check_grad_fn_chain(grad_fn_chain, part="all"):
    """grad_fn_chain(t): breadth-first class names from t.grad_fn to the AccumulateGrad leaves."""
    rng = rng_for("grad_fn_chain")

    def compare(edge):
        for what, graph, arrays in _expressions(rng, edge):
            where = f"grad_fn_chain(t) for {what}"
            # The student's walker gets the graph built where it lives; the expected names
            # and the known mistakes come from the same graph built here from the same arrays.
            got = _attempt(where, lambda graph=graph, arrays=arrays: experiment(
                grad_fn_chain, "walk_graph", graph=graph, arrays=arrays))
            t = build_graph(graph, arrays)
            _expect_names(where, got, R.grad_fn_chain(t), _chain_mistakes(t))

    run_parts(part, {"values": lambda: compare(False), "edge": lambda: compare(True)})


# ============================================================================
# Part A of the lesson: the student's own scalar engine (Value, engine_train)
# ============================================================================
#
# The student's Value class lives in the grading kernel: each expression below
# is sent as plain data (judge.experiments.build_expression's list of nodes),
# built there from the student's class, back-propagated there, and only the
# nodes' .data and .grad come back as floats. Everything they are compared with
# is computed here: the reference engine (for the forward values and every
# node's gradient) and torch.autograd (for the random expressions). A wrong
# gradient is traced to the first node (from the output down) whose gradient
# disagrees with what its users' gradients, as the student's engine computed
# them, imply: the mistake is then in the backward of the operations that use
# that node, and a catalogue of wrong local derivatives, of a missing +=, of a
# wrong order and of a node run twice, each computed from those same numbers,
# names it.

# The wordings of the mistakes the manifest lists are the manifest's
# (course_lib/manifest/autograd.toml); the others are written here.

import itertools  # noqa: E402
import math  # noqa: E402

from ..judge.experiments import EXPRESSION_OPS, build_expression  # noqa: E402

_UNARY_FUNCTIONS = ("exp", "tanh", "sigmoid", "relu")
_SYMBOL = {"add": "+", "mul": "·", "sub": "-", "div": "/"}

FORGOT_ACCUMULATE = known_mistake("value-forgot-accumulate")
MISSING_UPSTREAM = ("the upstream gradient is missing: an operation's backward adds local "
                    "derivative × out.grad into each input (the chain rule), not the local "
                    "derivative alone")
RAN_TWICE = ("a node's backward ran twice, so its contribution arrived twice: a node reached "
             "along two paths must appear once in the topological order (keep a set of "
             "visited nodes)")
NOT_TOPOLOGICAL = known_mistake("value-backward-not-reversed")
SIGN_FLIPPED = ("a contribution arrived with the wrong sign: each input receives + local "
                "derivative × out.grad (`+=`, not `-=`), with the local derivative's own sign")
ROOT_NOT_ONE = ("the output's gradient must be 1 after backward() (∂out/∂out = 1): backward() "
                "starts with `self.grad = 1.0`, before visiting the nodes")
POW_EXPONENT = known_mistake("value-pow-exponent-gradient")

TOPO_DUPLICATES = known_mistake("value-topo-no-visited")
TOPO_REVERSED = ("the order runs from the output to the leaves; a topological order lists every "
                 "node AFTER its inputs (the leaves first, self last), and backward() walks it "
                 "reversed")
TOPO_PRE_ORDER = ("a node is listed before one of its inputs: append a node only after visiting "
                  "all its inputs (depth-first post-order: recurse into the children, then "
                  "append)")

TRAIN_NO_ZERO = known_mistake("engine-train-no-zero-grad")
TRAIN_ZERO_AFTER = ("the parameters never moved: the gradients were zeroed after backward() and "
                    "before the update (or .data was never changed): zero, then backward(), "
                    "then p.data -= lr * p.grad")
TRAIN_SIGN = known_mistake("engine-train-ascent")
TRAIN_SUM = ("the loss is summed over the samples instead of averaged: J = (1/N) Σ_n ½ Σ_j "
             "(a_nj - y_nj)²")
TRAIN_NO_HALF = "the ½ of the course's MSE is missing: J = (1/N) Σ_n ½ Σ_j (a_nj - y_nj)²"
TRAIN_LOSS_AFTER = ("the losses are those after each update; record the loss of each forward "
                    "pass, the one whose backward() gave that step")


def _names(nodes):
    """Readable names: leaves a, b, c, ...; the others v1, v2, ...; the last one "out"."""
    names, leaves, inner = [], 0, 0
    for i, node in enumerate(nodes):
        if node[0] == "leaf":
            names.append("abcdefghijklmnpqrstuw"[leaves] if leaves < 21 else f"x{leaves}")
            leaves += 1
        elif i == len(nodes) - 1:
            names.append("out")
        else:
            inner += 1
            names.append(f"v{inner}")
    return names


def _formula(node, names) -> str:
    op, *rest = node
    if op == "leaf":
        return f"{rest[0]:.6g}"
    n_nodes = EXPRESSION_OPS[op][0]
    args = [names[int(i)] for i in rest[:n_nodes]]
    consts = [f"{float(c):g}" for c in rest[n_nodes:]]
    if op in _SYMBOL:
        return f"{args[0]} {_SYMBOL[op]} {args[1]}"
    return {"neg": lambda: f"-{args[0]}", "pow": lambda: f"{args[0]} ** {consts[0]}",
            "add_const": lambda: f"{args[0]} + {consts[0]}",
            "mul_const": lambda: f"{args[0]} * {consts[0]}",
            "radd": lambda: f"{consts[0]} + {args[0]}",
            "rmul": lambda: f"{consts[0]} * {args[0]}"}.get(op, lambda: f"{args[0]}.{op}()")()


def expression_text(nodes) -> str:
    """The expression in a line: "a = 0.5, b = -1; v1 = a · b; out = v1.exp()"."""
    names = _names(nodes)
    leaves = [f"{names[i]} = {_formula(n, names)}" for i, n in enumerate(nodes) if n[0] == "leaf"]
    ops = [f"{names[i]} = {_formula(n, names)}" for i, n in enumerate(nodes) if n[0] != "leaf"]
    return ", ".join(leaves) + "; " + "; ".join(ops)


def _operands(node):
    """(node indices, constants) of a node."""
    op, *rest = node
    if op == "leaf":
        return [], []
    n_nodes = EXPRESSION_OPS[op][0]
    return [int(i) for i in rest[:n_nodes]], [float(c) for c in rest[n_nodes:]]


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _local_derivatives(node, vals, out):
    """∂node/∂operand for each node operand (in order), at the forward values ``vals``."""
    op = node[0]
    (ins, consts) = _operands(node)
    a = vals[ins[0]] if ins else None
    b = vals[ins[1]] if len(ins) > 1 else None
    c = consts[0] if consts else None
    return {"add": lambda: [1.0, 1.0], "mul": lambda: [b, a], "sub": lambda: [1.0, -1.0],
            "div": lambda: [1.0 / b, -a / b ** 2], "neg": lambda: [-1.0],
            "pow": lambda: [c * a ** (c - 1)], "add_const": lambda: [1.0],
            "radd": lambda: [1.0], "mul_const": lambda: [c], "rmul": lambda: [c],
            "exp": lambda: [out], "tanh": lambda: [1.0 - out ** 2],
            "sigmoid": lambda: [out * (1.0 - out)],
            "relu": lambda: [1.0 if a > 0 else 0.0]}[op]()


def _wrong_local_derivatives(node, slot, vals, out):
    """[(description, wrong ∂node/∂operand)] for operand ``slot``: the known slips."""
    op = node[0]
    ins, consts = _operands(node)
    a = vals[ins[0]]
    b = vals[ins[1]] if len(ins) > 1 else None
    c = consts[0] if consts else None
    wrong = []
    if op == "mul":
        mine = a if slot == 0 else b
        wrong.append(("in the backward of *, an input's local derivative is the OTHER input's "
                      "value (∂(a·b)/∂a = b, ∂(a·b)/∂b = a); you used the input's own value",
                      mine))
    elif op == "pow":
        if a > 0:
            wrong.append((POW_EXPONENT, out * math.log(a)))
        wrong.append(("the backward of ** gave k · x^k: the exponent of the power rule is k - 1, "
                      "∂(x^k)/∂x = k · x^(k-1)", c * a ** c))
        wrong.append(("the backward of ** gave x^(k-1): the factor k of the power rule is "
                      "missing, ∂(x^k)/∂x = k · x^(k-1)", a ** (c - 1)))
    elif op == "exp":
        wrong.append(("the backward of exp used the input x; ∂e^x/∂x = e^x, the output "
                      "(out.data)", a))
    elif op == "tanh":
        wrong.append(("the backward of tanh used the input: 1 - x²; ∂tanh(x)/∂x = 1 - t² with "
                      "t = tanh(x), the OUTPUT", 1.0 - a ** 2))
        wrong.append(("the backward of tanh gave 1 - t: the square is missing, ∂tanh(x)/∂x = "
                      "1 - t²", 1.0 - out))
        wrong.append(("the backward of tanh used the sigmoid's derivative t(1 - t); ∂tanh(x)/∂x "
                      "= 1 - t²", out * (1.0 - out)))
    elif op == "sigmoid":
        wrong.append((known_mistake("value-sigmoid-of-input"), a * (1.0 - a)))
        wrong.append(("the backward of sigmoid gave s: the factor (1 - s) of σ'(x) = s(1 - s) "
                      "is missing", out))
        wrong.append(("the backward of sigmoid computed σ'(σ(x)): s = out.data already is σ(x), "
                      "so σ'(x) = s(1 - s)", _sig(out) * (1.0 - _sig(out))))
        wrong.append(("the backward of sigmoid used tanh's derivative 1 - s²; σ'(x) = s(1 - s)",
                      1.0 - out ** 2))
    elif op == "relu":
        if a == 0:
            wrong.append(("the backward of relu passed the gradient at x = 0; the course (and "
                          "PyTorch) take ReLU'(0) = 0: test x > 0, not x >= 0", 1.0))
        elif a < 0:
            wrong.append(("the backward of relu passed the gradient through where x < 0; "
                          "ReLU'(x) = 0 there (1 only where x > 0)", 1.0))
        wrong.append(("the backward of relu used its output as the local derivative; ReLU'(x) "
                      "is 1 where x > 0 and 0 elsewhere", out))
    elif op == "sub" and slot == 1:
        wrong.append(("the backward of a - b gave b the gradient +1; ∂(a - b)/∂b = -1", 1.0))
    elif op == "neg":
        wrong.append(("the backward of -x kept the sign: ∂(-x)/∂x = -1", 1.0))
    elif op == "div":
        if slot == 1:
            wrong.append(("the backward of a / b gave b +a/b²; ∂(a/b)/∂b = -a/b²", a / b ** 2))
            wrong.append(("the backward of a / b gave b -1/b²; ∂(a/b)/∂b = -a/b²",
                          -1.0 / b ** 2))
        else:
            wrong.append(("the backward of a / b gave a the local derivative b; ∂(a/b)/∂a = 1/b",
                          b))
    elif op in ("mul_const", "rmul"):
        wrong.append((f"the backward of a product with the constant {c:g} dropped it: "
                      f"∂(c·x)/∂x = c", 1.0))
    return wrong


def _users(nodes):
    """For each node: [(user index, operand slot)], every use of it by a later node."""
    users = [[] for _ in nodes]
    for p, node in enumerate(nodes):
        for slot, i in enumerate(_operands(node)[0]):
            users[i].append((p, slot))
    return users


def _close_num(x, y, rtol=RTOL, atol=ATOL) -> bool:
    return isinstance(x, float) and math.isfinite(x) and abs(x - y) <= atol + rtol * abs(y)


def _reading_text(r) -> str:
    if isinstance(r, dict):
        if "missing" in r:
            return f"a {r['type']} without an attribute .{r['missing']}"
        return f"a {r['type']} ({r.get('repr', '')})"
    return f"{r:.10g}"


def _diagnose_gradients(nodes, vals, grads):
    """The first node, from the output down, whose gradient its users' gradients contradict.

    Args:
        nodes: the expression; vals: its right forward values; grads: the student's .grad
            of every node (floats, already checked to be numbers).
    Returns:
        None when every gradient follows from its users' (then all are right), else
        (node index, the gradient its users imply, the name of a matching known mistake
        or None).
    """
    n = len(nodes)
    if not _close_num(grads[-1], 1.0):
        return n - 1, 1.0, ROOT_NOT_ONE
    users = _users(nodes)
    local = [_local_derivatives(node, vals, vals[i]) if node[0] != "leaf" else []
             for i, node in enumerate(nodes)]

    def contributions(j):
        return [local[p][slot] * grads[p] for p, slot in users[j]]

    for j in range(n - 2, -1, -1):
        parts = contributions(j)
        due = math.fsum(parts)
        if _close_num(grads[j], due):
            continue
        candidates = []
        if len(parts) > 1:
            candidates += [(FORGOT_ACCUMULATE, c) for c in parts]
        for k, (p, slot) in enumerate(users[j]):
            others = due - parts[k]
            for description, wrong in _wrong_local_derivatives(nodes[p], slot, vals, vals[p]):
                candidates.append((description, others + wrong * grads[p]))
            if not _close_num(grads[p], 1.0):
                candidates.append((MISSING_UPSTREAM, others + local[p][slot]))
            candidates.append((RAN_TWICE, others + 2.0 * parts[k]))
            candidates.append((SIGN_FLIPPED, others - parts[k]))
            # p passed its gradient on when only some of its own contributions had arrived
            p_parts = contributions(p)
            for size in range(len(p_parts)):
                for subset in itertools.combinations(p_parts, size):
                    candidates.append((NOT_TOPOLOGICAL,
                                       others + local[p][slot] * math.fsum(subset)))
        name = next((d for d, v in candidates if _close_num(grads[j], v, rtol=1e-6)
                     and not _close_num(v, due)), None)
        return j, due, name
    return None


def _engine_reference(nodes):
    """(forward values, gradients) of every node, by the reference engine."""
    built = build_expression(R.Value, nodes)
    built[-1].backward()
    return [v.data for v in built], [v.grad for v in built]


def _forward_mistakes(node, vals):
    """[(description, wrong forward value)] for a node whose operands are right."""
    op = node[0]
    ins, consts = _operands(node)
    a = vals[ins[0]] if ins else None
    out = []
    if op == "sigmoid":
        out.append(("the minus sign of e^{-x} is missing: 1/(1 + e^x) = σ(-x)", _sig(-a)))
    elif op == "sub":
        out.append(("the operands of a - b are swapped: you computed b - a", vals[ins[1]] - a))
        out.append(("a - b computed a + b: subtract the negated b, self + (-other)",
                    a + vals[ins[1]]))
    elif op == "div":
        out.append(("the operands of a / b are swapped: you computed b / a", vals[ins[1]] / a))
    elif op == "relu":
        out.append(("relu returned x unchanged where x < 0; max(0, x) is 0 there", a))
    elif op == "neg":
        out.append(("-x returned x: the sign is missing", a))
    elif op == "pow":
        out.append(("** computed k · x instead of x^k", consts[0] * a))
    return out


def _engine_where(what, nodes):
    return f"{what} for {expression_text(nodes)}"


def _engine_run(Value, nodes, where, backward=True):
    """The student's .data and .grad of every node (floats), checked to be numbers."""
    got = _attempt(where, lambda: experiment(Value, "value_backward", nodes=nodes,
                                             backward=backward))
    names = _names(nodes)
    for field in ("data", "grad") if backward else ("data",):
        for i, r in enumerate(got[field]):
            if not isinstance(r, float) or not math.isfinite(r):
                raise AssertionError(f"{where}: {names[i]}.{field} must be a finite number (a "
                                     f"Python float); got {_reading_text(r)}.")
    return got["data"], got["grad"]


def _expect_engine(Value, nodes, what, expected=None, source="the reference engine"):
    """Run ``nodes`` in the student's engine and judge every node's data, then every grad.

    ``expected`` is (values, grads) from another source (torch); by default the
    reference engine's.
    """
    where = _engine_where(what, nodes)
    names = _names(nodes)
    vals, grads = expected if expected is not None else _engine_reference(nodes)
    data, got = _engine_run(Value, nodes, where)
    for i, (d, v) in enumerate(zip(data, vals, strict=True)):
        if _close_num(d, v):
            continue
        msg = (f"{where}: wrong forward value: {names[i]} = {_formula(nodes[i], names)} should be "
               f"{v:.10g} ({source}), got {names[i]}.data = {d:.10g}.")
        hint = next((desc for desc, w in _forward_mistakes(nodes[i], vals)
                     if _close_num(d, w, rtol=1e-6) and not _close_num(w, v)), None)
        if hint:
            msg += f"\n  This matches a known mistake: {hint}."
        raise AssertionError(msg)
    if all(_close_num(g, e) for g, e in zip(got, grads, strict=True)):
        return
    found = _diagnose_gradients(nodes, vals, got)
    wrong = [f"{names[i]}.grad: expected {e:.10g}, got {g:.10g}"
             for i, (g, e) in enumerate(zip(got, grads, strict=True)) if not _close_num(g, e)]
    msg = (f"{where}: after out.backward(), {len(wrong)} of {len(nodes)} gradients differ from "
           f"{source}'s: " + "; ".join(wrong[:6]) + ("; ..." if len(wrong) > 6 else "") + ".")
    if found is not None:
        j, due, name = found
        used_by = sorted({names[p] + " = " + _formula(nodes[p], names)
                          for p, _ in _users(nodes)[j]})
        if j == len(nodes) - 1:
            msg += f"\n  The first wrong one is {names[j]}.grad itself."
        else:
            msg += (f"\n  The first wrong one, from the output down, is {names[j]}.grad: the "
                    f"gradients of the nodes that use it ({'; '.join(used_by)}) imply "
                    f"{due:.10g}, so look at the backward of "
                    f"{'that operation' if len(used_by) == 1 else 'those operations'}.")
        if name is None:
            name = _order_mistake(Value, nodes)
        if name:
            msg += f"\n  This matches a known mistake: {name}."
    raise AssertionError(msg)


def _order_mistake(Value, nodes):
    """RAN_TWICE or NOT_TOPOLOGICAL when the student's topological_order() for ``nodes``
    lists a node twice or a node before one of its inputs; None otherwise (or when it
    cannot tell). A diagnosis only: the points rest on the gradients."""
    try:
        got = experiment(Value, "value_topological_order", nodes=nodes)
    except Exception:  # noqa: BLE001 - no order to look at: no diagnosis
        return None
    order = [i for i in got.get("items", []) if isinstance(i, int) and i >= 0]
    if len(set(order)) < len(order):
        return RAN_TWICE
    pos = {i: k for k, i in enumerate(order)}
    if any(i in pos and p in pos and pos[i] > pos[p]
           for p, node in enumerate(nodes) for i in _operands(node)[0]):
        return NOT_TOPOLOGICAL
    return None


# --- the expressions -----------------------------------------------------------

_POWERS = (2.0, 3.0, -1.0, 0.5, 1.5, -0.5)


def _safe(op, operands, consts) -> bool:
    """Whether ``op`` is well away from overflow, division by 0 and complex powers here."""
    a = operands[0] if operands else 0.0
    if op == "div":
        return abs(operands[1]) > 0.3
    if op == "pow":
        k = consts[0]
        if k != int(k) and a < 0.2:
            return False
        return not (k < 0 and abs(a) < 0.3) and abs(a) < 6
    if op == "exp":
        return a < 3.0
    if op == "relu":
        return abs(a) > 1e-3
    return True


def random_expression(rng, n_leaves=3, n_ops=8, ops=tuple(EXPRESSION_OPS)):
    """A random expression (judge.experiments' node list) in which every node reaches the output.

    Operands favour nodes not used yet and recent ones, so the graphs are deep and
    have fan-outs; an operation that would leave its safe domain (``_safe``) is
    replaced by tanh. Values stay below 50 in magnitude.
    """
    nodes = [["leaf", float(np.round(rng.uniform(-2.0, 2.0), 3))] for _ in range(n_leaves)]
    vals = [n[1] for n in nodes]
    used = [0] * n_leaves

    def pick():
        weights = np.array([(3.0 if used[i] == 0 else 1.0) * (1.0 + i / len(nodes))
                            for i in range(len(nodes))])
        return int(rng.choice(len(nodes), p=weights / weights.sum()))

    def append(op, ins, consts):
        fn = EXPRESSION_OPS[op][2]
        value = fn(*(vals[i] for i in ins), *consts) if op not in _UNARY_FUNCTIONS else {
            "exp": math.exp, "tanh": math.tanh, "sigmoid": _sig,
            "relu": lambda x: max(x, 0.0)}[op](vals[ins[0]])
        for i in ins:
            used[i] += 1
        nodes.append([op, *ins, *consts])
        vals.append(float(value))
        used.append(0)

    for _ in range(n_ops):
        op = str(rng.choice(ops))
        n_nodes, n_consts, _ = EXPRESSION_OPS[op]
        ins = [pick() for _ in range(n_nodes)]
        consts = ([float(rng.choice(_POWERS))] if op == "pow" else
                  [float(np.round(rng.uniform(-2.0, 2.0), 2))] * n_consts)
        if not _safe(op, [vals[i] for i in ins], consts):
            op, ins, consts = "tanh", ins[:1], []
        append(op, ins, consts)
        if abs(vals[-1]) > 50:
            nodes.pop(), vals.pop(), used.pop()
            for i in ins:
                used[i] -= 1
            append("tanh", ins[:1], [])
    while used.count(0) > 1:  # join the loose ends: every node reaches the output
        loose = [i for i, u in enumerate(used) if u == 0]
        append("add", loose[:2], [])
    return nodes


def _leaves(rng, k, low=-2.0, high=2.0, avoid_zero=True):
    out = []
    while len(out) < k:
        x = float(np.round(rng.uniform(low, high), 3))
        if not (avoid_zero and abs(x) < 0.2):
            out.append(x)
    return [["leaf", x] for x in out]


def _op_cases(rng, ops):
    """One expression per case: the operation on fresh leaves, times a leaf k (the upstream)."""
    cases = []
    for op, consts in ops:
        n_nodes = EXPRESSION_OPS[op][0]
        for const in consts:
            if op == "relu" and const is not None:  # relu at a chosen sign (or exactly 0)
                leaves = [["leaf", const]]
                c = []
            elif op == "pow":  # positive bases: x^k · ln x (the exponent's gradient) is real
                leaves, c = _leaves(rng, 1, 0.3, 2.0), [const]
            else:
                leaves = _leaves(rng, n_nodes)
                c = [] if const is None else [const]
            nodes = leaves + [[op, *range(n_nodes), *c]]
            cases.append(nodes + _leaves(rng, 1) + [["mul", n_nodes, n_nodes + 1]])
    return cases


@_on_one_thread
def check_Value(Value, part="all"):
    """The student's scalar engine: each operation, the topological order, accumulation at
    a fan-out, and agreement with torch.autograd on random expressions."""
    rng = rng_for("Value")

    def arithmetic():
        ops = [("add", [None]), ("mul", [None]),
               ("add_const", [float(np.round(rng.uniform(0.5, 3), 2))]),
               ("radd", [float(np.round(rng.uniform(0.5, 3), 2))]),
               ("mul_const", [float(np.round(rng.uniform(0.5, 3), 2))]),
               ("rmul", [-float(np.round(rng.uniform(0.5, 3), 2))]),
               ("pow", [2.0, 3.0, -1.0, 0.5, -1.5]),  # before a / b = a · b ** -1
               ("neg", [None]), ("sub", [None]), ("div", [None])]
        # a · b on its own first (its grads are b and a): every other case multiplies its
        # operation's output by a leaf k, so that the upstream gradient is k, not 1.
        for nodes in [_leaves(rng, 2) + [["mul", 0, 1]], *_op_cases(rng, ops)]:
            _expect_engine(Value, nodes, "out.backward()")

    def functions():
        ops = [("exp", [None, None]), ("tanh", [None, None]), ("sigmoid", [None, None]),
               ("relu", [float(np.round(rng.uniform(0.2, 2), 3)),
                         -float(np.round(rng.uniform(0.2, 2), 3)), 0.0])]
        for nodes in _op_cases(rng, ops):
            _expect_engine(Value, nodes, "out.backward()")

    def topo():
        primitive = ("add", "mul", "pow", "exp", "tanh", "sigmoid", "relu")
        graphs = [  # the diamond first: on a chain, pre-order is the reversed order
            _leaves(rng, 2) + [["mul", 0, 1], ["exp", 2], ["tanh", 2], ["add", 3, 4]],  # diamond
            [["leaf", 0.7], ["tanh", 0], ["exp", 1], ["sigmoid", 2]],  # a chain
            _leaves(rng, 2) + [["add", 0, 1], ["mul", 2, 0], ["mul", 3, 2], ["add", 4, 2]],
            random_expression(rng, 3, 10, ("add", "mul", "tanh", "sigmoid", "exp")),
            random_expression(rng, 4, 12, primitive),
        ]
        for nodes in graphs:
            _check_topological(Value, nodes)

    def accumulate():
        graphs = [
            _leaves(rng, 1) + [["mul", 0, 0]],                                   # a · a
            _leaves(rng, 1) + [["add", 0, 0]],                                   # a + a
            _leaves(rng, 2) + [["mul", 0, 1], ["add", 2, 0]],                    # a·b + a
            _leaves(rng, 2, -1.0, 1.0) + [["mul", 0, 1], ["exp", 2], ["mul", 3, 2],
                                          ["add", 4, 2]],                        # e^u · u + u
            _leaves(rng, 3) + [["mul", 0, 1], ["add", 3, 2], ["tanh", 4], ["mul", 5, 0],
                               ["pow", 0, 2.0], ["add", 6, 7]],                  # a used 3 times
            random_expression(rng, 2, 10, ("add", "mul", "tanh", "sigmoid")),
        ]
        for nodes in graphs:
            _expect_engine(Value, nodes, "out.backward() (a node is used several times)")

    def against_torch():
        for _ in range(16):
            nodes = random_expression(rng, int(rng.integers(2, 5)), int(rng.integers(4, 14)))
            _expect_engine(Value, nodes, "a random expression, out.backward()",
                           expected=_torch_reference(nodes), source="torch.autograd")

    run_parts(part, {"arithmetic": arithmetic, "functions": functions, "topo": topo,
                     "accumulate": accumulate, "torch": against_torch})


def _torch_reference(nodes):
    """(forward values, gradients) of every node, by torch.autograd in float64."""
    built = build_expression(lambda x: torch.tensor(x, dtype=F64, requires_grad=True), nodes)
    for t in built:
        if not t.is_leaf:
            t.retain_grad()
    built[-1].backward()
    return ([float(t.detach()) for t in built],
            [0.0 if t.grad is None else float(t.grad) for t in built])


def _check_topological(Value, nodes):
    """The student's topological_order() for ``nodes``: every node once, after its inputs."""
    where = _engine_where("out.topological_order()", nodes)
    names = _names(nodes)
    got = _attempt(where, lambda: experiment(Value, "value_topological_order", nodes=nodes))
    if not got["sequence"]:
        raise AssertionError(f"{where} must return a list of the nodes (Value objects), got a "
                             f"{got['type']}.")
    others = [x for x in got["items"] if isinstance(x, str)]
    if others:
        raise AssertionError(f"{where} must return the nodes themselves (Value objects); the "
                             f"list holds {others[0]} items" + (
                                 ": return the Values, not their .data"
                                 if others[0] in ("float", "int") else "") + ".")
    order = [i for i in got["items"] if i >= 0]  # -1: a number an operation wrapped in a Value
    shown = "[" + ", ".join(names[i] for i in order[:14]) + (", ..." if len(order) > 14 else "") \
        + "]"
    if len(set(order)) < len(order):
        twice = sorted({names[i] for i in order if order.count(i) > 1})
        raise AssertionError(f"{where}: {', '.join(twice)} listed more than once: got {shown}.\n"
                             f"  This matches a known mistake: {TOPO_DUPLICATES}.")
    missing = sorted(set(range(len(nodes))) - set(order))
    if missing:
        leaves = {i for i, n in enumerate(nodes) if n[0] == "leaf"}
        hint = ("the leaves are missing: the inputs of the graph are nodes too, and come first"
                if set(missing) <= leaves else
                "the output itself is missing: the list ends with self" if missing ==
                [len(nodes) - 1] else "")
        raise AssertionError(f"{where}: {len(missing)} of the {len(nodes)} nodes are missing "
                             f"({', '.join(names[i] for i in missing)}); got {shown}."
                             + (f"\n  This matches a known mistake: {hint}." if hint else ""))
    pos = {i: k for k, i in enumerate(order)}
    late = [(p, i) for p, node in enumerate(nodes) for i in _operands(node)[0]
            if pos[i] > pos[p]]
    if not late:
        return
    p, i = late[0]
    reversed_ok = all(pos[i] > pos[p] for p, node in enumerate(nodes) for i in _operands(node)[0])
    raise AssertionError(
        f"{where}: {names[p]} = {_formula(nodes[p], names)} comes before its input {names[i]}: "
        f"got {shown}.\n  This matches a known mistake: "
        f"{TOPO_REVERSED if reversed_ok else TOPO_PRE_ORDER}.")


# --- engine_train --------------------------------------------------------------

def _train_numpy(params, X, Y, lr, steps, accumulate=False, sign=-1.0, scale=1.0,
                 update=True, loss_after=False):
    """Gradient descent by the numpy reference backprop, with one mistake switched on."""
    acts = ["sigmoid"] * (len(params) - 1) + ["softmax"]
    params = [(W.copy(), b.copy()) for W, b in params]
    total = None
    losses = []
    for _ in range(steps):
        J, grads = R.backprop(params, X, Y, acts, "mse")
        grads = [(dW * scale, db * scale) for dW, db in grads]
        if accumulate:
            total = grads if total is None else [(tW + dW, tb + db) for (tW, tb), (dW, db)
                                                 in zip(total, grads, strict=True)]
            grads = total
        if update:
            params = [(W + sign * lr * dW, b + sign * lr * db)
                      for (W, b), (dW, db) in zip(params, grads, strict=True)]
        losses.append(J * scale)
    if loss_after:
        losses = losses[1:] + [R.backprop(params, X, Y, acts, "mse")[0] * scale]
    return losses, params


@_on_one_thread
def check_engine_train(engine_train, part="all"):
    """engine_train(params, X, Y, lr, steps) -> (losses, params): gradient descent on a
    sigmoid-hidden, softmax-output MSE network, against the numpy reference."""
    from .. import nets

    rng = rng_for("engine_train")

    def case(params, X, Y, lr, steps, what):
        where = f"engine_train(params, X, Y, lr={lr:g}, steps={steps}) for {what}"
        args = (copy.deepcopy(params), X.copy(), Y.copy(), lr, steps)
        out = _attempt(where, lambda: engine_train(*args))
        for (W, b), (W0, b0) in zip(args[0], params, strict=True):
            if not (np.array_equal(W, W0) and np.array_equal(b, b0)):
                raise AssertionError(f"{where}: it modified the arrays in params; make Values "
                                     "from them and leave the arrays alone (return new ones).")
        losses, new = expect_tuple(out, "engine_train", ("losses", "params"))
        try:
            losses = [float(x) for x in losses]
        except (TypeError, ValueError):
            raise AssertionError(f"{where}: losses must be a list of {steps} numbers (loss.data "
                                 f"of each step), got {fmt(losses)}.") from None
        if len(losses) != steps:
            raise AssertionError(f"{where}: expected {steps} losses (one per step), got "
                                 f"{len(losses)}.")
        if not isinstance(new, list | tuple) or len(new) != len(params) or not all(
                isinstance(p, list | tuple) and len(p) == 2 for p in new):
            raise AssertionError(f"{where}: params must be a list of {len(params)} (W, b) "
                                 "pairs of numpy arrays.")
        N = X.shape[0]
        mistakes = {TRAIN_NO_ZERO: dict(accumulate=True), TRAIN_SIGN: dict(sign=1.0),
                    TRAIN_ZERO_AFTER: dict(update=False), TRAIN_NO_HALF: dict(scale=2.0),
                    TRAIN_LOSS_AFTER: dict(loss_after=True)}
        if N > 1:
            mistakes[TRAIN_SUM] = dict(scale=float(N))
        ref_losses, ref_params = _train_numpy(params, X, Y, lr, steps)

        def compare(label, got, expected, pick):
            # The mistakes' trainings (six per case) are run only for an answer that differs.
            try:
                _close(label, got, expected)
            except AssertionError:
                runs = {k: _train_numpy(params, X, Y, lr, steps, **v)
                        for k, v in mistakes.items()}
                _close(label, got, expected, mistakes={k: pick(v) for k, v in runs.items()})
                raise

        compare(f"{where}: the losses", np.array(losses), ref_losses, lambda run: run[0])
        for layer, ((W, b), (W_r, b_r)) in enumerate(zip(new, ref_params, strict=True)):
            for label, got, exp, idx in (("W", W, W_r, 0), ("b", b, b_r, 1)):
                compare(f"{where}: params[{layer}] {label} after the last step", got, exp,
                        lambda run, layer=layer, idx=idx: run[1][layer][idx])

    def values():
        net = nets.seed000()
        case(net.params, net.X, net.Y, 0.1, 3, "the 3-4-2 network of the lecture notes")
        for n_in, n_hidden, n_out, N, steps in ((2, 3, 2, 4, 4), (3, 4, 3, 3, 3)):
            params = nets.init_params((n_in, n_hidden, n_out), seed=int(rng.integers(1 << 30)))
            X = rng.normal(size=(N, n_in))
            Y = np.eye(n_out)[rng.integers(0, n_out, size=N)]
            lr = float(np.round(rng.uniform(0.5, 2.0), 2))
            case(params, X, Y, lr, steps, f"a random {n_in}-{n_hidden}-{n_out} network, N = {N}")
        params = nets.init_params((2, 3, 3, 2), seed=int(rng.integers(1 << 30)))
        X = rng.normal(size=(3, 2))
        Y = np.eye(2)[rng.integers(0, 2, size=3)]
        case(params, X, Y, 1.0, 3, "a random 2-3-3-2 network (two sigmoid layers), N = 3")

    run_parts(part, {"values": values})
