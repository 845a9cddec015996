"""Benchmarks, one module per stage, each runnable as ``python -m nfkit.bench.<stage> --out DIR``.

Each writes ``DIR/<stage>_bench.json`` (machine-readable numbers) and ``DIR/<stage>_bench.md``
(a markdown table), and records the machine it ran on.
"""
