"""Lesson 03: softmax probabilities, their Jacobian and the cross-entropy gradient, live.

One slider per logit. Three panels move together:

* the probabilities s = softmax(z) as bars (they always sum to 1);
* the Jacobian J[i, j] = ∂s_i/∂z_j as a heatmap with every entry written in
  its cell: column j is one complex-step evaluation of softmax at z + ih·e_j;
* the gradient of the cross-entropy loss L = -log s_target with respect to
  the logits, also by complex step.

    >>> from course_lib.widgets import SoftmaxExplorer
    >>> SoftmaxExplorer()                         # logits (2, 1, 0.1)
    >>> SoftmaxExplorer(n=5)
    >>> SoftmaxExplorer(student_jacobian=softmax_jacobian)   # your J beside it
    >>> SoftmaxExplorer(n=4, shift=True)          # a slider c added to every logit

With ``shift=True`` a fourth kind of slider, ``c``, adds the same constant to
every logit (from -1000 to 1000): nothing moves, softmax is shift-invariant, and
the readout shows why: each row of J sums to 0 and J's smallest eigenvalue is 0
(J·1 = 0, the direction of the shift).
"""

from __future__ import annotations

import html
from collections.abc import Callable

import numpy as np

from course_lib._drawing import GRADING
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
    table,
)

__all__ = ["SoftmaxLogic", "SoftmaxExplorer"]

_DEFAULT_LOGITS = (2.0, 1.0, 0.1, -1.0, 0.5)


class SoftmaxLogic(Logic):
    """The numbers of :class:`SoftmaxExplorer`.

    Args:
        n: number of logits, 2 to 6 (default 3).
        logits: starting values (default (2, 1, 0.1, -1, 0.5)[:n]), put on the
            sliders' grid (multiples of 0.05) like every value a slider holds.
        target: the true class for the cross-entropy loss, 0-based (default 0).
        student_jacobian: optional, your ``softmax_jacobian(z) -> (n, n)``.
        shift: add a slider ``c`` (-1000 to 1000, steps of 10) whose value is
            added to every logit: everything is computed at z + c.

    Sliders (``state``): ``z1`` ... ``zn``. :meth:`values` returns (1-based
    names): ``"z1"``, ``"s1"`` ... (probabilities); ``"ds1/dz2"`` ... (every
    Jacobian entry, complex step) and ``"ds1/dz2 (finite diff)"``;
    ``"L"`` (cross-entropy for ``target``), ``"dL/dz1"`` ... (complex step)
    and ``"dL/dz1 (finite diff)"``; ``"ds1/dz2 (yours)"`` ... when
    ``student_jacobian`` answers; ``"c"`` (the shift, 0 without its slider),
    ``"row sum 1"`` ... (each row of J summed) and ``"eigenvalue 1"`` ... (J's
    eigenvalues, smallest first).
    """

    def __init__(self, n: int = 3, logits=None, target: int = 0,
                 student_jacobian: Callable | None = None, shift: bool = False) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= 6:
            raise ValueError(f"n: expected an int from 2 to 6, got {n!r}")
        if logits is None:
            logits = (_DEFAULT_LOGITS * 2)[:n]
        logits = [float(v) for v in logits]
        if len(logits) != n:
            raise ValueError(f"logits: expected {n} values, got {len(logits)}")
        self.n = n
        self.controls = {f"z{j + 1}": Control(f"z{j + 1}", logits[j], -6.0, 6.0, 0.05,
                                              f"logit z{j + 1}") for j in range(n)}
        if shift:
            self.controls["c"] = Control("c", 0.0, -1000.0, 1000.0, 10.0, "shift c")
        self.student_jacobian = student_jacobian
        self.student_error: str | None = None
        self.set_target(target)
        super().__init__()

    def set_target(self, target: int) -> None:
        """Choose the true class (0-based) of the cross-entropy loss."""
        if isinstance(target, bool) or not isinstance(target, (int, np.integer)) \
                or not 0 <= target < self.n:
            raise ValueError(f"target: expected a class index from 0 to {self.n - 1}, "
                             f"got {target!r}")
        self.target = int(target)

    @property
    def z(self) -> np.ndarray:
        """The logits softmax sees: the sliders z1..zn, plus the shift c if there is one."""
        return (np.array([self.state[f"z{j + 1}"] for j in range(self.n)])
                + self.state.get("c", 0.0))

    def values(self) -> dict[str, float]:
        z = self.z
        n = self.n
        target = self.target

        # softmax and the loss, complex-safe, are written here, inside values(), on
        # purpose: they only ever see the sliders' logits. A softmax that any caller
        # could evaluate would be softmax itself, and its complex-step Jacobian the
        # softmax Jacobian, answers of lesson 03 (COURSE.md: no helper a student can
        # import returns a graded function's answer).
        def softmax(v):
            e = np.exp(v - np.max(v.real))  # shifted by a real constant: no overflow
            return e / np.sum(e)

        def cross_entropy(v):  # -log s_target, from the logits
            shifted = v - np.max(v.real)
            return -(shifted[target] - np.log(np.sum(np.exp(shifted))))

        s = np.real(softmax(z))
        J = cs.jacobian(softmax, z)
        g = cs.gradient(cross_entropy, z)
        zz = z.copy()
        J_fd = np.stack([numerical_gradient(lambda v, i=i: float(np.real(softmax(v)[i])), zz)
                         for i in range(n)])
        g_fd = numerical_gradient(lambda v: float(np.real(cross_entropy(v))), zz)
        out: dict[str, float] = {"c": float(self.state.get("c", 0.0))}
        for j in range(n):
            out[f"z{j + 1}"] = float(self.state[f"z{j + 1}"])
        for i in range(n):
            out[f"s{i + 1}"] = float(s[i])
        for i in range(n):
            for j in range(n):
                out[f"ds{i + 1}/dz{j + 1}"] = float(J[i, j])
        for i in range(n):
            for j in range(n):
                out[f"ds{i + 1}/dz{j + 1} (finite diff)"] = float(J_fd[i, j])
        for i, total in enumerate(J.sum(axis=1)):
            out[f"row sum {i + 1}"] = float(total)
        for k, lam in enumerate(np.linalg.eigvalsh((J + J.T) / 2)):  # J is symmetric
            out[f"eigenvalue {k + 1}"] = float(lam)
        out["L"] = float(np.real(cross_entropy(z)))
        for j in range(n):
            out[f"dL/dz{j + 1}"] = float(g[j])
            out[f"dL/dz{j + 1} (finite diff)"] = float(g_fd[j])
        self.student_error = None
        res, err = call_student(self.student_jacobian, z.copy())
        self.student_error = err
        if res is not None:
            try:
                Js = as_array(res)
                if Js.shape != (n, n):
                    raise ValueError(f"expected shape ({n}, {n}), got {Js.shape}")
                for i in range(n):
                    for j in range(n):
                        out[f"ds{i + 1}/dz{j + 1} (yours)"] = float(Js[i, j])
            except (TypeError, ValueError) as exc:
                self.student_error = f"your softmax_jacobian returned {exc}"
        return out

    def jacobian(self, values=None, which: str = "") -> np.ndarray:
        """The (n, n) Jacobian from ``values`` (``which``: "", "finite diff", "yours")."""
        v = self.values() if values is None else values
        suffix = f" ({which})" if which else ""
        return np.array([[v[f"ds{i + 1}/dz{j + 1}{suffix}"] for j in range(self.n)]
                         for i in range(self.n)])


