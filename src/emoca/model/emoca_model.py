"""EMOCA (and DECA) as one module: images -> FLAME codes -> mesh, landmarks, renders, detail.

``Emoca.encode`` runs DECA's coarse encoder E_flame (shape, albedo, expression, pose,
camera, light), EMOCA's expression encoder E_expression (replacing the expression, and the
jaw/global pose when the model's config says so) and the detail encoder E_detail.
``Emoca.decode`` follows DECA's ``decode`` (decalib/deca.py) and EMOCA's
``DecaModule.decode`` in order: FLAME -> albedo -> orthographic projection of vertices and
landmarks -> textured SH render -> displacement from D_detail -> detail normals, shading and
render -> grey shape renders (coarse and with detail normals) -> optional dense mesh.

Conventions (official): crops are (B, 3, 224, 224) RGB in [0, 1]; the camera is
``[s, tx, ty]`` with ``x' = s (x + tx)``, ``y' = -s (y + ty)``, ``z' = -s z``; 2D landmarks
in crop pixels are ``(x' + 1) * 224 / 2``.

Differences kept on purpose between the two model kinds, as in the official code:

* EMOCA's ``displacement2normal`` does not put the coarse normals back outside the
  face/eye mask (DECA's does); ``config.detail_normals`` selects which: ``"emoca"`` for
  models loaded from EMOCA's folder format, ``"deca"`` for ``deca_model.tar``.
* The coarse render is lit with the predicted SH light, as EMOCA and DECA before its
  ``render_orig`` change (DECA's current master renders the albedo unlit there).
* Without an albedo model (or with ``use_texture: false``, as the EMOCA releases) the
  albedo is grey 0.5 (EMOCA's choice; DECA would render black).

Example:
    >>> model = Emoca.from_pretrained("EMOCA_v2_lr_mse_20")          # doctest: +SKIP
    >>> codes = model.encode(crops)                                   # doctest: +SKIP
    >>> out = model.decode(codes)                                     # doctest: +SKIP
    >>> out.vertices.shape, out.landmarks2d.shape                     # doctest: +SKIP
    (torch.Size([B, 5023, 3]), torch.Size([B, 68, 2]))
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from emoca.assets.locate import Assets
from emoca.errors import UsageError
from emoca.face_model.flame import FLAME, FlameAlbedo
from emoca.geometry import orthographic_project
from emoca.io.bundle import TensorBundle
from emoca.model.catalog import DEFAULT_MODEL, MODELS, reconstruction_models
from emoca.model.checkpoints import (
    EmocaArch,
    build_emoca_networks,
    load_deca_tar,
    load_emoca_folder,
)
from emoca.model.face_files import FacePaths, face_paths, read_fixed_displacement, read_mask
from emoca.model.weights import CONFIG_NAME, load_pretrained, materialize, save_pretrained
from emoca.nets.encoders import FLAME_CODE_SIZES, FlameCodes, decompose_flame_code
from emoca.nets.resnet import check_image_batch
from emoca.render.geometry import vertex_normals
from emoca.render.renderer import DenseMesh, Renderer, sample_uv
from emoca.render.shading import add_sh_light

__all__ = [
    "DEFAULT_MODEL",
    "EMOCA_MODELS",
    "Emoca",
    "EmocaCodes",
    "EmocaConfig",
    "EmocaOutput",
    "FacePaths",
    "combine_expression_code",
]

log = logging.getLogger(__name__)

# the catalog is the one source of names; these are kept for callers of the old constants
EMOCA_MODELS: tuple[str, ...] = tuple(n for n, e in MODELS.items() if e.family == "emoca_folder")
DECA_NAME = "DECA"


# ------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class EmocaCodes(FlameCodes):
    """What the encoders predict for a batch of crops (float32, batch-first).

    E_flame's codes (:class:`~emoca.nets.encoders.FlameCodes`: shape, tex, exp, pose, cam,
    light; ``exp`` is E_expression's for EMOCA, E_flame's for DECA) plus:

    Attributes:
        detail: (B, 128) detail code, or None when not encoded.
    """

    detail: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.shape.shape[0])


@dataclass(frozen=True)
class EmocaOutput(TensorBundle):
    """Result of :meth:`Emoca.decode`. Geometry in FLAME units (metres), model frame.

    Attributes:
        vertices: (B, 5023, 3) posed FLAME vertices.
        transformed_vertices: (B, 5023, 3) projected: x right, y down, [-1, 1] over the crop.
        landmarks2d: (B, 68, 2) iBUG-68 landmarks (yaw-dependent contour) in crop pixels.
        landmarks3d: (B, 68, 3) static 68-landmark embedding on the mesh, model frame.
        landmarks3d_projected: (B, 68, 3) the same projected like ``transformed_vertices``.
        landmarks2d_mediapipe: (B, 105, 2) MediaPipe-embedding landmarks in crop pixels,
            for models trained with them (v2), else None.
        albedo: (B, 3, 256, 256) albedo UV map.
        rendered: (B, 3, H, W) albedo * SH shading * coverage (black background).
        alpha: (B, 1, H, W) mesh coverage.
        render_mask: (B, 1, H, W) coverage times the face/eye UV mask (EMOCA's "rend" mask).
        normals: (B, 5023, 3) world vertex normals.
        shape_images: (B, 3, H, W) grey geometry render with DECA's fixed lights.
        displacement_map: (B, 1, 256, 256) D_detail output + fixed displacement (metres).
        uv_detail_normals: (B, 3, 256, 256) normals of the displaced surface in UV space.
        detail_render: (B, 3, H, W) albedo * detail shading sampled into the image, times
            coverage.
        shape_detail_images: (B, 3, H, W) grey render with the detail normals.
        dense_mesh: per-texel detailed mesh (:class:`emoca.render.DenseMesh`) when asked.
    """

    vertices: torch.Tensor
    transformed_vertices: torch.Tensor
    landmarks2d: torch.Tensor
    landmarks3d: torch.Tensor
    landmarks3d_projected: torch.Tensor
    landmarks2d_mediapipe: torch.Tensor | None
    albedo: torch.Tensor
    rendered: torch.Tensor | None = None
    alpha: torch.Tensor | None = None
    render_mask: torch.Tensor | None = None
    normals: torch.Tensor | None = None
    shape_images: torch.Tensor | None = None
    displacement_map: torch.Tensor | None = None
    uv_detail_normals: torch.Tensor | None = None
    detail_render: torch.Tensor | None = None
    shape_detail_images: torch.Tensor | None = None
    dense_mesh: DenseMesh | None = None


# ------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class EmocaConfig:
    """Everything besides weights and asset files that defines a model.

    Attributes:
        name: ``EMOCA_v2_lr_mse_20``, ``DECA``, ...
        arch: network sizes and expression-encoder layout.
        use_texture: use the albedo model for ``tex`` (else grey 0.5).
        mediapipe: compute MediaPipe-embedding landmarks (models trained with them).
        detail_normals: ``"emoca"`` (no blending outside the mask) or ``"deca"``.
        image_size: crop/render size (224).
        uv_size: UV map size (256).
    """

    name: str
    arch: EmocaArch
    use_texture: bool = False
    mediapipe: bool = False
    detail_normals: str = "emoca"
    image_size: int = 224
    uv_size: int = 256

    def __post_init__(self) -> None:
        if self.detail_normals not in ("emoca", "deca"):
            raise ValueError(f"detail_normals must be 'emoca' or 'deca', got "
                             f"{self.detail_normals!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EmocaConfig:
        d = dict(d)
        d["arch"] = EmocaArch(**d["arch"])
        return cls(**d)


def combine_expression_code(
    exp: torch.Tensor, pose: torch.Tensor, expression_out: torch.Tensor, arch: EmocaArch
) -> tuple[torch.Tensor, torch.Tensor]:
    """EMOCA's ``ExpDECA.decompose_code``: E_expression replaces DECA's expression (and pose).

    Args:
        exp: (B, n_exp) E_flame's expression.
        pose: (B, 6) E_flame's [global, jaw] pose.
        expression_out: (B, arch.expression_dim) E_expression's output.
        arch: which parts E_expression predicts.
    Returns:
        (expression, pose): with both pose flags E_expression's ``[exp | global | jaw]``;
        with only the global (jaw) flag its 3 trailing numbers replace the global (jaw)
        pose; without flags only the expression is replaced.
    """
    n = arch.n_exp
    if expression_out.shape[1] != arch.expression_dim:
        raise ValueError(f"E_expression output has {expression_out.shape[1]} values, the "
                         f"config needs {arch.expression_dim}")
    new_exp = expression_out[:, :n]
    extra = expression_out[:, n:]
    if arch.exp_deca_jaw_pose and arch.exp_deca_global_pose:
        return new_exp, extra
    if arch.exp_deca_global_pose:
        return new_exp, torch.cat([extra, pose[:, 3:]], dim=1)
    if arch.exp_deca_jaw_pose:
        return new_exp, torch.cat([pose[:, :3], extra], dim=1)
    return new_exp, pose


# -------------------------------------------------------------------------------- model


class Emoca(nn.Module):
    """DECA's encoders + EMOCA's expression encoder + FLAME + renderer.

    Build with :meth:`from_pretrained`. Submodules: ``E_flame``, ``E_expression`` (None for
    DECA), ``E_detail``, ``D_detail``, ``flame``, ``albedo_model``, ``renderer``; buffers
    ``uv_face_eye_mask`` (256, 256) and ``fixed_uv_dis`` (256, 256).
    """

    uv_face_eye_mask: torch.Tensor
    fixed_uv_dis: torch.Tensor

    def __init__(self, networks: Mapping[str, nn.Module], flame: FLAME, albedo: FlameAlbedo,
                 renderer: Renderer, uv_face_eye_mask: torch.Tensor,
                 fixed_uv_dis: torch.Tensor, config: EmocaConfig) -> None:
        super().__init__()
        self.config = config
        self.E_flame = networks["E_flame"]
        self.E_expression = networks.get("E_expression")
        self.E_detail = networks.get("E_detail")
        self.D_detail = networks.get("D_detail")
        if config.arch.expression_encoder != (self.E_expression is not None):
            raise ValueError("config.arch.expression_encoder disagrees with the networks given")
        self.flame = flame
        self.albedo_model = albedo
        self.renderer = renderer
        self.register_buffer("uv_face_eye_mask", uv_face_eye_mask, persistent=False)
        self.register_buffer("fixed_uv_dis", fixed_uv_dis, persistent=False)
        self.face_paths: FacePaths | None = None  # where the FLAME files were read from

    # ------------------------------------------------------------------ construction
    @property
    def networks(self) -> dict[str, nn.Module]:
        """The trained networks by official name (what checkpoints hold)."""
        nets = {"E_flame": self.E_flame, "E_detail": self.E_detail, "D_detail": self.D_detail}
        if self.E_expression is not None:
            nets["E_expression"] = self.E_expression
        return {k: v for k, v in nets.items() if v is not None}

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike = DEFAULT_MODEL,
        assets: Assets | str | os.PathLike | None = None,
        device: torch.device | str | None = None,
        use_texture: bool | None = None,
    ) -> Emoca:
        """Load a released model or one saved with :meth:`save_pretrained`.

        Args:
            name_or_path: one of :data:`EMOCA_MODELS`, ``"DECA"`` (``deca_model.tar``),
                an official model folder (``cfg.yaml`` + checkpoints), a ``.tar`` DECA
                file, or a folder written by :meth:`save_pretrained`.
            assets: the assets folder (or :class:`Assets`); default ``$EMOCA_HOME`` or
                ``~/.cache/emoca``. FLAME files always come from here (or the cfg's paths).
            device: where the model lives (default CPU).
            use_texture: use the albedo model for the texture code; default: the config's
                choice (the EMOCA releases: no) or, for DECA, whether an albedo file exists.
        Returns:
            The model in eval mode.
        """
        assets = assets if isinstance(assets, Assets) else Assets(assets)
        device = torch.device(device) if device is not None else torch.device("cpu")
        path = Path(name_or_path)
        model_cfg: Mapping[str, Any] | None = None
        if path.is_dir() and (path / CONFIG_NAME).is_file():
            raw, states = load_pretrained(path)
            config = EmocaConfig.from_dict(raw["emoca"])
        elif path.is_dir() and (path / "cfg.yaml").is_file():
            config, model_cfg, states = _official_folder(path, assets)
        elif path.is_file():
            config, states = _deca_tar(path, assets)
        elif str(name_or_path) in reconstruction_models():
            entry = MODELS[str(name_or_path)]
            if entry.family == "emoca_folder":
                config, model_cfg, states = _official_folder(assets.path(entry.asset), assets)
            else:
                config, states = _deca_tar(assets.path(entry.asset), assets)
        else:
            raise UsageError(f"unknown model {str(name_or_path)!r}: use one of "
                             f"{', '.join(reconstruction_models())}, an official model "
                             "folder, a deca_model.tar or a folder saved by save_pretrained")
        if use_texture is not None:
            config = dataclasses.replace(config, use_texture=use_texture)
        return cls._assemble(config, states, assets, model_cfg, device)

    @classmethod
    def _assemble(cls, config: EmocaConfig, states: Mapping[str, Mapping[str, torch.Tensor]],
                  assets: Assets, model_cfg: Mapping[str, Any] | None,
                  device: torch.device) -> Emoca:
        networks = build_emoca_networks(config.arch, device="meta")
        stray = sorted(set(states) - set(networks))
        if stray:
            raise ValueError(f"{config.name}: weights for {stray}, which this model "
                             f"({sorted(networks)}) does not have")
        paths = face_paths(assets, model_cfg, config.mediapipe, config.use_texture)
        if config.use_texture and paths.albedo is None:
            log.warning("no albedo model found: texture code ignored, albedo is grey 0.5")
        for name, module in networks.items():
            materialize(module, states.get(name, {}), device, name, config.name)
        a = config.arch
        flame = FLAME.from_file(paths.flame_model, paths.landmark_embedding, n_shape=a.n_shape,
                                n_exp=a.n_exp, mediapipe_embedding=paths.mediapipe_embedding,
                                template_obj=paths.head_template)
        albedo = FlameAlbedo.from_file(paths.albedo, n_tex=a.n_tex)
        renderer = Renderer(flame.uv_coords, flame.uv_faces, flame.faces,
                            image_size=config.image_size, uv_size=config.uv_size)
        model = cls(networks, flame, albedo, renderer,
                    read_mask(paths.face_eye_mask, config.uv_size),
                    read_fixed_displacement(paths.fixed_displacement, config.uv_size), config)
        model.face_paths = paths
        return model.to(device).eval()

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write the networks (safetensors) and the config (JSON); FLAME files are not
        copied (licensed): loading needs the assets folder again."""
        return save_pretrained(directory, self.networks, {"emoca": self.config.to_dict()})

    # ------------------------------------------------------------------ inference
    def encode(self, images: torch.Tensor, detail: bool = True) -> EmocaCodes:
        """Crops (B, 3, 224, 224) RGB in [0, 1] -> :class:`EmocaCodes`.

        Args:
            images: face crops, no normalisation (as DECA/EMOCA).
            detail: also run E_detail (skip it for coarse-only use).
        """
        check_image_batch(images, size=self.config.image_size, what=type(self).__name__)
        a = self.config.arch
        sizes = dict(zip(FLAME_CODE_SIZES, (a.n_shape, a.n_tex, a.n_exp, a.n_pose, a.n_cam,
                                            a.n_light), strict=True))
        coarse = decompose_flame_code(self.E_flame(images), sizes)
        exp, pose = coarse.exp, coarse.pose
        if self.E_expression is not None:
            exp, pose = combine_expression_code(exp, pose, self.E_expression(images), a)
        detail_code = self.E_detail(images) if detail and self.E_detail is not None else None
        return EmocaCodes(shape=coarse.shape, tex=coarse.tex, exp=exp, pose=pose,
                          cam=coarse.cam, light=coarse.light, detail=detail_code)

    def _to_pixels(self, points_ndc: torch.Tensor) -> torch.Tensor:
        return (points_ndc + 1.0) * (self.config.image_size / 2.0)

    def _detail_normals(self, uv_z: torch.Tensor, verts: torch.Tensor,
                        normals: torch.Tensor) -> torch.Tensor:
        """Normals of the displaced surface in UV space (``displacement2normal``); EMOCA's
        variant pastes no coarse normals back outside the face/eye mask, DECA's does."""
        return self.renderer.displacement_to_detail(
            uv_z, verts, normals, self.uv_face_eye_mask, self.fixed_uv_dis,
            coarse_outside_mask=self.config.detail_normals == "deca").uv_detail_normals

    def decode(self, codes: EmocaCodes, render: bool = True, detail: bool = True,
               dense: bool = False) -> EmocaOutput:
        """Codes -> mesh, landmarks and (optionally) renders and detail.

        Args:
            codes: from :meth:`encode` (or edited).
            render: rasterize the textured/shape images (the slow part on CPU).
            detail: run D_detail (needs ``codes.detail``): displacement map and, with
                ``render``, detail normals and renders.
            dense: also build the dense detailed mesh (needs ``detail``).
        """
        if (detail or dense) and codes.detail is None:
            raise ValueError("detail=True needs codes.detail (encode with detail=True) "
                             "or pass detail=False")
        if dense and not detail:
            raise ValueError("dense=True needs detail=True")
        b = codes.batch_size
        # 1) FLAME in world space, albedo
        flame_out = self.flame(codes.shape, codes.exp, codes.pose)
        verts = flame_out.vertices
        albedo = self.albedo_model(codes.tex)
        # 2) world -> image space (DECA's batch_orth_proj with y, z negated)
        trans_verts = orthographic_project(verts, codes.cam)
        lmk2d = self._to_pixels(orthographic_project(flame_out.landmarks68, codes.cam)[..., :2])
        lmk3d_proj = orthographic_project(flame_out.landmarks3d, codes.cam)
        lmk_mp = None
        if flame_out.landmarks_mediapipe is not None and self.config.mediapipe:
            lmk_mp = self._to_pixels(
                orthographic_project(flame_out.landmarks_mediapipe, codes.cam)[..., :2])
        fields: dict[str, Any] = {}
        # 3) coarse render
        ops = None
        if render:
            ops = self.renderer(verts, trans_verts, albedo, codes.light)
            mask = self.uv_face_eye_mask.to(verts.dtype).expand(b, 1, -1, -1)
            fields.update(rendered=ops.images, alpha=ops.alpha_images, normals=ops.normals,
                          render_mask=sample_uv(mask, ops.grid.detach()) * ops.alpha_images)
        # 4) detail: displacement, detail normals, shading, render
        uv_detail_normals = None
        if detail:
            uv_z = self.D_detail(torch.cat([codes.jaw_pose, codes.exp, codes.detail], dim=1))
            fields["displacement_map"] = uv_z + self.fixed_uv_dis[None, None]
            if ops is not None:
                uv_detail_normals = self._detail_normals(uv_z, verts, ops.normals)
                uv_texture = albedo * add_sh_light(uv_detail_normals, codes.light)
                fields.update(uv_detail_normals=uv_detail_normals,
                              detail_render=sample_uv(uv_texture, ops.grid) * ops.alpha_images)
        # 5) grey geometry renders
        if render:
            shape = self.renderer.render_shape(verts, trans_verts)
            fields["shape_images"] = shape.images
            if uv_detail_normals is not None:
                detail_normal_images = sample_uv(uv_detail_normals, shape.grid) * \
                    shape.alpha_images
                fields["shape_detail_images"] = self.renderer.render_shape(
                    verts, trans_verts, detail_normal_images=detail_normal_images).images
        # 6) dense detailed mesh (DECA's upsample_mesh), restricted to the face/eye region
        if dense:
            normals = ops.normals if ops is not None else vertex_normals(verts, self.flame.faces)
            fields["dense_mesh"] = self.renderer.upsample_mesh(
                verts, normals, fields["displacement_map"],
                valid_mask=self.uv_face_eye_mask > 0.5)
        return EmocaOutput(vertices=verts, transformed_vertices=trans_verts, landmarks2d=lmk2d,
                           landmarks3d=flame_out.landmarks3d, landmarks3d_projected=lmk3d_proj,
                           landmarks2d_mediapipe=lmk_mp, albedo=albedo, **fields)

    def forward(self, images: torch.Tensor, render: bool = True,
                detail: bool = True) -> EmocaOutput:
        """``decode(encode(images))``."""
        return self.decode(self.encode(images, detail=detail), render=render, detail=detail)


# ------------------------------------------------------------------------------ loading


def _official_folder(folder: Path, assets: Assets
                     ) -> tuple[EmocaConfig, dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    cfg, states = load_emoca_folder(folder, assets_root=assets.root)
    model_cfg = cfg["detail"]["model"]
    arch = EmocaArch.from_model_config(model_cfg, str(folder / "cfg.yaml"))
    mediapipe = bool(model_cfg.get("flame_mediapipe_lmk_embedding_path"))
    config = EmocaConfig(
        name=folder.name, arch=arch,
        use_texture=bool(model_cfg.get("use_texture", True)),
        mediapipe=mediapipe,
        # EMOCA's code base (also for DECA models in its format) does not blend normals
        detail_normals="emoca",
        image_size=int(model_cfg.get("image_size", 224)),
        uv_size=int(model_cfg.get("uv_size", 256)),
    )
    return config, model_cfg, states


def _deca_tar(path: Path, assets: Assets
              ) -> tuple[EmocaConfig, dict[str, dict[str, torch.Tensor]]]:
    states = load_deca_tar(path)
    # deca_model.tar comes without a config: use the albedo model whenever there is one
    config = EmocaConfig(name=DECA_NAME, arch=EmocaArch(expression_encoder=False),
                         use_texture=assets.find("albedo") is not None, detail_normals="deca")
    return config, states
