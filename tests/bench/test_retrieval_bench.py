"""The retrieval benchmark on a tiny gallery."""

import json

from nfkit.bench.retrieval import main


def test_retrieval_bench_tiny(tmp_path):
    res = main(["--out", str(tmp_path), "--sizes", "500", "--dim", "32", "--repeats", "5", "--batch", "8", "--threads", "1"])
    rows = res["rows"]
    assert {(r["engine"], r["metric"]) for r in rows} == {(e, m) for e in ("nfkit", "faiss") for m in ("cosine", "l2")}
    assert all(r["agreement"] == 1.0 for r in rows)
    assert json.loads((tmp_path / "retrieval_bench.json").read_text())["rows"][0]["n"] == 500
    assert "| 500 | cosine | nfkit |" in (tmp_path / "retrieval_bench.md").read_text()
