"""Learned acoustic fields: what a captured room sounds like, without its geometry.

A room simulator needs geometry and materials; a captured room has neither, but it
can have a recording. Walk the room with a binaural microphone and a camera while a
speaker plays, train a field, then bake what a new camera path would hear there.
This is the audio field of AV-NeRF (Liang et al., NeurIPS 2023, arXiv 2302.02088)
built into the engine (torch; CPU by default, CUDA when present):

* ``data``: the capture layout, AV-NeRF's RWAVS layout, impulse-response sets, and
  engine-simulated recording walks and response sets for tests and demos;
* ``model``: A-NeRF (position and frequency encodings, four interpolated direction
  embeddings, mixture and difference masks, convolution refinement);
* ``irfield``: the impulse-response field (their SoundSpaces setting);
* ``scene``: scene features (ray-cast depth and absorption panoramas);
* ``train`` / ``evaluate`` / ``render``: ``soundstage field train|eval|render``;
* ``checkpoint``: versioned, checked model files read with ``weights_only=True``.

Nothing here is imported by ``import soundstage.field`` itself, so the package costs
nothing (and needs no torch) until a module is used. See ``docs/field.md``.
"""
