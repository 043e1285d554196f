"""Read a submission for tampering before it runs.

Two kinds of finding, each a ``Finding`` with the test cells it costs:

- **The test cells themselves** (compared with the gradebook's copy): a test
  cell deleted or duplicated, or its nbgrader metadata changed (points, grade,
  locked, type). These cost that cell's points and are reported. A test cell
  whose code was edited is only noted: nbgrader runs the gradebook's copy in
  its place, so the edit changes nothing.
- **The student's code** (every code cell that is not the course's own,
  unchanged): replacing attributes of numpy, the checks or other modules;
  IPython hooks that could skip or rewrite later cells (input or AST
  transformers, event callbacks, custom exception handlers); importing the
  answers (``course_lib.reference``, ``course_lib.grading``); code built at run time
  (exec, eval, __import__); reaching into the interpreter (gc, frames,
  ctypes, inspect); reading the gradebook or the course's notebooks from disk.
  These are **notes** (a Finding whose ``scope`` is empty): they cost nothing
  by themselves. An honest student may well use ``inspect`` or ``exec`` in a
  scratch cell, and none of it can buy a point: the kernel's sandbox
  (judge.sandbox) holds no answers, and every verdict is reached outside it
  (judge.server), on values the student's functions return for inputs the
  judge chose. What the code manages to do is graded by that behaviour (a
  hidden test that never reaches the judge, or whose failure the kernel hid,
  costs the notebook: instructor.grade). The notes name, cell by cell, what a
  notebook tried, for the instructor's report.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass, field

ALL = "*"  # the scope of a finding that costs every autograded cell

HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS\n?", re.S)
MODULES_GUARDED = ("numpy", "torch", "course_lib", "builtins", "math", "IPython", "sys",
                   "unittest", "pytest", "nbgrader")
HOOK_ATTRS = {"input_transformers_cleanup", "input_transformers_post", "input_transformer_manager",
              "ast_transformers", "set_custom_exc", "set_hook", "excepthook", "showtraceback",
              "run_cell", "run_cell_async", "prefilter_manager", "displayhook",
              "register_magic_function", "custom_exceptions"}
DYNAMIC_CALLS = {"exec", "eval", "compile", "__import__"}
INTROSPECTION = {"gc", "ctypes", "inspect", "importlib", "_socket", "socket", "subprocess",
                 "multiprocessing"}
FILE_WORDS = re.compile(r"gradebook|\.ipynb|nbgrader|/source\b|/submitted\b|/autograded\b|"
                        r"COURSE_JUDGE|course_lib/reference|\.\./")


@dataclass
class Finding:
    what: str  # test-cell, metadata, patch, hook, answers, dynamic, introspection, file
    detail: str
    cell: str  # grade_id or "#n" of the cell where it is
    scope: set[str] = field(default_factory=set)  # grade_ids it costs, {ALL}, or none: a note

    @property
    def costs_points(self) -> bool:
        return bool(self.scope)

    def __str__(self) -> str:
        return f"{self.what}: {self.detail} (in cell {self.cell})"


def strip_hidden(source: str) -> str:
    """A test cell as students see it: the hidden tests removed (as nbgrader does)."""
    return HIDDEN.sub("", source)


def _norm(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def _name(cell, index: int) -> str:
    return _meta(cell).get("grade_id") or f"#{index + 1}"


def check_test_cells(submission, source_nb) -> list[Finding]:
    """Test cells deleted, edited, duplicated or with changed metadata.

    ``source_nb`` is the instructor's notebook (hidden tests included).
    """
    findings = []
    by_id: dict[str, list] = {}
    for cell in submission.cells:
        gid = _meta(cell).get("grade_id")
        if gid:
            by_id.setdefault(gid, []).append(cell)
    for cell in source_nb.cells:
        meta = _meta(cell)
        gid = meta.get("grade_id")
        if not gid:
            continue
        is_test = meta.get("grade") and not meta.get("solution")
        copies = by_id.get(gid, [])
        if not copies:
            if is_test or meta.get("solution"):
                findings.append(Finding("test-cell", f"cell {gid} was deleted", gid, {gid}))
            continue
        if len(copies) > 1:
            findings.append(Finding("test-cell", f"cell {gid} appears {len(copies)} times", gid,
                                    {gid}))
        mine = copies[0]
        changed = [f"{key}: {meta.get(key)!r} -> {_meta(mine).get(key)!r}"
                   for key in ("grade", "solution", "locked", "points")
                   if _meta(mine).get(key) != meta.get(key)]
        if mine.get("cell_type") != cell.get("cell_type"):
            changed.append(f"type: {cell.get('cell_type')} -> {mine.get('cell_type')}")
        if changed:
            scope = {gid} if meta.get("grade") else {ALL}
            findings.append(Finding("metadata", f"cell {gid}'s nbgrader metadata was changed ("
                                    + ", ".join(changed) + ")", gid, scope))
        if is_test and _norm(mine.get("source", "")) not in (_norm(strip_hidden(cell.source)),
                                                              _norm(cell.source)):
            findings.append(Finding("edited-test", f"test cell {gid} was edited (nbgrader runs "
                                    "the original)", gid))
    return findings


# A class's notebooks share most of their cells (the course's own code, unchanged): each
# cell is transformed and parsed once per process, not once per submission (lesson 04:
# 28 ms per notebook on a first pass, 4 ms once its cells are known).
@functools.lru_cache(maxsize=8192)
def _python(source: str) -> str:
    """The cell as IPython runs it: magics and shell escapes become Python calls."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:
        return source
    try:
        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - odd input: read it as it is
        return source


