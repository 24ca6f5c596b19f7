"""``soundstage splats ...`` command group (registered by the main CLI via add_parser)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from soundstage.splats import write_ply
from soundstage.splats.cli import add_parser, main
from soundstage.splats.synthetic import make_synthetic_room

DONUT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "splats" / "donut_sh0.ply"


def test_add_parser_registers_group():
    parser = argparse.ArgumentParser(prog="soundstage")
    subs = parser.add_subparsers(dest="command")
    add_parser(subs)
    args = parser.parse_args(["splats", "room", "scene.ply", "--out", "room.json", "--up", "0,-1,0"])
    assert args.up == [0.0, -1.0, 0.0] and callable(args.func)


@pytest.mark.skipif(not DONUT.exists(), reason="shared data not available")
def test_info_on_real_file(capsys):
    assert main(["splats", "info", str(DONUT), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["gaussians"] == 45624 and info["sh_degree"] == 0


def test_room_writes_job_room(tmp_path, capsys):
    scene = make_synthetic_room(seed=0)
    ply = tmp_path / "room.ply"
    write_ply(ply, scene.splats)
    out = tmp_path / "room.json"
    details = tmp_path / "details.json"
    assert main(["splats", "room", str(ply), "--out", str(out), "--details", str(details)]) == 0
    room = json.loads(out.read_text())
    assert room["type"] == "shoebox"
    np.testing.assert_allclose(np.subtract(room["max"], room["min"]), [6, 5, 3], rtol=0.05)
    assert len(json.loads(details.read_text())["planes"]) >= 6
    assert "shoebox room" in capsys.readouterr().out


def test_cameras_command(tmp_path):
    m = np.eye(4)
    doc = {"frames": [{"file_path": "a/1.png", "transform_matrix": m.tolist()}]}
    (tmp_path / "t.json").write_text(json.dumps(doc))
    assert main(["splats", "cameras", str(tmp_path / "t.json"), "--out", str(tmp_path / "c.json")]) == 0
    out = json.loads((tmp_path / "c.json").read_text())
    assert out["matrices"] == [m.reshape(-1).tolist()]


def test_bad_input_exits_2_with_one_line(tmp_path, capsys):
    cloud = tmp_path / "cloud.ply"
    cloud.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
                      b"property float z\nend_header\n0 0 0\n")
    assert main(["splats", "info", str(cloud)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "point cloud" in err
    assert main(["splats", "room", str(cloud), "--out", str(tmp_path / "r.json")]) == 2
    assert not (tmp_path / "r.json").exists()
