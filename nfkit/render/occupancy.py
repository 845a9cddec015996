"""Torch occupancy grids for B NeRFs at once, and a sampler that skips empty space.

:class:`OccupancyGrid` follows the update rule of nerfacc's ``OccGridEstimator``
(``nerfacc/estimators/occ_grid.py``, 0.5.3), with a leading NeRF dimension:

- every ``n`` steps, evaluate ``occ = density(x) · step_size`` at one jittered point per cell
  (all cells during the first ``warmup_steps`` steps; afterwards ``cells/4`` uniformly drawn
  cells plus up to ``cells/4`` currently occupied ones);
- ``occs = max(occs · ema_decay, occ)`` on those cells (a scatter-max, so a cell drawn twice
  keeps the larger value);
- a cell is occupied when ``occs > min(mean(occs), occ_thre)``, per NeRF.

The grid starts all-occupied (nerfacc starts empty but updates before the first sampling);
cells are indexed ``i·R² + j·R + k`` with i along x, as nerfacc's meshgrid does.

The sampler (:func:`gather_occupied` + :func:`scatter_samples`) picks, per NeRF, the samples
that fall in occupied cells, pads the lists of the B NeRFs to a common length so the field
runs as one batched call, and scatters the results back into dense ``(B, n_rays, n_samples)``
arrays (zeros elsewhere). On a CPU that is where the speed comes from: the field only sees
the occupied samples.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from nfkit.render.rays import DEFAULT_AABB

OccEvalFn = Callable[[Tensor], Tensor]
"""(B, N, 3) world positions -> (B, N) occupancy values (density · step size)."""
OccEvalRaggedFn = Callable[[Tensor, Tensor], Tensor]
"""The same where only the first ``counts[b]`` positions of row ``b`` matter: (B, N, 3),
counts (B,) -> (B, N), anything (e.g. 0) in the padding."""


class OccupancyGrid:
    """Binary occupancy grids of ``n_nerfs`` NeRFs over the cube ``[lo, hi]^3``.

    Shapes:
        occs: (B, R³) float, the EMA of the occupancy values
        binary: (B, R, R, R) bool
    """

    def __init__(
        self,
        n_nerfs: int,
        resolution: int,
        aabb: tuple[float, float] = DEFAULT_AABB,
        device: str | torch.device = "cpu",
    ) -> None:
        if n_nerfs < 1 or resolution < 1:
            raise ValueError(
                f"an occupancy grid needs n_nerfs >= 1 and resolution >= 1, got {n_nerfs}, {resolution}"
            )
        self.n_nerfs = n_nerfs
        self.resolution = resolution
        self.aabb = (float(aabb[0]), float(aabb[1]))
        self.device = torch.device(device)
        n_cells = resolution**3
        self.occs = torch.zeros(n_nerfs, n_cells, device=self.device)
        self.binary = torch.ones(n_nerfs, resolution, resolution, resolution, dtype=torch.bool, device=self.device)
        self.limit: Tensor | None = None

    def carve(self, limit: Tensor) -> None:
        """Keep the grid inside ``limit`` ((B, R³) bool, e.g. the visual hull of each NeRF's
        masks) from now on: cells outside it are empty and every update leaves them so."""
        if limit.shape != (self.n_nerfs, self.n_cells) or limit.dtype != torch.bool:
            raise ValueError(f"expected a ({self.n_nerfs}, {self.n_cells}) bool limit, got {tuple(limit.shape)} {limit.dtype}")
        self.limit = limit.to(self.device)
        self.binary = self.binary & self.limit.view(self.binary.shape)

    @property
    def n_cells(self) -> int:
        return self.resolution**3

    def cell_coords(self, cells: Tensor) -> Tensor:
        """Integer (i, j, k) of flat cell indices. (...,) -> (..., 3) long."""
        r = self.resolution
        return torch.stack([cells // (r * r), (cells // r) % r, cells % r], dim=-1)

    def occupied_fraction(self) -> Tensor:
        """(B,) fraction of occupied cells per NeRF."""
        return self.binary.flatten(1).float().mean(dim=1)

    def lookup(self, x: Tensor) -> Tensor:
        """Whether world positions lie in occupied cells (False outside the box).

        Shapes:
            x: (B, N, 3)
            returns: (B, N) bool
        """
        if x.dim() != 3 or x.shape[0] != self.n_nerfs or x.shape[-1] != 3:
            raise ValueError(f"expected positions of shape ({self.n_nerfs}, N, 3), got {tuple(x.shape)}")
        lo, hi = self.aabb
        u = (x - lo) / (hi - lo)
        inside = ((u >= 0) & (u < 1)).all(dim=-1)
        ijk = (u * self.resolution).long().clamp_(0, self.resolution - 1)
        r = self.resolution
        flat = ijk[..., 0] * (r * r) + ijk[..., 1] * r + ijk[..., 2]
        return self.binary.flatten(1).gather(1, flat) & inside

    # ------------------------------------------------------------------ update
    def _cells_to_update(self, warmup: bool, generator: torch.Generator | None) -> tuple[Tensor, Tensor | None]:
        """(B, M) flat cell indices to re-evaluate, and (B,) how many of each row are not
        padding (None: all are)."""
        b, n_cells = self.n_nerfs, self.n_cells
        if self.limit is not None:
            return self._limited_cells(warmup, generator)
        if warmup:
            return torch.arange(n_cells, device=self.device).expand(b, n_cells), None
        n = max(n_cells // 4, 1)
        uniform = torch.randint(n_cells, (b, n), generator=generator, device=self.device)
        occupied = []
        for i in range(b):
            cells = torch.nonzero(self.binary[i].flatten())[:, 0]
            if len(cells) > n:
                pick = torch.randint(len(cells), (n,), generator=generator, device=self.device)
                cells = cells[pick]
            occupied.append(cells)
        width = max(len(c) for c in occupied)
        # NeRFs with fewer occupied cells are padded with extra uniform draws.
        padded = torch.randint(n_cells, (b, width), generator=generator, device=self.device)
        for i, cells in enumerate(occupied):
            padded[i, : len(cells)] = cells
        return torch.cat([uniform, padded], dim=1), None

    def _limited_cells(self, warmup: bool, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """Cells to re-evaluate when the grid is carved: only cells inside the limit (the
        others stay empty whatever the density is there). Warm-up: all of them; afterwards a
        quarter of them drawn uniformly plus up to as many occupied ones. Rows are padded by
        repeating a row's first cell (updating a cell twice is the same as once); returns the
        cells and each row's count of real ones."""
        lists = []
        for i in range(self.n_nerfs):
            inside = torch.nonzero(self.limit[i])[:, 0]
            if len(inside) == 0:
                inside = torch.zeros(1, dtype=torch.long, device=self.device)
            if not warmup:
                n = max(len(inside) // 4, 1)
                uniform = inside[torch.randint(len(inside), (n,), generator=generator, device=self.device)]
                occupied = torch.nonzero(self.binary[i].flatten())[:, 0]
                if len(occupied) > n:
                    occupied = occupied[torch.randint(len(occupied), (n,), generator=generator, device=self.device)]
                inside = torch.cat([uniform, occupied])
            lists.append(inside)
        width = max(len(c) for c in lists)
        out = torch.empty(self.n_nerfs, width, dtype=torch.long, device=self.device)
        for i, cells in enumerate(lists):
            out[i, : len(cells)] = cells
            out[i, len(cells) :] = cells[0]
        return out, torch.tensor([len(c) for c in lists], device=self.device)

    @torch.no_grad()
    def update(
        self,
        step: int,
        occ_eval_fn: OccEvalFn,
        occ_thre: float = 0.01,
        ema_decay: float = 0.95,
        warmup_steps: int = 256,
        chunk: int = 65536,
        generator: torch.Generator | None = None,
        occ_eval_ragged: OccEvalRaggedFn | None = None,
    ) -> None:
        """One nerfacc-style EMA update (call it every n steps, see :meth:`update_every_n_steps`).

        ``occ_eval_ragged``: where given, it evaluates carved grids, whose rows of cells are
        padded to the NeRF with the largest hull, on each row's real cells only."""
        cells, counts = self._cells_to_update(step < warmup_steps, generator)
        lo, hi = self.aabb
        occ = torch.empty(cells.shape, device=self.device)
        for start in range(0, cells.shape[1], chunk):
            part = cells[:, start : start + chunk]
            jitter = torch.rand((*part.shape, 3), generator=generator, device=self.device)
            x = lo + (self.cell_coords(part).float() + jitter) / self.resolution * (hi - lo)
            if counts is not None and occ_eval_ragged is not None:
                real = (counts - start).clamp(0, part.shape[1])
                # padding repeats a row's first cell: 0 there leaves the amax to its real value
                occ[:, start : start + chunk] = occ_eval_ragged(x, real).reshape(part.shape)
                occ[:, start : start + chunk].masked_fill_(torch.arange(part.shape[1], device=self.device) >= real[:, None], 0.0)
            else:
                occ[:, start : start + chunk] = occ_eval_fn(x).reshape(part.shape)
        decayed = self.occs.clone()
        decayed.scatter_(1, cells, self.occs.gather(1, cells) * ema_decay)
        decayed.scatter_reduce_(1, cells, occ, reduce="amax", include_self=True)
        self.occs = decayed
        thre = self.occs.mean(dim=1, keepdim=True).clamp(max=occ_thre)
        self.binary = (self.occs > thre).view(self.binary.shape)
        if self.limit is not None:
            self.binary &= self.limit.view(self.binary.shape)

    def update_every_n_steps(
        self,
        step: int,
        occ_eval_fn: OccEvalFn,
        n: int = 16,
        **kwargs,
    ) -> bool:
        """Update when ``step % n == 0``; returns whether it did."""
        if step % n:
            return False
        self.update(step, occ_eval_fn, **kwargs)
        return True

    @classmethod
    @torch.no_grad()
    def from_density(
        cls,
        occ_eval_fn: OccEvalFn,
        n_nerfs: int,
        resolution: int,
        aabb: tuple[float, float] = DEFAULT_AABB,
        occ_thre: float = 0.01,
        passes: int = 2,
        device: str | torch.device = "cpu",
        generator: torch.Generator | None = None,
    ) -> OccupancyGrid:
        """A grid built from scratch for a fitted field (``passes`` jittered full sweeps).

        Shards do not store grids; renderers rebuild them with this.
        """
        grid = cls(n_nerfs, resolution, aabb, device)
        for _ in range(max(passes, 1)):
            grid.update(0, occ_eval_fn, occ_thre=occ_thre, ema_decay=1.0, warmup_steps=1, generator=generator)
        return grid


# ---------------------------------------------------------------------- sampler
def gather_occupied(mask: Tensor) -> tuple[Tensor, Tensor]:
    """Indices of the True entries of each row, padded to the longest row.

    Shapes:
        mask: (B, M) bool
        returns index: (B, K) long, a prefix of a permutation of 0..M-1 per row (so all
        indices of a row are distinct), and valid: (B, K) bool marking the real entries.
        K = max number of True entries per row (at least 1).
    """
    if mask.dim() != 2 or mask.dtype != torch.bool:
        raise ValueError(f"expected a (B, M) bool mask, got {tuple(mask.shape)} {mask.dtype}")
    counts = mask.sum(dim=1)
    k = max(int(counts.max().item()) if mask.numel() else 0, 1)
    k = min(k, mask.shape[1])
    # Stable sort puts the True entries first, in their original order.
    order = torch.argsort((~mask).to(torch.uint8), dim=1, stable=True)[:, :k]
    valid = torch.arange(k, device=mask.device)[None, :] < counts[:, None]
    return order, valid


def take(values: Tensor, index: Tensor) -> Tensor:
    """Rows of ``values`` at ``index``. values (B, M, ...) , index (B, K) -> (B, K, ...)."""
    idx = index.reshape(*index.shape, *([1] * (values.dim() - 2))).expand(*index.shape, *values.shape[2:])
    return values.gather(1, idx)


def scatter_samples(values: Tensor, index: Tensor, valid: Tensor, size: int) -> Tensor:
    """Inverse of :func:`take`: dense (B, size, ...) with zeros where nothing was evaluated.

    Differentiable with respect to ``values``. Invalid (padding) entries are written as zeros
    at their (unoccupied, distinct) positions.
    """
    b, k = index.shape
    extra = values.shape[2:]
    vals = values * valid.reshape(b, k, *([1] * len(extra))).to(values.dtype)
    out = values.new_zeros((b, size, *extra))
    idx = index.reshape(b, k, *([1] * len(extra))).expand(b, k, *extra)
    return out.scatter(1, idx, vals)
