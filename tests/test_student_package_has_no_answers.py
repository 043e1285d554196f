"""No helper a student can import returns a graded function's answer (COURSE.md, issue 12).

The student package is ``course_lib`` without GRADING_ONLY (the copy that the
student wheel, ``make lab`` and the grading kernel hold). This test copies it into
a temporary folder, imports every module of the copy in a separate ``python -S``
(so the editable install of the full course_lib is not seen), and calls every
callable it can reach with the inputs of every graded function of lessons 01-04:

* module-level functions and classes, the callables nested in module-level
  dicts, lists, tuples and objects, every method of every class (private names
  included; static and class methods directly, the others on an instance built
  with no arguments), and the callables those calls return;
* each with the graded function's arguments as they are, with a missing trailing
  parameter filled in (``None``, ``0``, or, for a parameter called ``name``,
  ``loss``, ``op``..., each of the course's activation and loss names), with a
  leading name of that kind, and, for one-parameter callables, with each array
  argument alone;
* and every higher-order callable (one whose first parameter is ``f``, ``fn``,
  ``act``...: the differentiators of gradcheck and widgets.complex_step) with each
  of those callables as its function, so that the package cannot differentiate
  its own building blocks into an answer either (σ' as the complex-step
  derivative of a σ it provides, say).

A call *answers* when its result, or anything inside it (tuple, list and dict
entries, the attributes of a course object), equals the reference's output for
the same inputs: the whole structure (``(dout, dout)`` for the add gate), one
non-trivial part of it (``dw`` of the neuron), or every informative entry of such
a part spread over scalars (the gradients of a graph, one node each). Trivial
parts (all zeros, constant, or equal to an input) count only as a whole. The
tolerance (rtol 1e-6, atol 1e-9) is looser than the grader's (1e-7, 1e-10), so
anything that could pass a check is caught, finite-difference answers included.
Calls that raise or run longer than 2 s, and drawings, are fine.

The inputs are random, like the hidden checks', and so lie off every slider grid:
the explorers show numbers only at their sliders' positions (checked by the second
test), which random inputs never are. The sweep runs with ``COURSE_GRADING=1``, as
the grading kernel does (the only place where a function's result earns marks):
drawing functions return None there, and the numbers of explorers stay.

Out of scope, by design: code that the student writes around the library's
general tools. Numerical and complex-step differentiation of a forward pass the
student writes (gradcheck.numerical_gradient, widgets.complex_step.gradient),
like numpy's own np.logaddexp, can be turned into gradients; that is what those
tools are for, and the tamper reader, not this test, looks at how answers are
written.

A canary module (answers hidden in each of the shapes above) is added to the copy:
the sweep must find every one of them, so that it can never pass by finding nothing.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import inspect
import io
import json
import os
import pickle
import signal
import sys
import types
import warnings
from pathlib import Path

import numpy as np

#: (callable, graded function) pairs that may answer, each with the reason why it
#: cannot be changed. Empty: nothing in the student package needs an exception.
ALLOWED: dict[tuple[str, str], str] = {}

#: modules of the student package that cannot be imported here, and why that is fine
#: (torch is blocked in the probe: lessons 01-04 grade without it, and the grading
#: kernel refuses to import it there, so nothing that needs it can answer them).
UNIMPORTABLE = {
    "course_lib.widgets.autograd": "lesson 05's explorer imports torch",
}

RTOL, ATOL = 1e-6, 1e-9
CALL_SECONDS = 2.0

#: names of the course's activations and losses, tried for parameters that pick one
VOCABULARY = ("sigmoid", "relu", "tanh", "identity", "softmax", "mse", "bce", "cross_entropy")
CHOICE_PARAMETERS = {"name", "act", "activation", "kind", "op", "loss", "last_act", "which",
                     "mode"}
#: a higher-order callable's first parameter: the function it differentiates or runs
FUNCTION_PARAMETERS = {"f", "fn", "func", "function", "act"}
FILLERS = (None, 0)
MAX_FILL_COMBINATIONS = 16
#: dunder methods worth calling (the others are object's protocol: repr, eq, hash...)
DUNDERS = {"__call__", "__getattr__", "__getitem__"}


# =============================================================================
# The probe: runs in a `python -S` that sees only the student package (and numpy).
# Nothing above or below this line imports course_lib at module level.
# =============================================================================

class _Timeout(BaseException):
    """Raised by the alarm: a BaseException, so that `except Exception` in the
    package cannot swallow it."""


def _on_alarm(signum, frame):
    raise _Timeout()


def _fresh(value):
    """A copy of the data in ``value`` (a call may change its arguments in place);
    functions and objects are passed as they are."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, (list, tuple)):
        return type(value)(_fresh(v) for v in value)
    if isinstance(value, dict):
        return {k: _fresh(v) for k, v in value.items()}
    return value


