"""The open fit's weights and schedule (:class:`FitConfig`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["FitConfig"]


@dataclass(frozen=True)
class FitConfig:
    """Weights and schedule of the fit.

    The landmark term is the weighted mean squared distance in NDC units (crop = [-1, 1]);
    EMOCA's relative eye, lip and mouth-corner losses are squared here so that the fit's
    objective stays smooth near its optimum. Stages: ``rigid`` (camera and head pose on
    landmarks), ``landmarks`` (+ identity and expression), ``appearance`` (expression, SH
    light and albedo against the photo: photometric and emotion terms, landmarks kept).

    Colour: with ``grey_light`` the SH light has one set of 9 coefficients for all three
    channels, so the colour of the render comes from the albedo alone and the light cannot
    tint the skin (per-channel light turned skin magenta and yellow-green). The albedo
    starts at the least-squares skin colour under the starting light and is held near it
    by ``w_albedo_prior`` (a skin-tone prior taken from the photo's own skin).
    With ``linear_light`` the light multiplies in linear light: the albedo stays
    sRGB-encoded (photo units, so the prior keeps its meaning) and is decoded, shaded and
    encoded again (:func:`emoca.model.fit_colour.shade`).
    """

    solver: str = "lm"
    lm_iterations: int = 40
    lm_tol: float = 1e-4
    steps_rigid: int = 60
    steps_landmarks: int = 300
    steps_appearance: int = 10
    lr_identity: float = 0.3
    lr_expression: float = 0.06
    lr_pose: float = 0.01
    lr_camera: float = 0.003
    w_landmarks: float = 1.0
    w_contour: float = 1.0
    # MediaPipe's points through the dense embedding (ICT only; fit(mediapipe=...)): their
    # weight, the face-oval points' share (they trace the 2D outline, not surface points),
    # and what is left of the 68-point term when they are given
    w_dense: float = 1.0
    w_dense_contour: float = 0.1
    w_landmarks_with_dense: float = 0.0
    # the jaw points 0-16 of the 68 follow the posed face's 2D outline (fitted and written;
    # emoca.model.fit_outline): for 68-point targets drawn on the outline (dlib's). Off for
    # MediaPipe's conversion, whose jaw is its face oval, and for ICT's own vertices
    dynamic_jaw: bool = False
    w_eye: float = 0.5
    w_lip: float = 0.5
    w_corner: float = 0.5
    w_photometric: float = 0.005
    w_emotion: float = 0.05
    w_identity_prior: float = 3e-6
    w_expression_prior: float = 3e-5
    # ARKit shapes the 68 landmarks barely see (cheek volume, lip roll and press, gaze, jaw
    # thrust): their prior is this many times stronger, so that they do not soak up what
    # identity, smile and jaw should explain (cheekPuff ~1 on neutral faces before)
    weak_shape_prior: float = 30.0
    weak_shapes: tuple[str, ...] = (
        "cheekPuff", "cheekSquint", "mouthPress", "mouthRoll", "mouthShrug",
        "mouthDimple", "jawForward", "eyeLook", "noseSneer", "mouthClose")
    # shapes the 68 points do see, but that also mimic identity (mouth width, asymmetry,
    # eye size): an optional milder extra prior. Off (1): at 5, the neutral Grace Hopper's
    # mouthPucker fell 0.6 -> 0.35 but known pucker/funnel/eyeWide weights were recovered
    # worse (correlation 0.83 -> 0.72 in tests/test_fit.py's round trip)
    soft_shape_prior: float = 1.0
    soft_shapes: tuple[str, ...] = ("mouthPucker", "mouthFunnel", "eyeWide", "mouthLeft",
                                    "mouthRight", "jawLeft", "jawRight")
    # reweighted passes of the landmark stage (:mod:`emoca.model.fit_sparsity`): each
    # multiplies shape j's prior by ((pivot + eps) / (a_j + eps)) ** power of the last
    # solve, in full where the first solve's points lie >= noise_full IOD from the model
    # (detections), not at all under noise_floor (exact points): the prior's weight follows
    # the noise. Each pass starts from a fit: ``sparsity_iterations`` LM iterations do.
    # Dense (MediaPipe) path only, where it was measured; the 68-point path stays plain.
    sparsity_passes: int = 2
    sparsity_iterations: int = 10
    sparsity_eps: float = 0.05
    sparsity_power: float = 2.0
    sparsity_pivot: float = 0.85
    sparsity_noise_floor: float = 0.01
    sparsity_noise_full: float = 0.02
    w_temporal: float = 0.1
    appearance_landmark_boost: float = 10.0
    grey_light: bool = True
    linear_light: bool = True
    w_albedo_prior: float = 0.05
    render_size: int = 64
    n_identity: int = 100
    show_progress: bool = False

    def with_second_68(self, weight: float = 1.0) -> FitConfig:
        """This config for a dense fit given a second, iBUG-drawn 68-point source (dlib):
        its 68 weigh ``weight`` (the dense points together weigh ``w_dense``) and the jaw
        follows the outline (``dynamic_jaw``)."""
        return self.replace(w_landmarks_with_dense=weight, dynamic_jaw=True)

    def replace(self, **changes: object) -> FitConfig:
        return dataclasses.replace(self, **changes)
