"""Lesson 04: grab one weight of a small network and watch the loss and every ∂J/∂w move.

The network is drawn with every weight on its edge and the gradient of the
loss with respect to it beside it (edge colour: the sign of ∂J/∂w, red for
positive, blue for negative; width: its size). A dropdown picks one weight or
bias, a slider sets its value; the panel on the right shows the loss as a
function of that one parameter, with the tangent whose slope is ∂J/∂θ, and
a central finite-difference check of it. A button takes one SGD step with
all the gradients, and the loss history grows below.

Every gradient is computed by complex step (one complex forward pass per
parameter; see :mod:`course_lib.widgets.complex_step`), never by a backward
pass, so your own ``backprop`` can be compared with it::

    >>> from course_lib.widgets import NetworkExplorer
    >>> NetworkExplorer()                                   # seed 000, 3-4-2
    >>> NetworkExplorer(nets.seed004())                     # 2-3-2-1, ReLU, BCE
    >>> NetworkExplorer(student_backprop=backprop)          # your gradients beside

A second explorer trains: :class:`LearningRateExplorer` runs YOUR ``backprop`` and
``sgd_step`` on 25, 100 and 400 points of the two-moons data at the learning rate
of its slider, with the batch loss as a mean or as a sum. Every run of every
slider position is trained once, when the explorer is built (a progress bar
shows it, a few seconds), so that a move only redraws::

    >>> LearningRateExplorer(backprop, sgd_step, X, y)
"""

from __future__ import annotations

import html
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType

import numpy as np

from course_lib import data, nets
from course_lib._drawing import GRADING
from course_lib._validate import check_choice

from . import complex_step as cs
from ._base import (
    Control,
    Explorer,
    Logic,
    _ipywidgets,
    as_array,
    call_student,
    check_span,
    fmt,
    num_span,
    rel_err,
    table,
)

__all__ = ["NetworkLogic", "NetworkExplorer", "Param", "LearningRateLogic",
           "LearningRateExplorer"]

_LAYER_WORD = ["input", "hidden", "hidden", "hidden", "hidden"]


@dataclass(frozen=True)
class Param:
    """One weight or bias: ``layer`` (1-based), ``kind`` ``"W"`` or ``"b"``, ``index``."""

    layer: int
    kind: str
    index: tuple[int, ...]

    @cached_property  # asked for thousands of times a move (readout, figure)
    def name(self) -> str:
        idx = ",".join(str(i) for i in self.index)
        return f"{self.kind}{self.layer}[{idx}]"


#: the grid of the explorer's sliders (Control.snap): its parameters and data lie on it
STEP = 0.01
#: the step of the finite-difference column (numerical_gradient's default)
FD_H = 1e-5


def _on_grid(values) -> np.ndarray:
    """A float64 copy of ``values`` with every entry moved to the nearest multiple of STEP."""
    return np.round(np.round(np.asarray(values, dtype=np.float64) / STEP) * STEP, 10)


