"""bench/grading_bench.py's lessons table: each row's ratio to its floor is taken per
round (per_round_ratios), without kernels. Timings are the bench's business, not
asserted here."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import grading_bench as gb  # noqa: E402


def test_ratio_is_the_median_of_per_round_ratios():
    # The machine slows down after round 1: the floor and the lesson alike.
    seconds = {gb.NUMPY_FLOOR_ROW: [0.40, 0.50, 0.60],
               "lesson": [0.60, 0.80, 0.84]}
    floors = {gb.NUMPY_FLOOR_ROW: gb.NUMPY_FLOOR_ROW, "lesson": gb.NUMPY_FLOOR_ROW}
    ratios = gb.per_round_ratios(seconds, floors)
    # per round: 1.5, 1.6, 1.4 -> 1.5 (the ratio of the medians would be 1.6)
    assert ratios["lesson"] == pytest.approx(1.5)
    assert ratios[gb.NUMPY_FLOOR_ROW] == pytest.approx(1.0)


def test_each_row_is_divided_by_its_own_floor():
    seconds = {gb.NUMPY_FLOOR_ROW: [0.5, 0.5], gb.TORCH_FLOOR_ROW: [1.0, 2.0],
               "with torch": [1.5, 3.0], "without": [1.0, 1.0]}
    floors = {name: gb.floor_row(name == "with torch") for name in seconds}
    ratios = gb.per_round_ratios(seconds, floors)
    assert ratios == pytest.approx({gb.NUMPY_FLOOR_ROW: 1.0, gb.TORCH_FLOOR_ROW: 3.0,
                                    "with torch": 1.5, "without": 2.0})


def test_floor_row():
    assert gb.floor_row(True) == gb.TORCH_FLOOR_ROW
    assert gb.floor_row(False) == gb.NUMPY_FLOOR_ROW
    assert gb.floor_row(None) == gb.NUMPY_FLOOR_ROW  # a floor, or the floor + cells row


def test_rows_of_different_rounds_are_refused():
    with pytest.raises(ValueError):
        gb.per_round_ratios({gb.NUMPY_FLOOR_ROW: [0.5, 0.5], "lesson": [0.7]},
                            {gb.NUMPY_FLOOR_ROW: gb.NUMPY_FLOOR_ROW,
                             "lesson": gb.NUMPY_FLOOR_ROW})


def test_summarize_keeps_the_rounds_in_order():
    """per_round_ratios pairs a row's runs with its floor's by position: summarize must
    not sort them."""
    nb = gb.floor_notebook(gb.FLOOR_NUMPY)
    runs = {True: [(0.9, nb, 0.3), (0.5, nb, 0.2), (0.7, nb, 0.4)],
            False: [(0.8, nb, 0.3), (0.4, nb, 0.1), (0.6, nb, 0.2)]}
    row = gb.summarize(runs)
    assert row["runs"] == [0.9, 0.5, 0.7]
    assert row["unsandboxed_runs"] == [0.8, 0.4, 0.6]
    assert (row["seconds"], row["unsandboxed"]) == (0.7, 0.6)
    assert (row["cpu"], row["unsandboxed_cpu"]) == (0.3, 0.2)


def test_a_lesson_with_its_own_target_is_a_lesson_of_the_course():
    """A renamed lesson would silently fall back to issue 8's 1.5: every lesson named in
    LESSON_TARGETS is one the table times, and the others keep 1.5."""
    from lessons import ASSIGNMENTS

    assert set(gb.LESSON_TARGETS) <= set(ASSIGNMENTS)
    for lesson in ASSIGNMENTS:
        assert gb.target_ratio(lesson) == gb.LESSON_TARGETS.get(lesson, 1.5)
    assert gb.target_ratio(gb.NUMPY_FLOOR_ROW) == gb.TARGET_LESSON_RATIO == 1.5
