# The two commands of the README: `make demo` and `make test`.
# Both set up .venv idempotently (torch first, from the CPU wheel, so that no
# dependency drags in a CUDA build), then run.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.corrtrack-setup
SHARED ?= ../shared
DEMO_OUT ?= out/demo
PEERS := norfair==2.3.0 filterpy==1.4.5 trackers==2.6.1 supervision==0.31.2

.PHONY: setup models demo test clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -n "$(PYTHON)" || { echo "setup: python3.11 not found" >&2; exit 1; }
	@test -x $(PY) || { echo "setup: creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "setup: installing torch==2.13.0 (CPU) then corrtrack and its dependencies"
	@$(PIP) install -q torch==2.13.0 2> >(grep -v "^WARNING: Location" >&2) \
	  || { echo "setup: pip could not install torch==2.13.0" >&2; exit 1; }
	@$(PIP) install -q -e '.[dev,bench]' 2> >(grep -v "^WARNING: Location" >&2) \
	  || { echo "setup: pip could not install corrtrack's dependencies" >&2; exit 1; }
	@# Peer trackers for the benchmarks: their metadata pins numpy<2 / opencv-python,
	@# but they run with numpy 2 and the headless OpenCV (see pyproject.toml).
	@$(PIP) install -q --no-deps $(PEERS) 2> >(grep -v "^WARNING: Location" >&2) \
	  || { echo "setup: pip could not install the peer trackers ($(PEERS))" >&2; exit 1; }
	@touch $(STAMP)

# Converted detector/pose weights, cached in $$CORRTRACK_HOME (default: the user cache dir).
models: setup
	@$(VENV)/bin/corrtrack models fetch

demo: models
	@test -f $(SHARED)/data/opencv/vtest.avi || { echo "demo: $(SHARED)/data/opencv/vtest.avi not found (set SHARED=...)" >&2; exit 1; }
	$(VENV)/bin/corrtrack track $(SHARED)/data/opencv/vtest.avi -o $(DEMO_OUT) --render
	@echo "demo: outputs in $(DEMO_OUT)/"

test: models
	OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -q

clean:
	rm -rf $(VENV) out .pytest_cache
