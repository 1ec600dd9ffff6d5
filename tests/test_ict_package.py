"""The ICT-FaceKit copy that ships with the package: lossless format, lookup order, contents."""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import numpy as np
import pytest

from emoca.assets.ict_facekit import (
    PACKED_NAME,
    PackedFormatError,
    ict_model_dir,
    pack_modes,
    packaged_ict_dir,
    unpack_modes,
)
from emoca.assets.locate import MissingAssetError

SHARED_ICT = Path(__file__).resolve().parents[1].parent / "shared" / "ict-facekit"
REPO = Path(__file__).resolve().parents[1]


def _awkward_floats(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """float32 with every bit pattern class: normals, denormals, +-0, inf, NaN payloads."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2**32, size=shape, dtype=np.uint64).astype(np.uint32)
    a = bits.view(np.float32).copy()
    flat = a.reshape(-1)
    flat[:6] = np.array([0.0, -0.0, np.inf, -np.inf, 1e-45, -3e-39], dtype=np.float32)
    flat[6:8] = np.array([0x7FC00001, 0xFFA00000], dtype=np.uint32).view(np.float32)
    return a


def test_packed_round_trip_is_bit_exact(tmp_path):
    arrays = {
        "neutral": _awkward_floats((7, 3), 0),
        "identity_modes": _awkward_floats((2, 7, 3), 1),
        "expression_modes": _awkward_floats((3, 7, 3), 2),
        "identity_names": np.array(["identity000", "identity001"]),
        "expression_names": np.array(["jawOpen", "eyeBlink_L", "mouthSmile_R"]),
    }
    path = pack_modes(arrays, tmp_path / PACKED_NAME, preset=1)
    back = unpack_modes(path)
    for key in ("neutral", "identity_modes", "expression_modes"):
        assert back[key].dtype == np.float32 and back[key].shape == arrays[key].shape
        # compare bit patterns: NaN != NaN, and -0.0 == 0.0 would hide a sign loss
        assert np.array_equal(back[key].view(np.uint32), arrays[key].view(np.uint32)), key
    assert list(back["expression_names"]) == list(arrays["expression_names"])
    assert list(back["identity_names"]) == list(arrays["identity_names"])


def test_damaged_packed_files_are_clear_errors(tmp_path):
    bad = tmp_path / "x.xz"
    bad.write_bytes(b"not xz at all")
    with pytest.raises(PackedFormatError, match="x.xz"):
        unpack_modes(bad)
    bad.write_bytes(lzma.compress(b"EMOCA-SOMETHING-ELSE\n"))
    with pytest.raises(PackedFormatError, match="bad magic"):
        unpack_modes(bad)


def test_packaged_copy_is_complete_and_licensed():
    d = packaged_ict_dir()
    names = {p.name for p in d.iterdir()}
    assert {PACKED_NAME, "generic_neutral_mesh.obj.gz", "vertex_indices.json", "LICENSE",
            "README.md"} <= names
    assert "MIT" in (d / "LICENSE").read_text() or "Permission is hereby granted" in (
        d / "LICENSE").read_text()
    assert "github.com/ICT-VGL/ICT-FaceKit" in (d / "README.md").read_text()
    idx = json.loads((d / "vertex_indices.json").read_text())
    assert len(idx["expressions"]) == 53 and len(idx["idx_to_landmark_verts"]) == 68
    # the wheel takes package data from these globs
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = cfg["tool"]["setuptools"]["package-data"]["emoca.assets"]
    pkg = REPO / "src" / "emoca" / "assets"
    covered = {p.name for g in globs for p in pkg.glob(g)}
    assert names <= covered


def test_packaged_model_loads_and_equals_the_shared_npz():
    from emoca.face_model.ict import ICTFaceModel

    d = packaged_ict_dir()
    model = ICTFaceModel.from_dir(d, region="full")
    assert model.n_vertices == 26719 and model.n_identity == 100 and model.n_expression == 53
    assert model.landmark_indices.shape == (68,)
    if not SHARED_ICT.exists():
        pytest.skip("../shared/ict-facekit absent: only the load was checked")
    packed = unpack_modes(d / PACKED_NAME)
    with np.load(SHARED_ICT / "ict_facekit_modes.npz") as z:
        for key in ("neutral", "identity_modes", "expression_modes"):
            assert np.array_equal(packed[key].view(np.uint32), z[key].view(np.uint32)), key
        for key in ("identity_names", "expression_names"):
            assert list(packed[key]) == [str(s) for s in z[key]]
    shared = ICTFaceModel.from_dir(SHARED_ICT, region="full")
    for name in ("neutral", "identity_basis", "expression_basis", "faces", "uv_coords",
                 "uv_faces", "landmark_indices"):
        assert np.array_equal(getattr(model, name).numpy(), getattr(shared, name).numpy()), name
    assert model.expression_names == shared.expression_names


def test_lookup_order_explicit_then_assets_then_packaged(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOCA_HOME", str(tmp_path / "home"))
    # nothing in the assets folder: the packaged copy
    assert ict_model_dir() == packaged_ict_dir()
    assert ict_model_dir(None, tmp_path / "assets") == packaged_ict_dir()
    # <assets>/ICT-FaceKit wins over the packaged copy ($EMOCA_HOME or --assets)
    (tmp_path / "assets" / "ICT-FaceKit").mkdir(parents=True)
    assert ict_model_dir(None, tmp_path / "assets") == tmp_path / "assets" / "ICT-FaceKit"
    (tmp_path / "home" / "ICT-FaceKit").mkdir(parents=True)
    assert ict_model_dir() == tmp_path / "home" / "ICT-FaceKit"
    # an explicit path wins over everything
    assert ict_model_dir(tmp_path / "mine", tmp_path / "assets") == tmp_path / "mine"


def test_missing_packaged_copy_names_the_problem(tmp_path, monkeypatch):
    import emoca.assets.ict_facekit as mod

    monkeypatch.setattr(mod, "packaged_ict_dir", lambda: tmp_path / "gone")
    with pytest.raises(MissingAssetError, match="gone"):
        ict_model_dir(None, tmp_path / "assets")


def test_fit_cli_lookup_has_no_path_into_the_source_tree():
    text = (REPO / "src" / "emoca" / "cli" / "fit_cmd.py").read_text()
    assert "parents[" not in text and "shared" not in text
