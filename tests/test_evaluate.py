"""Evaluation (Table 1) and the prepare / train / evaluate commands end to end on data in
AffectNet's layout (look-alike FLAME faces pasted into larger photos, rule labels)."""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import map_coordinates
from test_train import base_model, model_root, render_faces, rule_labels  # noqa: F401

from emoca.data import FaceCropDataset
from emoca.data.affectnet import AFFECTNET_COLUMNS
from emoca.train.evaluate import (
    TABLE1_COLUMNS,
    EmotionPredictions,
    EvaluationReport,
    table1_metrics,
)

N_FACES = 8


def cli(name: str, argv: list[str]) -> int:
    mod = importlib.import_module(f"emoca.cli.{name}_cmd")
    parser = argparse.ArgumentParser()
    mod.add_arguments(parser)
    return mod.run(parser.parse_args(argv))


# ------------------------------------------------------------------------ metrics report


def _predictions(seed: int = 0, n: int = 40) -> EmotionPredictions:
    rng = np.random.default_rng(seed)
    gt_v, gt_a = rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)
    gt_e = rng.integers(0, 8, n)
    gt_e[:3] = -1
    gt_v[3:5] = np.nan
    logits = rng.normal(size=(n, 8))
    logits[np.arange(n), np.where(gt_e >= 0, gt_e, 0)] += rng.uniform(0, 2.5, n)
    return EmotionPredictions(keys=[f"k{i}" for i in range(n)], logits=logits,
                              valence=gt_v + rng.normal(0, 0.3, n),
                              arousal=0.5 * gt_a + rng.normal(0, 0.2, n),
                              gt_expression=gt_e, gt_valence=gt_v, gt_arousal=gt_a)


def test_table1_values_follow_their_definitions() -> None:
    p = _predictions()
    row, conf = table1_metrics(p)
    ok = np.isfinite(p.gt_valence) & np.isfinite(p.gt_arousal)
    for prefix, pred, gt in (("V", p.valence, p.gt_valence), ("A", p.arousal, p.gt_arousal)):
        x, y = pred[ok], gt[ok]
        assert row[f"{prefix}-PCC"] == pytest.approx(np.corrcoef(x, y)[0, 1])
        ccc = 2 * np.cov(x, y, bias=True)[0, 1] / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)
        assert row[f"{prefix}-CCC"] == pytest.approx(ccc)
        assert row[f"{prefix}-RMSE"] == pytest.approx(math.sqrt(np.mean((x - y) ** 2)))
        assert row[f"{prefix}-SAGR"] == pytest.approx(np.mean(np.sign(x) == np.sign(y)))
    lab = p.gt_expression >= 0
    pred_cls = p.logits.argmax(1)
    assert row["E-ACC"] == pytest.approx(np.mean(pred_cls[lab] == p.gt_expression[lab]))
    naive = np.zeros((8, 8), int)
    for t, q in zip(p.gt_expression[lab], pred_cls[lab], strict=True):
        naive[t, q] += 1
    assert np.array_equal(conf, naive)
    assert row["N-VA"] == ok.sum() and row["N-EXP"] == lab.sum()


def test_report_has_every_table1_column_in_all_formats(tmp_path: Path) -> None:
    report = EvaluationReport.from_predictions(
        {"image (emotion net)": _predictions(0), "3D codes (EmoMLP)": _predictions(1)},
        dataset="tiny")
    paths = report.write(tmp_path)
    md = paths["markdown"].read_text()
    header = next(line for line in md.splitlines() if line.startswith("| route"))
    for col in TABLE1_COLUMNS:
        assert f" {col} " in header
    assert "| image (emotion net) |" in md and "| 3D codes (EmoMLP) |" in md
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [r["route"] for r in rows] == ["image (emotion net)", "3D codes (EmoMLP)"]
    assert set(TABLE1_COLUMNS) <= set(rows[0])
    assert float(rows[1]["V-PCC"]) == pytest.approx(report.rows["3D codes (EmoMLP)"]["V-PCC"])
    js = json.loads(paths["json"].read_text())
    assert set(TABLE1_COLUMNS) <= set(js["routes"]["image (emotion net)"])
    assert np.array_equal(np.array(js["confusion"]["3D codes (EmoMLP)"]),
                          report.confusion["3D codes (EmoMLP)"])
    with Image.open(paths["confusion_3D codes (EmoMLP)"]) as im:
        arr = np.asarray(im.convert("RGB"))
    assert arr.shape[0] > 8 * 40 and arr.shape[1] > 8 * 40
    assert len(np.unique(arr.reshape(-1, 3), axis=0)) > 3  # drawn, not blank


# ------------------------------------------------------------------------------ prepare


