"""Submissions with exactly one mistake, and the standard a visible test's asserts meet.

Helpers of tests/test_fair_grading.py (issue 14, "one mistake costs its own points").
Everything is read from the source notebooks at run time: the lessons' cells change
while their authors work, and these helpers must follow them.

    exercises(nb)                 the lesson's exercises: answer cell, graded names, test cells
    one_wrong(nb, name)           the source notebook with only `name` wrong
    unexplained_asserts(source)   the asserts of a visible test cell that do not explain a failure
"""

from __future__ import annotations

import ast
import copy
from dataclasses import dataclass, field

from course_lib.judge.tamper import strip_hidden


def meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def is_answer(cell) -> bool:
    """A code cell the student writes (nbgrader solution cell)."""
    return cell.cell_type == "code" and bool(meta(cell).get("solution"))


def is_test(cell) -> bool:
    """An autograded test cell (nbgrader: grade, not solution)."""
    m = meta(cell)
    return cell.cell_type == "code" and bool(m.get("grade")) and not m.get("solution")


def defined_names(source: str) -> list[str]:
    """The functions and classes an answer cell defines at its top level."""
    return [node.name for node in ast.parse(source).body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef))]


@dataclass
class Exercise:
    answer: str  # grade_id of the answer cell
    names: list[str]  # what it defines (the graded functions or classes)
    tests: list[str] = field(default_factory=list)  # grade_ids of its test cells
    is_class: dict[str, bool] = field(default_factory=dict)


