# Two entry points: `make demo` and `make test`. Both create .venv/ when needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.soundstage-installed

.PHONY: venv demo test test-fast bench extension clean

# Idempotent: re-runs the install only when pyproject.toml changed.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[all,dev]"
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) samples/build_sample_scene.py --out samples/build/sample_room.blend
	$(PY) headless/render.py samples/build/sample_room.blend -- --out samples/build/renders --save

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

extension: $(STAMP)
	$(PY) tools/build_extension.py --out dist/

clean:
	rm -rf $(VENV) dist samples/build .pytest_cache
