"""Property-based tests of the job loader (hypothesis).

* Any valid document loads, and the ``Job`` says what the document says
  (frame counts, output length, per-frame arrays, defaults).
* Any damaged document (a value of the wrong type or range anywhere, a
  missing or unknown field) either loads or is refused with a one-line
  ``SoundstageError``, never another exception: the loader is the gate for
  untrusted input (a job file, or a scene from someone else).
* ``chunks.job_document`` (how a job travels to Dask workers) gives back the
  same job: equal content digests.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from soundstage.ambisonics import FORMATS
from soundstage.errors import SoundstageError
from soundstage.job import MIN_DISTANCE, load_job

# derandomize, no example database: the same examples on every run and machine, so CI cannot pass one
# day and fail the next.
SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    """A short real audio file every generated source plays."""
    p = tmp_path_factory.mktemp("job_props") / "a.wav"
    sf.write(p, np.zeros(480, np.float32), 48000, subtype="FLOAT")
    return str(p)


def _rotation(draw):
    q = np.array(draw(st.lists(st.floats(-1, 1), min_size=4, max_size=4)))
    assume(np.linalg.norm(q) > 0.1)
    from scipy.spatial.transform import Rotation

    return Rotation.from_quat(q / np.linalg.norm(q)).as_matrix()


@st.composite
def valid_jobs(draw, audio_path):
    fs = draw(st.integers(8000, 192000))
    fps = draw(st.sampled_from([12, 23.976, 24, 25, 29.97, 30, 48, 50, 60]))
    start = draw(st.integers(-100, 1000))
    n = draw(st.integers(1, 12))
    room = draw(st.sampled_from(["free", "shoebox"]))
    lo, hi = np.array([0.0, 0.0, 0.0]), np.array([6.0, 5.0, 3.0])
    point = st.lists(st.floats(0.2, 2.8), min_size=3, max_size=3)
    per_frame = draw(st.booleans())
    lis = [np.array(draw(point)) for _ in range(n if per_frame else 1)]
    mats = []
    for p in lis:
        m = np.eye(4)
        m[:3, :3] = _rotation(draw)
        m[:3, 3] = p
        mats.append(m.reshape(-1).tolist())
    sources = []
    for i in range(draw(st.integers(1, 3))):
        shift = np.array([3.0, 0.0, 0.0]) * (i % 2)  # every other source in the room's far half
        pos = [np.array(draw(point)) + shift for _ in range(n if draw(st.booleans()) else 1)]
        assume(all(np.linalg.norm(q - l) >= 2 * MIN_DISTANCE for q in pos for l in lis))
        src = {"name": f"s{i}", "audio": audio_path, "position": pos[0].tolist() if len(pos) == 1 else
               [q.tolist() for q in pos]}
        if draw(st.booleans()):
            src["gain_db"] = draw(st.floats(-60, 20))
        if draw(st.booleans()):
            src["start_frame"] = draw(st.integers(start - 50, start + 50))
        sources.append(src)
    fmt = draw(st.sampled_from(FORMATS))
    doc = {"version": 1, "sample_rate": fs, "fps": fps, "frame_start": start, "frame_end": start + n - 1,
           "speed_of_sound": draw(st.floats(300, 360)),
           "room": {"type": "free_field"} if room == "free" else
           {"type": "shoebox", "min": lo.tolist(), "max": hi.tolist(),
            "material": draw(st.sampled_from(["brickwork", "carpet_cotton", "plasterboard", {"absorption": 0.3}]))},
           "listener": {"name": "Cam", "matrix_world": mats[0] if len(mats) == 1 else mats},
           "sources": sources,
           "output": {"format": fmt, "ambisonic_order": draw(st.integers(1, 3)), "path": "/tmp/never-written.wav"}}
    if draw(st.booleans()):
        doc["render"] = {"reflection_order": draw(st.integers(0, 3)), "late_reverb": draw(st.booleans()),
                         "sh_order": draw(st.integers(1, 3)), "seed": draw(st.integers(0, 2**31))}
    return doc


def _valid(audio):
    return valid_jobs(audio)


@SETTINGS
@given(data=st.data())
def test_valid_documents_load_and_mean_what_they_say(audio, data):
    doc = data.draw(_valid(audio))
    job = load_job(doc)
    n = doc["frame_end"] - doc["frame_start"] + 1
    assert job.n_frames == n
    assert job.n_samples == int(round(n * doc["sample_rate"] / doc["fps"]))
    assert job.listener.matrices.shape == (n, 4, 4)
    mats = np.asarray(doc["listener"]["matrix_world"], float).reshape(-1, 4, 4)
    np.testing.assert_array_equal(job.listener.matrices, np.broadcast_to(mats, (n, 4, 4)))
    for s, d in zip(job.sources, doc["sources"]):
        pos = np.asarray(d["position"], float).reshape(-1, 3)
        np.testing.assert_array_equal(s.positions, np.broadcast_to(pos, (n, 3)))
        assert s.gain_db == d.get("gain_db", 0.0)
        assert s.start_frame == d.get("start_frame", doc["frame_start"])
    assert job.output.format == doc["output"]["format"]
    # Loading is deterministic and a JSON round trip changes nothing.
    again = load_job(json.loads(json.dumps(doc)))
    assert again.n_samples == job.n_samples and again.room_spec == job.room_spec


_JUNK = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                  st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
                  st.lists(st.one_of(st.integers(-5, 5), st.floats(allow_nan=True)), max_size=4),
                  st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))


def _paths(obj, prefix=()):
    """Every place in a document: (path, value), containers included."""
    yield prefix, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list) and len(obj) <= 16:
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def _damage(doc, data):
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        places = [p for p, _ in _paths(doc) if p]
        path = data.draw(st.sampled_from(places), label="where")
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        how = data.draw(st.sampled_from(["replace", "delete", "add"]), label="how")
        if how == "replace":
            parent[key] = data.draw(_JUNK, label="junk")
        elif how == "delete":
            del parent[key]
        elif isinstance(parent, dict):
            parent[data.draw(st.text(min_size=1, max_size=8), label="new key")] = data.draw(_JUNK, label="junk")
        else:
            parent.insert(key, data.draw(_JUNK, label="junk"))
    return doc


@SETTINGS
@given(data=st.data())
def test_damaged_documents_load_or_are_refused_in_one_line(audio, data):
    doc = _damage(data.draw(_valid(audio)), data)
    try:
        load_job(doc)
    except SoundstageError as e:
        msg = str(e)
        assert msg.strip() and "\n" not in msg, repr(msg)


@SETTINGS
@given(data=st.data())
def test_wrong_top_level_types_are_refused(audio, data):
    doc = data.draw(_valid(audio))
    field = data.draw(st.sampled_from(["sample_rate", "fps", "frame_start", "frame_end", "speed_of_sound", "room",
                                       "listener", "sources", "output", "render", "version"]))
    doc[field] = data.draw(st.one_of(st.text(max_size=3), st.lists(st.integers(), max_size=2), st.just(None)))
    assume(not (field in ("room", "output") and doc[field] is None))  # null is "not given": the defaults
    with pytest.raises(SoundstageError):
        load_job(doc)


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_job_document_round_trip_keeps_the_content(audio, data):
    from soundstage.chunks import job_digest, job_document
    from soundstage.render import RenderContext

    job = load_job(data.draw(_valid(audio)))
    assume(job.output.format != "binaural")  # keeps the test fast (no HRTF); the document is the same
    back = load_job(job_document(job))
    assert job_digest(RenderContext(back)) == job_digest(RenderContext(job))


# --------------------------------------------------------------------------- found by the properties above
# soundstage/job.py belongs to the lead; these pin what the properties found until it is fixed.


@pytest.mark.parametrize("output", [[0], "out.wav", []])
def test_output_that_is_not_an_object_is_refused(audio, output):
    doc = {"version": 1, "listener": {"matrix_world": np.eye(4).reshape(-1).tolist()},
           "sources": [{"audio": audio, "position": [1, 0, 0]}], "output": output}
    with pytest.raises(SoundstageError, match="output"):
        load_job(doc)


def test_absurd_frame_range_is_refused(audio):
    doc = {"version": 1, "frame_start": 1, "frame_end": 10**15,
           "listener": {"matrix_world": np.eye(4).reshape(-1).tolist()},
           "sources": [{"audio": audio, "position": [1, 0, 0]}], "output": {"path": "/tmp/x.wav"}}
    with pytest.raises(SoundstageError):
        load_job(doc)


def test_names_with_line_breaks_still_give_one_line(audio):
    doc = {"version": 1, "listener": {"matrix_world": np.eye(4).reshape(-1).tolist()},
           "sources": [{"audio": audio, "position": [1, 0, 0]}], "output": {"path": "/tmp/x.wav"},
           "bogus\nfield": 1}
    with pytest.raises(SoundstageError) as e:
        load_job(doc)
    assert "\n" not in str(e.value)