class NetworkLogic(Logic):
    """The numbers of :class:`NetworkExplorer`: a network, its loss and every ∂J/∂θ.

    Args:
        net: a :class:`course_lib.nets.SeedNet` (default ``nets.seed000()``);
            its parameters and data are copied, the SeedNet is left alone. The
            copies are put on the sliders' grid (multiples of 0.01), where the
            seeds' numbers all are: like a slider, the explorer holds only grid
            values, so it is no calculator for ``backprop`` at the random inputs of
            a hidden check (COURSE.md: no helper a student can import returns a
            graded function's answer).
        student_backprop: optional, your ``backprop(params, X, Y, activations,
            loss) -> (loss_value, grads)``; shown beside the complex-step
            gradients (nothing is shown while it raises NotImplementedError).
        lr: starting learning rate.
        sample: which sample's activations :meth:`values` reports as ``a1[j]``
            (the loss is always the mean over all samples).

    Parameters are named like numpy indexing of the course's layout:
    ``W1[j,k]`` is ``params[0][0][j, k]``, the weight from unit k of layer 0
    (the input) to unit j of layer 1; ``b2[j]`` is ``params[1][1][j]``.

    ``state`` maps every parameter name and ``"lr"`` to its value;
    ``set("W1[0,0]", 0.3)`` moves one. ``selected`` is the parameter the
    widget's slider holds. :meth:`values` returns ``"J"``; ``"dJ/dW1[0,0]"``
    ... for every parameter (complex step) and ``"dJ/dW1[0,0] (finite
    diff)"`` (central differences); the forward values ``"x[k]"``,
    ``"a1[j]"`` ..., ``"y[j]"`` of sample ``sample``; and, with a student
    function, ``"J (yours)"`` and ``"dJ/dW1[0,0] (yours)"`` ...
    """

    def __init__(self, net=None, student_backprop: Callable | None = None, lr: float = 0.5,
                 sample: int = 0) -> None:
        net = nets.seed000() if net is None else net
        for attr in ("params", "X", "Y", "activations", "loss"):
            if not hasattr(net, attr):
                raise ValueError(f"net: expected a SeedNet (e.g. nets.seed000()), "
                                 f"got {type(net).__name__} without .{attr}")
        self.net = net
        self.X = _on_grid(net.X)
        self.Y = _on_grid(net.Y)
        self.activations = tuple(check_choice(f"net.activations[{i}]", a, nets.ACTIVATIONS)
                                 for i, a in enumerate(net.activations))
        self.loss = check_choice("net.loss", net.loss, nets.LOSSES)
        self.sizes = (self.X.shape[1],) + tuple(W.shape[0] for W, _ in net.params)
        self._initial = [(_on_grid(W), _on_grid(b)) for W, b in net.params]
        self.params = [(W.copy(), b.copy()) for W, b in self._initial]
        self.plist: list[Param] = []
        for layer, (W, b) in enumerate(self.params, start=1):
            self.plist += [Param(layer, "W", ix) for ix in np.ndindex(W.shape)]
            self.plist += [Param(layer, "b", ix) for ix in np.ndindex(b.shape)]
        self.by_name = {p.name: p for p in self.plist}
        self.controls = {p.name: Control(p.name, float(self._ref(p)), -4.0, 4.0, STEP, p.name)
                         for p in self.plist}
        # the learning rate sits on a log slider: kept as given (it is no exercise's input)
        self.controls["lr"] = Control("lr", float(lr), 0.01, 5.0, 0.01, "learning rate",
                                      on_grid=False)
        self.lr = float(lr)
        if not 0 <= sample < self.X.shape[0]:
            raise ValueError(f"sample: expected 0 to {self.X.shape[0] - 1}, got {sample!r}")
        self.sample = int(sample)
        self.selected = self.plist[0].name
        self.student_backprop = student_backprop
        self.student_error: str | None = None
        self.history: list[float] = []
        self._cache = None

    # --- parameters -------------------------------------------------------

    def _array(self, p: Param) -> np.ndarray:
        return self.params[p.layer - 1][0 if p.kind == "W" else 1]

    def _ref(self, p: Param) -> float:
        return float(self._array(p)[p.index])

    @property
    def state(self) -> Mapping[str, float]:
        """Every parameter's value and the learning rate (read-only: use :meth:`set`)."""
        out = {p.name: self._ref(p) for p in self.plist}
        out["lr"] = self.lr
        return MappingProxyType(out)

    def move(self, name: str, value) -> None:
        v = self._check(name, value)
        if name == "lr":
            if v <= 0:
                raise ValueError(f"lr: expected a positive learning rate, got {value!r}")
            self.lr = v
        else:
            p = self.by_name[name]
            self._array(p)[p.index] = v
            self._cache = None

    def update(self, **values) -> dict[str, float]:
        for name, value in values.items():
            self.move(name, value)
        return self.values()

    def select(self, name: str) -> None:
        """Choose the parameter the slider holds (its gradient is finite-difference checked)."""
        if name not in self.by_name:
            raise ValueError(f"name: unknown parameter {name!r}; expected one of "
                             f"{', '.join(self.by_name)}")
        self.selected = name

    def reset(self) -> dict[str, float]:
        """The network's own parameters again; the loss history is cleared."""
        self.params = [(W.copy(), b.copy()) for W, b in self._initial]
        self.history = []
        self._cache = None
        return self.values()

    # --- numbers ----------------------------------------------------------

    def _flat(self) -> np.ndarray:
        """Every parameter, in ``plist``'s order (layer by layer, W row by row, then b)."""
        return np.concatenate([a.ravel() for W, b in self.params for a in (W, b)])

    def _run(self, theta: np.ndarray) -> list:
        """(Z, A) of every layer (A^0 = X first), each (B, N, units), for a batch of B
        parameter vectors ``theta`` (B, P) in ``plist``'s order, real or complex.

        Every gradient the explorer shows is a difference of nudged networks: complex
        step nudges each parameter by +ih, central differences by ±h. Run one at a
        time that was 80 forward passes of a few numpy calls each on every move;
        stacked along a batch axis they are one forward pass.

        The activations are written out here, complex-safe (branches decided on the
        real part), and see only this network's data and parameters: a helper that
        applied σ or softmax to any input would return an answer of lessons 02 and
        03 (COURSE.md: no helper a student can import returns one).
        """
        B = theta.shape[0]
        A = np.broadcast_to(self.X, (B,) + self.X.shape)
        cache = [(None, A)]
        at = 0
        for (W, _b), act in zip(self.params, self.activations, strict=True):
            n_out, n_in = W.shape
            Wb = theta[:, at:at + W.size].reshape(B, n_out, n_in)
            bb = theta[:, at + W.size:at + W.size + n_out]
            at += W.size + n_out
            Z = A @ Wb.transpose(0, 2, 1) + bb[:, None, :]
            if act == "sigmoid":
                e = np.exp(np.where(Z.real >= 0, -Z, Z))  # the exponent is never positive
                A = np.where(Z.real >= 0, 1 / (1 + e), e / (1 + e))
            elif act == "relu":
                A = np.where(Z.real > 0, Z, 0 * Z)  # ReLU'(0) = 0
            elif act == "tanh":
                A = np.tanh(Z)
            elif act == "softmax":
                e = np.exp(Z - Z.real.max(axis=-1, keepdims=True))  # a real shift
                A = e / e.sum(axis=-1, keepdims=True)
            else:
                A = Z
            cache.append((Z, A))
        return cache

    def _losses(self, theta: np.ndarray) -> np.ndarray:
        """The loss (mean over samples) for each parameter vector of ``theta`` (B, P),
        complex-safe: with a parameter nudged by +ih, Im(J) / h is ∂J/∂(it)."""
        Z, A = self._run(theta)[-1]
        Y, N = self.Y, self.Y.shape[0]
        both = (-2, -1)  # sum over samples and units, one loss per row of theta
        if self.loss == "mse":
            r = A - Y
            return 0.5 * np.sum(r * r, axis=both) / N
        if self.loss == "bce":
            if self.activations[-1] == "sigmoid":
                # from the logits, exact where σ rounds to 0 or 1:
                # -[y log σ(z) + (1-y) log(1-σ(z))] = softplus(z) - y z
                softplus = (np.where(Z.real > 0, Z, 0 * Z)
                            + np.log1p(np.exp(np.where(Z.real >= 0, -Z, Z))))
                return np.sum(softplus - Y * Z, axis=both) / N
            return -np.sum(Y * np.log(A) + (1 - Y) * np.log(1 - A), axis=both) / N
        # cross_entropy takes the logits: -Σ y log softmax(z), log softmax = z - logsumexp(z)
        shifted = Z - Z.real.max(axis=-1, keepdims=True)
        log_s = shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
        return -np.sum(Y * log_s, axis=both) / N

    def _forward(self, perturb: str | None = None) -> list:
        """(Z, A) of every layer (A^0 = X first) at the current parameters; with
        ``perturb``, that parameter gets ``+ih`` (complex step)."""
        theta = self._flat()[None]
        if perturb is not None:
            theta = theta.astype(np.complex128)
            theta[0, self.plist.index(self.by_name[perturb])] += 1j * cs.H
        return [(None if Z is None else Z[0], A[0]) for Z, A in self._run(theta)]

    def _loss(self, perturb: str | None = None):
        """The loss (mean over samples) at the current parameters, complex-safe; with
        ``perturb``, that parameter gets ``+ih`` and Im(J) / h is ∂J/∂(it)."""
        theta = self._flat()[None]
        if perturb is not None:
            theta = theta.astype(np.complex128)
            theta[0, self.plist.index(self.by_name[perturb])] += 1j * cs.H
        return self._losses(theta)[0]

    def gradients(self) -> dict[str, float]:
        """∂J/∂θ for every parameter θ, by complex step: one nudged network each, all
        run as one batch (row i nudges parameter i by +ih)."""
        P = len(self.plist)
        theta = self._flat()[None] + 1j * cs.H * np.eye(P)
        g = np.imag(self._losses(theta)) / cs.H
        return {p.name: float(gi) for p, gi in zip(self.plist, g, strict=True)}

    def loss_along(self, name: str, thetas) -> np.ndarray:
        """J as a function of one parameter (the others fixed), at each of ``thetas``."""
        i = self.plist.index(self.by_name[name])
        thetas = np.asarray(thetas, dtype=np.float64).reshape(-1)
        batch = np.repeat(self._flat()[None], len(thetas), axis=0)
        batch[:, i] = thetas
        return np.real(self._losses(batch))

    def _finite_differences(self) -> dict[str, float]:
        """Central differences, (J(θ + h e_i) - J(θ - h e_i)) / 2h with h = 1e-5, as
        ``course_lib.gradcheck.numerical_gradient`` computes them, all 2P nudged
        networks in one batch."""
        P = len(self.plist)
        base = self._flat()
        batch = np.concatenate([base + FD_H * np.eye(P), base - FD_H * np.eye(P)])
        J = np.real(self._losses(batch))
        g = (J[:P] - J[P:]) / (2 * FD_H)
        return {p.name: float(gi) for p, gi in zip(self.plist, g, strict=True)}

    def relu_kinks(self, tol: float = 1e-4) -> list[str]:
        """ReLU inputs within ``tol`` of 0, where finite differences see a kink."""
        found = []
        cache = self._forward()
        for layer, act in enumerate(self.activations, start=1):
            if act != "relu":
                continue
            Z = cache[layer][0]
            for ix in zip(*np.nonzero(np.abs(Z) < tol), strict=True):
                found.append(f"Z{layer}[{int(ix[0])},{int(ix[1])}] = {fmt(Z[ix])}")
        return found

    def values(self) -> dict[str, float]:
        # kept while the parameters stay: a move of the learning rate (or a redraw)
        # recomputes nothing (the numbers do not depend on it)
        key = self._flat().tobytes()
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._compute())
        return dict(self._cache[1])

    def _compute(self) -> dict[str, float]:
        cache = self._forward()
        out: dict[str, float] = {"J": float(np.real(self._loss()))}
        s = self.sample
        for k in range(self.sizes[0]):
            out[f"x[{k}]"] = float(self.X[s, k])
        for layer in range(1, len(self.sizes)):
            Zl, Al = cache[layer]
            for j in range(self.sizes[layer]):
                out[f"z{layer}[{j}]"] = float(Zl[s, j])
                out[f"a{layer}[{j}]"] = float(Al[s, j])
        for j in range(self.sizes[-1]):
            out[f"y[{j}]"] = float(self.Y[s, j])
        grads = self.gradients()
        fd = self._finite_differences()
        for p in self.plist:
            out[p.name] = self._ref(p)
            out[f"dJ/d{p.name}"] = grads[p.name]
            out[f"dJ/d{p.name} (finite diff)"] = fd[p.name]
        out.update(self._student())
        return out

    def _student(self) -> dict[str, float]:
        self.student_error = None
        if self.student_backprop is None:
            return {}
        params = [(W.copy(), b.copy()) for W, b in self.params]
        result, err = call_student(self.student_backprop, params, self.X.copy(), self.Y.copy(),
                                   list(self.activations), self.loss)
        if result is None:
            self.student_error = err
            return {}
        try:
            loss, grads = result
            out = {"J (yours)": float(as_array(loss))}
            for layer, ((W, b), pair) in enumerate(zip(self.params, grads, strict=True), 1):
                dW, db = (as_array(g) for g in pair)
                if dW.shape != W.shape or db.shape != b.shape:
                    raise ValueError(f"layer {layer}: expected dW {W.shape} and db {b.shape}, "
                                     f"got {dW.shape} and {db.shape}")
                for kind, g in (("W", dW), ("b", db)):
                    for ix in np.ndindex(g.shape):
                        out[f"dJ/d{Param(layer, kind, ix).name} (yours)"] = float(g[ix])
        except (TypeError, ValueError) as exc:
            self.student_error = f"expected (loss_value, [(dW, db), ...]): {exc}"
            return {}
        return out

    def sgd_step(self, steps: int = 1) -> dict[str, float]:
        """``steps`` steps of θ ← θ - lr · ∂J/∂θ (complex-step gradients); returns values()."""
        for _ in range(steps):
            if not self.history:
                self.history.append(float(np.real(self._loss())))
            grads = self.gradients()
            for p in self.plist:
                self._array(p)[p.index] -= self.lr * grads[p.name]
            self.history.append(float(np.real(self._loss())))
        return self.values()


