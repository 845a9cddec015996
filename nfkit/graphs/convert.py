"""NeRF shards → graph shards (one output per input, same relative name), resumable.

:func:`build_graphs` is the library side of ``nfkit build-graphs``: it yields one
:class:`ShardResult` per input shard, so a caller can report a failed shard (corrupt file, unknown
architecture) at once while the others are still built. :func:`graph_stats` summarises a folder
of graph shards per architecture.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nfkit.errors import ConfigError, UserError
from nfkit.graphs.build import edge_values, graph_template
from nfkit.graphs.nf2vec import nf2vec_num_rows, nf2vec_rows
from nfkit.graphs.schema import VALUE, ParamGraph
from nfkit.graphs.store import (
    GRAPH_SHARD,
    GraphMeta,
    GraphShard,
    GraphShardWriter,
    find_graph_shards,
)
from nfkit.io.artifacts import ArtifactError, fingerprint_path, open_artifact
from nfkit.io.lock import output_folder
from nfkit.io.shards import plan_work, run_work, shard_selection
from nfkit.nerf.specs import ArchSpec
from nfkit.nerf.store import find_shards, read_nerf_shard, read_shard_spec

log = logging.getLogger(__name__)

#: errors that make one input shard fail without stopping the others
SHARD_ERRORS = (ArtifactError, ValueError, OSError, KeyError, RuntimeError)


@dataclass
class ShardResult:
    source: Path
    output: Path
    status: str  # "built" | "skipped" (up to date) | "filtered" (--arch) | "failed"
    arch: str = ""
    graphs: int = 0
    seconds: float = 0.0
    message: str = ""


@dataclass
class _Job:
    source: Path
    output: Path
    spec: ArchSpec | None = None
    count: int = 0


def plan_outputs(
    inputs: Iterable[str | Path], out_dir: str | Path
) -> list[tuple[Path, Path, bool]]:
    """(NeRF shard, graph shard, named explicitly) triples: a folder's ``*.h5`` files keep their
    path relative to the folder, a file keeps its name. Files inside ``out_dir`` are never
    inputs."""
    out_dir = Path(out_dir)
    out_resolved = out_dir.resolve()
    pairs: list[tuple[Path, Path, bool]] = []
    for given in map(Path, inputs):
        if given.is_dir():
            for shard in find_shards(given):
                if out_resolved in shard.resolve().parents:
                    continue
                pairs.append((shard, out_dir / shard.relative_to(given), False))
        elif given.is_file():
            pairs.append((given, out_dir / given.name, True))
        else:
            raise FileNotFoundError(f"{given}: no such file or folder")
    seen: dict[Path, Path] = {}
    for src, out, _ in pairs:
        if out.resolve() == src.resolve():
            raise UserError(f"{src}: the output would overwrite the input; choose another --out")
        if out in seen:
            raise UserError(
                f"{seen[out]} and {src} would both be written to {out}; pass their common parent folder instead"
            )
        seen[out] = src
    return pairs


def _source_attrs(src: Path) -> dict:
    st = src.stat()
    return {
        "source_shard": str(src),
        "source_size": int(st.st_size),
        "source_mtime_ns": int(st.st_mtime_ns),
    }


def is_up_to_date(output: Path, source: Path, nf2vec_width: int) -> bool:
    """True when ``output`` is a complete graph shard built from ``source`` as it is now (same
    content fingerprint, :func:`~nfkit.io.artifacts.fingerprint_path`) with the same nf2vec
    option. Shards of older nfkit versions recorded only size and mtime: they are rebuilt."""
    if not output.is_file():
        return False
    try:
        with open_artifact(output, GRAPH_SHARD) as f:
            inputs = json.loads(f.attrs["nfkit_inputs"])
            ok = inputs.get("nerf_shard") == fingerprint_path(source)
            ok = ok and int(f.attrs.get("nf2vec_width", -1)) == int(nf2vec_width)
            ok = ok and len(f["node_ptr"]) == int(f.attrs["count"]) + 1
        return ok
    except (ArtifactError, OSError, KeyError, ValueError):
        return False


def resolve_nf2vec_width(spec: ArchSpec, nf2vec: bool, width: int | None) -> int:
    """0 = no nf2vec rows; otherwise the row width (default: the spec's hidden dimension)."""
    if width is not None:
        if width < 1:
            raise ConfigError(f"--nf2vec-width must be positive, got {width}")
        return int(width)
    return spec.hidden_dim if nf2vec else 0


def build_graph_shard(
    source: str | Path, output: str | Path, nf2vec_width: int = 0, progress_cb=None
) -> ShardResult:
    """Convert one NeRF shard into one graph shard (written atomically)."""
    source, output = Path(source), Path(output)
    t0 = time.perf_counter()
    attrs = _source_attrs(source)
    records = read_nerf_shard(source)
    spec = records[0].arch
    template = graph_template(spec)
    n = len(records)
    nf2vec_shape = (nf2vec_num_rows(spec, nf2vec_width), nf2vec_width) if nf2vec_width else None
    # the sine the weights were trained with: a decoder or rendering loss reading these graphs
    # must evaluate the source NeRFs with it (NerfRecord.sin)
    config = {"stage": "build-graphs", "nf2vec_width": nf2vec_width, "arch": spec.name, "sin": records[0].sin}
    inputs = {
        "nerf_shard": fingerprint_path(source),
        "arch": spec.fingerprint(),
        "init": records[0].init_fingerprint,
    }
    with GraphShardWriter(
        output,
        n,
        n * template.num_nodes,
        n * template.num_edges,
        [spec],
        nf2vec_shape,
        config,
        inputs,
        attrs,
        input_paths={"nerf_shard": [source]},
    ) as w:
        arch_fp = spec.fingerprint()
        edge_attr = template.graph.edge_attr.copy()  # reused: the writer copies what it is given
        for r in records:
            edge_attr[:, VALUE] = edge_values(template, r.params)
            graph = ParamGraph(template.graph.x, template.graph.edge_index, edge_attr)
            meta = GraphMeta(
                object_id=r.object_id,
                class_name=r.class_name,
                split=r.split,
                arch=spec.name,
                arch_fingerprint=arch_fp,
                init_fingerprint=r.init_fingerprint,
                source_shard=str(source),
                source_row=r.index,
            )
            rows = nf2vec_rows(spec, r.params, nf2vec_width) if nf2vec_width else None
            w.add(graph, meta, rows)
            if progress_cb is not None:
                progress_cb(1)
    return ShardResult(source, output, "built", spec.name, n, time.perf_counter() - t0)


def _one_line(exc: BaseException, source: Path) -> str:
    msg = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
    if isinstance(exc, KeyError):
        msg = f"malformed file (missing {msg})"
    return msg if str(source) in msg else f"{source}: {msg}"


def build_graphs(
    inputs: Iterable[str | Path],
    out_dir: str | Path,
    archs: Iterable[str] | None = None,
    nf2vec: bool = False,
    nf2vec_width: int | None = None,
    force: bool = False,
    progress: bool = False,
    shard_index: int = 0,
    num_shards: int = 1,
) -> Iterator[ShardResult]:
    """Build the graph shard of every NeRF shard under ``inputs`` into ``out_dir``.

    ``archs`` keeps only those architecture names; outputs that are up to date are skipped
    unless ``force``. A shard that cannot be read or converted yields a ``failed`` result with a
    one-line message; the others are still built.

    ``shard_index``/``num_shards``: this worker takes the NeRF shards ``i % num_shards ==
    shard_index`` of the sorted list of inputs kept by ``archs`` (unreadable ones included, so
    that each is reported by one worker); the list does not depend on what is built already,
    so workers starting at different times split it the same way. ``filtered`` results are
    reported by worker 0 only.
    """
    if nf2vec_width is not None and nf2vec_width < 1:
        raise ConfigError(f"--nf2vec-width must be positive, got {nf2vec_width}")
    inputs = list(inputs)
    if not inputs:
        return
    with output_folder(out_dir, "--out", shard=(shard_index, num_shards)):  # refused while another run writes there
        yield from _build_into(inputs, Path(out_dir), archs, nf2vec, nf2vec_width, force, progress, shard_index, num_shards)


def _build_into(inputs, out_dir, archs, nf2vec, nf2vec_width, force, progress, shard_index,
                num_shards) -> Iterator[ShardResult]:
    keep = None if archs is None else {a.lower() for a in archs}
    jobs: list[_Job] = []
    planned = plan_outputs(inputs, out_dir)
    if inputs and not planned:
        raise UserError(
            f"no NeRF shards (*.h5 nerf-shard artifacts) found in {', '.join(map(str, inputs))}"
        )
    candidates: list[tuple[Path, Path, ArchSpec | None, int, str]] = []
    for src, out, _ in planned:
        try:
            spec, _, count = read_shard_spec(src)
        except SHARD_ERRORS as exc:
            candidates.append((src, out, None, 0, _one_line(exc, src)))
            continue
        if keep is not None and spec.name.lower() not in keep:
            if shard_index == 0:
                yield ShardResult(src, out, "filtered", spec.name, count)
            continue
        candidates.append((src, out, spec, count, ""))
    mine = [candidates[i] for i in shard_selection(len(candidates), shard_index, num_shards)]
    for src, out, spec, count, error in mine:
        if spec is None:
            yield ShardResult(src, out, "failed", message=error)
            continue
        width = resolve_nf2vec_width(spec, nf2vec, nf2vec_width)
        if not force and is_up_to_date(out, src, width):
            yield ShardResult(src, out, "skipped", spec.name, count)
            continue
        jobs.append(_Job(src, out, spec, count))

    def build(batch: list[_Job]) -> ShardResult:
        (job,) = batch
        width = resolve_nf2vec_width(job.spec, nf2vec, nf2vec_width)
        try:
            result = build_graph_shard(job.source, job.output, width)
        except SHARD_ERRORS as exc:
            return ShardResult(job.source, job.output, "failed", job.spec.name, message=_one_line(exc, job.source))
        log.info("%s -> %s: %d graphs in %.2fs", job.source, job.output, result.graphs, result.seconds)
        return result

    plan = plan_work(jobs, key=lambda j: str(j.output))
    plan.shard_index, plan.num_shards = shard_index, num_shards  # for the progress bar's label
    for _batch, result in run_work(
        plan, build, progress=progress, desc="build-graphs", unit="graph", weight=lambda j: j.count
    ):
        yield result


# ---------------------------------------------------------------------------- statistics
@dataclass
class ArchStats:
    arch: str
    family: str
    shards: int
    graphs: int
    nodes_min: int
    nodes_max: int
    edges_min: int
    edges_max: int
    bytes: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def graph_stats(paths: str | Path | Iterable[str | Path]) -> list[ArchStats]:
    """Nodes and edges per graph, per architecture, over the graph shards under ``paths``."""
    acc: dict[str, dict] = {}
    for path in find_graph_shards(paths):
        shard = GraphShard(path)
        nodes = np.diff(shard.node_ptr)
        edges = np.diff(shard.edge_ptr)
        size = path.stat().st_size
        for i, m in enumerate(shard.meta):
            a = acc.setdefault(
                m.arch,
                {"family": shard.spec(i).family, "shards": set(), "n": [], "e": [], "bytes": 0},
            )
            a["shards"].add(path)
            a["n"].append(int(nodes[i]))
            a["e"].append(int(edges[i]))
            a["bytes"] += size / len(shard)  # a shard's file size, shared among its graphs
    return [
        ArchStats(
            arch,
            a["family"],
            len(a["shards"]),
            len(a["n"]),
            min(a["n"]),
            max(a["n"]),
            min(a["e"]),
            max(a["e"]),
            round(a["bytes"]),
        )
        for arch, a in sorted(acc.items())
    ]


def format_stats(stats: list[ArchStats]) -> str:
    """A plain-text table of :func:`graph_stats` (ranges shown as ``min-max`` when they vary)."""

    def rng(lo: int, hi: int) -> str:
        return f"{lo}" if lo == hi else f"{lo}-{hi}"

    rows = [("arch", "family", "shards", "graphs", "nodes/graph", "edges/graph", "MB")]
    for s in stats:
        rows.append(
            (
                s.arch,
                s.family,
                str(s.shards),
                str(s.graphs),
                rng(s.nodes_min, s.nodes_max),
                rng(s.edges_min, s.edges_max),
                f"{s.bytes / 2**20:.1f}",
            )
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.ljust(w) if c < 2 else cell.rjust(w)
            for c, (cell, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
