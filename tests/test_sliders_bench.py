"""`make bench` times every slider of every lesson (bench/sliders_bench.py).

SLIDERS lists, per lesson, each cell that builds an explorer (its last line) and
the sliders it shows. Without a kernel: the lessons' cells that build explorers are
exactly these, no cell makes a bare ``...Slider(``, and each explorer, built here
from its cell, has exactly these sliders. With a kernel: the bench, run on every
lesson, finds exactly these sliders (every slider the kernel holds, however it was
made) and times each of them. Timings are the bench's business, not asserted here.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import sliders_bench  # noqa: E402

NEURON = ("w0", "x0", "w1", "x1", "w2")

#: lesson -> [(the last line of the cell that builds an explorer, its sliders' labels)]
SLIDERS = {
    "01_chain_rule": [
        ('GateExplorer("neuron_expanded")', NEURON),
        ("GateExplorer(student_neuron=neuron_forward_backward)", NEURON),
    ],
    "02_sigmoid": [
        ("VanishingExplorer()", ("depth", "log2(weights ×)")),
        ("SigmoidExplorer(student_sigmoid_prime=sigmoid_prime)",
         ("z", "depth L", "weight w", "bias b")),
    ],
    "03_softmax_jacobian": [
        ("SoftmaxExplorer(n=4, logits=(1.5, 0.5, 0.0, -0.5), shift=True)",
         ("logit z1", "logit z2", "logit z3", "logit z4", "shift c")),
        ("SoftmaxExplorer(student_jacobian=softmax_jacobian)",
         ("logit z1", "logit z2", "logit z3")),
    ],
    "04_backprop_mlp": [
        ("NetworkExplorer(student_backprop=backprop)", ("value", "learning rate")),
        ("LearningRateExplorer(backprop, sgd_step, X_m, y_m)", ("log10(lr)",)),
    ],
    "05_autograd": [
        ("EngineExplorer(Value)", ("w1", "x1", "w2", "x2", "b")),
        ("AutogradExplorer()", ("a", "b", "c")),
    ],
}

EXPLORER_LINE = re.compile(r"^[A-Z]\w*Explorer\(")
# (lesson 05's interact is a menu, no slider; a slider made any way at all is caught by
# the kernel test below, which lists every slider the kernel holds)
OTHER_SLIDERS = re.compile(r"\b\w*Slider\(")


def explorer_cells(assignment: str) -> list[tuple[str, str]]:
    """(the cell's source, its last line) of each source cell that builds an explorer."""
    nb = nbformat.read(str(ROOT / "source" / assignment / f"{assignment}.ipynb"), 4)
    found = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        lines = [ln.strip() for ln in cell.source.strip().splitlines() if ln.strip()]
        if lines and EXPLORER_LINE.match(lines[-1]):
            found.append((cell.source, lines[-1]))
    return found


def test_the_table_lists_every_lesson():
    assert sorted(SLIDERS) == sliders_bench.lessons()


@pytest.mark.parametrize("assignment", sorted(SLIDERS))
def test_the_lesson_builds_exactly_these_explorers_and_no_other_slider(assignment):
    assert [line for _, line in explorer_cells(assignment)] == \
        [line for line, _ in SLIDERS[assignment]]
    nb = nbformat.read(str(ROOT / "source" / assignment / f"{assignment}.ipynb"), 4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not OTHER_SLIDERS.search(cell.source), (
                f"{assignment}: a cell makes sliders that are no course_lib.widgets explorer "
                f"(move them into one, so the bench and the tests see them):\n{cell.source}")


def _stub_backprop(params, X, Y, activations, loss):
    return 0.5, [(np.zeros_like(W), np.zeros_like(b)) for W, b in params]


def _stub_sgd_step(params, grads, lr):
    return params


@pytest.mark.parametrize("assignment", sorted(SLIDERS))
def test_each_explorer_has_exactly_the_listed_sliders(assignment):
    """Each explorer cell, run here with stand-ins for the student's functions."""
    pytest.importorskip("torch")  # lesson 05's explorer
    import course_lib.widgets as widgets
    from course_lib import data, nets
    from course_lib.widgets.autograd import AutogradExplorer, EngineExplorer

    for (source, _), (line, sliders) in zip(explorer_cells(assignment), SLIDERS[assignment],
                                            strict=True):
        ns = {"np": np, "data": data, "nets": nets, "AutogradExplorer": AutogradExplorer,
              "EngineExplorer": EngineExplorer, "Value": None,
              **{name: getattr(widgets, name) for name in widgets.__all__
                 if name.endswith("Explorer") and name != "AutogradExplorer"},
              "neuron_forward_backward": None, "sigmoid_prime": None,
              "softmax_jacobian": None, "backprop": _stub_backprop,
              "sgd_step": _stub_sgd_step}
        *setup, last = source.strip().splitlines()
        exec("\n".join(setup), ns)  # noqa: S102 - the lesson's own cell
        explorer = eval(last, ns)  # noqa: S307
        assert tuple(s.description for s in explorer.sliders.values()) == sliders, line


@pytest.mark.slow
@pytest.mark.kernel  # the bench runs each lesson in a kernel of its own (nbclient)
def test_the_bench_finds_and_times_every_slider_of_every_lesson():
    for assignment in sorted(SLIDERS):
        rows = sliders_bench.measure_lesson(assignment, moves=2, warmup=0)
        found = {}
        for r in rows:
            found.setdefault(r.explorer, []).append(r.description)
            assert len(r.times_ms) == 2 and not r.error, r
        assert [(line, tuple(sliders)) for line, sliders in found.items()] == \
            [(line, sliders) for line, sliders in SLIDERS[assignment]], assignment
