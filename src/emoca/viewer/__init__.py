"""``emoca view``: a local page showing an output folder of reconstruct, fit or animate.

Reads output files only (:mod:`.catalog`); per-frame meshes of video tracks are evaluated
on demand with the face model (:mod:`.tracks`); :mod:`.server` serves or exports them.
"""
