"""The ICT-FaceKit model that ships inside the package, and where the ICT model is looked up.

ICT-FaceKit's "Face Model Light" (USC ICT, MIT licence) is open, so a copy travels with
the package (``emoca/assets/data/ICT-FaceKit/``, with its LICENSE and a README) and
``emoca demo`` / ``emoca fit`` work offline after ``pip install``, from any folder.

Lookup order (:func:`ict_model_dir`): an explicit folder or file, then
``<assets>/ICT-FaceKit``, then the packaged copy.

The packaged modes are stored losslessly, smaller than the given npz (float32 does not
compress well as it is; grouping bytes of equal significance does):

* each array is laid out component-major (``(..., V, 3)`` -> ``(..., 3, V)``), so x, y and
  z of neighbouring vertices follow each other;
* its float32 values are split into four byte planes (all lowest bytes, then the next ...);
* one xz (LZMA2, preset 9e) stream holds a header and the planes of every array.

Sizes of the 50.7 MB of float32 data (neutral, 100 identity and 57 expression modes):
the given ``np.savez_compressed`` npz 22.9 MB; byte planes + xz 16.4 MB; component-major
byte planes + xz 15.7 MB (this format). Decoding takes ~1.5 s. Values come back
bit-identical (tested against the npz when ``../shared`` is present).

File layout after decompression: ``MAGIC``, a little-endian uint32 header length, a
UTF-8 JSON header ``{"arrays": [{"name", "shape"}...], "strings": {name: [...]}}``, then
for each array in header order its ``4 * prod(shape)`` plane bytes.
"""

from __future__ import annotations

import json
import lzma
import os
import struct
from pathlib import Path

import numpy as np

__all__ = [
    "PACKED_NAME",
    "ict_model_dir",
    "pack_modes",
    "packaged_ict_dir",
    "unpack_modes",
    "write_package_data",
]

PACKED_NAME = "ict_facekit_modes.f32planes.xz"
MAGIC = b"EMOCA-F32PLANES-1\n"
_FLOAT_KEYS = ("neutral", "identity_modes", "expression_modes")
_STRING_KEYS = ("identity_names", "expression_names")
# The only vertex_indices.json entries the model reads (the rest are ICT's fitting lists).
_INDEX_KEYS = ("expressions", "idx_to_landmark_verts")


class PackedFormatError(ValueError):
    """A packed ICT-FaceKit file is damaged or not in this format."""


def _to_planes(a: np.ndarray) -> bytes:
    """(..., V, 3) float32 -> component-major byte planes (4 * a.size bytes)."""
    cm = np.ascontiguousarray(np.moveaxis(np.asarray(a, dtype="<f4"), -1, -2))
    return np.ascontiguousarray(cm.reshape(-1).view(np.uint8).reshape(-1, 4).T).tobytes()


