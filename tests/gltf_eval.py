"""A small, independent glTF 2.0 evaluator for the tests: reads a GLB with pygltflib and
computes world-space vertices of morphing, skinned meshes at a time, following the glTF
2.0 specification (sections 3.7.2.1 morph targets, 3.7.3 skins, 3.11 animations) and
nothing of emoca's writer."""

from __future__ import annotations

import numpy as np

_DTYPES = {5120: "i1", 5121: "u1", 5122: "<i2", 5123: "<u2", 5125: "<u4", 5126: "<f4"}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


def load(path):
    from pygltflib import GLTF2

    return GLTF2().load(str(path))


def _view_array(gltf, view_index: int, offset: int, dt: np.dtype, count: int) -> np.ndarray:
    view = gltf.bufferViews[view_index]
    start = (view.byteOffset or 0) + (offset or 0)
    assert start + count * dt.itemsize <= (view.byteOffset or 0) + view.byteLength
    return np.frombuffer(gltf.binary_blob(), dt, count, start)


def accessor(gltf, index: int) -> np.ndarray:
    """(count, width) float64 array of an accessor (tightly packed), sparse as the spec says
    (3.6.2.3): the base data (zeros without a bufferView) with ``sparse.count`` elements,
    at strictly increasing ``indices``, replaced by ``values``."""
    acc = gltf.accessors[index]
    dt = np.dtype(_DTYPES[acc.componentType])
    width = _WIDTH[acc.type]
    if acc.bufferView is None:
        a = np.zeros((acc.count, width))
    else:
        view = gltf.bufferViews[acc.bufferView]
        assert view.byteStride in (None, 0, dt.itemsize * width)
        a = _view_array(gltf, acc.bufferView, acc.byteOffset, dt, acc.count * width)
        a = a.reshape(acc.count, width).astype(np.float64)
    sp = acc.sparse
    if sp is not None:
        idx = _view_array(gltf, sp.indices.bufferView, sp.indices.byteOffset,
                          np.dtype(_DTYPES[sp.indices.componentType]), sp.count)
        assert (np.diff(idx.astype(np.int64)) > 0).all() and idx.max() < acc.count
        vals = _view_array(gltf, sp.values.bufferView, sp.values.byteOffset, dt,
                           sp.count * width).reshape(sp.count, width)
        a = a.copy()
        a[idx] = vals
    return a


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    x, y, z, w = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _slerp(a: np.ndarray, b: np.ndarray, s: float) -> np.ndarray:
    d = float(a @ b)
    if d < 0:
        b, d = -b, -d
    if d > 0.9995:
        q = a + s * (b - a)
        return q / np.linalg.norm(q)
    th = np.arccos(d)
    return (np.sin((1 - s) * th) * a + np.sin(s * th) * b) / np.sin(th)


def _sample(times: np.ndarray, values: np.ndarray, t: float, path: str) -> np.ndarray:
    """LINEAR sampler; ``values`` (T, width)."""
    if t <= times[0]:
        return values[0]
    if t >= times[-1]:
        return values[-1]
    i = int(np.searchsorted(times, t, side="right")) - 1
    s = (t - times[i]) / (times[i + 1] - times[i])
    if path == "rotation":
        return _slerp(values[i], values[i + 1], s)
    return values[i] + s * (values[i + 1] - values[i])


def animated_state(gltf, t: float) -> tuple[dict, dict]:
    """Node TRS overrides and mesh-node morph weights of animation 0 at time ``t``."""
    trs: dict[tuple[int, str], np.ndarray] = {}
    weights: dict[int, np.ndarray] = {}
    if not gltf.animations:
        return trs, weights
    anim = gltf.animations[0]
    for ch in anim.channels:
        smp = anim.samplers[ch.sampler]
        assert smp.interpolation == "LINEAR"
        times = accessor(gltf, smp.input)[:, 0]
        out = accessor(gltf, smp.output)
        node, path = ch.target.node, ch.target.path
        if path == "weights":
            m = len(gltf.meshes[gltf.nodes[node].mesh].primitives[0].targets)
            weights[node] = _sample(times, out.reshape(len(times), m), t, path)
        else:
            trs[(node, path)] = _sample(times, out, t, path)
    return trs, weights


