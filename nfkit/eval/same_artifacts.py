"""Are two output folders the same? The check behind "a sharded run equals a single process".

``python -m nfkit.eval.same_artifacts A B`` compares two folders written by a stage (e.g.
``fit-nerfs`` in one process and under ``torchrun --nproc-per-node 2``): the same relative file
names, and in every HDF5 file the same groups, datasets (values compared exactly, or within
``--atol``) and attributes, except what records *when* or *how fast* rather than *what*:
the ``nfkit_created`` timestamp and ``--ignore`` datasets (default: ``meta/fit_seconds``, the
fit's wall time). JSON files are compared as data, other files byte for byte. Exit code 0 when
equal, 1 with one line per difference otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path

import h5py
import numpy as np

IGNORED_ATTRS = ("nfkit_created",)
IGNORED_DATASETS = ("meta/fit_seconds",)


def _h5_items(f: h5py.File) -> dict[str, h5py.Dataset | h5py.Group]:
    out: dict[str, h5py.Dataset | h5py.Group] = {"/": f}
    f.visititems(lambda name, obj: out.__setitem__(name, obj))
    return out


def _equal(a, b, atol: float) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype.kind != b.dtype.kind:
        return False
    if a.dtype.kind in "fc" and atol > 0:
        return bool(np.allclose(a, b, rtol=0.0, atol=atol, equal_nan=True))
    if a.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def compare_h5(a: Path, b: Path, atol: float = 0.0, ignore: Iterable[str] = IGNORED_DATASETS) -> list[str]:
    """Differences between two HDF5 files (empty: equal)."""
    ignore = set(ignore)
    diffs: list[str] = []
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        ia, ib = _h5_items(fa), _h5_items(fb)
        for name in sorted(set(ia) ^ set(ib)):
            diffs.append(f"{name}: only in {a if name in ia else b}")
        for name in sorted(set(ia) & set(ib)):
            oa, ob = ia[name], ib[name]
            for key in sorted(set(oa.attrs) | set(ob.attrs)):
                if key in IGNORED_ATTRS or (key == "nfkit_crc32" and name in ignore):
                    continue  # an ignored dataset's checksum differs with its values
                if key not in oa.attrs or key not in ob.attrs:
                    diffs.append(f"{name} attribute {key}: only in one file")
                elif not _equal(oa.attrs[key], ob.attrs[key], 0.0):
                    diffs.append(f"{name} attribute {key}: {oa.attrs[key]!r} != {ob.attrs[key]!r}")
            if isinstance(oa, h5py.Dataset) and name not in ignore:
                if not isinstance(ob, h5py.Dataset) or not _equal(oa[()], ob[()], atol):
                    diffs.append(f"{name}: values differ")
    return diffs


def compare_folders(a: str | Path, b: str | Path, atol: float = 0.0, ignore: Iterable[str] = IGNORED_DATASETS) -> list[str]:
    """Differences between two folders (relative names, then each file's content)."""
    a, b = Path(a), Path(b)
    fa = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    fb = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    diffs = [f"{rel}: only in {a if rel in fa else b}" for rel in sorted(fa ^ fb)]
    for rel in sorted(fa & fb):
        pa, pb = a / rel, b / rel
        if pa.suffix == ".h5":
            diffs += [f"{rel} {d}" for d in compare_h5(pa, pb, atol, ignore)]
        elif pa.suffix == ".json":
            if json.loads(pa.read_text()) != json.loads(pb.read_text()):
                diffs.append(f"{rel}: JSON content differs")
        elif pa.read_bytes() != pb.read_bytes():
            diffs.append(f"{rel}: bytes differ")
    return diffs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nfkit.eval.same_artifacts", description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--atol", type=float, default=0.0, help="tolerance of float datasets (default: exact)")
    ap.add_argument("--ignore", action="append", default=None, help="a dataset path to skip (repeatable)")
    args = ap.parse_args(argv)
    ignore = IGNORED_DATASETS if args.ignore is None else tuple(args.ignore)
    diffs = compare_folders(args.a, args.b, args.atol, ignore)
    n = sum(1 for p in args.a.rglob("*") if p.is_file())
    if diffs:
        for d in diffs:
            print(d)
        print(f"{len(diffs)} difference(s) between {args.a} and {args.b}")
        return 1
    print(f"{args.a} and {args.b}: the same {n} file(s)" + (f" (floats within {args.atol})" if args.atol else " (exactly)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
