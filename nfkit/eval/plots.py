"""Pictures for the task reports: image grids with captions and t-SNE scatter plots (matplotlib,
the non-interactive Agg backend; files written atomically)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nfkit.io.artifacts import atomic_path

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p", "8")


def _figure(*args, **kwargs):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt, plt.figure(*args, **kwargs)


def _save(plt, fig, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path, suffix=".png.tmp") as tmp:
        fig.savefig(tmp, format="png", dpi=fig.dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def image_grid(
    rows: Sequence[Sequence[np.ndarray]],
    captions: Sequence[Sequence[str]],
    path: str | Path,
    title: str = "",
    cell_inches: float = 1.6,
) -> Path:
    """A grid of images, one caption under each.

    Shapes: ``rows[r][c]`` (H, W, 3) float in [0, 1]; ``captions[r][c]`` str (same layout; rows
    may differ in length).
    """
    if not rows or any(len(r) != len(c) for r, c in zip(rows, captions, strict=True)):
        raise ValueError("image_grid needs non-empty rows and one caption per image")
    n_cols = max(len(r) for r in rows)
    plt, fig = _figure(figsize=(cell_inches * n_cols, (cell_inches + 0.45) * len(rows)), dpi=100)
    for r, (imgs, caps) in enumerate(zip(rows, captions, strict=True)):
        for c in range(n_cols):
            ax = fig.add_subplot(len(rows), n_cols, r * n_cols + c + 1)
            ax.set_axis_off()
            if c < len(imgs):
                ax.imshow(np.clip(np.asarray(imgs[c], np.float32), 0, 1))
                ax.set_title(caps[c], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(plt, fig, path)


def tsne_2d(x: np.ndarray, seed: int = 0, perplexity: float = 30.0, threads: int | None = 1) -> np.ndarray:
    """scikit-learn t-SNE of embeddings (PCA initialisation). Shapes: (n, dim) -> (n, 2).

    ``threads`` caps its OpenMP/BLAS threads (None: the library's default). One thread is the
    default because the spin-waiting of several threads on a busy 2-core machine made a
    48-point t-SNE take 20 s instead of 0.3 s.
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x = np.asarray(x, np.float32)
    if x.ndim != 2 or len(x) < 3:
        raise ValueError(f"t-SNE needs (n >= 3, dim) embeddings, got shape {x.shape}")
    perp = float(min(perplexity, max(1.0, (len(x) - 1) / 3.0)))
    with threadpool_limits(threads):
        return TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed).fit_transform(x)


def scatter_by_class(
    xy: np.ndarray,
    classes: Sequence[str],
    archs: Sequence[str],
    path: str | Path,
    title: str = "",
) -> Path:
    """Seed 000 Fig. 3 style: colour = class, marker = architecture. Shapes: xy (n, 2)."""
    classes, archs = np.asarray(classes).astype(str), np.asarray(archs).astype(str)
    plt, fig = _figure(figsize=(6.0, 5.0), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    cmap = plt.get_cmap("tab20")
    cls_names, arch_names = sorted(set(classes)), sorted(set(archs))
    for ai, a in enumerate(arch_names):
        for ci, c in enumerate(cls_names):
            m = (classes == c) & (archs == a)
            if m.any():
                ax.scatter(xy[m, 0], xy[m, 1], s=14, color=cmap(ci % 20), marker=_MARKERS[ai % len(_MARKERS)],
                           label=c if ai == 0 else None, alpha=0.85, linewidths=0)
    for ai, a in enumerate(arch_names):
        ax.scatter([], [], color="grey", marker=_MARKERS[ai % len(_MARKERS)], label=a)
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(plt, fig, path)


__all__ = ["image_grid", "tsne_2d", "scatter_by_class"]
