"""The policy file: packaged default, override by CONJURE_POLICY, validation with clear errors."""

import json

import pytest
import yaml

from conjure.safety import CATEGORIES, load_policy, screen_prompt
from conjure.safety.policy import DEFAULT_POLICY_PATH, parse_policy


def _default() -> dict:
    return yaml.safe_load(DEFAULT_POLICY_PATH.read_text())


def test_default_policy_covers_every_category(policy):
    assert policy.version == "2026.11"
    assert set(policy.categories) == set(CATEGORIES)
    assert policy.categories["sexual_minors"].action == "block"
    assert policy.allowed_use_cases
    assert "nsfw" in policy.safety_negative_prompt


def test_safety_negative_prompt_is_appended(policy):
    assert policy.negative_prompt("blurry") == f"blurry, {policy.safety_negative_prompt}"
    assert policy.negative_prompt("") == policy.safety_negative_prompt


def test_override_by_setting(tmp_path, monkeypatch, encoder):
    data = _default()
    data["version"] = "test-7"
    data["categories"]["violence"]["action"] = "flag"
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("CONJURE_POLICY", str(path))
    policy = load_policy()
    assert policy.version == "test-7" and policy.source == str(path.resolve())
    v = screen_prompt("a massacre in the street, bodies everywhere, photorealistic", encoder=encoder)
    assert v.policy_version == "test-7"
    assert v.category == "violence" and v.action == "flag" and v.allowed
    monkeypatch.delenv("CONJURE_POLICY")
    assert load_policy().version == "2026.11"


def test_policy_setting_names_the_file(tmp_path, monkeypatch):
    """The `policy` setting (CONJURE_POLICY) is a path; load_policy uses it when no path is given."""
    from conjure.config import Settings
    import conjure.config
    data = _default()
    data["version"] = "test-setting"
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("CONJURE_POLICY", str(path))
    assert Settings().policy == path
    monkeypatch.delenv("CONJURE_POLICY")
    assert Settings().policy is None
    monkeypatch.setattr(conjure.config, "get_settings", lambda: Settings(policy=path))
    assert load_policy().version == "test-setting"
    assert load_policy(DEFAULT_POLICY_PATH).version == "2026.11"      # an explicit path wins
    monkeypatch.setattr(conjure.config, "get_settings", lambda: Settings(policy=tmp_path / "missing.yaml"))
    with pytest.raises(ValueError, match="missing.yaml"):
        load_policy()


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.pop("version"), "version"),
    (lambda d: d["categories"]["hate"].update(action="shout"), "categories.hate.action"),
    (lambda d: d["categories"]["hate"].update(threshold=1.5), "categories.hate.threshold"),
    (lambda d: d["categories"]["sexual_minors"].update(action="flag"), "always blocked"),
    (lambda d: d["categories"].pop("sexual_minors"), "sexual_minors"),
    (lambda d: d["categories"].update(spam={"threshold": 0.5, "action": "block"}), "unknown categories"),
    (lambda d: d["image"]["nsfw"].update(block_threshold=0.1), "block_threshold"),
    (lambda d: d["image"]["ocr"].update(enabled="maybe"), "ocr.enabled"),
])
def test_bad_policy_is_a_clear_value_error(edit, message):
    data = _default()
    edit(data)
    with pytest.raises(ValueError, match=message):
        parse_policy(data)


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_policy(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: [unclosed")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_policy(bad)


def test_policy_is_json_friendly(policy):
    json.dumps({"version": policy.version, "categories": list(policy.categories)})
