"""Exports of the open fit: ICT parts and atlas, photo baking, GLB that opens well."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from emoca.face_model.ict_parts import (
    PART_NAMES,
    PARTS,
    atlas_uvs,
    part_base_colors,
    part_labels,
)
from emoca.render.bake import UVBaker, bake_photo_texture, dilate_texture, vertex_visibility

GLTF_TOOLS = Path(__file__).resolve().parents[1] / "tools" / "gltf_check"
sys.path.insert(0, str(Path(__file__).parent))  # gltf_eval: the tests' own glTF reader


@pytest.fixture(scope="module")
def whole_head(ict_dir):
    from emoca.face_model.ict import ICTFaceModel

    return ICTFaceModel.from_dir(ict_dir, region="whole_head")


def test_part_labels_follow_the_ict_readme_ranges():
    idx = np.array([0, 9408, 9409, 11248, 14061, 14062, 17039, 21450, 21451, 24590, 24591])
    want = ["face", "face", "head_neck", "mouth_socket", "eye_sockets", "gums_tongue",
            "teeth", "teeth", "eyeballs", "eyeballs", None]
    got = [PART_NAMES[k] if k >= 0 else None for k in part_labels(idx)]
    assert got == want


def test_atlas_puts_every_part_in_its_own_cell_inside_unit_square(whole_head):
    m = whole_head
    vidx = m.vertex_indices.numpy()
    faces = m.faces.numpy()
    uv, uvf = atlas_uvs(m.uv_coords.numpy(), m.uv_faces.numpy(), faces, vidx)
    assert uv.min() >= 0.0 and uv.max() <= 1.0
    # ICT's own UVs run over several tiles (u up to ~4): that is what the atlas removes
    assert m.uv_coords[:, 0].max() > 3.0
    labels = part_labels(vidx)
    part = labels[faces[:, 0]]
    # the parts never share texels (the UDIM tiles overlapped in [0, 1] before): rasterize
    # each part's triangles alone and count texels claimed by two parts
    ft = torch.from_numpy(faces)
    owners = torch.zeros(128, 128)
    for k in range(len(PART_NAMES)):
        sel = torch.from_numpy(part == k)
        if PART_NAMES[k] == "eyeballs":  # two shells per eye, each with its own cell
            from emoca.face_model.ict_parts import outer_eye_shell

            outer = torch.from_numpy(outer_eye_shell(vidx[faces[:, 0]]))
            groups = [sel & outer, sel & ~outer]
        else:
            groups = [sel]
        for g in groups:
            if g.any():
                owners += UVBaker(torch.from_numpy(uv), torch.from_numpy(uvf)[g], ft[g],
                                  128).mask.float()
    assert owners.max() == 1  # not > 1: no texel belongs to two parts
    # (parts sharing ICT tile 1, head and sockets, are laid out side by side by ICT itself)
    # the atlas keeps each triangle's shape: UV edge ratios equal ICT's (one scale per cell)
    orig = m.uv_coords.numpy()[m.uv_faces.numpy()]
    new = uv[uvf]
    e_o = np.linalg.norm(orig[:, 1] - orig[:, 0], axis=1)
    e_n = np.linalg.norm(new[:, 1] - new[:, 0], axis=1)
    teeth = (part == PART_NAMES.index("teeth")) & (e_o > 1e-4)
    np.testing.assert_allclose(e_n[teeth] / e_o[teeth], 0.25, rtol=1e-3)


def test_part_colours_eyes_have_dark_pupils_and_white_sclera(whole_head):
    m = whole_head
    labels = part_labels(m.vertex_indices.numpy())
    cols, skin = part_base_colors(m.neutral.numpy(), labels)
    eye = labels == PART_NAMES.index("eyeballs")
    front = eye & (m.neutral.numpy()[:, 2] > np.percentile(m.neutral.numpy()[eye, 2], 99.5))
    assert cols[front].mean() < 0.2  # the front pole is pupil
    assert np.median(cols[eye].mean(1)) > 0.8  # most of the ball is sclera
    assert skin[: PARTS["head_neck"][1]].all() and not skin[PARTS["teeth"][0]:].any()


def test_uv_baker_equals_the_renderers_world2uv(whole_head):
    from emoca.render.renderer import Renderer

    m = whole_head.region_view("face")
    vals = torch.rand(m.num_vertices, 3)
    ours = UVBaker(m.uv_coords, m.uv_faces, m.faces, 64)(vals)
    ref = Renderer(m.uv_coords, m.uv_faces, m.faces, uv_size=64).world2uv(vals[None])[0]
    torch.testing.assert_close(ours, ref)


def _two_squares():
    """A front square (z=0) covering the left half of a back square (z=1), DECA space."""
    v = torch.tensor([[-0.5, -0.5, 0.0], [0.0, -0.5, 0.0], [0.0, 0.5, 0.0], [-0.5, 0.5, 0.0],
                      [-0.8, -0.8, 1.0], [0.8, -0.8, 1.0], [0.8, 0.8, 1.0], [-0.8, 0.8, 1.0],
                      [-0.25, 0.0, 1.0], [0.5, 0.0, 1.0]])
    # winding so that the normals face the camera (DECA: -z towards the viewer)
    f = torch.tensor([[0, 2, 1], [0, 3, 2], [4, 8, 7], [4, 5, 8], [5, 9, 8], [5, 6, 9],
                      [6, 7, 9], [7, 8, 9]])
    a, b = v[f[:, 1], :2] - v[f[:, 0], :2], v[f[:, 2], :2] - v[f[:, 0], :2]
    cross = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    return v, torch.where((cross > 0)[:, None], f.flip(1), f)  # one winding for all


def test_vertex_visibility_hides_what_is_behind():
    v, f = _two_squares()
    vis = vertex_visibility(v, f, size=64)
    assert vis[:4].min() > 0.99  # front square
    assert vis[8] == 0.0  # back-square vertex behind the front square
    assert vis[9] > 0.99  # back-square vertex in the open
    # turned away from the camera: nothing is seen
    flipped = vertex_visibility(v, f.flip(1), size=64)
    assert flipped.max() == 0.0


def test_bake_takes_the_photo_where_seen_and_the_fill_elsewhere():
    # a unit square whose UVs equal its position: texel (u, v) <-> photo pixel
    v = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    f = torch.tensor([[0, 1, 2], [0, 2, 3]])
    baker = UVBaker(v, f, f, 32)
    photo = torch.zeros(3, 40, 40)
    photo[0] = 1.0  # red photo
    pts = torch.tensor([[5.0, 35.0], [35.0, 35.0], [35.0, 5.0], [5.0, 5.0]])
    fill = torch.tensor([[0.0, 0.0, 1.0]]).expand(4, 3)
    seen = bake_photo_texture(baker, pts, torch.ones(4), photo, fill, torch.ones(4))
    hidden = bake_photo_texture(baker, pts, torch.zeros(4), photo, fill, torch.ones(4))
    not_skin = bake_photo_texture(baker, pts, torch.ones(4), photo, fill, torch.zeros(4))
    inside = baker.mask
    assert inside.float().mean() > 0.9
    torch.testing.assert_close(seen[:, inside].mean(1), torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(hidden[:, inside].mean(1), torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(not_skin, hidden)


def test_dilate_fills_gaps_from_neighbours_only():
    tex = torch.zeros(1, 5, 5)
    mask = torch.zeros(5, 5, dtype=torch.bool)
    tex[0, 2, 2], mask[2, 2] = 0.7, True
    out = dilate_texture(tex, mask, steps=1)
    assert out[0, 1:4, 1:4].eq(0.7).all() and out[0, 0].eq(0).all()


def _write_test_glb(path: Path, whole_head):
    from emoca.io.mesh import write_glb
    from emoca.pipeline.fit_export import HeadExporter
    from emoca.pipeline.reconstruct_files import split_uv_seams

    ex = HeadExporter(whole_head, texture_size=128)
    verts = whole_head.neutral
    n = torch.nn.functional.normalize(torch.randn(verts.shape[0], 3), dim=-1)
    vi, ti, faces = split_uv_seams(whole_head.faces.numpy(), ex.uv_faces.numpy())
    tex = torch.rand(3, 128, 128)
    write_glb(path, verts.numpy()[vi] * 0.01, faces, uvs_per_vertex=ex.uvs.numpy()[ti],
              texture=tex, normals=n.numpy()[vi])
    return verts.numpy(), n.numpy()[vi]


def test_glb_is_metres_with_normals_uvs_and_a_pbr_texture(tmp_path, whole_head):
    import trimesh

    path = tmp_path / "head.glb"
    verts, normals = _write_test_glb(path, whole_head)
    mesh = trimesh.load(path, process=False, force="mesh")
    ext = mesh.vertices.max(0) - mesh.vertices.min(0)
    assert 0.15 < ext[1] < 0.4  # a head is ~25 cm tall, written in metres
    np.testing.assert_allclose(mesh.vertices.min(0), verts.min(0) * 0.01, atol=1e-6)
    uv = np.asarray(mesh.visual.uv)
    assert uv.min() >= 0 and uv.max() <= 1
    mat = mesh.visual.material
    assert mat.metallicFactor == 0.0 and mat.roughnessFactor == pytest.approx(0.8)
    assert mat.baseColorTexture is not None and mat.baseColorTexture.size == (128, 128)
    # the stored normals are ours (read straight from the file, not through trimesh)
    np.testing.assert_allclose(_glb_attribute(path, "NORMAL"), normals, atol=1e-6)


def _glb_attribute(path: Path, name: str) -> np.ndarray:
    """A float32 VEC3 vertex attribute of the first primitive, read from the GLB bytes."""
    data = path.read_bytes()
    n_json = int.from_bytes(data[12:16], "little")
    gltf = json.loads(data[20:20 + n_json])
    binary = data[20 + n_json + 8:]
    acc = gltf["accessors"][gltf["meshes"][0]["primitives"][0]["attributes"][name]]
    view = gltf["bufferViews"][acc["bufferView"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    return np.frombuffer(binary[start:start + acc["count"] * 12], "<f4").reshape(-1, 3)


@pytest.mark.skipif(shutil.which("node") is None
                    or not (GLTF_TOOLS / "node_modules" / "gltf-validator").is_dir(),
                    reason="Khronos glTF Validator not installed (make node)")
def test_glb_passes_the_khronos_validator(tmp_path, whole_head):
    path = tmp_path / "head.glb"
    _write_test_glb(path, whole_head)
    run = subprocess.run(["node", str(GLTF_TOOLS / "validate.mjs"), str(path)],
                         capture_output=True, text=True, timeout=120)
    report = json.loads(run.stdout.splitlines()[0])
    assert run.returncode == 0 and report["errors"] == 0, report


# ------------------------------------------------------------------ the rigged GLB of a fit
def _rigged_face(whole_head, expression: torch.Tensor, texture_size: int = 64):
    """A fitted-looking ICT face with known parameters, through fit's own exporter."""
    from emoca.face_model.arkit import ict_to_arkit
    from emoca.pipeline.fit_export import ExportMesh, HeadExporter
    from emoca.render.geometry import vertex_normals

    m = whole_head
    g = torch.Generator().manual_seed(3)
    ident = torch.zeros(1, m.parameter_sizes()["identity"])
    ident[:, :20] = torch.randn(1, 20, generator=g)
    params = {"identity": ident, "expression": expression[None],
              "rotation": torch.tensor([[0.15, -0.4, 0.05]])}
    ex = HeadExporter(m, texture_size=texture_size)
    verts = ex.vertices(params)[0]
    arkit = ict_to_arkit(expression.numpy(), m.expression_names)
    mesh = ExportMesh(vertices=verts, faces=m.faces, uvs=ex.uvs, uv_faces=ex.uv_faces,
                      texture=torch.rand(3, texture_size, texture_size, generator=g),
                      normals=vertex_normals(verts[None], m.faces)[0],
                      vertex_colors=torch.zeros_like(verts), metres_per_unit=0.01,
                      rig=ex.rig(params, arkit))
    return mesh, params, arkit


