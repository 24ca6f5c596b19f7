"""The ``impact`` and ``locate`` verbs of the ``soundstage`` command.

``add_parser(subparsers)`` registers both on an argparse subparsers object; each
handler returns an exit code. User errors are raised as ``SoundstageError``
subclasses (the main command prints one line and exits 2).

    soundstage impact MESH --material NAME --at X Y Z [--normal X Y Z] [--force N] --out hit.wav
    soundstage locate SCENE HIT.wav [--json OUT.json] [--vertex-scores]
"""

from __future__ import annotations

import time
from pathlib import Path

from soundstage.errors import SoundstageError


def _write_wav(path, data, rate):
    # audio_io.write_wav writes float32 WAV atomically (temp file, fsync, replace).
    from soundstage.audio_io import write_wav

    write_wav(path, data, rate)


def _write_json(path, obj):
    from soundstage.audio_io import write_json

    write_json(path, obj)


def cmd_impact(args) -> int:
    from soundstage.impact.hit import impact
    from soundstage.impact.materials import MATERIALS, material_names

    if args.list_materials:
        for name in material_names():
            m = MATERIALS[name]
            print(f"{name:10s} density {m.density:6.0f} kg/m3  E {m.youngs_modulus / 1e9:7.3f} GPa  "
                  f"nu {m.poisson:.2f}  loss factor {m.loss_factor:g}")
        return 0
    if args.mesh is None or args.at is None or args.out is None:
        raise SoundstageError("impact needs MESH, --at X Y Z and --out PATH (see 'soundstage impact --help')")
    out = Path(args.out)
    if out.suffix.lower() != ".wav":
        raise SoundstageError(f"--out {out}: the output must be a .wav file")
    t0 = time.perf_counter()
    res = impact(args.mesh, args.at, args.normal, material=args.material, force=args.force,
                 sample_rate=args.rate, duration=args.duration, seed=args.seed, budget=_budget(args.budget),
                 cache=not args.no_cache)
    _write_wav(out, res.audio, res.sample_rate)
    total = time.perf_counter() - t0
    info = dict(kind="impact", mesh=str(args.mesh), material=res.material.to_dict(),
                material_reason=res.material_reason, point=[float(x) for x in res.point],
                normal=[float(x) for x in res.normal], force_n=args.force, contact_time_s=res.contact_time,
                sample_rate=res.sample_rate, frames=int(len(res.audio)), units="Pa at 1 m",
                peak_pa=float(abs(res.audio).max()), seed=args.seed, model=res.info, wall_s=round(total, 4))
    _write_json(out.with_suffix(".json"), info)
    if res.material_reason != "given":
        print(f"material: {res.material_reason} (pass --material NAME to change it)")
    for note in res.info.get("notes", []):
        print(f"note: {note}")
    cached = "cached" if res.info.get("cache") == "hit" else f"{res.info.get('modal_s', 0):.2f} s"
    print(f"wrote {out} ({res.material.name}, {len(res.audio) / res.sample_rate:.2f} s at {res.sample_rate} Hz, "
          f"peak {abs(res.audio).max():.3g} Pa at 1 m; {res.info['modes']} modes from {res.info['f1_hz']:.1f} Hz, "
          f"modal analysis {cached}, synthesis {1000 * res.info['synth_s']:.1f} ms)")
    return 0


def cmd_locate(args) -> int:
    from soundstage.audio_io import read_audio
    from soundstage.impact.locate import load_scene, locate, object_models

    objects = load_scene(args.scene)
    audio, rate = read_audio(args.hit, label="hit recording")
    models = object_models(objects, budget=_budget(args.budget), cache=not args.no_cache)
    for obj, m in zip(objects, models):
        if isinstance(m, Exception):
            print(f"note: {obj.name} left out: {m}")
        elif obj.material_reason != "given":
            print(f"note: {obj.name}: material {obj.material_reason}")
    res = locate(objects, audio, rate, models=models, n_regions=args.regions)
    if not len(res.signature.freqs):
        print("note: no modal peak found in the recording; all objects are equally likely")
    for rank, o in enumerate(res.objects[: args.top], 1):
        bp = ", ".join(f"{x:.3f}" for x in o.best_point)
        print(f"{rank:2d}. {o.name:20s} p={o.probability:.3f}  ({o.material})  most likely point ({bp})")
    if args.json:
        _write_json(args.json, res.to_dict(vertex_scores=args.vertex_scores))
        print(f"wrote {args.json}")
    return 0


def add_parser(subparsers) -> None:
    """Register the ``impact`` and ``locate`` verbs on ``subparsers``."""
    p = subparsers.add_parser(
        "impact", help="synthesise the sound of hitting an object (modal analysis of its mesh)",
        description="Synthesise the sound of hitting MESH (.obj, .ply, .stl, .glb) at a point: modal "
                    "analysis of the mesh (cached), Hertz contact, modal synthesis, radiation. Writes mono "
                    "float32 WAV of the sound pressure at 1 m (Pa) and a JSON sidecar. See docs/impact.md.")
    p.add_argument("mesh", metavar="MESH", nargs="?", help="mesh file, metres")
    p.add_argument("--material", metavar="NAME", help="impact material (default: guessed from the file's render "
                   "material; see --list-materials)")
    p.add_argument("--at", nargs=3, type=float, metavar=("X", "Y", "Z"), help="hit position (snapped to the surface)")
    p.add_argument("--normal", nargs=3, type=float, metavar=("X", "Y", "Z"),
                   help="outward surface normal at the hit (default: the nearest face's)")
    p.add_argument("--force", type=float, default=20.0, metavar="N", help="peak contact force, newtons (20)")
    p.add_argument("--out", metavar="PATH", help="output .wav")
    p.add_argument("--rate", type=int, default=48000, metavar="HZ", help="sample rate (48000)")
    p.add_argument("--duration", type=float, default=2.0, metavar="S", help="length in seconds (2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the natural hit-to-hit variation (0)")
    p.add_argument("--budget", type=int, default=None, metavar="CELLS",
                   help="modal-analysis grid cells (accuracy vs time; default 3000)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the modal cache")
    p.add_argument("--list-materials", action="store_true", help="list impact materials and exit")
    p.set_defaults(func=cmd_impact)

    q = subparsers.add_parser(
        "locate", help="rank a scene's objects by how likely a recorded hit came from them",
        description="Compare the modal peaks of HIT.wav with every object's predicted modes and print the "
                    "objects, most likely first. SCENE is a JSON scene ({\"objects\": [{\"name\", \"mesh\", "
                    "\"material\", \"matrix_world\"}]}) or a .glb/.gltf/.obj scene. See docs/impact.md.")
    q.add_argument("scene", metavar="SCENE")
    q.add_argument("hit", metavar="HIT.wav")
    q.add_argument("--top", type=int, default=5, help="objects to print (5)")
    q.add_argument("--regions", type=int, default=8, help="regions per object (8)")
    q.add_argument("--json", metavar="OUT.json", help="write per-object and per-region scores as JSON")
    q.add_argument("--vertex-scores", action="store_true", help="include per-vertex heat-map values in --json")
    q.add_argument("--budget", type=int, default=None, metavar="CELLS", help="modal-analysis grid cells")
    q.add_argument("--no-cache", action="store_true", help="do not read or write the modal cache")
    q.set_defaults(func=cmd_locate)


def _budget(value):
    from soundstage.impact.voxel import CELL_BUDGET

    if value is None:
        return CELL_BUDGET
    if not 64 <= value <= 200_000:
        raise SoundstageError(f"--budget {value}: choose 64..200000 grid cells")
    return int(value)
