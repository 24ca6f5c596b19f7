"""The ``soundstage`` command.

Exit status: 0 on success, 2 with one line ``error: ...`` on stderr for input
the user can fix, 130 when cancelled (Ctrl-C), nothing half-written either way.
Other verbs (``impact``, ``locate``, ``splats``, ``field``, ``cache``) are added by
modules that expose ``add_parser(subparsers)``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys

from soundstage import __version__
from soundstage.errors import Cancelled, SoundstageError

#: Modules that add verbs, when present.
VERB_MODULES = ("soundstage.impact.cli", "soundstage.splats.cli", "soundstage.field.cli", "soundstage.cache_cli",
                "soundstage.footage.cli")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit 2, like every other user error
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def _progress_printer(json_lines: bool, quiet: bool):
    if quiet:
        return None
    if json_lines:
        def emit(fraction, message):
            print(json.dumps({"event": "progress", "fraction": round(float(fraction), 4), "message": message}),
                  flush=True)
        return emit
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=100, unit="%", leave=False, file=sys.stderr, bar_format="{l_bar}{bar}| {desc}")

        def tick(fraction, message):
            bar.n = int(100 * fraction)
            bar.set_description_str(message[:40])
            bar.refresh()
            if fraction >= 1.0:
                bar.close()
        return tick
    last = [-1]

    def plain(fraction, message):
        pct = int(100 * fraction) // 10 * 10
        if pct != last[0]:
            last[0] = pct
            print(f"[{pct:3d}%] {message}", flush=True)  # stdout: stderr is for the error line
    return plain


def cmd_bake(args) -> int:
    from soundstage.bake import bake

    res = bake(args.job, out=args.out, fmt=args.format, progress=_progress_printer(args.json_progress, args.quiet))
    if args.json_progress:
        print(json.dumps({"event": "done", "path": str(res.path), "sidecar": str(res.sidecar)}), flush=True)
    else:
        i = res.info
        print(f"wrote {res.path} ({i['format']}, {len(i['channels'])} ch, {i['duration_s']:.2f} s, "
              f"peak {i['peak_dbfs']:.1f} dBFS, {i['realtime_factor']}x real time)")
        for note in i["notes"]:
            print(f"note: {note}")
    return 0


def cmd_info(args) -> int:
    import numpy
    import scipy

    from soundstage.ambisonics import FORMATS
    from soundstage.materials import material_names

    if args.materials:
        for name in material_names():
            print(name)
        return 0
    info = {"soundstage": __version__, "python": sys.version.split()[0], "numpy": numpy.__version__,
            "scipy": scipy.__version__}
    for mod in ("pyroomacoustics", "sofar", "soundfile", "soxr", "torch", "bpy"):
        if importlib.util.find_spec(mod) is not None:
            try:
                info[mod] = importlib.import_module(mod).__version__ if mod != "bpy" else "installed"
            except Exception as e:  # a broken optional package is reported, not fatal
                info[mod] = f"unusable ({type(e).__name__})"
        else:
            info[mod] = "not installed"
    backends = ["numpy-cpu"]
    if info.get("torch") not in (None, "not installed") and not str(info["torch"]).startswith("unusable"):
        import torch

        backends.append("torch-cuda" if torch.cuda.is_available() else "torch-cpu")
    info["backends"] = backends
    info["formats"] = list(FORMATS)
    from soundstage.hrtf import load_hrtf

    h = load_hrtf("default", 48000)
    info["default_hrtf"] = {"name": h.name, "directions": int(len(h.directions)),
                            "source": "MIT KEMAR normal pinna, Gardner & Martin (1995), no usage restrictions"}
    info["materials"] = len(material_names())
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            print(f"{k:16s} {v}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="soundstage", description="Spatial sound for 3D scenes.")
    p.add_argument("--version", action="version", version=f"soundstage {__version__}")
    sub = p.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    sub.required = True
    b = sub.add_parser("bake", help="render a job to a WAV file and its JSON sidecar",
                       description="Render JOB.json (see docs/job-format.md) to audio.")
    b.add_argument("job", metavar="JOB.json")
    b.add_argument("--out", metavar="PATH", help="output WAV path (overrides output.path)")
    b.add_argument("--format", choices=["binaural", "stereo", "ambix", "5.1"], help="overrides output.format")
    b.add_argument("--json-progress", action="store_true", help="print progress as JSON lines on stdout")
    b.add_argument("--quiet", action="store_true", help="no progress output")
    b.set_defaults(func=cmd_bake)
    i = sub.add_parser("info", help="versions, backends, default HRTF, materials")
    i.add_argument("--json", action="store_true")
    i.add_argument("--materials", action="store_true", help="list material names")
    i.set_defaults(func=cmd_info)
    for mod in VERB_MODULES:
        if importlib.util.find_spec(mod.rsplit(".", 1)[0]) is not None and importlib.util.find_spec(mod) is not None:
            importlib.import_module(mod).add_parser(sub)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SoundstageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (Cancelled, KeyboardInterrupt):
        print("cancelled; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
