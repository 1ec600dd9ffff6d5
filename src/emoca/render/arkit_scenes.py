"""Random rendered faces with known ARKit weights: the generator behind
``tests/test_fit_arkit_rendered.py`` and ``benchmarks/fit_arkit_renders.py``.

One face: random ICT identity (N(0, 0.7) per coefficient), head pose (yaw +-25 deg, pitch
+-10, roll +-8), SH light (key within ~55 deg of the camera axis, strength, ambient, RGB
tint), flat background, and ``n_active`` ARKit shapes at 0.3-0.9 drawn from
:data:`VISIBLE` (shapes MediaPipe's points can see), no antagonists on one side at once.
Test and benchmark share this code so that they measure the same thing; they use
different seeds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["ANTAGONISTS", "VISIBLE", "random_face", "render_faces"]

VISIBLE = ("mouthSmileLeft", "mouthSmileRight", "jawOpen", "browInnerUp", "browDownLeft",
           "browDownRight", "browOuterUpLeft", "browOuterUpRight", "eyeBlinkLeft",
           "eyeBlinkRight", "mouthFunnel", "mouthPucker", "mouthFrownLeft", "mouthFrownRight",
           "mouthStretchLeft", "mouthStretchRight")
ANTAGONISTS = (("mouthSmileLeft", "mouthFrownLeft"), ("mouthSmileRight", "mouthFrownRight"),
               ("browDownLeft", "browInnerUp"), ("browDownRight", "browInnerUp"),
               ("browDownLeft", "browOuterUpLeft"), ("browDownRight", "browOuterUpRight"))


def random_face(g: np.random.Generator, n_active: int = 5) -> dict:
    """Identity (100,), ARKit weights by name, pose (yaw, pitch, roll degrees), (9, 3) SH
    light and RGB background of one face, drawn from ``g``."""
    from emoca.render.synthetic_face import sh_light

    names = g.choice(VISIBLE, n_active, replace=False)
    while any(a in names and b in names for a, b in ANTAGONISTS):
        names = g.choice(VISIBLE, n_active, replace=False)
    arkit = {str(k): float(g.uniform(0.3, 0.9)) for k in names}
    az, el = np.radians(g.uniform(-50, 50)), np.radians(g.uniform(-20, 45))
    direction = (np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el))
    light = sh_light(direction, strength=g.uniform(0.5, 1.1), ambient=g.uniform(2.0, 3.0),
                     colour=g.uniform(0.85, 1.1, 3), quadratic=g.uniform(-0.1, 0.15))
    return {"identity": g.normal(0, 0.7, 100), "arkit": arkit,
            "pose": (float(g.uniform(-25, 25)), float(g.uniform(-10, 10)),
                     float(g.uniform(-8, 8))),
            "light": light, "background": tuple(g.uniform(0.15, 0.7, 3))}


def render_faces(folder: Path, n: int, seed: int, size: int = 384,
                 n_active: int = 5) -> list[dict]:
    """Write ``face_I.png`` renders (``size`` px) of ``n`` random faces; returns their truth
    (:func:`random_face`'s dicts plus the render's ``vertices`` (V, 3) and ``cam`` (1, 3),
    :class:`~emoca.render.synthetic_face.FaceRender`'s)."""
    from PIL import Image

    from emoca.render.synthetic_face import SyntheticFaceRenderer

    scene = SyntheticFaceRenderer(size)
    g = np.random.default_rng(seed)
    faces = [random_face(g, n_active) for _ in range(n)]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(faces):
        r = scene.render(scene.params(f["identity"], f["arkit"], *f["pose"]),
                         light=f["light"], background=f["background"])
        Image.fromarray(r.image).save(folder / f"face_{i}.png")
        f.update(vertices=r.vertices, cam=r.cam)
    return faces
