"""Splat file readers: the Inria PLY layout and the 32-byte .splat layout.

Oracles: plyfile (an independent PLY parser) for the raw values, the formulas
published with the 3DGS trainer for the conversions (exp of log-scales,
sigmoid of logits, 0.5 + C0 * f_dc, normalised wxyz quaternions), and the
documented .splat byte layout decoded independently in the tests.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from soundstage.errors import SoundstageError
from soundstage.splats import SplatError, SplatWarning, read_ply, read_splat, read_splats, write_ply, write_splat
from soundstage.splats.model import SH_C0, Splats
from soundstage.splats.ply import read_ply_header

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "splats"
DONUT = DATA / "donut_sh0.ply"


def random_splats(n=300, sh_degree=0, seed=0, extra=False) -> Splats:
    rng = np.random.default_rng(seed)
    k = (sh_degree + 1) ** 2 - 1
    q = rng.normal(size=(n, 4)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    dc = rng.normal(0, 1, (n, 3)).astype(np.float32)
    s = Splats(
        positions=rng.normal(0, 2, (n, 3)).astype(np.float32),
        scales=np.exp(rng.uniform(-6, -1, (n, 3))).astype(np.float32),
        rotations=q,
        opacities=rng.uniform(0.01, 0.99, n).astype(np.float32),
        colors=np.clip(0.5 + SH_C0 * dc, 0, 1),
        sh_rest=rng.normal(0, 0.1, (n, k, 3)).astype(np.float32) if k else None,
        sh_degree=sh_degree,
        sh_dc=dc,
    )
    if extra:
        s.extra = {"nx": np.zeros(n, np.float32), "ny": np.zeros(n, np.float32), "nz": np.zeros(n, np.float32),
                   "segment_id": rng.integers(0, 9, n).astype(np.uint8)}
    return s


def expected_from_plyfile(path):
    """Converted attributes computed from plyfile's raw values with the published formulas."""
    v = PlyData.read(str(path))["vertex"].data
    names = v.dtype.names
    q = np.stack([v[f"rot_{i}"] for i in range(4)], 1).astype(np.float64)
    rest = sorted((n for n in names if n.startswith("f_rest_")), key=lambda n: int(n[7:]))
    k = len(rest) // 3
    out = {
        "positions": np.stack([v["x"], v["y"], v["z"]], 1),
        "scales": np.exp(np.stack([v[f"scale_{i}"] for i in range(3)], 1).astype(np.float64)),
        "opacities": 1 / (1 + np.exp(-v["opacity"].astype(np.float64))),
        "colors": np.clip(0.5 + SH_C0 * np.stack([v[f"f_dc_{i}"] for i in range(3)], 1).astype(np.float64), 0, 1),
        "rotations": q / np.linalg.norm(q, axis=1, keepdims=True),
    }
    if k:
        # Channel-major in the file: f_rest_{c*k + i} is coefficient i of channel c.
        out["sh_rest"] = np.stack([np.stack([v[f"f_rest_{c * k + i}"] for c in range(3)], 1) for i in range(k)], 1)
    return out


