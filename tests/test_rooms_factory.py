"""Rooms built from job objects: open meshes are noted once, in the sidecar."""

import json
import warnings

import numpy as np

from jobkit import camera_matrix, make_job, write_impulse
from soundstage.bake import bake
from soundstage.rooms.mesh import box_mesh


def test_open_mesh_room_is_baked_with_a_note_and_no_printed_warning(tmp_path):
    v, f = box_mesh([0, 0, 0], [6, 5, 3])
    f = f[:-2]  # remove one wall (two triangles): the room is open
    room = {"type": "mesh", "name": "Walls", "vertices": v.tolist(), "faces": f.tolist(),
            "face_materials": [0] * len(f), "materials": ["hard_surface"]}
    imp = write_impulse(tmp_path / "imp.wav", seconds=0.3)
    job = make_job(imp, [4, 2, 1.5], camera_matrix([1, 1, 1.5]), room=room, frames=6, out=tmp_path / "o.wav",
                   render={"late_reverb": False})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any printed warning fails the test
        res = bake(job)
    side = json.loads(res.sidecar.read_text())
    assert any("open" in n for n in side["notes"]), side["notes"]
    assert np.isfinite(side["peak"])
