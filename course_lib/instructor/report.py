"""The instructor's report of a graded class: one self-contained HTML file.

``write_report(results, path)`` turns the ``SubmissionResult`` list of
``grade.grade_class`` into a single HTML page that opens anywhere, offline:
the plots are PNGs embedded as ``data:`` URIs (drawn with matplotlib's Agg
backend, imported only when a report is written), the CSS is inline, and there
is no JavaScript and nothing fetched from the network (a Content-Security-Policy
in the page enforces it). Its sections, each with a fixed ``id``:

    summary       counts, statuses, and per assignment the mean, median, min and
                  max score (in % of the maximum) over the submissions graded normally
    distribution  a box plot with every submission's score, per assignment
    pass-rates    per assignment, the share of submissions with full marks on each
                  graded cell (a horizontal bar chart)
    messages      the most frequent failure messages, grouped after removing the
                  numbers in them, or by the known mistake they name
    problems      every submission that could not be graded normally, and why
    students      one row per student, one column per assignment

Every string that comes from a submission (student ids, messages, reasons) is
HTML-escaped. ``save_results`` / ``load_results`` keep a graded class in a JSON
file, so the report can be rebuilt without grading again::

    python -m course_lib.instructor.report results.json -o report.html
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import math
import re
import statistics
import struct
import sys
from collections import Counter
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime
from pathlib import Path

from .grade import NORMAL, RENAMED_STATUSES, SubmissionResult

__all__ = ["DEFAULT_TITLE", "SECTION_IDS", "MessageGroup", "message_key", "group_messages",
           "save_results", "load_results", "render_report", "write_report", "main"]

DEFAULT_TITLE = "Backpropagation course: grading report"
SECTION_IDS = ("summary", "distribution", "pass-rates", "messages", "problems", "students")
TOP_MESSAGES = 15  # rows of the message table
TOP_CHART = 10  # bars of the message chart

# status -> CSS class; any status not listed (a future one) gets "st-other"
_STATUS_CLASS = {"ok": "st-ok", "awaiting_hand_grading": "st-manual", "missing": "st-missing",
                 "timeout": "st-timeout", "unreadable": "st-failed", "kernel_died": "st-failed",
                 "error": "st-failed", "tampered": "st-failed"}
_STATUS_ORDER = ("ok", "awaiting_hand_grading", "missing", "unreadable", "timeout",
                 "kernel_died", "tampered", "error")


# ---------------------------------------------------------------------------
# persistence
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
                value = RENAMED_STATUSES.get(value, value)
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


# ---------------------------------------------------------------------------
# the numbers behind the report
# ---------------------------------------------------------------------------

def _is_normal(r: SubmissionResult) -> bool:
    return r.status in NORMAL


def _percent(r: SubmissionResult) -> float | None:
    return 100.0 * r.score / r.max_score if r.max_score > 0 else None


def _unique(values) -> list:
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
class _AssignmentStats:
    assignment: str
    max_score: float
    graded: int  # graded normally
    not_graded: int
    percents: list[float]  # of the normally graded submissions with a max score


def _assignment_stats(results, assignments) -> list[_AssignmentStats]:
    stats = []
    for a in assignments:
        rs = [r for r in results if r.assignment == a]
        normal = [r for r in rs if _is_normal(r)]
        percents = [p for p in map(_percent, normal) if p is not None]
        stats.append(_AssignmentStats(a, max((r.max_score for r in rs), default=0.0),
                                      len(normal), len(rs) - len(normal), percents))
    return stats


def _full_marks(score: float, max_score: float) -> bool:
    return score >= max_score or math.isclose(score, max_score, rel_tol=1e-9, abs_tol=1e-9)


def _pass_rates(results, assignment) -> list[tuple[str, int, int]]:
    """[(grade_id, submissions with full marks, submissions with a score for it)].

    Counts the submissions graded normally and those with partial results (a
    timeout still scores the cells that ran); cells whose max is 0 are skipped.
    Cells are in the order the results list them (the notebook's).
    """
    rs = [r for r in results if r.assignment == assignment and (_is_normal(r) or r.cell_scores)]
    cells = _unique(c for r in rs for c, (_, m) in r.cell_scores.items() if m > 0)
    rates = []
    for cell in cells:
        scored = [r.cell_scores[cell] for r in rs if cell in r.cell_scores]
        scored = [(s, m) for s, m in scored if m > 0]
        rates.append((cell, sum(_full_marks(s, m) for s, m in scored), len(scored)))
    return rates


# ---------------------------------------------------------------------------
# figures (matplotlib is imported here, only when a report is drawn)
# ---------------------------------------------------------------------------

_BLUE, _GREEN, _AMBER, _RED, _GREY = "#2f6fad", "#3a9d5d", "#e0a526", "#d1495b", "#9aa5b1"
_DPI = 144


def _rc():
    import matplotlib

    return matplotlib.rc_context({
        "text.parse_math": False,  # a "$" in a message is a dollar, not TeX
        "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9,
        "axes.spines.top": False, "axes.spines.right": False,
        "axes.edgecolor": "#7b8794", "axes.labelcolor": "#323f4b",
        "xtick.color": "#323f4b", "ytick.color": "#323f4b",
        "axes.grid": True, "axes.axisbelow": True, "grid.color": "#e4e7eb", "grid.linewidth": 0.8,
        "figure.facecolor": "white",
    })


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> tuple[str, int, int]:
    """The figure as base64 PNG, with its size in CSS pixels."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight", pad_inches=0.08,
                metadata={"Software": None})
    data = buf.getvalue()
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    return (base64.b64encode(data).decode("ascii"), round(width * 96 / _DPI),
            round(height * 96 / _DPI))


