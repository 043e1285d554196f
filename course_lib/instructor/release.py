"""Generate the student versions (release/) from the instructor notebooks (source/).

This is nbgrader's ``generate_assignment`` for every assignment of the course,
run through nbgrader's API with the course's nbgrader_config.py: solutions are
replaced by the code stub, hidden tests removed, outputs cleared, and the
assignment's cells recorded in the gradebook (autograde later restores the
hidden tests from there).

    python -m course_lib.instructor.release                 # all assignments
    python -m course_lib.instructor.release 02_sigmoid      # one
    python -m course_lib.instructor.release --to /tmp/rel   # somewhere else
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from .course import check_assignments, find_course_root, open_api


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
        RuntimeError: nbgrader failed (its log is in the message).
    """
    course_root = Path(course_root) if course_root else find_course_root()
    assignments = check_assignments(course_root, assignments)
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
