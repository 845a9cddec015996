"""Running under ``torchrun``: who am I, and the few collectives data-parallel training needs.

nfkit scales out in two ways (README, "Scale-out"):

- **sharded stages** (``fit-nerfs``, ``build-graphs``, ``embed``): every process takes its share of
  the work (``nfkit.io.shards``: ``--shard-index/--num-shards``, else torchrun's ``RANK`` /
  ``WORLD_SIZE``) and writes its own shards; no process group, no communication;
- **data-parallel training** (``pretrain-encoder``): :func:`init_distributed` joins the process
  group (gloo on the CPU, NCCL on GPUs); every rank computes its part of each step's batch,
  :func:`average_gradients` averages the gradients (one flat all-reduce per step), and rank 0
  validates and writes.

The helpers work unchanged in a single process (:class:`Dist` with ``world == 1``: every
collective is a no-op).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from nfkit.errors import ConfigError, UserError
from nfkit.io.launch import Launch, launch_from_env, shows_progress

BACKENDS = ("auto", "gloo", "nccl")
TIMEOUT_ENV = "NFKIT_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 7200
"""How long a rank waits for the others in one collective (seconds; ``$NFKIT_DIST_TIMEOUT``).
Generous because rank 0 alone renders the targets and validates while the others wait."""


def device_for_rank(device: str, env: Mapping[str, str] | None = None) -> str:
    """``cuda`` -> ``cuda:<LOCAL_RANK>`` when several processes share a machine (one GPU each,
    cycling when there are fewer GPUs than processes); any other device is kept."""
    launch = launch_from_env(env)
    if device != "cuda" or launch.local_world <= 1 or not torch.cuda.is_available():
        return device
    return f"cuda:{launch.local_rank % max(torch.cuda.device_count(), 1)}"


def resolve_backend(name: str, device: str) -> str:
    """``auto`` -> ``nccl`` on a CUDA device, ``gloo`` on the CPU; the others are checked."""
    name = name.strip().lower()
    if name not in BACKENDS:
        raise ConfigError(f"--dist-backend {name!r}: expected one of {', '.join(BACKENDS)}")
    on_cuda = str(device).startswith("cuda")
    if name == "auto":
        return "nccl" if on_cuda else "gloo"
    if name == "nccl" and not on_cuda:
        raise UserError("--dist-backend nccl needs CUDA devices (use gloo, or auto, on the CPU)")
    return name


# ---------------------------------------------------------------------- the process group
@dataclass
class Dist:
    """This process's place in a data-parallel run (``world == 1``: a single process)."""

    rank: int = 0
    world: int = 1
    backend: str = ""
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def label(self) -> str:
        return f"[rank {self.rank}/{self.world}]" if self.enabled else ""

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def close(self) -> None:
        """Leave the process group if :func:`init_distributed` created it."""
        if self.owns_group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
            self.owns_group = False


def init_distributed(backend: str = "auto", device: str = "cpu", env: Mapping[str, str] | None = None) -> Dist:
    """Join torchrun's process group when ``WORLD_SIZE`` > 1 (``MASTER_ADDR``/``MASTER_PORT``
    from the environment); a single process gets ``Dist()`` and nothing is initialised."""
    launch = launch_from_env(env)
    if launch.world <= 1:
        resolve_backend(backend, device)  # still refuse a bad name
        return Dist()
    name = resolve_backend(backend, device)
    if torch.distributed.is_initialized():  # e.g. a caller that set it up itself
        return Dist(torch.distributed.get_rank(), torch.distributed.get_world_size(), torch.distributed.get_backend())
    if name == "nccl":
        torch.cuda.set_device(torch.device(device))
    timeout = datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
    torch.distributed.init_process_group(name, timeout=timeout)
    return Dist(torch.distributed.get_rank(), torch.distributed.get_world_size(), name, owns_group=True)


def split_bounds(n: int, world: int) -> list[tuple[int, int]]:
    """Contiguous ``[lo, hi)`` parts of ``range(n)`` for ``world`` ranks, sizes differing by at
    most one, the larger ones first (rank 0 is empty only when ``n == 0``)."""
    base, extra = divmod(n, world)
    bounds, lo = [], 0
    for r in range(world):
        hi = lo + base + (1 if r < extra else 0)
        bounds.append((lo, hi))
        lo = hi
    return bounds


