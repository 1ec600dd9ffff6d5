"""Pure-PyTorch triangle rasterizer matching pytorch3d's `rasterize_meshes` as DECA uses it.

DECA (SRenderY) rasterizes with pytorch3d: blur 0, one face per pixel, no perspective
correction, no backface culling. This module reproduces that on any torch device without
compiled extensions.

Screen convention (the input of :func:`rasterize`)
--------------------------------------------------
Vertices are given in *image NDC*, which is exactly DECA's ``transformed_vertices``
(orthographic projection, y and z already negated):

* x in [-1, 1] spans the full width, x = -1 is the left edge, x grows to the right;
* y in [-1, 1] spans the full height, y = -1 is the top edge, y grows downwards;
* the centre of pixel column ``i`` is at ``x = -1 + (2 i + 1) / W`` and of row ``j`` at
  ``y = -1 + (2 j + 1) / H``; equivalently ``pixel = (x + 1) * W / 2`` in continuous pixel
  units where pixel ``i`` spans ``[i, i + 1]`` (DECA's ``pixel = (x' + 1) * 112`` at 224);
* z is depth, smaller is closer; faces with a vertex at ``z < znear`` are skipped
  (pytorch3d skips faces with a vertex behind the image plane, ``z < 1e-8``).

Why this equals DECA's images: DECA negates x and y before calling pytorch3d, whose NDC
has +X pointing left and +Y up and whose output pixel (row r, column c) sits at
``(1 - (2c+1)/W, 1 - (2r+1)/H)``. The two sign flips cancel, so DECA's own coordinates
index the image with x right and y down. We evaluate pytorch3d's edge functions on the
negated coordinates' exact negatives, which gives bit-identical edge functions (each is a
product of two differences, each of which only changes sign), hence the same
inside/outside decisions.
DECA also adds 10 to z so that the whole head lies in front of pytorch3d's image plane:
:func:`deca_to_raster` does that step.

Non-square images: DECA rescales the longer axis before calling pytorch3d so that, in its
own coordinates, [-1, 1] spans each axis fully; the convention above is the same.

As in pytorch3d, a pixel centre lying exactly on an edge shared by two faces (a weight of
exactly 0) is drawn by neither; with real-valued geometry this practically never happens.

Algorithm: per face an integer pixel bounding box; faces are bucketed by power-of-two box
size and each bucket scans a dense (rows, cols, faces) candidate grid in chunks of bounded
size; the inside test splits each edge function into a column term and a row term; for the
pixels found inside, a per-pixel ``scatter_reduce('amin')`` over a 64-bit key
(order-preserving depth bits in the high word, face index in the low word) keeps the
nearest face, ties going to the lowest face index. Visibility is computed in float32
without autograd; barycentrics and depth are then recomputed differentiably (in the input
dtype) from the chosen face's vertices. Memory and time grow with the faces' bounding-box
areas, never with faces x pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from emoca.render._bundle import RenderBundle

__all__ = [
    "DECA_Z_OFFSET",
    "Fragments",
    "deca_to_raster",
    "face_vertices",
    "interpolate",
    "pixel_centers",
    "rasterize",
]

# pytorch3d's kEpsilon: faces whose doubled screen area (in NDC units) is below it are
# not drawn.
_P3D_EPS = 1e-8
# DECA adds this to z so that the projected head sits in front of the image plane.
DECA_Z_OFFSET = 10.0
# Candidate (face, pixel) pairs scanned at once; bounds the peak memory of one chunk
# (a few float32 grids of this size).
_PAIR_BUDGET = 1 << 20
_NO_HIT = torch.iinfo(torch.int64).max


@dataclass(frozen=True)
class Fragments(RenderBundle):
    """Result of :func:`rasterize`, one face per pixel.

    Attributes:
        face_index: (B, H, W) int64 index into ``faces`` of the visible face, -1 = background.
        bary: (B, H, W, 3) barycentric weights of the face's three vertices (in the order
            of ``faces``), differentiable w.r.t. the vertices; 0 on background.
        depth: (B, H, W) interpolated z of the visible face (same units as the input z),
            differentiable; -1 on background (pytorch3d's fill value).
        mask: (B, H, W) bool, True where a face is visible.
    """

    face_index: torch.Tensor
    bary: torch.Tensor
    depth: torch.Tensor
    mask: torch.Tensor


def deca_to_raster(transformed_vertices: torch.Tensor) -> torch.Tensor:
    """DECA's screen-space vertices -> :func:`rasterize` input (new tensor, input untouched).

    DECA's x'/y' already follow the convention of :func:`rasterize` (its x/y negation is
    undone by pytorch3d's +X-left/+Y-up pixel grid); only z is shifted by +10, as SRenderY
    does, so that the mesh lies in front of the image plane.

    Args:
        transformed_vertices: (B, V, 3) orthographically projected vertices, x right,
            y down, both in [-1, 1] over the image, z smaller = closer.
    Returns:
        (B, V, 3) with z + 10.
    """
    offset = transformed_vertices.new_tensor([0.0, 0.0, DECA_Z_OFFSET])
    return transformed_vertices + offset


def pixel_centers(size: int, device: torch.device | None = None) -> torch.Tensor:
    """NDC coordinate of each pixel centre along an axis of ``size`` pixels, (size,) float32.

    Computed as the exact negation of pytorch3d's ``PixToNdc`` of the reversed index so that
    our centres are bit-identical (up to sign) with what pytorch3d uses for DECA's images.
    """
    reversed_index = torch.arange(size - 1, -1, -1, device=device, dtype=torch.float32)
    return -(-1.0 + (2.0 * reversed_index + 1.0) / size)


def face_vertices(values: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Gather per-vertex values to the corners of each face.

    Args:
        values: (B, V, C) per-vertex values.
        faces: (F, 3) int64 vertex indices.
    Returns:
        (B, F, 3, C).
    """
    return values[:, faces]


def _edge(px, py, ax, ay, bx, by):
    # pytorch3d's EdgeFunctionForward(p, a, b), same operation order for identical rounding.
    return (px - ax) * (by - ay) - (py - ay) * (bx - ax)


def _barycentric(px, py, x0, y0, x1, y1, x2, y2):
    """pytorch3d's BarycentricCoordsForward without its +1e-8 on the area; (w0, w1, w2).

    pytorch3d's epsilon biases the weights of tiny faces low (they sum to
    area / (area + 1e-8)); dropping it keeps the weights summing to one and changes no
    inside/outside decision (only the sign of each weight is used for that).
    """
    area = _edge(x2, y2, x0, y0, x1, y1)
    w0 = _edge(px, py, x1, y1, x2, y2) / area
    w1 = _edge(px, py, x2, y2, x0, y0) / area
    w2 = _edge(px, py, x0, y0, x1, y1) / area
    return w0, w1, w2


def _sortable_depth_key(depth: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
    """Pack float32 depth and face index into an int64 whose order is (depth, face)."""
    # + 0.0 turns -0.0 into +0.0 so both zeros compare equal, as floats do.
    bits = (depth + 0.0).contiguous().view(torch.int32)
    # Negative floats order backwards as integers: flipping their 31 low bits fixes that.
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    return (bits.to(torch.int64) << 32) | face


def _face_pixel_ranges(fv: torch.Tensor, height: int, width: int, znear: float):
    """Per face the inclusive candidate column/row ranges and whether it can be drawn.

    fv: (9, N) float32 face coordinates x0 y0 z0 x1 y1 z1 x2 y2 z2 (one row each).
    Returns c0, c1, r0, r1 ((N,) int64) and a (N,) bool ``drawable`` (finite, non-zero
    area, in front of ``znear``, candidate box meets the image).
    """
    x0, y0, z0, x1, y1, z1, x2, y2, z2 = fv.unbind(0)
    xmin = torch.minimum(torch.minimum(x0, x1), x2)
    xmax = torch.maximum(torch.maximum(x0, x1), x2)
    ymin = torch.minimum(torch.minimum(y0, y1), y2)
    ymax = torch.maximum(torch.maximum(y0, y1), y2)
    zmin = torch.minimum(torch.minimum(z0, z1), z2)
    # Pixel centre i sits at continuous index (x + 1) * W / 2 - 0.5; a small slack keeps
    # centres lying exactly on the box boundary despite rounding (the inside test decides).
    slack = 1e-3
    fx0 = ((xmin + 1.0) * width - 1.0) * 0.5 - slack
    fx1 = ((xmax + 1.0) * width - 1.0) * 0.5 + slack
    fy0 = ((ymin + 1.0) * height - 1.0) * 0.5 - slack
    fy1 = ((ymax + 1.0) * height - 1.0) * 0.5 + slack
    # Clamp in float first so that far-away (or huge) vertices cannot overflow int64.
    c0 = torch.ceil(fx0.clamp(-1.0, width)).to(torch.int64).clamp_(min=0)
    c1 = torch.floor(fx1.clamp(-1.0, width)).to(torch.int64).clamp_(max=width - 1)
    r0 = torch.ceil(fy0.clamp(-1.0, height)).to(torch.int64).clamp_(min=0)
    r1 = torch.floor(fy1.clamp(-1.0, height)).to(torch.int64).clamp_(max=height - 1)

    area = _edge(x0, y0, x1, y1, x2, y2)
    drawable = (
        (area.abs() > _P3D_EPS)
        & (zmin >= znear)
        & torch.isfinite(fv).all(dim=0)
        & (c1 >= c0)
        & (r1 >= r0)
    )
    return c0, c1, r0, r1, drawable


def _size_class(n: torch.Tensor) -> torch.Tensor:
    """Smallest k with 2**k >= n, for int64 n >= 1 (the bit length of n - 1)."""
    return torch.frexp((n - 1).to(torch.float32)).exponent.to(torch.int64)


def _take(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values[..., index] along the last dim; 1-D gathers along a long contiguous dim are
    far faster on the CPU than gathering short rows."""
    return values.index_select(values.dim() - 1, index)


def _scan_class(
    zkey: torch.Tensor,
    face: dict[str, torch.Tensor],
    n_cols: int,
    n_rows: int,
    xc: torch.Tensor,
    yc: torch.Tensor,
    width: int,
) -> None:
    """Z-buffer faces whose candidate box fits in n_rows x n_cols, into zkey (in place).

    Each face scans an (n_rows, n_cols) pixel grid anchored at its box corner; indices past
    the box are clamped onto its last row/column, which only repeats pixels (harmless for a
    min-reduction) instead of needing a mask. Grids are laid out (row, col, face) so that
    every elementwise op runs over a long contiguous face axis.
    """
    n = face["c0"].shape[0]
    device = zkey.device
    cols = torch.minimum(face["c0"] + torch.arange(n_cols, device=device)[:, None], face["c1"])
    rows = torch.minimum(face["r0"] + torch.arange(n_rows, device=device)[:, None], face["r1"])
    px = _take(xc, cols.view(-1)).view(1, n_cols, n)
    py = _take(yc, rows.view(-1)).view(n_rows, 1, n)
    x0, y0, x1, y1, x2, y2 = (face[k] for k in ("x0", "y0", "x1", "y1", "x2", "y2"))
    area = _edge(x2, y2, x0, y0, x1, y1)
    sign = torch.where(area > 0, 1.0, -1.0)

    # An edge function (px - ax) * (by - ay) - (py - ay) * (bx - ax) splits into a column
    # term and a row term, so it costs one full-grid subtraction. Folding the area's sign
    # into the (exact, +-1) factors turns "all three barycentrics > 0" into "min of the
    # three signed edges > 0", with no division on the grid.
    def signed_edge(ax, ay, bx, by):
        return (px - ax) * ((by - ay) * sign) - (py - ay) * ((bx - ax) * sign)

    m = signed_edge(x1, y1, x2, y2)
    torch.minimum(m, signed_edge(x2, y2, x0, y0), out=m)
    torch.minimum(m, signed_edge(x0, y0, x1, y1), out=m)
    hit = (m > 0).view(-1).nonzero().squeeze(1)

    # Depth, pixel index and key only for the pixels found inside.
    k = hit % n
    ij = torch.div(hit, n, rounding_mode="floor")
    i = torch.div(ij, n_cols, rounding_mode="floor")
    j = ij - i * n_cols
    row = _take(rows.view(-1), i * n + k)
    col = _take(cols.view(-1), j * n + k)
    corner = {key: _take(face[key], k) for key in ("x0", "y0", "x1", "y1", "x2", "y2")}
    w0, w1, w2 = _barycentric(
        _take(xc, col),
        _take(yc, row),
        *(corner[key] for key in ("x0", "y0", "x1", "y1", "x2", "y2")),
    )
    depth = w0 * _take(face["z0"], k) + w1 * _take(face["z1"], k) + w2 * _take(face["z2"], k)
    pix = _take(face["pix_base"], k) + row * width + col
    key = _sortable_depth_key(depth, _take(face["face_id"], k))
    zkey.scatter_reduce_(0, pix, key, reduce="amin", include_self=True)


@torch.no_grad()
def _visible_faces(
    verts: torch.Tensor, faces: torch.Tensor, height: int, width: int, znear: float
) -> torch.Tensor:
    """Z-buffer: (B*H*W,) int64 index of the nearest face per pixel, -1 where none."""
    batch, n_verts = verts.shape[:2]
    n_faces = faces.shape[0]
    device = verts.device
    zkey = torch.full((batch * height * width,), _NO_HIT, dtype=torch.int64, device=device)

    # (9, B*F) rows x0 y0 z0 x1 y1 z1 x2 y2 z2, gathered from a (3, B*V) coordinate table.
    coords = verts.detach().to(torch.float32).reshape(batch * n_verts, 3).t().contiguous()
    offsets = torch.arange(batch, device=device)[:, None] * n_verts
    corner_idx = (faces.t()[:, None, :] + offsets[None]).reshape(3, -1)  # (3, B*F)
    fv = _take(coords, corner_idx.reshape(-1)).view(3, 3, -1).transpose(0, 1)
    fv = fv.reshape(9, -1)
    c0, c1, r0, r1, drawable = _face_pixel_ranges(fv, height, width, znear)

    ids = drawable.nonzero().squeeze(1)  # flat b * F + f of faces that may cover pixels
    if ids.numel() > 0:
        # Bucket faces by power-of-two box size so that each bucket is one dense grid.
        c0, c1, r0, r1 = (_take(t, ids) for t in (c0, c1, r0, r1))
        kx = _size_class(c1 - c0 + 1)
        ky = _size_class(r1 - r0 + 1)
        n_cls = int(torch.maximum(kx.max(), ky.max())) + 1
        cls = ky * n_cls + kx
        cls_sorted, order = torch.sort(cls, stable=True)
        ids = _take(ids, order)
        counts = torch.bincount(cls_sorted, minlength=n_cls * n_cls).tolist()
        b_of = torch.div(ids, n_faces, rounding_mode="floor")
        face = {
            "c0": _take(c0, order),
            "c1": _take(c1, order),
            "r0": _take(r0, order),
            "r1": _take(r1, order),
            "face_id": ids - b_of * n_faces,
            "pix_base": b_of * (height * width),
        }
        sorted_fv = _take(fv, ids)
        for row_i, key in enumerate(("x0", "y0", "z0", "x1", "y1", "z1", "x2", "y2", "z2")):
            face[key] = sorted_fv[row_i]
        xc = pixel_centers(width, device)
        yc = pixel_centers(height, device)

        start = 0
        for c, count in enumerate(counts):
            if count == 0:
                continue
            n_rows, n_cols = 1 << (c // n_cls), 1 << (c % n_cls)
            step = max(1, _PAIR_BUDGET // (n_rows * n_cols))
            for s in range(start, start + count, step):
                e = min(s + step, start + count)
                chunk = {key: value[s:e] for key, value in face.items()}
                _scan_class(zkey, chunk, n_cols, n_rows, xc, yc, width)
            start += count

    covered = zkey != _NO_HIT
    return torch.where(covered, zkey & 0xFFFFFFFF, torch.full_like(zkey, -1))


def _covered_pixels(face_index: torch.Tensor):
    """Flat indices of covered pixels with their batch, row, column and face (all (P,))."""
    batch, height, width = face_index.shape
    flat = face_index.reshape(-1)
    pix = (flat >= 0).nonzero().squeeze(1)
    face = _take(flat, pix)
    n_pix = height * width
    b = torch.div(pix, n_pix, rounding_mode="floor")
    rem = pix - b * n_pix
    row = torch.div(rem, width, rounding_mode="floor")
    col = rem - row * width
    return pix, b, row, col, face


def rasterize(
    verts: torch.Tensor,
    faces: torch.Tensor,
    height: int,
    width: int,
    znear: float = 0.0,
) -> Fragments:
    """Rasterize a batch of meshes sharing one topology (see the module doc for the convention).

    Visibility: z-buffer (smaller z wins), one face per pixel, ties to the lowest face index,
    both windings drawn (no culling), pixel inside a face iff all three barycentrics > 0
    (pytorch3d's rule), faces of zero screen area or with a vertex at z < znear skipped.
    Visibility is decided in float32; barycentrics/depth come back in ``verts.dtype`` with
    gradients w.r.t. ``verts`` (no gradient through the choice of face, as pytorch3d).

    Args:
        verts: (B, V, 3) vertices in image NDC (x right, y down, [-1, 1]), z = depth.
        faces: (F, 3) int64 vertex indices.
        height, width: output size in pixels.
        znear: faces with any vertex z below this are not drawn.
    Returns:
        :class:`Fragments` with (B, H, W) tensors on ``verts.device``.
    """
    if verts.dim() != 3 or verts.shape[-1] != 3:
        raise ValueError(f"verts must be (B, V, 3), got {tuple(verts.shape)}")
    if faces.dim() != 2 or faces.shape[-1] != 3:
        raise ValueError(f"faces must be (F, 3), got {tuple(faces.shape)}")
    faces = faces.to(device=verts.device, dtype=torch.int64)
    batch, n_verts = verts.shape[:2]
    n_pix = height * width

    face_index = _visible_faces(verts, faces, height, width, znear).view(batch, height, width)
    pix, b, row, col, face = _covered_pixels(face_index)

    # Differentiable recomputation from the chosen faces' vertices, gathered from a
    # (3, B*V) table along its long axis.
    corner = (b * n_verts)[None, :] + _take(faces.t().contiguous(), face)  # (3, P)
    coords = verts.reshape(batch * n_verts, 3).t().contiguous()
    v = _take(coords, corner.reshape(-1)).view(3, 3, -1)  # (xyz, corner, P)
    px = _take(pixel_centers(width, verts.device).to(verts.dtype), col)
    py = _take(pixel_centers(height, verts.device).to(verts.dtype), row)
    w = torch.stack(_barycentric(px, py, v[0, 0], v[1, 0], v[0, 1], v[1, 1], v[0, 2], v[1, 2]))
    z = (w * v[2]).sum(0)

    bary = verts.new_zeros(3, batch * n_pix).index_copy(1, pix, w)
    depth = verts.new_full((batch * n_pix,), -1.0).index_copy(0, pix, z)
    return Fragments(
        face_index=face_index,
        bary=bary.view(3, batch, height, width).permute(1, 2, 3, 0),
        depth=depth.view(batch, height, width),
        mask=face_index >= 0,
    )


def interpolate(attr: torch.Tensor, fragments: Fragments, faces: torch.Tensor) -> torch.Tensor:
    """Barycentric interpolation of vertex attributes at every pixel.

    Args:
        attr: per-vertex (B, V, C) or per-face-corner (B, F, 3, C) values; B may be 1 to
            share one attribute set across the batch.
        fragments: output of :func:`rasterize` with batch size B.
        faces: (F, 3) int64, the faces given to :func:`rasterize`.
    Returns:
        (B, H, W, C) interpolated values, 0 on background; differentiable w.r.t. ``attr``
        and the fragments' barycentrics. The result is a channels-first tensor viewed as
        channels-last, so ``.permute(0, 3, 1, 2)`` gives a contiguous (B, C, H, W) image.
    """
    return interpolate_many([attr], fragments, faces)[0]


def interpolate_many(
    attrs: list[torch.Tensor], fragments: Fragments, faces: torch.Tensor
) -> list[torch.Tensor]:
    """:func:`interpolate` for several attributes, finding the covered pixels once."""
    batch, height, width = fragments.face_index.shape
    pix, b, _, _, face = _covered_pixels(fragments.face_index)
    bary = _take(fragments.bary.permute(3, 0, 1, 2).reshape(3, -1), pix)  # (3, P)
    faces = faces.to(device=fragments.face_index.device, dtype=torch.int64)
    corner_verts = None
    results = []
    for attr in attrs:
        if attr.shape[0] == batch:
            b_attr = b
        elif attr.shape[0] == 1:
            b_attr = torch.zeros_like(b)
        else:
            raise ValueError(f"attr batch {attr.shape[0]} does not match fragments batch {batch}")
        channels = attr.shape[-1]
        if attr.dim() == 3:
            if corner_verts is None:
                corner_verts = _take(faces.t().contiguous(), face)  # (3, P)
            rows = (b_attr * attr.shape[1])[None, :] + corner_verts
        elif attr.dim() == 4 and attr.shape[2] == 3:
            base = (b_attr * attr.shape[1] + face) * 3
            rows = base[None, :] + torch.arange(3, device=attr.device)[:, None]  # (3, P)
        else:
            raise ValueError(f"attr must be (B, V, C) or (B, F, 3, C), got {tuple(attr.shape)}")
        table = attr.reshape(-1, channels).t().contiguous()  # (C, rows): long gather axis
        vals = _take(table, rows.reshape(-1)).view(channels, 3, -1)
        w = bary.to(attr.dtype)
        out = vals[:, 0] * w[0]
        out = out.addcmul(vals[:, 1], w[1]).addcmul(vals[:, 2], w[2])  # (C, P)
        full = attr.new_zeros(channels, batch * height * width).index_copy(1, pix, out)
        results.append(full.view(channels, batch, height, width).permute(1, 2, 3, 0))
    return results
