"""``nfkit synth`` and ``nfkit check-data`` through Typer's CliRunner."""

import typer.main
from typer.testing import CliRunner

from nfkit.cli import app

from .conftest import write_scene

runner = CliRunner()


def _error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_help_explains_every_option():
    command = typer.main.get_command(app).commands["synth"]
    for param in command.params:
        assert param.help and len(param.help) > 15, f"{param.name} has no help text"
    result = runner.invoke(app, ["synth", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in (
        "--resolution",
        "--objects-per-class",
        "--views",
        "--classes",
        "--augment",
        "--seed",
        "--val-fraction",
        "--test-fraction",
        "--preview",
        "--overwrite",
    ):
        assert option in result.output
    assert "ShapenetRender" in result.output and "airplane" in result.output
    check = typer.main.get_command(app).commands["check-data"]
    assert all(param.help for param in check.params)


def test_synth_writes_a_dataset_and_prints_a_summary(tmp_path):
    out = tmp_path / "data"
    sheet = tmp_path / "sheet.png"
    result = runner.invoke(
        app,
        [
            "synth",
            str(out),
            "-n",
            "1",
            "--views",
            "2",
            "--resolution",
            "16",
            "--classes",
            "chair,04379243",
            "--preview",
            str(sheet),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "wrote 2 objects" in result.output and "s per object" in result.output
    assert sheet.is_file() and sorted(p.name for p in out.iterdir()) == [
        "03001627",
        "04379243",
        "dataset.json",
        "splits",
    ]
    result = runner.invoke(app, ["check-data", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "2 objects" in result.output and "chair 1, table 1" in result.output


def test_unknown_class_is_one_line_listing_valid_names(tmp_path):
    result = runner.invoke(app, ["synth", str(tmp_path / "x"), "--classes", "chair,spaceship"])
    line = _error_line(result)
    assert "spaceship" in line and "airplane" in line and "watercraft" in line
    assert not (tmp_path / "x").exists()


def test_existing_output_is_refused(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "file.txt").write_text("x")
    line = _error_line(runner.invoke(app, ["synth", str(tmp_path / "out"), "-n", "1"]))
    assert "already exists" in line and "--overwrite" in line


def test_invalid_numbers_are_refused(tmp_path):
    line = _error_line(runner.invoke(app, ["synth", str(tmp_path / "o"), "--views", "0"]))
    assert "--views" in line
    line = _error_line(
        runner.invoke(
            app, ["synth", str(tmp_path / "o"), "--val-fraction", "0.6", "--test-fraction", "0.5"]
        )
    )
    assert "train" in line


def test_folder_without_transforms(tmp_path):
    (tmp_path / "cls" / "obj" / "train").mkdir(parents=True)
    line = _error_line(runner.invoke(app, ["check-data", str(tmp_path), "--no-progress"]))
    assert "no transforms" in line


def test_truncated_png(tmp_path):
    write_scene(tmp_path / "data" / "03001627" / "obj1", n_views=3, size=8)
    png = tmp_path / "data" / "03001627" / "obj1" / "train" / "r_2.png"
    png.write_bytes(png.read_bytes()[:50])
    line = _error_line(runner.invoke(app, ["check-data", str(tmp_path / "data"), "--no-progress"]))
    assert "r_2.png" in line and "cannot read image" in line
