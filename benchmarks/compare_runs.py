"""Compare two output folders of ``emoca reconstruct`` / ``emoca fit`` array by array.

Used to check that a refactor of the pipeline gives the same numbers: every ``.npz`` and
``.npy`` found in both trees is compared key by key (max abs difference), and JSON files
numerically where both hold numbers. Prints a table and exits 1 when a difference is above
``--tol`` (keys named with ``--ignore`` are reported but not counted, e.g. an intended fix).

    python benchmarks/compare_runs.py BEFORE AFTER [--tol 1e-5] [--ignore landmarks2d]

To make the two trees: run the same command (same inputs, assets, ``--device cpu``) with the
old and the new code into two folders, e.g. ``python benchmarks/compare_runs.py --make OUT``
writes look-alike assets, a photo pair and a 6-frame clip and runs reconstruct and fit.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np


def _arrays(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".npy":
        return {"": np.load(path, allow_pickle=False)}
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _numbers(obj, prefix=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list):
        try:
            arr = np.asarray(obj, dtype=np.float64)
            yield prefix, arr
        except (ValueError, TypeError):
            for i, v in enumerate(obj):
                yield from _numbers(v, f"{prefix}[{i}]")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield prefix, np.asarray(obj, dtype=np.float64)


def compare(before: Path, after: Path) -> list[tuple[str, str, float]]:
    rows = []
    for a in sorted(before.rglob("*")):
        rel = a.relative_to(before)
        b = after / rel
        if a.suffix not in (".npz", ".npy", ".json") or not b.exists():
            continue
        if a.name in ("summary.json", "done.json", "video.json"):
            continue  # bookkeeping: paths, timings
        if a.suffix == ".json":
            da = dict(_numbers(json.loads(a.read_text())))
            db = dict(_numbers(json.loads(b.read_text())))
        else:
            da, db = _arrays(a), _arrays(b)
        for k in sorted(set(da) & set(db)):
            x, y = np.asarray(da[k]), np.asarray(db[k])
            if x.dtype.kind not in "fiub" or y.dtype.kind not in "fiub":
                continue
            if x.shape != y.shape:
                rows.append((str(rel), k, float("inf")))
                continue
            d = float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)))) \
                if x.size else 0.0
            rows.append((str(rel), k, d))
    return rows


def _clip(path: Path, n: int = 6) -> None:
    """A 10 fps clip of the astronaut drifting across a 256x256 frame."""
    import av
    import skimage.data

    img = skimage.data.astronaut()
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 256, 256, "yuv420p"
        for i in range(n):
            fr = np.ascontiguousarray(img[40 + 4 * i:296 + 4 * i, 100 + 3 * i:356 + 3 * i])
            for p in s.encode(av.VideoFrame.from_ndarray(fr, format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def make(out: Path, emoca_cmd: list[str]) -> None:
    """Write inputs + look-alike assets under ``out`` and run reconstruct and fit."""
    import skimage.data
    from PIL import Image

    from emoca.assets.synthetic import write_official_assets
    from emoca.assets.synthetic_checkpoints import write_emoca_model, write_emodeca_model

    inputs = out / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    Image.fromarray(skimage.data.astronaut()).save(inputs / "astronaut.png")
    _clip(inputs / "clip.mp4")
    assets = out / "assets"
    if not assets.exists():
        write_official_assets(assets, seed=0, albedo="bfm", albedo_components=4)
        write_emoca_model(assets, "EMOCA_v2_lr_mse_20", seed=1, deca_seed=0)
        write_emodeca_model(assets, seed=11, deca_seed=0)
    for mode in ("coarse", "detail"):
        subprocess.run([*emoca_cmd, "reconstruct", str(inputs), "-o", str(out / f"rec_{mode}"),
                        "--assets", str(assets), "--mode", mode, "--no-progress"], check=False)
    subprocess.run([*emoca_cmd, "fit", str(inputs), "-o", str(out / "fit"), "--chunk", "3"],
                   check=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before", nargs="?")
    ap.add_argument("after", nargs="?")
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--ignore", nargs="*", default=[])
    ap.add_argument("--make", help="write inputs and run reconstruct + fit into this folder")
    args = ap.parse_args()
    if args.make:
        make(Path(args.make), [sys.executable, "-m", "emoca.cli.main"])
        return 0
    rows = compare(Path(args.before), Path(args.after))
    bad = 0
    print(f"{'file':<48} {'key':<28} {'max |diff|':>12}")
    for rel, k, d in rows:
        flag = ""
        if d > args.tol:
            if any(i in k or i in rel for i in args.ignore):
                flag = " (ignored)"
            else:
                flag, bad = " <-- differs", bad + 1
        print(f"{rel:<48} {k:<28} {d:12.3g}{flag}")
    print(f"{len(rows)} arrays compared, {bad} differ by more than {args.tol}")
    print(f"reproduce: python benchmarks/compare_runs.py {args.before} {args.after}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
