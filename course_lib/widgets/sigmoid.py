"""Lesson 02: σ and its slope at a point, saturation, and gradients through a deep stack.

Left: σ(z) with its tangent line at the slider's z; the slope of that line is
σ'(z), read off by complex step. Where σ' < 0.01 (|z| beyond about 4.6) the
curve is flat: shaded, *saturated*, a neuron there barely learns.

Right: a stack of L layers of one unit each, z_1 = z, a_k = act(z_k),
z_{k+1} = w·a_k + b. The gradient of the top output with respect to a lower
layer is a product of one factor w·act'(z_k) per layer, so it shrinks (or
grows) geometrically with depth: sigmoid's factors are at most w/4, tanh's up
to w, ReLU's exactly w or 0. Each curve shows |∂a_L/∂z_k| for k = 1..L, computed
by complex step on the whole stack (not by multiplying the factors).

    >>> from course_lib.widgets import SigmoidExplorer
    >>> SigmoidExplorer()
    >>> SigmoidExplorer(student_sigmoid_prime=sigmoid_prime)   # your σ' beside it
"""

from __future__ import annotations

import html
from collections.abc import Callable

import numpy as np

from course_lib.gradcheck import numerical_gradient

from . import complex_step as cs
from ._base import (
    Control,
    Explorer,
    Logic,
    as_array,
    call_student,
    check_span,
    fmt,
    num_span,
    rel_err,
    table,
)

__all__ = ["SigmoidLogic", "SigmoidExplorer", "STACK_ACTIVATIONS", "SATURATION"]

STACK_ACTIVATIONS = ("sigmoid", "tanh", "relu")
#: σ'(z) below this counts as saturated (shaded)
SATURATION = 0.01
MAX_DEPTH = 20


def _stack(act: Callable, z1: float, depth: int, w: float, b: float):
    """Forward values and complex-step gradients of a depth-``depth`` stack.

    Runs ``depth`` copies of the stack side by side; copy j gets its nudge
    ``+ih`` at layer j's pre-activation, so after the last layer its
    imaginary part / h is ∂a_L/∂z_j. Returns (z, a, grads): the real
    pre-activations and activations per layer and ∂a_L/∂z_k for k = 1..L.
    """
    zc = np.full(depth, z1, dtype=np.complex128)
    zs, acts = [], []
    for k in range(depth):
        zs.append(zc[k].real)
        zc[k] += 1j * cs.H
        a = act(zc)
        acts.append(a[k].real)
        if k < depth - 1:
            zc = w * a + b
    return np.array(zs), np.array(acts), a.imag / cs.H


def _stack_output(act: Callable, z1: float, depth: int, w: float, b: float) -> float:
    z = np.complex128(z1)
    for k in range(depth):
        a = act(z)
        if k < depth - 1:
            z = w * a + b
    return float(np.real(a))