def _fixed(v: float, decimals: int) -> str:
    """Fixed decimals for a crowded figure; a value that rounds to zero shows as 0."""
    s = f"{v:.{decimals}f}"
    return "0" if float(s) == 0 else s


class SoftmaxExplorer(Explorer):
    """Logit sliders; probability bars, the Jacobian heatmap and ∂L/∂z move together.

    Args:
        n, logits, target, student_jacobian: see :class:`SoftmaxLogic`.

    Displays (readout text): ``s1 = 0.659`` ... (class ``cl-value``);
    the Jacobian as a table whose cells are ``ds1/dz2 = -0.1594`` (class
    ``cl-grad``); ``L = 0.417``, ``dL/dz1 = -0.341`` ... (``cl-grad``) with
    ``dL/dz1 (finite diff) = ...`` (``cl-fd``); the largest difference
    between the complex-step and finite-difference Jacobians; with
    ``student_jacobian``, ``ds1/dz2 (yours) = ...`` and a check.
    A dropdown chooses the target class.
    """

    title = "softmax: probabilities, Jacobian and cross-entropy gradient"

    def __init__(self, n: int = 3, logits=None, target: int = 0,
                 student_jacobian: Callable | None = None, shift: bool = False) -> None:
        logic = SoftmaxLogic(n, logits, target, student_jacobian, shift=shift)
        if GRADING:  # nothing is drawn while grading: no controls, no ipywidgets import
            super().__init__(logic)
            return
        W = _ipywidgets()
        self.target_dropdown = W.Dropdown(
            options=[(f"class {k + 1}", k) for k in range(logic.n)], value=logic.target,
            description="target", style={"description_width": "90px"},
            layout=W.Layout(width="220px"))
        self.target_dropdown.observe(
            lambda ch: self._guarded(lambda: self.logic.set_target(ch["new"])), names="value")
        super().__init__(logic)

    def _control_children(self) -> list:
        return list(self.sliders.values()) + [self.target_dropdown]

    def _build_figure(self):
        from matplotlib.colors import Normalize

        from ._render import COLORS, BlitFigure

        n = self.logic.n
        bf = BlitFigure((10.5, 3.9))
        fig = bf.fig
        ax1 = fig.add_axes((0.05, 0.16, 0.26, 0.70))
        ax2 = fig.add_axes((0.39, 0.16, 0.25, 0.70))
        ax3 = fig.add_axes((0.72, 0.16, 0.26, 0.70))
        idx = np.arange(n)
        names = [str(k + 1) for k in range(n)]

        ax1.set_ylim(0, 1.12)
        ax1.set_xlim(-0.6, n - 0.4)
        ax1.set_xticks(idx, [f"s{k}" for k in names])
        ax1.set_title("probabilities s = softmax(z)", fontsize=11)
        ax1.axhline(1.0, color="#d0d7de", lw=0.8, zorder=0)
        self._bars = [bf.dynamic(b) for b in ax1.bar(idx, np.zeros(n), width=0.62,
                                                     color=COLORS["sigmoid"])]
        self._bar_lab = [bf.label(ax1, k, 0, offset=(0, 2), va="bottom", size=9.5, bold=True,
                                  color=COLORS["value"]) for k in idx]
        self._logit_lab = [bf.label(ax1, k, 0, offset=(0, -20), va="top", size=8,
                                    color=COLORS["local"]) for k in idx]
        self._target_lab = [bf.label(ax1, k, 0, "target", offset=(0, -31), va="top", size=8,
                                     bold=True, color="#1f2328") for k in idx]

        self._norm = Normalize(-0.25, 0.25)
        # a mesh of n × n cells: Agg fills them as polygons, ten times faster than an
        # imshow's resampling of the same n × n array on every move
        edges = np.arange(n + 1) - 0.5
        self._img = bf.dynamic(ax2.pcolormesh(edges, edges, np.zeros((n, n)), cmap="RdBu_r",
                                              norm=self._norm))
        ax2.set_xlim(-0.5, n - 0.5)
        ax2.set_ylim(n - 0.5, -0.5)  # row 1 on top, as in a matrix
        ax2.set_aspect("equal")
        ax2.set_xticks(idx, [f"z{k}" for k in names])
        ax2.set_yticks(idx, [f"s{k}" for k in names])
        ax2.xaxis.set_ticks_position("top")
        ax2.set_title("Jacobian ∂s_i/∂z_j (complex step)", fontsize=11, pad=22)
        ax2.tick_params(length=0)
        for sp in ax2.spines.values():
            sp.set_visible(False)
        size = 11 if n <= 3 else (9.5 if n == 4 else 8)
        self._cell = [[bf.label(ax2, j, i, size=size, bold=True) for j in range(n)]
                      for i in range(n)]
        cb = fig.colorbar(self._img, ax=ax2, fraction=0.046, pad=0.03)
        cb.ax.tick_params(labelsize=7)

        ax3.set_ylim(-1.3, 1.3)
        ax3.set_xlim(-0.6, n - 0.4)
        ax3.set_xticks(idx, [f"z{k}" for k in names])
        ax3.axhline(0, color="#8c959f", lw=0.8)
        ax3.set_title("∂L/∂z for L = -log s_target", fontsize=11)
        self._gbars = [bf.dynamic(b) for b in ax3.bar(idx, np.zeros(n), width=0.62,
                                                      color=COLORS["grad"])]
        self._glab = [bf.label(ax3, k, 0, size=9.5, bold=True, color=COLORS["grad"])
                      for k in idx]
        self._loss_lab = bf.label(ax3, 0.03, 0.95, coords="axes", ha="left", va="top",
                                  size=9.5, bold=True, color="#1f2328")
        return bf

    def _draw(self, v) -> None:
        from ._render import COLORS

        lg: SoftmaxLogic = self.logic
        n = lg.n
        for k in range(n):
            s = v[f"s{k + 1}"]
            bar = self._bars[k]
            bar.set_height(s)
            is_t = k == lg.target
            bar.set_edgecolor("#1f2328" if is_t else "none")
            bar.set_linewidth(2.0 if is_t else 0)
            bar.set_facecolor(COLORS["sigmoid"] if is_t else "#9ecae1")
            self._bar_lab[k].y, self._bar_lab[k].text = s, _fixed(s, 3)
            self._logit_lab[k].text = f"z={v[f'z{k + 1}']:.2f}"
            self._target_lab[k].visible = is_t
        J = lg.jacobian(v)
        self._img.set_array(J)
        for i in range(n):
            for j in range(n):
                lab = self._cell[i][j]
                lab.text = _fixed(J[i, j], 2 if n >= 5 else 3)
                lab.color = "white" if abs(J[i, j]) > 0.14 else "#1f2328"
        for k in range(n):
            g = v[f"dL/dz{k + 1}"]
            self._gbars[k].set_height(g)
            lab = self._glab[k]
            lab.y, lab.text = g, fmt(g, 3)
            lab.va, lab.offset = ("bottom", (0, 2)) if g >= 0 else ("top", (0, -2))
        shift = f", c = {fmt(v['c'])}" if "c" in lg.controls else ""
        self._loss_lab.text = f"L = {fmt(v['L'], 4)}   (target: class {lg.target + 1}{shift})"

    def _readout(self, v) -> str:
        lg: SoftmaxLogic = self.logic
        n = lg.n
        parts = ['<div class="cl-big">' + " &nbsp; ".join(
            num_span(f"s{k + 1}", v[f"s{k + 1}"], "value") for k in range(n)) + "</div>"]
        rows = [[f"s{i + 1}"] + [num_span(f"ds{i + 1}/dz{j + 1}", v[f"ds{i + 1}/dz{j + 1}"])
                                 for j in range(n)] for i in range(n)]
        parts.append(table(["Jacobian"] + [f"∂/∂z{j + 1}" for j in range(n)], rows))
        J = lg.jacobian(v)
        err = float(np.max(np.abs(J - lg.jacobian(v, "finite diff"))))
        parts.append(f'<div><span class="cl-fd">finite differences: max |J - J_fd| = '
                     f"{err:.1e}</span> {'✓' if err < 1e-6 else '✗'}</div>")
        if "ds1/dz1 (yours)" in v:
            err_s = float(np.max(np.abs(J - lg.jacobian(v, "yours"))))
            parts.append('<div><span class="cl-student">your softmax_jacobian: '
                         f"max |J - J_yours| = {err_s:.1e}</span> "
                         f"{check_span(err_s, 1e-7)}</div>")
            rows = [[f"s{i + 1}"] + [num_span(f"ds{i + 1}/dz{j + 1} (yours)",
                                              v[f"ds{i + 1}/dz{j + 1} (yours)"], "student",
                                              text=f"ds{i + 1}/dz{j + 1}") for j in range(n)]
                    for i in range(n)]
            parts.append(table(["yours"] + [f"∂/∂z{j + 1}" for j in range(n)], rows))
        if lg.student_error:
            parts.append(f'<div class="cl-bad">{html.escape(lg.student_error)}</div>')
        parts.append(f'<div style="margin-top:6px">cross-entropy, target class {lg.target + 1}: '
                     f'{num_span("L", v["L"], "value")}</div>')
        grows = [[f"z{k + 1}", num_span(f"dL/dz{k + 1}", v[f"dL/dz{k + 1}"]),
                  num_span(f"dL/dz{k + 1} (finite diff)", v[f"dL/dz{k + 1} (finite diff)"], "fd",
                           bare=True)]
                 for k in range(n)]
        parts.append(table(["logit", "complex step", "finite differences"], grows))
        sums = " &nbsp; ".join(num_span(f"row sum {i + 1}", v[f"row sum {i + 1}"], "value",
                                        digits=2) for i in range(n))
        eigs = " &nbsp; ".join(num_span(f"eigenvalue {k + 1}", v[f"eigenvalue {k + 1}"],
                                        "value", digits=3) for k in range(n))
        parts.append(f"<div>row sums of J: {sums}</div><div>eigenvalues of J: {eigs}</div>")
        if "c" in lg.controls:
            parts.append(f'<div>every logit shifted by {num_span("c", v["c"], "value")}: '
                         "s, J and ∂L/∂z do not move.</div>")
        parts.append('<div class="cl-note">Each row of J sums to 0 and its smallest eigenvalue '
                     "is 0: raising every logit by the same amount leaves s unchanged.</div>")
        return "".join(parts)
