"""DECA's detail decoder D_detail (``decalib/models/decoders.py``, ``Generator``).

Code [jaw pose 3, expression 50, detail 128] (181) -> ``l1.0`` Linear(181, 128*8*8) ->
reshape (B, 128, 8, 8) -> ``conv_blocks``::

    0  BatchNorm2d(128)                      (default eps 1e-5)
    1  Upsample x2 bilinear      -> 16       5  Upsample -> 32    9  Upsample -> 64
    2  Conv2d(128, 128, 3, p1)               6  Conv(128, 64)     10 Conv(64, 64)
    3  BatchNorm2d(128, eps=0.8)             7  BN(64, 0.8)       11 BN(64, 0.8)
    4  LeakyReLU(0.2)                        8  LeakyReLU         12 LeakyReLU
    13 Upsample -> 128   14 Conv(64, 32)   15 BN(32, 0.8)   16 LeakyReLU
    17 Upsample -> 256   18 Conv(32, 16)   19 BN(16, 0.8)   20 LeakyReLU
    21 Conv2d(16, 1, 3, p1)   22 Tanh

then x ``out_scale`` (DECA's ``max_z`` = 0.01): a (B, 1, 256, 256) UV displacement map in
[-0.01, 0.01] (FLAME units, metres). The odd ``eps=0.8`` is DECA's
``nn.BatchNorm2d(c, 0.8)`` (second positional argument is ``eps``), kept because the
trained running statistics were computed with it. ``Upsample`` uses PyTorch's default
``align_corners=False``, as DECA's does.
"""

from __future__ import annotations

import torch
from torch import nn

JAW_DIM = 3
EXP_DIM = 50
DETAIL_DIM = 128
LATENT_DIM = JAW_DIM + EXP_DIM + DETAIL_DIM  # 181
INIT_SIZE = 8
INIT_CHANNELS = 128
# Output channels of the five upsample-conv blocks (the input has INIT_CHANNELS).
BLOCK_CHANNELS: tuple[int, ...] = (128, 64, 64, 32, 16)
UV_SIZE = INIT_SIZE * 2 ** len(BLOCK_CHANNELS)  # 256
BLOCK_BN_EPS = 0.8
OUT_SCALE = 0.01


class DetailDecoder(nn.Module):
    """D_detail: (B, 181) code -> (B, 1, 256, 256) displacement in [-out_scale, out_scale].

    Args:
        latent_dim: code size (3 jaw + n_exp + n_detail; 181 for the official models).
        out_channels: 1 (a scalar displacement along the normal).
        out_scale: DECA's ``max_z``, 0.01.
        sample_mode: upsampling mode, ``"bilinear"`` in DECA.
    """

    def __init__(
        self,
        latent_dim: int = LATENT_DIM,
        out_channels: int = 1,
        out_scale: float = OUT_SCALE,
        sample_mode: str = "bilinear",
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.out_scale = out_scale
        self.l1 = nn.Sequential(nn.Linear(latent_dim, INIT_CHANNELS * INIT_SIZE**2))
        layers: list[nn.Module] = [nn.BatchNorm2d(INIT_CHANNELS)]
        channels = INIT_CHANNELS
        for out in BLOCK_CHANNELS:
            layers += [
                nn.Upsample(scale_factor=2, mode=sample_mode),
                nn.Conv2d(channels, out, 3, stride=1, padding=1),
                nn.BatchNorm2d(out, eps=BLOCK_BN_EPS),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            channels = out
        layers += [nn.Conv2d(channels, out_channels, 3, stride=1, padding=1), nn.Tanh()]
        self.conv_blocks = nn.Sequential(*layers)

    @staticmethod
    def condition(
        jaw_pose: torch.Tensor, expression: torch.Tensor, detail: torch.Tensor
    ) -> torch.Tensor:
        """DECA's decoder input ``cat([pose[:, 3:], exp, detail], 1)``: (B, 3+50+128)."""
        return torch.cat([jaw_pose, expression, detail], dim=1)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> (B, out_channels, 256, 256), values in [-out_scale, out_scale]."""
        if code.ndim != 2 or code.shape[1] != self.latent_dim:
            raise ValueError(
                f"DetailDecoder expects a (B, {self.latent_dim}) code "
                f"[jaw 3, exp, detail]; got shape {tuple(code.shape)}"
            )
        x = self.l1(code).view(code.shape[0], INIT_CHANNELS, INIT_SIZE, INIT_SIZE)
        return self.conv_blocks(x) * self.out_scale

    def decode(
        self, jaw_pose: torch.Tensor, expression: torch.Tensor, detail: torch.Tensor
    ) -> torch.Tensor:
        """Displacement map from the three codes: (B,3), (B,50), (B,128) -> (B,1,256,256)."""
        return self(self.condition(jaw_pose, expression, detail))