def _call(fn, args, kwargs=None):
    """(True, result) or (False, None) when fn raised or ran out of time."""
    signal.setitimer(signal.ITIMER_REAL, CALL_SECONDS)
    try:
        return True, fn(*_fresh(tuple(args)), **_fresh(kwargs or {}))
    except (Exception, _Timeout, SystemExit):  # noqa: BLE001 - raising is an allowed outcome
        return False, None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _is_course(obj) -> bool:
    return (getattr(obj, "__module__", None) or "").startswith("course_lib")


def _signature(fn):
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def _binds(sig, args, kwargs=None) -> bool:
    if sig is None:
        return True
    try:
        sig.bind(*args, **(kwargs or {}))
        return True
    except TypeError:
        return False


# --- what a result contains ----------------------------------------------------

def _numeric(value):
    """value as an ndarray when it is a number or an array of numbers, else None."""
    if isinstance(value, (bool, np.bool_)) or value is None:
        return None
    if isinstance(value, (int, float, complex, np.number)):
        return np.asarray(value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufc":
        return value
    return None


def _walk(value, path="result", depth=0, seen=None, out=None):
    """Every (path, item) inside a result: containers, numbers, arrays and callables."""
    seen = set() if seen is None else seen
    out = [] if out is None else out
    if len(out) > 4000 or id(value) in seen:
        return out
    out.append((path, value))
    if _numeric(value) is not None or depth >= 4:
        return out
    seen.add(id(value))
    if isinstance(value, dict):
        for k, v in list(value.items())[:500]:
            _walk(v, f"{path}[{k!r}]", depth + 1, seen, out)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value[:500]):
            _walk(v, f"{path}[{i}]", depth + 1, seen, out)
    elif _is_course(type(value)) and not isinstance(value, (type, types.FunctionType,
                                                              types.MethodType)):
        attrs = getattr(value, "__dict__", None) or {}
        if not attrs and hasattr(type(value), "__slots__"):
            attrs = {s: getattr(value, s, None) for s in type(value).__slots__}
        for k, v in attrs.items():
            _walk(v, f"{path}.{k}", depth + 1, seen, out)
    return out


def _flat(value):
    """The leaves of a tuple/list/dict structure, in order (dicts by sorted key)."""
    if isinstance(value, dict):
        try:
            keys = sorted(value)
        except TypeError:
            return None
        return [leaf for k in keys for leaf in (_flat(value[k]) or [None])]
    if isinstance(value, (list, tuple)):
        return [leaf for v in value for leaf in (_flat(v) or [None])]
    arr = _numeric(value)
    return [arr] if arr is not None else None


def _same(a, b) -> bool:
    """Same shape and values (within RTOL, ATOL)."""
    if a is None or b is None or np.shape(a) != np.shape(b):
        return False
    try:
        return bool(np.allclose(a, b, rtol=RTOL, atol=ATOL))
    except (TypeError, ValueError):
        return False


def _input_leaves(args):
    return [leaf for leaf in (_flat(list(args)) or []) if leaf is not None]


def _trivial(part, inputs) -> bool:
    """A part any helper might return by coincidence: zeros, a constant, an input."""
    arr = np.asarray(part, dtype=complex)
    if arr.size == 0 or np.allclose(arr, 0.0, atol=1e-12):
        return True
    if arr.size > 1 and np.allclose(arr, arr.flat[0], rtol=1e-12, atol=1e-12):
        return True
    if arr.size == 1 and any(np.isclose(arr.flat[0], c) for c in (1.0, -1.0, 0.5)):
        return True
    return any(_same(part, x) for x in inputs)


