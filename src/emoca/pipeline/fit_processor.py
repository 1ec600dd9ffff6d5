"""The open fit (ICT-FaceKit or FLAME fitted with EMOCA's losses) as a
:class:`~emoca.pipeline.processor.FaceProcessor`, so ``emoca fit`` shares the runner's
naming, resume, summary and video loop with ``emoca reconstruct``.

Photos: the faces of a batch are fitted together (independent faces). Videos: each track
is buffered and fitted ``chunk`` frames at a time as one sequence (one identity for the
chunk, consecutive frames pulled together), so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emoca.detect.base import FaceDetector
from emoca.detect.crop import CropTransform, FaceCrop, crops_from_image
from emoca.face_model.arkit import ARKIT_NAMES, ict_to_arkit
from emoca.model.fitting import Fitter
from emoca.pipeline.fit_export import HeadExporter
from emoca.pipeline.fit_files import FitFace, MeshData, write_fit_face, write_fit_track
from emoca.pipeline.processor import FaceJob, TrackArrays
from emoca.pipeline.timing import StageTimer
from emoca.render.draw import draw_landmarks

__all__ = ["FER_CLASSES", "FitProcessor"]

FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def _to_uint8(t: torch.Tensor) -> np.ndarray:
    """(3, H, W) float [0, 1] -> (H, W, 3) uint8."""
    return (t.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)


@dataclass
class _TrackState:
    frames: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    transforms: list[CropTransform] = field(default_factory=list)
    crops: list[torch.Tensor] = field(default_factory=list)
    landmarks: list[torch.Tensor] = field(default_factory=list)
    results: list[dict[str, np.ndarray]] = field(default_factory=list)  # one per fitted frame


class FitProcessor:
    """Fitter + detector (+ the FER emotion net) for the runner.

    Args:
        fitter: a :class:`~emoca.model.fitting.Fitter` (its face model and config).
        detector: face detector (must give 68 landmarks).
        emotion_net: FER network for the emotion read-out of photo and render, or None.
        chunk: video frames fitted together (one identity per chunk).
        batch_size: photo faces fitted together.
    """

    command = "fit"

    def __init__(self, fitter: Fitter, detector: FaceDetector, emotion_net: Any = None, *,
                 chunk: int = 32, batch_size: int = 8, timer: StageTimer | None = None) -> None:
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.fitter = fitter
        self.detector = detector
        self.emotion_net = emotion_net
        self.chunk = int(chunk)
        self.batch_size = int(batch_size)
        self.timer = timer or StageTimer()
        self._exporter: HeadExporter | None = None

    @property
    def model(self) -> Any:
        return self.fitter.model

    def settings(self) -> dict[str, Any]:
        cfg = self.fitter.cfg
        return {"command": self.command, "face_model": self.model.name,
                "config": {k: v for k, v in vars(cfg).items()
                           if isinstance(v, (int, float, str, bool))},
                "emotion": self.emotion_net is not None, "chunk": self.chunk}

    def detect(self, image: np.ndarray, name: str | None = None) -> list[FaceCrop]:
        crops = crops_from_image(image, self.detector, name=name, stage=self.timer.stage)
        return [c for c in crops if c.detection.landmarks is not None]

    # ------------------------------------------------------------------ photos
    def _fit(self, crops: list[FaceCrop], sequence: bool = False):
        images = torch.stack([c.image for c in crops])
        lmk = torch.stack([torch.as_tensor(c.transform.to_crop(c.detection.landmarks68()),
                                           dtype=torch.float32) for c in crops])
        # MediaPipe's own points too (the fit follows them through its dense embedding)
        dense = None
        if all(c.detection.landmarks_kind == "mediapipe478" for c in crops):
            dense = torch.stack([torch.as_tensor(c.transform.to_crop(c.detection.landmarks),
                                                 dtype=torch.float32) for c in crops])
        with self.timer.stage("fit", len(crops)):
            return self.fitter.fit(images, lmk, sequence=sequence, mediapipe=dense)

    def process(self, jobs: Sequence[FaceJob]) -> list[FitFace]:
        res = self._fit([j.crop for j in jobs])
        with self.timer.stage("render", len(jobs)):
            return [self._face(job, res, i) for i, job in enumerate(jobs)]

    @property
    def exporter(self) -> HeadExporter:
        if self._exporter is None:
            self._exporter = HeadExporter(self.fitter.display_model)
        return self._exporter

    @torch.no_grad()
    def _face(self, job: FaceJob, res: Any, i: int) -> FitFace:
        crop, exporter = job.crop, self.exporter
        ad = self.fitter.adapter
        params_t = {k: v[i:i + 1].detach() for k, v in res.params.items()}
        verts = exporter.vertices(params_t)[0]
        cam = res.cam[i].detach()
        params = {k: v[0].cpu().numpy() for k, v in params_t.items()}
        lmk_crop = res.landmarks2d[i].detach().cpu().double()
        lmk_image = crop.transform.to_image(lmk_crop)
        record: dict[str, Any] = {
            "face_model": self.model.name, "source": job.source, "face_index": job.face_index,
            "box": [float(x) for x in crop.detection.box], "camera": cam.tolist(),
            "image_to_crop": np.asarray(crop.transform.image_to_crop).tolist(),
            "landmark_error_iod": float(res.landmark_error[i]), "losses": res.losses,
            "units": "vertices in model units (ICT-FaceKit: cm; FLAME: m), mesh.glb in "
                     "metres; rotation axis-angle radians; landmarks in pixels with centres "
                     "at integers",
        }
        if self.model.expression_names is not None:  # named blendshapes, rigid head
            names = self.model.expression_names
            arkit = ict_to_arkit(params["expression"], names)
            record["arkit_blendshapes"] = {n: round(float(w), 5)
                                           for n, w in zip(ARKIT_NAMES, arkit, strict=True)}
            record["ict_blendshapes"] = {n: round(float(w), 5) for n, w in
                                         zip(names, params["expression"], strict=True)}
            record["identity"] = params[ad.identity_name].tolist()
            record["head_rotation"] = params[ad.pose_name].tolist()
        else:
            record.update({k: v.tolist() for k, v in params.items()})
        if self.emotion_net is not None:
            p_photo = self.emotion_net(crop.image[None]).probs[0]
            p_render = self.emotion_net(res.render[i:i + 1]).probs[0]
            record["emotion_photo"] = dict(zip(FER_CLASSES, map(float, p_photo), strict=True))
            record["emotion_render"] = dict(zip(FER_CLASSES, map(float, p_render), strict=True))
        arrays = {**params, "camera": cam.cpu().numpy(), "vertices": verts.cpu().numpy(),
                  "landmarks2d": lmk_image.float().numpy(),
                  "landmarks2d_crop": lmk_crop.float().numpy(),
                  "image_to_crop": np.asarray(crop.transform.image_to_crop)}
        if self.model.expression_names is not None:
            arrays["arkit_blendshapes"] = arkit
        photo = job.photo()
        if photo is None:
            photo = _to_uint8(crop.image)
            crop_only = True
        else:
            crop_only = False
        crop_u8 = _to_uint8(crop.image)
        size = crop.image.shape[-1]
        ident = CropTransform(np.eye(3))
        grey = torch.from_numpy(exporter.grey_overlay(crop_u8, verts, cam, ident, size)
                                ).permute(2, 0, 1).float() / 255.0
        # draw_landmarks' pixel i spans [i, i + 1): shift centre-at-integer points by 0.5
        marks = draw_landmarks(crop.image, lmk_crop.float() + 0.5, color=(0.0, 1.0, 0.0),
                               normalized=False)
        det = torch.as_tensor(crop.transform.to_crop(crop.detection.landmarks68()),
                              dtype=torch.float32)
        marks = draw_landmarks(marks, det + 0.5, color=(1.0, 0.0, 0.0), normalized=False)
        panel = torch.cat([crop.image, grey, res.render[i], marks], dim=2)
        full = (_to_uint8(grey) if crop_only else
                exporter.grey_overlay(photo, verts, cam, crop.transform, size))
        rig = (exporter.rig(params_t, arkit) if self.model.expression_names is not None
               else None)
        mesh = exporter.mesh(verts, cam, ident if crop_only else crop.transform, photo,
                             res.albedo[i].detach(), rig=rig)
        return FitFace(mesh=mesh, record=record, arrays=arrays, overlay=_to_uint8(panel),
                       overlay_full=full)

    def write_face(self, face_dir: Path, record: FitFace) -> list[str]:
        return write_fit_face(face_dir, record)

    # ------------------------------------------------------------------ videos
    def start_video(self, scratch: Path | None = None) -> dict[int, _TrackState]:
        return {}  # tracks kept in memory (no spilling)

    def add_face(self, state: dict[int, _TrackState], job: FaceJob) -> None:
        st = state.setdefault(int(job.track_id), _TrackState())
        st.frames.append(int(job.frame))
        st.times.append(float(job.time))
        st.transforms.append(job.crop.transform)
        st.crops.append(job.crop)
        if len(st.crops) - len(st.results) >= self.chunk:
            self._flush(st)

    def _flush(self, st: _TrackState) -> None:
        todo = st.crops[len(st.results):]
        if not todo:
            return
        res = self._fit(todo, sequence=len(todo) > 1)
        for i in range(len(todo)):
            item = {k: v[i].detach().cpu().numpy() for k, v in res.params.items()}
            item.update(cam=res.cam[i].cpu().numpy(), albedo=res.albedo[i].cpu().numpy(),
                        landmark_error=np.float32(res.landmark_error[i]))
            st.results.append(item)
        # the crops are not needed any more: keep memory flat over long videos
        st.crops[len(st.results) - len(todo):] = [None] * len(todo)

    def finish_video(self, state: dict[int, _TrackState]) -> dict[int, TrackArrays]:
        out: dict[int, TrackArrays] = {}
        for tid, st in sorted(state.items()):
            self._flush(st)
            arrays = {k: np.stack([r[k] for r in st.results]) for k in st.results[0]}
            out[tid] = {"frame": np.asarray(st.frames, np.int64),
                        "time": np.asarray(st.times, np.float64), **arrays,
                        "image_to_crop": np.stack([np.asarray(t.image_to_crop)
                                                   for t in st.transforms])}
        return out

    @torch.no_grad()
    def write_track(self, track_dir: Path, arrays: TrackArrays) -> list[str]:
        model, ad, ex = self.fitter.display_model, self.fitter.adapter, self.exporter
        ident = torch.as_tensor(arrays[ad.identity_name].mean(0))[None]
        neutral = model(**{ad.identity_name: ident}).vertices[0]
        mesh = MeshData(neutral.cpu(), model.faces.cpu(), ex.uvs, ex.uv_faces)
        names = model.expression_names
        return write_fit_track(track_dir, arrays, mesh, names)

    @torch.no_grad()
    def draw_frames(self, frames: Sequence[tuple[np.ndarray, list[tuple[TrackArrays, int]]]]
                    ) -> list[np.ndarray]:
        ad, ex = self.fitter.adapter, self.exporter
        out = []
        for img, items in frames:
            for arr, i in items:
                params = {k: torch.as_tensor(arr[k][i])[None] for k in ad.free}
                verts = ex.vertices(ad.model_params(params))[0]
                img = ex.grey_overlay(img, verts, torch.as_tensor(arr["cam"][i]),
                                      CropTransform(arr["image_to_crop"][i]))
            out.append(img)
        return out
