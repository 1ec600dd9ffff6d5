"""Training: configs, samplers, emotion losses, each stage's Lightning module, exact resume,
DDP on two CPU processes.

The data are made here: look-alike FLAME faces rendered with chosen expression codes, and
labels from a fixed rule of the expression (class = 2 [exp_0 > 0] + [exp_1 > 0],
valence = tanh(exp_0), arousal = tanh(exp_1)).
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from emoca.data import FaceCropDataset, FaceRecord, write_crop_cache
from emoca.nets import EmoMLP, EmotionNet
from emoca.nets.emotion_net import EmotionOutput
from emoca.train.config import (
    STAGES,
    ConfigError,
    default_config,
    load_config,
    packaged_config,
)
from emoca.train.data import (
    CodesDataModule,
    CodesDataset,
    CropDataModule,
    EpochSampler,
    GroupSampler,
    split_indices,
)
from emoca.train.emotion import EmotionModule, emotion_losses
from emoca.train.runner import build_trainer, fit

REPO = Path(__file__).resolve().parents[1]
CAM = (8.0, 0.0, 0.0)  # frames the look-alike head in the 224 crop


# ------------------------------------------------------------------------- data helpers


def rule_labels(exp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(class, valence, arousal) of (N, 50) expression codes by the fixed rule."""
    cls = 2 * (exp[:, 0] > 0).astype(np.int64) + (exp[:, 1] > 0).astype(np.int64)
    return cls, np.tanh(exp[:, 0]).astype(np.float32), np.tanh(exp[:, 1]).astype(np.float32)


def make_codes(n: int, seed: int) -> dict[str, np.ndarray]:
    """Look-alike FLAME codes (standard-normal shape and expression, small jaw) + labels."""
    rng = np.random.default_rng(seed)
    exp = rng.normal(size=(n, 50)).astype(np.float32)
    pose = np.zeros((n, 6), np.float32)
    pose[:, 3] = rng.uniform(0, 0.2, n)
    cls, v, a = rule_labels(exp)
    return {"shape": rng.normal(size=(n, 100)).astype(np.float32), "exp": exp, "pose": pose,
            "expression": cls, "valence": v, "arousal": a,
            "key": np.array([f"c{i}" for i in range(n)])}


def framing_light(n: int) -> torch.Tensor:
    light = torch.zeros(n, 9, 3)
    light[:, 0], light[:, 1], light[:, 3] = 2.0, 0.3, 0.6
    return light


def frame_camera(model) -> None:
    """Make E_flame predict the framing camera and light whatever the image (random
    look-alike weights would put a tiny face off-centre)."""
    with torch.no_grad():
        head = model.E_flame.layers[2]
        head.weight[206:236] = 0.0
        head.bias[206:209] = torch.tensor(CAM)
        head.bias[209:236] = framing_light(1).reshape(-1)


