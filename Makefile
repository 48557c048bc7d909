# segedu: the two set-up commands are `make lab` and `make test`.
# Both create .venv and install the package with its dev extras when needed.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 8888
SEGEDU_PROFILE ?= quick
export SEGEDU_PROFILE

STAMP := $(VENV)/.segedu-installed

.PHONY: install lab test unit lessons course release bench venv clean

# The non-interactive install (CI, student repositories): .venv with the course and its dev extras.
install venv: $(STAMP)

# Re-install when the dependencies change; `pip install -e` keeps the code live.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	@touch $@

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
LESSON_TESTS := --nbval-lax --nbval-current-env lessons/
test: export OMP_NUM_THREADS ?= 1
test: export SEGEDU_CACHE := $(TEST_CACHE)
test: install
	rm -rf $(TEST_CACHE)
	$(PY) -m pytest $(XDIST) $(UNIT_TESTS)
	$(PY) -m pytest $(XDIST) $(LESSON_TESTS)
	$(PY) -m pytest tests/coursework
	$(PY) -m pytest tests/browser

# The first two stages of `make test` alone.
unit: install
	$(PY) -m pytest $(XDIST) $(UNIT_TESTS)

lessons: install
	$(PY) -m pytest $(XDIST) $(LESSON_TESTS)

# Executed HTML of every lesson in _course/.
course: $(STAMP)
	$(VENV)/bin/jupyter nbconvert --to html --execute --output-dir _course lessons/*.ipynb

release: $(STAMP)
	$(PY) -m segedu release lessons --out release

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf _course release .pytest_cache