def _from_planes(buf: memoryview, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`_to_planes`: bytes -> (..., V, 3) float32."""
    n = int(np.prod(shape))
    planes = np.frombuffer(buf, dtype=np.uint8, count=4 * n).reshape(4, n)
    values = np.ascontiguousarray(planes.T).view("<f4").reshape(-1)
    cm_shape = (*shape[:-2], shape[-1], shape[-2])
    return np.ascontiguousarray(np.moveaxis(values.reshape(cm_shape), -1, -2)).astype(
        np.float32, copy=False)


def pack_modes(arrays: dict[str, np.ndarray], path: str | os.PathLike,
               preset: int = 9 | lzma.PRESET_EXTREME) -> Path:
    """Write ``neutral``, ``identity_modes``, ``expression_modes`` (float32, last axis 3)
    and the ``identity_names``/``expression_names`` string lists to one packed file."""
    header: dict = {"arrays": [], "strings": {}}
    payload = []
    for key in _FLOAT_KEYS:
        a = np.asarray(arrays[key])
        if a.dtype != np.float32 or a.ndim < 2 or a.shape[-1] != 3:
            raise ValueError(f"{key}: need float32 (..., V, 3), got {a.dtype} {a.shape}")
        header["arrays"].append({"name": key, "shape": list(a.shape)})
        payload.append(_to_planes(a))
    for key in _STRING_KEYS:
        header["strings"][key] = [str(s) for s in arrays[key]]
    head = json.dumps(header).encode()
    raw = b"".join([MAGIC, struct.pack("<I", len(head)), head, *payload])
    path = Path(path)
    path.write_bytes(lzma.compress(raw, format=lzma.FORMAT_XZ, preset=preset))
    return path


def unpack_modes(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a file written by :func:`pack_modes`: the same keys as ``ict_facekit_modes.npz``
    (float32 arrays, names as numpy string arrays)."""
    path = Path(path)
    try:
        raw = memoryview(lzma.decompress(path.read_bytes()))
    except lzma.LZMAError as e:
        raise PackedFormatError(f"{path}: not a readable xz stream ({e})") from None
    if bytes(raw[:len(MAGIC)]) != MAGIC:
        raise PackedFormatError(f"{path}: not a packed ICT-FaceKit file (bad magic)")
    pos = len(MAGIC)
    (n_head,) = struct.unpack_from("<I", raw, pos)
    pos += 4
    header = json.loads(bytes(raw[pos:pos + n_head]))
    pos += n_head
    out: dict[str, np.ndarray] = {}
    for entry in header["arrays"]:
        shape = tuple(int(s) for s in entry["shape"])
        nbytes = 4 * int(np.prod(shape))
        if pos + nbytes > len(raw):
            raise PackedFormatError(f"{path}: truncated ({entry['name']} {shape})")
        out[entry["name"]] = _from_planes(raw[pos:pos + nbytes], shape)
        pos += nbytes
    if pos != len(raw):
        raise PackedFormatError(f"{path}: {len(raw) - pos} unexpected trailing bytes")
    for key, names in header["strings"].items():
        out[key] = np.asarray(names, dtype=str)
    return out


def packaged_ict_dir() -> Path:
    """Folder of the ICT-FaceKit copy inside the installed package."""
    return Path(__file__).resolve().parent / "data" / "ICT-FaceKit"


def ict_model_dir(explicit: str | os.PathLike | None = None,
                  assets: str | os.PathLike | None = None) -> Path:
    """Where to load ICT-FaceKit from: ``explicit``, else ``<assets>/ICT-FaceKit``, else the
    packaged copy.

    Args:
        explicit: a folder (npz, packed file or the repository's ``FaceXModel``) or a file;
            used as given (a missing path is reported by the loader, naming it).
        assets: the assets folder (``None``: ``$EMOCA_HOME`` or ``~/.cache/emoca``).

    Raises:
        MissingAssetError: none of them exists (a broken installation).
    """
    from emoca.assets.locate import Assets, MissingAssetError

    if explicit:
        return Path(explicit).expanduser()
    found = Assets(assets).find("ict_facekit")
    if found is not None:
        return found
    packaged = packaged_ict_dir()
    if (packaged / PACKED_NAME).is_file():
        return packaged
    raise MissingAssetError(
        f"ICT-FaceKit not found: not in {Assets(assets).root / 'ICT-FaceKit'} and the copy "
        f"that ships with the package is missing from {packaged} (reinstall emoca, or pass "
        "--ict-dir with a clone of https://github.com/ICT-VGL/ICT-FaceKit)")


def write_package_data(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Build the packaged copy from an ICT-FaceKit folder holding ``ict_facekit_modes.npz``,
    ``generic_neutral_mesh.obj.gz``, ``vertex_indices.json`` and ``LICENSE``.

    Writes ``dest/{PACKED_NAME, generic_neutral_mesh.obj.gz, vertex_indices.json, LICENSE}``
    (vertex_indices.json cut to the entries the model reads); the README is kept by hand.
    """
    src, dest = Path(src), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with np.load(src / "ict_facekit_modes.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in (*_FLOAT_KEYS, *_STRING_KEYS)}
    pack_modes(arrays, dest / PACKED_NAME)
    indices = json.loads((src / "vertex_indices.json").read_text())
    (dest / "vertex_indices.json").write_text(
        json.dumps({k: indices[k] for k in _INDEX_KEYS}, separators=(",", ":")))
    for name in ("generic_neutral_mesh.obj.gz", "LICENSE"):
        (dest / name).write_bytes((src / name).read_bytes())
    return dest


if __name__ == "__main__":  # python -m emoca.assets.ict_facekit SRC DEST
    import sys

    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m emoca.assets.ict_facekit SRC_DIR DEST_DIR")
    print(write_package_data(sys.argv[1], sys.argv[2]))
