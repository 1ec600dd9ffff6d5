"""`emoca assets synthetic DIR` writes the look-alike tree; `emoca reconstruct` runs on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emoca.assets.locate import Assets, MissingAssetError
from emoca.assets.synthetic_tree import PARTS, parse_models, parse_parts
from emoca.cli.main import main

pytestmark = pytest.mark.usefixtures("one_thread")

EMOCA_DEFAULT = "EMOCA_v2_lr_mse_20"


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic_tree")
    assert main(["assets", "synthetic", str(root)]) == 0
    return root


def test_default_tree_has_every_part_in_the_official_layout(tree: Path):
    assets = Assets(tree)
    assert assets.missing_required() == []
    for key in ("deca_model", "emoca_v2_lr_mse_20", "emotion_net", "albedo",
                "mediapipe_embedding"):
        assert assets.find(key) is not None, key
    for key in ("emoca", "emoca_v2_mp", "emoca_v2_lr_cos_1.5"):
        assert assets.find(key) is None, key  # only the default model unless asked
    model = tree / "EMOCA" / "models" / EMOCA_DEFAULT
    assert (model / "cfg.yaml").is_file()
    assert len(list((model / "detail" / "checkpoints").rglob("*.ckpt"))) == 4
    emo = tree / "EmotionRecognition"
    assert list((emo / "image_based_networks" / "ResNet50" / "checkpoints").rglob("*.ckpt"))
    heads = [p for p in (emo / "face_reconstruction_based").iterdir() if (p / "cfg.yaml").is_file()]
    assert [p.name for p in heads] == ["EMOCA-emorec"]
    assert list((heads[0] / "checkpoints").rglob("*.ckpt"))


def test_parts_and_models_can_be_chosen(tmp_path, capsys):
    assert main(["assets", "synthetic", str(tmp_path), "--only", "deca,emoca",
                 "--models", "EMOCA,EMOCA_v2_mp"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DECA", "EMOCA"]
    assert sorted(p.name for p in (tmp_path / "EMOCA" / "models").iterdir()) == [
        "EMOCA", "EMOCA_v2_mp"]
    assert f"--assets {tmp_path}" in capsys.readouterr().out
    # a bad part name is a usage error (exit 2) that names the choices, nothing written
    assert main(["assets", "synthetic", str(tmp_path / "x"), "--only", "flame,bogus"]) == 2
    err = capsys.readouterr().err
    assert "bogus" in err and "emodeca" in err and not (tmp_path / "x").exists()


def test_part_and_model_parsing():
    assert parse_parts(None) == PARTS == parse_parts("all")
    assert parse_parts("emotion, flame") == ("flame", "emotion")  # canonical order
    assert parse_models(None) == (EMOCA_DEFAULT,)
    assert len(parse_models("all")) == 4
    with pytest.raises(ValueError, match="EMOCA_v3"):
        parse_models("EMOCA_v3")


def test_same_model_gets_the_same_weights_whatever_else_is_written(tmp_path):
    import hashlib

    def digest(root: Path) -> str:
        ck = sorted((root / "EMOCA/models/EMOCA_v2_mp/detail/checkpoints").rglob("*.ckpt"))[0]
        return hashlib.sha256(ck.read_bytes()).hexdigest()

    assert main(["assets", "synthetic", str(tmp_path / "a"), "--only", "emoca",
                 "--models", "EMOCA_v2_mp"]) == 0
    assert main(["assets", "synthetic", str(tmp_path / "b"), "--only", "emoca",
                 "--models", "all"]) == 0
    assert digest(tmp_path / "a") == digest(tmp_path / "b")


def test_missing_asset_hint_names_commands_that_exist(tmp_path):
    with pytest.raises(MissingAssetError) as e:
        Assets(tmp_path).path("emoca_v2_lr_mse_20")
    msg = str(e.value)
    assert f"emoca assets download EMOCA_v2_lr_mse_20 --dir {tmp_path}" in msg
    assert f"emoca assets check {tmp_path}" in msg
    assert "emoca assets synthetic DIR" in msg and "--assets DIR" in msg
    # each command in the hint parses with the real CLI parser
    from emoca.assets.download import ARCHIVES
    from emoca.cli.main import build_parser

    parser = build_parser()
    parser.parse_args(["assets", "download", "EMOCA_v2_lr_mse_20", "--dir", str(tmp_path)])
    parser.parse_args(["assets", "check", str(tmp_path)])
    parser.parse_args(["assets", "synthetic", "DIR"])
    assert "EMOCA_v2_lr_mse_20" in ARCHIVES


def test_reconstruct_runs_on_the_synthetic_tree(tree: Path, tmp_path):
    skimage_data = pytest.importorskip("skimage.data")
    pytest.importorskip("mediapipe")
    from PIL import Image

    photo = tmp_path / "astronaut.jpg"
    Image.fromarray(skimage_data.astronaut()).save(photo, quality=95)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EMOCA_HOME": str(tmp_path / "no_home")}
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-m", "emoca.cli.main", "reconstruct", str(photo), "--assets",
         str(tree), "-o", str(out), "--mode", "coarse", "--no-progress"],
        capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == {} and len(summary["written"]) == 1
    face = Path(summary["written"][0])
    codes = dict(np.load(face / "codes.npz"))
    assert codes["shape"].shape[-1] == 100 and codes["exp"].shape[-1] == 50
    assert all(np.isfinite(v).all() for v in codes.values() if v.dtype.kind == "f")
    assert (face / "mesh_coarse.obj").is_file() and (face / "render_coarse.png").is_file()
    # emotion "auto" found the EmoDECA head the tree holds
    emotion = json.loads((face / "face.json").read_text())["emotion"]
    assert emotion["head"] == "codes:EMOCA-emorec"
    assert abs(sum(emotion["probabilities"].values()) - 1) < 1e-3
