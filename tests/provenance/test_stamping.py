"""stamp -> file -> verify_file and the CLI: C2PA, watermark and audit entry found again, also after a
JPEG re-encode that drops the manifest; record_prompt applied to every place a prompt is written."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from conjure.cli import app
from conjure.config import get_settings
from conjure.provenance import audit, stamp, verify_file
from conjure.provenance.credentials import read_credentials
from tests.provenance.helpers import record, synthetic_output


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An audit store of this test's own, also for the in-process CLI."""
    monkeypatch.setenv("CONJURE_DATABASE_URL", f"sqlite:///{tmp_path / 'conjure.db'}")
    get_settings.cache_clear()
    yield get_settings().db_url
    monkeypatch.undo()
    get_settings.cache_clear()


def _write(tmp_path, rec, prompt_mode="full", seed=0):
    stamped = stamp(synthetic_output(seed), rec, prompt_mode=prompt_mode)
    audit.append(rec, stamped.sha256, stamped.manifest_id, prompt_mode=prompt_mode)
    path = tmp_path / f"out-{seed}.png"
    path.write_bytes(stamped.png)
    return path, stamped


def test_round_trip(tmp_path, store):
    rec = record(seed=5)
    path, stamped = _write(tmp_path, rec)
    # per-stage timings are recorded (benchmarks/provenance.py measures them; no wall-clock limit in a unit test)
    assert stamped.timings["total"] > 0 and stamped.watermark_id == rec.watermark_id
    report = verify_file(path)
    assert report.c2pa.state == "valid" and report.c2pa.manifest_id == stamped.manifest_id
    assert report.watermark.found and report.watermark.watermark_id == rec.watermark_id
    assert report.audit_match == "sha256" and report.audit[0]["job_id"] == rec.job_id
    assert "a red apple" in report.parameters and f"Watermark: {rec.watermark_id:08x}" in report.parameters


def test_jpeg_reencode_still_finds_watermark_and_entry(tmp_path, store):
    rec = record(seed=6)
    path, _ = _write(tmp_path, rec, seed=6)
    jpg = tmp_path / "copy.jpg"
    Image.open(path).convert("RGB").save(jpg, "JPEG", quality=75)
    report = verify_file(jpg)
    assert report.c2pa.state == "absent"
    assert report.watermark.found and report.watermark.watermark_id == rec.watermark_id
    assert report.audit_match == "watermark" and report.audit[0]["job_id"] == rec.job_id


@pytest.mark.parametrize("mode", ["full", "hash", "none"])
def test_record_prompt_applies_everywhere(tmp_path, store, mode):
    secret = "a very private prompt"
    rec = record(prompt=secret, negative_prompt="also private")
    path, stamped = _write(tmp_path, rec, prompt_mode=mode)
    png = Image.open(path)
    gen = read_credentials(stamped.png).generation
    entry = audit.find(output_sha256=stamped.sha256)[0]
    places = [png.info["parameters"], json.dumps(gen), json.dumps(entry)]
    for place in places:
        assert (secret in place) == (mode == "full")
        assert ("also private" in place) == (mode == "full")
    if mode == "hash":
        assert all("sha256:" in p for p in places)


def test_stamp_bad_input():
    with pytest.raises(ValueError, match="PIL image"):
        stamp(b"not an image", record())


def test_cli_verify_exit_codes_and_json(tmp_path, store):
    runner = CliRunner()
    path, stamped = _write(tmp_path, record(seed=7), seed=7)
    result = runner.invoke(app, ["verify", str(path)])
    assert result.exit_code == 0, result.output
    assert "c2pa       valid" in result.output and "watermark  found" in result.output
    assert "matched by sha256" in result.output
    data = json.loads(runner.invoke(app, ["verify", str(path), "--json"]).output)
    assert data["c2pa"]["state"] == "valid" and data["watermark"]["watermark_id"] == stamped.watermark_id
    edited = bytearray(stamped.png)
    edited[stamped.png.find(b"IDAT") + 40] ^= 1
    (tmp_path / "edited.png").write_bytes(bytes(edited))
    result = runner.invoke(app, ["verify", str(tmp_path / "edited.png")])
    assert result.exit_code == 1 and "pixel data edited" in result.output
    synthetic_output(50).save(tmp_path / "plain.png")
    result = runner.invoke(app, ["verify", str(tmp_path / "plain.png")])
    assert result.exit_code == 3 and "not found" in result.output
    (tmp_path / "junk.png").write_bytes(b"junk")
    result = runner.invoke(app, ["verify", str(tmp_path / "junk.png")])
    assert result.exit_code == 2 and "cannot read" in result.output
    assert runner.invoke(app, ["verify", str(tmp_path / "missing.png")]).exit_code == 2


def test_cli_audit_verify_and_redact(tmp_path, store):
    runner = CliRunner()
    rec = record(seed=8)
    _write(tmp_path, rec, seed=8)
    _write(tmp_path, record(seed=9), seed=9)
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 0 and result.output.startswith("ok: 2 entries")
    assert runner.invoke(app, ["audit", "redact", rec.job_id]).exit_code == 0
    assert runner.invoke(app, ["audit", "verify"]).exit_code == 0
    assert runner.invoke(app, ["audit", "redact", "no-such-job"]).exit_code == 2
    from sqlalchemy import update

    from conjure.db import get_engine
    from conjure.provenance.audit import AuditEntry
    with get_engine().begin() as conn:
        conn.execute(update(AuditEntry).where(AuditEntry.seq == 2).values(seed=1234))
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 1 and "entry 2: edited" in result.output
    report = json.loads(runner.invoke(app, ["audit", "verify", "--json"]).output)
    assert report["ok"] is False and report["problems"][0]["seq"] == 2
