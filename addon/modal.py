"""Modal operator loops shared by several operators.

``WorkerModal``: the modal half of operators that run a bridge session in the
background. ``ClickInViewport``: operators that wait for a click in the 3D viewport
and cast a ray through it (Impact Click, Place Source on Splats).

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

import time

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
    stop_timeout : float or None
        When the window closes mid-run: seconds to wait for the cancelled
        session to stop (None: until it stops).
    """

    state_attr = ""
    status_label = "Soundstage"
    registry: dict = {}
    timer_step = 0.1
    redraw_areas = ("VIEW_3D", "PROPERTIES")
    stop_timeout: float | None = None
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

    def cancel(self, context):  # Blender calls this when the window closes mid-run
        stop_session(self.registry, self.stop_timeout)
        self._end(context, {"CANCELLED"})


def stop_session(registry: dict, timeout: float | None = None) -> None:
    """Cancel the session in ``registry`` and wait for it to stop; the slot is then empty.

    Waits ``timeout`` seconds at most (None: until it stops), so no worker outlives
    a closed window or the add-on; what the session raises on the way out
    (cancelled, or an error) is dropped, there being nobody left to tell.
    """
    session = registry.get("session")
    if session is None:
        return
    session.cancel()
    t0 = time.monotonic()
    try:
        while session.poll() == "running" and (timeout is None or time.monotonic() - t0 < timeout):
            time.sleep(0.05)
        if session.state != "running":
            session.finish()
    except (BridgeError, BakeCancelled):
        pass
    registry["session"] = None


# --------------------------------------------------------------------------- clicks in the viewport
def view_ray(context, event):
    """World ray (origin, direction) under the mouse in the 3D viewport it is over, or None."""
    from bpy_extras import view3d_utils

    screen = context.window.screen if context.window is not None else context.screen
    for area in screen.areas if screen is not None else ():
        if area.type != "VIEW_3D":
            continue
        def inside(region):
            return (region.x <= event.mouse_x < region.x + region.width
                    and region.y <= event.mouse_y < region.y + region.height)

        # With region overlap the sidebar, toolbar and headers lie on top of the view: not a click on it.
        if any(r.type != "WINDOW" and r.width > 1 and inside(r) for r in area.regions):
            continue
        for region in area.regions:
            if region.type != "WINDOW":
                continue
            x, y = event.mouse_x - region.x, event.mouse_y - region.y
            if inside(region):
                rv3d = region.data
                origin = view3d_utils.region_2d_to_origin_3d(region, rv3d, (x, y))
                direction = view3d_utils.region_2d_to_vector_3d(region, rv3d, (x, y))
                return tuple(origin), tuple(direction)
    return None


class ClickInViewport:
    """Mixin for an operator with ``origin``/``direction`` ray properties, run on a viewport click.

    Invoked with a ray already set, or from the viewport itself (a menu or a
    shortcut over the view), it executes at once on the ray under the mouse;
    otherwise it waits for a left click in any 3D viewport (a click elsewhere, or on
    a sidebar over the view, keeps it waiting) and says so in the status bar. Esc or
    right-click cancel.

    Class attribute the operator sets: ``click_prompt`` (the status-bar text).
    """

    click_prompt = "Soundstage: click in the 3D viewport; Esc or right-click to cancel"

    def invoke(self, context, event):
        if any(self.direction):
            return self.execute(context)
        if context.area is not None and context.area.type == "VIEW_3D" and context.region is not None \
                and context.region.type == "WINDOW":  # from the viewport itself (menu, shortcut)
            ray = view_ray(context, event)
            if ray is not None:
                self.origin, self.direction = ray
                return self.execute(context)
        if context.window is None:
            return self.execute(context)
        context.window_manager.modal_handler_add(self)
        if context.workspace is not None:
            context.workspace.status_text_set(self.click_prompt)
        return {"RUNNING_MODAL"}

    def _done(self, context, result):
        if context.workspace is not None:
            context.workspace.status_text_set(None)
        return result

    def modal(self, context, event):
        if event.type in ("ESC", "RIGHTMOUSE") and event.value == "PRESS":
            return self._done(context, {"CANCELLED"})
        if event.type == "LEFTMOUSE" and event.value == "PRESS":
            ray = view_ray(context, event)
            if ray is None:  # outside any 3D viewport (or on its sidebar): keep waiting
                return {"RUNNING_MODAL"}
            self.origin, self.direction = ray
            return self._done(context, self.execute(context))
        return {"PASS_THROUGH"}
