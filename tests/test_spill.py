"""Tracks spilled to disk in chunks (:mod:`emoca.pipeline.spill`) and ``.npz`` files written
piece by piece (:mod:`emoca.io.npz_stream`).

Independent references: the spill's columns are compared with ``np.stack`` of the rows
appended; the streamed ``.npz`` with what ``np.savez`` writes for the whole arrays (member
bytes); a video run with a tiny spill chunk (3 or 5 rows, smaller than a batch, so chunks
and batches cut each other everywhere) with the same run keeping whole tracks in memory:
same ``codes.npz`` member bytes, ``track.json``, ``video.json`` and overlay frames. The
video runs replace the ResNet encoders with a cheap deterministic function of the crop
(spilling starts after them); FLAME, landmarks, the emotion head, smoothing, the writers
and the overlay are the real ones.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from clips import drift_origin, write_drifting_clip  # tests/clips.py

from emoca.io.npz_stream import write_npz_pieces
from emoca.pipeline.spill import RowSpill, track_chunks

MODEL = "EMOCA_v2_lr_mse_20"


def _rows(n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"frame": np.int64(3 * i), "time": np.float64(0.1 * i),
             "exp": rng.standard_normal(5).astype(np.float32),
             "m": rng.standard_normal((3, 3))} for i in range(n)]


def test_spill_reads_back_the_rows_appended(tmp_path: Path) -> None:
    rows = _rows(10)
    spill = RowSpill(tmp_path, "track_0.raw", limit=3)
    for r in rows:
        spill.append(r)
    files = sorted(tmp_path.glob(".*.spill.part"))
    assert len(files) == 3 and spill.buffered == 1  # 3 chunks of 3 rows, 1 row in memory
    expected = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    assert list(spill) == list(expected) and spill.n_rows == 10
    for k, v in expected.items():
        got = spill[k]
        assert got.dtype == v.dtype and spill.shape(k) == v.shape
        np.testing.assert_array_equal(got, v)
    sizes = [len(c["frame"]) for c in spill.chunks()]
    assert sizes == [3, 3, 3, 1]
    batches = list(spill.batches(4, ["exp"]))
    assert [len(b["exp"]) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b["exp"] for b in batches]), expected["exp"])
    with pytest.raises(ValueError, match="do not match"):
        spill.append({"frame": np.int64(1)})
    spill.remove()
    assert not list(tmp_path.iterdir()) and spill.n_rows == 0


def test_streamed_npz_members_equal_numpys(tmp_path: Path) -> None:
    rows = _rows(7, seed=1)
    arrays = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    np.savez(tmp_path / "ref.npz", **arrays)
    spill = RowSpill(tmp_path / "chunks", "t", limit=2)
    (tmp_path / "chunks").mkdir()
    for r in rows:
        spill.append(r)
    write_npz_pieces(tmp_path / "new.npz", {k: (spill.shape(k), spill.dtype(k)) for k in spill},
                     lambda k: (c[k] for c in track_chunks(spill, [k])))
    with zipfile.ZipFile(tmp_path / "ref.npz") as a, zipfile.ZipFile(tmp_path / "new.npz") as b:
        assert a.namelist() == b.namelist()
        for name in a.namelist():
            assert a.read(name) == b.read(name), name
    # rows that do not add up: an error, and the file in place is left as it was
    before = (tmp_path / "new.npz").read_bytes()
    with pytest.raises(ValueError, match="declared"):
        write_npz_pieces(tmp_path / "new.npz", {"exp": ((8, 5), np.float32)},
                         lambda k: iter([arrays["exp"]]))
    assert (tmp_path / "new.npz").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunks", "new.npz", "ref.npz"]


# ------------------------------------------------------------------ a video through the runner
N_FRAMES = 16
STILL_BOX = [113.0, 200.0, 153.0, 250.0]


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory):
    """Assets, a 16-frame clip and its faces: the drifting astronaut in every frame, a still
    box in frames 0-4 and again in 11-15 (6 frames apart: a new track), so three tracks."""
    from emoca.assets.synthetic import write_official_assets
    from emoca.assets.synthetic_checkpoints import write_emoca_model, write_emodeca_model

    d = tmp_path_factory.mktemp("spill")
    root = write_official_assets(d / "assets", seed=0, albedo="bfm", albedo_components=4)
    write_emoca_model(root, MODEL, seed=1, deca_seed=0)
    write_emodeca_model(root, seed=11, deca_seed=0)
    write_drifting_clip(d / "clip.mp4", N_FRAMES)
    faces = {}
    for i in range(N_FRAMES):
        x0, y0 = drift_origin(i)
        b = [175.0 - x0, 55.0 - y0, 305.0 - x0, 205.0 - y0]
        faces[f"clip.mp4#{i}"] = [{"box": b}] + ([{"box": STILL_BOX}]
                                                  if i < 5 or i > 10 else [])
    (d / "faces.json").write_text(json.dumps(faces))
    return root, d / "clip.mp4", d / "faces.json"


def _stand_in_encoder(model):
    """Codes of the official shapes from fixed projections of the crop's 8x8 colour means:
    the same crop gives the same codes, nearby crops nearby codes."""
    import torch

    from emoca.model.emoca_model import EmocaCodes

    a = model.config.arch
    g = torch.Generator().manual_seed(0)
    sizes = {"shape": a.n_shape, "tex": a.n_tex, "exp": a.n_exp, "pose": 6, "cam": 3,
             "light": 27, "detail": 128}
    w = {k: torch.randn(192, n, generator=g) / 192 ** 0.5 for k, n in sizes.items()}

    def encode(images: torch.Tensor, detail: bool = True) -> EmocaCodes:
        x = torch.nn.functional.adaptive_avg_pool2d(images, 8).flatten(1) - 0.5
        c = {k: 0.3 * torch.tanh(x @ m) for k, m in w.items()}
        c["cam"] = c["cam"] * 0.1 + torch.tensor([8.0, 0.0, 0.0])
        c["light"] = c["light"].reshape(-1, 9, 3)
        c["light"][:, 0] += 3.0
        return EmocaCodes(**{**c, "detail": c["detail"] if detail else None})

    return encode


def _run(video, out: Path, spill_rows: int | None, **kw) -> Path:
    from emoca.assets.locate import Assets
    from emoca.detect.file_backend import FileDetector
    from emoca.model.emoca_model import Emoca
    from emoca.pipeline.emotion_heads import load_emotion_head
    from emoca.pipeline.reconstruct import reconstruct_inputs
    from emoca.pipeline.reconstructor import Reconstructor

    root, clip, faces = video
    model = Emoca.from_pretrained(MODEL, assets=root)
    model.encode = _stand_in_encoder(model)
    head = load_emotion_head("auto", Assets(root), MODEL)
    rec = Reconstructor(model, FileDetector(faces), head, mode=kw.pop("mode"), batch_size=4,
                        spill_rows=spill_rows)
    summary = reconstruct_inputs([clip], out, rec, progress=False, **kw)
    assert summary.ok, summary.failed
    return out / "clip"


def _same_outputs(a: Path, b: Path) -> None:
    tracks = sorted(p.name for p in a.glob("track_*"))
    assert tracks == sorted(p.name for p in b.glob("track_*")) == [
        "track_0", "track_1", "track_2"]
    for t in tracks:
        with zipfile.ZipFile(a / t / "codes.npz") as za, \
                zipfile.ZipFile(b / t / "codes.npz") as zb:
            assert za.namelist() == zb.namelist()
            for name in za.namelist():
                assert za.read(name) == zb.read(name), (t, name)
        assert (a / t / "track.json").read_text() == (b / t / "track.json").read_text()
    assert json.loads((a / "video.json").read_text())["tracks"] == {
        "0": N_FRAMES, "1": 5, "2": 5}
    assert (a / "video.json").read_text() == (b / "video.json").read_text()
    for d in (a, b):  # no chunk left behind
        assert not [p for p in d.rglob("*") if ".spill" in p.name or p.name.startswith(".")]


def test_tiny_spill_chunks_write_what_whole_tracks_write(video, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """Smoothing, the codes emotion head and the overlay; chunks of 3 rows, batches of 4."""
    import av

    from emoca.pipeline.smoothing import SmoothingOptions

    flushed: list[int] = []
    flush = RowSpill.flush

    def counting(self: RowSpill) -> None:
        flush(self)
        if self.folder is not None:
            flushed.append(len(list(self.folder.glob(".*.spill.part"))))

    monkeypatch.setattr(RowSpill, "flush", counting)
    kw = {"mode": "coarse", "smoothing": SmoothingOptions(),
          "save": frozenset({"codes", "landmarks", "video"})}
    whole = _run(video, tmp_path / "whole", None, **kw)
    assert not flushed
    out = tmp_path / "spilled"
    (out / "clip").mkdir(parents=True)
    stale = out / "clip" / ".track_0.raw.000000.spill.part"  # as a killed run leaves it
    stale.write_bytes(b"half a chunk")
    spilled = _run(video, out, 3, **kw)
    assert max(flushed) >= 5  # the tracks really were on disk, in several chunks
    _same_outputs(spilled, whole)
    with np.load(whole / "track_0" / "codes.npz") as z:
        assert {"raw_exp", "emotion_probs", "valence", "face_index"} <= set(z.files)

    def frames(d: Path) -> list[np.ndarray]:
        with av.open(str(d / "overlay.mp4")) as v:
            return [f.to_ndarray(format="rgb24") for f in v.decode(video=0)]

    fa, fb = frames(spilled), frames(whole)
    assert len(fa) == len(fb) == N_FRAMES
    assert all(np.array_equal(x, y) for x, y in zip(fa, fb, strict=True))


def test_tiny_spill_chunks_in_detail_mode_without_smoothing(video, tmp_path: Path) -> None:
    kw = {"mode": "detail", "save": frozenset({"codes", "landmarks"})}
    _same_outputs(_run(video, tmp_path / "spilled", 5, **kw),
                  _run(video, tmp_path / "whole", None, **kw))


def test_a_failed_video_leaves_no_chunks(video, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from emoca.pipeline import reconstruct_files

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(reconstruct_files, "write_npz_pieces", broken)
    with pytest.raises(AssertionError, match="No space left"):
        _run(video, tmp_path / "out", 3, mode="coarse", save=frozenset({"codes"}))
    assert not list((tmp_path / "out").rglob(".*"))
