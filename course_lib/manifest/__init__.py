'''The course's exercises, one manifest per lesson: what is graded, never how to answer it.

Each lesson has a file ``course_lib/manifest/<slug>.toml`` (the slug every layer
uses: ``reference/<slug>.py``, ``grading/<slug>.py``, ``widgets/<slug>.py``,
``figures/<slug>.py``) that names its exercises: the graded function, its parts
with their points, the written questions, and the mistakes its check diagnoses.
Everything else follows from it:

* a check's parts (``grading._core.run_parts`` refuses a check whose parts
  differ from its exercise's) and the wording of the known mistakes listed here
  (``grading._core.known_mistake``: one wording, one place);
* the judge: the check and part a test cell expects, from its grade id
  (``judge.server.expected_checks``);
* the release: every test cell's hidden block calls its check and part, with
  the points the manifest gives (``instructor.release.verify_notebook``);
* the demo class: one simulated student per mistake marked ``demo = true``
  (``instructor.demo.MISTAKES``);
* the tests: the lesson harness (tests/lessons.py) is parametrised by it, and
  tests/test_manifest.py walks it.

No answers are in it (the mistakes' ``old`` texts are fragments of the source
solutions, so it stays on the grading side: ``judge.GRADING_ONLY``).

Names follow from the function: the check is ``check_<function>``, the answer
cell's grade id ``<function>_answer``, a part's test cell ``<function>_<part>``,
and ``written_*`` a written question graded by hand.

Adding an exercise
------------------
Say lesson 2 gains ``softplus_prime(z)`` with two cells worth 1 and 2 points:

1. the entry, in ``course_lib/manifest/sigmoid.toml`` (parts in the order they run
   with ``part="all"``; a mistake is an edit of the source solution that its
   check must name, in the part given, with exactly this wording)::

       [[exercise]]
       function = "softplus_prime"
       name = "The derivative of softplus"
       parts = { values = 1, edge = 2 }
       # uses = ["sigmoid"]   only if it calls another graded function by design:
       #                      then the lesson says so where it asks for it

       [[exercise.mistake]]
       id = "softplus-prime-is-softplus"
       part = "values"
       summary = "softplus returned for its derivative"
       diagnostic = "you returned softplus(z) itself instead of its derivative σ(z)"
       old = "return sigmoid(z)"
       new = "return np.logaddexp(0.0, z)"
       demo = false          # true: a student of the demo class makes it

2. the answer: ``softplus_prime`` in ``course_lib/reference/sigmoid.py``;
3. the check: ``check_softplus_prime(softplus_prime, part="all")`` in
   ``course_lib/grading/sigmoid.py``, ending with
   ``run_parts(part, {"values": values, "edge": edge})``, whose mistake catalogue
   uses ``known_mistake("softplus-prime-is-softplus")`` as that mistake's text;
4. the lesson's cells: an answer cell ``softplus_prime_answer`` (solution
   block) and a test cell per part, ``softplus_prime_values`` (1 point) and
   ``softplus_prime_edge`` (2 points), whose hidden block is exactly::

       ### BEGIN HIDDEN TESTS
       from course_lib import grading
       grading.check_softplus_prime(softplus_prime, part="values")
       ### END HIDDEN TESTS

Then ``make release`` checks the cells against the entry (and names any cell
that differs), and ``tests/test_manifest.py`` checks the rest.

    from course_lib import manifest
    manifest.lesson("02_sigmoid").points            # by assignment or by slug
    manifest.exercise("sigmoid_prime").parts[0]     # Part('values', 'sigmoid_prime_values', 2)
    manifest.part_for("sigmoid_prime_edge")         # ('check_sigmoid_prime', 'edge')
'''

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Lesson", "Exercise", "Part", "Mistake", "Written", "ManifestError", "lessons",
           "lesson", "exercise", "exercises", "part_for", "mistake", "load"]

FOLDER = Path(__file__).resolve().parent
IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
ASSIGNMENT = re.compile(r"\d\d_\w+")
MISTAKE_ID = re.compile(r"[A-Za-z0-9]+(-[A-Za-z0-9]+)*")
RESERVED_PARTS = {"all", "answer"}  # part="all" runs every part; <function>_answer is the answer


class ManifestError(ValueError):
    """A manifest file that cannot be read, or that contradicts itself or another one."""


@dataclass(frozen=True)
class Part:
    """One graded cell of an exercise: ``check_<function>(fn, part=name)``, worth ``points``."""

    name: str
    grade_id: str
    points: int


@dataclass(frozen=True)
class Mistake:
    """A known wrong answer: the source solution with ``old`` replaced by ``new``.

    ``diagnostic`` is what the check says when it recognises it (after "This
    matches a known mistake: "), in the part ``part``; ``summary`` names it in a
    list (the demo's roster); ``demo``: a student of the demo class makes it.
    """

    id: str
    function: str
    part: str
    summary: str
    diagnostic: str
    old: str
    new: str
    demo: bool = False


