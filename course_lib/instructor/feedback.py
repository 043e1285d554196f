"""Feedback a student can read: one self-contained HTML page per notebook, maths offline.

nbgrader's stock feedback is the autograded notebook rendered to HTML: it
contains the hidden tests' code (restored into the test cells by autograde),
tracebacks that quote it line by line, calls each test "Test cell", and loads
MathJax from a CDN (no maths without internet). The course's feedback is
nbgrader's ``GenerateFeedback`` with, in ``GenerateFeedback.preprocessors``:

1. nbgrader's ``GetGrades``: each graded cell's score and the grader's comment
   from the gradebook;
2. nbgrader's ``ClearHiddenTests``: the hidden region leaves each test cell;
3. ``TestMessagesOnly`` (below): in a test cell, every error's traceback becomes
   its last line, ``ErrorName: message``, because a traceback quotes the code
   of the frame that raised, which may be hidden;
4. ``ExerciseFeedback`` (below): groups the test cells under the exercise they
   test, named by the function the answer cell defines (``sigmoid_prime``),
   each marked passed or failed with its message, and the written answers with
   the question they answer, their score and comment, for the page's summary;
5. ``OfflineMathJax`` (below): MathJax 3 (SVG output, every TeX extension in
   one file, from the ``django-static-mathjax`` package) inlined in the page.

The page is rendered by the nbconvert template ``templates/feedback/course_feedback.html.j2``,
which extends nbgrader's own feedback template. The page needs no other file:
``nbgrader release_feedback`` copies only the ``*.html`` files of
``feedback/<student>/<assignment>/`` (renamed by checksum), so a renderer
shipped next to the page would not reach the student.
"""

from __future__ import annotations

import re
from pathlib import Path

from nbconvert.exporters import HTMLExporter
from nbgrader import utils
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode

from .status import full_marks

TEMPLATES = Path(__file__).resolve().parent / "templates"
# nbgrader's API always asks for the template named "feedback": the course's folder of
# that name comes first in extra_template_basedirs, nbgrader's after it. Its file is not
# index.html.j2, so that the loader finds nbgrader's index.html.j2, which it extends.
TEMPLATE_NAME = "feedback"
TEMPLATE_FILE = "course_feedback.html.j2"
MATHJAX_FILE = "es5/tex-svg-full.js"  # inside the `mathjax` package (django-static-mathjax)


class FeedbackExporter(HTMLExporter):
    """nbconvert's HTML exporter, configured (nbgrader_config.py) with the course's
    feedback template. Only GenerateFeedback uses it: configured on HTMLExporter
    itself, the template also drew the formgrader's grading pages (the formgrader
    renders with HTMLExporter and the same config), which then failed with a 500."""


class TestMessagesOnly(NbGraderPreprocessor):
    """In graded test cells, reduce every error output to ``ErrorName: message``."""

    def preprocess_cell(self, cell, resources, cell_index):
        if utils.is_grade(cell) and not utils.is_solution(cell):
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    out["traceback"] = [f"{out.get('ename', 'Error')}: {out.get('evalue', '')}"]
        return cell, resources


_DEFINES = re.compile(r"^(?:async\s+)?(?:def|class)\s+([A-Za-z_]\w*)", re.MULTILINE)


def exercise_name(answer_source: str, grade_id: str) -> str:
    """The name a student knows an exercise by: the first function or class the
    answer cell defines (``sigmoid_prime``); else the cell's grade id without
    ``_answer`` (the answer may be broken beyond recognition)."""
    found = _DEFINES.search(answer_source or "")
    return found.group(1) if found else grade_id.removesuffix("_answer")


def _points(value) -> float:
    return float(value) if value is not None else 0.0


