"""What an output folder holds, as the JSON the viewer page reads (``data/index.json``).

Reads only the files ``emoca reconstruct``, ``emoca fit`` and ``emoca animate`` write
(README, "Output files and conventions"); never runs a model. Every URL in the catalog is
relative to the page, so the served site and an ``--export``-ed copy are the same:

- ``out/<path>``: a file of the output folder, as written;
- ``media/<item>/input<ext>``: the input photo or video the output names;
- ``data/<item>/<track>/...``: per-track streams built by :mod:`emoca.viewer.tracks`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emoca.errors import InputError

__all__ = ["Catalog", "Item", "scan", "read_json"]

#: Files the page can show for a face, in the order of its "views" menu.
FACE_IMAGES = ("overlay.png", "overlay_full.png", "render_coarse.png", "render_detail.png",
               "geometry_coarse.png", "geometry_detail.png", "albedo.png", "crop.png",
               "landmarks.png")
CROP_SIZE = 224  # DECA/EMOCA's crop (emoca.detect.crop.DEFAULT_CROP_SIZE)


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None when missing; a damaged file is an InputError."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not readable JSON ({e})") from e


@dataclass
class Item:
    """One input of the output folder (a photo, a video or an animation).

    ``media`` is the input file on disk (served as ``media/<id>/input<ext>``), ``tracks``
    maps a track id to its folder, ``record`` is the JSON the page gets.
    """

    id: str
    folder: Path
    media: Path | None
    record: dict[str, Any]
    tracks: dict[str, Path] = field(default_factory=dict)


@dataclass
class Catalog:
    """The scanned output folder: ``items`` by id and the page's ``index`` record."""

    root: Path
    items: dict[str, Item]

    def index(self) -> dict[str, Any]:
        return {"root": str(self.root), "items": [it.record for it in self.items.values()]}


def _url_out(root: Path, path: Path) -> str:
    return "out/" + path.relative_to(root).as_posix()


def _input_path(root: Path, recorded: object) -> Path | None:
    """The input file an output names: its paths are as the user typed them, so a relative
    one is tried from here, then beside and inside the output folder."""
    if not isinstance(recorded, str) or not recorded:
        return None
    p = Path(recorded)
    for candidate in (p,) if p.is_absolute() else (p, root.parent / p, root / p):
        if candidate.is_file():
            return candidate.resolve()
    return p


def _media_url(item_id: str, media: Path | None) -> str | None:
    if media is None or not media.is_file():
        return None
    return f"media/{item_id}/input{media.suffix.lower()}"


def _face_record(root: Path, d: Path) -> dict[str, Any]:
    """One ``face_K`` folder of reconstruct (``face.json``) or fit (``params.json``)."""
    rec: dict[str, Any] = {"id": d.name, "images": {}}
    face = read_json(d / "face.json")
    params = read_json(d / "params.json")
    if params is not None:  # emoca fit
        rec.update(tool="fit", face_model=params.get("face_model"),
                   glb=_url_out(root, d / "mesh.glb") if (d / "mesh.glb").is_file() else None,
                   cam=params.get("camera"), image_to_crop=params.get("image_to_crop"),
                   box=params.get("box"), arkit=params.get("arkit_blendshapes"),
                   emotion_fer=params.get("emotion_photo"),
                   units="cm" if params.get("face_model") == "ict" else "m")
    else:  # emoca reconstruct
        codes = read_json(d / "codes.json") or {}
        c = codes.get("codes", {})
        face = face or {}
        rec.update(tool="reconstruct", model=face.get("model"), mode=face.get("mode"),
                   glb=(_url_out(root, d / "mesh_coarse.glb")
                        if (d / "mesh_coarse.glb").is_file() else None),
                   detail_obj=(_url_out(root, d / "mesh_detail.obj")
                               if (d / "mesh_detail.obj").is_file() else None),
                   cam=c.get("cam"),
                   image_to_crop=face.get("image_to_crop", c.get("image_to_crop")),
                   crop_size=face.get("crop_size", CROP_SIZE), box=face.get("box"),
                   emotion=face.get("emotion"), units="m")
        if "valence" in c:
            rec["emotion_codes"] = {"valence": c["valence"], "arousal": c.get("arousal"),
                                    "probs": c.get("emotion_probs")}
    rec.setdefault("crop_size", CROP_SIZE)
    for name in FACE_IMAGES:
        if (d / name).is_file():
            rec["images"][name.removesuffix(".png")] = _url_out(root, d / name)
    return rec


