"""How Blender reaches the engine: finding its environment, the worker runner, the in-process runner.

The worker runner is what real Blender uses (its Python has no engine); here
it starts this environment's interpreter exactly as it would start the
repository's ``.venv/bin/python``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import stat
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

sf = pytest.importorskip("soundfile")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def br():
    render = sys.modules.get("ss_headless_render")
    if render is None:
        spec = importlib.util.spec_from_file_location("ss_headless_render", REPO / "headless" / "render.py")
        render = importlib.util.module_from_spec(spec)
        sys.modules["ss_headless_render"] = render
        spec.loader.exec_module(render)
    ext = render.load_extension()
    return types.SimpleNamespace(**{n: importlib.import_module(f"{ext.__name__}.bridge.{n}")
                                    for n in ("runner", "errors")})


@pytest.fixture
def job(tmp_path):
    audio = tmp_path / "src.wav"
    sf.write(str(audio), (0.1 * np.random.default_rng(2).standard_normal(24000)).astype(np.float32), 48000)
    doc = {"version": 1, "sample_rate": 48000, "fps": 24, "frame_start": 1, "frame_end": 12,
           "listener": {"name": "Cam", "matrix_world": [1, 0, 0, 0, 0, 0, -1, 0, 0, 1, 0, 0, 0, 0, 0, 1]},
           "sources": [{"name": "s", "audio": str(audio), "position": [1.0, 2.0, 0.0]}],
           "output": {"format": "stereo", "path": "ignored.wav"}}
    path = tmp_path / "job.json"
    path.write_text(json.dumps(doc))
    return path


def _drain(runner, timeout=120.0):
    events, t0 = [], time.monotonic()
    while not runner.finished:
        events += runner.poll()
        assert time.monotonic() - t0 < timeout, "runner did not finish"
        time.sleep(0.02)
    return events


def test_worker_runner_bakes_and_reports(br, job, tmp_path):
    r = br.runner.SubprocessRunner(Path(sys.executable))
    out = tmp_path / "o.wav"
    r.start(job, out)
    events = _drain(r)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and "progress" in kinds
    assert Path(events[-1]["path"]) == out and out.is_file()


def test_worker_runner_cancel_before_start(br, job, tmp_path):
    r = br.runner.SubprocessRunner(Path(sys.executable))
    r.cancel()
    r.start(job, tmp_path / "o.wav")
    events = _drain(r)
    assert events[-1]["event"] == "cancelled" and not (tmp_path / "o.wav").exists()


def test_worker_runner_user_error_is_passed_on(br, job, tmp_path):
    doc = json.loads(job.read_text())
    doc["sources"][0]["audio"] = str(tmp_path / "nope.wav")
    job.write_text(json.dumps(doc))
    r = br.runner.SubprocessRunner(Path(sys.executable))
    r.start(job, tmp_path / "o.wav")
    last = _drain(r)[-1]
    assert last["event"] == "error" and "nope.wav" in last["message"]


def _fake_python(tmp_path: Path) -> Path:
    """An interpreter without the engine: Python in isolated mode ignores PYTHONPATH and site-packages."""
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} -I -S \"$@\"\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


@pytest.mark.skipif(os.name != "posix", reason="shell-script stand-in for an interpreter")
def test_wrong_environment_is_explained(br, job, tmp_path):
    r = br.runner.SubprocessRunner(_fake_python(tmp_path))
    r.start(job, tmp_path / "o.wav")
    last = _drain(r)[-1]
    assert last["event"] == "error"
    assert "No module named" in last["message"] and "make demo" in last["message"]


def test_unstartable_python_is_a_bridge_error(br, job, tmp_path):
    r = br.runner.SubprocessRunner(tmp_path / "no" / "python")
    with pytest.raises(br.errors.BridgeError, match="cannot start the engine"):
        r.start(job, tmp_path / "o.wav")


def test_find_engine_python_order(br, tmp_path, monkeypatch):
    venv = tmp_path / "env"
    (venv / "bin").mkdir(parents=True)
    py = venv / "bin" / "python"
    py.write_text("#!/bin/sh\n")
    py.chmod(0o755)
    monkeypatch.setattr(br.runner, "EXT_ROOT", tmp_path / "installed_from_zip")
    monkeypatch.delenv("SOUNDSTAGE_PYTHON", raising=False)
    with pytest.raises(br.errors.BridgeError) as e:
        br.runner.find_engine_python("")
    assert "make demo" in str(e.value) and "Engine Python" in str(e.value) and "\n" not in str(e.value)
    assert br.runner.find_engine_python(str(py)) == py
    assert br.runner.find_engine_python(str(venv)) == py  # the venv folder is enough
    monkeypatch.setenv("SOUNDSTAGE_PYTHON", str(py))
    assert br.runner.find_engine_python("/elsewhere/python") == py  # the environment variable wins
    monkeypatch.setenv("SOUNDSTAGE_PYTHON", str(tmp_path / "bad"))
    with pytest.raises(br.errors.BridgeError, match="SOUNDSTAGE_PYTHON"):
        br.runner.find_engine_python("")


def test_repository_environment_is_found_by_itself(br, monkeypatch):
    """Installed from (or symlinked to) the checkout, the add-on finds the repository's .venv."""
    monkeypatch.delenv("SOUNDSTAGE_PYTHON", raising=False)
    venv_python = REPO / ".venv" / "bin" / "python"
    if not venv_python.exists():
        pytest.skip("no .venv in this checkout")
    assert br.runner.find_engine_python("") == venv_python


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_symlinked_install_resolves_to_the_repository(tmp_path, monkeypatch):
    """Blender's extensions folder may hold a symlink to the checkout; the .venv beside the real files is used."""
    link = tmp_path / "extensions" / "user_default" / "soundstage"
    link.parent.mkdir(parents=True)
    link.symlink_to(REPO, target_is_directory=True)
    spec = importlib.util.spec_from_file_location("ss_symlinked", link / "__init__.py",
                                                  submodule_search_locations=[str(link)])
    pkg = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "ss_symlinked", pkg)
    spec.loader.exec_module(pkg)
    runner = importlib.import_module("ss_symlinked.bridge.runner")
    try:
        assert runner.__file__.startswith(str(link))
        assert runner.EXT_ROOT == REPO
    finally:
        for name in [n for n in sys.modules if n.startswith("ss_symlinked.")]:
            del sys.modules[name]


def test_in_process_runner_and_auto_mode(br, job, tmp_path):
    pytest.importorskip("soundstage.bake")
    r = br.runner.make_runner("auto")
    assert isinstance(r, br.runner.InProcessRunner)
    r.start(job, tmp_path / "o.wav")
    assert _drain(r)[-1]["event"] == "done"
    assert isinstance(br.runner.make_runner("worker", sys.executable), br.runner.SubprocessRunner)
    with pytest.raises(br.errors.BridgeError, match="unknown engine mode"):
        br.runner.make_runner("gpu")
