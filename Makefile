# The course's commands. Every target that runs code depends on `setup`, which
# builds .venv once and again only when requirements.txt or pyproject.toml change.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PIP := $(PY) -m pip --disable-pip-version-check --quiet

.PHONY: setup test lint demo seeds release browser clean help lab bench student-wheel

help:
	@echo "make demo   set up, release, grade a simulated class: feedback, grades.csv, report"
	@echo "make test   set up, then run the test suite and ruff"
	@echo "make setup  create .venv with the pinned requirements (safe to run twice)"

setup: $(STAMP)

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

# pytest exits 5 when it collected no test: treat that as a failure, never as green.
test: setup $(CHROMIUM)
	$(PY) -m pytest; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; \
	  exit $$rc
	$(VENV)/bin/ruff check .

lint: setup
	$(VENV)/bin/ruff check .

seeds: setup
	$(PY) -m course_lib.reference --torch

# The main job: release, a simulated class of 21 students collected, graded,
# feedback, grades.csv and the report (replaces a previous demo; never a real class).
demo: setup
	$(PY) -m course_lib.instructor.demo

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis

# Student versions: nbgrader generate_assignment for every assignment in source/.
release: setup
	$(PY) -m course_lib.instructor.release

# JupyterLab on the student notebooks (release/), sliders and all, on 127.0.0.1 only.
# Open the URL it prints; Ctrl-C stops it. Another port: make lab LAB_PORT=8890
LAB_PORT ?= 8888
lab: setup
	@token=$$($(PY) -c 'import secrets; print(secrets.token_hex(24))'); \
	  echo "JupyterLab on release/: http://127.0.0.1:$(LAB_PORT)/lab?token=$$token  (Ctrl-C stops it)"; \
	  exec $(VENV)/bin/jupyter lab --ServerApp.root_dir=release --ServerApp.ip=127.0.0.1 \
	    --ServerApp.port=$(LAB_PORT) --ServerApp.port_retries=0 --ServerApp.allow_root=True \
	    --IdentityProvider.token=$$token \
	    --LabApp.news_url=None --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate

# The students' course_lib: helpers without the reference answers, grading or tooling.
student-wheel: setup
	$(PY) -m course_lib.instructor.student_wheel dist

# How long one slider move takes in each explorer (target: p95 <= 50 ms).
bench: setup
	$(PY) bench/widgets_bench.py
