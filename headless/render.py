"""Bake a .blend's sound without the UI.

Under Blender::

    blender -b scene.blend -P headless/render.py -- [--out DIR] [--format F] [--frames A-B]
        [--listener NAME] [--save] [--render-video] [--json-progress] [--engine-python PATH]

Under plain Python with the bpy module installed (same code path)::

    python headless/render.py scene.blend -- [same flags]

Bakes every listener camera (or the one named) into
``DIR/<scene>_<listener>_<format>.wav`` with its JSON sidecar, puts binaural
and stereo tracks on the Video Sequencer at the range's first frame, and with
``--save`` saves the .blend in place with those strips. ``--render-video``
then renders the animation from each listener with its track muxed in
(Blender's FFmpeg: H.264 + AAC in MP4). Exit status 0 on success, 2 with one
line ``error: ...`` on stderr for bad input, 3 when interrupted.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "soundstage_addon"
EXIT_OK, EXIT_USER, EXIT_CANCELLED = 0, 2, 3


def load_extension(name: str = PACKAGE):
    """Import the repository root (the extension) as a package called ``name``.

    Blender imports the extension as ``bl_ext.<repo>.soundstage``; outside of
    Blender's extension system the root directory is not importable by its
    folder name, so it is loaded from its path. Relative imports inside
    ``addon`` and ``bridge`` then work the same in both cases.
    """
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def split_argv(argv: list[str]) -> tuple[list[str], list[str], bool]:
    """Split ``sys.argv`` into (arguments before ``--``, after ``--``, run as a plain script).

    Under Blender ``argv[0]`` is the Blender binary and everything before
    ``--`` is Blender's; under Python ``argv[0]`` is this script and the .blend
    comes before ``--``.
    """
    plain = Path(argv[0]).resolve() == Path(__file__).resolve() if argv else False
    if "--" in argv:
        i = argv.index("--")
        before, after = argv[1:i], argv[i + 1:]
    else:
        before, after = argv[1:], []
        if plain:  # "python render.py scene.blend --out x" without "--": be forgiving
            before, after = argv[1:2], argv[2:]
    return (before if plain else []), after, plain


def parse_frames(text: str) -> tuple[int, int]:
    try:
        a, b = (int(x) for x in text.split("-", 1)) if "-" in text.lstrip("-") else (int(text), int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--frames expects A-B (e.g. 1-120), got '{text}'") from None
    return a, b


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="headless/render.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="output folder (default: the scene's Soundstage setting, //soundstage/)")
    p.add_argument("--format", choices=["binaural", "stereo", "ambix", "5.1"], help="output format")
    p.add_argument("--frames", type=parse_frames, help="frame range A-B (default: the scene's)")
    p.add_argument("--listener", help="bake only this camera")
    p.add_argument("--save", action="store_true", help="save the .blend in place with the new strips")
    p.add_argument("--render-video", action="store_true", help="render the animation with the track muxed in")
    p.add_argument("--json-progress", action="store_true", help="progress as JSON lines on stdout")
    p.add_argument("--engine", choices=["auto", "inprocess", "worker"], default="auto",
                   help="run the engine in this process or as a worker (default: auto)")
    p.add_argument("--engine-python", default="", help="the engine environment's python, for the worker")
    return p


class Progress:
    """Prints progress: JSON lines, a tqdm bar on a terminal, or plain lines."""

    def __init__(self, json_lines: bool):
        self.json = json_lines
        self.bar = None
        self._last = (-1, "")
        if not json_lines and sys.stderr.isatty():
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=100, unit="%", desc="bake", file=sys.stderr)
            except ImportError:  # Blender's own Python has no tqdm
                self.bar = None

    def __call__(self, fraction: float, message: str) -> None:
        pct = int(fraction * 100)
        if self.json:
            print(json.dumps({"event": "progress", "fraction": round(fraction, 4), "message": message}), flush=True)
        elif self.bar is not None:
            self.bar.n = pct
            self.bar.set_postfix_str(message[:40], refresh=True)
        elif (pct // 5, message) != self._last:  # plain log: one line per 5 % or new step
            self._last = (pct // 5, message)
            print(f"[{pct:3d}%] {message}", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()

    def event(self, **fields):
        if self.json:
            print(json.dumps(fields, default=str), flush=True)


def fail(message: str, code: int = EXIT_USER) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


def ensure_properties(ext) -> None:
    """Make Soundstage's properties readable (register them unless the extension already did)."""
    import bpy

    if not hasattr(bpy.types.Scene, "soundstage"):
        import atexit
        import importlib

        props = importlib.import_module(ext.__name__ + ".addon.properties")
        props.register()
        # Unregister before the interpreter exits: the bpy 4.2 module crashes at exit
        # (SIGSEGV) when Python property groups are still registered.
        atexit.register(props.unregister)


def engine_preferences() -> tuple[str, str]:
    """``(mode, python)`` from an enabled Soundstage extension's preferences, if any (real Blender)."""
    import bpy

    for addon in bpy.context.preferences.addons:
        if addon.module.rpartition(".")[2] == "soundstage" and addon.preferences is not None:
            p = addon.preferences
            mode = {"AUTO": "auto", "WORKER": "worker", "INPROCESS": "inprocess"}.get(
                getattr(p, "engine_mode", "AUTO"), "auto")
            return mode, getattr(p, "engine_python", "")
    return "auto", ""


