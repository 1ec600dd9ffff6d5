"""``emoca animate``: a captured performance -> ``OUT/animation.glb`` + ``OUT/animation.json``
(+ ARKit curves). The two file names are the contract the viewer reads.

FLAME tracks (``emoca reconstruct``, ``emoca fit --face-model flame``) become the exact
skinned FLAME mesh (:mod:`emoca.animation.flame_glb`), built from the user's licensed FLAME
file at run time, never shipped. ICT-FaceKit tracks (``emoca fit``) become the ARKit-morph
mesh (:mod:`emoca.animation.ict_glb`).

One identity per GLB: the per-frame identity codes are averaged (EMOCA estimates a shape
per frame); how far that moves any vertex from the per-frame codes is recorded in
``animation.json`` (``baking``), as is the ICT split-halves averaging.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emoca.animation.tracks import Performance, read_performance

__all__ = ["AnimationResult", "animate", "build_performance_glb", "load_model",
           "read_identity", "with_identity", "write_animation"]

FORMAT_VERSION = 1
GLB_NAME, JSON_NAME = "animation.glb", "animation.json"
LIVE_LINK_NAME, CURVES_NAME = "live_link.csv", "curves.csv"


@dataclass(frozen=True)
class AnimationResult:
    """What :func:`animate` wrote: ``out_dir`` and the ``animation.json`` record."""

    out_dir: Path
    record: dict[str, Any]


def _max_shift(coeffs: np.ndarray, basis: np.ndarray) -> float:
    """Largest vertex displacement of ``coeffs (T, K) @ basis (K, V*3)``, in chunks of
    frames (an hour of video would not fit at once)."""
    best = 0.0
    for i in range(0, len(coeffs), 512):
        off = (coeffs[i:i + 512] @ basis).reshape(-1, 3)
        best = max(best, float(np.sqrt((off ** 2).sum(-1)).max(initial=0.0)))
    return best


def _flame_glb(perf: Performance, flame) -> tuple[Any, dict[str, Any], dict[str, np.ndarray]]:
    from emoca.animation.curves import yaw_pitch_roll
    from emoca.animation.flame_glb import JOINT_NAMES, FlameSequence, flame_gltf, rotations

    p = perf.params
    n_shape = flame.n_shape
    shapes = p["shape"][:, :n_shape]
    if shapes.shape[1] < n_shape:
        shapes = np.pad(shapes, ((0, 0), (0, n_shape - shapes.shape[1])))
    shape = shapes.mean(0)
    dirs = flame.shapedirs.detach().double().numpy()[..., :n_shape].reshape(-1, n_shape)
    baking = _max_shift(shapes - shape, dirs.T)
    seq = FlameSequence(shape=shape, expression=p["expression"], pose=p["pose"],
                        times=perf.times)
    built = flame_gltf(flame, seq)
    rots = rotations(seq.full_pose())
    extra = {"joints": list(JOINT_NAMES), "rotation": "skeleton (root = head, jaw, neck, eyes)",
             "baking": {"identity": "mean of the per-frame shape codes",
                        "identity_max_vertex_shift_m": round(baking, 9),
                        "dropped_skin_weight": built.dropped_weight},
             "licence": "made at run time from your FLAME model file; FLAME's licence "
                        "applies to this file: do not redistribute it"}
    curves = {"head": yaw_pitch_roll(rots[:, 0] @ rots[:, 1]), "flame_shape": shape}
    return built.mesh, extra, curves


def _ict_glb(perf: Performance, model) -> tuple[Any, dict[str, Any], dict[str, np.ndarray]]:
    from emoca.animation.curves import yaw_pitch_roll
    from emoca.animation.ict_glb import CM, IctSequence, head_rotations, ict_gltf
    from emoca.face_model.arkit import arkit_to_ict, ict_to_arkit

    p = perf.params
    names = model.expression_names
    if p["expression"].shape[1] != len(names):
        raise ValueError(f"{perf.sources[0]}: {p['expression'].shape[1]} expression weights, "
                         f"the ICT-FaceKit model has {len(names)}")
    ident = p["identity"].mean(0)
    arkit = ict_to_arkit(p["expression"], names).astype(np.float64)
    n_id = min(len(ident), model.n_identity)
    id_basis = model.identity_basis.detach().double().numpy()[:n_id]
    exp_basis = model.expression_basis.detach().double().numpy()
    id_shift = _max_shift(p["identity"][:, :n_id] - ident[:n_id], id_basis) * CM
    halves = _max_shift(p["expression"] - arkit_to_ict(arkit, names), exp_basis) * CM
    seq = IctSequence(identity=ident[:n_id], arkit=arkit, rotation=p["rotation"],
                      times=perf.times)
    built = ict_gltf(model, seq)
    extra = {"joints": [], "rotation": "mesh node rotation (head)",
             "baking": {"identity": "mean of the per-frame identity weights",
                        "identity_max_vertex_shift_m": round(id_shift, 9),
                        "arkit_from_ict": "split ICT halves averaged (ARKit has one shape)",
                        "arkit_max_vertex_shift_m": round(halves, 9)},
             "licence": "ICT-FaceKit, MIT licence (USC ICT)"}
    curves = {"arkit": arkit, "head": yaw_pitch_roll(head_rotations(p["rotation"]))}
    return built.mesh, extra, curves


def build_performance_glb(perf: Performance, model) -> tuple[Any, dict[str, Any], dict]:
    """The :class:`~emoca.io.gltf.GltfMesh`, the model-specific part of ``animation.json``
    and the curves (``head`` (T,3) yaw/pitch/roll rad; ``arkit`` (T,52) for ICT)."""
    return (_flame_glb if perf.kind == "flame" else _ict_glb)(perf, model)


def load_model(kind: str, assets: Any = None, ict_dir: str | os.PathLike | None = None):
    """The face model a performance needs (FLAME from the user's assets, or ICT-FaceKit)."""
    from emoca.face_model.registry import load_face_model

    if kind == "ict":
        from emoca.assets.ict_facekit import ict_model_dir

        root = getattr(assets, "root", assets)  # an Assets object or a folder
        return load_face_model("ict", ict_dir=ict_model_dir(ict_dir, root))
    return load_face_model("flame", assets=assets)


def read_identity(source: str | os.PathLike, kind: str) -> np.ndarray:
    """The identity code for ``--identity``: ``"neutral"`` (zeros: the model's mean head)
    or a face/track folder (or its ``codes.npz``/``params.npz``) of the same face model;
    a track's per-frame codes are averaged. Returns (n,) FLAME shape or ICT identity.

    Raises:
        InputError: unreadable, or made with the other face model.
    """
    from emoca.errors import InputError, file_problem

    if str(source) == "neutral":
        return np.zeros(0)
    p = Path(source)
    if p.is_dir():
        found = [p / n for n in ("codes.npz", "params.npz") if (p / n).is_file()]
        if not found:
            raise InputError(file_problem(p, "no codes.npz or params.npz to take an identity "
                                          "from (for a photo, run emoca reconstruct or "
                                          "emoca fit on it first and pass its face folder)"))
        p = found[0]
    if p.suffix != ".npz":
        raise InputError(file_problem(p, "--identity takes 'neutral', a face/track folder "
                                      "or its codes.npz/params.npz (for a photo, run emoca "
                                      "reconstruct or fit on it first)"))
    key = "shape" if kind == "flame" else "identity"
    try:
        with np.load(p, allow_pickle=False) as z:
            if key not in z.files:
                other = "ICT-FaceKit" if kind == "flame" else "FLAME"
                raise InputError(file_problem(p, f"has no '{key}': an identity of the "
                                              f"{other} model cannot drive a {kind} "
                                              "performance"))
            code = np.asarray(z[key], np.float64)
    except (OSError, ValueError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(file_problem(p, f"cannot read: {e}")) from e
    return code.reshape(-1, code.shape[-1]).mean(0)


def with_identity(perf: Performance, code: np.ndarray) -> Performance:
    """``perf`` with every frame's identity replaced by ``code`` (empty: zeros)."""
    from dataclasses import replace

    key = "shape" if perf.kind == "flame" else "identity"
    n = perf.params[key].shape[1]
    full = np.zeros(n)
    full[:min(n, len(code))] = code[:n]
    return replace(perf, params={**perf.params, key: np.tile(full, (perf.n_frames, 1))})


def animate(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
            assets: Any = None, ict_dir: str | os.PathLike | None = None, fps: float = 30.0,
            model: Any = None, curves: bool = True,
            identity: str | os.PathLike | None = None,
            arkit_curves: bool = False) -> AnimationResult:
    """Write ``animation.glb`` and ``animation.json`` (and ``live_link.csv``/``curves.csv``
    when ARKit weights exist) into ``out_dir`` for one performance (module doc).

    Args:
        inputs: one track folder, or face folders played as a sequence.
        assets: assets folder (FLAME files); ict_dir: ICT-FaceKit folder.
        fps: frame rate for face folders without times.
        model: an already loaded face model of the right kind (tests, batch use).
        identity: drive another face: ``"neutral"`` or a face/track folder of the same
            face model (:func:`read_identity`).
        arkit_curves: FLAME performances: also write the ARKit curves, retargeted with the
            map of :mod:`emoca.animation.retarget` (built once, cached in the assets).
    """
    perf = read_performance(inputs, fps=fps)
    extra = None
    if identity is not None:
        perf = with_identity(perf, read_identity(identity, perf.kind))
        extra = {"identity_from": str(identity)}
    if model is None:
        model = load_model(perf.kind, assets, ict_dir)
    arkit = None
    if arkit_curves and perf.kind == "flame":
        from emoca.animation.retarget import flame_to_arkit, load_or_build
        from emoca.assets.locate import Assets

        a = assets if isinstance(assets, Assets) else Assets(assets)
        rmap, _, _ = load_or_build(model, load_model("ict", a, ict_dir), a.root,
                                   a.path("flame_model"))
        arkit, resid = flame_to_arkit(rmap, model, perf.params["expression"][:, :model.n_exp],
                                      perf.params["pose"][:, 3:6])
        extra = {**(extra or {}), "arkit_curves": "retargeted from FLAME (emoca retarget's "
                 "map)", "arkit_residual_rms_m_max": float(resid.max())}
    return write_animation(perf, model, out_dir, curves=curves, extra=extra, arkit=arkit)


def write_animation(perf: Performance, model: Any, out_dir: str | os.PathLike, *,
                    curves: bool = True, extra: dict[str, Any] | None = None,
                    arkit: np.ndarray | None = None) -> AnimationResult:
    """Write one performance's GLB, JSON (with ``extra`` merged in) and ARKit curves
    (``arkit`` (T, 52) gives them for a FLAME performance)."""
    from emoca.animation.curves import write_curves_csv, write_live_link_csv
    from emoca.io.gltf import write_animated_glb
    from emoca.pipeline.bookkeeping import write_json

    mesh, info, crv = build_performance_glb(perf, model)
    if arkit is not None:
        crv = {**crv, "arkit": arkit}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = [GLB_NAME, JSON_NAME]
    if curves and "arkit" in crv:
        write_live_link_csv(out / LIVE_LINK_NAME, perf.times, perf.fps, crv["arkit"],
                            crv["head"])
        write_curves_csv(out / CURVES_NAME, perf.frames, perf.times, crv["arkit"], crv["head"])
        files += [LIVE_LINK_NAME, CURVES_NAME]
    write_animated_glb(out / GLB_NAME, mesh)
    record = {
        "format": "emoca-animation", "version": FORMAT_VERSION, "glb": GLB_NAME,
        "model": perf.kind, "units": "metres, y up, face towards +z; times in seconds; "
                                     "morph weights unitless",
        "fps": perf.fps, "frames": perf.n_frames,
        "duration_s": float(perf.times[-1]), "start_time_s": perf.start_time,
        "frame_indices": perf.frames.tolist(),
        "times_s": [round(float(t), 6) for t in perf.times],
        "source": {"inputs": list(perf.sources), "producer": perf.producer},
        # the source video (None for photos): animation time = video time - start_time_s
        "video": perf.video,
        "vertices": int(len(mesh.positions)), "morph_targets": list(mesh.target_names),
        "animation": "one glTF animation 'performance', LINEAR key frames at times_s",
        **info, **(extra or {}), "files": files,
    }
    write_json(out / JSON_NAME, record)  # last: its presence means the GLB is complete
    return AnimationResult(out_dir=out, record=record)
