# `make demo` and `make test` work on a fresh clone: each creates .venv when missing and
# installs the project with its test extras before running.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Benchmarks and tests measure on the 2 cores the CI machine has.
export OMP_NUM_THREADS ?= 2

.PHONY: demo test test-slow test-lmms bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/spatialvlm demo --out demo_out

test: $(STAMP)
	$(BIN)/python -m pytest

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

# lmms-eval 0.7.3 declares torchvision and av<16, neither installable beside this torch / PyAV:
# install it without dependencies, then the [lmms] extra (what its API, evaluator and tasks import).
LMMS_STAMP := $(VENV)/.lmms-stamp
$(LMMS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps "lmms-eval==0.7.3"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test,lmms]"
	touch $(LMMS_STAMP)

test-lmms: $(LMMS_STAMP)
	SPATIALVLM_REQUIRE_LMMS=1 $(BIN)/python -m pytest -m lmms

bench: $(STAMP)
	$(BIN)/spatialvlm bench

clean:
	rm -rf $(VENV) demo_out build dist src/*.egg-info