class _Case:
    """One call of a graded function: its arguments, the reference's output, and the
    parts of that output that identify it."""

    def __init__(self, graded, args, expected):
        self.graded, self.args, self.expected = graded, tuple(args), expected
        self.whole = _flat(expected)
        inputs = _input_leaves(self.args)
        input_entries = np.concatenate([np.ravel(x).astype(complex) for x in inputs]
                                       or [np.zeros(0)])
        self.parts = [p for p in self.whole if p is not None and not _trivial(p, inputs)]
        # entries of array parts that no helper shows by chance (not 0, ±1, or an input)
        self.scattered = []
        for p in self.parts:
            if p.size < 2 or p.size > 64:
                continue
            e = [v for v in np.ravel(p) if abs(v) > 1e-6 and not np.isclose(abs(v), 1.0)
                 and not np.any(np.isclose(v, input_entries, rtol=1e-12, atol=0))]
            if len(e) >= 2:
                self.scattered.append((p, np.array(e)))

    def answered_by(self, result):
        """'how: where' for the first way `result` holds the answer, else None."""
        items = _walk(result)
        for path, item in items:  # the whole structure
            if isinstance(item, (tuple, list, dict)) or _numeric(item) is not None:
                flat = _flat(item)
                if flat is not None and len(flat) == len(self.whole) and all(
                        _same(a, b) for a, b in zip(flat, self.whole, strict=True)):
                    if len(self.whole) > 1 or self.parts:
                        return f"the whole answer at {path}"
        numbers = [(path, _numeric(item)) for path, item in items
                   if _numeric(item) is not None]
        for path, arr in numbers:  # one part
            for p in self.parts:
                if _same(arr, p):
                    return f"part of the answer at {path}"
        scalars = np.array([complex(a.ravel()[0]) for _, a in numbers if a.size == 1])
        for p, entries in self.scattered:  # one part, entry by entry
            if scalars.size and all(np.any(np.isclose(v, scalars, rtol=RTOL, atol=ATOL))
                                    for v in entries):
                return f"every entry of a part of shape {p.shape} among its numbers"
        return None


# --- what the package holds ------------------------------------------------------

