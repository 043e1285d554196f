"""The report's page: one self-contained HTML document (inline CSS, embedded PNGs).

Every string that comes from a submission (student ids, messages, reasons) is
HTML-escaped, and a Content-Security-Policy in the page forbids scripts and
anything fetched from the network.
"""

from __future__ import annotations

import html
import math
import statistics
from collections import Counter
from datetime import datetime
from pathlib import Path

from ..grade import UNSEALED_WARNING, SubmissionResult
from ..status import STORED, Status, describe
from .data import (
    assignment_stats,
    count_unanswered,
    feedback_links,
    group_messages,
    hand_graded_points,
    is_normal,
    pass_rates,
    unique,
)
from .figures import distribution_figure, messages_figure, pass_rate_figure, short

DEFAULT_TITLE = "Backpropagation course: grading report"
SECTION_IDS = ("summary", "distribution", "pass-rates", "messages", "problems", "students")
TOP_MESSAGES = 15  # rows of the message table
TOP_CHART = 10  # bars of the message chart

# status -> CSS class; any status not listed (a future one) gets "st-other"
_STATUS_CLASS = {Status.OK: "st-ok", Status.AWAITING_HAND_GRADING: "st-manual",
                 Status.MISSING: "st-missing", Status.TIMEOUT: "st-timeout",
                 Status.UNREADABLE: "st-failed", Status.KERNEL_DIED: "st-failed",
                 Status.ERROR: "st-failed", Status.TAMPERED: "st-failed"}


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _fmt_points(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".") if math.isfinite(x) else str(x)


def _fmt_pct(x: float) -> str:
    return f"{x:.1f}%"


def _status_badge(status: str, explain: bool = False) -> str:
    """The status as a coloured badge; ``explain``: its description as the badge's title."""
    cls = _STATUS_CLASS.get(status, "st-other")
    title = f' title="{_e(describe(status))}"' if explain and describe(status) else ""
    return f'<span class="badge {cls}"{title}>{_e(status)}</span>'


def open_points_text(r: SubmissionResult) -> str:
    """"awaiting hand grading: 5 points open": what a submission still waits for."""
    n = r.open_points
    return f"awaiting hand grading: {_fmt_points(n)} point{'s' * (n != 1)} open"


def _open_points_summary(results) -> str:
    """One line for the summary: how much hand grading is left, or '' when none."""
    waiting = [r for r in results if r.status == Status.AWAITING_HAND_GRADING]
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
    n_normal = sum(is_normal(r) for r in results)
    cards = [("Students", len(students)), ("Assignments", len(assignments)),
             ("Graded normally", n_normal), ("Not graded normally", len(results) - n_normal)]
    parts = ['<dl class="cards">'] + [
        f'<div class="card"><dt>{label}</dt><dd>{value}</dd></div>' for label, value in cards]
    parts.append("</dl>")
    counts = Counter(r.status for r in results)
    order = [s for s in STORED if s in counts] + sorted(set(counts) - set(STORED))
    if order:
        parts.append('<p class="statuses">Submissions by status: ' + " ".join(
            f'{_status_badge(s, explain=True)}&nbsp;{counts[s]}' for s in order) + "</p>")
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
                    _img(distribution_figure(stats), alt, caption))


def _pass_rates_section(results, assignments) -> str:
    blocks = []
    for a in assignments:
        rates = pass_rates(results, a)
        if not rates:
            continue
        alt = (f"Share of submissions with full marks on each graded cell of {a}: "
               + "; ".join(f"{c} {k} of {n}" for c, k, n in rates) + ".")
        caption = (f"<strong>{_e(a)}</strong>: share of the submissions (graded normally, or "
                   "with partial results) that got full marks on each graded cell, by grade_id. "
                   "Green: 80% or more, amber: 50–80%, red: below 50%. A cell graded by hand "
                   "counts only once it has been graded.")
        blocks.append(f'<div class="assignment">{_img(pass_rate_figure(a, rates), alt, caption)}'
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
        who = ", ".join(_e(s) for s in unique(g.students))
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
        f"{i}. {g.assignment} {g.cell}: {short(g.key, 80)} ({g.count})"
        for i, g in enumerate(chart, 1)) + "."
    caption = (f"The {len(chart)} most frequent diagnostics (numbered as in the table above), "
               "by number of submissions. Red: the message names a known mistake.")
    return _section("messages", "Most frequent diagnostics",
                    table + "\n" + _img(messages_figure(chart), alt, caption))


def _problems_section(results) -> str:
    bad = sorted((r for r in results if not is_normal(r)),
                 key=lambda r: (r.assignment, r.student))
    noted = sorted((r for r in results if is_normal(r) and r.notes),
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
    if r.status == Status.AWAITING_HAND_GRADING and r.open_points > 0:
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
            why = open_points_text(r) if r.status == Status.AWAITING_HAND_GRADING else r.status
            title = f"{why}: {r.reason}" if r.reason else why
            badge = "" if r.status == Status.OK else f"<br>{_compact_badge(r)}"
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
    legend = " ".join(_status_badge(s, explain=True) for s in STORED) + \
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
    students = sorted(unique(r.student for r in results))
    assignments = sorted(unique(r.assignment for r in results))
    stats = assignment_stats(results, assignments)
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
    return (f'<p class="warning" role="alert"><strong>{len(unsealed)} submission'
            f'{"s" * (len(unsealed) != 1)} graded unsealed.</strong> '
            f"{_e(UNSEALED_WARNING.removeprefix('WARNING: '))}</p>\n")


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

