"""The judge's parts on their own: the wire, the judge's socket, the tamper reader.

The whole judge (a real kernel, nbgrader, the gradebook) is exercised by
test_integrity.py and every lesson test; these are the fast, exact checks of
each part's rules.
"""

from __future__ import annotations

import contextlib
import os
import socket

import nbformat
import numpy as np
import pytest
from lessons import ASSIGNMENTS, release_path, source_path

from course_lib.judge import client, server, tamper, wire

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


def test_connections_an_earlier_kernel_left_open_are_cut_before_the_next_submission():
    """A kernel holds every slot open past its end and parks one more connection, with a
    request, in the backlog: the next submission starts with free slots, and the parked
    request never reaches it (nor flags it)."""
    import time

    judge = server.Judge()
    try:
        held = [socket.socket(socket.AF_UNIX) for _ in range(server.MAX_OPEN)]
        for conn in held:
            conn.connect(judge.address)
        parked = socket.socket(socket.AF_UNIX)
        parked.connect(judge.address)
        wire.send(parked, {"op": "smuggled"})
        deadline = time.monotonic() + 60  # a hang guard: the threads need milliseconds
        while len(judge._conns) < server.MAX_OPEN and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(judge._conns) == server.MAX_OPEN  # every slot taken

        judge.begin({})  # the next student
        while judge._conns and time.monotonic() < deadline:
            time.sleep(0.01)
        assert judge._conns == set()
        fresh = socket.socket(socket.AF_UNIX)
        fresh.settimeout(60)
        fresh.connect(judge.address)  # served at once: a slot is free
        wire.send(fresh, {"op": "hello"})
        while not judge.record.flags and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [f.detail for f in judge.record.flags] == [
            "the grader received a malformed message: 'hello' is not a request the judge takes"]
        with pytest.raises(OSError):  # the parked connection went with the old listener
            for _ in range(100):
                parked.sendall(b"x" * 65536)
    finally:
        judge.close()


def test_one_array_returned_twice_stays_one_array():
    """`d = dout * 1; return d, d` must look aliased to the copies check, as it does
    unsealed: each array crosses once, its second place refers to the first."""
    dout = np.ones(3)
    d = dout * 1
    value = ({"dx": d, "other": [np.zeros(2), d]}, d)
    out = wire.decode(wire.encode(value, (dout,)), (dout,))
    assert out[1] is out[0]["dx"] is out[0]["other"][1]
    assert out[0]["other"][0] is not out[1]
    np.testing.assert_array_equal(out[1], d)
    twins = wire.decode(wire.encode((d, d.copy())))
    assert twins[0] is not twins[1]  # equal values, two arrays: still two


def _reply_to_a_call(fn, args):
    """What the kernel side sends the judge after calling ``fn`` on ``args`` (as decoded
    from the judge's request)."""
    a, b = socket.socketpair()
    with a, b:
        args = wire.decode(wire.encode(tuple(args)))
        client._answer(a, lambda: fn(*args), args)
        return wire.recv(b)


def test_only_the_arguments_a_call_changed_are_sent_back_to_the_judge():
    big, small = np.ones((2, 60_000)), np.zeros(3)
    untouched = _reply_to_a_call(lambda x, y: x.sum(), (big, small))
    assert wire.decode(untouched["args_changed"]) == {}
    assert len(str(untouched)) < 200  # the 2 MB of arguments are not sent back for nothing

    def scale_in_place(x, y):
        y *= 2.0
        y[0] = np.nan  # a NaN that was not there: a change
        return 0.0
    changed = wire.decode(_reply_to_a_call(scale_in_place, (big, small + 1.0))["args_changed"])
    assert list(changed) == ["1"] and np.isnan(changed["1"][0]) and changed["1"][1] == 2.0

    params = [(np.ones((2, 2)), np.zeros(2)), (np.ones((1, 2)), np.zeros(1))]

    def nested(p):
        p[1][1][0] += 0.5  # the last layer's b, deep inside a list of tuples
        p.append("extra")
    after = wire.decode(_reply_to_a_call(nested, (params,))["args_changed"])
    assert list(after) == ["0"] and after["0"][1][1][0] == 0.5 and after["0"][2] == "extra"
    theirs = [tuple(x.copy() for x in pair) for pair in params]
    server._copy_back_changed((theirs,), after)
    assert theirs[1][1][0] == 0.5  # the judge's own array, changed in place as theirs was


