"""Measures of generated embeddings against real ones (pure functions) and their report table.

The seeds report no number for generation (SPEC §8); nfkit measures it in the embedding space:

- **classifier accuracy**: the share of a class's generated embeddings that the trained
  classifier (``nfkit classify``) assigns to that class;
- **coverage** and **minimum-matching distance (MMD)**, as Achlioptas et al. (*Learning
  Representations and Generative Models for 3D Point Clouds*, 2018, §4) define them between a
  generated set G and a reference set R (here: the real held-out, val and test, embeddings of the class), with a
  distance d between embeddings (``cosine``: 1 − cos, or ``l2``):

  - coverage = |{argmin_{r ∈ R} d(g, r) : g ∈ G}| / |R|, the share of real embeddings that are
    the nearest real neighbour of some generated one (1 = every real one is matched);
  - MMD = mean_{r ∈ R} min_{g ∈ G} d(r, g), how close each real embedding comes to the
    generated set (0 = every real one is generated exactly);

- **Fréchet distance** between Gaussians fitted to the two sets (as FID does for Inception
  features): FD = ‖μ_R − μ_G‖² + tr(Σ_R + Σ_G − 2 (Σ_R^{1/2} Σ_G Σ_R^{1/2})^{1/2}). With a few
  dozen embeddings of 1024 dimensions the sample covariances are singular and their square
  roots unstable, so each covariance is shrunk toward a scaled identity with the Ledoit–Wolf
  estimate of the shrinkage (``shrinkage="ledoit-wolf"``, sklearn; or a fixed weight in [0, 1]:
  Σ = (1 − α) S + α · tr(S)/D · I). The same estimator is applied to every set compared, so the
  ceiling and floor rows are on the same scale; identical sets still give FD = 0.

Each figure is reported for three sources per class: the generated embeddings, the class's
training embeddings themselves (the ceiling: what a perfect generator of the training
distribution would score) and Gaussian noise with the class's per-dimension mean and standard
deviation (the floor: :func:`gaussian_floor`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

DISTANCES = ("cosine", "l2")


def _as_2d(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 1:
        raise ValueError(f"{name}: expected a non-empty (n, dim) array, got shape {a.shape}")
    return a


def pairwise_distance(a, b, distance: str = "cosine") -> np.ndarray:
    """Distances between the rows of two sets. (n, D), (m, D) -> (n, m) float64.

    ``cosine``: 1 − cos (a zero row has distance 1 to everything); ``l2``: Euclidean.
    """
    a, b = _as_2d(a, "a"), _as_2d(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"sets of different widths: {a.shape[1]} and {b.shape[1]}")
    if distance == "cosine":
        na = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        nb = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
        return np.clip(1.0 - na @ nb.T, 0.0, 2.0)
    if distance == "l2":
        from scipy.spatial.distance import cdist

        return cdist(a, b, "euclidean")  # exact differences: identical rows give 0, not rounding noise
    raise ValueError(f"unknown distance {distance!r}; expected one of {', '.join(DISTANCES)}")


def coverage(generated, reference, distance: str = "cosine") -> float:
    """Share of ``reference`` rows that are the nearest reference row of some generated row.

    Shapes: (n_gen, D), (n_ref, D) -> float in (0, 1].
    """
    d = pairwise_distance(generated, reference, distance)
    return float(len(np.unique(d.argmin(axis=1)))) / d.shape[1]


def minimum_matching_distance(generated, reference, distance: str = "cosine") -> float:
    """Mean over ``reference`` rows of the distance to their nearest generated row.

    Shapes: (n_gen, D), (n_ref, D) -> float >= 0.
    """
    d = pairwise_distance(generated, reference, distance)
    return float(d.min(axis=0).mean())


def shrunk_covariance(x, shrinkage: str | float = "ledoit-wolf") -> tuple[np.ndarray, np.ndarray]:
    """Mean and shrunk covariance of the rows. (n, D) -> (D,), (D, D).

    ``"ledoit-wolf"``: sklearn's Ledoit–Wolf estimate; a float α in [0, 1]:
    (1 − α)·S + α·tr(S)/D·I with S the maximum-likelihood sample covariance. One row: S = 0.
    """
    x = _as_2d(x, "x")
    mu = x.mean(axis=0)
    if x.shape[0] == 1:
        return mu, np.zeros((x.shape[1], x.shape[1]))
    if shrinkage == "ledoit-wolf":
        from sklearn.covariance import ledoit_wolf

        cov, _ = ledoit_wolf(x, assume_centered=False)
        return mu, np.asarray(cov, dtype=np.float64)
    alpha = float(shrinkage)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"shrinkage must be 'ledoit-wolf' or a weight in [0, 1], got {shrinkage!r}")
    xc = x - mu
    s = xc.T @ xc / x.shape[0]
    return mu, (1.0 - alpha) * s + alpha * np.trace(s) / x.shape[1] * np.eye(x.shape[1])


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(0.5 * (m + m.T))
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(a, b, shrinkage: str | float = "ledoit-wolf") -> float:
    """Fréchet distance between Gaussians fitted to two sets (module docstring).

    Shapes: (n, D), (m, D) -> float >= 0. The trace of the geometric mean is computed as
    Σ sqrt(eig(Σ_a^{1/2} Σ_b Σ_a^{1/2})), symmetric and real for PSD covariances.
    """
    a, b = _as_2d(a, "a"), _as_2d(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"sets of different widths: {a.shape[1]} and {b.shape[1]}")
    mu_a, cov_a = shrunk_covariance(a, shrinkage)
    mu_b, cov_b = shrunk_covariance(b, shrinkage)
    root = _sqrt_psd(cov_a)
    inner = root @ cov_b @ root
    w = np.linalg.eigvalsh(0.5 * (inner + inner.T))
    tr_mean = float(np.sqrt(np.clip(w, 0.0, None)).sum())
    fd = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * tr_mean)
    return max(fd, 0.0)


def gaussian_floor(train, n: int, seed: int = 0) -> np.ndarray:
    """``n`` samples of a Gaussian with the per-dimension mean and standard deviation of
    ``train`` (diagonal: with fewer rows than dimensions a full covariance is singular).
    (n_train, D) -> (n, D) float32."""
    train = _as_2d(train, "train")
    rng = np.random.default_rng(seed)
    mu, sd = train.mean(axis=0), train.std(axis=0)
    return (mu + rng.standard_normal((n, train.shape[1])) * sd).astype(np.float32)


# ------------------------------------------------------------------ report
SOURCES = ("generated", "train (ceiling)", "noise (floor)")


@dataclass
class QualityRow:
    """The figures of one source (generated / ceiling / floor) for one class."""

    class_name: str
    source: str
    n: int
    n_reference: int
    accuracy: float
    coverage: float
    mmd: float
    frechet: float


def measure(class_name: str, source: str, samples, reference, accuracy: float = math.nan,
            distance: str = "cosine", shrinkage: str | float = "ledoit-wolf") -> QualityRow:
    """Coverage, MMD and FD of ``samples`` against ``reference`` (+ a given accuracy).

    Shapes: samples (n, D), reference (m, D).
    """
    samples, reference = _as_2d(samples, "samples"), _as_2d(reference, "reference")
    return QualityRow(
        class_name, source, len(samples), len(reference), float(accuracy),
        coverage(samples, reference, distance), minimum_matching_distance(samples, reference, distance),
        frechet_distance(reference, samples, shrinkage),
    )


def _cell(v: float, fmt: str) -> str:
    return "n/a" if not math.isfinite(v) else format(v, fmt)


def quality_markdown(rows: Sequence[QualityRow], distance: str = "cosine", title: str = "") -> str:
    """The quality table: a row per class and source, plus the mean over classes per source."""
    lines = [title, ""] if title else []
    lines += [
        f"| class | source | n | accuracy (%) | coverage (%) | MMD ({distance}) | FD |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.class_name} | {r.source} | {r.n} | {_cell(100 * r.accuracy, '.1f')} | "
            f"{_cell(100 * r.coverage, '.1f')} | {_cell(r.mmd, '.4g')} | {_cell(r.frechet, '.4g')} |"
        )
    for s in dict.fromkeys(r.source for r in rows):
        sel = [r for r in rows if r.source == s]

        def mean(key: str, sel=sel) -> float:
            vals = [getattr(r, key) for r in sel if math.isfinite(getattr(r, key))]
            return float(np.mean(vals)) if vals else math.nan

        lines.append(
            f"| **mean** | {s} | {sum(r.n for r in sel)} | {_cell(100 * mean('accuracy'), '.1f')} | "
            f"{_cell(100 * mean('coverage'), '.1f')} | {_cell(mean('mmd'), '.4g')} | {_cell(mean('frechet'), '.4g')} |"
        )
    lines += [
        "",
        "Reference set: the real held-out (val + test) embeddings of each class. accuracy: the trained classifier "
        "assigns the sample to its class; coverage / MMD: Achlioptas et al. 2018; FD: Fréchet "
        "distance with Ledoit-Wolf shrunk covariances. Ceiling = the class's training "
        "embeddings; floor = a diagonal Gaussian fitted to them.",
    ]
    return "\n".join(lines) + "\n"


def rows_to_json(rows: Sequence[QualityRow]) -> list[dict]:
    return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(r).items()} for r in rows]


__all__ = [
    "DISTANCES",
    "SOURCES",
    "QualityRow",
    "coverage",
    "frechet_distance",
    "gaussian_floor",
    "measure",
    "minimum_matching_distance",
    "pairwise_distance",
    "quality_markdown",
    "rows_to_json",
    "shrunk_covariance",
]
