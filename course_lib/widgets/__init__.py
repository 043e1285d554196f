"""Interactive explorers: grab a weight, watch the values, the loss and every gradient move.

Every slider of every lesson is one of these explorers (each is an ipywidgets box
with sliders, a figure and a readout where every number also appears as text; the
figures in ``course_lib.figures`` are static)::

    from course_lib.widgets import GateExplorer        # 01: a graph, every edge's gradients
    from course_lib.widgets import SigmoidExplorer     # 02: σ, σ', saturation, a 1-unit stack
    from course_lib.widgets import VanishingExplorer   # 02: δ per layer of a deep 64-unit MLP
    from course_lib.widgets import SoftmaxExplorer     # 03: probabilities and the Jacobian
    from course_lib.widgets import NetworkExplorer     # 04: the 3-4-2 network, ∂L/∂w on every edge
    from course_lib.widgets import LearningRateExplorer  # 04: your backprop, mean or sum loss
    from course_lib.widgets.autograd import AutogradExplorer   # 05 (imports torch)

A move of a slider recomputes the numbers, rewrites the readout and redraws only
what moves (course_lib.widgets._render.BlitFigure); what a move cannot afford (the
training runs of LearningRateExplorer) is done once, when the explorer is built.
``make bench`` times every slider of every lesson (bench/sliders_bench.py).

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
from .mlp import LearningRateExplorer, LearningRateLogic, NetworkExplorer, NetworkLogic
from .sigmoid import SigmoidExplorer, SigmoidLogic, VanishingExplorer, VanishingLogic
from .softmax import SoftmaxExplorer, SoftmaxLogic

__all__ = [
    "complex_step",
    "GateExplorer",
    "GateLogic",
    "LearningRateExplorer",
    "LearningRateLogic",
    "NetworkExplorer",
    "NetworkLogic",
    "SigmoidExplorer",
    "SigmoidLogic",
    "SoftmaxExplorer",
    "SoftmaxLogic",
    "VanishingExplorer",
    "VanishingLogic",
    "AutogradExplorer",
    "AutogradLogic",
]


def __getattr__(name):
    # lesson 05's explorer needs torch: load it only when asked for
    if name in ("AutogradExplorer", "AutogradLogic"):
        from . import autograd

        return getattr(autograd, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
