"""Impact sounds: modal synthesis from an object's mesh and material, and the reverse task.

* ``impact(mesh, at, normal=None, material=...)``: the sound of hitting an object
  (``hit.ImpactResult``: mono float32 pressure at 1 m, Pa).
* ``modal_model(mesh, material)``: the object's modes, cached on disk.
* ``synthesize(model, point, normal, ...)``: a hit on a model you already have.
* ``guess_material(name, metallic, roughness, transmission, base_color)``:
  (material, reason) from a render material.
* ``locate(objects, audio, rate)`` / ``load_scene(path)``: rank a scene's objects
  and regions by how likely a recorded hit came from them.

See docs/impact.md. Nothing here imports bpy.
"""

from soundstage.impact.guess import guess_material
from soundstage.impact.hit import ImpactResult, appearance_from_file, impact, resolve_material
from soundstage.impact.locate import LocateResult, SceneObject, hit_signature, load_scene, locate, object_models
from soundstage.impact.materials import MATERIALS, Material, MaterialError, get_material, material_names
from soundstage.impact.modal import ModalModel, cache_dir, modal_model
from soundstage.impact.synth import ImpactError, Striker, contact_time, synthesize

__all__ = [
    "ImpactError", "ImpactResult", "LocateResult", "MATERIALS", "Material", "MaterialError", "ModalModel",
    "SceneObject", "Striker", "appearance_from_file", "cache_dir", "contact_time", "get_material",
    "guess_material", "hit_signature", "impact", "load_scene", "locate", "material_names", "modal_model",
    "object_models", "resolve_material", "synthesize",
]
