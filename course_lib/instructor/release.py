"""Generate the student versions (release/) from the instructor notebooks (source/).

This is nbgrader's ``generate_assignment`` for every assignment of the course,
run through nbgrader's API with the course's nbgrader_config.py: solutions are
replaced by the code stub, hidden tests removed, outputs cleared, and the
assignment's cells recorded in the gradebook (autograde later restores the
hidden tests from there).

Before that, each source notebook is verified against its lesson's manifest
(course_lib.manifest; verify_notebook): an answer cell per exercise, a test cell
per part whose hidden block calls exactly its check and part with the manifest's
points, a written cell per written question with its points, and no graded cell
the manifest does not know. Any difference stops the release with a message that
names the cell and, for a hidden block, the text to put there. The release
verifies rather than writes the hidden blocks: source/ stays the authors' text
(and nothing rewrites a notebook someone is editing), and what the judge expects
is the same manifest either way.

    python -m course_lib.instructor.release                 # all assignments
    python -m course_lib.instructor.release 02_sigmoid      # one
    python -m course_lib.instructor.release --to /tmp/rel   # somewhere else
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import textwrap
import warnings
from pathlib import Path

import nbformat

from .course import check_assignments, find_course_root, open_api

HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS[ \t]*\n(.*?)^[ \t]*### END HIDDEN TESTS",
                    re.S | re.M)


class ReleaseError(ValueError):
    """A source notebook that does not match its lesson's manifest."""


def hidden_block(function: str, part: str) -> str:
    """The hidden block of the test cell ``<function>_<part>``, as the manifest implies it."""
    return ("### BEGIN HIDDEN TESTS\nfrom course_lib import grading\n"
            f'grading.check_{function}({function}, part="{part}")\n### END HIDDEN TESTS')


def hidden_calls(source: str) -> list[tuple[str, str, str]] | None:
    """(check, first argument, part) of each ``grading.check_*`` call in the cell's hidden
    blocks, in order; None when the cell has no hidden block or it does not parse.

    A part given positionally counts as given (the checks take ``part`` second).
    """
    blocks = HIDDEN.findall(source)
    if not blocks:
        return None
    calls = []
    for block in blocks:
        try:
            tree = ast.parse(textwrap.dedent(block))
        except SyntaxError:
            return None
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "grading"
                    and node.func.attr.startswith("check_")):
                continue
            first = node.args[0].id if node.args and isinstance(node.args[0], ast.Name) else "?"
            part = node.args[1] if len(node.args) > 1 else next(
                (k.value for k in node.keywords if k.arg == "part"), None)
            part = part.value if isinstance(part, ast.Constant) else \
                ("all" if part is None else "?")
            calls.append((node.func.attr, first, part))
    return calls


