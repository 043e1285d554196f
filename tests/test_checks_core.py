"""The checks' machinery (course_lib.grading._core): a known mistake is named in the
message, and its catalogue is computed only for an answer that differs.

The student's kernel waits for every check while the judge works, so a right answer
must not pay for the catalogue of wrong ones (lesson 4's sgd_epoch replays a whole
epoch per known mistake)."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.grading import _core, mlp
from course_lib.reference import mlp as R


def test_a_right_answer_never_computes_the_catalogue_of_mistakes():
    def catalogue():
        raise AssertionError("the catalogue was computed for a right answer")

    _core.expect_close("f(x)", np.array([1.0, 2.0]), [1.0, 2.0], mistakes=catalogue,
                       inputs={"x": np.arange(2.0)})


def test_a_wrong_answer_is_matched_against_the_catalogue_computed_then():
    calls = []

    def catalogue():
        calls.append(1)
        return {"you doubled it": np.array([2.0, 4.0])}

    with pytest.raises(AssertionError, match="This matches a known mistake: you doubled it"):
        _core.expect_close("f(x)", np.array([2.0, 4.0]), [1.0, 2.0], mistakes=catalogue,
                           inputs={"x": np.arange(2.0)})
    assert calls == [1]


def test_sgd_epoch_replays_its_mistakes_only_for_a_wrong_epoch(monkeypatch):
    replayed = []
    real = mlp._epoch_variant
    monkeypatch.setattr(mlp, "_epoch_variant",
                        lambda *a: replayed.append(a[-1]) or real(*a))
    mlp.check_sgd_epoch(R.sgd_epoch)
    assert replayed == []

    def without_shuffle(params, X, y, lr, batch_size, seed, hidden="relu"):
        losses = []
        for start in range(0, len(X), batch_size):
            rows = slice(start, start + batch_size)
            loss, grads = R.mlp_loss(params, X[rows], y[rows], hidden)
            losses.append(loss)
            params = R.sgd_step(params, grads, lr)
        return params, losses

    with pytest.raises(AssertionError, match="This matches a known mistake: .*shuffle"):
        mlp.check_sgd_epoch(without_shuffle)
    assert "no_shuffle" in replayed