def _symmetric_expression(names, seed: int = 5) -> torch.Tensor:
    """Random ICT weights in [0, 0.6] whose split halves (browInnerUp, cheekPuff) agree."""
    e = torch.rand(len(names), generator=torch.Generator().manual_seed(seed)) * 0.6
    for base in ("browInnerUp", "cheekPuff"):
        e[names.index(base + "_R")] = e[names.index(base + "_L")]
    return e


def _write_face(tmp_path: Path, mesh) -> Path:
    from emoca.pipeline.fit_files import FitFace, write_fit_face

    blank = np.zeros((4, 4, 3), np.uint8)
    write_fit_face(tmp_path, FitFace(mesh=mesh, record={}, arrays={}, overlay=blank,
                                     overlay_full=blank))
    return tmp_path / "mesh.glb"


@pytest.fixture(scope="module")
def rigged_glb(tmp_path_factory, whole_head):
    pytest.importorskip("pygltflib")
    e = _symmetric_expression(whole_head.expression_names)
    mesh, params, arkit = _rigged_face(whole_head, e)
    return _write_face(tmp_path_factory.mktemp("rigged"), mesh), mesh, params, arkit


def _glb_json(path: Path) -> dict:
    data = path.read_bytes()
    n_json = int.from_bytes(data[12:16], "little")
    return json.loads(data[20:20 + n_json])