def _sign_color(g: float, colors) -> str:
    return colors["pos"] if g > 0 else colors["neg"] if g < 0 else "#8c959f"


def _place_labels(segments, obstacles, w: float, h: float) -> list[float]:
    """Where along each segment to put its label so that labels overlap least.

    Greedy: each segment (in pixels) takes the fraction t in [0.2, 0.8] whose
    label box (half-width ``w``, half-height ``h``) overlaps the obstacles and
    the labels placed so far the least, preferring the middle on a tie.
    Returns one t per segment.
    """
    boxes = list(obstacles)
    ts = np.linspace(0.2, 0.8, 25)
    out = []
    for (x0, y0), (x1, y1) in segments:
        best, best_cost = 0.5, np.inf
        for t in ts:
            cx, cy = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
            cost = 0.0
            for bx0, by0, bx1, by1 in boxes:
                ox = min(cx + w, bx1) - max(cx - w, bx0)
                oy = min(cy + h, by1) - max(cy - h, by0)
                if ox > 0 and oy > 0:
                    cost += ox * oy
            cost += 2.0 * abs(t - 0.5)
            if cost < best_cost:
                best, best_cost = float(t), cost
        cx, cy = x0 + best * (x1 - x0), y0 + best * (y1 - y0)
        boxes.append((cx - w, cy - h, cx + w, cy + h))
        out.append(best)
    return out


