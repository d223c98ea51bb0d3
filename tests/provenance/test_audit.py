"""The audit chain: every kind of tampering is found and named; redaction keeps it valid; concurrent
appends from threads and from processes make one valid chain."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading

import pytest
from sqlalchemy import delete, func, select, text, update

from conjure.db import get_engine, session_factory
from conjure.provenance import audit
from conjure.provenance.audit import AuditEntry, AuditHead, AuditPending
from conjure.provenance.record import sha256_hex
from tests.provenance.helpers import record


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'audit.db'}"


def _fill(url, n=6):
    recs = [record(seed=i, prompt=f"prompt {i}") for i in range(n)]
    for i, rec in enumerate(recs):
        audit.append(rec, sha256_hex(f"output {i}"), f"urn:c2pa:{i}", url=url, prompt_mode="full")
    return recs


def _sql(url, stmt):
    with get_engine(url).begin() as conn:
        conn.execute(stmt)


def _kinds(report):
    return {(p["seq"], p["kind"]) for p in report.problems}


def test_intact_chain_and_lookup(url):
    recs = _fill(url)
    report = audit.verify(url)
    assert report.ok and report.entries == 6 and report.head_seq == 6
    found = audit.find(watermark_id=recs[2].watermark_id, url=url)
    assert found[0]["seq"] == 3 and found[0]["prompt"] == "prompt 2" and found[0]["params"]["steps"] == 10
    assert audit.find(output_sha256=sha256_hex("output 4"), url=url)[0]["job_id"] == recs[4].job_id
    with pytest.raises(ValueError):
        audit.find(url=url)


@pytest.mark.parametrize("column,value", [("seed", 99), ("model_hash", "ffff"), ("verdicts", '[{"x":1}]'),
                                          ("output_sha256", "0" * 64), ("prompt", "something else"),
                                          ("created_at", "2000-01-01T00:00:00+00:00")])
def test_edited_entry_is_named(url, column, value):
    _fill(url)
    _sql(url, update(AuditEntry).where(AuditEntry.seq == 3).values({column: value}))
    report = audit.verify(url)
    assert not report.ok and (3, "edited") in _kinds(report)


def test_deleted_entry_is_named(url):
    _fill(url)
    _sql(url, delete(AuditEntry).where(AuditEntry.seq == 4))
    kinds = _kinds(audit.verify(url))
    assert (4, "deleted") in kinds and (5, "broken link") in kinds


def test_reordered_entries_are_named(url):
    _fill(url)
    with get_engine(url).begin() as conn:   # swap entries 2 and 5 (their positions)
        conn.execute(text("UPDATE audit_entries SET seq = -1 WHERE seq = 2"))
        conn.execute(text("UPDATE audit_entries SET seq = 2 WHERE seq = 5"))
        conn.execute(text("UPDATE audit_entries SET seq = 5 WHERE seq = -1"))
    report = audit.verify(url)
    assert {(2, "reordered"), (5, "reordered")} <= _kinds(report)
    assert any("position 2 holds entry 5" in p["detail"] for p in report.problems)


def test_truncation_is_found(url):
    _fill(url)
    _sql(url, delete(AuditEntry).where(AuditEntry.seq >= 5))
    report = audit.verify(url)
    assert _kinds(report) == {(5, "truncated")}
    _sql(url, delete(AuditHead))
    assert ("head missing" in {p["kind"] for p in audit.verify(url).problems})


def test_whole_log_deleted_is_found(url):
    _fill(url, 2)
    _sql(url, delete(AuditEntry))
    assert _kinds(audit.verify(url)) == {(1, "truncated")}


def test_redaction_keeps_the_chain_valid(url):
    recs = _fill(url)
    assert audit.redact(recs[1].job_id, url=url) == 1
    report = audit.verify(url)
    assert report.ok, report.problems
    entry = audit.find(watermark_id=recs[1].watermark_id, url=url)[0]
    assert entry["prompt"] is None and entry["redacted"] is True
    # blanking a prompt without marking it redacted is an edit
    _sql(url, update(AuditEntry).where(AuditEntry.seq == 3).values(prompt=None))
    assert (3, "edited") in _kinds(audit.verify(url))


def test_record_prompt_modes_in_the_log(url):
    audit.append(record(prompt="hash me"), sha256_hex("a"), url=url, prompt_mode="hash")
    audit.append(record(prompt="drop me"), sha256_hex("b"), url=url, prompt_mode="none")
    first, second = sorted(audit.find(output_sha256=sha256_hex("a"), url=url) +
                           audit.find(output_sha256=sha256_hex("b"), url=url), key=lambda e: e["seq"])
    assert first["prompt"] == f"sha256:{sha256_hex('hash me')}"
    assert second["prompt"] == ""
    assert audit.verify(url).ok


def test_append_is_idempotent_per_output(url):
    rec = record(prompt="once")
    first = audit.append(rec, sha256_hex("out"), "urn:c2pa:1", url=url)
    again = audit.append(rec, sha256_hex("out"), "urn:c2pa:1", url=url)   # a retry after a crash
    other = audit.append(rec, sha256_hex("other out"), url=url)            # the same job's next output
    assert again.seq == first.seq == 1 and again.entry_hash == first.entry_hash and other.seq == 2
    report = audit.verify(url)
    assert report.ok and report.entries == 2


def test_staged_entries_are_flushed_once(url):
    rec = record(prompt="staged", job_id="job-1")
    staged = [audit.stage(rec, sha256_hex(f"out {i}"), f"urn:c2pa:{i}", prompt_mode="hash") for i in range(2)]
    with session_factory(url)() as s, s.begin():
        s.add_all(staged)
    # a crash after the first append but before its staged row went: the flush must not write it twice
    audit._append_fields(json.loads(staged[0].fields), url)
    assert audit.flush_pending(url, min_age_s=60) == 0          # too recent for a reaper
    assert audit.flush_pending(url, job_ids=["job-2"]) == 0     # another job's
    assert audit.flush_pending(url) == 1 and audit.flush_pending(url) == 0
    report = audit.verify(url)
    assert report.ok and report.entries == 2
    entries = audit.find(output_sha256=sha256_hex("out 1"), url=url)
    assert len(entries) == 1 and entries[0]["job_id"] == "job-1"
    assert entries[0]["prompt"] == f"sha256:{sha256_hex('staged')}"   # record_prompt applied when staged
    with session_factory(url)() as s:
        assert s.scalar(select(func.count()).select_from(AuditPending)) == 0


def test_a_lookup_finds_entries_still_staged(url):
    """A client can read a job as succeeded before the worker appended its staged entries (the race CI hit
    in the music API test): find() must append them first, once."""
    first, second = record(prompt="just done", job_id="job-s"), record(prompt="other", job_id="job-t")
    with session_factory(url)() as s, s.begin():
        s.add_all([audit.stage(first, sha256_hex("fresh out")), audit.stage(second, sha256_hex("other out"))])
    entries = audit.find(output_sha256=sha256_hex("fresh out"), url=url)
    assert [e["job_id"] for e in entries] == ["job-s"]
    with session_factory(url)() as s:                              # only the matching job was flushed
        assert s.scalars(select(AuditPending.job_id)).all() == ["job-t"]
    assert [e["job_id"] for e in audit.find(watermark_id=second.watermark_id, url=url)] == ["job-t"]
    assert audit.flush_pending(url) == 0 and audit.verify(url).ok and audit.verify(url).entries == 2


def test_redacting_a_staged_entry_redacts_what_is_appended(url):
    with session_factory(url)() as s, s.begin():
        s.add(audit.stage(record(prompt="secret", job_id="job-r"), sha256_hex("r"), prompt_mode="full"))
    assert audit.redact("job-r", url=url) == 0 and audit.flush_pending(url) == 1
    entry = audit.find(output_sha256=sha256_hex("r"), url=url)[0]
    assert entry["prompt"] is None and entry["redacted"] is True and audit.verify(url).ok


def test_bad_input(url):
    with pytest.raises(ValueError, match="output_sha256"):
        audit.append(record(), "not-a-digest", url=url)
    with pytest.raises(ValueError, match="JSON-able"):
        audit.append(record(verdicts=[float("nan")]), sha256_hex("x"), url=url)


def test_concurrent_appends_from_threads(url):
    def worker(k):
        for i in range(10):
            audit.append(record(seed=k * 100 + i), sha256_hex(f"{k}-{i}"), url=url)
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = audit.verify(url)
    assert report.ok and report.entries == 20


def test_concurrent_appends_from_processes(url):
    script = textwrap.dedent(f"""
        import sys
        from conjure.provenance import audit
        from conjure.provenance.record import GenerationRecord, sha256_hex
        k = int(sys.argv[1])
        for i in range(15):
            rec = GenerationRecord("p", "m", "h", k * 100 + i)
            audit.append(rec, sha256_hex(f"{{k}}-{{i}}"), url={url!r})
    """)
    audit.append(record(), sha256_hex("first"), url=url)   # the tables exist before the race
    procs = [subprocess.Popen([sys.executable, "-c", script, str(k)]) for k in range(2)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    report = audit.verify(url)
    assert report.ok and report.entries == 31
