"""Rendering NeRFs: rays, occupancy grids with empty-space skipping, volume compositing.

- :mod:`nfkit.render.rays`       box intersection, stratified intervals, turntable cameras
- :mod:`nfkit.render.occupancy`  torch occupancy grids of B NeRFs (nerfacc's update rule)
- :mod:`nfkit.render.volrend`    compositing (nerfacc's dense functions, torch fallback)
- :mod:`nfkit.render.renderer`   :func:`render_batch` (the fitter's path) and :func:`render_rays`
- :mod:`nfkit.render.samplers`   the torch grid sampler and nerfacc's CUDA sampler
- :mod:`nfkit.render.views`      stored NeRFs -> PNG images (``nfkit render``)
"""

from nfkit.render.occupancy import OccupancyGrid
from nfkit.render.renderer import RenderOutput, build_grid, render_batch, render_rays

__all__ = ["OccupancyGrid", "RenderOutput", "build_grid", "render_batch", "render_rays"]
