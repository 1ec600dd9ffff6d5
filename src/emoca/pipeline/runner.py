"""The batch runner behind ``emoca reconstruct`` and ``emoca fit``.

:class:`Runner` takes files, folders (recursive), globs and videos, gives every input a
unique output folder (:func:`~emoca.pipeline.bookkeeping.unique_names`), skips what an
earlier run with the same settings finished, and drives a
:class:`~emoca.pipeline.processor.FaceProcessor`: photos are detected one by one and
their faces processed in batches across photos; videos go through
:func:`~emoca.pipeline.video.process_video`.

Layout: ``OUT/NAME/faces.json`` (photo: size, faces, boxes), ``OUT/NAME/face_K/``
(K = 0, 1... left to right; the processor's files, then ``done.json``), or for a video
``OUT/NAME/{video.json, overlay.mp4, track_T/..., done.json}``; ``OUT/summary.json``.

Errors never lose work: an input that cannot be read, shows no face, fails in the
networks, or whose output cannot be written (a file in the way, no permission) is recorded
in the summary with a one-line reason and the batch goes on; every file is written
atomically and ``done.json`` last; Ctrl-C writes the summary of what was done.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from emoca.errors import EmocaError, UsageError, file_problem
from emoca.io.images import ImageReadError, load_image, scan_inputs
from emoca.pipeline.bookkeeping import (
    RunSummary,
    is_done,
    mark_done,
    read_json,
    remove_stale_temp_files,
    unique_names,
    write_json,
)
from emoca.pipeline.processor import FaceJob, FaceProcessor
from emoca.pipeline.shards import Shard, shard_keys, shard_of
from emoca.pipeline.video import VideoOptions, process_video

__all__ = ["Runner", "prepare_output_root"]

log = logging.getLogger(__name__)

#: errors that end one input, not the batch (anything else is a bug and is raised)
INPUT_ERRORS = (OSError, ValueError, RuntimeError, EmocaError, MemoryError)


def prepare_output_root(out_dir: str | os.PathLike) -> Path:
    """Create the output folder; an unusable one is a one-line :class:`UsageError`."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(file_problem(out, "output folder is a file")) from None
    except OSError as e:
        raise UsageError(file_problem(out, f"cannot create the output folder: "
                                           f"{e.strerror or e}")) from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise UsageError(file_problem(out, "output folder is not writable"))
    return out


