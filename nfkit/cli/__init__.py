"""The ``nfkit`` command line: one Typer app, one module per stage.

Each stage module defines its command on :data:`app` when imported. A stage appears here
only once it works.
"""

from __future__ import annotations

from nfkit.cli._app import app

# Stage modules register their commands on import. Keep this list in pipeline order.
_STAGES = ("synth", "fit", "import_nerfs", "render", "graphs", "encoder", "embed", "clip", "classify", "retrieve", "generate", "status")

for _name in _STAGES:
    __import__(f"nfkit.cli.{_name}")


def main() -> None:
    app()


__all__ = ["app", "main"]
