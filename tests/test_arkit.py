import json

import numpy as np

from emoca.face_model.arkit import (
    ARKIT_NAMES,
    LIVE_LINK_ORDER,
    arkit_to_ict,
    ict_name_to_arkit,
    ict_to_arkit,
)


def _ict_names():
    """The 53 expression names of ICT-FaceKit's vertex_indices.json (the packaged copy)."""
    from emoca.assets.ict_facekit import packaged_ict_dir

    return json.loads((packaged_ict_dir() / "vertex_indices.json").read_text())["expressions"]


def test_names_are_apples_52():
    assert len(ARKIT_NAMES) == 52 == len(set(ARKIT_NAMES))
    assert sorted(LIVE_LINK_ORDER) == sorted(ARKIT_NAMES)
    assert ARKIT_NAMES[0] == "browDownLeft" and ARKIT_NAMES[-1] == "tongueOut"


def test_every_ict_shape_maps_and_halves_share_one_weight():
    names = _ict_names()
    mapped = {ict_name_to_arkit(n) for n in names}
    assert None not in mapped
    assert mapped == set(ARKIT_NAMES) - {"tongueOut"}
    assert ict_name_to_arkit("PupilDilate_L") is None
    assert ict_name_to_arkit("cheekRaiser_R") is None
    assert ict_name_to_arkit("mouthSmile_L") == "mouthSmileLeft"
    a = np.zeros(52, np.float32)
    a[ARKIT_NAMES.index("cheekPuff")] = 0.7
    ict = arkit_to_ict(a, names)
    assert ict[names.index("cheekPuff_L")] == ict[names.index("cheekPuff_R")] == np.float32(0.7)
    assert np.count_nonzero(ict) == 2


def test_round_trip_is_exact_except_tongue():
    names = _ict_names() + ["PupilDilate_L"]
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, (4, 52)).astype(np.float32)
    back = ict_to_arkit(arkit_to_ict(a, names), names)
    t = ARKIT_NAMES.index("tongueOut")
    np.testing.assert_allclose(np.delete(back, t, 1), np.delete(a, t, 1), atol=1e-6)
    assert np.all(back[:, t] == 0)
