"""The batch runner shared by ``emoca reconstruct`` and ``emoca fit``: names, resume,
per-input failures, the summary, and one-line CLI errors.

Most tests drive the runner with a small processor that needs no model (its detector
finds one "face" per bright square and its records are the crop means), so they test the
runner's own logic; the fit collisions run the real ``emoca fit`` CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from emoca.detect.base import Detection
from emoca.detect.crop import FaceCrop, crop_transform_from_box, warp_crop
from emoca.errors import UsageError
from emoca.pipeline.bookkeeping import is_done, mark_done, unique_names
from emoca.pipeline.runner import Runner
from emoca.pipeline.timing import StageTimer


class SquareProcessor:
    """One 'face' per image (its bright pixels' box); record = mean colour of the crop."""

    command = "test"

    def __init__(self, setting: int = 0, interrupt_after: int | None = None) -> None:
        self.batch_size = 2
        self.timer = StageTimer()
        self.setting = setting
        self.interrupt_after = interrupt_after
        self.processed = 0

    def settings(self) -> dict[str, Any]:
        return {"command": self.command, "setting": self.setting}

    def detect(self, image: np.ndarray, name: str | None = None) -> list[FaceCrop]:
        ys, xs = np.nonzero(image.max(axis=2) > 200)
        if not len(xs):
            return []
        box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float64)
        t = crop_transform_from_box(box)
        return [FaceCrop(warp_crop(image, [t])[0], t, Detection(box=box, score=1.0))]

    def process(self, jobs):
        if self.interrupt_after is not None and self.processed >= self.interrupt_after:
            raise KeyboardInterrupt
        self.processed += len(jobs)
        return [float(j.crop.image.mean()) for j in jobs]

    def write_face(self, face_dir: Path, record: float) -> list[str]:
        (face_dir / "value.json").write_text(json.dumps(record))
        return ["value.json"]


def _square(path: Path, value: int = 255) -> Path:
    img = np.zeros((64, 64, 3), np.uint8)
    img[20:40, 20:40] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


def test_same_stems_get_distinct_folders(tmp_path: Path) -> None:
    a = _square(tmp_path / "a" / "x.png")
    b = _square(tmp_path / "b" / "x.png", 230)
    c = _square(tmp_path / "x.jpg", 210)
    names = unique_names([a, b, c])
    assert len(set(names.values())) == 3
    s = Runner(SquareProcessor(), progress=False).run([a, b, c], tmp_path / "out")
    assert len(s.written) == 3 and not s.skipped and s.ok
    values = {json.loads((Path(d) / "value.json").read_text()) for d in s.written}
    assert len(values) == 3  # three different inputs, three different results


