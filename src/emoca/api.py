"""One call from photos to 3D faces: :func:`reconstruct`.

Example:
    >>> from emoca.api import reconstruct                                  # doctest: +SKIP
    >>> faces = reconstruct(["me.jpg", "us.png"])                          # doctest: +SKIP
    >>> f = faces[0]                                                       # doctest: +SKIP
    >>> f.codes.exp.shape, f.vertices.shape, f.landmarks2d.shape           # doctest: +SKIP
    (torch.Size([1, 50]), torch.Size([5023, 3]), torch.Size([68, 2]))
    >>> f.emotion.label if f.emotion else None                             # doctest: +SKIP
    'happy'
    >>> f.overlay.shape    # rendered on first access: the photo with the face drawn in
    (H, W, 3)                                                              # doctest: +SKIP

For many images, keep a :class:`Reconstructor` (the model loads once) or use
``emoca reconstruct`` which also writes meshes, codes and renders.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from emoca.detect.base import FaceDetector
from emoca.model.emoca_model import DEFAULT_MODEL, Emoca
from emoca.pipeline.reconstruct import (
    FaceEmotion,
    FaceRenders,
    FaceResult,
    Reconstructor,
    load_emotion_head,
)

__all__ = ["FaceEmotion", "FaceRenders", "FaceResult", "Reconstructor", "reconstruct"]


def reconstruct(images: Any, model: str | os.PathLike | Emoca | Reconstructor = DEFAULT_MODEL,
                *, assets: Any = None, device: torch.device | str | None = None,
                detector: FaceDetector | str = "mediapipe", mode: str = "detail",
                emotion: str | os.PathLike | None = "auto", batch_size: int = 8,
                names: Sequence[str] | None = None,
                progress: bool = False) -> list[FaceResult]:
    """EMOCA for every face in ``images``: one :class:`FaceResult` per face.

    Args:
        images: a path, PIL image, numpy array ((H, W, 3) uint8 or float in [0, 1]), tensor
            ((3, H, W) or (B, 3, H, W), uint8 or float in [0, 1]), or a list of those.
        model: a model name (``EMOCA_v2_lr_mse_20``, ``EMOCA``, ``EMOCA_v2_mp``,
            ``EMOCA_v2_lr_cos_1.5``, ``DECA``), a model folder, a loaded :class:`Emoca`
            or a ready :class:`Reconstructor` (then the options below are ignored).
        assets: the assets folder (default ``$EMOCA_HOME`` or ``~/.cache/emoca``).
        device: where the networks run (default CPU).
        detector: face detector backend name or instance.
        mode: ``"detail"`` or ``"coarse"``.
        emotion: ``"auto"``, ``"none"``, ``"image"`` or an EmoDECA folder (see
            :func:`emoca.pipeline.reconstruct.load_emotion_head`).
        batch_size: crops per network pass.
        names: labels for in-memory images (default ``"<image N>"``).
        progress: show a progress bar.
    Returns:
        Faces in input order, then left to right. Results hold CPU tensors: ``codes``
        (batch of one), ``vertices`` (5023, 3) metres, ``landmarks2d`` (68, 2) in the
        original image's pixels, ``landmarks3d`` (68, 3), ``emotion`` (or None) and,
        computed on first access, ``renders`` / ``coarse`` / ``detail`` / ``geometry`` /
        ``overlay``.
    Raises:
        emoca.io.images.ImageReadError: a file cannot be read.
    """
    if isinstance(model, Reconstructor):
        rec = model
    else:
        from emoca.assets.locate import Assets

        assets = assets if isinstance(assets, Assets) else Assets(assets)
        if isinstance(model, Emoca):
            net = model if device is None else model.to(device)
        else:
            net = Emoca.from_pretrained(model, assets=assets, device=device)
        head = load_emotion_head(emotion, assets, net.config.name,
                                 device=next(net.parameters()).device)
        rec = Reconstructor(net, detector, head, mode=mode, batch_size=batch_size)
    return rec.reconstruct(images, names=names, progress=progress)
