"""`conjure lab` refuses bad input with exit status 2 and a message that says what to change."""

from typer.testing import CliRunner

from conjure.cli import app

runner = CliRunner()


def test_unknown_family_is_refused():
    r = runner.invoke(app, ["lab", "train", "diffusion-xl"])
    assert r.exit_code == 2 and "choose from" in r.output


def test_budget_below_one_batch_is_refused():
    r = runner.invoke(app, ["lab", "train", "vae", "--images", "10"])
    assert r.exit_code == 2 and "at least one batch" in r.output


def test_evaluate_needs_a_finished_run(tmp_path):
    r = runner.invoke(app, ["lab", "evaluate", str(tmp_path)])
    assert r.exit_code == 2 and "conjure lab train" in r.output


def test_unknown_demo_and_empty_compare(tmp_path):
    r = runner.invoke(app, ["lab", "demos", "nope", "--runs", str(tmp_path)])
    assert r.exit_code == 2 and "choose vae, steps" in r.output
    r = runner.invoke(app, ["lab", "compare", "--runs", str(tmp_path), "--out", str(tmp_path / "o"),
                            "--results", str(tmp_path / "lab.json")])
    assert r.exit_code == 2 and "conjure lab evaluate" in r.output
