"""Camera paths from COLMAP and nerfstudio, in Blender's camera convention.

Oracles: COLMAP's documented conventions (world-to-camera, Hamilton
quaternion, camera +X right, +Y down, +Z forward; centre = -R^T t) applied
from first principles in the tests, COLMAP's documented binary layout written
by a test-side writer, scipy's rotations, and nerfstudio's published
COLMAP-to-transforms.json recipe (flip the camera's Y and Z columns, swap the
world's y and z rows and negate the new z row; applied_transform records it).
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from soundstage.errors import SoundstageError
from soundstage.splats.cameras import (
    CameraPathError,
    blender_to_colmap,
    colmap_to_blender,
    qvec_to_matrix,
    read_camera_path,
    read_colmap,
    read_transforms_json,
)


def look_at(eye, target, up=(0, 0, 1)):
    """Camera axes in world: right, up, forward (first principles, no library code)."""
    f = np.asarray(target, float) - eye
    f /= np.linalg.norm(f)
    r = np.cross(f, up)
    r /= np.linalg.norm(r)
    u = np.cross(r, f)
    return r, u, f


def colmap_pose(eye, target):
    """COLMAP qvec, tvec from the documented definition: rows of R are the
    camera's +X (right), +Y (down), +Z (forward) axes in world coordinates."""
    r, u, f = look_at(np.asarray(eye, float), target)
    rot = np.vstack([r, -u, f])
    t = -rot @ np.asarray(eye, float)
    xyzw = Rotation.from_matrix(rot).as_quat()
    return np.r_[xyzw[3], xyzw[:3]], t, (r, u, f)


@pytest.fixture
def walk():
    rng = np.random.default_rng(0)
    eyes = np.column_stack([np.linspace(-2, 2, 7), rng.uniform(-1, 1, 7), np.full(7, 1.6)])
    targets = eyes + np.column_stack([rng.uniform(-1, 1, 7), np.ones(7) * 2, rng.uniform(-0.3, 0.3, 7)])
    return eyes, targets


def write_colmap_text(folder, eyes, targets, names):
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["# Image list with two lines of data per image:", "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME"]
    order = list(range(len(eyes)))[::-1]  # ids not in capture order
    for k, i in enumerate(order):
        q, t, _ = colmap_pose(eyes[i], targets[i])
        lines.append(f"{k + 10} {' '.join(map(repr, q))} {' '.join(map(repr, t))} 1 {names[i]}")
        lines.append("" if k % 2 else "12.5 30.25 -1 40.0 41.0 7")
    (folder / "images.txt").write_text("\n".join(lines) + "\n")
    (folder / "cameras.txt").write_text("# Camera list\n1 SIMPLE_RADIAL 1920 1080 1500.0 960 540 0.01\n")


def write_colmap_binary(folder, eyes, targets, names):
    folder.mkdir(parents=True, exist_ok=True)
    data = struct.pack("<Q", len(eyes))
    for i in range(len(eyes)):
        q, t, _ = colmap_pose(eyes[i], targets[i])
        data += struct.pack("<i7di", 100 + i, *q, *t, 3) + names[i].encode() + b"\x00"
        data += struct.pack("<Q", 2) + struct.pack("<ddq", 1.0, 2.0, -1) + struct.pack("<ddq", 3.0, 4.0, 17)
    (folder / "images.bin").write_bytes(data)
    cams = struct.pack("<Q", 1) + struct.pack("<iiQQ", 3, 1, 1920, 1080) + struct.pack("<4d", 1500, 1400, 960, 540)
    (folder / "cameras.bin").write_bytes(cams)


def test_qvec_matches_scipy():
    rng = np.random.default_rng(1)
    for _ in range(20):
        q = rng.normal(size=4)
        xyzw = np.r_[q[1:], q[0]]
        np.testing.assert_allclose(qvec_to_matrix(q), Rotation.from_quat(xyzw).as_matrix(), atol=1e-12)


def test_colmap_identity_pose_means_looking_along_world_z_with_y_down():
    """Identity rotation: the camera's +Z (forward) is world +Z and its +Y (down) is world +Y,
    so the Blender camera looks along world +Z with world -Y up."""
    m = colmap_to_blender([1, 0, 0, 0], [0, 0, 0])
    np.testing.assert_allclose(-m[:3, 2], [0, 0, 1])  # looks along local -Z
    np.testing.assert_allclose(m[:3, 1], [0, -1, 0])  # local +Y is up
    np.testing.assert_allclose(m[:3, 0], [1, 0, 0])   # right stays right
    # Camera centre is -R^T t.
    m = colmap_to_blender([1, 0, 0, 0], [1, 2, 3])
    np.testing.assert_allclose(m[:3, 3], [-1, -2, -3])


