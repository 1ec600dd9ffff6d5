"""Official checkpoint loading: key tables, skip lists, errors, best-checkpoint choice, our format.

The look-alike files are written by ``emoca.assets.synthetic_checkpoints`` with key names
listed there from the official layer definitions; the expected values below are read back
with ``torch.load(weights_only=True)`` (an independent reader) or regenerated from the
writer's seeds, never taken from the loader under test.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from emoca.assets.synthetic_checkpoints import (
    CHECKPOINT_LOSSES,
    EMOCA_MODEL_NAMES,
    deca_state_dicts,
    lightning_callback_importable,
    write_deca_model,
    write_emoca_model,
    write_emodeca_model,
    write_emotion_net,
)
from emoca.io.safe_pickle import UnsafePickleError
from emoca.model.checkpoints import (
    best_checkpoint,
    load_deca_tar,
    load_emoca_folder,
    load_emodeca,
    load_emotion_net,
    resolve_author_path,
)
from emoca.model.weights import (
    CheckpointKeyError,
    CheckpointShapeError,
    load_pretrained,
    save_pretrained,
)

BEST_LOSS = min(loss for _, loss in CHECKPOINT_LOSSES)
# A few keys from each part of the networks (stem, a downsample branch, the head, decoder)
SAMPLE_KEYS = ("encoder.conv1.weight", "encoder.layer3.0.downsample.1.running_var",
               "encoder.layer4.2.bn3.num_batches_tracked", "layers.2.bias")
DECODER_KEYS = ("l1.0.weight", "conv_blocks.19.running_mean", "conv_blocks.21.bias")
# training-only/buffer keys the look-alike EMOCA checkpoints carry
EXTRA_PREFIXES = ("deca.flame.", "deca.render.", "deca.perceptual_loss.", "deca.id_loss.")
EXTRA_KEYS = ("deca.uv_face_eye_mask", "deca.fixed_uv_dis")


def raw_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's state dict via torch's own restricted loader (independent reader)."""
    # torch's weights_only loader must be told about the callback class used as a dict key
    with lightning_callback_importable() as cls, torch.serialization.safe_globals([cls]):
        return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ckpt_assets")
    write_deca_model(root / "DECA" / "data" / "deca_model.tar", seed=0)
    for k, name in enumerate(EMOCA_MODEL_NAMES):
        write_emoca_model(root, name, seed=1 + k, deca_seed=0)
    write_emotion_net(root, seed=10)
    write_emodeca_model(root, seed=11, deca_seed=0)
    return root


def copy_model(src: Path, dst: Path) -> Path:
    """A model folder with only cfg.yaml and the best checkpoint (editable by a test)."""
    best = best_checkpoint(src / "detail" / "checkpoints")
    rel = best.relative_to(src)
    (dst / rel).parent.mkdir(parents=True)
    shutil.copy(src / "cfg.yaml", dst / "cfg.yaml")
    shutil.copy(best, dst / rel)
    return dst / rel


def rewrite(path: Path, edit) -> None:
    with lightning_callback_importable() as cls, torch.serialization.safe_globals([cls]):
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        edit(ckpt["state_dict"])
        torch.save(ckpt, path)


# --------------------------------------------------------------------------------- DECA


@pytest.mark.parametrize("legacy", [False, True])
def test_deca_tar_reads_back_what_was_written(tmp_path: Path, legacy: bool) -> None:
    path = write_deca_model(tmp_path / "deca_model.tar", seed=5, legacy=legacy)
    modules = load_deca_tar(path)
    written = deca_state_dicts(seed=5)
    assert set(modules) == {"E_flame", "E_detail", "D_detail"}
    for name in ("E_flame", "E_detail"):
        assert list(modules[name]) == list(written[name])
        for key in SAMPLE_KEYS:
            assert torch.equal(modules[name][key], written[name][key]), (name, key)
            assert modules[name][key].dtype == written[name][key].dtype
    assert modules["E_flame"]["layers.2.weight"].shape == (236, 1024)
    assert modules["E_detail"]["layers.2.weight"].shape == (128, 1024)
    for key in DECODER_KEYS:
        assert torch.equal(modules["D_detail"][key], written["D_detail"][key])
    assert modules["D_detail"]["l1.0.weight"].shape == (8192, 181)