class NetworkExplorer(Explorer):
    """A dropdown and a slider for one weight or bias; the network with every ∂J/∂w.

    Args:
        net: a SeedNet (default ``nets.seed000()``; ``nets.seed004()`` and
            ``nets.seed001()`` work too).
        student_backprop: optional, your ``backprop``; see :class:`NetworkLogic`.
        lr: starting learning rate of the SGD buttons.

    Displays (readout text): ``J = 0.2344``; for the chosen parameter
    ``dJ/dW1[0,0] = -0.002932`` (class ``cl-grad``), ``dJ/dW1[0,0] (finite
    diff) = ...`` (``cl-fd``) and with a student function ``dJ/dW1[0,0]
    (yours) = ...`` (``cl-student``); then a table of every parameter with
    its value and the same three gradients. Controls: ``parameter``
    (dropdown), ``value`` (slider), ``learning rate`` (slider), buttons
    ``SGD step``, ``10 steps``, ``reset``.
    """

    def __init__(self, net=None, student_backprop: Callable | None = None,
                 lr: float = 0.5) -> None:
        logic = NetworkLogic(net, student_backprop=student_backprop, lr=lr)
        self.title = (f"{getattr(logic.net, 'name', 'network')}: "
                      f"{'-'.join(str(n) for n in logic.sizes)} network, "
                      f"{', '.join(logic.activations)}, loss {logic.loss}. Pick a weight, "
                      "drag it, watch J and every ∂J/∂w")
        self._slice_for = None
        super().__init__(logic)

    # --- controls ---------------------------------------------------------

    def _make_controls(self):
        W = _ipywidgets()
        lg: NetworkLogic = self.logic
        style = {"description_width": "90px"}
        options = []
        for p in lg.plist:
            if p.kind == "W":
                j, k = p.index
                src = "input" if p.layer == 1 else f"a{p.layer - 1}"
                what = f"{src}[{k}] → a{p.layer}[{j}]"
            else:
                what = f"bias of a{p.layer}[{p.index[0]}]"
            options.append((f"{p.name}   {what}", p.name))
        self.dropdown = W.Dropdown(options=options, value=lg.selected, description="parameter",
                                   style=style, layout=W.Layout(width=self.slider_width))
        self.dropdown.observe(lambda ch: self._guarded(lambda: self._select(ch["new"])),
                              names="value")
        self.value_slider = W.FloatSlider(value=lg._ref(lg.by_name[lg.selected]), min=-4.0,
                                          max=4.0, step=0.01, description="value",
                                          readout_format=".3f", continuous_update=True,
                                          style=style, layout=W.Layout(width=self.slider_width))
        self.value_slider.observe(
            lambda ch: None if self._updating else self._guarded(
                lambda: self.logic.move(self.logic.selected, ch["new"])), names="value")
        self.lr_slider = W.FloatLogSlider(value=lg.lr, base=10, min=-2, max=0.7, step=0.05,
                                          description="learning rate", readout_format=".3f",
                                          style=style, layout=W.Layout(width=self.slider_width))
        self.lr_slider.observe(lambda ch: self._guarded(lambda: self.logic.move("lr", ch["new"])),
                               names="value")
        self.step_button = W.Button(description="SGD step", button_style="primary",
                                    icon="step-forward", layout=W.Layout(width="104px"))
        self.step10_button = W.Button(description="10 steps", icon="forward",
                                      layout=W.Layout(width="104px"))
        self.reset_button = W.Button(description="reset", icon="undo",
                                     layout=W.Layout(width="104px"))
        self.step_button.on_click(lambda _b: self._guarded(lambda: self._step(1)))
        self.step10_button.on_click(lambda _b: self._guarded(lambda: self._step(10)))
        self.reset_button.on_click(lambda _b: self._guarded(self._reset))
        # the slider the bench and the tests move: the chosen parameter's value
        self.sliders = {"value": self.value_slider, "lr": self.lr_slider}
        return [self.dropdown, self.value_slider, self.lr_slider,
                W.HBox([self.step_button, self.step10_button, self.reset_button])]

    def _make_slider(self, c):  # the base class would make one slider per parameter
        return None

    def _control_children(self) -> list:
        return self._make_controls()

    def _select(self, name: str) -> None:
        self.logic.select(name)
        self._sync_value_slider()

    def _sync_value_slider(self) -> None:
        lg: NetworkLogic = self.logic
        v = lg._ref(lg.by_name[lg.selected])
        self._updating = True
        try:
            lo, hi = min(-4.0, np.floor(v) - 1), max(4.0, np.ceil(v) + 1)
            if (lo, hi) != (self.value_slider.min, self.value_slider.max):
                self.value_slider.min, self.value_slider.max = -1e9, 1e9
                self.value_slider.min, self.value_slider.max = lo, hi
            self.value_slider.value = v
        finally:
            self._updating = False

    def _step(self, n: int) -> None:
        self.logic.sgd_step(n)
        self._sync_value_slider()

    def _reset(self) -> None:
        self.logic.reset()
        self._sync_value_slider()

    # --- figure -----------------------------------------------------------

    def _layout(self):
        sizes = self.logic.sizes
        pos = {}
        for layer, n in enumerate(sizes):
            for j in range(n):
                pos[layer, j] = (float(layer), (n - 1) / 2.0 - j)
        return pos

    def _build_figure(self):
        from ._render import COLORS, BlitFigure

        lg: NetworkLogic = self.logic
        sizes = lg.sizes
        n_layers = len(sizes) - 1
        tall = max(sizes)
        bf = BlitFigure((10.5, max(4.2, 1.0 * tall + 1.2)))
        fig = bf.fig
        ax = fig.add_axes((0.0, 0.02, 0.6, 0.9))
        ax.set_axis_off()
        ax.set_xlim(-0.35, n_layers + 0.95)
        ax.set_ylim(-(tall - 1) / 2 - 0.75, (tall - 1) / 2 + 0.45)
        self._ax = ax
        pos = self._layout()
        self._pos = pos
        note = (f"   nodes: sample {lg.sample} of {lg.X.shape[0]} (X[{lg.sample}])"
                if lg.X.shape[0] > 1 else "")
        fig.text(0.01, 0.955, "edge: weight (grey) and ∂J/∂w (red > 0, blue < 0; "
                 f"width ∝ |∂J/∂w|){note}", fontsize=8.5, color=COLORS["local"], va="center")

        r_pt = 15  # node radius, points
        k_px = fig.dpi / 72.0
        to_px = ax.transData.transform
        # fixed obstacles for the edge labels: nodes, their names above, bias labels below
        boxes = []
        for x, y in pos.values():
            px, py = to_px((x, y))
            boxes.append((px - 24, py - (r_pt + 24) * k_px, px + 24, py + (r_pt + 12) * k_px))
        segs = []
        for p in lg.plist:
            if p.kind == "W":
                j, k = p.index
                segs.append((p, pos[p.layer - 1, k], pos[p.layer, j]))
        placed = _place_labels([(to_px(a), to_px(b)) for _, a, b in segs], boxes,
                               w=21 * k_px, h=13 * k_px)

        # one artist per kind, not one per edge (each matplotlib artist costs its own
        # draw call on every move): the chosen edge's highlight, every edge in one
        # collection (colour and width per segment), the nodes on top, the chosen bias's
        # ring
        from matplotlib.collections import LineCollection

        self._hl = bf.dynamic(ax.plot([], [], color=COLORS["highlight"], lw=9, alpha=0.8,
                                      solid_capstyle="round", zorder=1)[0])
        self._edge_lines = bf.dynamic(ax.add_collection(LineCollection(
            [((x0, y0), (x1, y1)) for _, (x0, y0), (x1, y1) in segs], linewidths=1,
            capstyle="projecting", zorder=2), autolim=False))
        self._edges = {}
        for (p, (x0, y0), (x1, y1)), t in zip(segs, placed, strict=True):
            mx, my = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
            wl = bf.label(ax, mx, my, offset=(0, 0.5), va="bottom", size=7.5,
                          color="#424a53", background="#ffffffd0")
            gl = bf.label(ax, mx, my, offset=(0, -0.5), va="top", size=7.5, bold=True,
                          background="#ffffffd0")
            self._edges[p.name] = ((x0, x1), (y0, y1), wl, gl)
        for first in (True, False):  # the input layer's face is grey
            xy = [xy for (layer, _), xy in pos.items() if (layer == 0) == first]
            bf.dynamic(ax.plot([x for x, _ in xy], [y for _, y in xy], "o", ls="none",
                               ms=2 * r_pt, mfc="#f6f8fa" if first else "white",
                               mec=COLORS["node_edge"], mew=1.3, zorder=4)[0])
        self._hb = bf.dynamic(ax.plot([], [], "o", ms=2 * r_pt + 9, mfc="none",
                                      mec=COLORS["highlight"], mew=4, zorder=3)[0])
        self._node_lab = {}
        self._bias = {}
        for (layer, j), (x, y) in pos.items():
            self._node_lab[layer, j] = bf.label(ax, x, y, size=8.5, bold=True,
                                                color=COLORS["value"])
            name = "x" if layer == 0 else f"a{layer}"
            ax.annotate(f"{name}[{j}]", (x, y), xytext=(0, r_pt + 2), textcoords="offset points",
                        ha="center", va="bottom", fontsize=7.5, color=COLORS["local"])
            if layer > 0:
                b = f"b{layer}[{j}]"
                bl = bf.label(ax, x, y, offset=(0, -r_pt - 2), va="top", size=7,
                              color="#424a53", background="#ffffff")
                gl = bf.label(ax, x, y, offset=(0, -r_pt - 11), va="top", size=7, bold=True,
                              background="#ffffff")
                self._bias[b] = ((x, y), bl, gl)
        for layer, act in enumerate(lg.activations, start=1):
            x = float(layer)
            ax.text(x, -(tall - 1) / 2 - 0.62, act, ha="center", fontsize=8.5,
                    style="italic", color=COLORS["local"])
        ax.text(0, -(tall - 1) / 2 - 0.62, "input", ha="center", fontsize=8.5,
                style="italic", color=COLORS["local"])
        last = n_layers
        for j in range(sizes[-1]):
            x, y = pos[last, j]
            self._node_lab[("y", j)] = bf.label(ax, x, y, offset=(r_pt + 4, 0), ha="left",
                                                size=8, color=COLORS["local"])
        self._loss_lab = bf.label(ax, last + 0.62, -(tall - 1) / 2 - 0.1, ha="center",
                                  va="center", size=12, bold=True, color="#1f2328")
        ax.text(last + 0.62, -(tall - 1) / 2 + 0.12, "loss (mean over samples)", ha="center",
                fontsize=8, color=COLORS["local"])

        # right: J along the chosen parameter, and the loss history
        ax1 = fig.add_axes((0.675, 0.58, 0.31, 0.33))
        ax2 = fig.add_axes((0.675, 0.1, 0.31, 0.31))
        self._ax1, self._ax2 = ax1, ax2
        self._slice = ax1.plot([], [], color=COLORS["accent"], lw=1.8)[0]
        self._tangent = bf.dynamic(ax1.plot([], [], color=COLORS["grad"], lw=1.4)[0])
        self._slice_pt = bf.dynamic(ax1.plot([], [], "o", color=COLORS["grad"], ms=6,
                                             zorder=5)[0])
        ax1.set_ylabel("J", fontsize=9)
        ax1.tick_params(labelsize=7.5)
        ax1.ticklabel_format(axis="y", useOffset=False)
        self._slice_title = ax1.set_title("", fontsize=9.5)
        self._slope_lab = bf.label(ax1, 0.5, 0.04, coords="axes", ha="center", va="bottom",
                                   size=8.5, bold=True, color=COLORS["grad"],
                                   background="#ffffffd0")
        self._hist = ax2.plot([], [], "o-", color="#1f2328", ms=3, lw=1.4)[0]
        ax2.set_title("loss during SGD", fontsize=9.5)
        ax2.set_xlabel("step", fontsize=9)
        ax2.tick_params(labelsize=7.5)
        self._hist_lab = bf.label(ax2, 0.98, 0.92, coords="axes", ha="right", va="top",
                                  size=8.5, color=COLORS["local"])
        return bf

    def _update_slice(self) -> None:
        """Recompute J along the chosen parameter; this changes the static background."""
        lg: NetworkLogic = self.logic
        lo, hi = self.value_slider.min, self.value_slider.max
        thetas = np.linspace(lo, hi, 121)
        Ls = lg.loss_along(lg.selected, thetas)
        self._slice.set_data(thetas, Ls)
        self._ax1.set_xlim(lo, hi)
        mid, half = (Ls.max() + Ls.min()) / 2, (Ls.max() - Ls.min()) / 2
        half = max(1.08 * half, 0.02 * abs(mid), 1e-3)  # a flat slice stays readable
        self._ax1.set_ylim(mid - half, mid + half)
        self._ax1.set_xlabel(lg.selected, fontsize=9)
        self._slice_title.set_text(f"J as a function of {lg.selected} (all else fixed)")
        hist = lg.history
        if hist:
            self._hist.set_data(np.arange(len(hist)), hist)
            self._ax2.set_xlim(-0.5, max(10, len(hist)) - 0.5)
            top = max(hist)
            self._ax2.set_ylim(0, top * 1.1 + 1e-12)
        else:
            self._hist.set_data([], [])
            self._ax2.set_xlim(-0.5, 9.5)
            self._ax2.set_ylim(0, 1)
        self._slice_key = self._background_key()
        self.fig.invalidate()

    def _background_key(self) -> tuple:
        """What the slice and history plots depend on (not the chosen value itself)."""
        lg: NetworkLogic = self.logic
        others = tuple(lg._ref(p) for p in lg.plist if p.name != lg.selected)
        return (lg.selected, others, len(lg.history), self.value_slider.min,
                self.value_slider.max)

    def _draw(self, v) -> None:
        from ._render import COLORS

        lg: NetworkLogic = self.logic
        theta = lg._ref(lg.by_name[lg.selected])
        if self._background_key() != getattr(self, "_slice_key", None):
            self._update_slice()
        gmax = max(abs(v[f"dJ/d{p.name}"]) for p in lg.plist) or 1.0
        colors, widths = [], []
        self._hl.set_data([], [])
        for name, (xs, ys, wl, gl) in self._edges.items():
            g = v[f"dJ/d{name}"]
            colors.append(COLORS["pos"] if g > 0 else COLORS["neg"] if g < 0 else "#d0d7de")
            widths.append(0.6 + 5.0 * np.sqrt(abs(g) / gmax))
            if name == lg.selected:
                self._hl.set_data(xs, ys)
            wl.text = fmt(v[name], 3)
            gl.text = fmt(g, 2)
            gl.color = _sign_color(g, COLORS)
        self._edge_lines.set_color(colors)
        self._edge_lines.set_linewidth(widths)
        self._hb.set_data([], [])
        for name, ((x, y), bl, gl) in self._bias.items():
            g = v[f"dJ/d{name}"]
            if name == lg.selected:
                self._hb.set_data([x], [y])
            bl.text = f"b {fmt(v[name], 3)}"
            gl.text = fmt(g, 2)
            gl.color = _sign_color(g, COLORS)
        for (layer, j), lab in self._node_lab.items():
            if layer == "y":
                lab.text = f"y = {fmt(v[f'y[{j}]'], 3)}"
            elif layer == 0:
                lab.text = fmt(v[f"x[{j}]"], 3)
            else:
                lab.text = fmt(v[f"a{layer}[{j}]"], 3)
        self._loss_lab.text = f"J = {fmt(v['J'], 4)}"
        g = v[f"dJ/d{lg.selected}"]
        J = v["J"]
        lo, hi = self._ax1.get_xlim()
        half = 0.12 * (hi - lo)
        t = np.array([theta - half, theta + half])
        self._tangent.set_data(t, J + g * (t - theta))
        self._slice_pt.set_data([theta], [J])
        self._slope_lab.text = f"slope ∂J/∂{lg.selected} = {fmt(g, 4)}"
        self._hist_lab.text = (f"{len(lg.history) - 1} steps, lr = {fmt(lg.lr, 3)}"
                               if lg.history else f"press SGD step (lr = {fmt(lg.lr, 3)})")

    def _readout(self, v) -> str:
        lg: NetworkLogic = self.logic
        sel = lg.selected
        g, fd = v[f"dJ/d{sel}"], v[f"dJ/d{sel} (finite diff)"]
        parts = [f'<div class="cl-big">{num_span("J", v["J"], "value")} &nbsp; '
                 f"{num_span(f'dJ/d{sel}', g)}</div>",
                 f"<div>{num_span(f'dJ/d{sel} (finite diff)', fd, 'fd')} "
                 f"{check_span(rel_err(g, fd))}</div>"]
        has_student = f"dJ/d{sel} (yours)" in v
        if has_student:
            mine = v[f"dJ/d{sel} (yours)"]
            parts.append(f"<div>{num_span(f'dJ/d{sel} (yours)', mine, 'student')} "
                         f"{check_span(rel_err(g, mine), 1e-7)}</div>")
            bad = [p.name for p in lg.plist
                   if rel_err(v[f"dJ/d{p.name}"], v[f"dJ/d{p.name} (yours)"]) > 1e-7]
            if bad:
                parts.append(f'<div class="cl-bad">your backprop differs on {len(bad)} of '
                             f"{len(lg.plist)} parameters: {html.escape(', '.join(bad[:8]))}"
                             f"{' ...' if len(bad) > 8 else ''}</div>")
            else:
                parts.append(f'<div class="cl-ok">your backprop agrees on all {len(lg.plist)} '
                             "parameters</div>")
        if lg.student_error:
            parts.append(f'<div class="cl-bad">your backprop raised '
                         f"{html.escape(lg.student_error)}</div>")
        kinks = lg.relu_kinks()
        if kinks:
            parts.append('<div class="cl-note">a ReLU input sits at its kink '
                         f"({html.escape(', '.join(kinks))}): complex step (like autograd) uses "
                         "ReLU'(0) = 0 there, central differences average the two sides, so "
                         "they may disagree on the weights upstream of it.</div>")
        rows, selected = [], None
        for i, p in enumerate(lg.plist):
            if p.name == sel:
                selected = i
            gp, fdp = v[f"dJ/d{p.name}"], v[f"dJ/d{p.name} (finite diff)"]
            row = [p.name, num_span(p.name, v[p.name], "value", bare=True),
                   num_span(f"dJ/d{p.name}", gp),
                   num_span(f"dJ/d{p.name} (finite diff)", fdp, "fd", bare=True)]
            if has_student:
                row.append(num_span(f"dJ/d{p.name} (yours)", v[f"dJ/d{p.name} (yours)"],
                                    "student", bare=True))
            rows.append(row)
        header = ["parameter", "value", "∂J/∂θ (complex step)", "finite differences"]
        if has_student:
            header.append("your backprop")
        parts.append('<div style="max-height:230px;overflow-y:auto;margin-top:4px">'
                     + table(header, rows, selected=selected) + "</div>")
        return "".join(parts)