def _write_affectnet(root: Path, model) -> tuple[Path, dict[str, dict]]:
    """A tiny AffectNet: photos with a rendered face at a known place, and its CSV."""
    g = torch.Generator().manual_seed(5)
    exp = torch.randn(N_FACES, 50, generator=g) * 1.5
    faces, lmk = render_faces(model, exp)
    cls, v, a = rule_labels(exp.numpy())
    (root / "images" / "7").mkdir(parents=True)
    truth = {}
    rows = []
    for i in range(N_FACES):
        canvas = np.full((300, 330, 3), 60, np.uint8)
        ox, oy = 30 + 7 * i, 40 + 3 * i
        canvas[oy:oy + 224, ox:ox + 224] = (faces[i].permute(1, 2, 0).numpy() * 255).round()
        rel = f"7/face{i}.png"
        Image.fromarray(canvas).save(root / "images" / rel)
        # values as the CSV holds them (rounded), so the expectations use the same numbers
        pts = np.round(lmk[i].numpy().astype(np.float64) + [ox, oy], 4)
        box = tuple(np.round([*pts.min(0), *(pts.max(0) - pts.min(0))], 3))  # x, y, w, h
        truth[rel] = {"landmarks": pts, "box": box, "image": canvas, "expression": int(cls[i])}
        rows.append([rel, *[f"{b:.3f}" for b in box],
                     ";".join(f"{c:.4f}" for c in pts.reshape(-1)), cls[i], v[i], a[i]])
    rows.append(["7/uncertain.png", 1, 1, 50, 50, "", 9, -2, -2])  # dropped by the reader
    rows.append(["7/missing.png", 1, 1, 50, 50, "", 2, 0.1, 0.2])  # no such file
    csv_path = root / "training.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(AFFECTNET_COLUMNS)
        w.writerows(rows)
    return csv_path, truth


@pytest.fixture(scope="module")
def affectnet(tmp_path_factory: pytest.TempPathFactory, base_model) -> dict:  # noqa: F811
    root = tmp_path_factory.mktemp("affectnet")
    csv_path, truth = _write_affectnet(root, base_model)
    cache = root / "cache"
    assert cli("prepare", [str(cache), "--affectnet", str(csv_path), "--images",
                           str(root / "images"), "--no-progress"]) == 0
    return {"root": root, "csv": csv_path, "truth": truth, "cache": cache}


def test_prepare_crops_affectnet_boxes_the_deca_way(affectnet: dict) -> None:
    ds = FaceCropDataset(affectnet["cache"])
    assert len(ds) == N_FACES
    for i, entry in enumerate(ds.entries):
        t = affectnet["truth"][entry["key"]]
        x, y, w, h = t["box"]
        # DECA 'bbox' crop, written out: size (w+h)/2, centre 0.12 size lower, x1.25, int
        old = (w + h) / 2
        cx, cy = x + w / 2, y + h / 2 + 0.12 * old
        size = float(int(old * 1.25))
        k = 223 / size
        expected = (t["landmarks"] - [cx - size / 2, cy - size / 2]) * k
        np.testing.assert_allclose(np.array(entry["landmarks"]), expected, atol=1e-3)
        assert entry["expression"] == t["expression"]
        # crop pixels are bilinear samples of the photo at the mapped positions
        crop = (ds[i]["image"].permute(1, 2, 0).numpy() * 255).astype(np.float64)
        uv = np.array([[50, 60], [112, 112], [170, 90], [100, 180]], float)
        src = uv / k + [cx - size / 2, cy - size / 2]
        for c in range(3):
            ref = map_coordinates(t["image"][..., c].astype(np.float64), [src[:, 1], src[:, 0]],
                                  order=1)
            np.testing.assert_allclose(crop[uv[:, 1].astype(int), uv[:, 0].astype(int), c],
                                       ref, atol=1.01)


def test_prepare_resumes_and_remembers_failures(affectnet: dict) -> None:
    cache = affectnet["cache"]
    summary = json.loads((cache / "prepare_summary.json").read_text())
    assert summary["written"] == N_FACES and list(summary["failed"]) == ["7/missing.png"]
    args = [str(cache), "--affectnet", str(affectnet["csv"]), "--images",
            str(affectnet["root"] / "images"), "--no-progress"]
    first = sorted(p.name for p in (cache / "crops").iterdir())
    (cache / "crops" / first[0]).unlink()
    assert cli("prepare", args) == 0
    again = json.loads((cache / "prepare_summary.json").read_text())
    assert (again["written"], again["present"], again["skipped_failed"]) == (1, N_FACES - 1, 1)
    assert sorted(p.name for p in (cache / "crops").iterdir()) == first
    assert len(FaceCropDataset(cache)) == N_FACES


