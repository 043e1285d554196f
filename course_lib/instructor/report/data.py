"""The numbers behind the report: graded results stored and read back, and their statistics.

``save_results`` / ``load_results`` keep a graded class in a JSON file (so the
report, the exports and ``course finalize`` work without grading again);
``feedback_links`` and ``hand_graded_points`` read what the course folder adds
(the feedback pages, the formgrader's hand scores). The rest computes what the
page shows: per assignment the scores of the submissions graded normally, per
graded cell the share with full marks, and the failure messages grouped.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from ..grade import SubmissionResult
from ..status import NORMAL, Status, full_marks

# ---------------------------------------------------------------------------
# storage
# ---------------------------------------------------------------------------

def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number, got {type(value).__name__} {value!r:.60}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite, got {value}")
    return value


def _text(value, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {type(value).__name__} {value!r:.60}")
    return value


def _result_to_json(r: SubmissionResult) -> dict:
    where = f"{r.student}/{r.assignment}"
    obj = {}
    for f in fields(SubmissionResult):
        value = getattr(r, f.name)
        if f.name in ("score", "max_score", "open_points"):
            value = _number(value, f"{where}: {f.name}")
        elif f.name == "messages":
            value = {str(k): str(v) for k, v in value.items()}
        elif f.name in ("flags", "notes"):
            value = [str(x) for x in value]
        elif f.name == "cell_scores":
            value = {str(k): [_number(s, f"{where}: cell_scores[{k!r}]"),
                              _number(m, f"{where}: cell_scores[{k!r}]")]
                     for k, (s, m) in value.items()}
        obj[f.name] = value
    return obj


def _result_from_json(obj, where: str) -> SubmissionResult:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected an object, got {type(obj).__name__}")
    known = {f.name: f for f in fields(SubmissionResult)}
    unknown = sorted(set(obj) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}")
    kwargs = {}
    for name, f in known.items():
        if name not in obj:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ValueError(f"{where}: missing field {name!r}")
            continue
        value = obj[name]
        if name in ("score", "max_score", "open_points"):
            value = _number(value, f"{where}: {name}")
        elif name in ("student", "assignment", "status", "reason"):
            value = _text(value, f"{where}: {name}")
            if name == "status":  # results stored before a status was renamed
                value = Status.read(value)
        elif name == "messages":
            if not isinstance(value, dict):
                raise ValueError(f"{where}: messages must be an object")
            value = {k: _text(v, f"{where}: messages[{k!r}]") for k, v in value.items()}
        elif name == "sealed":
            if not isinstance(value, bool):
                raise ValueError(f"{where}: sealed must be true or false")
        elif name in ("flags", "notes"):
            if not isinstance(value, list):
                raise ValueError(f"{where}: {name} must be a list")
            value = [_text(v, f"{where}: {name}") for v in value]
        elif name == "cell_scores":
            if not isinstance(value, dict):
                raise ValueError(f"{where}: cell_scores must be an object")
            cells = {}
            for k, pair in value.items():
                if not isinstance(pair, list) or len(pair) != 2:
                    raise ValueError(f"{where}: cell_scores[{k!r}] must be [score, max_score]")
                cells[k] = (_number(pair[0], f"{where}: cell_scores[{k!r}]"),
                            _number(pair[1], f"{where}: cell_scores[{k!r}]"))
            value = cells
        kwargs[name] = value
    return SubmissionResult(**kwargs)


def save_results(results, path) -> Path:
    """Write graded results to a JSON file: a list with one object per result.

    The list keeps the order given (grade_class sorts by student, then
    assignment), each object has its fields in a fixed order, messages and
    cell scores keep their (notebook) order, and scores are JSON numbers, so the
    same results always give the same file and ``load_results`` gives them back
    exactly.

    Args:
        results: SubmissionResult objects.
        path: the JSON file to write (its folder is created if needed).
    Returns:
        the path written.
    Raises:
        ValueError: a score is not a finite number.
    """
    path = Path(path)
    data = [_result_to_json(r) for r in results]
    text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load_results(path) -> list[SubmissionResult]:
    """Read results written by ``save_results``.

    Raises:
        ValueError: naming the file, when it is missing, unreadable, not JSON,
            or not a list of valid results (and saying which one and why).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read results ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: "
                         f"{exc.msg})") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of results, got a "
                         f"{type(data).__name__}")
    results = []
    for i, obj in enumerate(data):
        try:
            results.append(_result_from_json(obj, f"result {i}"))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    return results


def feedback_links(results, report_path, course_root) -> dict[tuple[str, str], str]:
    """(student, assignment) -> the feedback page's path relative to the report, for
    each page nbgrader wrote (``feedback/<student>/<assignment>/<assignment>.html``)."""
    import os

    folder = Path(report_path).resolve().parent
    links = {}
    for r in results:
        page = (Path(course_root) / "feedback" / r.student / r.assignment
                / f"{r.assignment}.html").resolve()
        if page.is_file():
            links[(r.student, r.assignment)] = Path(os.path.relpath(page, folder)).as_posix()
    return links


