"""A simulated class, graded end to end: what `make demo` shows.

Each simulated student hands in the release notebooks filled in a particular
way: all right, nothing at all, half done, one of the lessons' common mistakes,
a notebook that kills its kernel, an infinite loop, a missing assignment, a
file that is not a notebook. Their answers are built from the source
notebooks' solutions, so the demo always matches the lessons; a mistake is a
small edit of one solution (`old` -> `new`), listed in the lesson's manifest
(course_lib/manifest/, ``demo = true``), and building the class fails loudly
if a lesson changes so that the edit no longer applies.

    python -m course_lib.instructor.demo            # build, collect, grade, report
    python -m course_lib.instructor.demo --build-only OUT   # just write the class

The demo grades in the course folder's own submitted/, autograded/ and
feedback/, and replaces a previous demo there. It refuses to run when the
gradebook or submitted/ holds a student who is not in the demo roster: it never
deletes a real class's work.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .course import find_course_root, source_assignments

SOLUTION = re.compile(r"[ \t]*### BEGIN SOLUTION\n(.*?)[ \t]*### END SOLUTION\n?", re.S)


@dataclass(frozen=True)
class Mistake:
    """A wrong answer: in `assignment`, cell `grade_id`, replace `old` by `new` in the solution."""

    assignment: str
    grade_id: str
    old: str
    new: str
    description: str


def manifest_mistakes() -> dict[str, Mistake]:
    """{id: Mistake} for each mistake the manifest marks ``demo = true``, in lesson order.

    The manifest (course_lib/manifest/<slug>.toml) holds each mistake once: its
    edit of the source solution, the words its check uses, and the summary the
    demo's roster shows.
    """
    from .. import manifest

    return {m.id: Mistake(les.assignment, ex.answer_id, m.old, m.new, m.summary)
            for les in manifest.lessons() for ex in les.exercises for m in ex.mistakes
            if m.demo}


MISTAKES = manifest_mistakes()

# student id -> how they work. "perfect" answers everything from the source;
# "empty" hands in the release untouched; other plans are below.
ROSTER = {
    "ada-perfect": "perfect",
    "ben-empty": "empty",
    "cai-half": "half",          # the first half of each lesson's exercises
    "dee-early": "early",        # lessons 01-03 done, 04-05 untouched
    **{f"m-{name}": f"mistake:{name}" for name in MISTAKES},
    "kim-crash": "crash",        # lesson 03 kills its kernel (os._exit)
    "lou-loop": "loop",          # lesson 02 never ends (while True)
    "max-missing": "missing",    # no lesson 04 notebook
    "noa-garbled": "garbled",    # lesson 05 is not valid JSON
}


def _answer(cell_source: str) -> str:
    """A solution cell as a student would hand it in: the markers gone, the code kept."""
    return SOLUTION.sub(lambda m: m.group(1), cell_source)


def student_notebook(plan: str, assignment: str, course_root: Path):
    """The notebook a student following `plan` hands in, or None (nothing handed in).

    Returns a NotebookNode, or a str for a file that is not a notebook.
    """
    source = nbformat.read(str(course_root / "source" / assignment / f"{assignment}.ipynb"), 4)
    release = nbformat.read(str(course_root / "release" / assignment / f"{assignment}.ipynb"), 4)
    answers = {c.metadata["nbgrader"]["grade_id"]: c for c in source.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    order = [gid for gid in answers if gid.endswith("_answer")]
    if plan == "missing" and assignment == "04_backprop_mlp":
        return None
    if plan == "garbled" and assignment == "05_autograd":
        return '{"cells": [{"cell_type": "code", "source": "print(1)"'  # cut off mid-file
    if plan == "empty" or (plan == "early" and assignment[:2] in ("04", "05")):
        return release
    answered = set(answers)
    if plan == "half":
        answered = set(order[: len(order) // 2])
    for cell in release.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answered:
            cell.source = _answer(answers[gid].source)
    if plan.startswith("mistake:"):
        m = MISTAKES[plan.split(":", 1)[1]]
        if m.assignment == assignment:
            _apply(release, m)
    if plan == "crash" and assignment == "03_softmax_jacobian":
        release.cells[_first_answer(release)].source = "import os\nos._exit(1)"
    if plan == "loop" and assignment == "02_sigmoid":
        release.cells[_first_answer(release)].source += "\n\nwhile True:  # oops\n    pass"
    return release


def _first_answer(nb) -> int:
    return next(i for i, c in enumerate(nb.cells)
                if str(c.metadata.get("nbgrader", {}).get("grade_id", "")).endswith("_answer"))


def _apply(nb, mistake: Mistake) -> None:
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == mistake.grade_id:
            if mistake.old not in cell.source:
                raise ValueError(f"demo mistake {mistake.description!r}: {mistake.old!r} is no "
                                 f"longer in {mistake.assignment}/{mistake.grade_id}; update "
                                 "its old/new in the lesson's course_lib/manifest/<slug>.toml")
            cell.source = cell.source.replace(mistake.old, mistake.new)
            return
    raise ValueError(f"demo mistake: no cell {mistake.grade_id} in {mistake.assignment}")


def build_class(out: Path, course_root: Path, roster=None, assignments=None) -> Path:
    """Write every student's notebooks as OUT/<assignment>/<student>.ipynb (collect's input)."""
    roster = roster or ROSTER
    assignments = assignments or source_assignments(course_root)
    for assignment in assignments:
        folder = Path(out) / assignment
        folder.mkdir(parents=True, exist_ok=True)
        for student, plan in roster.items():
            nb = student_notebook(plan, assignment, course_root)
            if nb is None:
                continue
            path = folder / f"{student}.ipynb"
            if isinstance(nb, str):
                path.write_text(nb)
            else:
                nbformat.write(nb, str(path))
    return Path(out)


GRADING_OUTPUTS = ("submitted", "feedback", "reports", "gradebook.db", "grades.csv")


def clear_previous_demo(course_root: Path, roster=None) -> None:
    """Remove a previous demo's outputs, refusing if any real student's work is there."""
    from nbgrader.api import Gradebook

    from .course import open_api

    roster = set(roster or ROSTER)
    _, cd = open_api(course_root)
    present = set()
    if (course_root / "gradebook.db").is_file():
        with Gradebook(cd.db_url, cd.course_id) as gb:
            present |= {s.id for s in gb.students}
    for folder in ("submitted", "autograded", "feedback"):
        if (course_root / folder).is_dir():
            present |= {p.name for p in (course_root / folder).iterdir()
                        if p.is_dir() and not p.name.startswith(".")}
    strangers = sorted(present - roster)
    if strangers:
        raise RuntimeError(f"the course folder holds work of students outside the demo "
                           f"({', '.join(strangers[:5])}{'...' if len(strangers) > 5 else ''}); "
                           "the demo would replace it. Run the demo in a copy of the course "
                           "(course_lib.instructor.demo --root DIR).")
    for name in GRADING_OUTPUTS:
        path = course_root / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    autograded = course_root / "autograded"
    if autograded.is_dir():
        for p in autograded.iterdir():
            if p.is_dir():
                shutil.rmtree(p)


def run_demo(course_root: Path) -> int:
    """Release, build the class, collect, grade (feedback, grades.csv, report), say where."""
    import tempfile

    from .cli import main as course

    clear_previous_demo(course_root)
    code = course(["release"])
    if code:
        return code
    with tempfile.TemporaryDirectory(prefix="course-demo-") as tmp:
        build_class(Path(tmp), course_root)
        for assignment in source_assignments(course_root):
            # exit code 1 = some files could not be placed: the demo has none, but
            # the report printed by collect says so if it ever happens
            course(["collect", str(Path(tmp) / assignment), "--assignment", assignment])
    # exits 1 when some submissions could not be graded normally: expected. The demo shows
    # every student's feedback page at once; a real class's pages wait for hand grading
    # (`course finalize` writes them), which is why the demo asks for them explicitly.
    course(["grade", "--force-feedback"])
    print("\nThe demo class has been graded:")
    for label, path in (("submissions", "submitted/"), ("graded copies", "autograded/"),
                        ("feedback (one HTML per student and assignment)", "feedback/"),
                        ("grades", "grades.csv"), ("report", "reports/report.html"),
                        ("gradebook", "gradebook.db")):
        print(f"  {label:<48} {course_root / path}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Grade a simulated class end to end.")
    parser.add_argument("--root", type=Path, help="course folder (default: this course)")
    parser.add_argument("--build-only", type=Path, metavar="OUT",
                        help="only write the class's notebooks to OUT/<assignment>/")
    args = parser.parse_args(argv)
    root = (args.root or find_course_root()).resolve()
    try:
        if args.build_only:
            build_class(args.build_only, root)
            print(f"wrote the demo class to {args.build_only}")
            return 0
        import os

        os.environ["COURSE_ROOT"] = str(root)
        return run_demo(root)
    except (RuntimeError, ValueError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