def test_prepare_folder_csv_uses_the_detector(tmp_path: Path, affectnet: dict) -> None:
    truth = affectnet["truth"]
    images = affectnet["root"] / "images"
    labels = tmp_path / "labels.csv"
    faces = {}
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "expression", "valence", "arousal"])
        for rel, t in list(truth.items())[:3]:
            w.writerow([str(images / rel), "happy", 0.5, -0.1])
            faces[str(images / rel)] = [{"landmarks": t["landmarks"].tolist()}]
        w.writerow([str(images / "7" / "face3.png"), "sad", "", ""])  # no face listed
    (tmp_path / "faces.json").write_text(json.dumps(faces))
    out = tmp_path / "cache"
    assert cli("prepare", [str(out), "--csv", str(labels), "--faces",
                           str(tmp_path / "faces.json"), "--no-progress"]) == 0
    ds = FaceCropDataset(out)
    assert len(ds) == 3 and all(e["expression"] == 1 for e in ds.entries)
    summary = json.loads((out / "prepare_summary.json").read_text())
    assert len(summary["failed"]) == 1 and "no face" in next(iter(summary["failed"].values()))
    # 'kpt68' crop: the landmarks' box, x1.1, centred, then x1.25
    pts = next(iter(truth.values()))["landmarks"]
    lo, hi = pts.min(0), pts.max(0)
    size = float(int((hi - lo).sum() / 2 * 1.1 * 1.25))
    c = (lo + hi) / 2
    expected = (pts - (c - size / 2)) * (223 / size)
    np.testing.assert_allclose(np.array(ds.entries[0]["landmarks"]), expected, atol=1e-3)


# ------------------------------------------------------------------ train + evaluate CLI


def test_train_and_evaluate_end_to_end_on_affectnet_layout(
        affectnet: dict, model_root: Path, base_model, tmp_path: Path) -> None:  # noqa: F811
    from emoca.assets.synthetic_checkpoints import write_emotion_net
    from emoca.model.emoca_model import Emoca

    write_emotion_net(model_root, seed=4)
    cache = str(affectnet["cache"])
    emoca_dir = str(model_root / "EMOCA" / "models" / "EMOCA")
    quick = ["trainer.progress_bar=false", "trainer.log_every_n_steps=1",
             "data.num_workers=0", "data.val_fraction=0.25", "--accelerator", "cpu"]
    emo_out = tmp_path / "emotion"
    assert cli("train", ["emotion", f"data.cache={cache}", "data.batch_size=2",
                         "data.val_batch_size=2", *quick, "--max-steps", "1",
                         "--out", str(emo_out)]) == 0
    mlp_out = tmp_path / "emomlp"
    assert cli("train", ["emomlp", f"data.cache={cache}", f"model.emoca={emoca_dir}",
                         "model.hidden_dim=64", "data.batch_size=4", *quick,
                         "--max-epochs", "2", "--assets", str(model_root),
                         "--out", str(mlp_out)]) == 0
    assert (mlp_out / "codes_train.npz").is_file()
    coarse_out = tmp_path / "coarse"
    assert cli("train", ["coarse", f"data.cache={cache}", f"model.emoca={emoca_dir}",
                         "data.batch_size=1", "data.val_batch_size=2",
                         "trainer.limit_val_batches=1", *quick, "--max-steps", "1",
                         "--assets", str(model_root), "--out", str(coarse_out)]) == 0
    trained = Emoca.from_pretrained(coarse_out / "model", assets=model_root)
    # base_model is the same file (its E_flame head was edited to frame the face; the
    # backbone was not): E_flame came back unchanged, E_expression trained
    original = base_model.E_flame.encoder.state_dict()
    for k, v in trained.E_flame.encoder.state_dict().items():
        assert torch.equal(original[k], v), k
    # E_expression's backbone started as E_flame's and took one Adam step (~lr per weight)
    step = (trained.E_expression.encoder.conv1.weight
            - trained.E_flame.encoder.conv1.weight).abs().max()
    assert 0 < float(step) < 1e-3
    assert not torch.equal(trained.E_expression.layers[2].weight,
                           base_model.E_expression.layers[2].weight)

    eval_out = tmp_path / "eval"
    assert cli("evaluate", [cache, "-o", str(eval_out), "--emotion-net", str(emo_out / "model"),
                            "--emomlp", str(mlp_out / "model"), "--codes",
                            str(mlp_out / "codes_train.npz"), "--no-progress"]) == 0
    js = json.loads((eval_out / "metrics.json").read_text())
    assert set(js["routes"]) == {"image (emotion net)", "3D codes (EmoMLP)"}
    for route in js["routes"].values():
        assert set(TABLE1_COLUMNS) <= set(route)
        assert route["N-EXP"] == N_FACES
        assert 0.0 <= route["E-ACC"] <= 1.0 and route["V-RMSE"] >= 0
    assert (eval_out / "report.md").is_file() and (eval_out / "metrics.csv").is_file()
    assert len(list(eval_out.glob("confusion_*.png"))) == 2
    preds = list(csv.DictReader((eval_out / "predictions_image__emotion_net_.csv").open()))
    assert len(preds) == N_FACES
