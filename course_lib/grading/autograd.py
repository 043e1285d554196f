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
from collections import deque

import numpy as np
import torch
import torch.nn.functional as F

from .. import reference as R
from ..judge.experiments import build_graph
from ._core import ATOL, RTOL, expect_close, expect_tuple, experiment, fmt, rng_for, run_parts

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
                mistakes = _mistakes_for(loss, acts, params, X, Y, N, params[-1][0].shape[0],
                                         J_ref, g_ref)
                _compare_backprop(got, (J_ref, g_ref), where, mistakes)

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
    """∂(Σ G * cls.apply(*args)) / ∂args by central differences of the student's forward."""
    def weighted(values):
        applied = _attempt(where, lambda: experiment(cls, "function_apply", args=values))
        out = _tensor_out(where, applied["out"], G.shape)
        return float(np.sum(G * out.detach().numpy()))

    grads = []
    for i, a in enumerate(args):
        grad = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            values = []
            for sign in (1.0, -1.0):
                moved = [x.copy() for x in args]
                moved[i][idx] += sign * GRADCHECK_EPS
                values.append(weighted(moved))
            grad[idx] = (values[0] - values[1]) / (2 * GRADCHECK_EPS)
        grads.append(grad)
    return grads


LINEAR_DW_T = ("dW is transposed: you returned Xᵀ dZ of shape (n_in, n_out); the gradient has "
               "W's shape (n_out, n_in): dW = dZᵀ X")
LINEAR_DB_SUM = ("db was not summed over the batch: you returned dZ itself, shape (N, n_out); "
                 "b is added to every row, so db = dZ.sum(0), shape (n_out,)")


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

    run_parts(part, {"forward": forward, "backward": backward, "autograd": through_autograd})


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
