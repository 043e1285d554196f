"""How long does a student's slider move take, for every slider of every lesson?

    python bench/sliders_bench.py [--moves 20] [--lessons 01 03] [--json out.json]

Each release notebook is filled in with the solutions (the demo's "perfect"
student: course_lib.instructor.demo.student_notebook) and run, cell by cell, in a
real Jupyter kernel, as a student runs it (the inline backend, no grading mode).
A hook in the kernel notes every ipywidgets slider that a cell creates. After
the last cell, in the same kernel, every slider is moved ``--moves`` times to
positions spread across its range (in a shuffled order, after ``--warmup``
untimed moves): each move sets the slider's ``.value`` in the kernel, which runs
what a student's drag runs, the observers that recompute the numbers, rewrite the
readout, redraw the figure and encode it as PNG, and the comm messages that send
the new state to the browser. Each move is timed in the kernel (perf_counter).

Prints one row per slider: lesson, explorer (the cell's line that builds it),
slider, median and 95th-percentile milliseconds per move, and PASS or FAIL
against the target, a p95 of at most 50 ms. Exits 1 when a slider FAILs, when
a move shows an error in its explorer's status line, or when a lesson does not
run. Nothing is compared with a stored number: every figure is of this run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_P95_MS = 50.0
MARKER = "@@SLIDERS@@"

# First cell: a hook that, after every cell, notes the sliders the cell created
# (ipywidgets keeps every live widget in widget._instances, by model id).
SETUP = r'''
from ipywidgets.widgets import widget as _bench_widget

_bench_seen = set(_bench_widget._instances)
_bench_made = []  # (the cell's source, model id) of every slider, in order


def _bench_after(result):
    global _bench_seen
    now = set(_bench_widget._instances)
    for mid in sorted(now - _bench_seen, key=list(_bench_widget._instances).index):
        if type(_bench_widget._instances[mid]).__name__.endswith("Slider"):
            _bench_made.append((result.info.raw_cell, mid))
    _bench_seen = now


get_ipython().events.register("post_run_cell", _bench_after)
'''

# Last cell: move every slider and time each move, in the kernel.
MEASURE = r'''
import gc as _bench_gc
import json as _bench_json
import time as _bench_time

import numpy as _bench_np


def _bench_positions(s, n):
    """n positions spread over the slider's range, on its grid."""
    kind = type(s).__name__
    if kind == "SelectionSlider":
        idx = _bench_np.linspace(0, len(s.options) - 1, n).round().astype(int)
        return [s.options[i] for i in idx]
    lo, hi, step = float(s.min), float(s.max), float(s.step or 1)
    grid = lo + _bench_np.round((_bench_np.linspace(lo, hi, n) - lo) / step) * step
    grid = _bench_np.clip(grid, lo, hi)
    if kind == "FloatLogSlider":
        return [float(s.base ** e) for e in grid]
    if kind == "IntSlider":
        return [int(v) for v in grid]
    return [float(v) for v in grid]


