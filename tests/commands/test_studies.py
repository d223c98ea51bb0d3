"""`conjure sweep` through the real CLI: scales written as `--guidance 1 2 3`, errors that say what to change."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from conjure.cli import app
from conjure.commands.studies import guidance_values


def test_guidance_values_after_one_flag_repeated_or_default():
    assert guidance_values([1.0], ["2", "3.5"]) == [1.0, 2.0, 3.5]
    assert guidance_values([1.0, 4.0], []) == [1.0, 4.0]
    assert guidance_values(None, [])[:3] == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="not a guidance scale"):
        guidance_values([1.0], ["apple"])
    with pytest.raises(ValueError, match="one prompt"):
        guidance_values(None, ["apple"])


def test_sweep_command_runs_a_tiny_study(tiny_model_dir, tmp_path):
    from conjure.pipelines.registry import add_model
    add_model(tiny_model_dir, "studies-tiny")
    runner = CliRunner()
    result = runner.invoke(app, ["sweep", "red apple", "--guidance", "1", "3", "--seeds", "2", "--steps", "1",
                                 "--model", "studies-tiny", "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert "w=1\t" in result.stdout and "w=3\t" in result.stdout
    saved = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert [p["guidance"] for p in saved["points"]] == [1.0, 3.0] and saved["steps"] == 1
    assert (tmp_path / "s" / "grid.png").is_file() and (tmp_path / "s" / "plot.png").is_file()


def test_sweep_command_says_what_to_change():
    runner = CliRunner()
    bad = runner.invoke(app, ["sweep", "red apple", "--guidance", "1", "lots"])
    assert bad.exit_code == 2 and "not a guidance scale" in bad.stderr
    one = runner.invoke(app, ["sweep", "red apple", "--seeds", "1"])
    assert one.exit_code == 2 and "at least 2" in one.stderr