class SigmoidLogic(Logic):
    """The numbers of :class:`SigmoidExplorer`.

    Sliders (``state``): ``z`` (-10..10), ``depth`` (1..20), ``w`` and ``b``
    (the weight and bias between the stacked layers).

    :meth:`values` returns:

    * ``"sigmoid(z)"``, ``"dsigmoid/dz"`` (complex step),
      ``"dsigmoid/dz (finite diff)"`` and, with ``student_sigmoid_prime``,
      ``"dsigmoid/dz (yours)"``;
    * for each act in sigmoid, tanh, relu: ``"a_L (act)"``,
      ``"da_L/dz_k (act)"`` for k = 1..depth (complex step),
      ``"z_k (act)"`` and ``"act'(z_k)"`` (each layer's local slope, complex
      step), ``"product of factors (act)"`` (Π w·act'(z_k), the chain rule
      spelled out, with w^(L-1) as there are L-1 weights) and
      ``"da_L/dz_1 (act) (finite diff)"``.
    """

    def __init__(self, student_sigmoid_prime: Callable | None = None) -> None:
        self.controls = {
            "z": Control("z", 1.0, -10.0, 10.0, 0.05, "z"),
            "depth": Control("depth", 6, 1, MAX_DEPTH, 1, "depth L", integer=True),
            "w": Control("w", 1.0, -4.0, 4.0, 0.05, "weight w"),
            "b": Control("b", 0.0, -4.0, 4.0, 0.05, "bias b"),
        }
        self.student_sigmoid_prime = student_sigmoid_prime
        self.student_error: str | None = None
        super().__init__()

    def values(self) -> dict[str, float]:
        z, L = self.state["z"], int(self.state["depth"])
        w, b = self.state["w"], self.state["b"]

        # The activations, complex-safe (each branch decided on the real part), are
        # written here, inside values(), on purpose: they only ever see the sliders'
        # values. A σ that any caller could evaluate would be σ itself, and its
        # complex-step derivative σ', answers of lesson 02 (COURSE.md: no helper a
        # student can import returns a graded function's answer).
        def sigmoid(v):
            v = np.asarray(v)
            e = np.exp(np.where(v.real >= 0, -v, v))  # the exponent is never positive
            return np.where(v.real >= 0, 1 / (1 + e), e / (1 + e))

        def relu(v):
            v = np.asarray(v)
            return np.where(v.real > 0, v, 0 * v)  # ReLU'(0) = 0

        activations = {"sigmoid": sigmoid, "tanh": np.tanh, "relu": relu}
        out: dict[str, float] = {
            "z": z,
            "sigmoid(z)": float(np.real(sigmoid(z))),
            "dsigmoid/dz": cs.derivative(sigmoid, z),
        }
        x = np.array([z])
        out["dsigmoid/dz (finite diff)"] = float(
            numerical_gradient(lambda v: float(np.real(sigmoid(v[0]))), x)[0])
        self.student_error = None
        res, err = call_student(self.student_sigmoid_prime, np.array([z]))
        if res is not None:
            try:
                out["dsigmoid/dz (yours)"] = float(as_array(res).reshape(-1)[0])
            except (TypeError, ValueError, IndexError) as exc:
                self.student_error = f"expected an array of σ'(z) values: {exc}"
        self.student_error = self.student_error or err
        for name in STACK_ACTIVATIONS:
            act = activations[name]
            zs, acts, grads = _stack(act, z, L, w, b)
            slopes = cs.derivative(act, zs)
            out[f"a_L ({name})"] = float(acts[-1])
            for k in range(L):
                out[f"z_{k + 1} ({name})"] = float(zs[k])
                out[f"{name}'(z_{k + 1})"] = float(slopes[k])
                out[f"da_L/dz_{k + 1} ({name})"] = float(grads[k])
            out[f"product of factors ({name})"] = float(np.prod(slopes) * w ** (L - 1))
            out[f"da_L/dz_1 ({name}) (finite diff)"] = float(numerical_gradient(
                lambda v, act=act: _stack_output(act, v[0], L, w, b), np.array([z]))[0])
        return out

    def relu_kinks(self, tol: float = 1e-4) -> list[int]:
        """Layers k whose ReLU input z_k is within ``tol`` of 0 (ReLU's kink)."""
        z, w, b = self.state["z"], self.state["w"], self.state["b"]
        kinks = []
        for k in range(int(self.state["depth"])):
            if abs(z) < tol:
                kinks.append(k + 1)
            z = w * max(z, 0.0) + b
        return kinks


