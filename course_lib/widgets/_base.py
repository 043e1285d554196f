"""What every explorer shares: sliders as data, number formatting, the readout HTML,
and the ipywidgets shell around a figure.

An explorer is two objects:

* a **logic** object (plain Python + numpy): its ``state`` holds the slider
  values, ``set(name, value)`` changes one and returns ``values()``, the dict
  of every number the explorer shows. It is what the tests drive. A value is
  always a slider position: ``set`` moves the slider to the position nearest the
  value asked for (see :meth:`Control.snap`).
* a **widget** object (:class:`Explorer` subclass): builds ipywidgets controls
  from the logic's ``controls``, a figure (matplotlib, imported only when a
  widget is built) and a readout (an ipywidgets HTML), and refreshes both from
  ``values()`` whenever a control moves.

Neither ipywidgets nor matplotlib is imported by this module at import time.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from .._drawing import GRADING

__all__ = ["Control", "Logic", "Explorer", "fmt", "num_span", "table"]

#: CSS classes of the readout: one element per displayed number, whose text is
#: ``"<name> = <value>"`` and whose ``data-name`` attribute is ``<name>``.
CSS = {
    "readout": "cl-readout",
    "value": "cl-value",        # a forward value
    "grad": "cl-grad",          # a gradient computed by complex step
    "fd": "cl-fd",              # the same gradient by central finite differences
    "student": "cl-student",    # the student's own function
    "torch": "cl-torch",        # PyTorch's autograd (lesson 05)
    "check": "cl-check",        # a comparison (relative error, match or not)
}

STYLE = """<style>
.cl-readout {font-family: var(--jp-code-font-family, monospace); font-size: 12.5px;
  line-height: 1.45; color: #1f2328; overflow-x: auto;}
.cl-readout table {border-collapse: collapse; margin: 2px 0 6px 0;}
.cl-readout table th {font-weight: 600; text-align: right; padding: 1px 8px;
  border-bottom: 1px solid #d0d7de; color: #57606a; line-height: 1.3;}
.cl-readout table td {text-align: right; padding: 1px 8px; white-space: nowrap;
  line-height: 1.3; border: none;}
.cl-readout table tr:nth-child(even) {background: #f6f8fa;}
.cl-readout table td.cl-name, .cl-readout table th.cl-name {text-align: left;}
.cl-readout .cl-value {color: #1a7f37;}
.cl-readout .cl-grad {color: #c0392b; font-weight: 600;}
.cl-readout .cl-fd {color: #57606a;}
.cl-readout .cl-student {color: #6f42c1;}
.cl-readout .cl-torch {color: #b35900; font-weight: 600;}
.cl-readout .cl-ok {color: #1a7f37;}
.cl-readout .cl-bad {color: #cf222e; font-weight: 600;}
.cl-readout .cl-note {color: #57606a; font-style: italic;}
.cl-readout .cl-big {font-size: 15px;}
.cl-readout table tr.cl-selected td {background: #fff8c5;}
</style>"""


def fmt(value, digits: int = 4) -> str:
    """A number as the readout shows it: ``digits`` significant digits, no '-0'."""
    v = float(value)
    if v == 0 or not math.isfinite(v):
        return "0" if v == 0 else str(v)
    s = f"{v:.{digits}g}"
    return s


def num_span(name: str, value, kind: str = "grad", digits: int = 4,
             text: str | None = None, bare: bool = False) -> str:
    """``<span class="cl-grad" data-name="dL/dw">dL/dw = -0.2418</span>``.

    ``text`` replaces the name shown before ``=``; ``bare`` shows the number
    alone (in a table whose header names it); ``data-name`` is always the name.
    """
    shown = "" if bare else html.escape(text if text is not None else name) + " = "
    return (f'<span class="{CSS.get(kind, kind)}" data-name="{html.escape(name)}">'
            f"{shown}{fmt(value, digits)}</span>")


def table(header: Iterable[str], rows: Iterable[Iterable[str]], selected: int | None = None,
          name_col: bool = True, groups: Iterable[tuple[str, int]] | None = None) -> str:
    """An HTML table; cells are HTML already (escape plain text yourself).

    ``groups``: an extra header row above ``header``, as (label, columns spanned).
    """
    top = ""
    if groups:
        top = "<tr>" + "".join(f'<th colspan="{n}" style="text-align:center">{g}</th>'
                               for g, n in groups) + "</tr>"
    head = "".join(f'<th class="cl-name">{h}</th>' if (i == 0 and name_col) else f"<th>{h}</th>"
                   for i, h in enumerate(header))
    body = []
    for r, row in enumerate(rows):
        cls = ' class="cl-selected"' if r == selected else ""
        cells = "".join(f'<td class="cl-name">{c}</td>' if (i == 0 and name_col)
                        else f"<td>{c}</td>" for i, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table>{top}<tr>{head}</tr>{''.join(body)}</table>"


def rel_err(a: float, b: float) -> float:
    """|a - b| / max(1e-8, |a| + |b|), as in course_lib.gradcheck.rel_error."""
    return abs(a - b) / max(1e-8, abs(a) + abs(b))


def check_span(err: float, ok_below: float = 1e-5) -> str:
    ok = err < ok_below
    cls = "cl-ok" if ok else "cl-bad"
    mark = "✓" if ok else "✗"
    return (f'<span class="{CSS["check"]} {cls}" title="relative error">{mark} {err:.1e}'
            "</span>")


# ---------------------------------------------------------------------------
# logic
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Control:
    """One slider: its name in ``state``, default, range, step and label.

    ``on_grid=False`` marks a value that is not read off a linear slider (a
    learning rate on a log slider): it is kept as given.
    """

    name: str
    default: float
    min: float
    max: float
    step: float = 0.01
    description: str = ""
    integer: bool = False
    on_grid: bool = True

    def __post_init__(self) -> None:
        # the starting value is a slider position too (frozen: set it the dataclass way)
        object.__setattr__(self, "default", self.snap(self.default))

    @property
    def label(self) -> str:
        return self.description or self.name

    def snap(self, value) -> float:
        """The slider position nearest ``value``: a multiple of ``step`` (an int for
        an integer slider).

        A slider can only stand on its grid, so this is what moving it to ``value``
        gives. It also keeps every explorer from being a calculator for the
        exercises (COURSE.md: no helper a student can import returns a graded
        function's answer): an explorer shows σ'(z), a Jacobian or ∂L/∂w at slider
        positions only, and the inputs a hidden check draws at random are not ones.
        """
        v = float(value)
        if self.integer:
            return int(round(v))
        if not self.on_grid or not math.isfinite(v):
            return v
        # round(k·step, 10) is the float nearest the decimal k·step (3·0.1 -> 0.3)
        return float(np.round(np.round(v / self.step) * self.step, 10))


class Logic:
    """Base of every explorer's logic: slider values in ``state``, numbers from ``values()``.

    Subclasses set ``self.controls`` (a dict name -> :class:`Control`) before
    calling ``Logic.__init__`` and implement :meth:`values`.
    """

    controls: dict[str, Control]

    def __init__(self) -> None:
        self._state: dict[str, float] = {n: c.default for n, c in self.controls.items()}

    @property
    def state(self) -> Mapping[str, float]:
        """The sliders' values (read-only: :meth:`set` and :meth:`update` move them)."""
        return MappingProxyType(self._state)

    def _check(self, name: str, value):
        if name not in self.controls:
            raise ValueError(f"name: unknown slider {name!r}; expected one of "
                             f"{', '.join(repr(n) for n in self.controls)}")
        c = self.controls[name]
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected a number, got {value!r}") from None
        if not math.isfinite(v):
            raise ValueError(f"{name}: expected a finite number, got {value!r}")
        return c.snap(v)

    def move(self, name: str, value) -> None:
        """Move one slider (to the position nearest ``value``), computing nothing yet.

        What a widget's slider calls: its refresh then computes :meth:`values` once.
        """
        self._state[name] = self._check(name, value)
        self._changed({name})

    def set(self, name: str, value) -> dict[str, float]:
        """Move one slider (to the position nearest ``value``); returns :meth:`values`."""
        self.move(name, value)
        return self.values()

    def update(self, **values) -> dict[str, float]:
        """Move several sliders at once; returns :meth:`values`."""
        checked = {n: self._check(n, v) for n, v in values.items()}
        self._state.update(checked)
        self._changed(set(checked))
        return self.values()

    def reset(self) -> dict[str, float]:
        """Every slider back to its default."""
        self._state = {n: c.default for n, c in self.controls.items()}
        self._changed(set(self.state))
        return self.values()

    def _changed(self, names: set[str]) -> None:
        """Hook: called after sliders moved (invalidate caches here)."""

    def values(self) -> dict[str, float]:  # pragma: no cover - abstract
        raise NotImplementedError


def call_student(fn: Callable | None, *args):
    """Run a student's function: ``(result, None)``, ``(None, None)`` when it is
    missing or raises NotImplementedError (not written yet: show nothing), or
    ``(None, message)`` when it raises anything else (shown to the student)."""
    if fn is None:
        return None, None
    try:
        return fn(*args), None
    except NotImplementedError:
        return None, None
    except Exception as exc:  # noqa: BLE001 - any error of theirs is shown, not raised
        return None, f"{type(exc).__name__}: {exc}"


def as_array(value) -> np.ndarray:
    """A student's result as a float64 array (torch tensors included)."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


# ---------------------------------------------------------------------------
# widget shell
# ---------------------------------------------------------------------------

def _ipywidgets():
    import ipywidgets

    return ipywidgets


class Explorer:
    """The ipywidgets shell: controls, a figure rendered to a PNG image, a readout.

    Subclasses implement ``_build_figure()`` (returns a
    :class:`course_lib.widgets._render.BlitFigure`), ``_draw(values)`` (move the
    figure's artists) and ``_readout(values)`` (HTML string). One with controls of
    its own builds them in its ``__init__`` before calling this one, and not at all
    while grading (nothing is shown then, and ipywidgets is never imported), and
    places them with ``_control_children()``.

    Attributes:
        logic: the logic object (its ``state`` mirrors the sliders).
        sliders: dict name -> ipywidgets slider.
        readout: the ipywidgets HTML with every number as text.
        image: the ipywidgets Image showing the figure.
        widget: the top-level ipywidgets box (display it, or the explorer itself).
    """

    logic: Logic
    title: str = ""
    slider_width = "330px"

    def __init__(self, logic: Logic) -> None:
        self.logic = logic
        self._updating = False
        if GRADING:  # course_lib._drawing: the numbers stay, nothing is drawn
            self.sliders, self.widget = {}, None
            return
        W = _ipywidgets()
        self.sliders = {name: self._make_slider(c) for name, c in logic.controls.items()}
        self.readout = W.HTML(value="", layout=W.Layout(flex="1 1 420px", min_width="300px"))
        self.readout.add_class(CSS["readout"])
        self.status = W.HTML(value="")
        self.status.add_class("cl-status")
        self.image = W.Image(format="png", layout=W.Layout(max_width="100%", height="auto"))
        self.image.add_class("cl-figure")
        self.fig = self._build_figure()
        controls = W.VBox(self._control_children(),
                          layout=W.Layout(flex="0 0 auto", padding="0 12px 0 0"))
        header = W.HTML(f'<div style="font-size:15px;font-weight:600;margin:2px 0 4px 0">'
                        f"{self.title}</div>") if self.title else None
        body = W.HBox([controls, self.readout],
                      layout=W.Layout(align_items="flex-start", flex_flow="row wrap"))
        children = ([header] if header else []) + [W.HTML(STYLE), self.image, body, self.status]
        self.widget = W.VBox(children)
        self.widget.add_class("cl-explorer")
        self.refresh()

    # --- controls ---------------------------------------------------------

    def _make_slider(self, c: Control):
        W = _ipywidgets()
        common = dict(value=c.default, min=c.min, max=c.max, step=c.step,
                      description=c.label, continuous_update=True,
                      style={"description_width": "90px"},
                      layout=W.Layout(width=self.slider_width))
        s = W.IntSlider(**common) if c.integer else W.FloatSlider(readout_format=".2f", **common)
        s.observe(lambda change, name=c.name: self._on_slider(name, change["new"]), names="value")
        return s

    def _control_children(self) -> list:
        return list(self.sliders.values())

    def _on_slider(self, name: str, value) -> None:
        if self._updating:
            return
        self._guarded(lambda: self.logic.move(name, value))  # refresh computes once

    def _guarded(self, action: Callable[[], object]) -> None:
        """Run ``action`` then refresh; an error is shown in the status line."""
        try:
            action()
            self.refresh()
            self.status.value = ""
        except Exception as exc:  # noqa: BLE001 - a widget callback must not die silently
            self.status.value = (f'<span style="color:#cf222e">{type(exc).__name__}: '
                                 f"{html.escape(str(exc))}</span>")

    def sync_sliders(self) -> None:
        """Move the sliders to the logic's state without triggering callbacks."""
        self._updating = True
        try:
            for name, s in self.sliders.items():
                if s.value != self.logic.state[name]:
                    s.value = self.logic.state[name]
        finally:
            self._updating = False

    # --- refresh ----------------------------------------------------------

    def refresh(self) -> dict[str, float]:
        """Recompute every number, update the readout and redraw the figure."""
        values = self.logic.values()
        if self.widget is None:  # grading mode
            return values
        self.readout.value = self._readout(values)
        self._draw(values)
        self.image.value = self.fig.png()
        return values

    def _build_figure(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _draw(self, values) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _readout(self, values) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    # --- display ----------------------------------------------------------

    def _ipython_display_(self) -> None:
        from IPython.display import display

        if self.widget is not None:
            display(self.widget)

    def __repr__(self) -> str:
        state = ", ".join(f"{k}={v:g}" for k, v in self.logic.state.items())
        return f"{type(self).__name__}({state})"
