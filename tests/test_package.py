"""The package itself: a light import, lazy public names."""

from __future__ import annotations


def test_import_emoca_is_light():
    import subprocess
    import sys

    code = ("import sys, emoca; heavy = [m for m in ('torch', 'mediapipe', 'av', 'lightning') "
            "if m in sys.modules]; print(heavy); assert not heavy, heavy; "
            "assert emoca.Emoca.__name__ == 'Emoca'")
    subprocess.run([sys.executable, "-c", code], check=True)
