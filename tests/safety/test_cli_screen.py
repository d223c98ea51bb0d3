"""`conjure safety screen PROMPT` through Typer's CliRunner: the verdict printed, exit 0 or 3."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from conjure.cli import app
from conjure.safety.policy import DEFAULT_POLICY_PATH

runner = CliRunner()
VIOLENT = "a massacre in the street, bodies everywhere, photorealistic"


def test_allowed_prompt_exits_0():
    r = runner.invoke(app, ["safety", "screen", "a red apple on a white background"])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("allowed: allow") and "[policy 2026.11]" in r.stdout


def test_refused_prompt_exits_3_and_says_why():
    r = runner.invoke(app, ["safety", "screen", VIOLENT])
    assert r.exit_code == 3, r.output
    assert r.stdout.startswith("refused: block, violence (score")


def test_json_verdict():
    r = runner.invoke(app, ["safety", "screen", VIOLENT, "--json", "--negative", "blurry"])
    assert r.exit_code == 3
    v = json.loads(r.stdout)
    assert (v["allowed"], v["action"], v["category"], v["stage"]) == (False, "block", "violence", "prompt")
    assert v["policy_version"] == "2026.11" and v["check"] in ("rule", "classifier", "combination")
    assert v["details"]["negative_prompt"].startswith("blurry, nsfw")
    r = runner.invoke(app, ["safety", "screen", "a cup of coffee", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["allowed"] is True


def test_policy_file_option(tmp_path):
    """A policy that only flags violence lets the prompt through (exit 0) and names its version."""
    data = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    data["version"] = "cli-test"
    data["categories"]["violence"]["action"] = "flag"
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data))
    r = runner.invoke(app, ["safety", "screen", VIOLENT, "--policy", str(path), "--json"])
    assert r.exit_code == 0, r.output
    v = json.loads(r.stdout)
    assert (v["allowed"], v["action"], v["policy_version"]) == (True, "flag", "cli-test")


def test_bad_input_exits_2():
    r = runner.invoke(app, ["safety", "screen", "x" * 5000])
    assert r.exit_code == 2 and "at most 4000" in r.output
    r = runner.invoke(app, ["safety", "screen", "a cat", "--policy", "/nonexistent/policy.yaml"])
    assert r.exit_code == 2 and "does not exist" in r.output
