"""The dataset engine's row protocol between its stages, without Ray or networks.

The Decoder's columns go straight into the driver's writer (no network stage: face rows
then carry NaN codes), so what is checked is only the bookkeeping: when an input counts as
complete, what a part's marker says, and that no face row is wasted on an end marker.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from emoca.pipeline.batch_stages import Decoder, InputItem
from emoca.pipeline.bookkeeping import RunSummary
from emoca.pipeline.ray_engine import _Writer

pytest.importorskip("pyarrow")


def _job(frame: int) -> Any:
    crop = SimpleNamespace(image=torch.zeros(3, 224, 224),
                           detection=SimpleNamespace(score=0.9, box=np.array([0, 0, 10, 10.0])),
                           transform=SimpleNamespace(image_to_crop=np.eye(3)))
    return SimpleNamespace(crop=crop, frame=frame, time=frame / 25, track_id=0, face_index=0)


class _BrokenVideo(Decoder):
    """Sends ``good`` faces, then the stream breaks (a truncated file, say)."""

    def __init__(self, good: int, chunk: int) -> None:
        super().__init__(detector="file", chunk=chunk)
        self.good = good

    def _video(self, path: Path, detect: Any) -> Iterator[Any]:
        for f in range(self.good):
            yield _job(f)
        raise ValueError("truncated at frame 5")


class _Faces(Decoder):
    """Every video gives ``n`` faces."""

    def __init__(self, n: int, chunk: int) -> None:
        super().__init__(detector="file", chunk=chunk)
        self.n = n

    def _video(self, path: Path, detect: Any) -> Iterator[Any]:
        yield from (_job(f) for f in range(self.n))


def _run(decoder: Decoder, tmp_path: Path) -> tuple[list[dict], RunSummary, list[int]]:
    item = InputItem(source=str(tmp_path / "clip.mp4"), kind="video", name="clip", part=0,
                     boxes=((0.0, 0.0, 10.0, 10.0),))  # listed: no detector is made
    summary = RunSummary(command="reconstruct", settings={})
    writer = _Writer(tmp_path, {0: [item]}, None, {}, summary)
    batches = list(decoder.decode(item.to_row()))
    done = [j for b in batches for j in writer.add(b)]
    assert not writer.parts, "the part never completed"
    return batches, summary, done


@pytest.mark.parametrize(("n", "chunk"), [(5, 2), (4, 2), (1, 8)])
def test_last_face_row_ends_the_input(tmp_path: Path, n: int, chunk: int) -> None:
    batches, summary, done = _run(_Faces(n, chunk), tmp_path)
    kinds = [k for b in batches for k in b["kind"]]
    assert kinds == ["face"] * n  # no row spent on an end marker
    assert done == [0] and summary.table_rows == n
    marker = json.loads((tmp_path / "part-00000.json").read_text())
    assert marker["rows"] == n and marker["failed"] == {}


@pytest.mark.parametrize(("good", "chunk"), [(5, 2), (4, 2), (0, 2)])
def test_a_stream_broken_midway_completes_its_part_as_failed(tmp_path: Path, good: int,
                                                            chunk: int) -> None:
    batches, summary, done = _run(_BrokenVideo(good, chunk), tmp_path)
    last = batches[-1]
    assert list(last["kind"]) == ["end"] and last["status"][0].startswith("failed: ")
    sent = sum(1 for b in batches for k in b["kind"] if k == "face")
    assert int(last["n_faces"][0]) == sent == max(0, (good - 1) // chunk * chunk)
    marker = json.loads((tmp_path / "part-00000.json").read_text())
    assert marker["rows"] == 0 and "truncated at frame 5" in marker["failed"][str(
        tmp_path / "clip.mp4")]
    assert summary.table_rows == 0 and done == [0]
    assert len(summary.failed) == 1