def hand_graded_points(course_root) -> dict[str, float]:
    """student -> points graded by hand so far (cells with a hand score in the gradebook)."""
    from nbgrader.api import Gradebook
    from nbgrader.coursedir import CourseDirectory

    from ..course import load_config

    cd = CourseDirectory(config=load_config(Path(course_root)))
    done: dict[str, float] = {}
    with Gradebook(cd.db_url, cd.course_id) as gb:
        for assignment in gb.assignments:
            for sub in gb.assignment_submissions(assignment.name):
                pts = sum(float(g.max_score) for nb in sub.notebooks for g in nb.grades
                          if g.manual_score is not None)
                done[sub.student_id] = done.get(sub.student_id, 0.0) + pts
    return done


# ---------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------

def is_normal(r: SubmissionResult) -> bool:
    """Graded normally (ok, or awaiting hand grading): its score counts in the statistics."""
    return r.status in NORMAL


def percent(r: SubmissionResult) -> float | None:
    """The score in % of the maximum (None when the maximum is 0)."""
    return 100.0 * r.score / r.max_score if r.max_score > 0 else None


def unique(values) -> list:
    """The values once each, in the order they first come."""
    return list(dict.fromkeys(values))


_KNOWN = re.compile(r"known mistakes?\s*:\s*(.+)", re.IGNORECASE | re.DOTALL)
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?(?![\w.])")
_NUMBER_RUN = re.compile(r"#(?:[\s,;]+#)+")


def _without_numbers(text: str) -> str:
    text = _NUMBER.sub("#", text)
    text = _NUMBER_RUN.sub("#…", text)
    return " ".join(text.split())


def message_key(message: str) -> tuple[str, bool]:
    """The group a failure message belongs to, and whether it names a known mistake.

    A message saying "This matches a known mistake: X" is grouped by X, shown as
    it is (the catalogue's own words, whose numbers are part of the formula:
    "σ(z)(1 - σ(z))"); any other message by its whole text with every number
    replaced by ``#`` (a run of numbers, as in an array, by ``#…``), so
    "expected 0.25, got 0.5" and "expected 0.3, got 0.1" fall together.
    """
    known = _KNOWN.search(message)
    if known:
        return "Known mistake: " + " ".join(known.group(1).split()).rstrip(" ."), True
    return _without_numbers(message), False


@dataclass
class MessageGroup:
    """Failure messages of one graded cell that say the same thing."""

    assignment: str
    cell: str
    key: str  # the message without its numbers, or "Known mistake: ..."
    known: bool  # grouped by a known mistake
    count: int = 0
    students: list[str] = field(default_factory=list)
    example: str = ""  # the first message of the group, as the student saw it


UNANSWERED = "NotImplementedError"


def count_unanswered(results) -> int:
    """Failed test cells whose exercise was simply not answered (the stub still raises)."""
    return sum(1 for r in results for m in r.messages.values() if m.startswith(UNANSWERED))


def group_messages(results) -> list[MessageGroup]:
    """Group the failure messages of every result by (assignment, cell, message_key).

    Unanswered exercises (the stub's NotImplementedError) are not diagnostics of
    a mistake: they are left out here and counted by count_unanswered.

    Returns:
        the groups, most frequent first; on a tie, known mistakes first, then by
        assignment, cell and key.
    """
    groups: dict[tuple[str, str, str], MessageGroup] = {}
    for r in results:
        for cell, message in r.messages.items():
            if not message or message.startswith(UNANSWERED):
                continue
            key, known = message_key(message)
            g = groups.setdefault((r.assignment, cell, key),
                                  MessageGroup(r.assignment, cell, key, known, example=message))
            g.count += 1
            g.students.append(r.student)
    return sorted(groups.values(), key=lambda g: (-g.count, not g.known, g.assignment,
                                                      g.cell, g.key))


@dataclass
class AssignmentStats:
    """One assignment's row of the summary (and box of the distribution plot)."""

    assignment: str
    max_score: float
    graded: int  # graded normally
    not_graded: int
    percents: list[float]  # of the normally graded submissions with a max score


def assignment_stats(results, assignments) -> list[AssignmentStats]:
    stats = []
    for a in assignments:
        rs = [r for r in results if r.assignment == a]
        normal = [r for r in rs if is_normal(r)]
        percents = [p for p in map(percent, normal) if p is not None]
        stats.append(AssignmentStats(a, max((r.max_score for r in rs), default=0.0),
                                     len(normal), len(rs) - len(normal), percents))
    return stats


def pass_rates(results, assignment) -> list[tuple[str, int, int]]:
    """[(grade_id, submissions with full marks, submissions with a score for it)].

    Counts the submissions graded normally and those with partial results (a
    timeout still scores the cells that ran); cells whose max is 0 are skipped.
    Cells are in the order the results list them (the notebook's).
    """
    rs = [r for r in results if r.assignment == assignment and (is_normal(r) or r.cell_scores)]
    cells = unique(c for r in rs for c, (_, m) in r.cell_scores.items() if m > 0)
    rates = []
    for cell in cells:
        scored = [r.cell_scores[cell] for r in rs if cell in r.cell_scores]
        scored = [(s, m) for s, m in scored if m > 0]
        rates.append((cell, sum(full_marks(s, m) for s, m in scored), len(scored)))
    return rates

