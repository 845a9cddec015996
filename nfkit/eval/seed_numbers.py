"""The seeds' published ShapenetRender numbers that nfkit's downstream tasks are compared with.

Transcribed from the seed documents in ``shared/seeds`` (percentages). They were measured on
ShapenetRender NeRFs with the authors' encoders, not on nfkit's data: reports print them only
next to nfkit's own numbers, labelled as the seeds' ones.
"""

from __future__ import annotations

#: seed 000 Table 8 (= Table 2 with L_C): classifier training set -> {test arch: accuracy}
CLASSIFY_TABLE8: dict[str, dict[str, dict[str, float]]] = {
    "R": {
        "all": {"mlp": 93.6, "tri": 94.0, "hash": 92.4},
        "mlp": {"mlp": 93.8, "tri": 25.3, "hash": 19.3},
        "tri": {"mlp": 11.4, "tri": 93.8, "hash": 9.3},
        "hash": {"mlp": 13.8, "tri": 35.7, "hash": 92.7},
    },
    "R+C": {
        "all": {"mlp": 90.7, "tri": 90.6, "hash": 90.0},
        "mlp": {"mlp": 91.5, "tri": 58.6, "hash": 56.6},
        "tri": {"mlp": 77.8, "tri": 91.0, "hash": 66.5},
        "hash": {"mlp": 54.1, "tri": 35.5, "hash": 90.6},
    },
    "C": {
        "all": {"mlp": 82.5, "tri": 77.8, "hash": 64.0},
        "mlp": {"mlp": 83.2, "tri": 60.9, "hash": 38.6},
        "tri": {"mlp": 70.4, "tri": 79.0, "hash": 47.6},
        "hash": {"mlp": 65.4, "tri": 63.7, "hash": 64.6},
    },
}

UNSEEN = ("mlp-2l", "mlp-32h", "tri-2l", "tri-32h", "tri-16w", "tri-8c", "hash-2l", "hash-32h", "hash-3n", "hash-11t")


def _row(*values: float) -> dict[str, float]:
    return dict(zip(UNSEEN, values, strict=True))


#: seed 000 Table 9 (= Table 4 with L_C): unseen architectures, classifier trained on ALL / a family
CLASSIFY_TABLE9: dict[str, dict[str, dict[str, float]]] = {
    "R": {
        "all": _row(91.3, 87.4, 93.2, 88.3, 24.8, 69.4, 91.9, 91.2, 88.3, 24.5),
        "mlp": _row(91.3, 86.1, 22.6, 23.2, 7.9, 21.0, 19.7, 20.6, 21.8, 7.6),
        "tri": _row(11.9, 10.6, 92.1, 84.8, 32.1, 43.6, 9.2, 8.8, 15.0, 5.2),
        "hash": _row(10.7, 7.4, 33.9, 36.3, 19.1, 23.0, 91.6, 91.4, 87.8, 29.2),
    },
    "R+C": {
        "all": _row(85.9, 83.8, 87.0, 84.1, 72.1, 30.8, 89.2, 87.4, 86.8, 27.8),
        "mlp": _row(86.6, 81.3, 63.3, 43.4, 59.2, 13.1, 51.5, 50.8, 55.0, 24.8),
        "tri": _row(60.7, 58.0, 86.9, 83.2, 63.9, 30.2, 59.8, 61.5, 66.3, 28.5),
        "hash": _row(47.0, 40.4, 40.6, 34.0, 43.4, 19.3, 89.5, 87.9, 86.4, 25.7),
    },
    "C": {
        "all": _row(67.3, 47.7, 63.5, 43.3, 60.4, 4.6, 51.9, 43.5, 55.9, 27.7),
        "mlp": _row(69.6, 52.6, 59.7, 42.0, 55.2, 6.0, 33.0, 23.3, 39.4, 29.5),
        "tri": _row(54.6, 37.5, 62.8, 44.9, 57.3, 5.8, 36.2, 27.9, 43.1, 28.4),
        "hash": _row(56.8, 39.1, 48.7, 34.1, 43.0, 4.3, 55.7, 46.0, 56.3, 25.2),
    },
}

RETRIEVAL_PAIRS = ("ALL/ALL", "mlp/tri", "mlp/hash", "tri/mlp", "tri/hash", "hash/mlp", "hash/tri")


def _pairs(*values: float) -> dict[str, float]:
    return dict(zip(RETRIEVAL_PAIRS, values, strict=True))


#: seed 000 Table 10 (= Table 6 with L_C): instance recall@k, query/gallery
RETRIEVAL_TABLE10: dict[str, dict[int, dict[str, float]]] = {
    "R": {1: _pairs(0.0, 1.8, 0.4, 4.5, 1.7, 1.1, 0.4), 5: _pairs(0.0, 5.3, 1.8, 13.3, 6.1, 3.8, 1.4),
          10: _pairs(0.0, 8.2, 3.1, 19.2, 9.2, 6.1, 2.7)},
    "R+C": {1: _pairs(5.3, 30.6, 14.8, 33.3, 13.2, 13.5, 9.5), 5: _pairs(17.7, 59.4, 38.0, 61.2, 33.4, 32.1, 25.1),
            10: _pairs(27.2, 72.7, 51.3, 72.6, 45.0, 42.8, 36.3)},
    "C": {1: _pairs(2.9, 16.4, 6.2, 15.9, 4.3, 5.4, 4.0), 5: _pairs(10.9, 40.6, 18.0, 38.9, 14.1, 16.8, 14.2),
          10: _pairs(18.0, 53.8, 26.9, 53.6, 22.0, 26.3, 21.9)},
}

#: seed 003 Table V: nf2vec (MLP NeRFs only) class-level retrieval, called mAP@k there; computed
#: by its code as the class hit rate@k (L2, query excluded)
NF2VEC_CLASS_HIT_RATE: dict[int, float] = {1: 72.38, 5: 91.89, 10: 95.96}
#: seed 003 Table VI / SPEC §6: nf2vec classification accuracy on MLP NeRFs
NF2VEC_ACCURACY = 87.3
#: seed 003 Table VII: ms per NeRF on a GPU
NF2VEC_TIMING_MS = {"weights (nf2vec encode + classify)": 1.03, "ResNet50, 1 view": 10.84, "ResNet50, 9 views": 97.56}

__all__ = [
    "CLASSIFY_TABLE8",
    "CLASSIFY_TABLE9",
    "UNSEEN",
    "RETRIEVAL_PAIRS",
    "RETRIEVAL_TABLE10",
    "NF2VEC_CLASS_HIT_RATE",
    "NF2VEC_ACCURACY",
    "NF2VEC_TIMING_MS",
]
