"""The judge's parts on their own: the wire, the kernel's guard, the tamper reader.

The whole judge (a real kernel, nbgrader, the gradebook) is exercised by
test_integrity.py and every lesson test; these are the fast, exact checks of
each part's rules.
"""

from __future__ import annotations

import os
import socket
import threading

import nbformat
import numpy as np
import pytest
from lessons import ASSIGNMENTS, release_path, source_path

from course_lib.judge import client, server, tamper, wire
from course_lib.judge.launcher import Guard

# -- wire -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [
    None, True, 3, -2**62, 2.5, float("inf"), "σ'(z)", (1, [2.0, "a"], {"k": (None,)}),
    np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 0], dtype=bool),
    np.float64(0.25), np.int64(7), np.zeros((0, 3)), np.array(1.5 + 2j),
    [(np.eye(2), np.ones(2))],
])
def test_plain_data_crosses_the_wire_unchanged(value):
    back = wire.decode(wire.encode(value))
    assert type(back) is type(value)
    if isinstance(value, np.ndarray):
        assert back.dtype == value.dtype and back.shape == value.shape
        np.testing.assert_array_equal(back, value)
    elif isinstance(value, list) and value and isinstance(value[0], tuple):
        np.testing.assert_array_equal(back[0][0], value[0][0])
    else:
        assert back == value or (isinstance(value, float) and np.isnan(value))


def test_nan_crosses_the_wire():
    assert np.isnan(wire.decode(wire.encode(float("nan"))))


def test_an_argument_returned_as_is_stays_the_callers_array():
    """`return dout` (no copy) must still look like the caller's own array to a check."""
    dout = np.ones(3)
    args = (dout,)
    out = wire.decode(wire.encode((dout, dout.copy()), args), args)
    assert out[0] is dout and out[1] is not dout


def test_anything_else_crosses_only_as_a_name_and_a_repr():
    class Weird:
        def __repr__(self):
            return "<weird>"

        def __reduce__(self):  # pickle would run this: the wire never pickles
            raise AssertionError("pickled")

    back = wire.decode(wire.encode([Weird(), np.array(["a"], dtype=object)]))
    assert type(back[0]).__name__ == "Weird" and repr(back[0]) == "<weird>"
    assert isinstance(back[0], wire.Opaque) and isinstance(back[1], wire.Opaque)


@pytest.mark.parametrize("data", [{"nd": "|O", "shape": [1], "b64": ""}, {"zz": 1}, {},
                                  {"arg": [5]}])
def test_decoding_refuses_what_is_not_plain_data(data):
    with pytest.raises(wire.WireError):
        wire.decode(data, args=())


def test_frames_round_trip_and_refuse_a_giant():
    a, b = socket.socketpair()
    with a, b:
        wire.send(a, {"op": "x", "v": wire.encode(np.arange(5.0))})
        got = wire.recv(b)
        np.testing.assert_array_equal(wire.decode(got["v"]), np.arange(5.0))
        a.sendall((wire.MAX_FRAME + 1).to_bytes(8, "big"))
        with pytest.raises(wire.WireError, match="larger"):
            wire.recv(b)


# -- the judge and its client, over a real socket -----------------------------------------


def test_a_check_runs_in_the_judge_and_its_verdict_comes_back(monkeypatch):
    """The kernel side only runs the function; the judge decides (here: a wrong answer)."""
    judge = server.Judge()
    monkeypatch.setenv("COURSE_JUDGE", judge.address)
    try:
        judge.begin({"t": [("check_sigmoid_prime", "values")], "u": [("check_sigmoid", "all")]})
        judge.on_cell_execute({"metadata": {"nbgrader": {"grade_id": "t"}}}, 3)

        def sigmoid_prime(z):
            return 1 / (1 + np.exp(-z))  # σ itself: a known mistake

        with pytest.raises(AssertionError, match="known mistake"):
            client.run_check("check_sigmoid_prime", sigmoid_prime, "values")
        with pytest.raises(AssertionError, match="only in their own test cells"):
            client.run_check("check_sigmoid", sigmoid_prime, "all")  # not this cell's check
        record = judge.end()
    finally:
        judge.close()
    [verdict] = record.verdicts["t"]
    assert not verdict.passed and "known mistake" in verdict.message
    assert [f.what for f in record.flags] == ["check"]


def test_without_a_judge_the_hidden_tests_say_when_they_run(monkeypatch):
    monkeypatch.delenv("COURSE_JUDGE", raising=False)
    with pytest.raises(RuntimeError, match="only while the course grades"):
        client.check_sigmoid(lambda z: z)