def _short(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def _distribution_figure(stats: list[_AssignmentStats]):
    import numpy as np

    with _rc():
        fig = _new_figure(7.6, 0.9 + 0.62 * len(stats))
        ax = fig.add_subplot()
        rng = np.random.default_rng(0)  # the same jitter every time
        ys = np.arange(len(stats))[::-1]
        for y, s in zip(ys, stats, strict=True):
            if not s.percents:
                why = "no submission graded normally" if not s.graded else "maximum score is 0"
                ax.text(50, y, why, ha="center", va="center", color=_GREY, fontsize=8.5)
                continue
            ax.boxplot([s.percents], positions=[y], orientation="horizontal", widths=0.5,
                       showfliers=False, patch_artist=True, manage_ticks=False,
                       boxprops={"facecolor": "#dbe7f3", "edgecolor": _BLUE},
                       medianprops={"color": _BLUE, "linewidth": 2},
                       whiskerprops={"color": _BLUE}, capprops={"color": _BLUE})
            jitter = rng.uniform(-0.17, 0.17, len(s.percents))
            ax.scatter(s.percents, y + jitter, s=16, color="#1f3a5f", alpha=0.65, zorder=3,
                       linewidths=0)
            ax.scatter([statistics.fmean(s.percents)], [y], marker="D", s=28, color=_AMBER,
                       edgecolors="#1f3a5f", linewidths=0.6, zorder=4)
        ax.set_yticks(ys, [f"{s.assignment}\n(n = {len(s.percents)})" for s in stats])
        ax.set_xlim(-3, 103)
        ax.set_ylim(-0.6, len(stats) - 0.4)
        ax.set_xlabel("score (% of the maximum)")
        ax.grid(axis="y", visible=False)
        ax.scatter([], [], marker="D", s=28, color=_AMBER, edgecolors="#1f3a5f", label="mean")
        ax.scatter([], [], s=16, color="#1f3a5f", alpha=0.65, label="one submission")
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncols=2, frameon=False,
                  fontsize=8)
        return _png(fig)


def _rate_color(rate: float) -> str:
    return _GREEN if rate >= 0.8 else _AMBER if rate >= 0.5 else _RED


def _pass_rate_figure(assignment: str, rates):
    with _rc():
        fig = _new_figure(7.6, 0.7 + 0.3 * len(rates))
        ax = fig.add_subplot()
        ys = list(range(len(rates)))[::-1]
        values = [100.0 * k / n if n else 0.0 for _, k, n in rates]
        ax.barh(ys, values, height=0.62,
                color=[_rate_color(v / 100) for v in values])
        for y, v, (_, k, n) in zip(ys, values, rates, strict=True):
            ax.text(min(v, 100) + 1.2, y, f"{k}/{n}", va="center", fontsize=8,
                    color="#323f4b")
        ax.set_yticks(ys, [_short(c, 40) for c, _, _ in rates])
        ax.set_xlim(0, 110)
        ax.set_xticks(range(0, 101, 20))
        ax.set_ylim(-0.6, len(rates) - 0.4)
        ax.set_xlabel("submissions with full marks (%)")
        ax.grid(axis="y", visible=False)
        ax.set_title(assignment, loc="left", fontweight="bold")
        return _png(fig)


