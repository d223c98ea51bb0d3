"""record_prompt: one function decides what of a prompt is recorded, everywhere."""

from __future__ import annotations

import hashlib

import pytest

from conjure.config import get_settings
from conjure.provenance import GenerationRecord, recordable_prompt


def test_modes():
    digest = hashlib.sha256("a red apple".encode()).hexdigest()
    assert recordable_prompt("a red apple", "full") == "a red apple"
    assert recordable_prompt("a red apple", "hash") == f"sha256:{digest}"
    assert recordable_prompt("a red apple", "none") == ""
    assert recordable_prompt("", "hash") == ""


def test_default_mode_comes_from_the_setting(monkeypatch):
    monkeypatch.setenv("CONJURE_RECORD_PROMPT", "none")
    get_settings.cache_clear()
    try:
        assert recordable_prompt("secret plan") == ""
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert recordable_prompt("secret plan") == "secret plan"   # the default is full


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="record_prompt must be one of"):
        recordable_prompt("x", "partial")
    with pytest.raises(ValueError, match="must be a string"):
        recordable_prompt(None, "full")
    with pytest.raises(ValueError, match="watermark_id"):
        GenerationRecord("p", "m", "h", 0, watermark_id=0)
    with pytest.raises(ValueError, match="watermark_id"):
        GenerationRecord("p", "m", "h", 0, watermark_id=2**32)
    with pytest.raises(ValueError, match="seed"):
        GenerationRecord("p", "m", "h", -1)


def test_recorded_applies_the_mode_to_both_prompts():
    rec = GenerationRecord("a cat", "m", "h", 1, negative_prompt="blurry")
    assert rec.recorded("none")["prompt"] == "" and rec.recorded("none")["negative_prompt"] == ""
    assert rec.recorded("hash")["negative_prompt"].startswith("sha256:")
    assert rec.prompt == "a cat"   # the record itself keeps the text for the pipeline
    assert 0 < rec.watermark_id < 2**32 and len(rec.job_id) == 32
