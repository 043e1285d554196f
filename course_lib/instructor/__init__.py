"""Instructor tooling, built on nbgrader's own API (grading side only)."""

import sys

# jsonschema imports rfc3987_syntax when it can, to check the "iri" string format, and
# that import builds a grammar: about a second in every process that imports nbformat
# (each `course` command, each grading worker). nbformat validates notebooks without
# format checks, so grading never uses it and grades the same without it. None in
# sys.modules makes the import fail, which jsonschema expects; only if nothing has
# imported jsonschema yet (issue 17: measured in bench/grading_bench.py).
if "jsonschema" not in sys.modules:
    sys.modules.setdefault("rfc3987_syntax", None)
