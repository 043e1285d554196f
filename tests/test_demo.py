"""The demo class: who hands in what, and a second demo replaces the first (never a real class)."""

from __future__ import annotations

import json
import shutil

import nbformat
import pytest
from lessons import ASSIGNMENTS, ROOT

from course_lib.instructor import demo


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return demo.build_class(tmp_path_factory.mktemp("demo") / "class", ROOT)


def test_the_class_has_every_kind_of_student(built):
    assert len(demo.ROSTER) >= 12
    for assignment in ASSIGNMENTS:
        handed_in = {p.stem for p in (built / assignment).glob("*.ipynb")}
        absent = {"max-missing"} if assignment == "04_backprop_mlp" else set()
        expected = set(demo.ROSTER) - absent
        assert handed_in == expected
    # one student per common mistake of the lessons issue (the manifest's `demo = true`)
    assert {m.description for m in demo.MISTAKES.values()} >= {
        "a max gate that sends the gradient to both inputs", "σ(z) returned for σ'(z)",
        "σ' applied to the activation instead of the pre-activation", "ReLU'(0) = 1",
        "a softmax Jacobian missing the diagonal term", "a softmax Jacobian with the sign flipped",
        "an unstable softmax that overflows", "a transposed dW",
        "the 1/N of the batch mean forgotten", "the 1/N of the batch mean applied twice",
        "+ instead of - in the update",
        "gradients overwritten instead of accumulated at a fan-out"}


def answer_cells(path):
    nb = nbformat.read(str(path), as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("solution")}


def test_answers_come_from_the_source_and_mistakes_change_one_cell(built):
    for assignment in ASSIGNMENTS:
        perfect = answer_cells(built / assignment / "ada-perfect.ipynb")
        empty = answer_cells(built / assignment / "ben-empty.ipynb")
        code = [g for g in perfect if g.endswith("_answer")]
        assert all("NotImplementedError" not in perfect[g] for g in code)
        assert all("raise NotImplementedError()" in empty[g] for g in code)
        assert not any("BEGIN SOLUTION" in s for s in perfect.values())
    for name, m in demo.MISTAKES.items():
        wrong = answer_cells(built / m.assignment / f"m-{name}.ipynb")
        right = answer_cells(built / m.assignment / "ada-perfect.ipynb")
        assert [g for g in right if right[g] != wrong[g]] == [m.grade_id]
        assert m.new in wrong[m.grade_id]
    garbled = (built / "05_autograd" / "noa-garbled.ipynb").read_text()
    with pytest.raises(json.JSONDecodeError):
        json.loads(garbled)


def test_a_mistake_that_no_longer_applies_fails_loudly(monkeypatch, tmp_path):
    bad = demo.Mistake("02_sigmoid", "sigmoid_prime_answer", "no such code", "x", "stale")
    monkeypatch.setitem(demo.MISTAKES, "stale", bad)
    with pytest.raises(ValueError, match=r"'no such code' is no longer in 02_sigmoid/"
                                         r"sigmoid_prime_answer; update its old/new in the "
                                         r"lesson's course_lib/manifest/<slug>.toml"):
        demo.student_notebook("mistake:stale", "02_sigmoid", ROOT)


def small_course(tmp_path):
    root = tmp_path / "course"
    root.mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", root)
    shutil.copytree(ROOT / "source" / "02_sigmoid", root / "source" / "02_sigmoid")
    return root


def test_a_new_demo_replaces_the_previous_one(tmp_path):
    root = small_course(tmp_path)
    for name in ("submitted/ada-perfect/02_sigmoid", "feedback/ada-perfect/02_sigmoid",
                 "autograded/ada-perfect/02_sigmoid", "reports"):
        (root / name).mkdir(parents=True)
    (root / "grades.csv").write_text("old")
    (root / "autograded" / "README.md").write_text("kept")
    demo.clear_previous_demo(root)
    assert not any((root / n).exists() for n in ("submitted", "feedback", "reports", "grades.csv"))
    assert [p.name for p in (root / "autograded").iterdir()] == ["README.md"]


def test_the_demo_never_replaces_a_real_class(tmp_path):
    root = small_course(tmp_path)
    real = root / "submitted" / "jane.doe" / "02_sigmoid"
    real.mkdir(parents=True)
    (real / "02_sigmoid.ipynb").write_text("{}")
    with pytest.raises(RuntimeError, match=r"students outside the demo \(jane.doe\)"):
        demo.clear_previous_demo(root)
    assert (real / "02_sigmoid.ipynb").exists()