def exercises(nb) -> tuple[list[Exercise], list[str]]:
    """The exercises of a notebook, in order, and the test cells that precede every
    answer cell (they belong to no exercise). An exercise is an answer cell and the
    test cells between it and the next answer cell."""
    found: list[Exercise] = []
    orphans: list[str] = []
    for cell in nb.cells:
        if is_answer(cell):
            tree = ast.parse(cell.source)
            kinds = {n.name: isinstance(n, ast.ClassDef) for n in tree.body
                     if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
            found.append(Exercise(meta(cell)["grade_id"], list(kinds), is_class=kinds))
        elif is_test(cell):
            (found[-1].tests if found else orphans).append(meta(cell)["grade_id"])
    return found, orphans


# -- one wrong function ---------------------------------------------------------------------

# Appended to the answer cell, after the student's (here: the model) solution. The
# function keeps its name and signature; every float it returns (in a number, an array,
# or a tuple, list or dict of them) becomes 1.5 x + 0.25: wrong for every input, zero
# included. The right function stays reachable as _right_<name> (see one_wrong).
PERTURB = '''

# -- made wrong on purpose by tests/one_mistake.py ---------------------------------------
def _one_mistake(value):
    import numpy
    if isinstance(value, (bool, numpy.bool_)):
        return value
    if isinstance(value, (float, numpy.floating)):
        return value * 1.5 + 0.25
    if isinstance(value, numpy.ndarray) and value.dtype.kind == "f":
        return value * 1.5 + 0.25
    if isinstance(value, tuple):
        return tuple(_one_mistake(v) for v in value)
    if isinstance(value, list):
        return [_one_mistake(v) for v in value]
    if isinstance(value, dict):
        return {k: _one_mistake(v) for k, v in value.items()}
    return value
'''

WRONG_FUNCTION = '''
_right_{name} = {name}


def _wrong_{name}(*args, **kwargs):
    return _one_mistake(_right_{name}(*args, **kwargs))


{name} = functools.wraps(_right_{name})(_wrong_{name})
'''

# A torch.autograd.Function (lesson 05's MySigmoid, MyLinear): its forward is right, its
# backward returns every gradient times 1.5.
WRONG_CLASS = '''
_right_{name} = {name}


class {name}(_right_{name}):
    @staticmethod
    def backward(ctx, *grad_outputs):
        grads = _right_{name}.backward(ctx, *grad_outputs)
        if isinstance(grads, tuple):
            return tuple(None if g is None else g * 1.5 for g in grads)
        return grads * 1.5
'''

# Functions whose result holds no float, that the generic wrapper cannot make wrong,
# and the mistake made instead (code run after the wrapper, on the right result `r`).
# grad_fn_chain returns a list of class names (str): it lists a node that is not in
# the graph.
NOT_NUMBERS = {
    "grad_fn_chain": "[*r, 'ExtraBackward0']",
}
WRONG_OTHER = '''
_right_{name} = {name}


def _wrong_{name}(*args, **kwargs):
    r = _right_{name}(*args, **kwargs)
    return {mistake}


{name} = functools.wraps(_right_{name})(_wrong_{name})
'''


# A graded function of a lesson of gradients by hand that computes with torch: right
# with the real torch, but torch is a stub while such a lesson is graded.
WITH_TORCH = '''
_right_{name} = {name}


def _with_torch_{name}(*args, **kwargs):
    import torch
    torch.zeros(1)  # any use of torch: ImportError while the lesson is graded
    return _right_{name}(*args, **kwargs)


{name} = functools.wraps(_right_{name})(_with_torch_{name})
'''


def with_torch_code(name: str, is_class: bool) -> str:
    """The code that, run after `name`'s definition, makes it compute with torch."""
    if is_class:
        raise ValueError(f"{name} is a class: lessons of gradients by hand have none")
    return "\nimport functools\n" + WITH_TORCH.format(name=name)


def wrong_code(name: str, is_class: bool) -> str:
    """The code that, run after `name`'s definition, makes it wrong."""
    if is_class:
        return "\n" + WRONG_CLASS.format(name=name)
    if name in NOT_NUMBERS:
        return "\nimport functools\n" + WRONG_OTHER.format(name=name, mistake=NOT_NUMBERS[name])
    return "\nimport functools\n" + PERTURB + WRONG_FUNCTION.format(name=name)


def _calls_right(source: str, name: str) -> str:
    """`source` with every use of the global `name` in it renamed `_right_name`."""
    tree = ast.parse(source)
    spots = sorted(((n.lineno, n.col_offset) for n in ast.walk(tree)
                    if isinstance(n, ast.Name) and n.id == name
                    and isinstance(n.ctx, ast.Load)), reverse=True)
    lines = source.splitlines(keepends=True)
    for lineno, col in spots:  # right to left: earlier offsets stay valid
        line = lines[lineno - 1]
        # col_offset counts UTF-8 bytes
        raw = line.encode()
        lines[lineno - 1] = (raw[:col] + f"_right_{name}".encode()
                             + raw[col + len(name.encode()):]).decode()
    return "".join(lines)


def one_wrong(nb, name: str, mistake=wrong_code):
    """A copy of the source notebook `nb` (every answer right) with only `name` made wrong
    (by ``mistake(name, is_class)``: wrong_code, or with_torch_code).

    Only that function is wrong: the submission's other answers that call it (the
    model solution of sigmoid_prime calls sigmoid, backprop calls dense_forward) call
    the right one, _right_<name>. A student whose backprop calls their own wrong
    dense_forward has a wrong backprop, which may fairly cost backprop's points; what
    this submission asks is whether the GRADER makes a right function pay for a wrong
    one (a test cell that calls it, a variable a later test reuses, a shared array).
    """
    nb = copy.deepcopy(nb)
    seen = False
    for cell in nb.cells:
        if not is_answer(cell):
            continue
        kinds = {n.name: isinstance(n, ast.ClassDef) for n in ast.parse(cell.source).body
                 if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        if name in kinds:
            cell.source = cell.source + "\n" + mistake(name, kinds[name])
            seen = True
        elif seen:
            cell.source = _calls_right(cell.source, name)
    if not seen:
        raise KeyError(f"no answer cell defines {name}")
    return nb


# -- the asserts of a visible test cell -----------------------------------------------------

PROPERTY_CALLS = {"isinstance", "issubclass", "hasattr", "callable", "type", "len", "shape"}
PROPERTY_ATTRS = {"shape", "dtype", "ndim", "size"}
VALUE_CALLS = {"allclose", "isclose", "array_equal", "array_equiv", "gradcheck"}


def _is_property(test: ast.expr) -> bool:
    """A pure property: a type, a shape, a dtype, a length (and no values compared)."""
    marked = False
    for node in ast.walk(test):
        if isinstance(node, ast.Call):
            func = node.func
            fname = func.id if isinstance(func, ast.Name) else \
                func.attr if isinstance(func, ast.Attribute) else None
            if fname in VALUE_CALLS:
                return False
            marked = marked or fname in PROPERTY_CALLS
        if isinstance(node, ast.Attribute) and node.attr in PROPERTY_ATTRS:
            marked = True
    return marked


def _interpolates(msg: ast.expr) -> bool:
    """Does the message show a value computed at run time?"""
    if isinstance(msg, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in msg.values)
    if isinstance(msg, ast.BinOp) and isinstance(msg.op, ast.Add):
        return any(not isinstance(side, ast.Constant) and
                   (not isinstance(side, (ast.JoinedStr, ast.BinOp)) or _interpolates(side))
                   for side in (msg.left, msg.right))
    if isinstance(msg, ast.BinOp) and isinstance(msg.op, ast.Mod):
        return not isinstance(msg.right, ast.Constant)
    if isinstance(msg, ast.Call) and isinstance(msg.func, ast.Attribute) \
            and msg.func.attr == "format":
        return bool(msg.args or msg.keywords)
    return False


def _text(msg: ast.expr) -> str:
    """The literal words of a message."""
    return " ".join(n.value for n in ast.walk(msg)
                    if isinstance(n, ast.Constant) and isinstance(n.value, str))


def _empty(msg: ast.expr) -> bool:
    if isinstance(msg, ast.Constant):
        return not (isinstance(msg.value, str) and msg.value.strip())
    if isinstance(msg, ast.JoinedStr):
        return not msg.values
    return False


def _resolve(msg: ast.expr, assigned: dict[str, ast.expr]) -> ast.expr:
    """A message held in a variable (`msg = f"..."; assert x, msg`): its expression."""
    if isinstance(msg, ast.Name) and msg.id in assigned:
        return assigned[msg.id]
    return msg


def unexplained_asserts(source: str) -> list[tuple[int, str, str]]:
    """The asserts of a visible test cell (hidden tests removed) that would not explain
    their failure, as (line, the assert's code, what is missing).

    The standard (issue 14): every assert has a message; `assert not <known mistake>`
    has a non-empty one (naming the mistake); every other assert's message says
    "expected" and shows the value that came back (an f-string, or `+`, `%` or
    `.format` built from a value), except that a pure property (a type, a shape)
    may show the value without the word. Gradient checks name what they check
    (`assert_gradient(..., name="dW of layer 2")`).
    """
    visible = strip_hidden(source)
    tree = ast.parse(visible)
    assigned: dict[str, ast.expr] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name):
            assigned[node.targets[0].id] = node.value
    bad = []
    for node in ast.walk(tree):
        where = getattr(node, "lineno", 0)
        code = ast.get_source_segment(visible, node) or ""
        if isinstance(node, ast.Call):
            func = node.func
            fname = func.id if isinstance(func, ast.Name) else \
                func.attr if isinstance(func, ast.Attribute) else None
            if fname == "assert_gradient" and not any(k.arg == "name" for k in node.keywords):
                bad.append((where, code, 'a gradient check without name= (which gradient?)'))
            continue
        if not isinstance(node, ast.Assert):
            continue
        if node.msg is None:
            bad.append((where, code, "no message"))
            continue
        msg = _resolve(node.msg, assigned)
        guard = isinstance(node.test, ast.UnaryOp) and isinstance(node.test.op, ast.Not)
        if guard:
            if _empty(msg):
                bad.append((where, code, "a guard with an empty message (name the mistake)"))
            continue
        if not isinstance(msg, (ast.Constant, ast.JoinedStr, ast.BinOp, ast.Call)):
            bad.append((where, code, "the message is a bare value: say what was expected, "
                        'e.g. f"expected ..., got {value}"'))
            continue
        says_expected = "expected" in _text(msg).lower()
        shows_value = _interpolates(msg)
        if _is_property(node.test) and shows_value:
            continue
        missing = [what for what, ok in (('the word "expected"', says_expected),
                                         ("the value that came back", shows_value)) if not ok]
        if missing:
            bad.append((where, code, "the message lacks " + " and ".join(missing)))
    return sorted(bad)