def test_deca_tar_with_an_unknown_entry_fails_naming_it(tmp_path: Path) -> None:
    sd = deca_state_dicts(seed=0)
    sd["E_albedo"] = {"w": torch.zeros(1)}
    torch.save(sd, tmp_path / "deca_model.tar")
    with pytest.raises(CheckpointKeyError, match="E_albedo"):
        load_deca_tar(tmp_path / "deca_model.tar")


# -------------------------------------------------------------------------------- EMOCA


@pytest.mark.parametrize("name", EMOCA_MODEL_NAMES)
def test_emoca_folder_maps_every_key(root: Path, name: str) -> None:
    folder = root / "EMOCA" / "models" / name
    cfg, modules = load_emoca_folder(folder)
    assert set(modules) == {"E_flame", "E_expression", "E_detail", "D_detail"}
    chosen = Path(cfg["checkpoint"])
    assert chosen.name == f"dataloader_idx_0={BEST_LOSS:.8f}.ckpt"
    raw = raw_state_dict(chosen)
    # every key of the file is either routed to a module or one of the known extras
    routed = {f"deca.{m}.{k}" for m, sd in modules.items() for k in sd}
    extras = {k for k in raw if k.startswith(EXTRA_PREFIXES) or k in EXTRA_KEYS}
    assert routed | extras == set(raw) and not routed & extras
    assert len(extras) >= 6  # the skip list was exercised
    for module in ("E_flame", "E_expression", "E_detail"):
        for key in SAMPLE_KEYS:
            assert torch.equal(modules[module][key], raw[f"deca.{module}.{key}"])
    for key in DECODER_KEYS:
        assert torch.equal(modules["D_detail"][key], raw[f"deca.D_detail.{key}"])
    # EMOCA keeps DECA's coarse encoder; its own expression encoder differs
    deca = deca_state_dicts(seed=0)["E_flame"]
    assert torch.equal(modules["E_flame"]["layers.2.weight"], deca["layers.2.weight"])
    assert not torch.equal(modules["E_expression"]["encoder.conv1.weight"],
                           modules["E_flame"]["encoder.conv1.weight"])
    assert modules["E_expression"]["layers.2.weight"].shape == (50, 1024)
    # author paths now point into the assets folder; inout into the model folder
    model = cfg["detail"]["model"]
    assert model["flame_model_path"] == str(root / "FLAME/geometry/generic_model.pkl")
    assert model["pretrained_modelpath"] == str(root / "DECA/data/deca_model.tar")
    assert cfg["detail"]["inout"]["checkpoint_dir"] == str(folder / "detail" / "checkpoints")
    assert ("flame_mediapipe_lmk_embedding_path" in model) == name.startswith("EMOCA_v2")
    assert model["exp_deca_jaw_pose"] is False and model["exp_deca_global_pose"] is False


@pytest.mark.parametrize(("jaw", "glob", "width"), [(True, False, 53), (False, True, 53),
                                                     (True, True, 56)])
def test_expression_encoder_width_follows_the_config(tmp_path: Path, jaw: bool, glob: bool,
                                                     width: int) -> None:
    folder = write_emoca_model(tmp_path, "EMOCA", exp_deca_jaw_pose=jaw,
                               exp_deca_global_pose=glob)
    _, modules = load_emoca_folder(folder)
    assert modules["E_expression"]["layers.2.weight"].shape == (width, 1024)


def test_renamed_key_fails_naming_both_names(root: Path, tmp_path: Path) -> None:
    ckpt = copy_model(root / "EMOCA" / "models" / "EMOCA", tmp_path / "EMOCA")

    def rename(sd):
        sd["deca.E_detail.layer.0.weight"] = sd.pop("deca.E_detail.layers.0.weight")

    rewrite(ckpt, rename)
    with pytest.raises(CheckpointKeyError) as err:
        load_emoca_folder(tmp_path / "EMOCA", assets_root=tmp_path)
    assert "deca.E_detail.layer.0.weight" in str(err.value)
    assert "deca.E_detail.layers.0.weight" in str(err.value)


def test_key_outside_the_tables_fails_naming_it(root: Path, tmp_path: Path) -> None:
    ckpt = copy_model(root / "EMOCA" / "models" / "EMOCA", tmp_path / "EMOCA")
    rewrite(ckpt, lambda sd: sd.__setitem__("deca.E_mica.weight", torch.zeros(3)))
    with pytest.raises(CheckpointKeyError, match=r"deca\.E_mica\.weight"):
        load_emoca_folder(tmp_path / "EMOCA", assets_root=tmp_path)