def _track_record(root: Path, item_id: str, d: Path) -> dict[str, Any]:
    tool = "fit" if (d / "params.npz").is_file() else "reconstruct"
    neutral = next((p for p in (d / "mesh_neutral.obj", d / "neutral.obj") if p.is_file()), None)
    rec = {"id": d.name, "tool": tool, "meta": f"data/{item_id}/{d.name}/meta.json",
           "neutral_obj": _url_out(root, neutral) if neutral else None,
           "track": read_json(d / "track.json")}
    if (d / "blendshapes.csv").is_file():
        rec["blendshapes_csv"] = _url_out(root, d / "blendshapes.csv")
    return rec


def _animation_record(root: Path, d: Path, item_id: str) -> tuple[dict[str, Any], Path | None]:
    """``animation.glb`` (+ ``animation.json``) of ``emoca animate``."""
    meta = read_json(d / "animation.json") or {}
    media = None
    for key in ("video", "source", "input"):
        media = _input_path(root, meta.get(key))
        if media is not None and media.is_file():
            break
    rec = {"id": item_id, "type": "animation", "glb": _url_out(root, d / "animation.glb"),
           "animation": meta, "fps": meta.get("fps"), "frames": meta.get("frames"),
           "media": _media_url(item_id, media), "faces": [], "tracks": []}
    return rec, media


def _sorted_dirs(folder: Path, prefix: str) -> list[Path]:
    def key(p: Path) -> tuple[int, str]:
        tail = p.name.removeprefix(prefix)
        return (int(tail), "") if tail.isdigit() else (1 << 30, tail)

    return sorted((p for p in folder.glob(prefix + "*") if p.is_dir()), key=key)


def _scan_item(root: Path, d: Path, item_id: str) -> Item | None:
    if (d / "animation.glb").is_file():
        rec, media = _animation_record(root, d, item_id)
        return Item(item_id, d, media, rec)
    video = read_json(d / "video.json")
    if video is not None:
        media = _input_path(root, video.get("video"))
        tracks = {p.name: p for p in _sorted_dirs(d, "track_")
                  if (p / "codes.npz").is_file() or (p / "params.npz").is_file()}
        rec = {"id": item_id, "type": "video", "media": _media_url(item_id, media),
               "overlay": _url_out(root, d / "overlay.mp4") if (d / "overlay.mp4").is_file()
               else None, "fps": video.get("fps"), "size": video.get("size"),
               "frames": video.get("frames_read"), "problems": video.get("problems", []),
               "faces": [], "tracks": [_track_record(root, item_id, p) for p in tracks.values()]}
        return Item(item_id, d, media, rec, tracks)
    faces_dirs = [p for p in _sorted_dirs(d, "face_")
                  if (p / "face.json").is_file() or (p / "params.json").is_file()]
    photo = read_json(d / "faces.json")
    if photo is None and not faces_dirs:
        return None
    photo = photo or {}
    media = _input_path(root, photo.get("image"))
    rec = {"id": item_id, "type": "image", "media": _media_url(item_id, media),
           "size": photo.get("size"), "faces": [_face_record(root, p) for p in faces_dirs],
           "tracks": []}
    return Item(item_id, d, media, rec)


def scan(root: str | Path) -> Catalog:
    """Every photo, video and animation of an output folder (module doc).

    Raises:
        InputError: ``root`` is not a folder or holds no output the viewer knows.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise InputError(f"{root}: not a folder (give the output folder of reconstruct, "
                         "fit or animate)")
    items: dict[str, Item] = {}
    top = _scan_item(root, root, root.name) if (root / "animation.glb").is_file() else None
    if top is not None:
        items[top.id] = top
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        it = _scan_item(root, d, d.name)
        if it is not None:
            items[it.id] = it
    if not items:
        raise InputError(f"{root}: no output of emoca reconstruct, fit or animate here "
                         "(no NAME/faces.json, NAME/video.json or animation.glb)")
    return Catalog(root, items)