def assert_matches_plyfile(splats, path):
    exp = expected_from_plyfile(path)
    assert len(splats) == len(exp["positions"])
    np.testing.assert_array_equal(splats.positions, exp["positions"])
    np.testing.assert_allclose(splats.scales, exp["scales"], rtol=2e-6)
    np.testing.assert_allclose(splats.opacities, exp["opacities"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(splats.colors, exp["colors"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(splats.rotations, exp["rotations"], rtol=1e-6, atol=1e-7)
    if "sh_rest" in exp:
        np.testing.assert_array_equal(splats.sh_rest, exp["sh_rest"])
    else:
        assert splats.sh_rest is None


# --------------------------------------------------------------------------- real data

@pytest.mark.skipif(not DONUT.exists(), reason="shared data not available")
def test_real_donut_imports_with_exact_count_and_finite_attributes():
    s = read_splats(DONUT)
    assert len(s) == 45624
    assert s.sh_degree == 0 and s.sh_rest is None
    for name in ("positions", "scales", "rotations", "opacities", "colors"):
        assert np.all(np.isfinite(getattr(s, name))), name
    assert np.all(s.scales > 0)
    assert np.all((s.opacities > 0) & (s.opacities < 1))
    np.testing.assert_allclose(np.linalg.norm(s.rotations, axis=1), 1, atol=1e-6)
    assert_matches_plyfile(s, DONUT)


@pytest.mark.skipif(not DONUT.exists(), reason="shared data not available")
def test_real_donut_quaternions_are_unnormalised_in_file_and_normalised_here():
    v = PlyData.read(str(DONUT))["vertex"].data
    norms = np.linalg.norm(np.stack([v[f"rot_{i}"] for i in range(4)], 1), axis=1)
    assert norms.min() < 0.9 and norms.max() > 1.5  # the file really is unnormalised
    s = read_ply(DONUT)
    np.testing.assert_allclose(np.linalg.norm(s.rotations, axis=1), 1, atol=1e-6)


@pytest.mark.skipif(not DONUT.exists(), reason="shared data not available")
def test_small_chunks_give_identical_results_on_real_file():
    a = read_ply(DONUT)
    b = read_ply(DONUT, chunk=997)
    for name in ("positions", "scales", "rotations", "opacities", "colors"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


# --------------------------------------------------------------------------- synthetic files vs plyfile

@pytest.mark.parametrize("sh_degree", [0, 1, 2, 3])
@pytest.mark.parametrize("mode", ["binary", "ascii", "big_endian"])
def test_reader_agrees_with_plyfile(tmp_path, sh_degree, mode):
    s = random_splats(257, sh_degree, seed=sh_degree, extra=True)
    # Unnormalised quaternions, as trainers write them.
    s.rotations = s.rotations * np.linspace(0.3, 3.0, len(s), dtype=np.float32)[:, None]
    path = tmp_path / f"s{sh_degree}.ply"
    write_ply(path, s, ascii=mode == "ascii", byte_order=">" if mode == "big_endian" else "<",
              comments=["generated by a test", "vertical axis: z"])
    got = read_ply(path, chunk=50)
    assert got.sh_degree == sh_degree
    assert_matches_plyfile(got, path)
    assert set(got.extra) == {"nx", "ny", "nz", "segment_id"}
    ref = PlyData.read(str(path))["vertex"].data
    np.testing.assert_array_equal(got.extra["segment_id"], ref["segment_id"])


def test_header_comments_and_obj_info_are_kept(tmp_path):
    path = tmp_path / "c.ply"
    write_ply(path, random_splats(10), comments=["made by test", "second comment"])
    text = path.read_bytes()
    path.write_bytes(text.replace(b"end_header\n", b"obj_info scanner 1\nend_header\n", 1))
    header = read_ply_header(path)
    assert header.comments == ["made by test", "second comment", "scanner 1"]
    assert len(read_ply(path)) == 10


def test_max_sh_degree_truncates_rest(tmp_path):
    s = random_splats(40, 3)
    path = tmp_path / "sh3.ply"
    write_ply(path, s)
    got = read_ply(path, max_sh_degree=1)
    assert got.sh_degree == 1 and got.sh_rest.shape == (40, 3, 3)
    np.testing.assert_array_equal(got.sh_rest, s.sh_rest[:, :3, :])
    assert read_ply(path, max_sh_degree=0).sh_rest is None


def test_zero_quaternion_becomes_identity_with_warning(tmp_path):
    s = random_splats(20)
    s.rotations[3] = 0
    path = tmp_path / "z.ply"
    write_ply(path, s)
    with pytest.warns(SplatWarning, match="zero rotation"):
        got = read_ply(path)
    np.testing.assert_array_equal(got.rotations[3], [1, 0, 0, 0])


def test_extra_properties_between_standard_ones(tmp_path):
    """Real trainers interleave properties (nx ny nz after xyz); the reader maps by name."""
    rng = np.random.default_rng(5)
    n = 50
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
             "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3", "confidence"]
    arr = np.zeros(n, [(k, "f4") for k in names])
    for k in names:
        arr[k] = rng.normal(size=n)
    path = tmp_path / "interleaved.ply"
    PlyData([PlyElement.describe(arr, "vertex")], byte_order="<").write(str(path))
    got = read_ply(path)
    assert_matches_plyfile(got, path)
    np.testing.assert_array_equal(got.extra["confidence"], arr["confidence"])


# --------------------------------------------------------------------------- .splat

def decode_splat_independently(path):
    raw = np.fromfile(path, dtype=np.uint8).reshape(-1, 32)
    f = raw[:, :24].copy().view("<f4")
    rgba = raw[:, 24:28].astype(float) / 255
    q = (raw[:, 28:32].astype(float) - 128) / 128
    return f[:, :3], f[:, 3:6], rgba, q / np.linalg.norm(q, axis=1, keepdims=True)


def test_splat_format_roundtrip_and_layout(tmp_path):
    s = random_splats(333, seed=4)
    path = tmp_path / "x.splat"
    write_splat(path, s)
    assert path.stat().st_size == 32 * 333
    pos, scale, rgba, q = decode_splat_independently(path)
    got = read_splats(path)
    np.testing.assert_array_equal(got.positions, pos)
    np.testing.assert_array_equal(got.scales, scale)
    np.testing.assert_allclose(got.colors, rgba[:, :3], atol=1e-7)
    np.testing.assert_allclose(got.opacities, rgba[:, 3], atol=1e-7)
    np.testing.assert_allclose(got.rotations, q, atol=1e-6)
    # 8-bit colour and rotation: within quantisation of the originals.
    np.testing.assert_allclose(got.colors, s.colors, atol=0.5 / 255 + 1e-6)
    np.testing.assert_allclose(got.opacities, s.opacities, atol=0.5 / 255 + 1e-6)
    dots = np.abs(np.sum(got.rotations * s.rotations, axis=1))
    assert dots.min() > 0.999
    assert got.sh_degree == 0 and got.sh_rest is None


@pytest.mark.skipif(not DONUT.exists(), reason="shared data not available")
def test_real_donut_through_splat_format(tmp_path):
    s = read_ply(DONUT)
    path = tmp_path / "donut.splat"
    write_splat(path, s)
    got = read_splat(path)
    assert len(got) == 45624
    np.testing.assert_array_equal(got.positions, s.positions)
    np.testing.assert_allclose(got.scales, s.scales, rtol=1e-7)


def test_splat_truncated_and_misnamed(tmp_path):
    s = random_splats(10)
    path = tmp_path / "t.splat"
    write_splat(path, s)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(SplatError, match=r"not a multiple of 32 \(9 whole gaussians and 27 stray bytes\)"):
        read_splat(path)
    ply = tmp_path / "p.splat"
    write_ply(ply, s)
    with pytest.raises(SplatError, match="PLY file, not a .splat"):
        read_splat(ply)
    empty = tmp_path / "e.splat"
    empty.write_bytes(b"")
    with pytest.raises(SplatError, match="empty"):
        read_splats(empty)


def test_splat_big_endian_garbage_is_rejected(tmp_path):
    s = random_splats(100)
    path = tmp_path / "be.splat"
    write_splat(path, s)
    raw = np.fromfile(path, dtype=np.uint8).reshape(-1, 32)
    raw[:, :24] = raw[:, :24].reshape(-1, 6, 4)[:, :, ::-1].reshape(-1, 24)  # floats byte-swapped
    raw.tofile(path)
    with pytest.raises(SplatError, match="absurd"):
        read_splat(path)


# --------------------------------------------------------------------------- bad input

def write_valid(tmp_path, n=100, ascii=False, name="v.ply"):
    path = tmp_path / name
    write_ply(path, random_splats(n), ascii=ascii)
    return path


def replace_header(path, old: bytes, new: bytes):
    data = path.read_bytes()
    end = data.index(b"end_header\n")
    assert old in data[:end]
    path.write_bytes(data[:end].replace(old, new, 1) + data[end:])


def one_line(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    assert isinstance(exc.value, SoundstageError)
    return msg


def test_bad_truncated_body(tmp_path):
    path = write_valid(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:-70])  # 56-byte records: cuts inside a vertex
    with pytest.raises(SplatError) as exc:
        read_ply(path)
    msg = one_line(exc)
    assert str(path) in msg and "declares 100 vertices" in msg and "truncated" in msg
    assert "98 whole vertices" in msg


def test_bad_vertex_count_too_large(tmp_path):
    path = write_valid(tmp_path)
    replace_header(path, b"element vertex 100", b"element vertex 120")
    with pytest.raises(SplatError) as exc:
        read_ply(path)
    msg = one_line(exc)
    assert "declares 120 vertices" in msg and "exactly 100 whole vertices" in msg and "too large" in msg


def test_bad_vertex_count_too_small(tmp_path):
    path = write_valid(tmp_path)
    replace_header(path, b"element vertex 100", b"element vertex 90")
    with pytest.raises(SplatError) as exc:
        read_ply(path)
    msg = one_line(exc)
    assert "declares 90 vertices but the body holds 100" in msg and "too small" in msg


def test_bad_big_endian_header_on_little_endian_data(tmp_path):
    path = write_valid(tmp_path)
    replace_header(path, b"binary_little_endian", b"binary_big_endian")
    with pytest.raises(SplatError) as exc:
        read_ply(path)
    msg = one_line(exc)
    assert "binary_big_endian" in msg and "little-endian" in msg and "mislabelled" in msg


def test_bad_little_endian_header_on_big_endian_data(tmp_path):
    path = tmp_path / "be.ply"
    write_ply(path, random_splats(100), byte_order=">")
    replace_header(path, b"binary_big_endian", b"binary_little_endian")
    with pytest.raises(SplatError, match="mislabelled"):
        read_ply(path)


def test_bad_nan_attributes_default_error_and_drop_option(tmp_path):
    s = random_splats(100)
    s.positions[[3, 50], 1] = np.nan
    s.sh_dc[77, 2] = np.inf
    path = tmp_path / "nan.ply"
    write_ply(path, s)
    with pytest.raises(SplatError) as exc:
        read_ply(path)
    msg = one_line(exc)
    assert "3 of 100 gaussians" in msg and "vertex 3" in msg and "nonfinite='drop'" in msg
    with pytest.warns(SplatWarning, match="dropped 3 of 100"):
        got = read_ply(path, nonfinite="drop")
    assert len(got) == 97
    keep = np.setdiff1d(np.arange(100), [3, 50, 77])
    np.testing.assert_array_equal(got.positions, s.positions[keep])


def test_bad_missing_end_header(tmp_path):
    path = write_valid(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data.replace(b"end_header\n", b"", 1))
    with pytest.raises(SplatError) as exc:
        read_ply(path)
    assert "end_header" in one_line(exc)
    # A text-only file that stops without end_header.
    head = tmp_path / "head.ply"
    head.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n")
    with pytest.raises(SplatError, match="no 'end_header' line"):
        read_ply(head)


@pytest.mark.parametrize("with_colour", [False, True])
def test_bad_plain_point_cloud(tmp_path, with_colour):
    rng = np.random.default_rng(0)
    fields = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    if with_colour:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1"), ("nx", "f4"), ("ny", "f4"), ("nz", "f4")]
    arr = np.zeros(500, fields)
    for k, _ in fields:
        arr[k] = rng.uniform(0, 200, 500)
    path = tmp_path / "cloud.ply"
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(path))
    with pytest.raises(SplatError) as exc:
        read_splats(path)
    msg = one_line(exc)
    assert "point cloud" in msg and "not a Gaussian splat file" in msg


def test_bad_mesh_and_compressed_and_partial(tmp_path):
    verts = np.zeros(3, [("x", "f4"), ("y", "f4"), ("z", "f4")])
    faces = np.zeros(1, [("vertex_indices", "i4", (3,))])
    faces["vertex_indices"][0] = (0, 1, 2)
    mesh = tmp_path / "mesh.ply"
    PlyData([PlyElement.describe(verts, "vertex"), PlyElement.describe(faces, "face")]).write(str(mesh))
    with pytest.raises(SplatError, match="this is a mesh"):
        read_ply(mesh)
    comp = tmp_path / "comp.ply"
    chunk = np.zeros(1, [("min_x", "f4")])
    packed = np.zeros(3, [("packed_position", "u4"), ("packed_rotation", "u4")])
    PlyData([PlyElement.describe(chunk, "chunk"), PlyElement.describe(packed, "vertex")]).write(str(comp))
    with pytest.raises(SplatError, match="compressed"):
        read_ply(comp)
    partial = tmp_path / "partial.ply"
    arr = np.zeros(3, [(k, "f4") for k in ("x", "y", "z", "opacity", "f_dc_0", "f_dc_1", "f_dc_2")])
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(partial))
    with pytest.raises(SplatError, match="lacks scale_0, scale_1, scale_2, rot_0"):
        read_ply(partial)


def test_bad_ascii_counts_and_truncation(tmp_path):
    path = write_valid(tmp_path, n=30, ascii=True)
    good = path.read_bytes()
    replace_header(path, b"element vertex 30", b"element vertex 35")
    with pytest.raises(SplatError, match="declares 35 vertices but the body has only 30 lines"):
        read_ply(path)
    path.write_bytes(good)
    replace_header(path, b"element vertex 30", b"element vertex 25")
    with pytest.raises(SplatError, match="declares 25 vertices but the body has 5 more lines.*too small"):
        read_ply(path)
    path.write_bytes(good[:-20])
    # 18 header lines, so the 30th and last vertex is on line 48.
    with pytest.raises(SplatError, match=r"line 48 has \d+ values, expected 14"):
        read_ply(path)
    path.write_bytes(good)
    assert len(read_ply(path)) == 30


def test_bad_not_ply_and_missing_file(tmp_path):
    txt = tmp_path / "a.ply"
    txt.write_text("hello\n")
    with pytest.raises(SplatError, match="not a PLY file"):
        read_ply(txt)
    with pytest.raises(SplatError, match="cannot open"):
        read_splats(tmp_path / "missing.ply")
    bad_count = tmp_path / "b.ply"
    bad_count.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex -4\nend_header\n")
    with pytest.raises(SplatError, match="non-negative integer count"):
        read_ply(bad_count)


def test_padding_newline_after_body_is_tolerated(tmp_path):
    path = write_valid(tmp_path, n=20)
    path.write_bytes(path.read_bytes() + b"\n")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        assert len(read_ply(path)) == 20
    assert any("padding" in str(w.message) for w in rec)


def test_writer_is_atomic_on_failure(tmp_path):
    s = random_splats(10)
    s.extra = {"bad": np.zeros(3)}  # wrong length: fails while writing
    path = tmp_path / "never.ply"
    with pytest.raises(Exception):
        write_ply(path, s)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 150), sh=st.integers(0, 3), chunk=st.integers(1, 200), ascii=st.booleans(),
       seed=st.integers(0, 2**16))
def test_roundtrip_any_size_degree_and_chunk(tmp_path, n, sh, chunk, ascii, seed):
    s = random_splats(n, sh, seed=seed)
    path = tmp_path / f"rt_{n}_{sh}_{chunk}_{int(ascii)}.ply"
    write_ply(path, s, ascii=ascii)
    got = read_ply(path, chunk=chunk)
    np.testing.assert_array_equal(got.positions, s.positions)
    np.testing.assert_allclose(got.scales, s.scales, rtol=3e-6)
    np.testing.assert_allclose(got.opacities, s.opacities, rtol=1e-5)
    np.testing.assert_allclose(got.rotations, s.rotations, atol=1e-6)
    np.testing.assert_array_equal(got.sh_dc, s.sh_dc)
    if sh:
        np.testing.assert_array_equal(got.sh_rest, s.sh_rest)
