"""The fit's jaw line on the face's outline (dynamic contour), for 68-point targets drawn
there: dlib's, or any iBUG-68 annotation.

iBUG draws the jaw points 0-16 on the face's visible outline. ICT's 68 landmark vertices
are fixed skin points: on a face turned away, the far side's outline slides inward over
the cheek and the fixed vertices no longer lie on it. With :class:`JawOutline` each jaw
point is the candidate of its row (:mod:`emoca.face_model.contour`: the anchor vertex and
the skin inward of it) that lies furthest out in the image under the head's current yaw,
chosen again at every evaluation (as DECA's yaw-indexed contour; the choice is a step
function of the pose, the chosen point's position is differentiable).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["JawOutline"]


class JawOutline:
    """The 68 landmarks with the jaw (0-16) on the posed face's outline.

    Args:
        model: an ICT-FaceKit model (``point_basis``, ``neutral``, ``landmark_indices``).
        embedding: the MediaPipe embedding whose face-oval points give the face centre the
            rows run towards (default: the shipped one).
    """

    def __init__(self, model: nn.Module, embedding=None) -> None:
        from emoca.face_model.contour import fit_rows, rows_basis
        from emoca.face_model.mediapipe_embedding import MediaPipeEmbedding

        emb = embedding if embedding is not None else MediaPipeEmbedding.load()
        _, self.rows, _ = fit_rows(model, emb)
        self.basis = rows_basis(model, self.rows)

    def select(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, 17) the outline slot of each jaw row under ``params``' yaw."""
        from emoca.face_model.contour import outermost

        held = {k: v.detach() for k, v in params.items()}  # the choice carries no gradient
        return outermost(self.basis, self.rows, held)[0]

    def __call__(self, params: dict[str, torch.Tensor], lmk: torch.Tensor) -> torch.Tensor:
        """(B, 68, 3) ``lmk`` (B, 68, 3) with its jaw replaced by the outline points of the
        model ``params`` (full model arguments, as ``FitAdapter.model_params``)."""
        from emoca.face_model.contour import gather_points

        a, m = self.rows.shape
        flat = self.select(params) + m * torch.arange(a, device=lmk.device)
        jaw = gather_points(self.basis, flat, params).to(lmk.dtype)
        return torch.cat([jaw, lmk[:, 17:]], dim=1)
