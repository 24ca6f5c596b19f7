"""A stand-in for Blender's ``UILayout`` that checks what a panel's draw function asks for.

Panels can only be drawn by a window's redraw, which the bpy module has not got;
calling ``Panel.draw`` with this layout checks every property, operator, operator
property and icon it names against Blender's own RNA, and logs what was drawn.
"""

from __future__ import annotations

import bpy

ICONS = set(bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items.keys())


class Recorder:
    """``UILayout`` stand-in; appends ``(kind, what)`` to ``log``.

    Parameters
    ----------
    log : list
        Receives ``("label", text)``, ``("prop", ...)``, ``("operator", idname)``,
        ``("op_prop", name)`` and ``("progress", factor)``.
    prop_text : bool
        Log a property by the text it is shown with (``text=``, else its name)
        instead of by its name.
    """

    # Panels extended with ``Panel.append`` draw through Blender's dynamic-UI
    # wrapper, which reads and restores the layout's operator context.
    operator_context = "INVOKE_REGION_WIN"

    def __init__(self, log, prop_text=False):
        object.__setattr__(self, "log", log)
        object.__setattr__(self, "prop_text", prop_text)

    def __setattr__(self, name, value):  # alert, enabled, scale_y...
        assert name in ("alert", "enabled", "active", "scale_y", "scale_x", "use_property_split",
                        "operator_context"), name

    def _child(self, *a, **k):
        return Recorder(self.log, self.prop_text)

    row = column = box = split = column_flow = grid_flow = _child

    @staticmethod
    def _icon(kw):
        assert kw.get("icon", "NONE") in ICONS, f"unknown icon {kw.get('icon')}"

    def label(self, text="", icon="NONE", **kw):
        self._icon({"icon": icon})
        self.log.append(("label", text))

    def prop(self, data, name, **kw):
        if name.startswith('["'):  # a custom property
            assert name[2:-2] in data.keys(), f"{data} has no custom property {name}"
        else:
            assert name in data.bl_rna.properties.keys(), f"{type(data).__name__} has no property {name}"
        self._icon(kw)
        self.log.append(("prop", kw.get("text", name) if self.prop_text else name))

    def operator(self, idname, **kw):
        mod, op = idname.split(".")
        assert hasattr(getattr(bpy.ops, mod), op), idname
        self._icon(kw)
        self.log.append(("operator", idname))
        rna = getattr(getattr(bpy.ops, mod), op).get_rna_type()
        log = self.log

        class Props:
            def __setattr__(self, key, value):
                assert key in rna.properties.keys(), f"{idname} has no property {key}"
                log.append(("op_prop", key))

        return Props()

    def progress(self, factor=0.0, type="BAR", text=""):
        assert 0.0 <= factor <= 1.0
        self.log.append(("progress", factor))

    def separator(self, **kw):
        pass