def test_fit_glb_has_apples_52_targets_with_the_fitted_weights(rigged_glb):
    from emoca.face_model.arkit import ARKIT_NAMES

    path, _, _, arkit = rigged_glb
    mesh = _glb_json(path)["meshes"][0]  # read from the bytes, not through a glTF library
    assert mesh["extras"]["targetNames"] == list(ARKIT_NAMES)
    assert len(mesh["primitives"][0]["targets"]) == 52
    np.testing.assert_allclose(mesh["weights"], arkit, atol=1e-7)
    assert arkit.max() > 0.3  # a real expression, not the neutral face


def test_fit_glb_evaluates_to_the_fitted_head_and_to_the_neutral_at_weight_0(rigged_glb,
                                                                            whole_head):
    import gltf_eval as ge

    from emoca.io.mesh import split_uv_seams

    path, mesh, params, _ = rigged_glb
    gltf = ge.load(path)
    vi, _, _ = split_uv_seams(mesh.faces.numpy(), mesh.uv_faces.numpy())
    m64 = copy.deepcopy(whole_head).double()  # float64 truth; the fixture stays float32
    with torch.no_grad():
        fitted = m64(**{k: v.double() for k, v in params.items()}).vertices[0].numpy()
        neutral = m64(identity=params["identity"].double(),
                      rotation=params["rotation"].double()).vertices[0].numpy()
    # spec evaluation: node rotation @ (position + sum_k weight_k target_k), metres
    np.testing.assert_allclose(ge.mesh_vertices(gltf, 0.0), fitted[vi] * 0.01, atol=2e-7)
    gltf.meshes[0].weights = [0.0] * 52
    np.testing.assert_allclose(ge.mesh_vertices(gltf, 0.0), neutral[vi] * 0.01, atol=2e-7)
    # the stored normals are the fitted head's, in the node's frame
    node_rot = ge.quat_to_matrix(np.asarray(gltf.nodes[0].rotation))
    normals = ge.accessor(gltf, gltf.meshes[0].primitives[0].attributes.NORMAL)
    np.testing.assert_allclose(normals @ node_rot.T, mesh.normals.numpy()[vi], atol=1e-5)