@dataclass(frozen=True)
class Exercise:
    """A graded function (or class), its parts and its known mistakes."""

    function: str
    name: str
    lesson: str  # the slug
    parts: tuple[Part, ...]
    mistakes: tuple[Mistake, ...] = ()
    # Graded functions of the same lesson this one calls by design (a training loop calls
    # the student's own loss and update): it is graded with them, which the lesson says
    # where it asks for it, and a mistake in them may cost its points too. Every other
    # exercise is graded on its own (tests/test_fair_grading.py).
    uses: tuple[str, ...] = ()

    @property
    def check(self) -> str:
        return f"check_{self.function}"

    @property
    def answer_id(self) -> str:
        """The grade id of the answer cell."""
        return f"{self.function}_answer"

    @property
    def points(self) -> int:
        return sum(p.points for p in self.parts)

    def part(self, name: str) -> Part:
        for p in self.parts:
            if p.name == name:
                return p
        raise KeyError(f"exercise {self.function} has no part {name!r} "
                       f"(its parts: {', '.join(p.name for p in self.parts)})")


@dataclass(frozen=True)
class Written:
    """A written question, graded by hand."""

    grade_id: str
    points: int


@dataclass(frozen=True)
class Lesson:
    slug: str
    assignment: str
    title: str
    exercises: tuple[Exercise, ...]
    written: tuple[Written, ...] = ()

    @property
    def points(self) -> int:
        return sum(e.points for e in self.exercises) + sum(w.points for w in self.written)

    @property
    def path(self) -> Path:
        return FOLDER / f"{self.slug}.toml"


# ---------------------------------------------------------------------------
# reading and validating
# ---------------------------------------------------------------------------

def _fields(where: str, table, required: dict[str, type], optional: dict[str, type]) -> dict:
    """The table's fields, each of the right type; an unknown key is an error (a typo)."""
    if not isinstance(table, dict):
        raise ManifestError(f"{where}: expected a table, got {type(table).__name__}")
    unknown = set(table) - set(required) - set(optional)
    if unknown:
        raise ManifestError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                            f"(known: {', '.join([*required, *optional])})")
    missing = [k for k in required if k not in table]
    if missing:
        raise ManifestError(f"{where}: missing {', '.join(missing)}")
    for key, kind in {**required, **optional}.items():
        if key in table and not isinstance(table[key], kind):
            raise ManifestError(f"{where}: {key} must be a {kind.__name__}, got "
                                f"{type(table[key]).__name__} ({table[key]!r:.60})")
    for key, value in table.items():
        if isinstance(value, str) and not value.strip():
            raise ManifestError(f"{where}: {key} is empty")
    return table