def test_missing_key_fails_naming_it(root: Path, tmp_path: Path) -> None:
    ckpt = copy_model(root / "EMOCA" / "models" / "EMOCA_v2_mp", tmp_path / "m")
    rewrite(ckpt, lambda sd: sd.pop("deca.E_expression.encoder.layer2.1.bn2.running_var"))
    with pytest.raises(CheckpointKeyError,
                       match=r"deca\.E_expression\.encoder\.layer2\.1\.bn2\.running_var"):
        load_emoca_folder(tmp_path / "m", assets_root=tmp_path)


def test_missing_step_counter_is_tolerated(root: Path, tmp_path: Path) -> None:
    ckpt = copy_model(root / "EMOCA" / "models" / "EMOCA", tmp_path / "m")
    rewrite(ckpt, lambda sd: sd.pop("deca.E_flame.encoder.bn1.num_batches_tracked"))
    _, modules = load_emoca_folder(tmp_path / "m", assets_root=tmp_path)
    assert "encoder.bn1.num_batches_tracked" not in modules["E_flame"]


def test_shape_mismatch_names_key_and_both_shapes(root: Path, tmp_path: Path) -> None:
    ckpt = copy_model(root / "EMOCA" / "models" / "EMOCA", tmp_path / "m")
    rewrite(ckpt, lambda sd: sd.__setitem__("deca.D_detail.l1.0.bias", torch.zeros(4096)))
    with pytest.raises(CheckpointShapeError) as err:
        load_emoca_folder(tmp_path / "m", assets_root=tmp_path)
    message = str(err.value)
    assert "deca.D_detail.l1.0.bias" in message
    assert "(4096,)" in message and "(8192,)" in message


def test_network_the_config_does_not_have_is_an_error(root: Path, tmp_path: Path) -> None:
    copy_model(root / "EMOCA" / "models" / "EMOCA", tmp_path / "m")
    cfg = (tmp_path / "m" / "cfg.yaml").read_text().replace("deca_class: ExpDECA",
                                                             "deca_class: DECA")
    (tmp_path / "m" / "cfg.yaml").write_text(cfg)
    with pytest.raises(CheckpointKeyError, match="E_expression"):
        load_emoca_folder(tmp_path / "m", assets_root=tmp_path)


class Evil:
    """A class a malicious checkpoint could name; it must never be resolved."""


def test_unknown_globals_in_a_checkpoint_are_still_refused(root: Path, tmp_path: Path) -> None:
    ckpt = copy_model(root / "EMOCA" / "models" / "EMOCA", tmp_path / "m")
    torch.save({"state_dict": {}, "callbacks": {Evil: {}}}, ckpt)
    with pytest.raises(UnsafePickleError, match="Evil"):
        load_emoca_folder(tmp_path / "m", assets_root=tmp_path)


# --------------------------------------------------------------- best checkpoint, paths


def test_best_checkpoint_takes_the_lowest_loss_and_never_last(tmp_path: Path) -> None:
    for epoch, loss in ((1, 0.5), (4, 0.2), (9, 0.3)):
        p = tmp_path / f"deca-epoch={epoch:02d}-val_loss" / f"dataloader_idx_0={loss:.8f}.ckpt"
        p.parent.mkdir()
        p.write_bytes(b"")
    (tmp_path / "last.ckpt").write_bytes(b"")  # newest and lexically after the others
    (tmp_path / "notes=draft.ckpt").write_bytes(b"")  # no number: skipped
    assert best_checkpoint(tmp_path).name == "dataloader_idx_0=0.20000000.ckpt"
    assert best_checkpoint(tmp_path).parent.name == "deca-epoch=04-val_loss"


def test_only_last_ckpt_is_not_a_usable_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "last.ckpt").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="last.ckpt"):
        best_checkpoint(tmp_path)