def render_faces(model, exp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, 224, 224) renders and (N, 68, 2) landmarks of look-alike FLAME faces."""
    from emoca.model.emoca_model import EmocaCodes

    n = exp.shape[0]
    codes = EmocaCodes(shape=torch.zeros(n, 100), tex=torch.zeros(n, 50), exp=exp,
                       pose=torch.zeros(n, 6), cam=torch.tensor([CAM] * n),
                       light=framing_light(n))
    with torch.no_grad():
        out = model.decode(codes, render=True, detail=False)
    return out.rendered.clamp(0, 1), out.landmarks2d


def write_face_cache(model, out: Path, n: int = 8, seed: int = 0, k: int = 4) -> Path:
    """A crop cache of ``n`` rendered faces, ``k`` per identity group, rule labels."""
    g = torch.Generator().manual_seed(seed)
    exp = torch.randn(n, 50, generator=g) * 1.5
    images, lmk = render_faces(model, exp)
    cls, v, a = rule_labels(exp.numpy())
    records = [FaceRecord(path=f"face{i}.png", key=f"face{i}", expression=int(cls[i]),
                          valence=float(v[i]), arousal=float(a[i]), group=f"id{i // k}")
               for i in range(n)]
    write_crop_cache(records, [(images[i], lmk[i].numpy()) for i in range(n)], out)
    return out


@pytest.fixture(scope="module")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from emoca.assets.synthetic import write_official_assets
    from emoca.assets.synthetic_checkpoints import write_emoca_model

    root = write_official_assets(tmp_path_factory.mktemp("train_assets"), seed=0)
    write_emoca_model(root, "EMOCA", seed=1, deca_seed=0)
    return root


@pytest.fixture(scope="module")
def base_model(model_root: Path):
    from emoca.model.emoca_model import Emoca

    model = Emoca.from_pretrained(model_root / "EMOCA" / "models" / "EMOCA", assets=model_root)
    frame_camera(model)
    return model


@pytest.fixture(scope="module")
def face_cache(base_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_face_cache(base_model, tmp_path_factory.mktemp("faces"), n=8)


def quiet_trainer(out: Path, **cfg):
    settings = {"max_epochs": 100, "accelerator": "cpu", "devices": 1, "progress_bar": False,
                "log_every_n_steps": 1, "val_check_interval": 1.0, **cfg}
    return build_trainer(settings, out, enable_model_summary=False)


# ------------------------------------------------------------------------------ configs


def test_config_files_hold_the_official_defaults() -> None:
    for stage in STAGES:
        on_disk = yaml.safe_load(packaged_config(stage).read_text())
        assert on_disk == default_config(stage), stage
    coarse = default_config("coarse")
    assert (coarse["loss"]["emotion"], coarse["loss"]["photometric"], coarse["loss"]["eye"],
            coarse["loss"]["lip"], coarse["loss"]["mouth_corner"],
            coarse["loss"]["expression_prior"]) == (1.0, 2.0, 0.5, 0.5, 0.5, 1e-4)
    assert coarse["optimizer"]["lr"] == 5e-5 and coarse["data"]["batch_size"] == 32
    emo = default_config("emotion")
    assert emo["optimizer"]["lr"] == 1e-4 and emo["data"]["batch_size"] == 64


def test_config_file_and_overrides_merge_and_typos_fail(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("stage: coarse\noptimizer:\n  lr: 1.0e-5\n")
    cfg = load_config("coarse", f, ["data.batch_size=8", "loss.eye=0", "trainer.devices=[0, 1]"])
    assert cfg["optimizer"]["lr"] == 1e-5 and cfg["data"]["batch_size"] == 8
    assert cfg["loss"]["eye"] == 0 and cfg["trainer"]["devices"] == [0, 1]
    assert cfg["loss"]["photometric"] == 2.0  # untouched default
    with pytest.raises(ConfigError, match="optimizer.lrr"):
        load_config("coarse", None, ["optimizer.lrr=1"])
    with pytest.raises(ConfigError, match="not 'detail'"):
        load_config("detail", f)


# ----------------------------------------------------------------------------- samplers


def test_samplers_are_deterministic_per_epoch_and_balanced() -> None:
    s = EpochSampler(10, seed=3)
    s.set_epoch(0)
    a = list(s)
    s.set_epoch(1)
    b = list(s)
    s.set_epoch(0)
    assert list(s) == a and sorted(a) == list(range(10)) and a != b
    s.skip_once(0, 4)
    assert list(s) == a[4:] and list(s) == a  # the skip applies once
    # balanced: class 0 has 90 items, class 1 has 10 -> drawn about equally often
    labels = [0] * 90 + [1] * 10
    from emoca.data.sampling import class_balanced_weights

    w = class_balanced_weights([FaceRecord("", str(i), expression=c)
                                for i, c in enumerate(labels)])
    draws = list(EpochSampler(100, weights=w, num_samples=4000, seed=0))
    frac1 = np.mean([labels[i] for i in draws])
    assert 0.45 < frac1 < 0.55
    g = GroupSampler([f"g{i // 3}" for i in range(12)] + ["solo"], k=2, seed=1)
    order = list(g)
    groups = [f"g{i // 3}" for i in range(12)] + ["solo"]
    assert len(order) == 10 and len(g) == 10
    for j in range(0, 10, 2):
        assert groups[order[j]] == groups[order[j + 1]]
    tr, va = split_indices(12, 0.25, 0, [f"g{i // 3}" for i in range(12)])
    assert {i // 3 for i in tr}.isdisjoint({i // 3 for i in va}) and len(va) == 3


# ---------------------------------------------------------------------- emotion losses


def test_emotion_losses_match_direct_formulas_and_shake_sums_to_one() -> None:
    torch.manual_seed(0)
    logits = torch.randn(6, 8)
    v, a = torch.randn(6), torch.randn(6)
    out = EmotionOutput(logits, v, a)
    expr = torch.tensor([0, 3, -1, 7, 1, 2])
    va = torch.randn(6, 2)
    va[4] = float("nan")
    w = {"expression": 1.0, "v_mse": 2.0, "a_mse": 0.0, "va_lccc": 1.0, "va_scheme": None}
    parts = emotion_losses(out, expr, va, w, training=True)
    keep = expr >= 0
    ce = F.cross_entropy(logits[keep], expr[keep])
    ok = torch.isfinite(va).all(1)
    mse_v = ((v[ok] - va[ok, 0]) ** 2).mean()

    def ccc1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # Bessel-corrected, as trained
        xm, ym = x - x.mean(), y - y.mean()
        r = (xm * ym).sum() / torch.sqrt((xm**2).sum() * (ym**2).sum())
        sx, sy = x.std(), y.std()
        return 2 * r * sx * sy / (sx**2 + sy**2 + (x.mean() - y.mean()) ** 2)

    lccc = 1 - (ccc1(v[ok], va[ok, 0]) + ccc1(a[ok], va[ok, 1])) / 2
    torch.testing.assert_close(parts["expression"], ce)
    torch.testing.assert_close(parts["v_mse"], mse_v)
    torch.testing.assert_close(parts["loss"], ce + 2 * mse_v + lccc)
    assert "a_mse" not in parts
    # shake: weights random per draw, summing to 1 over the configured V/A terms
    w["va_scheme"] = "shake"
    totals = []
    for seed in (0, 1):
        p = emotion_losses(out, expr, va, w, generator=torch.Generator().manual_seed(seed))
        totals.append(float(p["loss"] - p["expression"]))
        lo = min(float(p["v_mse"]), float(p["va_lccc"]))
        hi = max(float(p["v_mse"]), float(p["va_lccc"]))
        assert lo - 1e-6 <= totals[-1] <= hi + 1e-6  # a convex combination of the two
    assert totals[0] != totals[1]
    val = emotion_losses(out, expr, va, w, training=False)  # configured weights at validation
    torch.testing.assert_close(val["loss"], ce + 2 * mse_v + lccc)


# --------------------------------------------------------------------------- EmoMLP


def _mlp_module(hidden: int = 256, layers: int = 2, lr: float = 1e-3) -> EmotionModule:
    torch.manual_seed(0)
    return EmotionModule(EmoMLP(hidden_dim=hidden, num_layers=layers), "codes", lr=lr)


def _full_loss(module: EmotionModule, ds: CodesDataset) -> float:
    module.eval()
    with torch.no_grad():
        out = module.net(ds.features)
        return float(emotion_losses(out, ds.expression, ds.va, {**module.loss_weights,
                                                                "va_scheme": None})["loss"])


def test_emomlp_loss_goes_down_and_beats_chance_on_held_out_codes(tmp_path: Path) -> None:
    train, test = CodesDataset(make_codes(512, seed=0)), CodesDataset(make_codes(200, seed=1))
    module = _mlp_module()
    before = _full_loss(module, train)
    dm = CodesDataModule(train, val_fraction=0.1, batch_size=32, sampler="balanced_expr")
    fit(module, dm, quiet_trainer(tmp_path, max_steps=90))
    after = _full_loss(module, train)
    assert after < 0.7 * before
    with torch.no_grad():
        out = module.net(test.features)
    acc = float((out.expression == test.expression).float().mean())
    assert acc > 0.6, acc  # 4 classes: chance is 0.25
    v_corr = np.corrcoef(out.valence.numpy(), test.va[:, 0].numpy())[0, 1]
    assert v_corr > 0.5


def test_resumed_run_equals_uninterrupted_run(tmp_path: Path) -> None:
    ds = CodesDataset(make_codes(64, seed=2))

    def run(out: Path, max_steps: int, ckpt: str | None = None) -> EmotionModule:
        module = _mlp_module(hidden=32, layers=1)
        dm = CodesDataModule(ds, val_fraction=0.25, batch_size=16, sampler="balanced_expr")
        trainer = quiet_trainer(out, max_steps=max_steps, checkpoint_every_n_steps=4)
        fit(module, dm, trainer, ckpt_path=ckpt)
        return module

    whole = run(tmp_path / "a", 10)
    run(tmp_path / "b", 5)  # interrupted after 5 steps (3 per epoch: mid-epoch at 4)
    resumed = run(tmp_path / "b", 10, ckpt=str(tmp_path / "b/checkpoints/step-step=4.ckpt"))
    a, b = whole.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    fresh = _mlp_module(hidden=32, layers=1).state_dict()
    assert not torch.equal(fresh["net.model.0.weight"], a["net.model.0.weight"])


# ------------------------------------------------------------------- image emotion net


def test_emotion_net_training_lowers_the_loss_of_its_batch(face_cache: Path) -> None:
    torch.manual_seed(0)
    module = EmotionModule(EmotionNet(), "image",
                           {"expression": 1.0, "v_mse": 1.0, "a_mse": 1.0, "va_scheme": None},
                           lr=1e-4)
    ds = FaceCropDataset(face_cache)
    batch = {k: torch.stack([ds[i][k] for i in (0, 1)]) for k in ("image", "expression", "va")}
    opt = module.configure_optimizers()
    module.train()
    losses = []
    for _ in range(2):
        loss = module._step(batch, True)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[1] < losses[0], losses


# ---------------------------------------------------------------------- EMOCA stages


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_coarse_stage_trains_e_expression_only(base_model, face_cache: Path,
                                               tmp_path: Path) -> None:
    from emoca.train.coarse import CoarseStage

    model = copy.deepcopy(base_model)
    torch.manual_seed(0)
    emotion = EmotionNet()
    module = CoarseStage(model, emotion, lr=5e-5)
    flame_before, emotion_before = _state(model.E_flame), _state(emotion)
    # E_expression starts from E_flame's backbone; its head is its own
    for k, v in model.E_flame.encoder.state_dict().items():
        assert torch.equal(model.E_expression.encoder.state_dict()[k], v)
    exp_before = _state(model.E_expression)
    dm = CropDataModule(face_cache, val_fraction=0.0, batch_size=1, sampler="balanced_expr")
    trainer = quiet_trainer(tmp_path, max_steps=2, limit_val_batches=0)
    fit(module, dm, trainer)
    for k, v in model.E_flame.state_dict().items():  # weights and BN statistics
        assert torch.equal(v, flame_before[k]), k
    for k, v in emotion.state_dict().items():
        assert torch.equal(v, emotion_before[k]), k
    changed = {k for k, v in model.E_expression.state_dict().items()
               if not torch.equal(v, exp_before[k])}
    assert {"layers.2.weight", "encoder.conv1.weight", "encoder.bn1.running_mean"} <= changed
    logged = trainer.callback_metrics
    for term in ("emotion", "photometric", "eye", "lip", "mouth_corner", "expression_prior"):
        assert float(logged[f"train/{term}"]) > 0, term
    module.train()  # what Lightning calls: frozen networks must stay in eval mode
    assert model.E_expression.training and not model.E_flame.training
    assert not emotion.training


def test_detail_stage_trains_detail_networks_with_exchange(base_model, face_cache: Path,
                                                           tmp_path: Path) -> None:
    from emoca.train.detail import DetailStage

    model = copy.deepcopy(base_model)
    module = DetailStage(model, lr=1e-4, images_per_identity=2)
    frozen = {n: _state(getattr(model, n)) for n in ("E_flame", "E_expression")}
    trained = {n: _state(getattr(model, n)) for n in ("E_detail", "D_detail")}
    dm = CropDataModule(face_cache, val_fraction=0.0, batch_size=2, sampler="group",
                        images_per_identity=2)
    trainer = quiet_trainer(tmp_path, max_steps=1, limit_val_batches=0)
    fit(module, dm, trainer)
    for n, st in frozen.items():
        for k, v in getattr(model, n).state_dict().items():
            assert torch.equal(v, st[k]), (n, k)
    for n, st in trained.items():
        assert any(not torch.equal(v, st[k]) for k, v in getattr(model, n).state_dict().items())
    logged = trainer.callback_metrics
    assert {k for k in logged if k.startswith("train/")} == {
        "train/loss", "train/uv_l1", "train/z_reg", "train/z_diff", "train/z_sym"}
    assert float(logged["train/uv_l1"]) > 0


# ------------------------------------------------------------------------------- DDP


def test_ddp_with_two_cpu_processes_through_the_cli(tmp_path: Path) -> None:
    from emoca.train.data import save_codes

    codes = save_codes(tmp_path / "codes.npz", make_codes(96, seed=3))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "emoca.cli.train_cmd", "emomlp", f"data.codes={codes}",
           "data.batch_size=8", "model.hidden_dim=32", "model.num_layers=1",
           "trainer.progress_bar=false", "--accelerator", "cpu", "--devices", "2",
           "--strategy", "ddp", "--max-steps", "3", "--out", str(out)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world size 2" in proc.stdout, proc.stdout
    assert (out / "model" / "model.safetensors").is_file()
    from emoca.train.assemble import load_emomlp

    mlp, inputs = load_emomlp(str(out / "model"))
    assert inputs == ["shape", "exp", "jaw_pose"] and mlp.in_dim == 153