def render_video(scene, session, out_dir: Path, timeline, log) -> list[Path]:
    """Render the animation from each baked listener with its track as the audio.

    Blender's FFmpeg muxes the scene's sound (the Sequencer strips) into the
    movie; for the length of the render only this listener's strip plays and
    the speakers' own (un-baked) playback is muted. Everything is restored.
    """
    import bpy

    r = scene.render
    img = r.image_settings
    saved = {"camera": scene.camera, "filepath": r.filepath, "file_format": img.file_format,
             "media_type": getattr(img, "media_type", None)}
    speakers = [o for o in scene.objects if o.type == "SPEAKER"]
    speaker_mute = {o.name: o.data.muted for o in speakers}
    own = timeline.own_strips(scene)
    strip_mute = {s.name: s.mute for s in own}
    made = []
    try:
        # Only the baked track may be heard: Blender's own speaker playback is silenced.
        for o in speakers:
            o.data.muted = True
        if hasattr(img, "media_type"):  # Blender 5: movies are a media type of their own
            img.media_type = "VIDEO"
        img.file_format = "FFMPEG"
        r.ffmpeg.format = "MPEG4"
        r.ffmpeg.codec = "H264"
        r.ffmpeg.audio_codec = "AAC"
        r.ffmpeg.audio_channels = "STEREO"
        for t in session.tracks:
            if t.strip is None:
                continue
            cam = scene.objects.get(t.listener)
            scene.camera = cam
            for s in timeline.own_strips(scene):
                s.mute = s.name != t.strip
            stem = t.final.with_suffix("").name
            r.filepath = str(out_dir / f"{stem}_")
            log(f"rendering video from '{t.listener}'")
            bpy.ops.render.render(animation=True, scene=scene.name)
            produced = Path(bpy.path.abspath(r.frame_path(frame=scene.frame_start)))
            final = out_dir / f"{stem}.mp4"
            if produced.exists():
                os.replace(produced, final)
                made.append(final)
    finally:
        for o in speakers:
            o.data.muted = speaker_mute[o.name]
        for s in timeline.own_strips(scene):
            if s.name in strip_mute:
                s.mute = strip_mute[s.name]
        scene.camera = saved["camera"]
        r.filepath = saved["filepath"]
        if saved["media_type"] is not None:
            img.media_type = saved["media_type"]
        img.file_format = saved["file_format"]
    return made


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    before, after, plain = split_argv(argv)
    try:
        args = build_parser().parse_args(after)
    except SystemExit as e:
        return int(e.code or 0) and EXIT_USER
    try:
        import bpy
    except ImportError:
        return fail("the bpy module is not installed here: run this under Blender "
                    "(blender -b scene.blend -P headless/render.py -- ...) or in the project's .venv")

    ext = load_extension()
    import importlib

    errors = importlib.import_module(PACKAGE + ".bridge.errors")
    pipeline = importlib.import_module(PACKAGE + ".bridge.pipeline")
    timeline = importlib.import_module(PACKAGE + ".bridge.timeline")

    if plain:
        if not before:
            return fail("give the .blend to bake: python headless/render.py scene.blend -- [options]")
        blend = Path(before[0])
        if not blend.is_file():
            return fail(f"scene file '{blend}' not found")
        try:
            bpy.ops.wm.open_mainfile(filepath=str(blend.resolve()), load_ui=False)
        except RuntimeError as e:
            return fail(f"cannot open '{blend}': {str(e).strip().splitlines()[-1]}")
    elif not bpy.data.filepath:
        return fail("no .blend loaded: blender -b scene.blend -P headless/render.py -- [options]")
    ensure_properties(ext)

    scene = bpy.context.scene
    progress = Progress(args.json_progress)
    log = (lambda m: progress.event(event="log", message=m)) if args.json_progress else \
        (lambda m: print(m, file=sys.stderr, flush=True))
    out = str(Path(args.out).resolve()) if args.out else None
    pref_mode, pref_python = engine_preferences()
    mode = args.engine if args.engine != "auto" else pref_mode
    session = pipeline.BakeSession(scene, out_dir=out, fmt=args.format, frames=args.frames,
                                   listener=args.listener, mode=mode, python=args.engine_python or pref_python)
    try:
        session.prepare()
        log(f"baking {len(session.tracks)} listener(s) of scene '{scene.name}' with the {session.runner_kind} "
            f"engine into {session.out_dir}")
        session.run(progress=progress)
    except errors.BakeCancelled as e:
        progress.close()
        return fail(str(e), EXIT_CANCELLED)
    except errors.BridgeError as e:
        progress.close()
        return fail(str(e))
    progress.close()
    for w in session.warnings:
        log(f"warning: {w}")
    for t in session.tracks:
        where = f", strip '{t.strip}'" if t.strip else ""
        log(f"wrote {t.final} (+ {t.final.with_suffix('.json').name}){where}")
        progress.event(event="done", listener=t.listener, path=str(t.final),
                       sidecar=str(t.final.with_suffix(".json")), strip=t.strip)
    if args.save:
        bpy.ops.wm.save_mainfile(filepath=bpy.data.filepath)
        log(f"saved {bpy.data.filepath}")
    if args.render_video:
        try:
            videos = render_video(scene, session, session.out_dir, timeline, log)
        except RuntimeError as e:  # e.g. a render engine that cannot run here
            return fail(f"video render failed: {str(e).strip().splitlines()[-1]}")
        for v in videos:
            log(f"wrote {v}")
            progress.event(event="video", path=str(v))
    return EXIT_OK


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.exit(code)
