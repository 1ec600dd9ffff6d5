"""Pure-PyTorch differentiable rendering (DECA's SRenderY equivalent)."""

from emoca.render.draw import draw_landmarks
from emoca.render.geometry import face_normals, grid_triangles, vertex_normals
from emoca.render.raster import (
    DECA_Z_OFFSET,
    Fragments,
    deca_to_raster,
    face_vertices,
    interpolate,
    pixel_centers,
    rasterize,
)
from emoca.render.renderer import DenseMesh, DetailMaps, Render, Renderer, ShapeRender, sample_uv
from emoca.render.shading import (
    SH_CONSTANTS,
    add_directional_light,
    add_point_light,
    add_sh_light,
    deca_shape_lights,
    sh_basis,
)

__all__ = [
    "DECA_Z_OFFSET",
    "SH_CONSTANTS",
    "DenseMesh",
    "DetailMaps",
    "Fragments",
    "Render",
    "Renderer",
    "ShapeRender",
    "add_directional_light",
    "add_point_light",
    "add_sh_light",
    "deca_shape_lights",
    "deca_to_raster",
    "draw_landmarks",
    "face_normals",
    "face_vertices",
    "grid_triangles",
    "interpolate",
    "pixel_centers",
    "rasterize",
    "sample_uv",
    "sh_basis",
    "vertex_normals",
]
