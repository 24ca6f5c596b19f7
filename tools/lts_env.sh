#!/usr/bin/env bash
# Create .venv-lts: the engine plus the bpy 4.5 LTS wheel, to run the Blender tests
# against an LTS release as well as the bpy 5.0.1 in .venv (see docs/blender.md).
#
#   tools/lts_env.sh                      # creates/updates .venv-lts
#   .venv-lts/bin/python -m pytest -q -m bpy
#
# BPY_VERSION overrides the wheel (e.g. BPY_VERSION="4.2.*" for 4.2 LTS).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
VENV="${VENV_LTS:-.venv-lts}"
BPY_VERSION="${BPY_VERSION:-4.5.*}"

test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# bpy 4.x is built against numpy 1.x, like the engine's own pin.
"$VENV/bin/python" -m pip install -q "bpy==$BPY_VERSION" "numpy<2"
# The engine with every extra but [blender] (which would pull bpy 5), so all test
# modules import when pytest collects them.
"$VENV/bin/python" -m pip install -q -e ".[field,meshes,splats,dist,tracks,dev]" "numpy<2"
"$VENV/bin/python" -c "import bpy, soundstage; print('bpy', bpy.app.version_string, 'ready in $VENV')"
