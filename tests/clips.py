"""The test clip several test modules share: the astronaut drifting across a 256x256 frame
(10 fps H.264), optionally with a 440 Hz tone; what each frame shows is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import skimage.data


def drift_origin(i: int, step: tuple[int, int] = (3, 4)) -> tuple[int, int]:
    """(x0, y0): the astronaut-image pixel at the top left of frame ``i``."""
    return 100 + step[0] * i, 40 + step[1] * i


def write_drifting_clip(path: Path, n: int, step: tuple[int, int] = (3, 4),
                        tone: bool = False) -> None:
    """Write ``n`` frames, frame ``i`` = the 256x256 window at :func:`drift_origin`."""
    import av

    img = skimage.data.astronaut()
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 256, 256, "yuv420p"
        a = c.add_stream("aac", rate=16000) if tone else None
        for i in range(n):
            x0, y0 = drift_origin(i, step)
            fr = np.ascontiguousarray(img[y0:y0 + 256, x0:x0 + 256])
            for p in s.encode(av.VideoFrame.from_ndarray(fr, format="rgb24")):
                c.mux(p)
        packets = []
        if a is not None:
            t = np.arange(16000 * n // 10) / 16000.0
            af = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 440 * t))
                                            .astype(np.float32)[None], format="fltp",
                                            layout="mono")
            af.sample_rate = 16000
            packets += [*a.encode(af), *a.encode(None)]
        for p in [*packets, *s.encode(None)]:
            c.mux(p)