def test_the_judge_stops_a_notebook_past_its_total_time():
    judge = server.Judge(notebook_time_limit=0.5)
    done = threading.Event()
    try:
        import subprocess
        import sys

        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        judge.begin({})
        judge.record.kernel_pid = sleeper.pid
        judge.on_cell_execute({"metadata": {}}, 0)
        sleeper.wait(timeout=10)
        done.set()
        assert judge.end().out_of_time
    finally:
        judge.close()
    assert done.is_set() and sleeper.returncode == -9


# -- the kernel's guard --------------------------------------------------------------------


@pytest.fixture
def guard(tmp_path, monkeypatch):
    course = tmp_path / "course"
    mine = course / "autograded" / "amy" / "01"
    mine.mkdir(parents=True)
    answers = tmp_path / "lib" / "course_lib"
    monkeypatch.chdir(mine)
    return Guard({"COURSE_GUARD_ROOTS": str(course), "COURSE_GUARD_FORBIDDEN": str(answers),
                  "COURSE_GUARD_ALLOWED": str(course / ".venv"), "COURSE_NO_TORCH": "1"})


@pytest.mark.parametrize("event,args", [
    ("open", ("../../../gradebook.db", "rb", 0)),
    ("open", ("../../../source/01/01.ipynb", "r", 0)),
    ("open", ("../../bob/01/01.ipynb", "r", 0)),
    ("os.listdir", ("../../../submitted",)),
    ("os.remove", ("../../../grades.csv", None)),
    ("os.symlink", ("../../../gradebook.db", "gb", None)),
    ("subprocess.Popen", ("cat", ["cat", "x"], None, None)),
    ("gc.get_objects", (None,)),
    ("import", ("course_lib.reference.activations", None, [], [], [])),
    ("import", ("torch", None, [], [], [])),
    ("os.kill", (1, 9)),
])
def test_the_guard_refuses_what_a_notebook_may_not_do(guard, event, args, monkeypatch):
    import course_lib.judge.launcher as L

    monkeypatch.setattr(L, "_from_notebook", lambda: True)
    with pytest.raises((PermissionError, ImportError)):
        guard(event, args)


@pytest.mark.parametrize("event,args", [
    ("open", ("notes.txt", "w", 0)),  # its own folder
    ("open", ("/usr/lib/python3/os.py", "r", 0)),
    ("open", (3, "r", 0)),  # a file descriptor
    ("import", ("numpy.linalg", None, [], [], [])),
    ("os.kill", (os.getpid(), 2)),
])
def test_the_guard_lets_ordinary_code_be(guard, event, args):
    guard(event, args)


def test_the_guard_also_refuses_the_answers_wherever_they_are_installed(guard, tmp_path):
    with pytest.raises(PermissionError):
        guard("open", (str(tmp_path / "lib" / "course_lib" / "reference" / "mlp.py"), "r", 0))


# -- the tamper reader ---------------------------------------------------------------------


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_course_own_notebooks_raise_no_finding(assignment):
    """Neither the release (what students start from) nor the solutions look like tampering."""
    source = nbformat.read(str(source_path(assignment)), as_version=4)
    release = nbformat.read(str(release_path(assignment)), as_version=4)
    manual = not assignment.startswith("05")
    assert tamper.inspect_submission(release, source, manual) == []
    assert tamper.inspect_submission(source, source, manual) == []
    for cell in source.cells:  # every cell read as if a student had written it
        if cell.cell_type == "code":
            assert tamper.scan_code(tamper.strip_hidden(cell.source), {}, manual) == [], cell.source


@pytest.mark.parametrize("code,what", [
    ("import numpy as np\nnp.allclose = lambda *a, **k: True", "patch"),
    ("import numpy\nsetattr(numpy, 'isclose', None)", "patch"),
    ("from numpy import testing\ntesting.assert_allclose = print", "patch"),
    ("__builtins__.abs = len", "patch"),
    ("ip = get_ipython()\nip.input_transformers_post.append(f)", "hook"),
    ("get_ipython().events.register('post_run_cell', f)", "hook"),
    ("import sys\nsys.excepthook = f", "patch"),
    ("%time x = 1\nexec('y = 2')", "dynamic"),
    ("from course_lib.reference import softmax", "answers"),
    ("import course_lib.grading._core as core", "answers"),
    ("import torch.autograd", "torch"),
    ("import ctypes", "introspection"),
    ("open('/course/gradebook.db')", "file"),
])
def test_tampering_code_is_named(code, what):
    assert what in [w for w, _ in tamper.scan_code(code, {}, manual_gradients=True)]


def test_torch_is_fine_where_autograd_is_the_lesson():
    assert tamper.scan_code("import torch", {}, manual_gradients=False) == []
