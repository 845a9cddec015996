"""torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``) without
importing torch: the sharded stages read it to pick their shard and to decide who shows a
progress bar; :mod:`nfkit.distributed` builds the process group of data-parallel training on it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from nfkit.errors import ConfigError


@dataclass(frozen=True)
class Launch:
    """What torchrun (or any launcher setting its variables) says about this process."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def label(self) -> str:
        """``[rank 2/4]``, or ``""`` for a single process."""
        return f"[rank {self.rank}/{self.world}]" if self.world > 1 else ""


def launch_from_env(env: Mapping[str, str] | None = None) -> Launch:
    """``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE`` (torchrun's), else one process."""
    env = os.environ if env is None else env
    if "WORLD_SIZE" not in env:
        return Launch()
    try:
        world = int(env["WORLD_SIZE"])
        rank = int(env.get("RANK", "0"))
        local_rank = int(env.get("LOCAL_RANK", str(rank)))
        local_world = int(env.get("LOCAL_WORLD_SIZE", str(world)))
    except ValueError:
        raise ConfigError(
            f"RANK={env.get('RANK')!r} / WORLD_SIZE={env.get('WORLD_SIZE')!r} / LOCAL_RANK={env.get('LOCAL_RANK')!r} "
            "are not integers"
        ) from None
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} is outside 0..WORLD_SIZE-1 (WORLD_SIZE={world})")
    return Launch(rank, world, local_rank, local_world)


def shows_progress(env: Mapping[str, str] | None = None) -> bool:
    """Progress bars only on the first process of each machine (torchrun's ``LOCAL_RANK`` 0):
    the bars of several processes on one terminal would overwrite each other."""
    return launch_from_env(env).local_rank == 0


__all__ = ["Launch", "launch_from_env", "shows_progress"]