def test_fit_glb_split_halves_are_written_with_their_mean(tmp_path, whole_head):
    """ICT's browInnerUp/cheekPuff halves fitted apart: the GLB is off by exactly
    R sum_halves (w_half - mean) mode_half (ARKit has one shape for both)."""
    pytest.importorskip("pygltflib")
    import gltf_eval as ge

    from emoca.io.mesh import split_uv_seams

    names = whole_head.expression_names
    e = _symmetric_expression(names, seed=6)
    e[names.index("browInnerUp_L")], e[names.index("browInnerUp_R")] = 0.9, 0.1
    mesh, params, arkit = _rigged_face(whole_head, e)
    from emoca.face_model.arkit import ARKIT_NAMES

    assert arkit[ARKIT_NAMES.index("browInnerUp")] == pytest.approx(0.5)
    gltf = ge.load(_write_face(tmp_path, mesh))
    vi, _, _ = split_uv_seams(mesh.faces.numpy(), mesh.uv_faces.numpy())
    modes = whole_head.expression_modes.double().numpy()
    resid = 0.4 * modes[names.index("browInnerUp_L")] - 0.4 * modes[names.index("browInnerUp_R")]
    rot = mesh.rig.rotation
    got = ge.mesh_vertices(gltf, 0.0)
    want = mesh.vertices.double().numpy()[vi] - (resid @ rot.T)[vi]
    np.testing.assert_allclose(got, want * 0.01, atol=2e-7)
    assert np.abs(resid).max() > 0.1  # cm: the halves really differ


