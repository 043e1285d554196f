"""Instructor tooling, built on nbgrader's own API (grading side only)."""

import atexit
import gc
import sys

# jsonschema imports rfc3987_syntax when it can, to check the "iri" string format, and
# that import builds a grammar: about a second in every process that imports nbformat
# (each `course` command, each grading worker). nbformat validates notebooks without
# format checks, so grading never uses it and grades the same without it. None in
# sys.modules makes the import fail, which jsonschema expects; only if nothing has
# imported jsonschema yet (issue 17: measured in bench/grading_bench.py).
if "jsonschema" not in sys.modules:
    sys.modules.setdefault("rfc3987_syntax", None)

# A process that ends (each `course` command, each grading worker) spent up to half a
# second in the interpreter's last garbage collections, over every object that torch,
# nbgrader and SQLAlchemy made. Nothing in them needs collecting then: frozen, they are
# left alone and the process ends at once (atexit runs the last-registered first, so
# every other exit handler still runs before this one).
atexit.register(gc.freeze)
