"""Build and validate the Blender extension zip with Blender's own tool.

    python tools/build_extension.py --out dist/            # uses the bpy module's copy of the tool
    python tools/build_extension.py --out dist/ --blender /path/to/blender

The tool is ``blender_ext.py`` from Blender's ``bl_pkg`` add-on; the bpy wheel
ships it under ``bpy/<version>/scripts/addons_core/bl_pkg/cli/``, and a real
Blender runs the same code as ``blender --command extension ...``. The
repository root is the extension source (``blender_manifest.toml`` says what
is left out). Prints the path of the validated zip; exits 1 if Blender's
validation fails.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def find_blender_ext() -> Path:
    """``blender_ext.py`` inside the installed bpy module (without importing bpy)."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("error: the bpy module is not installed; pass --blender /path/to/blender instead")
    for base in spec.submodule_search_locations:
        hits = sorted(Path(base).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
        if hits:
            return hits[-1]
    raise SystemExit("error: blender_ext.py not found in the bpy module; pass --blender /path/to/blender")


def tool_command(blender: str | None) -> list[str]:
    if blender:
        return [blender, "--factory-startup", "--command", "extension"]
    return [sys.executable, str(find_blender_ext())]


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    r = subprocess.run(cmd)
    if r.returncode:
        raise SystemExit(f"error: {' '.join(cmd[:3])}... failed with status {r.returncode}")


def build(out_dir: Path, blender: str | None = None, source: Path = ROOT) -> Path:
    """Validate the source, build the zip into ``out_dir``, validate the zip; return its path."""
    manifest = tomllib.loads((source / "blender_manifest.toml").read_text(encoding="utf-8"))
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    zip_path = out_dir / f"{manifest['id']}-{manifest['version']}.zip"
    tool = tool_command(blender)
    run(tool + ["validate", str(source)])
    run(tool + ["build", "--source-dir", str(source), "--output-filepath", str(zip_path)])
    run(tool + ["validate", str(zip_path)])
    return zip_path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="dist", help="output folder (default: dist/)")
    p.add_argument("--blender", help="a Blender executable to build with instead of the bpy module's tool")
    args = p.parse_args(argv)
    zip_path = build(Path(args.out), args.blender)
    print(f"built and validated {zip_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
