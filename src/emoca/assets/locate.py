"""Where each official file lives, whether it is there, and where to get it.

One assets folder holds what the official download unpacks (see DESIGN.md). It is found as:
an explicit path (always wins), else ``$EMOCA_HOME``, else ``~/.cache/emoca``.

Example:
    >>> import tempfile
    >>> from emoca.assets.synthetic import write_official_assets
    >>> root = write_official_assets(tempfile.mkdtemp(), albedo=None)
    >>> assets = Assets(root)
    >>> assets.path("flame_model").name
    'generic_model.pkl'
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "AssetSpec",
    "Assets",
    "AssetStatus",
    "MissingAssetError",
    "ASSETS",
    "default_assets_dir",
    "sha256_file",
]

FLAME_SITE = "https://flame.is.tue.mpg.de (register, accept the licence)"
EMOCA_SITE = "https://emoca.is.tue.mpg.de (register, accept the licence)"
ICT_SITE = "https://github.com/ICT-VGL/ICT-FaceKit (MIT licence, folder FaceXModel/)"


@dataclass(frozen=True)
class AssetSpec:
    """One file (or folder) of the official downloads.

    Attributes:
        key: short name used in code (``flame_model``).
        paths: candidate paths relative to the assets folder, first found wins.
        what: one line for a person.
        source: where a user gets it.
        archive: key of the download archive (see :mod:`emoca.assets.download`) holding it.
        sha256: known digest of the official file, when known; ``None`` = not checked.
        required: needed for the basic reconstruction (vs optional extras).
    """

    key: str
    paths: tuple[str, ...]
    what: str
    source: str
    archive: str | None = None
    sha256: str | None = None
    required: bool = True


ASSETS: tuple[AssetSpec, ...] = (
    AssetSpec("flame_model", ("FLAME/geometry/generic_model.pkl", "FLAME/geometry/flame2023.pkl"),
              "FLAME 2020 (or 2023) head model", FLAME_SITE, "flame"),
    AssetSpec("landmark_embedding", ("FLAME/geometry/landmark_embedding.npy",),
              "68-landmark embedding (static + yaw-dependent contour)", EMOCA_SITE, "flame"),
    AssetSpec("mediapipe_embedding", ("FLAME/geometry/mediapipe_landmark_embedding.npz",),
              "MediaPipe landmark embedding (EMOCA v2)", EMOCA_SITE, "flame", required=False),
    AssetSpec("head_template", ("FLAME/geometry/head_template.obj",),
              "template mesh: UV coordinates and faces", EMOCA_SITE, "flame"),
    AssetSpec("fixed_displacement",
              ("FLAME/geometry/fixed_uv_displacements/fixed_displacement_256.npy",),
              "fixed UV displacement for the detail mesh", EMOCA_SITE, "flame"),
    AssetSpec("uv_face_eye_mask", ("FLAME/mask/uv_face_eye_mask.png",),
              "UV mask: face and eyes", EMOCA_SITE, "flame"),
    AssetSpec("uv_face_mask", ("FLAME/mask/uv_face_mask.png",),
              "UV mask: face", EMOCA_SITE, "flame"),
    AssetSpec("albedo", ("FLAME/texture/FLAME_albedo_from_BFM.npz",
                         "FLAME/texture/FLAME_texture.npz"),
              "albedo model (without it: constant grey)", FLAME_SITE, "flame", required=False),
    AssetSpec("deca_model", ("DECA/data/deca_model.tar",),
              "DECA coarse + detail networks", EMOCA_SITE, "deca", required=False),
    AssetSpec("emoca_v2_lr_mse_20", ("EMOCA/models/EMOCA_v2_lr_mse_20",),
              "EMOCA v2 (default model)", EMOCA_SITE, "EMOCA_v2_lr_mse_20", required=False),
    AssetSpec("emoca_v2_lr_cos_1.5", ("EMOCA/models/EMOCA_v2_lr_cos_1.5",),
              "EMOCA v2 (cosine lip-reading loss)", EMOCA_SITE, "EMOCA_v2_lr_cos_1.5",
              required=False),
    AssetSpec("emoca_v2_mp", ("EMOCA/models/EMOCA_v2_mp",),
              "EMOCA v2 (MediaPipe landmarks)", EMOCA_SITE, "EMOCA_v2_mp", required=False),
    AssetSpec("emoca", ("EMOCA/models/EMOCA",), "EMOCA v1 (the CVPR 2022 model)", EMOCA_SITE,
              "EMOCA", required=False),
    AssetSpec("emotion_net", ("EmotionRecognition/image_based_networks/ResNet50",),
              "image-based emotion network (ResNet-50, AffectNet)", EMOCA_SITE,
              "emotion_resnet50", required=False),
    AssetSpec("ict_facekit", ("ICT-FaceKit", "ICT-FaceKit/ICT-FaceKit-master"),
              "ICT-FaceKit open face model (MIT)", ICT_SITE, "ict_facekit", required=False),
)

_BY_KEY = {a.key: a for a in ASSETS}


class MissingAssetError(FileNotFoundError):
    """An official file is not in the assets folder; the message says where to get it."""


def default_assets_dir() -> Path:
    """``$EMOCA_HOME`` if set, else ``~/.cache/emoca``."""
    env = os.environ.get("EMOCA_HOME")
    return Path(env).expanduser() if env else Path("~/.cache/emoca").expanduser()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class AssetStatus:
    """Result of checking one asset: ``found`` path or ``None``, and the digest check."""

    spec: AssetSpec
    path: Path | None
    size: int | None
    checksum_ok: bool | None  # None: no known digest (or not asked to verify)


class Assets:
    """The assets folder: resolve paths, check presence, explain what is missing.

    Args:
        root: explicit folder; ``None`` uses :func:`default_assets_dir`.
        overrides: ``{key: path}`` for files kept elsewhere (an explicit path wins).
    """

    def __init__(self, root: str | os.PathLike | None = None,
                 overrides: dict[str, str | os.PathLike] | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_assets_dir()
        self.overrides = {k: Path(v) for k, v in (overrides or {}).items()}
        unknown = set(self.overrides) - set(_BY_KEY)
        if unknown:
            raise KeyError(f"unknown asset keys {sorted(unknown)}; known: {sorted(_BY_KEY)}")

    def find(self, key: str) -> Path | None:
        """Path of the asset, or ``None`` when absent."""
        if key not in _BY_KEY:
            raise KeyError(f"unknown asset '{key}'; known: {sorted(_BY_KEY)}")
        if key in self.overrides:
            return self.overrides[key] if self.overrides[key].exists() else None
        for rel in _BY_KEY[key].paths:
            p = self.root / rel
            if p.exists():
                return p
        return None

    def path(self, key: str) -> Path:
        """Path of the asset; raises :class:`MissingAssetError` explaining how to get it."""
        p = self.find(key)
        if p is None:
            spec = _BY_KEY[key]
            where = self.overrides.get(key) or " or ".join(str(self.root / r) for r in spec.paths)
            download = "emoca assets download" + (f" {spec.archive}" if spec.archive else "")
            raise MissingAssetError(
                f"{spec.what} ({key}) not found at {where}.\n"
                f"  Get it from {spec.source}: `{download} --dir {self.root}` fetches and "
                f"unpacks it with your account (or unpack it into {self.root} yourself); "
                f"`emoca assets check {self.root}` lists what is there.\n"
                "  To try the pipeline before the licensed files arrive: "
                "`emoca assets synthetic DIR` writes look-alike files (random weights), "
                "then pass `--assets DIR`.")
        return p

    def check(self, verify: bool = True) -> list[AssetStatus]:
        """Status of every known asset (sha256 compared where a digest is known)."""
        rows = []
        for spec in ASSETS:
            p = self.find(spec.key)
            size = None
            ok = None
            if p is not None:
                size = p.stat().st_size if p.is_file() else sum(
                    f.stat().st_size for f in p.rglob("*") if f.is_file())
                if verify and spec.sha256 and p.is_file():
                    ok = sha256_file(p) == spec.sha256
            rows.append(AssetStatus(spec, p, size, ok))
        return rows

    def missing_required(self) -> list[AssetSpec]:
        return [s.spec for s in self.check(verify=False) if s.path is None and s.spec.required]


def format_check_table(rows: list[AssetStatus], root: Path, deep: dict | None = None) -> str:
    """A plain-text table of :meth:`Assets.check` results for the CLI.

    ``deep``: ``{key: result}`` of a deep check (objects with ``ok`` and ``detail``, see
    ``emoca.model.asset_check``); a file that fails it reads ``BAD`` with the reason.
    """
    deep = deep or {}
    lines = [f"assets folder: {root}", ""]
    head = f"{'asset':22} {'status':10} {'size':>10}  path / where to get it"
    lines += [head, "-" * len(head)]
    for r in rows:
        if r.path is None:
            status = "MISSING" if r.spec.required else "absent"
            lines.append(f"{r.spec.key:22} {status:10} {'':>10}  {r.spec.source}")
            continue
        status = {None: "found", True: "verified", False: "BAD SHA256"}[r.checksum_ok]
        result = deep.get(r.spec.key)
        if result is not None and r.checksum_ok is not False:
            status = "ok" if result.ok else "BAD"
        size = f"{r.size / 1e6:.1f} MB" if r.size is not None else ""
        lines.append(f"{r.spec.key:22} {status:10} {size:>10}  {r.path}")
        if result is not None:
            lines.append(f"{'':22} {'':10} {'':>10}    {result.detail}")
    missing = [r for r in rows if r.path is None and r.spec.required]
    bad = [k for k, v in deep.items() if not v.ok]
    lines.append("")
    lines.append("all required files found" if not missing else
                 f"{len(missing)} required file(s) missing")
    if deep:
        lines.append(f"{len(bad)} file(s) unusable: {', '.join(bad)}" if bad else
                     "every file found opens with the expected layout")
    return "\n".join(lines)
