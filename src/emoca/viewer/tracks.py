"""Per-track streams for the page: a small ``meta.json``, then frames in chunks.

A video track on disk holds codes (``codes.npz`` of reconstruct, ``params.npz`` of fit),
not meshes, so the server evaluates the face model for the frames the page asks for, one
chunk at a time (:class:`Mesher`): an hour of video (~10^5 frames, ~6 GB of FLAME
vertices as float32) is never built at once, and the page holds only the chunks around
the current frame.

Streams (``data/<item>/<track>/``), all sized so a request stays well under a second:

- ``meta.json``: frame indices and times (all frames), emotion curves binned to at most
  :data:`CURVE_POINTS` points, blendshape names, chunk size, vertex count, and why there
  are no vertices when the face model is missing;
- ``faces.bin``: triangle indices, uint32 (F, 3);
- ``verts_NNNNN.bin``: vertices of frames ``[N*C, N*C + C)``, float16 (n, V, 3) in model
  units (FLAME m: 2^-11 relative precision is ~0.05 mm on a 10 cm face);
- ``frames_NNNNN.json``: the small per-frame arrays of the same frames (camera,
  crop-to-image matrix, blendshape weights, 2D landmarks).
"""

from __future__ import annotations

import csv
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emoca.errors import EmocaError, InputError

__all__ = ["CHUNK", "CURVE_POINTS", "AFFECTNET_CLASSES", "Track", "Mesher", "bin_curve"]

CHUNK = 16  # frames per chunk: 16 x 5023 x 3 x 2 bytes = 0.5 MB for FLAME
CURVE_POINTS = 2000  # curves are drawn a few hundred pixels wide: more points add nothing
CURVE_SERIES = 6  # blendshape curves drawn for a fitted track (the most varying ones)
AFFECTNET_CLASSES = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger",
                     "contempt")


def bin_curve(values: np.ndarray, n_bins: int = CURVE_POINTS) -> np.ndarray:
    """Mean over equal runs of frames so at most ``n_bins`` points remain.

    Args:
        values: (T,) or (T, K) per-frame values.
    Returns:
        (min(T, n_bins), ...) float32; bin ``b`` covers frames
        ``[floor(b T / n), floor((b + 1) T / n))``.
    """
    values = np.asarray(values, dtype=np.float64)
    t = len(values)
    if t <= n_bins:
        return values.astype(np.float32)
    edges = (np.arange(n_bins + 1) * t) // n_bins
    sums = np.add.reduceat(values, edges[:-1], axis=0)
    counts = np.diff(edges).reshape(-1, *([1] * (values.ndim - 1)))
    return (sums / counts).astype(np.float32)


def _round(a: np.ndarray, digits: int = 5) -> list:
    return np.round(np.asarray(a, dtype=np.float64), digits).tolist()


def _csv_curves(path: Path) -> tuple[list[str] | None, np.ndarray | None]:
    """Blendshape names and (T, K) weights of a fit track's ``blendshapes.csv`` (the
    ARKit curves the fit writes; ``params.npz`` holds ICT's own 53 modes instead)."""
    if not path.is_file():
        return None, None
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0][:2] != ["frame", "time"]:
        return None, None
    try:
        weights = np.array([[float(x) for x in r[2:]] for r in rows[1:]], np.float32)
    except ValueError as e:
        raise InputError(f"{path}: not a blendshape table ({e})") from e
    return rows[0][2:], weights.reshape(len(rows) - 1, len(rows[0]) - 2)


