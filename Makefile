# Two entry points: `make demo` and `make test`. Both create .venv/ when needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.soundstage-installed

LTS_STAMP := .venv-lts/.soundstage-installed

.PHONY: venv demo test test-fast test-lts bench extension clean

# Idempotent: re-runs the install only when pyproject.toml changed.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[all,dev]"
	@touch $(STAMP)

venv: $(STAMP)

# The same engine with the bpy 4.5 LTS wheel, for the Blender support matrix.
$(LTS_STAMP): pyproject.toml tools/lts_env.sh
	tools/lts_env.sh
	@touch $(LTS_STAMP)

demo: $(STAMP)
	$(PY) samples/build_sample_scene.py --out samples/build/sample_room.blend
	$(PY) headless/render.py samples/build/sample_room.blend -- --out samples/build/renders --save

# Everything with bpy 5.0.1, then the Blender tests again with bpy 4.5 LTS.
test: $(STAMP) $(LTS_STAMP)
	$(PY) -m pytest -q
	.venv-lts/bin/python -m pytest -q -m bpy

test-lts: $(LTS_STAMP)
	.venv-lts/bin/python -m pytest -q -m bpy

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

extension: $(STAMP)
	$(PY) tools/build_extension.py --out dist/

clean:
	rm -rf $(VENV) .venv-lts dist samples/build .pytest_cache
