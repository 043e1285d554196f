"""Plain data across the judge's socket: JSON frames, arrays as raw bytes, no pickle.

The grading process must never run code that came from a student, so nothing
here unpickles or evaluates: a value is encoded as JSON with a few tagged
forms, and decoding only builds numbers, strings, containers and arrays.

    None, bool, int, float, str      as themselves (NaN and inf included)
    tuple / list / dict (str keys)   {"t": [...]}, [...], {"d": [[k, v], ...]}
    numpy array / scalar             {"nd": dtype, "shape": [...], "b64": raw bytes}
                                     {"np": dtype, "b64": raw bytes}
    torch tensor                     {"tensor": dtype, "shape", "b64", "requires_grad"}
                                     (decoded detached: no graph, no .grad)
    anything else                    {"opaque": type name, "repr": first 200 characters}
    an array that *is* an argument   {"arg": path}: decoded as the caller's own array,
                                     so "you returned your input" stays visible
    an array met twice in a value    {"same": path}: decoded as the one array at path in
                                     the same value, so `return d, d` stays one array

A frame is an 8-byte big-endian length and that many bytes of UTF-8 JSON.
"""

from __future__ import annotations

import base64
import json
import struct

import numpy as np

# A course answer is a few arrays (the largest, lesson 3's no-matrix test, about 4 MiB
# with its arguments): a bigger frame is a runaway result. JSON's objects cost far more
# in memory than on the wire (``{}`` is 2 bytes sent, ~64 held), so a frame may also
# hold only so many of them: a flood of tiny objects cannot fill the grader's memory.
MAX_FRAME = 64 * 2**20
MAX_CONTAINERS = 100_000  # JSON objects and arrays in one frame (an answer has dozens)
_HEADER = struct.Struct(">Q")


class WireError(Exception):
    """The other side sent something that is not a frame of plain data."""


class Opaque:
    """Stands for a value that is not plain data; only its type name and repr cross."""

    def __init__(self, type_name: str, text: str):
        self.type_name, self.text = type_name, text

    def __repr__(self) -> str:
        return self.text


def _opaque_class(type_name: str):
    # Messages say "got a <type name>": give the stand-in the student's type name.
    return type(type_name if type_name.isidentifier() else "Opaque", (Opaque,), {})


def encode(value, args=None):
    """``value`` as JSON-ready data; arrays that are among ``args`` become references,
    and so does an array met a second time in ``value`` (to its first place)."""
    refs = {}
    if args is not None:
        _index_arrays(args, (), refs)
    return _enc(value, refs, 0, (), {})


def _index_arrays(value, path, refs):
    if isinstance(value, np.ndarray):
        refs.setdefault(id(value), list(path))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _index_arrays(v, path + (i,), refs)


def _b64(arr) -> str:
    return base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode("ascii")


def _enc(v, refs, depth, path, seen):
    """``seen``: id of each array encoded so far in this value -> its path (the value
    holds them all, so no id is reused while encoding)."""
    if depth > 50:
        return {"opaque": type(v).__name__, "repr": "(nested too deeply)"}
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int) and type(v) is int:
        return v if abs(v) < 2**63 else {"opaque": "int", "repr": repr(v)[:200]}
    if isinstance(v, float) and type(v) is float:
        return v
    if isinstance(v, np.ndarray):
        if id(v) in refs:
            return {"arg": refs[id(v)]}
        if id(v) in seen:
            return {"same": seen[id(v)]}
        seen[id(v)] = list(path)
        if v.dtype.kind not in "biufc":
            return {"opaque": "ndarray", "repr": f"array of dtype {v.dtype}"}
        return {"nd": v.dtype.str, "shape": list(v.shape), "b64": _b64(v)}
    if isinstance(v, np.generic) and v.dtype.kind in "biufc":
        return {"np": v.dtype.str, "b64": _b64(np.asarray(v))}
    if type(v).__module__ == "torch" and type(v).__name__ in ("Tensor", "Parameter"):
        arr = v.detach().cpu().numpy()
        return {"tensor": arr.dtype.str, "shape": list(arr.shape), "b64": _b64(arr),
                "requires_grad": bool(v.requires_grad)}
    if isinstance(v, tuple) and type(v) is tuple:
        return {"t": [_enc(x, refs, depth + 1, (*path, i), seen) for i, x in enumerate(v)]}
    if isinstance(v, list) and type(v) is list:
        return [_enc(x, refs, depth + 1, (*path, i), seen) for i, x in enumerate(v)]
    if isinstance(v, dict) and type(v) is dict and all(isinstance(k, str) for k in v):
        return {"d": [[k, _enc(x, refs, depth + 1, (*path, k), seen)] for k, x in v.items()]}
    try:
        text = repr(v)[:200]
    except Exception:  # noqa: BLE001 - a student's __repr__ may raise anything
        text = f"<{type(v).__name__}>"
    return {"opaque": type(v).__name__, "repr": text}


