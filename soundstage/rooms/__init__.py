"""Room models: free field, shoebox and closed triangle meshes.

Every room answers two questions for the renderer (see ``rooms.base.Room``):
which image sources exist for each frame (early reflections), and what the
energy decay at the listener looks like per octave band (late reverberation).
"""