def _describe(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        where = f" ({e.filename})" if e.filename else ""
        return f"{e.strerror}{where}"
    if isinstance(e, MemoryError):
        return "out of memory"
    return str(e) or type(e).__name__


def _remove_if_empty(folder: Path) -> None:
    """Drop an output folder a failed input left empty (a re-run starts clean anyway)."""
    try:
        folder.rmdir()  # only succeeds when empty
    except OSError:
        pass


def _regular_file_problem(p: Path) -> str | None:
    """Why ``p`` cannot be read as an input file (FIFO, dangling link...), or None."""
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        return "dangling symbolic link" if p.is_symlink() else "no such file"
    except OSError as e:
        return _describe(e)
    if not stat.S_ISREG(mode):
        return "not a regular file (a pipe, device or socket)"
    return None


class Runner:
    """Drives one processor over many inputs (see the module doc).

    Args:
        processor: EMOCA's :class:`~emoca.pipeline.reconstructor.Reconstructor` or the
            open fit's :class:`~emoca.pipeline.fit_processor.FitProcessor`.
        resume: skip faces and videos finished before with the same settings.
        progress: show progress bars.
        video: :class:`VideoOptions` for videos.
        shard: process only this shard of the inputs (:mod:`emoca.pipeline.shards`); the
            summary is then ``summary.shard-I-of-N.json``.
    """

    def __init__(self, processor: FaceProcessor, *, resume: bool = True, progress: bool = True,
                 video: VideoOptions | None = None, shard: Shard | None = None) -> None:
        self.proc = processor
        self.resume = resume
        self.progress = progress
        self.video = video or VideoOptions()
        self.shard = shard

    @property
    def summary_name(self) -> str:
        return "summary.json" if self.shard is None else f"summary.{self.shard.tag}.json"

    def run(self, inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike
            ) -> RunSummary:
        """Process every input; write ``summary.json`` (also after Ctrl-C) and return it."""
        out = prepare_output_root(out_dir)
        proc = self.proc
        proc.timer.reset()
        settings = proc.settings()
        summary = RunSummary(command=proc.command, settings=settings)
        try:
            scan = scan_inputs([os.fspath(i) for i in inputs])
            # names and shard keys come from the whole list: every shard agrees on both
            keys = shard_keys([p for _, p in scan.items] + scan.unknown)

            def mine(key: str) -> bool:
                return self.shard is None or shard_of(key, self.shard.count) == self.shard.index

            for arg in scan.missing:
                if mine(arg):
                    summary.fail(arg, "no such file, folder or matching glob")
            for p in scan.unknown:
                if mine(keys[p]):
                    summary.fail(p, f"not an image or video (extension {p.suffix or 'none'!r})")
            items = []
            for kind, p in scan.items:
                problem = _regular_file_problem(p)
                if problem:
                    if mine(keys[p]):
                        summary.fail(p, problem)
                else:
                    items.append((kind, p))
            names = unique_names([p for _, p in items])
            items = [(kind, p) for kind, p in items if mine(keys[p])]
            images = [p for kind, p in items if kind == "image"]
            videos = [p for kind, p in items if kind == "video"]
            if images:
                self._images(images, out, names, settings, summary)
            for p in videos:
                self._video(p, out / names[p], settings, summary)
        except KeyboardInterrupt:
            summary.interrupted = True
            raise
        finally:
            summary.seconds = proc.timer.to_json()
            record = summary.to_json()
            if self.shard is not None:
                record["shard"] = [self.shard.index, self.shard.count]
            write_json(out / self.summary_name, record)
        return summary

    # ------------------------------------------------------------------ photos
    def _images(self, paths: list[Path], out: Path, names: dict[Path, str],
                settings: dict[str, Any], summary: RunSummary) -> None:
        proc = self.proc
        pending: list[FaceJob] = []
        dest_of: dict[str, Path] = {}

        def flush(batch: list[FaceJob]) -> None:
            batch = [j for j in batch if j.source not in summary.failed]
            if not batch:
                return
            try:
                records = proc.process(batch)
            except INPUT_ERRORS as e:
                if len(batch) == 1:
                    summary.fail(batch[0].source, f"processing failed: {_describe(e)}")
                    return
                log.warning("a batch failed (%s); retrying its faces one by one", e)
                for job in batch:
                    flush([job])
                return
            for job, rec in zip(batch, records, strict=True):
                if job.source in summary.failed:
                    continue
                face_dir = dest_of[job.source] / f"face_{job.face_index}"
                try:
                    face_dir.mkdir(parents=True, exist_ok=True)
                    remove_stale_temp_files(face_dir)
                    with proc.timer.stage("export"):
                        files = proc.write_face(face_dir, rec)
                        mark_done(face_dir, files, settings)
                except INPUT_ERRORS as e:
                    summary.fail(job.source, f"writing {face_dir.name} failed: {_describe(e)}")
                    continue
                summary.written.append(str(face_dir))

        for path in tqdm(paths, desc=proc.command, unit="image", disable=not self.progress):
            dest = out / names[path]
            dest_of[str(path)] = dest
            if self.resume and self._image_done(dest, settings, summary, path):
                continue
            try:
                with proc.timer.stage("read"):
                    image = load_image(path)
            except (ImageReadError, OSError, EmocaError) as e:
                summary.fail(path, getattr(e, "reason", None) or _describe(e))
                continue
            try:
                crops = proc.detect(image, name=path.name)
            except Exception as e:  # noqa: BLE001 - a detector crash ends only this image
                summary.fail(path, f"face detection failed: {_describe(e)}")
                continue
            try:
                dest.mkdir(parents=True, exist_ok=True)
                write_json(dest / "faces.json", {
                    "image": str(path), "size": [int(image.shape[1]), int(image.shape[0])],
                    "n_faces": len(crops), "settings": settings,
                    "boxes": [[round(float(v), 2) for v in c.detection.box] for c in crops]})
            except OSError as e:
                summary.fail(path, f"cannot write {dest}: {_describe(e)}")
                continue
            if not crops:
                summary.no_face.append(str(path))
                continue
            todo = [k for k in range(len(crops))
                    if not (self.resume and is_done(dest / f"face_{k}", settings))]
            summary.skipped += [str(dest / f"face_{k}") for k in range(len(crops))
                                if k not in todo]
            # keep the decoded photo only while its faces wait; big batches re-read it
            pending += [FaceJob(crops[k], str(path), k, image) for k in todo]
            while len(pending) >= proc.batch_size:
                flush(pending[:proc.batch_size])
                pending = pending[proc.batch_size:]
        flush(pending)

    def _image_done(self, dest: Path, settings: dict[str, Any], summary: RunSummary,
                    path: Path) -> bool:
        faces = read_json(dest / "faces.json")
        if not isinstance(faces, dict) or faces.get("settings") != settings:
            return False
        n = int(faces.get("n_faces", -1))
        if n == 0:
            summary.no_face.append(str(path))
            return True
        dirs = [dest / f"face_{k}" for k in range(n)]
        if n > 0 and all(is_done(d, settings) for d in dirs):
            summary.skipped += [str(d) for d in dirs]
            return True
        return False

    # ------------------------------------------------------------------ videos
    def _video(self, path: Path, dest: Path, settings: dict[str, Any],
               summary: RunSummary) -> None:
        if self.resume and is_done(dest, settings):
            summary.skipped.append(str(dest))
            return
        try:
            record = process_video(path, dest, self.proc, self.video, self.progress)
            mark_done(dest, record["files"], settings)
        except INPUT_ERRORS as e:
            # the messages already start with the path; say it once
            summary.fail(path, _describe(e).removeprefix(f"{path}: "))
            _remove_if_empty(dest)
            return
        summary.videos[str(path)] = {k: record[k] for k in ("tracks", "skipped_frames",
                                                             "frames_read")}
        if record["problems"]:
            summary.problems[str(path)] = record["problems"]
        if not record["tracks"]:
            summary.no_face.append(str(path))
        summary.written += record["track_dirs"]
