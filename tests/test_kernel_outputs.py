"""The grading kernel leaves out what ipykernel adds to every cell for what grading
never uses (judge.kernel_app: no flush round trip when nothing was written, no
sleep before the reply, no thread of its own for the shell channel): every
output a cell makes is still in that cell, in order.

A lost or misplaced output would be a student's print in the wrong cell of the
feedback, or a traceback missing from it.
"""

from __future__ import annotations

import nbformat
import pytest
from toycourse import RIGHT, graded_path, hand_in, make_course, submission

# (the cell, what the graded notebook must show for it: (output type, stream or
# type, text))
CELLS = [
    ('print("no newline", end="")', [("stream", "stdout", "no newline")]),
    ('import sys\nsys.stdout.write("out")\nsys.stderr.write("err")',
     [("stream", "stdout", "out"), ("stream", "stderr", "err")]),
    ('from IPython.display import display\nprint("before")\ndisplay("shown")\nprint("after")',
     [("stream", "stdout", "before\n"), ("display_data", "text/plain", "'shown'"),
      ("stream", "stdout", "after\n")]),
    ("for i in range(500):\n    print(i)",
     [("stream", "stdout", "".join(f"{i}\n" for i in range(500)))]),
    ('import threading\nt = threading.Thread(target=print, args=("from a thread",))\n'
     "t.start()\nt.join()", [("stream", "stdout", "from a thread\n")]),
    ('print("before the error")\n1 / 0',
     [("stream", "stdout", "before the error\n"), ("error", "ZeroDivisionError", "")]),
    ('import sys\nprint("flushed", flush=True)\nsys.stdout.flush()\nprint("last")',
     [("stream", "stdout", "flushed\nlast\n")]),
    # what the grading kernel runs as (so that a newer ipykernel that ignores one of the
    # settings shows here, not as slower grading)
    ("import sys\nk = get_ipython().kernel\n"
     "print(k._supports_kernel_subshells, k._execute_sleep, type(sys.stdout).__module__)",
     [("stream", "stdout", "False 0.0 course_lib.judge.kernel_app\n")]),
] + [(f"print({i})", [("stream", "stdout", f"{i}\n")]) for i in range(40)]


def _shown(cell) -> list[tuple[str, str, str]]:
    """A cell's outputs as (type, stream/mime/error name, text); consecutive pieces of
    one stream joined, as a notebook shows them."""
    shown = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            if shown and shown[-1][:2] == ("stream", out.name):
                shown[-1] = ("stream", out.name, shown[-1][2] + out.text)
                continue
            shown.append(("stream", out.name, out.text))
        elif out.output_type == "display_data":
            shown.append(("display_data", "text/plain", out.data["text/plain"]))
        elif out.output_type == "error":
            shown.append(("error", out.ename, ""))
    return shown


@pytest.mark.kernel
def test_every_output_of_a_graded_cell_lands_in_that_cell_in_order(tmp_path):
    from course_lib.instructor.grade import grade_class

    course = make_course(tmp_path / "course")
    nb = submission(RIGHT)
    first = 2  # after the markdown title and the answer cell
    for offset, (source, _) in enumerate(CELLS):
        nb.cells.insert(first + offset, nbformat.v4.new_code_cell(source))
    hand_in(course, "amy", nb)
    [result] = grade_class(course, jobs=1)
    assert result.score == 2.0  # the notebook's own test still passed after them
    graded = nbformat.read(str(graded_path(course, "amy")), as_version=4)
    for offset, (source, expected) in enumerate(CELLS):
        cell = graded.cells[first + offset]
        assert cell.source == source
        assert _shown(cell) == expected, source