def _points(where: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ManifestError(f"{where}: points must be a whole number > 0, got {value!r}")
    return value


def _mistake(where: str, table, function: str, parts: tuple[Part, ...]) -> Mistake:
    t = _fields(where, table, {"id": str, "part": str, "summary": str, "diagnostic": str,
                               "old": str, "new": str}, {"demo": bool})
    where = f"{where} ({t['id']})"
    if not MISTAKE_ID.fullmatch(t["id"]):
        raise ManifestError(f"{where}: id must be words (letters, digits) joined by '-', "
                            f"e.g. 'jacobian-sign'")
    if t["part"] not in {p.name for p in parts}:
        raise ManifestError(f"{where}: part {t['part']!r} is not a part of {function} "
                            f"({', '.join(p.name for p in parts)})")
    if t["old"] == t["new"]:
        raise ManifestError(f"{where}: old and new are the same text: the edit changes nothing")
    return Mistake(t["id"], function, t["part"], t["summary"], t["diagnostic"], t["old"],
                   t["new"], t.get("demo", False))


def _exercise(where: str, table, slug: str) -> Exercise:
    t = _fields(where, table, {"function": str, "name": str, "parts": dict},
                {"mistake": list, "uses": list})
    function = t["function"]
    where = f"{where} ({function})"
    if not IDENTIFIER.fullmatch(function):
        raise ManifestError(f"{where}: function must be a Python name")
    if not t["parts"]:
        raise ManifestError(f"{where}: parts is empty; an exercise has at least one part")
    parts = []
    for name, points in t["parts"].items():
        if not IDENTIFIER.fullmatch(name) or name in RESERVED_PARTS:
            raise ManifestError(f"{where}: part {name!r} must be a Python name other than "
                                f"{' and '.join(sorted(RESERVED_PARTS))}")
        parts.append(Part(name, f"{function}_{name}", _points(f"{where}, part {name}", points)))
    parts = tuple(parts)
    mistakes = tuple(_mistake(f"{where}, mistake {i + 1}", m, function, parts)
                     for i, m in enumerate(t.get("mistake", [])))
    uses = tuple(t.get("uses", []))
    if not all(isinstance(u, str) and IDENTIFIER.fullmatch(u) and u != function for u in uses):
        raise ManifestError(f"{where}: uses must list other graded functions by name, got "
                            f"{list(uses)!r}")
    return Exercise(function, t["name"], slug, parts, mistakes, uses)


def read_lesson(path: Path) -> Lesson:
    """One manifest file, validated on its own (load() checks the course as a whole)."""
    path = Path(path)
    where = f"course_lib/manifest/{path.name}"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{where}: not valid TOML: {exc}") from None
    t = _fields(where, data, {"slug": str, "assignment": str, "title": str, "exercise": list},
                {"written": list})
    if t["slug"] != path.stem:
        raise ManifestError(f"{where}: slug {t['slug']!r} differs from the file's name; the "
                            f"file of lesson {t['slug']!r} is {t['slug']}.toml")
    if not IDENTIFIER.fullmatch(t["slug"]):
        raise ManifestError(f"{where}: slug must be a Python name (it names modules)")
    if not ASSIGNMENT.fullmatch(t["assignment"]):
        raise ManifestError(f"{where}: assignment {t['assignment']!r} must look like "
                            "'02_sigmoid' (two digits, an underscore, a name)")
    exercises = tuple(_exercise(f"{where}, exercise {i + 1}", e, t["slug"])
                      for i, e in enumerate(t["exercise"]))
    if not exercises:
        raise ManifestError(f"{where}: no exercise")
    graded = {e.function for e in exercises}
    for e in exercises:
        if set(e.uses) - graded:
            raise ManifestError(f"{where}, exercise {e.function}: uses "
                                f"{', '.join(sorted(set(e.uses) - graded))}, which no exercise "
                                "of this lesson grades")
    written = []
    for i, w in enumerate(t.get("written", [])):
        w = _fields(f"{where}, written {i + 1}", w, {"grade_id": str, "points": int}, {})
        if not w["grade_id"].startswith("written_"):
            raise ManifestError(f"{where}, written {i + 1}: grade_id {w['grade_id']!r} must "
                                "start with 'written_'")
        written.append(Written(w["grade_id"], _points(f"{where}, {w['grade_id']}", w["points"])))
    return Lesson(t["slug"], t["assignment"], t["title"], exercises, tuple(written))


def _unique(kind: str, items) -> None:
    """items: (name, where) pairs; a name seen twice is an error naming both places."""
    seen: dict[str, str] = {}
    for name, where in items:
        if name in seen:
            raise ManifestError(f"{kind} {name!r} appears twice: in {seen[name]} and in {where}")
        seen[name] = where


def validate(course: tuple[Lesson, ...]) -> tuple[Lesson, ...]:
    """What must hold across lessons: slugs, assignments, functions, grade ids, mistake ids
    each appear once in the course (a grade id names its exercise course-wide)."""
    _unique("lesson slug", ((les.slug, les.path.name) for les in course))
    _unique("assignment", ((les.assignment, les.path.name) for les in course))
    _unique("function", ((e.function, les.path.name) for les in course for e in les.exercises))
    _unique("grade id", [(g, les.path.name) for les in course for e in les.exercises
                         for g in (e.answer_id, *(p.grade_id for p in e.parts))]
            + [(w.grade_id, les.path.name) for les in course for w in les.written])
    _unique("mistake id", ((m.id, les.path.name) for les in course for e in les.exercises
                           for m in e.mistakes))
    return course


def load(folder: Path = FOLDER) -> tuple[Lesson, ...]:
    """Every lesson's manifest in ``folder``, in assignment order, validated."""
    return validate(tuple(sorted((read_lesson(p) for p in Path(folder).glob("*.toml")),
                                 key=lambda les: les.assignment)))


# ---------------------------------------------------------------------------
# lookups (the course's own manifest, read once)
# ---------------------------------------------------------------------------

@functools.cache
def lessons() -> tuple[Lesson, ...]:
    return load()


@functools.cache
def _index() -> dict:
    by_function = {e.function: e for les in lessons() for e in les.exercises}
    return {
        "lesson": {k: les for les in lessons() for k in (les.slug, les.assignment)},
        "function": by_function,
        "grade_id": {p.grade_id: (e, p) for e in by_function.values() for p in e.parts},
        "mistake": {m.id: m for e in by_function.values() for m in e.mistakes},
    }


def _known(kind: str, key: str):
    try:
        return _index()[kind][key]
    except KeyError:
        raise KeyError(f"no {kind.replace('_', ' ')} {key!r} in the course's manifest "
                       f"(course_lib/manifest/*.toml)") from None


def lesson(key: str) -> Lesson:
    """A lesson by its slug ('sigmoid') or its assignment ('02_sigmoid')."""
    return _known("lesson", key)


def exercises() -> tuple[Exercise, ...]:
    """Every exercise of the course, in lesson order."""
    return tuple(e for les in lessons() for e in les.exercises)


def exercise(function: str) -> Exercise:
    """The exercise whose graded function (or class) is ``function``."""
    return _known("function", function)


def part_for(grade_id: str) -> tuple[str, str]:
    """(check name, part) that the test cell ``grade_id`` runs, e.g. ('check_bce', 'edge').

    Grade ids are unique across the course (validate), so the assignment is not
    needed: a course built from the lessons' exercises (tests/toycourse.py)
    grades like the lessons.
    """
    ex, part = _known("grade_id", grade_id)
    return ex.check, part.name


def mistake(mistake_id: str) -> Mistake:
    return _known("mistake", mistake_id)
