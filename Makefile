# segedu: the two set-up commands are `make lab` and `make test`.
# Both create .venv when needed: `make lab` installs the course for students (".[lab]": the lessons'
# packages and JupyterLab, nothing to compile), `make test` everything the tests need (".[dev]").

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 8888
SEGEDU_PROFILE ?= quick
export SEGEDU_PROFILE

# Two stamps: the dev install includes the lab one (it touches both), so `make lab` after `make test`
# installs nothing, and `make test` after `make lab` adds the dev extras.
STAMP_LAB := $(VENV)/.segedu-lab
STAMP_DEV := $(VENV)/.segedu-dev

.PHONY: install install-dev lab test unit lessons course release manifest bench venv venv-rebuild clean

# "3.12.4 ok", "3.9.18 old", or nothing when $(1) is missing or broken (same bound as requires-python).
python_version = $(shell $(1) -c 'import sys; print("%d.%d.%d" % sys.version_info[:3], "ok" if sys.version_info >= (3, 11) else "old")' 2>/dev/null)

# A .venv without a working Python >= 3.11 in it (none yet, one made by an old python3 whose install failed,
# one whose interpreter was removed) is rebuilt: the stamps then count as out of date.
ifneq ($(lastword $(call python_version,$(PY))),ok)
VENV_REBUILD := venv-rebuild
endif

# Check $(PYTHON) before touching anything: an old one would leave a .venv that every later make reuses.
venv-rebuild:
	@found='$(call python_version,$(PYTHON))'; \
	if [ "$${found##* }" != ok ]; then \
	  if [ -n "$$found" ]; then found="Python $${found% *}"; else found="no working Python"; fi; \
	  echo "error: segedu needs Python >= 3.11, found $$found (PYTHON=$(PYTHON))." >&2; \
	  echo "Pick another interpreter: PYTHON=python3.12 make lab (or PYTHON=/path/to/python3.11 make lab)." >&2; \
	  exit 1; \
	fi; \
	if [ -e $(VENV) ]; then echo "$(VENV) has no working Python >= 3.11: rebuilding it with $(PYTHON)"; fi
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)

# The non-interactive install (student repositories' CI): .venv with the course, no test-only packages.
install venv: $(STAMP_LAB)

# Everything `make test` and `make bench` need.
install-dev: $(STAMP_DEV)

# Re-install when the dependencies change; `pip install -e` keeps the code live.
$(STAMP_LAB): pyproject.toml $(VENV_REBUILD)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -e ".[lab]"
	@touch $@

$(STAMP_DEV): pyproject.toml $(VENV_REBUILD)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	@touch $@ $(STAMP_LAB)

# JupyterLab on the lessons; it prints the URL with its token (authentication stays on).
# Jupyter refuses to run as root without --allow-root (containers, CI); the token still protects it.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)
lab: install
	$(VENV)/bin/jupyter lab --notebook-dir=lessons --ip=127.0.0.1 --port=$(PORT) --no-browser $(ALLOW_ROOT)

# Unit tests, every lesson through nbval (SEGEDU_PROFILE=quick unless set), then the lessons in a real
# JupyterLab in headless Chromium (skipped with a message where Chromium is missing, failing in CI).
# One torch thread: the lessons run many small ops, which two threads on two cores slow down (measured: the
# CRF 3x, small convs up to 10x when anything else runs). Students' `make lab` keeps torch's default.
# Each stage after the first runs the lessons again (browser, student release): trained weights are reused
# from a cache that lives for one `make test` (segedu/cache.py says what keys it; delete it to retrain).
TEST_CACHE := $(CURDIR)/.cache/make-test
# One pytest worker per core (pytest-xdist); loadscope keeps each notebook's cells together on one worker.
XDIST ?= -n auto --dist loadscope
UNIT_TESTS := tests --ignore=tests/browser --ignore=tests/coursework
# The released lessons are independent tests (their fixtures are cheap to build once per worker): spread them one
# by one (measured on a fresh clone, 2 cores: 349 s on one worker, 212 s on two).
COURSEWORK_XDIST ?= -n auto --dist load
LESSON_TESTS := --nbval-lax --nbval-current-env lessons/
test: export OMP_NUM_THREADS ?= 1
test: export SEGEDU_CACHE := $(TEST_CACHE)
test: install-dev
	rm -rf $(TEST_CACHE)
	$(PY) -m pytest $(XDIST) $(UNIT_TESTS)
	$(PY) -m pytest $(XDIST) $(LESSON_TESTS)
	$(PY) -m pytest $(COURSEWORK_XDIST) tests/coursework
	$(PY) -m pytest tests/browser

# The first two stages of `make test` alone.
unit: install-dev
	$(PY) -m pytest $(XDIST) $(UNIT_TESTS)

lessons: install-dev
	$(PY) -m pytest $(XDIST) $(LESSON_TESTS)

# Every lesson executed (SEGEDU_PROFILE=quick unless set) and exported to HTML in build/course/, with an index
# page: each lesson's question, what it measures, its run time (segedu/course/html.py). A lesson that fails
# still gets its page; make then stops with an error naming it.
COURSE_DIR ?= build/course
course: $(STAMP_LAB)
	$(PY) -m segedu.course.html lessons --out $(COURSE_DIR)

# The student release: release/ (a build folder, replaced each time) and the `student` branch, one commit per
# release on top of the previous one, built from HEAD without touching the working tree (INSTRUCTORS.md).
release: $(STAMP_LAB)
	$(PY) -m segedu release lessons --out release --force
	$(PY) -m segedu.course.student_branch

# The grader's manifest shipped in the package: the cell roles written into the lessons (segedu/course/roles.py),
# then the manifest built from them. Rebuild and commit both whenever a check or set-up cell changes.
manifest: $(STAMP_LAB)
	$(PY) -m segedu.course.roles lessons
	$(PY) -m segedu manifest lessons --out segedu/course/manifest.json

bench: $(STAMP_DEV)
	$(PY) bench/run_all.py

clean:
	rm -rf $(COURSE_DIR) release .pytest_cache