def _imported_modules(tree) -> dict[str, str]:
    """alias -> module for every import in ``tree``."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names[a.asname or a.name.split(".")[0]] = a.name if a.asname else \
                    a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


@functools.lru_cache(maxsize=8192)
def _imports_in(source: str) -> tuple[tuple[str, str], ...]:
    """(alias, module) for every import in one cell (none if it does not parse)."""
    try:
        return tuple(_imported_modules(ast.parse(_python(source))).items())
    except SyntaxError:
        return ()


def _root(node) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _guarded(module: str | None) -> bool:
    return bool(module) and module.split(".")[0] in MODULES_GUARDED


def scan_code(source: str, aliases: dict[str, str]):
    """(what, detail) for each suspicious construct in one cell's code."""
    try:
        tree = ast.parse(_python(source))
    except SyntaxError:
        return []  # it will fail when run; nothing can be hidden in code that does not parse
    aliases = {**aliases, **_imported_modules(tree)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names])
            for mod in mods:
                if mod.startswith(("course_lib.reference", "course_lib.grading",
                                   "course_lib.judge", "course_lib.instructor")):
                    out.append(("answers", f"imports {mod}"))
                elif mod.split(".")[0] in INTROSPECTION:
                    out.append(("introspection", f"imports {mod}"))
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for t in targets:
                if isinstance(t, (ast.Attribute, ast.Subscript)):
                    root = _root(t)
                    module = aliases.get(root) if root else None
                    if _guarded(module) or root in ("__builtins__", "grading"):
                        out.append(("patch", f"changes {ast.unparse(t)}"))
                    elif isinstance(t, ast.Attribute) and t.attr in HOOK_ATTRS:
                        out.append(("hook", f"sets {ast.unparse(t)}"))
        elif isinstance(node, ast.Attribute):
            if node.attr in HOOK_ATTRS or (node.attr == "register" and isinstance(
                    node.value, ast.Attribute) and node.value.attr == "events"):
                out.append(("hook", f"uses {ast.unparse(node)}"))
            elif node.attr in ("reference", "_core") and _root(node) in aliases \
                    and aliases[_root(node)].startswith("course_lib"):
                out.append(("answers", f"uses {ast.unparse(node)}"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in DYNAMIC_CALLS:
                out.append(("dynamic", f"calls {node.func.id}()"))
            elif node.func.id in ("setattr", "delattr") and node.args and (
                    _guarded(aliases.get(_root(node.args[0]))) or _root(node.args[0]) == "grading"):
                out.append(("patch", f"calls {node.func.id}({ast.unparse(node.args[0])}, ...)"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and FILE_WORDS.search(node.value):
            out.append(("file", f"refers to {node.value[:80]!r}"))
        elif isinstance(node, ast.Name) and node.id == "__builtins__":
            out.append(("patch", "uses __builtins__"))
    return list(dict.fromkeys(out))


def check_code(submission, source_nb) -> list[Finding]:
    """Suspicious code in the cells the student wrote or changed: notes, never a cost."""
    course_cells = {_norm(c.source) for c in source_nb.cells if c.cell_type == "code"}
    course_cells |= {_norm(strip_hidden(c.source)) for c in source_nb.cells
                     if c.cell_type == "code"}
    aliases = {}
    for cell in submission.cells:
        if cell.get("cell_type") == "code":
            aliases.update(_imports_in(cell.get("source", "")))
    findings = []
    for i, cell in enumerate(submission.cells):
        meta = _meta(cell)
        if cell.get("cell_type") != "code" or (meta.get("grade") and not meta.get("solution")):
            continue  # test cells are restored from the gradebook before they run
        if _norm(cell.get("source", "")) in course_cells:
            continue  # the course's own code, unchanged
        for what, detail in scan_code(cell.get("source", ""), aliases):
            findings.append(Finding(what, detail, _name(cell, i)))  # a note: costs nothing
    return findings


def inspect_submission(submission, source_nb) -> list[Finding]:
    """Every finding for one submission (test cells first, then code)."""
    return check_test_cells(submission, source_nb) + check_code(submission, source_nb)
