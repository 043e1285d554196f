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

The package: ``data`` (results stored and read back, the statistics),
``figures`` (the plots), ``page`` (the HTML); the command line is here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .data import (
    MessageGroup,
    count_unanswered,
    feedback_links,
    group_messages,
    hand_graded_points,
    load_results,
    message_key,
    save_results,
)
from .page import DEFAULT_TITLE, SECTION_IDS, open_points_text, render_report, write_report

__all__ = ["DEFAULT_TITLE", "SECTION_IDS", "MessageGroup", "count_unanswered", "feedback_links",
           "group_messages", "hand_graded_points", "load_results", "main", "message_key",
           "open_points_text", "render_report", "save_results", "write_report"]


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
