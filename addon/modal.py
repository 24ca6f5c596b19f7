"""The modal half shared by operators that run a bridge session in the background.

Bake and Train Field work the same way from the UI: prepare on the main thread,
start the engine in a thread or worker process, let a timer drain its progress
into the window manager's progress indicator, the status bar and a property
group the sidebar draws, cancel on Esc, and apply the result on the main thread.
``WorkerModal`` holds that loop once; each operator says where its state lives
and what to do when the session succeeds.

A session is anything with ``prepare()``, ``start()``, ``poll()`` (``"running"``
while it runs), ``finish()`` (raises ``BakeCancelled`` or ``BridgeError``),
``cancel()``, ``fraction`` and ``message`` (``bridge.pipeline.BakeSession``,
``bridge.fields.TrainSession``).
"""

from __future__ import annotations

import bpy

from ..bridge.errors import BakeCancelled, BridgeError


class WorkerModal:
    """Mixin for a ``bpy.types.Operator`` whose ``_session(context)`` builds a bridge session.

    Class attributes the operator sets
    ----------------------------------
    state_attr : str
        Name of the ``WindowManager`` property group with ``running``, ``fraction``,
        ``message`` and ``last_result``.
    status_label : str
        Start of the status-bar line ("Soundstage: ...").
    registry : dict
        ``{"session": ...}``, the module's one-at-a-time slot for the running session.
    timer_step : float
        Seconds between progress polls.
    redraw_areas : tuple of str
        Area types redrawn on each poll (they draw the progress).
    """

    state_attr = ""
    status_label = "Soundstage"
    registry: dict = {}
    timer_step = 0.1
    redraw_areas = ("VIEW_3D", "PROPERTIES")
    _timer = None

    def _succeeded(self, context, session) -> None:
        """Report a finished session (called on the main thread, after ``finish``)."""
        raise NotImplementedError

    def invoke(self, context, event):
        if context.window is None or bpy.app.background:
            return self.execute(context)
        return self.start_modal(context)

    def start_modal(self, context):
        """Prepare on the main thread, start the engine, and hand over to ``modal`` on a timer."""
        session = self._session(context)
        try:
            session.prepare()
            session.start()
        except BridgeError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        self.registry["session"] = session
        wm = context.window_manager
        state = getattr(wm, self.state_attr)
        state.running, state.fraction, state.message = True, 0.0, "starting"
        wm.progress_begin(0.0, 1.0)
        self._timer = wm.event_timer_add(self.timer_step, window=context.window)
        wm.modal_handler_add(self)
        self._status(context, session)
        return {"RUNNING_MODAL"}

    def _status(self, context, session) -> None:
        if context.workspace is not None:
            context.workspace.status_text_set(
                f"{self.status_label}: {session.message} ({session.fraction * 100:.0f} %), Esc to cancel")

    def modal(self, context, event):
        session = self.registry.get("session")
        if session is None:
            return self._end(context, {"CANCELLED"})
        wm = context.window_manager
        state = getattr(wm, self.state_attr)
        if event.type == "ESC" and event.value == "PRESS":
            session.cancel()
            state.message = "cancelling..."
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        running = session.poll() == "running"
        wm.progress_update(session.fraction)
        state.fraction, state.message = session.fraction, session.message
        self._status(context, session)
        for area in context.screen.areas if context.screen else ():
            if area.type in self.redraw_areas:
                area.tag_redraw()
        if running:
            return {"PASS_THROUGH"}
        try:
            session.finish()
        except BakeCancelled as e:
            self.report({"WARNING"}, str(e))
            state.last_result = str(e)
            return self._end(context, {"CANCELLED"})
        except BridgeError as e:
            self.report({"ERROR"}, str(e))
            state.last_result = f"Error: {e}"
            return self._end(context, {"CANCELLED"})
        self._succeeded(context, session)
        return self._end(context, {"FINISHED"})

    def _end(self, context, result):
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        getattr(wm, self.state_attr).running = False
        if context.workspace is not None:
            context.workspace.status_text_set(None)
        self.registry["session"] = None
        return result

