"""Analysis-by-synthesis fitting of a face model to face crops, with EMOCA's losses.

The open path of the project: no network weights are needed for the geometry. A face model
(ICT-FaceKit or FLAME) seen by DECA's orthographic camera is optimised so that its 68
landmarks land on the detected ones, its eyelid/lip distances and mouth corners agree with
the photo's (EMOCA's relative keypoint losses), its SH-lit render matches the photo
(masked photometric L1), and an emotion network sees the same emotion in the render as in
the photo (EMOCA's emotion consistency loss), with Gaussian priors on identity and a
sparsity prior on expression. A sequence of crops (video) shares one identity and is held
together by a temporal smoothness term.

Conventions: crops are (B,3,S,S) RGB in [0,1]; landmarks are (B,68,2) in crop pixels with
centres at integers (:mod:`emoca.geometry`: ``pixel = (ndc + 1) * S / 2 - 0.5``); the
camera is DECA's ``[s, tx, ty]``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from emoca.face_model.base import SurfacePointModel
from emoca.geometry import ndc_to_pixels, orthographic_project, pixels_to_ndc
from emoca.io.bundle import TensorBundle
from emoca.losses.emotion import emotion_consistency
from emoca.losses.landmarks import (
    EYE_CLOSURE_PAIRS,
    LIP_CLOSURE_PAIRS,
    MOUTH_CORNER_PAIRS,
    relative_keypoint_loss,
)
from emoca.model.fit_adapter import FitAdapter, default_skin, fit_view, init_camera
from emoca.model.fit_colour import shade, solve_grey_light_albedo
from emoca.model.fit_config import FitConfig
from emoca.model.fit_landmarks import (
    inter_ocular,
    landmark_weight,
    solve_landmarks,
    sparse_passes,
)
from emoca.model.levenberg_marquardt import levenberg_marquardt
from emoca.render.geometry import vertex_normals
from emoca.render.raster import deca_to_raster, interpolate, rasterize
from emoca.render.renderer import Renderer
from emoca.render.shading import add_sh_light

__all__ = ["FitConfig", "FitResult", "Fitter", "levenberg_marquardt", "orthographic_project"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitResult(TensorBundle):
    """Fitted parameters and what they produce.

    Attributes:
        params: name -> (B,n) model parameters (ICT: identity, expression in [0,1],
            rotation; FLAME: shape, expression, pose).
        cam: (B,3) DECA camera [s, tx, ty].
        light: (B,9,3) SH coefficients (linear light with ``linear_light``).
        albedo: (B,3) RGB skin albedo (constant per face), sRGB-encoded in [0, 1].
        vertices: (B,V,3) posed vertices, model units.
        landmarks2d: (B,68,2) projected landmarks in crop pixels (centres at integers).
        render: (B,3,S,S) lit render composited over the crop (the whole display model:
            ICT with eyes, teeth, gums and mouth socket).
        alpha: (B,1,S,S) render coverage.
        landmark_error: (B,) mean landmark distance / inter-ocular distance.
        emotion_feature_distance: (B,) mean squared distance of the emotion features of
            photo and render (nan without an emotion network).
        losses: final value of each loss term (floats).
    """

    params: dict[str, torch.Tensor]
    cam: torch.Tensor
    light: torch.Tensor
    albedo: torch.Tensor
    vertices: torch.Tensor
    landmarks2d: torch.Tensor
    render: torch.Tensor
    alpha: torch.Tensor
    landmark_error: torch.Tensor
    emotion_feature_distance: torch.Tensor
    losses: dict[str, float] = field(default_factory=dict)


class Fitter:
    """Fit a face model to face crops.

    Args:
        face_model: FLAME or ICTFaceModel (the FaceModel protocol plus ``uv_coords`` and
            ``uv_faces``).
        emotion_net: a module mapping (B,3,H,W) RGB in [0,1] to an output with ``.feature``
            (B,D), e.g. ``FerXception``; ``None`` disables the emotion term.
        config: :class:`FitConfig`.
        skin_vertices: indices of vertices whose render is compared with the photo
            (default: ICT's narrow face; FLAME all).
    """

    def __init__(self, face_model: nn.Module, emotion_net: nn.Module | None = None,
                 config: FitConfig | None = None, skin_vertices: torch.Tensor | None = None
                 ) -> None:
        # renders and exports use the whole model (ICT: eyes, teeth, mouth socket); the fit
        # itself only needs the skin that the photo shows
        self.display_model = face_model
        self._display_colors: tuple[torch.Tensor, torch.Tensor] | None = None
        face_model = fit_view(face_model)
        self.model = face_model
        self.cfg = config or FitConfig()
        self.adapter = FitAdapter(face_model, self.cfg.n_identity, self.cfg.dynamic_jaw)
        # MediaPipe's points on the model's surface (ICT ships one); None: 68 points only
        self.embedding = None
        if self.cfg.w_dense > 0 and isinstance(face_model, SurfacePointModel):
            from emoca.face_model.mediapipe_embedding import MediaPipeEmbedding

            self.embedding = MediaPipeEmbedding.load()
            self.adapter.use_embedding(self.embedding)
        self.emotion_net = emotion_net
        if emotion_net is not None:
            emotion_net.eval().requires_grad_(False)
        # the fit renders through _render; this renderer serves UV-space exports
        self.renderer = Renderer(face_model.uv_coords, face_model.uv_faces, face_model.faces,
                                 image_size=self.cfg.render_size)
        v = face_model.num_vertices
        if skin_vertices is None:
            skin_vertices = default_skin(face_model)
        self.skin = (torch.ones(v) if skin_vertices is None else
                     torch.zeros(v).index_fill_(0, skin_vertices.long(), 1.0))

    def _raster_attrs(self, free: dict[str, torch.Tensor], cam: torch.Tensor, size: int):
        """Vertices (B,V,3), normal + skin images (B,4,S,S), alpha and front-facing masks."""
        verts = self.model(**self.adapter.model_params(free)).vertices
        b, faces = verts.shape[0], self.model.faces
        frags = rasterize(deca_to_raster(orthographic_project(verts, cam)), faces, size, size)
        attrs = torch.cat([vertex_normals(verts, faces),
                           self.skin.to(verts)[None, :, None].expand(b, -1, 1)], dim=-1)
        pix = interpolate(attrs, frags, faces).permute(0, 3, 1, 2)
        alpha = frags.mask[:, None].to(verts.dtype)
        # inner surfaces seen through the eye and mouth openings face away from the camera
        # (+z): draw them black and keep them out of the photometric comparison
        front = (pix[:, 2:3] > 0).to(verts.dtype)
        return verts, pix, alpha, front

    def _render(self, free: dict[str, torch.Tensor], cam: torch.Tensor, light: torch.Tensor,
                albedo: torch.Tensor, background: torch.Tensor):
        """Constant-albedo SH render over ``background`` and its skin mask.

        ``Renderer.forward``'s image for a constant albedo, without what the fit does not use
        (screen-space normals, positions, UV lookups): normals and the skin mask are
        interpolated in one pass over one rasterization. Back-facing pixels are black.

        Returns:
            vertices (B,V,3), images (B,3,S,S), alpha (B,1,S,S), skin mask (B,1,S,S).
        """
        verts, pix, alpha, front = self._raster_attrs(free, cam, background.shape[-1])
        shaded = shade(albedo[:, :, None, None], add_sh_light(pix[:, :3], light),
                       self.cfg.linear_light) * front
        images = shaded * alpha + background * (1 - alpha)
        return verts, images, alpha, (pix[:, 3:] > 0.5).to(verts.dtype) * alpha * front

    def fit(self, crops: torch.Tensor, landmarks: torch.Tensor, *, sequence: bool = False,
            mediapipe: torch.Tensor | None = None,
            callback: Callable[[str, int, dict[str, float]], None] | None = None) -> FitResult:
        """Fit to (B,3,S,S) crops with (B,68,2) landmarks in crop pixels.

        ``mediapipe``: (B,478,2) (or 468) MediaPipe face-mesh points in crop pixels; with a
        dense embedding (ICT) the fit follows them directly (``w_dense``), the 68 points
        then only weigh ``w_landmarks_with_dense`` (EMOCA's eye, lip and corner distances
        stay on the 68).
        With ``sequence=True`` the B crops are frames of one person: one identity is shared
        and consecutive frames' parameters are pulled together (``w_temporal``).
        """
        cfg, ad = self.cfg, self.adapter
        dev = crops.device
        b, _, size, _ = crops.shape
        target = pixels_to_ndc(landmarks.to(crops.dtype), size)  # centres at integers
        dense_w = None
        if mediapipe is not None and self.embedding is not None:
            dense_t = pixels_to_ndc(self.embedding.select(mediapipe.to(crops.dtype)), size)
            target = torch.cat([target, dense_t], dim=1)
            dense_w = torch.where(torch.as_tensor(self.embedding.contour, device=dev),
                                  cfg.w_dense_contour, 1.0).to(crops.dtype)
        small = F.interpolate(crops, size=(cfg.render_size,) * 2, mode="bilinear",
                              antialias=True, align_corners=False)
        init = ad.init(b, dev)
        ident = init[ad.identity_name][:1] if sequence else init[ad.identity_name]
        per_frame = {k: v for k, v in init.items() if k != ad.identity_name}

        def free() -> dict[str, torch.Tensor]:
            return {ad.identity_name: ident.expand(b, -1) if sequence else ident, **per_frame}

        with torch.no_grad():
            cam = init_camera(ad.landmarks(free()), target[:, :68])
        light = torch.zeros(b, 9, 1 if cfg.grey_light else 3, device=dev)
        light[:, 0] = 3.0  # ambient only: shading ~0.85 everywhere to start

        def lights() -> torch.Tensor:  # (B,9,3): grey light repeats its one channel
            return light.expand(-1, -1, 3)

        albedo = small.mean((2, 3)).clone()
        lmk_w = torch.ones(68, device=dev)
        lmk_w[:17] = cfg.w_contour
        photo_feat = None
        if self.emotion_net is not None:
            with torch.no_grad():
                photo_feat = self.emotion_net(small).feature

        w68 = landmark_weight(cfg, dense_w)

        def geometry_terms(rigid: bool, boost: float = 1.0) -> dict[str, torch.Tensor]:
            lmk = orthographic_project(ad.landmarks(free()), cam)[..., :2]
            t68 = target[:, :68]
            sq = ((lmk - t68) ** 2).sum(-1)
            terms = {"landmarks": boost * w68 * (sq * lmk_w).sum(1).mean() / lmk_w.sum()}
            if dense_w is not None:
                pts = orthographic_project(ad.dense(free()), cam)[..., :2]
                sq = ((pts - target[:, 68:]) ** 2).sum(-1)
                terms["dense"] = (boost * cfg.w_dense * (sq * dense_w).sum(1).mean()
                                  / dense_w.sum())
            if not rigid:
                # EMOCA's relative keypoint losses, squared per face, then averaged:
                # squaring the batch's mean made each face's optimum depend on the others
                for name, w, pairs in (("eye", cfg.w_eye, EYE_CLOSURE_PAIRS),
                                       ("lip", cfg.w_lip, LIP_CLOSURE_PAIRS),
                                       ("corner", cfg.w_corner, MOUTH_CORNER_PAIRS)):
                    per = relative_keypoint_loss(lmk, t68, pairs, per_face=True)
                    terms[name] = w * (per ** 2).mean()
                terms["prior"] = ad.prior(free(), cfg, reweight)
                if sequence and b > 1:
                    smooth = [(v[1:] - v[:-1]).pow(2).sum(1).mean() for v in per_frame.values()]
                    terms["temporal"] = cfg.w_temporal * sum(smooth)
            return terms

        reweight = None  # the sparsity passes' prior multipliers, kept for the Adam stages
        if cfg.solver == "lm":
            # independent faces: solve the landmark stages as nonlinear least squares
            with torch.no_grad():
                cam, ident_lm, pf = solve_landmarks(ad, cfg, cam, free(), target, lmk_w,
                                                   dense_w)
                cam, ident_lm, pf, reweight = sparse_passes(ad, cfg, cam, ident_lm, pf,
                                                            target, lmk_w, dense_w)
            if sequence:  # start the joint refinement from the frames' mean identity
                ident = ident_lm.mean(0, keepdim=True)
            else:
                ident = ident_lm
            per_frame = pf

        if cfg.grey_light:  # least-squares grey light and skin colour for the fitted shape
            with torch.no_grad():
                _, pix, alpha, front = self._raster_attrs(free(), cam, small.shape[-1])
                mask = (pix[:, 3:] > 0.5).to(pix.dtype) * alpha * front
                light3, albedo = solve_grey_light_albedo(small, pix[:, :3], mask,
                                                         linear=cfg.linear_light)
                light = light3[:, :, :1].clone()
        albedo0 = albedo.clone()
        pose, exp = per_frame[ad.pose_name], per_frame["expression"]
        adam_landmarks = cfg.solver != "lm" or sequence
        stages = [
            ("rigid", cfg.steps_rigid if cfg.solver != "lm" else 0,
             [(cam, cfg.lr_camera), (pose, cfg.lr_pose)]),
            ("landmarks", cfg.steps_landmarks if adam_landmarks else 0,
             [(cam, cfg.lr_camera), (pose, cfg.lr_pose), (ident, cfg.lr_identity),
              (exp, cfg.lr_expression)]),
            ("appearance", cfg.steps_appearance,
             [(exp, cfg.lr_expression * 0.5), (light, 0.05), (albedo, 0.02)]),
        ]
        losses: dict[str, float] = {}
        for stage, steps, groups in stages:
            if steps <= 0:
                continue
            tensors = [t for t, _ in groups]
            for t in tensors:
                t.requires_grad_(True)
            opt = torch.optim.Adam([{"params": [t], "lr": lr} for t, lr in groups])
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=0.0)
            for it in tqdm(range(steps), desc=f"fit: {stage}", disable=not cfg.show_progress,
                           leave=False):
                opt.zero_grad(set_to_none=True)
                if stage == "appearance":
                    _, images, _, skin = self._render(free(), cam, lights(), albedo, small)
                    # photo and emotion terms may move the expression, not the landmarks
                    terms = geometry_terms(rigid=False, boost=cfg.appearance_landmark_boost)
                    diff = (images - small).abs().sum(1, keepdim=True) * skin
                    # per face, then averaged: a face's weighting must not depend on
                    # the skin area of the faces batched with it
                    terms["photometric"] = cfg.w_photometric * (
                        diff.sum((1, 2, 3)) / skin.sum((1, 2, 3)).clamp(min=1.0)).mean()
                    terms["albedo_prior"] = cfg.w_albedo_prior * (
                        (albedo - albedo0) ** 2).sum(1).mean()
                    if photo_feat is not None and cfg.w_emotion > 0:
                        terms["emotion"] = cfg.w_emotion * emotion_consistency(
                            photo_feat, self.emotion_net(images).feature)
                else:
                    terms = geometry_terms(rigid=stage == "rigid")
                total = sum(terms.values())
                total.backward()
                opt.step()
                sched.step()
                with torch.no_grad():
                    cam[:, 0].clamp_(min=1e-6)
                    ad.project_bounds(per_frame)
                losses = {k: float(v.detach()) for k, v in terms.items()}
                if callback is not None:
                    callback(stage, it, losses)
            for t in tensors:
                t.requires_grad_(False)
        return self._finish(free(), cam, lights(), albedo, crops, target[:, :68], photo_feat,
                            losses)

    @torch.no_grad()
    def _render_whole(self, free: dict[str, torch.Tensor], cam: torch.Tensor,
                      light: torch.Tensor, albedo: torch.Tensor, background: torch.Tensor):
        """The lit render of the whole display model (ICT: eyes, teeth, gums and mouth socket
        in their fixed colours, skin in the fitted albedo); else :meth:`_render`.

        Returns:
            images (B,3,S,S), alpha (B,1,S,S).
        """
        disp = self.display_model
        if disp is self.model or not hasattr(disp, "vertex_indices"):
            _, images, alpha, _ = self._render(free, cam, light, albedo, background)
            return images, alpha
        from emoca.face_model.ict_parts import part_base_colors, part_labels

        if self._display_colors is None:
            cols, skin = part_base_colors(disp.neutral.cpu().numpy(),
                                          part_labels(disp.vertex_indices.cpu().numpy()))
            self._display_colors = (torch.from_numpy(cols), torch.from_numpy(skin))
        base, skin = (t.to(background.device) for t in self._display_colors)
        verts = disp(**self.adapter.model_params(free)).vertices
        b, size, faces = verts.shape[0], background.shape[-1], disp.faces
        colors = torch.where(skin[None, :, None], albedo[:, None, :], base[None].to(verts))
        frags = rasterize(deca_to_raster(orthographic_project(verts, cam)), faces, size, size)
        attrs = torch.cat([vertex_normals(verts, faces), colors.expand(b, -1, 3)], dim=-1)
        pix = interpolate(attrs, frags, faces).permute(0, 3, 1, 2)
        alpha = frags.mask[:, None].to(verts.dtype)
        shaded = shade(pix[:, 3:], add_sh_light(pix[:, :3], light),
                       self.cfg.linear_light) * (pix[:, 2:3] > 0)
        return shaded * alpha + background * (1 - alpha), alpha

    def _finish(self, free, cam, light, albedo, crops, target, photo_feat, losses) -> FitResult:
        size = crops.shape[-1]
        verts = self.model(**self.adapter.model_params(free)).vertices
        images, alpha = self._render_whole(free, cam, light, albedo, crops)
        lmk = orthographic_project(self.adapter.landmarks(free), cam)[..., :2]
        err = (lmk - target).norm(dim=-1).mean(1) / inter_ocular(target)
        if photo_feat is not None:
            small = F.interpolate(crops, size=(self.cfg.render_size,) * 2, mode="bilinear",
                                  antialias=True, align_corners=False)
            small_images, _ = self._render_whole(free, cam, light, albedo, small)
            emo = (self.emotion_net(small_images).feature - photo_feat).pow(2).mean(1)
        else:
            emo = torch.full((verts.shape[0],), math.nan, device=crops.device)
        params = self.adapter.model_params(free)
        return FitResult(
            params={k: v.detach().clone() for k, v in params.items()}, cam=cam.detach(),
            light=light.detach(), albedo=albedo.detach(), vertices=verts,
            landmarks2d=ndc_to_pixels(lmk, size), render=images, alpha=alpha,
            landmark_error=err, emotion_feature_distance=emo, losses=losses)
