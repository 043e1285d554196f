"""Feedback that shows students their answers and the messages, never the hidden tests.

nbgrader's stock feedback is the autograded notebook rendered to HTML: it
contains the hidden tests' code (restored into the test cells by autograde)
and tracebacks that quote it line by line. The course's feedback keeps the
student's answers, the visible tests, each cell's score and the *message* of a
failed test (what was expected, what came back, which known mistake it
matches), and drops everything else:

1. nbgrader's ``ClearHiddenTests`` removes the hidden region from each test
   cell's source;
2. ``TestMessagesOnly`` (below) replaces each error's traceback in a test cell
   by its last line, ``ErrorName: message``, because a traceback quotes the
   code of the frame that raised, which may be hidden.

nbgrader_config.py puts both into ``GenerateFeedback.preprocessors``.
"""

from __future__ import annotations

from nbgrader import utils
from nbgrader.preprocessors import NbGraderPreprocessor


class TestMessagesOnly(NbGraderPreprocessor):
    """In graded test cells, reduce every error output to ``ErrorName: message``."""

    def preprocess_cell(self, cell, resources, cell_index):
        if utils.is_grade(cell) and not utils.is_solution(cell):
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    out["traceback"] = [f"{out.get('ename', 'Error')}: {out.get('evalue', '')}"]
        return cell, resources


FEEDBACK_PREPROCESSORS = [
    "nbgrader.preprocessors.GetGrades",
    "nbgrader.preprocessors.ClearHiddenTests",
    "course_lib.instructor.feedback.TestMessagesOnly",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]


def feedback_preprocessors():
    """The classes for ``c.GenerateFeedback.preprocessors`` (nbgrader wants classes)."""
    from traitlets.utils.importstring import import_item

    return [import_item(name) for name in FEEDBACK_PREPROCESSORS]
