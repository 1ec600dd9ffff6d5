"""Datasets: ``--shard I/N``, ``emoca merge-shards``, the Parquet table and the Ray engine.

Independent references: the merged table is compared with the ``codes.npz`` files the
local runner wrote (read with numpy); shard runs and Ray runs are compared with one plain
local run over the same inputs (faces given by one boxes file, so every engine crops the
same faces); the shard partition is checked for disjointness and cover, and for keys that
do not depend on where the dataset is mounted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.cbook as cbook
import numpy as np
import pytest
import skimage.data
from clips import drift_origin, write_drifting_clip  # tests/clips.py
from PIL import Image

from emoca.assets.synthetic import write_official_assets
from emoca.assets.synthetic_checkpoints import write_emoca_model, write_emodeca_model
from emoca.cli import reconstruct_cmd
from emoca.errors import UsageError
from emoca.pipeline.merge import merge_outputs
from emoca.pipeline.shards import Shard, parse_shard, shard_keys, shard_of

pa = pytest.importorskip("pyarrow")

MODEL = "EMOCA_v2_lr_mse_20"
N_FRAMES = 5
pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")]


# ------------------------------------------------------------------ the partition
def test_parse_shard() -> None:
    assert parse_shard("3/8") == Shard(3, 8) and parse_shard(None) is None
    for bad in ("8/8", "1/0", "x", "-1/4", "1/2/3"):
        with pytest.raises(UsageError, match="--shard"):
            parse_shard(bad)


def test_partition_is_disjoint_covering_and_independent_of_the_mount(tmp_path: Path) -> None:
    rel = [f"set{k % 3}/img_{k:03d}.jpg" for k in range(200)]
    keys_a = shard_keys([tmp_path / "mnt" / "a" / "data" / r for r in rel])
    keys_b = shard_keys([Path("/scratch/elsewhere/data") / r for r in rel])
    assert list(keys_a.values()) == list(keys_b.values()) == rel
    n = 7
    shards = [{r for r in rel if Shard(i, n).keeps(r)} for i in range(n)]
    assert sum(len(s) for s in shards) == len(rel) and set().union(*shards) == set(rel)
    sizes = [len(s) for s in shards]
    assert min(sizes) > 0.4 * len(rel) / n, sizes  # statistical balance, not exact
    # adding files never moves the ones already assigned
    more = shard_keys([Path("/d") / r for r in rel + ["set9/new.jpg"]])
    assert all(shard_of(more[Path("/d") / r], n) == shard_of(r, n) for r in rel)


# ------------------------------------------------------------------ shared inputs
@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_official_assets(tmp_path_factory.mktemp("batch_assets"), seed=0,
                                 albedo="bfm", albedo_components=4)
    write_emoca_model(root, MODEL, seed=1, deca_seed=0)
    write_emodeca_model(root, seed=11, deca_seed=0)
    return root


def _grace() -> np.ndarray:
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        return np.array(Image.open(f).convert("RGB"))


ASTRONAUT_BOX = [175.0, 55.0, 305.0, 205.0]
GRACE_BOX = [160.0, 80.0, 360.0, 330.0]


#: a second, still "face" below the astronaut's (the networks need no real face): the
#: astronaut's box drifts left past its centre x (133) between frames 2 and 3, so the two
#: faces swap places left to right while their tracks (far apart in y) keep their ids
STILL_BOX = [113.0, 200.0, 153.0, 250.0]


def _clip_boxes(i: int) -> list[list[float]]:
    """Frame ``i``'s two faces: the astronaut's box (it moves against the drift), the still one."""
    x0, y0 = drift_origin(i)
    b = ASTRONAUT_BOX
    return [[b[0] - x0, b[1] - y0, b[2] - x0, b[3] - y0], STILL_BOX]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Photos (one face, two faces, none, unreadable), a 5-frame clip with two faces; a boxes
    file."""

    d = tmp_path_factory.mktemp("batch_inputs") / "data"
    (d / "a").mkdir(parents=True)
    (d / "b").mkdir()
    ast, grace = skimage.data.astronaut(), _grace()
    Image.fromarray(ast).save(d / "a" / "astronaut.png")
    h = max(ast.shape[0], grace.shape[0])
    pair = np.concatenate([np.pad(x, ((0, h - x.shape[0]), (0, 0), (0, 0)))
                           for x in (ast, grace)], axis=1)
    Image.fromarray(pair).save(d / "b" / "pair.png")
    Image.fromarray(grace).save(d / "b" / "grace.png")
    Image.fromarray(np.full((64, 80, 3), 128, np.uint8)).save(d / "a" / "blank.png")
    (d / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    faces: dict[str, list[dict[str, list[float]]]] = {
        "astronaut.png": [{"box": ASTRONAUT_BOX}], "grace.png": [{"box": GRACE_BOX}],
        "pair.png": [{"box": ASTRONAUT_BOX}, {"box": [GRACE_BOX[0] + 512, GRACE_BOX[1],
                                                      GRACE_BOX[2] + 512, GRACE_BOX[3]]}],
        "blank.png": []}
    write_drifting_clip(d / "clip.mp4", N_FRAMES)
    for i in range(N_FRAMES):
        listed = sorted(_clip_boxes(i), key=lambda b: b[0] + b[2])  # left to right
        faces[f"clip.mp4#{i}"] = [{"box": b} for b in listed]
    boxes = d.parent / "faces.json"
    boxes.write_text(json.dumps(faces))
    return d, boxes


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    reconstruct_cmd.add_arguments(parser)
    return reconstruct_cmd.run(parser.parse_args(argv))


def _argv(data: Path, boxes: Path, out: Path, root: Path, *extra: str) -> list[str]:
    return [str(data), "-o", str(out), "--assets", str(root), "--faces", str(boxes),
            "--batch-size", "3", "--save", "codes,landmarks", "--no-progress", *extra]


@pytest.fixture(scope="module")
def single(inputs, root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One plain local run, merged into codes.parquet: the reference table."""
    data, boxes = inputs
    out = tmp_path_factory.mktemp("single")
    assert _cli(_argv(data, boxes, out, root)) == 1  # broken.jpg fails
    merge_outputs(out)
    return out


def _table(path: Path) -> dict[str, np.ndarray]:
    from emoca.pipeline.table import read_table

    return read_table(path)


def _assert_same_table(a: dict[str, np.ndarray], b: dict[str, np.ndarray], atol: float
                       ) -> None:
    for k in ("source", "frame", "track_id", "face_index"):
        assert a[k].tolist() == b[k].tolist(), k
    # photo faces are batched across photos, and each engine or shard batches other photos
    # together: float32 landmarks near 240 px then differ in the last bit (1.5e-5 px), which
    # rtol lets through
    for k in ("shape", "exp", "pose", "cam", "light", "tex", "detail", "emotion_probs",
              "valence", "arousal", "box", "image_to_crop", "landmarks2d", "landmarks3d"):
        # rtol: a few float32 steps; engines batch different faces together, and pixel
        # coordinates near 240 are float32 numbers 1.5e-5 apart
        np.testing.assert_allclose(a[k], b[k], atol=atol, rtol=1e-6, err_msg=k)


# ------------------------------------------------------------------ local engine
def test_table_holds_what_the_face_folders_hold(single: Path, inputs) -> None:
    data, _ = inputs
    t = _table(single / "codes.parquet")
    srcs = t["source"].tolist()
    # 1 + 2 + 1 photo faces and two tracks of N_FRAMES frames; blank/broken have none
    assert srcs.count(str(data / "b" / "pair.png")) == 2 and len(srcs) == 4 + 2 * N_FRAMES
    assert np.all(np.isfinite(t["detail"])) and np.all(np.isfinite(t["valence"]))
    for i, src in enumerate(srcs):
        if t["frame"][i] < 0:
            face = single / Path(src).stem / f"face_{t['face_index'][i]}"
            with np.load(face / "codes.npz") as z:
                for k in z.files:
                    np.testing.assert_array_equal(t[k][i], z[k], err_msg=k)
            np.testing.assert_array_equal(t["landmarks2d"][i],
                                          np.load(face / "landmarks2d.npy"))
        else:
            with np.load(single / "clip" / f"track_{t['track_id'][i]}" / "codes.npz") as z:
                row = int(np.flatnonzero(z["frame"] == t["frame"][i])[0])
                for k in ("exp", "pose", "cam", "box", "landmarks2d", "valence"):
                    np.testing.assert_array_equal(t[k][i], z[k][row], err_msg=k)
                np.testing.assert_array_equal(t["jaw_pose"][i], z["pose"][row, 3:])
    # video faces are numbered as photo faces: their place left to right in their frame,
    # known from the boxes given (the tracks keep their ids as the faces swap places)
    video = np.flatnonzero(t["frame"] >= 0)
    centre_x = (t["box"][video, 0] + t["box"][video, 2]) / 2
    expected = [sorted((b[0] + b[2]) / 2 for b in _clip_boxes(int(t["frame"][i]))).index(x)
                for i, x in zip(video, centre_x, strict=True)]
    assert t["face_index"][video].tolist() == expected
    by_track = {int(k): t["face_index"][video][t["track_id"][video] == k].tolist()
                for k in np.unique(t["track_id"][video])}
    assert sorted(by_track.values()) == [[0, 0, 0, 1, 1], [1, 1, 1, 0, 0]], by_track
    summary = json.loads((single / "summary.json").read_text())
    assert list(summary["failed"]) == [str(data / "b" / "broken.jpg")]
    assert summary["no_face"] == [str(data / "a" / "blank.png")]


def test_shards_merge_to_the_single_run(single: Path, inputs, root: Path,
                                       tmp_path: Path) -> None:
    data, boxes = inputs
    out = tmp_path / "sharded"
    rcs = [_cli(_argv(data, boxes, out, root, "--shard", f"{i}/3")) for i in range(3)]
    assert 1 in rcs  # the shard holding broken.jpg reports it
    summaries = sorted(p.name for p in out.glob("summary*.json"))
    assert summaries == [f"summary.shard-000{i}-of-0003.json" for i in range(3)]
    merged = merge_outputs(out)
    assert merged["missing_shards"] == [] and list(merged["failed"]) == [
        str(data / "b" / "broken.jpg")]
    _assert_same_table(_table(out / "codes.parquet"), _table(single / "codes.parquet"),
                       atol=1e-5)
    # every shard processed something, and the same folders as one run exist
    per_shard = [json.loads((out / s).read_text()) for s in summaries]
    assert sum(len(s["written"]) for s in per_shard) == len(merged["written"])
    assert sorted(p.relative_to(out) for p in out.glob("*/*/done.json")) == \
        sorted(p.relative_to(single) for p in single.glob("*/*/done.json"))


def test_merge_names_a_missing_shard(single: Path, inputs, root: Path, tmp_path: Path
                                     ) -> None:
    data, boxes = inputs
    out = tmp_path / "partial"
    _cli(_argv(data, boxes, out, root, "--shard", "1/2", "--mode", "coarse"))
    merged = merge_outputs(out)
    assert merged["missing_shards"] == ["0/2"] and merged["ok"] is False


# ------------------------------------------------------------------ the Ray engine
@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    yield ray
    ray.shutdown()


def _ray(data, boxes, out, root, **kw):
    from emoca.pipeline.ray_engine import RayOptions, run_ray

    opts = RayOptions(model=MODEL, assets=str(root), faces=str(boxes), detector="file",
                      batch_size=3, device="cpu", progress=False, workers=1, threads=1,
                      **kw)
    return run_ray([data], out, opts)


def test_ray_table_equals_the_local_runner(ray_cluster, single: Path, inputs, root: Path,
                                           tmp_path: Path) -> None:
    data, boxes = inputs
    out = tmp_path / "ray"
    s = _ray(data, boxes, out, root, inputs_per_shard=2)
    parts = sorted(p.name for p in (out / "table").glob("*.parquet"))
    assert parts == [f"part-0000{j}.parquet" for j in range(3)]  # 6 inputs, 2 per part
    assert list(s.failed) == [str(data / "b" / "broken.jpg")]
    assert s.no_face == [str(data / "a" / "blank.png")] and s.table_rows == 4 + 2 * N_FRAMES
    _assert_same_table(_table(out / "table"), _table(single / "codes.parquet"), atol=2e-5)
    assert not list(out.glob("*/face_*"))  # per-face files only when asked
    # a re-run skips the finished parts; the one holding broken.jpg is redone
    again = _ray(data, boxes, out, root, inputs_per_shard=2)
    assert len(again.skipped) == 2 and len(again.written) == 1


def test_ray_shards_and_listing(ray_cluster, single: Path, inputs, root: Path,
                                tmp_path: Path) -> None:
    """Two --shard halves into one folder merge to the local table; a CSV listing gives
    boxes (no detector) and labels."""
    from emoca.pipeline.shards import Shard

    data, boxes = inputs
    out = tmp_path / "ray_sharded"
    for i in range(2):  # with per-face files asked for
        _ray(data, boxes, out, root, inputs_per_shard=4, shard=Shard(i, 2),
             save="codes,landmarks")
    assert len(list((out / "table").glob("part-shard-*.parquet"))) == 2
    merged = merge_outputs(out)
    assert merged["missing_shards"] == []
    table = _table(out / "codes.parquet")
    _assert_same_table(table, _table(single / "codes.parquet"), atol=2e-5)
    # photo faces also got their folders, as the local runner writes them
    faces = sorted(p.parent.relative_to(out) for p in out.glob("*/face_*/done.json"))
    assert faces == sorted(p.parent.relative_to(single)
                           for p in single.glob("*/face_*/done.json"))
    for i in np.flatnonzero(table["frame"] < 0):
        with np.load(out / Path(table["source"][i]).stem / f"face_{table['face_index'][i]}"
                     / "codes.npz") as z:
            np.testing.assert_array_equal(z["exp"], table["exp"][i])

    listing = tmp_path / "listing.csv"
    g = GRACE_BOX
    listing.write_text("path,x0,y0,x1,y1,label\n"
                       f"{data / 'b' / 'pair.png'},{g[0] + 512},{g[1]},{g[2] + 512},{g[3]},2\n"
                       f"{data / 'b' / 'pair.png'},{','.join(map(str, ASTRONAUT_BOX))},2\n"
                       f"{data / 'a' / 'astronaut.png'},{','.join(map(str, ASTRONAUT_BOX))},"
                       "happy\n")
    from emoca.pipeline.ray_engine import RayOptions, run_ray

    out2 = tmp_path / "ray_listing"
    run_ray([listing], out2, RayOptions(model=MODEL, assets=str(root), detector="none",
                                        batch_size=3, device="cpu", progress=False,
                                        workers=1, threads=1))
    t, ref = _table(out2 / "table"), _table(single / "codes.parquet")
    keep = [i for i, s in enumerate(ref["source"]) if s in set(t["source"].tolist())]
    _assert_same_table(t, {k: v[keep] for k, v in ref.items()}, atol=2e-5)
    assert [json.loads(x)["label"] for x in t["labels"]] == ["happy", "2", "2"]


def test_killed_ray_job_resumes_without_loss(single: Path, inputs, root: Path,
                                             tmp_path: Path) -> None:
    """SIGKILL the whole job (driver, local cluster, workers) once a part is on disk; the
    re-run keeps the finished parts and the table equals the local one."""
    data, boxes = inputs
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "emoca.cli.main", "reconstruct", *_argv(
        data, boxes, out, root, "--engine", "ray", "--inputs-per-shard", "1",
        "--workers", "1")]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a cluster of its own
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.Popen(cmd, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if len(list((out / "table").glob("part-*.json"))) >= 1:
                break
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done_before = len(list((out / "table").glob("part-*.json")))
    assert 1 <= done_before < 6, proc.stderr.read().decode()[-2000:]
    assert not list((out / "table").glob(".*.part"))  # nothing half-written left visible
    rc = _cli([*_argv(data, boxes, out, root, "--engine", "ray", "--inputs-per-shard", "1",
                      "--workers", "1")])
    assert rc == 1  # broken.jpg
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["skipped"]) >= done_before - 1  # broken.jpg's part is redone
    _assert_same_table(_table(out / "table"), _table(single / "codes.parquet"), atol=2e-5)
