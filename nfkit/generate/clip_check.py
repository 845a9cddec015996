"""Do the rendered generations read as their class? CLIP answers, for every class.

The quality table of ``generate gan`` (``nfkit/eval/generation.py``) measures the generated
*embeddings*; whether the decoder turns them into objects of their class is another question,
which a picture answers one sample at a time. Here a CLIP model (the one the workspace's
``map-clip`` maps were trained with) answers it for many: each embedding is decoded, rendered
from ``views`` turntable cameras on black (``nfkit/generate/render.py``), its image embeddings
averaged, and the nearest class prompt (the zero-shot classifier of ``classify --zero-shot``,
``nfkit/clip/zero_shot.py``) is its class.

Three sources per class, as in the quality table, all through the same decoder and cameras:

- **generated**: the class's first GAN samples (the ones ``--render`` draws);
- **train (ceiling)**: decoded training embeddings of the class (spread over its rows): what
  the decoder draws of embeddings it was fitted to;
- **noise (floor)**: decoded samples of a diagonal Gaussian fitted to those embeddings.

CLIP itself misreads some real objects: ``classify --zero-shot`` gives its accuracy on the
dataset's images and on renders of the fitted NeRFs, the reference for these figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from nfkit.generate.render import ViewSettings, embedding_views

SOURCES = ("generated", "train (ceiling)", "noise (floor)")
# the check's cameras: 3 turntable views at 64 px (the dataset's image size), 96 samples per ray
CHECK_VIEWS = ViewSettings(views=3, resolution=64)


@dataclass
class ClipCheckRow:
    class_name: str
    source: str
    accuracy: float  # fraction of the embeddings whose renders CLIP assigns to the class
    n: int
    predicted: list[str]  # CLIP's class for each embedding

    def to_json(self) -> dict:
        return {"class": self.class_name, "source": self.source, "accuracy": self.accuracy, "n": self.n,
                "predicted": self.predicted}


def render_classes(decoder, clip, text: np.ndarray, classes: Sequence[str], embeddings: np.ndarray,
                   settings: ViewSettings) -> list[str]:
    """CLIP's class for each decoded embedding (N, D): its ``settings.views`` renders' image
    embeddings averaged, then the nearest row of ``text`` (C, D), the class prompts."""
    from nfkit.clip.zero_shot import _normalize, nearest_class

    out = []
    for e in np.asarray(embeddings, np.float32):
        imgs = embedding_views(decoder, e, settings)
        emb = _normalize(clip.encode_images(list(imgs), progress=False)).mean(0, keepdims=True)
        out.append(classes[int(nearest_class(emb, text)[0])])
    return out


def clip_check(decoder, clip, text: np.ndarray, classes: Sequence[str],
               sources: Mapping[str, Mapping[str, np.ndarray]], settings: ViewSettings,
               progress: bool = False) -> list[ClipCheckRow]:
    """One row per (class, source) of ``sources[source][class]`` (n, D) embeddings."""
    from tqdm import tqdm

    total = sum(len(x) for per in sources.values() for x in per.values())
    bar = tqdm(total=total, desc="CLIP check of the renders", unit="embedding", disable=not progress, leave=False)
    rows = []
    for source, per_class in sources.items():
        for c, x in per_class.items():
            pred = render_classes(decoder, clip, text, classes, x, settings)
            bar.update(len(x))
            rows.append(ClipCheckRow(c, source, float(np.mean([p == c for p in pred])) if pred else float("nan"),
                                     len(pred), pred))
    bar.close()
    return rows


def spread_rows(n_rows: int, n: int) -> np.ndarray:
    """``n`` row indices spread evenly over ``n_rows`` (all of them when n >= n_rows)."""
    if n >= n_rows:
        return np.arange(n_rows)
    return np.unique(np.linspace(0, n_rows - 1, n).round().astype(int))


def clip_check_markdown(rows: Sequence[ClipCheckRow], clip_name: str, settings: ViewSettings, n_labels: int) -> str:
    """The per-class table and the means over classes (``n_labels``: the candidate classes)."""
    classes = sorted({r.class_name for r in rows})
    by = {(r.class_name, r.source): r for r in rows}
    present = [s for s in SOURCES if any((c, s) in by for c in classes)]
    n = max((r.n for r in rows), default=0)
    lines = [
        "## Do the renders read as their class? (CLIP)",
        "",
        f"Each embedding decoded and rendered from {settings.views} turntable view(s) ({settings.resolution} px, on "
        f"black), classified by CLIP {clip_name} against the class prompts (the zero-shot classifier of "
        f"`classify --zero-shot`); accuracy % over up to {n} embeddings per class and source. Chance = "
        f"{100.0 / max(1, n_labels):.1f} % ({n_labels} candidate classes).",
        "",
        "| class | " + " | ".join(present) + " |",
        "|---|" + "---:|" * len(present),
    ]
    for c in classes:
        cells = [f"{100 * by[(c, s)].accuracy:.0f}" if (c, s) in by else "–" for s in present]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    means = [np.nanmean([by[(c, s)].accuracy for c in classes if (c, s) in by]) for s in present]
    lines.append("| **mean** | " + " | ".join(f"**{100 * m:.1f}**" for m in means) + " |")
    return "\n".join(lines) + "\n"


__all__ = ["SOURCES", "CHECK_VIEWS", "ClipCheckRow", "render_classes", "clip_check", "spread_rows", "clip_check_markdown"]
