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

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from emoca.geometry import ndc_to_pixels, orthographic_project, pixels_to_ndc
from emoca.io.bundle import TensorBundle
from emoca.losses.emotion import emotion_consistency
from emoca.losses.landmarks import eye_closure_loss, lip_closure_loss, mouth_corner_loss
from emoca.model.fit_colour import shade, solve_grey_light_albedo
from emoca.model.levenberg_marquardt import levenberg_marquardt
from emoca.render.geometry import vertex_normals
from emoca.render.raster import deca_to_raster, interpolate, rasterize
from emoca.render.renderer import Renderer
from emoca.render.shading import add_sh_light

__all__ = ["FitConfig", "FitResult", "Fitter", "levenberg_marquardt", "orthographic_project"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitConfig:
    """Weights and schedule of the fit.

    The landmark term is the weighted mean squared distance in NDC units (crop = [-1, 1]);
    EMOCA's relative eye, lip and mouth-corner losses are squared here so that the fit's
    objective stays smooth near its optimum. Stages: ``rigid`` (camera and head pose on
    landmarks), ``landmarks`` (+ identity and expression), ``appearance`` (expression, SH
    light and albedo against the photo: photometric and emotion terms, landmarks kept).

    Colour: with ``grey_light`` the SH light has one set of 9 coefficients for all three
    channels, so the colour of the render comes from the albedo alone and the light cannot
    tint the skin (per-channel light turned skin magenta and yellow-green). The albedo
    starts at the least-squares skin colour under the starting light and is held near it
    by ``w_albedo_prior`` (a skin-tone prior taken from the photo's own skin).
    With ``linear_light`` the light multiplies in linear light: the albedo stays
    sRGB-encoded (photo units, so the prior keeps its meaning) and is decoded, shaded and
    encoded again (:func:`emoca.model.fit_colour.shade`).
    """

    solver: str = "lm"
    lm_iterations: int = 40
    lm_tol: float = 1e-4
    steps_rigid: int = 60
    steps_landmarks: int = 300
    steps_appearance: int = 10
    lr_identity: float = 0.3
    lr_expression: float = 0.06
    lr_pose: float = 0.01
    lr_camera: float = 0.003
    w_landmarks: float = 1.0
    w_contour: float = 1.0
    # MediaPipe's points through the dense embedding (ICT only; fit(mediapipe=...)): their
    # weight, the face-oval points' share (they trace the 2D outline, not surface points),
    # and what is left of the 68-point term when they are given
    w_dense: float = 1.0
    w_dense_contour: float = 0.1
    w_landmarks_with_dense: float = 0.0
    w_eye: float = 0.5
    w_lip: float = 0.5
    w_corner: float = 0.5
    w_photometric: float = 0.005
    w_emotion: float = 0.05
    w_identity_prior: float = 3e-6
    w_expression_prior: float = 3e-5
    # ARKit shapes the 68 landmarks barely see (cheek volume, lip roll and press, gaze, jaw
    # thrust): their prior is this many times stronger, so that they do not soak up what
    # identity, smile and jaw should explain (cheekPuff ~1 on neutral faces before)
    weak_shape_prior: float = 30.0
    weak_shapes: tuple[str, ...] = (
        "cheekPuff", "cheekSquint", "mouthPress", "mouthRoll", "mouthShrug",
        "mouthDimple", "jawForward", "eyeLook", "noseSneer", "mouthClose")
    # shapes the 68 points do see, but that also mimic identity (mouth width, asymmetry,
    # eye size): an optional milder extra prior. Off (1): at 5, the neutral Grace Hopper's
    # mouthPucker fell 0.6 -> 0.35 but known pucker/funnel/eyeWide weights were recovered
    # worse (correlation 0.83 -> 0.72 in tests/test_fit.py's round trip)
    soft_shape_prior: float = 1.0
    soft_shapes: tuple[str, ...] = ("mouthPucker", "mouthFunnel", "eyeWide", "mouthLeft",
                                    "mouthRight", "jawLeft", "jawRight")
    w_temporal: float = 0.1
    appearance_landmark_boost: float = 10.0
    grey_light: bool = True
    linear_light: bool = True
    w_albedo_prior: float = 0.05
    render_size: int = 64
    n_identity: int = 100
    show_progress: bool = False

    def replace(self, **changes: object) -> FitConfig:
        return dataclasses.replace(self, **changes)


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


class _Adapter:
    """How the fitter drives one face model: free parameters, bounds, priors, landmarks."""

    def __init__(self, model: nn.Module, n_identity: int) -> None:
        self.model = model
        sizes = model.parameter_sizes()
        self.identity_name, self.pose_name = model.identity_param, model.pose_param
        self.bounds: tuple[float, float] | None = model.expression_bounds
        self.full_identity = sizes[self.identity_name]
        self._lmk_basis = (model.point_basis(model.landmark_indices[:, None])
                           if hasattr(model, "point_basis") else None)
        self.free = {self.identity_name: min(n_identity, self.full_identity),
                     "expression": sizes["expression"],
                     self.pose_name: sizes[self.pose_name]}

    def init(self, b: int, device: torch.device) -> dict[str, torch.Tensor]:
        return {k: torch.zeros(b, n, device=device) for k, n in self.free.items()}

    def model_params(self, free: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = dict(free)
        ident = free[self.identity_name]
        if ident.shape[1] < self.full_identity:
            out[self.identity_name] = F.pad(ident, (0, self.full_identity - ident.shape[1]))
        return out

    def project_bounds(self, free: dict[str, torch.Tensor]) -> None:
        if self.bounds is not None:
            free["expression"].data.clamp_(*self.bounds)

    def landmarks(self, free: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,68,3) model landmarks, evaluating only the vertices they need."""
        if self._lmk_basis is not None:  # ICT: the 68 rows of the bases, sliced once
            return self._lmk_basis(**self.model_params(free))
        return self.model.landmarks_only(**self.model_params(free))

    def use_embedding(self, embedding) -> None:
        """Evaluate ``embedding``'s (K) surface points in :meth:`dense`."""
        ids = torch.as_tensor(embedding.vertex_ids)
        if int(ids.max()) >= self.model.num_vertices:
            raise ValueError("the dense embedding uses vertices outside the fitted region")
        # the points are linear in the vertices: their own (K-point) bases, built once
        self._dense_basis = self.model.point_basis(ids, torch.as_tensor(embedding.bary))

    def dense(self, free: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,K,3) the embedded MediaPipe points."""
        return self._dense_basis(**self.model_params(free))

    def expression_prior_scale(self, cfg: FitConfig) -> torch.Tensor:
        """(n_exp,) prior multiplier per expression mode (ICT: weak shapes stronger)."""
        n = self.free["expression"]
        names = getattr(self.model, "expression_names", None)
        scale = torch.ones(n)
        if names is not None:  # named blendshapes: per-shape strengths by name
            for j, name in enumerate(names):
                if name.startswith(cfg.weak_shapes):
                    scale[j] = cfg.weak_shape_prior
                elif name.startswith(cfg.soft_shapes):
                    scale[j] = cfg.soft_shape_prior
        return scale

    def prior(self, free: dict[str, torch.Tensor], cfg: FitConfig) -> torch.Tensor:
        ident, exp = free[self.identity_name], free["expression"]
        scale = self.expression_prior_scale(cfg).to(exp)
        # bounded blendshape weights: sparsity (L1); PCA components: Gaussian
        exp_term = ((exp.abs() * scale).sum(1) if self.bounds is not None
                    else (exp ** 2 * scale).sum(1))
        return (cfg.w_identity_prior * (ident ** 2).sum(1)
                + cfg.w_expression_prior * exp_term).mean()


FIT_REGION = "face_head"


def _fit_view(model: nn.Module) -> nn.Module:
    """The part of ``model`` the fit renders: ICT cut to face and head, else the model."""
    from emoca.face_model.ict import REGIONS

    region = getattr(model, "region", None)
    if region in REGIONS and REGIONS[region][1] > REGIONS[FIT_REGION][1]:
        return model.region_view(FIT_REGION)
    return model


def _default_skin(model: nn.Module) -> torch.Tensor | None:
    """Vertices whose render is compared with the photo: ICT's narrow face (the skull,
    ears and neck sit under hair, hats and collars in photos), else all."""
    from emoca.face_model.ict import REGIONS

    idx = getattr(model, "vertex_indices", None)
    if idx is None:
        return None
    return (idx < REGIONS["narrow_face"][1]).nonzero().squeeze(1)


def _init_camera(model_lmk: torch.Tensor, target_ndc: torch.Tensor) -> torch.Tensor:
    """Scale and shift aligning the model's frontal landmarks with the targets (B,3)."""
    m = model_lmk[..., :2] * torch.tensor([1.0, -1.0], device=model_lmk.device)
    mc, tc = m.mean(1, keepdim=True), target_ndc.mean(1, keepdim=True)
    s = ((target_ndc - tc).norm(dim=-1).mean(1) / (m - mc).norm(dim=-1).mean(1))
    # x' = s (x + tx)  and  y' = -s (y + ty): solve for t at the centroids
    tx = tc[:, 0, 0] / s - model_lmk[:, :, 0].mean(1)
    ty = -tc[:, 0, 1] / s - model_lmk[:, :, 1].mean(1)
    return torch.stack([s, tx, ty], dim=1)


def _inter_ocular(lmk: torch.Tensor) -> torch.Tensor:
    return (lmk[:, 36:42].mean(1) - lmk[:, 42:48].mean(1)).norm(dim=-1)


def _pair_distance_residuals(lmk: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pair (predicted - target) distances for EMOCA's eye, lip and corner pairs (B,9)."""
    from emoca.losses.landmarks import (
        EYE_CLOSURE_PAIRS,
        LIP_CLOSURE_PAIRS,
        MOUTH_CORNER_PAIRS,
        pair_distances,
    )

    return torch.cat([pair_distances(lmk, p) - pair_distances(target, p)
                      for p in (EYE_CLOSURE_PAIRS, LIP_CLOSURE_PAIRS, MOUTH_CORNER_PAIRS)], -1)


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
        face_model = _fit_view(face_model)
        self.model = face_model
        self.cfg = config or FitConfig()
        self.adapter = _Adapter(face_model, self.cfg.n_identity)
        # MediaPipe's points on the model's surface (ICT ships one); None: 68 points only
        self.embedding = None
        if self.cfg.w_dense > 0 and hasattr(face_model, "point_basis"):
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
            skin_vertices = _default_skin(face_model)
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

    def _solve_landmarks(self, cam: torch.Tensor, free: dict[str, torch.Tensor],
                         target: torch.Tensor, lmk_w: torch.Tensor,
                         dense_w: torch.Tensor | None = None):
        """Rigid, then full, Levenberg-Marquardt on the landmark terms; per face.

        ``target`` is (B,68,2), or (B,68+K,2) with the K dense targets after the 68 when
        ``dense_w`` (K,) weighs them.
        """
        cfg, ad = self.cfg, self.adapter
        names = [ad.identity_name, "expression", ad.pose_name]
        sizes = [free[n].shape[1] for n in names]
        w68 = self._w68(dense_w)
        sqrt_w = (lmk_w / lmk_w.sum()).sqrt()[None, :, None] * w68 ** 0.5
        if dense_w is not None:
            sqrt_dw = (dense_w / dense_w.sum()).sqrt()[None, :, None] * cfg.w_dense ** 0.5
        pair_w = torch.tensor([cfg.w_eye] * 4 + [cfg.w_lip] * 3 + [cfg.w_corner] * 2,
                              device=target.device).sqrt() / 3.0
        exp_prior = (cfg.w_expression_prior * ad.expression_prior_scale(cfg)).sqrt().to(target)

        def unpack(theta: torch.Tensor):
            c = theta[:, :3]
            parts = torch.split(theta[:, 3:], sizes, dim=1)
            return c, dict(zip(names, parts, strict=True))

        def residuals(theta: torch.Tensor, tgt: torch.Tensor, rigid: bool) -> torch.Tensor:
            c, p = unpack(theta)
            lmk = orthographic_project(ad.landmarks(p), c)[..., :2]
            tgt, tgt_dense = tgt[:, :68], tgt[:, 68:]
            # a 68-point term of weight 0 (dense points given) adds only Jacobian rows
            res = ([((lmk - tgt) * sqrt_w).flatten(1)] if w68 > 0 or dense_w is None
                   else [])
            if dense_w is not None:
                pts = orthographic_project(ad.dense(p), c)[..., :2]
                res.append(((pts - tgt_dense) * sqrt_dw).flatten(1))
            if not rigid:
                res.append(_pair_distance_residuals(lmk, tgt) * pair_w)
                res.append(cfg.w_identity_prior ** 0.5 * p[ad.identity_name])
                res.append(exp_prior * p["expression"])
            return torch.cat(res, dim=1)

        theta = torch.cat([cam] + [free[n] for n in names], dim=1)
        lower = torch.full((theta.shape[1],), -float("inf"), device=theta.device)
        upper = torch.full((theta.shape[1],), float("inf"), device=theta.device)
        lower[0] = 1e-6
        if ad.bounds is not None:  # e.g. ARKit weights in [0, 1]
            start = 3 + sizes[0]
            lower[start:start + sizes[1]] = ad.bounds[0]
            upper[start:start + sizes[1]] = ad.bounds[1]
        # rigid first (camera and head pose), everything else held
        rigid_cols = torch.zeros(theta.shape[1], dtype=torch.bool, device=theta.device)
        rigid_cols[:3] = True
        rigid_cols[3 + sizes[0] + sizes[1]:] = True
        mid = slice(3, 3 + sizes[0] + sizes[1])

        def rigid_res(t: torch.Tensor, tgt: torch.Tensor, held: torch.Tensor) -> torch.Tensor:
            full = torch.cat([t[:, :3], held, t[:, 3:]], dim=1)  # out of place for vmap
            return residuals(full, tgt, rigid=True)

        t_r = levenberg_marquardt(rigid_res, theta[:, rigid_cols], target, theta[:, mid],
                                  iterations=cfg.lm_iterations // 2, lower=lower[rigid_cols],
                                  upper=upper[rigid_cols], tol=cfg.lm_tol)
        theta = torch.cat([t_r[:, :3], theta[:, mid], t_r[:, 3:]], dim=1)
        theta = levenberg_marquardt(lambda t, tgt: residuals(t, tgt, rigid=False), theta, target,
                                    iterations=cfg.lm_iterations, lower=lower, upper=upper,
                                    tol=cfg.lm_tol)
        c, p = unpack(theta)
        ident = p.pop(ad.identity_name).contiguous()
        return c.contiguous(), ident, {k: v.contiguous() for k, v in p.items()}

    def _w68(self, dense_w: torch.Tensor | None) -> float:
        """Weight of the 68-point term: less (or none) when the dense points are fitted."""
        cfg = self.cfg
        return cfg.w_landmarks if dense_w is None else cfg.w_landmarks_with_dense

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
            cam = _init_camera(ad.landmarks(free()), target[:, :68])
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

        w68 = self._w68(dense_w)

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
                terms["eye"] = cfg.w_eye * eye_closure_loss(lmk, t68) ** 2
                terms["lip"] = cfg.w_lip * lip_closure_loss(lmk, t68) ** 2
                terms["corner"] = cfg.w_corner * mouth_corner_loss(lmk, t68) ** 2
                terms["prior"] = ad.prior(free(), cfg)
                if sequence and b > 1:
                    smooth = [(v[1:] - v[:-1]).pow(2).sum(1).mean() for v in per_frame.values()]
                    terms["temporal"] = cfg.w_temporal * sum(smooth)
            return terms

        if cfg.solver == "lm":
            # independent faces: solve the landmark stages as nonlinear least squares
            with torch.no_grad():
                cam, ident_lm, pf = self._solve_landmarks(cam, free(), target, lmk_w, dense_w)
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
                    terms["photometric"] = (cfg.w_photometric * diff.sum()
                                            / skin.sum().clamp(min=1.0))
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
        err = (lmk - target).norm(dim=-1).mean(1) / _inter_ocular(target)
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
