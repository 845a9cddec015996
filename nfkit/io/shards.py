"""Sharded, resumable work with a progress bar: the one helper every stage uses.

A stage that turns many items (objects, NeRFs, graphs) into shard artifacts does::

    plan = plan_work(items, key=lambda e: e.key, done=keys_already_stored,
                     shard_index=rank, num_shards=world, batch_size=8)
    for batch, result in run_work(plan, process, progress=True, desc="fit-nerfs", unit="nerf"):
        ...   # process(batch) wrote one artifact (atomically) and returned a summary

1. **plan**: this worker's items are positions ``i % num_shards == shard_index`` of the full
   (sorted) list (``--shard-index/--num-shards``, else torchrun's ``RANK/WORLD_SIZE``:
   :func:`shard_from_env`), or, with ``shard_group=G``, the groups of ``G`` consecutive items
   ``j`` with ``j % num_shards == shard_index`` (fit-nerfs: a group is one batch, so a sharded
   run fits the same batches as a single process). The list is sharded before complete items
   are dropped, so workers that start at different times still split it the same way;
2. **skip complete**: items whose key is in ``done`` (read from the shards already on disk, so
   resume never depends on how the list was filtered);
3. **process** the rest in batches, with one tqdm bar (:func:`progress_bar`; labelled
   ``[shard i/N]`` when sharded, and under torchrun shown only by the first process of each
   machine, ``LOCAL_RANK`` 0);
4. **write atomically** to a name that never collides with an existing shard
   (:func:`fresh_shard_path`: derived from the keys the shard holds, never reused).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from nfkit.errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")


# ---------------------------------------------------------------------- which items
def shard_selection(n_items: int, shard_index: int, num_shards: int, group: int = 1) -> list[int]:
    """Positions ``i`` of ``range(n_items)`` with ``(i // group) % num_shards == shard_index``:
    groups of ``group`` consecutive items dealt round-robin (``group=1``: single items)."""
    if num_shards < 1:
        raise ConfigError(f"--num-shards must be >= 1, got {num_shards}")
    if not 0 <= shard_index < num_shards:
        raise ConfigError(f"--shard-index {shard_index} is outside 0..{num_shards - 1}")
    if group < 1:
        raise ConfigError(f"shard group must be >= 1, got {group}")
    return [i for i in range(n_items) if (i // group) % num_shards == shard_index]


def shard_from_env(
    shard_index: int | None, num_shards: int | None, env: Mapping[str, str] | None = None
) -> tuple[int, int]:
    """Explicit values win; else torchrun's ``RANK``/``WORLD_SIZE``; else ``(0, 1)``."""
    env = os.environ if env is None else env
    if shard_index is None and num_shards is None and "WORLD_SIZE" in env:
        try:
            return int(env.get("RANK", "0")), int(env["WORLD_SIZE"])
        except ValueError:
            raise ConfigError(
                f"RANK={env.get('RANK')!r} / WORLD_SIZE={env.get('WORLD_SIZE')!r} are not integers"
            ) from None
    if (shard_index is None) != (num_shards is None):
        raise ConfigError("give both --shard-index and --num-shards, or neither")
    return (  # an explicit 0 stays 0 (refused by shard_selection), it is not "the default"
        shard_index if shard_index is not None else 0,
        num_shards if num_shards is not None else 1,
    )


@dataclass
class WorkPlan(Generic[T]):
    """This worker's items, split into those already complete and those to do."""

    selected: list[T]
    """this worker's items (after sharding), in order"""
    todo: list[T]
    """``selected`` minus the complete ones"""
    batch_size: int = 1
    keys: dict[int, str] = field(default_factory=dict, repr=False)
    shard_index: int = 0
    num_shards: int = 1

    @property
    def label(self) -> str:
        """``[shard 2/4]`` (1-based) when the work is sharded, else ``""``."""
        return f"[shard {self.shard_index + 1}/{self.num_shards}]" if self.num_shards > 1 else ""

    @property
    def skipped(self) -> int:
        return len(self.selected) - len(self.todo)

    def batches(self) -> Iterator[list[T]]:
        """``todo`` in consecutive batches of ``batch_size``."""
        for start in range(0, len(self.todo), self.batch_size):
            yield self.todo[start : start + self.batch_size]


def plan_work(
    items: Sequence[T],
    key: Callable[[T], str] | None = None,
    done: Iterable[str] = (),
    shard_index: int = 0,
    num_shards: int = 1,
    batch_size: int = 1,
    shard_group: int = 1,
) -> WorkPlan[T]:
    """Select this worker's items (groups of ``shard_group`` consecutive items, dealt
    round-robin) and drop those whose ``key`` is in ``done``."""
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    selected = [items[i] for i in shard_selection(len(items), shard_index, num_shards, shard_group)]
    done = set(done)
    keys = [key(item) if key is not None else str(item) for item in selected]
    dup = {k for k in keys if keys.count(k) > 1} if len(set(keys)) != len(keys) else set()
    if dup:
        raise ConfigError(f"two work items share the key {sorted(dup)[0]!r}")
    todo = [item for item, k in zip(selected, keys, strict=True) if k not in done]
    return WorkPlan(selected, todo, batch_size, shard_index=shard_index, num_shards=num_shards)


# ---------------------------------------------------------------------- progress
class Progress:
    """A tqdm bar, or nothing when disabled (same calls either way)."""

    def __init__(self, bar=None) -> None:
        self._bar = bar

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def note(self, text: str) -> None:
        """Text after the bar (e.g. ``mlp PSNR 27.1 dB``)."""
        if self._bar is not None:
            self._bar.set_postfix_str(text)


@contextlib.contextmanager
def progress_bar(total: int, desc: str, unit: str = "item", enabled: bool = True) -> Iterator[Progress]:
    """The one progress-bar set-up of nfkit (tqdm on stderr), closed on exit. Under torchrun
    only the first process of each machine shows one (:func:`nfkit.io.launch.shows_progress`)."""
    from nfkit.io.launch import shows_progress

    if not enabled or total <= 0 or not shows_progress():
        yield Progress()
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True)
    try:
        yield Progress(bar)
    finally:
        bar.close()


