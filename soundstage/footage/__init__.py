"""Footage and stills: turn what a camera saw into moving sound sources.

- ``Camera``: a solved camera path (Blender ``matrix_world`` per frame + pinhole intrinsics).
- ``Track`` / ``read_track_csv``: 2-D marker positions per frame.
- ``DepthSequence`` / ``DepthValues``: depth at the marker (maps or plain values).
- ``lift_track``: back-projection to 3-D; ``clean_path``: DBSCAN outlier removal + gap filling.
- ``sources_from_image``: one source per image region at its 3-D centre.
- ``match_library``: sound files matched to names.
- ``estimate_doa`` / ``evaluate_doa``: interaural direction of arrival from a binaural WAV.
- ``synthetic_shot``: a shot with known ground truth.

Conventions are in docs/footage.md.
"""

from soundstage.footage.camera import Camera, read_camera
from soundstage.footage.clean import CleanResult, clean_path
from soundstage.footage.doa import estimate_doa, evaluate_doa, evaluate_job_doa, truth_from_job
from soundstage.footage.depth import DepthSequence, DepthValues, read_depth_map, read_pfm
from soundstage.footage.lift import LiftResult, lift_track
from soundstage.footage.library import match_library
from soundstage.footage.regions import sources_from_image
from soundstage.footage.synthetic import SyntheticShot, synthetic_shot
from soundstage.footage.track import Track, read_track_csv

__all__ = [
    "Camera", "read_camera", "Track", "read_track_csv", "DepthSequence", "DepthValues", "read_depth_map",
    "read_pfm", "estimate_doa", "evaluate_doa", "evaluate_job_doa", "truth_from_job", "match_library",
    "sources_from_image", "LiftResult", "lift_track", "CleanResult", "clean_path", "SyntheticShot", "synthetic_shot",
]