def test_read_colmap_text_poses(tmp_path, walk):
    eyes, targets = walk
    names = [f"frame_{i + 1}.jpg" for i in range(len(eyes))]  # natural order: frame_2 before frame_10
    write_colmap_text(tmp_path / "sparse" / "0", eyes, targets, names)
    path = read_colmap(tmp_path)
    assert path.names == names
    for i, m in enumerate(path.matrices):
        _, _, (r, u, f) = colmap_pose(eyes[i], targets[i])
        np.testing.assert_allclose(m[:3, 3], eyes[i], atol=1e-12)
        np.testing.assert_allclose(m[:3, 0], r, atol=1e-12)
        np.testing.assert_allclose(m[:3, 1], u, atol=1e-12)
        np.testing.assert_allclose(-m[:3, 2], f, atol=1e-12)
        np.testing.assert_allclose(m[3], [0, 0, 0, 1])
    # A point straight ahead projects in front of both cameras; a point above is "up" in Blender.
    q, t, _ = colmap_pose(eyes[0], targets[0])
    above = targets[0] + np.array([0, 0, 0.5])
    x_cam = qvec_to_matrix(q) @ above + t
    local = np.linalg.inv(path.matrices[0]) @ np.r_[above, 1]
    assert x_cam[2] > 0 and -local[2] > 0
    assert x_cam[1] < 0 and local[1] > 0  # COLMAP: up is -Y; Blender: +Y
    assert path.lens_mm() == pytest.approx(np.full(7, 1500 / 1920 * 36))
    np.testing.assert_array_equal(path.frame_numbers(24, 1), np.arange(1, 8))


def test_read_colmap_binary_equals_text(tmp_path, walk):
    eyes, targets = walk
    names = [f"img{i:03d}.png" for i in range(len(eyes))]
    write_colmap_text(tmp_path / "txt", eyes, targets, names)
    write_colmap_binary(tmp_path / "bin", eyes, targets, names)
    a = read_colmap(tmp_path / "txt" / "images.txt")
    b = read_colmap(tmp_path / "bin")
    assert a.names == b.names
    np.testing.assert_allclose(a.matrices, b.matrices, atol=1e-12)
    assert b.fx[0] == 1500 and b.fy[0] == 1400 and b.width[0] == 1920


def test_blender_colmap_roundtrip():
    rng = np.random.default_rng(3)
    for _ in range(50):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        q *= np.sign(q[0])
        t = rng.normal(size=3)
        q2, t2 = blender_to_colmap(colmap_to_blender(q, t))
        np.testing.assert_allclose(q2, q, atol=1e-10)
        np.testing.assert_allclose(t2, t, atol=1e-10)


def nerfstudio_transforms(eyes, targets):
    """transforms.json as ns-process-data writes it from COLMAP (its published recipe)."""
    frames = []
    for i in range(len(eyes)):
        q, t, _ = colmap_pose(eyes[i], targets[i])
        w2c = np.eye(4)
        w2c[:3, :3] = Rotation.from_quat(np.r_[q[1:], q[0]]).as_matrix()
        w2c[:3, 3] = t
        c2w = np.linalg.inv(w2c)
        c2w[0:3, 1:3] *= -1
        c2w = c2w[np.array([0, 2, 1, 3]), :]
        c2w[2, :] *= -1
        frames.append({"file_path": f"images/frame_{i + 1:05d}.png", "transform_matrix": c2w.tolist()})
    applied = np.eye(4)[:3, :][np.array([0, 2, 1]), :]
    applied[2, :] *= -1
    return {"w": 1920, "h": 1080, "fl_x": 1500.0, "fl_y": 1500.0, "cx": 960, "cy": 540,
            "frames": frames[::-1], "applied_transform": applied.tolist()}