@pytest.mark.parametrize(("author", "local"), [
    ("/ps/scratch/rdanecek/data/FLAME/geometry/generic_model.pkl",
     "FLAME/geometry/generic_model.pkl"),
    ("/home/rdanecek/Workspace/Repos/gdl/assets/FLAME/mask/uv_face_eye_mask.png",
     "FLAME/mask/uv_face_eye_mask.png"),
    ("/lustre/home/rdanecek/workspace/repos/DECA/data/deca_model.tar",
     "DECA/data/deca_model.tar"),
    ("C:\\Users\\x\\EMOCA\\assets\\FLAME\\geometry\\head_template.obj",
     "FLAME/geometry/head_template.obj"),
])
def test_author_paths_resolve_into_the_assets_folder(tmp_path: Path, author: str,
                                                     local: str) -> None:
    assert resolve_author_path(author, tmp_path) == tmp_path / local


def test_repeated_anchor_prefers_the_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "EMOCA" / "models" / "EMOCA" / "cfg.yaml"
    target.parent.mkdir(parents=True)
    target.write_text("x")
    author = "/is/cluster/rdanecek/EMOCA/models/EMOCA/cfg.yaml"
    assert resolve_author_path(author, tmp_path) == target
    assert resolve_author_path("/tmp/nothing/here.pkl", tmp_path) is None


# ---------------------------------------------------------------------- emotion networks


def test_emotion_net_skips_only_the_identity_classifier(root: Path) -> None:
    folder = root / "EmotionRecognition" / "image_based_networks" / "ResNet50"
    cfg, sd = load_emotion_net(folder)
    raw = raw_state_dict(Path(cfg["checkpoint"]))
    assert raw["backbone.fc.weight"].shape == (8631, 2048)
    assert set(raw) - set(sd) == {"backbone.fc.weight", "backbone.fc.bias"}
    for key in ("backbone.conv1.weight", "backbone.layer2.0.downsample.0.weight",
                "linear.weight", "linear.bias"):
        assert torch.equal(sd[key], raw[key])
    assert sd["linear.weight"].shape == (10, 2048)
    assert cfg["data"]["n_expression"] == 8


def test_emodeca_maps_nested_emoca_and_mlp(root: Path) -> None:
    folder = root / "EmotionRecognition" / "face_reconstruction_based" / "EMOCA-emorec"
    cfg, modules = load_emodeca(folder)
    assert set(modules) == {"E_flame", "E_expression", "E_detail", "D_detail", "mlp"}
    raw = raw_state_dict(Path(cfg["checkpoint"]))
    assert torch.equal(modules["mlp"]["model.0.weight"], raw["mlp.model.0.weight"])
    assert modules["mlp"]["model.0.weight"].shape == (2048, 153)
    assert modules["mlp"]["model.12.weight"].shape == (10, 2048)
    assert modules["mlp"]["model.10.running_var"].shape == (2048,)
    assert torch.equal(modules["E_expression"]["layers.2.bias"],
                       raw["deca.deca.E_expression.layers.2.bias"])
    skipped = set(raw) - {f"mlp.{k}" for k in modules["mlp"]} - {
        f"deca.deca.{m}.{k}" for m in modules if m != "mlp" for k in modules[m]}
    assert skipped and all(k.startswith(("deca.deca.flame.", "deca.deca.render.",
                                         "deca.deca.perceptual_loss.", "deca.deca.id_loss.",
                                         "deca.deca.uv_face_eye_mask",
                                         "deca.deca.fixed_uv_dis")) for k in skipped)


# --------------------------------------------------------------------------- our format


def test_safetensors_round_trip_is_exact(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2))
    with torch.no_grad():
        net[1].running_var.uniform_(0.5, 2.0)
        net[1].num_batches_tracked.fill_(1234)
    half = {"w": torch.randn(5, 3).half(), "idx": torch.arange(7)}
    config = {"name": "test", "arch": {"n_exp": 50, "flags": [True, False]}}
    save_pretrained(tmp_path / "saved", {"net": net, "extra": half}, config)
    cfg, modules = load_pretrained(tmp_path / "saved")
    assert cfg == config
    assert set(modules) == {"net", "extra"}
    for key, value in net.state_dict().items():
        assert modules["net"][key].dtype == value.dtype
        assert torch.equal(modules["net"][key], value), key
    assert modules["extra"]["w"].dtype == torch.float16
    assert torch.equal(modules["extra"]["w"], half["w"])
    assert torch.equal(modules["extra"]["idx"], half["idx"])


def test_module_names_with_dots_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no '.'"):
        save_pretrained(tmp_path, {"a.b": {"w": torch.zeros(1)}}, {})