def test_resume_skips_only_with_the_same_settings(tmp_path: Path) -> None:
    a = _square(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    Runner(SquareProcessor(setting=1), progress=False).run([a], out)
    again = Runner(SquareProcessor(setting=1), progress=False).run([a], out)
    assert again.written == [] and len(again.skipped) == 1
    changed = Runner(SquareProcessor(setting=2), progress=False).run([a], out)
    assert len(changed.written) == 1 and changed.skipped == []


def test_is_done_needs_every_listed_file(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("x")
    mark_done(tmp_path, ["f.txt", "g.txt"], {"model": "m"})
    assert not is_done(tmp_path, {"model": "m"})
    (tmp_path / "g.txt").write_text("y")
    assert is_done(tmp_path, {"model": "m"})
    assert not is_done(tmp_path, {"model": "other"})


def test_a_blocked_output_fails_only_its_input(tmp_path: Path) -> None:
    a = _square(tmp_path / "in" / "a.png")
    b = _square(tmp_path / "in" / "b.png", 230)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a").write_text("a file where the folder should go")
    s = Runner(SquareProcessor(), progress=False).run([a, b], out)
    assert list(s.failed) == [str(a)] and "a" in s.failed[str(a)]
    assert len(s.written) == 1 and s.written[0].endswith(os.path.join("b", "face_0"))
    assert json.loads((out / "summary.json").read_text())["failed"] == s.failed


def test_output_root_that_is_a_file_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("")
    with pytest.raises(UsageError, match="output folder is a file"):
        Runner(SquareProcessor(), progress=False).run([], tmp_path / "out")


def test_ctrl_c_writes_the_summary_of_what_was_done(tmp_path: Path) -> None:
    paths = [_square(tmp_path / "in" / f"{i}.png", 210 + 10 * i) for i in range(4)]
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        Runner(SquareProcessor(interrupt_after=2), progress=False).run(paths, out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["ok"] is False
    assert len(summary["written"]) == 2
    # resuming finishes the rest without redoing the first two
    s = Runner(SquareProcessor(), progress=False).run(paths, out)
    assert len(s.skipped) == 2 and len(s.written) == 2


def test_fifo_and_dangling_link_are_reported(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _square(folder / "ok.png")
    os.symlink(tmp_path / "gone.png", folder / "dangling.png")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    s = Runner(SquareProcessor(), progress=False).run([folder, fifo], tmp_path / "out")
    assert len(s.written) == 1
    assert "not a regular file" in s.failed[str(fifo)]
    assert "dangling" in s.failed[str(folder / "dangling.png")]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emoca.cli.main", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("argv, code, words", [
    (["reconstruct", "x.png", "-o", "OUT", "--batch-size", "0"], 2, "at least 1"),
    (["fit", "x.png", "-o", "OUT", "--steps", "-1"], 2, "at least 1"),
    (["fit", "x.png", "-o", "OUT", "--chunk", "0"], 2, "at least 1"),
    (["fit", "x.png", "-o", "FILE"], 2, "output folder is a file"),
    (["reconstruct", "x.png", "-o", "OUT", "--device", "cuda"], 2, "CUDA is not available"),
    (["reconstruct", "x.png", "-o", "OUT", "--device", "mps"], 2, "MPS is not available"),
    (["reconstruct", "x.png", "-o", "OUT", "--model", "some.png"], 2, "unknown model"),
])
def test_cli_errors_are_one_line(tmp_path: Path, argv: list[str], code: int,
                                 words: str) -> None:
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    (tmp_path / "FILE").write_text("")
    argv = [str(tmp_path / a) if a in ("OUT", "FILE") else a for a in argv]
    r = _cli(*argv)
    assert r.returncode == code, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 or (code == 2 and lines[0].startswith("usage:")), r.stderr
    assert words in r.stderr and "Traceback" not in r.stderr


def test_help_imports_no_torch() -> None:
    code = ("import sys; from emoca.cli.main import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'numpy', 'PIL') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "[]", r.stdout + r.stderr


def test_fit_names_collisions_and_face_model_change(tmp_path: Path, ict_dir: Path) -> None:
    """Issue: a/x.png, b/x.png and x.jpg were fitted into one folder; 2 of 3 'skipped'."""
    from emoca.pipeline.fit import fit_inputs

    img = skimage.data.astronaut()
    for p in (tmp_path / "a" / "x.png", tmp_path / "b" / "x.png", tmp_path / "x.jpg"):
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(p)
    inputs = [tmp_path / "a", tmp_path / "b", tmp_path / "x.jpg"]
    kw = dict(ict_dir=ict_dir, emotion=False, progress=False)
    s = fit_inputs(inputs, tmp_path / "out", steps=3, **kw)
    assert len(s.written) == 3 and s.skipped == [] and s.ok
    assert len({Path(d).parent.name for d in s.written}) == 3
    # other settings (as a different face model would be): everything is redone
    s2 = fit_inputs(inputs, tmp_path / "out", steps=4, **kw)
    assert len(s2.written) == 3 and s2.skipped == []
    s3 = fit_inputs(inputs, tmp_path / "out", steps=4, **kw)
    assert s3.written == [] and len(s3.skipped) == 3


def test_truncated_video_is_one_failure_and_leaves_no_folder(tmp_path: Path) -> None:
    pytest.importorskip("av")
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))  # a header, then nothing
    out = tmp_path / "out"
    summary = Runner(SquareProcessor(), progress=False).run([clip], out)
    assert list(summary.failed) == [str(clip)]
    message = summary.failed[str(clip)]
    assert str(clip) not in message and "video" in message  # the key names the file
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["failed"] == {str(clip): message}


