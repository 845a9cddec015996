"""What a workspace holds: artifacts per stage folder, items per artifact, and staleness.

Generic over artifact kinds (so kinds added later are listed without code here): every
artifact's header gives its kind, schema version and item ``count``; an artifact is **stale**
when one of its recorded inputs (``nfkit_input_paths``, with their content fingerprints in
``nfkit_inputs``) has changed since it was written, and **unchecked** when it records no input
paths (written by an older nfkit, or an artifact without file inputs).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from nfkit.io.artifacts import ArtifactError, fingerprint_paths, peek_kind, read_header
from nfkit.workspace import LAYOUT

OK, STALE, UNCHECKED, MISSING_INPUT, UNREADABLE = "ok", "stale", "unchecked", "missing input", "unreadable"


@dataclass
class ArtifactStatus:
    """One artifact file: ``state`` is ok, stale, unchecked, missing input or unreadable."""

    path: Path
    kind: str
    version: int
    items: int | None
    state: str
    reason: str = ""


@dataclass
class FolderStatus:
    """A stage folder of the workspace."""

    name: str
    description: str
    exists: bool
    artifacts: list[ArtifactStatus] = field(default_factory=list)
    other_files: dict[str, int] = field(default_factory=dict)
    """file suffix -> count of the files that are not artifacts (PNGs, JSON, ...)"""

    def by_kind(self) -> dict[tuple[str, int], list[ArtifactStatus]]:
        out: dict[tuple[str, int], list[ArtifactStatus]] = {}
        for a in self.artifacts:
            out.setdefault((a.kind, a.version), []).append(a)
        return out


def check_inputs(header: dict) -> tuple[str, str]:
    """(state, reason) of an artifact from its decoded header (:func:`read_header`)."""
    paths: dict[str, list[str]] = header.get("input_paths") or {}
    if not paths:
        return UNCHECKED, "no input paths recorded (written by an older nfkit or no file inputs)"
    for name, files in sorted(paths.items()):
        missing = [p for p in files if not Path(p).exists()]
        if missing:
            return MISSING_INPUT, f"input {name}: {missing[0]} no longer exists"
        if fingerprint_paths(files) != header["inputs"].get(name):
            where = files[0] if len(files) == 1 else f"{len(files)} paths, e.g. {files[0]}"
            return STALE, f"input {name} changed since it was written ({where})"
    return OK, ""


def artifact_status(path: Path, check: bool = True) -> ArtifactStatus:
    """Kind, version, items and staleness of one artifact file."""
    try:
        header = read_header(path)
    except (ArtifactError, OSError, ValueError, KeyError) as exc:
        kind = peek_kind(path) or "?"
        return ArtifactStatus(path, kind, -1, None, UNREADABLE, str(exc).splitlines()[0] if str(exc) else "")
    state, reason = check_inputs(header) if check else (UNCHECKED, "not checked")
    return ArtifactStatus(path, header["kind"], header["schema_version"], header["count"], state, reason)


def _files(folder: Path) -> Iterator[Path]:
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts):
            yield p


def folder_status(root: Path, name: str, check: bool = True) -> FolderStatus:
    folder = root / name
    status = FolderStatus(name, LAYOUT.get(name, ""), folder.is_dir())
    if not status.exists:
        return status
    for p in _files(folder):
        if p.suffix == ".h5" and peek_kind(p) is not None:
            status.artifacts.append(artifact_status(p, check))
        elif p.suffix == ".h5":
            status.artifacts.append(ArtifactStatus(p, "?", -1, None, UNREADABLE, "not an nfkit artifact"))
        else:
            suffix = p.suffix.lower() or "(none)"
            status.other_files[suffix] = status.other_files.get(suffix, 0) + 1
    return status


def workspace_status(root: str | Path, check: bool = True) -> list[FolderStatus]:
    """Every stage folder of the layout (in pipeline order), then any other folder holding
    artifacts. ``check=False`` skips the input fingerprints (fast)."""
    root = Path(root)
    names = list(LAYOUT)
    if root.is_dir():
        names += sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in LAYOUT and not p.name.startswith("."))
    folders = [folder_status(root, n, check) for n in names]
    return [f for f in folders if f.name in LAYOUT or f.artifacts]


def format_status(root: Path, folders: list[FolderStatus], files: bool = False) -> str:
    """A plain-text report: one block per folder, one line per artifact kind, then problems."""
    lines = [f"workspace {root.resolve()}"]
    problems: list[str] = []
    for f in folders:
        if not f.exists:
            lines.append(f"  {f.name + '/':<12} -            ({f.description})")
            continue
        kinds = f.by_kind()
        head = f"  {f.name + '/':<12} {len(f.artifacts)} artifact(s)"
        if f.other_files:
            head += ", " + ", ".join(f"{n} {s} file(s)" for s, n in sorted(f.other_files.items()))
        lines.append(head)
        for (kind, version), arts in sorted(kinds.items()):
            counted = [a.items for a in arts if a.items is not None]
            items = str(sum(counted)) if counted else "-"
            states = {s: sum(a.state == s for a in arts) for s in (STALE, MISSING_INPUT, UNCHECKED, UNREADABLE)}
            flags = ", ".join(f"{n} {s}" for s, n in states.items() if n)
            label = f"{kind} v{version}" if version >= 0 else kind
            lines.append(f"      {label:<22} {len(arts):>5} file(s) {items:>7} item(s)" + (f"  ({flags})" if flags else ""))
            for a in arts:
                rel = a.path.relative_to(root) if a.path.is_relative_to(root) else a.path
                if files:
                    lines.append(f"        {rel}: {a.items if a.items is not None else '?'} item(s), {a.state}")
                if a.state in (STALE, MISSING_INPUT, UNREADABLE):
                    problems.append(f"  {a.state}: {rel}: {a.reason}")
    if problems:
        lines.append("problems:")
        lines.extend(problems)
    else:
        lines.append("no stale artifacts")
    return "\n".join(lines)


def status_dict(folders: list[FolderStatus]) -> dict:
    """JSON-ready form of :func:`workspace_status`."""
    return {
        f.name: {
            "exists": f.exists,
            "other_files": f.other_files,
            "artifacts": [
                {"path": str(a.path), "kind": a.kind, "version": a.version, "items": a.items,
                 "state": a.state, "reason": a.reason}
                for a in f.artifacts
            ],
        }
        for f in folders
    }


def status_json(folders: list[FolderStatus]) -> str:
    return json.dumps(status_dict(folders), indent=2, sort_keys=True)


__all__ = [
    "ArtifactStatus",
    "FolderStatus",
    "artifact_status",
    "check_inputs",
    "format_status",
    "status_dict",
    "status_json",
    "workspace_status",
]
