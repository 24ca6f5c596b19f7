"""Saving and loading trained fields safely.

A model file is a ``torch.save`` of plain data: a dict with ``format``
(``"soundstage-field"``), ``version``, and ``fields``, a list (one per source; several
sources are rendered by stacking fields) of dicts holding the field's ``kind``
(``"anerf"`` or ``"irfield"``), its ``config`` (numbers and flags), its ``state``
(parameter tensors), ``train_positions`` (a tensor) and ``meta`` (numbers and
strings). It is read with ``torch.load(..., weights_only=True)``, which unpickles
tensors and plain containers only (no code runs), and then checked: format and
version, the config, every parameter's name and shape against a freshly built model,
finite values, and the metadata. Anything wrong raises ``CheckpointError`` naming the
file and what to do.

Training checkpoints (``<model>.train.pt``) hold the same plus the optimizer state,
the step and the random generator's state, so ``--resume`` continues exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from soundstage.errors import SoundstageError

FORMAT = "soundstage-field"
TRAINING_FORMAT = "soundstage-field-training"
VERSION = 1
#: Listener positions farther than this (m) from every training position are "outside the trained area".
DEFAULT_AREA_RADIUS = 0.75


class CheckpointError(SoundstageError):
    """A model file is missing, corrupt, of another format or version, or does not match its model."""


class OutsideTrainedArea(UserWarning):
    """Poses were queried where the field saw no training data; its answer there is a guess."""


def _kinds():
    from soundstage.field.irfield import IRField, IRFieldConfig
    from soundstage.field.model import ANeRF, ANeRFConfig

    return {"anerf": (ANeRFConfig, ANeRF), "irfield": (IRFieldConfig, IRField)}


@dataclass
class Field:
    """A trained field with what it needs to be queried.

    Attributes
    ----------
    kind : str
        ``"anerf"`` (renders a source through masks) or ``"irfield"`` (impulse responses).
    model : torch.nn.Module
    centre : ndarray, shape (3,)
    scale : float
        Positions are normalised as ``(p - centre) / scale``.
    source_name : str
    source_position : ndarray, shape (3,)
    level_gain : float
        Recording-to-source level relation of the capture (A-NeRF).
    metric : bool
        Coordinates in metres (propagation delays apply).
    room : dict or None
        Job-format room for scene features (when the model uses them).
    train_positions : ndarray, shape (n, 3)
        Where training data was (a subsample), for the trained-area check.
    area_radius : float
    info : dict
        Training facts (data, steps, time, final loss).
    """

    kind: str
    model: torch.nn.Module
    centre: np.ndarray
    scale: float
    source_name: str
    source_position: np.ndarray
    level_gain: float = 1.0
    metric: bool = True
    room: dict | None = None
    train_positions: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    area_radius: float = DEFAULT_AREA_RADIUS
    info: dict = field(default_factory=dict)
    _scene: object = None

    @property
    def config(self):
        return self.model.config

    def normalise(self, positions: np.ndarray) -> np.ndarray:
        """Normalised positions, shape (n, 3), float32."""
        return ((np.asarray(positions, float) - self.centre) / self.scale).astype(np.float32)

    def scene_features(self, positions: np.ndarray) -> np.ndarray | None:
        """Scene features (n, dim) when the model uses them, else None."""
        if self.config.scene_dim == 0:
            return None
        if self._scene is None:
            from soundstage.field.scene import SceneFeatures

            self._scene = SceneFeatures(self.room, self.source_position)
        return self._scene(positions)

    def outside_area(self, positions: np.ndarray) -> tuple[int, float]:
        """How many positions lie farther than ``area_radius`` from every training position, and the farthest (m)."""
        if len(self.train_positions) == 0 or len(positions) == 0:
            return 0, 0.0
        from scipy.spatial import cKDTree

        d, _ = cKDTree(self.train_positions).query(np.asarray(positions, float))
        out = d > self.area_radius
        return int(out.sum()), float(d.max())

    def area_warning(self, positions: np.ndarray, what: str = "poses") -> str | None:
        """A one-line warning when positions leave the trained area, else None."""
        n, far = self.outside_area(positions)
        if n == 0:
            return None
        return (f"field '{self.source_name}': {n} of {len(positions)} {what} are outside the trained area (up to "
                f"{far:.2f} m from the nearest training position, limit {self.area_radius:.2f} m); the field is "
                "guessing there")

    def to_record(self) -> dict:
        state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        meta = {"centre": [float(x) for x in self.centre], "scale": float(self.scale),
                "source_name": str(self.source_name),
                "source_position": [float(x) for x in self.source_position],
                "level_gain": float(self.level_gain), "metric": bool(self.metric),
                "room_json": json.dumps(self.room) if self.room is not None else "",
                "area_radius": float(self.area_radius), "info_json": json.dumps(self.info, default=str)}
        return {"kind": self.kind, "config": self.model.config.as_dict(), "state": state,
                "train_positions": torch.as_tensor(np.asarray(self.train_positions, np.float32)).reshape(-1, 3),
                "meta": meta}


def build_model(kind: str, config: dict, where: str = "model"):
    kinds = _kinds()
    if kind not in kinds:
        raise CheckpointError(f"{where}: unknown field kind {kind!r} (known: {', '.join(kinds)})")
    cfg_cls, model_cls = kinds[kind]
    if not isinstance(config, dict):
        raise CheckpointError(f"{where}: config is not a dict")
    try:
        cfg = cfg_cls.from_dict(config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: config is not valid ({e})") from None
    try:
        return model_cls(cfg)
    except (TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{where}: cannot build the model from its config ({e})") from None


def field_from_record(rec, where: str, device="cpu") -> Field:
    """Check one field record (see the module notes) and build the ``Field``."""
    if not isinstance(rec, dict):
        raise CheckpointError(f"{where}: a field entry is not a dict")
    for key in ("kind", "config", "state", "meta", "train_positions"):
        if key not in rec:
            raise CheckpointError(f"{where}: a field entry has no '{key}'")
    model = build_model(rec["kind"], rec["config"], where)
    state = rec["state"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{where}: 'state' is not a dict of tensors")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        what = f"missing parameter '{missing[0]}'" if missing else f"unexpected parameter '{extra[0]}'"
        raise CheckpointError(f"{where}: {what}; the file does not match its config (retrain or re-copy it)")
    for k, v in expected.items():
        t = state[k]
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"{where}: parameter '{k}' is not a tensor")
        if tuple(t.shape) != tuple(v.shape):
            raise CheckpointError(f"{where}: parameter '{k}' has shape {tuple(t.shape)}, the config needs "
                                  f"{tuple(v.shape)}; the file is damaged or edited")
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError(f"{where}: parameter '{k}' holds NaN or infinite values; retrain the field")
    model.load_state_dict({k: state[k].to(v.dtype) for k, v in expected.items()})
    model.to(device).eval()
    meta = rec["meta"]
    try:
        centre = np.asarray(meta["centre"], float).reshape(3)
        scale = float(meta["scale"])
        src = np.asarray(meta["source_position"], float).reshape(3)
        level = float(meta.get("level_gain", 1.0))
        radius = float(meta.get("area_radius", DEFAULT_AREA_RADIUS))
        room = json.loads(meta["room_json"]) if meta.get("room_json") else None
        info = json.loads(meta["info_json"]) if meta.get("info_json") else {}
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: metadata is damaged ({type(e).__name__}: {e})") from None
    if not (np.isfinite(centre).all() and np.isfinite(src).all() and scale > 0 and np.isfinite(level)):
        raise CheckpointError(f"{where}: metadata holds invalid numbers (centre, scale, source position)")
    if (model.config.scene_dim > 0 or getattr(model.config, "prior_order", 0) > 0) and room is None:
        raise CheckpointError(f"{where}: the field uses scene features but the file holds no room")
    tp = rec["train_positions"]
    if not isinstance(tp, torch.Tensor) or tp.dim() != 2 or tp.shape[1] != 3:
        raise CheckpointError(f"{where}: 'train_positions' must be an (n, 3) tensor")
    return Field(kind=rec["kind"], model=model, centre=centre, scale=scale,
                 source_name=str(meta.get("source_name", "source")), source_position=src, level_gain=level,
                 metric=bool(meta.get("metric", True)), room=room, train_positions=tp.double().numpy(),
                 area_radius=radius, info=info)


def save_fields(path, fields_: list[Field], *, extra: dict | None = None) -> Path:
    """Write a model file atomically (nothing half-written if interrupted)."""
    from soundstage.audio_io import atomic_path

    doc = {"format": FORMAT, "version": VERSION, "fields": [f.to_record() for f in fields_]}
    if extra:
        doc.update(extra)
    p = Path(path)
    with atomic_path(p) as tmp:
        torch.save(doc, tmp)
    return p


def _torch_load(path: Path, device):
    if not path.exists():
        raise CheckpointError(f"model file '{path}' not found; check the path")
    if not path.is_file():
        raise CheckpointError(f"model file '{path}' is not a file")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # torch raises many types for damaged files; all mean "unusable"
        msg = " ".join(str(e).split())[:160]
        raise CheckpointError(f"model file '{path}' is corrupt, truncated or not a Soundstage field "
                              f"({type(e).__name__}: {msg}); retrain the field or re-copy the file") from None


def load_fields(path, device="cpu") -> list[Field]:
    """Read and check a model file.

    Parameters
    ----------
    path : path
    device : str or torch.device
        Where the models go (default CPU).

    Returns
    -------
    list of Field
        One per source.

    Raises
    ------
    CheckpointError
    """
    p = Path(path)
    doc = _torch_load(p, device)
    if not isinstance(doc, dict) or "format" not in doc:
        raise CheckpointError(f"model file '{p}' is not a Soundstage field (no format tag)")
    if doc["format"] == TRAINING_FORMAT:
        raise CheckpointError(f"'{p}' is a training checkpoint; use the model file training wrote "
                              "(or resume training with --resume)")
    if doc["format"] != FORMAT:
        raise CheckpointError(f"model file '{p}' has format {doc['format']!r}, expected {FORMAT!r}")
    ver = doc.get("version")
    if not isinstance(ver, int) or ver < 1:
        raise CheckpointError(f"model file '{p}' has an invalid version {ver!r}")
    if ver > VERSION:
        raise CheckpointError(f"model file '{p}' is version {ver}, newer than this Soundstage reads ({VERSION}); "
                              "upgrade Soundstage")
    recs = doc.get("fields")
    if not isinstance(recs, list) or not recs:
        raise CheckpointError(f"model file '{p}' holds no fields")
    return [field_from_record(r, f"model file '{p}' field {i}", device) for i, r in enumerate(recs)]


def load_training(path, device="cpu") -> dict:
    """Read a training checkpoint (format ``soundstage-field-training``), checking its tag and version."""
    p = Path(path)
    doc = _torch_load(p, device)
    if not isinstance(doc, dict) or doc.get("format") != TRAINING_FORMAT:
        raise CheckpointError(f"'{p}' is not a Soundstage training checkpoint")
    if doc.get("version") != VERSION:
        raise CheckpointError(f"training checkpoint '{p}' is version {doc.get('version')!r}; this reads {VERSION}")
    return doc
