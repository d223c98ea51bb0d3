"""Settings: environment overrides, derived paths, no side effects; the offline switch."""

from __future__ import annotations

import os
from pathlib import Path

from conjure.config import REPO_ROOT, Settings, get_settings, offline_environment


def test_session_home_is_isolated(conjure_home):
    assert os.environ["CONJURE_HOME"] == str(conjure_home)
    assert get_settings().home == conjure_home


def test_paths_derive_from_home(tmp_path):
    s = Settings(home=tmp_path / "h")
    assert (s.data_dir, s.models_dir, s.runs_dir) == (tmp_path / "h" / "data", tmp_path / "h" / "models",
                                                     tmp_path / "h" / "runs")
    assert not (tmp_path / "h").exists()   # reading settings makes no directories


def test_environment_variables_override_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("CONJURE_DEFAULT_MODEL", "sd15")
    monkeypatch.setenv("CONJURE_THREADS", "3")
    monkeypatch.setenv("CONJURE_NPM_DIR", str(tmp_path))
    s = Settings()
    assert (s.default_model, s.threads, s.npm_dir) == ("sd15", 3, tmp_path)


def test_npm_dir_defaults_to_the_checkout(monkeypatch):
    monkeypatch.delenv("CONJURE_NPM_DIR", raising=False)
    assert Settings().npm_dir == REPO_ROOT / "data" / "npm" / "node_modules"
    assert (REPO_ROOT / "src" / "conjure" / "config.py").is_file()


def test_get_settings_is_cached():
    assert get_settings() is get_settings()


def test_offline_environment_forbids_hub_downloads_but_keeps_explicit_values(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("DIFFUSERS_VERBOSITY", "info")
    offline_environment()
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert os.environ["DIFFUSERS_VERBOSITY"] == "info"
    assert Path(os.environ["CONJURE_HOME"]).is_dir()