def _messages_figure(groups: list[MessageGroup]):
    from matplotlib.patches import Patch

    with _rc():
        fig = _new_figure(6.2, 0.8 + 0.34 * len(groups))
        ax = fig.add_subplot()
        ys = list(range(len(groups)))[::-1]
        ax.barh(ys, [g.count for g in groups], height=0.62,
                color=[_RED if g.known else _GREY for g in groups])
        for y, g in zip(ys, groups, strict=True):
            ax.text(g.count, y, f" {g.count}", va="center", fontsize=8, color="#323f4b")
        labels = [f"{i}. {_short(g.cell, 20)}: "
                  f"{_short(g.key.removeprefix('Known mistake: '), 48)}"
                  for i, g in enumerate(groups, 1)]
        ax.set_yticks(ys, labels)
        ax.set_ylim(-0.6, len(groups) - 0.4)
        ax.set_xlim(0, max(g.count for g in groups) * 1.1 + 0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel("submissions")
        ax.grid(axis="y", visible=False)
        ax.legend(handles=[Patch(color=_RED, label="a known mistake"),
                           Patch(color=_GREY, label="another message (numbers removed)")],
                  loc="lower left", bbox_to_anchor=(0, 1.0), ncols=2, frameon=False,
                  fontsize=8)
        return _png(fig)


# ---------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------

def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _fmt_points(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".") if math.isfinite(x) else str(x)


def _fmt_pct(x: float) -> str:
    return f"{x:.1f}%"


def _status_badge(status: str) -> str:
    cls = _STATUS_CLASS.get(status, "st-other")
    return f'<span class="badge {cls}">{_e(status)}</span>'


def open_points_text(r: SubmissionResult) -> str:
    """"awaiting hand grading: 5 points open": what a submission still waits for."""
    n = r.open_points
    return f"awaiting hand grading: {_fmt_points(n)} point{'s' * (n != 1)} open"


def _open_points_summary(results) -> str:
    """One line for the summary: how much hand grading is left, or '' when none."""
    waiting = [r for r in results if r.status == "awaiting_hand_grading"]
    if not waiting:
        return ""
    total = sum(r.open_points for r in waiting)
    return (f'<p class="open-points">{len(waiting)} submission{"s" * (len(waiting) != 1)} '
            f"awaiting hand grading: {_fmt_points(total)} point{'s' * (total != 1)} open in "
            "total (scores count them as 0 until they are graded in the formgrader; "
            "<code>course finalize</code> then reads them back).</p>")


def _img(png, alt: str, caption: str) -> str:
    data, width, height = png
    return (f'<figure><img src="data:image/png;base64,{data}" width="{width}" '
            f'height="{height}" alt="{_e(alt)}"><figcaption>{caption}</figcaption></figure>')


def _section(sid: str, heading: str, body: str) -> str:
    return (f'<section id="{sid}" aria-labelledby="{sid}-h">\n'
            f'<h2 id="{sid}-h">{heading}</h2>\n{body}\n</section>')


def _none(text: str) -> str:
    return f'<p class="none">{text}</p>'


def _summary_section(results, students, assignments, stats) -> str:
    n_normal = sum(_is_normal(r) for r in results)
    cards = [("Students", len(students)), ("Assignments", len(assignments)),
             ("Graded normally", n_normal), ("Not graded normally", len(results) - n_normal)]
    parts = ['<dl class="cards">'] + [
        f'<div class="card"><dt>{label}</dt><dd>{value}</dd></div>' for label, value in cards]
    parts.append("</dl>")
    counts = Counter(r.status for r in results)
    order = [s for s in _STATUS_ORDER if s in counts] + sorted(set(counts) - set(_STATUS_ORDER))
    if order:
        parts.append('<p class="statuses">Submissions by status: ' + " ".join(
            f'{_status_badge(s)}&nbsp;{counts[s]}' for s in order) + "</p>")
        parts.append(_open_points_summary(results))
    if not stats:
        parts.append(_none("No results: nothing was graded."))
        return _section("summary", "Summary", "\n".join(parts))
    rows = []
    for s in stats:
        p = s.percents
        cells = ([_fmt_pct(statistics.fmean(p)), _fmt_pct(statistics.median(p)),
                  _fmt_pct(min(p)), _fmt_pct(max(p))] if p else ["–"] * 4)
        rows.append(f"<tr><th scope=\"row\">{_e(s.assignment)}</th>"
                    f'<td class="num">{_fmt_points(s.max_score)}</td>'
                    + "".join(f'<td class="num">{c}</td>' for c in cells)
                    + f'<td class="num">{s.graded}</td><td class="num">{s.not_graded}</td></tr>')
    parts.append(
        '<div class="scroll"><table class="stats"><caption>Scores per assignment, in % of the '
        "maximum, over the submissions graded normally (ok or awaiting hand grading)</caption>"
        "<thead><tr><th scope=\"col\">Assignment</th><th class=\"num\" scope=\"col\">Max points"
        '</th><th class="num" scope="col">Mean</th><th class="num" scope="col">Median</th>'
        '<th class="num" scope="col">Min</th><th class="num" scope="col">Max</th>'
        '<th class="num" scope="col">Graded</th><th class="num" scope="col">Not graded '
        "normally</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>")
    return _section("summary", "Summary", "\n".join(parts))


def _distribution_section(stats) -> str:
    if not any(s.percents for s in stats):
        return _section("distribution", "Score distribution",
                        _none("No submission was graded normally: nothing to plot."))
    alt = "Score distribution per assignment, in % of the maximum score. " + "; ".join(
        f"{s.assignment}: n = {len(s.percents)}"
        + (f", median {statistics.median(s.percents):.0f}%, range "
           f"{min(s.percents):.0f}–{max(s.percents):.0f}%" if s.percents else "")
        for s in stats) + "."
    caption = ("Score of each submission graded normally, in % of the assignment's maximum: "
               "the box spans the middle half of the class, the line is the median, the "
               "diamond the mean and each dot one submission. Submissions not graded normally "
               "are left out (see <a href=\"#problems\">Not graded normally</a>).")
    return _section("distribution", "Score distribution",
                    _img(_distribution_figure(stats), alt, caption))


def _pass_rates_section(results, assignments) -> str:
    blocks = []
    for a in assignments:
        rates = _pass_rates(results, a)
        if not rates:
            continue
        alt = (f"Share of submissions with full marks on each graded cell of {a}: "
               + "; ".join(f"{c} {k} of {n}" for c, k, n in rates) + ".")
        caption = (f"<strong>{_e(a)}</strong>: share of the submissions (graded normally, or "
                   "with partial results) that got full marks on each graded cell, by grade_id. "
                   "Green: 80% or more, amber: 50–80%, red: below 50%. A cell graded by hand "
                   "counts only once it has been graded.")
        blocks.append(f'<div class="assignment">{_img(_pass_rate_figure(a, rates), alt, caption)}'
                      "</div>")
    body = "\n".join(blocks) or _none("No graded cell has a score yet.")
    return _section("pass-rates", "Pass rate per exercise", body)


def _messages_section(results) -> str:
    groups = group_messages(results)
    unanswered = count_unanswered(results)
    note = (f"<p>{unanswered} failed test cell{'s' * (unanswered != 1)} belonged to exercises "
            "that were not answered (the function still raises NotImplementedError); they are "
            "not listed.</p>" if unanswered else "")
    if not groups:
        return _section("messages", "Most frequent diagnostics",
                        note + _none("none: no test cell failed with a message."))
    total = sum(g.count for g in groups)
    top = groups[:TOP_MESSAGES]
    rows = []
    for i, g in enumerate(top, 1):
        kind = ('<span class="badge st-failed">known mistake</span> ' if g.known else "")
        label = g.key.removeprefix("Known mistake: ") if g.known else g.key
        who = ", ".join(_e(s) for s in _unique(g.students))
        rows.append(
            f'<tr><td class="num">{i}</td><td class="num">{g.count}</td>'
            f"<td>{_e(g.assignment)}</td><td><code>{_e(g.cell)}</code></td>"
            f'<td>{kind}<span class="msg">{_e(label)}</span>'
            f"<details><summary>example and students</summary><pre>{_e(g.example)}</pre>"
            f'<p class="who">{who}</p></details></td></tr>')
    table = (
        f'<p>{total} failure message{"s" * (total != 1)} in {len(groups)} group'
        f'{"s" * (len(groups) != 1)}; the {len(top)} largest are listed. A message that names '
        "a known mistake is grouped by that mistake; any other by its text with the numbers "
        "replaced by <code>#</code>.</p>"
        '<div class="scroll"><table class="messages"><thead><tr><th class="num" scope="col">Rank'
        '</th><th class="num" scope="col">Count</th><th scope="col">Assignment</th>'
        '<th scope="col">Cell</th><th scope="col">Diagnostic</th></tr></thead><tbody>'
        + "".join(rows) + "</tbody></table></div>" + note)
    chart = top[:TOP_CHART]
    alt = "Most frequent diagnostics: " + "; ".join(
        f"{i}. {g.assignment} {g.cell}: {_short(g.key, 80)} ({g.count})"
        for i, g in enumerate(chart, 1)) + "."
    caption = (f"The {len(chart)} most frequent diagnostics (numbered as in the table above), "
               "by number of submissions. Red: the message names a known mistake.")
    return _section("messages", "Most frequent diagnostics",
                    table + "\n" + _img(_messages_figure(chart), alt, caption))


def _problems_section(results) -> str:
    bad = sorted((r for r in results if not _is_normal(r)),
                 key=lambda r: (r.assignment, r.student))
    noted = sorted((r for r in results if _is_normal(r) and r.notes),
                   key=lambda r: (r.assignment, r.student))
    notes = "" if not noted else (
        f"<p>{len(noted)} submission{'s' * (len(noted) != 1)} graded normally hold code worth a "
        "look (it cost nothing: every grade is the judge's verdict on the values returned).</p>"
        '<div class="scroll"><table class="problems notes"><thead><tr><th scope="col">Student'
        '</th><th scope="col">Assignment</th><th scope="col">Note</th></tr></thead><tbody>'
        + "".join(f"<tr><td>{_e(r.student)}</td><td>{_e(r.assignment)}</td>"
                  f'<td class="reason">{_e("; ".join(r.notes))}</td></tr>' for r in noted)
        + "</tbody></table></div>")
    if not bad:
        return _section("problems", "Not graded normally",
                        _none("none: every submission was graded normally.") + notes)
    rows = "".join(
        f'<tr class="{_STATUS_CLASS.get(r.status, "st-other")}"><td>{_e(r.student)}</td>'
        f"<td>{_e(r.assignment)}</td><td>{_status_badge(r.status)}</td>"
        f'<td class="reason">{_e(r.reason) if r.reason else "–"}</td></tr>' for r in bad)
    body = (f"<p>{len(bad)} submission{'s' * (len(bad) != 1)} could not be graded normally. "
            "Their score is what grading reached (0 when nothing ran); none of them is a silent "
            "0.</p>"
            '<div class="scroll"><table class="problems"><thead><tr><th scope="col">Student</th>'
            '<th scope="col">Assignment</th><th scope="col">Status</th><th scope="col">Reason'
            f"</th></tr></thead><tbody>{rows}</tbody></table></div>")
    return _section("problems", "Not graded normally", body + notes)


def _compact_badge(r: SubmissionResult) -> str:
    """The status in a student-table cell, short enough for five assignments on a laptop
    screen: "5 open" for points awaiting hand grading (the full words are the cell's title)."""
    if r.status == "awaiting_hand_grading" and r.open_points > 0:
        return f'<span class="badge st-manual">{_fmt_points(r.open_points)} open</span>'
    return _status_badge(r.status)


def _breakable(assignment: str) -> str:
    """An assignment id that may wrap after its underscores (narrow table headers)."""
    return "_<wbr>".join(_e(part) for part in assignment.split("_"))


def _hand_grading_cell(student: str, rs: list[SubmissionResult], hand_graded) -> str:
    """Points graded by hand so far (from the gradebook, when known) and points still open."""
    open_pts = sum(r.open_points for r in rs)
    done = (hand_graded or {}).get(student)
    parts = []
    if done is not None:
        parts.append(f"{_fmt_points(done)} graded")
    parts.append(f"{_fmt_points(open_pts)} open" if open_pts > 0 else "none open")
    cls = "hand open" if open_pts > 0 else "hand"
    return f'<td class="num {cls}">{" · ".join(parts)}</td>'


def _students_section(results, students, assignments, links=None, hand_graded=None) -> str:
    """One row per student: points per assignment (linked to the student's feedback page
    when it exists), hand-grading progress, the total. Fits a 1366 px laptop screen for
    the course's five assignments: statuses are short badges, headers wrap at ``_``."""
    if not results:
        return _section("students", "Per student", _none("none: no results."))
    links = links or {}
    by_pair = {(r.student, r.assignment): r for r in results}
    head = "".join(f'<th scope="col">{_breakable(a)}</th>' for a in assignments)
    rows = []
    for s in students:
        cells = []
        score = max_score = 0.0
        for a in assignments:
            r = by_pair.get((s, a))
            if r is None:
                cells.append('<td class="st-none">–</td>')
                continue
            score, max_score = score + r.score, max_score + r.max_score
            cls = _STATUS_CLASS.get(r.status, "st-other")
            why = open_points_text(r) if r.status == "awaiting_hand_grading" else r.status
            title = f"{why}: {r.reason}" if r.reason else why
            badge = "" if r.status == "ok" else f"<br>{_compact_badge(r)}"
            pts = f"{_fmt_points(r.score)}/{_fmt_points(r.max_score)}"
            link = links.get((s, a))
            if link:
                pts = (f'<a class="fb" href="{_e(link)}" title="feedback page of {_e(s)} on '
                       f'{_e(a)}">{pts}</a>')
            cells.append(f'<td class="{cls}" title="{_e(title)}">'
                         f'<span class="pts">{pts}</span>{badge}</td>')
        total = (f"{_fmt_points(score)}/{_fmt_points(max_score)}"
                 + (f' <span class="pct">({100 * score / max_score:.0f}%)</span>'
                    if max_score > 0 else ""))
        mine = [r for r in results if r.student == s]
        rows.append(f'<tr><th scope="row">{_e(s)}</th>{"".join(cells)}'
                    f'<td class="num total">{total}</td>'
                    f"{_hand_grading_cell(s, mine, hand_graded)}</tr>")
    legend = " ".join(_status_badge(s) for s in _STATUS_ORDER) + \
        ' <span class="badge st-other">other</span>'
    feedback_note = (" A score links to that student's feedback page." if links else "")
    body = (f'<p class="legend">Cells show points / maximum, and the status when it is not '
            f"ok ({legend}; <em>N open</em>: points awaiting hand grading).{feedback_note} "
            "<em>Hand grading</em>: points graded by hand so far (when the gradebook was "
            "read) and points still open.</p>"
            '<div class="scroll"><table class="students"><thead><tr><th scope="col">Student</th>'
            f'{head}<th class="num" scope="col">Total</th>'
            f'<th class="num" scope="col">Hand grading</th></tr></thead><tbody>{"".join(rows)}'
            "</tbody></table></div>")
    return _section("students", "Per student", body)


_CSS = """
:root{--fg:#1f2933;--muted:#616e7c;--line:#e4e7eb;--head:#1f3a5f;--accent:#2f6fad}
*{box-sizing:border-box}
body{margin:0;background:#f5f7fa;color:var(--fg);
 font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
.wrap{max-width:1120px;margin:0 auto;padding:0 24px}
header{background:var(--head);color:#fff;padding:26px 0 14px}
header h1{margin:0 0 4px;font-size:26px;font-weight:650;letter-spacing:-.01em}
header .meta{margin:0 0 12px;color:#c8d6e5;font-size:14px}
header .warning{margin:0 0 12px;padding:8px 12px;background:#fff3cd;color:#5c3c00;border-radius:4px}
nav a{color:#dce8f5;text-decoration:none;margin-right:18px;font-size:14px;white-space:nowrap}
nav a:hover{text-decoration:underline}
section{background:#fff;border:1px solid var(--line);border-radius:10px;padding:20px 24px;
 margin:20px 0;box-shadow:0 1px 2px rgba(31,41,51,.05)}
h2{margin:0 0 14px;font-size:20px;font-weight:650}
p{margin:0 0 12px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(180px,1fr));gap:12px;
 margin:0 0 14px}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 14px;background:#fbfcfd}
.card dt{color:var(--muted);font-size:13px}
.card dd{margin:0;font-size:28px;font-weight:650;font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:14px}
caption{caption-side:top;text-align:left;color:var(--muted);font-size:13px;padding:0 0 6px}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid var(--line);vertical-align:top}
thead th{background:#f0f3f7;font-weight:600;border-bottom:2px solid #cbd2d9}
tbody tr:hover{background:#fafbfc}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code{font:13px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{white-space:pre-wrap;word-break:break-word;background:#f5f7fa;border:1px solid var(--line);
 border-radius:6px;padding:8px 10px;font:12.5px/1.45 ui-monospace,SFMono-Regular,Menlo,monospace;
 margin:6px 0}
details summary{cursor:pointer;color:var(--accent);font-size:13px}
.msg{word-break:break-word}
.who{color:var(--muted);font-size:13px;margin:0}
.reason{word-break:break-word}
figure{margin:16px 0 8px}
figure img{display:block;max-width:100%;height:auto}
figcaption{color:var(--muted);font-size:13px;margin-top:6px;max-width:860px}
.assignment+.assignment{border-top:1px solid var(--line);margin-top:8px}
.none{color:var(--muted);font-style:italic}
.badge{display:inline-block;padding:0 8px;border-radius:10px;font-size:12px;line-height:20px;
 white-space:nowrap;border:1px solid transparent}
.badge.st-ok{background:#e3f4e8;color:#1e6b3a;border-color:#b7e0c4}
.badge.st-manual{background:#e6effa;color:#1f4f82;border-color:#bcd3ee}
.badge.st-missing{background:#eef0f3;color:#52606d;border-color:#d3d9df}
.badge.st-timeout{background:#fff4d6;color:#8a5a00;border-color:#f3d98b}
.badge.st-failed{background:#fde2e1;color:#9b1c1c;border-color:#f5b5b3}
.badge.st-other{background:#efe7fa;color:#5b2b91;border-color:#d6c4ef}
table.students td{text-align:center;white-space:nowrap;padding:6px 8px}
table.students thead th{white-space:normal;overflow-wrap:anywhere}
table.students td.hand{color:var(--muted);font-size:13px}
table.students td.hand.open{color:#1f4f82;font-weight:600}
a.fb{color:inherit;text-decoration:underline;text-decoration-color:#9aa5b1}
table.students th[scope=row]{white-space:nowrap;position:sticky;left:0;background:#fff}
table.students td.total{text-align:right}
td.st-manual{background:#f3f7fd}
td.st-missing{background:#f5f6f8;color:var(--muted)}
td.st-timeout{background:#fffaeb}
td.st-failed{background:#fef1f0}
td.st-other{background:#f7f2fd}
td.st-none{color:var(--muted)}
tr.st-failed td,tr.st-timeout td,tr.st-missing td,tr.st-other td{background:none}
.pct{color:var(--muted)}
.legend .badge{margin-right:2px}
footer{color:var(--muted);font-size:13px;padding:4px 0 28px}
@media print{body{background:#fff}header{background:none;color:#000}header .meta{color:#333}
 nav{display:none}section{border:none;box-shadow:none;break-inside:avoid;padding:0}
 details{display:none}}
"""


def render_report(results, title: str = DEFAULT_TITLE, *, links=None, hand_graded=None) -> str:
    """The report of ``results`` (SubmissionResult objects) as one HTML document.

    ``links`` maps (student, assignment) to the URL of that feedback page (relative to
    the report); ``hand_graded`` maps a student to the points graded by hand so far.
    ``write_report(..., course_root=...)`` finds both.
    """
    results = list(results)
    students = sorted(_unique(r.student for r in results))
    assignments = sorted(_unique(r.assignment for r in results))
    stats = _assignment_stats(results, assignments)
    sections = [
        _summary_section(results, students, assignments, stats),
        _distribution_section(stats),
        _pass_rates_section(results, assignments),
        _messages_section(results),
        _problems_section(results),
        _students_section(results, students, assignments, links, hand_graded),
    ]
    names = ["Summary", "Distribution", "Pass rates", "Diagnostics", "Not graded normally",
             "Per student"]
    nav = "".join(f'<a href="#{sid}">{name}</a>' for sid, name in zip(SECTION_IDS, names,
                                                                       strict=True))
    when = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z").strip()
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; \
style-src 'unsafe-inline'">
<meta name="generator" content="course_lib.instructor.report">
<title>{_e(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<header><div class="wrap">
<h1>{_e(title)}</h1>
<p class="meta">{len(results)} submission{"s" * (len(results) != 1)} of {len(students)} \
student{"s" * (len(students) != 1)} in {len(assignments)} assignment\
{"s" * (len(assignments) != 1)} · generated {_e(when)}</p>
{_unsealed_warning(results)}<nav aria-label="Sections">{nav}</nav>
</div></header>
<main class="wrap">
{chr(10).join(sections)}
</main>
<footer class="wrap">Made by course_lib.instructor.report from the grader's results. Scores \
are in points and in % of each assignment's maximum.</footer>
</body>
</html>
"""


def _unsealed_warning(results) -> str:
    """A warning above everything when any submission was graded --unsealed."""
    unsealed = [r for r in results if not r.sealed]
    if not unsealed:
        return ""
    from .grade import UNSEALED_WARNING

    return (f'<p class="warning" role="alert"><strong>{len(unsealed)} submission'
            f'{"s" * (len(unsealed) != 1)} graded unsealed.</strong> '
            f"{_e(UNSEALED_WARNING.removeprefix('WARNING: '))}</p>\n")


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

    from .course import load_config

    config = load_config(Path(course_root))
    from nbgrader.coursedir import CourseDirectory

    cd = CourseDirectory(config=config)
    done: dict[str, float] = {}
    with Gradebook(cd.db_url, cd.course_id) as gb:
        for assignment in gb.assignments:
            for sub in gb.assignment_submissions(assignment.name):
                pts = sum(float(g.max_score) for nb in sub.notebooks for g in nb.grades
                          if g.manual_score is not None)
                done[sub.student_id] = done.get(sub.student_id, 0.0) + pts
    return done


def write_report(results, path, title: str = DEFAULT_TITLE, *, course_root=None) -> Path:
    """Write the HTML report of ``results`` (SubmissionResult objects) to ``path``.

    Args:
        results: the graded class, as grade_class or load_results returns it.
        path: the HTML file to write (its folder is created if needed).
        title: the page's title and heading.
        course_root: the course folder, when known: each score then links to the
            student's feedback page, and the hand-grading column says how many points
            were graded by hand so far (read from the gradebook).
    Returns:
        the path written.
    """
    path = Path(path)
    results = list(results)
    links = hand_graded = None
    if course_root is not None:
        links = feedback_links(results, path, course_root)
        hand_graded = hand_graded_points(course_root)
    page = render_report(results, title, links=links, hand_graded=hand_graded)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------

def main(argv=None) -> int:
    """``python -m course_lib.instructor.report RESULTS_JSON [-o OUT_HTML] [--title T]``.

    Returns:
        0 when the report is written, 2 on bad input (a missing or malformed
        results file, bad arguments), 1 when the report cannot be written.
    """
    parser = argparse.ArgumentParser(
        prog="python -m course_lib.instructor.report",
        description="Write the HTML grading report of a class from its results JSON "
                    "(as written by course_lib.instructor.report.save_results).")
    parser.add_argument("results", metavar="RESULTS_JSON", help="the results JSON file")
    parser.add_argument("-o", "--output", metavar="OUT_HTML",
                        help="the HTML file to write (default: RESULTS_JSON with .html)")
    parser.add_argument("--title", default=DEFAULT_TITLE, help="the report's title")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed its message (or --help)
        return exc.code if isinstance(exc.code, int) else 2
    source = Path(args.results)
    try:
        results = load_results(source)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.output) if args.output else source.with_suffix(".html")
    if out.resolve() == source.resolve():
        print(f"error: the report would overwrite the results file {source}; give -o",
              file=sys.stderr)
        return 2
    try:
        write_report(results, out, title=args.title)
    except OSError as exc:
        print(f"error: cannot write {out}: {exc}", file=sys.stderr)
        return 1
    print(f"report of {len(results)} submissions written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
