"""Memory over a long video: RSS after 1 minute and after 10 minutes of 25 fps video.

Reproduce::

    .venv/bin/python benchmarks/memory_video.py                   # 1 and 10 minutes
    .venv/bin/python benchmarks/memory_video.py --minutes 0.2 2    # quick

Each length runs in a fresh process: ``emoca reconstruct``'s video path (``Runner`` ->
``process_video`` -> ``Reconstructor``; decode, detect, track, crop, batch, per-track
arrays spilled to chunk files, FLAME landmarks and emotion per track, ``codes.npz``),
``--save codes``, on a synthetic clip (the astronaut's face moving over a ``--size``
frame, libx264, made before the measured process starts). The table gives the RSS when
the run ends and the peak RSS (``ru_maxrss``), each with its ratio to the first
(1-minute) run.

Measured 2026-12-02 (2-core x86_64, torch 2.13 CPU; both versions in one session; the
seconds are not comparable: the shared machine was loaded and at times paused)::

    version                      minutes  RSS at end MB  ratio  peak RSS MB  ratio
    5508823 (tracks in memory)         1            743  1.000          807  1.000
                                      10            799  1.076          863  1.068
    spill (chunks of 1,024 rows)       1            733  1.000          808  1.000
                                      10            736  1.004          808  1.000

What grew before: every frame's codes sat in Python lists until the video ended, were
stacked, and ``codes.npz`` was built in a ``BytesIO`` and copied, so a 15,000-frame track
was in memory about three times over. Now rows go to chunk files of 1,024 frames
(:mod:`emoca.pipeline.spill`), the per-track arrays are computed batch by batch into new
chunks and ``codes.npz`` is written member by member (:mod:`emoca.io.npz_stream`); its
arrays are byte for byte those of the in-memory version (checked on these two runs' files,
and in ``tests/test_spill.py``).

Two stand-ins keep a 15,000-frame run in minutes on a CPU, both outside what could grow:
the face box comes from a fixed-box detector (no MediaPipe), and the encoders are replaced
by a function returning codes of the official shapes (the ResNets' memory is one batch of
activations, the same for any video length). Everything else is the real code path.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, print_reproduce, print_table  # noqa: E402

FPS = 25
MODEL = "EMOCA_v2_lr_mse_20"


def _clip(path: Path, frames: int, size: tuple[int, int]) -> tuple[float, ...]:
    """The astronaut's face moving slowly in a ``size`` frame; returns the first box."""
    import av
    import skimage.data

    w, h = size
    face = skimage.data.astronaut()[40:240, 160:320]  # 200 x 160 around the face
    fh, fw = face.shape[:2]
    scale = min(h / fh, w / fw) * 0.8
    from PIL import Image

    face = np.array(Image.fromarray(face).resize((int(fw * scale), int(fh * scale))))
    fh, fw = face.shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"preset": "ultrafast"}
        for i in range(frames):
            dx = int((w - fw) / 2 + (w - fw) / 4 * np.sin(i / 50))
            fr = np.zeros((h, w, 3), np.uint8)
            fr[(h - fh) // 2:(h - fh) // 2 + fh, dx:dx + fw] = face
            for p in s.encode(av.VideoFrame.from_ndarray(fr, format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return (float((w - fw) / 2), float((h - fh) / 2), float((w + fw) / 2), float((h + fh) / 2))


def _rss_mb() -> float:
    """Resident set size now (Linux), MB."""
    with open("/proc/self/status") as f:
        return int(f.read().split("VmRSS:")[1].split()[0]) / 1024


def child(clip: Path, assets: Path, batch: int) -> dict:
    import torch

    from emoca.detect.base import Detection, FaceDetector
    from emoca.model.emoca_model import Emoca, EmocaCodes
    from emoca.pipeline.reconstruct import reconstruct_inputs
    from emoca.pipeline.reconstructor import Reconstructor

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="emoca_mem_"))

    class MovingBox(FaceDetector):
        """The face's box: a tracker stand-in that follows the synthetic motion."""

        def detect(self, image: np.ndarray, *, name: str | None = None) -> list[Detection]:
            ys, xs = np.nonzero(image.max(axis=2) > 8)
            if not len(xs):
                return []
            return [Detection(box=np.array([xs.min(), ys.min(), xs.max(), ys.max()],
                                           np.float64), score=1.0)]

    model = Emoca.from_pretrained(MODEL, assets=assets)
    a = model.config.arch
    gen = torch.Generator().manual_seed(0)

    def encode(images: torch.Tensor, detail: bool = True) -> EmocaCodes:
        b = images.shape[0]

        def r(*shape: int) -> torch.Tensor:
            return 0.1 * torch.randn(b, *shape, generator=gen)

        return EmocaCodes(shape=r(a.n_shape), tex=r(a.n_tex), exp=r(a.n_exp), pose=r(6),
                          cam=torch.tensor([[8.0, 0.0, 0.0]]).repeat(b, 1) + r(3),
                          light=r(9, 3), detail=r(128) if detail else None)

    model.encode = encode  # the stand-in (see the module doc)
    rec = Reconstructor(model, MovingBox(), None, mode="detail", batch_size=batch)
    t1 = time.perf_counter()
    summary = reconstruct_inputs([clip], work / "out", rec, save=frozenset({"codes"}),
                                 progress=False)
    t_run = time.perf_counter() - t1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"rss_mb": _rss_mb(), "peak_rss_mb": peak, "seconds": t_run,
            "frames": summary.videos[str(clip)]["frames_read"],
            "tracks": summary.videos[str(clip)]["tracks"], "ok": summary.ok}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, nargs="+", default=[1, 10])
    ap.add_argument("--size", type=int, nargs=2, default=[320, 240], metavar=("W", "H"))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--assets", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child), Path(args.assets), args.batch)))
        return
    from emoca.assets.synthetic import write_official_assets
    from emoca.assets.synthetic_checkpoints import write_emoca_model

    assets = write_official_assets(Path(tempfile.mkdtemp(prefix="emoca_mem_assets_")), seed=0)
    write_emoca_model(assets, MODEL, seed=1, deca_seed=0)
    rows, base = [], None
    for minutes in args.minutes:
        frames = int(round(minutes * 60 * FPS))
        # in a folder of its own: two runs at once must not delete each other's clip
        clip = Path(tempfile.mkdtemp(prefix="emoca_mem_clip_")) / f"clip_{frames}.mp4"
        _clip(clip, frames, tuple(args.size))  # here, so the child measures only the run
        out = subprocess.run([sys.executable, __file__, "--child", str(clip), "--assets",
                              str(assets), "--batch", str(args.batch)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        clip.unlink()
        clip.parent.rmdir()
        base = base or r
        rows.append([f"{minutes:g}", str(r["frames"]), f"{r['rss_mb']:.0f}",
                     f"{r['rss_mb'] / base['rss_mb']:.3f}", f"{r['peak_rss_mb']:.0f}",
                     f"{r['peak_rss_mb'] / base['peak_rss_mb']:.3f}", f"{r['seconds']:.0f}",
                     f"{r['frames'] / r['seconds']:.0f}", str(r["tracks"])])
        print(rows[-1], flush=True)
    print_table(f"peak RSS over a {args.size[0]}x{args.size[1]} 25 fps video ({machine()})",
                ["minutes", "frames", "RSS at end MB", "ratio", "peak RSS MB", "ratio",
                 "seconds", "frames/s", "tracks"], rows)
    print_reproduce()


if __name__ == "__main__":
    main()