def world_matrices(gltf, trs: dict) -> list[np.ndarray]:
    """(4, 4) world matrix of every node, with animated TRS applied."""
    n = len(gltf.nodes)
    parent = [-1] * n
    for i, node in enumerate(gltf.nodes):
        for c in node.children or []:
            parent[c] = i
    local = []
    for i, node in enumerate(gltf.nodes):
        if node.matrix is not None and (i, "rotation") not in trs:
            local.append(np.asarray(node.matrix, np.float64).reshape(4, 4).T)
            continue
        t = trs.get((i, "translation"), node.translation or [0, 0, 0])
        r = trs.get((i, "rotation"), node.rotation or [0, 0, 0, 1])
        s = trs.get((i, "scale"), node.scale or [1, 1, 1])
        m = np.eye(4)
        m[:3, :3] = quat_to_matrix(np.asarray(r, np.float64)) * np.asarray(s)[None]
        m[:3, 3] = t
        local.append(m)
    world: list[np.ndarray | None] = [None] * n

    def get(i: int) -> np.ndarray:
        if world[i] is None:
            world[i] = local[i] if parent[i] < 0 else get(parent[i]) @ local[i]
        return world[i]

    return [get(i) for i in range(n)]


def mesh_vertices(gltf, t: float, node_index: int = 0) -> np.ndarray:
    """(V, 3) world positions of the first primitive of ``node_index``'s mesh at ``t``."""
    node = gltf.nodes[node_index]
    prim = gltf.meshes[node.mesh].primitives[0]
    trs, animated = animated_state(gltf, t)
    world = world_matrices(gltf, trs)
    pos = accessor(gltf, prim.attributes.POSITION)
    w = animated.get(node_index, np.asarray(gltf.meshes[node.mesh].weights or [], np.float64))
    for k, target in enumerate(prim.targets or []):
        if w[k] != 0:
            idx = target["POSITION"] if isinstance(target, dict) else target.POSITION
            pos = pos + w[k] * accessor(gltf, idx)
    if node.skin is None:
        return pos @ world[node_index][:3, :3].T + world[node_index][:3, 3]
    skin = gltf.skins[node.skin]
    ibm = accessor(gltf, skin.inverseBindMatrices).reshape(-1, 4, 4).transpose(0, 2, 1)
    inv_mesh = np.linalg.inv(world[node_index])
    jm = np.stack([inv_mesh @ world[j] @ ibm[i] for i, j in enumerate(skin.joints)])
    out = np.zeros_like(pos)
    homo = np.concatenate([pos, np.ones((len(pos), 1))], 1)
    for s in range(4):
        ja, wa = _attribute(prim, f"JOINTS_{s}"), _attribute(prim, f"WEIGHTS_{s}")
        if ja is None:
            break
        joints = accessor(gltf, ja).astype(np.int64)
        weights = accessor(gltf, wa)
        for c in range(joints.shape[1]):
            m = jm[joints[:, c]]  # (V, 4, 4)
            out += weights[:, c:c + 1] * np.einsum("vab,vb->va", m, homo)[:, :3]
    return out @ world[node_index][:3, :3].T + world[node_index][:3, 3]


def _attribute(prim, name: str):
    a = prim.attributes
    return a.get(name) if isinstance(a, dict) else getattr(a, name, None)


def key_times(gltf) -> np.ndarray:
    """Key-frame times of the first channel of animation 0 (s)."""
    anim = gltf.animations[0]
    return accessor(gltf, anim.samplers[anim.channels[0].sampler].input)[:, 0]