class SigmoidExplorer(Explorer):
    """Sliders z, depth, w, b; σ with its tangent and saturation, and gradients through depth.

    Args:
        student_sigmoid_prime: optional, your ``sigmoid_prime(z)``; its value
            at z is shown beside the complex-step one.

    Displays (readout text): ``sigmoid(z) = 0.7311``, ``dsigmoid/dz = 0.1966``
    (class ``cl-grad``), ``dsigmoid/dz (finite diff) = ...`` (``cl-fd``),
    ``dsigmoid/dz (yours) = ...``; then tables whose cells carry the number
    alone with its name in ``data-name``: per activation
    ``da_L/dz_1 (sigmoid)``, ``product of factors (sigmoid)``,
    ``da_L/dz_1 (sigmoid) (finite diff)``, and per layer k
    ``z_k (act)``, ``act'(z_k)``, ``da_L/dz_k (act)``.
    """

    title = "σ(z): slope, saturation and vanishing gradients"

    def __init__(self, student_sigmoid_prime: Callable | None = None) -> None:
        super().__init__(SigmoidLogic(student_sigmoid_prime))

    _floor = 1e-14  # |gradients| below this sit on the bottom of the log plot

    def _build_figure(self):
        from ._render import COLORS, BlitFigure

        bf = BlitFigure((10.5, 3.9))
        fig = bf.fig
        ax = fig.add_axes((0.055, 0.13, 0.40, 0.75))
        ax2 = fig.add_axes((0.545, 0.13, 0.315, 0.75))
        self._ax, self._ax2 = ax, ax2

        # σ and σ' on this fixed axis only (|t| <= 10: 1 / (1 + e^-t) is safe), written
        # out here rather than taken from a helper: see values()
        t = np.linspace(-10, 10, 801)
        sc = 1 / (1 + np.exp(-(t + 1j * cs.H)))  # complex step: σ' is in the imaginary part
        s, ds = sc.real, sc.imag / cs.H
        flat = ds < SATURATION
        ax.fill_between(t, -0.15, 1.15, where=flat, color=COLORS["shade"], lw=0,
                        label=f"saturated: σ' < {SATURATION:g}")
        ax.plot(t, s, color=COLORS["sigmoid"], lw=2.2, label="σ(z)")
        ax.plot(t, ds, color="#e36209", lw=1.8, ls="--", label="σ'(z) (complex step)")
        ax.axhline(0, color="#d0d7de", lw=0.8, zorder=0)
        ax.set_xlim(-10, 10)
        ax.set_ylim(-0.12, 1.12)
        ax.set_xlabel("z")
        ax.set_title("σ(z) and its tangent at z", fontsize=11)
        ax.legend(loc="upper left", fontsize=8, frameon=False)
        ax.text(-9.7, 0.52, "flat:\nlearns\nslowly", fontsize=8, color="#b42318", va="center")
        ax.text(9.7, 0.52, "flat:\nlearns\nslowly", fontsize=8, color="#b42318", va="center",
                ha="right")
        self._tangent = bf.dynamic(ax.plot([], [], color="#6f42c1", lw=1.6)[0])
        self._vline = bf.dynamic(ax.axvline(0, color="#8c959f", lw=0.8, ls=":"))
        self._pt = bf.dynamic(ax.plot([], [], "o", color=COLORS["sigmoid"], ms=7, zorder=5)[0])
        self._dpt = bf.dynamic(ax.plot([], [], "o", color="#e36209", ms=6, zorder=5)[0])
        self._lab_s = bf.label(ax, 0, 0, offset=(8, 4), ha="left", va="bottom", size=9.5,
                               bold=True, color=COLORS["sigmoid"])
        self._lab_ds = bf.label(ax, 0, 0, offset=(8, -4), ha="left", va="top", size=9.5,
                                bold=True, color=COLORS["grad"])

        ax2.set_yscale("log")
        ax2.set_xlim(0.5, MAX_DEPTH + 0.5)
        ax2.set_ylim(self._floor, 1e14)
        ax2.set_yticks([10.0 ** e for e in range(-14, 15, 4)])
        ax2.set_xticks(range(1, MAX_DEPTH + 1, 2 if MAX_DEPTH > 10 else 1))
        ax2.set_xlabel("layer k")
        ax2.set_ylabel("|∂a_L / ∂z_k|")
        ax2.set_title("gradient reaching layer k from the top layer L", fontsize=11)
        ax2.axhline(1.0, color="#d0d7de", lw=0.8, zorder=0)
        ax2.grid(True, which="major", axis="y", color="#eaeef2", lw=0.6)
        self._lines = {}
        self._end = {}
        for i, name in enumerate(STACK_ACTIVATIONS):
            self._lines[name] = bf.dynamic(ax2.plot([], [], "o-", color=COLORS[name], lw=1.8,
                                                    ms=4, label=name)[0])
            self._end[name] = bf.label(None, 0.868, 0.79 - 0.075 * i, ha="left", va="center",
                                       size=9, bold=True, color=COLORS[name])
        ax2.legend(loc="upper left", fontsize=8, frameon=False, ncols=3)
        self._depth_line = bf.dynamic(ax2.axvline(1, color="#8c959f", lw=0.8, ls=":"))
        fig.text(0.868, 0.86, "∂a_L/∂z_1:", fontsize=9, color=COLORS["local"])
        return bf

    def _draw(self, v) -> None:
        z = v["z"]
        s, ds = v["sigmoid(z)"], v["dsigmoid/dz"]
        t = np.array([z - 3.0, z + 3.0])
        self._tangent.set_data(t, s + ds * (t - z))
        self._vline.set_xdata([z, z])
        self._pt.set_data([z], [s])
        self._dpt.set_data([z], [ds])
        left = z > 4
        for lab, y, text in ((self._lab_s, s, f"σ(z) = {fmt(s, 3)}"),
                             (self._lab_ds, ds, f"σ'(z) = {fmt(ds, 3)}")):
            lab.x, lab.y, lab.text = z, y, text
            lab.ha = "right" if left else "left"
            lab.offset = (-8 if left else 8, lab.offset[1])
        L = int(self.logic.state["depth"])
        k = np.arange(1, L + 1)
        for name in STACK_ACTIVATIONS:
            g = np.abs([v[f"da_L/dz_{j} ({name})"] for j in k])
            self._lines[name].set_data(k, np.maximum(g, self._floor))
        self._depth_line.set_xdata([L, L])
        for name in STACK_ACTIVATIONS:
            g1 = v[f"da_L/dz_1 ({name})"]
            self._end[name].text = f"{name}: {fmt(g1, 3) if g1 != 0 else '0 (dead)'}"

    def _readout(self, v) -> str:
        lg: SigmoidLogic = self.logic
        L = int(lg.state["depth"])
        ds = v["dsigmoid/dz"]
        sat = ds < SATURATION
        parts = [
            '<div class="cl-big">', num_span("sigmoid(z)", v["sigmoid(z)"], "value"), " &nbsp; ",
            num_span("dsigmoid/dz", ds), "</div>",
            "<div>", num_span("dsigmoid/dz (finite diff)", v["dsigmoid/dz (finite diff)"], "fd"),
            " ", check_span(rel_err(ds, v["dsigmoid/dz (finite diff)"])), "</div>"]
        if "dsigmoid/dz (yours)" in v:
            mine = v["dsigmoid/dz (yours)"]
            parts += ["<div>", num_span("dsigmoid/dz (yours)", mine, "student"), " ",
                      check_span(rel_err(ds, mine), 1e-7), "</div>"]
        if lg.student_error:
            parts.append(f'<div class="cl-bad">your sigmoid_prime: '
                         f"{html.escape(lg.student_error)}</div>")
        parts.append(f'<div class="cl-note">{"saturated: " if sat else ""}'
                     f"σ'(z) is {fmt(ds / 0.25 * 100, 3)}% of its maximum 1/4</div>")
        rows = []
        for name in STACK_ACTIVATIONS:
            g = v[f"da_L/dz_1 ({name})"]
            rows.append([name, num_span(f"da_L/dz_1 ({name})", g, bare=True),
                         num_span(f"product of factors ({name})",
                                  v[f"product of factors ({name})"], "value", bare=True),
                         num_span(f"da_L/dz_1 ({name}) (finite diff)",
                                  v[f"da_L/dz_1 ({name}) (finite diff)"], "fd", bare=True)])
        parts.append(f"<div style='margin-top:6px'>a stack of L = {L} layers "
                     f"(w = {fmt(lg.state['w'])}, b = {fmt(lg.state['b'])}):</div>")
        parts.append(table(["", "∂a_L/∂z_1 (complex step)", "Π act'(z_k) · w^(L-1)",
                            "finite differences"], rows))
        kinks = lg.relu_kinks()
        if kinks:
            parts.append('<div class="cl-note">ReLU input z_k = 0 at layer '
                         f"{', '.join(map(str, kinks))}: ReLU'(0) = 0 by the course's convention "
                         "(as in PyTorch), while central differences average the slopes on "
                         "both sides.</div>")
        lrows = []
        for k in range(1, L + 1):
            row = [str(k)]
            for name in STACK_ACTIVATIONS:
                row += [num_span(f"z_{k} ({name})", v[f"z_{k} ({name})"], "value", 3, bare=True),
                        num_span(f"{name}'(z_{k})", v[f"{name}'(z_{k})"], "cl-local", 3,
                                 bare=True),
                        num_span(f"da_L/dz_{k} ({name})", v[f"da_L/dz_{k} ({name})"], "grad", 3,
                                 bare=True)]
            lrows.append(row)
        head = ["k"] + ["z_k", "act'(z_k)", "∂a_L/∂z_k"] * len(STACK_ACTIVATIONS)
        groups = [("", 1)] + [(name, 3) for name in STACK_ACTIVATIONS]
        parts.append('<div style="max-height:190px;overflow-y:auto">'
                     + table(head, lrows, groups=groups) + "</div>")
        return "".join(parts)