@pytest.mark.parametrize("forged", [[1, 2], {"5": 1.0}, {"-1": 1.0}, {"x": 1.0}])
def test_a_change_to_no_argument_is_refused(forged):
    with pytest.raises(wire.WireError, match="args_changed"):
        server._copy_back_changed((np.zeros(2),), forged)


def test_what_the_kernel_changed_in_a_dict_comes_back_to_the_callers_dict():
    W = np.ones((2, 2))
    params = {"W": W, "b3": 0.0, "gone": 1, "inner": {"v": np.zeros(2)}}
    inner_v = params["inner"]["v"]
    theirs = wire.decode(wire.encode((params,)))
    theirs[0]["W"] -= 0.5  # in place in the kernel
    theirs[0]["b3"] -= 0.01
    del theirs[0]["gone"]
    theirs[0]["inner"]["v"][1] = 7.0
    theirs[0]["new"] = "x"
    server._copy_back((params,), wire.decode(wire.encode(theirs)))
    assert params["W"] is W and np.all(W == 0.5)  # the caller's array, changed in place
    assert params["b3"] == -0.01 and "gone" not in params and params["new"] == "x"
    assert params["inner"]["v"] is inner_v and inner_v[1] == 7.0


@pytest.mark.parametrize("forged", [{"t": [{"same": [0]}]}, {"t": [1, {"same": [0]}]},
                                    {"same": "x"}])
def test_a_reference_to_no_earlier_array_is_refused(forged):
    with pytest.raises(wire.WireError, match="no earlier array"):
        wire.decode(forged)


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


# -- results a check reuses within one notebook (lesson 04's trained network) ------------

CAPSTONE_CELLS = {"train_digits_validation": [("check_train_digits", "validation")],
                  "train_digits_heldout": [("check_train_digits", "heldout")]}


@pytest.fixture(scope="module")
def digits_networks():
    """A network that passes both capstone cells (the reference's) and one that fails
    both (the same shapes, untrained)."""
    from course_lib import data, nets
    from course_lib.reference import mlp as RM

    good = RM.train_digits(*data.digits_split())
    bad = (nets.init_params(RM.DIGITS_SIZES, seed=0, scale="he"), good[1])
    return good, bad


def _student(result, calls: list):
    def train_digits(X_train, y_train, X_val, y_val, on_epoch=None):
        calls.append(len(y_train))
        return result
    return train_digits


def _run_cells(judge, cells) -> dict[str, bool]:
    """Run ``cells`` as one notebook: (grade_id, train_digits) for a test cell of the
    capstone, (None, None) for a cell the student wrote. Each test cell's verdict."""
    judge.begin(CAPSTONE_CELLS)
    for index, (gid, fn) in enumerate(cells):
        judge.on_cell_execute({"metadata": {"nbgrader": {"grade_id": gid}} if gid else {}},
                              index)
        if gid is not None:
            with contextlib.suppress(AssertionError):
                client.run_check("check_train_digits", fn, gid.rsplit("_", 1)[1])
    record = judge.end()
    assert record.flags == []
    return {gid: all(v.passed for v in verdicts) for gid, verdicts in record.verdicts.items()}