class Mesher:
    """Face models for the tracks, loaded once, on the first frame asked for.

    ``assets`` is the folder with the user's FLAME files (``None``: ``$EMOCA_HOME`` or
    ``~/.cache/emoca``); ICT-FaceKit comes from the package when not in ``assets``.
    """

    def __init__(self, assets: str | Path | None = None) -> None:
        self.assets = assets
        self._models: dict[tuple[str, int, int], Any] = {}
        self._lock = threading.Lock()

    def model(self, kind: str, n_shape: int = 100, n_exp: int = 50) -> Any:
        """The FLAME (``kind='flame'``) or ICT-FaceKit (``'ict'``) model; raises
        EmocaError (e.g. MissingAssetError) when its files are absent."""
        key = (kind, n_shape, n_exp)
        with self._lock:
            if key not in self._models:
                self._models[key] = self._load(kind, n_shape, n_exp)
            return self._models[key]

    def _load(self, kind: str, n_shape: int, n_exp: int) -> Any:
        if kind == "ict":
            from emoca.face_model.ict import ICTFaceModel

            return ICTFaceModel.default(assets=self.assets)
        from emoca.assets.locate import Assets
        from emoca.face_model.flame import FLAME

        a = Assets(self.assets)
        return FLAME.from_file(a.path("flame_model"), None, n_shape=n_shape, n_exp=n_exp)


