"""FLAME <-> ARKit-52 retargeting round trips (``emoca retarget``'s map).

ARKit weights w -> FLAME codes w A -> FLAME vertices -> bounded least squares -> w'.
Reported: |w - w'| (weights), the FLAME fit of the ICT shapes (ARKit -> FLAME vertex
error, RMS over the corresponding vertices, m) and the residual of the way back.
Default: the look-alike FLAME (``--assets DIR`` uses your FLAME file; the map is then
cached in DIR/retarget/).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_reproduce, print_table  # noqa: E402

from emoca.animation.retarget import (  # noqa: E402
    _FlameSubset,
    arkit_to_flame,
    flame_to_arkit,
    load_or_build,
)
from emoca.assets.locate import Assets  # noqa: E402
from emoca.face_model.arkit import ARKIT_NAMES  # noqa: E402
from emoca.face_model.flame import FLAME  # noqa: E402
from emoca.face_model.ict import ICTFaceModel  # noqa: E402


def _rms(x: np.ndarray) -> np.ndarray:
    """(B, N, 3) -> (B,) RMS vertex distance."""
    return np.sqrt((x ** 2).sum(-1).mean(-1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--assets", help="assets folder with your FLAME files (default: look-alike)")
    ap.add_argument("--random", type=int, default=100, help="random sparse weight vectors")
    ap.add_argument("--density", type=float, default=0.15, help="fraction of active shapes")
    args = ap.parse_args()
    if args.assets is None:
        from emoca.assets.synthetic import write_flame_files

        root = write_flame_files(tempfile.mkdtemp())
        kind = "look-alike FLAME"
    else:
        root, kind = Path(args.assets), "your FLAME"
    a = Assets(root)
    flame = FLAME.from_file(a.path("flame_model"), a.path("landmark_embedding"))
    ict = ICTFaceModel.default()
    t0 = time.perf_counter()
    rmap, cache, built = load_or_build(flame, ict, a.root, a.path("flame_model"))
    t_map = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    single = np.eye(52)[:-1]  # every shape alone at 1 (tongueOut has no ICT shape)
    rand = rng.uniform(0, 1, (args.random, 52)) * (rng.uniform(0, 1, (args.random, 52))
                                                   < args.density)
    rand[:, -1] = 0
    sub = _FlameSubset(flame, rmap.flame_vertices)
    rows = []
    for name, w in (("single shapes at 1", single), (f"random, {args.density:.0%} active", rand)):
        exp, jaw = arkit_to_flame(rmap, w)
        with torch.no_grad():
            verts = sub.offsets(torch.as_tensor(exp, dtype=torch.float32),
                                torch.as_tensor(jaw, dtype=torch.float32)).double().numpy()
        ict_err = _rms(verts - np.einsum("bk,knc->bnc", w, rmap.arkit_offsets))
        t0 = time.perf_counter()
        back, resid = flame_to_arkit(rmap, flame, exp, jaw)
        t_solve = (time.perf_counter() - t0) / len(w)
        dw = np.abs(back - w)
        rows.append([name, str(len(w)), f"{dw.mean():.4f}", f"{dw.max():.3f}",
                     f"{ict_err.mean() * 1e3:.2f}", f"{ict_err.max() * 1e3:.2f}",
                     f"{resid.mean() * 1e3:.3f}", f"{resid.max() * 1e3:.3f}",
                     f"{t_solve * 1e3:.1f}"])
    print(f"{kind}: {len(rmap.flame_vertices)} corresponding vertices, landmark RMS "
          f"{rmap.landmark_error * 1e3:.2f} mm after registration; map "
          f"{'built' if built else 'read'} in {t_map:.1f} s ({cache})")
    worst = np.argsort(rmap.fit_error)[::-1][:5]
    print("worst ARKit shape fits (RMS mm): " + ", ".join(
        f"{ARKIT_NAMES[k]} {rmap.fit_error[k] * 1e3:.2f}" for k in worst))
    print_table("ARKit -> FLAME -> ARKit", [
        "weights", "n", "|dw| mean", "|dw| max", "ARKit->FLAME mm mean", "max",
        "FLAME->ARKit resid mm mean", "max", "ms/frame"], rows)
    print_reproduce()


if __name__ == "__main__":
    main()