class ExerciseFeedback(NbGraderPreprocessor):
    """Put each graded cell in the words of the page, for the template.

    Runs after GetGrades (scores, comments), ClearHiddenTests and TestMessagesOnly.
    Each graded cell gets ``cell.metadata.course_feedback`` (what the page says
    beside it in the notebook), and ``resources["course_feedback"]`` holds the
    summary: ``exercises`` (name, points, the student's code, its tests with
    passed/failed and message), ``written`` (question, answer, points, comment,
    whether it is graded yet) and the totals. Whether a written answer is graded
    yet is the gradebook's ``needs_manual_grade``, read from the same database
    GetGrades reads.
    """

    def preprocess(self, nb, resources):
        from .grade import error_message

        pending = self._pending_manual_grades(resources)
        exercises: list[dict] = []
        written: list[dict] = []
        current = None  # the exercise the next test cells test
        question = ""  # the last markdown cell that is not graded: what a written answer answers
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            gid = meta.get("grade_id", "")
            if utils.is_solution(cell) and cell.cell_type == "code" and not utils.is_grade(cell):
                current = {"name": exercise_name(cell.source, gid), "grade_id": gid,
                           "code": cell.source, "tests": [], "score": 0.0, "points": 0.0}
                exercises.append(current)
                cell.metadata["course_feedback"] = {"kind": "answer", "exercise": current["name"]}
            elif utils.is_grade(cell) and not utils.is_solution(cell):
                score, points = _points(meta.get("score")), _points(meta.get("points"))
                if current is None:
                    current = {"name": gid, "grade_id": gid, "code": "", "tests": [],
                               "score": 0.0, "points": 0.0}
                    exercises.append(current)
                passed = full_marks(score, points)
                test = {"grade_id": gid, "score": score, "points": points, "passed": passed,
                        "message": "" if passed else (error_message(cell) or
                                                      "this test did not give full marks")}
                current["tests"].append(test)
                current["score"] += score
                current["points"] += points
                cell.metadata["course_feedback"] = {"kind": "test", "exercise": current["name"],
                                                    **test}
            elif utils.is_grade(cell):  # a written (or free-response code) answer: by hand
                graded = gid not in pending
                entry = {"grade_id": gid, "question": question, "answer": cell.source,
                         "cell_type": cell.cell_type, "graded": graded,
                         "score": _points(meta.get("score")), "points": _points(meta.get("points")),
                         "comment": meta.get("comment") or ""}
                written.append(entry)
                cell.metadata["course_feedback"] = {"kind": "written", **entry}
            elif cell.cell_type == "markdown":
                question = cell.source
        nbg = resources.get("nbgrader", {})
        resources["course_feedback"] = {
            "exercises": exercises, "written": written,
            "score": _points(nbg.get("score")), "max_score": _points(nbg.get("max_score")),
            "tests_passed": sum(t["passed"] for e in exercises for t in e["tests"]),
            "tests": sum(len(e["tests"]) for e in exercises),
            "pending_points": sum(w["points"] for w in written if not w["graded"]),
        }
        return nb, resources

    @staticmethod
    def _pending_manual_grades(resources) -> set[str]:
        """grade ids of this notebook's cells that still wait for a grader."""
        nbg = resources.get("nbgrader", {})
        if "db_url" not in nbg:
            return set()
        from nbgrader.api import Gradebook, MissingEntry

        with Gradebook(nbg["db_url"]) as gb:
            try:
                notebook = gb.find_submission_notebook(nbg["notebook"], nbg["assignment"],
                                                       nbg["student"])
            except MissingEntry:
                return set()
            return {g.name for g in notebook.grades if g.needs_manual_grade}


def mathjax_source(relative: str = MATHJAX_FILE) -> str:
    """MathJax's JavaScript, from the ``mathjax`` package that django-static-mathjax
    installs, safe to place inside ``<script>`` (no ``</script`` in it).

    Raises:
        FileNotFoundError: naming the package to install, when it is missing.
    """
    try:
        import mathjax
    except ImportError:
        raise FileNotFoundError("MathJax for the feedback pages is missing: install the pinned "
                                "django-static-mathjax (make setup)") from None
    path = Path(mathjax.__file__).resolve().parent / "static" / "mathjax" / relative
    if not path.is_file():
        raise FileNotFoundError(f"MathJax for the feedback pages is missing: no {path} "
                                "(reinstall the pinned django-static-mathjax)")
    return re.sub(r"</(script)", r"<\\/\1", path.read_text(encoding="utf-8"),
                  flags=re.IGNORECASE)


class OfflineMathJax(NbGraderPreprocessor):
    """Give the template MathJax's code to inline, so maths renders without internet.

    MathJax 3's ``tex-svg-full.js`` carries every TeX extension and draws glyphs as
    SVG paths: it loads no further file (no fonts, no extension), so inlined it
    makes the page self-sufficient when a student opens it from disk.
    """

    mathjax_file = Unicode(MATHJAX_FILE, help="MathJax component inside the mathjax "
                                              "package's static/mathjax/").tag(config=True)
    _cache: dict[str, str] = {}

    def preprocess(self, nb, resources):
        if self.mathjax_file not in self._cache:
            self._cache[self.mathjax_file] = mathjax_source(self.mathjax_file)
        resources["course_mathjax"] = self._cache[self.mathjax_file]
        return nb, resources


FEEDBACK_PREPROCESSORS = [
    "nbgrader.preprocessors.GetGrades",
    "nbgrader.preprocessors.ClearHiddenTests",
    "course_lib.instructor.feedback.TestMessagesOnly",
    "course_lib.instructor.feedback.ExerciseFeedback",
    "course_lib.instructor.feedback.OfflineMathJax",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]


def feedback_preprocessors():
    """The classes for ``c.GenerateFeedback.preprocessors`` (nbgrader wants classes)."""
    from traitlets.utils.importstring import import_item

    return [import_item(name) for name in FEEDBACK_PREPROCESSORS]


def template_basedirs() -> list[str]:
    """``c.HTMLExporter.extra_template_basedirs``: the course's templates, then
    nbgrader's (where the ``feedback`` template the course's extends lives)."""
    import nbgrader

    nbgrader_templates = (Path(nbgrader.__file__).resolve().parent / "server_extensions"
                          / "formgrader" / "templates")
    return [str(TEMPLATES), str(nbgrader_templates)]
