"""``emoca retarget``: a FLAME performance -> ARKit curves, or an ARKit (ICT-FaceKit)
performance -> FLAME codes, through :mod:`emoca.animation.retarget`.

``--to arkit`` writes into OUT: ``live_link.csv``, ``curves.csv``, ``params.npz`` (an
ICT-FaceKit track: ``frame``, ``time``, ``identity`` zeros, ``expression`` (ICT weights
from the ARKit ones), ``rotation`` = the FLAME head rotation, ``arkit`` (T, 52),
``residual_m``), and the ARKit-morph ``animation.glb``/``animation.json`` on ICT's
neutral head. ``--to flame`` writes ``codes.npz`` (a FLAME track: ``frame``, ``time``,
``shape`` zeros, ``exp``, ``pose`` = [ICT head rotation | fitted jaw]) and the FLAME
``animation.glb``/``.json``. Both write ``retarget.json`` (the map used and its errors).
So OUT is itself a track folder that ``emoca animate`` and ``emoca retarget`` read.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from emoca.animation.export import load_model, write_animation
from emoca.animation.tracks import read_performance
from emoca.errors import UsageError
from emoca.face_model.arkit import ARKIT_NAMES, arkit_to_ict, ict_to_arkit
from emoca.io.atomic import atomic_write

__all__ = ["retarget"]


def _npz(path: Path, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())


def retarget(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, to: str, *,
             assets: Any = None, ict_dir: str | os.PathLike | None = None,
             fps: float = 30.0) -> dict[str, Any]:
    """Retarget one performance (module doc); returns the ``retarget.json`` record."""
    from emoca.animation.retarget import arkit_to_flame, flame_to_arkit, load_or_build
    from emoca.assets.locate import Assets
    from emoca.pipeline.bookkeeping import write_json

    if to not in ("arkit", "flame"):
        raise UsageError(f"--to must be arkit or flame, got {to!r}")
    perf = read_performance(inputs, fps=fps)
    want = "flame" if to == "arkit" else "ict"
    if perf.kind != want:
        raise UsageError(f"{perf.sources[0]}: a {perf.kind} performance; --to {to} needs a "
                         f"{'FLAME' if want == 'flame' else 'ICT-FaceKit (ARKit)'} one")
    a = assets if isinstance(assets, Assets) else Assets(assets)
    flame = load_model("flame", a)
    ict = load_model("ict", a, ict_dir)
    rmap, cache, built = load_or_build(flame, ict, a.root, a.path("flame_model"))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "to": to, "source": list(perf.sources), "frames": perf.n_frames,
        "map": {"cache": str(cache) if cache else None, "built_now": built,
                "flame_hash": rmap.flame_hash, "corresponding_vertices":
                    int(len(rmap.flame_vertices)),
                "landmark_rms_m": round(rmap.landmark_error, 7),
                "arkit_fit_rms_m": {n: round(float(e), 7)
                                    for n, e in zip(ARKIT_NAMES, rmap.fit_error, strict=True)}},
    }
    p = perf.params
    t = perf.n_frames
    if to == "arkit":
        arkit, resid = flame_to_arkit(rmap, flame, p["expression"][:, :flame.n_exp],
                                      p["pose"][:, 3:6])
        ict_w = arkit_to_ict(arkit, ict.expression_names).astype(np.float64)
        params = {"identity": np.zeros((t, ict.n_identity)), "expression": ict_w,
                  "rotation": p["pose"][:, :3]}
        _npz(out / "params.npz", frame=perf.frames, time=perf.times + perf.start_time,
             arkit=arkit.astype(np.float32), residual_m=resid.astype(np.float32),
             **{k: v.astype(np.float32) for k, v in params.items()})
        record["residual_rms_m"] = {"mean": float(resid.mean()), "max": float(resid.max())}
        res = write_animation(replace(perf, kind="ict", params=params), ict, out,
                              extra={"retarget": "FLAME -> ARKit (emoca retarget)"})
    else:
        arkit = ict_to_arkit(p["expression"], ict.expression_names).astype(np.float64)
        exp, jaw = arkit_to_flame(rmap, arkit)
        pose = np.concatenate([p["rotation"], jaw], 1)
        params = {"shape": np.zeros((t, flame.n_shape)), "expression": exp, "pose": pose}
        _npz(out / "codes.npz", frame=perf.frames, time=perf.times + perf.start_time,
             shape=params["shape"].astype(np.float32), exp=exp.astype(np.float32),
             pose=pose.astype(np.float32))
        res = write_animation(replace(perf, kind="flame", params=params), flame, out,
                              extra={"retarget": "ARKit -> FLAME (emoca retarget)"})
    record["files"] = res.record["files"] + ["retarget.json",
                                             "params.npz" if to == "arkit" else "codes.npz"]
    write_json(out / "retarget.json", record)
    return record