def test_nerfstudio_transforms_match_colmap(tmp_path, walk):
    eyes, targets = walk
    names = [f"frame_{i + 1:05d}.png" for i in range(len(eyes))]
    write_colmap_text(tmp_path / "colmap", eyes, targets, names)
    (tmp_path / "transforms.json").write_text(json.dumps(nerfstudio_transforms(eyes, targets)))
    colmap = read_colmap(tmp_path / "colmap")
    back = read_transforms_json(tmp_path / "transforms.json", undo_applied_transform=True)
    np.testing.assert_allclose(back.matrices, colmap.matrices, atol=1e-12)
    # Without undoing, the same cameras in nerfstudio's world: (x, y, z) -> (x, z, -y).
    ns = read_camera_path(tmp_path / "transforms.json")
    np.testing.assert_allclose(ns.positions, colmap.positions[:, [0, 2, 1]] * [1, 1, -1], atol=1e-12)
    assert ns.fx[0] == 1500.0 and ns.width[0] == 1920


def test_rwavs_style_camera_path_with_times(tmp_path):
    entries = []
    for t in (2.0, 0.0, 1.0, 0.5):
        m = np.eye(4)
        m[:3, 3] = [t, 0, 1.5]
        entries.append({"file_path": f"frames/{t}.png", "camera_to_world": m.reshape(-1).tolist()})
    (tmp_path / "transforms_scale_train.json").write_text(json.dumps({"camera_path": entries}))
    path = read_transforms_json(tmp_path / "transforms_scale_train.json")
    np.testing.assert_array_equal(path.times, [0.0, 0.5, 1.0, 2.0])
    np.testing.assert_array_equal(path.positions[:, 0], [0.0, 0.5, 1.0, 2.0])
    np.testing.assert_array_equal(path.frame_numbers(24, 1), [1, 13, 25, 49])
    assert len(path.as_job_matrices()[0]) == 16


def test_world_transform_moves_and_scales_positions_only(tmp_path, walk):
    eyes, targets = walk
    write_colmap_text(tmp_path, eyes, targets, [f"{i}.jpg" for i in range(len(eyes))])
    w = np.eye(4)
    w[:3, :3] = 2.0 * Rotation.from_euler("x", 90, degrees=True).as_matrix()
    w[:3, 3] = [1, 2, 3]
    a = read_colmap(tmp_path)
    b = read_colmap(tmp_path, world_transform=w)
    np.testing.assert_allclose(b.positions, a.positions @ w[:3, :3].T + w[:3, 3], atol=1e-12)
    for m in b.matrices:
        np.testing.assert_allclose(m[:3, :3].T @ m[:3, :3], np.eye(3), atol=1e-12)


def test_camera_errors(tmp_path, walk):
    with pytest.raises(CameraPathError, match="no such"):
        read_colmap(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CameraPathError, match="no images.bin or images.txt"):
        read_colmap(tmp_path / "empty")
    bad = tmp_path / "bad" / "images.txt"
    bad.parent.mkdir()
    bad.write_text("1 0.5 0.5 x 0.5 0 0 0 1 a.jpg\n\n")
    with pytest.raises(CameraPathError, match="line 1 is not"):
        read_colmap(bad)
    bad.write_text("1 2 0 0 0 0 0 0 1 a.jpg\n\n")
    with pytest.raises(CameraPathError, match="non-unit quaternion"):
        read_colmap(bad)
    eyes, targets = walk
    write_colmap_binary(tmp_path / "trunc", eyes, targets, [f"{i}.jpg" for i in range(len(eyes))])
    data = (tmp_path / "trunc" / "images.bin").read_bytes()
    (tmp_path / "trunc" / "images.bin").write_bytes(data[:-30])
    with pytest.raises(CameraPathError, match="truncated"):
        read_colmap(tmp_path / "trunc")
    js = tmp_path / "t.json"
    js.write_text("{not json")
    with pytest.raises(CameraPathError, match="not valid JSON"):
        read_transforms_json(js)
    js.write_text(json.dumps({"frames": [{"file_path": "a", "transform_matrix": (2 * np.eye(4)).tolist()}]}))
    with pytest.raises(CameraPathError, match="not a rotation"):
        read_transforms_json(js)
    js.write_text(json.dumps({"frames": []}))
    with pytest.raises(CameraPathError, match="no 'frames'"):
        read_transforms_json(js)
    js.write_text(json.dumps({"frames": [{"file_path": "a", "transform_matrix": np.eye(4).tolist()}]}))
    with pytest.raises(CameraPathError, match="no 'applied_transform'"):
        read_transforms_json(js, undo_applied_transform=True)
    assert issubclass(CameraPathError, SoundstageError)
