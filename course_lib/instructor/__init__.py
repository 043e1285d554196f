"""Instructor tooling, built on nbgrader's own API (grading side only)."""