# ---------------------------------------------------------------------- collectives
class _GatherRows(torch.autograd.Function):
    """All ranks' rows, concatenated in rank order; the gradient of each rank's rows is the sum
    of what every rank's loss sends back to them (an all-reduce, available on gloo and NCCL)."""

    @staticmethod
    def forward(ctx, x: Tensor, counts: tuple[int, ...], rank: int) -> Tensor:
        ctx.counts, ctx.rank = counts, rank
        width = max(counts)
        padded = x.new_zeros((len(counts), width, *x.shape[1:]))
        padded[rank, : x.shape[0]] = x
        torch.distributed.all_reduce(padded)  # every other rank's block is zero: a gather
        return torch.cat([padded[r, :c] for r, c in enumerate(counts)])

    @staticmethod
    def backward(ctx, grad: Tensor):
        counts, rank = ctx.counts, ctx.rank
        width = max(counts)
        padded = grad.new_zeros((len(counts), width, *grad.shape[1:]))
        for r, part in enumerate(grad.split(list(counts))):
            padded[r, : counts[r]] = part
        torch.distributed.all_reduce(padded)
        return padded[rank, : counts[rank]].clone(), None, None


def gather_rows(dist: Dist, x: Tensor, counts: Sequence[int]) -> Tensor:
    """``(counts[rank], ...)`` rows of every rank -> ``(sum(counts), ...)`` on every rank, with
    gradients (every rank must call it, and run backward through it, once per step)."""
    if not dist.enabled:
        return x
    if x.shape[0] != counts[dist.rank]:
        raise ValueError(f"rank {dist.rank} holds {x.shape[0]} rows, the plan says {counts[dist.rank]}")
    return _GatherRows.apply(x, tuple(int(c) for c in counts), dist.rank)


def average_gradients(dist: Dist, params: Sequence[torch.nn.Parameter], extras: Sequence[float] = ()) -> list[float]:
    """Average the gradients of ``params`` over the ranks (one flat all-reduce) and return the
    *sums* of ``extras`` over the ranks (the loss terms, in the same message).

    A parameter that no rank used keeps ``grad = None`` (the optimizer then skips it, as it
    would in a single process); one that some rank used gets the average, the others counting
    zero."""
    if not dist.enabled:
        return [float(e) for e in extras]
    device = params[0].device
    flat = [p.grad.reshape(-1).float() if p.grad is not None else torch.zeros(p.numel(), device=device) for p in params]
    used = torch.tensor([float(p.grad is not None) for p in params], device=device)
    buf = torch.cat([*flat, used, torch.tensor([float(e) for e in extras], device=device)])
    torch.distributed.all_reduce(buf)
    total = sum(p.numel() for p in params)
    used_total = buf[total : total + len(params)]
    offset = 0
    for i, p in enumerate(params):
        n = p.numel()
        if used_total[i] > 0:
            g = (buf[offset : offset + n] / dist.world).view_as(p).to(p.dtype)
            if p.grad is None:
                p.grad = g.clone()
            else:
                p.grad.copy_(g)
        offset += n
    return buf[total + len(params) :].tolist()


def broadcast_module(dist: Dist, module: torch.nn.Module) -> None:
    """Every rank takes rank 0's parameters and buffers."""
    if not dist.enabled:
        return
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            torch.distributed.broadcast(t.data, src=0)


def check_replicas(dist: Dist, module: torch.nn.Module) -> None:
    """Raise unless every rank holds the same parameters (a cheap checksum, compared exactly):
    data-parallel training keeps them equal, so a difference is a bug."""
    if not dist.enabled:
        return
    with torch.no_grad():
        params = list(module.parameters())
        device = params[0].device
        sums = torch.stack([p.detach().double().sum() for p in params] + [p.detach().double().abs().sum() for p in params])
        lo, hi = sums.clone().to(device), sums.clone().to(device)
        torch.distributed.all_reduce(lo, op=torch.distributed.ReduceOp.MIN)
        torch.distributed.all_reduce(hi, op=torch.distributed.ReduceOp.MAX)
    if not torch.equal(lo, hi):
        raise RuntimeError("data-parallel replicas diverged: the ranks hold different weights (a bug in nfkit)")


__all__ = [
    "BACKENDS",
    "Dist",
    "Launch",
    "average_gradients",
    "broadcast_module",
    "check_replicas",
    "device_for_rank",
    "gather_rows",
    "init_distributed",
    "launch_from_env",
    "resolve_backend",
    "shows_progress",
    "split_bounds",
]
