"""``python -m nfkit`` = the ``nfkit`` command (so that ``torchrun -m nfkit ...`` works)."""

from nfkit.cli import app

if __name__ == "__main__":
    app(prog_name="nfkit")
