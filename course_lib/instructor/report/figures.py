"""The report's plots: matplotlib (Agg, imported only when a report is drawn) to PNG.

Each figure function returns ``(base64 PNG, width, height)`` in CSS pixels,
for page.py to embed as a ``data:`` URI; the same results always draw the same
picture (a fixed jitter seed, no date in the PNG).
"""

from __future__ import annotations

import base64
import statistics
import struct

from .data import AssignmentStats, MessageGroup

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


def warm_up() -> None:
    """Import matplotlib and draw one small figure to PNG: what the first figure of a
    process pays once (the font manager, the fonts, Agg), about a second. `course
    grade` calls it while its workers grade, so that the report, drawn after the last
    notebook on one core, starts warm."""
    with _rc():
        fig = _new_figure(1.0, 0.5)
        ax = fig.add_subplot()
        ax.barh([0], [1.0], color=_BLUE)
        ax.set_title("warm", loc="left", fontweight="bold")
        ax.set_xlabel("x")
        _png(fig)


def short(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def distribution_figure(stats: list[AssignmentStats]):
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


def pass_rate_figure(assignment: str, rates):
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
        ax.set_yticks(ys, [short(c, 40) for c, _, _ in rates])
        ax.set_xlim(0, 110)
        ax.set_xticks(range(0, 101, 20))
        ax.set_ylim(-0.6, len(rates) - 0.4)
        ax.set_xlabel("submissions with full marks (%)")
        ax.grid(axis="y", visible=False)
        ax.set_title(assignment, loc="left", fontweight="bold")
        return _png(fig)


def messages_figure(groups: list[MessageGroup]):
    from matplotlib.patches import Patch

    with _rc():
        fig = _new_figure(6.2, 0.8 + 0.34 * len(groups))
        ax = fig.add_subplot()
        ys = list(range(len(groups)))[::-1]
        ax.barh(ys, [g.count for g in groups], height=0.62,
                color=[_RED if g.known else _GREY for g in groups])
        for y, g in zip(ys, groups, strict=True):
            ax.text(g.count, y, f" {g.count}", va="center", fontsize=8, color="#323f4b")
        labels = [f"{i}. {short(g.cell, 20)}: "
                  f"{short(g.key.removeprefix('Known mistake: '), 48)}"
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