def decode(data, args=None):
    """The value ``encode`` described; ``{"arg": path}`` resolves into ``args``,
    ``{"same": path}`` to the array decoded earlier at that path of the value."""
    return _dec(data, args, (), {})


def _dec(data, args, path, arrays):
    """``arrays``: path -> array decoded so far in this value (for "same")."""
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [_dec(x, args, (*path, i), arrays) for i, x in enumerate(data)]
    if not isinstance(data, dict) or len(data) == 0:
        raise WireError(f"not plain data: {data!r:.80}")
    if "t" in data:
        return tuple(_dec(x, args, (*path, i), arrays) for i, x in enumerate(data["t"]))
    if "d" in data:
        return {str(k): _dec(x, args, (*path, str(k)), arrays) for k, x in data["d"]}
    if "same" in data:
        try:
            return arrays[tuple(data["same"])]
        except (KeyError, TypeError):
            raise WireError(f"reference to no earlier array: {data['same']!r:.80}") from None
    if "nd" in data or "tensor" in data:
        dtype = np.dtype(data.get("nd") or data["tensor"])
        if dtype.kind not in "biufc":
            raise WireError(f"array of dtype {dtype} is not plain data")
        arr = np.frombuffer(base64.b64decode(data["b64"]), dtype=dtype).reshape(data["shape"])
        arr = arr.copy()  # writable, owned
        if "tensor" in data:
            import torch

            return torch.from_numpy(arr).requires_grad_(bool(data["requires_grad"])
                                                        and dtype.kind in "fc")
        arrays[path] = arr
        return arr
    if "np" in data:
        dtype = np.dtype(data["np"])
        return np.frombuffer(base64.b64decode(data["b64"]), dtype=dtype)[0]
    if "arg" in data:
        target = args
        try:
            for i in data["arg"]:
                target = target[int(i)]
        except (TypeError, IndexError, ValueError):
            raise WireError(f"reference to no argument: {data['arg']!r}") from None
        return target
    if "opaque" in data:
        return _opaque_class(str(data["opaque"]))(str(data["opaque"]), str(data["repr"]))
    raise WireError(f"unknown tag in {sorted(data)!r}")


def send(sock, message: dict) -> None:
    """One frame: the JSON of ``message`` (already plain) after its length."""
    body = json.dumps(message, allow_nan=True).encode()
    if len(body) > MAX_FRAME:
        raise WireError(f"message of {len(body) / 2**20:.0f} MiB is larger than "
                        f"{MAX_FRAME / 2**20:.0f} MiB")
    sock.sendall(_HEADER.pack(len(body)) + body)


def _recv_exactly(sock, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise EOFError("the other side closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def recv(sock) -> dict:
    """The next frame as a dict (EOFError when the connection closed)."""
    (size,) = _HEADER.unpack(_recv_exactly(sock, _HEADER.size))
    if size > MAX_FRAME:
        raise WireError(f"frame of {size} bytes is larger than {MAX_FRAME}")
    body = _recv_exactly(sock, size)
    if body.count(b"{") + body.count(b"[") > MAX_CONTAINERS:  # counted before parsing
        raise WireError(f"frame with more than {MAX_CONTAINERS} JSON objects and arrays")
    try:
        message = json.loads(body)
    except RecursionError:  # nested deeper than the parser goes
        raise WireError("frame nested too deeply") from None
    if not isinstance(message, dict):
        raise WireError("a frame must hold a JSON object")
    return message