class _LazyNpz(Mapping[str, np.ndarray]):
    """An npz file whose arrays are read on first use: an hour-long codes.npz holds
    ~300 MB of codes, the page needs a few of them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with np.load(path, allow_pickle=False) as z:
                self._names = list(z.files)
        except (OSError, ValueError) as e:
            raise InputError(f"{path}: not a readable npz ({e})") from e
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def __getitem__(self, key: str) -> np.ndarray:
        with self._lock:
            if key not in self._cache:
                if key not in self._names:
                    raise KeyError(key)
                try:
                    with np.load(self.path, allow_pickle=False) as z:
                        self._cache[key] = z[key]
                except (OSError, ValueError) as e:
                    raise InputError(f"{self.path}: array {key!r} unreadable ({e})") from e
            return self._cache[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


@dataclass
class Track:
    """One video track folder read for the page (module doc)."""

    folder: Path
    arrays: _LazyNpz
    tool: str  # "reconstruct" or "fit"
    kind: str  # face model: "flame" or "ict"
    names: list[str] | None  # blendshape names (fit with ICT-FaceKit: ARKit's)
    weights: np.ndarray | None = None  # (T, len(names)) blendshape curves

    @classmethod
    def read(cls, folder: Path) -> Track:
        for name, tool in (("codes.npz", "reconstruct"), ("params.npz", "fit")):
            path = folder / name
            if path.is_file():
                arrays = _LazyNpz(path)
                if "frame" not in arrays or "time" not in arrays:
                    raise InputError(f"{path}: no 'frame'/'time' arrays (not a track file)")
                kind = "ict" if "identity" in arrays else "flame"
                names, weights = _csv_curves(folder / "blendshapes.csv")
                if weights is not None and len(weights) != len(arrays["frame"]):
                    raise InputError(f"{folder / 'blendshapes.csv'}: {len(weights)} rows, "
                                     f"{path.name} has {len(arrays['frame'])} frames")
                return cls(folder, arrays, tool, kind, names, weights)
        raise InputError(f"{folder}: neither codes.npz nor params.npz")

    @property
    def n_frames(self) -> int:
        return len(self.arrays["frame"])

    def _params(self, sl: slice) -> dict[str, Any]:
        import torch

        a = self.arrays
        t = {k: torch.as_tensor(np.asarray(a[k][sl], dtype=np.float32)) for k in a
             if k in ("shape", "exp", "pose", "identity", "expression", "rotation")}
        if self.kind == "ict":
            return {"identity": t["identity"], "expression": t["expression"],
                    "rotation": t["rotation"]}
        exp = t["exp"] if "exp" in t else t["expression"]
        return {"shape": t["shape"], "expression": exp, "pose": t["pose"]}

    def _load_model(self, mesher: Mesher) -> Any:
        if self.kind == "ict":
            return mesher.model("ict")
        a = self.arrays
        n_exp = (a["exp"] if "exp" in a else a["expression"]).shape[1]
        return mesher.model("flame", a["shape"].shape[1], n_exp)

    def mesh_status(self, mesher: Mesher) -> tuple[int, np.ndarray | None, str | None]:
        """(vertex count, (F, 3) uint32 faces, None) or (0, None, why not)."""
        try:
            model = self._load_model(mesher)
        except (EmocaError, FileNotFoundError) as e:
            return 0, None, " ".join(str(e).split())
        faces = np.asarray(model.faces.cpu().numpy(), dtype=np.uint32)
        return int(model.num_vertices), faces, None

    def vertices(self, mesher: Mesher, chunk: int) -> np.ndarray:
        """(n, V, 3) float16 vertices of chunk ``chunk`` (model units)."""
        import torch

        sl = slice(chunk * CHUNK, min((chunk + 1) * CHUNK, self.n_frames))
        if sl.start >= self.n_frames or chunk < 0:
            raise InputError(f"{self.folder}: no chunk {chunk} ({self.n_frames} frames)")
        model = self._load_model(mesher)
        params = self._params(sl)
        if self.kind == "ict" and params["identity"].shape[1] < model.parameter_sizes()[
                "identity"]:
            n = model.parameter_sizes()["identity"]
            params["identity"] = torch.nn.functional.pad(
                params["identity"], (0, n - params["identity"].shape[1]))
        with torch.no_grad():
            v = model(**params).vertices
        return v.cpu().numpy().astype(np.float16)

    def frames(self, chunk: int) -> dict[str, Any]:
        """The small per-frame arrays of one chunk, ready for JSON."""
        a = self.arrays
        sl = slice(chunk * CHUNK, min((chunk + 1) * CHUNK, self.n_frames))
        out: dict[str, Any] = {"start": sl.start, "count": sl.stop - sl.start}
        cam = a.get("cam", a.get("camera"))
        if cam is not None:
            out["cam"] = _round(cam[sl], 6)
        if "image_to_crop" in a:
            out["crop_to_image"] = _round(np.linalg.inv(a["image_to_crop"][sl]).reshape(
                -1, 9), 6)
        if self.weights is not None:
            out["weights"] = _round(self.weights[sl], 4)
        if "landmarks2d" in a:
            out["landmarks2d"] = _round(a["landmarks2d"][sl].reshape(len(a["frame"][sl]), -1),
                                        2)
        return out

    def meta(self, mesher: Mesher, item_id: str) -> dict[str, Any]:
        """``meta.json``: everything but the per-frame chunks (module doc)."""
        a = self.arrays
        n_verts, _, why = self.mesh_status(mesher)
        t = self.n_frames
        base = f"data/{item_id}/{self.folder.name}/"
        meta: dict[str, Any] = {
            "id": self.folder.name, "tool": self.tool, "face_model": self.kind,
            "units": "cm" if self.kind == "ict" else "m", "frames": t,
            "frame": a["frame"].astype(int).tolist(), "time": _round(a["time"], 4),
            "chunk": CHUNK, "chunks": (t + CHUNK - 1) // CHUNK,
            "vertex_count": n_verts, "no_vertices": why,
            "faces": base + "faces.bin" if why is None else None,
            "verts": base + "verts_{chunk}.bin", "frame_data": base + "frames_{chunk}.json",
            "blendshape_names": self.names if self.weights is not None else None,
            "crop_size": 224,
        }
        curves: dict[str, Any] = {}
        if "valence" in a:
            edges_time = bin_curve(a["time"])
            curves = {"time": _round(edges_time, 4), "valence": _round(bin_curve(a["valence"]), 4),
                      "arousal": _round(bin_curve(a["arousal"]), 4)}
            if "emotion_probs" in a:
                curves["probs"] = _round(bin_curve(a["emotion_probs"]), 4)
                curves["labels"] = list(AFFECTNET_CLASSES[:a["emotion_probs"].shape[1]])
        if not curves and self.weights is not None and self.names:
            # a fitted track has no emotion per frame: its most active blendshapes instead
            e = self.weights
            top = np.argsort(-e.std(0) - 1e-3 * e.mean(0), kind="stable")[:CURVE_SERIES]
            top = [k for k in top if e[:, k].std() > 1e-6] or list(top[:1])  # not flat ones
            curves = {"time": _round(bin_curve(a["time"]), 4),
                      "series": {self.names[k]: _round(bin_curve(e[:, k]), 4)
                                 for k in sorted(top)}}
        meta["curves"] = curves or None
        return meta


def chunk_name(chunk: int) -> str:
    """The zero-padded chunk number used in stream file names."""
    return f"{chunk:05d}"
