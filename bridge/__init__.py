"""Blender <-> engine bridge.

The only code that turns Blender data into a job (``export``), runs the engine
(``runner``: in-process when the engine imports, else a worker subprocess in the
engine's own environment), and puts results back on the Video Sequencer
(``timeline``). ``pipeline`` ties the three together for the Bake operator and
for ``headless/render.py``; both go through the same ``BakeSession``.

``errors``, ``paths`` and ``materials`` do not import ``bpy`` so they can be
unit-tested and reused anywhere.
"""