def run_work(
    plan: WorkPlan[T],
    process: Callable[[list[T]], R],
    *,
    progress: bool = False,
    desc: str = "",
    unit: str = "item",
    weight: Callable[[T], int] | None = None,
    note: Callable[[R], str] | None = None,
) -> Iterator[tuple[list[T], R]]:
    """Process ``plan.batches()`` in order, yielding ``(batch, process(batch))``.

    The bar advances by ``weight(item)`` per item (default 1) once its batch is done; ``note``
    turns a result into text shown after the bar; a sharded plan's bar says which shard it is.
    """
    w = weight or (lambda _item: 1)
    total = sum(w(item) for item in plan.todo)
    desc = f"{desc} {plan.label}".strip()
    with progress_bar(total, desc, unit, progress) as bar:
        for batch in plan.batches():
            result = process(batch)
            bar.update(sum(w(item) for item in batch))
            if note is not None:
                bar.note(note(result))
            yield batch, result


# ---------------------------------------------------------------------- names
def fresh_shard_path(folder: str | os.PathLike, keys: Sequence[str], prefix: str = "shard") -> Path:
    """``folder/<prefix>-<fingerprint of keys>.h5``, never an existing file.

    The name depends only on what the shard holds, not on the position of its items in a
    (filtered) list, so runs with different filters never reuse each other's names; a name
    that exists (same keys written again) gets a ``-1``, ``-2``, ... suffix.
    """
    from nfkit.io.artifacts import fingerprint_bytes

    folder = Path(folder)
    digest = fingerprint_bytes(*(k.encode() + b"\0" for k in keys))[:12]
    stem = f"{prefix}-{digest}"
    path, n = folder / f"{stem}.h5", 0
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}.h5"
    return path


__all__ = [
    "Progress",
    "WorkPlan",
    "fresh_shard_path",
    "plan_work",
    "progress_bar",
    "run_work",
    "shard_from_env",
    "shard_selection",
]