# ---------------------------------------------------------------------------
# the learning rate, with a mean or a sum loss
# ---------------------------------------------------------------------------

#: the loss shown is cut here (and a run whose loss passes DIVERGED has diverged)
LOSS_CAP = 1.5
DIVERGED = 1e3


class LearningRateLogic(Logic):
    """The numbers of :class:`LearningRateExplorer`: training curves per learning rate.

    For each batch size N in ``batch_sizes`` the same network (same initial
    weights) is trained on the first N points of a fixed shuffle of ``X``, full
    batch, with the student's ``backprop`` (mean loss) and ``sgd_step``. With the
    reduction ``"sum"`` every gradient is N times the mean's (J_sum = N · J_mean),
    so the step is too. The curves are always of the mean loss, so they compare.

    Args:
        backprop: your ``backprop(params, X, Y, activations, loss)`` (mean loss);
            None: no curves.
        sgd_step: your ``sgd_step(params, grads, lr)``.
        X, y: inputs (M, 2) and integer labels (M,), M >= max(batch_sizes);
            default: ``data.two_moons(n=400, noise=0.15, seed=1)``.
        layer_sizes, activations: the network (loss "cross_entropy").
        batch_sizes: the N compared, at most 4 of them.
        steps: full-batch steps per run.
        seed: for the initial weights and the shuffle.

    Slider (``state``): ``log10_lr`` (-3 to 1 in steps of 0.5).
    :meth:`set_reduction` picks ``"mean"`` or ``"sum"``. A run is trained once
    and kept (:meth:`curve`); :meth:`precompute` trains every slider position.
    :meth:`values` returns ``"lr"`` and, for each N, ``"J (N=25)"`` (the last
    mean loss), ``"lowest J (N=25)"``, ``"steps (N=25)"`` (steps run) and
    ``"diverged (N=25)"`` (1.0 or 0.0); :meth:`curves` the curves themselves.
    """

    REDUCTIONS = ("mean", "sum")

    def __init__(self, backprop: Callable | None = None, sgd_step: Callable | None = None,
                 X=None, y=None, layer_sizes=(2, 16, 2), activations=("tanh", "softmax"),
                 batch_sizes=(25, 100, 400), steps: int = 150, seed: int = 0) -> None:
        if X is None or y is None:
            X, y = data.two_moons(n=400, noise=0.15, seed=1)
        self.X, self.y = np.asarray(X, dtype=float), np.asarray(y)
        self.batch_sizes = tuple(int(n) for n in batch_sizes)
        if not 1 <= len(self.batch_sizes) <= 4 or max(self.batch_sizes) > len(self.y):
            raise ValueError(f"batch_sizes: expected 1 to 4 sizes of at most {len(self.y)} "
                             f"(the points of X), got {batch_sizes!r}")
        self.backprop, self.sgd_step = backprop, sgd_step
        self.activations, self.steps = tuple(activations), int(steps)
        self.order = np.random.default_rng(seed).permutation(len(self.y))
        self.start = nets.init_params(layer_sizes, seed=seed)
        self.reduction = "mean"
        self._runs: dict[tuple[float, str, int], np.ndarray] = {}
        # half a decade per position: 9 learning rates from 0.001 to 10, 54 runs to train
        self.controls = {"log10_lr": Control("log10_lr", 0.0, -3.0, 1.0, 0.5, "log10(lr)")}
        super().__init__()

    def set_reduction(self, reduction: str) -> None:
        self.reduction = check_choice("reduction", reduction, self.REDUCTIONS)

    def positions(self) -> list[float]:
        """Every position of the slider."""
        c = self.controls["log10_lr"]
        return [c.snap(v) for v in np.arange(c.min, c.max + c.step / 2, c.step)]

    def check_student(self) -> None:
        """One call of backprop on two points: if it is not written yet, this raises."""
        i = self.order[:2]
        self.backprop(self.start, self.X[i], self.y[i], self.activations, "cross_entropy")

    def curve(self, log10_lr: float, reduction: str, N: int) -> np.ndarray:
        """The mean loss before each step of one run (trained on first use, then kept);
        a run that diverges ends with NaN."""
        key = (self.controls["log10_lr"].snap(log10_lr), reduction, int(N))
        if key not in self._runs:
            self._runs[key] = self._train(10.0 ** key[0], reduction, int(N))
        return self._runs[key]

    def _train(self, lr: float, reduction: str, N: int) -> np.ndarray:
        if self.backprop is None or self.sgd_step is None:
            return np.array([])
        idx = self.order[:N]
        Xs, ys = self.X[idx], self.y[idx]
        params = [(W.copy(), b.copy()) for W, b in self.start]
        factor = N if reduction == "sum" else 1.0
        curve = []
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            for _ in range(self.steps):
                J, grads = self.backprop(params, Xs, ys, self.activations, "cross_entropy")
                if not np.isfinite(J) or J > DIVERGED:
                    curve.append(np.nan)
                    break
                curve.append(float(J))
                grads = [(factor * dW, factor * db) for dW, db in grads]
                params = self.sgd_step(params, grads, lr)
        return np.array(curve)

    def precompute(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Train every run of every slider position and reduction (``progress(done, of)``)."""
        todo = [(p, r, n) for r in self.REDUCTIONS for p in self.positions()
                for n in self.batch_sizes]
        for k, (p, r, n) in enumerate(todo):
            self.curve(p, r, n)
            if progress is not None:
                progress(k + 1, len(todo))

    def curves(self) -> dict[int, np.ndarray]:
        """{N: the curve at the slider's learning rate and the chosen reduction}."""
        return {n: self.curve(self.state["log10_lr"], self.reduction, n)
                for n in self.batch_sizes}

    def values(self) -> dict[str, float]:
        out = {"log10_lr": self.state["log10_lr"], "lr": 10.0 ** self.state["log10_lr"]}
        for n, c in self.curves().items():
            finite = c[np.isfinite(c)]
            diverged = bool(len(c)) and not np.isfinite(c[-1])
            out[f"J (N={n})"] = float(finite[-1]) if len(finite) else float("nan")
            out[f"lowest J (N={n})"] = float(finite.min()) if len(finite) else float("nan")
            out[f"steps (N={n})"] = float(len(finite))
            out[f"diverged (N={n})"] = float(diverged)
        return out


class LearningRateExplorer(Explorer):
    """A learning-rate slider and a mean/sum switch; the training curves of three batches.

    Args:
        backprop, sgd_step, X, y: see :class:`LearningRateLogic` (your functions;
            the cell raises as they do while they are not written).
        **options: ``layer_sizes``, ``activations``, ``batch_sizes``, ``steps``,
            ``seed`` of :class:`LearningRateLogic`.

    Every run is trained when the explorer is built (a progress bar shows it);
    a move of the slider or the switch only redraws. Displays (readout text):
    per batch size ``J (N=25) = 0.3164`` (the last mean loss, class ``cl-value``),
    the lowest loss, the steps run and whether the run diverged.
    """

    title = "One learning rate, three batch sizes: the loss as a mean or as a sum"

    def __init__(self, backprop: Callable, sgd_step: Callable, X=None, y=None,
                 **options) -> None:
        logic = LearningRateLogic(backprop, sgd_step, X, y, **options)
        if GRADING:  # course_lib._drawing: no pictures while grading, so no training
            super().__init__(logic)
            return
        logic.check_student()
        W = _ipywidgets()
        self.reduction_buttons = W.ToggleButtons(options=list(logic.REDUCTIONS), value="mean",
                                                 description="loss",
                                                 style={"description_width": "90px"})
        self.reduction_buttons.observe(
            lambda ch: self._guarded(lambda: self.logic.set_reduction(ch["new"])),
            names="value")
        _with_progress(logic)
        super().__init__(logic)

    def _make_slider(self, c):
        s = super()._make_slider(c)
        s.readout_format = ".2f"
        return s

    def _control_children(self) -> list:
        return list(self.sliders.values()) + [self.reduction_buttons]

    def _build_figure(self):
        from ._render import COLORS, BlitFigure

        lg: LearningRateLogic = self.logic
        bf = BlitFigure((9.0, 3.8))
        ax = bf.fig.add_axes((0.07, 0.14, 0.6, 0.72))
        ax.set_xlim(0, lg.steps)
        ax.set_ylim(0, LOSS_CAP)
        ax.set_xlabel("step")
        ax.set_ylabel(f"mean training loss (cut at {LOSS_CAP:g})")
        ax.grid(alpha=0.3)
        colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]
        self._lines, self._marks, self._legend = {}, {}, {}
        for i, n in enumerate(lg.batch_sizes):
            self._lines[n] = bf.dynamic(ax.plot([], [], color=colours[i], lw=1.8)[0])
            self._marks[n] = bf.dynamic(ax.plot([], [], "x", color=colours[i], ms=10,
                                                mew=2)[0])
            self._legend[n] = bf.label(None, 0.7, 0.8 - 0.13 * i, ha="left", va="center",
                                       size=9.5, bold=True, color=colours[i])
        self._head = bf.label(None, 0.07, 0.93, ha="left", va="center", size=11, bold=True,
                              color="#1f2328")
        self._note = bf.label(None, 0.7, 0.8 - 0.13 * len(lg.batch_sizes), ha="left",
                              va="center", size=8.5, color=COLORS["local"])
        return bf

    def _draw(self, v) -> None:
        lg: LearningRateLogic = self.logic
        for n, c in lg.curves().items():
            steps = np.arange(len(c))
            self._lines[n].set_data(steps, np.minimum(c, LOSS_CAP * 1.02))
            if v[f"diverged (N={n})"] and len(c) > 1:
                self._marks[n].set_data([len(c) - 2], [min(c[-2], LOSS_CAP * 0.97)])
                self._legend[n].text = f"N = {n}: diverged at step {len(c) - 1}"
            else:
                self._marks[n].set_data([], [])
                self._legend[n].text = (f"N = {n}: J = {fmt(v[f'J (N={n})'], 3)}"
                                        if len(c) else f"N = {n}: no backprop yet")
        self._head.text = f"lr = {fmt(v['lr'], 3)}, loss = {lg.reduction} over the batch"
        self._note.text = ("sum: each step is N times the mean's" if lg.reduction == "sum"
                           else "mean: the same step for every N")

    def _readout(self, v) -> str:
        lg: LearningRateLogic = self.logic
        rows = []
        for n in lg.batch_sizes:
            rows.append([f"N = {n}", num_span(f"J (N={n})", v[f"J (N={n})"], "value", bare=True),
                         num_span(f"lowest J (N={n})", v[f"lowest J (N={n})"], "value",
                                  bare=True),
                         f"{v[f'steps (N={n})']:.0f}",
                         "yes" if v[f"diverged (N={n})"] else "no"])
        return (f"<div>{num_span('lr', v['lr'], 'value')} &nbsp; loss: {lg.reduction} over the "
                "batch</div>"
                + table(["batch", "last J (mean)", "lowest J", "steps", "diverged"], rows)
                + '<div class="cl-note">Every run was trained once, when the explorer was '
                  "built, with your backprop and sgd_step: moving the slider only redraws."
                  "</div>")


def _with_progress(logic: LearningRateLogic) -> None:
    """Train every run of ``logic``, with a progress bar under the cell while it runs."""
    from IPython import get_ipython

    if get_ipython() is None:  # a script or a test: no display to show a bar in
        logic.precompute()
        return
    from IPython.display import display

    W = _ipywidgets()
    bar = W.IntProgress(value=0, min=0, max=1, description="training", bar_style="info")
    note = W.HTML("")
    box = W.HBox([bar, note])
    display(box)

    def progress(done: int, total: int) -> None:
        bar.max = total
        bar.value = done
        note.value = (f"{done} of {total} runs ({len(logic.positions())} learning rates × "
                      f"mean and sum × {len(logic.batch_sizes)} batch sizes)")

    try:
        logic.precompute(progress)
    finally:
        box.close()