def _student_modules(root: Path):
    names = []
    for path in sorted((root / "course_lib").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__main__":
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    modules, failed = [], {}
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except Exception as exc:  # noqa: BLE001 - reported, and compared with UNIMPORTABLE
            failed[name] = f"{type(exc).__name__}: {exc}"
    return modules, failed


class _Reach:
    """Every callable reachable from the modules, with a readable label."""

    def __init__(self, modules):
        self.functions: list[tuple[str, object]] = []   # called as they are
        self.classes: list[tuple[str, type]] = []
        self._seen: set[int] = set()
        for mod in modules:
            for name, obj in sorted(vars(mod).items()):
                self._visit(obj, f"{mod.__name__}.{name}", 0)
        for label, cls in list(self.classes):
            self._members(label, cls)

    def _add(self, label, fn):
        if id(fn) not in self._seen:
            self._seen.add(id(fn))
            self.functions.append((label, fn))

    def _visit(self, obj, label, depth):
        if isinstance(obj, type):
            if _is_course(obj) and id(obj) not in self._seen:
                self._seen.add(id(obj))
                self.classes.append((f"{obj.__module__}.{obj.__qualname__}", obj))
            return
        if isinstance(obj, types.ModuleType):
            return
        if callable(obj) and _is_course(obj):
            name = getattr(obj, "__qualname__", "")
            self._add(label if "<lambda>" in name or not name
                      else f"{obj.__module__}.{name}", obj)
            return
        if depth >= 3:
            return
        if isinstance(obj, dict):
            for k, v in obj.items():
                self._visit(v, f"{label}[{k!r}]", depth + 1)
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                self._visit(v, f"{label}[{i}]", depth + 1)
        elif _is_course(type(obj)):  # a module-level object: its bound methods, its fields
            for name in dir(type(obj)):
                if name.startswith("__") and name not in DUNDERS:
                    continue
                static = inspect.getattr_static(obj, name, None)
                if isinstance(static, (types.FunctionType, staticmethod, classmethod)):
                    self._visit(getattr(obj, name), f"{label}.{name}", depth + 1)
            for k, v in (getattr(obj, "__dict__", None) or {}).items():
                self._visit(v, f"{label}.{k}", depth + 1)

    def _members(self, label, cls):
        instance = None
        ok, made = _call(cls, ())
        if ok and made is not None:
            instance = made
        for name in sorted(dir(cls)):
            if name.startswith("__") and name not in DUNDERS:
                continue
            owner = next((k for k in cls.__mro__ if name in vars(k)), None)
            if owner is None or not _is_course(owner):
                continue
            static = vars(owner)[name]
            if isinstance(static, (staticmethod, classmethod)):
                self._add(f"{label}.{name}", getattr(cls, name))
            elif isinstance(static, types.FunctionType) and instance is not None:
                self._add(f"{label}().{name}", getattr(instance, name))


# --- the calls -------------------------------------------------------------------

def _variants(fn, args):
    """(description, args, kwargs) to try: see the module docstring."""
    sig = _signature(fn)
    out = []
    if _binds(sig, args):
        out.append(("as given", args, {}))
    if sig is None:
        return out
    params = [p for p in sig.parameters.values()
              if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if params and params[0].name in CHOICE_PARAMETERS:
        for word in VOCABULARY:
            if _binds(sig, (word, *args)):
                out.append((f"{word!r} first", (word, *args), {}))
    missing = [p for p in params[len(args):] if p.default is p.empty]
    if missing and len(params) > len(args):
        choices = [VOCABULARY if p.name in CHOICE_PARAMETERS else FILLERS for p in missing]
        combos = [()]
        for c in choices:
            combos = [(*k, v) for k in combos for v in c][:MAX_FILL_COMBINATIONS]
        for combo in combos:
            kwargs = {p.name: v for p, v in zip(missing, combo, strict=True)}
            if _binds(sig, args, kwargs):
                out.append((f"with {kwargs}", args, kwargs))
    if len(params) == 1 and len(args) > 1:
        for i, a in enumerate(args):
            if isinstance(a, np.ndarray) and _binds(sig, (a,)):
                out.append((f"argument {i} alone", (a,), {}))
    return out


def _sweep(functions, cases, findings, found_callables=None):
    calls = 0
    for label, fn in functions:
        for case in cases:
            for how, args, kwargs in _variants(fn, case.args):
                calls += 1
                ok, result = _call(fn, args, kwargs)
                if not ok:
                    continue
                if found_callables is not None:
                    for path, item in _walk(result):
                        if (callable(item) and _is_course(item) and not isinstance(item, type)
                                and id(item) not in found_callables):
                            found_callables[id(item)] = (f"{label}(...) -> {path}", item)
                where = case.answered_by(result)
                if where:
                    findings.append({"callable": label, "graded": case.graded, "call": how,
                                     "args": [type(a).__name__ + str(np.shape(a))
                                              for a in case.args], "where": where})
    return calls


def _higher_order(functions):
    out = []
    for label, fn in functions:
        sig = _signature(fn)
        if sig is None:
            continue
        params = list(sig.parameters.values())
        if params and params[0].name in FUNCTION_PARAMETERS and params[0].kind in (
                params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
            required = [p for p in params if p.default is p.empty
                        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            out.append((label, fn, len(required)))
    return out


def _sweep_higher_order(functions, cases, findings):
    calls = 0
    for hof_label, hof, n_required in _higher_order(functions):
        for case in cases:
            if n_required != 1 + len(case.args):
                continue
            for label, fn in functions:
                calls += 1
                ok, result = _call(hof, (fn, *case.args))
                if ok:
                    where = case.answered_by(result)
                    if where:
                        findings.append({"callable": f"{hof_label}(f={label})",
                                         "graded": case.graded, "call": "as given",
                                         "args": [type(a).__name__ + str(np.shape(a))
                                                  for a in case.args], "where": where})
    return calls


def probe(root: Path, cases_file: Path, out_file: Path) -> None:
    sys.modules["torch"] = None  # `import torch` raises ImportError (see UNIMPORTABLE)
    signal.signal(signal.SIGALRM, _on_alarm)
    warnings.simplefilter("ignore")
    np.seterr(all="ignore")
    raw = pickle.loads(cases_file.read_bytes())
    cases = [_Case(c["graded"], c["args"], c["expected"]) for c in raw]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        modules, failed = _student_modules(root)
        reach = _Reach(modules)
        findings: list[dict] = []
        returned: dict[int, tuple[str, object]] = {}
        everything = reach.functions + reach.classes  # a class is called to build one
        calls = _sweep(everything, cases, findings, returned)
        known = {id(f) for _, f in everything}
        new = [(label, fn) for key, (label, fn) in returned.items() if key not in known]
        calls += _sweep(new, cases, findings)
        calls += _sweep_higher_order(everything + new, cases, findings)
    out_file.write_text(json.dumps({
        "modules": sorted(m.__name__ for m in modules), "unimportable": failed,
        "course_lib": modules[0].__file__ if modules else None,
        "callables": [label for label, _ in everything + new],
        "calls": calls, "findings": findings}))


if __name__ == "__main__":
    probe(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
    sys.exit(0)


# =============================================================================
# The tests (pytest side: the full course_lib, its reference answers)
# =============================================================================

import subprocess  # noqa: E402
import sysconfig  # noqa: E402

import pytest  # noqa: E402

CANARY = '''
"""Answers hidden in every shape the sweep looks for (added by the test, never shipped)."""
import numpy as np


def stable_sigmoid(z):
    z = np.asarray(z, dtype=float)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


TABLE = {
    "jacobian": lambda z, unused: (lambda s: np.diag(s) - np.outer(s, s))(
        np.exp(z - np.max(z)) / np.exp(z - np.max(z)).sum()),
    "pair": lambda dout: (np.array(dout) * 1.0, np.array(dout) * 1.0),
}


class Mask:
    def positive(self, z):
        return (np.asarray(z) > 0).astype(float)


class _Node:
    def __init__(self, value):
        self.value = value


def neuron_graph(w, x):  # the gradients, one number per node (and no f)
    w, x = np.asarray(w, dtype=float), np.asarray(x, dtype=float)
    f = 1 / (1 + np.exp(-(w[0] * x[0] + w[1] * x[1] + w[2])))
    d = f * (1 - f)
    return {"nodes": [_Node(float(v)) for v in (d * x[0], d * x[1], d, d * w[0], d * w[1])]}


def complex_tanh(z):
    return np.tanh(z)


def loss(name, Z, Y):
    if name != "cross_entropy":
        raise ValueError(name)
    Z = Z - Z.max(axis=1, keepdims=True)
    return float(-(Y * (Z - np.log(np.exp(Z).sum(axis=1, keepdims=True)))).sum() / len(Z))
'''

#: what the sweep must find in the canary: (callable, graded function)
CANARY_ANSWERS = {
    ("course_lib._answer_canary.stable_sigmoid", "sigmoid"),
    ("course_lib._answer_canary.TABLE['jacobian']", "softmax_jacobian"),
    ("course_lib._answer_canary.TABLE['pair']", "add_gate_backward"),
    ("course_lib._answer_canary.Mask().positive", "relu_prime"),
    ("course_lib._answer_canary.neuron_graph", "neuron_forward_backward"),
    ("course_lib.widgets.complex_step.derivative(f=course_lib._answer_canary.complex_tanh)",
     "tanh_prime"),
    ("course_lib._answer_canary.loss", "cross_entropy"),
}


def graded_cases() -> list[dict]:
    """Inputs of every graded function of lessons 01-04 with the reference's outputs."""
    from course_lib import reference as R

    rng = np.random.default_rng(20_12)

    def n(*shape, scale=1.0):
        return rng.normal(0.0, scale, size=shape)

    def one_hot(N, C):
        return np.eye(C)[rng.integers(0, C, size=N)]

    saturated = np.array([-800.0, -40.0, -2.3, -0.41, 0.0, 0.73, 3.1, 40.0, 800.0])
    cases = []

    def add(name, *args):
        cases.append({"graded": name, "args": args,
                      "expected": getattr(R, name)(*copy.deepcopy(args))})

    # lesson 01
    for shape in [(5,), (2, 3), ()]:
        add("add_gate_backward", n(*shape, scale=2.0) if shape else 0.77)
        add("mul_gate_backward", *(n(*shape, scale=2.0) for _ in range(3)))
        add("max_gate_backward", *(n(*shape, scale=2.0) for _ in range(3)))
        add("fanout_forward_backward", *(n(*shape, scale=2.0) for _ in range(2)))
    ties = np.round(n(6, scale=2.0), 1)
    add("max_gate_backward", ties, np.where(np.arange(6) % 2 == 0, ties, ties + 0.35), n(6))
    add("fanout_forward_backward", ties, np.where(np.arange(6) % 2 == 0, ties, -ties))
    for _ in range(2):
        add("neuron_forward_backward", n(3, scale=1.5), n(2, scale=1.5))
    add("matmul_l2_forward_backward", n(3, 4), n(4))
    add("matmul_l2_forward_backward", n(2, 2), n(2))
    params = {k: float(v) for k, v in zip(("w1", "w2", "w3", "w4", "b1", "b2", "b3"),
                                           n(7), strict=True)}
    add("ssr_output_grads", np.sort(rng.uniform(0, 1, 4)), n(4) + 2.0, params)
    # lesson 02
    for z in (saturated, n(3, 4, scale=3.0), 0.8123, -1.437):
        for name in ("sigmoid", "sigmoid_prime", "tanh_prime"):
            add(name, z)
    for z in (saturated, n(3, 4, scale=3.0)):
        add("relu_prime", z)
    add("bce", rng.uniform(0.02, 0.98, 6), rng.integers(0, 2, 6).astype(float))
    add("bce", rng.uniform(0.02, 0.98, (4, 1)), rng.integers(0, 2, (4, 1)).astype(float))
    add("bce_sigmoid_delta", n(6, scale=3.0), rng.integers(0, 2, 6).astype(float))
    add("bce_sigmoid_delta", saturated.reshape(-1, 1), rng.integers(0, 2, (9, 1)).astype(float))
    # lesson 03
    big = n(3, 5) + np.array([[800.0], [-800.0], [0.0]])
    for z in (n(4, scale=2.0), big, n(2, 3, 4, scale=2.0)):
        add("softmax", z)
        add("softmax_backward", z, n(*z.shape))
    for z in (n(4, scale=2.0), n(3, scale=2.0) + np.array([7.0, 0.0, 0.0])):
        add("softmax_jacobian", z)
    for Z in (n(5, 3, scale=2.0), big):
        Y = one_hot(*Z.shape)
        add("cross_entropy", Z, Y)
        add("softmax_cross_entropy_grad", Z, Y)
        add("cross_entropy", Z, Y.argmax(axis=1))
        add("softmax_cross_entropy_grad", Z, Y.argmax(axis=1))
    # lesson 04
    add("dense_forward", n(4, 3), n(2, 3), n(2))
    add("dense_backward", n(4, 2), n(4, 3), n(2, 3))
    X = n(5, 3)
    for acts, loss, Y in ((("sigmoid", "softmax"), "cross_entropy", one_hot(5, 2)),
                          (("relu", "sigmoid"), "bce", rng.integers(0, 2, (5, 2)).astype(float)),
                          (("tanh", "identity"), "mse", n(5, 2))):
        layers = [(n(4, 3), n(4)), (n(2, 4), n(2))]
        add("backprop", layers, X, Y, acts, loss)
    layers = [(n(4, 3), n(4)), (n(2, 4), n(2))]
    grads = [(n(4, 3), n(4)), (n(2, 4), n(2))]
    add("sgd_step", layers, grads, 0.1)
    return cases


def _site_packages() -> list[str]:
    paths = sysconfig.get_paths()
    return list(dict.fromkeys([paths["purelib"], paths["platlib"]]))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Run the probe once on a fresh student package (with the canary added)."""
    from course_lib.judge.sealed import copy_student_package

    root = tmp_path_factory.mktemp("student")
    package = copy_student_package(root)
    (package / "_answer_canary.py").write_text(CANARY)
    cases_file, out_file = root / "cases.pkl", root / "findings.json"
    cases_file.write_bytes(pickle.dumps(graded_cases()))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COURSE_", "PYTHON"))}
    env.update(PYTHONPATH=os.pathsep.join([str(root), *_site_packages()]),
               COURSE_GRADING="1", MPLBACKEND="Agg", PYTHONHASHSEED="0")
    done = subprocess.run([sys.executable, "-S", __file__, str(root), str(cases_file),
                           str(out_file)], env=env, capture_output=True, text=True,
                          timeout=300, cwd=root)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out_file.read_text())
    result["root"] = str(root)
    return result


def test_the_probe_sees_the_student_package_and_all_of_it(sweep):
    assert sweep["course_lib"].startswith(sweep["root"]), sweep["course_lib"]
    assert sweep["unimportable"].keys() == UNIMPORTABLE.keys(), sweep["unimportable"]
    for module in ("course_lib.gradcheck", "course_lib.nets", "course_lib.data",
                   "course_lib.figures.sigmoid", "course_lib.figures.softmax",
                   "course_lib.widgets.complex_step", "course_lib.widgets.mlp"):
        assert module in sweep["modules"]
    assert not any(m.startswith(("course_lib.reference", "course_lib.grading",
                                 "course_lib.instructor")) for m in sweep["modules"])
    assert len(sweep["callables"]) > 300 and sweep["calls"] > 10_000, \
        (len(sweep["callables"]), sweep["calls"])


def test_the_sweep_finds_every_answer_of_the_canary(sweep):
    found = {(f["callable"], f["graded"]) for f in sweep["findings"]}
    assert CANARY_ANSWERS <= found, sorted(CANARY_ANSWERS - found)


def test_no_helper_returns_a_graded_answer(sweep):
    seen: dict[tuple[str, str], dict] = {}
    for f in sweep["findings"]:
        key = (f["callable"], f["graded"])
        if "_answer_canary" not in f["callable"] and key not in ALLOWED:
            seen.setdefault(key, f)
    assert not seen, "helpers of the student package return graded answers:\n" + "\n".join(
        f"  {c} answers {g}: called {f['call']} with {', '.join(f['args'])}, "
        f"{f['where']}" for (c, g), f in sorted(seen.items()))


# ---------------------------------------------------------------------------
# the explorers: numbers only at their sliders' positions
# ---------------------------------------------------------------------------

def _logic_classes():
    import course_lib.widgets  # noqa: F401 - registers the numpy explorers (not lesson 05's)
    from course_lib.widgets._base import Logic

    todo, found = [Logic], []
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            found.append(sub)
    return [c for c in found if c.__module__ != "course_lib.widgets.autograd"]


def _on_grid(logic) -> None:
    for name, c in logic.controls.items():
        if c.on_grid:  # not the learning rate of a log slider, which is no exercise's input
            k = logic.state[name] / c.step
            assert abs(k - round(k)) < 1e-6, (type(logic).__name__, name, logic.state[name])


def test_explorers_hold_only_slider_positions():
    """set(), update() and the constructors' starting values all land on the sliders'
    grid: an explorer shows σ'(z), a Jacobian or ∂L/∂w only where a slider can be,
    never at the random inputs of a hidden check."""
    from course_lib import nets
    from course_lib.widgets import NetworkLogic, SoftmaxLogic

    classes = _logic_classes()
    assert {c.__name__ for c in classes} >= {"GateLogic", "SigmoidLogic", "SoftmaxLogic",
                                            "NetworkLogic"}
    rng = np.random.default_rng(3)
    for cls in classes:
        logic = cls()
        _on_grid(logic)
        for name, c in list(logic.controls.items()):
            logic.set(name, float(rng.uniform(c.min, c.max)) + 1e-7)
            _on_grid(logic)
        logic.update(**{name: float(rng.uniform(c.min, c.max)) + 1e-7
                        for name, c in logic.controls.items()})
        _on_grid(logic)
        with pytest.raises(TypeError):  # the sliders are the only way in
            logic.state[next(iter(logic.controls))] = 0.123
        if hasattr(logic, "f_of"):  # finite differences: only right next to the sliders
            name = next(iter(logic.controls))
            logic.f_of({name: logic.state[name] + 1e-5})
            with pytest.raises(ValueError, match="nudge"):
                logic.f_of({name: logic.state[name] + 0.123})
    z = rng.normal(0.0, 2.0, size=4)
    soft = SoftmaxLogic(n=4, logits=z)
    _on_grid(soft)
    assert not np.allclose(soft.z, z)
    net = nets.seed000()
    mine = nets.SeedNet(**{**net.__dict__, "X": rng.normal(size=(1, 3)),
                           "params": [(rng.normal(size=W.shape), rng.normal(size=b.shape))
                                      for W, b in net.params]})
    logic = NetworkLogic(mine)
    _on_grid(logic)
    for arr in (logic.X, *(a for pair in logic.params for a in pair)):
        assert np.allclose(np.round(arr / 0.01), arr / 0.01, atol=1e-6)
