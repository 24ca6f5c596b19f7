"""Driving a modal operator (addon.modal.WorkerModal) by hand, as Blender's event loop would.

Blender only runs ``modal`` from a window's event loop, which the bpy module has
not got. These stand-ins bind the operator's real methods to a plain object and
give it a window manager that records what the operator asked of it, so a test
can call ``start_modal``, feed TIMER and ESC events and check what the user saw.
"""

from __future__ import annotations

import types

#: The methods and class attributes of a WorkerModal operator that the modal half uses.
MODAL_NAMES = ("_session", "_succeeded", "start_modal", "_status", "modal", "_end", "cancel",
               "state_attr", "status_label", "registry", "timer_step", "redraw_areas", "stop_timeout")

TIMER = types.SimpleNamespace(type="TIMER", value="NOTHING")
ESCAPE = types.SimpleNamespace(type="ESC", value="PRESS")


class FakeWM:
    """What the modal operator uses of the window manager, recording the calls.

    ``state_attr`` names the operator's property group (running, fraction,
    message, last_result), held here as a plain namespace.
    """

    def __init__(self, state_attr):
        self.calls = []
        setattr(self, state_attr, types.SimpleNamespace(running=False, fraction=0.0, message="", last_result=""))

    def progress_begin(self, a, b):
        self.calls.append("begin")

    def progress_update(self, v):
        assert 0.0 <= v <= 1.0
        self.calls.append("update")

    def progress_end(self):
        self.calls.append("end")

    def event_timer_add(self, step, window=None):
        self.calls.append("timer")
        return object()

    def event_timer_remove(self, timer):
        self.calls.append("timer_removed")

    def modal_handler_add(self, op):
        self.calls.append("modal")


def bind_modal(op_cls, bpy, **props):
    """An object carrying ``op_cls``'s modal methods, its operator properties ``props`` and a stand-in context.

    Returns
    -------
    op : SimpleNamespace
        ``op.reports`` collects ``({kind}, message)`` from ``op.report``.
    ctx : SimpleNamespace
        ``scene`` and ``preferences`` are Blender's; ``window_manager`` is a ``FakeWM``.
    wm : FakeWM
    status : list
        Every status-bar text set (``None`` when cleared).
    """
    op = types.SimpleNamespace(**props, _timer=None, reports=[])
    for name in MODAL_NAMES:
        value = getattr(op_cls, name)
        setattr(op, name, value.__get__(op) if callable(value) else value)
    op.report = lambda kind, msg: op.reports.append((set(kind), msg))
    wm, status = FakeWM(op.state_attr), []
    ctx = types.SimpleNamespace(scene=bpy.context.scene, window_manager=wm, window=object(), screen=None,
                                workspace=types.SimpleNamespace(status_text_set=status.append),
                                preferences=bpy.context.preferences)
    return op, ctx, wm, status
