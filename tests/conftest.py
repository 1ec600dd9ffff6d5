"""Shared fixtures: look-alike official assets written once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def fake_assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from emoca.assets.synthetic import write_official_assets

    return write_official_assets(tmp_path_factory.mktemp("assets"), seed=0)


@pytest.fixture(scope="session")
def flame(fake_assets: Path):
    from emoca.face_model.flame import FLAME

    g = fake_assets / "FLAME" / "geometry"
    return FLAME.from_file(g / "generic_model.pkl", g / "landmark_embedding.npy",
                           mediapipe_embedding=g / "mediapipe_landmark_embedding.npz",
                           template_obj=g / "head_template.obj")


@pytest.fixture(scope="session")
def ict_dir() -> Path:
    """The shared ICT-FaceKit folder when present (its npz loads fastest), else the copy
    that ships with the package."""
    path = SHARED / "ict-facekit"
    if path.exists():
        return path
    from emoca.assets.ict_facekit import packaged_ict_dir

    return packaged_ict_dir()


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module: on a small shared CPU two threads stall each other
    in the ResNet-50 convolutions (several times slower); restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
