"""Bake a .blend's sound without the UI.

Under Blender::

    blender -b -Y scene.blend -P headless/render.py -- [--out DIR] [--format F] [--frames A-B]
        [--listener NAME] [--save] [--render-video] [--json-progress] [--engine-python PATH]
        [--resume] [--chunk-seconds S] [--workers N] [--scheduler ADDR] [--work-dir DIR]
        [--only-chunks LIST] [--enable-autoexec]

Under plain Python with the bpy module installed (same code path)::

    python headless/render.py scene.blend -- [same flags]

Bakes every listener camera (or the one named) into
``DIR/<scene>_<listener>_<format>.wav`` with its JSON sidecar, puts binaural
and stereo tracks on the Video Sequencer at the range's first frame, and with
``--save`` saves the .blend in place with those strips. ``--render-video``
then renders the animation from each listener with its track muxed in
(Blender's FFmpeg: H.264 + AAC in MP4). Exit status 0 on success, 2 with one
line ``error: ...`` on stderr for bad input, 3 when interrupted.

Scripts inside the .blend (registered text blocks, Python drivers) never run
unless ``--enable-autoexec`` is given: the file is opened with auto-run off
(under Blender, pass ``-Y``; a file Blender opened with auto-run on is reopened
with it off before anything is baked). ``--resume``, ``--chunk-seconds``,
``--workers``, ``--scheduler``, ``--work-dir`` and ``--only-chunks`` are handed
to the engine (docs/farm.md); with ``--only-chunks`` the chunks go to the work
folder and no track is written or placed.
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
    p.add_argument("--enable-autoexec", action="store_true",
                   help="let Python inside the .blend run (registered text blocks, drivers); only for files you trust")
    g = p.add_argument_group("chunks, resume and render farms (docs/farm.md)")
    g.add_argument("--resume", action="store_true", help="continue an interrupted bake from its finished chunks")
    g.add_argument("--chunk-seconds", type=float, metavar="S", help="chunk length (default 20 s)")
    g.add_argument("--workers", type=int, metavar="N", help="bake on a local Dask cluster of N worker processes")
    g.add_argument("--scheduler", metavar="ADDR", help="bake on the Dask cluster whose scheduler is at ADDR")
    g.add_argument("--work-dir", metavar="DIR", help="where finished chunks wait (shared storage on a farm)")
    g.add_argument("--only-chunks", metavar="LIST",
                   help="farm chunk task: render only these chunks (3, 0,2,5, 2-4) into --work-dir; no track")
    return p


#: Engine options handed over through the environment (the engine may run in a worker process).
ENGINE_ENV = {"resume": "SOUNDSTAGE_RESUME", "chunk_seconds": "SOUNDSTAGE_CHUNK_SECONDS",
              "workers": "SOUNDSTAGE_WORKERS", "scheduler": "SOUNDSTAGE_SCHEDULER",
              "work_dir": "SOUNDSTAGE_WORK_DIR", "only_chunks": "SOUNDSTAGE_ONLY_CHUNKS"}


def export_engine_options(args) -> None:
    """Put the chunk/resume/Dask options where the engine reads them (``soundstage.bake``)."""
    for name, var in ENGINE_ENV.items():
        value = getattr(args, name)
        if value is None or value is False:
            continue
        if name == "work_dir":
            value = str(Path(value).resolve())
        os.environ[var] = "1" if value is True else str(value)


def autorun_content() -> list[str]:
    """What Blender's auto-run would execute in the loaded file: registered text blocks, Python drivers."""
    import bpy

    found = [f"text '{t.name}'" for t in bpy.data.texts if t.use_module]
    for attr in dir(bpy.data):
        coll = getattr(bpy.data, attr, None)
        if not isinstance(coll, bpy.types.bpy_prop_collection):
            continue
        for idb in coll:
            ad = getattr(idb, "animation_data", None)
            for fc in (ad.drivers if ad is not None else ()):
                d = fc.driver
                if d.type == "SCRIPTED" and not d.is_simple_expression:
                    found.append(f"driver on '{idb.name}'.{fc.data_path}")
    return found


def guard_autoexec(enable: bool, log) -> None:
    """Under Blender: make sure no script in the .blend runs during the bake.

    Blender itself opened the file (with auto-run as its preferences or ``-y``
    say). If scripts were allowed and the file has some, reopen it with
    auto-run off: registered text blocks already ran at load (pass ``-Y``),
    but drivers will not run again while the bake evaluates the frames.
    """
    import bpy

    if enable or bpy.app.autoexec_fail or not bpy.data.filepath:
        return  # allowed on purpose, or Blender already blocked them
    risky = autorun_content()
    if not risky:
        return
    log(f"warning: Blender opened this file with auto-run scripts on ({', '.join(risky[:3])}); reopening it with "
        "them off (run Blender with -Y, or pass --enable-autoexec for files you trust)")
    bpy.ops.wm.open_mainfile(filepath=bpy.data.filepath, load_ui=False, use_scripts=False)


def run_chunk_task(session, progress) -> None:
    """Bake with ``--only-chunks``: the engine puts chunks in the work folder; nothing is placed."""
    import time

    session.start()
    try:
        try:
            while session.poll() == "running":
                progress(session.fraction, session.message)
                time.sleep(0.05)
        except KeyboardInterrupt:
            session.cancel()
            while session.poll() == "running":
                time.sleep(0.05)
    finally:
        # No files to move and no strips to place: clean up as BakeSession.finish() would.
        if session._runner is not None:
            session._runner.join(timeout=10)
        if session.staging is not None:
            import shutil

            shutil.rmtree(session.staging, ignore_errors=True)
            session.staging = None


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
            # Scripts in the file run only when asked for (bpy's default follows the preferences).
            bpy.ops.wm.open_mainfile(filepath=str(blend.resolve()), load_ui=False, use_scripts=args.enable_autoexec)
        except RuntimeError as e:
            return fail(f"cannot open '{blend}': {str(e).strip().splitlines()[-1]}")
    elif not bpy.data.filepath:
        return fail("no .blend loaded: blender -b scene.blend -P headless/render.py -- [options]")
    ensure_properties(ext)

    scene = bpy.context.scene
    progress = Progress(args.json_progress)
    log = (lambda m: progress.event(event="log", message=m)) if args.json_progress else \
        (lambda m: print(m, file=sys.stderr, flush=True))
    if not plain:
        guard_autoexec(args.enable_autoexec, log)
        scene = bpy.context.scene
    export_engine_options(args)
    out = str(Path(args.out).resolve()) if args.out else None
    pref_mode, pref_python = engine_preferences()
    mode = args.engine if args.engine != "auto" else pref_mode
    session = pipeline.BakeSession(scene, out_dir=out, fmt=args.format, frames=args.frames,
                                   listener=args.listener, mode=mode, python=args.engine_python or pref_python)
    try:
        session.prepare()
        log(f"baking {len(session.tracks)} listener(s) of scene '{scene.name}' with the {session.runner_kind} "
            f"engine into {session.out_dir}")
        if args.only_chunks:
            run_chunk_task(session, progress)
            if session.state == "error":
                raise errors.BridgeError(session.error)
            if session.state == "cancelled":
                raise errors.BakeCancelled("chunk task cancelled; finished chunks stay in the work folder")
            progress.close()
            for t in session.tracks:
                log(f"chunks {args.only_chunks} of '{t.listener}' are in {t.info.get('work_dir', '?')}")
                progress.event(event="chunks", listener=t.listener, work_dir=t.info.get("work_dir"),
                               chunks=t.info.get("only_chunks"))
            return EXIT_OK
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
