"""Tests for emoca.data on tiny synthetic annotation files and crops written in tmp_path."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from emoca.data import (
    EXPRESSION_NAMES,
    FaceCropDataset,
    FaceRecord,
    class_balanced_weights,
    class_counts,
    parse_expression,
    read_afew_va,
    read_affectnet_csv,
    read_crop_index,
    read_label_csv,
    write_crop_cache,
)
from emoca.data.crop_cache import CROPS_DIR, INDEX_NAME

HEADER = (
    "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,"
    "expression,valence,arousal"
)


def _lmk_string(seed: int) -> tuple[str, np.ndarray]:
    pts = np.round(np.random.default_rng(seed).uniform(0, 300, (68, 2)), 2)
    return ";".join(f"{v:.2f}" for v in pts.reshape(-1)), pts


def _affectnet_csv(path: Path) -> dict[str, np.ndarray]:
    rows, pts = [], {}
    spec = [
        ("1/a.jpg", 1, 0.5, 0.25),
        ("1/b.jpg", 8, 0.1, 0.2),  # None -> dropped
        ("2/c.jpg", 9, -2, -2),  # Uncertain -> dropped
        ("2/d.jpg", 10, -2, -2),  # No-Face -> dropped
        ("3/e.jpg", 6, -0.75, 0.9),
        ("3/f.jpg", 2, -2, 0.3),  # valence not annotated -> dropped
        ("4/g.jpg", 7, 0.0, -0.1),
    ]
    for i, (rel, expr, v, a) in enumerate(spec):
        s, p = _lmk_string(i)
        pts[rel] = p
        rows.append(f"{rel},{10 + i},{20 + i},{100 + i},{110 + i},{s},{expr},{v},{a}")
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    return pts


def test_affectnet_reader_filters_and_parses(tmp_path):
    csv_path = tmp_path / "training.csv"
    pts = _affectnet_csv(csv_path)
    recs = read_affectnet_csv(csv_path)
    assert [r.path for r in recs] == ["1/a.jpg", "3/e.jpg", "4/g.jpg"]
    a, e, g = recs
    assert (a.expression, a.valence, a.arousal) == (1, 0.5, 0.25)
    assert e.expression_name == "Anger" and g.expression_name == "Contempt"
    assert a.box == (10.0, 20.0, 100.0, 110.0)
    assert a.landmarks.shape == (68, 2) and a.landmarks.dtype == np.float32
    np.testing.assert_allclose(a.landmarks, pts["1/a.jpg"], atol=1e-4)
    # x, y order: first pair of the string is point 0
    assert a.landmarks[0, 0] == pytest.approx(pts["1/a.jpg"][0, 0], abs=1e-4)

    every = read_affectnet_csv(csv_path, drop_invalid=False)
    assert len(every) == 7
    b, c = every[1], every[2]
    assert b.expression == -1 and b.valence == pytest.approx(0.1)
    assert c.expression == -1 and math.isnan(c.valence) and not c.has_va


def test_affectnet_reader_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("subDirectory_filePath,expression\n1/a.jpg,1\n")
    with pytest.raises(ValueError, match="missing columns"):
        read_affectnet_csv(bad)
    short = tmp_path / "short.csv"
    short.write_text(HEADER + "\n1/a.jpg,1,2,3,4,1.0;2.0;3.0,1,0.1,0.2\n")
    with pytest.raises(ValueError, match="line 2"):
        read_affectnet_csv(short)


def _afew_video(root: Path, video: str, n_frames: int, seed: int) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    frames, va = {}, []
    (root / video).mkdir(parents=True)
    for f in range(n_frames):
        v, a = int(rng.integers(-10, 11)), int(rng.integers(-10, 11))
        va.append((v, a))
        frames[f"{f:05d}"] = {
            "valence": v,
            "arousal": a,
            "landmarks": rng.uniform(0, 200, (68, 2)).tolist(),
        }
        Image.new("RGB", (4, 4)).save(root / video / f"{f:05d}.png")
    data = {"actor": "someone", "video_id": video, "frames": frames}
    (root / video / f"{video}.json").write_text(json.dumps(data))
    return va


def test_afew_va_reader(tmp_path):
    va1 = _afew_video(tmp_path, "001", 3, 0)
    va2 = _afew_video(tmp_path, "002", 2, 1)
    (tmp_path / "notes").mkdir()  # folders without an annotation are ignored
    recs = read_afew_va(tmp_path)
    keys = ["001/00000", "001/00001", "001/00002", "002/00000", "002/00001"]
    assert [r.key for r in recs] == keys
    assert recs[0].path == "001/00000.png" and recs[3].group == "002"
    got = [(r.valence, r.arousal) for r in recs]
    want = [(v / 10, a / 10) for v, a in va1 + va2]
    np.testing.assert_allclose(got, want)
    assert all(-1 <= r.valence <= 1 and r.landmarks.shape == (68, 2) for r in recs)
    assert all(r.expression == -1 for r in recs)

    (tmp_path / "001" / "00001.png").unlink()
    kept = read_afew_va(tmp_path, videos=["001"], check_images=True)
    assert [r.key for r in kept] == ["001/00000", "001/00002"]
    with pytest.raises(FileNotFoundError):
        read_afew_va(tmp_path, videos=["003"])


def test_label_csv_reader(tmp_path):
    lines = ["Path,Expression,valence,extra", "img/a.png,happy,0.5,x", "img/b.png,3,,y"]
    lines.append("img/c.png,,-0.25,z")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    recs = read_label_csv(tmp_path / "labels.csv")
    assert [r.expression for r in recs] == [1, 3, -1]
    assert recs[0].valence == 0.5 and math.isnan(recs[1].valence)
    assert all(math.isnan(r.arousal) for r in recs)  # no arousal column at all
    assert recs[0].path == str(tmp_path / "img/a.png") and recs[0].key == "img/a.png"
    other = read_label_csv(tmp_path / "labels.csv", image_root="/data")
    assert other[2].path == "/data/img/c.png"

    (tmp_path / "bad.csv").write_text("path,expression\na.png,joyful\n")
    with pytest.raises(ValueError, match="line 2"):
        read_label_csv(tmp_path / "bad.csv")
    (tmp_path / "nopath.csv").write_text("file,expression\na.png,1\n")
    with pytest.raises(ValueError, match="'path'"):
        read_label_csv(tmp_path / "nopath.csv")


def test_parse_expression():
    assert [parse_expression(n) for n in EXPRESSION_NAMES] == list(range(8))
    assert parse_expression("ANGRY") == 6 and parse_expression(" 4 ") == 4
    assert parse_expression(None) == -1 and parse_expression(float("nan")) == -1
    assert parse_expression(5.0) == 5
    for bad in (8, "9", "joy", 2.5):
        with pytest.raises(ValueError):
            parse_expression(bad)


def test_class_balanced_weights():
    labels = [0] * 6 + [1] * 3 + [4] * 1 + [-1] * 2
    recs = [FaceRecord(path=f"{i}", key=f"{i}", expression=e) for i, e in enumerate(labels)]
    counts = class_counts(recs)
    np.testing.assert_array_equal(counts, [6, 3, 0, 0, 1, 0, 0, 0])
    w = class_balanced_weights(recs)
    per_class = {c: w[[i for i, e in enumerate(labels) if e == c]].sum() for c in (0, 1, 4)}
    assert per_class[0] == pytest.approx(per_class[1]) == pytest.approx(per_class[4])
    assert w[-2:].tolist() == [0.0, 0.0]
    assert w.sum() == pytest.approx(10)
    # a sampler with these weights draws the three classes about equally often
    g = torch.Generator().manual_seed(0)
    draws = torch.multinomial(torch.tensor(w), 3000, replacement=True, generator=g)
    freq = np.bincount(np.array(labels)[draws.numpy()] % 8, minlength=8)[[0, 1, 4]] / 3000
    np.testing.assert_allclose(freq, 1 / 3, atol=0.05)


# ----------------------------------------------------------------------------- crop cache

SIZE = 8


def _records_and_crops(n: int = 3):
    rng = np.random.default_rng(5)
    recs, crops = [], []
    for i in range(n):
        recs.append(
            FaceRecord(
                path=f"dir{i}/img {i}.jpg",
                key=f"dir{i}/img {i}.jpg",
                expression=i % 8 if i != 1 else -1,
                valence=0.1 * i,
                arousal=float("nan") if i == 2 else -0.2,
                box=(1.0, 2.0, 3.0, 4.0),
                landmarks=rng.uniform(0, SIZE, (68, 2)).astype(np.float32) if i != 1 else None,
                group=f"g{i % 2}",
            )
        )
        crops.append(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))
    return recs, crops


def test_write_and_read_crop_cache(tmp_path):
    recs, crops = _records_and_crops()
    index = write_crop_cache(recs, crops, tmp_path / "cache", size=SIZE)
    assert index == tmp_path / "cache" / INDEX_NAME
    ds = FaceCropDataset(tmp_path / "cache")
    assert len(ds) == 3
    for i, (rec, crop) in enumerate(zip(recs, crops, strict=True)):
        item = ds[i]
        assert item["image"].shape == (3, SIZE, SIZE) and item["image"].dtype == torch.float32
        # PNG is lossless: the uint8 crop comes back exactly
        np.testing.assert_array_equal(
            np.rint(item["image"].permute(1, 2, 0).numpy() * 255).astype(np.uint8), crop
        )
        assert item["expression"].item() == rec.expression
        assert item["key"] == rec.key
        assert item["va"][0].item() == pytest.approx(rec.valence)
        if rec.landmarks is None:
            assert torch.isnan(item["landmarks"]).all() and item["landmarks"].shape == (68, 2)
        else:
            np.testing.assert_allclose(item["landmarks"].numpy(), rec.landmarks, atol=1e-5)
    assert math.isnan(ds[2]["va"][1].item())
    back = ds.records
    assert back[0].group == "g0" and back[0].box == (1.0, 2.0, 3.0, 4.0)
    assert Path(back[0].path).parent.name == CROPS_DIR

    # a second run over the same records rewrites nothing (the iterable is still consumed)
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache" / CROPS_DIR).iterdir()}
    write_crop_cache(recs, iter([np.zeros((1, 1, 3), np.uint8)] * 3), tmp_path / "cache", SIZE)
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes

    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch["image"].shape == (3, 3, SIZE, SIZE) and batch["va"].shape == (3, 2)
    assert len(FaceCropDataset(tmp_path / "cache", require=["expression"])) == 2
    assert len(FaceCropDataset(tmp_path / "cache", require=["va", "landmarks"])) == 1


def test_crop_cache_float_and_chw_inputs_and_landmark_pairs(tmp_path):
    recs, crops = _records_and_crops(2)
    chw = torch.tensor(crops[0]).permute(2, 0, 1).float() / 255.0
    hwc_float = crops[1].astype(np.float32) / 255.0
    new_lmk = np.full((68, 2), 3.5)
    write_crop_cache(recs, [chw, (hwc_float, new_lmk)], tmp_path, size=SIZE)
    ds = FaceCropDataset(tmp_path)
    for i in range(2):
        img = np.rint(ds[i]["image"].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        np.testing.assert_array_equal(img, crops[i])
    np.testing.assert_allclose(ds[1]["landmarks"].numpy(), new_lmk)
    with pytest.raises(ValueError, match="8x8"):
        write_crop_cache(recs[:1], [np.zeros((9, 8, 3), np.uint8)], tmp_path / "x", size=SIZE)


def _counting_crops(crops, recs, calls):
    """Crop callable that records which keys it was asked for."""
    keys = [r.key for r in recs]

    def fn(record: FaceRecord):
        calls.append(record.key)
        return crops[keys.index(record.key)]

    return fn


def test_crop_cache_is_resumable_and_atomic(tmp_path):
    recs, crops = _records_and_crops(3)
    out = tmp_path / "cache"
    calls: list[str] = []

    def failing(record: FaceRecord):
        calls.append(record.key)
        if record.key == recs[2].key:
            raise RuntimeError("crash while cropping")
        return crops[[r.key for r in recs].index(record.key)]

    with pytest.raises(RuntimeError):
        write_crop_cache(recs, failing, out, size=SIZE, flush_every=0)
    # the crash left the two finished PNGs and no (partial) index, no temporary files
    assert len(list((out / CROPS_DIR).glob("*.png"))) == 2
    assert not (out / INDEX_NAME).exists()
    assert not [p for p in out.rglob("*") if p.name.endswith(".part")]

    calls.clear()
    write_crop_cache(recs, _counting_crops(crops, recs, calls), out, size=SIZE)
    assert calls == [recs[2].key]  # only the missing crop was computed
    assert [e["key"] for e in read_crop_index(out)] == [r.key for r in recs]

    # deleting one PNG recomputes only that one; entries for other keys are kept
    png = out / read_crop_index(out)[0]["image"]
    png.unlink()
    calls.clear()
    write_crop_cache(recs[:1], _counting_crops(crops, recs, calls), out, size=SIZE)
    assert calls == [recs[0].key] and png.exists()
    assert sorted(e["key"] for e in read_crop_index(out)) == sorted(r.key for r in recs)

    extra = FaceRecord(path="z.jpg", key="z.jpg", expression=3)
    write_crop_cache([extra], [crops[0]], out, size=SIZE)
    assert len(FaceCropDataset(out)) == 4


def test_crop_cache_rejects_duplicate_keys_and_missing_cache(tmp_path):
    recs, crops = _records_and_crops(2)
    dup = [recs[0], recs[0]]
    with pytest.raises(ValueError, match="unique"):
        write_crop_cache(dup, crops, tmp_path, size=SIZE)
    with pytest.raises(ValueError, match="ran out"):
        write_crop_cache(recs, crops[:1], tmp_path / "short", size=SIZE)
    with pytest.raises(FileNotFoundError):
        FaceCropDataset(tmp_path / "nothing")