def _bench_label(source):
    lines = [ln.strip() for ln in source.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "?"


def _bench_run(moves, warmup, seed):
    from course_lib.widgets._base import Explorer

    owner = {}
    for obj in _bench_gc.get_objects():
        if isinstance(obj, Explorer):
            for name, s in (getattr(obj, "sliders", None) or {}).items():
                if s is not None:
                    owner[s.model_id] = (obj, name)
    rng = _bench_np.random.default_rng(seed)
    rows = []
    for source, mid in _bench_made:
        s = _bench_widget._instances.get(mid)
        if s is None:  # closed since (a progress bar, say)
            continue
        explorer, name = owner.get(mid, (None, s.description))
        spots = _bench_positions(s, moves)
        order = [spots[i] for i in rng.permutation(len(spots))]
        plan = order[:warmup] + order
        times, error = [], ""
        for k, value in enumerate(plan):
            if value == s.value:  # a move that moves
                value = spots[0] if value != spots[0] else spots[-1]
            start = _bench_time.perf_counter()
            s.value = value
            took = _bench_time.perf_counter() - start
            if k >= warmup:
                times.append(took * 1000.0)
            status = getattr(getattr(explorer, "status", None), "value", "")
            if status:
                error = status
                break
        rows.append({"explorer": _bench_label(source),
                     "explorer_class": type(explorer).__name__ if explorer else "",
                     "slider": name, "description": s.description,
                     "kind": type(s).__name__, "times_ms": times, "error": error})
    return rows


print("@@SLIDERS@@" + _bench_json.dumps(_bench_run(MOVES, WARMUP, SEED)))
'''


@dataclass
class Row:
    lesson: str
    explorer: str
    explorer_class: str
    slider: str
    description: str
    kind: str
    times_ms: list[float]
    error: str = ""

    @property
    def median(self) -> float:
        import numpy as np

        return float(np.median(self.times_ms)) if self.times_ms else float("nan")

    @property
    def p95(self) -> float:
        import numpy as np

        return float(np.percentile(self.times_ms, 95)) if self.times_ms else float("nan")

    @property
    def passed(self) -> bool:
        return not self.error and bool(self.times_ms) and self.p95 <= TARGET_P95_MS


def lessons(course_root: Path = ROOT) -> list[str]:
    """Every assignment of source/, in order (one whose release notebook is missing
    then fails as a lesson that does not run, never silently skipped)."""
    return sorted(p.parent.name for p in (course_root / "source").glob("*/*.ipynb")
                  if p.stem == p.parent.name)


def perfect_notebook(assignment: str, course_root: Path = ROOT):
    """The release notebook with every solution filled in (the demo's perfect student)."""
    from course_lib.instructor.demo import student_notebook

    return student_notebook("perfect", assignment, course_root)


def measure_lesson(assignment: str, moves: int = 20, warmup: int = 2, seed: int = 0,
                   course_root: Path = ROOT, timeout: int = 600) -> list[Row]:
    """Run the perfect notebook of ``assignment`` in a kernel and time its sliders."""
    import nbformat
    from nbclient import NotebookClient

    from course_lib.judge.polled_client import PolledKernelManager

    nb = perfect_notebook(assignment, course_root)
    nb.cells.insert(0, nbformat.v4.new_code_cell(SETUP))
    nb.cells.append(nbformat.v4.new_code_cell(
        f"MOVES, WARMUP, SEED = {int(moves)}, {int(warmup)}, {int(seed)}\n" + MEASURE))
    with tempfile.TemporaryDirectory(prefix="sliders_bench_") as tmp:
        # a scratch copy of the assignment's folder: whatever the lesson writes stays there
        work = Path(tmp) / assignment
        shutil.copytree(course_root / "release" / assignment, work)
        # polled: nbclient can miss the wake-up for a reply that arrives while a cell
        # opens widget comms, and then wait out the cell's whole limit (nbclient#312)
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                kernel_manager_class=PolledKernelManager,
                                resources={"metadata": {"path": str(work)}})
        client.execute()
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("name") == "stdout")
    found = [line for line in text.splitlines() if line.startswith(MARKER)]
    if not found:
        raise RuntimeError(f"{assignment}: the measuring cell printed nothing: {text[-500:]!r}")
    return [Row(lesson=assignment, **r) for r in json.loads(found[-1][len(MARKER):])]


def print_table(rows: list[Row]) -> None:
    head = ("lesson", "explorer", "slider", "moves", "median ms", "p95 ms", "")
    cells = [(r.lesson, r.explorer[:64], r.description or r.slider, str(len(r.times_ms)),
              f"{r.median:.1f}", f"{r.p95:.1f}",
              "PASS" if r.passed else ("ERROR " + r.error[:60] if r.error else "FAIL"))
             for r in rows]
    widths = [max(len(str(c[i])) for c in [head, *cells]) for i in range(len(head))]
    right = {3, 4, 5}

    def line(c):
        return "  ".join(str(v).rjust(w) if i in right else str(v).ljust(w)
                         for i, (v, w) in enumerate(zip(c, widths, strict=True))).rstrip()

    print(line(head))
    print("-" * len(line(head)))
    for c in cells:
        print(line(c))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=20, help="timed moves per slider")
    parser.add_argument("--warmup", type=int, default=2, help="untimed moves first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lessons", nargs="*", default=None,
                        help="assignments (or their number prefixes) to run; default all")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)

    todo = lessons()
    if args.lessons:
        todo = [a for a in todo if any(a.startswith(p) for p in args.lessons)]
    print(f"== Sliders: every slider of every lesson, moved {args.moves} times in a kernel "
          f"(target p95 <= {TARGET_P95_MS:.0f} ms) ==")
    rows: list[Row] = []
    failed_lessons = []
    for assignment in todo:
        start = time.monotonic()
        try:
            found = measure_lesson(assignment, args.moves, args.warmup, args.seed)
        except Exception as exc:  # noqa: BLE001 - a lesson that does not run is a FAIL
            failed_lessons.append(f"{assignment}: {type(exc).__name__}: {str(exc)[:300]}")
            continue
        rows += found
        print(f"  {assignment}: {len(found)} sliders, {time.monotonic() - start:.0f} s "
              "(running the lesson included)", flush=True)
    print()
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    bad = [r for r in rows if not r.passed]
    worst = max((r.p95 for r in rows if r.times_ms), default=float("nan"))
    print(f"\n{len(rows)} sliders in {len(todo) - len(failed_lessons)} lessons; slowest p95 "
          f"{worst:.1f} ms; {len(bad)} over {TARGET_P95_MS:.0f} ms or failing")
    for msg in failed_lessons:
        print(f"LESSON DID NOT RUN: {msg}")
    return 1 if bad or failed_lessons else 0


if __name__ == "__main__":
    sys.exit(main())
