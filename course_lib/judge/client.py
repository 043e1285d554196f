"""The kernel side of the judge: what ``course_lib.grading`` is while grading.

A hidden test cell calls ``check_sigmoid(sigmoid, part="values")`` of grading. Here
that call opens a connection to the judge (the Unix socket in ``COURSE_JUDGE``)
and then only does what the judge asks: call the student's function on the
arguments it sends, or run a named probe of ``judge.experiments`` on the
student's object, and send the results back as plain data. The judge compares
them with the reference in its own process and sends a verdict, which this
side turns into the ``AssertionError`` the student reads.

Nothing here knows an answer or decides a score: replacing this module, or
anything it uses, can only lose marks.
"""

from __future__ import annotations

import _socket
import os

import numpy as np

from . import wire
from .experiments import run_experiment

# Bound now, before any student code runs: later patches of the socket module
# do not reach the judge's connection.
_SOCKET, _AF_UNIX, _STREAM = _socket.socket, _socket.AF_UNIX, _socket.SOCK_STREAM

NO_JUDGE = ("the hidden tests run only while the course grades a notebook (course grade / "
            "course check); the visible tests above are the ones to run while you work")


def _connect():
    path = os.environ.get("COURSE_JUDGE")
    if not path:
        raise RuntimeError(NO_JUDGE)
    sock = _SOCKET(_AF_UNIX, _STREAM)
    sock.connect(path)
    return sock


def _answer(sock, do, args_for_refs=None):
    """Run ``do()`` (the student's code) and send its result or its exception; with
    ``args_for_refs`` (the call's arguments), also each argument the call changed."""
    before = _snapshot(args_for_refs) if args_for_refs is not None else None
    try:
        out = do()
    except (KeyboardInterrupt, SystemExit):
        raise  # the grader's time limit (or the student's exit): let it through
    except BaseException as exc:  # noqa: BLE001 - every error of the student's is reported
        wire.send(sock, {"op": "raised", "type": type(exc).__name__,
                         "message": _text(exc)})
        return
    try:
        reply = {"op": "result", "value": wire.encode(out, args_for_refs)}
        if args_for_refs is not None:
            # the judge sees a change in place as the caller would (judge.server's
            # _copy_back); an argument left as it came is not sent back: lesson 3's
            # large inputs are 2 MB, whose round trip cost the check 17 ms
            pairs = zip(args_for_refs, before, strict=True)
            reply["args_changed"] = wire.encode({str(i): arg for i, (arg, was)
                                                 in enumerate(pairs)
                                                 if not _unchanged(arg, was)})
        wire.send(sock, reply)
    except wire.WireError as exc:
        wire.send(sock, {"op": "raised", "type": "ValueError",
                         "message": f"the result could not be sent to the grader: {exc}"})


def _snapshot(value):
    """A copy of plain data as the judge sent it (arrays and containers copied)."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, (list, tuple)):
        return type(value)(_snapshot(v) for v in value)
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    return value


def _unchanged(now, was) -> bool:
    """Is ``now`` what its ``_snapshot`` ``was`` holds: same types, shapes and bytes?
    Anything it cannot tell (a NaN, an object the student put there) counts as changed,
    and is sent."""
    try:
        if type(now) is not type(was):
            return False
        if isinstance(was, np.ndarray):
            return (now.dtype == was.dtype and now.shape == was.shape
                    and now.tobytes() == was.tobytes())
        if isinstance(was, (list, tuple)):
            return len(now) == len(was) and all(map(_unchanged, now, was))
        if isinstance(was, dict):
            return now.keys() == was.keys() and all(_unchanged(now[k], was[k]) for k in was)
        if isinstance(was, (int, float, complex, str, type(None), np.generic)):
            return bool(now == was)
        return False  # a tensor (not copied by _snapshot) or anything else: sent
    except Exception:  # noqa: BLE001 - a student's object: send it, the judge decides
        return False


def _text(exc) -> str:
    try:
        return str(exc)[:4000]
    except Exception:  # noqa: BLE001 - a student's __str__ may raise
        return f"<{type(exc).__name__}>"


# Every object a check was asked about, kept alive, so that its id is never another's.
_KEPT: dict[int, object] = {}


def _ref(obj) -> int:
    """This kernel's number for ``obj``: the same for the same object, another one for
    any other (a redefined function is another object). The judge may reuse, within one
    notebook, what the same object returned to an earlier check (judge.server's
    Remote.remembered); a wrong number here could only get this notebook's own
    results back."""
    _KEPT[id(obj)] = obj
    return id(obj)


def run_check(check: str, obj, part: str = "all") -> None:
    """Serve the judge's requests for one check until its verdict; raise if it failed."""
    sock = _connect()
    try:
        wire.send(sock, {"op": "check", "check": check, "part": str(part),
                         "object": getattr(obj, "__name__", type(obj).__name__),
                         "ref": _ref(obj)})
        while True:
            msg = wire.recv(sock)
            op = msg.get("op")
            if op == "call":
                args = wire.decode(msg["args"])
                _answer(sock, lambda args=args: obj(*args), args)
            elif op == "experiment":
                inputs = wire.decode(msg["inputs"])
                _answer(sock, lambda m=msg, i=inputs: run_experiment(obj, m["name"], i))
            elif op == "verdict":
                break
            else:
                raise wire.WireError(f"unexpected request {op!r}")
    finally:
        sock.close()
    if msg.get("passed"):
        return
    exc = NotImplementedError if msg.get("exc") == "NotImplementedError" else AssertionError
    raise exc(msg.get("message", "")) from None


def __getattr__(name: str):
    """``check_<anything>`` of grading: a function that asks the judge to run that check."""
    if not name.startswith("check_"):
        raise AttributeError(name)

    def check(obj, part="all"):
        run_check(name, obj, part)

    check.__name__ = check.__qualname__ = name
    return check