def verify_notebook(nb, assignment: str) -> list[str]:
    """What differs between a source notebook and its lesson's manifest; [] when nothing.

    Each problem names the assignment and the cell (its grade id).
    """
    from .. import manifest

    try:
        lesson = manifest.lesson(assignment)
    except KeyError:
        return [f"{assignment}: no lesson of course_lib/manifest/ has this assignment; add "
                "its <slug>.toml (course_lib/manifest/__init__.py says how)"]
    where = f"course_lib/manifest/{lesson.slug}.toml"
    cells = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade_id") and (meta.get("grade") or meta.get("solution")):
            cells[meta["grade_id"]] = cell
    problems, known = [], set()

    def need(grade_id: str, kind: str, points: int | None):
        known.add(grade_id)
        cell = cells.get(grade_id)
        if cell is None:
            problems.append(f"{assignment}: no cell {grade_id}, the {kind} {where} lists")
            return None
        meta = cell.metadata["nbgrader"]
        if points is not None and meta.get("points") != points:
            problems.append(f"{assignment}, cell {grade_id}: {meta.get('points')} point(s) in "
                            f"its metadata, {points} in {where}")
        return cell

    for ex in lesson.exercises:
        cell = need(ex.answer_id, f"answer cell of {ex.function}", None)
        if cell is not None and not (cell.metadata["nbgrader"].get("solution")
                                     and cell.cell_type == "code"):
            problems.append(f"{assignment}, cell {ex.answer_id}: expected a code cell marked "
                            f"as a solution (the answer to {ex.function})")
        for part in ex.parts:
            cell = need(part.grade_id, f"test cell of {ex.function}'s part {part.name!r}",
                        part.points)
            if cell is None:
                continue
            meta = cell.metadata["nbgrader"]
            if not (meta.get("grade") and not meta.get("solution") and cell.cell_type == "code"):
                problems.append(f"{assignment}, cell {part.grade_id}: expected an autograded "
                                "test cell (a code cell, graded, not a solution)")
                continue
            calls = hidden_calls(cell.source)
            want = [(ex.check, ex.function, part.name)]
            if calls != want:
                found = ("no hidden block that parses" if calls is None else
                         "calls " + (", ".join(f"grading.{c}({a}, part={p!r})"
                                               for c, a, p in calls) or "no check"))
                problems.append(f"{assignment}, cell {part.grade_id}: its hidden block {found}; "
                                f"{where} expects exactly:\n{hidden_block(ex.function, part.name)}")
    for w in lesson.written:
        cell = need(w.grade_id, "written question", w.points)
        if cell is not None and cell.cell_type != "markdown":
            problems.append(f"{assignment}, cell {w.grade_id}: a written question is a "
                            "markdown cell")
    for grade_id in cells:
        if grade_id not in known:
            problems.append(f"{assignment}, cell {grade_id}: a graded cell that {where} does "
                            "not list; add its exercise (or written question) there")
    return problems


def verify_assignments(course_root: Path, assignments) -> None:
    """verify_notebook for each source notebook; ReleaseError listing every problem."""
    problems = []
    for assignment in assignments:
        path = Path(course_root) / "source" / assignment / f"{assignment}.ipynb"
        problems += verify_notebook(nbformat.read(str(path), as_version=4), assignment)
    if problems:
        raise ReleaseError("the source notebooks differ from the manifest "
                           "(course_lib/manifest/):\n- " + "\n- ".join(problems))


def release_assignments(course_root: Path | None = None, assignments=None,
                        release_dir: Path | None = None, db_url: str | None = None) -> list[Path]:
    """Run nbgrader generate_assignment for each assignment.

    Args:
        course_root: the course folder (default: find_course_root()).
        assignments: ids to release (default: every assignment in source/).
        release_dir: where to write (default: the course's release/).
        db_url: the gradebook to record the assignments in (default: the course's).
    Returns:
        the paths of the generated notebooks.
    Raises:
        ValueError: an unknown assignment id.
        ReleaseError: a source notebook differs from its lesson's manifest.
        RuntimeError: nbgrader failed (its log is in the message).
    """
    course_root = Path(course_root) if course_root else find_course_root()
    assignments = check_assignments(course_root, assignments)
    verify_assignments(course_root, assignments)
    overrides = {}
    if release_dir is not None:
        overrides["CourseDirectory__release_directory"] = str(Path(release_dir).resolve())
    if db_url is not None:
        overrides["CourseDirectory__db_url"] = db_url
    api, coursedir = open_api(course_root, **overrides)
    out = []
    for assignment in assignments:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=Warning)  # SQLAlchemy noise
            result = api.generate_assignment(assignment, force=True, create=True)
        if not result["success"]:
            raise RuntimeError(f"nbgrader generate_assignment {assignment} failed:\n"
                               f"{result.get('error') or result.get('log')}")
        out.append(Path(coursedir.format_path(coursedir.release_directory, ".", assignment))
                   / f"{assignment}.ipynb")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Generate release/ from source/ with nbgrader.")
    parser.add_argument("assignments", nargs="*", help="assignment ids (default: all)")
    parser.add_argument("--to", type=Path, help="release folder (default: the course's release/)")
    args = parser.parse_args(argv)
    try:
        paths = release_assignments(assignments=args.assignments, release_dir=args.to)
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        print(f"release: {exc}", file=sys.stderr)
        return 2
    for p in paths:
        print(f"released {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
