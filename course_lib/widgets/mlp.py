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
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from course_lib import nets
from course_lib._validate import check_choice
from course_lib.gradcheck import numerical_gradient

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

__all__ = ["NetworkLogic", "NetworkExplorer", "Param"]

_LAYER_WORD = ["input", "hidden", "hidden", "hidden", "hidden"]


@dataclass(frozen=True)
class Param:
    """One weight or bias: ``layer`` (1-based), ``kind`` ``"W"`` or ``"b"``, ``index``."""

    layer: int
    kind: str
    index: tuple[int, ...]

    @property
    def name(self) -> str:
        idx = ",".join(str(i) for i in self.index)
        return f"{self.kind}{self.layer}[{idx}]"


#: the grid of the explorer's sliders (Control.snap): its parameters and data lie on it
STEP = 0.01


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

    def set(self, name: str, value) -> dict[str, float]:
        v = self._check(name, value)
        if name == "lr":
            if v <= 0:
                raise ValueError(f"lr: expected a positive learning rate, got {value!r}")
            self.lr = v
        else:
            p = self.by_name[name]
            self._array(p)[p.index] = v
            self._cache = None
        return self.values()

    def update(self, **values) -> dict[str, float]:
        for name, value in values.items():
            self.set(name, value)
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

    def _forward(self, perturb: str | None = None) -> list:
        """(Z, A) of every layer (A^0 = X first) at the current parameters; with
        ``perturb``, that parameter gets ``+ih`` (complex step).

        The activations are written out here, complex-safe (branches decided on the
        real part), and see only this network's data and parameters: a helper that
        applied σ or softmax to any input would return an answer of lessons 02 and
        03 (COURSE.md: no helper a student can import returns one).
        """
        params = self.params
        if perturb is not None:
            p = self.by_name[perturb]
            params = [(W.astype(np.complex128), b.astype(np.complex128)) for W, b in params]
            params[p.layer - 1][0 if p.kind == "W" else 1][p.index] += 1j * cs.H
        cache = [(None, self.X)]
        A = self.X
        for (W, b), act in zip(params, self.activations, strict=True):
            Z = A @ W.T + b
            if act == "sigmoid":
                e = np.exp(np.where(Z.real >= 0, -Z, Z))  # the exponent is never positive
                A = np.where(Z.real >= 0, 1 / (1 + e), e / (1 + e))
            elif act == "relu":
                A = np.where(Z.real > 0, Z, 0 * Z)  # ReLU'(0) = 0
            elif act == "tanh":
                A = np.tanh(Z)
            elif act == "softmax":
                e = np.exp(Z - Z.real.max(axis=1, keepdims=True))  # a real shift
                A = e / e.sum(axis=1, keepdims=True)
            else:
                A = Z
            cache.append((Z, A))
        return cache

    def _loss(self, perturb: str | None = None):
        """The loss (mean over samples) at the current parameters, complex-safe; with
        ``perturb``, that parameter gets ``+ih`` and Im(J) / h is ∂J/∂(it)."""
        Z, A = self._forward(perturb)[-1]
        Y, N = self.Y, self.Y.shape[0]
        if self.loss == "mse":
            r = A - Y
            return 0.5 * np.sum(r * r) / N
        if self.loss == "bce":
            if self.activations[-1] == "sigmoid":
                # from the logits, exact where σ rounds to 0 or 1:
                # -[y log σ(z) + (1-y) log(1-σ(z))] = softplus(z) - y z
                softplus = (np.where(Z.real > 0, Z, 0 * Z)
                            + np.log1p(np.exp(np.where(Z.real >= 0, -Z, Z))))
                return np.sum(softplus - Y * Z) / N
            return -np.sum(Y * np.log(A) + (1 - Y) * np.log(1 - A)) / N
        # cross_entropy takes the logits: -Σ y log softmax(z), log softmax = z - logsumexp(z)
        shifted = Z - Z.real.max(axis=1, keepdims=True)
        log_s = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
        return -np.sum(Y * log_s) / N

    def gradients(self) -> dict[str, float]:
        """∂J/∂θ for every parameter θ, by complex step: one forward pass each."""
        return {p.name: float(np.imag(self._loss(p.name)) / cs.H) for p in self.plist}

    def loss_along(self, name: str, thetas) -> np.ndarray:
        """J as a function of one parameter (the others fixed), at each of ``thetas``."""
        p = self.by_name[name]
        arr = self._array(p)
        old = arr[p.index]
        out = []
        try:
            for t in thetas:
                arr[p.index] = t
                out.append(float(np.real(self._loss())))
        finally:
            arr[p.index] = old
        return np.array(out)

    def _finite_differences(self) -> dict[str, float]:
        out = {}
        for layer, (W, b) in enumerate(self.params, start=1):
            for kind, arr in (("W", W), ("b", b)):
                g = numerical_gradient(lambda _a: float(np.real(self._loss())), arr)
                for ix in np.ndindex(arr.shape):
                    out[Param(layer, kind, ix).name] = float(g[ix])
        return out

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
                lambda: self.logic.set(self.logic.selected, ch["new"])), names="value")
        self.lr_slider = W.FloatLogSlider(value=lg.lr, base=10, min=-2, max=0.7, step=0.05,
                                          description="learning rate", readout_format=".3f",
                                          style=style, layout=W.Layout(width=self.slider_width))
        self.lr_slider.observe(lambda ch: self._guarded(lambda: self.logic.set("lr", ch["new"])),
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

        self._edges = {}
        for (p, (x0, y0), (x1, y1)), t in zip(segs, placed, strict=True):
            hl = bf.dynamic(ax.plot([x0, x1], [y0, y1], color=COLORS["highlight"], lw=9,
                                    alpha=0.8, solid_capstyle="round", zorder=1)[0])
            line = bf.dynamic(ax.plot([x0, x1], [y0, y1], lw=1, zorder=2)[0])
            mx, my = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
            wl = bf.label(ax, mx, my, offset=(0, 0.5), va="bottom", size=7.5,
                          color="#424a53", background="#ffffffd0")
            gl = bf.label(ax, mx, my, offset=(0, -0.5), va="top", size=7.5, bold=True,
                          background="#ffffffd0")
            self._edges[p.name] = (hl, line, wl, gl)
        self._node_lab = {}
        self._bias = {}
        for (layer, j), (x, y) in pos.items():
            bf.dynamic(ax.plot([x], [y], "o", ms=2 * r_pt, mfc="white" if layer else "#f6f8fa",
                               mec=COLORS["node_edge"], mew=1.3, zorder=4)[0])
            self._node_lab[layer, j] = bf.label(ax, x, y, size=8.5, bold=True,
                                                color=COLORS["value"])
            name = "x" if layer == 0 else f"a{layer}"
            ax.annotate(f"{name}[{j}]", (x, y), xytext=(0, r_pt + 2), textcoords="offset points",
                        ha="center", va="bottom", fontsize=7.5, color=COLORS["local"])
            if layer > 0:
                b = f"b{layer}[{j}]"
                hb = bf.dynamic(ax.plot([x], [y], "o", ms=2 * r_pt + 9, mfc="none",
                                        mec=COLORS["highlight"], mew=4, zorder=3)[0])
                bl = bf.label(ax, x, y, offset=(0, -r_pt - 2), va="top", size=7,
                              color="#424a53", background="#ffffff")
                gl = bf.label(ax, x, y, offset=(0, -r_pt - 11), va="top", size=7, bold=True,
                              background="#ffffff")
                self._bias[b] = (hb, bl, gl)
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
        for name, (hl, line, wl, gl) in self._edges.items():
            g = v[f"dJ/d{name}"]
            line.set_color(COLORS["pos"] if g > 0 else COLORS["neg"] if g < 0 else "#d0d7de")
            line.set_zorder(2 if g else 1.5)
            line.set_linewidth(0.6 + 5.0 * np.sqrt(abs(g) / gmax))
            hl.set_visible(name == lg.selected)
            wl.text = fmt(v[name], 3)
            gl.text = fmt(g, 2)
            gl.color = _sign_color(g, COLORS)
        for name, (hb, bl, gl) in self._bias.items():
            g = v[f"dJ/d{name}"]
            hb.set_visible(name == lg.selected)
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
