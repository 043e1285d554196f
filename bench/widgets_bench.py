"""How long does one slider move take in each explorer of course_lib.widgets?

    python bench/widgets_bench.py [--moves 200] [--seed 0]

Each explorer is built once (no browser), then one of its sliders is set to a
random value ``--moves`` times, which runs exactly what a student's drag
runs: the slider's callback recomputes every number (complex step, finite
differences), rewrites the readout HTML, redraws the figure on its Agg canvas
and encodes the PNG the browser will show. Prints median and 95th-percentile
milliseconds per move; the target is a p95 of at most 50 ms.

Rows marked (button) or (dropdown) time controls that change the static part
of a figure and so redraw all of it; they are not slider moves.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

os.environ.setdefault("MPLBACKEND", "Agg")

TARGET_P95_MS = 50.0


def _random_value(slider, rng):
    if hasattr(slider, "base"):  # FloatLogSlider: min/max are exponents
        return float(slider.base ** rng.uniform(slider.min, slider.max))
    value = rng.uniform(slider.min, slider.max)
    return int(round(value)) if isinstance(slider.value, int) else float(value)


def time_sliders(explorer, moves: int, rng, names=None) -> list[float]:
    sliders = explorer.sliders
    names = list(names or sliders)
    times = []
    for i in range(moves):
        slider = sliders[names[i % len(names)]]
        value = _random_value(slider, rng)
        if value == slider.value:
            value = slider.min if value != slider.min else slider.max
        start = time.perf_counter()
        slider.value = value  # runs the observer: recompute, readout, Agg draw, PNG
        times.append(time.perf_counter() - start)
        if explorer.status.value:
            raise RuntimeError(f"{type(explorer).__name__}: {explorer.status.value}")
    return times


def time_calls(action, moves: int) -> list[float]:
    times = []
    for i in range(moves):
        start = time.perf_counter()
        action(i)
        times.append(time.perf_counter() - start)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=200, help="slider moves per explorer")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from course_lib import nets
    from course_lib.widgets import (
        GateExplorer,
        NetworkExplorer,
        SigmoidExplorer,
        SoftmaxExplorer,
    )
    from course_lib.widgets.autograd import AutogradExplorer

    rng = np.random.default_rng(args.seed)
    rows = []

    def run(label, build, names=None, kind="slider"):
        explorer = build()
        time_sliders(explorer, 5, rng, names)  # warm up caches (fonts, numpy)
        rows.append((label, kind, time_sliders(explorer, args.moves, rng, names)))
        return explorer

    run("GateExplorer('neuron')", lambda: GateExplorer("neuron"))
    run("GateExplorer('neuron_expanded')", lambda: GateExplorer("neuron_expanded"))
    run("GateExplorer('gates')", lambda: GateExplorer("gates"))
    run("SigmoidExplorer()", SigmoidExplorer)
    run("SoftmaxExplorer(n=3)", SoftmaxExplorer)
    run("SoftmaxExplorer(n=5)", lambda: SoftmaxExplorer(n=5))
    net = run("NetworkExplorer() seed000", NetworkExplorer, names=["value"])
    run("NetworkExplorer(seed004)", lambda: NetworkExplorer(nets.seed004()), names=["value"])
    run("AutogradExplorer()", AutogradExplorer)

    options = [name for _, name in net.dropdown.options]
    n_other = max(10, args.moves // 10)
    rows.append(("NetworkExplorer: choose parameter", "dropdown", time_calls(
        lambda i: setattr(net.dropdown, "value", options[(i * 7 + 1) % len(options)]), n_other)))
    net.lr_slider.value = 0.05
    rows.append(("NetworkExplorer: SGD step", "button",
                 time_calls(lambda i: net.step_button.click(), n_other)))

    width = max(len(r[0]) for r in rows)
    print(f"{'explorer':<{width}}  {'control':<8}  {'moves':>5}  {'median ms':>9}  "
          f"{'p95 ms':>7}")
    print("-" * (width + 38))
    worst = 0.0
    for label, kind, times in rows:
        ms = np.array(times) * 1000
        p95 = float(np.percentile(ms, 95))
        if kind == "slider":
            worst = max(worst, p95)
        print(f"{label:<{width}}  {kind:<8}  {len(ms):>5}  {np.median(ms):>9.1f}  {p95:>7.1f}")
    verdict = "OK" if worst <= TARGET_P95_MS else "TOO SLOW"
    print(f"\nslowest slider p95: {worst:.1f} ms (target <= {TARGET_P95_MS:.0f} ms): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
