"""glTF 2.0 (binary ``.glb``): one mesh with named morph targets (default weights, dense or
sparse), an optional textured PBR material, an optional skin, an optional static node
rotation and one optional animation of morph weights and node rotations/translations.

Built with ``pygltflib`` (``pip install 'emoca[animate]'``). Conventions (glTF 2.0):
metres, y up, quaternions ``[x, y, z, w]``, matrices column-major in the file (numpy
row-major here), texture ``v`` down (we flip the OBJ's ``v`` up), LINEAR interpolation with
times in seconds. The mesh node sits at the scene root, with no transform when skinned (the
validator warns when a skinned mesh node is transformed or nested); joints form their own
tree.

Sparse morph targets store only the vertices a target moves (glTF's accessor ``sparse``:
increasing vertex indices + their offsets, every other vertex 0): a face blendshape moves
a fraction of a whole head, so this keeps the file small, and it is exact (only offsets
that are exactly 0 in float32 are left out).

A vertex is evaluated as the glTF spec says:

    p = sum_j w_j * world_j @ inverse_bind_j @ (position + sum_k weight_k * target_k)

for a skinned mesh, or ``node_world @ (position + sum_k weight_k * target_k)`` without a skin.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emoca.io.atomic import atomic_write

__all__ = ["GltfAnimation", "GltfMaterial", "GltfMesh", "GltfSkin", "build_glb",
           "limit_influences", "matrix_to_quaternion", "write_animated_glb"]

# glTF component types and buffer-view targets
_FLOAT, _UBYTE, _USHORT, _UINT = 5126, 5121, 5123, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_LINEAR, _LINEAR_MIPMAP_LINEAR, _REPEAT = 9729, 9987, 10497
_TYPES = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4", 16: "MAT4"}


@dataclass(frozen=True)
class GltfSkin:
    """A joint tree skinning the mesh.

    Attributes:
        joint_names: (J,) node names.
        parents: (J,) parent index per joint, -1 for the root (parents before children).
        rest_translations: (J,3) m, each joint's translation relative to its parent at rest.
        inverse_bind: (J,4,4) row-major inverse bind matrices (mesh space -> joint space).
        joints: (V,K) joint index per influence, K = 4 or 8 (8: a second JOINTS_1 set).
        weights: (V,K) weights, each row summing to 1.
    """

    joint_names: tuple[str, ...]
    parents: np.ndarray
    rest_translations: np.ndarray
    inverse_bind: np.ndarray
    joints: np.ndarray
    weights: np.ndarray


@dataclass(frozen=True)
class GltfAnimation:
    """Key frames; every array has a leading T axis matching ``times``.

    Attributes:
        times: (T,) seconds, strictly increasing, >= 0.
        morph_weights: (T,M) weights of the M morph targets, or None.
        joint_rotations: (T,J,4) local joint rotations ``[x, y, z, w]``, or None.
        joint_translations: (T,J,3) local joint translations (m), or None.
        node_rotations: (T,4) rotation of the (unskinned) mesh node, or None.
    """

    times: np.ndarray
    morph_weights: np.ndarray | None = None
    joint_rotations: np.ndarray | None = None
    joint_translations: np.ndarray | None = None
    node_rotations: np.ndarray | None = None


@dataclass(frozen=True)
class GltfMaterial:
    """A PBR metallic-roughness material, optionally with a base-colour texture.

    Attributes:
        texture: (H, W, 3) uint8 RGB, row 0 = top of the image (stored as PNG), or None.
        metallic, roughness: the material's factors in [0, 1].
        name: material name.
    """

    texture: np.ndarray | None = None
    metallic: float = 0.0
    roughness: float = 0.8
    name: str = "skin"


@dataclass(frozen=True)
class GltfMesh:
    """Everything one animated GLB holds.

    Attributes:
        positions: (V,3) m, rest vertices.
        indices: (F,3) triangle corners.
        normals: (V,3) unit normals or None.
        uvs: (V,2) texture coordinates, ``v`` up (OBJ convention; flipped when written).
        target_names: (M,) morph target names (``mesh.extras.targetNames``).
        targets: (M,V,3) m, morph target position offsets.
        weights: (M,) default morph weights (the mesh's ``weights``; 0 when None).
        sparse_targets: store the targets as sparse accessors (module doc).
        material: :class:`GltfMaterial` or None (no material: viewers draw it grey).
        rotation: (4,) static rotation ``[x, y, z, w]`` of the mesh node, or None (an
            unskinned mesh only).
        skin: :class:`GltfSkin` or None.
        animation: :class:`GltfAnimation` or None.
        name: mesh and node name; extras: JSON-able dict stored in the asset's extras.
    """

    positions: np.ndarray
    indices: np.ndarray
    normals: np.ndarray | None = None
    uvs: np.ndarray | None = None
    target_names: tuple[str, ...] = ()
    targets: np.ndarray | None = None
    weights: np.ndarray | None = None
    sparse_targets: bool = False
    material: GltfMaterial | None = None
    rotation: np.ndarray | None = None
    skin: GltfSkin | None = None
    animation: GltfAnimation | None = None
    name: str = "face"
    extras: dict[str, Any] = field(default_factory=dict)


def matrix_to_quaternion(rot: np.ndarray) -> np.ndarray:
    """Rotation matrices (...,3,3) -> unit quaternions (...,4) ``[x, y, z, w]`` with w >= 0.

    Shepperd's method: the largest of the four diagonal combinations is the pivot, so no
    branch divides by a small number.
    """
    r = np.asarray(rot, np.float64)
    m00, m11, m22 = r[..., 0, 0], r[..., 1, 1], r[..., 2, 2]
    cand = np.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22,
                     1 - m00 - m11 + m22], -1)
    k = np.argmax(cand, -1)
    s = np.sqrt(np.maximum(np.take_along_axis(cand, k[..., None], -1)[..., 0], 1e-300)) * 2
    q = np.empty(r.shape[:-2] + (4,))
    d21, d02, d10 = r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], \
        r[..., 1, 0] - r[..., 0, 1]
    s21, s02, s10 = r[..., 2, 1] + r[..., 1, 2], r[..., 0, 2] + r[..., 2, 0], \
        r[..., 1, 0] + r[..., 0, 1]
    rows = [  # (x, y, z, w) for each pivot
        (d21 / s, d02 / s, d10 / s, s / 4),
        (s / 4, s10 / s, s02 / s, d21 / s),
        (s10 / s, s / 4, s21 / s, d02 / s),
        (s02 / s, s21 / s, s / 4, d10 / s),
    ]
    for i, row in enumerate(rows):
        sel = k == i
        q[sel] = np.stack([c[sel] for c in row], -1)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., 3:] < 0, -q, q)


def _continuous(q: np.ndarray) -> np.ndarray:
    """(T,...,4) quaternions with signs flipped so consecutive keys lie in one hemisphere
    (LINEAR interpolation then takes the short way in every viewer)."""
    q = q.copy()
    for t in range(1, len(q)):
        flip = (q[t] * q[t - 1]).sum(-1) < 0
        q[t][flip] *= -1
    return q


def limit_influences(weights: np.ndarray, max_influences: int = 4, tol: float = 0.0
                     ) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-vertex skinning influences as glTF stores them.

    Keeps every weight above ``tol``; when a vertex has more than ``max_influences`` such
    weights, 8 slots are used (JOINTS_0/WEIGHTS_0 + JOINTS_1/WEIGHTS_1), so nothing is
    dropped. Weights at or below ``tol`` are dropped and the rest renormalised.

    Args:
        weights: (V,J) dense skinning weights, rows summing to 1.
    Returns:
        joints (V,K) int, weights (V,K) float64 with K = 4 or 8, and the largest dropped
        weight. Unused slots get weight 0 and joint 0 (as the validator asks).
    """
    w = np.asarray(weights, np.float64)
    v, j = w.shape
    keep = w > tol
    dropped = float(w[~keep].max(initial=0.0))
    n_needed = int(keep.sum(1).max(initial=0))
    k = max_influences if n_needed <= max_influences else 2 * max_influences
    if n_needed > k:
        raise ValueError(f"{n_needed} influences per vertex exceed {k}")
    order = np.argsort(-np.where(keep, w, -1.0), axis=1, kind="stable")  # kept first
    slots = min(k, j)
    joints = order[:, :slots]
    wk = np.take_along_axis(np.where(keep, w, 0.0), joints, 1)
    wk = wk / wk.sum(1, keepdims=True)
    joints = np.where(wk > 0, joints, 0)  # the validator wants joint 0 in unused slots
    if slots < k:  # fewer joints than slots: pad with weight 0
        joints = np.concatenate([joints, np.zeros((v, k - slots), np.int64)], 1)
        wk = np.concatenate([wk, np.zeros((v, k - slots))], 1)
    return joints.astype(np.int64), wk, dropped


class _Blob:
    """The binary chunk: buffer views and accessors appended 4-byte aligned."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.views: list[Any] = []
        self.accessors: list[Any] = []

    def add(self, array: np.ndarray, component: int, *, target: int | None = None,
            minmax: bool = False, normalized: bool = False) -> int:
        from pygltflib import Accessor, BufferView

        dtype = {_FLOAT: "<f4", _UBYTE: "u1", _USHORT: "<u2", _UINT: "<u4"}[component]
        a = np.ascontiguousarray(array, dtype=dtype)
        width = 1 if a.ndim == 1 else int(np.prod(a.shape[1:]))
        data = a.tobytes()
        self.views.append(BufferView(buffer=0, byteOffset=self.size, byteLength=len(data),
                                     target=target))
        pad = (-len(data)) % 4
        self.parts.append(data + b"\0" * pad)
        self.size += len(data) + pad
        flat = a.reshape(len(a), width)
        acc = Accessor(bufferView=len(self.views) - 1, componentType=component,
                       count=len(a), type=_TYPES[width], normalized=normalized or None)
        if minmax:
            cast = float if component == _FLOAT else int
            acc.min = [cast(x) for x in flat.min(0)]
            acc.max = [cast(x) for x in flat.max(0)]
        self.accessors.append(acc)
        return len(self.accessors) - 1

    def add_bytes(self, data: bytes) -> int:
        """A buffer view of raw bytes (e.g. a PNG image); returns its index."""
        from pygltflib import BufferView

        self.views.append(BufferView(buffer=0, byteOffset=self.size, byteLength=len(data)))
        pad = (-len(data)) % 4
        self.parts.append(data + b"\0" * pad)
        self.size += len(data) + pad
        return len(self.views) - 1

    def add_sparse(self, array: np.ndarray) -> int:
        """A float32 (N, C) accessor holding only the rows that are not all 0 (sparse);
        min/max cover every row (the validator checks them against the zeros too)."""
        from pygltflib import Accessor, AccessorSparseIndices, AccessorSparseValues, Sparse

        a = np.ascontiguousarray(array, dtype="<f4")
        rows = np.flatnonzero((a != 0).any(1))
        # byteOffset None: pygltflib would write its default 0, which needs a bufferView
        acc = Accessor(componentType=_FLOAT, count=len(a), type=_TYPES[a.shape[1]],
                       byteOffset=None, min=[float(x) for x in a.min(0)],
                       max=[float(x) for x in a.max(0)])
        if len(rows):
            index_type, dtype = (_USHORT, "<u2") if len(a) <= 65535 else (_UINT, "<u4")
            idx = self.add_bytes(rows.astype(dtype).tobytes())
            val = self.add_bytes(a[rows].tobytes())
            acc.sparse = Sparse(count=len(rows),
                                indices=AccessorSparseIndices(bufferView=idx, byteOffset=None,
                                                              componentType=index_type),
                                values=AccessorSparseValues(bufferView=val, byteOffset=None))
        # no rows: no buffer view and no sparse part, which glTF reads as all zeros
        self.accessors.append(acc)
        return len(self.accessors) - 1

    def bytes(self) -> bytes:
        return b"".join(self.parts)


def _check(mesh: GltfMesh) -> None:
    v = len(mesh.positions)
    if mesh.targets is not None and np.shape(mesh.targets) != (len(mesh.target_names), v, 3):
        raise ValueError(f"targets must be ({len(mesh.target_names)}, {v}, 3), got "
                         f"{np.shape(mesh.targets)}")
    if mesh.weights is not None and np.shape(mesh.weights) != (len(mesh.target_names),):
        raise ValueError(f"weights must be ({len(mesh.target_names)},), got "
                         f"{np.shape(mesh.weights)}")
    if mesh.rotation is not None and mesh.skin is not None:
        raise ValueError("a skinned mesh node takes no rotation (pose the joints instead)")
    a = mesh.animation
    if a is None:
        return
    t = np.asarray(a.times, np.float64)
    if t.ndim != 1 or len(t) == 0 or t[0] < 0 or (np.diff(t) <= 0).any():
        raise ValueError("animation times must be non-negative and strictly increasing")
    for name, arr in (("morph_weights", a.morph_weights), ("joint_rotations", a.joint_rotations),
                      ("joint_translations", a.joint_translations),
                      ("node_rotations", a.node_rotations)):
        if arr is not None and len(arr) != len(t):
            raise ValueError(f"{name} has {len(arr)} keys for {len(t)} times")


def _material(mat: GltfMaterial, blob: _Blob) -> tuple[list, list, list, list]:
    """pygltflib's materials, textures, images and samplers for ``mat`` (the texture's PNG
    goes into ``blob``)."""
    import io as _io

    from PIL import Image as PILImage
    from pygltflib import Image, Material, PbrMetallicRoughness, Sampler, Texture, TextureInfo

    pbr = PbrMetallicRoughness(baseColorFactor=[1.0, 1.0, 1.0, 1.0],
                               metallicFactor=float(mat.metallic),
                               roughnessFactor=float(mat.roughness))
    textures, images, samplers = [], [], []
    if mat.texture is not None:
        buf = _io.BytesIO()
        PILImage.fromarray(np.ascontiguousarray(mat.texture, np.uint8)).save(buf, format="PNG")
        images = [Image(bufferView=blob.add_bytes(buf.getvalue()), mimeType="image/png")]
        samplers = [Sampler(magFilter=_LINEAR, minFilter=_LINEAR_MIPMAP_LINEAR, wrapS=_REPEAT,
                            wrapT=_REPEAT)]
        textures = [Texture(sampler=0, source=0)]
        pbr.baseColorTexture = TextureInfo(index=0)
    return ([Material(name=mat.name, pbrMetallicRoughness=pbr, doubleSided=False)], textures,
            images, samplers)


def build_glb(mesh: GltfMesh) -> bytes:
    """The ``.glb`` file's bytes for ``mesh`` (see module doc)."""
    from pygltflib import (
        GLTF2,
        Animation,
        AnimationChannel,
        AnimationChannelTarget,
        AnimationSampler,
        Asset,
        Attributes,
        Buffer,
        Mesh,
        Node,
        Primitive,
        Scene,
        Skin,
    )

    _check(mesh)
    blob = _Blob()
    pos = np.asarray(mesh.positions, np.float32)
    attrs = Attributes(POSITION=blob.add(pos, _FLOAT, target=_ARRAY_BUFFER, minmax=True))
    if mesh.normals is not None:
        n = np.asarray(mesh.normals, np.float64)
        n = n / np.linalg.norm(n, axis=1, keepdims=True)
        attrs.NORMAL = blob.add(n, _FLOAT, target=_ARRAY_BUFFER)
    if mesh.uvs is not None:
        uv = np.asarray(mesh.uvs, np.float64).copy()
        uv[:, 1] = 1.0 - uv[:, 1]
        attrs.TEXCOORD_0 = blob.add(uv, _FLOAT, target=_ARRAY_BUFFER)
    skin = mesh.skin
    if skin is not None:
        comp = _UBYTE if len(skin.joint_names) < 256 else _USHORT
        attrs.JOINTS_0 = blob.add(skin.joints[:, :4], comp, target=_ARRAY_BUFFER)
        attrs.WEIGHTS_0 = blob.add(skin.weights[:, :4], _FLOAT, target=_ARRAY_BUFFER)
        if skin.joints.shape[1] > 4:
            # pygltflib's Attributes has no JOINTS_1 field; it serialises extra attributes
            attrs.JOINTS_1 = blob.add(skin.joints[:, 4:8], comp, target=_ARRAY_BUFFER)
            attrs.WEIGHTS_1 = blob.add(skin.weights[:, 4:8], _FLOAT, target=_ARRAY_BUFFER)
    indices = blob.add(np.asarray(mesh.indices).reshape(-1), _UINT,
                       target=_ELEMENT_ARRAY_BUFFER)
    targets = []
    for k in range(len(mesh.target_names)):
        d = np.asarray(mesh.targets[k], np.float32)
        acc = (blob.add_sparse(d) if mesh.sparse_targets else
               blob.add(d, _FLOAT, target=_ARRAY_BUFFER, minmax=True))
        targets.append(Attributes(POSITION=acc))
    parts = None if mesh.material is None else _material(mesh.material, blob)
    prim = Primitive(attributes=attrs, indices=indices, mode=4, targets=targets or None,
                     material=None if parts is None else 0)
    weights = (np.zeros(len(targets)) if mesh.weights is None
               else np.asarray(mesh.weights, np.float64))
    gmesh = Mesh(name=mesh.name, primitives=[prim],
                 weights=[float(w) for w in weights] if targets else None,
                 extras={"targetNames": list(mesh.target_names)} if targets else None)
    nodes = [Node(name=mesh.name, mesh=0)]
    if mesh.rotation is not None:
        q = np.asarray(mesh.rotation, np.float64)
        nodes[0].rotation = [float(x) for x in q / np.linalg.norm(q)]
    roots = [0]
    skins = None
    if skin is not None:
        first = len(nodes)
        jn = len(skin.joint_names)
        for i in range(jn):
            nodes.append(Node(name=skin.joint_names[i],
                              translation=[float(x) for x in skin.rest_translations[i]]))
        for i, p in enumerate(skin.parents):
            if p < 0:
                roots.append(first + i)
            else:
                parent = nodes[first + int(p)]
                parent.children = (parent.children or []) + [first + i]
        ibm = np.ascontiguousarray(np.transpose(skin.inverse_bind, (0, 2, 1)))  # column-major
        skins = [Skin(joints=list(range(first, first + jn)), skeleton=roots[1],
                      inverseBindMatrices=blob.add(ibm.reshape(jn, 16), _FLOAT))]
        nodes[0].skin = 0
    animations = None
    a = mesh.animation
    if a is not None:
        samplers, channels = [], []
        times = blob.add(np.asarray(a.times, np.float32), _FLOAT, minmax=True)

        def channel(values: np.ndarray, node: int, path: str) -> None:
            samplers.append(AnimationSampler(input=times, output=blob.add(values, _FLOAT),
                                             interpolation="LINEAR"))
            channels.append(AnimationChannel(sampler=len(samplers) - 1,
                                             target=AnimationChannelTarget(node=node,
                                                                           path=path)))

        if a.morph_weights is not None:
            channel(np.asarray(a.morph_weights).reshape(-1), 0, "weights")
        if a.node_rotations is not None:
            channel(_continuous(np.asarray(a.node_rotations, np.float64)), 0, "rotation")
        if skin is not None and a.joint_rotations is not None:
            q = _continuous(np.asarray(a.joint_rotations, np.float64))
            for i in range(len(skin.joint_names)):
                channel(q[:, i], 1 + i, "rotation")
        if skin is not None and a.joint_translations is not None:
            for i in range(len(skin.joint_names)):
                channel(np.asarray(a.joint_translations)[:, i], 1 + i, "translation")
        animations = [Animation(name="performance", samplers=samplers, channels=channels)]
    gltf = GLTF2(asset=Asset(version="2.0", generator="emoca"), scene=0,
                 scenes=[Scene(nodes=roots)], nodes=nodes, meshes=[gmesh], skins=skins,
                 animations=animations, accessors=blob.accessors, bufferViews=blob.views,
                 extras=mesh.extras or None)
    if parts is not None:
        gltf.materials, gltf.textures, gltf.images, gltf.samplers = parts
    data = blob.bytes()
    gltf.buffers = [Buffer(byteLength=len(data))]
    gltf.set_binary_blob(data)
    return b"".join(gltf.save_to_bytes())


def write_animated_glb(path: str | os.PathLike, mesh: GltfMesh) -> Path:
    """Write :func:`build_glb`'s bytes atomically; returns the path."""
    data = build_glb(mesh)
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    return Path(path)