@pytest.mark.parametrize("forged_ref", [False, True])
def test_a_trained_network_is_reused_within_one_notebook_only(monkeypatch, digits_networks,
                                                              forged_ref):
    """The capstone's two cells judge one training of the same function (the judge keeps
    it for that notebook), and nothing of one notebook reaches the next: one worker's
    judge grades student A (a good network), then student B (a bad one), then C (good
    again), and each gets their own function's result, also when every kernel gives
    its function the same number (``forged_ref``: a kernel's number can be anything).
    A redefinition, or any cell of the student's, between the two cells trains again."""
    from course_lib.judge import client as client_module

    if forged_ref:
        monkeypatch.setattr(client_module, "_ref", lambda obj: 1)
    good, bad = digits_networks
    validation, heldout = CAPSTONE_CELLS
    judge = server.Judge()
    monkeypatch.setenv("COURSE_JUDGE", judge.address)
    try:
        a, b, c = [], [], []
        student_a, student_b, student_c = _student(good, a), _student(bad, b), _student(good, c)
        assert _run_cells(judge, [(validation, student_a), (heldout, student_a)]) == {
            validation: True, heldout: True}
        assert len(a) == 1  # trained once for both cells
        assert _run_cells(judge, [(validation, student_b), (heldout, student_b)]) == {
            validation: False, heldout: False}
        assert len(b) == 1  # B's own result, not A's
        assert _run_cells(judge, [(validation, student_c), (heldout, student_c)]) == {
            validation: True, heldout: True}
        assert len(c) == 1 and len(b) == 1  # C's own result, not B's

        # redefined between the two cells: the new function trains, and is judged
        before, after = [], []
        verdicts = _run_cells(judge, [(validation, _student(good, before)),
                                      (None, None),  # the cell that redefines it
                                      (heldout, _student(bad, after))])
        assert verdicts == {validation: True, heldout: False}
        assert len(before) == len(after) == 1
        # the same function, but a cell of the student's ran in between (it may have
        # redefined what the function calls): trained again
        again = []
        student = _student(good, again)
        _run_cells(judge, [(validation, student), (None, None), (heldout, student)])
        assert len(again) == 2
        if not forged_ref:  # a redefinition the judge cannot see (inside a test cell)
            one, two = [], []
            assert _run_cells(judge, [(validation, _student(good, one)),
                                      (heldout, _student(bad, two))]) == {
                validation: True, heldout: False}
            assert len(one) == len(two) == 1
    finally:
        judge.close()


def test_without_a_judge_the_hidden_tests_say_when_they_run(monkeypatch):
    monkeypatch.delenv("COURSE_JUDGE", raising=False)
    with pytest.raises(RuntimeError, match="only while the course grades"):
        client.check_sigmoid(lambda z: z)


def test_the_judge_stops_a_notebook_past_its_total_time():
    """It kills the process group the kernel manager started (never a pid the kernel names)."""
    import subprocess
    import sys

    judge = server.Judge(notebook_time_limit=0.5)
    try:
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                                   start_new_session=True)
        judge.begin({})
        judge.kernel_started(sleeper.pid)
        judge.on_cell_execute({"metadata": {}}, 0)
        sleeper.wait(timeout=120)  # killed after 0.5 s; the margin is for a busy machine
        assert judge.end().out_of_time
    finally:
        judge.close()
    assert sleeper.returncode == -9