def test_sparse_targets_read_back_as_the_dense_ones(rigged_glb, tmp_path):
    import dataclasses

    import gltf_eval as ge

    from emoca.io.gltf import write_animated_glb
    from emoca.pipeline.fit_export import gltf_mesh

    path, mesh, _, _ = rigged_glb
    dense = write_animated_glb(tmp_path / "dense.glb",
                               dataclasses.replace(gltf_mesh(mesh), sparse_targets=False))
    a, b = ge.load(path), ge.load(dense)
    accs = _glb_json(path)["accessors"]
    n_sparse = 0
    for ta, tb in zip(a.meshes[0].primitives[0].targets, b.meshes[0].primitives[0].targets,
                      strict=True):
        acc = accs[ta["POSITION"]]
        n_sparse += "sparse" in acc
        np.testing.assert_array_equal(ge.accessor(a, ta["POSITION"]),
                                      ge.accessor(b, tb["POSITION"]))
    assert n_sparse == 51  # tongueOut moves nothing: no data at all (glTF zeros)
    assert path.stat().st_size < 0.7 * dense.stat().st_size


def test_fit_glb_loads_in_trimesh_with_its_texture(rigged_glb):
    import trimesh

    path, mesh, _, _ = rigged_glb
    tm = trimesh.load(path, process=False, force="mesh")
    mat = tm.visual.material
    assert mat.baseColorTexture is not None and mat.baseColorTexture.size == (64, 64)
    assert mat.metallicFactor == 0.0 and mat.roughnessFactor == pytest.approx(0.8)
    ext = tm.vertices.max(0) - tm.vertices.min(0)
    assert 0.15 < ext[1] < 0.4  # metres


@pytest.mark.skipif(shutil.which("node") is None
                    or not (GLTF_TOOLS / "node_modules" / "gltf-validator").is_dir()
                    or not (GLTF_TOOLS / "node_modules" / "three").is_dir(),
                    reason="Khronos glTF Validator / three.js not installed (make node)")
def test_fit_glb_passes_the_validator_and_three_js_shows_the_fitted_head(rigged_glb,
                                                                         tmp_path):
    from emoca.io.mesh import split_uv_seams

    path, mesh, _, _ = rigged_glb
    run = subprocess.run(["node", str(GLTF_TOOLS / "validate.mjs"), str(path)],
                         capture_output=True, text=True, timeout=120)
    report = json.loads(run.stdout.splitlines()[0])
    assert run.returncode == 0 and report["errors"] == 0, report
    assert report["warnings"] == 0, report
    # three.js: the default weights (mesh.weights) and the node rotation applied
    subprocess.run(["node", str(GLTF_TOOLS / "check.mjs"), str(path), str(tmp_path / "t")],
                   check=True, timeout=120)
    info = json.loads((tmp_path / "t.json").read_text())
    verts = np.fromfile(tmp_path / "t.f32", np.float32).reshape(info["vertices"], 3)
    vi, _, _ = split_uv_seams(mesh.faces.numpy(), mesh.uv_faces.numpy())
    assert info["morphTargets"] == 52
    np.testing.assert_allclose(verts, mesh.vertices.numpy()[vi] * 0.01, atol=1e-6)
