"""The whole look-alike assets folder (``emoca assets synthetic DIR``), part by part.

Parts, laid out as the official downloads (see DESIGN.md):

* ``flame``: ``FLAME/geometry/*``, ``FLAME/mask/*``, ``FLAME/texture/*``
  (:func:`emoca.assets.synthetic.write_official_assets`)
* ``deca``: ``DECA/data/deca_model.tar``
* ``emoca``: ``EMOCA/models/<name>/{cfg.yaml, detail/checkpoints/*.ckpt}`` for each chosen
  model (``EMOCA``, ``EMOCA_v2_mp``, ``EMOCA_v2_lr_mse_20``, ``EMOCA_v2_lr_cos_1.5``)
* ``emotion``: ``EmotionRecognition/image_based_networks/ResNet50/``
* ``emodeca``: ``EmotionRecognition/face_reconstruction_based/EMOCA-emorec/`` (an EmoDECA
  head, as the release names it)

The default (all parts, the default model ``EMOCA_v2_lr_mse_20`` only) is what
``emoca reconstruct --assets DIR`` needs with its defaults: ~140 MB in ~5 s (FLAME 82 MB,
as big as the official pickle and albedo; each EMOCA model 18 MB: four ~4.6 MB
checkpoints sharing one random pool; the emotion parts 35 MB). Seeds match
:func:`emoca.assets.synthetic_checkpoints.write_official_checkpoints`, so a model has the
same weights whichever subset is written.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["DEFAULT_MODELS", "PARTS", "parse_models", "parse_parts", "write_synthetic_tree"]

log = logging.getLogger(__name__)

PARTS: tuple[str, ...] = ("flame", "deca", "emoca", "emotion", "emodeca")
DEFAULT_MODELS: tuple[str, ...] = ("EMOCA_v2_lr_mse_20",)
EMODECA_NAME = "EMOCA-emorec"


def _split(text: str | Iterable[str]) -> list[str]:
    items = text.split(",") if isinstance(text, str) else list(text)
    return [s.strip() for s in items if s.strip()]


def parse_parts(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"flame,deca"`` -> ``("flame", "deca")`` in :data:`PARTS` order; None/"all": all."""
    if text is None or text == "all":
        return PARTS
    parts = _split(text)
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise ValueError(f"unknown part(s) {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(PARTS)} (comma-separated) or all")
    return tuple(p for p in PARTS if p in parts)


def parse_models(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """EMOCA model names (comma-separated, or ``all``); None: :data:`DEFAULT_MODELS`."""
    from emoca.assets.synthetic_weights import EMOCA_MODEL_NAMES

    if text is None:
        return DEFAULT_MODELS
    if text == "all":
        return EMOCA_MODEL_NAMES
    names = _split(text)
    unknown = [n for n in names if n not in EMOCA_MODEL_NAMES]
    if unknown or not names:
        raise ValueError(f"unknown EMOCA model(s) {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(EMOCA_MODEL_NAMES)} (comma-separated) or all")
    return tuple(dict.fromkeys(names))


def write_synthetic_tree(root: str | os.PathLike, parts: Iterable[str] = PARTS,
                         models: Iterable[str] = DEFAULT_MODELS, seed: int = 0,
                         albedo: str | None = "bfm") -> Path:
    """Write the chosen look-alike parts under ``root`` (created if needed).

    Args:
        root: the assets folder.
        parts: any of :data:`PARTS`.
        models: EMOCA models written by the ``emoca`` part.
        seed: everything random follows from it.
        albedo: FLAME albedo flavour (``"bfm"``, ``"flame"`` or None), ``flame`` part only.

    Returns:
        ``Path(root)``.
    """
    from emoca.assets import synthetic_checkpoints as ck
    from emoca.assets.synthetic import write_official_assets

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    parts = parse_parts(list(parts))
    models = parse_models(list(models))
    if "flame" in parts:
        write_official_assets(root, seed=seed, albedo=albedo)
    if "deca" in parts:
        ck.write_deca_model(root / "DECA" / "data" / "deca_model.tar", seed)
    if "emoca" in parts:
        for name in models:
            k = ck.EMOCA_MODEL_NAMES.index(name)  # stable seeds whatever subset is chosen
            ck.write_emoca_model(root, name, seed=seed + 1 + k, deca_seed=seed)
    if "emotion" in parts:
        ck.write_emotion_net(root, seed=seed + 10)
    if "emodeca" in parts:
        ck.write_emodeca_model(root, EMODECA_NAME, seed=seed + 11, deca_seed=seed)
    log.info("wrote look-alike assets (%s) to %s", ", ".join(parts), root)
    return root
