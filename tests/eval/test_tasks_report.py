"""The downstream-task report on tiny embedding folders."""

from nfkit.eval.tasks_report import tasks_report
from tests.tasks.conftest import make_embeddings
from tests.tasks.test_classify import write_tiny_nerfs


def test_report_sections_and_pictures(tmp_path):
    runs = {
        "R": make_embeddings(tmp_path / "r", arch_shift=6.0),
        "R+C": make_embeddings(tmp_path / "rc", arch_shift=0.0, seed=1),
    }
    nerfs = tmp_path / "nerfs"
    write_tiny_nerfs(nerfs / "mlp.h5", ["airplane", "car"])  # object ids o0, o1: not in the gallery
    path = tasks_report(runs, tmp_path / "report", nerfs=nerfs, preset="tiny", n_examples=1)
    md = path.read_text()
    for needle in ("Classification accuracy", "Transfer matrices", "| nfkit R | 1 |", "seed 000 Table 10, R+C",
                   "seed 003 Table V", "(93.6)", "![t-SNE R](tsne-r.png)"):
        assert needle in md, needle
    assert (tmp_path / "report" / "tsne-r-c.png").is_file()
    assert (tmp_path / "report" / "r" / "classify" / "classify.json").is_file()
    # a second call reuses the metrics
    before = (tmp_path / "report" / "r" / "classify" / "classify.json").stat().st_mtime_ns
    tasks_report(runs, tmp_path / "report", preset="tiny", tsne=False)
    assert (tmp_path / "report" / "r" / "classify" / "classify.json").stat().st_mtime_ns == before