def _raw(judge, payload: bytes):
    """Send the judge bytes as the kernel could, and wait until it has dealt with them."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(judge.address)
    try:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        sock.recv(1)  # the judge closes the connection once it is done with it
    except (ConnectionResetError, BrokenPipeError):
        pass  # closed before reading it all: refused
    sock.close()


def _frame(obj) -> bytes:
    import json

    body = json.dumps(obj).encode()
    return len(body).to_bytes(8, "big") + body


@pytest.mark.parametrize("payload,what", [
    (_frame({"op": "hello", "pid": 1}), "wire"),  # the kernel may not name a pid
    (_frame({"op": "flag", "what": "file", "detail": "x"}), "wire"),
    (_frame([1, 2]), "wire"),
    (len(b"{not json}").to_bytes(8, "big") + b"{not json}", "wire"),
    ((2**40).to_bytes(8, "big"), "wire"),  # a frame larger than MAX_FRAME
])
def test_what_is_not_a_check_request_is_refused_and_flagged(payload, what):
    judge = server.Judge()
    try:
        judge.begin({})
        _raw(judge, payload)
        record = judge.end()
    finally:
        judge.close()
    assert [f.what for f in record.flags] == [what]
    assert record.kernel_pid is None


def test_a_flood_of_bytes_is_cut_off_and_flagged(monkeypatch):
    monkeypatch.setattr(server, "MAX_BYTES", 1000)
    judge = server.Judge()
    try:
        judge.begin({})
        body = b'{"op": "check", "check": "' + b"x" * 5000 + b'"}'
        _raw(judge, len(body).to_bytes(8, "big") + body)
        record = judge.end()
    finally:
        judge.close()
    assert [f.what for f in record.flags] == ["flood"]


def test_a_flood_of_connections_is_cut_off_and_flagged(monkeypatch):
    monkeypatch.setattr(server, "MAX_CONNECTIONS", 5)
    judge = server.Judge()
    try:
        judge.begin({})
        for _ in range(8):
            _raw(judge, _frame({"op": "check", "check": "check_sigmoid"}))
        record = judge.end()
    finally:
        judge.close()
    assert [f.what for f in record.flags].count("flood") == 1


def test_a_judge_folder_left_by_a_killed_process_is_swept(tmp_path):
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / f"{server.FOLDER_PREFIX}{gone}-abc"
    alive = tmp_path / f"{server.FOLDER_PREFIX}{os.getpid()}-abc"
    other = tmp_path / "something-else"
    for folder in (stale, alive, other):
        (folder / "judge").mkdir(parents=True)
    server.sweep_stale_folders(str(tmp_path))
    assert not stale.exists() and alive.exists() and other.exists()


# -- the tamper reader ---------------------------------------------------------------------


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_course_own_notebooks_raise_no_finding(assignment):
    """Neither the release (what students start from) nor the solutions look like tampering."""
    source = nbformat.read(str(source_path(assignment)), as_version=4)
    release = nbformat.read(str(release_path(assignment)), as_version=4)
    assert tamper.inspect_submission(release, source) == []
    assert tamper.inspect_submission(source, source) == []
    for cell in source.cells:  # every cell read as if a student had written it
        if cell.cell_type == "code":
            assert tamper.scan_code(tamper.strip_hidden(cell.source), {}) == [], cell.source


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
    ("import ctypes", "introspection"),
    ("open('/course/gradebook.db')", "file"),
])
def test_tampering_code_is_named(code, what):
    assert what in [w for w, _ in tamper.scan_code(code, {})]


def test_torch_is_not_a_finding_in_any_lesson():
    """Where gradients are asked by hand, torch is simply absent from the sandbox."""
    assert tamper.scan_code("import torch\nimport torch.autograd as ag", {}) == []


def test_the_judge_loads_a_submissions_checks_when_it_begins():
    """Judge.begin imports the modules of the checks it expects (lesson 05's import
    torch), while the kernel starts, not at the first hidden test; a name that is no
    check changes nothing until it is called. A fresh process: here the test session
    has imported every lesson's checks already."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from course_lib.judge import server\n"
            "judge = server.Judge()\n"
            "before = 'course_lib.grading.autograd' in sys.modules\n"
            "judge.begin({'Value_arithmetic': [('check_Value', 'arithmetic')],\n"
            "             'odd': [('check_no_such_thing', 'all'), ('not a check', 'x')]})\n"
            "print(before, 'course_lib.grading.autograd' in sys.modules, 'torch' in sys.modules)\n"
            "judge.end()\n"
            "judge.close()\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env={**os.environ})
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["False", "True", "True"]
