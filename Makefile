# The course's commands. Every target that runs code depends on `setup`, which
# builds .venv once and again only when requirements.txt or pyproject.toml change.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PIP := $(PY) -m pip --disable-pip-version-check --quiet

.PHONY: setup sandbox test test-fast test-stress test-repeat lint demo seeds release browser postgres clean help \
	lab formgrader bench student-wheel

help:
	@echo "make demo         set up, release, grade a simulated class: feedback, grades.csv, report"
	@echo "make test         set up, then run every test (in parallel, one worker per core) and ruff"
	@echo "make test-fast    the tests that start no kernel and no browser (under a minute)"
	@echo "make test-stress  the kernel-starting tests while every core is kept busy"
	@echo "make test-repeat  each lesson run headless 10 times in a row (LESSON_RUNS=n)"
	@echo "make setup        create .venv with the pinned requirements (safe to run twice)"
	@echo "make lab          the student's JupyterLab on a copy of release/ kept outside the repo"
	@echo "make formgrader   nbgrader's formgrader on the course, for grading by hand"

setup: $(STAMP) sandbox

# Sealed grading runs every grading kernel inside bubblewrap (course_lib/judge/sandbox.py):
# Debian's package, installed once. Where it cannot be installed, grading refuses with
# a message (and `course grade --unsealed` grades without it).
sandbox:
	@if ! command -v bwrap >/dev/null 2>&1; then \
	  echo "installing Debian's bubblewrap for sealed grading"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  { $$SUDO apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq bubblewrap >/dev/null; } || \
	  echo "make setup: could not install bubblewrap; grading will say what is missing"; \
	fi

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed, found " + sys.version' \
	  || { echo "make setup: Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements.txt
	$(PIP) install --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# Browser tests drive Debian's Chromium with Playwright (no browser download).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@echo "installing Debian's chromium for the browser tests"
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null

browser: $(CHROMIUM)

# The cluster-grading test starts its own PostgreSQL server (initdb in a temporary
# folder, a free port on 127.0.0.1) from Debian's binaries, installed once.
POSTGRES := $(firstword $(wildcard /usr/lib/postgresql/*/bin/postgres))
postgres:
	@if [ -z "$(POSTGRES)" ]; then \
	  echo "installing Debian's postgresql for the cluster-grading test"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql >/dev/null; \
	fi

# Test tiers (markers set in tests/conftest.py and pyproject.toml): `kernel` tests start
# Jupyter kernels, `browser` tests drive Chromium, `slow` ones take long otherwise.
# `make test` runs them all, a file per worker process at a time (pytest-xdist, one
# worker per core: a file's module fixtures, such as a class graded once, are built
# once), then ruff; the 15 slowest tests are listed at the end. No test depends on the
# machine's speed (speed is what `make bench` measures): `make test-stress` runs the
# kernel tests while a CPU-burning process per core (tests/stress.py) keeps the machine
# busy, so that a test whose time limit is sized to a quiet machine fails there first.
TEST_JOBS ?= $(shell nproc 2>/dev/null || echo 2)
PARALLEL := -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder
FAST := not kernel and not slow and not browser
# pytest exits 5 when it collected no test: treat that as a failure, never as green.
NO_TESTS_FAIL := rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; \
	  exit $$rc

test: setup $(CHROMIUM) postgres
	$(PY) -m pytest $(PARALLEL) --durations=15; $(NO_TESTS_FAIL)
	$(VENV)/bin/ruff check .

test-fast: setup
	$(PY) -m pytest -m "$(FAST)" -n $(TEST_JOBS) --durations=5; $(NO_TESTS_FAIL)

test-stress: setup $(CHROMIUM) postgres
	$(PY) tests/stress.py -m kernel $(PARALLEL) --durations=15; $(NO_TESTS_FAIL)

# Each source lesson headless 10 times in a row (a stall that comes once in a few runs
# passes any single run): tests/test_lessons_run_repeatedly.py, skipped by `make test`.
LESSON_RUNS ?= 10
test-repeat: setup
	COURSE_LESSON_RUNS=$(LESSON_RUNS) $(PY) -m pytest tests/test_lessons_run_repeatedly.py \
	  -n $(TEST_JOBS) -s; $(NO_TESTS_FAIL)

lint: setup
	$(VENV)/bin/ruff check .

seeds: setup
	$(PY) -m course_lib.reference --torch

# The main job: release, a simulated class of 24 students (every kind of hand-in, one per
# demo mistake of the manifest) collected, graded,
# feedback, grades.csv and the report (replaces a previous demo; never a real class).
demo: setup
	$(PY) -m course_lib.instructor.demo

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis

# Student versions: nbgrader generate_assignment for every assignment in source/.
release: setup
	$(PY) -m course_lib.instructor.release

# The student's JupyterLab: a copy of release/ kept outside the repository, in
# $XDG_DATA_HOME/course-student-lab/backprop/notebooks (~/.local/share/...; LAB_DIR=... or
# COURSE_STUDENT_LAB sets another), copied once and never overwritten (a newer release/
# is announced, and replaced only when the student says yes); Validate and the
# assignment list, no formgrader (course_lib/instructor/student_lab.py). Its kernel is
# the students' Python, without the answers. Open the URL it prints; Ctrl-C stops it.
# Another port: make lab LAB_PORT=8890
LAB_PORT ?= 8888
LAB_DIR ?=
lab: setup
	$(PY) -m course_lib.instructor.student_lab --release release --port $(LAB_PORT) \
	  $(if $(LAB_DIR),--folder $(LAB_DIR))

# nbgrader's formgrader on the course folder, for grading written answers by hand
# (`course formgrader`: 127.0.0.1, a random token; the gradebook created or repaired
# first; its Autograde button grades sealed). Another port: make formgrader FORMGRADER_PORT=8891
FORMGRADER_PORT ?= 0
formgrader: setup
	$(PY) -m course_lib.instructor.formgrader --port $(FORMGRADER_PORT)

# The students' course_lib: helpers without the reference answers, grading or tooling.
student-wheel: setup
	$(PY) -m course_lib.instructor.student_wheel dist

# Measured in one run (bench/README.md says how to read it): slider callbacks
# (target p95 <= 50 ms); the reference backprop against torch autograd; a class
# graded by stock nbgrader and by `course grade` (target: --jobs 2 >= 1.8x stock,
# identical scores) and each lesson's seconds against an empty notebook's.
# A bigger class: make bench BENCH_STUDENTS=20. Exits 1 if a score or gradient disagrees.
BENCH_STUDENTS ?= 6
bench: setup
	@rc=0; \
	  $(PY) bench/sliders_bench.py || rc=1; \
	  $(PY) bench/backprop_bench.py || rc=1; \
	  $(PY) bench/grading_bench.py --students $(BENCH_STUDENTS) || rc=1; \
	  exit $$rc
