"""A damaged input (truncated, or bytes flipped in its data) is named by the stage that reads it,
in one ``error:`` line without a traceback, and the exit code is 1; stages that process many
files skip it and go on with the others (issue 13, item 4). Caches a stage rebuilds (render
targets, CLIP view embeddings) are recomputed with a warning naming them."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import h5py
import pytest

from .conftest import CLASSIFY, CPU, ENCODER, MAP_CLIP, cli


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip(path: Path) -> None:
    """Invert 16 bytes in the middle of the data of the file's largest dataset (of the file, for
    what is not HDF5): what a bad disk or a bad copy does, invisible to HDF5 itself."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    if path.suffix == ".h5":
        spans = []
        with h5py.File(path, "r") as f:
            f.visititems(lambda _n, o: spans.append((o.id.get_storage_size(), o.id.get_offset()))
                         if isinstance(o, h5py.Dataset) and o.id.get_offset() is not None else None)
        size, offset = max(spans)
        middle = offset + size // 2
    for i in range(middle, middle + 16):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def copy(src: Path, dst: Path) -> Path:
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    return dst


def first_h5(folder: Path) -> Path:
    return sorted(folder.rglob("shard-*.h5"))[0]


# case -> (prepare(ws, tmp) -> (damaged file, command), skips it and goes on: how many outputs then)
def _nerf_shard(ws, tmp):
    nerfs = copy(ws / "nerfs" / "mlp", tmp / "nerfs" / "mlp")
    return first_h5(nerfs), ["build-graphs", tmp / "nerfs", "--out", tmp / "out", "--no-progress"]


def _graph_shard_embed(ws, tmp):
    graphs = copy(ws / "graphs" / "mlp", tmp / "graphs" / "mlp")
    return first_h5(graphs), ["embed", tmp / "graphs", "--encoder", ws / "encoder" / "best.h5", "--out", tmp / "out", *CPU]


def _graph_shard_train(ws, tmp):
    graphs = copy(ws / "graphs", tmp / "graphs")
    return first_h5(graphs / "tri"), ["pretrain-encoder", graphs, ws / "nerfs", "--out", tmp / "out", *ENCODER]


def _encoder(ws, tmp):
    enc = copy(ws / "encoder" / "best.h5", tmp / "encoder" / "best.h5")
    return enc, ["embed", ws / "graphs", "--encoder", enc, "--out", tmp / "out", *CPU]


def _embedding_shard_classify(ws, tmp):
    emb = copy(ws / "embeddings", tmp / "embeddings")
    return first_h5(emb / "tri"), ["classify", emb, "--out", tmp / "out", *CLASSIFY]


def _embedding_shard_map_clip(ws, tmp):
    emb = copy(ws / "embeddings", tmp / "embeddings")
    return first_h5(emb / "mlp"), ["map-clip", emb, ws / "data", "--out", tmp / "out", *MAP_CLIP]


def _clip_maps(ws, tmp):
    maps = copy(ws / "clip" / "maps.h5", tmp / "clip" / "maps.h5")
    return maps, ["retrieve", ws / "embeddings", "--text", "a red car", "--clip-maps", maps, "--out", tmp / "out", *CPU]


def _classifier(ws, tmp):
    clf = copy(ws / "classify" / "classifier-all.h5", tmp / "classify" / "classifier-all.h5")
    return clf, ["classify", "--predict", ws / "nerfs" / "mlp", "--classifier", clf,
                 "--encoder", ws / "encoder" / "best.h5", *CPU]


def _clip_checkpoint(ws, tmp):
    pt = copy(ws / "clip" / "nfkit-clip.pt", tmp / "clip" / "nfkit-clip.pt")
    return pt, ["map-clip", ws / "embeddings", ws / "data", "--clip-model", "nfkit-clip-micro", "--clip-pretrained", pt,
                "--preset", "tiny", "--out", tmp / "out", *CPU]


CASES = {
    "nerf-shard -> build-graphs": (_nerf_shard, 5),  # 6 shards, the damaged one skipped
    "graph-shard -> embed": (_graph_shard_embed, 5),
    "graph-shard -> pretrain-encoder": (_graph_shard_train, None),
    "encoder -> embed": (_encoder, None),
    "embedding-shard -> classify": (_embedding_shard_classify, None),
    "embedding-shard -> map-clip": (_embedding_shard_map_clip, None),
    "clip-maps -> retrieve --text": (_clip_maps, None),
    "classifier -> classify --predict": (_classifier, None),
    "clip checkpoint -> map-clip": (_clip_checkpoint, None),
}


@pytest.mark.parametrize("damage", [truncate, flip], ids=["truncated", "flipped"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_damaged_input_is_named_in_one_line_and_the_exit_code_is_1(ws, tmp_path, case, damage):
    prepare, outputs_left = CASES[case]
    damaged, command = prepare(ws, tmp_path)
    damage(damaged)
    result = cli(*command)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    naming = [line for line in errors if str(damaged) in line]
    assert len(naming) == 1, result.output
    out = tmp_path / "out"
    written = sorted(p for p in out.rglob("*.h5")) if out.exists() else []
    if outputs_left is None:  # the stage stopped before writing anything
        assert written == [], written
    else:  # the others were processed, and the summary says one failed
        assert len(written) == outputs_left and "1 failed" in result.output, result.output


@pytest.mark.parametrize("damage", [truncate, flip], ids=["truncated", "flipped"])
@pytest.mark.parametrize("cache", ["encoder/targets.h5", "clip/cache-*.h5"])
def test_a_damaged_cache_is_recomputed_with_a_warning_naming_it(ws, tmp_path, caplog, cache, damage):
    from nfkit.io.artifacts import read_artifact, read_header

    folder, pattern = cache.split("/")
    out = copy(ws / folder, tmp_path / folder)
    (damaged,) = sorted(out.glob(pattern))
    damage(damaged)
    if folder == "encoder":
        for name in ("best.h5", "last.h5", "train_log.json"):
            (out / name).unlink()
        command = ["pretrain-encoder", ws / "graphs", ws / "nerfs", "--out", out, *ENCODER]
    else:
        command = ["map-clip", ws / "embeddings", ws / "data", "--out", out, *MAP_CLIP]
    with caplog.at_level(logging.WARNING):
        result = cli(*command)
    assert result.exit_code == 0, result.output
    assert any(str(damaged) in r.getMessage() and "recomput" in r.getMessage() for r in caplog.records), caplog.text
    assert read_header(damaged)["kind"] in ("render-targets", "clip-cache")  # rewritten whole
    if folder == "clip":
        read_artifact(damaged)


def test_files_written_before_the_checksums_stay_readable(ws, tmp_path):
    from nfkit.graphs.store import GraphShard
    from nfkit.nerf.store import read_nerf_shard

    nerf = copy(first_h5(ws / "nerfs" / "mlp"), tmp_path / "nerf.h5")
    graph = copy(first_h5(ws / "graphs" / "mlp"), tmp_path / "graph.h5")
    for path in (nerf, graph):
        with h5py.File(path, "r+") as f:
            names: list[str] = []
            f.visititems(lambda n, o, names=names: names.append(n) if isinstance(o, h5py.Dataset) else None)
            for name in names:
                del f[name].attrs["nfkit_crc32"]
    assert len(read_nerf_shard(nerf)) == 2
    shard = GraphShard(graph)
    assert shard.graph(1).edge_attr.shape[0] > 0
