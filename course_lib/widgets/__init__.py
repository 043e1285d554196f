"""Interactive explorers: grab a weight, watch the values, the loss and every gradient move.

One explorer per lesson (each is an ipywidgets box with sliders, a figure and
a readout where every number also appears as text)::

    from course_lib.widgets import GateExplorer        # 01: a graph, every edge's gradients
    from course_lib.widgets import SigmoidExplorer     # 02: σ, σ', saturation, vanishing gradients
    from course_lib.widgets import SoftmaxExplorer     # 03: probabilities and the Jacobian
    from course_lib.widgets import NetworkExplorer     # 04: the 3-4-2 network, ∂L/∂w on every edge
    from course_lib.widgets.autograd import AutogradExplorer   # 05 (imports torch)

    GateExplorer()          # a cell holding just the explorer displays it

Every gradient shown is computed by **complex-step differentiation**
(:mod:`course_lib.widgets.complex_step`), exact to machine precision and
independent of the backward passes the exercises ask for, and is shown beside
a central finite-difference check where that is cheap. Each explorer's numbers
come from a plain logic class (``GateLogic``, ``SigmoidLogic``, ...) that
works without ipywidgets or matplotlib: ``GateLogic().set("w0", 1.0)`` returns
a dict of every number the explorer displays.

Importing this package loads numpy only: no torch, no matplotlib, no
ipywidgets (they load when a widget is built), and never the answers in
``course_lib.reference``.
"""

from __future__ import annotations

from . import complex_step
from .chain_rule import GateExplorer, GateLogic
from .mlp import NetworkExplorer, NetworkLogic
from .sigmoid import SigmoidExplorer, SigmoidLogic
from .softmax import SoftmaxExplorer, SoftmaxLogic

__all__ = [
    "complex_step",
    "GateExplorer",
    "GateLogic",
    "NetworkExplorer",
    "NetworkLogic",
    "SigmoidExplorer",
    "SigmoidLogic",
    "SoftmaxExplorer",
    "SoftmaxLogic",
    "AutogradExplorer",
    "AutogradLogic",
]


def __getattr__(name):
    # lesson 05's explorer needs torch: load it only when asked for
    if name in ("AutogradExplorer", "AutogradLogic"):
        from . import autograd

        return getattr(autograd, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
